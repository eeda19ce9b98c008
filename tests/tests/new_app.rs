//! `ssbuild new` writes an app that packs and runs as it is: its page
//! connects in real Chromium, its actions answer over the HTTP API and the
//! WebSocket, and a chat message reaches the other connections.

use ss_tests::{
    Browser, Reports, RunningServer, WsClient, chromium, chromium_dom, http, http_with_body, pack_app, wait_for_report,
};

fn serve_new_app(env: &str) -> (tempfile::TempDir, RunningServer) {
    serve_new_app_with(env, |app| app)
}

fn serve_new_app_with(env: &str, extend: impl FnOnce(ssrun::App) -> ssrun::App) -> (tempfile::TempDir, RunningServer) {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("lobby");
    ssbuild::new::create(&app).expect("the app is written");
    let report = pack_app(&app, env);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let loaded = ssrun::LoadedApp::load(&app).expect("the packed app loads");
    let config = ssrun::Config::load(loaded.config_dir.as_deref(), &loaded.env).expect("its config files are valid");
    let app = ssrun::App::new(loaded).with_config(config).with_javascript().expect("its server code starts");
    (dir, RunningServer::with_app(extend(app), 0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_app_answers_and_its_chat_reaches_everyone() {
    let (_dir, server) = serve_new_app("production");
    let addr = server.addr;

    let square = tokio::task::spawn_blocking(move || http(addr, "GET", "/api/app/square.json?25", &[])).await.unwrap();
    assert_eq!(square.status, 200);
    assert_eq!(String::from_utf8_lossy(&square.body).trim(), "625");
    // The link the /api page gives, with no argument: what to give, not a stack.
    let bare = tokio::task::spawn_blocking(move || http(addr, "GET", "/api/app/square", &[])).await.unwrap();
    assert_eq!(bare.status, 400, "{}", String::from_utf8_lossy(&bare.body));
    assert!(String::from_utf8_lossy(&bare.body).contains("/api/app/square?25"));
    let icon = tokio::task::spawn_blocking(move || http(addr, "GET", "/favicon.svg", &[])).await.unwrap();
    assert_eq!(icon.status, 200);

    let mut listener = WsClient::connect(addr, None).await;
    let mut speaker = WsClient::connect(addr, None).await;
    let reply = speaker.call(1, "chat.send", serde_json::json!(["  hello, room  "])).await;
    assert_eq!(reply["result"], true, "{reply}");
    let event = loop {
        let message = listener.next_json().await;
        if message["type"] == "event" {
            break message;
        }
    };
    assert_eq!(event["event"], "chat:message", "{event}");
    assert_eq!(event["data"]["text"], "hello, room", "{event}");
    assert!(event["data"]["at"].as_f64().unwrap() > 1.7e12, "{event}");

    // An empty message is refused, over HTTP too.
    let empty = tokio::task::spawn_blocking(move || {
        http_with_body(addr, "POST", "/api/chat/send.json", &[("Content-Type", "application/json")], b"[\"  \"]")
    })
    .await
    .unwrap();
    assert_eq!(empty.status, 500, "{}", String::from_utf8_lossy(&empty.body));
    // An SS.Error: its message, not a generic one, even in production.
    let body: serde_json::Value = serde_json::from_slice(&empty.body).unwrap();
    assert_eq!(body["error"]["message"], "Type a message first.", "{body}");
    let reply = speaker.call(2, "chat.send", serde_json::json!([""])).await;
    assert_eq!(reply["error"], serde_json::json!({"code": "failed", "message": "Type a message first."}), "{reply}");

    // Unknown paths get the app's 404 page.
    let missing = tokio::task::spawn_blocking(move || http(addr, "GET", "/nothing-here", &[])).await.unwrap();
    assert_eq!(missing.status, 404);
    assert!(
        String::from_utf8_lossy(&missing.body).contains("Back to lobby"),
        "{}",
        String::from_utf8_lossy(&missing.body)
    );
}

#[test]
fn a_new_app_connects_in_the_browser() {
    let Some(chromium) = chromium() else { return };
    for env in ["development", "production"] {
        // The page's init() calls app.square(25) once its session is ready:
        // a native action of that name (which takes precedence) notes the call.
        let reports: Reports = Default::default();
        let noted = reports.clone();
        let (_dir, server) = serve_new_app_with(env, move |app| {
            app.action("app.square", move |call: ssrun::Call| {
                let noted = noted.clone();
                async move {
                    let n: f64 = call.arg(0)?;
                    noted.lock().unwrap().push(("square".to_string(), serde_json::json!(n)));
                    Ok(serde_json::json!(n * n))
                }
            })
        });
        let page = chromium_dom(&chromium, &format!("http://{}/", server.addr));
        assert!(page.contains("<title>lobby</title>"), "{env}: {page}");
        let _browser = Browser::open(&chromium, &format!("http://{}/", server.addr));
        assert_eq!(wait_for_report(&reports, "square", 20), serde_json::json!(25.0), "{env}");
    }
}
