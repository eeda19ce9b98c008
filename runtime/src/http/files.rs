//! Static files. The page is never cached by browsers (`no-cache`, so a new
//! pack shows at once); hashed assets are cached for a year as immutable; both
//! carry an ETag, answer `If-None-Match` with 304, and are sent precompressed
//! when the browser accepts brotli or gzip. `public/` files are served from the
//! app's folder, and no path can leave it.

use std::path::{Component, Path, PathBuf};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri, header};
use bytes::Bytes;

use crate::app::{Asset, LoadedApp, content_type};

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const NO_CACHE: &str = "no-cache";
const PUBLIC_FILES: &str = "public, max-age=3600";

/// Serves the page, an asset, a public file, or the 404 page.
pub async fn serve(app: &LoadedApp, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD are served here");
        response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let path = uri.path();
    if path == "/" || path == "/index.html" {
        return asset(&app.page, NO_CACHE, headers);
    }
    if let Some(found) = app.assets.get(path) {
        return asset(found, IMMUTABLE, headers);
    }
    if let Some(dir) = &app.public_dir {
        match public_file(dir, path).await {
            Ok(Some(response)) => return response,
            Ok(None) => {}
            Err(status) => return plain(status, "bad path"),
        }
    }
    not_found(app)
}

fn asset(asset: &Asset, cache_control: &'static str, request: &HeaderMap) -> Response<Body> {
    let (body, encoding) = match (accepts(request, "br"), &asset.br, accepts(request, "gzip"), &asset.gzip) {
        (true, Some(br), _, _) => (br, Some("br")),
        (_, _, true, Some(gz)) => (gz, Some("gzip")),
        _ => (&asset.body, None),
    };
    // Each encoding is its own representation, so it gets its own strong
    // ETag (RFC 9110, 8.8.3): `"<hash>"`, `"<hash>-br"`, `"<hash>-gzip"`.
    let etag = match encoding {
        Some(coding) => format!("{}-{coding}\"", asset.etag.trim_end_matches('"')),
        None => asset.etag.clone(),
    };
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, asset.content_type)
        .header(header::CACHE_CONTROL, cache_control)
        .header(header::ETAG, etag.as_str())
        .header(header::VARY, "accept-encoding");
    if matches_etag(request, &etag) {
        return response.status(StatusCode::NOT_MODIFIED).body(Body::empty()).expect("valid response");
    }
    let body = body.clone();
    if let Some(encoding) = encoding {
        response = response.header(header::CONTENT_ENCODING, encoding);
    }
    response.header(header::CONTENT_LENGTH, body.len()).body(Body::from(body)).expect("valid response")
}

/// Whether `If-None-Match` names this ETag (or `*`).
fn matches_etag(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

/// Whether `Accept-Encoding` allows `coding` (present, and not with q=0).
fn accepts(request: &HeaderMap, coding: &str) -> bool {
    request.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |item| {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let zero = parts.any(|p| {
                let p = p.trim();
                // `q=` is case-insensitive, like the coding's name.
                let q = p.get(..2).filter(|k| k.eq_ignore_ascii_case("q=")).map(|_| &p[2..]);
                q.is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
            });
            name.eq_ignore_ascii_case(coding) && !zero
        },
    )
}

/// A file below `public/`: `Ok(None)` when there is none, `Err` for a path that is not acceptable.
async fn public_file(dir: &Path, path: &str) -> Result<Option<Response<Body>>, StatusCode> {
    let Some(relative) = safe_relative_path(path) else { return Err(StatusCode::BAD_REQUEST) };
    if relative.as_os_str().is_empty() {
        return Ok(None);
    }
    let full = dir.join(&relative);
    // Links inside public/ must not lead outside it either.
    let (Ok(real), Ok(base)) = (tokio::fs::canonicalize(&full).await, tokio::fs::canonicalize(dir).await) else {
        return Ok(None);
    };
    if !real.starts_with(&base) || !real.is_file() {
        return Ok(None);
    }
    let Ok(bytes) = tokio::fs::read(&real).await else { return Ok(None) };
    // The type comes from the file found, not from how the URL spelled it.
    let name = real.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let response = Response::builder()
        .header(header::CONTENT_TYPE, content_type(&name))
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::CACHE_CONTROL, PUBLIC_FILES)
        .header(header::CONTENT_LENGTH, bytes.len())
        .body(Body::from(bytes))
        .expect("valid response");
    Ok(Some(response))
}

/// Decodes a URL path into a relative path with no `..`, `.`, hidden or empty
/// parts, but for a leading `.well-known` (RFC 8615: ACME challenges,
/// `security.txt`). `None` for anything else (encoded or not).
pub fn safe_relative_path(path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(path)?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return None;
    }
    let mut out = PathBuf::new();
    for (i, part) in decoded.split('/').filter(|p| !p.is_empty()).enumerate() {
        if part.starts_with('.') && !(i == 0 && part == ".well-known") {
            return None;
        }
        out.push(part);
    }
    if out.components().all(|c| matches!(c, Component::Normal(_))) { Some(out) } else { None }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn not_found(app: &LoadedApp) -> Response<Body> {
    let (body, kind) = match &app.not_found_page {
        Some(page) => (page.clone(), "text/html; charset=utf-8"),
        None => (Bytes::from_static(b"Not found\n"), "text/plain; charset=utf-8"),
    };
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header(header::CONTENT_TYPE, HeaderValue::from_static(kind))
        .header(header::CACHE_CONTROL, NO_CACHE)
        .body(Body::from(body))
        .expect("valid response")
}

fn plain(status: StatusCode, message: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(format!("{message}\n")))
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_climb_or_hide_are_refused_encoded_or_not() {
        assert_eq!(safe_relative_path("/img/a%20b.png"), Some(PathBuf::from("img/a b.png")));
        for bad in [
            "/../x",
            "/a/../../x",
            "/%2e%2e/x",
            "/a/%2E%2E/%2e%2e/x",
            "/.env",
            "/a/%2fetc",
            "/x%00",
            "/a\\..\\b",
            "/%zz",
        ] {
            let ok = safe_relative_path(bad);
            assert!(ok.is_none() || !ok.as_ref().unwrap().to_string_lossy().contains(".."), "{bad} -> {ok:?}");
        }
        assert_eq!(safe_relative_path("/%2e%2e/x"), None);
        assert_eq!(safe_relative_path("/.env"), None);
        assert_eq!(safe_relative_path("/.well-known/security.txt"), Some(PathBuf::from(".well-known/security.txt")));
        assert_eq!(safe_relative_path("/img/.well-known/x"), None);
        assert_eq!(safe_relative_path("/.well-known/.git/x"), None);
    }

    #[test]
    fn accept_encoding_honours_q_zero() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip, deflate, br;q=0"));
        assert!(accepts(&h, "gzip"));
        assert!(!accepts(&h, "br"));
    }
}
