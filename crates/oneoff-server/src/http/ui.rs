//! The web UI: static files from `web/`, embedded in the binary at build time, and the
//! bookmarkable pages of the single-page app, which all answer with `index.html`.
//!
//! The operator guides the UI points to (`docs/deployment.md`, `docs/doctor.md`,
//! `docs/security.md`) are served as plain text under `/docs/`, so a user told "a proxy
//! removed the upgrade headers" can read what to change without the repository.
//!
//! Under a path prefix (`[server] base_path`), `index.html` is served with its links and
//! script under that prefix; the scripts find the prefix from their own URL.
//!
//! Nothing here reads the filesystem at run time, so `cargo build` alone builds the UI and it
//! works offline. Assets are revalidated on every load (`no-cache` with an `ETag` derived from
//! their content), so a new binary never serves a stale script. Unknown paths are not caught
//! here: they still get the API's JSON 404.

use std::sync::{Arc, OnceLock};

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use oneoff_core::BasePath;

use super::ApiError;
use crate::state::AppState;

/// The script and style sources allowed on the pages: our own files only, no inline code.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";
/// Markdown reads well as it is; `text/markdown` would make most browsers download it.
const GUIDE: &str = "text/plain; charset=utf-8";

/// `index.html` first: it is every page. The others are served under `/assets/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../../../web/index.html"),
    },
    Asset { name: "app.js", content_type: JS, body: include_bytes!("../../../../web/app.js") },
    Asset { name: "ansi.js", content_type: JS, body: include_bytes!("../../../../web/ansi.js") },
    Asset { name: "logview.js", content_type: JS, body: include_bytes!("../../../../web/logview.js") },
    Asset { name: "logwindow.js", content_type: JS, body: include_bytes!("../../../../web/logwindow.js") },
    Asset { name: "transport.js", content_type: JS, body: include_bytes!("../../../../web/transport.js") },
    Asset { name: "params.js", content_type: JS, body: include_bytes!("../../../../web/params.js") },
    Asset { name: "format.js", content_type: JS, body: include_bytes!("../../../../web/format.js") },
    Asset { name: "admin.js", content_type: JS, body: include_bytes!("../../../../web/admin.js") },
    Asset { name: "shell.js", content_type: JS, body: include_bytes!("../../../../web/shell.js") },
    Asset { name: "paths.js", content_type: JS, body: include_bytes!("../../../../web/paths.js") },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../../../web/style.css"),
    },
    Asset { name: "favicon.svg", content_type: "image/svg+xml", body: include_bytes!("../../../../web/favicon.svg") },
    Asset { name: "deployment.md", content_type: GUIDE, body: include_bytes!("../../../../docs/deployment.md") },
    Asset { name: "doctor.md", content_type: GUIDE, body: include_bytes!("../../../../docs/doctor.md") },
    Asset { name: "security.md", content_type: GUIDE, body: include_bytes!("../../../../docs/security.md") },
];

/// `index.html` as this server serves it: its paths under the base path.
pub struct IndexPage {
    body: Bytes,
    etag: HeaderValue,
}

impl IndexPage {
    pub fn new(base_path: &BasePath) -> Arc<IndexPage> {
        let text = String::from_utf8_lossy(ASSETS[0].body);
        let base = base_path.as_str();
        // The prefix holds only URL-safe characters (BasePath::parse), so it needs no escaping.
        let body = text
            .replace("href=\"/", &format!("href=\"{base}/"))
            .replace("src=\"/", &format!("src=\"{base}/"))
            .replace("<code>/api/v1</code>", &format!("<code>{base}/api/v1</code>"))
            .into_bytes();
        Arc::new(IndexPage { etag: fnv_tag(&body), body: Bytes::from(body) })
    }
}

/// The UI's routes: the app's pages, `/assets/{file}` and `/docs/{guide}.md`, relative to the
/// base path they are nested under.
pub fn router(index: Arc<IndexPage>) -> Router<AppState> {
    let page = page_route(index);
    Router::new()
        .route("/", page.clone())
        .route("/jobs/{name}", page.clone())
        .route("/runs", page.clone())
        .route("/runs/{id}", page.clone())
        .route("/tokens", page.clone())
        .route("/audit", page)
        .route("/assets/{file}", get(asset))
        .route("/docs/{file}", get(guide))
}

/// `GET` of a page of the app: `index`, whatever the path.
pub fn page_route(index: Arc<IndexPage>) -> axum::routing::MethodRouter<AppState> {
    get(move |headers: HeaderMap| async move { page(&index, &headers) })
}

/// Every page of the app is `index.html`; the script reads the URL and renders the page.
fn page(index: &IndexPage, headers: &HeaderMap) -> Response {
    let mut response = respond(ASSETS[0].content_type, index.body.clone(), index.etag.clone(), headers);
    let extra = response.headers_mut();
    extra.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    extra.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    extra.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    match ASSETS.iter().skip(1).position(|asset| asset.name == file && asset.content_type != GUIDE) {
        Some(position) => Ok(serve(position + 1, &headers)),
        None => Err(ApiError::not_found(format!("no such asset: {file}"))),
    }
}

async fn guide(Path(file): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    match ASSETS.iter().position(|asset| asset.name == file && asset.content_type == GUIDE) {
        Some(position) => Ok(serve(position, &headers)),
        None => {
            Err(ApiError::not_found(format!("no such guide: {file} (there are deployment.md, doctor.md, security.md)")))
        }
    }
}

/// `ASSETS[index]`, or `304 Not Modified` when the browser already has this content.
fn serve(index: usize, request: &HeaderMap) -> Response {
    let asset = &ASSETS[index];
    respond(asset.content_type, Bytes::from_static(asset.body), etag(index), request)
}

fn respond(content_type: &'static str, body: Bytes, etag: HeaderValue, request: &HeaderMap) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|candidate| candidate.trim() == etag.to_str().unwrap_or("")));
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, etag),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ];
    if fresh {
        (StatusCode::NOT_MODIFIED, headers).into_response()
    } else {
        (StatusCode::OK, headers, body).into_response()
    }
}

/// A strong validator for `ASSETS[index]`, computed once from its bytes (FNV-1a, 64 bits).
fn etag(index: usize) -> HeaderValue {
    static TAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| ASSETS.iter().map(|asset| fnv_tag(asset.body)).collect());
    tags[index].clone()
}

fn fnv_tag(bytes: &[u8]) -> HeaderValue {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    HeaderValue::from_str(&format!("\"{hash:016x}\"")).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_distinct_tag() {
        let mut tags: Vec<HeaderValue> = (0..ASSETS.len()).map(etag).collect();
        tags.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len());
    }

    #[test]
    fn a_matching_if_none_match_gets_304() {
        let mut request = HeaderMap::new();
        request.insert(header::IF_NONE_MATCH, etag(1));
        assert_eq!(serve(1, &request).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(serve(1, &HeaderMap::new()).status(), StatusCode::OK);
        assert_eq!(serve(0, &HeaderMap::new()).headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
    }

    #[test]
    fn under_a_base_path_the_page_links_and_loads_everything_under_it() {
        let root = IndexPage::new(&BasePath::default());
        assert_eq!(&root.body[..], ASSETS[0].body, "at the root the page is served as written");
        let prefixed = IndexPage::new(&BasePath::parse("/oneoff").unwrap());
        let text = String::from_utf8(prefixed.body.to_vec()).unwrap();
        for expected in [
            "src=\"/oneoff/assets/app.js\"",
            "href=\"/oneoff/assets/style.css\"",
            "href=\"/oneoff/runs\"",
            "href=\"/oneoff/\"",
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
        for attribute in ["href=\"/", "src=\"/"] {
            let outside = text
                .match_indices(attribute)
                .filter(|(at, _)| !text[*at..].starts_with(&format!("{attribute}oneoff/")));
            assert_eq!(outside.count(), 0, "every path of the page is under the prefix: {text}");
        }
        assert_ne!(prefixed.etag, root.etag);
    }
}
