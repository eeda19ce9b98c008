//! The `ssrun` program stops gracefully on SIGTERM, as service managers and
//! container runtimes stop servers: open WebSocket connections get a close
//! frame with 1001 (going away) instead of a dropped connection.

#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::packed_fixture;

/// Reads one WebSocket frame from the server (never masked): opcode and payload.
fn frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).unwrap();
    let len = match head[1] & 0x7f {
        126 => {
            let mut n = [0u8; 2];
            stream.read_exact(&mut n).unwrap();
            u16::from_be_bytes(n) as usize
        }
        127 => {
            let mut n = [0u8; 8];
            stream.read_exact(&mut n).unwrap();
            u64::from_be_bytes(n) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).unwrap();
    (head[0] & 0x0f, payload)
}

#[test]
fn sigterm_closes_connections_with_going_away() {
    let dist = packed_fixture();

    let mut server = Command::new(env!("CARGO_BIN_EXE_ssrun"))
        .arg(dist.path().join("dist"))
        .args(["--port", "0", "--host", "127.0.0.1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("ssrun starts");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let address = loop {
        let line = lines.next().expect("ssrun says where it serves").unwrap();
        if let Some(at) = line.split("http://").nth(1) {
            break at.trim().to_string();
        }
    };

    let mut stream = TcpStream::connect(&address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "GET /_ss/ws?v=1 HTTP/1.1\r\nHost: {address}\r\nOrigin: http://{address}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).unwrap();
        response.push(byte[0]);
    }
    assert!(response.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&response));
    let (opcode, init) = frame(&mut stream);
    assert_eq!(opcode, 1, "the init message comes first");
    assert!(String::from_utf8_lossy(&init).contains(r#""type":"init""#));

    let killed = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let (opcode, payload) = frame(&mut stream);
    assert_eq!(opcode, 8, "a close frame, not a dropped connection");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
    let status = server.wait().unwrap();
    assert!(status.success(), "ssrun exits cleanly: {status}");
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
