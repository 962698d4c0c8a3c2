//! The network side of `oneoff doctor`: raw WebSocket handshakes (the bytes a browser
//! sends, over TCP or TLS) and the server's always-on probe surface (`/api/v1/probe/echo`,
//! `/ws`, `/sse`, `/poll`), each recorded as facts. Nothing here judges; a failure, a
//! refusal or a login page is just another fact.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use url::Url;

use super::facts::{EchoFacts, HandshakeFacts, HopFacts, IdleFacts, PollFacts, QuietProbe, Reach, Refusal, SseFacts};

/// What the user asked the doctor to send and probe.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra request headers (a session cookie, a token), sent on every probe.
    pub headers: Vec<(String, String)>,
    pub origin: Option<String>,
    pub run: Option<i64>,
    pub idle: bool,
    /// The longest quiet period the idle probe tries, in seconds.
    pub idle_max_s: u64,
}

const TIMEOUT: Duration = Duration::from_secs(10);
const SSE_EVENTS: usize = 5;
const SSE_INTERVAL_MS: u64 = 300;
const POLL_WAIT_MS: u64 = 1500;
/// Quiet periods tried by `--idle`, up to `idle_max_s`: around the usual proxy timeouts.
const QUIET_PERIODS_S: [u64; 6] = [1, 3, 10, 30, 70, 130];
/// The probe WebSocket, asked for one event after its facts.
const FACTS_WS_PATH: &str = "/api/v1/probe/ws?count=1";
/// A header the doctor sends to see whether headers in general get through.
const MARKER: (&str, &str) = ("x-oneoff-doctor", "probe");

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Probes one URL; never fails, every problem becomes a fact.
pub async fn gather(url: &str, options: &Options) -> HopFacts {
    let mut facts = HopFacts { url: url.to_string(), ..HopFacts::default() };
    let base = match Url::parse(url) {
        Ok(base) if matches!(base.scheme(), "http" | "https") && base.host_str().is_some() => base,
        _ => {
            facts.reach = Reach::Unreachable { message: format!("`{url}` is not an http:// or https:// URL") };
            return facts;
        }
    };
    let http = match http_client() {
        Ok(http) => http,
        Err(message) => {
            facts.reach = Reach::Unreachable { message };
            return facts;
        }
    };
    facts.reach = reach(&http, &base, options).await;
    if !matches!(facts.reach, Reach::Oneoff { .. }) {
        return facts;
    }
    facts.credentials_sent = options
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("cookie"));
    // The probe facts come first: when they are refused, every other probe would be too.
    match echo_http(&http, &base, options).await {
        Ok(echo) => facts.echo_http = Some(echo),
        Err(refusal) => {
            facts.access = Some(refusal);
            return facts;
        }
    }
    let ws_path = match options.run {
        Some(run) => format!("/api/v1/runs/{run}/log/ws"),
        None => FACTS_WS_PATH.to_string(),
    };
    let (handshake, stream) = raw_handshake(&base, &ws_path, None, options).await;
    facts.echo_ws = Some(if options.run.is_none() {
        echo_over_ws(stream, options).await
    } else {
        drop(stream);
        echo_over_ws(raw_handshake(&base, FACTS_WS_PATH, None, options).await.1, options).await
    });
    facts.websocket = Some(handshake);
    let origin = options.origin.clone().unwrap_or_else(|| base.origin().ascii_serialization());
    facts.origin = Some(raw_handshake(&base, &ws_path, Some(&origin), options).await.0);
    facts.sse = Some(sse_timing(&http, &base, options).await);
    facts.long_poll = Some(poll(&http, &base, &format!("/api/v1/probe/poll?wait_ms={POLL_WAIT_MS}"), options).await);
    if options.idle {
        facts.idle = Some(idle(&http, &base, options).await);
    }
    facts
}

fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        // A redirect is a fact to report (an SSO login page), not something to follow.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(TIMEOUT)
        .user_agent(concat!("oneoff-doctor/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| format!("cannot build an HTTP client: {error}"))
}

fn with_headers(mut request: reqwest::RequestBuilder, options: &Options) -> reqwest::RequestBuilder {
    for (name, value) in &options.headers {
        request = request.header(name, value);
    }
    request
}

fn join(base: &Url, path: &str) -> String {
    format!("{}{path}", base.as_str().trim_end_matches('/'))
}

/// The whole chain of causes, which is where reqwest keeps "certificate" or "refused".
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn is_tls_problem(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    ["certificate", "tls", "ssl", "handshake", "invalidcontenttype", "corrupt message", "unknownissuer"]
        .iter()
        .any(|needle| lower.contains(needle))
}

async fn reach(http: &reqwest::Client, base: &Url, options: &Options) -> Reach {
    let started = Instant::now();
    let request = with_headers(http.get(join(base, "/healthz")).timeout(TIMEOUT), options);
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            let message = describe(&error);
            return if is_tls_problem(&message) { Reach::TlsError { message } } else { Reach::Unreachable { message } };
        }
    };
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_string);
    if response.status().is_redirection() {
        return Reach::Redirect { status, location: header("location").unwrap_or_default() };
    }
    let server = header("server");
    let body = response.bytes().await.unwrap_or_default();
    if status == 401 {
        return Reach::Unauthorized { status, snippet: snippet(&body) };
    }
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    if status == 200 && json.as_ref().is_some_and(|json| json["status"] == "ok") {
        return Reach::Oneoff { elapsed_ms: started.elapsed().as_millis() as u64 };
    }
    Reach::NotOneoff { status, server, snippet: snippet(&body) }
}

/// The start of a body, on one line.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(100).collect()
}

/// A probe's answer that is not its result, with oneoff's error when the body is one.
fn refusal(path: &str, status: u16, location: Option<String>, body: &[u8]) -> Refusal {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let error = json.as_ref().map(|json| &json["error"]);
    let code = error.and_then(|error| error["code"].as_str()).map(str::to_string);
    let message = match error.and_then(|error| error["message"].as_str()) {
        Some(message) => Some(message.to_string()),
        None => Some(snippet(body)).filter(|text| !text.is_empty()),
    };
    Refusal { path: path.to_string(), status, location, code, message }
}

async fn refusal_of(path: &str, response: reqwest::Response) -> Refusal {
    let status = response.status().as_u16();
    let location = response.headers().get("location").and_then(|value| value.to_str().ok()).map(str::to_string);
    let body = tokio::time::timeout(Duration::from_secs(3), response.bytes()).await;
    let body = body.ok().and_then(Result::ok).unwrap_or_default();
    refusal(path, status, location, &body)
}

fn lost(sent: &[&str], report: &Value) -> Vec<String> {
    let arrived: Vec<String> = report["header_names"]
        .as_array()
        .map(|names| names.iter().filter_map(|name| name.as_str().map(str::to_ascii_lowercase)).collect())
        .unwrap_or_default();
    sent.iter().filter(|name| !arrived.contains(&name.to_ascii_lowercase())).map(|name| name.to_string()).collect()
}

fn hop_headers(report: &Value) -> Vec<(String, String)> {
    report["hop_headers"]
        .as_array()
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|pair| Some((pair[0].as_str()?.to_string(), pair[1].as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn is_probe_facts(report: &Value) -> bool {
    report["header_names"].is_array() && report["websocket"].is_object()
}

/// The probe facts over plain HTTP; `Err` when the probe surface refused the doctor.
async fn echo_http(http: &reqwest::Client, base: &Url, options: &Options) -> Result<EchoFacts, Refusal> {
    const PATH: &str = "/api/v1/probe/echo";
    let origin = options.origin.clone().unwrap_or_else(|| base.origin().ascii_serialization());
    let request = with_headers(http.get(join(base, PATH)).timeout(TIMEOUT), options)
        .header(MARKER.0, MARKER.1)
        .header("origin", &origin);
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => return Ok(EchoFacts { error: Some(describe(&error)), ..EchoFacts::default() }),
    };
    let status = response.status().as_u16();
    if status != 200 {
        return Err(refusal_of(PATH, response).await);
    }
    let body = response.bytes().await.unwrap_or_default();
    let Some(report) = serde_json::from_slice::<Value>(&body).ok().filter(is_probe_facts) else {
        return Err(refusal(PATH, status, None, &body));
    };
    let mut sent = vec![MARKER.0, "origin"];
    sent.extend(options.headers.iter().map(|(name, _)| name.as_str()));
    Ok(EchoFacts {
        available: true,
        status,
        lost: lost(&sent, &report),
        arrived: hop_headers(&report),
        http_version: report["http_version"].as_str().map(str::to_string),
        error: None,
    })
}

async fn echo_over_ws(stream: Option<WebSocketStream<Box<dyn Io>>>, options: &Options) -> EchoFacts {
    let Some(mut stream) = stream else {
        return EchoFacts {
            error: Some("the WebSocket handshake to /api/v1/probe/ws did not succeed".into()),
            ..EchoFacts::default()
        };
    };
    let first = tokio::time::timeout(TIMEOUT, stream.next()).await;
    let _ = stream.close(None).await;
    let report: Option<Value> = match first {
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str(&text).ok(),
        _ => None,
    };
    let Some(report) = report.filter(is_probe_facts) else {
        return EchoFacts {
            status: 101,
            error: Some("no report arrived over the WebSocket".into()),
            ..EchoFacts::default()
        };
    };
    let mut sent = vec!["upgrade", "connection", "sec-websocket-key", "sec-websocket-version"];
    sent.extend(options.headers.iter().map(|(name, _)| name.as_str()));
    EchoFacts {
        available: true,
        status: 101,
        lost: lost(&sent, &report),
        arrived: hop_headers(&report),
        http_version: report["http_version"].as_str().map(str::to_string),
        error: None,
    }
}

async fn connect(base: &Url) -> Result<Box<dyn Io>, String> {
    let host = base.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
    let port = base.port_or_known_default().unwrap_or(80);
    let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| format!("no TCP connection to {host}:{port} within {}s", TIMEOUT.as_secs()))?
        .map_err(|error| format!("cannot connect to {host}:{port}: {error}"))?;
    if base.scheme() != "https" {
        return Ok(Box::new(tcp));
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS setup failed: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|error| format!("bad TLS name {host}: {error}"))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = tokio::time::timeout(TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|error| format!("TLS handshake failed: {error}"))?;
    Ok(Box::new(tls))
}

/// The `Sec-Fetch-Site` a browser sends with a handshake from a page at `origin` to `base`:
/// browsers send it only to trustworthy URLs (HTTPS, or a loopback host), so a plain-HTTP
/// hop gets the `Origin` alone, as a browser would send it there.
fn fetch_site(base: &Url, origin: &str) -> Option<&'static str> {
    let loopback = match base.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if base.scheme() != "https" && !loopback {
        return None;
    }
    let own = base.origin().ascii_serialization();
    Some(if origin.trim_end_matches('/').eq_ignore_ascii_case(&own) { "same-origin" } else { "cross-site" })
}

/// Sends the handshake a browser sends and reads the answer; on 101 returns the socket.
async fn raw_handshake(
    base: &Url,
    path: &str,
    origin: Option<&str>,
    options: &Options,
) -> (HandshakeFacts, Option<WebSocketStream<Box<dyn Io>>>) {
    let mut facts =
        HandshakeFacts { path: path.to_string(), origin: origin.map(str::to_string), ..HandshakeFacts::default() };
    let started = Instant::now();
    let mut io = match connect(base).await {
        Ok(io) => io,
        Err(error) => {
            facts.error = Some(error);
            return (facts, None);
        }
    };
    let host = match base.port() {
        Some(port) => format!("{}:{port}", base.host_str().unwrap_or_default()),
        None => base.host_str().unwrap_or_default().to_string(),
    };
    let prefix = base.path().trim_end_matches('/');
    let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
    let mut request = format!(
        "GET {prefix}{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nUser-Agent: oneoff-doctor/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(origin) = origin {
        request.push_str(&format!("Origin: {origin}\r\n"));
        if let Some(site) = fetch_site(base, origin) {
            request.push_str(&format!("Sec-Fetch-Site: {site}\r\n"));
        }
    }
    for (name, value) in &options.headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let exchange = async {
        io.write_all(request.as_bytes()).await?;
        read_response(&mut io).await
    };
    let (status, headers, leftover) = match tokio::time::timeout(TIMEOUT, exchange).await {
        Ok(Ok(head)) => head,
        Ok(Err(error)) => {
            facts.error = Some(format!("no HTTP answer to the handshake: {error}"));
            return (facts, None);
        }
        Err(_) => {
            facts.error = Some(format!("no answer to the handshake within {}s", TIMEOUT.as_secs()));
            return (facts, None);
        }
    };
    facts.status = status;
    facts.elapsed_ms = started.elapsed().as_millis() as u64;
    facts.diagnosis_header = header(&headers, "x-oneoff-diagnosis");
    facts.location = header(&headers, "location");
    if status == 101 {
        facts.upgraded = true;
        let stream = WebSocketStream::from_partially_read(io, leftover, Role::Client, None).await;
        return (facts, Some(stream));
    }
    let body =
        tokio::time::timeout(Duration::from_secs(3), read_body(&mut io, &headers, leftover)).await.unwrap_or_default();
    facts.body = serde_json::from_slice(&body).ok();
    facts.refusal = Some(refusal(path, status, facts.location.clone(), &body));
    (facts, None)
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.clone())
}

/// Reads a response head; returns the status, the headers and any bytes read past the head.
async fn read_response(io: &mut Box<dyn Io>) -> std::io::Result<(u16, Vec<(String, String)>, Vec<u8>)> {
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let read = io.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed before a response"));
        }
        buffer.extend_from_slice(&chunk[..read]);
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut slots);
        match response.parse(&buffer) {
            Ok(httparse::Status::Complete(length)) => {
                let headers = response
                    .headers
                    .iter()
                    .map(|header| {
                        (header.name.to_ascii_lowercase(), String::from_utf8_lossy(header.value).into_owned())
                    })
                    .collect();
                return Ok((response.code.unwrap_or(0), headers, buffer[length..].to_vec()));
            }
            Ok(httparse::Status::Partial) if buffer.len() < 64 * 1024 => continue,
            Ok(httparse::Status::Partial) => {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "response head larger than 64 KiB"))
            }
            Err(error) => {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not HTTP: {error}")))
            }
        }
    }
}

/// Reads a (small) response body: by Content-Length, chunked, or to the end; at most 256 KiB.
async fn read_body(io: &mut Box<dyn Io>, headers: &[(String, String)], mut body: Vec<u8>) -> Vec<u8> {
    const MAX: usize = 256 * 1024;
    let length = header(headers, "content-length").and_then(|value| value.trim().parse::<usize>().ok());
    let chunked =
        header(headers, "transfer-encoding").is_some_and(|value| value.to_ascii_lowercase().contains("chunked"));
    let mut chunk = [0u8; 8192];
    while body.len() < length.unwrap_or(MAX).min(MAX) {
        if chunked && body.windows(5).any(|window| window == b"0\r\n\r\n") {
            break;
        }
        match io.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => body.extend_from_slice(&chunk[..read]),
        }
    }
    if chunked {
        dechunk(&body)
    } else {
        body
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|window| window == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16) else { break };
        data = &data[line_end + 2..];
        if size == 0 || size > data.len() {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
    out
}

async fn sse_timing(http: &reqwest::Client, base: &Url, options: &Options) -> SseFacts {
    let path = format!("/api/v1/probe/sse?count={SSE_EVENTS}&interval_ms={SSE_INTERVAL_MS}");
    let mut facts = SseFacts { interval_ms: SSE_INTERVAL_MS, expected_events: SSE_EVENTS, ..SseFacts::default() };
    let started = Instant::now();
    let deadline = Duration::from_millis(SSE_INTERVAL_MS * SSE_EVENTS as u64) + TIMEOUT;
    let request = with_headers(http.get(join(base, &path)), options).header("accept", "text/event-stream");
    let response = match tokio::time::timeout(TIMEOUT, request.send()).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            facts.error = Some(describe(&error));
            return facts;
        }
        Err(_) => {
            facts.error = Some("no response headers within 10s (a proxy holding the whole response?)".into());
            return facts;
        }
    };
    facts.status = response.status().as_u16();
    if facts.status != 200 {
        facts.refusal = Some(refusal_of(&path, response).await);
        return facts;
    }
    let header = |name: &str| response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_string);
    facts.content_type = header("content-type");
    facts.content_encoding = header("content-encoding");
    let mut body = response.bytes_stream();
    let mut pending = Vec::new();
    while facts.arrivals_ms.len() < SSE_EVENTS {
        let remaining = deadline.saturating_sub(started.elapsed());
        match tokio::time::timeout(remaining, body.next()).await {
            Ok(Some(Ok(chunk))) => {
                pending.extend_from_slice(&chunk);
                while let Some(end) = pending.windows(2).position(|window| window == b"\n\n") {
                    let block: Vec<u8> = pending.drain(..end + 2).collect();
                    if block.windows(5).any(|window| window == b"data:") {
                        facts.arrivals_ms.push(started.elapsed().as_millis() as u64);
                    }
                }
            }
            Ok(Some(Err(error))) => {
                facts.error = Some(describe(&error));
                break;
            }
            Ok(None) => break,
            Err(_) => {
                facts.error = Some(format!(
                    "stream stalled: {} of {SSE_EVENTS} events in {}s",
                    facts.arrivals_ms.len(),
                    deadline.as_secs()
                ));
                break;
            }
        }
    }
    facts
}

async fn poll(http: &reqwest::Client, base: &Url, path: &str, options: &Options) -> PollFacts {
    let started = Instant::now();
    let wait = Duration::from_millis(POLL_WAIT_MS);
    let request = with_headers(http.get(join(base, path)).timeout(wait + TIMEOUT), options);
    let mut facts = PollFacts { path: path.to_string(), wait_ms: POLL_WAIT_MS, ..PollFacts::default() };
    match request.send().await {
        Ok(response) if response.status().as_u16() == 200 => {
            facts.status = 200;
            let json: Option<Value> = response.json().await.ok();
            facts.ok = json.is_some_and(|json| json["waited_ms"].is_u64());
        }
        Ok(response) => {
            facts.status = response.status().as_u16();
            facts.refusal = Some(refusal_of(path, response).await);
        }
        Err(error) => facts.error = Some(describe(&error)),
    }
    facts.elapsed_ms = started.elapsed().as_millis() as u64;
    facts
}

async fn idle(http: &reqwest::Client, base: &Url, options: &Options) -> IdleFacts {
    let periods: Vec<u64> =
        QUIET_PERIODS_S.iter().copied().filter(|period| *period <= options.idle_max_s.max(1)).collect();
    let websocket = futures_util::future::join_all(periods.iter().map(|quiet| quiet_websocket(base, *quiet, options)));
    let sse = futures_util::future::join_all(periods.iter().map(|quiet| quiet_sse(http, base, *quiet, options)));
    let (websocket, sse) = tokio::join!(websocket, sse);
    IdleFacts { websocket, sse }
}

async fn quiet_websocket(base: &Url, quiet_s: u64, options: &Options) -> QuietProbe {
    let path = format!("/api/v1/probe/ws?count=1&quiet_ms={}", quiet_s * 1000);
    let (handshake, stream) = raw_handshake(base, &path, None, options).await;
    let Some(mut stream) = stream else {
        let refused = handshake.error.is_none();
        let detail = handshake.error.unwrap_or_else(|| format!("handshake answered {}", handshake.status));
        return QuietProbe { quiet_s, survived: false, refused, detail: Some(detail) };
    };
    // The facts come first; then one event, the quiet period, and the last event.
    let mut events = 0;
    let deadline = Instant::now() + Duration::from_secs(quiet_s) + TIMEOUT;
    while events < 2 {
        match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), stream.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                if serde_json::from_str::<Value>(&text).is_ok_and(|value| value["n"].is_u64()) {
                    events += 1;
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(error))) => {
                return QuietProbe { quiet_s, survived: false, refused: false, detail: Some(error.to_string()) }
            }
            Ok(None) => {
                return QuietProbe {
                    quiet_s,
                    survived: false,
                    refused: false,
                    detail: Some("connection closed during the quiet period".into()),
                }
            }
            Err(_) => {
                return QuietProbe {
                    quiet_s,
                    survived: false,
                    refused: false,
                    detail: Some("nothing arrived after the quiet period".into()),
                }
            }
        }
    }
    let _ = stream.close(None).await;
    QuietProbe { quiet_s, survived: true, refused: false, detail: None }
}

async fn quiet_sse(http: &reqwest::Client, base: &Url, quiet_s: u64, options: &Options) -> QuietProbe {
    let path = format!("/api/v1/probe/sse?count=1&quiet_ms={}", quiet_s * 1000);
    let request = with_headers(http.get(join(base, &path)), options).timeout(Duration::from_secs(quiet_s) + TIMEOUT);
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => return QuietProbe { quiet_s, survived: false, refused: false, detail: Some(describe(&error)) },
    };
    if response.status().as_u16() != 200 {
        let detail = Some(format!("answered {}", response.status()));
        return QuietProbe { quiet_s, survived: false, refused: true, detail };
    }
    let mut body = response.bytes_stream();
    let mut text = Vec::new();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => text.extend_from_slice(&chunk),
            Err(error) => {
                return QuietProbe { quiet_s, survived: false, refused: false, detail: Some(describe(&error)) }
            }
        }
        if text.windows(5).filter(|window| *window == b"data:").count() >= 2 {
            return QuietProbe { quiet_s, survived: true, refused: false, detail: None };
        }
    }
    QuietProbe {
        quiet_s,
        survived: false,
        refused: false,
        detail: Some("the stream ended during the quiet period".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), b"hello world");
        assert_eq!(dechunk(b"zz\r\n"), b"");
    }

    #[test]
    fn tls_problems_are_recognised() {
        assert!(is_tls_problem(
            "error sending request: client error (Connect): invalid peer certificate: UnknownIssuer"
        ));
        assert!(!is_tls_problem("error sending request: tcp connect error: Connection refused (os error 111)"));
    }
}
