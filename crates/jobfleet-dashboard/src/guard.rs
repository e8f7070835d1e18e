//! The guard every request passes: the Host check (against DNS rebinding),
//! the token check, the CSRF defence of state-changing requests, and the
//! security headers on every response.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};
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

/// What the guard lets through, fixed when the dashboard starts.
#[derive(Debug)]
pub(crate) struct Guard {
    /// When set, every request must carry it.
    pub token: Option<Arc<str>>,
    /// The names a request may address the dashboard by.
    pub hosts: Hosts,
}

/// The names a request's `Host` may give. A page on evil.example whose name
/// an attacker re-points at 127.0.0.1 (DNS rebinding) reaches the socket and
/// counts as same-origin in the browser, but its requests still say
/// `Host: evil.example`: that is what this refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hosts {
    /// Any name. Only for a wildcard address (0.0.0.0, `::`) with a token:
    /// the operator exposed the dashboard under whatever names reach the
    /// machine, and the token, which a rebinding page does not have, guards
    /// it.
    Any,
    /// Loopback names and addresses, plus these (as [`host_name`] writes
    /// them).
    Only(Vec<String>),
}

impl Hosts {
    /// The names a dashboard on `listen` answers to: loopback ones, the
    /// listen address itself and `allowed` (already checked with
    /// [`allowed_name`]); any name on a wildcard address with a token.
    pub(crate) fn new(listen: SocketAddr, token: bool, allowed: &[String]) -> Hosts {
        let ip = listen.ip();
        if ip.is_unspecified() && token {
            return Hosts::Any;
        }
        let mut names: Vec<String> = allowed.iter().filter_map(|n| allowed_name(n)).collect();
        if !ip.is_unspecified() && !ip.is_loopback() {
            names.push(match ip {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
            });
        }
        names.sort();
        names.dedup();
        Hosts::Only(names)
    }

    fn allows(&self, name: &str) -> bool {
        match self {
            Hosts::Any => true,
            Hosts::Only(names) => is_loopback(name) || names.iter().any(|n| n == name),
        }
    }

    /// Why a request is refused for the host it names, if it is. Both the
    /// `Host` header and an authority in the request target count; HTTP/1.0
    /// may omit both (browsers never do, so rebinding cannot).
    fn refusal(&self, request: &Request) -> Option<String> {
        if *self == Hosts::Any {
            return None;
        }
        let headers = request
            .headers()
            .get_all(header::HOST)
            .iter()
            .map(|v| v.to_str().unwrap_or(""));
        let given: Vec<&str> = headers
            .chain(request.uri().authority().map(|a| a.as_str()))
            .collect();
        if given.is_empty() {
            return (request.version() >= Version::HTTP_11).then(|| {
                format!(
                    "missing Host header: HTTP/1.1 requests must name the dashboard as {}",
                    self.accepted()
                )
            });
        }
        let refused = given
            .iter()
            .find(|value| !host_name(value).is_some_and(|name| self.allows(&name)))?;
        Some(format!(
            "refused Host {refused:?}: this dashboard answers only to {} (a guard against DNS \
             rebinding); to use another name, start it with --allow-host NAME",
            self.accepted()
        ))
    }

    /// The accepted names, for an error message.
    fn accepted(&self) -> String {
        let mut names = vec!["localhost", "127.0.0.1 (or any 127.x.y.z)", "[::1]"];
        if let Hosts::Only(extra) = self {
            names.extend(extra.iter().map(String::as_str));
        }
        let last = names.pop().unwrap_or_default();
        format!("{} or {last}, with or without a port", names.join(", "))
    }
}

/// The name in a `Host` value (`name`, `name:port`, `[v6]`, `[v6]:port`),
/// lowercase, without a final dot, an IPv6 address bracketed in its
/// canonical form; `None` when the value is no host. The port is dropped:
/// a rebinding page is told apart by its name, and a proxy may change the
/// port.
pub(crate) fn host_name(value: &str) -> Option<String> {
    let (name, port) = match value.strip_prefix('[') {
        Some(rest) => {
            let (ip, port) = rest.split_once(']')?;
            (format!("[{}]", ip.parse::<Ipv6Addr>().ok()?), port)
        }
        None => {
            let (name, port) = value.split_at(value.find(':').unwrap_or(value.len()));
            let name = name.strip_suffix('.').unwrap_or(name);
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            (valid.then(|| name.to_ascii_lowercase())?, port)
        }
    };
    let port_ok = match port.strip_prefix(':') {
        Some(digits) => !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
        None => port.is_empty(),
    };
    port_ok.then_some(name)
}

/// An extra name the operator allows (`--allow-host`), as [`host_name`]
/// writes it; `None` when it is no host name or IP, or carries a port
/// (which would be ignored, and so mislead).
pub(crate) fn allowed_name(name: &str) -> Option<String> {
    if let Ok(v6) = name.parse::<Ipv6Addr>() {
        return Some(format!("[{v6}]"));
    }
    let has_port = match name.strip_prefix('[') {
        Some(rest) => !rest.ends_with(']'),
        None => name.contains(':'),
    };
    if has_port {
        return None;
    }
    host_name(name)
}

/// `localhost` or a loopback address (any 127.x.y.z, `[::1]`).
fn is_loopback(name: &str) -> bool {
    let ip = match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().map(IpAddr::V6).ok(),
        None => name.parse::<Ipv4Addr>().map(IpAddr::V4).ok(),
    };
    name == "localhost" || ip.is_some_and(|ip| ip.to_canonical().is_loopback())
}

/// Checks a request, runs it, and adds the security headers.
pub(crate) async fn guard(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let refused = if let Some(why) = guard.hosts.refusal(&request) {
        Some((StatusCode::MISDIRECTED_REQUEST, why))
    } else {
        match &guard.token {
            Some(token) if !carries_token(&request, token) => Some((
                StatusCode::UNAUTHORIZED,
                "missing or wrong token: send `Authorization: Bearer TOKEN` or add ?token=TOKEN".into(),
            )),
            _ => csrf_refusal(request.method(), request.headers())
                .map(|why| (StatusCode::FORBIDDEN, why.to_string())),
        }
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

    /// Sends one request through `guard`, in front of a GET and a POST route.
    async fn through(guard: Guard, request: Request) -> Response {
        let app = Router::new()
            .route("/read", get(|| async { "read" }))
            .route("/write", post(|| async { "written" }))
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(guard),
                super::guard,
            ));
        app.oneshot(request).await.unwrap()
    }

    fn request(method: &str, uri: &str, pairs: &[(&str, &str)]) -> Request {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in pairs {
            request = request.header(*name, *value);
        }
        request.body(Body::empty()).unwrap()
    }

    /// Sends one request to a dashboard on 127.0.0.1:8080, as a browser
    /// there would (`Host: 127.0.0.1:8080` unless `pairs` names one).
    async fn send(token: Option<&str>, method: &str, uri: &str, pairs: &[(&str, &str)]) -> Response {
        let mut pairs = pairs.to_vec();
        if !pairs.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
            pairs.push(("host", "127.0.0.1:8080"));
        }
        let guard = Guard {
            token: token.map(Arc::from),
            hosts: Hosts::new("127.0.0.1:8080".parse().unwrap(), token.is_some(), &[]),
        };
        through(guard, request(method, uri, &pairs)).await
    }

    /// A dashboard on `listen`, with a token or not, allowing `allowed`.
    fn guard_for(listen: &str, token: Option<&str>, allowed: &[&str]) -> Guard {
        let allowed: Vec<String> = allowed.iter().map(|n| n.to_string()).collect();
        Guard {
            token: token.map(Arc::from),
            hosts: Hosts::new(listen.parse().unwrap(), token.is_some(), &allowed),
        }
    }

    /// The status of a GET /read naming `host` (with the token, if any).
    async fn status_for_host(guard: Guard, host: &str) -> StatusCode {
        let bearer = guard.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut pairs = vec![("host", host)];
        if let Some(bearer) = &bearer {
            pairs.push(("authorization", bearer));
        }
        through(guard, request("GET", "/read", &pairs)).await.status()
    }

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn host_values_are_read_as_their_name_without_the_port() {
        for (value, name) in [
            ("localhost", "localhost"),
            ("LocalHost:8080", "localhost"),
            ("localhost.:8080", "localhost"),
            ("127.0.0.1:8080", "127.0.0.1"),
            ("[::1]", "[::1]"),
            ("[0:0:0:0:0:0:0:1]:8080", "[::1]"),
            ("Dash.Example", "dash.example"),
        ] {
            assert_eq!(host_name(value).as_deref(), Some(name), "{value}");
        }
        for value in [
            "",
            ":8080",
            "[::1",
            "[nope]:80",
            "a:b:c",
            "evil.example:",
            "a b",
            "u@evil.example",
            "::1",
        ] {
            assert_eq!(host_name(value), None, "{value:?}");
        }
        assert_eq!(allowed_name("Dash.Example").as_deref(), Some("dash.example"));
        assert_eq!(allowed_name("fd00::1").as_deref(), Some("[fd00::1]"));
        assert_eq!(allowed_name("[fd00::1]").as_deref(), Some("[fd00::1]"));
        for name in ["dash.example:8080", "[fd00::1]:80", "http://dash.example", ""] {
            assert_eq!(allowed_name(name), None, "{name:?}");
        }
    }

    #[tokio::test]
    async fn a_foreign_host_is_refused_with_a_json_error_naming_it() {
        let response = send(None, "GET", "/read", &[("host", "evil.example:8080")]).await;
        assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
        assert_eq!(
            response.headers()[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        let error = body_json(response).await["error"].as_str().unwrap().to_string();
        assert!(error.starts_with("refused Host \"evil.example:8080\""), "{error}");
        assert!(
            error.contains("localhost") && error.contains("[::1]") && error.contains("--allow-host"),
            "{error}"
        );
        // Nor can it change anything, with every CSRF header a browser would send.
        let write = [
            ("host", "evil.example:8080"),
            (CSRF_HEADER, "1"),
            ("origin", "http://evil.example:8080"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert_eq!(
            send(None, "POST", "/write", &write).await.status(),
            StatusCode::MISDIRECTED_REQUEST
        );
        // An absolute request target names the host too.
        let absolute = send(None, "GET", "http://evil.example/read", &[]).await;
        assert_eq!(absolute.status(), StatusCode::MISDIRECTED_REQUEST);
    }

    #[tokio::test]
    async fn loopback_names_pass_with_or_without_a_port() {
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.1.2.3:8080",
            "[::1]",
            "[::1]:8080",
        ] {
            let status = status_for_host(guard_for("127.0.0.1:8080", None, &[]), host).await;
            assert_eq!(status, StatusCode::OK, "{host}");
        }
        for host in [
            "evil.example",
            "localhost.evil.example",
            "128.0.0.1",
            "0.0.0.0:8080",
            "",
            "[::2]",
        ] {
            let status = status_for_host(guard_for("127.0.0.1:8080", None, &[]), host).await;
            assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{host:?}");
        }
    }

    #[tokio::test]
    async fn a_missing_host_is_refused_on_http_1_1() {
        let response = through(
            guard_for("127.0.0.1:8080", None, &[]),
            request("GET", "/read", &[]),
        )
        .await;
        assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
        let error = body_json(response).await["error"].as_str().unwrap().to_string();
        assert!(error.starts_with("missing Host header"), "{error}");
        let mut old = request("GET", "/read", &[]);
        *old.version_mut() = Version::HTTP_10;
        let response = through(guard_for("127.0.0.1:8080", None, &[]), old).await;
        assert_eq!(response.status(), StatusCode::OK, "HTTP/1.0 needs no Host");
    }

    #[tokio::test]
    async fn allowed_names_and_the_listen_address_pass() {
        let allowed = ["Dash.Example", "fd00::7"];
        for host in [
            "dash.example",
            "DASH.example:8080",
            "[fd00::7]:8080",
            "192.0.2.7:8080",
            "localhost",
        ] {
            let guard = guard_for("192.0.2.7:8080", Some("s3cret"), &allowed);
            assert_eq!(status_for_host(guard, host).await, StatusCode::OK, "{host}");
        }
        for host in ["evil.example", "dash.example.evil.example", "192.0.2.8"] {
            let guard = guard_for("192.0.2.7:8080", Some("s3cret"), &allowed);
            let status = status_for_host(guard, host).await;
            assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{host}");
        }
        // The check comes first: the right token does not get a foreign host in.
        let guard = guard_for("[::1]:8080", Some("s3cret"), &[]);
        let status = status_for_host(guard, "evil.example").await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    }

    #[tokio::test]
    async fn a_wildcard_address_with_a_token_answers_to_any_host() {
        for listen in ["0.0.0.0:8080", "[::]:8080"] {
            assert_eq!(Hosts::new(listen.parse().unwrap(), true, &[]), Hosts::Any);
            let guard = guard_for(listen, Some("s3cret"), &[]);
            assert_eq!(status_for_host(guard, "dash.example:8080").await, StatusCode::OK);
            // The token is what guards it then.
            let guard = guard_for(listen, Some("s3cret"), &[]);
            let response = through(guard, request("GET", "/read", &[("host", "evil.example")])).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
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
