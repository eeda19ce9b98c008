//! `ssbuild watch`: packs, then packs again whenever a file of the app
//! changes, appears or goes away. Each pack goes through the persistent
//! cache, so only changed files are compiled again; a pack that fails leaves
//! the last good output in place, and the next change is tried again.
//!
//! Changes are found by comparing the size and modification time of every
//! file under the app's folder a few times a second (the output folder, the
//! cache, `node_modules` and hidden entries aside): no platform file-event
//! API, so it behaves the same everywhere, including on network and
//! container-mounted folders where such events are unreliable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::{PackError, PackOptions, PackReport};

/// How often the app's files are looked at.
pub const POLL: Duration = Duration::from_millis(200);

/// Every file under `root` a pack may read, with its size and modification time.
pub type Snapshot = BTreeMap<PathBuf, (u64, Option<SystemTime>)>;

/// The files under `root`, except the output folder `out`, hidden entries
/// (the cache, version control, the packer's staging folders) and `node_modules`.
pub fn snapshot(root: &Path, out: &Path) -> Snapshot {
    let out = std::fs::canonicalize(out).unwrap_or_else(|_| out.to_path_buf());
    walkdir::WalkDir::new(root)
        .follow_links(true)
        .into_iter()
        .filter_entry(|e| {
            if e.depth() == 0 {
                return true;
            }
            let name = e.file_name().to_string_lossy();
            if name.starts_with('.') || name == "node_modules" {
                return false;
            }
            !(e.file_type().is_dir() && std::fs::canonicalize(e.path()).is_ok_and(|p| p == out))
        })
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let meta = e.metadata().ok();
            let size = meta.as_ref().map_or(0, |m| m.len());
            (e.path().to_path_buf(), (size, meta.and_then(|m| m.modified().ok())))
        })
        .collect()
}

/// Packs `options.app` now and again after every change, calling `report`
/// with each result, until `report` returns `false`. A change is packed once
/// the files have stayed the same for one more look (an editor that writes a
/// file in several steps gives one pack, not several).
pub fn watch(options: &PackOptions, mut report: impl FnMut(Result<PackReport, PackError>) -> bool) {
    let out = options.out_dir();
    let mut seen = snapshot(&options.app, &out);
    if !report(crate::pack(options)) {
        return;
    }
    loop {
        std::thread::sleep(POLL);
        let now = snapshot(&options.app, &out);
        if now == seen {
            continue;
        }
        // Settle: wait until two looks in a row agree.
        let mut settled = now;
        loop {
            std::thread::sleep(POLL / 2);
            let again = snapshot(&options.app, &out);
            if again == settled {
                break;
            }
            settled = again;
        }
        seen = settled;
        if !report(crate::pack(options)) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_packed_failures_keep_the_last_build_and_new_files_count() {
        use std::sync::mpsc;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        // Each file appears whole (written beside it, then renamed), so the
        // watcher never settles on a half-written one.
        let write = |rel: &str, text: &str| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let staged = path.with_file_name(format!(".{name}.partial"));
            std::fs::write(&staged, text).unwrap();
            std::fs::rename(&staged, &path).unwrap();
        };
        write("app/client/app.js", "exports.init = function () {};\n");
        write("app/views/app.html", "<!doctype html><html><head><SocketStream></head><body></body></html>\n");
        // Each report waits for the test's word on whether to go on, so the
        // watcher stops exactly when the test says and never earlier.
        let (tx, rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<bool>();
        let options = PackOptions::new(&root, "development");
        let watcher = std::thread::spawn(move || {
            watch(&options, |result| {
                let summary = result.map(|r| (r.compiled, r.manifest.trees.clone())).map_err(|e| e.to_string());
                let _ = tx.send(summary);
                go_rx.recv().unwrap_or(false)
            })
        });
        let next = |go_on: bool| {
            let summary = rx.recv_timeout(Duration::from_secs(20)).expect("a pack within 20 s");
            go_tx.send(go_on).expect("the watcher waits for an answer");
            summary
        };
        let (compiled, tree) = next(true).expect("the first pack");
        assert!(compiled >= 1, "{tree:?}");

        // A new file: packed, and only it is compiled.
        write("app/client/extra.js", "exports.twice = (x) => 2 * x;\n");
        let (compiled, tree) = next(true).expect("the second pack");
        assert_eq!(compiled, 1);
        assert!(serde_json::to_string(&tree).unwrap().contains("extra"), "{tree:?}");
        let manifest = std::fs::read_to_string(root.join("dist/manifest.json")).unwrap();

        // A mistake: reported, and the last build stays.
        write("app/client/extra.js", "exports.twice = ;\n");
        let error = next(true).expect_err("a syntax error");
        assert!(error.contains("app/client/extra.js:1:"), "{error}");
        assert_eq!(std::fs::read_to_string(root.join("dist/manifest.json")).unwrap(), manifest);

        // Deleting the file packs again, without it.
        std::fs::remove_file(root.join("app/client/extra.js")).unwrap();
        let (_, tree) = next(true).expect("the pack after the delete");
        assert!(!serde_json::to_string(&tree).unwrap().contains("extra"), "{tree:?}");

        write("app/client/more.js", "exports.x = 1;\n");
        let (_, tree) = next(false).expect("the last pack");
        assert!(serde_json::to_string(&tree).unwrap().contains("more"), "{tree:?}");
        watcher.join().unwrap();
    }

    #[test]
    fn the_snapshot_skips_output_cache_hidden_and_node_modules() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for file in
            ["app/client/app.js", "dist/assets/x.js", ".ssbuild-cache/a.json", "node_modules/p/i.js", "lib/.x.js"]
        {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        }
        let snap = snapshot(root, &root.join("dist"));
        let names: Vec<String> =
            snap.keys().map(|p| p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/")).collect();
        assert_eq!(names, ["app/client/app.js"]);
        std::fs::write(root.join("app/client/app.js"), "xy").unwrap();
        assert_ne!(snapshot(root, &root.join("dist")), snap, "a size change shows");
    }
}
