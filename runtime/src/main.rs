//! The `ssrun` command line: `ssrun [start] [APP_OR_DIST] [--port N]`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

/// SocketStream's runtime: serves a packed app.
#[derive(Parser)]
#[command(name = "ssrun", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    start: Start,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a packed app (the default command).
    Start(Start),
}

#[derive(Args)]
struct Start {
    /// The app's root folder (holding dist/) or a dist/ folder.
    #[arg(default_value = ".")]
    app: PathBuf,
    /// The port to listen on; 0 picks a free one and prints it.
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// The address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    host: std::net::IpAddr,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let start = match cli.command {
        Some(Command::Start(start)) => start,
        None => cli.start,
    };
    let app = ssrun::App::new(ssrun::LoadedApp::load(&start.app)?)
        .with_javascript()
        .map_err(|e| anyhow::anyhow!("the server code failed to start: {e}"))?;
    let env = app.env().to_string();
    let actions: Vec<String> = app.registry().names().into_iter().map(str::to_string).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(start.host, start.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", start.host, start.port))?;
        let address = listener.local_addr()?;
        println!("ssrun: serving {} ({env}) on http://{address}", start.app.display());
        println!("ssrun: {} action(s): {}", actions.len(), actions.join(", "));
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        app.serve(listener, shutdown).await.context("serving")
    })
}
