use super::*;
use std::sync::Mutex;

fn d(n: u32) -> Digest {
    Digest::sha256_of(&n.to_be_bytes())
}

type Seen = Arc<Mutex<Vec<(Digest, Removal)>>>;

fn recording() -> (Sink, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let sink: Sink = Arc::new(move |d, r| s.lock().expect("lock").push((d, r)));
    (sink, seen)
}

#[test]
fn least_recently_used_leaves_first_and_the_budget_holds() {
    let (sink, seen) = recording();
    let index = Index::new(10 * 1024, sink);
    for n in 0..4 {
        index.admit(&d(n), 3 * 1024, None);
    }
    // 4 x 3 KiB do not fit in 10 KiB: the oldest, 0, went.
    assert!(!index.contains(&d(0)));
    assert!(index.bytes() <= 10 * 1024, "{}", index.bytes());
    assert!(index.get(&d(1)).is_some());
    index.settle();
    index.admit(&d(9), 3 * 1024, None);
    // 1 was used after 2 and 3 were added: 2 is now the least recently used.
    assert!(index.contains(&d(1)));
    assert!(!index.contains(&d(2)));
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        vec![(d(0), Removal::Evicted), (d(2), Removal::Evicted)]
    );
    assert_eq!(index.bytes(), 9 * 1024);
}

#[test]
fn adding_a_media_type_is_not_a_removal() {
    let (sink, seen) = recording();
    let index = Index::new(1 << 20, sink);
    assert!(index.admit(&d(1), 100, None));
    assert!(!index.admit(
        &d(1),
        100,
        Some("application/vnd.oci.image.manifest.v1+json")
    ));
    index.settle();
    let e = index.get(&d(1)).expect("entry");
    assert_eq!(
        e.media_type.as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    assert_eq!(index.bytes(), 100);
    assert!(seen.lock().expect("lock").is_empty());
    assert_eq!(index.remove(&d(1)), Some(100));
    index.settle();
    assert_eq!(*seen.lock().expect("lock"), vec![(d(1), Removal::Removed)]);
    assert_eq!(index.bytes(), 0);
}

#[test]
fn content_larger_than_the_budget_is_not_kept() {
    let (sink, seen) = recording();
    let index = Index::new(4 * 1024, sink);
    index.admit(&d(1), 1024, None);
    index.admit(&d(2), 8 * 1024, None);
    index.settle();
    assert!(!index.contains(&d(2)));
    assert!(index.contains(&d(1)));
    assert!(index.bytes() <= 4 * 1024);
    assert!(
        seen.lock()
            .expect("lock")
            .contains(&(d(2), Removal::Evicted))
    );
}

#[test]
fn reservations_hold_space_and_are_never_evicted_or_listed() {
    let (sink, seen) = recording();
    let index = Index::new(10 * 1024, sink);
    index.admit(&d(1), 3 * 1024, None);
    index.admit(
        &d(2),
        3 * 1024,
        Some("application/vnd.oci.image.manifest.v1+json"),
    );
    // 6 KiB held for a download: the least recently used content (1) makes room.
    index.reserve(&d(100), 6 * 1024);
    assert!(!index.contains(&d(1)));
    assert!(index.contains(&d(2)));
    assert!(index.get(&d(100)).is_none(), "a reservation is not content");
    assert_eq!(index.entry_count(), 1);
    assert_eq!(index.manifest_count(), 1);
    assert_eq!(index.bytes(), 9 * 1024);
    // Content over the rest of the budget evicts content, never the reservation.
    index.admit(&d(3), 4 * 1024, None);
    assert!(index.contains(&d(100)));
    assert!(!index.contains(&d(2)));
    assert_eq!(index.manifest_count(), 0);
    let mut listed = Vec::new();
    index.scan(|k, _| listed.push(k.digest()));
    assert_eq!(listed, vec![d(3)]);
    // A reservation larger than the whole budget is not held and evicts nothing.
    index.reserve(&d(100), 0);
    index.reserve(&d(101), 64 * 1024);
    assert!(index.contains(&d(3)) && !index.contains(&d(101)));
    assert_eq!(index.bytes(), 4 * 1024);
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        vec![(d(1), Removal::Evicted), (d(2), Removal::Evicted)]
    );
    assert_eq!(index.evicted().entries, 2);
}

#[test]
fn slots_are_reused_and_a_scan_sees_every_entry() {
    let index = Index::new(1 << 30, Arc::new(|_, _| {}));
    for n in 0..10_000 {
        index.admit(&d(n), 10, None);
    }
    for n in (0..10_000).step_by(2) {
        assert_eq!(index.remove(&d(n)), Some(10));
    }
    for n in 10_000..15_000 {
        index.admit(&d(n), 10, None);
    }
    assert_eq!(
        index.shared.lock().slots.len(),
        10_000,
        "freed slots are taken again"
    );
    let mut seen = 0;
    index.scan(|_, _| seen += 1);
    assert_eq!(seen, 10_000);
    assert_eq!(index.entry_count(), 10_000);
    assert!((1..10_000).step_by(2).all(|n| index.contains(&d(n))));
    assert!((0..10_000).step_by(2).all(|n| !index.contains(&d(n))));
}

#[test]
fn keys_parse_as_digests_do() {
    let sha = d(7);
    assert_eq!(Key::parse(&sha.to_string()), Some(Key::of(&sha)));
    assert_eq!(Key::of(&sha).digest(), sha);
    let long = Digest::parse(&format!("sha512:{}", "0f".repeat(64))).expect("sha512");
    assert_eq!(
        Key::parse(&long.to_string()).map(|k| k.digest()),
        Some(long)
    );
    let upper = sha.to_string().to_uppercase().replace("SHA256", "sha256");
    for bad in ["", "sha256:", "sha256:abc", &upper, "md5:00", "blob"] {
        assert_eq!(Key::parse(bad), None, "{bad}");
    }
}

#[test]
fn weights_round_up_and_never_overflow() {
    assert_eq!(weight(0), 1);
    assert_eq!(weight(1), 1);
    assert_eq!(weight(1025), 2);
    assert_eq!(weight(u64::MAX), u32::MAX);
}

#[test]
fn verification_times_only_rise() {
    let index = Index::new(1 << 20, Arc::new(|_, _| {}));
    let times = |v| Times {
        access_ms: 1,
        verified_ms: v,
    };
    index.load(&d(1), 10, None, times(500));
    index.load(&d(2), 10, None, times(500));
    index.reserve(&d(3), 10);
    index.mark_verified(&[
        (Key::of(&d(1)), 900),
        (Key::of(&d(2)), 100),
        (Key::of(&d(3)), 900),
        (Key::of(&d(4)), 900),
    ]);
    let at = |n| index.get(&d(n)).map(|e| e.verified.load(Ordering::Relaxed));
    assert_eq!(at(1), Some(900), "raised to the recorded time");
    assert_eq!(at(2), Some(500), "a later verification is kept");
    assert_eq!(index.entry_count(), 2, "nothing added for unknown keys");
}
