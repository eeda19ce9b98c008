//! The one way the compiler reads an app: a small trait over the disk, so that
//! tests can run the pipeline on an in-memory tree.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Read access to an app's source tree.
pub trait Disk: Sync + std::fmt::Debug {
    /// Every file below `dir` (recursively), in any order. A missing `dir` is an empty list.
    /// Entries are full paths (`dir` joined with the relative path).
    fn files_under(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Whether `path` is a file.
    fn is_file(&self, path: &Path) -> bool;
    /// The bytes of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
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
    fn files_under(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for entry in walkdir::WalkDir::new(dir).follow_links(true) {
            match entry {
                Ok(entry) if entry.file_type().is_file() => out.push(entry.into_path()),
                Ok(_) => {}
                // A link to nothing is listed, so that reading it reports the file by name.
                Err(e) if e.io_error().is_some_and(|io| io.kind() == io::ErrorKind::NotFound) && e.path().is_some() => {
                    out.push(e.path().map(Path::to_path_buf).expect("checked"));
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
    fn files_under(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        Ok(self.files.keys().filter(|p| p.starts_with(dir)).cloned().collect())
    }

    fn is_file(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display())))
    }
}
