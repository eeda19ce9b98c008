//! Server code that throws while it loads stops ssrun with the error, told
//! once, and the failing module's top level runs once.

#![cfg(unix)]

mod common;
use common::packed_app;

use std::process::Command;

#[test]
fn server_code_that_fails_to_load_is_reported_once_and_runs_once() {
    let broken = "console.log('broken.js starts loading');\nexports.actions = {};\nnull.crash;\n";
    let dir = packed_app("development", &[("app/server/broken.js", broken)]);
    let out = Command::new(env!("CARGO_BIN_EXE_ssrun")).arg(dir.path()).arg("--port").arg("0").output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert_eq!(text.matches("broken.js starts loading").count(), 1, "{text}");
    assert_eq!(text.matches("cannot read property 'crash' of null").count(), 1, "{text}");
    assert!(text.contains("app/server/broken.js:3"), "{text}");
}

#[test]
fn a_thrown_value_that_is_not_an_error_names_the_file_that_threw_it() {
    let api = "const helper = require('helper');\nexports.actions = { ok() { return helper; } };\n";
    let helper = "exports.ready = false;\nthrow 'the settings file is missing';\n";
    for env in ["development", "production"] {
        let dir = packed_app(env, &[("app/server/api.js", api), ("lib/server/helper.js", helper)]);
        let out = Command::new(env!("CARGO_BIN_EXE_ssrun"))
            .arg(dir.path())
            .args(["--port", "0"])
            .env("SS_ENV", env)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{env}: {text}");
        assert!(text.contains("loading lib/server/helper.js"), "{env}: the file that threw is named: {text}");
        assert!(text.contains("\"the settings file is missing\""), "{env}: {text}");
    }
}

#[test]
fn a_loop_stopped_by_the_time_limit_while_loading_names_its_file() {
    let api = "require('slow');\nexports.actions = {};\n";
    let slow = "exports.ready = false;\nfor (;;) {}\n";
    for env in ["development", "production"] {
        let dir = packed_app(
            env,
            &[
                ("app/server/api.js", api),
                ("lib/server/slow.js", slow),
                ("config/app.toml", "[server]\njs_time_limit = 0.3\n"),
            ],
        );
        let out = Command::new(env!("CARGO_BIN_EXE_ssrun"))
            .arg(dir.path())
            .args(["--port", "0"])
            .env("SS_ENV", env)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{env}: {text}");
        assert!(text.contains("loading lib/server/slow.js ("), "{env}: the file that was stopped is named: {text}");
        assert!(text.contains("the time limit for one run of server code passed"), "{env}: {text}");
    }
}
