//! The console's web UI: plain HTML, CSS and JavaScript compiled into the binary (building and
//! running kaudit needs no Node, and nothing is loaded from a CDN). Every page under `/ui/`
//! is the same document; the script shows the page the path names (`/ui/`, `/ui/alerts/<uuid>`,
//! `/ui/sinks`, `/ui/rules`) and keeps filters in the query string, so a link reproduces a view.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// Headers every UI answer carries: no framing, a strict content policy (scripts and styles
/// only from the server itself).
fn with_type(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn index() -> Response {
    with_type(INDEX, "text/html; charset=utf-8")
}

/// The UI's routes.
pub fn routes() -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/sinks", get(index))
        .route("/ui/rules", get(index))
        .route("/ui/alerts/{uuid}", get(index))
        .route(
            "/ui/assets/app.js",
            get(|| async { with_type(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/assets/app.css",
            get(|| async { with_type(STYLE, "text/css; charset=utf-8") }),
        )
}
