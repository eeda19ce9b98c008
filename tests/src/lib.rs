//! Support for the cross-program tests: fixture apps copied to temporary
//! folders, packed, and their bundles evaluated in Node.js.
//!
//! Tests that need an outside program (Node.js, npm packages) skip with a
//! printed reason when it is missing, except under `CI`, where they fail.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the repository").to_path_buf()
}

/// Copies `fixtures/apps/NAME` to a new temporary folder and returns it,
/// without what a pack of it left there (`dist/`, `.ssbuild-cache/`). A
/// fixture without `app/views/` (one that only tests client code) gets a
/// plain page to load it.
pub fn fixture(name: &str) -> tempfile::TempDir {
    let src = repo_root().join("fixtures/apps").join(name);
    assert!(src.is_dir(), "no fixture app {}", src.display());
    let dir = tempfile::tempdir().expect("a temporary folder");
    for entry in std::fs::read_dir(&src).expect("list the fixture") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name == "dist" || name == ".ssbuild-cache" {
            continue;
        }
        let target = dir.path().join(&name);
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
    if !src.join("app/views").exists() {
        let page = format!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n  <meta charset=\"utf-8\">\n  <title>{name} fixture</title>\n  \
             <SocketStream>\n</head>\n<body>\n  <main id=\"main\">connecting</main>\n</body>\n</html>\n"
        );
        write(dir.path(), "app/views/app.html", &page);
    }
    dir
}

/// Copies every file below `from` into `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.expect("walk");
        let rel = entry.path().strip_prefix(from).expect("below");
        let target = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Every file below `dir`, by path relative to it, with its bytes.
pub fn files_under(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.expect("walk"))
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).expect("below").display().to_string();
            (rel, std::fs::read(e.path()).expect("read"))
        })
        .collect()
}

/// Writes a file (and its folders).
pub fn write(root: &Path, rel: &str, text: impl AsRef<[u8]>) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// True when a missing dependency must fail the test rather than skip it.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Whether `node` runs; prints why a test is skipped when it does not (and fails under CI).
pub fn have_node() -> bool {
    let ok = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(!in_ci(), "Node.js is required under CI: tests run packed bundles and the browser library in it");
        eprintln!("skipped: Node.js is not installed, so this test cannot run its JavaScript");
    }
    ok
}

/// An npm package from the repository's pinned dev dependencies (`npm ci` installs them).
pub fn npm_package(name: &str) -> Option<PathBuf> {
    let dir = repo_root().join("node_modules").join(name);
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(!in_ci(), "node_modules/{name} is missing under CI: run `npm ci` first");
    eprintln!("skipped: node_modules/{name} is missing (run `npm ci`)");
    None
}

/// Evaluates `script` in Node.js after running the bundle at `bundle` as a
/// classic script in the global scope. `script` is the body of an async
/// function; whatever it returns is printed as JSON and parsed here.
pub fn eval_bundle(bundle: &Path, script: &str) -> serde_json::Value {
    let program = format!(
        "const fs = require('fs'); const vm = require('vm');\n\
         vm.runInThisContext(fs.readFileSync({bundle:?}, 'utf8'), {{ filename: {bundle:?} }});\n\
         (async () => {{ {script} }})().then(\n\
           (v) => process.stdout.write(JSON.stringify(v === undefined ? null : v)),\n\
           (e) => {{ console.error(e && e.stack || e); process.exit(3); }});\n",
        bundle = bundle.display().to_string(),
    );
    let out = Command::new("node").arg("-e").arg(program).output().expect("node runs");
    assert!(out.status.success(), "node failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON from node ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// The path of the client bundle of a packed app.
pub fn client_bundle(report: &ssbuild::PackReport) -> PathBuf {
    report.out.join(&report.manifest.assets["app.js"].path)
}

/// The path of the server bundle of a packed app.
pub fn server_bundle(report: &ssbuild::PackReport) -> PathBuf {
    report.out.join(&report.manifest.server["server.js"].path)
}

/// A running `ssrun` serving a loaded app on a free port of 127.0.0.1; stopped on drop.
pub struct RunningServer {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningServer {
    /// Loads the packed app at `path` and serves it, with no actions.
    pub fn start(path: &Path) -> RunningServer {
        RunningServer::with_app(ssrun::App::new(ssrun::LoadedApp::load(path).unwrap_or_else(|e| panic!("{e}"))), 0)
    }

    /// Serves `app` on `port` of 127.0.0.1 (0: a free one).
    pub fn with_app(app: ssrun::App, port: u16) -> RunningServer {
        RunningServer::launch(move |ready, stopped| {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            runtime.block_on(serve_until(app, port, ready, stopped));
        })
    }

    /// Serves the app `make` builds on a single-threaded scheduler, calling
    /// `make` inside its `LocalSet` (so it may start the JavaScript engine
    /// on the server's thread with `with_javascript_here`).
    pub fn here(make: impl FnOnce() -> ssrun::App + Send + 'static) -> RunningServer {
        RunningServer::launch(move |ready, stopped| {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async move { serve_until(make(), 0, ready, stopped).await });
        })
    }

    /// Runs `serve` on a thread of its own and waits until it reports its address.
    fn launch(
        serve: impl FnOnce(std::sync::mpsc::Sender<std::net::SocketAddr>, tokio::sync::oneshot::Receiver<()>)
        + Send
        + 'static,
    ) -> RunningServer {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, addr) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || serve(ready, stopped));
        let addr = addr.recv().expect("the server started");
        RunningServer { addr, stop: Some(stop), thread: Some(thread) }
    }
}

/// Listens on `port` of 127.0.0.1, reports the address, and serves `app` until `stopped`.
async fn serve_until(
    app: ssrun::App,
    port: u16,
    ready: std::sync::mpsc::Sender<std::net::SocketAddr>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    ready.send(listener.local_addr().expect("addr")).expect("report the address");
    app.serve(listener, async {
        let _ = stopped.await;
    })
    .await
    .expect("serve");
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An HTTP response read off the wire.
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body as sent (not decoded).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header of that name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request with the path exactly as given (no normalising)
/// and reads the whole response.
pub fn http(addr: std::net::SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http_raw(addr, method, path, headers, b"")
}

/// Packs the app at `app` for `env` with the cache off; panics with the
/// diagnostics when the pack fails.
pub fn pack_app(app: &Path, env: &str) -> ssbuild::PackReport {
    pack_with_url(app, env, None)
}

/// Like [`pack_app`], with a public URL.
pub fn pack_with_url(app: &Path, env: &str, public_url: Option<&str>) -> ssbuild::PackReport {
    let mut options = ssbuild::PackOptions::new(app, env);
    options.cache = false;
    options.public_url = public_url.map(str::to_string);
    ssbuild::pack(&options).unwrap_or_else(|e| panic!("pack failed:\n{e}"))
}

/// Packs the app at `app` for production, expecting a failure that writes
/// nothing; returns the error and its text.
pub fn pack_error(app: &Path) -> (ssbuild::PackError, String) {
    let mut options = ssbuild::PackOptions::new(app, "production");
    options.cache = false;
    let err = ssbuild::pack(&options).expect_err("the pack should fail");
    assert!(!app.join("dist").exists(), "a failed pack wrote output");
    let text = err.to_string();
    (err, text)
}

/// Debian's Chromium, when installed; prints why a test is skipped when it is
/// not (and fails under CI, where `.ci/run` installs it).
pub fn chromium() -> Option<PathBuf> {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).is_file() {
            return Some(PathBuf::from(candidate));
        }
    }
    assert!(!in_ci(), "Chromium is required under CI for browser tests (.ci/run installs it)");
    eprintln!("skipped: Chromium is not installed (apt-get install chromium)");
    None
}

/// Loads `url` in headless Chromium, lets its scripts run, and returns the DOM as HTML.
pub fn chromium_dom(chromium: &Path, url: &str) -> String {
    let profile = tempfile::tempdir().expect("a profile folder");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends one HTTP/1.1 request with a body and reads the whole response.
pub fn http_with_body(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let length = body.len().to_string();
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.push(("Content-Length", &length));
    http_raw(addr, method, path, &all, body)
}

fn http_raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).expect("send");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpResponse { status, headers, body: raw[split + 4..].to_vec() }
}

/// What the demo actions of [`with_demo_actions`] record (`test.report`).
pub type Reports = std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>;

/// Registers the native actions the runtime tests call:
/// `app.square(n)`, `app.echo(...args)`, `app.fail()`, `app.slow(ms, value)`,
/// `app.login(user)`, `app.logout()`, `app.whoami()`, `app.join(channel)`,
/// `app.leave(channel)`, `app.channels()`, `app.notify_me(text)` (to the caller's user),
/// `app.tell(user, text)`, `app.broadcast(text)`, `app.say(channel, text)`,
/// `app.online()`, `secure.secret()` (signed-in users only) and
/// `test.report(step, value)` (appends to `reports`).
pub fn with_demo_actions(app: ssrun::App, reports: Reports) -> ssrun::App {
    use serde_json::{Value, json};
    use ssrun::{ActionError, Call};
    app.action("app.square", |call: Call| async move {
        let n: f64 = call.arg(0)?;
        let square = n * n;
        // Whole numbers go out as integers, as JavaScript would print them.
        Ok(if square.fract() == 0.0 && square.abs() < 9e15 { json!(square as i64) } else { json!(square) })
    })
    .action("app.echo", |call: Call| async move { Ok(Value::Array(call.args)) })
    .action("app.fail", |_call: Call| async move { Err(ActionError::failed("the disk is full")) })
    .action("app.slow", |call: Call| async move {
        let ms: u64 = call.arg(0)?;
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        Ok(call.args.get(1).cloned().unwrap_or(Value::Null))
    })
    .action("app.login", |call: Call| async move {
        let user: String = call.arg(0)?;
        call.session.set_user_id(&user).await?;
        Ok(json!(user))
    })
    .action("app.logout", |call: Call| async move {
        call.session.logout().await?;
        Ok(Value::Null)
    })
    .action("app.whoami", |call: Call| async move { Ok(json!(call.session.user_id())) })
    .action("app.join", |call: Call| async move {
        let channel: String = call.arg(0)?;
        call.session.subscribe(&[&channel]).await?;
        Ok(json!(call.session.channels()))
    })
    .action("app.leave", |call: Call| async move {
        let channel: String = call.arg(0)?;
        call.session.unsubscribe(&[&channel]).await?;
        Ok(json!(call.session.channels()))
    })
    .action("app.channels", |call: Call| async move { Ok(json!(call.session.channels())) })
    .action("app.notify_me", |call: Call| async move {
        let user = call.session.user_id().ok_or_else(|| ActionError::failed("sign in first"))?;
        call.publish.user(&user, "note", call.args.first().cloned().unwrap_or(Value::Null)).await?;
        Ok(Value::Null)
    })
    .action("app.tell", |call: Call| async move {
        let user: String = call.arg(0)?;
        call.publish.user(&user, "note", call.args.get(1).cloned().unwrap_or(Value::Null)).await?;
        Ok(Value::Null)
    })
    .action("app.broadcast", |call: Call| async move {
        call.publish.broadcast("news", call.args.first().cloned().unwrap_or(Value::Null)).await?;
        Ok(Value::Null)
    })
    .action("app.say", |call: Call| async move {
        let channel: String = call.arg(0)?;
        call.publish.channel(&[&channel], "said", call.args.get(1).cloned().unwrap_or(Value::Null)).await?;
        Ok(Value::Null)
    })
    .action("app.online", |call: Call| async move { Ok(json!(call.users_online().await?)) })
    .authenticated_action("secure.secret", |call: Call| async move { Ok(json!({ "for": call.session.user_id() })) })
    .action("test.report", move |call: Call| {
        let reports = reports.clone();
        async move {
            let step: String = call.arg(0)?;
            reports.lock().expect("reports").push((step, call.args.get(1).cloned().unwrap_or(Value::Null)));
            Ok(Value::Null)
        }
    })
}

/// A raw WebSocket client of the protocol in docs/protocol.md.
pub struct WsClient {
    stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    /// The `session_id` cookie the server set on the upgrade, if it set one.
    pub set_cookie: Option<String>,
    /// The `init` message.
    pub init: serde_json::Value,
    /// The id of the last call made with [`WsClient::call_next`].
    last_id: u64,
}

/// How a WebSocket connection attempt ended.
pub type WsConnect = Result<
    (
        tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
>;

/// Opens a WebSocket to `path` with extra request headers.
pub async fn ws_open(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> WsConnect {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}{path}").into_client_request().expect("a request");
    for (name, value) in headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            value.parse().expect("a header value"),
        );
    }
    tokio_tungstenite::connect_async(request).await
}

impl WsClient {
    /// Connects (with a `session_id` cookie when given) and reads `init`.
    pub async fn connect(addr: std::net::SocketAddr, session: Option<&str>) -> WsClient {
        let cookie = session.map(|id| format!("session_id={id}"));
        let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("Cookie", c.as_str())).collect();
        let (stream, response) = ws_open(addr, "/_ss/ws?v=1", &headers).await.expect("the upgrade succeeds");
        let set_cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("session_id="))
            .and_then(|v| v.split(';').next())
            .map(str::to_string);
        let mut client = WsClient { stream, set_cookie, init: serde_json::Value::Null, last_id: 0 };
        client.init = client.next_json().await;
        assert_eq!(client.init["type"], "init", "the first message is init");
        client
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) {
        use futures_util::SinkExt;
        let text: String = text.into();
        self.stream.send(tokio_tungstenite::tungstenite::Message::text(text)).await.expect("send");
    }

    /// Sends a raw WebSocket message.
    pub async fn send_message(&mut self, message: tokio_tungstenite::tungstenite::Message) {
        use futures_util::SinkExt;
        let _ = self.stream.send(message).await;
    }

    /// Sends a call.
    pub async fn send_call(&mut self, id: u64, method: &str, args: serde_json::Value) {
        self.send_text(serde_json::json!({"type": "call", "id": id, "method": method, "args": args}).to_string()).await;
    }

    /// Calls and waits for the reply to this call (events in between are dropped).
    pub async fn call(&mut self, id: u64, method: &str, args: serde_json::Value) -> serde_json::Value {
        self.send_call(id, method, args).await;
        loop {
            let message = self.next_json().await;
            if message["type"] == "reply" && message["id"] == id {
                return message;
            }
        }
    }

    /// Calls with the next id of this client's own count (1, 2, ...), for
    /// tests that do not choose their ids, and waits for the reply.
    pub async fn call_next(&mut self, method: &str, args: serde_json::Value) -> serde_json::Value {
        self.last_id += 1;
        self.call(self.last_id, method, args).await
    }

    /// The next `count` replies, as (call id, reply) in the order they came;
    /// other messages (heartbeats, events) are skipped.
    pub async fn replies(&mut self, count: usize) -> Vec<(u64, serde_json::Value)> {
        let mut replies = Vec::with_capacity(count);
        while replies.len() < count {
            let message = self.next_json().await;
            if message["type"] == "reply" {
                let id = message["id"].as_u64().expect("calls here have numeric ids");
                replies.push((id, message));
            }
        }
        replies
    }

    /// The next text message, parsed; panics on a close or after 10 s.
    pub async fn next_json(&mut self) -> serde_json::Value {
        serde_json::from_str(&self.next_text().await).expect("the server sends JSON")
    }

    /// The next text message as sent; panics on a close or after 10 s.
    pub async fn next_text(&mut self) -> String {
        use futures_util::StreamExt;
        loop {
            let next = tokio::time::timeout(std::time::Duration::from_secs(10), self.stream.next())
                .await
                .expect("a message within 10 s");
            match next {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => return text.to_string(),
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => {
                    panic!("closed by the server: {frame:?}")
                }
                Some(Ok(_)) => continue,
                other => panic!("the connection ended: {other:?}"),
            }
        }
    }

    /// Reads until the server closes; returns the close code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        closed(&mut self.stream).await
    }
}

/// Reads `stream` until the server closes it; returns the close code and reason.
pub async fn closed(
    stream: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) -> (u16, String) {
    use futures_util::StreamExt;
    loop {
        let next =
            tokio::time::timeout(std::time::Duration::from_secs(10), stream.next()).await.expect("a close within 10 s");
        match next {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(frame)))) => {
                return (frame.code.into(), frame.reason.to_string());
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(None))) => return (1005, String::new()),
            Some(Ok(_)) => continue,
            other => panic!("the connection ended without a close frame: {other:?}"),
        }
    }
}

/// Headless Chromium showing one page until dropped.
pub struct Browser {
    child: std::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Opens `url` in a new headless Chromium with an empty profile.
    pub fn open(chromium: &Path, url: &str) -> Browser {
        let profile = tempfile::tempdir().expect("a profile folder");
        let child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromium starts");
        Browser { child, _profile: profile }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to `seconds` for `step` among `reports`; returns its value.
pub fn wait_for_report(reports: &Reports, step: &str, seconds: u64) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some((_, value)) = reports.lock().expect("reports").iter().find(|(s, _)| s == step) {
            return value.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no report {step:?} within {seconds} s; reports so far: {:?}",
            reports.lock().expect("reports")
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
