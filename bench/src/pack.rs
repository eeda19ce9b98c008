//! Packing benchmark: three.js (npm `three`, pinned in package.json) packed by
//! `ssbuild pack` and minified or bundled by esbuild, alternating runs of each.
//!
//! - three.core.js (one 1.47 MB ES module) as `app/client/three.js`, against
//!   `esbuild three.core.js --minify`;
//! - the same with nothing changed (the persistent cache), against the same esbuild run;
//! - three's src/ folder (about 750 ES modules) under `app/client/three/`, against
//!   `esbuild src/Three.js --bundle --minify`;
//! - a generated CommonJS module of 60,000 functions packed for development,
//!   against esbuild writing it out unminified.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The repository root (bench/ sits in it).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("bench/ is in the repository").to_path_buf()
}

/// The ssbuild binary built beside this one.
pub fn ssbuild() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("no parent folder")?.join("ssbuild");
    if !path.is_file() {
        bail!("{} is missing: run `cargo build --release -p ssbuild` first", path.display());
    }
    Ok(path)
}

/// esbuild's native binary from node_modules (not the Node.js wrapper, whose start-up would count against it).
pub fn esbuild() -> anyhow::Result<PathBuf> {
    let scope = repo().join("node_modules/@esbuild");
    for entry in std::fs::read_dir(&scope).with_context(|| format!("{} is missing: run `npm ci`", scope.display()))? {
        let bin = entry?.path().join("bin/esbuild");
        if bin.is_file() {
            return Ok(bin);
        }
    }
    bail!("no esbuild binary under {}", scope.display())
}

/// three.js's npm package (pinned in package.json).
pub fn three() -> anyhow::Result<PathBuf> {
    let three = repo().join("node_modules/three");
    if !three.is_dir() {
        bail!("node_modules/three is missing: run `npm ci`");
    }
    Ok(three)
}

/// Functions in the generated module of the fifth row.
const GENERATED_FUNCTIONS: usize = 60_000;

/// A CommonJS module of `n` small functions, each binding `a`, `b` and `x`,
/// and a table of them all: the shape of generated code (parsers, bindings,
/// compiled templates), where the same local names repeat in every function.
fn generated_module(n: usize) -> String {
    let mut out = String::from("'use strict';\n");
    for i in 0..n {
        out.push_str(&format!(
            "function f{i}(a, b) {{ var x = a * {i} + b; if (x > {}) {{ return x - {}; }} return helper{}(x, '{i}'); }}\n",
            i % 97,
            i % 13,
            i % 50
        ));
    }
    for i in 0..50 {
        out.push_str(&format!("function helper{i}(v, s) {{ return v + s.length + {i}; }}\n"));
    }
    let table: Vec<String> = (0..n).map(|i| format!("k{i}: f{i}")).collect();
    out.push_str(&format!("exports.table = {{{}}};\n", table.join(",")));
    out
}

pub fn time(cmd: &mut Command) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = cmd.output()?;
    let elapsed = started.elapsed();
    if !out.status.success() {
        bail!("{:?} failed:\n{}{}", cmd, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(elapsed)
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn gzip_len(bytes: &[u8]) -> anyhow::Result<usize> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes)?;
    Ok(enc.finish()?.len())
}

fn client_bundle(dist: &Path) -> anyhow::Result<Vec<u8>> {
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dist.join("manifest.json"))?)?;
    let path = manifest["assets"]["app.js"]["path"].as_str().context("no app.js in the manifest")?;
    Ok(std::fs::read(dist.join(path))?)
}

pub fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry?;
        let target = to.join(entry.path().strip_prefix(from)?);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The layout and config every benchmark app needs. Precompression is off:
/// the peers do not compress (docs/benchmarks.md measures it apart).
pub fn write_shell(app: &Path, build_config: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(app.join("app/views"))?;
    std::fs::write(
        app.join("app/views/app.html"),
        "<!doctype html><html><head><SocketStream></head><body></body></html>\n",
    )?;
    std::fs::create_dir_all(app.join("config"))?;
    std::fs::write(app.join("config/app.toml"), format!("[build]\nprecompress = false\n{build_config}"))?;
    Ok(())
}

/// An app at `app` with three's src/ folder (about 750 ES modules) under
/// `app/client/three/`, a private folder that `app.js` imports whole. Gives
/// the app's folder and the number of modules copied.
pub fn three_src_app(three: &Path, app: &Path) -> anyhow::Result<(PathBuf, usize)> {
    std::fs::create_dir_all(app.join("app/client"))?;
    std::fs::write(
        app.join("app/client/app.js"),
        "import * as THREE from './three/Three.js';\nexport function init() {}\nexport const three = () => THREE;\n",
    )?;
    write_shell(app, "private_folders = [\"app/client/three\"]\n")?;
    copy_tree(&three.join("src"), &app.join("app/client/three"))?;
    let mut modules = 0;
    for entry in walkdir::WalkDir::new(three.join("src")) {
        let entry = entry?;
        if entry.file_type().is_file() && entry.path().extension().is_some_and(|ext| ext == "js") {
            modules += 1;
        }
    }
    Ok((app.to_path_buf(), modules))
}

struct Row {
    name: String,
    ours: Duration,
    theirs: Duration,
    ours_bytes: Option<(usize, usize)>,
    theirs_bytes: Option<(usize, usize)>,
}

/// Runs the packing benchmark and prints a Markdown report.
pub fn run(runs: usize) -> anyhow::Result<()> {
    let ssbuild = ssbuild()?;
    let esbuild = esbuild()?;
    let three = three()?;
    let work = tempfile::tempdir()?;
    let mut rows = Vec::new();

    // 1. three.core.js as one module.
    let app = work.path().join("core");
    std::fs::create_dir_all(app.join("app/client"))?;
    std::fs::write(app.join("app/client/app.js"), "exports.init = function () {};\n")?;
    std::fs::copy(three.join("build/three.core.js"), app.join("app/client/three.js"))?;
    write_shell(&app, "")?;
    let es_out = work.path().join("esbuild-core.js");
    let pack_cold = || Command::new(&ssbuild).args(["pack", "--env", "production", "--no-cache"]).arg(&app).output();
    let es_core = || {
        let mut c = Command::new(&esbuild);
        c.arg(three.join("build/three.core.js"))
            .arg("--minify")
            .arg(format!("--outfile={}", es_out.display()))
            .arg("--log-level=warning");
        c
    };
    pack_cold()?; // warm the file system cache for both
    time(&mut es_core())?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        ours.push(time(Command::new(&ssbuild).args(["pack", "--env", "production", "--no-cache"]).arg(&app))?);
        theirs.push(time(&mut es_core())?);
    }
    let bundle = client_bundle(&app.join("dist"))?;
    let es_bytes = std::fs::read(&es_out)?;
    // The same app without three.js: what every bundle holds besides the
    // app's modules (the browser library and the module loader) and app.js.
    let base = work.path().join("base");
    std::fs::create_dir_all(base.join("app/client"))?;
    std::fs::write(base.join("app/client/app.js"), "exports.init = function () {};\n")?;
    write_shell(&base, "")?;
    let packed = Command::new(&ssbuild).args(["pack", "--env", "production", "--no-cache"]).arg(&base).output()?;
    if !packed.status.success() {
        bail!("packing the app without three.js failed: {}", String::from_utf8_lossy(&packed.stderr));
    }
    let base_bundle = client_bundle(&base.join("dist"))?;
    let share = Share {
        bundle: (bundle.len(), gzip_len(&bundle)?),
        base: (base_bundle.len(), gzip_len(&base_bundle)?),
        esbuild: (es_bytes.len(), gzip_len(&es_bytes)?),
    };
    rows.push(Row {
        name: "three.core.js, cold pack vs `esbuild --minify`".into(),
        ours: median(ours),
        theirs: median(theirs.clone()),
        ours_bytes: Some((bundle.len(), gzip_len(&bundle)?)),
        theirs_bytes: Some((es_bytes.len(), gzip_len(&es_bytes)?)),
    });

    // 2. The same without swc's compress pass (config `build.compress = false`).
    write_shell(&app, "compress = false\n")?;
    let (mut fast, mut theirs_fast) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        fast.push(time(Command::new(&ssbuild).args(["pack", "--env", "production", "--no-cache"]).arg(&app))?);
        theirs_fast.push(time(&mut es_core())?);
    }
    let bundle = client_bundle(&app.join("dist"))?;
    rows.push(Row {
        name: "three.core.js, cold pack with `compress = false` vs `esbuild --minify`".into(),
        ours: median(fast),
        theirs: median(theirs_fast),
        ours_bytes: Some((bundle.len(), gzip_len(&bundle)?)),
        theirs_bytes: Some((es_bytes.len(), gzip_len(&es_bytes)?)),
    });
    write_shell(&app, "")?;

    // 3. Nothing changed: the cache answers.
    time(Command::new(&ssbuild).args(["pack", "--env", "production"]).arg(&app))?;
    let mut warm = Vec::new();
    for _ in 0..runs {
        warm.push(time(Command::new(&ssbuild).args(["pack", "--env", "production"]).arg(&app))?);
    }
    rows.push(Row {
        name: "three.core.js, pack with nothing changed".into(),
        ours: median(warm),
        theirs: median(theirs),
        ours_bytes: None,
        theirs_bytes: None,
    });

    // 4. three's src/ folder of ES modules.
    let (app, modules) = three_src_app(&three, &work.path().join("src"))?;
    let es_out = work.path().join("esbuild-src.js");
    let es_src = || {
        let mut c = Command::new(&esbuild);
        c.arg(three.join("src/Three.js"))
            .args(["--bundle", "--minify", "--format=iife", "--global-name=THREE"])
            .arg(format!("--outfile={}", es_out.display()))
            .arg("--log-level=warning");
        c
    };
    time(Command::new(&ssbuild).args(["pack", "--env", "production", "--no-cache"]).arg(&app))?;
    time(&mut es_src())?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        ours.push(time(Command::new(&ssbuild).args(["pack", "--env", "production", "--no-cache"]).arg(&app))?);
        theirs.push(time(&mut es_src())?);
    }
    let bundle = client_bundle(&app.join("dist"))?;
    let es_bytes = std::fs::read(&es_out)?;
    rows.push(Row {
        name: format!("three src/ ({modules} modules), cold pack vs `esbuild --bundle --minify`"),
        ours: median(ours),
        theirs: median(theirs),
        ours_bytes: Some((bundle.len(), gzip_len(&bundle)?)),
        theirs_bytes: Some((es_bytes.len(), gzip_len(&es_bytes)?)),
    });

    // 5. A generated CommonJS module of many functions binding the same
    // names, packed for development (no minifying) against esbuild writing
    // it out unminified.
    let app = work.path().join("generated");
    std::fs::create_dir_all(app.join("app/client"))?;
    std::fs::write(app.join("app/client/app.js"), "exports.init = function () {};\n")?;
    let generated = app.join("app/client/generated.js");
    std::fs::write(&generated, generated_module(GENERATED_FUNCTIONS))?;
    write_shell(&app, "")?;
    let es_out = work.path().join("esbuild-generated.js");
    let es_plain = || {
        let mut c = Command::new(&esbuild);
        c.arg(&generated).arg(format!("--outfile={}", es_out.display())).arg("--log-level=warning");
        c
    };
    let pack_dev = || {
        let mut c = Command::new(&ssbuild);
        c.args(["pack", "--env", "development", "--no-cache"]).arg(&app);
        c
    };
    time(&mut pack_dev())?;
    time(&mut es_plain())?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..runs.min(7) {
        ours.push(time(&mut pack_dev())?);
        theirs.push(time(&mut es_plain())?);
    }
    rows.push(Row {
        name: format!(
            "a generated CommonJS module ({GENERATED_FUNCTIONS} functions, {:.1} MB), development pack vs `esbuild` \
             (not minified; median of {})",
            std::fs::metadata(&generated)?.len() as f64 / 1e6,
            runs.min(7)
        ),
        ours: median(ours),
        theirs: median(theirs),
        ours_bytes: None,
        theirs_bytes: None,
    });

    let es_version = String::from_utf8(Command::new(&esbuild).arg("--version").output()?.stdout)?;
    println!("Packing, median of {runs} alternating runs; esbuild {}; gzip at level 9.\n", es_version.trim());
    println!("| input | ssbuild | esbuild | time ratio | ssbuild bytes (gzip) | esbuild bytes (gzip) | gzip ratio |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let bytes =
            |b: Option<(usize, usize)>| b.map(|(raw, gz)| format!("{raw} ({gz})")).unwrap_or_else(|| "-".into());
        let gz_ratio = match (r.ours_bytes, r.theirs_bytes) {
            (Some((_, a)), Some((_, b))) => format!("{:.3}", a as f64 / b as f64),
            _ => "-".into(),
        };
        println!(
            "| {} | {:.1} ms | {:.1} ms | {:.2}x | {} | {} | {gz_ratio} |",
            r.name,
            r.ours.as_secs_f64() * 1000.0,
            r.theirs.as_secs_f64() * 1000.0,
            r.ours.as_secs_f64() / r.theirs.as_secs_f64(),
            bytes(r.ours_bytes),
            bytes(r.theirs_bytes),
        );
    }
    let (raw, gz) = (share.bundle.0 - share.base.0, share.bundle.1 - share.base.1);
    println!(
        "\nthree.js's share of the first row's bundle: {raw} ({gz}) bytes, against esbuild's {} ({}): gzip ratio \
         {:.3}. That is the bundle less the bundle of the same app without three.js, {} ({}) bytes (the browser \
         library, the module loader and app.js).",
        share.esbuild.0,
        share.esbuild.1,
        gz as f64 / share.esbuild.1 as f64,
        share.base.0,
        share.base.1,
    );
    Ok(())
}

/// Sizes (raw, gzip) for three.js's share of a bundle.
struct Share {
    bundle: (usize, usize),
    base: (usize, usize),
    esbuild: (usize, usize),
}
