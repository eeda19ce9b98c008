//! What the tests that run the `ssrun` program share. Each test program
//! uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{ChildStdout, Command, Stdio};
use std::time::Duration;

/// The browser fixture packed for production into a folder of the test's own
/// (with the cache off, nothing is written into the fixture); its output is
/// `dist/` there.
pub fn packed_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut options =
        ssbuild::PackOptions::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/apps/browser"), "production");
    options.cache = false;
    options.out = Some(dir.path().join("dist"));
    ssbuild::pack(&options).expect("the fixture packs");
    dir
}

/// A GET over a fresh connection (`Connection: close`): the whole response, head and body.
pub fn get(address: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// A started `ssrun`, killed if a check fails before it stops.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An app of `files` (each a path in the app and its text), with a browser
/// entry and a page beside them, packed for `env` with the cache off: the
/// app's root folder.
pub fn packed_app(env: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let page = "<!doctype html>\n<html><head><SocketStream></head><body></body></html>\n";
    let base = [("app/client/app.js", "exports.init = function () {};\n"), ("app/views/app.html", page)];
    for (path, text) in base.iter().chain(files) {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let mut options = ssbuild::PackOptions::new(dir.path(), env);
    options.cache = false;
    ssbuild::pack(&options).expect("the app packs");
    dir
}

/// A WebSocket to ssrun at `address`: the upgrade made and its 101 read,
/// so that the next bytes are the server's first frame.
pub fn ws_upgrade(address: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).unwrap();
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
    stream
}

/// Reads one WebSocket frame from the server (never masked): opcode and payload.
pub fn frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
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

/// Starts `ssrun` as `command` has it (arguments, folder, environment),
/// listening on a free port of 127.0.0.1: the process, the address it says
/// it serves on, and the rest of its standard output.
pub fn start_ssrun(command: &mut Command) -> (Running, String, std::io::Lines<BufReader<ChildStdout>>) {
    let mut child =
        command.args(["--port", "0", "--host", "127.0.0.1"]).stdout(Stdio::piped()).spawn().expect("ssrun starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let running = Running(child);
    let address = loop {
        let line = lines.next().expect("ssrun says where it serves").unwrap();
        if let Some(at) = line.split("http://").nth(1) {
            break at.trim().to_string();
        }
    };
    (running, address, lines)
}

/// `ssrun console` on the app in `dir`, with `home` as its home folder and
/// its three streams piped, to start.
pub fn console_command(dir: &std::path::Path, home: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssrun"));
    command
        .arg("console")
        .arg(dir)
        .env("HOME", home)
        // Some terminal types make the line editor print its prompt even to a pipe.
        .env_remove("TERM")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}
