//! What the tests that run the `ssrun` program share. Each test program
//! uses part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::Path;
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
