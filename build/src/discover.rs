//! Stage 1: walk the app's folders and read every source, with its kind.
//!
//! Input: an app root and a [`Disk`]. Output: [`Sources`], every file that takes
//! part in a pack, read and checked to be UTF-8, in a deterministic order.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::diagnostic::{Diagnostic, PackError, display_path};
use crate::disk::{Disk, Listed, PrivateFolders};

/// What a source file is, by the folder it sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `app/client`: browser modules, the `SS.client` tree.
    Client,
    /// `app/shared`: modules for both sides, the `SS.shared` tree.
    Shared,
    /// `app/server`: server modules, the `SS.server` tree (never sent to browsers).
    Server,
    /// `lib/client`: third-party browser scripts, concatenated in order.
    LibClient,
    /// `lib/server`: server modules used by name (authentication, helpers).
    LibServer,
    /// `lib/css`: third-party stylesheets, in numeric-prefix order.
    LibStyle,
    /// `app/css`: the app's stylesheet entry (`app.scss` or `app.css`) and its partials.
    Style,
    /// `app/views`: the layout (`app.html`) and templates.
    View,
}

impl Kind {
    /// The folder of this kind, relative to the app root.
    pub fn folder(self) -> &'static str {
        match self {
            Kind::Client => "app/client",
            Kind::Shared => "app/shared",
            Kind::Server => "app/server",
            Kind::LibClient => "lib/client",
            Kind::LibServer => "lib/server",
            Kind::LibStyle => "lib/css",
            Kind::Style => "app/css",
            Kind::View => "app/views",
        }
    }

    /// Every kind of code, in the order bundles list them.
    pub const CODE: [Kind; 5] = [Kind::LibClient, Kind::Client, Kind::Shared, Kind::Server, Kind::LibServer];
    /// Every kind.
    pub const ALL: [Kind; 8] = [
        Kind::LibClient,
        Kind::Client,
        Kind::Shared,
        Kind::Server,
        Kind::LibServer,
        Kind::LibStyle,
        Kind::Style,
        Kind::View,
    ];

    /// Whether files of this kind are JavaScript or TypeScript.
    pub fn is_code(self) -> bool {
        Kind::CODE.contains(&self)
    }
}

/// One source file.
#[derive(Debug, Clone)]
pub struct Source {
    /// Path relative to the app root, with forward slashes (`app/client/a/b.js`).
    pub path: String,
    /// Its kind.
    pub kind: Kind,
    /// Its text.
    pub text: String,
    /// [`digest`] of its bytes.
    pub digest: [u8; 32],
}

/// The digest that keys a source in the cache and in the nothing-changed
/// check: BLAKE3, which hashes several times faster than the SHA-2 family
/// (it uses the processor's vector instructions). It never leaves this
/// machine (names and the manifest use SHA-256, and SRI SHA-384).
pub fn digest(bytes: &[u8]) -> [u8; 32] {
    blake3::hash(bytes).into()
}

impl Source {
    /// The path below its kind's folder (`a/b.js` for `app/client/a/b.js`).
    pub fn inner_path(&self) -> &str {
        self.path.strip_prefix(self.kind.folder()).map(|p| p.trim_start_matches('/')).unwrap_or(&self.path)
    }

    /// Whether the file is TypeScript.
    pub fn is_typescript(&self) -> bool {
        crate::js::is_typescript_path(&self.path)
    }
}

/// The sources of an app, each kind in its load order.
#[derive(Debug, Default)]
pub struct Sources {
    /// Code files, grouped by kind in [`Kind::CODE`] order, sorted inside a kind.
    pub files: Vec<Source>,
    /// Stylesheets: `lib/css` in order, then everything under `app/css` (partials included).
    pub styles: Vec<Source>,
    /// Views: everything under `app/views`.
    pub views: Vec<Source>,
    /// Files found but not used (wrong extension), for a warning.
    pub ignored: Vec<String>,
    /// Links to nothing that would not have been packed anyway (a folder's
    /// link, say), each with what it points to, for a warning.
    pub dangling: Vec<(String, PathBuf)>,
    /// Files that could not be read (or whose names are not UTF-8): the pack
    /// fails with these, after looking for every other error.
    pub problems: Vec<Diagnostic>,
    /// Paths of the files that could not be read: they are in the lists
    /// above, empty, so that requiring them is not a second error.
    pub unreadable: BTreeSet<String>,
}

impl Sources {
    /// The files of one kind, in order.
    pub fn of(&self, kind: Kind) -> impl Iterator<Item = &Source> {
        self.files.iter().filter(move |s| s.kind == kind)
    }
}

/// Extensions of module files (app folders and lib/server).
pub const MODULE_EXTENSIONS: [&str; 6] = ["js", "ts", "mjs", "cjs", "mts", "cts"];

/// Whether a path component is skipped: names starting with `_` or `.`, or ending with `~`.
pub fn is_skipped_name(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('.') || name.ends_with('~')
}

/// Walks the app and reads every source. Unreadable or non-UTF-8 files are
/// diagnostics. Inside `private_folders` (vendored libraries, never part of
/// the trees), names starting with `_` are kept: libraries name internal
/// modules so (`lodash-es/_baseClone.js`).
pub fn discover(disk: &dyn Disk, root: &Path, private_folders: &[String]) -> Result<Sources, PackError> {
    let mut found: Vec<(PathBuf, Kind)> = Vec::new();
    let mut ignored = Vec::new();
    let mut dangling = Vec::new();
    let mut misnamed = Vec::new();
    let private_real = PrivateFolders::of(disk, root);
    for kind in Kind::ALL {
        let dir = root.join(kind.folder());
        let files = disk.files_under(&dir).map_err(|e| PackError::io("reading folder", &dir, e))?;
        // A link above the listed folder (`lib` -> `app/server`) moves all of it.
        let moved = !files.is_empty() && private_real.moved(disk, root, kind.folder());
        for Listed { path: file, through_link } in files {
            let through_link = through_link || moved;
            let rel = display_path(&dir, &file);
            let from_root = display_path(root, &file);
            let private = private_folders
                .iter()
                .any(|folder| from_root.strip_prefix(folder.as_str()).is_some_and(|rest| rest.starts_with('/')));
            // SCSS partials (`_name.scss`) are read through @import and @use.
            let skipped = |name: &str| match kind {
                Kind::Style => name.starts_with('.') || name.ends_with('~'),
                _ if private => name.starts_with('.') || name.ends_with('~'),
                _ => is_skipped_name(name),
            };
            if rel.split('/').any(skipped) {
                continue;
            }
            let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
            let wanted = match kind {
                Kind::LibClient => ext == "js",
                Kind::LibStyle => ext == "css",
                Kind::Style => ["scss", "sass", "css"].contains(&ext),
                Kind::View => ext == "html",
                _ => MODULE_EXTENSIONS.contains(&ext) && !rel.ends_with(".d.ts"),
            };
            if wanted && file.strip_prefix(root).unwrap_or(&file).to_str().is_none() {
                // The name would become a key with U+FFFD in it, and two such
                // names could not be told apart.
                misnamed.push(
                    Diagnostic::file(display_path(root, &file), "this file's name is not valid UTF-8").with_help(
                        "rename it in UTF-8: a file's name is its key in the API tree and its path in require()",
                    ),
                );
            } else if wanted
                && through_link
                && !matches!(kind, Kind::Server | Kind::LibServer)
                && let Some(private) = private_real.holding(disk, &file)
            {
                // Requiring server code from browser code is refused by path;
                // a link would carry it into the browser bundle unseen.
                let hidden = !crate::disk::PRIVATE_FOLDERS
                    .iter()
                    .any(|folder| private.to_ascii_lowercase().starts_with(&format!("{folder}/")));
                misnamed.push(
                    Diagnostic::file(
                        display_path(root, &file),
                        format!(
                            "this is a link to {private}{}, and {} is sent to browsers",
                            if hidden { ", a hidden file (a part of its path starts with `.`)" } else { "" },
                            kind.folder()
                        ),
                    )
                    .with_help(match kind {
                        _ if hidden => "hidden files never leave the server: keep the app's files in folders whose \
                                        names do not start with `.`, or remove the link"
                            .to_string(),
                        Kind::Client | Kind::LibClient => {
                            "server code, config/ and hidden files never leave the server: move what both sides \
                             need to app/shared, or remove the link"
                                .to_string()
                        }
                        _ => format!(
                            "server code, config/ and hidden files never leave the server: copy what browsers may \
                             see into {}, or remove the link",
                            kind.folder()
                        ),
                    }),
                );
            } else if wanted {
                found.push((file, kind));
            } else if let Some(target) =
                through_link.then(|| disk.link_target(&file)).flatten().filter(|_| disk.real_path(&file).is_none())
            {
                dangling.push((display_path(root, &file), target));
            } else if kind != Kind::Style && !rel.ends_with(".d.ts") {
                // app/css also holds the images and fonts its url()s point to;
                // TypeScript's declaration files hold types alone, nothing to pack.
                ignored.push(display_path(root, &file));
            }
        }
    }

    let read: Vec<Result<Source, Box<(Source, Diagnostic)>>> = found
        .par_iter()
        .map(|(file, kind)| {
            let path = display_path(root, file);
            // An unreadable file stays in the list, empty and marked, so that
            // the rest of the run reports its other errors without taking the
            // file for a missing one.
            let stand_in = || Source { path: path.clone(), kind: *kind, text: String::new(), digest: [0; 32] };
            let failed = |d: Diagnostic| Box::new((stand_in(), d));
            let bytes = disk.read(file).map_err(|e| {
                failed(match disk.link_target(file) {
                    Some(target) if e.kind() == std::io::ErrorKind::NotFound => {
                        Diagnostic::file(&path, format!("this is a link to {}, which does not exist", target.display()))
                            .with_help("point the link at a file, or remove it")
                    }
                    _ if e.kind() == std::io::ErrorKind::NotFound => {
                        Diagnostic::file(&path, "this file was removed while it was being packed")
                            .with_help("pack again once the files hold still")
                    }
                    _ => Diagnostic::file(&path, format!("cannot read this file: {e}"))
                        .with_help("check its permissions"),
                })
            })?;
            let digest = digest(&bytes);
            let text = String::from_utf8(bytes).map_err(|e| {
                let valid = e.utf8_error().valid_up_to();
                let before = &e.as_bytes()[..valid];
                let line = before.iter().filter(|b| **b == b'\n').count() + 1;
                // Columns count characters, as the code frame does.
                let line_start = before.iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
                let col = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
                let shown = String::from_utf8_lossy(e.as_bytes());
                failed(
                    Diagnostic::at(&path, &shown, line, col, format!("this file is not valid UTF-8 (byte {valid})"))
                        .with_help("save the file as UTF-8"),
                )
            })?;
            Ok(Source { path, kind: *kind, text, digest })
        })
        .collect();

    let mut files = Vec::with_capacity(read.len());
    let mut problems = misnamed;
    let mut unreadable = BTreeSet::new();
    for r in read {
        match r {
            Ok(s) => files.push(s),
            Err(failed) => {
                let (stand_in, d) = *failed;
                unreadable.insert(stand_in.path.clone());
                files.push(stand_in);
                problems.push(d);
            }
        }
    }
    problems.sort_by(|a, b| a.file.cmp(&b.file));
    files.sort_by(|a, b| a.kind.cmp(&b.kind).then_with(|| load_order(a, b)));
    ignored.sort();
    let (code, rest): (Vec<Source>, Vec<Source>) = files.into_iter().partition(|s| s.kind.is_code());
    let (views, styles): (Vec<Source>, Vec<Source>) = rest.into_iter().partition(|s| s.kind == Kind::View);
    Ok(Sources { files: code, styles, views, ignored, dangling, problems, unreadable })
}

/// The load order inside one kind: `lib/client` by numeric prefix (`2.x` before
/// `10.x`), app folders with `app.*` first in each folder, then by name.
fn load_order(a: &Source, b: &Source) -> Ordering {
    let (ka, kb) = (a.inner_path().split('/'), b.inner_path().split('/'));
    for (x, y) in ka.clone().zip(kb.clone()) {
        let ord = match a.kind {
            Kind::LibClient | Kind::LibStyle => numeric_key(x).cmp(&numeric_key(y)),
            _ => (tree_key(x) != "app", x).cmp(&(tree_key(y) != "app", y)),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    ka.count().cmp(&kb.count())
}

/// `10.jquery.js` sorts as (10, "10.jquery.js"); names without a number come last.
fn numeric_key(name: &str) -> (u64, &str) {
    let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
    (digits.parse().unwrap_or(u64::MAX), name)
}

/// A file's key in an API tree: its name up to the first dot.
pub fn tree_key(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::MemoryDisk;

    fn paths(s: &Sources, kind: Kind) -> Vec<&str> {
        s.of(kind).map(|f| f.path.as_str()).collect()
    }

    #[test]
    fn skips_private_names_and_orders_files() {
        let mut disk = MemoryDisk::new();
        for p in [
            "/a/app/client/zed.js",
            "/a/app/client/app.js",
            "/a/app/client/_private.js",
            "/a/app/client/.hidden/x.js",
            "/a/app/client/backup.js~",
            "/a/app/client/notes.md",
            "/a/app/client/globals.d.ts",
            "/a/lib/client/10.b.js",
            "/a/lib/client/2.a.js",
            "/a/lib/client/plain.js",
        ] {
            disk.insert(p, "x");
        }
        let s = discover(&disk, Path::new("/a"), &[]).unwrap();
        assert_eq!(paths(&s, Kind::Client), ["app/client/app.js", "app/client/zed.js"]);
        disk.insert("/a/app/client/vendor/_internal.js", "x");
        disk.insert("/a/app/client/vendor/.hidden.js", "x");
        disk.insert("/a/app/client/vendors/_not_private.js", "x");
        let s = discover(&disk, Path::new("/a"), &["app/client/vendor".to_string()]).unwrap();
        assert_eq!(
            paths(&s, Kind::Client),
            ["app/client/app.js", "app/client/vendor/_internal.js", "app/client/zed.js"]
        );
        assert_eq!(paths(&s, Kind::LibClient), ["lib/client/2.a.js", "lib/client/10.b.js", "lib/client/plain.js"]);
        assert_eq!(s.ignored, ["app/client/notes.md"]);
    }

    #[test]
    fn non_utf8_is_a_diagnostic_with_a_position() {
        let mut disk = MemoryDisk::new();
        disk.insert("/a/app/client/app.js", b"ok\nab\xffc".to_vec());
        let s = discover(&disk, Path::new("/a"), &[]).unwrap();
        assert!(s.unreadable.contains("app/client/app.js") && s.files[0].text.is_empty());
        let d = &s.problems[0];
        assert_eq!(d.file, "app/client/app.js");
        assert_eq!(d.position, Some((2, 3)));
        assert!(d.message.contains("UTF-8"));
    }
}
