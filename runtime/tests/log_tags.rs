//! What server code logs is tagged with the action that runs it, after
//! `await`s too: two async actions that interleave their waits each keep
//! their own tag, through their helpers, a shared module, a caught rejection,
//! `then` callbacks and the timers they set; and awaiting does not change the
//! order in which promise callbacks run.

#![cfg(unix)]

mod common;
use common::{Running, get, packed_app};

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const SERVER: &str = r#"
const { pause } = require('../shared/wait');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function helper(label) {
  await sleep(3);
  console.log('helper after', label);
}

async function steps(label, ms) {
  console.log('start', label);
  await sleep(ms);
  console.log('after sleep', label);
  try {
    await Promise.reject(new Error('refused'));
  } catch (e) {
    console.log('caught', label);
  }
  await helper(label);
  await pause(ms, label);
  await sleep(ms).then(() => console.log('then', label));
  setTimeout(() => console.log('timer', label), 1);
  await sleep(ms + 5);
  console.log('done', label);
  return label;
}

(async () => {
  await sleep(1);
  console.log('loaded');
})();

exports.actions = {
  one() { return steps('one', 20); },
  two: async function () { return steps('two', 7); },
  // Awaiting a settled promise takes one step, as without the tag: `a` first.
  async order() {
    const seen = [];
    const p = Promise.resolve();
    const first = (async () => { await p; seen.push('a'); })();
    p.then(() => seen.push('b'));
    await first;
    await null;
    return seen.join('');
  },
};
"#;

const SHARED: &str = r#"
export async function pause(ms, label) {
  await new Promise((resolve) => setTimeout(resolve, ms));
  console.log('shared after', label);
}
"#;

fn app(env: &str) -> tempfile::TempDir {
    packed_app(env, &[("app/shared/wait.js", SHARED), ("app/server/app.js", SERVER)])
}

fn tags_in(env: &str) {
    let dir = app(env);
    let mut server = Command::new(env!("CARGO_BIN_EXE_ssrun"))
        .arg(dir.path())
        .args(["--port", "0", "--host", "127.0.0.1"])
        .env("SS_ENV", env)
        .stdout(Stdio::piped())
        .spawn()
        .expect("ssrun starts");
    let stdout = server.stdout.take().unwrap();
    let mut server = Running(server);
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || lines.recv_timeout(Duration::from_secs(20)).expect("a line from ssrun within 20 s");
    let mut out = Vec::new();
    // Lines before the address count too: the server code's first log comes
    // a millisecond after it loads, which may be before the server listens.
    let address = loop {
        let line = next();
        if let Some(at) = line.split("http://").nth(1) {
            break at.trim().to_string();
        }
        out.push(line);
    };
    let calls: Vec<_> = ["one", "two"]
        .into_iter()
        .map(|name| {
            let address = address.clone();
            std::thread::spawn(move || get(&address, &format!("/api/app/{name}.json")))
        })
        .collect();
    for (call, name) in calls.into_iter().zip(["one", "two"]) {
        let response = call.join().unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with(&format!("\"{name}\"")), "{response}");
    }
    let order = get(&address, "/api/app/order.json");
    assert!(order.ends_with("\"ab\""), "{order}");
    // The timers set last print a millisecond after the answers: wait for both.
    while ["one", "two"].iter().any(|name| !out.contains(&format!("ssrun: [app.{name}] timer {name}"))) {
        out.push(next());
    }
    assert!(Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap().success());
    // The rest of the output, up to ssrun closing it as it exits.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => out.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("ssrun still running 20 s after SIGTERM; its output so far:\n{}", out.join("\n"))
            }
        }
    }
    let out: Vec<String> = out.into_iter().filter(|l| l.starts_with("ssrun: [")).collect();
    let all = out.join("\n");

    assert!(out.contains(&"ssrun: [server] loaded".to_string()), "{all}");
    for name in ["one", "two"] {
        for step in ["start", "after sleep", "caught", "helper after", "shared after", "then", "timer", "done"] {
            let line = format!("ssrun: [app.{name}] {step} {name}");
            assert!(out.contains(&line), "`{line}` missing in {env}:\n{all}");
        }
    }
    assert_eq!(out.len(), 17, "{all}");
    assert!(server.0.wait().unwrap().success());
}

#[test]
fn logs_after_await_keep_the_action_tag_in_development() {
    tags_in("development");
}

#[test]
fn logs_after_await_keep_the_action_tag_in_production() {
    tags_in("production");
}

#[test]
fn the_tag_hooks_are_only_in_server_code() {
    let dir = app("production");
    let dist = dir.path().join("dist");
    let manifest: String = std::fs::read_to_string(dist.join("manifest.json")).unwrap();
    let mut client = String::new();
    let mut server = String::new();
    for entry in std::fs::read_dir(dist.join("assets")).unwrap().chain(std::fs::read_dir(dist.join("server")).unwrap())
    {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".js") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if path.parent().unwrap().ends_with("server") {
            server.push_str(&text);
        } else {
            client.push_str(&text);
        }
    }
    assert!(manifest.contains("wait.js"), "{manifest}");
    assert!(!client.contains("__ss.t(") && !client.contains("__ss.e("), "browsers get app/shared as written: {client}");
    assert!(client.contains("await new Promise"), "{client}");
    // Server files and the shared module: each async function notes the tag, each `await` restores it.
    assert!(server.matches("__ss.t()").count() >= 5, "{server}");
    assert!(server.matches("__ss.e(").count() >= 9, "{server}");
}
