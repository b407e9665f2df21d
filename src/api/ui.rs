//! The dashboard: a read-only web page served at `/`, its assets under `/ui/`.
//!
//! The page is plain ES modules and one vendored chart library (uPlot), embedded in the
//! binary: no build step, no request leaves for another host, and what is served is what
//! the repository's `ui/` folder holds. It carries no data: every fact comes from the JSON
//! API with the same token rules, so these paths are served without a token and the page
//! itself asks for one when the API refuses it. Each asset is compressed once with gzip
//! and sent that way to clients that accept it, with an ETag so a reload costs a 304.

use std::io::Write;
use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::AppState;
use super::reply::{NO_SUCH_ROUTE, fixed_error};

/// One file of the page.
pub struct Asset {
    /// Its path under `/ui/` (`index.html` is also `/`).
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// `body` compressed with gzip.
    pub gzip: Vec<u8>,
    pub etag: HeaderValue,
}

macro_rules! files {
    ($($path:literal => $type:literal),* $(,)?) => {
        &[$(($path, $type, include_bytes!(concat!("../../ui/", $path)) as &[u8])),*]
    };
}

/// Every file of `ui/` the page loads.
const FILES: &[(&str, &str, &[u8])] = files![
    "index.html" => "text/html; charset=utf-8",
    "style.css" => "text/css; charset=utf-8",
    "app.js" => "text/javascript; charset=utf-8",
    "api.js" => "text/javascript; charset=utf-8",
    "format.js" => "text/javascript; charset=utf-8",
    "yaml.js" => "text/javascript; charset=utf-8",
    "charts.js" => "text/javascript; charset=utf-8",
    "pages/overview.js" => "text/javascript; charset=utf-8",
    "pages/object.js" => "text/javascript; charset=utf-8",
    "pages/run.js" => "text/javascript; charset=utf-8",
    "pages/backup.js" => "text/javascript; charset=utf-8",
    "pages/login.js" => "text/javascript; charset=utf-8",
    "vendor/uplot/uPlot.esm.js" => "text/javascript; charset=utf-8",
    "vendor/uplot/uPlot.min.css" => "text/css; charset=utf-8",
    "vendor/uplot/LICENSE" => "text/plain; charset=utf-8",
];

/// The assets, compressed on first use.
pub static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|&(path, content_type, body)| {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            // Writing to a Vec cannot fail.
            let _ = encoder.write_all(body);
            let gzip = encoder.finish().unwrap_or_default();
            let digest = Sha256::digest(body);
            let etag = HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..12])))
                .unwrap_or(HeaderValue::from_static("\"\""));
            Asset {
                path,
                content_type,
                body,
                gzip,
                etag,
            }
        })
        .collect()
});

/// `/` and `/ui/{path}`, kept out of the API's route table: they are no API.
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/", get(|headers: HeaderMap| async move { serve("index.html", &headers) }))
        .route(
            "/ui/{*path}",
            get(|Path(path): Path<String>, headers: HeaderMap| async move {
                serve(&path, &headers)
            }),
        )
}

/// Whether `path` is the page or one of its assets, which need no token.
pub fn is_page(path: &str) -> bool {
    path == "/" || path.starts_with("/ui/")
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return fixed_error(StatusCode::NOT_FOUND, NO_SUCH_ROUTE);
    };
    let cache = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, asset.etag.clone()),
    ];
    if headers.get(header::IF_NONE_MATCH) == Some(&asset.etag) {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let content_type = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ),
        (header::VARY, HeaderValue::from_static("accept-encoding")),
    ];
    if gzip {
        (
            content_type,
            cache,
            [(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"))],
            asset.gzip.clone(),
        )
            .into_response()
    } else {
        (content_type, cache, asset.body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the page weighs on the wire: the budget is 200 KiB gzipped.
    #[test]
    fn the_assets_weigh_at_most_200_kib_gzipped() {
        let total: usize = ASSETS.iter().map(|a| a.gzip.len()).sum();
        assert!(total <= 200 * 1024, "{total} bytes gzipped");
        eprintln!(
            "dashboard assets: {} bytes, {total} bytes gzipped",
            ASSETS.iter().map(|a| a.body.len()).sum::<usize>()
        );
    }

    /// Every module the page imports is served: a file missing from [`FILES`] would only
    /// show as a blank page.
    #[test]
    fn every_import_is_served() {
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).unwrap();
            let dir = asset.path.rsplit_once('/').map_or("", |(d, _)| d);
            let targets = text
                .split(" from '")
                .skip(1)
                .chain(text.split("import('").skip(1))
                .map(|rest| rest.split('\'').next().unwrap());
            for target in targets {
                let resolved = resolve(dir, target);
                assert!(
                    ASSETS.iter().any(|a| a.path == resolved),
                    "{} imports {target} ({resolved}), which is not served",
                    asset.path
                );
            }
        }
    }

    fn resolve(dir: &str, target: &str) -> String {
        if let Some(abs) = target.strip_prefix("/ui/") {
            return abs.to_string();
        }
        let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
        for piece in target.split('/') {
            match piece {
                "." => {}
                ".." => {
                    parts.pop();
                }
                p => parts.push(p),
            }
        }
        parts.join("/")
    }

    /// A file added to `ui/` and not to [`FILES`] would not be served.
    #[test]
    fn every_file_of_the_folder_is_served() {
        fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else {
                    let rel = path.strip_prefix(base).unwrap();
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
        let mut files = Vec::new();
        walk(&base, &base, &mut files);
        files.sort();
        let mut served: Vec<String> = FILES.iter().map(|f| f.0.to_string()).collect();
        served.sort();
        assert_eq!(files, served);
    }

    #[test]
    fn the_page_names_no_other_host() {
        for asset in ASSETS.iter().filter(|a| !a.path.starts_with("vendor/")) {
            let text = std::str::from_utf8(asset.body).unwrap();
            for scheme in ["http://", "https://", "//cdn"] {
                assert!(
                    !text.contains(scheme),
                    "{} names {scheme}: the page must not load anything from elsewhere",
                    asset.path
                );
            }
        }
    }
}
