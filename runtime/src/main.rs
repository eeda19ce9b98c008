//! The `ssrun` command line: `ssrun [start] [APP_OR_DIST] [--port N]`.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

// The server allocates and frees a few small buffers for every call (its
// arguments and method, its future, the reply's text); mimalloc does that in
// fewer steps than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// SocketStream's runtime: serves a packed app.
#[derive(Parser)]
#[command(name = "ssrun", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    start: Start,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a packed app (the default command).
    Start(Start),
    /// A JavaScript prompt in the app's server engine (SS.server, SS.shared, SS.publish).
    Console {
        /// The app's root folder (holding dist/) or a dist/ folder.
        #[arg(default_value = ".")]
        app: PathBuf,
    },
    /// Print the settings `ssrun start` would use, as TOML, each with the file that set it.
    Config {
        /// The app's root folder (holding dist/) or a dist/ folder.
        #[arg(default_value = ".")]
        app: PathBuf,
    },
}

#[derive(Args)]
struct Start {
    /// The app's root folder (holding dist/) or a dist/ folder.
    #[arg(default_value = ".")]
    app: PathBuf,
    /// The port to listen on; 0 picks a free one and prints it [default:
    /// `http.port` of config/app.toml, else 3000].
    #[arg(long)]
    port: Option<u16>,
    /// The address to listen on: an IP address of this machine, or
    /// `localhost` (127.0.0.1).
    #[arg(long, default_value = "0.0.0.0", value_parser = listen_address)]
    host: std::net::IpAddr,
}

/// `--host`: an IP address, or `localhost`.
fn listen_address(text: &str) -> Result<std::net::IpAddr, String> {
    if text.eq_ignore_ascii_case("localhost") {
        return Ok(std::net::Ipv4Addr::LOCALHOST.into());
    }
    text.parse().map_err(|_| {
        format!("`{text}` is not an IP address: give one of this machine's, such as 127.0.0.1, ::1 or 0.0.0.0 (all of them), or localhost")
    })
}

/// Prints what stopped the server as one `error:` line with its causes (and
/// a `help:` line where there is an obvious fix), without a backtrace even
/// when RUST_BACKTRACE is set: these are mistakes in the setup, not crashes.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Each cause once: some messages already end with their cause's text.
            let mut text = error.to_string();
            for cause in error.chain().skip(1).map(|c| c.to_string()) {
                if !text.ends_with(&cause) {
                    text = format!("{text}: {cause}");
                }
            }
            ssrun::errln!("error: {text}");
            if let Some(help) = help_for(&error) {
                ssrun::errln!("  help: {help}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// The server could not take its address.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address}")]
struct Listen {
    address: SocketAddr,
    source: std::io::Error,
}

/// `SS_ENV` names another environment than the one the app was packed for.
#[derive(Debug, thiserror::Error)]
#[error("{app} was packed for {packed}, but SS_ENV is {wanted}")]
struct EnvMismatch {
    app: String,
    packed: String,
    wanted: String,
}

/// Refuses to serve a build made for another environment than `SS_ENV`
/// names (a development build in production would send error details and
/// unminified code to everyone).
fn check_env(path: &std::path::Path, loaded: &ssrun::LoadedApp) -> anyhow::Result<()> {
    env_matches(path, &loaded.env, std::env::var("SS_ENV").ok())?;
    Ok(())
}

fn env_matches(path: &std::path::Path, packed: &str, ss_env: Option<String>) -> Result<(), EnvMismatch> {
    match ss_env {
        Some(wanted) if !wanted.is_empty() && wanted != packed => {
            Err(EnvMismatch { app: path.display().to_string(), packed: packed.to_string(), wanted })
        }
        _ => Ok(()),
    }
}

/// What to do about a common failure.
fn help_for(error: &anyhow::Error) -> Option<&'static str> {
    if error.downcast_ref::<ssrun::ConfigError>().is_some() {
        return Some("fix the key or its value (the README lists the keys ssrun reads)");
    }
    if error.downcast_ref::<EnvMismatch>().is_some() {
        return Some(
            "pack it for that environment (`ssbuild pack APP --env ENV`, which also reads SS_ENV), or unset SS_ENV",
        );
    }
    if let Some(ssrun::LoadError::Manifest { .. }) = error.downcast_ref::<ssrun::LoadError>() {
        return Some("ssbuild writes the manifest: pack the app again (`ssbuild pack APP`)");
    }
    let listen = error.downcast_ref::<Listen>()?;
    match listen.source.kind() {
        std::io::ErrorKind::AddrInUse => {
            Some("another program listens on this port: stop it, or pass --port N (--port 0 picks a free port)")
        }
        std::io::ErrorKind::PermissionDenied if listen.address.port() < 1024 => {
            Some("ports below 1024 need extra privileges: pass --port 3000, or put a proxy in front")
        }
        std::io::ErrorKind::AddrNotAvailable => Some("--host must be an address of this machine, such as 127.0.0.1"),
        _ => None,
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let start = match cli.command {
        Some(Command::Start(start)) => start,
        Some(Command::Console { app }) => return console(&app),
        Some(Command::Config { app }) => {
            let loaded = ssrun::LoadedApp::load(&app)?;
            check_env(&app, &loaded)?;
            let text = ssrun::Config::effective(loaded.config_dir.as_deref(), &loaded.env)?;
            // A reader that stops early (`| head`) is no error.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
            return Ok(());
        }
        None => cli.start,
    };
    let loaded = ssrun::LoadedApp::load(&start.app)?;
    check_env(&start.app, &loaded)?;
    let config = ssrun::Config::load(loaded.config_dir.as_deref(), &loaded.env)?;
    let port = start.port.unwrap_or(config.port);
    let runtime = ssrun::server_runtime().context("starting the runtime")?;
    // On one CPU the JavaScript engine shares the server's thread (no thread
    // switch per call); otherwise it has a thread of its own.
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let development = loaded.env == "development";
        // Sessions and users online outlive each build served in development.
        let store = std::sync::Arc::new(ssrun::MemoryStore::new(config.session_max_age));
        let presence: std::sync::Arc<dyn ssrun::Presence> =
            std::sync::Arc::new(ssrun::MemoryPresence::new(config.offline_after));
        let make = {
            let path = start.app.clone();
            move |loaded: ssrun::LoadedApp, config: ssrun::Config| {
                check_env(&path, &loaded)?;
                ssrun::App::new(loaded)
                    .with_config(config)
                    .with_memory_store(store.clone())
                    .with_presence(presence.clone())
                    .with_javascript_for_server_runtime()
                    .map_err(|e| anyhow::anyhow!("the server code failed to start: {e}"))
            }
        };
        let app = make(loaded, config)?;
        let env = app.env().to_string();
        let actions: Vec<String> = app.registry().names().into_iter().map(str::to_string).collect();
        let address = SocketAddr::new(start.host, port);
        let listener = tokio::net::TcpListener::bind(address).await.map_err(|source| Listen { address, source })?;
        let address = listener.local_addr()?;
        ssrun::outln!("ssrun: serving {} ({env}) on http://{address}", start.app.display());
        ssrun::outln!("ssrun: {} action(s): {}", actions.len(), actions.join(", "));
        if !development {
            return app.serve(listener, stop_signal()).await.context("serving");
        }
        ssrun::outln!("ssrun: new builds of the app are served as they appear (`ssbuild watch` writes them)");
        let remake = move |loaded: ssrun::LoadedApp| {
            if loaded.env != env {
                return Err(format!(
                    "it was packed for {}, and this server serves {env} builds: restart ssrun to serve it",
                    loaded.env
                ));
            }
            let config = ssrun::Config::load(loaded.config_dir.as_deref(), &loaded.env).map_err(|e| e.to_string())?;
            make(loaded, config).map_err(|e| format!("{e:#}"))
        };
        let report = |line: String| ssrun::outln!("ssrun: {line}");
        let listener = listener.into_std().context("taking the listening socket")?;
        ssrun::pickup::serve_picking_up(app, listener, remake, report, stop_signal()).await.context("serving")
    })
}

/// Resolves on Ctrl-C, and on SIGTERM (what service managers and container
/// runtimes send to stop a server): either way connections are told the
/// server is going away (1001) before it exits.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `ssrun console`: reads JavaScript lines and prints their values, with line
/// editing and, at a terminal, a history file in the home folder.
fn console(path: &std::path::Path) -> anyhow::Result<()> {
    let loaded = ssrun::LoadedApp::load(path)?;
    check_env(path, &loaded)?;
    let config = ssrun::Config::load(loaded.config_dir.as_deref(), &loaded.env)?;
    let app = ssrun::App::new(loaded)
        .with_config(config)
        .with_javascript()
        .map_err(|e| anyhow::anyhow!("the server code failed to start: {e}"))?;
    let Some(engine) = app.engine().cloned() else {
        anyhow::bail!("{} has no server code (app/server or lib/server): there is nothing to run", path.display());
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    // Ctrl-C while an input runs stops the wait for it. Listened for from
    // the start, so that it never stops the console itself.
    let mut interrupts = Interrupts::listen(&runtime);
    let mut editor = rustyline::DefaultEditor::new().context("opening the terminal")?;
    // Only what is typed at a terminal is kept: lines piped in (a script
    // that seeds data, say) stay out of the history.
    let history = std::env::var_os("HOME")
        .filter(|_| std::io::stdin().is_terminal())
        .map(|home| PathBuf::from(home).join(".ssrun_history"));
    if let Some(history) = &history {
        let _ = editor.load_history(history);
    }
    ssrun::outln!(
        "ssrun console ({}): {} action(s) in SS.server; SS.shared and SS.publish are here (events published here \
         reach no browser: the console is a process of its own, and there is no bus between processes yet). Ctrl-D \
         leaves.",
        app.env(),
        engine.actions.len()
    );
    // Lines of an input still open (a bracket, a string, a comment), to
    // run once it closes, or when an empty line says to run it as it is.
    let mut input = String::new();
    loop {
        let prompt = if input.is_empty() { "ss> " } else { "... " };
        match editor.readline(prompt) {
            Ok(line) => {
                if line.trim().is_empty() && input.is_empty() {
                    continue;
                }
                let _ = editor.add_history_entry(line.as_str());
                // Kept at once, so that a console that is killed keeps it too.
                if let Some(history) = &history {
                    let _ = editor.append_history(history);
                }
                if !input.is_empty() {
                    input.push('\n');
                }
                input.push_str(&line);
                if !line.trim().is_empty() && unfinished(&input) {
                    continue;
                }
                run_input(&runtime, &engine, &mut interrupts, std::mem::take(&mut input));
            }
            Err(rustyline::error::ReadlineError::Interrupted) => {
                // Drops an unfinished input, as a shell does.
                input.clear();
                continue;
            }
            Err(rustyline::error::ReadlineError::Eof) => {
                // What is left runs as it is (and says what is missing).
                if !input.is_empty() {
                    run_input(&runtime, &engine, &mut interrupts, std::mem::take(&mut input));
                }
                break;
            }
            Err(e) => return Err(e).context("reading the console"),
        }
    }
    Ok(())
}

/// Evaluates one console input and prints its value or its error, unless
/// Ctrl-C comes first.
fn run_input(
    runtime: &tokio::runtime::Runtime,
    engine: &ssrun::quickjs::Engine,
    interrupts: &mut Interrupts,
    input: String,
) {
    let outcome = runtime.block_on(async {
        interrupts.forget_earlier().await;
        tokio::select! {
            outcome = engine.evaluate(input) => Some(outcome),
            () = interrupts.next() => None,
        }
    });
    match outcome {
        Some(Ok(value)) => ssrun::outln!("{value}"),
        Some(Err(error)) => ssrun::errln!("{error}"),
        None => ssrun::errln!(
            "interrupted: the console stopped waiting for that input (what it started may go on: a loop runs until \
             server.js_time_limit stops it, and the next input waits for it)"
        ),
    }
}

/// Ctrl-C (SIGINT) while the console waits for an input.
struct Interrupts {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Interrupts {
    fn listen(runtime: &tokio::runtime::Runtime) -> Interrupts {
        #[cfg(unix)]
        {
            let _entered = runtime.enter();
            Interrupts { signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok() }
        }
        #[cfg(not(unix))]
        {
            let _ = runtime;
            Interrupts {}
        }
    }

    /// Drops an interrupt that came while no input ran.
    async fn forget_earlier(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal {
            // A yield lets the runtime take in signals that have arrived.
            tokio::task::yield_now().await;
            while let Some(Some(())) = futures_util::FutureExt::now_or_never(signal.recv()) {}
        }
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        match &mut self.signal {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Whether console input is still open: a bracket not closed, or a string,
/// template or block comment not ended. (A regular expression holding a
/// bracket can fool it; an empty line runs the input as it is.)
fn unfinished(input: &str) -> bool {
    let mut depth = 0i32;
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            '"' | '\'' | '`' => {
                let mut ended = false;
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == c {
                        ended = true;
                        break;
                    } else if d == '\n' && c != '`' {
                        // A quoted string ends with its line (an error JavaScript reports).
                        ended = true;
                        break;
                    }
                }
                if !ended {
                    return true;
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut closed = false;
                let mut star = false;
                for d in chars.by_ref() {
                    if star && d == '/' {
                        closed = true;
                        break;
                    }
                    star = d == '*';
                }
                if !closed {
                    return true;
                }
            }
            _ => {}
        }
    }
    depth > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_input_runs_once_it_is_closed() {
        for open in ["function f(x) {", "[1,", "SS.server.app.square(", "`a\n${1", "/* note", "f({ a: '}' ,"] {
            assert!(unfinished(open), "{open}");
        }
        for done in ["1 + 1", "function f(x) {\n  return x;\n}", "'('", "// (", "/* ( */ 1", "\"\\\"(\"", "x)"] {
            assert!(!unfinished(done), "{done}");
        }
    }

    #[test]
    fn the_host_is_an_address_or_localhost() {
        assert_eq!(listen_address("localhost"), Ok("127.0.0.1".parse().unwrap()));
        assert_eq!(listen_address("::1"), Ok("::1".parse().unwrap()));
        assert_eq!(listen_address("0.0.0.0"), Ok("0.0.0.0".parse().unwrap()));
        assert!(listen_address("example.com").unwrap_err().contains("such as 127.0.0.1"));
    }

    #[test]
    fn ss_env_must_name_the_packed_environment_when_set() {
        let app = std::path::Path::new("chat");
        assert!(env_matches(app, "production", None).is_ok());
        assert!(env_matches(app, "production", Some(String::new())).is_ok());
        assert!(env_matches(app, "production", Some("production".into())).is_ok());
        let refused = env_matches(app, "development", Some("production".into())).unwrap_err();
        assert_eq!(refused.to_string(), "chat was packed for development, but SS_ENV is production");
        let error = anyhow::Error::from(refused);
        assert!(help_for(&error).unwrap().contains("ssbuild pack APP --env ENV"));
    }
}
