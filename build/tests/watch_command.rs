//! `ssbuild watch` as a user runs it: a pack that fails says whether a good
//! build is still in place, or none has been written yet.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The watch, stopped when the test ends, passed or not.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write(root: &std::path::Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_failed_pack_says_what_is_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "app/views/app.html", "<!doctype html>\n<html><head><SocketStream></head><body></body></html>\n");
    write(root, "app/client/app.js", "exports.init = function ( {};\n");
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_ssbuild"))
            .arg("watch")
            .arg(root)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssbuild starts"),
    );
    let (tx, lines) = mpsc::channel();
    for (stream, name) in [
        (Box::new(child.0.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>, "out"),
        (Box::new(child.0.stderr.take().unwrap()), "err"),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send((name, line));
            }
        });
    }
    let mut seen = Vec::new();
    let mut wait_for = |text: &str| loop {
        match lines.recv_timeout(Duration::from_secs(30)) {
            Ok((stream, line)) => {
                seen.push(format!("{stream}: {line}"));
                if line.contains(text) {
                    return (stream, line);
                }
            }
            Err(_) => panic!("no line with {text:?} within 30 s:\n{}", seen.join("\n")),
        }
    };
    assert_eq!(
        wait_for("waiting for a change"),
        ("err", "nothing is written until the app packs; waiting for a change".into())
    );
    write(root, "app/client/app.js", "exports.init = function () {};\n");
    wait_for("packed");
    write(root, "app/client/app.js", "exports.init = function ( {};\n");
    assert_eq!(wait_for("waiting for a change").1, "the last good build stays in place; waiting for a change");
}
