//! Diagnostics about a user's input: what went wrong, where (file, line, column),
//! a code frame, and what to do about it.
//!
//! Every stage returns diagnostics instead of stopping at the first problem, so
//! that one run of `ssbuild pack` reports every error in the app.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found in the app being packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, relative to the app root (slashes on every platform).
    pub file: String,
    /// 1-based line and column, when the problem has a position.
    pub position: Option<(usize, usize)>,
    /// What is wrong, in one sentence.
    pub message: String,
    /// What to do about it, when there is something to suggest.
    pub help: Option<String>,
    /// The source lines around the position, ready to print.
    pub frame: Option<String>,
}

impl Diagnostic {
    /// A problem with a whole file (no position).
    pub fn file(file: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic { file: file.into(), position: None, message: message.into(), help: None, frame: None }
    }

    /// A problem at a line and column of a file whose text is `source`.
    pub fn at(file: impl Into<String>, source: &str, line: usize, column: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            position: Some((line, column)),
            message: message.into(),
            help: None,
            frame: Some(code_frame(source, line, column)),
        }
    }

    /// [`Diagnostic::at`] the position when there is one, else [`Diagnostic::file`].
    pub fn at_or_file(
        file: impl Into<String>,
        source: &str,
        position: Option<(usize, usize)>,
        message: impl Into<String>,
    ) -> Self {
        match position {
            Some((line, column)) => Diagnostic::at(file, source, line, column, message),
            None => Diagnostic::file(file, message),
        }
    }

    /// Adds a suggestion.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => writeln!(f, "error: {}\n  --> {}:{}:{}", self.message, self.file, line, col)?,
            None => writeln!(f, "error: {}\n  --> {}", self.message, self.file)?,
        }
        if let Some(frame) = &self.frame {
            f.write_str(frame)?;
        }
        if let Some(help) = &self.help {
            writeln!(f, "  help: {help}")?;
        }
        Ok(())
    }
}

/// Renders up to two lines before `line`, the line itself with a caret under
/// `column`, and one line after.
pub fn code_frame(source: &str, line: usize, column: usize) -> String {
    let lines: Vec<&str> = source.lines().collect();
    if line == 0 || line > lines.len().max(1) {
        return String::new();
    }
    let first = line.saturating_sub(2).max(1);
    let last = (line + 1).min(lines.len());
    let width = last.to_string().len();
    let mut out = String::new();
    // Long lines (minified code) show 160 characters around the column.
    const SHOWN: usize = 160;
    let long = lines[line - 1].chars().count() > SHOWN;
    let skip = if long { column.saturating_sub(SHOWN / 2) } else { 0 };
    for n in first..=last {
        let text = lines.get(n - 1).copied().unwrap_or("");
        let text: String = text.chars().skip(skip).take(SHOWN).collect();
        let marker = if n == line { '>' } else { ' ' };
        out.push_str(&format!("{marker} {n:>width$} | {text}\n"));
        if n == line {
            let pad: String = lines[n - 1]
                .chars()
                .skip(skip)
                .take(column.saturating_sub(1 + skip))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("  {:>width$} | {pad}^\n", ""));
        }
    }
    out
}

/// A path relative to `root`, with forward slashes, for messages and manifests.
pub fn display_path(root: &Path, path: &Path) -> String {
    let rel: PathBuf = path.strip_prefix(root).map(Path::to_path_buf).unwrap_or_else(|_| path.to_path_buf());
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// Everything that can stop a pack.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The app has problems; each names its file.
    #[error("{}", render_all(.0))]
    Invalid(Vec<Diagnostic>),
    /// Reading the app or writing the output failed for a reason outside the app's text.
    #[error("error: {action} {}: {source}", .path.display())]
    Io {
        /// What was being done ("reading", "writing", ...).
        action: &'static str,
        /// The file or folder involved.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The options given would harm the app or cannot name files.
    #[error("error: {message}\n  help: {help}")]
    Options {
        /// What is wrong.
        message: String,
        /// What to do instead.
        help: String,
    },
}

impl PackError {
    /// Wraps an I/O error with what was being done and where.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PackError::Io { action, path: path.into(), source }
    }

    /// The diagnostics, when the error is about the app's content.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            PackError::Invalid(d) => d,
            PackError::Io { .. } | PackError::Options { .. } => &[],
        }
    }
}

fn render_all(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&d.to_string());
        out.push('\n');
    }
    let n = diagnostics.len();
    out.push_str(&format!("{n} error{} found; nothing was written", if n == 1 { "" } else { "s" }));
    out
}

/// Whether two names are one or two letters apart (a typo): one letter
/// more, fewer or different, or two next to each other swapped.
pub(crate) fn nearly(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 1 || a.len().min(b.len()) < 3 {
        return false;
    }
    let start = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let end = a[start..].iter().rev().zip(b[start..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (ra, rb) = (a.len() - start - end, b.len() - start - end);
    match (ra, rb) {
        (0, 1) | (1, 0) | (1, 1) => true,
        (2, 2) => a[start] == b[start + 1] && a[start + 1] == b[start],
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_points_at_the_column() {
        let src = "let a = 1;\nlet b = ;\nlet c = 3;\n";
        let frame = code_frame(src, 2, 9);
        assert_eq!(frame, "  1 | let a = 1;\n> 2 | let b = ;\n    |         ^\n  3 | let c = 3;\n");
    }

    #[test]
    fn a_long_line_shows_the_part_around_the_column() {
        let src = format!("{}XY{}\n", "a".repeat(5000), "b".repeat(5000));
        let frame = code_frame(&src, 1, 5001);
        let lines: Vec<&str> = frame.lines().collect();
        assert_eq!(lines.len(), 2, "{frame}");
        assert!(lines[0].chars().count() < 200 && lines[1].chars().count() < 200, "{frame}");
        let at = lines[1].find('^').unwrap();
        assert_eq!(&lines[0][at..at + 2], "XY", "{frame}");
    }

    #[test]
    fn a_line_that_fits_is_shown_whole() {
        let src = format!("{}X\n", "a".repeat(149));
        let frame = code_frame(&src, 1, 150);
        assert!(frame.contains(&src.trim_end().to_string()), "{frame}");
    }

    #[test]
    fn display_names_file_line_and_column() {
        let d = Diagnostic::at("app/client/a.js", "x y", 1, 3, "Unexpected token").with_help("remove it");
        let text = d.to_string();
        assert!(text.contains("app/client/a.js:1:3"), "{text}");
        assert!(text.contains("help: remove it"), "{text}");
    }
}
