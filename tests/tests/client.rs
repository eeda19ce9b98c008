//! The browser library (client/socket.js) on its own, in Node.js: its call
//! queue, reconnection back-off, events, `SS.client.app.init()` and log
//! levels against a scripted server, with fake WebSocket and timers
//! (tests/js/socket.test.js, run with `node --test`).

use std::process::Command;

use ss_tests::{have_node, repo_root};

#[test]
fn the_browser_library_passes_its_node_tests() {
    if !have_node() {
        return;
    }
    let script = "tests/js/socket.test.js";
    let root = repo_root();
    assert!(root.join(script).is_file(), "{script} is missing");
    let out = Command::new("node").arg("--test").arg(script).current_dir(&root).output().expect("node runs");
    assert!(
        out.status.success(),
        "node --test {script} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
