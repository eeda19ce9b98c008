//! Server code that throws while it loads stops ssrun with the error, told
//! once, and the failing module's top level runs once.

#![cfg(unix)]

mod common;
use common::{console_command, packed_app};

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

/// Server files whose functions no one can call (no `actions` object, or a
/// member that is not a function) are named once at load, with the fix;
/// the rest of the app's actions load as usual.
#[test]
fn server_files_without_callable_actions_are_named_at_load() {
    let dir = packed_app(
        "development",
        &[
            ("app/server/app.js", "exports.actions = { square(n) { return n * n; }, limit: 5 };\n"),
            ("app/server/helpers.js", "exports.hello = function () { return 'hi'; };\n"),
            ("app/server/named.ts", "export function ping() { return 'pong'; }\n"),
            ("app/server/wrapped.js", "export default { actions: { ping() { return 'pong'; } } };\n"),
            ("app/server/empty.js", "exports.actions = {};\n"),
        ],
    );
    let home = tempfile::tempdir().unwrap();
    let out = console_command(dir.path(), home.path()).stdin(std::process::Stdio::null()).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 action(s) in SS.server"), "{stdout}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("ssrun: warning: ")).collect();
    assert_eq!(warnings.len(), 4, "{stderr}");
    assert!(stderr.contains("app/server/app.js: `actions.limit` is the number 5, not a function"), "{stderr}");
    assert!(stderr.contains("app/server/helpers.js has no `actions` object"), "{stderr}");
    assert!(stderr.contains("keep helpers in lib/server"), "{stderr}");
    assert!(stderr.contains("app/server/named.ts has no `actions` object"), "{stderr}");
    assert!(stderr.contains("app/server/wrapped.js has no `actions` object"), "{stderr}");
    assert!(stderr.contains("export `actions` by name instead"), "{stderr}");
    assert!(!stderr.contains("empty.js"), "an empty `actions` is fine: {stderr}");
}
