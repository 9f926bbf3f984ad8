//! The browser client's files: built into the binary, or read from `--web-root`.

use std::borrow::Cow;
use std::path::Path;

/// Files built into the binary: (URL path, content type, bytes).
const EMBEDDED: &[(&str, &str, &[u8])] = &[];

/// The content type for a file name.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("hex" | "txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The file for a URL path, if any: from `root` when given (never outside it), else built in.
pub async fn lookup(
    root: Option<&Path>,
    url_path: &str,
) -> Option<(&'static str, Cow<'static, [u8]>)> {
    let rel = if url_path == "/" {
        "/index.html"
    } else {
        url_path
    };
    match root {
        Some(root) => {
            let rel = rel.trim_start_matches('/');
            // Only plain names: no `..`, no absolute parts, no hidden files.
            if rel.split('/').any(|c| c.is_empty() || c.starts_with('.')) {
                return None;
            }
            let bytes = tokio::fs::read(root.join(rel)).await.ok()?;
            Some((content_type(rel), Cow::Owned(bytes)))
        }
        None => EMBEDDED
            .iter()
            .find(|(p, _, _)| *p == rel)
            .map(|(_, ct, b)| (*ct, Cow::Borrowed(*b))),
    }
}
