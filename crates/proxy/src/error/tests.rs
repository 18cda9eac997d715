//! Each variant's status, headers and error JSON, as a client receives them.

use super::*;
use hyper::ext::ReasonPhrase;

async fn parts(e: ProxyError) -> (StatusCode, HeaderMap, serde_json::Value) {
    use http_body_util::BodyExt as _;
    let resp = e.into_response(false);
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn each_refusal_has_its_status_headers_and_code() {
    let (s, _, b) = parts(ProxyError::UriTooLong).await;
    assert_eq!(s, StatusCode::URI_TOO_LONG);
    assert_eq!(b["errors"][0]["code"], "NAME_INVALID");

    let (s, _, b) = parts(ProxyError::BodyTooLarge).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(b["errors"][0]["code"], "SIZE_INVALID");

    let (s, h, b) = parts(ProxyError::RangeNotSatisfiable { size: 42 }).await;
    assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(h[header::CONTENT_RANGE], "bytes */42");
    assert_eq!(b["errors"][0]["code"], "RANGE_INVALID");

    let (s, h, b) = parts(ProxyError::Unauthenticated {
        message: "authentication required".into(),
    })
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(h[header::WWW_AUTHENTICATE], CHALLENGE);
    assert_eq!(b["errors"][0]["code"], "UNAUTHORIZED");

    let (s, h, _) = parts(ProxyError::oci(ErrorCode::Unauthorized, "upstream said no")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        h.get(header::WWW_AUTHENTICATE).is_none(),
        "only wharf's own 401s challenge"
    );

    let (s, _, b) = parts(ProxyError::Route(RouteError::NotFound)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["errors"][0]["code"], "NAME_UNKNOWN");

    let (s, _, b) = parts(ProxyError::Route(RouteError::NotATag(".x".into()))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["errors"][0]["code"], "MANIFEST_UNKNOWN");

    let (s, _, b) = parts(ProxyError::PaginationInvalid {
        n: "-1".into(),
        reason: "not a non-negative integer".into(),
    })
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["errors"][0]["code"], "PAGINATION_NUMBER_INVALID");

    let (s, _, b) = parts(ProxyError::NoUpstream(NoUpstream("no upstream x".into()))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["errors"][0]["message"], "no upstream x");
}

#[test]
fn the_message_is_in_the_status_line_and_a_warning_on_get_and_head() {
    let failed = || ProxyError::BadUpstreamAnswer {
        upstream: "oracle".into(),
        message: "manifest x came without a Content-Type".into(),
    };
    for head in [false, true] {
        let resp = failed().into_response(head);
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        let phrase = resp.extensions().get::<ReasonPhrase>().unwrap();
        assert_eq!(
            phrase.as_bytes(),
            b"Bad Gateway: upstream oracle: manifest x came without a Content-Type"
        );
        assert_eq!(
            resp.headers()[header::WARNING],
            r#"299 - "upstream oracle: manifest x came without a Content-Type""#
        );
    }
}

#[test]
fn warnings_are_quoted_one_line_and_bounded() {
    let w = warning("a \"quoted\" \\ path\r\nnext\tline é").unwrap();
    assert_eq!(w, r#"299 - "a \"quoted\" \\ path next line ?""#);

    let long = "x".repeat(MAX_REASON_LEN * 2);
    let w = warning(&long).unwrap();
    let text = w.to_str().unwrap();
    assert_eq!(text.len(), r#"299 - """#.len() + MAX_REASON_LEN);
    assert!(text.ends_with(r#"...""#));

    // A message of only quotes cannot grow the header past twice the bound.
    let quotes = "\"".repeat(MAX_REASON_LEN * 2);
    assert!(warning(&quotes).unwrap().len() <= 2 * MAX_REASON_LEN + 8);

    let resp =
        ProxyError::oci(ErrorCode::Unknown, "line one\r\nSet-Cookie: x").into_response(false);
    let phrase = resp.extensions().get::<ReasonPhrase>().unwrap();
    assert_eq!(
        phrase.as_bytes(),
        b"Internal Server Error: line one Set-Cookie: x"
    );
    assert_eq!(resp.headers().get_all(header::SET_COOKIE).iter().count(), 0);
}

#[test]
fn head_answers_carry_no_body() {
    let resp = ProxyError::BodyTooLarge.into_response(true);
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(http_body::Body::is_end_stream(resp.body()));
}

fn reported(code: &str, message: &str) -> Option<wharf_upstream::Reported> {
    Some(wharf_upstream::Reported {
        code: code.into(),
        message: message.into(),
    })
}

/// Behind another wharf (or any registry), the far end's code and message reach the client
/// unchanged, prefixed with the upstream's name; its status too, for answers about the request.
#[tokio::test]
async fn an_upstream_error_passes_through_with_the_upstream_name() {
    let not_found = ProxyError::upstream(Missing::Manifest)(wharf_upstream::Error::NotFound {
        upstream: "regional".into(),
        request: "GET /oracle/v2/os/x/manifests/7".into(),
        code: reported("NAME_UNKNOWN", r#"no upstream is configured for "os/x""#),
    });
    assert!(
        not_found
            .to_string()
            .contains("GET /oracle/v2/os/x/manifests/7")
    );
    let (s, h, b) = parts(not_found).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["errors"][0]["code"], "NAME_UNKNOWN");
    let message = r#"upstream regional: no upstream is configured for "os/x""#;
    assert_eq!(b["errors"][0]["message"], message);
    assert_eq!(
        h[header::WARNING],
        r#"299 - "upstream regional: no upstream is configured for \"os/x\"""#
    );

    let status = |status: u16, code: &str| {
        ProxyError::upstream(Missing::Blob)(wharf_upstream::Error::Status {
            upstream: "regional".into(),
            request: "GET /oracle/v2/os/x/blobs/sha256:00".into(),
            status,
            code: reported(code, "said the region"),
        })
    };
    let (s, _, b) = parts(status(400, "TAG_INVALID")).await;
    assert_eq!(
        (s, &b["errors"][0]["code"]),
        (StatusCode::BAD_REQUEST, &"TAG_INVALID".into())
    );
    let (s, _, b) = parts(status(508, "UNKNOWN")).await;
    assert_eq!(
        (s, &b["errors"][0]["code"]),
        (StatusCode::LOOP_DETECTED, &"UNKNOWN".into())
    );
    // A failing upstream stays the gateway's answer, with the far end's words.
    let (s, _, b) = parts(status(500, "UNKNOWN")).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    assert_eq!(
        b["errors"][0]["message"],
        "upstream regional: said the region"
    );
    // A code wharf does not know keeps wharf's own.
    let harbor = ProxyError::upstream(Missing::Blob)(wharf_upstream::Error::NotFound {
        upstream: "harbor".into(),
        request: "GET /v2/x/blobs/sha256:00".into(),
        code: reported("NOT_FOUND", "not found"),
    });
    let (s, _, b) = parts(harbor).await;
    assert_eq!(
        (s, &b["errors"][0]["code"]),
        (StatusCode::NOT_FOUND, &"BLOB_UNKNOWN".into())
    );

    let (s, _, b) = parts(ProxyError::NotCached {
        digest: wharf_oci::Digest::sha256_of(b"x"),
    })
    .await;
    assert_eq!(
        (s, &b["errors"][0]["code"]),
        (StatusCode::GATEWAY_TIMEOUT, &"BLOB_UNKNOWN".into())
    );

    let (s, _, b) = parts(ProxyError::Loop {
        pseudonym: "wharf-0000abcd".into(),
    })
    .await;
    assert_eq!(s, StatusCode::LOOP_DETECTED);
    assert!(
        b["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("wharf-0000abcd") && m.contains("loop")),
        "{b}"
    );
}
