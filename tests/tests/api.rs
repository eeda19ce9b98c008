//! The HTTP API: each form of call, each status, Basic Auth and the session cookie.

use serde_json::{Value, json};
use ss_tests::{
    HttpResponse, Reports, RunningServer, WsClient, fixture, http, http_with_body, pack_app, with_demo_actions,
};

struct Served {
    _dir: tempfile::TempDir,
    server: RunningServer,
}

fn serve(basic_auth: bool) -> Served {
    let dir = fixture("realtime");
    pack_app(dir.path(), "development");
    let mut app = with_demo_actions(ssrun::App::new(ssrun::LoadedApp::load(dir.path()).unwrap()), Reports::default());
    if basic_auth {
        app = app.api_basic_auth(|user, password| async move {
            Ok((user == "ann" && password == "s3cret").then(|| format!("user:{user}")))
        });
    }
    Served { server: RunningServer::with_app(app, 0), _dir: dir }
}

fn json_of(response: &HttpResponse) -> Value {
    assert_eq!(response.header("content-type"), Some("application/json"), "{response:?}");
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&response.body)))
}

fn body(response: &HttpResponse) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

#[test]
fn each_form_of_call() {
    let s = serve(false);
    let addr = s.server.addr;
    let html = http(addr, "GET", "/api/app/square?25", &[]);
    assert_eq!(html.status, 200);
    assert_eq!(html.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(body(&html).contains("<pre>625</pre>"), "{}", body(&html));
    assert_eq!(html.header("cache-control"), Some("no-store"));

    let square = http(addr, "GET", "/api/app/square.json?25", &[]);
    assert_eq!((square.status, json_of(&square)), (200, json!(625)));
    assert_eq!(json_of(&http(addr, "GET", "/API/app/square.json?3", &[])), json!(9), "the prefix is case-insensitive");
    assert_eq!(json_of(&http(addr, "GET", "/api/app/echo.json?a=1&b=x%20y", &[])), json!([{"a": "1", "b": "x y"}]));
    assert_eq!(json_of(&http(addr, "GET", "/api/app/echo.json?t=a&t=b", &[])), json!([{"t": ["a", "b"]}]));
    assert_eq!(json_of(&http(addr, "GET", "/api/app/echo.json?hello%20there", &[])), json!(["hello there"]));
    assert_eq!(json_of(&http(addr, "GET", "/api/app/echo.json", &[])), json!([]));
    let posted =
        http_with_body(addr, "POST", "/api/app/echo.json", &[("Content-Type", "application/json")], br#"{"n":[1,2]}"#);
    assert_eq!(json_of(&posted), json!([{"n": [1, 2]}]));
    let cut = http_with_body(addr, "POST", "/api/app/echo.json", &[], br#"["ok\ud83d"]"#);
    assert_eq!(
        serde_json::from_slice::<Value>(&cut.body).unwrap(),
        json!([["ok\u{fffd}"]]),
        "half an emoji reads as U+FFFD"
    );
    let posted = http_with_body(addr, "POST", "/api/app/square.json", &[], b"12");
    assert_eq!(json_of(&posted), json!(144));
    let escaped = http(addr, "GET", "/api/app/echo?%3Cscript%3E", &[]);
    assert!(body(&escaped).contains("&lt;script&gt;") && !body(&escaped).contains("<script>"), "{}", body(&escaped));
}

#[test]
fn the_index_lists_the_public_api_tree() {
    let s = serve(false);
    let addr = s.server.addr;
    for path in ["/api", "/api/", "/api/app"] {
        let index = http(addr, "GET", path, &[]);
        assert_eq!(index.status, 200, "{path}");
        assert!(body(&index).contains("<a href=\"/api/app/square\">app.square</a>"), "{path}: {}", body(&index));
    }
    let tree = json_of(&http(addr, "GET", "/api.json", &[]));
    assert_eq!(tree["api"]["app"]["square"], 1);
    assert_eq!(tree["api"]["secure"]["secret"], 1);
}

#[test]
fn each_error_status() {
    let s = serve(false);
    let addr = s.server.addr;
    let expect = |method: &str, path: &str, body: &[u8], status: u16, code: &str| {
        let response = http_with_body(addr, method, path, &[], body);
        assert_eq!(response.status, status, "{method} {path}: {}", String::from_utf8_lossy(&response.body));
        if path.contains(".json") {
            assert_eq!(json_of(&response)["error"]["code"], code, "{method} {path}");
        }
        response
    };
    expect("GET", "/api/app/nope.json", b"", 404, "not_found");
    // An encoded slash is no path separator, and names no namespace either.
    let encoded = expect("GET", "/api/app%2Fsquare.json?2", b"", 404, "not_found");
    assert!(json_of(&encoded)["error"]["message"].as_str().unwrap().starts_with("no action app/square;"));
    expect("GET", "/api/app/square.json?%22x%22", b"", 400, "bad_args");
    expect("GET", "/api/app/square.json?x", b"", 400, "bad_args");
    expect("POST", "/api/app/square.json", b"{oops", 400, "bad_request");
    expect("GET", "/api/app/square.xml?2", b"", 400, "bad_request");
    let put = expect("PUT", "/api/app/square.json", b"", 405, "bad_request");
    assert_eq!(put.header("allow"), Some("GET, POST"));
    let failed = expect("GET", "/api/app/fail.json", b"", 500, "failed");
    assert_eq!(json_of(&failed)["error"]["message"], "the disk is full");
    expect("POST", "/api/app/echo.json", &vec![b' '; 70 * 1024], 413, "bad_request");
    // Without Basic Auth configured, an authenticated action cannot be reached over HTTP.
    let forbidden = expect("GET", "/api/secure/secret.json", b"", 403, "unauthorized");
    assert!(json_of(&forbidden)["error"]["message"].as_str().unwrap().contains("Basic Auth"));
    let html = expect("GET", "/api/app/nope", b"", 404, "");
    assert!(body(&html).contains("no action app.nope"), "{}", body(&html));
}

/// A body that never finishes arriving is answered with 408 once the time
/// headers have is up, rather than holding its connection for ever.
#[test]
fn a_body_that_stops_arriving_is_answered_with_408() {
    use std::io::{Read, Write};
    let dir = fixture("realtime");
    pack_app(dir.path(), "development");
    let loaded = ssrun::LoadedApp::load(dir.path()).unwrap();
    let mut config = ssrun::Config::for_env(&loaded.env);
    config.header_timeout = std::time::Duration::from_millis(300);
    let app = with_demo_actions(ssrun::App::new(loaded).with_config(config), Reports::default());
    let server = RunningServer::with_app(app, 0);
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let started = std::time::Instant::now();
    stream
        .write_all(b"POST /api/app/square.json HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[")
        .unwrap();
    let mut response = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&response).contains("header_timeout") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("the body did not arrive within 0.3 s"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn basic_auth_guards_authenticated_actions() {
    let s = serve(true);
    let addr = s.server.addr;
    let none = http(addr, "GET", "/api/secure/secret.json", &[]);
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Basic realm=\"Secure API\""));
    let wrong = http(addr, "GET", "/api/secure/secret.json", &[("Authorization", "Basic YW5uOm5vcGU=")]); // ann:nope
    assert_eq!(wrong.status, 401);
    let right = http(addr, "GET", "/api/secure/secret.json", &[("Authorization", "Basic YW5uOnMzY3JldA==")]); // ann:s3cret
    assert_eq!((right.status, json_of(&right)), (200, json!({"for": "user:ann"})));
    // Other actions need nothing.
    assert_eq!(http(addr, "GET", "/api/app/square.json?2", &[]).status, 200);
}

#[tokio::test]
async fn the_session_cookie_signs_api_calls_in() {
    let s = serve(false);
    let addr = s.server.addr;
    let mut socket = WsClient::connect(addr, None).await;
    let id = socket.set_cookie.clone().unwrap();
    socket.call(1, "app.login", json!(["ann"])).await;
    let cookie = format!("session_id={id}");
    let response = tokio::task::spawn_blocking(move || {
        let who = http(addr, "GET", "/api/app/whoami.json", &[("Cookie", &cookie)]);
        let secret = http(addr, "GET", "/api/secure/secret.json", &[("Cookie", &cookie)]);
        let stranger = http(addr, "GET", "/api/app/login.json?%22eve%22", &[]);
        // A link on another site carries the cookie (SameSite=Lax) but must not act as the user.
        let cross = http(addr, "GET", "/api/app/whoami.json", &[("Cookie", &cookie), ("Sec-Fetch-Site", "cross-site")]);
        let foreign =
            http(addr, "GET", "/api/app/whoami.json", &[("Cookie", &cookie), ("Origin", "https://evil.test")]);
        let own = http(addr, "GET", "/api/app/whoami.json", &[("Cookie", &cookie), ("Sec-Fetch-Site", "same-origin")]);
        assert_eq!((json_of(&cross), json_of(&foreign), json_of(&own)), (json!(null), json!(null), json!("ann")));
        let head = http(addr, "HEAD", "/api/app/whoami.json", &[("Cookie", &cookie)]);
        assert_eq!(head.status, 405, "a HEAD never runs an action");
        (json_of(&who), secret.status, json_of(&secret), stranger.status)
    })
    .await
    .unwrap();
    assert_eq!(response.0, json!("ann"));
    assert_eq!((response.1, response.2), (200, json!({"for": "ann"})));
    assert_eq!(response.3, 500, "a call without a session cannot sign in");
}

/// Settings come from the app's config files: the API's prefix here.
#[test]
fn the_prefix_and_switch_come_from_config_files() {
    let dir = fixture("realtime");
    ss_tests::write(dir.path(), "config/app.toml", "[build]\nminify = false\n\n[api]\nprefix = \"rpc\"\n");
    ss_tests::write(dir.path(), "config/environments/staging.toml", "[api]\nenabled = false\n");
    for (env, enabled) in [("development", true), ("staging", false)] {
        pack_app(dir.path(), env);
        let loaded = ssrun::LoadedApp::load(dir.path()).unwrap();
        let config = ssrun::Config::load(loaded.config_dir.as_deref(), &loaded.env).unwrap();
        let app = with_demo_actions(ssrun::App::new(loaded).with_config(config), Reports::default());
        let server = RunningServer::with_app(app, 0);
        let square = http(server.addr, "GET", "/rpc/app/square.json?25", &[]);
        if enabled {
            assert_eq!(json_of(&square), json!(625), "{env}");
        } else {
            assert_eq!(square.status, 404, "{env}");
        }
        assert_eq!(http(server.addr, "GET", "/api/app/square.json?25", &[]).status, 404, "{env}");
    }
}
