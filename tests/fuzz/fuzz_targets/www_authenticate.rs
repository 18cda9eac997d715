//! `WWW-Authenticate` lines from an upstream: the challenge parser never panics, keeps one
//! lowercase value per parameter name, reads several lines as their concatenation, and what it
//! read, written back as a header, reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_upstream::challenge::{self, Challenge};

fuzz_target!(|data: &[u8]| {
    let challenges = challenge::parse(data);
    for c in &challenges {
        assert!(!c.scheme.is_empty());
        assert!(c.token68.is_none() || c.params.is_empty(), "{c:?}");
        for (i, (name, _)) in c.params.iter().enumerate() {
            assert!(
                !name.is_empty() && *name == name.to_ascii_lowercase(),
                "{c:?}"
            );
            assert!(c.params[..i].iter().all(|(n, _)| n != name), "{c:?}");
        }
        let _ = c.param("realm");
        let _ = c.is("Bearer");
    }
    let rendered = render(&challenges);
    assert_eq!(
        challenge::parse(rendered.as_bytes()),
        challenges,
        "{:?} rendered as {rendered:?}",
        String::from_utf8_lossy(data)
    );

    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let each: Vec<Challenge> = lines.iter().flat_map(|l| challenge::parse(l)).collect();
    assert_eq!(challenge::parse_all(lines), each);
});

/// `scheme token68` or `scheme name="value", …`, challenges joined by `, `.
fn render(challenges: &[Challenge]) -> String {
    let one = |c: &Challenge| {
        if let Some(t) = &c.token68 {
            return format!("{} {t}", c.scheme);
        }
        let params: Vec<String> = c
            .params
            .iter()
            .map(|(n, v)| format!("{n}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        if params.is_empty() {
            c.scheme.clone()
        } else {
            format!("{} {}", c.scheme, params.join(", "))
        }
    };
    challenges.iter().map(one).collect::<Vec<_>>().join(", ")
}
