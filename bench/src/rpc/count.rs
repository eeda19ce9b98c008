//! `ss-bench count`: the instructions ssrun's process runs per call, counted
//! by valgrind's callgrind, for the native action and the JavaScript one.
//!
//! Time on a shared virtual machine moves from one run to the next by more
//! than most changes to the server do; an instruction count does not. The
//! same binary, given the same calls, counts nearly the same (what varies is
//! how many calls one read brings in, which the timing of the load generator
//! decides). It says nothing of cache misses or system calls (the kernel's
//! work is not counted): a change that lowers the count should still be
//! measured with `ss-bench rpc`. Socket.IO is not counted: Node's JIT makes
//! an instruction count of it measure something else.
//!
//! Each server runs under `valgrind --tool=callgrind`, pinned to the servers'
//! CPU. The load generator opens its connections and makes a warm-up round
//! of calls; the counts are then zeroed (`callgrind_control -z`), every
//! connection makes its share of the calls (one batch in flight at a time),
//! and the counts are dumped (`callgrind_control -d`). The dump, a callgrind
//! profile, is kept for `callgrind_annotate` when `--keep` names a folder.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use super::client::{Conn, Proto, connect_many};
use super::process::{self, Server};

/// What `ss-bench count` is asked to do.
pub struct Options {
    pub connections: usize,
    pub calls: usize,
    pub in_flight: usize,
    pub server_cpu: usize,
    pub client_cpu: usize,
    pub keep: Option<PathBuf>,
    /// The ss-bench binary whose `serve` is counted (this one by default);
    /// the app is packed by this build's ssbuild either way.
    pub serve: Option<PathBuf>,
}

pub fn run(opts: Options) -> anyhow::Result<()> {
    if opts.connections == 0 || opts.in_flight == 0 || opts.calls < opts.connections * opts.in_flight {
        bail!("--calls must give every connection at least one batch of --in-flight calls");
    }
    for tool in ["valgrind", "callgrind_control"] {
        let found = Command::new(tool).arg("--version").output().is_ok_and(|out| out.status.success());
        if !found {
            bail!("{tool} is missing: install valgrind (`apt-get install -y valgrind` on Debian)");
        }
    }
    process::pin_self(opts.client_cpu)?;
    let work = tempfile::tempdir()?;
    let app = super::pack_bench_app(work.path())?;
    let keep = opts.keep.as_deref().unwrap_or(work.path());
    std::fs::create_dir_all(keep).with_context(|| format!("creating {}", keep.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // Per connection, whole batches.
    let batches = opts.calls / (opts.connections * opts.in_flight);
    let calls = batches * opts.connections * opts.in_flight;
    let mut rows = Vec::new();
    for (name, javascript) in [("ssrun (native)", false), ("ssrun (JavaScript)", true)] {
        let profile = keep.join(if javascript { "callgrind.ssrun-js" } else { "callgrind.ssrun" });
        let started = Instant::now();
        let server = start(&profile, &app, javascript, &opts)?;
        let instructions = runtime.block_on(count(&server, &profile, &opts, batches))?;
        drop(server);
        // Killed, the server wrote no final profile: only its empty file is there.
        let _ = std::fs::remove_file(&profile);
        eprintln!("{name}: {instructions} instructions for {calls} calls, in {:.0?}", started.elapsed());
        rows.push((name, instructions as f64 / calls as f64));
    }
    let binary = match &opts.serve {
        Some(exe) => format!("`{} serve`", exe.display()),
        None => "this build's `ss-bench serve`".into(),
    };
    println!(
        "Instructions the server process ran per call (callgrind), {binary}, {} connections, {} in flight, {calls} calls\n",
        opts.connections, opts.in_flight
    );
    println!("| server | instructions per call |\n|---|---:|");
    for (name, per_call) in &rows {
        println!("| {name} | {per_call:.0} |");
    }
    println!("\nssrun with the JavaScript action over ssrun with the native one: {:.2}x.", rows[1].1 / rows[0].1);
    if let Some(dir) = &opts.keep {
        println!("Profiles: {}/callgrind.ssrun*.1 (callgrind_annotate reads them).", dir.display());
    }
    Ok(())
}

/// `ss-bench serve` (`--serve`'s, or this one's) on the packed app, under
/// callgrind, writing to `profile`.
fn start(profile: &Path, app: &Path, javascript: bool, opts: &Options) -> anyhow::Result<Server> {
    // What `ss-bench rpc` runs, with valgrind in front.
    let (exe, serve) = super::ssrun_command(app, javascript)?;
    let exe = opts.serve.clone().unwrap_or(exe);
    let mut args: Vec<OsString> =
        vec!["-q".into(), "--tool=callgrind".into(), format!("--callgrind-out-file={}", profile.display()).into()];
    args.push(exe.into());
    args.extend(serve);
    Server::spawn(opts.server_cpu, Path::new("valgrind"), &args)
}

/// Connects, warms up, and counts the instructions of `batches` batches of
/// calls on every connection.
async fn count(server: &Server, profile: &Path, opts: &Options, batches: usize) -> anyhow::Result<u64> {
    let mut conns = connect_many(Proto::Ssrun, server.addr, opts.connections, 50, false).await?;
    calls(&mut conns, 1, opts.in_flight).await?;
    control(server, "-z")?;
    calls(&mut conns, batches, opts.in_flight).await?;
    control(server, "-d")?;
    drop(conns);
    let dump = PathBuf::from(format!("{}.1", profile.display()));
    let text = std::fs::read_to_string(&dump).with_context(|| format!("reading {}", dump.display()))?;
    let summary = text.lines().find_map(|line| line.strip_prefix("summary:")).context("no summary in the profile")?;
    // One figure per event counted; instructions come first.
    summary.split_whitespace().next().unwrap_or_default().parse().context("the profile's summary")
}

/// Every connection, at once, makes `batches` batches of `in_flight` calls of `app.square(25)`.
async fn calls(conns: &mut [Conn], batches: usize, in_flight: usize) -> anyhow::Result<()> {
    let work = conns.iter_mut().map(|conn| async move {
        // Latencies are not reported: under valgrind they say nothing.
        let mut took = Vec::with_capacity(batches * in_flight);
        for _ in 0..batches {
            conn.squares(25, in_flight, &mut took).await?;
        }
        anyhow::Ok(())
    });
    futures_util::future::try_join_all(work).await?;
    Ok(())
}

/// Runs `callgrind_control FLAG PID`.
fn control(server: &Server, flag: &str) -> anyhow::Result<()> {
    let out = Command::new("callgrind_control").arg(flag).arg(server.pid().to_string()).output()?;
    if !out.status.success() {
        bail!("callgrind_control {flag} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
