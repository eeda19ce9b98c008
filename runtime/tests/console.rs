//! `ssrun console`: evaluates what it reads with the app's server API (an
//! input over several lines, top-level `await`, declarations that stay), and
//! keeps each line typed at a terminal in its history file as it goes.

#![cfg(unix)]

use std::io::Write;

mod common;
use common::{console_command, packed_app};
use std::process::{Command, Stdio};

/// [`console_command`], started.
fn console(dir: &std::path::Path, home: &std::path::Path) -> std::process::Child {
    console_command(dir, home).spawn().expect("the console starts")
}

#[test]
fn the_console_evaluates_lines_piped_in_and_keeps_them_out_of_its_history() {
    let dir = packed_app(
        "development",
        &[
            ("app/server/app.js", "exports.actions = {\n  square(n, cb) { cb(n * n); },\n};\n"),
            ("app/shared/pi.js", "exports.rough = function () { return 3; };\n"),
        ],
    );
    let home = tempfile::tempdir().unwrap();
    let mut console = console(dir.path(), home.path());
    let mut input = console.stdin.take().unwrap();
    input
        .write_all(
            b"SS.server.app.square(7)\nSS.shared.pi.rough() + 1\nconst q = 3\nq + 1\nawait SS.server.app.square(5)\n\
              function twice(x) {\n  return x * 2;\n}\ntwice(q)\nnope(\n",
        )
        .unwrap();
    drop(input);
    let out = console.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("ssrun console (development): 1 action(s) in SS.server"), "{stdout}");
    // A `const` stays for the next line, `await` works at the top level, and
    // an input open at the end of a line goes on to the next.
    assert_eq!(&lines[1..], ["49", "4", "undefined", "4", "25", "undefined", "6"], "{stdout}");
    assert!(stderr.starts_with("SyntaxError"), "{stderr}");
    assert!(!home.path().join(".ssrun_history").exists(), "lines piped in are not kept in the history");
}

/// At a terminal (a pseudo-terminal here), each line typed is kept in the
/// history file as soon as it is read, after the lines kept before.
#[test]
fn lines_typed_at_a_terminal_are_kept_in_the_history() {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let dir = packed_app("development", &[("app/server/app.js", "exports.actions = {};\n")]);
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join(".ssrun_history"), "earlier(1)\n").unwrap();
    let pty = nix::pty::openpty(None, None).expect("a pseudo-terminal");
    let (mut master, slave) = (std::fs::File::from(pty.master), pty.slave);
    let mut console = console_command(dir.path(), home.path())
        .env("TERM", "xterm")
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave))
        .spawn()
        .expect("the console starts");
    let seen = Arc::new(Mutex::new(String::new()));
    let reader = {
        let mut master = master.try_clone().unwrap();
        let seen = seen.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buffer = [0u8; 4096];
            // Ends with an error (EIO) once the console has exited.
            while let Ok(n @ 1..) = master.read(&mut buffer) {
                seen.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        })
    };
    let wait_for = |text: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !seen.lock().unwrap().contains(text) {
            assert!(Instant::now() < deadline, "no {text:?} from the console: {:?}", seen.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("ss> ");
    master.write_all(b"6 * 7\r").unwrap();
    wait_for("42");
    // Ctrl-D at an empty prompt leaves.
    master.write_all(b"\x04").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = console.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the console did not leave: {:?}", seen.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{:?}", seen.lock().unwrap());
    drop(master);
    let _ = reader.join();
    let history = std::fs::read_to_string(home.path().join(".ssrun_history")).unwrap();
    assert!(history.contains("earlier(1)\n"), "{history}");
    assert!(history.ends_with("6 * 7\n"), "{history}");
}

/// Ctrl-C (SIGINT) while an input waits for a Promise that never settles
/// stops the wait and the console reads on; at the prompt it does not stop
/// the console either.
#[test]
fn ctrl_c_stops_waiting_for_an_input() {
    use std::io::{BufRead, BufReader};
    let dir = packed_app("development", &[("app/server/app.js", "exports.actions = {};\n")]);
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    // Were the interrupt lost, the wait would outlast the test's patience.
    std::fs::write(dir.path().join("config/app.toml"), "[server]\nreply_timeout = 600\n").unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut console = console(dir.path(), home.path());
    let interrupt = |pid: u32| {
        assert!(Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap().success());
    };
    let mut lines = BufReader::new(console.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().starts_with("ssrun console"));
    interrupt(console.id());
    let mut input = console.stdin.take().unwrap();
    input.write_all(b"console.log('waiting'), new Promise(() => {})\n").unwrap();
    input.flush().unwrap();
    let line = lines.next().unwrap().unwrap();
    assert!(line.ends_with("waiting"), "{line}");
    interrupt(console.id());
    input.write_all(b"6 * 7\n").unwrap();
    drop(input);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let out = console.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{rest:?}\n{stderr}");
    assert_eq!(rest, ["42"], "{stderr}");
    assert!(stderr.starts_with("interrupted: the console stopped waiting for that input"), "{stderr}");
}

/// Server code reads the environment as `process.env`, from a module's top
/// level too; a change to it stays in the engine.
#[test]
fn server_code_reads_the_environment_as_process_env() {
    let dir = packed_app(
        "production",
        &[
            ("app/server/app.js", "const db = require('db');\nexports.actions = { url() { return db.url; } };\n"),
            ("lib/server/db.js", "exports.url = process.env.SS_TEST_DATABASE_URL;\n"),
        ],
    );
    let home = tempfile::tempdir().unwrap();
    let mut console =
        console_command(dir.path(), home.path()).env("SS_TEST_DATABASE_URL", "postgres://db/app").spawn().unwrap();
    let mut input = console.stdin.take().unwrap();
    input
        .write_all(
            b"await SS.server.app.url()\nprocess.env.SS_TEST_DATABASE_URL = 'changed'\nprocess.env.SS_TEST_DATABASE_URL\n\
              typeof process.env.PATH\nprocess.env.SS_TEST_NOT_SET\n",
        )
        .unwrap();
    drop(input);
    let out = console.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(lines, ["\"postgres://db/app\"", "\"changed\"", "\"changed\"", "\"string\"", "undefined"], "{stderr}");
}
