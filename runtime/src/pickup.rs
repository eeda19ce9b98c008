//! Serving in development: a new build of the app (from `ssbuild watch`, or
//! any `ssbuild pack` into the same folder) is picked up while the server
//! runs.
//!
//! The server looks at `manifest.json` and the config files it reads
//! (`config/app.toml`, `config/environments/ENV.toml`) a few times a
//! second. When either changes, the new build is loaded and a new [`App`] made
//! from it (its config read again, its server code started in a new engine)
//! while the old one goes on serving (where the process may use more than
//! one CPU: on one, the engine shares the server's thread, and requests wait
//! while the new server code loads); only when that worked does the old
//! server stop. The new one starts at once on the same listening socket,
//! while the old one closes its connections with 1001 in the background:
//! browsers reconnect to the new one with the same sessions and users online
//! (both live outside either server). The `init` message tells each page
//! which build it now talks to, and the page reloads itself when its code
//! changed, or swaps its stylesheet in place when only that changed
//! (client/socket.js). A build that cannot be loaded or whose server code
//! fails to start is reported, and the last good one goes on serving.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::{App, LoadedApp};

/// How often `manifest.json` and the config files are looked at.
pub const POLL: Duration = Duration::from_millis(250);

/// How many looks in a row a changed manifest may fail to load before the
/// failure is reported (a pack swapping the folder can be caught half-way);
/// after that it is tried again every `RETRY_EVERY` looks, in case the cause
/// passes (a slow disk, a copy in progress).
const LOAD_TRIES: u32 = 3;
const RETRY_EVERY: u32 = 8;

/// What tells one build from the next: the manifest's bytes, and the size
/// and modification time of the config files the server reads (not the rest
/// of `config/`: an editor's swap file there changes as one types).
#[derive(Clone, PartialEq, Eq)]
struct Key {
    manifest: Vec<u8>,
    config: Vec<Option<(u64, Option<SystemTime>)>>,
}

/// A build other than the one served, as the last look left it.
enum Pending {
    /// None: the files are the served build's.
    Nothing,
    /// Changed, and failed to load `failed` times in a row (fewer than
    /// `LOAD_TRIES`: a pack swapping the folder can be caught half-way).
    Loading { key: Key, failed: u32 },
    /// Failed to load `LOAD_TRIES` times: reported, and tried again every
    /// `RETRY_EVERY` looks (`looks` since it was reported).
    Broken { key: Key, looks: u32 },
    /// Loaded, but refused by `make` (its server code failed to start, say):
    /// reported, and not tried again until something changes.
    Refused(Key),
}

/// Size and time of each file the config of `env` is read from (`None`
/// when it is missing), under the app's `config/` folder `dir`.
fn config_files(dir: Option<&Path>, env: &str) -> Vec<Option<(u64, Option<SystemTime>)>> {
    let Some(dir) = dir else { return Vec::new() };
    Config::files(dir, env)
        .iter()
        .map(|file| std::fs::metadata(file).ok().map(|m| (m.len(), m.modified().ok())))
        .collect()
}

/// Serves `first` on `listener` until `stop` completes, replacing it with
/// `make(new build)` each time the manifest it was loaded from, or one of the
/// app's config files, changes. `make` gets the loaded build and gives the app
/// to serve, or why not (the message is reported and the current app goes on
/// serving); it should share one session store and users online between the
/// apps it makes (see [`App::with_memory_store`] and [`App::with_presence`]).
/// `report` gets a line to print for each build picked up or refused. Call it
/// inside a [`tokio::task::LocalSet`].
pub async fn serve_picking_up<M, R>(
    first: App,
    listener: std::net::TcpListener,
    mut make: M,
    mut report: R,
    stop: impl Future<Output = ()> + 'static,
) -> std::io::Result<()>
where
    M: FnMut(LoadedApp) -> Result<App, String>,
    R: FnMut(String),
{
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopping = tokio::task::spawn_local(async move {
        stop.await;
        let _ = stop_tx.send(true);
    });
    let manifest_path = first.loaded.manifest_path.clone();
    // Looked at even while it does not exist: a config folder may be created.
    let config_dir = first.loaded.root.as_ref().map(|root| root.join("config"));
    let env = first.loaded.env.clone();
    let key_now = || Key {
        manifest: std::fs::read(&manifest_path).unwrap_or_default(),
        config: config_files(config_dir.as_deref(), &env),
    };
    let mut serving_key = Key { manifest: first.loaded.manifest_bytes.clone(), ..key_now() };
    let mut serving_build = first.loaded.build.clone();
    let mut current = first;
    // Servers handed over, closing their connections in the background.
    let mut retiring = Vec::new();
    let result = loop {
        let (switch_tx, switch_rx) = tokio::sync::oneshot::channel::<()>();
        let mut stopped = stop_rx.clone();
        let shutdown = async move {
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => {}
                _ = switch_rx => {}
            }
        };
        let socket = match listener.try_clone().and_then(tokio::net::TcpListener::from_std) {
            Ok(socket) => socket,
            Err(e) => break Err(e),
        };
        // A task of its own, not a future polled by this loop: loading a new
        // build below blocks this thread while its server code runs, and on a
        // multi-threaded scheduler the server goes on answering meanwhile.
        let mut serving = tokio::spawn(current.serve(socket, shutdown));
        let mut pending = Pending::Nothing;
        let next = loop {
            tokio::select! {
                result = &mut serving => break Err(result.unwrap_or_else(|e| Err(std::io::Error::other(e)))),
                _ = tokio::time::sleep(POLL) => {}
            }
            let key = key_now();
            if key.manifest.is_empty() {
                continue;
            }
            if key == serving_key {
                if matches!(pending, Pending::Refused(_) | Pending::Broken { .. }) {
                    report("the app is back to the build being served".to_string());
                }
                pending = Pending::Nothing;
                continue;
            }
            match &mut pending {
                Pending::Refused(refused) if *refused == key => continue,
                Pending::Broken { key: broken, looks } if *broken == key => {
                    *looks += 1;
                    if *looks % RETRY_EVERY != 0 {
                        continue;
                    }
                }
                Pending::Loading { key: loading, .. } if *loading == key => {}
                // Something changed since the last look: try at once.
                _ => pending = Pending::Loading { key: key.clone(), failed: 0 },
            }
            match LoadedApp::load(manifest_path.parent().unwrap_or(&manifest_path)) {
                Ok(loaded) => {
                    // Loaded from what the manifest says now, which may already be newer than `key`.
                    let loaded_key = Key { manifest: loaded.manifest_bytes.clone(), config: key.config.clone() };
                    match make(loaded) {
                        Ok(app) => break Ok((app, loaded_key)),
                        Err(why) => {
                            report(format!("the new build is not served, the last one goes on serving: {why}"));
                            pending = Pending::Refused(loaded_key);
                        }
                    }
                }
                Err(e) => {
                    if let Pending::Loading { failed, .. } = &mut pending {
                        *failed += 1;
                        if *failed == LOAD_TRIES {
                            report(format!("the new build cannot be loaded, the last one goes on serving: {e}"));
                            pending = Pending::Broken { key, looks: 0 };
                        }
                    }
                }
            }
        };
        match next {
            Ok((app, key)) => {
                let _ = switch_tx.send(());
                retiring.retain(|task: &tokio::task::JoinHandle<std::io::Result<()>>| !task.is_finished());
                retiring.push(serving);
                let actions = app.registry().names().len();
                let pages = what_pages_do(&serving_build, &app.loaded.build);
                report(format!("serving the new build ({actions} action(s)); {pages}"));
                serving_build = app.loaded.build.clone();
                current = app;
                serving_key = key;
            }
            // The server stopped (its stop signal, or an error).
            Err(result) => break result,
        }
    };
    for task in retiring {
        let _ = task.await;
    }
    stopping.abort();
    result
}

/// What open pages do when they reconnect to a new build (see the browser
/// library's `outOfDate`), for the log.
fn what_pages_do(old: &crate::app::PageBuild, new: &crate::app::PageBuild) -> &'static str {
    if old.js != new.js || old.page != new.page {
        "open pages reconnect and reload"
    } else if old.css != new.css {
        "open pages reconnect and swap in the new stylesheet"
    } else {
        "open pages reconnect (the page, its code and its styles are unchanged)"
    }
}
