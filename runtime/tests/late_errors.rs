//! What an action throws or rejects with after its call was answered cannot
//! reach the caller any more: it goes to the server log, tagged with the
//! action, as a throwing callback's or timer's error does.

#![cfg(unix)]

mod common;
use common::{get, packed_app, start_ssrun};

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = r#"
exports.actions = {
  throwAfterCb(cb) {
    cb('answered');
    throw new Error('thrown after answering');
  },
  rejectAfterCb(cb) {
    cb('answered');
    return Promise.reject(new Error('rejected after answering'));
  },
  async throwAfterAwait(cb) {
    cb('answered');
    await 0;
    throw new Error('thrown after an await');
  },
};
"#;

#[test]
fn errors_after_the_answer_go_to_the_log_with_the_action() {
    let dir = packed_app("development", &[("app/server/late.js", SERVER)]);
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssrun"));
    command.arg(dir.path()).stderr(Stdio::piped());
    let (mut server, address, _stdout) = start_ssrun(&mut command);
    let stderr = server.0.stderr.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let expected = [
        ("throwAfterCb", "thrown after answering"),
        ("rejectAfterCb", "rejected after answering"),
        ("throwAfterAwait", "thrown after an await"),
    ];
    for (action, _) in expected {
        let response = get(&address, &format!("/api/late/{action}.json"));
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("\"answered\""), "the first answer stands: {response}");
    }
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !expected.iter().all(|(action, message)| {
        seen.iter().any(|line: &String| {
            line.starts_with(&format!(
                "ssrun: [late.{action}] error: after the call was answered (or its caller had gone): Error: {message}"
            ))
        })
    }) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("not every late error was logged; the log:\n{}", seen.join("\n")),
        }
    }
}
