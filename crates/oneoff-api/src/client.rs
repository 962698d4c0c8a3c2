//! A small HTTP client for the v1 API, used by the CLI and by the integration tests.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::v1::{CreateRun, ErrorBody, Job, JobList, LogPage, Run, RunList, SearchPage};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{message}")]
    Api { status: StatusCode, code: String, message: String, fields: Vec<crate::v1::FieldMessage> },
    /// The server answered, but not with oneoff's JSON (a proxy's error page, a login redirect).
    #[error("{url} answered {status} with a body that is not oneoff's JSON ({snippet}); is this a oneoff server?")]
    Unexpected { url: String, status: StatusCode, snippet: String },
    #[error("cannot reach {url}: {source}")]
    Transport { url: String, source: reqwest::Error },
    /// A mistake in what the client was given (the server URL, the token), found before sending.
    #[error("{0}")]
    Usage(String),
    /// An `https://` URL whose server answered in plain HTTP.
    #[error("cannot reach {url}: the server does not speak TLS there (it answered in plain HTTP); try http:// instead of https://")]
    NotTls { url: String },
}

/// Filters of `GET /api/v1/runs`.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub job: Option<String>,
    pub status: Option<String>,
    /// Only runs this user requested.
    pub requested_by: Option<String>,
    pub limit: Option<u32>,
    pub before: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// Why no request can be sent (a server URL without a scheme, a token no header can carry):
    /// every request fails with it, in our words rather than the HTTP library's.
    unusable: Option<String>,
}

impl Client {
    /// `base` is the server's URL, e.g. `http://127.0.0.1:8080`.
    pub fn new(base: &str) -> Client {
        Client::with_token(base, None)
    }

    /// A client that sends `Authorization: Bearer TOKEN` with every request.
    pub fn with_token(base: &str, token: Option<&str>) -> Client {
        let mut headers = reqwest::header::HeaderMap::new();
        let mut unusable = server_url_problem(base);
        if let Some(token) = token {
            // Tokens (ours, and signed assertions) are printable ASCII; anything else is a
            // paste gone wrong, and sending no token instead would hide it.
            let value = Some(token)
                .filter(|token| token.bytes().all(|byte| byte.is_ascii_graphic()))
                .and_then(|token| reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).ok());
            match value {
                Some(value) => {
                    headers.insert(reqwest::header::AUTHORIZATION, value);
                }
                None => {
                    unusable = unusable.or_else(|| {
                        Some(
                            "the API token holds characters no token has (a space, a line break or a \
                             non-ASCII character); API tokens are `oneoff_` followed by 64 hex digits"
                                .to_string(),
                        )
                    })
                }
            }
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("oneoff-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("invariant: a client with default TLS settings always builds");
        Client { base: base.trim_end_matches('/').to_string(), http, unusable }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn jobs(&self) -> Result<Vec<Job>, ClientError> {
        let list: JobList = self.get("/api/v1/jobs", &[]).await?;
        Ok(list.jobs)
    }

    pub async fn job(&self, name: &str) -> Result<Job, ClientError> {
        self.get(&format!("/api/v1/jobs/{}", encode(name)), &[]).await
    }

    pub async fn create_run(&self, job: &str, params: BTreeMap<String, Value>) -> Result<Run, ClientError> {
        let url = self.url("/api/v1/runs")?;
        let body = CreateRun { job: job.to_string(), params };
        let response = self.http.post(&url).json(&body).send().await;
        decode(&url, response).await
    }

    pub async fn runs(&self, query: &RunQuery) -> Result<RunList, ClientError> {
        let mut pairs = Vec::new();
        if let Some(job) = &query.job {
            pairs.push(("job", job.clone()));
        }
        if let Some(status) = &query.status {
            pairs.push(("status", status.clone()));
        }
        if let Some(user) = &query.requested_by {
            pairs.push(("requested_by", user.clone()));
        }
        if let Some(limit) = query.limit {
            pairs.push(("limit", limit.to_string()));
        }
        if let Some(before) = query.before {
            pairs.push(("before", before.to_string()));
        }
        self.get("/api/v1/runs", &pairs).await
    }

    pub async fn run(&self, id: i64) -> Result<Run, ClientError> {
        self.get(&format!("/api/v1/runs/{id}"), &[]).await
    }

    pub async fn cancel(&self, id: i64) -> Result<Run, ClientError> {
        let url = self.url(&format!("/api/v1/runs/{id}/cancel"))?;
        let response = self.http.post(&url).send().await;
        decode(&url, response).await
    }

    /// One page of log entries after `after`; with `wait_seconds`, long-polls for new ones.
    pub async fn log(
        &self,
        id: i64,
        after: u64,
        limit: Option<u32>,
        wait_seconds: Option<u32>,
    ) -> Result<LogPage, ClientError> {
        let mut pairs = vec![("after", after.to_string())];
        if let Some(limit) = limit {
            pairs.push(("limit", limit.to_string()));
        }
        if let Some(wait) = wait_seconds {
            pairs.push(("wait", wait.to_string()));
        }
        self.get(&format!("/api/v1/runs/{id}/log"), &pairs).await
    }

    /// One page of log entries with the query of `GET .../log` given as pairs
    /// (`before`, `tail`, `after`, `limit`, `wait`).
    pub async fn log_query(&self, id: i64, query: &[(&str, String)]) -> Result<LogPage, ClientError> {
        self.get(&format!("/api/v1/runs/{id}/log"), query).await
    }

    /// The raw log (`log.txt`) as a response to stream, with its query (`after`, `tail`,
    /// `follow`); an error status is decoded as the API error it carries.
    pub async fn log_text(&self, id: i64, query: &[(&str, String)]) -> Result<Response, ClientError> {
        let url = self.url(&format!("/api/v1/runs/{id}/log.txt"))?;
        let response = self.http.get(&url).query(query).send().await.map_err(|error| transport_error(&url, error))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(decode::<Value>(&url, Ok(response)).await.err().unwrap_or_else(|| ClientError::Unexpected {
            url,
            status: StatusCode::OK,
            snippet: "an error status with a JSON body that is not an error".into(),
        }))
    }

    /// One scan of `GET .../log/search` (`q`, `after`, `before`, `limit`, `context`).
    pub async fn search_log(&self, id: i64, query: &[(&str, String)]) -> Result<SearchPage, ClientError> {
        self.get(&format!("/api/v1/runs/{id}/log/search"), query).await
    }

    /// A single-use ticket for one log connection to run `id` (what the web UI does before it
    /// opens a WebSocket or EventSource with a token as its identity).
    pub async fn stream_ticket(&self, id: i64) -> Result<crate::v1::StreamTicket, ClientError> {
        let url = self.url(&format!("/api/v1/runs/{id}/log/ticket"))?;
        let response = self.http.post(&url).send().await;
        decode(&url, response).await
    }

    /// The live replicas sharing the server's store.
    pub async fn replicas(&self) -> Result<Vec<crate::v1::Replica>, ClientError> {
        let list: crate::v1::ReplicaList = self.get("/api/v1/replicas", &[]).await?;
        Ok(list.replicas)
    }

    pub async fn whoami(&self) -> Result<crate::v1::WhoAmI, ClientError> {
        self.get("/api/v1/whoami", &[]).await
    }

    pub async fn create_token(&self, body: &crate::v1::CreateToken) -> Result<crate::v1::CreatedToken, ClientError> {
        let url = self.url("/api/v1/tokens")?;
        let response = self.http.post(&url).json(body).send().await;
        decode(&url, response).await
    }

    pub async fn tokens(&self) -> Result<crate::v1::TokenList, ClientError> {
        self.get("/api/v1/tokens", &[]).await
    }

    pub async fn revoke_token(&self, id: i64) -> Result<crate::v1::Token, ClientError> {
        let url = self.url(&format!("/api/v1/tokens/{id}"))?;
        let response = self.http.delete(&url).send().await;
        decode(&url, response).await
    }

    pub async fn audit(&self, query: &[(&str, String)]) -> Result<crate::v1::AuditList, ClientError> {
        self.get("/api/v1/audit", query).await
    }

    /// `query`: a checkpoint to check, as `head`, `count` and `mac`.
    pub async fn verify_audit(&self, query: &[(&str, String)]) -> Result<crate::v1::AuditVerification, ClientError> {
        self.get("/api/v1/audit/verify", query).await
    }

    /// A raw GET for callers that need the status and body themselves.
    pub async fn get_raw(&self, path: &str) -> Result<Response, ClientError> {
        let url = self.url(path)?;
        self.http.get(&url).send().await.map_err(|source| transport_error(&url, source))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T, ClientError> {
        let url = self.url(path)?;
        let response = self.http.get(&url).query(query).send().await;
        decode(&url, response).await
    }

    fn url(&self, path: &str) -> Result<String, ClientError> {
        match &self.unusable {
            Some(problem) => Err(ClientError::Usage(problem.clone())),
            None => Ok(format!("{}{path}", self.base)),
        }
    }
}

fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

async fn decode<T: DeserializeOwned>(url: &str, response: Result<Response, reqwest::Error>) -> Result<T, ClientError> {
    let transport = |source| transport_error(url, source);
    let response = response.map_err(transport)?;
    let status = response.status();
    let body = response.bytes().await.map_err(transport)?;
    if status.is_success() {
        if let Ok(value) = serde_json::from_slice::<T>(&body) {
            return Ok(value);
        }
    } else if let Ok(error) = serde_json::from_slice::<ErrorBody>(&body) {
        return Err(ClientError::Api {
            status,
            code: error.error.code,
            message: error.error.message,
            fields: error.error.fields,
        });
    }
    let text = String::from_utf8_lossy(&body);
    let snippet: String = text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(120).collect();
    Err(ClientError::Unexpected { url: url.to_string(), status, snippet })
}

/// Why `base` cannot be a server URL, in words that say what to write instead.
fn server_url_problem(base: &str) -> Option<String> {
    let base = base.trim();
    if !base.contains("://") {
        // `127.0.0.1:8080` is a relative URL to the parser, `localhost:8080` a URL of scheme `localhost`.
        return Some(format!(
            "the server URL `{base}` needs a scheme: write http://{base} (or https:// where TLS is set up)"
        ));
    }
    match reqwest::Url::parse(base) {
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            Some(format!("the server URL `{base}` must start with http:// or https://"))
        }
        Ok(url) if url.host_str().is_none_or(str::is_empty) => {
            Some(format!("the server URL `{base}` names no host, e.g. http://127.0.0.1:8080"))
        }
        Ok(_) => None,
        Err(error) => Some(format!("the server URL `{base}` is not a URL ({error}), e.g. http://127.0.0.1:8080")),
    }
}

/// A failed request, recognising the mistakes a user can fix: https:// to a plain HTTP server.
fn transport_error(url: &str, source: reqwest::Error) -> ClientError {
    if url.starts_with("https://") && met_plain_http(&source) {
        return ClientError::NotTls { url: url.to_string() };
    }
    ClientError::Transport { url: url.to_string(), source }
}

/// True when the TLS library read something that is not TLS: an HTTP answer to its hello.
fn met_plain_http(error: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(rustls::Error::InvalidMessage(_)) = error.downcast_ref::<rustls::Error>() {
        return true;
    }
    // An io::Error's `source` skips the error it wraps (and they nest), so look inside by hand.
    let wrapped = error.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref);
    if wrapped.is_some_and(|inner| met_plain_http(inner)) {
        return true;
    }
    error.source().is_some_and(met_plain_http)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_url_without_a_scheme_is_named_with_the_fix() {
        assert_eq!(
            server_url_problem("127.0.0.1:8080").unwrap(),
            "the server URL `127.0.0.1:8080` needs a scheme: write http://127.0.0.1:8080 (or https:// where TLS is set up)"
        );
        assert!(server_url_problem("localhost:8080").unwrap().contains("write http://localhost:8080"));
        assert!(server_url_problem("ftp://host").unwrap().contains("must start with http:// or https://"));
        assert!(
            server_url_problem("http://").unwrap().contains("is not a URL")
                || server_url_problem("http://").unwrap().contains("names no host")
        );
        assert_eq!(server_url_problem("http://127.0.0.1:8080/"), None);
        assert_eq!(server_url_problem("https://oneoff.example.com/base"), None);
    }

    #[tokio::test]
    async fn https_to_a_plain_http_server_says_so() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            if let Ok((mut stream, _)) = listener.accept() {
                let _ = stream.read(&mut [0; 1024]);
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
            }
        });
        let error = Client::new(&format!("https://{addr}")).jobs().await.unwrap_err();
        assert!(matches!(error, ClientError::NotTls { .. }), "{error}");
        assert!(error.to_string().ends_with(
            "the server does not speak TLS there (it answered in plain HTTP); try http:// instead of https://"
        ));
    }

    #[tokio::test]
    async fn requests_of_an_unusable_client_fail_in_our_words() {
        let error = Client::new("127.0.0.1:8080").jobs().await.unwrap_err();
        assert!(matches!(&error, ClientError::Usage(message) if message.contains("needs a scheme")), "{error}");
        let error = Client::with_token("http://127.0.0.1:9", Some("tök\n")).jobs().await.unwrap_err();
        assert!(error.to_string().starts_with("the API token holds characters no token has"), "{error}");
    }
}
