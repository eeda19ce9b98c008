//! A server whose standard output has no reader any more (`ssrun | head`, a
//! log collector that stopped) goes on answering: log lines are dropped, and
//! standard error says so once.

#![cfg(unix)]

mod common;
use common::{get, packed_app, start_ssrun};

use std::io::Read;
use std::process::{Command, Stdio};

#[test]
fn actions_answer_after_the_log_reader_has_gone() {
    let server = "exports.actions = {\n  square(n) { console.log('squaring', n); return n * n; },\n};\n";
    let dir = packed_app("development", &[("app/server/app.js", server)]);
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssrun"));
    command.arg(dir.path()).env_remove("SS_ENV").stderr(Stdio::piped());
    let (mut running, address, lines) = start_ssrun(&mut command);
    // The reader goes: the next line written to standard output finds no one.
    drop(lines);
    for n in [3, 4, 5] {
        let answer = get(&address, &format!("/api/app/square.json?{n}"));
        assert!(answer.ends_with(&format!("\r\n\r\n{}", n * n)), "call {n}: {answer}");
    }
    assert!(get(&address, "/").starts_with("HTTP/1.1 200"));
    running.0.kill().unwrap();
    let mut stderr = String::new();
    running.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(stderr.matches("standard output was closed").count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
