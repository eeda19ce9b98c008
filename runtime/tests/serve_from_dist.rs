//! `cd dist && ssrun`: the program serves the app from `.`, and finds
//! public/, the 404 page and config/ beside dist/ all the same.

#![cfg(unix)]

use std::process::Command;

mod common;
use common::{get, packed_app, start_ssrun};

#[test]
fn ssrun_run_inside_dist_finds_public_files_the_404_page_and_config() {
    let dir = packed_app(
        "production",
        &[
            ("public/robots.txt", "User-agent: *\nDisallow:\n"),
            ("static/404.html", "<!doctype html><title>Lost</title><p>This page does not exist.</p>\n"),
            ("config/app.toml", "[server]\nreply_timeout = 12\n"),
        ],
    );
    let dist = dir.path().join("dist");

    let out = Command::new(env!("CARGO_BIN_EXE_ssrun")).arg("config").current_dir(&dist).output().unwrap();
    let settings = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{settings}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(settings.contains("\nreply_timeout = 12  # from "), "config/ beside dist/ is read: {settings}");

    let (_server, address, _lines) = start_ssrun(Command::new(env!("CARGO_BIN_EXE_ssrun")).current_dir(&dist));
    let robots = get(&address, "/robots.txt");
    assert!(robots.starts_with("HTTP/1.1 200") && robots.ends_with("User-agent: *\nDisallow:\n"), "{robots}");
    let missing = get(&address, "/no/such/page");
    assert!(missing.starts_with("HTTP/1.1 404") && missing.contains("This page does not exist."), "{missing}");
}
