//! The server processes under test: started pinned to one CPU, measured
//! through /proc (CPU time and resident memory), killed when dropped.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};

/// A server started by [`Server::spawn`].
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `program args` under `taskset -c cpu`. The server must print the
    /// port it listens on (127.0.0.1), alone on its first line of output.
    pub fn spawn(cpu: usize, program: &Path, args: &[OsString]) -> anyhow::Result<Server> {
        let mut child = Command::new("taskset")
            .arg("-c")
            .arg(cpu.to_string())
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("running taskset (util-linux)")?;
        let mut out = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        let Ok(port) = line.trim().parse::<u16>() else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} did not print its port (printed {line:?})", program.display());
        };
        // Whatever else it prints must not fill the pipe and stall it.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Ok(Server { child, addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)) })
    }

    /// The server's process id (taskset, and valgrind under it, exec the
    /// program in their own process).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's CPU time so far, all threads.
    pub fn cpu(&self) -> anyhow::Result<Cpu> {
        cpu_time(&format!("/proc/{}/stat", self.child.id()))
    }

    /// The CPU time so far of the process's threads named `name` (user and
    /// system together, /proc/PID/task/*/schedstat); zero when it has none.
    pub fn thread_cpu(&self, name: &str) -> anyhow::Result<Duration> {
        let mut total = 0u64;
        for task in std::fs::read_dir(format!("/proc/{}/task", self.child.id()))? {
            let path = task?.path();
            let Ok(comm) = std::fs::read_to_string(path.join("comm")) else { continue };
            if comm.trim_end() != name {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(path.join("schedstat")) else { continue };
            total += stat.split_whitespace().next().context("empty schedstat")?.parse::<u64>()?;
        }
        Ok(Duration::from_nanos(total))
    }

    /// The process's resident memory in bytes (VmRSS).
    pub fn rss(&self) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
        let kb: u64 = line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse()?;
        Ok(kb * 1024)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This process's CPU time so far, all live threads, to the nanosecond
/// (/proc/self/task/*/schedstat: the load generator's measures are short).
pub fn own_cpu() -> anyhow::Result<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task")? {
        let Ok(stat) = std::fs::read_to_string(task?.path().join("schedstat")) else { continue };
        total += stat.split_whitespace().next().context("empty schedstat")?.parse::<u64>()?;
    }
    Ok(Duration::from_nanos(total))
}

/// CPU time in user space and in the kernel.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    pub user: Duration,
    pub system: Duration,
}

impl Cpu {
    pub fn total(self) -> Duration {
        self.user + self.system
    }

    /// The time spent since `earlier`.
    pub fn since(self, earlier: Cpu) -> Cpu {
        Cpu { user: self.user.saturating_sub(earlier.user), system: self.system.saturating_sub(earlier.system) }
    }
}

/// utime and stime from a /proc/PID/stat file.
fn cpu_time(path: &str) -> anyhow::Result<Cpu> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    // The command name, in parentheses, may hold spaces: count fields after it.
    let rest = &stat[stat.rfind(')').context("malformed stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line; the first after ")" is field 3.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    let ticks = |t: u64| Duration::from_secs_f64(t as f64 / clock_ticks() as f64);
    Ok(Cpu { user: ticks(utime), system: ticks(stime) })
}

/// How long CPUs have been busy so far (not idle, not waiting for I/O; time
/// stolen by the hypervisor counts as busy), two ways, both from the kernel's
/// counters: the busy times of /proc/stat, and the time since boot
/// (/proc/uptime) less the idle and I/O wait times of /proc/stat.
#[derive(Clone, Copy, Debug, Default)]
pub struct Busy {
    /// /proc/stat's busy times: sampled at each timer tick, which overcounts
    /// a CPU that often goes idle for short spells (the tick stops while it
    /// is idle and fires soon after it wakes).
    sampled: Duration,
    /// Since boot less idle: idle time is measured exactly, but this counts
    /// the wake-ups from idle as busy, and has the coarse resolution of
    /// /proc/uptime (10 ms).
    unidle: Duration,
}

impl Busy {
    /// The busy time since `earlier`: the lower of the two estimates.
    pub fn since(self, earlier: Busy) -> Duration {
        self.sampled.saturating_sub(earlier.sampled).min(self.unidle.saturating_sub(earlier.unidle))
    }
}

impl std::ops::Add for Busy {
    type Output = Busy;
    fn add(self, other: Busy) -> Busy {
        Busy { sampled: self.sampled + other.sampled, unidle: self.unidle + other.unidle }
    }
}

/// How long CPU `cpu` has been busy so far, from /proc/stat and /proc/uptime.
pub fn busy(cpu: usize) -> anyhow::Result<Busy> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let uptime = std::fs::read_to_string("/proc/uptime")?;
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .with_context(|| format!("no {name} in /proc/stat"))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).map(str::parse).collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal (guest time is within user).
    let busy: u64 = fields.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
    let idle = fields.get(3).context("no idle time")? + fields.get(4).context("no iowait time")?;
    let up: f64 = uptime.split_whitespace().next().context("empty /proc/uptime")?.parse()?;
    let ticks = |t: u64| Duration::from_secs_f64(t as f64 / clock_ticks() as f64);
    Ok(Busy { sampled: ticks(busy), unidle: Duration::from_secs_f64(up).saturating_sub(ticks(idle)) })
}

/// Clock ticks per second, the unit of /proc/PID/stat's times.
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// Pins this thread, and so every thread it starts later, to `cpu`. Call it
/// before starting any thread.
pub fn pin_self(cpu: usize) -> anyhow::Result<()> {
    use nix::sched::{CpuSet, sched_setaffinity};
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).with_context(|| format!("pinning to CPU {cpu}"))?;
    Ok(())
}

/// Raises this process's open-file limit (inherited by the servers it starts)
/// to at least `need`; `flag` is the option that sets how many are needed.
pub fn raise_nofile(need: u64, flag: &str) -> anyhow::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= need {
        return Ok(());
    }
    if hard >= need {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    } else {
        setrlimit(Resource::RLIMIT_NOFILE, need, need).with_context(|| {
            format!("{need} open files are needed and the hard limit is {hard}: raise it (ulimit -Hn) or pass a smaller {flag}")
        })?;
    }
    Ok(())
}
