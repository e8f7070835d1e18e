//! The guard every request passes: the token check, the CSRF defence of
//! state-changing requests, and the security headers on every response.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Scripts, styles and connections only from the dashboard itself; nothing
/// inline, no frames, no forms, no plugins. The page never needs more, and
/// this stops any markup that slipped into it from running.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The header state-changing requests must carry. A cross-site form cannot
/// set headers, and a cross-site `fetch` that sets one needs a CORS
/// preflight, which the dashboard never answers.
pub(crate) const CSRF_HEADER: &str = "x-jobfleet";

/// Checks a request, runs it, and adds the security headers.
pub(crate) async fn guard(State(token): State<Option<Arc<str>>>, request: Request, next: Next) -> Response {
    let refused = match &token {
        Some(token) if !carries_token(&request, token) => Some((
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send `Authorization: Bearer TOKEN` or add ?token=TOKEN",
        )),
        _ => csrf_refusal(request.method(), request.headers()).map(|why| (StatusCode::FORBIDDEN, why)),
    };
    let mut response = match refused {
        Some((status, why)) => {
            let mut response = (status, axum::Json(serde_json::json!({ "error": why }))).into_response();
            if status == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
        None => next.run(request).await,
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // The token may be in the page's URL: never send it elsewhere.
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// True when the request carries the token, in the `Authorization` header
/// or the `token` query parameter.
fn carries_token(request: &Request, token: &str) -> bool {
    let bearer = request
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.strip_prefix("Bearer "))
        .any(|given| same_secret(given.trim().as_bytes(), token.as_bytes()));
    let query = || {
        form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .filter(|(name, _)| name == "token")
            .any(|(_, given)| same_secret(given.as_bytes(), token.as_bytes()))
    };
    bearer || query()
}

/// Compares every byte whatever the first difference, so the time taken says
/// nothing about how much of a guess was right (the length is not secret).
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    let diff = given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

/// Why a request that could change state is refused, if it is: it must carry
/// `X-Jobfleet: 1`, and when the browser says where it comes from
/// (`Sec-Fetch-Site`, `Origin`), that must be this dashboard.
fn csrf_refusal(method: &Method, headers: &HeaderMap) -> Option<&'static str> {
    if matches!(*method, Method::GET | Method::HEAD) {
        return None;
    }
    if headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) != Some("1") {
        return Some("state-changing requests need the header X-Jobfleet: 1");
    }
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.to_str(), Ok("same-origin" | "none"))
    {
        return Some("cross-site request refused");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if authority.is_none() || authority != host {
            return Some("cross-origin request refused");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    /// Sends one request through the guard, in front of a GET and a POST route.
    async fn send(token: Option<&str>, method: &str, uri: &str, pairs: &[(&str, &str)]) -> Response {
        let app = Router::new()
            .route("/read", get(|| async { "read" }))
            .route("/write", post(|| async { "written" }))
            .layer(axum::middleware::from_fn_with_state(token.map(Arc::from), guard));
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in pairs {
            request = request.header(*name, *value);
        }
        app.oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn secrets_compare_equal_only_when_identical() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3creT", b"s3cret"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
    }

    #[test]
    fn reads_need_no_csrf_header() {
        assert_eq!(csrf_refusal(&Method::GET, &headers(&[])), None);
        assert_eq!(csrf_refusal(&Method::HEAD, &headers(&[])), None);
    }

    #[test]
    fn writes_need_the_header_and_a_same_origin() {
        let host = ("host", "127.0.0.1:8080");
        let ok = [
            vec![(CSRF_HEADER, "1")],
            vec![(CSRF_HEADER, "1"), host, ("origin", "http://127.0.0.1:8080")],
            vec![(CSRF_HEADER, "1"), host, ("sec-fetch-site", "same-origin")],
        ];
        for pairs in ok {
            assert_eq!(csrf_refusal(&Method::POST, &headers(&pairs)), None, "{pairs:?}");
        }
        let refused = [
            vec![host],
            vec![(CSRF_HEADER, "yes"), host],
            vec![(CSRF_HEADER, "1"), host, ("sec-fetch-site", "cross-site")],
            vec![(CSRF_HEADER, "1"), host, ("sec-fetch-site", "same-site")],
            vec![(CSRF_HEADER, "1"), host, ("origin", "http://evil.example")],
            vec![(CSRF_HEADER, "1"), host, ("origin", "null")],
            vec![(CSRF_HEADER, "1"), ("origin", "http://127.0.0.1:8080")],
        ];
        for pairs in refused {
            for method in [Method::POST, Method::PUT, Method::DELETE] {
                assert!(
                    csrf_refusal(&method, &headers(&pairs)).is_some(),
                    "{method} {pairs:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn with_a_token_every_request_must_carry_it() {
        let token = Some("s3cret");
        let status = |r: Response| r.status();
        assert_eq!(
            status(send(token, "GET", "/read", &[]).await),
            StatusCode::UNAUTHORIZED
        );
        let wrong = [("authorization", "Bearer s3creT")];
        assert_eq!(
            status(send(token, "GET", "/read", &wrong).await),
            StatusCode::UNAUTHORIZED
        );
        let right = [("authorization", "Bearer s3cret")];
        assert_eq!(status(send(token, "GET", "/read", &right).await), StatusCode::OK);
        assert_eq!(
            status(send(token, "GET", "/read?token=s3cret", &[]).await),
            StatusCode::OK
        );
        assert_eq!(
            status(send(token, "GET", "/read?token=other", &[]).await),
            StatusCode::UNAUTHORIZED
        );
        // Even a refusal carries the security headers.
        let refused = send(token, "GET", "/nowhere", &[]).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            refused.headers()[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(status(send(None, "GET", "/read", &[]).await), StatusCode::OK);
    }

    #[tokio::test]
    async fn writes_are_post_only_and_need_the_csrf_header() {
        let csrf = [(CSRF_HEADER, "1")];
        assert_eq!(
            send(None, "POST", "/write", &[]).await.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(send(None, "POST", "/write", &csrf).await.status(), StatusCode::OK);
        assert_eq!(
            send(None, "GET", "/write", &[]).await.status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        let response = send(None, "GET", "/read", &[]).await;
        let headers = response.headers();
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self';"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }
}
