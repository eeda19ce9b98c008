//! What the `ssrun` program logs of calls and events, by `log.level`: each
//! call answered (`-> app.square [5] = 25`), each failed one, each event
//! published; calls the client marks `silent` never; nothing in production.
//! And from level 1, a connection closed for what its client sent.

#![cfg(unix)]

mod common;
use common::{Running, frame, get, packed_app, ws_upgrade};

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

const SERVER: &str = r#"
exports.actions = {
  square(n) { return n * n; },
  shout(text) { SS.publish.broadcast('shout', text); return true; },
};
"#;

/// An app with the actions above, packed for `env`, with `app_toml` as its config.
fn app(env: &str, app_toml: &str) -> tempfile::TempDir {
    packed_app(env, &[("app/server/app.js", SERVER), ("config/app.toml", app_toml)])
}

/// Starts ssrun on `dir` for `env`: the process, its address, and its stdout
/// and stderr lines as they come, each marked with where it came from.
fn start(dir: &std::path::Path, env: &str) -> (Running, String, Receiver<(&'static str, String)>) {
    // `start` named, as it may be (the other tests leave it out).
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssrun"))
        .arg("start")
        .arg(dir)
        .args(["--port", "0", "--host", "127.0.0.1"])
        .env("SS_ENV", env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssrun starts");
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = out.send(("stdout", line));
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(("stderr", line));
        }
    });
    let address = loop {
        let (_, line) = lines.recv_timeout(Duration::from_secs(20)).expect("ssrun says where it serves");
        if let Some(at) = line.split("http://").nth(1) {
            break at.trim().to_string();
        }
    };
    (Running(child), address, lines)
}

/// A WebSocket client speaking just enough of the protocol: it sends text
/// frames (masked, as clients must) and reads the server's text frames.
struct Socket(TcpStream);

impl Socket {
    fn open(address: &str) -> Socket {
        let mut socket = Socket(ws_upgrade(address));
        assert!(socket.read().contains(r#""type":"init""#), "init comes first");
        socket
    }

    fn send(&mut self, text: &str) {
        let key = [0x12, 0x34, 0x56, 0x78];
        let len = text.len();
        assert!(len < 126, "short messages only");
        let mut frame = vec![0x81, 0x80 | len as u8];
        frame.extend_from_slice(&key);
        frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ key[i % 4]));
        self.0.write_all(&frame).unwrap();
    }

    fn read(&mut self) -> String {
        String::from_utf8(frame(&mut self.0).1).unwrap()
    }
}

/// Makes the calls and the publish whose lines the tests look for; gives
/// back every line ssrun wrote, up to its exit.
fn exercise(env: &str, app_toml: &str) -> Vec<(&'static str, String)> {
    let dir = app(env, app_toml);
    let (server, address, lines) = start(dir.path(), env);
    assert!(get(&address, "/api/app/square.json?5").ends_with("25"));
    assert!(get(&address, "/api/app/nope.json").starts_with("HTTP/1.1 404"));
    let mut socket = Socket::open(&address);
    socket.send(r#"{"type":"call","id":1,"method":"app.square","args":[6]}"#);
    assert!(socket.read().contains("36"));
    socket.send(r#"{"type":"call","id":2,"method":"app.square","args":[7],"silent":true}"#);
    assert!(socket.read().contains("49"));
    socket.send(r#"{"type":"call","id":3,"method":"app.shout","args":["hi"]}"#);
    let (first, second) = (socket.read(), socket.read());
    assert!(first.contains(r#""event":"shout""#) || second.contains(r#""event":"shout""#), "{first} {second}");
    // What a client sends cannot start a line of its own in the log.
    socket.send(r#"{"type":"call","id":4,"method":"app.nope\nssrun: -> forged","args":[]}"#);
    assert!(socket.read().contains("not_found"));
    let mut forger = Socket::open(&address);
    forger.send(r#"{"type":"x\nssrun: -> forged too"}"#);
    assert_eq!(frame(&mut forger.0).0, 8, "closed (4400)");
    // A message over the limit, refused on its header: the connection is closed with 1009.
    let mut big = Socket::open(&address);
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&70_000u64.to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    big.0.write_all(&header).unwrap();
    let (opcode, payload) = frame(&mut big.0);
    assert_eq!((opcode, &payload[..2]), (8, &1009u16.to_be_bytes()[..]));
    assert!(Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap().success());
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
        out.push(line);
    }
    out
}

/// The lines of `out` from `stream` that begin with `start`.
fn lines_from<'a>(out: &'a [(&'static str, String)], stream: &str, start: &str) -> Vec<&'a str> {
    out.iter().filter(|(s, line)| *s == stream && line.starts_with(start)).map(|(_, line)| line.as_str()).collect()
}

#[test]
fn calls_and_events_are_logged_by_level_and_silent_calls_never() {
    let out = exercise("development", "[log]\nlevel = 4\n");
    let all = format!("{out:?}");
    let calls = lines_from(&out, "stdout", "ssrun: -> ");
    assert_eq!(calls.len(), 3, "{all}");
    assert!(calls[0].starts_with("ssrun: -> app.square [5] = 25 (") && calls[0].ends_with(" ms, HTTP API)"), "{all}");
    assert!(calls[1].starts_with("ssrun: -> app.square [6] = 36 (") && calls[1].ends_with(" ms)"), "{all}");
    assert!(calls[2].starts_with("ssrun: -> app.shout [\"hi\"] = true ("), "{all}");
    assert!(!all.contains("[7]"), "a silent call is not logged: {all}");
    let failed = lines_from(&out, "stderr", "ssrun: -> ");
    assert_eq!(failed.len(), 2, "{all}");
    assert!(failed[0].starts_with("ssrun: -> app.nope [] failed (not_found): "), "{all}");
    assert!(failed[1].starts_with("ssrun: -> app.nope\\nssrun: -> forged [] failed (not_found): "), "{all}");
    assert!(!out.iter().any(|(_, line)| line.starts_with("ssrun: -> forged")), "{all}");
    assert_eq!(lines_from(&out, "stdout", "ssrun: => "), ["ssrun: => shout to everyone \"hi\""], "{all}");
    let closed = lines_from(&out, "stderr", "ssrun: closed");
    assert_eq!(closed.len(), 2, "{all}");
    assert!(
        closed[0].starts_with("ssrun: closed a connection with 4400: ") && closed[0].contains("x\\nssrun"),
        "{all}"
    );
    assert_eq!(closed[1], "ssrun: closed a connection with 1009: message too big (server.max_message_bytes: 65536)");
}

#[test]
fn development_logs_calls_with_their_arguments_production_none_and_level_1_failures() {
    let out = exercise("development", "");
    let all = format!("{out:?}");
    let calls = lines_from(&out, "stdout", "ssrun: -> ");
    assert_eq!(calls.len(), 3, "{all}");
    assert!(
        calls[1].starts_with("ssrun: -> app.square [6] (") && !calls[1].contains("36"),
        "level 3 shows no answers: {all}"
    );

    let out = exercise("production", "");
    let all = format!("{out:?}");
    assert!(!all.contains("ssrun: -> ") && !all.contains("ssrun: => ") && !all.contains("closed a"), "{all}");

    // Level 1: the failed call alone, without its arguments.
    let out = exercise("production", "[log]\nlevel = 1\n");
    let all = format!("{out:?}");
    assert!(lines_from(&out, "stdout", "ssrun: -").is_empty() && !all.contains("ssrun: => "), "{all}");
    let failed = lines_from(&out, "stderr", "ssrun: -> ");
    assert_eq!(failed.len(), 2, "{all}");
    assert!(failed[0].starts_with("ssrun: -> app.nope failed (not_found): "), "{all}");
    assert_eq!(lines_from(&out, "stderr", "ssrun: closed a connection with 1009").len(), 1, "{all}");
}
