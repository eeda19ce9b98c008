//! The kernel's floor under a broadcast: one thread pinned to the server's
//! CPU writes a 48-byte message to each of N loopback TCP connections, with
//! no server around it (no framing, no tasks, no queues), while the same kind
//! of load generator as the `rpc` measures reads them on the other CPU. What
//! this takes is what any server on this host pays for a fan-out to N
//! loopback clients on one core before doing any work of its own: the sends,
//! and, as loopback charges them to the sender, the receiving side of TCP and
//! the wake-ups of the reader.
//!
//! Measured per round: the time the writes take, the writing thread's CPU
//! time, and when the kernel received each message (`SO_TIMESTAMPNS`, as the
//! `rpc` fan-out measures it), p50, p99 and max over the clients from just
//! before the first write.
//!
//! Then the floor under calls: an echo server with no work of its own (tokio
//! on one thread pinned to the server's CPU, as `ssrun` runs: it waits in
//! `epoll_wait`, reads what came and writes it back) answers the load
//! generator's 48-byte calls, one in flight per connection, at each
//! connection count. Its CPU time per call is what any server on this host
//! pays in the kernel for a call from a loopback client before it does any
//! work of its own (no framing, no parsing, no allocation).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::process::{pin_self, raise_nofile};
use super::stamped::Stamped;
use super::{median, percentile};

/// The message: the send time (nanoseconds since the Unix epoch) and padding.
const MESSAGE: usize = 48;

/// The echo runs of the floor under calls.
pub struct Calls {
    /// Connection counts, one run each.
    pub connections: Vec<usize>,
    /// Measured time of each run (after one second of warm-up).
    pub duration: Duration,
}

struct Round {
    writes: Duration,
    cpu: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

pub fn run(clients: usize, rounds: usize, calls: &Calls, server_cpu: usize, client_cpu: usize) -> anyhow::Result<()> {
    anyhow::ensure!(clients >= 1 && rounds >= 1, "--clients and --rounds take counts of 1 or more");
    anyhow::ensure!(!calls.connections.contains(&0), "--calls takes connection counts of 1 or more");
    let most = calls.connections.iter().copied().max().unwrap_or(0);
    raise_nofile((clients + most) as u64 + 64, "--clients and --calls")?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    // The load generator in a process of its own (each side holds N sockets).
    let mut reader = Command::new(std::env::current_exe()?)
        .args(["floor-reader", "--address", &address.to_string()])
        .args(["--clients", &clients.to_string(), "--rounds", &rounds.to_string()])
        .args(["--client-cpu", &client_cpu.to_string()])
        .args(["--calls", &calls.connections.iter().map(usize::to_string).collect::<Vec<_>>().join(",")])
        .args(["--duration", &calls.duration.as_secs_f64().to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the load generator")?;
    let mut lines = BufReader::new(reader.stdout.take().expect("piped")).lines();
    let mut next_line = move || -> anyhow::Result<String> {
        lines.next().context("the load generator stopped")?.context("reading the load generator")
    };

    // The writer: this thread, pinned to the server's CPU.
    pin_self(server_cpu)?;
    let mut sockets = Vec::with_capacity(clients);
    listener.set_nonblocking(true)?;
    while sockets.len() < clients {
        match listener.accept() {
            Ok((socket, _)) => {
                socket.set_nonblocking(false)?;
                socket.set_nodelay(true)?;
                sockets.push(socket);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // A load generator that stopped early connects no more.
                if let Some(status) = reader.try_wait()? {
                    anyhow::bail!("the load generator stopped ({status}) after {} connections", sockets.len());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e).context("accepting a connection"),
        }
    }
    anyhow::ensure!(next_line()? == "ready", "the load generator did not connect");
    eprintln!("kernel floor of a fan-out: {clients} loopback connections, {rounds} rounds");
    let mut results = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        std::thread::sleep(Duration::from_millis(300));
        let before = thread_cpu()?;
        let started = Instant::now();
        let sent = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
        let mut message = [b' '; MESSAGE];
        message[..8].copy_from_slice(&sent.to_le_bytes());
        for socket in &mut sockets {
            write_once(socket, &message)?;
        }
        let writes = started.elapsed();
        let cpu = thread_cpu()? - before;
        let line = next_line()?;
        let mut fields = line.split(' ').map(|n| n.parse::<u64>().map(Duration::from_nanos));
        let (Some(Ok(p50)), Some(Ok(p99)), Some(Ok(max))) = (fields.next(), fields.next(), fields.next()) else {
            anyhow::bail!("the load generator said {line:?}");
        };
        results.push(Round { writes, cpu, p50, p99, max });
    }
    // The echo runs, while the fan-out's connections stay idle.
    let mut echoes = Vec::with_capacity(calls.connections.len());
    for &connections in &calls.connections {
        eprintln!("kernel floor of calls: {connections} connections, one call in flight on each");
        let echo_listener = listener.try_clone()?;
        let echoed = Arc::new(AtomicU64::new(0));
        let counter = echoed.clone();
        let server = std::thread::spawn(move || echo(echo_listener, connections, server_cpu, &counter));
        // The window: this thread waits on the pipe meanwhile, so the
        // process's CPU time is the echo thread's; calls are counted on the
        // server's side, at the same moments as its CPU time.
        anyhow::ensure!(next_line()? == "start", "the load generator did not start its calls");
        let (cpu_before, bytes_before, started) = (process_cpu()?, echoed.load(Ordering::Relaxed), Instant::now());
        anyhow::ensure!(next_line()? == "stop", "the load generator did not stop its calls");
        let cpu = process_cpu()? - cpu_before;
        let answered = (echoed.load(Ordering::Relaxed) - bytes_before) / MESSAGE as u64;
        let elapsed = started.elapsed();
        anyhow::ensure!(answered > 0, "no call was answered at {connections} connections");
        server.join().map_err(|_| anyhow::anyhow!("the echo server panicked"))??;
        echoes.push((connections, cpu.div_f64(answered as f64), answered as f64 / elapsed.as_secs_f64()));
    }
    drop(sockets);
    let status = reader.wait()?;
    anyhow::ensure!(status.success(), "the load generator failed ({status})");
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let column = |f: fn(&Round) -> Duration| ms(median(results.iter().map(f).collect()));
    println!(
        "\nThe kernel's floor under a fan-out (`ss-bench floor`): one thread pinned to CPU {server_cpu} writes \
         {MESSAGE} bytes to each of {clients} loopback TCP connections; the load generator on CPU {client_cpu}. \
         Medians of {rounds} rounds.\n"
    );
    println!("| measure | median |\n|---|---:|");
    println!("| the {clients} writes, wall time | {} |", column(|r| r.writes));
    println!("| the writing thread's CPU time (user + system) | {} |", column(|r| r.cpu));
    println!("| arrival (kernel receive time) p50 | {} |", column(|r| r.p50));
    println!("| arrival (kernel receive time) p99 | {} |", column(|r| r.p99));
    println!("| arrival (kernel receive time) max | {} |", column(|r| r.max));
    if !echoes.is_empty() {
        println!(
            "\nThe kernel's floor under calls: an echo server with no work of its own (tokio on one thread pinned \
             to CPU {server_cpu}: `epoll_wait`, one read and one write per call) answers 48-byte calls from the \
             load generator on CPU {client_cpu}, one in flight per connection; {:.0} s measured after 1 s of \
             warm-up.\n",
            calls.duration.as_secs_f64()
        );
        println!("| connections | server CPU per call (user + system) | calls per second |\n|---:|---:|---:|");
        for (connections, cpu, rate) in echoes {
            println!("| {connections} | {:.1} us | {rate:.0} |", cpu.as_secs_f64() * 1e6);
        }
    }
    Ok(())
}

/// The echo server of the floor under calls: accepts `connections`
/// connections and writes back what each sends until it closes, counting
/// the bytes in `echoed`.
fn echo(listener: TcpListener, connections: usize, cpu: usize, echoed: &Arc<AtomicU64>) -> anyhow::Result<()> {
    pin_self(cpu)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut tasks = Vec::with_capacity(connections);
        for _ in 0..connections {
            let (mut stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let echoed = echoed.clone();
            tasks.push(tokio::spawn(async move {
                // Read as a server does, into a buffer larger than a call, so
                // that a short read tells tokio the socket is drained.
                let mut buffer = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buffer).await {
                    if stream.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                    echoed.fetch_add(n as u64, Ordering::Relaxed);
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
        Ok(())
    })
}

/// The load generator of [`run`]: connects `clients` times to `address`,
/// says `ready`, then for each round reads one message per connection and
/// prints the p50, p99 and max of their delays (nanoseconds). Then, for each
/// count of `calls`, makes that many new connections, calls over each in a
/// closed loop, says `start` after a second of warm-up and `stop` after the
/// measured time, and closes them.
pub fn read(
    address: SocketAddr,
    clients: usize,
    rounds: usize,
    calls: &Calls,
    client_cpu: usize,
) -> anyhow::Result<()> {
    let most = calls.connections.iter().copied().max().unwrap_or(0);
    raise_nofile((clients + most) as u64 + 64, "--clients and --calls")?;
    pin_self(client_cpu)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let (delay_tx, mut delay_rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
        for _ in 0..clients {
            let stream = tokio::net::TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            let mut stream = Stamped::new(stream, true)?;
            let delay_tx = delay_tx.clone();
            tokio::spawn(async move {
                let mut message = [0u8; MESSAGE];
                while stream.read_exact(&mut message).await.is_ok() {
                    let sent = Duration::from_nanos(u64::from_le_bytes(message[..8].try_into().unwrap()));
                    let received =
                        stream.received.unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap());
                    if delay_tx.send(received.saturating_sub(sent)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(delay_tx);
        println!("ready");
        for _ in 0..rounds {
            let mut delays = Vec::with_capacity(clients);
            while delays.len() < clients {
                match tokio::time::timeout(Duration::from_secs(30), delay_rx.recv()).await {
                    Ok(Some(delay)) => delays.push(delay),
                    _ => anyhow::bail!("{} of {clients} messages arrived within 30 s", delays.len()),
                }
            }
            delays.sort();
            let max = delays.last().copied().unwrap_or_default();
            println!(
                "{} {} {}",
                percentile(&delays, 0.5).as_nanos(),
                percentile(&delays, 0.99).as_nanos(),
                max.as_nanos()
            );
        }
        for &connections in &calls.connections {
            call_in_loops(address, connections, calls.duration).await?;
        }
        Ok(())
    })
}

/// Calls the echo server over `connections` new connections, one call in
/// flight on each, and reports as [`read`] says.
async fn call_in_loops(address: SocketAddr, connections: usize, duration: Duration) -> anyhow::Result<()> {
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        tasks.push(tokio::spawn(async move {
            let call = [b'x'; MESSAGE];
            let mut answer = [0u8; MESSAGE];
            while stream.write_all(&call).await.is_ok() && stream.read_exact(&mut answer).await.is_ok() {}
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!("start");
    tokio::time::sleep(duration).await;
    println!("stop");
    // Closing the connections ends the echo server.
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

/// One `write` of the whole message, as a server's flush of a small frame is.
fn write_once(socket: &mut TcpStream, message: &[u8]) -> anyhow::Result<()> {
    let written = socket.write(message)?;
    if written != message.len() {
        anyhow::bail!("a write took {written} of {} bytes", message.len());
    }
    Ok(())
}

/// This thread's CPU time so far, user and system together (the kernel
/// splits the exact total between the two by sampling, so only the total is
/// reported).
fn thread_cpu() -> anyhow::Result<Duration> {
    cpu_time(nix::sys::resource::UsageWho::RUSAGE_THREAD)
}

/// This process's CPU time so far, user and system together.
fn process_cpu() -> anyhow::Result<Duration> {
    cpu_time(nix::sys::resource::UsageWho::RUSAGE_SELF)
}

fn cpu_time(who: nix::sys::resource::UsageWho) -> anyhow::Result<Duration> {
    let usage = nix::sys::resource::getrusage(who)?;
    let time = |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    Ok(time(usage.user_time()) + time(usage.system_time()))
}
