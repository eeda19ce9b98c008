//! `ssrun` in development serves each new build of the app as it appears:
//! new server code answers, the old code's timers stop, a build whose server
//! code fails to start is refused with a message while the last good one goes
//! on serving, as is one packed for another environment; a change to
//! `config/` alone is picked up too. Run with the engine on a thread of its
//! own (two CPUs) and on the server's thread (one CPU, through `taskset`
//! where it is installed).

#![cfg(unix)]

mod common;
use common::{Running, get};

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Server code of version `v`: an action that says which, and a timer that logs it.
fn server_code(v: u32) -> String {
    format!(
        "const V = {v};\nsetInterval(() => console.log('tick', V), 40);\nexports.actions = {{ version() {{ return V; }} }};\n"
    )
}

fn pack(root: &Path) {
    ssbuild::pack(&ssbuild::PackOptions::new(root, "development")).expect("the app packs");
}

/// The server's output lines, read on a thread of their own.
struct Output {
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Output {
    /// Waits up to 30 s for a line containing `text`; returns it.
    fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {text:?} within 30 s; the output so far:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// The lines that arrive within `time`.
    fn during(&mut self, time: Duration) -> Vec<String> {
        let deadline = Instant::now() + time;
        let mut lines = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            self.seen.push(line.clone());
            lines.push(line);
        }
        lines
    }
}

/// Starts ssrun in development on `root` (held to CPU 0 when `one_cpu`);
/// returns it, its output and its address.
fn start_dev_server(root: &Path, one_cpu: bool) -> (Running, Output, String) {
    let ssrun = env!("CARGO_BIN_EXE_ssrun");
    let mut command = if one_cpu {
        let mut command = Command::new("taskset");
        command.args(["-c", "0", ssrun]);
        command
    } else {
        Command::new(ssrun)
    };
    let mut child = command
        .arg(root)
        .args(["--port", "0", "--host", "127.0.0.1"])
        .env_remove("SS_ENV")
        .stdout(Stdio::piped())
        .spawn()
        .expect("ssrun starts");
    let stdout = child.stdout.take().unwrap();
    let server = Running(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut out = Output { lines: rx, seen: Vec::new() };
    let address = out.wait_for("http://").split("http://").nth(1).unwrap().trim().to_string();
    (server, out, address)
}

/// An app in a new folder whose server code is version 1 of [`server_code`],
/// with `config` as its config/app.toml when given; not packed yet.
fn clock_app(config: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "app/client/app.js", "exports.init = function () {};\n");
    write(root, "app/views/app.html", "<!doctype html>\n<html><head><SocketStream></head><body></body></html>\n");
    write(root, "app/server/clock.js", &server_code(1));
    if let Some(config) = config {
        write(root, "config/app.toml", config);
    }
    dir
}

fn picks_up_new_builds(one_cpu: bool) {
    if one_cpu && Command::new("taskset").arg("-V").output().is_err() {
        eprintln!("skipped: taskset is not installed, so ssrun cannot be held to one CPU");
        return;
    }
    let dir = clock_app(None);
    let root = dir.path();
    pack(root);

    let (server, mut out, address) = start_dev_server(root, one_cpu);
    out.wait_for("new builds of the app are served as they appear");
    out.wait_for("tick 1");
    assert!(get(&address, "/api/clock/version.json").ends_with("\r\n\r\n1"));

    // New server code: served, and the old code's timer stops.
    write(root, "app/server/clock.js", &server_code(2));
    pack(root);
    out.wait_for("serving the new build (1 action(s))");
    assert!(get(&address, "/api/clock/version.json").ends_with("\r\n\r\n2"));
    out.wait_for("tick 2");
    // The old engine stops once the old server's last task lets go of it, which
    // may be a moment after the new one starts.
    out.during(Duration::from_millis(300));
    let later = out.during(Duration::from_millis(400));
    assert!(later.iter().any(|l| l.ends_with("tick 2")), "{later:?}");
    assert!(!later.iter().any(|l| l.ends_with("tick 1")), "the old code's timer still runs: {later:?}");

    // Server code that throws while loading: refused, and version 2 goes on answering.
    write(root, "app/server/clock.js", "throw new Error('not today');\n");
    pack(root);
    let refused = out.wait_for("the new build is not served");
    assert!(refused.contains("not today") && refused.contains("the last one goes on serving"), "{refused}");
    assert!(get(&address, "/api/clock/version.json").ends_with("\r\n\r\n2"));

    // Back to the code being served: nothing to pick up, and that is said.
    write(root, "app/server/clock.js", &server_code(2));
    pack(root);
    out.wait_for("the app is back to the build being served");

    // The next good build is picked up.
    write(root, "app/server/clock.js", &server_code(4));
    pack(root);
    out.wait_for("serving the new build");
    assert!(get(&address, "/api/clock/version.json").ends_with("\r\n\r\n4"));

    // Other files in config/ (an editor's swap file) are not the config.
    write(root, "config/.app.toml.swp", "editing");
    let quiet = out.during(Duration::from_millis(800));
    assert!(!quiet.iter().any(|l| l.contains("new build") || l.contains("back to")), "{quiet:?}");

    // A change to config/ alone is picked up too.
    write(root, "config/app.toml", "[api]\nprefix = \"rpc\"\n");
    out.wait_for("serving the new build");
    assert!(get(&address, "/rpc/clock/version.json").ends_with("\r\n\r\n4"));

    // A manifest that cannot be read (a copy cut short): reported once after
    // a few looks, tried again now and then without another report, and the
    // last good build goes on serving.
    let manifest = root.join("dist/manifest.json");
    let good = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &good[..good.len() / 2]).unwrap();
    let broken = out.wait_for("the new build cannot be loaded");
    assert!(broken.contains("is not a valid manifest") && broken.contains("the last one goes on serving"), "{broken}");
    let later = out.during(Duration::from_millis(2600));
    assert!(!later.iter().any(|l| l.contains("cannot be loaded")), "reported again: {later:?}");
    assert!(get(&address, "/rpc/clock/version.json").ends_with("\r\n\r\n4"));
    std::fs::write(&manifest, &good).unwrap();
    out.wait_for("the app is back to the build being served");

    // A build for another environment is refused.
    ssbuild::pack(&ssbuild::PackOptions::new(root, "production")).expect("the app packs");
    let refused = out.wait_for("the new build is not served");
    assert!(refused.contains("packed for production"), "{refused}");
    assert!(get(&address, "/rpc/clock/version.json").ends_with("\r\n\r\n4"));

    assert!(Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap().success());
    let mut server = server;
    assert!(server.0.wait().unwrap().success(), "ssrun stops cleanly on SIGTERM");
}

#[test]
fn development_serves_each_new_build_engine_on_its_own_thread() {
    picks_up_new_builds(false);
}

#[test]
fn development_serves_each_new_build_engine_on_the_server_thread() {
    picks_up_new_builds(true);
}

/// While a new build's server code loads (here for ten seconds), the
/// build being served goes on answering: the engine loads on a thread of its
/// own, and the server's accept loop is not held up by it. (On one CPU the
/// engine shares the server's thread, so this is for two or more.)
#[test]
fn development_answers_while_new_server_code_loads() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipped: this process may use one CPU, where the engine shares the server's thread");
        return;
    }
    // Room for a long load: the test needs the window, not the speed.
    let dir = clock_app(Some("[server]\njs_time_limit = 30\n"));
    let root = dir.path();
    pack(root);
    let (server, mut out, address) = start_dev_server(root, false);
    out.wait_for("new builds of the app are served as they appear");

    write(
        root,
        "app/server/clock.js",
        "console.log('slow load starts');\nconst end = Date.now() + 10000;\nwhile (Date.now() < end) {}\n\
         exports.actions = { version() { return 2; } };\n",
    );
    pack(root);
    out.wait_for("slow load starts");
    // Had the server stopped accepting, these would wait in the listen
    // queue for the new build, which answers 2.
    assert!(get(&address, "/").starts_with("HTTP/1.1 200"), "the page answers while the new code loads");
    let answer = get(&address, "/api/clock/version.json");
    assert!(answer.ends_with("\r\n\r\n1"), "the build being served answers: {answer}");
    out.wait_for("serving the new build (1 action(s))");
    assert!(get(&address, "/api/clock/version.json").ends_with("\r\n\r\n2"));
    drop(server);
}

#[test]
fn production_does_not_look_for_new_builds() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "app/client/app.js", "exports.init = function () {};\n");
    write(root, "app/views/app.html", "<!doctype html>\n<html><head><SocketStream></head><body></body></html>\n");
    ssbuild::pack(&ssbuild::PackOptions::new(root, "production")).expect("the app packs");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssrun"))
        .arg(root)
        .args(["--port", "0", "--host", "127.0.0.1"])
        .env("SS_ENV", "production")
        .stdout(Stdio::piped())
        .spawn()
        .expect("ssrun starts");
    let stdout = child.stdout.take().unwrap();
    let server = Running(child);
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("(production)"), "{first}");
    let second = lines.next().unwrap().unwrap();
    assert!(second.contains("action(s)"), "{second}");
    assert!(Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap().success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(!rest.iter().any(|l| l.contains("new builds")), "{rest:?}");
}
