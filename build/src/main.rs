//! The `ssbuild` command line: `ssbuild pack [APP] [--out DIR] [--env ENV]`, `ssbuild new NAME`.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// SocketStream's offline compiler: packs an app into content-hashed, minified
/// bundles and a manifest, ready for a CDN.
#[derive(Parser)]
#[command(name = "ssbuild", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What to pack, and how: shared by `pack` and `watch`.
#[derive(Args)]
struct Target {
    /// The app's root folder.
    #[arg(default_value = ".")]
    app: PathBuf,
    /// The output folder [default: APP/dist].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The environment: development, staging, production, or any name [default: $SS_ENV, else development].
    #[arg(long)]
    env: Option<String>,
    /// Compile every file again instead of reusing APP/.ssbuild-cache.
    #[arg(long)]
    no_cache: bool,
    /// The URL browsers load the assets folder from, such as https://cdn.example.com/app/ [default: /assets/].
    #[arg(long)]
    public_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Pack an app into its output folder (dist/ by default).
    Pack {
        #[command(flatten)]
        target: Target,
        /// Print how long each stage took.
        #[arg(long)]
        timings: bool,
    },
    /// Pack the app, then again whenever one of its files changes.
    Watch {
        #[command(flatten)]
        target: Target,
        /// Print how long each stage of each pack took.
        #[arg(long)]
        timings: bool,
    },
    /// Write a new app (a small chat room) into the folder NAME.
    New {
        /// The new app's folder; its last part is the app's name.
        name: PathBuf,
    },
}

/// A path as a POSIX shell reads it back: as it is when it holds only
/// characters no shell treats specially, else in single quotes.
fn shell_quoted(path: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c);
    if !path.is_empty() && path.chars().all(plain) {
        return path.to_string();
    }
    format!("'{}'", path.replace('\'', r"'\''"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::New { name } => match ssbuild::new::create(&name) {
            Ok(files) => {
                let shown = shell_quoted(&name.display().to_string());
                let _ = writeln!(
                    std::io::stdout(),
                    "created {shown}: {} files\n\n  ssbuild pack {shown} && ssrun {shown}\n\nthen open http://localhost:3000",
                    files.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "error: {e}\n  help: {}", e.help());
                ExitCode::FAILURE
            }
        },
        Command::Pack { target, timings } => {
            let options = match options(target, "pack") {
                Ok(options) => options,
                Err(code) => return code,
            };
            match ssbuild::pack(&options) {
                Ok(report) => {
                    print_report(&report, timings, false, true);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Watch { target, timings } => {
            let options = match options(target, "watch") {
                Ok(options) => options,
                Err(code) => return code,
            };
            let _ = writeln!(
                std::io::stdout(),
                "watching {} (Ctrl-C to stop); ssrun serving a development build picks each new build up",
                options.app.display()
            );
            // Warnings are printed when they differ from the last pack's, not after every change.
            let mut last_warnings = Vec::new();
            ssbuild::watch::watch(&options, |result| {
                match result {
                    Ok(report) => {
                        let warn = report.warnings != last_warnings;
                        print_report(&report, timings, true, warn);
                        last_warnings = report.warnings;
                    }
                    Err(e) => {
                        let _ = writeln!(std::io::stderr(), "{e}");
                        let kept = if ssbuild::packed_here(&options.out_dir()) {
                            "the last good build stays in place"
                        } else {
                            "nothing is written until the app packs"
                        };
                        let _ = writeln!(std::io::stderr(), "{kept}; waiting for a change");
                    }
                }
                // Only a closed output (the terminal gone) ends the watch.
                std::io::stdout().flush().is_ok()
            });
            ExitCode::SUCCESS
        }
    }
}

/// Pack options from the command line; a usage error's exit code otherwise.
fn options(target: Target, command: &str) -> Result<ssbuild::PackOptions, ExitCode> {
    let Target { app, out, env, no_cache, public_url } = target;
    let env =
        env.or_else(|| std::env::var("SS_ENV").ok().filter(|e| !e.is_empty())).unwrap_or_else(|| "development".into());
    if !app.is_dir() {
        let _ = writeln!(
            std::io::stderr(),
            "error: {} is not a folder\n  help: run ssbuild {command} in an app's root folder, or pass its path",
            app.display()
        );
        return Err(ExitCode::from(2));
    }
    Ok(ssbuild::PackOptions { app, out, env, cache: !no_cache, public_url })
}

/// Prints what a pack did (briefly when `short`: one line, for watch), and
/// its warnings when `warnings`.
fn print_report(report: &ssbuild::PackReport, timings: bool, short: bool, warnings: bool) {
    for w in report.warnings.iter().filter(|_| warnings) {
        let _ = writeln!(std::io::stderr(), "warning: {w}");
    }
    if timings {
        for (stage, took) in &report.stages {
            let _ = writeln!(std::io::stderr(), "  {stage:<12} {:>8.1} ms", took.as_secs_f64() * 1000.0);
        }
    }
    let what = if report.unchanged {
        "nothing changed".to_string()
    } else {
        format!("{} compiled, {} from cache", report.compiled, report.cached)
    };
    let sizes: Vec<String> = report
        .manifest
        .assets
        .values()
        .filter(|f| !f.path.ends_with(".map"))
        .map(|f| format!("{} ({} B)", f.path, f.size))
        .collect();
    let head = format!(
        "packed {} for {} in {:.1} ms: {what}",
        report.out.display(),
        report.manifest.env,
        report.elapsed.as_secs_f64() * 1000.0
    );
    // Output that cannot be written (a closed pipe, a full disk) does not
    // undo a pack that succeeded.
    let _ = if short {
        writeln!(std::io::stdout(), "{head}")
    } else {
        writeln!(std::io::stdout(), "{head}\n  {}", sizes.join("\n  "))
    };
}

#[cfg(test)]
mod tests {
    use super::shell_quoted;

    #[test]
    fn names_shown_as_commands_read_back_in_a_shell() {
        assert_eq!(shell_quoted("../my-app"), "../my-app");
        assert_eq!(shell_quoted("weird name <&>"), "'weird name <&>'");
        assert_eq!(shell_quoted("it's"), r"'it'\''s'");
    }
}
