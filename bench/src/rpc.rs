//! Remote calls and broadcasts: ssrun against Socket.IO 4.8 on Node.js doing
//! the same work (bench/socketio/server.js), loaded by the same Rust load
//! generator (tokio and tokio-tungstenite, one thread) speaking each server's
//! protocol over a plain WebSocket.
//!
//! ssrun runs twice for the calls, on the same packed app
//! (fixtures/apps/bench): with `app.square` as a native Rust action, and with
//! the app's own `app.square` in JavaScript in its embedded engine (the same
//! JavaScript as the Socket.IO handler). Memory and broadcasts are measured
//! for the native variant and Socket.IO (`bench.broadcast` is native).
//!
//! Each server process is pinned to one CPU and the load generator to
//! another. Measured, for each server:
//!
//! 1. closed-loop calls (`app.square(25)`) at several connection counts, with
//!    one call in flight per connection, and with a batch of calls sent in one
//!    write and answered before the next batch (a page asking for several
//!    things at once): the server's CPU time (user and system,
//!    /proc/PID/stat) per answered call (for ssrun with JavaScript, also the
//!    part of it in the engine thread), calls per second, and p50 and p99
//!    latency over a measured window after a warm-up. The servers take turns
//!    at each level, for several rounds, and the round with the median CPU
//!    per call is reported: on a shared virtual machine one window in a few
//!    can be slowed by work outside it;
//! 2. the server's resident memory (VmRSS) per idle connection, once N
//!    clients have completed their handshake, against before they connected;
//! 3. broadcast fan-out: with those N clients connected, one more client asks
//!    the server to broadcast the time it sends the request; for each client,
//!    the delay until the kernel received the event on its socket (see
//!    [`stamped`]) and until the load generator read it; p50, p99 and max over
//!    the clients, for several broadcasts. With `--channel`, every client
//!    first joins one channel (a Socket.IO room), and the fan-out is published
//!    to it instead (the memory is then measured with the clients in it).
//!
//! Alongside, the CPU the load generator used (when it nears one core, calls
//! per second measure it rather than the server), and the CPU other
//! processes took on the two CPUs (anything above a few percent makes the
//! figures noisy).

mod client;
pub mod count;
pub mod floor;
mod process;
pub mod serve;
mod stamped;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use client::{Conn, Proto, connect_many, now_us};
use process::{Cpu, Server, busy, own_cpu};

use crate::pack::{copy_tree, repo, ssbuild};

/// Handshakes in flight at once while connecting many clients.
const PARALLEL_HANDSHAKES: usize = 64;

/// The name of ssrun's JavaScript engine thread.
const ENGINE_THREAD: &str = "ssrun-js";

/// What `ss-bench rpc` measures, and where.
pub struct Options {
    /// The closed-loop call runs, in order.
    pub levels: Vec<Level>,
    /// Warm-up before each measured window.
    pub warmup: Duration,
    /// The measured window of each call run.
    pub duration: Duration,
    /// Rounds of call runs; each figure comes from the round with the
    /// median CPU per call (of that server at that level).
    pub rounds: usize,
    /// Idle connections for the memory and broadcast measures (0: neither is measured).
    pub idle: usize,
    /// Broadcasts to the idle connections.
    pub broadcasts: usize,
    /// The fan-out goes to a channel every idle client joined, not to everyone.
    pub channel: bool,
    /// The CPU the servers are pinned to.
    pub server_cpu: usize,
    /// The CPU the load generator is pinned to.
    pub client_cpu: usize,
    /// The servers to measure.
    pub servers: Vec<ServerKind>,
}

/// One closed-loop call run: how many connections, and how many calls each
/// sends at once (in one write) before waiting for their answers.
#[derive(Clone, Copy, Debug)]
pub struct Level {
    /// Connections making calls.
    pub connections: usize,
    /// Calls in flight on each connection.
    pub in_flight: usize,
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.in_flight {
            1 => write!(f, "{} conn.", self.connections),
            k => write!(f, "{} conn. x {k} in flight", self.connections),
        }
    }
}

/// A server under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum ServerKind {
    /// ssrun with native Rust actions (`ss-bench serve`).
    Ssrun,
    /// ssrun running the app's JavaScript `app.square` in its engine (`ss-bench serve --javascript`).
    #[value(name = "ssrun-js")]
    SsrunJs,
    /// Socket.IO on Node.js (bench/socketio/server.js).
    #[value(name = "socketio")]
    SocketIo,
}

impl ServerKind {
    fn proto(self) -> Proto {
        match self {
            ServerKind::Ssrun | ServerKind::SsrunJs => Proto::Ssrun,
            ServerKind::SocketIo => Proto::SocketIo,
        }
    }

    /// Whether the memory and broadcast measures run on it (they need `bench.broadcast`).
    fn broadcasts(self) -> bool {
        self != ServerKind::SsrunJs
    }
}

struct CallRun {
    level: Level,
    cpu_per_call: Cpu,
    /// The part of it in ssrun's JavaScript engine thread (zero without one).
    engine_per_call: Duration,
    calls_per_sec: f64,
    p50: Duration,
    p99: Duration,
    /// The load generator's CPU use over the window, in cores.
    client_load: f64,
    /// Other processes' CPU use on the two CPUs over the window, in cores.
    other_load: f64,
}

/// The delays of one broadcast, over the clients.
struct Spread {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Spread {
    fn of(mut delays: Vec<Duration>) -> Spread {
        delays.sort();
        Spread {
            p50: percentile(&delays, 0.50),
            p99: percentile(&delays, 0.99),
            max: delays.last().copied().unwrap_or_default(),
        }
    }
}

struct Fanout {
    /// Until the event reached each client's socket (the kernel's receive time).
    arrived: Spread,
    /// Until the load generator read it.
    read: Spread,
    /// The load generator's CPU time per event received.
    client_cpu_per_event: Duration,
}

struct Results {
    kind: ServerKind,
    /// At each level, the round with the median CPU per call.
    calls: Vec<CallRun>,
    /// At each level, the CPU per call of every round, in order.
    rounds: Vec<Vec<Cpu>>,
    rss_before: u64,
    rss_after: u64,
    fanouts: Vec<Fanout>,
    /// The server's CPU time per broadcast.
    broadcast_cpu: Cpu,
    /// Other processes' CPU use on the two CPUs during the broadcasts, in cores.
    broadcast_other_load: f64,
}

/// Runs the benchmark and prints a Markdown report.
pub fn run(mut opts: Options) -> anyhow::Result<()> {
    // ssrun first, native then JavaScript, then Socket.IO.
    opts.servers.sort();
    opts.servers.dedup();
    if opts.servers.is_empty() {
        bail!("no server to measure");
    }
    process::pin_self(opts.client_cpu)?;
    // The idle clients here; as many sockets in the server, which inherits the limit.
    process::raise_nofile(opts.idle as u64 + 1024, "--idle")?;
    let work = tempfile::tempdir()?;
    let mut packed = None;
    let mut commands = Vec::new();
    for &kind in &opts.servers {
        commands.push(match kind {
            ServerKind::Ssrun | ServerKind::SsrunJs => {
                let app = match &packed {
                    Some(app) => app,
                    None => packed.insert(pack_bench_app(work.path())?),
                };
                ssrun_command(app, kind == ServerKind::SsrunJs)?
            }
            ServerKind::SocketIo => socketio_command()?,
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let results = runtime.block_on(measure(&opts, &commands))?;
    report(&opts, &results)
}

/// The program and arguments that start one server on a free port.
type ServerCommand = (PathBuf, Vec<OsString>);

/// Packs a copy of the bench fixture app (fixtures/apps/bench) for production; gives its folder.
pub(crate) fn pack_bench_app(work: &Path) -> anyhow::Result<PathBuf> {
    let app = work.join("app");
    copy_tree(&repo().join("fixtures/apps/bench"), &app)?;
    let out = Command::new(ssbuild()?).args(["pack", "--env", "production"]).arg(&app).output()?;
    if !out.status.success() {
        bail!("ssbuild pack failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(app)
}

/// This binary's `serve` on the packed app: native actions, or the app's JavaScript ones.
pub(crate) fn ssrun_command(app: &Path, javascript: bool) -> anyhow::Result<ServerCommand> {
    let exe = std::env::current_exe()?;
    let mut args: Vec<OsString> = vec!["serve".into(), "--port".into(), "0".into()];
    if javascript {
        args.push("--javascript".into());
    }
    args.push(app.into());
    Ok((exe, args))
}

/// Node.js running bench/socketio/server.js.
fn socketio_command() -> anyhow::Result<ServerCommand> {
    if !repo().join("node_modules/socket.io").is_dir() {
        bail!("node_modules/socket.io is missing: run `npm ci`");
    }
    let script = repo().join("bench/socketio/server.js");
    Ok((PathBuf::from("node"), vec![script.into(), "0".into()]))
}

fn start(opts: &Options, command: &ServerCommand) -> anyhow::Result<Server> {
    Server::spawn(opts.server_cpu, &command.0, &command.1)
}

async fn measure(opts: &Options, commands: &[ServerCommand]) -> anyhow::Result<Vec<Results>> {
    let mut results: Vec<Results> = opts
        .servers
        .iter()
        .map(|&kind| Results {
            kind,
            calls: Vec::new(),
            rounds: Vec::new(),
            rss_before: 0,
            rss_after: 0,
            fanouts: Vec::new(),
            broadcast_cpu: Cpu::default(),
            broadcast_other_load: 0.0,
        })
        .collect();

    // 1. Calls: every server up at once, taking turns at each level, round
    //    after round, so that a change in the machine's background load hits
    //    them alike; the median round at each level is kept, which a window
    //    that a burst of other work slowed does not move.
    let servers = commands.iter().map(|c| start(opts, c)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut runs: Vec<Vec<Vec<CallRun>>> =
        results.iter().map(|_| opts.levels.iter().map(|_| Vec::new()).collect()).collect();
    for round in 1..=opts.rounds {
        for (i, &level) in opts.levels.iter().enumerate() {
            for ((server, result), runs) in servers.iter().zip(&results).zip(&mut runs) {
                eprintln!("calls: {}, {level}, round {round} of {}", name(result.kind), opts.rounds);
                runs[i].push(call_run(server, result.kind.proto(), level, opts).await?);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    drop(servers);
    for (result, runs) in results.iter_mut().zip(runs) {
        for mut level_runs in runs {
            result.rounds.push(level_runs.iter().map(|r| r.cpu_per_call).collect());
            level_runs.sort_by_key(|r| r.cpu_per_call.total());
            result.calls.push(level_runs.swap_remove(level_runs.len() / 2));
        }
    }

    // 2. and 3. Idle connections and broadcasts: one fresh server at a time
    // (none with `--idle 0`).
    for (command, result) in commands.iter().zip(&mut results) {
        if !result.kind.broadcasts() || opts.idle == 0 {
            continue;
        }
        eprintln!("idle connections and broadcasts: {}, {} clients", name(result.kind), opts.idle);
        let server = start(opts, command)?;
        idle_and_broadcast(&server, result, opts).await?;
        drop(server);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(results)
}

/// Closed-loop calls on `connections` connections.
async fn call_run(server: &Server, proto: Proto, level: Level, opts: &Options) -> anyhow::Result<CallRun> {
    struct Flags {
        measuring: AtomicBool,
        stop: AtomicBool,
        answered: AtomicU64,
    }
    let conns = connect_many(proto, server.addr, level.connections, PARALLEL_HANDSHAKES, false).await?;
    let flags = Arc::new(Flags {
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        answered: AtomicU64::new(0),
    });
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let flags = flags.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut took = Vec::with_capacity(level.in_flight);
                while !flags.stop.load(Ordering::Relaxed) {
                    took.clear();
                    conn.squares(25, level.in_flight, &mut took).await?;
                    flags.answered.fetch_add(level.in_flight as u64, Ordering::Relaxed);
                    if flags.measuring.load(Ordering::Relaxed) {
                        latencies.extend_from_slice(&took);
                    }
                }
                conn.close().await;
                anyhow::Ok(latencies)
            })
        })
        .collect();

    tokio::time::sleep(opts.warmup).await;
    let cpus = || anyhow::Ok(busy(opts.server_cpu)? + busy(opts.client_cpu)?);
    let engine0 = server.thread_cpu(ENGINE_THREAD)?;
    let (server0, own0, busy0, t0) = (server.cpu()?, own_cpu()?, cpus()?, Instant::now());
    let answered0 = flags.answered.load(Ordering::Relaxed);
    flags.measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(opts.duration).await;
    flags.measuring.store(false, Ordering::Relaxed);
    let answered1 = flags.answered.load(Ordering::Relaxed);
    let (server1, own1, busy1, t1) = (server.cpu()?, own_cpu()?, cpus()?, Instant::now());
    let engine1 = server.thread_cpu(ENGINE_THREAD)?;
    flags.stop.store(true, Ordering::Relaxed);

    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let calls = answered1 - answered0;
    if calls == 0 {
        bail!("no call was answered in {:?}", opts.duration);
    }
    latencies.sort();
    let window = (t1 - t0).as_secs_f64();
    let server = server1.since(server0);
    let per_call = |d: Duration| Duration::from_secs_f64(d.as_secs_f64() / calls as f64);
    let ours = server.total() + (own1 - own0);
    Ok(CallRun {
        level,
        cpu_per_call: Cpu { user: per_call(server.user), system: per_call(server.system) },
        engine_per_call: per_call(engine1.saturating_sub(engine0)),
        calls_per_sec: calls as f64 / window,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        client_load: (own1 - own0).as_secs_f64() / window,
        other_load: busy1.since(busy0).saturating_sub(ours).as_secs_f64() / window,
    })
}

/// Connects `opts.idle` clients, measures the server's memory, then broadcasts to them.
async fn idle_and_broadcast(server: &Server, result: &mut Results, opts: &Options) -> anyhow::Result<()> {
    let proto = result.kind.proto();
    // Warm the server up (code paths, allocator, JIT) with one short-lived client.
    {
        let mut conn = Conn::open(proto, server.addr, false).await?;
        let mut took = Vec::new();
        for _ in 0..1000 {
            conn.squares(25, 1, &mut took).await?;
        }
        conn.close().await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    result.rss_before = server.rss()?;

    let mut conns = connect_many(proto, server.addr, opts.idle, PARALLEL_HANDSHAKES, true).await?;
    if opts.channel {
        for conn in &mut conns {
            conn.join().await?;
        }
    }
    let (ticks_tx, mut ticks) = tokio::sync::mpsc::unbounded_channel();
    let dropped = Arc::new(AtomicUsize::new(0));
    let idle: Vec<_> =
        conns.into_iter().map(|conn| tokio::spawn(conn.idle(ticks_tx.clone(), dropped.clone()))).collect();
    drop(ticks_tx);
    let mut trigger = Conn::open(proto, server.addr, false).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    result.rss_after = server.rss()?;

    let cpus = || anyhow::Ok(busy(opts.server_cpu)? + busy(opts.client_cpu)?);
    // Summed over the broadcasts, each from its trigger to its last arrival.
    let (mut spent, mut own, mut busy_total, mut window) = (Cpu::default(), Duration::ZERO, Duration::ZERO, 0.0);
    for _ in 0..opts.broadcasts {
        let (server0, own0, busy0, t0) = (server.cpu()?, own_cpu()?, cpus()?, Instant::now());
        let sent = now_us();
        trigger.broadcast(sent, opts.channel).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let (mut arrived, mut read) = (Vec::with_capacity(opts.idle), Vec::with_capacity(opts.idle));
        while read.len() < opts.idle {
            match tokio::time::timeout_at(deadline, ticks.recv()).await {
                Ok(Some(tick)) if tick.sent == sent => {
                    arrived.push(Duration::from_micros(tick.arrived.saturating_sub(sent)));
                    read.push(Duration::from_micros(tick.read.saturating_sub(sent)));
                }
                Ok(Some(_)) => {} // a late event of an earlier broadcast
                Ok(None) | Err(_) => bail!(
                    "{} of {} clients received the broadcast within 30 s ({} disconnected)",
                    read.len(),
                    opts.idle,
                    dropped.load(Ordering::Relaxed)
                ),
            }
        }
        let (server1, own1, busy1, t1) = (server.cpu()?, own_cpu()?, cpus()?, Instant::now());
        let used = server1.since(server0);
        spent = Cpu { user: spent.user + used.user, system: spent.system + used.system };
        own += own1 - own0;
        busy_total += busy1.since(busy0);
        window += (t1 - t0).as_secs_f64();
        result.fanouts.push(Fanout {
            arrived: Spread::of(arrived),
            read: Spread::of(read),
            client_cpu_per_event: (own1 - own0) / opts.idle as u32,
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let runs = opts.broadcasts.max(1) as u32;
    result.broadcast_cpu = Cpu { user: spent.user / runs, system: spent.system / runs };
    result.broadcast_other_load = busy_total.saturating_sub(spent.total() + own).as_secs_f64() / window.max(1e-9);
    if dropped.load(Ordering::Relaxed) > 0 {
        bail!("{} idle clients were disconnected", dropped.load(Ordering::Relaxed));
    }
    trigger.close().await;
    for task in idle {
        task.abort();
    }
    Ok(())
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median<T: PartialOrd + Copy>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    values[values.len() / 2]
}

fn name(kind: ServerKind) -> String {
    match kind {
        ServerKind::Ssrun => "ssrun (native)".into(),
        ServerKind::SsrunJs => "ssrun (JavaScript)".into(),
        ServerKind::SocketIo => {
            let version = std::fs::read(repo().join("node_modules/socket.io/package.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["version"].as_str().map(str::to_string))
                .unwrap_or_default();
            format!("Socket.IO {version}")
        }
    }
}

/// The ratio columns of the report, each shown when both of its servers ran.
const RATIOS: [(ServerKind, ServerKind, &str); 3] = [
    (ServerKind::Ssrun, ServerKind::SocketIo, "native / Socket.IO"),
    (ServerKind::SsrunJs, ServerKind::SocketIo, "JS / Socket.IO"),
    (ServerKind::SsrunJs, ServerKind::Ssrun, "JS / native"),
];

fn us(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

fn per_connection(r: &Results, idle: usize) -> f64 {
    r.rss_after.saturating_sub(r.rss_before) as f64 / idle as f64
}

/// Server CPU per call of `a` over `b` in each call run, against an optional target ratio.
fn cpu_ratios(a: &Results, b: &Results, target: Option<f64>) -> String {
    let ratios: Vec<String> = a
        .calls
        .iter()
        .zip(&b.calls)
        .map(|(x, y)| {
            let ratio = x.cpu_per_call.total().as_secs_f64() / y.cpu_per_call.total().as_secs_f64();
            match target {
                Some(t) => format!("{:.2}x at {} ({})", ratio, x.level, met(ratio <= t)),
                None => format!("{:.2}x at {}", ratio, x.level),
            }
        })
        .collect();
    ratios.join(", ")
}

fn met(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**not met**" }
}

fn report(opts: &Options, results: &[Results]) -> anyhow::Result<()> {
    // The servers that the memory and broadcast measures ran on.
    let fanned = |r: &Results| !r.fanouts.is_empty();
    let any_fanned = results.iter().any(fanned);
    // What the fan-out rows name.
    let (fanout, fanouts) =
        if opts.channel { ("channel publish", "channel publishes") } else { ("broadcast", "broadcasts") };
    let node =
        Command::new("node").arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    println!(
        "Remote calls and broadcasts (`ss-bench rpc`): each server pinned to CPU {}, the load generator (one \
         thread) to CPU {}; for each call run {} s measured after {} s of warm-up, in each of {} rounds; {}. \
         Node.js {}.\n",
        opts.server_cpu,
        opts.client_cpu,
        opts.duration.as_secs_f64(),
        opts.warmup.as_secs_f64(),
        opts.rounds,
        if !any_fanned {
            "memory and broadcasts not measured".to_string()
        } else {
            let joined = if opts.channel { " to a channel they all joined" } else { "" };
            format!("{} idle clients; {} {fanouts}{joined}", opts.idle, opts.broadcasts)
        },
        node.unwrap_or_default(),
    );
    let index = |kind: ServerKind| results.iter().position(|r| r.kind == kind);
    let ratios: Vec<(usize, usize, &str)> =
        RATIOS.iter().filter_map(|&(a, b, heading)| Some((index(a)?, index(b)?, heading))).collect();
    let mut header = String::from("| measure |");
    let mut rule = String::from("|---|");
    for r in results {
        header += &format!(" {} |", name(r.kind));
        rule += "---:|";
    }
    for (_, _, heading) in &ratios {
        header += &format!(" {heading} |");
        rule += "---:|";
    }
    println!("{header}\n{rule}");
    // One row: a label, a value per server (`-`: not measured), and the ratios when they mean something.
    let line = |label: String, values: Vec<Option<f64>>, show: &dyn Fn(f64) -> String, ratio: bool| {
        let mut line = format!("| {label} |");
        for v in &values {
            line += &match v {
                Some(v) => format!(" {} |", show(*v)),
                None => " - |".to_string(),
            };
        }
        for &(a, b, _) in &ratios {
            line += &match (ratio, values[a], values[b]) {
                (true, Some(x), Some(y)) if y > 0.0 => format!(" {:.2}x |", x / y),
                _ => " - |".to_string(),
            };
        }
        println!("{line}");
    };
    let row = |label: String, values: Vec<Option<f64>>, show: &dyn Fn(f64) -> String| line(label, values, show, true);
    let secs = |d: Duration| d.as_secs_f64();
    let show_us = |v: f64| us(Duration::from_secs_f64(v));
    let show_ms = |v: f64| ms(Duration::from_secs_f64(v));
    let percent = |v: f64| format!("{:.0}%", v * 100.0);
    let levels = 0..opts.levels.len();
    let calls = |f: &dyn Fn(&CallRun) -> f64, i: usize| -> Vec<Option<f64>> {
        results.iter().map(|r| Some(f(&r.calls[i]))).collect()
    };
    for i in levels.clone() {
        let c = opts.levels[i];
        row(format!("server CPU per call, {c}"), calls(&|x| secs(x.cpu_per_call.total()), i), &show_us);
    }
    for i in levels.clone() {
        let c = opts.levels[i];
        row(format!("server CPU per call in user space, {c}"), calls(&|x| secs(x.cpu_per_call.user), i), &show_us);
    }
    // Only when the engine had a thread of its own (with one CPU it shares the server's).
    let engine_thread =
        results.iter().any(|r| r.kind == ServerKind::SsrunJs && r.calls.iter().any(|c| !c.engine_per_call.is_zero()));
    if engine_thread {
        let engine = |i: usize| -> Vec<Option<f64>> {
            results.iter().map(|r| (r.kind == ServerKind::SsrunJs).then(|| secs(r.calls[i].engine_per_call))).collect()
        };
        for i in levels.clone() {
            let c = opts.levels[i];
            line(format!("the same in the JavaScript engine thread, {c}"), engine(i), &show_us, false);
        }
    }
    for i in levels.clone() {
        let c = opts.levels[i];
        row(format!("calls per second, {c}"), calls(&|x| x.calls_per_sec, i), &|v| format!("{v:.0}"));
    }
    for i in levels.clone() {
        let c = opts.levels[i];
        row(format!("p50 latency, {c}"), calls(&|x| secs(x.p50), i), &show_us);
        row(format!("p99 latency, {c}"), calls(&|x| secs(x.p99), i), &show_us);
    }
    for i in levels.clone() {
        let c = opts.levels[i];
        line(format!("load generator CPU, {c}"), calls(&|x| x.client_load, i), &percent, false);
    }
    for i in levels.clone() {
        let c = opts.levels[i];
        line(format!("other processes' CPU, {c}"), calls(&|x| x.other_load, i), &percent, false);
    }
    // The memory and broadcast rows, for the servers they ran on.
    let n = opts.idle;
    if any_fanned {
        row(
            format!("server memory per idle connection ({})", opts.idle),
            results.iter().map(|r| fanned(r).then(|| per_connection(r, opts.idle))).collect(),
            &kib,
        );
        let fan = |f: fn(&Fanout) -> Duration| -> Vec<Option<f64>> {
            results.iter().map(|r| fanned(r).then(|| median(r.fanouts.iter().map(|x| secs(f(x))).collect()))).collect()
        };
        row(format!("{fanout} to {n} clients: arrival p50"), fan(|f| f.arrived.p50), &show_ms);
        row(format!("{fanout} to {n} clients: arrival p99"), fan(|f| f.arrived.p99), &show_ms);
        row(format!("{fanout} to {n} clients: arrival max"), fan(|f| f.arrived.max), &show_ms);
        row(format!("{fanout} to {n} clients: read p50"), fan(|f| f.read.p50), &show_ms);
        row(format!("{fanout} to {n} clients: read p99"), fan(|f| f.read.p99), &show_ms);
        row(
            format!("server CPU per {fanout} to {n} clients"),
            results.iter().map(|r| fanned(r).then(|| secs(r.broadcast_cpu.total()))).collect(),
            &show_ms,
        );
        row(
            "the same in user space".to_string(),
            results.iter().map(|r| fanned(r).then(|| secs(r.broadcast_cpu.user))).collect(),
            &show_ms,
        );
        line("load generator CPU per event read".to_string(), fan(|f| f.client_cpu_per_event), &show_us, false);
        line(
            format!("other processes' CPU during the {fanouts}"),
            results.iter().map(|r| fanned(r).then_some(r.broadcast_other_load)).collect(),
            &percent,
            false,
        );
    }

    println!();
    println!(
        "Server CPU is user + system time of the server process (/proc/PID/stat) over the measured window, divided \
         by the calls answered in it; on loopback the system part includes the kernel's delivery of what the \
         server sends into the client's socket. The servers take turns at each level, round after round; every \
         call row (calls per second, latencies and loads too) comes, for each server and level, from its round \
         with the median server CPU per call (the higher middle one for an even count of rounds), so a ratio may \
         set rounds of two servers side by side that ran minutes apart; every round's CPU per call is listed \
         below the table. ssrun (native) and ssrun (JavaScript) serve the same packed app \
         (fixtures/apps/bench): `app.square` as a native Rust action, or as the app's JavaScript action in the \
         embedded engine (QuickJS; on the server's thread, as the server may use one CPU), the same JavaScript as the Socket.IO handler.{}\n",
        if any_fanned {
            format!(
                " Memory and broadcasts are measured on the native variant and Socket.IO (`bench.broadcast` is a \
                 native action). The {fanout} rows are medians over {} {fanouts} of each percentile over the clients. \
                 Arrival: from just before the trigger was sent to the kernel's receive time of the event at each \
                 client (SO_TIMESTAMPNS), which on loopback is when the server wrote it. Read: to when the load \
                 generator read it, which adds its own queueing.",
                opts.broadcasts
            )
        } else {
            String::new()
        }
    );
    for r in results {
        let levels: Vec<String> = r
            .calls
            .iter()
            .zip(&r.rounds)
            .map(|(run, rounds)| {
                let each: Vec<String> =
                    rounds.iter().map(|c| format!("{:.1}", c.total().as_secs_f64() * 1e6)).collect();
                format!("{} {}", run.level, each.join("/"))
            })
            .collect();
        println!("- {}: server CPU per call in each round, in us: {}.", name(r.kind), levels.join("; "));
    }
    for r in results.iter().filter(|r| fanned(r)) {
        let p99s: Vec<String> = r.fanouts.iter().map(|f| ms(f.arrived.p99)).collect();
        println!(
            "- {}: RSS {:.1} MiB before the idle clients, {:.1} MiB with them; arrival p99 of each {fanout}: {}.",
            name(r.kind),
            r.rss_before as f64 / 1048576.0,
            r.rss_after as f64 / 1048576.0,
            p99s.join(", ")
        );
    }
    println!(
        "- Load generator CPU and other processes' CPU are in cores (100% is one core); other processes' CPU is \
         the time the two CPUs were busy (steal included; the lower of /proc/stat's tick-sampled busy time and \
         the time less /proc/stat's idle time) beyond the server and the load generator, and includes the \
         kernel's wake-ups from idle. {}",
        match results
            .iter()
            .flat_map(|r| r.calls.iter().map(|c| c.other_load).chain(fanned(r).then_some(r.broadcast_other_load)))
            .any(|o| o > 0.05)
        {
            true => "It was above 5% in some windows: the machine was not quiet, and those rows are noisy.",
            false => "It stayed under 5% in every window.",
        }
    );

    let find = |kind: ServerKind| results.iter().find(|r| r.kind == kind);
    let (native, javascript, socketio) =
        (find(ServerKind::Ssrun), find(ServerKind::SsrunJs), find(ServerKind::SocketIo));
    let mut targets = Vec::new();
    if let (Some(native), Some(theirs)) = (native, socketio) {
        targets.push(format!(
            "- server CPU per call at most a third of Socket.IO's (native action): {}.",
            cpu_ratios(native, theirs, Some(1.0 / 3.0))
        ));
    }
    if let (Some(javascript), Some(theirs)) = (javascript, socketio) {
        targets.push(format!(
            "- a JavaScript action costs at most half of Socket.IO's server CPU per call: {}.",
            cpu_ratios(javascript, theirs, Some(0.5))
        ));
    }
    if let (Some(javascript), Some(native)) = (javascript, native) {
        targets.push(format!(
            "- for reference (no target), server CPU per call of the JavaScript action over the native one: {}",
            cpu_ratios(javascript, native, None)
        ));
    }
    if let (Some(native), Some(theirs)) = (native.filter(|r| fanned(r)), socketio.filter(|r| fanned(r))) {
        let mem = per_connection(native, opts.idle) / per_connection(theirs, opts.idle);
        targets.push(format!(
            "- memory per idle connection at most a third of Socket.IO's: {:.2}x ({}).",
            mem,
            met(mem <= 1.0 / 3.0)
        ));
    }
    if let Some(native) = native.filter(|r| fanned(r) && !opts.channel) {
        let p99 = median(native.fanouts.iter().map(|f| f.arrived.p99).collect());
        targets.push(format!(
            "- p99 broadcast fan-out to {n} clients under 50 ms: {} on arrival ({}).",
            ms(p99),
            met(p99 < Duration::from_millis(50))
        ));
    }
    if !targets.is_empty() {
        println!("\nAgainst the targets:\n");
        println!("{}", targets.join("\n"));
    }
    Ok(())
}
