//! Side-by-side benchmarks of SocketStream against its peers, in one run, on
//! the same inputs, reported as ratios. Not tests: they measure, they do not
//! check behaviour. Run `cargo run --release -p ss-bench -- pack` (or `css`,
//! `watch`, `rpc`) after `npm ci` (for the pinned inputs and peers) and a release build
//! of ssbuild.

#![forbid(unsafe_code)]

mod css;
mod pack;
mod rpc;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

// The allocator of the ssrun command, so that `ss-bench serve` runs the
// runtime as ssrun does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Benchmarks against esbuild, Socket.IO and other peers.
#[derive(Parser)]
#[command(name = "ss-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Packing three.js: ssbuild against esbuild (wall time, output bytes raw and gzip).
    Pack {
        /// Runs of each command (the median is reported).
        #[arg(long, default_value_t = 15)]
        runs: usize,
    },
    /// Watch mode on three's src/ (about 750 modules): a one-file edit rebuilt by `ssbuild watch` against `esbuild
    /// --bundle --watch` (the rebuild's time, and the time from the edit to the new output).
    Watch {
        /// Edits to each watcher (the median is reported).
        #[arg(long, default_value_t = 15)]
        runs: usize,
    },
    /// Bootstrap's SCSS: ssbuild (grass + lightningcss) against dart-sass followed by lightningcss-cli or esbuild.
    Css {
        /// Runs of each command (the median is reported).
        #[arg(long, default_value_t = 9)]
        runs: usize,
    },
    /// Remote calls (ssrun with a native action, ssrun with a JavaScript action, Socket.IO on Node.js), memory per
    /// idle connection and broadcast fan-out (ssrun native against Socket.IO).
    Rpc {
        /// Connection counts of the closed-loop call runs.
        #[arg(long, value_delimiter = ',', default_value = "1,50,1000")]
        connections: Vec<usize>,
        /// Calls each connection sends at once (in one write) before waiting for their answers; every
        /// connection count runs once with each.
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        in_flight: Vec<usize>,
        /// Seconds measured at each level (connection count and calls in flight), in each round.
        #[arg(long, default_value_t = 3.0)]
        duration: f64,
        /// Rounds of call runs: every server measured at every level once per
        /// round, taking turns; each server's figures at a level come from its
        /// round with the median CPU per call (the higher middle one for an even count).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds of warm-up before each measured window.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Idle clients connected for the memory and broadcast measures (0
        /// skips both).
        #[arg(long, default_value_t = 10_000)]
        idle: usize,
        /// Broadcasts to the idle clients (the median of their percentiles is reported).
        #[arg(long, default_value_t = 5)]
        broadcasts: usize,
        /// Send the fan-out to a channel every idle client joined (ssrun's
        /// `SS.publish.channel`, a Socket.IO room) instead of broadcasting it.
        #[arg(long)]
        channel: bool,
        /// The CPU the servers are pinned to.
        #[arg(long, default_value_t = 0)]
        server_cpu: usize,
        /// The CPU the load generator is pinned to.
        #[arg(long, default_value_t = 1)]
        client_cpu: usize,
        /// The servers to measure.
        #[arg(long, value_delimiter = ',', default_value = "ssrun,ssrun-js,socketio")]
        servers: Vec<rpc::ServerKind>,
    },
    /// The kernel's floors: under a broadcast, one thread on the servers' CPU writes a small message to each of N
    /// loopback connections, with no server around it (what any server pays for a fan-out to loopback clients on
    /// this host, the receiving side of TCP and the reader's wake-ups included); under calls, an echo server with
    /// no work of its own answers the load generator's calls, one in flight per connection.
    Floor {
        /// Connections written to.
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        /// Connection counts of the echo runs (one call in flight on each).
        #[arg(long, value_delimiter = ',', default_value = "1,50,1000")]
        calls: Vec<usize>,
        /// Seconds measured in each echo run, after one second of warm-up.
        #[arg(long, default_value_t = 3.0)]
        duration: f64,
        /// Rounds of writes (the median is reported).
        #[arg(long, default_value_t = 7)]
        rounds: usize,
        /// The CPU the writing thread is pinned to.
        #[arg(long, default_value_t = 0)]
        server_cpu: usize,
        /// The CPU the load generator is pinned to.
        #[arg(long, default_value_t = 1)]
        client_cpu: usize,
    },
    /// Instructions per call in ssrun's process (native action and JavaScript action), counted by valgrind's
    /// callgrind: a figure the load of a shared machine does not move, for comparing builds.
    Count {
        /// Connections making calls.
        #[arg(long, default_value_t = 50)]
        connections: usize,
        /// Calls counted, in all (rounded down to whole batches on every connection).
        #[arg(long, default_value_t = 20_000)]
        calls: usize,
        /// Calls each connection sends at once before waiting for their answers.
        #[arg(long, default_value_t = 1)]
        in_flight: usize,
        /// The CPU the server is pinned to.
        #[arg(long, default_value_t = 0)]
        server_cpu: usize,
        /// The CPU the load generator is pinned to.
        #[arg(long, default_value_t = 1)]
        client_cpu: usize,
        /// A folder to keep the callgrind profiles in (for callgrind_annotate).
        #[arg(long)]
        keep: Option<PathBuf>,
        /// Another build's ss-bench, whose `serve` is counted instead of this one's (to compare builds; the app is
        /// packed by this build's ssbuild either way).
        #[arg(long)]
        serve: Option<PathBuf>,
    },
    /// The load generator of `floor`, in a process of its own.
    #[command(hide = true)]
    FloorReader {
        #[arg(long)]
        address: std::net::SocketAddr,
        #[arg(long)]
        clients: usize,
        #[arg(long)]
        rounds: usize,
        #[arg(long)]
        client_cpu: usize,
        #[arg(long, value_delimiter = ',')]
        calls: Vec<usize>,
        #[arg(long)]
        duration: f64,
    },
    /// Serves a packed app with the native actions `ss-bench rpc` calls (app.square, bench.broadcast), or with
    /// its JavaScript actions; prints the port.
    Serve {
        /// The app folder (holding dist/) or its dist/ folder.
        app: PathBuf,
        /// The port on 127.0.0.1; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Run the app's JavaScript actions in the embedded engine instead of registering the native ones.
        #[arg(long)]
        javascript: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Pack { runs } => pack::run(runs),
        Command::Css { runs } => css::run(runs),
        Command::Watch { runs } => watch::run(runs),
        Command::Rpc {
            connections,
            in_flight,
            duration,
            rounds,
            warmup,
            idle,
            broadcasts,
            channel,
            server_cpu,
            client_cpu,
            servers,
        } => {
            if in_flight.contains(&0) {
                anyhow::bail!("--in-flight takes counts of 1 or more");
            }
            if rounds == 0 {
                anyhow::bail!("--rounds takes 1 or more");
            }
            if broadcasts == 0 && idle > 0 {
                anyhow::bail!("--broadcasts takes 1 or more (--idle 0 skips the memory and broadcast measures)");
            }
            let levels = in_flight
                .iter()
                .flat_map(|&in_flight| {
                    connections.iter().map(move |&connections| rpc::Level { connections, in_flight })
                })
                .collect();
            rpc::run(rpc::Options {
                levels,
                warmup: Duration::from_secs_f64(warmup),
                duration: Duration::from_secs_f64(duration),
                rounds,
                idle,
                broadcasts,
                channel,
                server_cpu,
                client_cpu,
                servers,
            })
        }
        Command::Floor { clients, calls, duration, rounds, server_cpu, client_cpu } => {
            let calls = rpc::floor::Calls { connections: calls, duration: Duration::from_secs_f64(duration) };
            rpc::floor::run(clients, rounds, &calls, server_cpu, client_cpu)
        }
        Command::FloorReader { address, clients, rounds, client_cpu, calls, duration } => {
            let calls = rpc::floor::Calls { connections: calls, duration: Duration::from_secs_f64(duration) };
            rpc::floor::read(address, clients, rounds, &calls, client_cpu)
        }
        Command::Count { connections, calls, in_flight, server_cpu, client_cpu, keep, serve } => {
            let opts = rpc::count::Options { connections, calls, in_flight, server_cpu, client_cpu, keep, serve };
            rpc::count::run(opts)
        }
        Command::Serve { app, port, javascript } => rpc::serve::run(&app, port, javascript),
    }
}
