//! Lines for the server's log: standard output for what happened, standard
//! error for what went wrong. Where the reader of either has gone (`ssrun |
//! head`, a log collector that stopped), lines are dropped and the server goes
//! on: `println!` would panic there, and take down the thread that logged (the
//! JavaScript engine's, say).

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static OUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `args` and a newline to standard output, or drops them.
pub fn out(args: std::fmt::Arguments<'_>) {
    if OUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.write_all(b"\n"))
        && e.kind() == ErrorKind::BrokenPipe
        && !OUT_CLOSED.swap(true, Ordering::Relaxed)
    {
        err(format_args!("ssrun: standard output was closed: its log lines are dropped from now on"));
    }
}

/// `text` with its control characters written as escapes (`\n`), so that
/// what a client sent (a method name, a message type) keeps one log entry
/// on one line and cannot pass for another.
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// Writes `args` and a newline to standard error, or drops them.
pub fn err(args: std::fmt::Arguments<'_>) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_fmt(args).and_then(|()| stderr.write_all(b"\n"));
}

/// `println!` for the log: never panics (see [`out`]).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::log::out(format_args!($($arg)*)) };
}

/// `eprintln!` for the log: never panics (see [`err`]).
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::log::err(format_args!($($arg)*)) };
}
