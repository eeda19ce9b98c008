//! Styles benchmark: Bootstrap's SCSS (npm `bootstrap`, pinned) compiled and
//! minified by `ssbuild pack` (grass, then lightningcss), against dart-sass
//! (npm `sass`, the pure JavaScript build) followed by lightningcss-cli, and
//! followed by esbuild, alternating runs.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::pack::{copy_tree, esbuild, gzip_len, median, repo, ssbuild, time, write_shell};

/// Runs the styles benchmark and prints a Markdown report.
pub fn run(runs: usize) -> anyhow::Result<()> {
    let ssbuild = ssbuild()?;
    let esbuild = esbuild()?;
    let modules = repo().join("node_modules");
    let bootstrap = modules.join("bootstrap/scss");
    let sass = modules.join("sass/sass.js");
    let lightningcss = modules.join("lightningcss-cli-linux-x64-gnu/lightningcss");
    for needed in [&bootstrap, &sass, &lightningcss] {
        if !needed.exists() {
            bail!("{} is missing: run `npm ci`", needed.display());
        }
    }
    let work = tempfile::tempdir()?;
    let app = work.path().join("app");
    copy_tree(&bootstrap, &app.join("app/css/bootstrap"))?;
    std::fs::write(app.join("app/css/app.scss"), "@import 'bootstrap/bootstrap';\n")?;
    std::fs::create_dir_all(app.join("app/client"))?;
    std::fs::write(app.join("app/client/app.js"), "exports.init = function () {};\n")?;
    // Precompression is measured apart: the peers do not compress.
    write_shell(&app, "")?;

    let compiled = work.path().join("sass.css");
    let lcss_out = work.path().join("sass.lightningcss.css");
    let es_out = work.path().join("sass.esbuild.css");
    let ours = || {
        let mut c = Command::new(&ssbuild);
        c.args(["pack", "--env", "production", "--no-cache"]).arg(&app);
        c
    };
    let dart_sass = || {
        let mut c = Command::new("node");
        c.arg(&sass).arg("--no-source-map").arg("--quiet").arg(app.join("app/css/app.scss")).arg(&compiled);
        c
    };
    let lightning = || {
        let mut c = Command::new(&lightningcss);
        c.arg("--minify").arg("--browserslist").arg(&compiled).arg("-o").arg(&lcss_out);
        c
    };
    let es = || {
        let mut c = Command::new(&esbuild);
        c.arg(&compiled).arg("--minify").arg(format!("--outfile={}", es_out.display())).arg("--log-level=error");
        c
    };
    // Warm up every command once.
    time(&mut ours())?;
    time(&mut dart_sass())?;
    time(&mut lightning())?;
    time(&mut es())?;
    let (mut t_ours, mut t_sass, mut t_lcss, mut t_es) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        t_ours.push(time(&mut ours())?);
        t_sass.push(time(&mut dart_sass())?);
        t_lcss.push(time(&mut lightning())?);
        t_es.push(time(&mut es())?);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(app.join("dist/manifest.json"))?)?;
    let ours_css =
        std::fs::read(app.join("dist").join(manifest["assets"]["app.css"]["path"].as_str().context("app.css")?))?;
    let lcss_css = std::fs::read(&lcss_out)?;
    let es_css = std::fs::read(&es_out)?;
    let (s, sass_t, l, e) = (median(t_ours), median(t_sass), median(t_lcss), median(t_es));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let size = |b: &[u8]| -> anyhow::Result<String> { Ok(format!("{} ({})", b.len(), gzip_len(b)?)) };
    println!(
        "Bootstrap {} SCSS, median of {runs} alternating runs; sass {}; gzip at level 9.\n",
        version(&repo().join("node_modules/bootstrap"))?,
        version(&repo().join("node_modules/sass"))?
    );
    println!("| pipeline | wall time | ratio to ssbuild | bytes (gzip) |");
    println!("|---|---:|---:|---:|");
    println!("| `ssbuild pack` (grass + lightningcss, whole app) | {:.1} ms | 1.00x | {} |", ms(s), size(&ours_css)?);
    println!(
        "| dart-sass (JS) + lightningcss-cli --minify --browserslist | {:.1} + {:.1} = {:.1} ms | {:.2}x | {} |",
        ms(sass_t),
        ms(l),
        ms(sass_t + l),
        (sass_t + l).as_secs_f64() / s.as_secs_f64(),
        size(&lcss_css)?
    );
    println!(
        "| dart-sass (JS) + esbuild --minify | {:.1} + {:.1} = {:.1} ms | {:.2}x | {} |",
        ms(sass_t),
        ms(e),
        ms(sass_t + e),
        (sass_t + e).as_secs_f64() / s.as_secs_f64(),
        size(&es_css)?
    );
    Ok(())
}

fn version(package: &Path) -> anyhow::Result<String> {
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(package.join("package.json"))?)?;
    Ok(json["version"].as_str().unwrap_or("?").to_string())
}
