//! Support for the cross-program tests: fixture apps copied to temporary
//! folders, packed, and their bundles evaluated in Node.js.
//!
//! Tests that need an outside program (Node.js, npm packages) skip with a
//! printed reason when it is missing, except under `CI`, where they fail.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the repository").to_path_buf()
}

/// Copies `fixtures/apps/NAME` to a new temporary folder and returns it,
/// without what a pack of it left there (`dist/`, `.ssbuild-cache/`).
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
        assert!(!in_ci(), "Node.js is required under CI to evaluate packed bundles");
        eprintln!("skipped: Node.js is not installed, so packed bundles cannot be evaluated");
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
    /// Loads the packed app at `path` and serves it.
    pub fn start(path: &Path) -> RunningServer {
        let app = std::sync::Arc::new(ssrun::LoadedApp::load(path).unwrap_or_else(|e| panic!("{e}")));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, addr) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                ready.send(listener.local_addr().expect("addr")).expect("report the address");
                ssrun::serve(app, listener, async {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
            });
        });
        let addr = addr.recv().expect("the server started");
        RunningServer { addr, stop: Some(stop), thread: Some(thread) }
    }
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
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
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
