//! The `ssrun` program stops gracefully on SIGTERM, as service managers and
//! container runtimes stop servers: open WebSocket connections get a close
//! frame with 1001 (going away) instead of a dropped connection.

#![cfg(unix)]

use std::process::Command;

mod common;
use common::{frame, packed_fixture, start_ssrun, ws_upgrade};

#[test]
fn sigterm_closes_connections_with_going_away() {
    let dist = packed_fixture();

    let (mut server, address, _lines) =
        start_ssrun(Command::new(env!("CARGO_BIN_EXE_ssrun")).arg(dist.path().join("dist")));

    let mut stream = ws_upgrade(&address);
    let (opcode, init) = frame(&mut stream);
    assert_eq!(opcode, 1, "the init message comes first");
    assert!(String::from_utf8_lossy(&init).contains(r#""type":"init""#));

    let killed = Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let (opcode, payload) = frame(&mut stream);
    assert_eq!(opcode, 8, "a close frame, not a dropped connection");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
    let status = server.0.wait().unwrap();
    assert!(status.success(), "ssrun exits cleanly: {status}");
}

/// A request whose body never comes does not keep the server from
/// stopping: requests under way get a few seconds to end.
#[test]
fn sigterm_does_not_wait_for_a_body_that_never_comes() {
    use std::io::Write;
    let dist = packed_fixture();
    let (mut server, address, _lines) =
        start_ssrun(Command::new(env!("CARGO_BIN_EXE_ssrun")).arg(dist.path().join("dist")));
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream.write_all(b"POST /api/app/square.json HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n[").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let started = std::time::Instant::now();
    let killed = Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = server.0.wait().unwrap();
    assert!(status.success(), "ssrun exits cleanly: {status}");
    assert!(started.elapsed() < std::time::Duration::from_secs(9), "exited after {:?}", started.elapsed());
}

#[test]
fn a_server_that_cannot_start_says_why_in_one_line_with_a_fix() {
    let dist = packed_fixture();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();

    // A backtrace would be noise here, even for a user who keeps RUST_BACKTRACE set.
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ssrun")).args(args).env("RUST_BACKTRACE", "1").output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8(out.stderr).unwrap()
    };
    let app = dist.path().join("dist");
    let stderr = run(&[app.as_os_str(), "--host".as_ref(), "127.0.0.1".as_ref(), "--port".as_ref(), port.as_ref()]);
    assert!(stderr.starts_with(&format!("error: cannot listen on 127.0.0.1:{port}: ")), "{stderr}");
    assert!(stderr.contains("\n  help: another program listens on this port"), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
    assert_eq!(stderr.lines().count(), 2, "{stderr}");

    std::fs::write(app.join("manifest.json"), "{\"format\": 1,").unwrap();
    let stderr = run(&[app.as_os_str()]);
    assert_eq!(stderr.matches("EOF while parsing").count(), 1, "each cause once: {stderr}");
    assert!(stderr.contains("help: ssbuild writes the manifest: pack the app again"), "{stderr}");
    drop(taken);
}
