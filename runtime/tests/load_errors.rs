//! Server code that throws while it loads stops ssrun with the error, told
//! once, and the failing module's top level runs once.

#![cfg(unix)]

mod common;
use common::packed_app;

use std::process::Command;

/// Starts ssrun on the app `files` make, packed for `env`, expecting it to
/// fail: all it printed.
fn failed_start(env: &str, files: &[(&str, &str)]) -> String {
    let dir = packed_app(env, files);
    let out = Command::new(env!("CARGO_BIN_EXE_ssrun"))
        .arg(dir.path())
        .args(["--port", "0"])
        .env("SS_ENV", env)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{env}: ssrun started: {text}");
    text
}

#[test]
fn server_code_that_fails_to_load_is_reported_once_and_runs_once() {
    let broken = "console.log('broken.js starts loading');\nexports.actions = {};\nnull.crash;\n";
    let text = failed_start("development", &[("app/server/broken.js", broken)]);
    assert_eq!(text.matches("broken.js starts loading").count(), 1, "{text}");
    assert_eq!(text.matches("cannot read property 'crash' of null").count(), 1, "{text}");
    assert!(text.contains("app/server/broken.js:3"), "{text}");
}

#[test]
fn a_thrown_value_that_is_not_an_error_names_the_file_that_threw_it() {
    let api = "const helper = require('helper');\nexports.actions = { ok() { return helper; } };\n";
    let helper = "exports.ready = false;\nthrow 'the settings file is missing';\n";
    for env in ["development", "production"] {
        let text = failed_start(env, &[("app/server/api.js", api), ("lib/server/helper.js", helper)]);
        assert!(text.contains("loading lib/server/helper.js"), "{env}: the file that threw is named: {text}");
        assert!(text.contains("\"the settings file is missing\""), "{env}: {text}");
    }
}

#[test]
fn a_loop_stopped_by_the_time_limit_while_loading_names_its_file() {
    let api = "require('slow');\nexports.actions = {};\n";
    let slow = "exports.ready = false;\nfor (;;) {}\n";
    for env in ["development", "production"] {
        let config = ("config/app.toml", "[server]\njs_time_limit = 0.3\n");
        let text = failed_start(env, &[("app/server/api.js", api), ("lib/server/slow.js", slow), config]);
        assert!(text.contains("loading lib/server/slow.js ("), "{env}: the file that was stopped is named: {text}");
        assert!(text.contains("the time limit for one run of server code passed"), "{env}: {text}");
    }
}
