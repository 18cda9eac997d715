//! Known upstream challenges (PROTOCOL §2.1, §2.6) and property tests for the parser.

use proptest::prelude::*;

use super::*;

fn one(line: &str) -> Challenge {
    let mut all = parse(line.as_bytes());
    assert_eq!(all.len(), 1, "{line}: {all:?}");
    all.remove(0)
}

#[test]
fn quay_basic_and_bearer_on_one_line() {
    let all = parse(
        br#"Basic realm="quay.io", Bearer realm="https://quay.io/v2/auth",service="quay.io",scope="repository:x:pull""#,
    );
    assert_eq!(all.len(), 2);
    assert!(all[0].is("basic"));
    assert_eq!(all[0].param("realm"), Some("quay.io"));
    assert!(all[1].is("BEARER"));
    assert_eq!(all[1].param("realm"), Some("https://quay.io/v2/auth"));
    assert_eq!(all[1].param("service"), Some("quay.io"));
    assert_eq!(all[1].param("scope"), Some("repository:x:pull"));
}

#[test]
fn docker_hub() {
    let c = one(
        r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
    );
    assert!(c.is("Bearer"));
    assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
    assert_eq!(c.param("service"), Some("registry.docker.io"));
    assert_eq!(
        c.param("scope"),
        Some("repository:samalba/my-app:pull,push")
    );
}

#[test]
fn oracle_service_with_a_space() {
    let c = one(
        r#"Bearer realm="https://container-registry.oracle.com/auth",service="Oracle Registry""#,
    );
    assert_eq!(c.param("service"), Some("Oracle Registry"));
    assert_eq!(c.param("scope"), None);
}

#[test]
fn ocir_empty_scope() {
    let c = one(
        r#"Bearer realm="https://phx.ocir.io/20180419/docker/token",service="phx.ocir.io",scope="""#,
    );
    assert_eq!(c.param("scope"), Some(""));
    assert_eq!(c.param("service"), Some("phx.ocir.io"));
}

#[test]
fn ecr_basic() {
    let c = one(
        r#"Basic realm="https://123456789012.dkr.ecr.us-east-1.amazonaws.com/",service="ecr.amazonaws.com""#,
    );
    assert!(c.is("basic"));
    assert_eq!(c.param("service"), Some("ecr.amazonaws.com"));
}

#[test]
fn rfc_7235_example_with_escapes_and_tokens() {
    let all =
        parse(br#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple""#);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].param("type"), Some("1"));
    assert_eq!(all[0].param("title"), Some(r#"Login to "apps""#));
    assert_eq!(all[1].param("realm"), Some("simple"));
}

#[test]
fn token68_bare_schemes_and_spacing() {
    let all = parse(b"Negotiate abc+/==, Basic, Bearer  realm = \"r\" , error=insufficient_scope");
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].token68.as_deref(), Some("abc+/=="));
    assert!(all[1].is("basic") && all[1].params.is_empty());
    assert_eq!(all[2].param("REALM"), Some("r"));
    assert_eq!(all[2].param("error"), Some("insufficient_scope"));
}

#[test]
fn several_header_lines() {
    let lines: [&[u8]; 2] = [b"Basic realm=\"a\"", b"Bearer realm=\"b\""];
    let all = parse_all(lines);
    assert_eq!(all.len(), 2);
    assert!(all[1].is("bearer"));
}

#[test]
fn garbage_is_skipped() {
    assert!(parse(b"").is_empty());
    assert!(parse(b" , ,").is_empty());
    let all = parse(b"\"junk\", Bearer realm=\"x");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].param("realm"), Some("x"));
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

/// A parameter value: any printable ASCII (sent quoted, with escapes) or a token (sent bare).
fn value() -> impl Strategy<Value = (String, bool)> {
    prop_oneof![
        "[ -~]{0,24}".prop_map(|v| (v, true)),
        token().prop_map(|v| (v, false)),
    ]
}

/// (name, value, sent quoted)
type Param = (String, String, bool);
/// (scheme, params)
type Generated = (String, Vec<Param>);

fn challenge() -> impl Strategy<Value = Generated> {
    let param = (token(), value()).prop_map(|(n, (v, q))| (n, v, q));
    (token(), prop::collection::vec(param, 0..5))
}

fn render(challenges: &[Generated]) -> String {
    let rendered: Vec<String> = challenges
        .iter()
        .map(|(scheme, params)| {
            let params: Vec<String> = params
                .iter()
                .map(|(n, v, quoted)| {
                    if *quoted {
                        let escaped = v.replace('\\', "\\\\").replace('"', "\\\"");
                        format!("{n}=\"{escaped}\"")
                    } else {
                        format!("{n}={v}")
                    }
                })
                .collect();
            if params.is_empty() {
                scheme.clone()
            } else {
                format!("{scheme} {}", params.join(", "))
            }
        })
        .collect();
    rendered.join(", ")
}

proptest! {
    #[test]
    fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn never_panics_on_near_misses(s in r#"[A-Za-z =",\\\t]{0,64}"#) {
        let _ = parse(s.as_bytes());
    }

    #[test]
    fn round_trips(challenges in prop::collection::vec(challenge(), 1..4)) {
        let line = render(&challenges);
        let parsed = parse(line.as_bytes());
        prop_assert_eq!(parsed.len(), challenges.len(), "{}", line);
        for (got, (scheme, params)) in parsed.iter().zip(&challenges) {
            prop_assert!(got.is(scheme));
            prop_assert!(got.token68.is_none());
            // Repeated names keep the first value.
            let mut want: Vec<(String, String)> = Vec::new();
            for (n, v, _) in params {
                let n = n.to_ascii_lowercase();
                if !want.iter().any(|(w, _)| *w == n) {
                    want.push((n, v.clone()));
                }
            }
            prop_assert_eq!(&got.params, &want, "{}", line);
        }
    }
}
