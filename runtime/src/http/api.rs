//! The HTTP API: every action is also a URL.
//!
//! - `GET /api/app/square?25` calls `app.square(25)`: a query without `=` is
//!   one argument, parsed as JSON when it is JSON and a string otherwise;
//!   `?a=1&b=2` is one argument, the object `{"a": "1", "b": "2"}`.
//! - `POST /api/app/square` with a JSON body calls the action with that value.
//! - `.json` after the action's name answers JSON; without it, an HTML page.
//! - `/api` (or a path with fewer than two parts) lists the API tree.
//! - Statuses: 200, 400 (bad request or arguments), 401 (credentials needed),
//!   403 (no way to sign in), 404 (no such action), 405, 413, 500 (the action failed).

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use base64::Engine;
use serde_json::{Value, json};

use crate::Shared;
use crate::actions::{ActionError, CallLog, LogCall, SessionHandle};

/// The rest of `path` after the API prefix (`""`, `".json"` or `"/app/square"`),
/// when it is under the prefix (matched case-insensitively).
pub fn under_prefix<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let after_slash = path.strip_prefix('/')?;
    let head = after_slash.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = &after_slash[prefix.len()..];
    (rest.is_empty() || rest.starts_with('/') || rest.starts_with('.')).then_some(rest)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Html,
    Json,
}

/// Answers one API request; `rest` is the path after the prefix.
pub(crate) async fn handle(shared: Arc<Shared>, request: Request, rest: &str) -> Response<Body> {
    let (segments, format) = match parse_path(rest) {
        Ok(parsed) => parsed,
        Err(extension) => {
            let message = format!("unknown format .{extension}: add .json for JSON, or nothing for HTML");
            return error(Format::Json, StatusCode::BAD_REQUEST, "bad_request", &message);
        }
    };
    let method = request.method().clone();
    // The index answers GET, HEAD and POST; actions run on GET and POST only
    // (a HEAD must not have effects).
    // (A part holding an encoded `/`, as in `/api/app%2Fsquare`, names no
    // namespace: it goes on, to be an action that is not there.)
    let namespace = segments.len() < 2 && !segments.iter().any(|s| s.contains('/'));
    if namespace && matches!(method, Method::GET | Method::HEAD | Method::POST) {
        return index(&shared, format);
    }
    if method != Method::GET && method != Method::POST {
        let mut response = error(format, StatusCode::METHOD_NOT_ALLOWED, "bad_request", "use GET or POST");
        response.headers_mut().insert(header::ALLOW, "GET, POST".parse().expect("valid header"));
        return response;
    }
    let name = segments.join(".");
    let log = LogCall { level: shared.config.log_level, silent: false, http: true };
    let Some(action) = shared.registry.get(&name).cloned() else {
        let e = shared.registry.not_found(&name);
        CallLog::refused(log, &name, &[], &e);
        return error(format, StatusCode::NOT_FOUND, e.code(), &e.to_string());
    };
    let (parts, body) = request.into_parts();
    let args = if method == Method::POST {
        // The body must arrive within the time its headers had: a client
        // that never finishes it would otherwise hold its connection, and a
        // file descriptor, for ever.
        let limit = shared.config.header_timeout;
        let bytes = match tokio::time::timeout(limit, axum::body::to_bytes(body, shared.config.max_message_bytes)).await
        {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(_)) => {
                let message = format!("the body is larger than {} bytes", shared.config.max_message_bytes);
                return error(format, StatusCode::PAYLOAD_TOO_LARGE, "bad_request", &message);
            }
            Err(_) => {
                let message =
                    format!("the body did not arrive within {} s (server.header_timeout)", limit.as_secs_f64());
                return error(format, StatusCode::REQUEST_TIMEOUT, "bad_request", &message);
            }
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            query_args(parts.uri.query())
        } else {
            let parsed = serde_json::from_slice::<Value>(&bytes).or_else(|e| {
                // Half of a surrogate pair, as JSON.stringify writes it: U+FFFD instead.
                let text = std::str::from_utf8(&bytes).ok();
                match text.and_then(crate::json::without_lone_surrogates) {
                    Some(repaired) => serde_json::from_str::<Value>(&repaired),
                    None => Err(e),
                }
            });
            match parsed {
                Ok(value) => vec![value],
                Err(e) => {
                    let message = format!("the body is not JSON: {e}");
                    return error(format, StatusCode::BAD_REQUEST, "bad_request", &message);
                }
            }
        }
    } else {
        query_args(parts.uri.query())
    };

    // The cookie's session is used only for requests from this site's own
    // pages (or with no browser context at all): a link or form on another
    // site must not act as the signed-in user.
    let cookie =
        if same_site(&parts.headers) { crate::ws::existing_session(&shared, &parts.headers).await } else { Ok(None) };
    let session = match cookie {
        Ok(Some(found)) => SessionHandle::new(Arc::new(Mutex::new(found)), shared.services.clone()),
        Ok(None) => SessionHandle::transient(shared.services.clone()),
        Err(e) => {
            crate::errln!("ssrun: session store: {e}");
            return error(format, StatusCode::SERVICE_UNAVAILABLE, "failed", "the session store is unavailable");
        }
    };
    if action.authenticate
        && session.user_id().is_none()
        && let Err(response) = basic_auth(&shared, &parts.headers, &session, format, &name).await
    {
        return response;
    }
    // Whether signing in could change the answer: for a caller who is signed in already, it could not.
    let signed_in = session.user_id().is_some();
    let logged = CallLog::begin(log, &name, &args);
    let outcome =
        action.start(shared.call(action.name.clone(), args, session, None), shared.config.reply_timeout).await;
    if let Some(logged) = logged {
        logged.end(&outcome);
    }
    match outcome {
        Ok(value) => success(format, &name, &value),
        Err(e) => {
            let status = match e {
                ActionError::BadRequest(_) | ActionError::BadArgs(_) => StatusCode::BAD_REQUEST,
                ActionError::NotFound(_) => StatusCode::NOT_FOUND,
                // A 401 must say how to sign in: with Basic Auth configured,
                // it does; without, there is no way in over HTTP. A caller
                // signed in already is refused for who they are (403).
                ActionError::Unauthorized(_) if shared.basic_auth.is_some() && !signed_in => StatusCode::UNAUTHORIZED,
                ActionError::Unauthorized(_) => StatusCode::FORBIDDEN,
                ActionError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let mut response = error(format, status, e.code(), &e.to_string());
            if status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
            }
            response
        }
    }
}

/// Whether a request comes from this site's pages or from no page at all:
/// browsers send `Sec-Fetch-Site` (and `Origin` on POST); other clients send neither.
fn same_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.to_str(), Ok("same-origin" | "none"));
    }
    crate::ws::same_origin(headers)
}

/// The `WWW-Authenticate` header of a 401.
const CHALLENGE: &str = "Basic realm=\"Secure API\"";

/// Signs the call in through Basic Auth, or answers 401/403.
async fn basic_auth(
    shared: &Shared,
    headers: &HeaderMap,
    session: &SessionHandle,
    format: Format,
    name: &str,
) -> Result<(), Response<Body>> {
    let Some(check) = &shared.basic_auth else {
        let message = format!(
            "{name} needs a signed-in user, and this server has no way to sign in over the HTTP API (no Basic Auth module is configured)"
        );
        return Err(error(format, StatusCode::FORBIDDEN, "unauthorized", &message));
    };
    let challenge = |message: &str| {
        let mut response = error(format, StatusCode::UNAUTHORIZED, "unauthorized", message);
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
        response
    };
    let Some((user, password)) = credentials(headers) else {
        return Err(challenge(&format!("{name} needs a signed-in user: send Basic Auth credentials")));
    };
    match check(user, password).await {
        Ok(Some(user_id)) => {
            session.sign_in_for_this_call(user_id);
            Ok(())
        }
        Ok(None) => Err(challenge("wrong username or password")),
        Err(e) => {
            crate::errln!("ssrun: Basic Auth module: {e}");
            Err(error(format, StatusCode::INTERNAL_SERVER_ERROR, "failed", "the authentication module failed"))
        }
    }
}

fn credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Splits `/app/square.json` into its decoded parts and format; `Err` names
/// an unknown extension. Empty parts are left out, so a trailing slash
/// (`/app/square.json/`) changes nothing.
fn parse_path(rest: &str) -> Result<(Vec<String>, Format), String> {
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    let mut segments: Vec<String> = rest.split('/').filter(|s| !s.is_empty()).map(decode).collect();
    let mut format = Format::Html;
    if let Some(last) = segments.last_mut()
        && let Some((stem, extension)) = last.rsplit_once('.')
    {
        match extension.to_ascii_lowercase().as_str() {
            "json" => format = Format::Json,
            "html" => {}
            _ => return Err(extension.to_string()),
        }
        *last = stem.to_string();
    }
    Ok((segments, format))
}

/// The arguments a query string gives: none, one object (with `=`), or one value.
fn query_args(query: Option<&str>) -> Vec<Value> {
    let Some(query) = query.filter(|q| !q.is_empty()) else { return Vec::new() };
    if query.contains('=') {
        // As a form sends them: a key given more than once (checkboxes, a
        // multiple select) has all its values, in order, in an array.
        let mut object = serde_json::Map::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = Value::from(value.into_owned());
            match object.get_mut(key.as_ref()) {
                Some(Value::Array(values)) => values.push(value),
                Some(first) => *first = Value::Array(vec![first.take(), value]),
                None => {
                    object.insert(key.into_owned(), value);
                }
            }
        }
        return vec![Value::Object(object)];
    }
    let text = percent_encoding::percent_decode_str(query).decode_utf8_lossy();
    vec![serde_json::from_str(&text).unwrap_or_else(|_| Value::from(text.into_owned()))]
}

fn index(shared: &Shared, format: Format) -> Response<Body> {
    let tree = shared.registry.tree();
    let prefix = &shared.config.api_prefix;
    match format {
        Format::Json => respond(StatusCode::OK, Format::Json, json!({ "api": tree }).to_string()),
        Format::Html => {
            let mut list = String::new();
            for name in shared.registry.names() {
                let path = name.replace('.', "/");
                list.push_str(&format!(
                    "<li><a href=\"/{prefix}/{path}\">{name}</a> (<a href=\"/{prefix}/{path}.json\">json</a>)</li>",
                    name = escape(name),
                    path = escape(&path),
                    prefix = escape(prefix)
                ));
            }
            if list.is_empty() {
                list.push_str("<li>No actions.</li>");
            }
            let body = format!("<!doctype html><meta charset=utf-8><title>API</title><h1>API</h1><ul>{list}</ul>");
            respond(StatusCode::OK, Format::Html, body)
        }
    }
}

fn success(format: Format, name: &str, value: &Value) -> Response<Body> {
    match format {
        Format::Json => respond(StatusCode::OK, format, value.to_string()),
        Format::Html => {
            let pretty = serde_json::to_string_pretty(value).expect("JSON values serialize");
            let body = format!(
                "<!doctype html><meta charset=utf-8><title>{name}</title><pre>{}</pre>",
                escape(&pretty),
                name = escape(name)
            );
            respond(StatusCode::OK, format, body)
        }
    }
}

fn error(format: Format, status: StatusCode, code: &str, message: &str) -> Response<Body> {
    match format {
        Format::Json => respond(status, format, json!({"error": {"code": code, "message": message}}).to_string()),
        Format::Html => {
            let body = format!(
                "<!doctype html><meta charset=utf-8><title>{status}</title><h1>{status}</h1><p>{}</p>",
                escape(message),
                status = status.as_u16()
            );
            respond(status, format, body)
        }
    }
}

fn respond(status: StatusCode, format: Format, body: String) -> Response<Body> {
    let content_type = match format {
        Format::Json => "application/json",
        Format::Html => "text/html; charset=utf-8",
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .header("x-content-type-options", "nosniff")
        .body(Body::from(body))
        .expect("valid response")
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_case_insensitive_and_whole() {
        assert_eq!(under_prefix("/api", "api"), Some(""));
        assert_eq!(under_prefix("/API/app/square", "api"), Some("/app/square"));
        assert_eq!(under_prefix("/api.json", "api"), Some(".json"));
        assert_eq!(under_prefix("/apis/x", "api"), None);
        assert_eq!(under_prefix("/a", "api"), None);
    }

    #[test]
    fn queries_become_arguments() {
        assert_eq!(query_args(None), Vec::<Value>::new());
        assert_eq!(query_args(Some("25")), [json!(25)]);
        assert_eq!(query_args(Some("hello%20world")), [json!("hello world")]);
        assert_eq!(query_args(Some("%5B1%2C2%5D")), [json!([1, 2])]);
        assert_eq!(query_args(Some("a=1&b=x%20y")), [json!({"a": "1", "b": "x y"})]);
        assert_eq!(query_args(Some("t=a&n=1&t=b&t=c")), [json!({"t": ["a", "b", "c"], "n": "1"})]);
    }

    #[test]
    fn paths_give_names_and_formats() {
        let (segments, format) = parse_path("/app/square.json").unwrap();
        assert_eq!(segments, ["app", "square"]);
        assert!(format == Format::Json);
        let (segments, format) = parse_path("/app/square.json/").unwrap();
        assert_eq!(segments, ["app", "square"]);
        assert!(format == Format::Json);
        assert_eq!(parse_path("//app//square").unwrap().0, ["app", "square"]);
        assert!(parse_path("/app/square").unwrap().1 == Format::Html);
        assert_eq!(parse_path("/app/square.xml").unwrap_err(), "xml");
    }

    #[test]
    fn only_same_site_requests_use_the_cookie() {
        let mut h = HeaderMap::new();
        assert!(same_site(&h), "no browser context");
        h.insert(header::HOST, "app.test".parse().unwrap());
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(!same_site(&h));
        h.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert!(same_site(&h));
        h.remove("sec-fetch-site");
        h.insert(header::ORIGIN, "https://evil.test".parse().unwrap());
        assert!(!same_site(&h));
    }

    #[test]
    fn basic_credentials_are_decoded() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Basic YW5uOnMzY3I6dA==".parse().unwrap());
        assert_eq!(credentials(&h), Some(("ann".into(), "s3cr:t".into())));
        h.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(credentials(&h), None);
    }
}
