//! The digest store (being written).
