//! WebSocket handshake checks that explain themselves instead of answering 404.
//!
//! A proxy that does not forward upgrades drops the hop-by-hop `Upgrade` and `Connection`
//! headers (or speaks HTTP/1.0 upstream), so the handshake reaches the app as a plain GET
//! that still carries `Sec-WebSocket-Key`. These pure functions name what is missing,
//! which hops the request passed, and the likely cause; the handlers answer 426 with it.

use std::collections::BTreeMap;

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::Json;
use oneoff_api::v1::{ErrorDetail, HandshakeDiagnosis, HandshakeRefusal};

/// A refused handshake: status, stable code, message, and the facts behind it.
#[derive(Debug, Clone)]
pub struct HandshakeProblem {
    pub status: StatusCode,
    pub code: &'static str,
    /// Value of the `X-Oneoff-Diagnosis` response header.
    pub diagnosis_header: &'static str,
    pub message: String,
    pub missing: Vec<String>,
    pub likely_cause: String,
}

/// The code (`error.code`, and the `reason` label of `/metrics`) of each refused handshake.
pub const UPGRADE_STRIPPED: &str = "websocket_upgrade_stripped";
pub const UPGRADE_IMPOSSIBLE_HTTP10: &str = "websocket_upgrade_impossible_http10";
pub const VERSION_UNSUPPORTED: &str = "websocket_version_unsupported";
pub const WEBSOCKET_REQUIRED: &str = "websocket_required";
/// Our checks passed, but the connection itself cannot be upgraded (HTTP/2 without extended CONNECT).
pub const UPGRADE_UNAVAILABLE: &str = "websocket_upgrade_unavailable";
pub const ORIGIN_REJECTED: &str = "origin_rejected";

/// Every refusal code, in the order `/metrics` lists them.
pub const REFUSAL_CODES: [&str; 6] = [
    UPGRADE_STRIPPED,
    UPGRADE_IMPOSSIBLE_HTTP10,
    VERSION_UNSUPPORTED,
    WEBSOCKET_REQUIRED,
    UPGRADE_UNAVAILABLE,
    ORIGIN_REJECTED,
];

/// Proxy headers reported as hops, in the order shown.
const HOP_HEADERS: [&str; 8] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "via",
    "x-real-ip",
    "cf-ray",
    "x-amzn-trace-id",
];

const STRIPPED_CAUSE: &str =
    "a proxy or load balancer between the client and oneoff does not forward WebSocket upgrades: \
it removed the hop-by-hop Upgrade and Connection headers. Typical culprits: an AWS Classic Load Balancer with an HTTP \
listener (use a TCP listener, an NLB or an ALB), or nginx without `proxy_http_version 1.1; proxy_set_header Upgrade \
$http_upgrade; proxy_set_header Connection $connection_upgrade;` (with the `map $http_upgrade \
$connection_upgrade` of docs/deployment.md)";

const HTTP10_CAUSE: &str = "the request arrived as HTTP/1.0, which cannot upgrade: a proxy speaks HTTP/1.0 to its \
upstream (nginx does by default; set `proxy_http_version 1.1;` and forward Upgrade and Connection)";

pub fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|part| part.trim().eq_ignore_ascii_case(token))
}

/// True when the request is trying to be a WebSocket handshake, complete or not.
pub fn looks_like_handshake(headers: &HeaderMap) -> bool {
    headers.contains_key(header::SEC_WEBSOCKET_KEY) || has_token(headers, header::UPGRADE, "websocket")
}

/// Checks everything RFC 6455 needs from a handshake request; the first problem found wins.
pub fn check(method: &Method, version: Version, headers: &HeaderMap) -> Result<(), HandshakeProblem> {
    let mut missing = Vec::new();
    if !has_token(headers, header::UPGRADE, "websocket") {
        missing.push("Upgrade: websocket".to_string());
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        missing.push("Connection: upgrade".to_string());
    }
    if !headers.contains_key(header::SEC_WEBSOCKET_KEY) {
        missing.push("Sec-WebSocket-Key".to_string());
    }
    if version < Version::HTTP_11 {
        missing.insert(0, "HTTP/1.1".to_string());
        return Err(HandshakeProblem {
            status: StatusCode::UPGRADE_REQUIRED,
            code: UPGRADE_IMPOSSIBLE_HTTP10,
            diagnosis_header: "websocket-http10",
            message: "this WebSocket handshake arrived as HTTP/1.0, which cannot upgrade; use the SSE or long-poll log endpoints, or fix the proxy".into(),
            missing,
            likely_cause: HTTP10_CAUSE.into(),
        });
    }
    let has_key = headers.contains_key(header::SEC_WEBSOCKET_KEY);
    if has_key && !missing.is_empty() {
        return Err(HandshakeProblem {
            status: StatusCode::UPGRADE_REQUIRED,
            code: UPGRADE_STRIPPED,
            diagnosis_header: "websocket-upgrade-stripped",
            message: format!(
                "this WebSocket handshake lost its upgrade headers on the way ({} missing); a proxy does not forward upgrades. Fall back to SSE or long-poll",
                missing.join(", ")
            ),
            missing,
            likely_cause: STRIPPED_CAUSE.into(),
        });
    }
    if !missing.is_empty() || method != Method::GET {
        return Err(HandshakeProblem {
            status: StatusCode::UPGRADE_REQUIRED,
            code: WEBSOCKET_REQUIRED,
            diagnosis_header: "websocket-required",
            message: "this endpoint speaks WebSocket only (GET with an upgrade); use /log/sse or /log for plain HTTP"
                .into(),
            missing,
            likely_cause: "the client did not ask for a WebSocket".into(),
        });
    }
    let version_ok = headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|value| value.as_bytes() == b"13");
    if !version_ok {
        let found = headers.get(header::SEC_WEBSOCKET_VERSION).and_then(|value| value.to_str().ok()).unwrap_or("none");
        return Err(HandshakeProblem {
            status: StatusCode::UPGRADE_REQUIRED,
            code: VERSION_UNSUPPORTED,
            diagnosis_header: "websocket-version-unsupported",
            message: format!(
                "Sec-WebSocket-Version {found} is not supported; this server speaks version 13 (RFC 6455)"
            ),
            missing: vec!["Sec-WebSocket-Version: 13".into()],
            likely_cause: "an outdated WebSocket client, or a proxy that rewrites the version".into(),
        });
    }
    Ok(())
}

/// Rejects a browser `Origin` that is not this server's (cross-site WebSocket hijacking: a
/// WebSocket has no CORS, so a page on any site could otherwise open one with the user's
/// cookies and read the log). With `public_origins` set, the origin must be one of them;
/// without, it must name `own_authority`, the host the browser sent the request to (see
/// `Caller::own_authority`), or the browser must say the request is `same-origin`.
/// Requests without `Origin` come from non-browser clients and pass.
pub fn check_origin(
    headers: &HeaderMap,
    public_origins: &[String],
    own_authority: Option<&str>,
) -> Result<(), HandshakeProblem> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = String::from_utf8_lossy(origin.as_bytes()).trim().trim_end_matches('/').to_ascii_lowercase();
    let refused = |message: String| HandshakeProblem {
        status: StatusCode::FORBIDDEN,
        code: ORIGIN_REJECTED,
        diagnosis_header: "origin-rejected",
        message,
        missing: Vec::new(),
        likely_cause:
            "a page on another site tried to open a stream, or public_origins does not list the URL users open".into(),
    };
    if !public_origins.is_empty() {
        if public_origins.contains(&origin) {
            return Ok(());
        }
        return Err(refused(format!(
            "Origin `{origin}` is not one of this server's public origins ({}); streams are refused to other sites",
            public_origins.join(", ")
        )));
    }
    let fetch_site = headers.get("sec-fetch-site").map(|site| site.as_bytes().eq_ignore_ascii_case(b"same-origin"));
    if fetch_site == Some(true) || same_authority(&origin, own_authority) {
        return Ok(());
    }
    Err(refused(format!(
        "Origin `{origin}` is not this server ({}); streams are refused to other sites. If this is the URL \
         users open (a proxy in front changes the Host header), keep the Host at the proxy or list the URL in \
         [server] public_origins",
        own_authority.unwrap_or("reached without a Host header")
    )))
}

/// DNS rebinding: a page on another site makes its own name resolve to 127.0.0.1, and the
/// browser then treats this server as that site, so the own-origin rule passes and the page
/// reads every answer. A server that listens only on loopback therefore answers only to a
/// `Host` that is an IP address, `localhost` (or a `*.localhost` name), or a host of
/// `public_origins`. A server on another address is reached under names it cannot know.
pub fn check_host(host: Option<&str>, listen: std::net::SocketAddr, public_origins: &[String]) -> Result<(), String> {
    let Some(host) = host.filter(|_| listen.ip().is_loopback()) else { return Ok(()) };
    let name = host_name(host);
    let local = name.parse::<std::net::IpAddr>().is_ok() || name == "localhost" || name.ends_with(".localhost");
    let public = public_origins
        .iter()
        .any(|origin| origin.split_once("://").is_some_and(|(_, authority)| host_name(authority) == name));
    if local || public {
        return Ok(());
    }
    Err(format!(
        "this server listens on {listen} and was reached as `{host}`, a name it does not know: a page on \
         another site may be rebinding its name to this machine. If you open oneoff under this name, list \
         its URL in [server] public_origins (e.g. \"http://{host}\")"
    ))
}

/// The host of `host[:port]` (or `[v6]:port`), lower-cased, without a trailing dot.
fn host_name(authority: &str) -> String {
    let authority = authority.trim();
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|byte| byte.is_ascii_digit()) => host,
            _ => authority,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `origin` (`scheme://host[:port]`) names `authority` (`host[:port]`). The scheme
/// is not compared: TLS usually ends at a proxy, so the app cannot know it; a missing port
/// is the scheme's default.
pub fn same_authority(origin: &str, authority: Option<&str>) -> bool {
    let Some(authority) = authority else { return false };
    let Some((scheme, origin_authority)) = origin.split_once("://") else { return false };
    let default_port = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return false,
    };
    let split = |authority: &str| -> (String, String) {
        // `[::1]:8080`, `host:8080`, `host`
        match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') && port.bytes().all(|b| b.is_ascii_digit()) => {
                (host.to_string(), port.to_string())
            }
            _ => (authority.to_string(), default_port.to_string()),
        }
    };
    split(origin_authority) == split(authority)
}

/// A handshake that passed our checks but whose connection cannot be upgraded (HTTP/2
/// without extended CONNECT, say): still a diagnosis, never a bare status.
pub fn upgrade_unavailable(rejection: &impl std::fmt::Display) -> HandshakeProblem {
    HandshakeProblem {
        status: StatusCode::UPGRADE_REQUIRED,
        code: UPGRADE_UNAVAILABLE,
        diagnosis_header: "websocket-upgrade-unavailable",
        message: format!("the connection cannot be upgraded to a WebSocket: {rejection}"),
        missing: Vec::new(),
        likely_cause: "the request reached the server over a protocol or proxy that cannot upgrade".into(),
    }
}

/// The answer to a refused handshake: the problem's status, the diagnosis as JSON, the
/// `X-Oneoff-Diagnosis` header, and on a 426 the headers that say what to upgrade to.
pub fn refusal_response(problem: &HandshakeProblem, diagnosis: HandshakeDiagnosis) -> Response {
    let body = HandshakeRefusal {
        error: ErrorDetail { code: problem.code.into(), message: problem.message.clone(), fields: Vec::new() },
        diagnosis,
    };
    let mut response = (problem.status, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert("x-oneoff-diagnosis", HeaderValue::from_static(problem.diagnosis_header));
    if problem.status == StatusCode::UPGRADE_REQUIRED {
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    }
    response
}

/// The facts behind a problem, for the response body and the log.
pub fn diagnosis(
    problem: &HandshakeProblem,
    version: Version,
    headers: &HeaderMap,
    fallbacks: Vec<String>,
) -> HandshakeDiagnosis {
    let text = |name: &header::HeaderName| {
        let values: Vec<&str> = headers.get_all(name).iter().filter_map(|value| value.to_str().ok()).collect();
        (!values.is_empty()).then(|| values.join(", "))
    };
    let mut received = BTreeMap::new();
    for name in [header::UPGRADE, header::CONNECTION, header::SEC_WEBSOCKET_VERSION, header::ORIGIN, header::HOST] {
        received.insert(name.to_string(), text(&name).unwrap_or_else(|| "(absent)".into()));
    }
    let hops = HOP_HEADERS
        .iter()
        .filter_map(|name| {
            let name = header::HeaderName::from_static(name);
            text(&name).map(|value| (name.to_string(), value))
        })
        .collect();
    HandshakeDiagnosis {
        missing: problem.missing.clone(),
        http_version: format!("{version:?}"),
        received,
        hops,
        likely_cause: problem.likely_cause.clone(),
        fallbacks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(header::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        map
    }

    const KEY: (&str, &str) = ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    const VERSION: (&str, &str) = ("sec-websocket-version", "13");

    #[test]
    fn a_complete_handshake_passes() {
        let ok = headers(&[("upgrade", "WebSocket"), ("connection", "keep-alive, Upgrade"), KEY, VERSION]);
        assert!(check(&Method::GET, Version::HTTP_11, &ok).is_ok());
    }

    #[test]
    fn stripped_upgrade_headers_are_named() {
        let stripped =
            headers(&[("connection", "keep-alive"), KEY, VERSION, ("x-forwarded-for", "203.0.113.9, 10.0.0.2")]);
        let problem = check(&Method::GET, Version::HTTP_11, &stripped).unwrap_err();
        assert_eq!((problem.status, problem.code), (StatusCode::UPGRADE_REQUIRED, "websocket_upgrade_stripped"));
        assert_eq!(problem.missing, vec!["Upgrade: websocket", "Connection: upgrade"]);
        let facts = diagnosis(&problem, Version::HTTP_11, &stripped, vec![]);
        assert_eq!(facts.hops["x-forwarded-for"], "203.0.113.9, 10.0.0.2");
        assert_eq!(facts.received["upgrade"], "(absent)");
        assert!(facts.likely_cause.contains("Classic Load Balancer"));
    }

    #[test]
    fn http10_cannot_upgrade() {
        let old = headers(&[KEY, VERSION]);
        let problem = check(&Method::GET, Version::HTTP_10, &old).unwrap_err();
        assert_eq!(problem.code, "websocket_upgrade_impossible_http10");
        assert!(problem.likely_cause.contains("proxy_http_version 1.1"));
    }

    #[test]
    fn other_versions_and_plain_gets_get_their_own_errors() {
        let v8 = headers(&[("upgrade", "websocket"), ("connection", "upgrade"), KEY, ("sec-websocket-version", "8")]);
        assert_eq!(check(&Method::GET, Version::HTTP_11, &v8).unwrap_err().code, "websocket_version_unsupported");
        assert_eq!(check(&Method::GET, Version::HTTP_11, &HeaderMap::new()).unwrap_err().code, "websocket_required");
    }

    #[test]
    fn origins_are_compared_with_the_configured_list() {
        let allowed = vec!["https://oneoff.example.com".to_string()];
        let own = Some("oneoff.example.com");
        assert!(check_origin(&headers(&[("origin", "https://oneoff.example.com")]), &allowed, None).is_ok());
        assert!(check_origin(&headers(&[("origin", "HTTPS://ONEOFF.EXAMPLE.COM/")]), &allowed, None).is_ok());
        assert!(check_origin(&HeaderMap::new(), &allowed, None).is_ok(), "non-browser clients send no Origin");
        let evil = check_origin(&headers(&[("origin", "https://evil.example")]), &allowed, own).unwrap_err();
        assert_eq!((evil.status, evil.code), (StatusCode::FORBIDDEN, "origin_rejected"));
    }

    #[test]
    fn a_loopback_server_answers_only_to_names_it_knows() {
        let loopback: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let public = vec!["https://oneoff.example.com".to_string()];
        for host in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST.", "app.localhost:8080", "[::1]:8080", "10.0.0.5"] {
            assert!(check_host(Some(host), loopback, &[]).is_ok(), "{host}");
        }
        assert!(check_host(Some("oneoff.example.com:443"), loopback, &public).is_ok());
        assert!(check_host(None, loopback, &[]).is_ok(), "HTTP/1.0 without Host is no browser");
        let rebound = check_host(Some("rebind.evil.example:8080"), loopback, &public).unwrap_err();
        assert!(rebound.contains("public_origins") && rebound.contains("rebind.evil.example"), "{rebound}");
        assert!(check_host(Some("localhost.evil.example"), loopback, &[]).is_err());
        let anywhere: std::net::SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(
            check_host(Some("oneoff.internal"), anywhere, &[]).is_ok(),
            "names of a server on the network are unknowable"
        );
    }

    #[test]
    fn without_a_list_only_the_servers_own_origin_may_open_a_stream() {
        let own = Some("oneoff.example.com");
        assert!(check_origin(&headers(&[("origin", "https://oneoff.example.com")]), &[], own).is_ok());
        assert!(check_origin(&headers(&[("origin", "http://127.0.0.1:8080")]), &[], Some("127.0.0.1:8080")).is_ok());
        assert!(check_origin(&HeaderMap::new(), &[], own).is_ok(), "non-browser clients send no Origin");
        let same_origin = headers(&[("origin", "https://ui.example"), ("sec-fetch-site", "same-origin")]);
        assert!(check_origin(&same_origin, &[], own).is_ok(), "the browser vouches for its own page");
        let evil = check_origin(&headers(&[("origin", "https://evil.example")]), &[], own).unwrap_err();
        assert_eq!((evil.status, evil.code), (StatusCode::FORBIDDEN, "origin_rejected"));
        assert!(evil.message.contains("public_origins"), "{}", evil.message);
        let cross = headers(&[("origin", "https://evil.example"), ("sec-fetch-site", "cross-site")]);
        assert!(check_origin(&cross, &[], own).is_err());
        assert!(check_origin(&headers(&[("origin", "null")]), &[], own).is_err());
        assert!(check_origin(&headers(&[("origin", "https://oneoff.example.com:8443")]), &[], own).is_err());
    }

    #[test]
    fn every_refusal_is_counted_under_its_own_code() {
        let requests = [
            headers(&[KEY, VERSION]),
            headers(&[("upgrade", "websocket"), ("connection", "upgrade"), KEY, ("sec-websocket-version", "8")]),
            HeaderMap::new(),
        ];
        let mut codes: Vec<&str> =
            requests.iter().map(|request| check(&Method::GET, Version::HTTP_11, request).unwrap_err().code).collect();
        codes.push(check(&Method::GET, Version::HTTP_10, &requests[0]).unwrap_err().code);
        codes.push(check_origin(&headers(&[("origin", "https://evil.example")]), &[], None).unwrap_err().code);
        for code in codes {
            assert!(REFUSAL_CODES.contains(&code), "`{code}` is not in REFUSAL_CODES, so /metrics would not show it");
        }
    }
}
