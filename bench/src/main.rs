//! Side-by-side benchmarks of SocketStream against its peers, in one run, on
//! the same inputs, reported as ratios. Not tests: they measure, they do not
//! check behaviour. Run `cargo run --release -p ss-bench -- pack` after
//! `npm ci` (for the pinned inputs and peers) and a release build of ssbuild.

mod css;
mod pack;

use clap::{Parser, Subcommand};

/// Benchmarks against esbuild and other peers.
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
    /// Bootstrap's SCSS: ssbuild (grass + lightningcss) against dart-sass followed by lightningcss-cli or esbuild.
    Css {
        /// Runs of each command (the median is reported).
        #[arg(long, default_value_t = 9)]
        runs: usize,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Pack { runs } => pack::run(runs),
        Command::Css { runs } => css::run(runs),
    }
}
