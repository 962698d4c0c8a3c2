//! Identity under attack: the forgeries and tricks of the outside attack on the landed server
//! (issue 10), each performed against a real server. Assertions signed with local keys and
//! verified through a loopback JWKS or ALB key server; cross-site form posts; doubled and
//! malformed identity headers; tokens that try to outlive their parent; hidden jobs'
//! runs; `/debug/echo` as a credential oracle.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::StatusCode;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::jwt::{alb_key_server, alb_token, base64url, jwks_server, new_alb_key, new_key, now, sign, Key, ARN, IDP};
use crate::support::{cli_command, stderr, stdout, TestServer};

/// A request body and its content type.
type Body<'a> = (&'a str, String);

fn json_body(value: Value) -> Option<Body<'static>> {
    Some(("application/json", value.to_string()))
}

/// A request with the given headers (each appended, so a name may repeat).
async fn send(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &[u8])],
    body: Option<Body<'_>>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", server.url));
    for (name, value) in headers {
        request =
            request.header(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_bytes(value).unwrap());
    }
    if let Some((content_type, body)) = body {
        request = request.header("content-type", content_type).body(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// `GET /api/v1/whoami` with one header.
async fn whoami_with(server: &TestServer, header: &str, value: String) -> (StatusCode, Value) {
    send(server, reqwest::Method::GET, "/api/v1/whoami", &[(header, value.as_bytes())], None).await
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

/// An ES256 JWT with any header, signed as a JWKS issuer would (jsonwebtoken cannot write `crit`).
fn sign_with_header(key: &Key, header: &Value, claims: &Value) -> String {
    let rng = SystemRandom::new();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.pkcs8, &rng).unwrap();
    let signed = format!("{}.{}", base64url(header.to_string().as_bytes()), base64url(claims.to_string().as_bytes()));
    let signature = pair.sign(&rng, signed.as_bytes()).unwrap();
    format!("{signed}.{}", base64url(signature.as_ref()))
}

// ---------------------------------------------------------------------------------------
// Item 1: a configured audience or issuer must be present, not only match when present.

#[tokio::test]
async fn jwt_assertions_missing_the_configured_audience_or_issuer_are_refused() {
    let key = new_key("k1");
    let url = jwks_server(Arc::new(Mutex::new(vec![key.jwk.clone()]))).await;
    let config = format!(
        "[auth]\nadmins = {{ users = [\"admin\"] }}\n[[auth.jwt]]\nkind = \"generic\"\nheader = \"X-Test-Assertion\"\nalgorithms = [\"ES256\"]\njwks_url = \"{url}\"\nissuer = \"https://idp.example.com\"\naudience = \"oneoff\"\n"
    );
    let server = TestServer::start(&config).await;
    let whoami = |assertion: String| whoami_with(&server, "x-test-assertion", assertion);
    let good = json!({ "sub": "admin", "iss": "https://idp.example.com", "aud": "oneoff", "exp": now() + 300 });
    let (status, me) = whoami(sign(&key, good.clone())).await;
    assert_eq!(
        (status, me["user"].as_str(), me["admin"].as_bool()),
        (StatusCode::OK, Some("admin"), Some(true)),
        "{me}"
    );
    // `aud` as an array holding ours is fine; so is a fractional `exp`.
    let mut listed = good.clone();
    listed["aud"] = json!(["other", "oneoff"]);
    listed["exp"] = json!(now() as f64 + 300.5);
    assert_eq!(whoami(sign(&key, listed)).await.0, StatusCode::OK);
    // The raw signer (needed for `crit`) makes tokens the server accepts, so its refusals below mean something.
    let plain_header = json!({ "alg": "ES256", "typ": "JWT", "kid": "k1" });
    assert_eq!(whoami(sign_with_header(&key, &plain_header, &good)).await.0, StatusCode::OK);

    let without = |names: &[&str]| {
        let mut claims = good.clone();
        for name in names {
            claims.as_object_mut().unwrap().remove(*name);
        }
        claims
    };
    let with = |name: &str, value: Value| {
        let mut claims = good.clone();
        claims[name] = value;
        claims
    };
    let mut refused: Vec<(String, &str)> = vec![
        (sign(&key, without(&["aud", "iss"])), "names no"),
        (sign(&key, without(&["aud"])), "names no audience (`aud`); this server requires `oneoff`"),
        (sign(&key, without(&["iss"])), "names no issuer (`iss`); this server requires `https://idp.example.com`"),
        (sign(&key, with("aud", json!(["other", "another"]))), "another audience"),
        (sign(&key, with("aud", json!(["oneoff", 7]))), "`aud` must be a string or a list of strings"),
        (sign(&key, with("iss", json!(["https://idp.example.com"]))), "`iss` is a list"),
        (sign(&key, with("iss", json!(["https://idp.example.com", "https://evil.example"]))), "`iss` is a list"),
        (sign(&key, with("exp", json!((now() + 300).to_string()))), "`exp` must be a number of seconds"),
        (sign(&key, with("exp", Value::Null)), "`exp` must be a number of seconds"),
        (sign(&key, with("nbf", json!("soon"))), "`nbf` must be a number of seconds"),
        (sign(&key, without(&["exp"])), "has no expiry"),
    ];
    let critical = json!({ "alg": "ES256", "typ": "JWT", "kid": "k1", "crit": ["exp-policy"], "exp-policy": "lax" });
    refused.push((sign_with_header(&key, &critical, &good), "does not understand (`crit`: exp-policy)"));
    let odd_critical = json!({ "alg": "ES256", "typ": "JWT", "kid": "k1", "crit": "b64" });
    refused.push((sign_with_header(&key, &odd_critical, &good), "`crit` header is not a list"));
    for (assertion, reason) in refused {
        let (status, body) = whoami(assertion).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{reason}: {body}");
        assert!(message(&body).starts_with("X-Test-Assertion refused: "), "{body}");
        assert!(message(&body).contains(reason), "{reason}: {body}");
    }
}

#[tokio::test]
async fn alb_assertions_with_malformed_claims_or_critical_headers_are_refused() {
    let key = new_alb_key("6ee0dca1-5f94-4a5b-a4c3-2b8a2b7b1a55");
    let key_url =
        alb_key_server(HashMap::from([(key.kid.clone(), key.pem.clone())]), Arc::new(AtomicUsize::new(0))).await;
    let config = format!(
        "[auth]\nadmins = {{ users = [\"alice@example.com\"] }}\n[[auth.jwt]]\nkind = \"alb\"\nsigner_arn = \"{ARN}\"\nkey_url = \"{key_url}\"\nissuer = \"{IDP}\"\n"
    );
    let server = TestServer::start(&config).await;
    let whoami = |data: String| whoami_with(&server, "x-amzn-oidc-data", data);
    let header = json!({ "typ": "JWT", "kid": key.kid, "alg": "ES256", "iss": IDP, "client": "c", "signer": ARN, "exp": now() + 120 });
    let payload = json!({ "sub": "23d498b2", "email": "alice@example.com", "exp": now() + 120, "iss": IDP });
    let (status, me) = whoami(alb_token(&key, &header, &payload, true)).await;
    assert_eq!((status, me["admin"].as_bool()), (StatusCode::OK, Some(true)), "{me}");
    // The payload need not repeat `iss`: the header's is required and checked.
    let mut bare = payload.clone();
    bare.as_object_mut().unwrap().remove("iss");
    assert_eq!(whoami(alb_token(&key, &header, &bare, true)).await.0, StatusCode::OK);

    let edited = |value: &Value, name: &str, new: Option<Value>| {
        let mut value = value.clone();
        match new {
            Some(new) => value[name] = new,
            None => drop(value.as_object_mut().unwrap().remove(name)),
        }
        value
    };
    let refused: Vec<(String, &str)> = vec![
        (alb_token(&key, &edited(&header, "iss", None), &payload, true), "names no issuer"),
        (alb_token(&key, &edited(&header, "iss", Some(json!([IDP]))), &payload, true), "`iss` is a list"),
        (
            alb_token(&key, &header, &edited(&payload, "iss", Some(json!([IDP, "https://evil"]))), true),
            "`iss` is a list",
        ),
        (alb_token(&key, &header, &edited(&payload, "iss", Some(json!("https://evil"))), true), "another issuer"),
        (alb_token(&key, &edited(&header, "exp", Some(json!("9999999999"))), &payload, true), "`exp` must be a number"),
        (alb_token(&key, &header, &edited(&payload, "exp", Some(json!("1"))), true), "`exp` must be a number"),
        (
            alb_token(&key, &header, &edited(&payload, "nbf", Some(json!({ "later": true }))), true),
            "`nbf` must be a number",
        ),
        (alb_token(&key, &edited(&header, "crit", Some(json!(["signer-v2"]))), &payload, true), "(`crit`: signer-v2)"),
    ];
    for (assertion, reason) in refused {
        let (status, body) = whoami(assertion).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{reason}: {body}");
        assert!(message(&body).contains(reason), "{reason}: {body}");
    }
}

// ---------------------------------------------------------------------------------------
// Item 6: cross-site state changes with the default config (no public_origins).

const SLEEPER: &str = "[[job]]\nname = \"sleeper\"\ncommand = [\"sleep\", \"60\"]\n";

#[tokio::test]
async fn cross_site_form_posts_change_nothing_with_the_default_config() {
    let server = TestServer::start(SLEEPER).await;
    let id = server.start_run("sleeper", json!({})).await;
    server.wait_status(id, |status| status == "running").await;
    let (status, created) = server.post("/api/v1/tokens", json!({ "name": "kept" })).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token_id = created["info"]["id"].as_i64().unwrap();

    let form = || Some(("application/x-www-form-urlencoded", "job=sleeper&name=evil".to_string()));
    let text_json = || Some(("text/plain", json!({ "job": "sleeper", "name": "evil" }).to_string()));
    let attacks: Vec<(reqwest::Method, String, Option<Body>)> = vec![
        (reqwest::Method::POST, format!("/api/v1/runs/{id}/cancel"), None),
        (reqwest::Method::POST, format!("/api/v1/runs/{id}/cancel"), form()),
        (reqwest::Method::POST, "/api/v1/runs".into(), form()),
        (reqwest::Method::POST, "/api/v1/runs".into(), text_json()),
        (reqwest::Method::POST, format!("/api/v1/runs/{id}/log/ticket"), None),
        (reqwest::Method::POST, "/api/v1/tokens".into(), text_json()),
        (reqwest::Method::DELETE, format!("/api/v1/tokens/{token_id}"), None),
    ];
    let evil_origin: &[(&str, &[u8])] = &[("origin", b"https://evil.example")];
    let evil_fetch: &[(&str, &[u8])] = &[("origin", b"https://evil.example"), ("sec-fetch-site", b"cross-site")];
    let fetch_only: &[(&str, &[u8])] = &[("sec-fetch-site", b"cross-site")];
    let sibling: &[(&str, &[u8])] = &[("sec-fetch-site", b"same-site"), ("origin", b"https://evil.localhost")];
    let null_origin: &[(&str, &[u8])] = &[("origin", b"null")];
    for (method, path, body) in &attacks {
        for headers in [evil_origin, evil_fetch, fetch_only, sibling, null_origin] {
            let (status, answer) = send(&server, method.clone(), path, headers, body.clone()).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} {headers:?}: {answer}");
            assert_eq!(answer["error"]["code"], "cross_site_request", "{answer}");
            assert!(message(&answer).contains("public_origins"), "the message names the fix: {answer}");
        }
    }
    assert_eq!(server.run_json(id).await["status"], "running", "the run was not cancelled");
    let (_, runs) = server.get("/api/v1/runs").await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "no run was started: {runs}");
    let (_, tokens) = server.get("/api/v1/tokens").await;
    assert_eq!(tokens["tokens"].as_array().unwrap().len(), 1, "no token was made: {tokens}");
    assert!(tokens["tokens"][0]["revoked_at"].is_null(), "the token was not revoked: {tokens}");

    // Our own page (what web/app.js sends, same origin) still works, as do old browsers
    // whose Origin names this host, and the CLI (neither header).
    let own = server.url.clone();
    let page: &[(&str, &[u8])] = &[("origin", own.as_bytes()), ("sec-fetch-site", b"same-origin")];
    let (status, body) =
        send(&server, reqwest::Method::POST, &format!("/api/v1/runs/{id}/log/ticket"), page, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let old_browser: &[(&str, &[u8])] = &[("origin", own.as_bytes())];
    let page_body = json_body(json!({ "name": "from-the-page" }));
    assert_eq!(
        send(&server, reqwest::Method::POST, "/api/v1/tokens", old_browser, page_body).await.0,
        StatusCode::CREATED
    );
    let output = server.cli(&["cancel", &id.to_string()]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.wait_final(id).await["status"], "cancelled");
}

/// DNS rebinding: a page on another site resolves its own name to this machine, so the
/// browser sends `Host` and `Origin` of that name and the request looks same-origin. A
/// server listening on loopback answers only to names it knows.
#[tokio::test]
async fn a_loopback_server_refuses_a_rebound_host_name() {
    let server = TestServer::start(SLEEPER).await;
    let port = server.url.rsplit(':').next().unwrap().to_string();
    let host = format!("rebind.evil.example:{port}");
    let origin = format!("http://{host}");
    let rebound: &[(&str, &[u8])] =
        &[("host", host.as_bytes()), ("origin", origin.as_bytes()), ("sec-fetch-site", b"same-origin")];
    let start = json_body(json!({ "job": "sleeper" }));
    for (method, path, body) in [
        (reqwest::Method::POST, "/api/v1/runs", start),
        (reqwest::Method::GET, "/api/v1/runs", None),
        (reqwest::Method::GET, "/api/v1/whoami", None),
        (reqwest::Method::GET, "/", None),
    ] {
        let (status, answer) = send(&server, method.clone(), path, rebound, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "unknown_host", "{answer}");
        assert!(message(&answer).contains("public_origins"), "the message names the fix: {answer}");
    }
    let (_, runs) = server.get("/api/v1/runs").await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 0, "no run was started: {runs}");

    let mut socket = server.ws_url("/api/v1/probe/ws").into_client_request().unwrap();
    socket.headers_mut().insert("host", host.parse().unwrap());
    socket.headers_mut().insert("origin", origin.parse().unwrap());
    match tokio_tungstenite::connect_async(socket).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("a rebound page opened a WebSocket: {other:?}"),
    }

    // Names it knows: loopback addresses, localhost, and the hosts of public_origins.
    for known in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let (status, _) =
            send(&server, reqwest::Method::GET, "/api/v1/whoami", &[("host", known.as_bytes())], None).await;
        assert_eq!(status, StatusCode::OK, "{known}");
    }
    let listed = TestServer::start_with(SLEEPER, &format!("public_origins = [\"{origin}\"]")).await;
    let (status, _) = send(&listed, reqwest::Method::GET, "/api/v1/whoami", &[("host", host.as_bytes())], None).await;
    assert_eq!(status, StatusCode::OK, "a name listed in public_origins is this server's");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_own_origin_is_the_forwarded_host() {
    let auth = "[auth]\nadmins = { users = [\"root\"] }\n[auth.trusted_headers]\ntrusted_cidrs = [\"127.0.0.1/32\"]\n";
    let server = TestServer::start(&format!("{auth}{SLEEPER}")).await;
    let body = || json_body(json!({ "job": "sleeper" }));
    // The proxy rewrote Host to the upstream's address and said what the browser used.
    let forwarded: &[(&str, &[u8])] = &[
        ("x-forwarded-user", b"root"),
        ("x-forwarded-host", b"oneoff.example.com"),
        ("origin", b"https://oneoff.example.com"),
    ];
    let (status, run) = send(&server, reqwest::Method::POST, "/api/v1/runs", forwarded, body()).await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let cancel = format!("/api/v1/runs/{}/cancel", run["id"]);
    let evil: &[(&str, &[u8])] = &[
        ("x-forwarded-user", b"root"),
        ("x-forwarded-host", b"oneoff.example.com"),
        ("origin", b"https://evil.example"),
    ];
    let (status, body) = send(&server, reqwest::Method::POST, &cancel, evil, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(message(&body).contains("this server is oneoff.example.com"), "{body}");
    let (status, body) = send(&server, reqwest::Method::POST, &cancel, forwarded, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // From a peer that is not trusted, X-Forwarded-Host is not believed.
    let untrusted = auth.replace("127.0.0.1/32", "10.0.0.0/8").replace("[auth]\n", "[auth]\nanonymous = true\n");
    let server = TestServer::start(&format!("{untrusted}{SLEEPER}")).await;
    let claimed: &[(&str, &[u8])] = &[("x-forwarded-host", b"evil.example"), ("origin", b"https://evil.example")];
    let (status, body) =
        send(&server, reqwest::Method::POST, "/api/v1/runs", claimed, json_body(json!({ "job": "sleeper" }))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("cross_site_request")), "{body}");
}

// ---------------------------------------------------------------------------------------
// Item 7: repeated and malformed identity headers.

const TRUSTED: &str =
    "[auth]\nadmins = { users = [\"root\"] }\n[auth.trusted_headers]\ntrusted_cidrs = [\"127.0.0.1/32\"]\n";

#[tokio::test]
async fn repeated_or_malformed_identity_headers_are_refused_not_resolved() {
    let server = TestServer::start(TRUSTED).await;
    let whoami = |headers: Vec<(&'static str, Vec<u8>)>| {
        let server = &server;
        async move {
            let headers: Vec<(&str, &[u8])> = headers.iter().map(|(name, value)| (*name, value.as_slice())).collect();
            send(server, reqwest::Method::GET, "/api/v1/whoami", &headers, None).await
        }
    };
    // A proxy that appends: the client's value first, the proxy's second.
    for (name, header) in [
        ("x-forwarded-user", "X-Forwarded-User"),
        ("x-forwarded-groups", "X-Forwarded-Groups"),
        ("x-forwarded-email", "X-Forwarded-Email"),
    ] {
        let mut headers =
            vec![("x-forwarded-user", b"root".to_vec()), (name, b"root".to_vec()), (name, b"mallory".to_vec())];
        if name == "x-forwarded-user" {
            headers.remove(0);
        }
        let (status, body) = whoami(headers).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("repeated_identity_header")),
            "{body}"
        );
        assert!(message(&body).contains(&format!("the {header} header was sent more than once")), "{body}");
    }
    let (status, body) =
        whoami(vec![("authorization", b"Bearer oneoff_a".to_vec()), ("authorization", b"Bearer oneoff_b".to_vec())])
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(message(&body).contains("the Authorization header was sent more than once"), "{body}");

    // A non-ASCII credential is refused, not skipped in favour of the proxy's user header.
    let (status, body) =
        whoami(vec![("authorization", "Bearer oneoff_é".as_bytes().to_vec()), ("x-forwarded-user", b"root".to_vec())])
            .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(message(&body).contains("Authorization refused: it holds bytes that are not ASCII"), "{body}");

    // UTF-8 names are names; bytes that are not UTF-8 are a clear 400, never "absent".
    let (status, me) = whoami(vec![
        ("x-forwarded-user", "José".as_bytes().to_vec()),
        ("x-forwarded-groups", "équipe, ops".as_bytes().to_vec()),
    ])
    .await;
    assert_eq!(
        (status, me["user"].as_str(), me["groups"].clone()),
        (StatusCode::OK, Some("José"), json!(["équipe", "ops"])),
        "{me}"
    );
    let (status, body) = whoami(vec![("x-forwarded-user", b"jos\xe9".to_vec())]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_identity_header")),
        "{body}"
    );
    assert!(message(&body).contains("X-Forwarded-User header is not UTF-8"), "{body}");
}

#[tokio::test]
async fn a_malformed_assertion_is_refused_not_ignored_for_the_proxy_headers() {
    let key = new_key("k1");
    let url = jwks_server(Arc::new(Mutex::new(vec![key.jwk.clone()]))).await;
    let config = format!("{TRUSTED}[[auth.jwt]]\nkind = \"pomerium\"\njwks_url = \"{url}\"\n");
    let server = TestServer::start(&config).await;
    let assertion = sign(&key, json!({ "email": "alice@example.com", "exp": now() + 300 }));
    let mut broken = assertion.clone().into_bytes();
    broken.extend("é".as_bytes());
    let headers: &[(&str, &[u8])] = &[("x-pomerium-jwt-assertion", &broken), ("x-forwarded-user", b"root")];
    let (status, body) = send(&server, reqwest::Method::GET, "/api/v1/whoami", headers, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(message(&body).contains("X-Pomerium-Jwt-Assertion refused: it holds bytes that are not ASCII"), "{body}");
    let twice: &[(&str, &[u8])] =
        &[("x-pomerium-jwt-assertion", assertion.as_bytes()), ("x-pomerium-jwt-assertion", b"forged")];
    let (status, body) = send(&server, reqwest::Method::GET, "/api/v1/whoami", twice, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("repeated_identity_header")),
        "{body}"
    );
}

// ---------------------------------------------------------------------------------------
// Item 8: a token cannot outlive the token it was made with.

async fn with_token(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let bearer = format!("Bearer {token}");
    let body = body.and_then(json_body);
    send(server, method, path, &[("authorization", bearer.as_bytes())], body).await
}

#[tokio::test]
async fn tokens_made_with_a_token_expire_and_are_revoked_with_it() {
    let server = TestServer::start(TRUSTED).await;
    let alice: &[(&str, &[u8])] = &[("x-forwarded-user", b"alice")];
    let (status, short) = send(
        &server,
        reqwest::Method::POST,
        "/api/v1/tokens",
        alice,
        json_body(json!({ "name": "short", "expires_in": "60s" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{short}");
    let short_token = short["token"].as_str().unwrap().to_string();
    let short_expiry = short["info"]["expires_at"].as_str().unwrap().to_string();
    assert!(short["info"]["parent_id"].is_null(), "made through SSO: no parent");

    // No expiry asked, or a year: both end with the parent.
    for ask in [json!({ "name": "forever" }), json!({ "name": "a-year", "expires_in": "1y" })] {
        let (status, child) =
            with_token(&server, reqwest::Method::POST, "/api/v1/tokens", &short_token, Some(ask)).await;
        assert_eq!(status, StatusCode::CREATED, "{child}");
        assert_eq!(child["info"]["expires_at"].as_str(), Some(short_expiry.as_str()), "{child}");
        assert_eq!(child["info"]["parent_id"], short["info"]["id"]);
    }
    let (status, child) = with_token(
        &server,
        reqwest::Method::POST,
        "/api/v1/tokens",
        &short_token,
        Some(json!({ "name": "child", "expires_in": "30s" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{child}");
    assert!(
        child["info"]["expires_at"].as_str().unwrap() < short_expiry.as_str(),
        "a shorter lifetime is kept: {child}"
    );
    let child_token = child["token"].as_str().unwrap().to_string();
    let (status, grandchild) = with_token(
        &server,
        reqwest::Method::POST,
        "/api/v1/tokens",
        &child_token,
        Some(json!({ "name": "grandchild" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{grandchild}");
    let grandchild_token = grandchild["token"].as_str().unwrap().to_string();
    assert_eq!(
        with_token(&server, reqwest::Method::GET, "/api/v1/whoami", &grandchild_token, None).await.0,
        StatusCode::OK
    );

    // Revoking the parent revokes the whole family.
    let (status, revoked) =
        send(&server, reqwest::Method::DELETE, &format!("/api/v1/tokens/{}", short["info"]["id"]), alice, None).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    for token in [&short_token, &child_token, &grandchild_token] {
        let (status, body) = with_token(&server, reqwest::Method::GET, "/api/v1/whoami", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(message(&body).contains("was revoked"), "{body}");
    }
    let (_, list) = send(&server, reqwest::Method::GET, "/api/v1/tokens", alice, None).await;
    let tokens = list["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 5);
    assert!(tokens.iter().all(|token| token["revoked_at"].is_string()), "{list}");
    let root: &[(&str, &[u8])] = &[("x-forwarded-user", b"root")];
    let (_, audit) = send(&server, reqwest::Method::GET, "/api/v1/audit?action=token.revoke", root, None).await;
    assert_eq!(audit["records"][0]["detail"]["also_revoked"].as_array().unwrap().len(), 4, "{audit}");
}

/// Whose token ids exist is not another user's to learn: revoking someone else's token is
/// answered exactly as a token that does not exist, and the attempt is recorded.
#[tokio::test]
async fn revoking_another_users_token_answers_as_for_no_token() {
    let server = TestServer::start(&format!("{TRUSTED}{SLEEPER}")).await;
    let alice: &[(&str, &[u8])] = &[("x-forwarded-user", b"alice")];
    let bob: &[(&str, &[u8])] = &[("x-forwarded-user", b"bob")];
    let (status, made) =
        send(&server, reqwest::Method::POST, "/api/v1/tokens", alice, json_body(json!({ "name": "a" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["info"]["id"].as_i64().unwrap();
    let (status, theirs) = send(&server, reqwest::Method::DELETE, &format!("/api/v1/tokens/{id}"), bob, None).await;
    let (missing_status, missing) = send(&server, reqwest::Method::DELETE, "/api/v1/tokens/999", bob, None).await;
    assert_eq!((status, missing_status), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND), "{theirs} {missing}");
    assert_eq!(message(&theirs), format!("no token {id}"));
    assert_eq!(message(&missing), "no token 999");
    let (_, list) = send(&server, reqwest::Method::GET, "/api/v1/tokens", alice, None).await;
    assert!(list["tokens"][0]["revoked_at"].is_null(), "alice's token still works: {list}");
    let root: &[(&str, &[u8])] = &[("x-forwarded-user", b"root")];
    let (_, audit) = send(&server, reqwest::Method::GET, "/api/v1/audit?action=denied.token.revoke", root, None).await;
    assert_eq!(audit["records"][0]["actor"], "bob", "{audit}");
}

/// An API token comes before a signed assertion: a bad one is refused, never set aside for
/// the assertion sent beside it.
#[tokio::test]
async fn a_bad_api_token_is_refused_even_beside_a_good_assertion() {
    let key = new_key("k1");
    let url = jwks_server(Arc::new(Mutex::new(vec![key.jwk.clone()]))).await;
    let config = format!(
        "[auth]\nanonymous = false\n[[auth.jwt]]\nkind = \"generic\"\nheader = \"X-Test-Assertion\"\nalgorithms = [\"ES256\"]\njwks_url = \"{url}\"\nissuer = \"https://idp.example.com\"\naudience = \"oneoff\"\n{SLEEPER}"
    );
    let server = TestServer::start(&config).await;
    let claims = json!({ "sub": "carol", "iss": "https://idp.example.com", "aud": "oneoff", "exp": now() + 300 });
    let assertion = sign(&key, claims);
    let good: &[(&str, &[u8])] = &[("x-test-assertion", assertion.as_bytes())];
    assert_eq!(send(&server, reqwest::Method::GET, "/api/v1/whoami", good, None).await.0, StatusCode::OK);
    let bogus = format!("Bearer oneoff_{}", "0".repeat(64));
    let both: &[(&str, &[u8])] = &[("x-test-assertion", assertion.as_bytes()), ("authorization", bogus.as_bytes())];
    let (status, body) = send(&server, reqwest::Method::GET, "/api/v1/whoami", both, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

// ---------------------------------------------------------------------------------------
// Low: hidden jobs' runs, /debug/echo, `token create --config` with ONEOFF_DATA_DIR.

#[tokio::test]
async fn runs_of_hidden_jobs_are_404_and_do_not_name_the_job() {
    let config = format!("{TRUSTED}[[job]]\nname = \"private\"\ncommand = [\"sleep\", \"60\"]\nallow_run = {{ users = [\"alice\"] }}\nallow_view = {{ users = [\"alice\"] }}\n");
    let server = TestServer::start(&config).await;
    let alice: &[(&str, &[u8])] = &[("x-forwarded-user", b"alice")];
    let (status, run) =
        send(&server, reqwest::Method::POST, "/api/v1/runs", alice, json_body(json!({ "job": "private" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let id = run["id"].as_i64().unwrap();
    let mallory: &[(&str, &[u8])] = &[("x-forwarded-user", b"mallory")];
    let missing = id + 1000;
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/runs/{}"),
        (reqwest::Method::GET, "/api/v1/runs/{}/log"),
        (reqwest::Method::GET, "/api/v1/runs/{}/log.txt"),
        (reqwest::Method::GET, "/api/v1/runs/{}/log/sse"),
        (reqwest::Method::POST, "/api/v1/runs/{}/cancel"),
        (reqwest::Method::POST, "/api/v1/runs/{}/log/ticket"),
    ] {
        let (status, body) = send(&server, method.clone(), &path.replace("{}", &id.to_string()), mallory, None).await;
        let (absent_status, absent) =
            send(&server, method, &path.replace("{}", &missing.to_string()), mallory, None).await;
        assert_eq!((status, absent_status), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND), "{path}: {body}");
        assert!(!body.to_string().contains("private"), "{path}: {body}");
        assert_eq!(
            message(&body).replace(&id.to_string(), "N"),
            message(&absent).replace(&missing.to_string(), "N"),
            "{path}: a hidden run looks like no run"
        );
    }
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        server.ws_url(&format!("/api/v1/runs/{id}/log/ws")),
    )
    .unwrap();
    request.headers_mut().insert("x-forwarded-user", "mallory".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 404),
        other => panic!("mallory's WebSocket was not refused: {other:?}"),
    }
    assert_eq!(server.run_json_as(id, alice).await["status"], "running", "mallory could not cancel it");
    let (status, _) = send(&server, reqwest::Method::POST, &format!("/api/v1/runs/{id}/cancel"), alice, None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

impl TestServer {
    async fn run_json_as(&self, id: i64, headers: &[(&str, &[u8])]) -> Value {
        let (status, body) = send(self, reqwest::Method::GET, &format!("/api/v1/runs/{id}"), headers, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

#[tokio::test]
async fn debug_echo_needs_an_admin_and_never_shows_a_credential() {
    let server = TestServer::start(&format!("{TRUSTED}[debug]\necho = true\n")).await;
    assert_eq!(send(&server, reqwest::Method::GET, "/debug/echo", &[], None).await.0, StatusCode::UNAUTHORIZED);
    let (status, body) =
        send(&server, reqwest::Method::GET, "/debug/echo", &[("x-forwarded-user", b"alice")], None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let (status, created) = send(
        &server,
        reqwest::Method::POST,
        "/api/v1/tokens",
        &[("x-forwarded-user", b"root")],
        json_body(json!({ "name": "echo" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let bearer = format!("Bearer {}", created["token"].as_str().unwrap());
    let secrets: [(&str, &str); 8] = [
        ("cf-access-jwt-assertion", "eyJcloudflare.secret.assertion"),
        ("x-jwt-assertion", "eyJwso2.secret.assertion"),
        ("x-amzn-oidc-accesstoken", "secret-alb-access-token"),
        ("x-amzn-oidc-data", "eyJalb.secret.data"),
        ("x-amzn-oidc-identity", "secret-alb-identity"),
        ("x-pomerium-jwt-assertion", "eyJpomerium.secret.assertion"),
        ("x-forwarded-access-token", "secret-oauth2-proxy-token"),
        ("cookie", "_oauth2_proxy=secret-cookie"),
    ];
    let mut headers: Vec<(&str, &[u8])> = vec![("authorization", bearer.as_bytes()), ("x-visible", b"shown")];
    headers.extend(secrets.iter().map(|(name, value)| (*name, value.as_bytes())));
    let (status, report) = send(&server, reqwest::Method::GET, "/debug/echo", &headers, None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let text = report.to_string();
    for (name, value) in secrets.iter().chain([("authorization", bearer.as_str())].iter()) {
        assert!(!text.contains(value), "{name} leaked: {text}");
        assert!(report["headers"].as_array().unwrap().contains(&json!([name, "<redacted>"])), "{name}: {text}");
    }
    assert!(report["headers"].as_array().unwrap().contains(&json!(["x-visible", "shown"])), "{text}");
}

#[tokio::test]
async fn token_create_with_config_writes_where_oneoff_data_dir_says() {
    // ONEOFF_DATA_DIR places the SQLite file; on PostgreSQL `database` names the store instead.
    let server = TestServer::start_sqlite(TRUSTED, "").await;
    // The config file names another data directory; the server's is given by the environment.
    let elsewhere = tempfile::tempdir().unwrap();
    let config = crate::support::write_config(
        elsewhere.path(),
        &crate::support::sqlite_config_text(&elsewhere.path().join("unused"), "", TRUSTED),
    );
    let mut command =
        cli_command(&["token", "create", "--config", config.to_str().unwrap(), "--name", "boot", "--user", "root"]);
    command.env("ONEOFF_DATA_DIR", server.dir.path().join("data"));
    // Not a blocking call: the server runs on this test's runtime, and blocking it in the
    // middle of one of its write transactions (a heartbeat) would hold the file's lock
    // against the CLI for as long as the CLI waits.
    let output = tokio::process::Command::from(command).output().await.unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let token = stdout(&output).trim().to_string();
    let (status, me) = with_token(&server, reqwest::Method::GET, "/api/v1/whoami", &token, None).await;
    assert_eq!(
        (status, me["user"].as_str(), me["admin"].as_bool()),
        (StatusCode::OK, Some("root"), Some(true)),
        "{me}"
    );
    assert!(!elsewhere.path().join("unused").exists(), "nothing was written to the config file's data_dir");
}
