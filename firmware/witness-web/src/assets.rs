//! The pages and their files, embedded in the binary: no CDN, nothing fetched at run time. The
//! player comes from npm at build time (see `build.rs`).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../assets/index.html");

const FILES: &[(&str, &str, &[u8])] = &[
    ("app.js", "text/javascript", include_bytes!("../assets/app.js")),
    ("app.css", "text/css", include_bytes!("../assets/app.css")),
    ("player.js", "text/javascript", include_bytes!(concat!(env!("OUT_DIR"), "/asciinema-player.min.js"))),
    ("player.css", "text/css", include_bytes!(concat!(env!("OUT_DIR"), "/asciinema-player.css"))),
];

/// Every page is the same document; the script shows what the path asks for.
pub async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response()
}

pub async fn asset(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, bytes)) => ([(header::CONTENT_TYPE, *kind)], *bytes).into_response(),
        None => crate::api::error(StatusCode::NOT_FOUND, "not found"),
    }
}
