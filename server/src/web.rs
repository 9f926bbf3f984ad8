//! The browser client's files: built into the binary, or read from `--web-root`.

use std::borrow::Cow;
use std::path::Path;

/// Files built into the binary: (URL path, content type, bytes). The content type of each
/// entry is [`content_type`] of its path (a test checks).
const EMBEDDED: &[(&str, &str, &[u8])] = &[
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../assets/web/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/web/app.js"),
    ),
    (
        "/tickwire.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/web/tickwire.js"),
    ),
    (
        "/world.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/web/world.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/web/style.css"),
    ),
];

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_files_have_their_content_types() {
        for (path, ct, bytes) in EMBEDDED {
            assert_eq!(*ct, content_type(path), "{path}");
            assert!(!bytes.is_empty(), "{path} is empty");
        }
    }

    #[tokio::test]
    async fn root_is_the_page_and_the_page_names_only_embedded_files() {
        let (ct, body) = lookup(None, "/").await.unwrap();
        assert_eq!(ct, "text/html; charset=utf-8");
        let html = String::from_utf8(body.into_owned()).unwrap();
        for name in ["style.css", "app.js"] {
            assert!(
                html.contains(&format!("\"{name}\"")),
                "index.html loads {name}"
            );
            assert!(lookup(None, &format!("/{name}")).await.is_some());
        }
        // app.js imports these.
        for name in ["/tickwire.js", "/world.js"] {
            let (ct, _) = lookup(None, name).await.unwrap();
            assert_eq!(ct, "text/javascript; charset=utf-8");
        }
        assert!(lookup(None, "/nope.js").await.is_none());
        assert!(lookup(None, "/../Cargo.toml").await.is_none());
    }

    #[tokio::test]
    async fn web_root_serves_plain_names_only() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/web");
        let (ct, body) = lookup(Some(&root), "/").await.unwrap();
        assert_eq!(ct, "text/html; charset=utf-8");
        assert_eq!(&*body, include_bytes!("../../assets/web/index.html"));
        let (ct, _) = lookup(Some(&root), "/test/vectors.test.mjs").await.unwrap();
        assert_eq!(ct, "text/javascript; charset=utf-8");
        for bad in [
            "/../Cargo.toml",
            "/test/../app.js",
            "//etc/passwd",
            "/.hidden",
            "/missing",
        ] {
            assert!(lookup(Some(&root), bad).await.is_none(), "{bad}");
        }
    }
}
