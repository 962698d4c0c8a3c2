//! Through a real nginx on loopback: one configuration forwards upgrades, one drops them
//! (the outage this product comes from). WebSocket works through the first; through the
//! second the 426 diagnosis arrives, while SSE and long-poll still stream the log live.
//! And an nginx that plays the SSO proxy, injecting identity headers as buzzfeed sso does.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::TestServer;

const JOBS: &str = r#"
[[job]]
name = "drip"
command = ["sh", "-c", 'for i in 1 2 3 4 5 6; do echo "drip $i"; sleep 0.3; done']
"#;

/// An nginx process in front of the app, stopped on drop.
pub struct Nginx {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// nginx proxying to `app`; `location` is added to `location / { ... }` after `proxy_pass`.
pub async fn nginx(app: &str, location: &str) -> Nginx {
    let upstream = app.trim_start_matches("http://");
    nginx_server(&format!(
        "location / {{
            proxy_pass http://{upstream};
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Via \"1.1 test-nginx\";
            {location}
        }}"
    ))
    .await
}

/// nginx with `server_body` inside its `server { listen ...; }` block.
pub async fn nginx_server(server_body: &str) -> Nginx {
    nginx_with(server_body, "").await
}

/// nginx with `server_body` inside its `server { listen ...; }` block and `http_extra` (an
/// `upstream` block, say) in its `http` block.
pub async fn nginx_with(server_body: &str, http_extra: &str) -> Nginx {
    let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|path| Path::new(path).exists())
        .expect("nginx is not installed: ./scripts/test installs it (apt-get install nginx-light)");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        r#"daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    {http_extra}
    server {{
        listen 127.0.0.1:{port};
        {server_body}
    }}
}}
"#,
        dir = dir.path().display()
    );
    let config_path = dir.path().join("nginx.conf");
    std::fs::write(&config_path, config).unwrap();
    let child = Command::new(binary)
        .args([
            "-p",
            &dir.path().display().to_string(),
            "-c",
            &config_path.display().to_string(),
            "-e",
            &dir.path().join("error.log").display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nginx");
    let proxy = Nginx { child, url: format!("http://127.0.0.1:{port}"), _dir: dir };
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for _ in 0..100 {
        if client.get(format!("{}/healthz", proxy.url)).send().await.is_ok() {
            return proxy;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nginx did not start; see its error log");
}

/// Follows run `id` over WebSocket through `proxy` until `done`; the lines' texts.
async fn ws_texts(proxy: &Nginx, id: i64) -> Vec<String> {
    let url = format!("{}/api/v1/runs/{id}/log/ws", proxy.url.replacen("http://", "ws://", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("handshake through nginx");
    let mut texts = Vec::new();
    while let Some(Ok(message)) = socket.next().await {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).unwrap();
            for entry in value["entries"].as_array().into_iter().flatten() {
                texts.push(entry["text"].as_str().unwrap().to_string());
            }
            if value["done"] == true {
                break;
            }
        }
    }
    texts
}

pub const FORWARDS_UPGRADES: &str = "proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 60s;";

/// The usual mistake: HTTP/1.1 upstream, but Upgrade and Connection are not forwarded.
/// Response buffering stays on (nginx's default): `X-Accel-Buffering: no` must turn it off for SSE.
pub const DROPS_UPGRADES: &str = "proxy_http_version 1.1;
            proxy_set_header Connection \"\";";

#[tokio::test]
async fn websocket_works_through_an_nginx_that_forwards_upgrades() {
    let server = TestServer::start(JOBS).await;
    let proxy = nginx(&server.url, FORWARDS_UPGRADES).await;
    let id = server.start_run("drip", json!({})).await;
    let texts = ws_texts(&proxy, id).await;
    assert_eq!(texts, (1..=6).map(|i| format!("drip {i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn behind_an_nginx_that_drops_upgrades_the_426_explains_and_sse_and_long_poll_stream_live() {
    let server = TestServer::start(JOBS).await;
    let proxy = nginx(&server.url, DROPS_UPGRADES).await;
    let id = server.start_run("drip", json!({})).await;

    let url = format!("{}/api/v1/runs/{id}/log/ws", proxy.url.replacen("http://", "ws://", 1));
    let response = match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response,
        other => panic!("the handshake should fail through this proxy: {other:?}"),
    };
    assert_eq!(response.status(), 426);
    assert_eq!(response.headers()["x-oneoff-diagnosis"], "websocket-upgrade-stripped");
    let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
    assert_eq!(body["diagnosis"]["missing"], json!(["Upgrade: websocket", "Connection: upgrade"]));
    assert_eq!(body["diagnosis"]["hops"]["via"], "1.1 test-nginx");
    assert!(body["diagnosis"]["hops"]["x-forwarded-for"].as_str().unwrap().contains("127.0.0.1"));

    // SSE through the same proxy delivers the first line while the job is still running.
    let response = reqwest::get(format!("{}/api/v1/runs/{id}/log/sse", proxy.url)).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut received = String::new();
    while !received.contains("drip 1") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next()).await.expect("SSE stalled behind nginx");
        received.push_str(&String::from_utf8_lossy(&chunk.unwrap().unwrap()));
    }
    assert_eq!(server.run_json(id).await["status"], "running", "the event came live, not buffered until the end");
    drop(body);

    // Long-poll through the proxy follows to the end.
    let client = reqwest::Client::new();
    let mut after = 0;
    let mut texts = Vec::new();
    loop {
        let page: Value = client
            .get(format!("{}/api/v1/runs/{id}/log?after={after}&wait=10", proxy.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        texts.extend(
            page["entries"].as_array().unwrap().iter().map(|entry| entry["text"].as_str().unwrap().to_string()),
        );
        after = page["next"].as_u64().unwrap();
        if page["done"] == true {
            break;
        }
    }
    assert_eq!(texts, (1..=6).map(|i| format!("drip {i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn behind_an_nginx_with_default_settings_the_426_names_http10() {
    let server = TestServer::start(JOBS).await;
    // nginx's defaults: HTTP/1.0 to the upstream, which cannot upgrade at all.
    let proxy = nginx(&server.url, "").await;
    let id = server.start_run("drip", json!({})).await;
    let url = format!("{}/api/v1/runs/{id}/log/ws", proxy.url.replacen("http://", "ws://", 1));
    let Err(tokio_tungstenite::tungstenite::Error::Http(response)) = tokio_tungstenite::connect_async(url).await else {
        panic!("the handshake should fail through nginx's defaults");
    };
    assert_eq!(response.status(), 426);
    assert_eq!(response.headers()["x-oneoff-diagnosis"], "websocket-http10");
    let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
    assert_eq!(body["diagnosis"]["http_version"], "HTTP/1.0");
    assert!(body["diagnosis"]["likely_cause"].as_str().unwrap().contains("proxy_http_version 1.1"));
}

#[tokio::test]
async fn behind_an_sso_proxy_the_identity_is_the_proxys_and_only_the_proxy_is_believed() {
    // Only connections from 127.0.0.2 are trusted, and only nginx connects from there
    // (`proxy_bind`): this test's own requests come from 127.0.0.1.
    let jobs = r#"
[auth]
anonymous = false
[auth.trusted_headers]
trusted_cidrs = ["127.0.0.2/32"]

[[job]]
name = "backfill"
command = ["sh", "-c", "echo backfilling; sleep 0.3; echo done"]
allow_run = { groups = ["eng"] }
"#;
    let server = TestServer::start(jobs).await;
    // Like buzzfeed sso's proxy: the signed-in user's identity replaces whatever the client sent.
    let sso = format!(
        "{FORWARDS_UPGRADES}
            proxy_bind 127.0.0.2;
            proxy_set_header X-Forwarded-User \"alice\";
            proxy_set_header X-Forwarded-Email \"alice@example.com\";
            proxy_set_header X-Forwarded-Groups \"eng,support\";"
    );
    let proxy = nginx(&server.url, &sso).await;
    let client = reqwest::Client::new();

    let whoami: Value = client
        .get(format!("{}/api/v1/whoami", proxy.url))
        .header("x-forwarded-user", "mallory")
        .header("x-forwarded-groups", "admins")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&whoami["user"], &whoami["email"], &whoami["groups"], &whoami["source"]),
        (&json!("alice"), &json!("alice@example.com"), &json!(["eng", "support"]), &json!("trusted_headers")),
        "the proxy's identity, not the forged one: {whoami}"
    );

    let response =
        client.post(format!("{}/api/v1/runs", proxy.url)).json(&json!({"job": "backfill"})).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    let run: Value = response.json().await.unwrap();
    assert_eq!(run["requested_by"], "alice");
    let id = run["id"].as_i64().unwrap();
    // The live log through the same proxy: the WebSocket handshake carries the identity too.
    let texts = ws_texts(&proxy, id).await;
    assert_eq!(texts, vec!["backfilling", "done"]);

    // Straight to the server, the same headers are just text anyone can send: ignored.
    let direct = client
        .get(format!("{}/api/v1/whoami", server.url))
        .header("x-forwarded-user", "alice")
        .header("x-forwarded-groups", "eng")
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), reqwest::StatusCode::UNAUTHORIZED);
}

/// nginx's `$host` drops the port: on a non-standard port the browser's WebSocket handshake
/// (Origin `http://127.0.0.1:PORT`) then reaches the app as from another site and is refused
/// (403). The web UI cannot see that answer, and its plain probe carries no Origin, so it
/// names its page's origin: the probe then gets the same 403 and the UI says why, instead of
/// blaming upgrade headers that arrived intact.
#[tokio::test]
async fn a_proxy_that_drops_the_port_from_host_is_named_by_the_probe_not_blamed_on_upgrade_headers() {
    let server = TestServer::start(JOBS).await;
    let proxy = nginx(
        &server.url,
        "proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;",
    )
    .await;
    let id = server.start_run("drip", json!({})).await;
    let path = format!("/api/v1/runs/{id}/log/ws");
    let mut handshake = format!("{}{path}", proxy.url.replacen("http://", "ws://", 1)).into_client_request().unwrap();
    handshake.headers_mut().insert("origin", proxy.url.parse().unwrap());
    match tokio_tungstenite::connect_async(handshake).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("the handshake from the proxy's own page should be refused as cross-site: {other:?}"),
    }
    let client = reqwest::Client::new();
    let probe = |origin: Option<&str>| {
        let mut request = client.get(format!("{}{path}", proxy.url)).header("x-oneoff-probe", "1");
        if let Some(origin) = origin {
            request = request.header("x-oneoff-probe-origin", origin);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = probe(Some(&proxy.url)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("origin_rejected")), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("keep the Host at the proxy"), "{message}");
    // A page whose origin matches the Host the server was given gets the usual answer.
    let (status, body) = probe(Some("http://127.0.0.1")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (426, Some("websocket_required")), "{body}");
    let (status, _) = probe(None).await;
    assert_eq!(status, 426, "without the page's origin, nothing to judge");
}
