//! The ssrun side of `ss-bench rpc`: a packed app served by the ssrun library,
//! its actions doing the same work as bench/socketio/server.js. Either native
//! actions (`app.square`, `bench.broadcast`), or the app's JavaScript ones in
//! the embedded engine (fixtures/apps/bench: `app.square`, the same JavaScript
//! as the Socket.IO handler).

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

/// Serves the packed app at `app` (an app folder holding dist/, or a dist
/// folder) on 127.0.0.1:`port` until interrupted; prints the port alone on
/// one line once listening. With `javascript`, the app's JavaScript actions
/// answer and no native action is registered; otherwise the native actions
/// answer and the JavaScript engine is not started.
pub fn run(app: &Path, port: u16, javascript: bool) -> anyhow::Result<()> {
    let loaded = ssrun::LoadedApp::load(app)?;
    // The same runtime, and the same place for the engine, as the ssrun command's.
    let runtime = ssrun::server_runtime().context("starting the runtime")?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let app = if javascript {
            let app = ssrun::App::new(loaded)
                .with_javascript_for_server_runtime()
                .context("starting the app's server code")?;
            if app.registry().get("app.square").is_none() {
                anyhow::bail!("the app's server code defines no app.square action");
            }
            app
        } else {
            native(ssrun::App::new(loaded))
        };
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .with_context(|| format!("cannot listen on port {port}"))?;
        println!("{}", listener.local_addr()?.port());
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        app.serve(listener, shutdown).await.context("serving")
    })
}

/// Registers the native actions.
fn native(app: ssrun::App) -> ssrun::App {
    app.action("app.square", |call: ssrun::Call| async move {
        let n: f64 = call.arg(0)?;
        Ok(number(n * n))
    })
    .action("bench.broadcast", |call: ssrun::Call| async move {
        let data = call.args.first().cloned().unwrap_or(Value::Null);
        call.publish.broadcast("tick", data).await?;
        Ok(Value::Null)
    })
    // `ss-bench rpc --channel`: each idle client joins the channel `bench`,
    // and the fan-out goes to it.
    .action("bench.join", |call: ssrun::Call| async move {
        call.session.subscribe(&["bench"]).await?;
        Ok(Value::Null)
    })
    .action("bench.channel", |call: ssrun::Call| async move {
        let data = call.args.first().cloned().unwrap_or(Value::Null);
        call.publish.channel(&["bench"], "tick", data).await?;
        Ok(Value::Null)
    })
}

/// A whole number as an integer (`625`, as JavaScript would write it), anything else as a float.
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 { json!(x as i64) } else { json!(x) }
}
