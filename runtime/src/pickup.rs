//! Serving in development: a new build of the app (from `ssbuild watch`, or
//! any `ssbuild pack` into the same folder) is picked up while the server
//! runs.
//!
//! The server looks at `manifest.json` a few times a second. When its bytes
//! change, the new build is loaded and a new [`App`] made from it (its server
//! code started in a new engine) while the old one goes on serving; only when
//! that worked does the old server stop: its connections close with 1001, and
//! browsers reconnect to the new one on the same listening socket, with the
//! same sessions and users online (both live outside either server). The
//! `init` message tells each page which build it now talks to, and the page
//! reloads itself when its code changed, or swaps its stylesheet in place when
//! only that changed (client/socket.js). A build that cannot be loaded or
//! whose server code fails to start is reported, and the last good one goes on
//! serving.

use std::future::Future;
use std::time::Duration;

use crate::{App, LoadedApp};

/// How often `manifest.json` is looked at.
pub const POLL: Duration = Duration::from_millis(250);

/// How many looks in a row a changed manifest may fail to load before the
/// failure is reported (a pack swapping the folder can be caught half-way).
const LOAD_TRIES: u32 = 3;

/// Serves `first` on `listener` until `stop` completes, replacing it with
/// `make(new build)` each time the manifest it was loaded from changes.
/// `make` gets the loaded build and gives the app to serve, or why not (the
/// message is printed and the current app goes on serving); it should share
/// one session store and users online between the apps it makes (see
/// [`App::with_memory_store`] and [`App::with_presence`]). `report` gets a
/// line to print for each build picked up or refused. Call it inside a
/// [`tokio::task::LocalSet`].
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
    let mut current = first;
    let result = loop {
        let manifest_path = current.loaded.manifest_path.clone();
        let serving_bytes = current.loaded.manifest_bytes.clone();
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
        let serving = current.serve(socket, shutdown);
        tokio::pin!(serving);
        let mut failed: Option<Vec<u8>> = None;
        let mut tries = 0;
        let next = loop {
            tokio::select! {
                result = &mut serving => break Err(result),
                _ = tokio::time::sleep(POLL) => {}
            }
            let Ok(bytes) = std::fs::read(&manifest_path) else { continue };
            if bytes == serving_bytes {
                if failed.take().is_some() {
                    report("the app is back to the build being served".to_string());
                }
                tries = 0;
                continue;
            }
            if failed.as_ref() == Some(&bytes) {
                continue;
            }
            match LoadedApp::load(manifest_path.parent().unwrap_or(&manifest_path)) {
                // Loaded from what the manifest says now, which may already be newer than `bytes`.
                Ok(loaded) => {
                    tries = 0;
                    let loaded_bytes = loaded.manifest_bytes.clone();
                    match make(loaded) {
                        Ok(app) => break Ok(app),
                        Err(why) => {
                            report(format!("the new build is not served, the last one goes on serving: {why}"));
                            failed = Some(loaded_bytes);
                        }
                    }
                }
                Err(e) => {
                    tries += 1;
                    if tries >= LOAD_TRIES {
                        report(format!("the new build cannot be loaded, the last one goes on serving: {e}"));
                        failed = Some(bytes);
                        tries = 0;
                    }
                }
            }
        };
        match next {
            Ok(app) => {
                let _ = switch_tx.send(());
                if let Err(e) = serving.await {
                    break Err(e);
                }
                let actions = app.registry().names().len();
                report(format!("serving the new build ({actions} action(s)); browsers reconnect and reload"));
                current = app;
            }
            // The server stopped (its stop signal, or an error).
            Err(result) => break result,
        }
    };
    stopping.abort();
    result
}
