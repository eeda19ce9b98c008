//! Static files. The page is never cached by browsers (`no-cache`, so a new
//! pack shows at once); hashed assets are cached for a year as immutable; both
//! carry an ETag, answer `If-None-Match` with 304, and are sent precompressed
//! in brotli or gzip when the browser's `Accept-Encoding` weighs that coding
//! highest. `public/` files are served from the app's folder, and no path can
//! leave it.

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
    // Assets are listed by name; a browser asks for `é.svg` or `a b.svg`
    // percent-encoded.
    let found = app.assets.get(path).or_else(|| {
        let decoded = path.contains('%').then(|| percent_decode(path)).flatten()?;
        app.assets.get(&decoded)
    });
    if let Some(found) = found {
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
    let encoding = choose_encoding(request, asset.br.is_some(), asset.gzip.is_some());
    let body = match (encoding, &asset.br, &asset.gzip) {
        (Some("br"), Some(br), _) => br,
        (Some("gzip"), _, Some(gz)) => gz,
        _ => &asset.body,
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

/// The weight `identity` gets when `Accept-Encoding` neither names it nor has
/// `*`: acceptable, but below every coding the client names with a weight
/// above zero, since a client that lists codings wants them.
const IMPLICIT_IDENTITY: u16 = 1;

/// The coding to send an asset in (`None`: as it is), by `Accept-Encoding`
/// (RFC 9110, 12.5.3): of the variants the pack made, the one the client
/// weighs highest, brotli before gzip before identity on a tie. `*` stands for
/// every coding the header does not name, `identity` included. Identity is
/// sent when nothing else is acceptable, even when the client refused it
/// (`identity;q=0`, or `*;q=0` without `identity`): a 406 for a static file
/// helps nobody. A request without the header gets identity: RFC 9110 lets
/// a server pick any coding then, but a client that says nothing may not
/// decode one.
fn choose_encoding(request: &HeaderMap, have_br: bool, have_gzip: bool) -> Option<&'static str> {
    let codings = accepted_codings(request)?;
    // A coding listed twice counts at its lower weight, so a refusal is never overridden.
    let named = |name: &str| codings.iter().filter(|(n, _)| n == name).map(|&(_, q)| q).min();
    let weight = |name: &str| named(name).or_else(|| named("*")).unwrap_or(0);
    let identity = named("identity").or_else(|| named("*")).unwrap_or(IMPLICIT_IDENTITY);
    let mut best: (Option<&'static str>, u16) = (None, identity);
    // Later candidates win ties (`>=`), so gzip beats identity and brotli beats both.
    for (coding, available) in [("gzip", have_gzip), ("br", have_br)] {
        let q = weight(coding);
        if available && q > 0 && q >= best.1 {
            best = (Some(coding), q);
        }
    }
    best.0
}

/// The codings `Accept-Encoding` names, lowercased, each with its weight in
/// thousandths (1000 when it has no `q`); `None` when the request has no such
/// header. A malformed `q` counts as 0: a coding the client may have meant
/// to refuse is not sent, and identity remains.
fn accepted_codings(request: &HeaderMap) -> Option<Vec<(String, u16)>> {
    let mut values = request.get_all(header::ACCEPT_ENCODING).iter().peekable();
    values.peek()?;
    let mut codings = Vec::new();
    for item in values.filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')) {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        let mut weight = 1000;
        for parameter in parts {
            let (key, value) = parameter.split_once('=').unwrap_or((parameter, ""));
            // `q` is case-insensitive, like the coding's name.
            if key.trim().eq_ignore_ascii_case("q") {
                weight = qvalue(value.trim()).unwrap_or(0);
            }
        }
        codings.push((name, weight));
    }
    Some(codings)
}

/// A qvalue (RFC 9110, 12.4.2: `0` to `1` with at most three decimals) in
/// thousandths; `None` when it is not one.
fn qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Missing decimals are zeros: `0.5` is 500 thousandths.
    let thousandths =
        fraction.bytes().chain(std::iter::repeat(b'0')).take(3).fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
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
/// `security.txt`). `None` for anything else (encoded or not), and for a
/// path with an encoded separator (`%2F`, `%5C`).
pub fn safe_relative_path(path: &str) -> Option<PathBuf> {
    // An encoded `/` or `\` would become a separator only once decoded, so the
    // path would name other folders than the URL shows; no link needs one.
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return None;
    }
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
        for bad in ["/../x", "/a/../../x", "/%2e%2e/x", "/a/%2E%2E/%2e%2e/x", "/.env", "/x%00", "/a\\..\\b", "/%zz"] {
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
    fn encoded_separators_are_refused() {
        for bad in ["/a/%2fetc", "/a%2Fb", "/img/..%2f..%2fx", "/a%5cb", "/a%5Cb"] {
            assert_eq!(safe_relative_path(bad), None, "{bad}");
        }
        // A `%` that encodes a `%` is no separator: `%252F` names a file called `%2F`.
        assert_eq!(safe_relative_path("/a%252Fb"), Some(PathBuf::from("a%2Fb")));
    }

    /// The coding chosen for `accept` (`None`: no such header) among the variants given.
    fn chosen(accept: Option<&'static str>, br: bool, gzip: bool) -> Option<&'static str> {
        let mut h = HeaderMap::new();
        if let Some(value) = accept {
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(value));
        }
        choose_encoding(&h, br, gzip)
    }

    #[test]
    fn accept_encoding_weights_choose_the_variant() {
        let both = |accept: &'static str| chosen(Some(accept), true, true);
        assert_eq!(both("gzip, deflate, br"), Some("br"));
        assert_eq!(both("gzip;q=1, br;q=0.1"), Some("gzip"));
        assert_eq!(both("gzip, deflate, br;q=0"), Some("gzip"));
        // Codings not named are refused when there is no `*`.
        assert_eq!(both("br;q=0"), None);
        assert_eq!(both("*"), Some("br"));
        assert_eq!(both("*;q=0, gzip"), Some("gzip"));
        assert_eq!(both("*;q=0.2, br;q=0.1"), Some("gzip"));
        assert_eq!(both("identity"), None);
        assert_eq!(both("br;q=0.5, gzip;q=0.5"), Some("br"));
        assert_eq!(both("gzip;q=0.5, identity;q=0.5"), Some("gzip"));
        assert_eq!(both("br;q=0.4, identity"), None);
        assert_eq!(both("gzip;q=0.001"), Some("gzip"), "identity not named ranks below any named coding");
        assert_eq!(both(""), None);
        assert_eq!(chosen(None, true, true), None, "no header: identity");
    }

    #[test]
    fn accept_encoding_is_read_case_and_space_insensitively() {
        let both = |accept: &'static str| chosen(Some(accept), true, true);
        assert_eq!(both("GZIP;Q=1, BR;Q=0.1"), Some("gzip"));
        assert_eq!(both("  Gzip ; q=0.8 ,Br;q=0.9  "), Some("br"));
        assert_eq!(both("gzip;Q=0, br;Q=0"), None);
        assert_eq!(both("br ; q = 0 , gzip"), Some("gzip"));
    }

    #[test]
    fn refusals_and_malformed_weights_fall_back_to_identity() {
        let both = |accept: &'static str| chosen(Some(accept), true, true);
        assert_eq!(both("identity;q=0"), None, "nothing else is acceptable, so identity is sent anyway");
        assert_eq!(both("*;q=0"), None);
        assert_eq!(both("br;q=abc, gzip"), Some("gzip"), "a malformed q refuses");
        assert_eq!(both("br;q=1.5, gzip;q=0.5"), Some("gzip"));
        assert_eq!(both("br;q=0.0001, gzip;q=0.5"), Some("gzip"));
        assert_eq!(both("br, br;q=0, gzip;q=0.3"), Some("gzip"), "a coding named twice counts at its lower weight");
        let mut h = HeaderMap::new();
        h.append(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip;q=0.5"));
        h.append(header::ACCEPT_ENCODING, HeaderValue::from_static("br;q=0.9"));
        assert_eq!(choose_encoding(&h, true, true), Some("br"), "every Accept-Encoding line counts");
    }

    #[test]
    fn variants_the_pack_did_not_make_are_skipped() {
        assert_eq!(chosen(Some("br, gzip;q=0.5"), false, true), Some("gzip"));
        assert_eq!(chosen(Some("br, gzip;q=0.5"), true, false), Some("br"));
        assert_eq!(chosen(Some("br"), false, true), None);
        assert_eq!(chosen(Some("*"), false, false), None);
    }

    fn header_text(response: &Response<Body>, name: header::HeaderName) -> Option<&str> {
        response.headers().get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn an_asset_is_sent_in_the_chosen_coding_with_its_own_etag() {
        let asset = Asset {
            content_type: "text/javascript; charset=utf-8",
            etag: "\"abc\"".to_string(),
            body: Bytes::from_static(b"plain body"),
            gzip: Some(Bytes::from_static(b"gz")),
            br: None,
        };
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("br, gzip;q=0.5"));
        let response = super::asset(&asset, IMMUTABLE, &h);
        assert_eq!(header_text(&response, header::CONTENT_ENCODING), Some("gzip"));
        assert_eq!(header_text(&response, header::CONTENT_LENGTH), Some("2"));
        assert_eq!(header_text(&response, header::ETAG), Some("\"abc-gzip\""));
        assert_eq!(header_text(&response, header::VARY), Some("accept-encoding"));
        let plain = super::asset(&asset, IMMUTABLE, &HeaderMap::new());
        assert_eq!(header_text(&plain, header::CONTENT_ENCODING), None);
        assert_eq!(header_text(&plain, header::CONTENT_LENGTH), Some("10"));
        assert_eq!(header_text(&plain, header::VARY), Some("accept-encoding"));
    }
}
