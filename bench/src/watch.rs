//! Rebuilding in watch mode: three.js's src/ folder (about 750 ES modules)
//! under `app/client/three/`, watched by `ssbuild watch` (a development
//! build: no minification, source maps) and by `esbuild --bundle --watch` on
//! the same files, alternating one-file edits between the two.
//!
//! Two figures each: the rebuild's own time (ssbuild prints it; for esbuild,
//! from its "build started" line to its "build finished" line), and the time
//! from the edit to the new output (noticing the change included: both tools
//! poll the files).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::pack::{copy_tree, esbuild, median, ssbuild, three, three_src_app};

/// The file each run edits, relative to three's src/.
const EDITED: &str = "math/Vector3.js";

/// A child process whose output lines (stdout and stderr alike) arrive with
/// the time they were read: an error either tool prints ends the run at once.
struct Watcher {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
}

impl Watcher {
    fn start(command: &mut Command) -> anyhow::Result<Watcher> {
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().with_context(|| format!("starting {command:?}"))?;
        let (tx, lines) = mpsc::channel();
        let streams: [Box<dyn std::io::Read + Send>; 2] =
            [Box::new(child.stdout.take().context("no stdout")?), Box::new(child.stderr.take().context("no stderr")?)];
        for stream in streams {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send((Instant::now(), line)).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Watcher { child, lines })
    }

    /// The next line starting with `text`, with the time it was read.
    fn wait_for(&self, text: &str) -> anyhow::Result<(Instant, String)> {
        loop {
            let (at, line) = match self.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(read) => read,
                Err(mpsc::RecvTimeoutError::Timeout) => bail!("no line with {text:?} within 30 s"),
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the watcher exited before printing {text:?}"),
            };
            // ssbuild's diagnostics start with `error`; esbuild's hold `[ERROR]`.
            if line.starts_with("error") || line.contains("[ERROR]") {
                bail!("the watcher reported an error: {line}");
            }
            if line.starts_with(text) {
                return Ok((at, line));
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Changes the edited file's content (a comment at its end), whole at once.
fn edit(file: &Path, original: &str, run: usize) -> anyhow::Result<Instant> {
    let staged = file.with_file_name(".edit.partial");
    std::fs::write(&staged, format!("{original}\n// edit {run}\n"))?;
    let at = Instant::now();
    std::fs::rename(&staged, file)?;
    Ok(at)
}

/// The time ssbuild printed for a pack: "packed DIR for ENV in 12.3 ms: ...".
fn printed_ms(line: &str) -> anyhow::Result<f64> {
    let after = line.split(" in ").nth(1).context("no time in the pack line")?;
    let ms = after.split(" ms").next().context("no time in the pack line")?;
    ms.trim().parse().with_context(|| format!("a time in {line:?}"))
}

pub fn run(runs: usize) -> anyhow::Result<()> {
    let ssbuild = ssbuild()?;
    let esbuild = esbuild()?;
    let three = three()?;
    let work = tempfile::tempdir()?;

    let (app, modules) = three_src_app(&three, &work.path().join("app"))?;
    let theirs_src = work.path().join("esbuild-src");
    copy_tree(&three.join("src"), &theirs_src)?;
    let original = std::fs::read_to_string(three.join("src").join(EDITED))?;

    let ours = Watcher::start(Command::new(&ssbuild).args(["watch", "--env", "development"]).arg(&app))?;
    let (_, first) = ours.wait_for("packed ")?;
    let es_out = work.path().join("esbuild-out.js");
    let theirs = Watcher::start(
        Command::new(&esbuild)
            .arg(theirs_src.join("Three.js"))
            .args(["--bundle", "--format=iife", "--global-name=THREE", "--sourcemap", "--watch"])
            .arg(format!("--outfile={}", es_out.display())),
    )?;
    theirs.wait_for("[watch] build finished")?;

    let (mut our_work, mut our_total, mut their_work, mut their_total) = (vec![], vec![], vec![], vec![]);
    for run in 0..runs {
        // A pause between edits, so that each lands at another point of the polling cycles.
        std::thread::sleep(Duration::from_millis(150 + (run as u64 * 37) % 200));
        let at = edit(&app.join("app/client/three").join(EDITED), &original, run)?;
        let (done, line) = ours.wait_for("packed ")?;
        our_total.push(done - at);
        our_work.push(Duration::from_secs_f64(printed_ms(&line)? / 1000.0));

        std::thread::sleep(Duration::from_millis(150 + (run as u64 * 53) % 200));
        let at = edit(&theirs_src.join(EDITED), &original, run)?;
        let (started, _) = theirs.wait_for("[watch] build started")?;
        let (done, _) = theirs.wait_for("[watch] build finished")?;
        their_total.push(done - at);
        their_work.push(done - started);
    }

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let row = |name: &str, ours: Vec<Duration>, theirs: Vec<Duration>| {
        let (worst_ours, worst_theirs) = (*ours.iter().max().unwrap(), *theirs.iter().max().unwrap());
        let (a, b) = (median(ours), median(theirs));
        println!(
            "| {name} | {:.1} ms (max {:.1}) | {:.1} ms (max {:.1}) | {:.2}x |",
            ms(a),
            ms(worst_ours),
            ms(b),
            ms(worst_theirs),
            a.as_secs_f64() / b.as_secs_f64()
        );
    };
    let es_version = String::from_utf8(Command::new(&esbuild).arg("--version").output()?.stdout)?;
    println!(
        "Watch mode, three src/ ({modules} modules, development build), one file edited ({EDITED}), median of {runs} \
         alternating edits; esbuild {}. ssbuild's first pack: {first}\n",
        es_version.trim()
    );
    println!("| measure | ssbuild watch | esbuild --bundle --watch | ratio |");
    println!("|---|---:|---:|---:|");
    row("the rebuild", our_work, their_work);
    row("from the edit to the new output", our_total, their_total);
    Ok(())
}
