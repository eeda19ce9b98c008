//! `ssbuild watch`: packs, then packs again whenever a file of the app
//! changes, appears or goes away. Each pack goes through the persistent
//! cache, so only changed files are compiled again (the cache stays in memory
//! between packs, and its file is written in the background); a pack that
//! fails leaves the last good output in place, and the next change is tried
//! again.
//!
//! Changes are found by comparing the size and modification time of every
//! file under the app's folder (the output folder, the cache, `node_modules`
//! and hidden entries aside) ten times a second. The platform's file events
//! (inotify, FSEvents, ReadDirectoryChangesW) only ring a bell: a file
//! event makes the next look come at once instead of at the end of its
//! pause, so a change is seen within milliseconds. What changed is always
//! decided by the looks, so the watch behaves the same where events are
//! missing or unreliable (network and container-mounted folders, a
//! platform's limit on watches reached): it then goes by the looks alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use notify::Watcher as _;

use crate::{PackError, PackOptions, PackReport};

/// How often the app's files are looked at (more seldom when a look takes
/// more than a twentieth of that).
pub const POLL: Duration = Duration::from_millis(100);

/// How long the files may keep changing before a pack goes ahead anyway.
const SETTLE_LIMIT: Duration = Duration::from_secs(1);

/// Every file under `root` a pack may read, with its size and modification
/// time. Keyed by the path's bytes (a `PathBuf` key compares component by
/// component, which showed in the cost of a look).
pub type Snapshot = BTreeMap<std::ffi::OsString, (u64, Option<SystemTime>)>;

/// The files under `root`, except the output folder `out`, hidden entries
/// (the cache, version control, the packer's staging folders) and `node_modules`.
pub fn snapshot(root: &Path, out: &Path) -> Snapshot {
    snapshot_and_folders(root, out).0
}

/// [`snapshot`], and the folders it looked into (`root` first).
fn snapshot_and_folders(root: &Path, out: &Path) -> (Snapshot, Vec<PathBuf>) {
    // The output folder as a path under `root`, worked out once: resolving
    // each folder's real path on every look costs more than the look itself.
    let real_out = std::fs::canonicalize(out).unwrap_or_else(|_| out.to_path_buf());
    let out_under_root = std::fs::canonicalize(root)
        .ok()
        .and_then(|real_root| real_out.strip_prefix(real_root).ok().map(|rel| root.join(rel)));
    let mut files = Snapshot::new();
    let mut folders = vec![root.to_path_buf()];
    look(root, 0, &Skip { out_under_root, real_out }, &mut files, &mut folders);
    (files, folders)
}

struct Skip {
    out_under_root: Option<PathBuf>,
    real_out: PathBuf,
}

/// Links are followed, as the packer follows them, up to this depth (a link
/// to a folder above it would otherwise never end).
const MAX_DEPTH: usize = 64;

/// Adds the files under `dir` to `files`. One system call per file (its
/// size and time), none per folder beyond reading it: the kind of each entry
/// comes with the folder's listing, except for links.
fn look(dir: &Path, depth: usize, skip: &Skip, files: &mut Snapshot, folders: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "node_modules" {
            continue;
        }
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        let (is_dir, meta) = if kind.is_symlink() {
            match std::fs::metadata(&path) {
                Ok(meta) => (meta.is_dir(), Some(meta)),
                Err(_) => continue,
            }
        } else {
            (kind.is_dir(), None)
        };
        if is_dir {
            let is_out = skip.out_under_root.as_deref() == Some(path.as_path())
                || (kind.is_symlink() && std::fs::canonicalize(&path).is_ok_and(|p| p == skip.real_out));
            if !is_out && depth < MAX_DEPTH {
                folders.push(path.clone());
                look(&path, depth + 1, skip, files, folders);
            }
            continue;
        }
        let meta = meta.or_else(|| entry.metadata().ok());
        if meta.as_ref().is_some_and(|m| m.is_file()) {
            let size = meta.as_ref().map_or(0, |m| m.len());
            files.insert(path.into_os_string(), (size, meta.and_then(|m| m.modified().ok())));
        }
    }
}

/// Packs `options.app` now and again after every change, calling `report`
/// with each result, until `report` returns `false`. A change is packed once
/// the files have stayed the same for one more look (an editor that writes a
/// file in several steps gives one pack, not several) and, where file events
/// tell, no file written to is still open for writing. A file that keeps
/// changing through a whole second of looks (a log written under the app's
/// folder) holds a pack back no longer than that, and is left out of the
/// comparisons until it holds still for a pause between looks, so it causes
/// no packs of its own meanwhile. A pack that finds nothing changed (a file
/// outside the pack's inputs changed, or one came back as it was) is not
/// reported after a pack that succeeded: there is nothing new to say. After
/// a failed pack it is, as the news that the error is gone.
pub fn watch(options: &PackOptions, mut report: impl FnMut(Result<PackReport, PackError>) -> bool) {
    let out = options.out_dir();
    let mut warm = crate::cache::Warm::default();
    let mut look = Look::new();
    let mut bell = Doorbell::new(&options.app, &out);
    // What the last pack saw, and what the latest look saw.
    let mut seen = look.take(&options.app, &out);
    let mut last = seen.clone();
    let mut restless = Restless::default();
    bell.watch(&look.folders);
    let first = crate::pack_warm(options, &mut warm);
    let mut last_ok = first.is_ok();
    let mut last_error = first.as_ref().err().map(ToString::to_string);
    if !report(first) {
        return;
    }
    loop {
        bell.wait(look.pause());
        look.space_out();
        let now = look.take(&options.app, &out);
        // A folder made since is watched at once, before it fills.
        bell.watch(&look.folders);
        restless.update(&last, &now, look.pause());
        last = now;
        if same(&last, &seen, &restless) && !bell.written(&restless, false) {
            continue;
        }
        // Settle: wait until two looks in a row agree, or pack what there
        // is once they have disagreed for the limit (at least three looks'
        // worth, so that a slow look still debounces an editor's save).
        let limit = SETTLE_LIMIT.max(look.pause() * 3);
        let settling = std::time::Instant::now();
        let mut calm = false;
        let mut previous = None;
        while !calm && settling.elapsed() < limit {
            std::thread::sleep(look.pause() / 4);
            let again = look.take(&options.app, &out);
            restless.update(&last, &again, look.pause());
            // A file still open for writing is not done, however still it
            // looks: a save that empties the file, then writes it a moment
            // later (a busy machine, an editor writing in pieces), must not
            // be packed empty.
            calm = same(&again, &last, &restless) && !bell.writing(&restless);
            previous = Some(std::mem::replace(&mut last, again));
        }
        if !calm && let Some(previous) = &previous {
            restless.add(changed(previous, &last));
        }
        // Back as it was (an editor's temporary file, come and gone).
        let looks_changed = !same(&last, &seen, &restless);
        // Taken now: what is written from here on is for the next pack.
        if !bell.written(&restless, true) && !looks_changed {
            continue;
        }
        seen = last.clone();
        let result = crate::pack_warm(options, &mut warm);
        let error = result.as_ref().err().map(ToString::to_string);
        let news = match &result {
            Ok(r) if r.unchanged => !last_ok,
            // A write the looks did not see, packed for nothing (the same
            // bytes saved again), or failing just as the last pack did, is
            // no news.
            Err(_) if !looks_changed => error != last_error,
            _ => true,
        };
        last_ok = result.is_ok();
        last_error = error;
        if news && !report(result) {
            return;
        }
    }
}

/// Files that kept changing through a whole settle, each with when it was
/// last seen changing.
#[derive(Default)]
struct Restless(BTreeMap<std::ffi::OsString, std::time::Instant>);

impl Restless {
    fn add(&mut self, paths: Vec<std::ffi::OsString>) {
        let now = std::time::Instant::now();
        self.0.extend(paths.into_iter().map(|path| (path, now)));
    }

    /// After a look: a file that changed since the look `before` stays
    /// restless; one that has not changed for `hold` counts again.
    fn update(&mut self, before: &Snapshot, after: &Snapshot, hold: Duration) {
        let now = std::time::Instant::now();
        self.0.retain(|path, changed_at| {
            if before.get(path) != after.get(path) {
                *changed_at = now;
            }
            now - *changed_at < hold
        });
    }
}

/// Whether two snapshots agree on every file that is not restless.
fn same(a: &Snapshot, b: &Snapshot, restless: &Restless) -> bool {
    if restless.0.is_empty() {
        return a == b;
    }
    let steady = |(path, _): &(&std::ffi::OsString, &(u64, Option<SystemTime>))| !restless.0.contains_key(*path);
    a.iter().filter(steady).eq(b.iter().filter(steady))
}

/// The files that differ between two snapshots (changed, come or gone).
fn changed(a: &Snapshot, b: &Snapshot) -> Vec<std::ffi::OsString> {
    let mut paths: Vec<std::ffi::OsString> =
        a.iter().filter(|(path, meta)| b.get(*path) != Some(*meta)).map(|(path, _)| path.clone()).collect();
    paths.extend(b.keys().filter(|path| !a.contains_key(*path)).cloned());
    paths
}

/// File events, as a bell that makes the next look come early. On Linux and
/// the BSDs the folders the looks read are watched one by one (not their
/// subfolders, which are watched themselves: the output, hidden folders and
/// `node_modules`, at any depth, are not); on Windows and macOS the app's
/// folder is watched whole, as a handle on every folder would stop folders
/// from being renamed on Windows, and FSEvents restarts its stream for every
/// folder added on macOS. Either way an event about what the looks skip
/// rings nothing.
struct Doorbell {
    watcher: Option<notify::RecommendedWatcher>,
    rings: mpsc::Receiver<()>,
    /// Files written to and not yet closed (Linux only: see [`TRACKS_WRITERS`]).
    writing: std::sync::Arc<std::sync::Mutex<BTreeMap<PathBuf, Writer>>>,
    /// The app's files written and closed since the last pack (Linux only):
    /// their size and time may not show it (a backup restored with its old
    /// time, a write of the same length within the file system's clock
    /// tick), so the watch packs even when the looks see no change (a pack
    /// of unchanged files is not reported). Restless files do not count.
    written: std::sync::Arc<std::sync::Mutex<BTreeSet<PathBuf>>>,
    /// Paths reported removed or renamed away: a folder made again under the
    /// same name needs a new watch.
    gone: mpsc::Receiver<PathBuf>,
    gone_paths: BTreeSet<PathBuf>,
    watched: BTreeSet<PathBuf>,
    /// The folders given to the last [`Doorbell::watch`].
    last: Vec<PathBuf>,
}

/// Whether the app's folder is watched whole rather than folder by folder.
const WATCH_WHOLE: bool = cfg!(any(windows, target_os = "macos"));

/// A file written to and not yet closed.
enum Writer {
    /// Written to since then: a settle waits for it to be closed.
    Since(std::time::Instant),
    /// Held open longer than the settle limit (a log, say): no longer waited
    /// for, until it is closed or removed.
    HeldOpen,
}

/// Whether file events say when a file written to is closed (inotify's
/// `IN_CLOSE_WRITE`); elsewhere a settle goes by the looks alone.
const TRACKS_WRITERS: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// What the looks skip: a path with a hidden or `node_modules` part below
/// `root`, or under the output folder `out`.
fn skipped(path: &Path, root: &Path, out: &Path) -> bool {
    if path.starts_with(out) {
        return true;
    }
    let below = path.strip_prefix(root).unwrap_or(path);
    below.components().any(|part| {
        let name = part.as_os_str().to_string_lossy();
        name.starts_with('.') || name == "node_modules"
    })
}

impl Doorbell {
    fn new(root: &Path, out: &Path) -> Doorbell {
        // One ring waiting is enough: a burst of events gives one early look.
        let (ring, rings) = mpsc::sync_channel(1);
        let (gone_tx, gone) = mpsc::channel();
        let (root_path, out_path) = (root.to_path_buf(), out.to_path_buf());
        let writing = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let writers = writing.clone();
        let written = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
        let wrote = written.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            use notify::EventKind;
            use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
            let Ok(event) = event else { return };
            let paths: Vec<&PathBuf> = event.paths.iter().filter(|p| !skipped(p, &root_path, &out_path)).collect();
            let mut writers = writers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match event.kind {
                EventKind::Create(CreateKind::File) | EventKind::Modify(ModifyKind::Data(_)) if TRACKS_WRITERS => {
                    // From the first write: a writer that keeps the file open
                    // (a log appended to) holds packs back for a while only.
                    let now = std::time::Instant::now();
                    // A link is made whole: nothing writes to the link itself.
                    let link = |path: &Path| path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink());
                    for path in paths.iter().filter(|path| !link(path)) {
                        writers.entry(path.to_path_buf()).or_insert(Writer::Since(now));
                    }
                }
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                    for path in &paths {
                        writers.remove(*path);
                    }
                    if paths.is_empty() {
                        return;
                    }
                    let mut wrote = wrote.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    wrote.extend(paths.iter().map(|path| path.to_path_buf()));
                }
                // Reading a file or listing a folder (the looks do) is no change.
                EventKind::Access(_) => return,
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)) => {
                    for path in &paths {
                        writers.remove(*path);
                        let _ = gone_tx.send(path.to_path_buf());
                    }
                }
                _ => {}
            }
            drop(writers);
            if event.paths.is_empty() || !paths.is_empty() {
                let _ = ring.try_send(());
            }
        });
        let mut bell = Doorbell {
            watcher: watcher.ok(),
            rings,
            writing,
            written,
            gone,
            gone_paths: BTreeSet::new(),
            watched: BTreeSet::new(),
            last: Vec::new(),
        };
        if WATCH_WHOLE
            && let Some(watcher) = bell.watcher.as_mut()
            && watcher.watch(root, notify::RecursiveMode::Recursive).is_ok()
        {
            bell.watched.insert(root.to_path_buf());
        }
        bell
    }

    /// Watches `folders` (what the last look read), when they changed since
    /// the last call, and forgets the rest.
    fn watch(&mut self, folders: &[PathBuf]) {
        self.forget_gone();
        if WATCH_WHOLE || (folders == self.last && self.gone_paths.is_empty()) {
            return;
        }
        self.last = folders.to_vec();
        let Some(watcher) = self.watcher.as_mut() else { return };
        // With a folder, the watches of the folders in it went too.
        for path in std::mem::take(&mut self.gone_paths) {
            self.watched.retain(|folder| !folder.starts_with(&path));
        }
        // One path per folder: two paths to a folder through a link share
        // one inotify watch, which unwatching either of them would end.
        let mut real = BTreeSet::new();
        let now: BTreeSet<&PathBuf> = folders
            .iter()
            .filter(|folder| real.insert(std::fs::canonicalize(folder).unwrap_or_else(|_| folder.to_path_buf())))
            .collect();
        let dropped: Vec<PathBuf> = self.watched.iter().filter(|f| !now.contains(f)).cloned().collect();
        for folder in dropped {
            let _ = watcher.unwatch(&folder);
            self.watched.remove(&folder);
        }
        for folder in now {
            if !self.watched.contains(folder) && watcher.watch(folder, notify::RecursiveMode::NonRecursive).is_ok() {
                self.watched.insert(folder.clone());
            }
        }
    }

    /// Moves the paths reported gone into a set (each once), for the next
    /// [`Doorbell::watch`].
    fn forget_gone(&mut self) {
        while let Ok(path) = self.gone.try_recv() {
            if self.watched.contains(&path) {
                self.gone_paths.insert(path);
            }
        }
    }

    /// Whether a file that is not restless is written to and still open
    /// for writing. One first written to longer than the settle limit ago
    /// (a writer that keeps it open) counts no more until it is closed.
    fn writing(&self, restless: &Restless) -> bool {
        let mut writers = self.writing.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut open = false;
        for (path, writer) in writers.iter_mut() {
            if let Writer::Since(first) = writer {
                if first.elapsed() >= SETTLE_LIMIT {
                    *writer = Writer::HeldOpen;
                } else if !restless.0.contains_key(path.as_os_str()) {
                    open = true;
                }
            }
        }
        open
    }

    /// Whether a file of the app that is not restless was written and
    /// closed since the last pack; `take` starts over (for the pack about
    /// to run).
    fn written(&self, restless: &Restless, take: bool) -> bool {
        let mut written = self.written.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let any = written.iter().any(|path| !restless.0.contains_key(path.as_os_str()));
        if take {
            written.clear();
        }
        any
    }

    /// Waits for `pause`, or less when a file event comes (then `true`).
    fn wait(&mut self, pause: Duration) -> bool {
        let rang = match self.rings.recv_timeout(pause) {
            Ok(()) => true,
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            // No watcher: no bell.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(pause);
                false
            }
        };
        self.forget_gone();
        rang
    }
}

/// Snapshots, timed: on a large app (or a slow file system) the looks space
/// out so that they take at most about a twentieth of the time, and at most
/// a fifth when file events keep coming (a file written over and over).
struct Look {
    took: Duration,
    ended: std::time::Instant,
    /// The folders the last look read.
    folders: Vec<PathBuf>,
}

impl Look {
    fn new() -> Look {
        Look { took: Duration::ZERO, ended: std::time::Instant::now(), folders: Vec::new() }
    }

    fn take(&mut self, root: &Path, out: &Path) -> Snapshot {
        let started = std::time::Instant::now();
        let (snapshot, folders) = snapshot_and_folders(root, out);
        self.ended = std::time::Instant::now();
        self.took = self.ended - started;
        self.folders = folders;
        snapshot
    }

    fn pause(&self) -> Duration {
        POLL.max(self.took * 20).min(Duration::from_secs(5))
    }

    /// Waits, when the last look ended less than four of its durations ago.
    fn space_out(&self) {
        let next = self.ended + self.took * 4;
        let now = std::time::Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest app that packs: a client entry and the layout.
    fn minimal_app(root: &Path) {
        std::fs::create_dir_all(root.join("app/client")).unwrap();
        std::fs::create_dir_all(root.join("app/views")).unwrap();
        std::fs::write(root.join("app/client/app.js"), "exports.init = function () {};\n").unwrap();
        std::fs::write(
            root.join("app/views/app.html"),
            "<!doctype html><html><head><SocketStream></head><body></body></html>\n",
        )
        .unwrap();
    }

    /// A bell watching what a look of `root` reads, or `None` (said, and
    /// refused under CI) where this machine gives no file events.
    fn watching(root: &Path, out: &Path) -> Option<Doorbell> {
        let mut bell = Doorbell::new(root, out);
        bell.watch(&snapshot_and_folders(root, out).1);
        if bell.watched.is_empty() {
            assert!(std::env::var_os("CI").is_none(), "no file events on this machine");
            eprintln!("skipped: no file events on this machine (the watch goes by its looks alone)");
            return None;
        }
        Some(bell)
    }

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

        // Mended as it was: the pack changes nothing, and is reported, as the
        // news that the error is gone.
        write("app/client/extra.js", "exports.twice = (x) => 2 * x;\n");
        let (compiled, tree) = next(true).expect("the pack after the mend");
        assert_eq!(compiled, 0, "the output of before the mistake stands");
        assert!(serde_json::to_string(&tree).unwrap().contains("extra"), "{tree:?}");

        // A file that is not an input: a pack that changes nothing, not
        // reported after one that succeeded (the next report is the delete's).
        write("notes.txt", "to do\n");
        let report = rx.recv_timeout(Duration::from_secs(2));
        assert!(report.is_err(), "a pack that changed nothing was reported: {report:?}");

        // Deleting the file packs again, without it.
        std::fs::remove_file(root.join("app/client/extra.js")).unwrap();
        let (_, tree) = next(true).expect("the pack after the delete");
        assert!(!serde_json::to_string(&tree).unwrap().contains("extra"), "{tree:?}");

        write("app/client/more.js", "exports.x = 1;\n");
        let (_, tree) = next(false).expect("the last pack");
        assert!(serde_json::to_string(&tree).unwrap().contains("more"), "{tree:?}");
        watcher.join().unwrap();

        // The cache file the watcher wrote in the background serves a later pack.
        write("app/client/more.js", "exports.x = 2;\n");
        let report = crate::pack(&PackOptions::new(&root, "development")).expect("a pack");
        assert_eq!(report.compiled, 1, "only the changed file is compiled: {} from the cache", report.cached);
    }

    #[test]
    fn file_events_ring_the_bell_for_app_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for folder in
            ["app/client", "app/.cache", "app/node_modules/p", "dist/assets", "node_modules/p", ".ssbuild-cache"]
        {
            std::fs::create_dir_all(root.join(folder)).unwrap();
        }
        std::fs::write(root.join("app/client/app.js"), "x").unwrap();
        let out = root.join("dist");
        let Some(mut bell) = watching(root, &out) else { return };
        // Whether `change` rings the bell, once the events before it have
        // stopped coming (a write can give more than one).
        let rings = |bell: &mut Doorbell, change: &dyn Fn()| {
            while bell.wait(Duration::from_millis(150)) {}
            change();
            bell.wait(Duration::from_millis(500))
        };
        let write = |rel: &str| {
            let rel = rel.to_string();
            move || std::fs::write(root.join(&rel), "y").unwrap()
        };
        // A change deep in the app rings; reading, listing and looking do not.
        assert!(rings(&mut bell, &write("app/client/app.js")));
        assert!(!rings(&mut bell, &|| {
            std::fs::read(root.join("app/client/app.js")).unwrap();
            snapshot(root, &out);
        }));
        // What the looks skip is not watched, at the top or deeper, and
        // hidden files (an editor's) ring nothing.
        for skipped in [
            "dist/assets/x.js",
            ".ssbuild-cache/c.json",
            "node_modules/p/i.js",
            "app/.cache/c",
            "app/node_modules/p/i.js",
            "app/client/.app.js.swp",
        ] {
            assert!(!rings(&mut bell, &write(skipped)), "{skipped} rang");
        }
        // A folder made, then filled: its making rings, and once watched
        // (after the next look), so do the files written in it.
        assert!(rings(&mut bell, &|| std::fs::create_dir_all(root.join("lib/client")).unwrap()));
        bell.watch(&snapshot_and_folders(root, &out).1);
        assert!(rings(&mut bell, &write("lib/client/1.js")));
        // A folder removed, or renamed away, and made again is watched again.
        let remove = || std::fs::remove_dir_all(root.join("lib")).unwrap();
        let rename = || std::fs::rename(root.join("lib"), root.join("lib-old")).unwrap();
        let aways: [&dyn Fn(); 2] = [&remove, &rename];
        for away in aways {
            assert!(rings(&mut bell, away));
            std::fs::create_dir_all(root.join("lib/client")).unwrap();
            while bell.wait(Duration::from_millis(150)) {}
            bell.watch(&snapshot_and_folders(root, &out).1);
            assert!(rings(&mut bell, &write("lib/client/2.js")));
        }
    }

    // Linux: elsewhere the app's folder is watched whole.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_folder_reached_through_a_link_too_stays_watched_when_the_link_drops_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (real, link) = (root.join("app/client/real"), root.join("app/client/link"));
        std::fs::create_dir_all(&real).unwrap();
        std::fs::write(real.join("a.js"), "x").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let out = root.join("dist");
        let folders = snapshot_and_folders(root, &out).1;
        assert!(folders.contains(&link) && folders.contains(&real), "the look follows the link: {folders:?}");
        let mut bell = Doorbell::new(root, &out);
        // The link first, as a look may list it.
        let mut with_link: Vec<PathBuf> = folders.iter().filter(|f| **f != real).cloned().collect();
        with_link.push(real.clone());
        bell.watch(&with_link);
        if bell.watched.is_empty() {
            assert!(std::env::var_os("CI").is_none(), "no file events on this machine");
            eprintln!("skipped: no file events on this machine (the watch goes by its looks alone)");
            return;
        }
        // A look no longer lists the link (say its removal was seen before
        // its event came): the folder, which it still lists, must still ring.
        let without_link: Vec<PathBuf> = with_link.iter().filter(|f| **f != link).cloned().collect();
        bell.watch(&without_link);
        while bell.wait(Duration::from_millis(150)) {}
        std::fs::write(real.join("a.js"), "y").unwrap();
        assert!(bell.wait(Duration::from_millis(500)), "a write in the linked folder rang nothing");
    }

    #[test]
    fn a_file_that_never_stops_changing_holds_a_pack_back_a_second_at_most_and_packs_nothing_itself() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        minimal_app(&root);
        let (tx, rx) = std::sync::mpsc::channel();
        let options = PackOptions::new(&root, "development");
        let watcher = std::thread::spawn(move || {
            watch(&options, |result| {
                let trees = result.map(|r| serde_json::to_string(&r.manifest.trees).unwrap());
                tx.send(trees.map_err(|e| e.to_string())).is_ok()
            })
        });
        rx.recv_timeout(Duration::from_secs(20)).expect("the first pack").expect("it packs");
        // A log beside the app, written every 5 ms for as long as the test runs.
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let writer = {
            let (stop, log) = (stop.clone(), root.join("server.log"));
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    std::fs::write(&log, "line\n".repeat(n as usize % 50 + 1)).unwrap();
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        // Written whole, by a rename: a look between the creation of the file
        // and its content would see two changes, and rightly pack twice.
        std::fs::write(root.join("extra.js.tmp"), "exports.x = 1;\n").unwrap();
        std::fs::rename(root.join("extra.js.tmp"), root.join("app/client/extra.js")).unwrap();
        let written = std::time::Instant::now();
        let found = loop {
            let trees = rx.recv_timeout(Duration::from_secs(10)).expect("a pack while the log is written");
            if trees.expect("it packs").contains("extra") {
                break written.elapsed();
            }
        };
        // While the log goes on, it causes no packs of its own.
        let quiet = rx.recv_timeout(Duration::from_millis(2500));
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        drop(rx);
        assert!(
            matches!(quiet, Err(std::sync::mpsc::RecvTimeoutError::Timeout)),
            "a pack while only the log changed: {quiet:?}"
        );
        // Within the limit, a look's pause and the pack (with room for a slow machine).
        assert!(found < SETTLE_LIMIT + Duration::from_secs(5), "packed {found:?} after the change");
        // The watcher ends at its next report, which this change brings.
        std::fs::write(root.join("app/client/extra.js"), "exports.x = 22;\n").unwrap();
        watcher.join().unwrap();
    }

    /// A save that empties a file and writes it a moment later (longer than
    /// the looks of a settle take) is packed once, whole: never the empty
    /// file in between. Only where file events say when a writer closes.
    #[test]
    fn a_file_still_open_for_writing_is_not_packed_half_written() {
        use std::io::Write;
        let Some((_dir, root)) = app_where_closes_are_seen() else { return };
        std::fs::create_dir_all(root.join("app/server")).unwrap();
        std::fs::write(root.join("app/server/extra.js"), "exports.actions = { x() { return 1; } };\n").unwrap();
        // Each pack's server code, as text.
        fn text_under(dir: &Path) -> String {
            let mut text = String::new();
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                text +=
                    &if path.is_dir() { text_under(&path) } else { std::fs::read_to_string(&path).unwrap_or_default() };
            }
            text
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let options = PackOptions::new(&root, "development");
        let server_code = root.join("dist/server");
        let watcher = std::thread::spawn(move || {
            watch(&options, |result| {
                tx.send(result.map(|_| text_under(&server_code)).map_err(|e| e.to_string())).is_ok()
            })
        });
        let first = rx.recv_timeout(Duration::from_secs(20)).expect("the first pack").expect("it packs");
        assert!(first.contains("return 1") && !first.contains("later"), "{first}");
        if watching(&root, &root.join("dist")).is_none() {
            drop(rx);
            std::fs::write(root.join("app/client/app.js"), "exports.init = function () { return 1; };\n").unwrap();
            watcher.join().unwrap();
            return;
        }
        // Emptied, then written 400 ms later (several settles' looks), then closed.
        let mut file = std::fs::File::create(root.join("app/server/extra.js")).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        file.write_all(b"exports.actions = { x() { return 1; }, later() { return 2; } };\n").unwrap();
        drop(file);
        let next = rx.recv_timeout(Duration::from_secs(20)).expect("a pack after the save");
        assert!(matches!(&next, Ok(trees) if trees.contains("later")), "the emptied file was packed: {next:?}");
        // And no second pack follows (the whole file was the one change).
        let quiet = rx.recv_timeout(Duration::from_millis(1500));
        assert!(quiet.is_err(), "a second pack: {quiet:?}");
        drop(rx);
        std::fs::write(root.join("app/client/app.js"), "exports.init = function () { return 2; };\n").unwrap();
        watcher.join().unwrap();
    }

    /// A file written in place with bytes of the same length, its time then
    /// set back (a backup restored with `cp -p`), looks the same to the
    /// looks: the written-and-closed event makes the watch pack anyway. The
    /// same bytes saved again pack nothing that is reported.
    #[test]
    fn a_write_the_looks_cannot_see_is_packed() {
        let Some((_dir, root)) = app_where_closes_are_seen() else { return };
        if watching(&root, &root.join("dist")).is_none() {
            return;
        }
        let file = root.join("app/client/extra.js");
        std::fs::write(&file, "exports.word = 'before';\n").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let options = PackOptions::new(&root, "development");
        let watcher = std::thread::spawn(move || {
            watch(&options, |result| tx.send(result.map(|r| r.compiled).map_err(|e| e.to_string())).is_ok())
        });
        rx.recv_timeout(Duration::from_secs(20)).expect("the first pack").expect("it packs");
        let time = std::fs::metadata(&file).unwrap().modified().unwrap();
        // The same length, and the old time again.
        std::fs::write(&file, "exports.word = 'after!';\n").unwrap();
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(time).unwrap();
        let compiled = rx.recv_timeout(Duration::from_secs(20)).expect("a pack after the write").expect("it packs");
        assert_eq!(compiled, 1);
        let code = std::fs::read_dir(root.join("dist/assets"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "js"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect::<String>();
        // (Earlier builds' assets stay, for pages still open.)
        assert!(code.contains("after!"), "{code}");
        // The same bytes again: packed, and nothing to report.
        std::fs::write(&file, "exports.word = 'after!';\n").unwrap();
        let quiet = rx.recv_timeout(Duration::from_millis(1500));
        assert!(quiet.is_err(), "a pack that changed nothing was reported: {quiet:?}");
        drop(rx);
        std::fs::write(root.join("app/client/app.js"), "exports.init = function () { return 2; };\n").unwrap();
        watcher.join().unwrap();
    }

    /// A minimal app in a folder of its own (kept while the first part
    /// lives), where file events say when a file written to is closed;
    /// `None` (the test skips, saying why) elsewhere.
    fn app_where_closes_are_seen() -> Option<(tempfile::TempDir, PathBuf)> {
        if !TRACKS_WRITERS {
            eprintln!("skipped: file events here do not say when a file written to is closed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        minimal_app(&root);
        Some((dir, root))
    }

    /// A folder with an empty `app/client` and a bell on it, where file
    /// events say when a file written to is closed; `None` (the test skips,
    /// saying why) elsewhere.
    fn writers_watched() -> Option<(tempfile::TempDir, Doorbell)> {
        if !TRACKS_WRITERS {
            eprintln!("skipped: file events here do not say when a file written to is closed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app/client")).unwrap();
        let bell = watching(dir.path(), &dir.path().join("dist"))?;
        Some((dir, bell))
    }

    /// A file kept open and written to now and then (a log appended to)
    /// counts as being written for the settle limit from its first write,
    /// then no more until it is closed: it does not hold every later pack
    /// back. Closed and written again, it counts again.
    #[test]
    fn a_file_held_open_is_waited_for_a_settle_limit_at_most() {
        use std::io::Write;
        let Some((dir, mut bell)) = writers_watched() else { return };
        let root = dir.path();
        let restless = Restless::default();
        let path = root.join("app/client/dev.log");
        let mut log = std::fs::File::create(&path).unwrap();
        let started = std::time::Instant::now();
        let mut seen_writing = false;
        // Appended to every 50 ms, never closed, for well past the limit.
        while started.elapsed() < SETTLE_LIMIT + Duration::from_millis(600) {
            log.write_all(b"line\n").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            seen_writing |= bell.writing(&restless);
        }
        assert!(seen_writing, "a file open for writing was never waited for");
        assert!(!bell.writing(&restless), "a file held open past the limit is still waited for");
        // Closed, then written again: waited for again, until closed.
        drop(log);
        while bell.wait(Duration::from_millis(150)) {}
        let mut again = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        again.write_all(b"more\n").unwrap();
        while bell.wait(Duration::from_millis(150)) {}
        assert!(bell.writing(&restless), "written again after a close, and not waited for");
        drop(again);
        while bell.wait(Duration::from_millis(150)) {}
        assert!(!bell.writing(&restless), "closed, and still waited for");
    }

    #[cfg(unix)]
    #[test]
    fn a_new_link_is_not_taken_for_a_file_being_written() {
        let Some((dir, mut bell)) = writers_watched() else { return };
        let root = dir.path();
        std::fs::write(root.join("app/shared.js"), "exports.x = 1;\n").unwrap();
        let restless = Restless::default();
        std::os::unix::fs::symlink(root.join("app/shared.js"), root.join("app/client/x.js")).unwrap();
        assert!(bell.wait(Duration::from_secs(5)), "no event for the new link");
        while bell.wait(Duration::from_millis(150)) {}
        assert!(!bell.writing(&restless), "a new link is waited for as if it were being written");
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
        let names: Vec<String> = snap
            .keys()
            .map(|p| Path::new(p).strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"))
            .collect();
        assert_eq!(names, ["app/client/app.js"]);
        std::fs::write(root.join("app/client/app.js"), "xy").unwrap();
        assert_ne!(snapshot(root, &root.join("dist")), snap, "a size change shows");
    }
}
