//! Metric families for wharf. Filled in by the observability issue; every crate may depend on it.
