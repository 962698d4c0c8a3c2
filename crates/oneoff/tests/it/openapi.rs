//! The OpenAPI document: served without an identity, the same as the committed
//! docs/openapi.json, and covering every route of the `/api/v1` table with the auth it really
//! takes. scripts/schemathesis checks the document against a live server's answers; what it
//! found is held here too.

use std::collections::BTreeSet;
use std::path::PathBuf;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::TestServer;

const REGENERATE: &str = "ONEOFF_WRITE_OPENAPI=1 cargo test -p oneoff --test it openapi";

fn repository_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

/// A server that serves nobody without a credential.
async fn server_without_anonymous() -> TestServer {
    TestServer::start("[auth]\nanonymous = false\n\n[[job]]\nname = \"greet\"\ncommand = [\"echo\", \"hi\"]\n").await
}

async fn served_document(server: &TestServer) -> String {
    let response = reqwest::get(format!("{}/api/v1/openapi.json", server.url)).await.expect("GET openapi.json");
    assert_eq!(response.status(), StatusCode::OK, "the document needs no identity");
    let content_type = response.headers().get("content-type").and_then(|value| value.to_str().ok()).map(str::to_owned);
    assert_eq!(content_type.as_deref(), Some("application/json"));
    response.text().await.expect("body")
}

#[tokio::test]
async fn the_committed_document_is_the_one_the_server_serves_without_an_identity() {
    let server = server_without_anonymous().await;
    let (status, body) = server.get("/api/v1/jobs").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the rest of the API needs one: {body}");

    let served = served_document(&server).await;
    let document: Value = serde_json::from_str(&served).expect("the document is JSON");
    assert_eq!(document["openapi"], "3.1.0");
    let path = repository_file("docs/openapi.json");
    let expected = format!("{served}\n");
    if std::env::var_os("ONEOFF_WRITE_OPENAPI").is_some() {
        std::fs::write(&path, &expected).expect("write docs/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == expected,
        "docs/openapi.json differs from the document the server serves at /api/v1/openapi.json: regenerate it \
         with `{REGENERATE}` and commit it"
    );
}

/// `(METHOD, /api/v1/PATH)` of every route of the `/api/v1` table in http/mod.rs, and those
/// that take a stream ticket. A WebSocket route (`any`) is in the document as its `GET`.
fn api_routes() -> (BTreeSet<(String, String)>, BTreeSet<String>) {
    let source = std::fs::read_to_string(repository_file("crates/oneoff-server/src/http/mod.rs")).expect("mod.rs");
    let start = source.find("let api = Router::new()").expect("the /api/v1 table in http/mod.rs");
    let table = &source[start..];
    let table = &table[..table.find(';').expect("the end of the /api/v1 table")];
    let (mut routes, mut ticketed) = (BTreeSet::new(), BTreeSet::new());
    for route in table.split(".route(").skip(1) {
        let path = route.split('"').nth(1).expect("a route's path");
        let path = format!("/api/v1{path}");
        let handlers = &route[route.find(',').expect("a route's handlers")..];
        let mut methods = Vec::new();
        for (word, method) in [("get(", "get"), ("post(", "post"), ("delete(", "delete"), ("any(", "get")] {
            let calls = handlers.match_indices(word).filter(|(at, _)| {
                let before = handlers[..*at].chars().next_back();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            });
            if calls.count() > 0 {
                methods.push(method);
            }
        }
        assert!(!methods.is_empty(), "no method found for {path} in http/mod.rs: {handlers}");
        if handlers.contains("ticket()") {
            ticketed.insert(path.clone());
        }
        routes.extend(methods.into_iter().map(|method| (method.to_string(), path.clone())));
    }
    (routes, ticketed)
}

fn documented_operations(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let methods = item.as_object().expect("a path item").keys();
            methods
                .filter(|key| ["get", "post", "put", "patch", "delete"].contains(&key.as_str()))
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect()
}

#[tokio::test]
async fn every_api_route_is_in_the_document_with_the_auth_it_takes() {
    let (routes, ticketed) = api_routes();
    assert!(routes.len() > 20 && !ticketed.is_empty(), "the route table was read: {routes:?} {ticketed:?}");
    let server = server_without_anonymous().await;
    let document: Value = serde_json::from_str(&served_document(&server).await).expect("JSON");
    let documented = documented_operations(&document);
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes of http/mod.rs missing from the OpenAPI document: {undocumented:?}; give each handler a \
         #[utoipa::path], list it in http/openapi.rs, and regenerate docs/openapi.json with `{REGENERATE}`"
    );
    let stale: Vec<_> = documented.difference(&routes).collect();
    assert!(stale.is_empty(), "operations in the document that http/mod.rs does not route: {stale:?}");

    // Every operation takes an API token, the global requirement, except the document itself;
    // exactly the routes that accept a ticket say so.
    assert_eq!(document["security"], serde_json::json!([{ "bearer": [] }]));
    let schemes = document["components"]["securitySchemes"].as_object().expect("security schemes");
    assert_eq!(schemes.keys().collect::<Vec<_>>(), ["bearer", "ticket"]);
    assert_eq!(schemes["ticket"]["in"], "query");
    assert_eq!(schemes["ticket"]["name"], "ticket");
    for (method, path) in &routes {
        let operation = &document["paths"][path][method];
        let security = &operation["security"];
        let public = path == "/api/v1/openapi.json";
        match () {
            _ if public => assert_eq!(*security, serde_json::json!([{}]), "{method} {path} is open to everyone"),
            _ if ticketed.contains(path) => assert_eq!(
                *security,
                serde_json::json!([{ "bearer": [] }, { "ticket": [] }]),
                "{method} {path} takes a ticket"
            ),
            _ => assert!(security.is_null(), "{method} {path} takes what the rest does: {security}"),
        }
        let responses = operation["responses"].as_object().expect("responses");
        for status in ["403", "500"] {
            assert!(responses.contains_key(status), "{method} {path} documents {status}");
        }
        assert_eq!(responses.contains_key("401"), !public, "{method} {path}: 401 exactly when it needs a caller");
    }
}

/// Found by schemathesis on PostgreSQL, which cannot hold a NUL in text (it was a 500 there,
/// and stored as sent on SQLite): a NUL in a query parameter or in a token's fields is our 400
/// on either store, and nothing is stored.
#[tokio::test]
async fn a_nul_character_in_a_filter_or_a_token_field_is_refused_in_our_words() {
    let server = TestServer::start("[[job]]\nname = \"greet\"\ncommand = [\"echo\", \"hi\"]\n").await;
    let filters = [
        ("/api/v1/runs?job=greet%00", "job"),
        ("/api/v1/runs?requested_by=%00", "requested_by"),
        ("/api/v1/audit?actor=a%00b", "actor"),
        ("/api/v1/audit?action=run.start%00", "action"),
        ("/api/v1/audit?job=%00&limit=5", "job"),
    ];
    for (path, key) in filters {
        let (status, body) = server.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(
            body["error"]["message"],
            format!("query parameter `{key}` contains a NUL character (%00); remove it")
        );
    }
    let bodies = [
        (json!({ "name": "ci\u{0}" }), "name"),
        (json!({ "name": "ci", "user": "ci-bot\u{0}" }), "user"),
        (json!({ "name": "ci", "groups": ["eng", "\u{0}ops"] }), "groups"),
    ];
    for (body, field) in bodies {
        let (status, answer) = server.post("/api/v1/tokens", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["message"], format!("the token's `{field}` contains a NUL character; remove it"));
    }
    let (status, tokens) = server.get("/api/v1/tokens").await;
    assert_eq!((status, &tokens["tokens"]), (StatusCode::OK, &json!([])), "nothing was stored");
    let (status, created) = server.post("/api/v1/tokens", json!({ "name": "ci", "groups": ["eng"] })).await;
    assert_eq!(status, StatusCode::CREATED, "the same request without the NUL is served: {created}");
}
