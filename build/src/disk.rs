//! The one way the compiler reads an app: a small trait over the disk, so that
//! tests can run the pipeline on an in-memory tree.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Read access to an app's source tree.
pub trait Disk: Sync + std::fmt::Debug {
    /// Every file below `dir` (recursively), in any order. A missing `dir` is an empty list.
    /// Entries are full paths (`dir` joined with the relative path).
    fn files_under(&self, dir: &Path) -> io::Result<Vec<Listed>>;
    /// Whether `path` is a file.
    fn is_file(&self, path: &Path) -> bool;
    /// The bytes of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Where `path` really is, every link followed; `None` when it does not resolve.
    fn real_path(&self, path: &Path) -> Option<PathBuf>;
    /// What the link at `path` points to, as written; `None` when `path` is not a link.
    fn link_target(&self, path: &Path) -> Option<PathBuf>;
}

/// A file found by [`Disk::files_under`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its path as listed (links not followed in the name).
    pub path: PathBuf,
    /// Whether it was reached through a link: the file itself, or a folder
    /// on the way down from the listed folder. Only such files can really be
    /// somewhere else, so only they are worth a [`Disk::real_path`].
    pub through_link: bool,
}

/// The folders whose files browsers never see: server code and configuration.
pub const PRIVATE_FOLDERS: [&str; 3] = ["app/server", "lib/server", "config"];

/// Where an app's private folders really are (those that exist), to catch a
/// link elsewhere in the app that leads into one of them, or to a hidden
/// file (`.env`).
#[derive(Debug)]
pub struct PrivateFolders {
    root: Option<PathBuf>,
    folders: Vec<(PathBuf, &'static str)>,
}

impl PrivateFolders {
    /// Resolves the app root and [`PRIVATE_FOLDERS`] under it.
    pub fn of(disk: &dyn Disk, root: &Path) -> PrivateFolders {
        PrivateFolders {
            root: disk.real_path(root),
            folders: PRIVATE_FOLDERS
                .iter()
                .filter_map(|folder| Some((disk.real_path(&root.join(folder))?, *folder)))
                .collect(),
        }
    }

    /// Whether the folder `folder` of the app (`app/client`) is really
    /// somewhere else: itself a link, or below one.
    pub fn moved(&self, disk: &dyn Disk, root: &Path, folder: &str) -> bool {
        match (&self.root, disk.real_path(&root.join(folder))) {
            (Some(real_root), Some(real)) => real != real_root.join(folder),
            _ => false,
        }
    }

    /// The app path (`app/server/db.js`, `.env`) of the file browsers must
    /// not see that `path` really is, when it is one.
    pub fn holding(&self, disk: &dyn Disk, path: &Path) -> Option<String> {
        let real = disk.real_path(path)?;
        let slashed = |p: &Path| p.to_string_lossy().replace('\\', "/");
        let private = self.folders.iter().find_map(|(folder_real, folder)| {
            let inner = slashed(real.strip_prefix(folder_real).ok()?);
            Some(if inner.is_empty() { folder.to_string() } else { format!("{folder}/{inner}") })
        });
        private.or_else(|| {
            let inner = slashed(real.strip_prefix(self.root.as_ref()?).ok()?);
            is_private(&inner).then_some(inner)
        })
    }
}

/// Whether the app path `rel` (slashes, no `..`) names a file browsers must
/// never get: one under a [`PRIVATE_FOLDERS`] folder (compared without case,
/// as some file systems do), or a hidden one (a part starting with `.`, but
/// for the dotted folders package managers keep packages in: pnpm's
/// `node_modules/.pnpm`, Yarn's `.yarn`).
pub fn is_private(rel: &str) -> bool {
    let lower = rel.to_ascii_lowercase();
    let in_folder = PRIVATE_FOLDERS
        .iter()
        .any(|folder| lower.strip_prefix(folder).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')));
    in_folder
        || lower
            .split('/')
            .take_while(|part| *part != "node_modules")
            .any(|part| part.starts_with('.') && part != ".yarn")
}

/// Folds `.` and `..` out of a slash path inside the app; `None` when it climbs above the root.
pub fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealDisk;

impl Disk for RealDisk {
    fn files_under(&self, dir: &Path) -> io::Result<Vec<Listed>> {
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        // The depths of the linked folders above the current entry: the walk
        // goes depth first, so a folder's entries follow it, deeper.
        let mut linked_folders: Vec<usize> = Vec::new();
        for entry in walkdir::WalkDir::new(dir).follow_links(true) {
            if let Err(e) = &entry
                && let (Some(ancestor), Some(link)) = (e.loop_ancestor(), e.path())
            {
                return Err(io::Error::other(format!(
                    "{} is a link to {}, a folder that holds it, so the folder never ends; remove the link",
                    link.display(),
                    ancestor.display()
                )));
            }
            match entry {
                Ok(entry) => {
                    while linked_folders.last().is_some_and(|depth| *depth >= entry.depth()) {
                        linked_folders.pop();
                    }
                    let through_link = entry.path_is_symlink() || !linked_folders.is_empty();
                    if entry.file_type().is_file() {
                        out.push(Listed { path: entry.into_path(), through_link });
                    } else if entry.file_type().is_dir() && entry.path_is_symlink() {
                        linked_folders.push(entry.depth());
                    }
                }
                // A link to nothing is listed, so that reading it reports the file by name.
                Err(e) if e.io_error().is_some_and(|io| io.kind() == io::ErrorKind::NotFound) && e.path().is_some() => {
                    out.push(Listed { path: e.path().map(Path::to_path_buf).expect("checked"), through_link: true });
                }
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
        }
        Ok(out)
    }

    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn real_path(&self, path: &Path) -> Option<PathBuf> {
        std::fs::canonicalize(path).ok()
    }

    fn link_target(&self, path: &Path) -> Option<PathBuf> {
        std::fs::read_link(path).ok()
    }
}

/// `path` with `.` and `..` folded out, as a real disk would find it (the
/// memory tree has no links, so the fold is exact).
fn folded(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// An in-memory tree: paths to contents. Used by unit tests.
#[derive(Debug, Default, Clone)]
pub struct MemoryDisk {
    files: BTreeMap<PathBuf, Vec<u8>>,
}

impl MemoryDisk {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a file.
    pub fn insert(&mut self, path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> &mut Self {
        self.files.insert(path.into(), contents.into());
        self
    }
}

impl Disk for MemoryDisk {
    fn files_under(&self, dir: &Path) -> io::Result<Vec<Listed>> {
        Ok(self
            .files
            .keys()
            .filter(|p| p.starts_with(dir))
            .map(|path| Listed { path: path.clone(), through_link: false })
            .collect())
    }

    fn is_file(&self, path: &Path) -> bool {
        self.files.contains_key(&folded(path))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files
            .get(&folded(path))
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display())))
    }

    /// The tree has no links: a file, or a folder holding one, is where it is named.
    fn real_path(&self, path: &Path) -> Option<PathBuf> {
        self.files.keys().any(|p| p.starts_with(path)).then(|| path.to_path_buf())
    }

    fn link_target(&self, _path: &Path) -> Option<PathBuf> {
        None
    }
}
