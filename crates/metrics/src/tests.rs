//! The families as Prometheus sees them: names, labels, and what `set_cache` exports.

use super::*;

#[test]
fn families_follow_the_naming_rule() {
    let m = Metrics::standalone();
    m.init_upstream("hub");
    m.set_cache(CacheSnapshot::default());
    let text = m.encode();
    let mut names = 0;
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line.split_whitespace().skip(2);
        let (name, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        names += 1;
        assert!(name.starts_with("wharf_"), "{name}");
        assert!(
            name.split('_').count() >= 3,
            "{name}: wharf_<subsystem>_<name>"
        );
        assert_eq!(
            name.ends_with("_total"),
            kind == "counter",
            "{name} is a {kind}"
        );
    }
    assert!(names >= 16, "{text}");
    assert!(text.contains(&format!(
        "wharf_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
}

#[test]
fn registering_twice_into_one_registry_fails() {
    let r = Registry::new();
    assert!(Metrics::new(&r).is_ok());
    assert!(Metrics::new(&r).is_err());
}

#[test]
fn cache_counters_follow_the_store() {
    let m = Metrics::standalone();
    m.set_cache(CacheSnapshot {
        evictions: 3,
        evicted_bytes: 100,
        ..Default::default()
    });
    m.set_cache(CacheSnapshot {
        evictions: 5,
        evicted_bytes: 150,
        ..Default::default()
    });
    assert_eq!(m.cache_evictions.get(), 5);
    assert_eq!(m.cache_evicted_bytes.get(), 150);
    m.set_cache(CacheSnapshot {
        evictions: 5,
        evicted_bytes: 150,
        scrubbed_bytes: 4096,
        scrub_faults: 1,
        ..Default::default()
    });
    assert_eq!(m.cache_scrubbed_bytes.get(), 4096);
    assert_eq!(m.cache_scrub_faults.get(), 1);
    assert!(
        m.encode()
            .contains("wharf_cache_write_failures_total{reason=\"no_space\"} 0\n"),
        "present at zero"
    );
    m.set_cache(CacheSnapshot {
        no_space_failures: 7,
        ..Default::default()
    });
    assert_eq!(
        m.cache_write_failures
            .with_label_values(&["no_space"])
            .get(),
        7
    );
}

#[test]
fn labels() {
    assert_eq!(status_class(204), "2xx");
    assert_eq!(status_class(503), "5xx");
    assert_eq!(method_label("PUT"), "other");
    assert_eq!(Outcome::Stale.source(), "cache");
    assert_eq!(Outcome::Coalesced.source(), "upstream");
}
