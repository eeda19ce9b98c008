//! Stage 4: bundles in, files on disk out.
//!
//! Names every output by a hash of its content, computes its SRI integrity
//! (sha384), writes `manifest.json`, and swaps the new output folder in place of
//! the old one only once everything is written, so that a failed pack leaves
//! the previous output untouched.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha384};

use crate::diagnostic::PackError;

/// The version of the manifest format (see docs/manifest.md).
pub const MANIFEST_FORMAT: u32 = 1;

/// One written file, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the output folder (`assets/app.3f2a9c01b2d4.js`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the bytes, hex.
    pub sha256: String,
    /// Subresource integrity: `sha384-` and the base64 digest.
    pub integrity: String,
    /// Precompressed variants beside the file (`PATH.gz`, `PATH.br`): encoding -> size in bytes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub compressed: BTreeMap<String, u64>,
}

/// A file to write: a logical name (`app.js`) in a folder (`assets`).
#[derive(Debug, Clone)]
pub struct Output {
    /// The name before hashing, such as `app.js`.
    pub name: String,
    /// The folder inside the output, such as `assets` or `server`.
    pub folder: &'static str,
    /// The content.
    pub bytes: Vec<u8>,
    /// A source map for it, written beside it as `NAME.HASH.EXT.map`.
    pub map: Option<Vec<u8>>,
}

/// The content-addressed name of a file: `app.js` -> `app.3f2a9c01b2d4.js`
/// (the first 12 hex digits of the sha256 of `bytes`).
pub fn hashed_name(name: &str, bytes: &[u8]) -> String {
    name_with_digest(name, &Sha256::digest(bytes))
}

/// The longest output name, in bytes: file systems allow 255, and a map
/// (`.map`) or a precompressed variant (`.br`, `.gz`) goes beside it.
const LONGEST_NAME: usize = 240;

/// [`hashed_name`] from the sha256 of the bytes, already worked out. A name
/// that would be too long loses the end of its stem (the digest keeps it
/// apart from others cut the same way).
fn name_with_digest(name: &str, sha256: &[u8]) -> String {
    let short = hex::encode(&sha256[..6]);
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if ext.len() <= 32 => (stem, Some(ext)),
        _ => (name, None),
    };
    let room = LONGEST_NAME - short.len() - 1 - ext.map_or(0, |ext| ext.len() + 1);
    let stem = match stem.char_indices().map(|(i, c)| i + c.len_utf8()).take_while(|end| *end <= room).last() {
        _ if stem.len() <= room => stem,
        Some(end) => &stem[..end],
        None => "",
    };
    match ext {
        Some(ext) => format!("{stem}.{short}.{ext}"),
        None => format!("{stem}.{short}"),
    }
}

/// Names an output by its content and describes it.
pub fn hashed(output: Output) -> Vec<(String, FileEntry, Vec<u8>)> {
    let Output { name, folder, mut bytes, map } = output;
    match map {
        // The digest that names the file goes in the manifest too (hashing
        // a large bundle twice shows in a pack's time).
        None => {
            let (sha256, integrity) = rayon::join(|| Sha256::digest(&bytes), || integrity(&bytes));
            let path = format!("{folder}/{}", name_with_digest(&name, &sha256));
            let size = bytes.len() as u64;
            let entry = FileEntry { path, size, sha256: hex::encode(sha256), integrity, compressed: BTreeMap::new() };
            vec![(name, entry, bytes)]
        }
        // The comment naming the map is added after the file is named: the
        // digests of the file go on from the state that named it, each
        // digest of each file on a thread of its own.
        Some(map) => {
            let ((mut sha256, mut sha384), (map_sha256, map_integrity)) = rayon::join(
                || {
                    rayon::join(
                        || {
                            let mut h = Sha256::new();
                            h.update(&bytes);
                            h
                        },
                        || {
                            let mut h = Sha384::new();
                            h.update(&bytes);
                            h
                        },
                    )
                },
                || rayon::join(|| hex::encode(Sha256::digest(&map)), || integrity(&map)),
            );
            let file = name_with_digest(&name, &sha256.clone().finalize());
            let path = format!("{folder}/{file}");
            let comment = format!("\n//# sourceMappingURL={file}.map\n");
            sha256.update(comment.as_bytes());
            sha384.update(comment.as_bytes());
            bytes.extend_from_slice(comment.as_bytes());
            let entry = FileEntry {
                path: path.clone(),
                size: bytes.len() as u64,
                sha256: hex::encode(sha256.finalize()),
                integrity: integrity_of(&sha384.finalize()),
                compressed: BTreeMap::new(),
            };
            let map_entry = FileEntry {
                path: format!("{path}.map"),
                size: map.len() as u64,
                sha256: map_sha256,
                integrity: map_integrity,
                compressed: BTreeMap::new(),
            };
            vec![(name.clone(), entry, bytes), (format!("{name}.map"), map_entry, map)]
        }
    }
}

/// Size, sha256 and integrity of some bytes at a path.
pub fn describe(path: &str, bytes: &[u8]) -> FileEntry {
    let (sha256, integrity) = rayon::join(|| hex::encode(Sha256::digest(bytes)), || integrity(bytes));
    FileEntry { path: path.to_string(), size: bytes.len() as u64, sha256, integrity, compressed: BTreeMap::new() }
}

/// Whether a file is text that compresses well (by its extension).
pub fn compressible(path: &str) -> bool {
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    ["js", "mjs", "css", "html", "svg", "json", "txt", "xml", "map", "ico", "wasm", "ttf", "otf", "eot"].contains(&ext)
}

/// gzip (level 9) and brotli (quality 11) of some bytes. Both are deterministic.
pub fn compress(bytes: &[u8]) -> (Vec<u8>, Vec<u8>) {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).expect("writing to memory cannot fail");
    let gz = gz.finish().expect("writing to memory cannot fail");
    let params = brotli::enc::BrotliEncoderParams { quality: 11, lgwin: 22, ..Default::default() };
    let mut br = Vec::new();
    brotli::BrotliCompress(&mut &bytes[..], &mut br, &params).expect("writing to memory cannot fail");
    (gz, br)
}

/// Where the precompressed variant of `path` for `encoding` (an
/// Accept-Encoding name: `gzip`, `br`) is written: `PATH.gz`, `PATH.br`.
pub fn variant_path(path: &str, encoding: &str) -> String {
    let extension = match encoding {
        "gzip" => "gz",
        other => other,
    };
    format!("{path}.{extension}")
}

/// The SRI value of some bytes.
pub fn integrity(bytes: &[u8]) -> String {
    integrity_of(&Sha384::digest(bytes))
}

/// The SRI value of a SHA-384 digest.
fn integrity_of(sha384: &[u8]) -> String {
    format!("sha384-{}", base64::engine::general_purpose::STANDARD.encode(sha384))
}

/// Writes `files` (relative path -> bytes) and `manifest.json` into a new
/// folder beside `out`, then puts it in place of `out`. Gives a warning when the new output is in place but the previous one,
/// moved aside, could not be removed.
pub fn write_atomically(
    out: &Path,
    files: &BTreeMap<String, Vec<u8>>,
    manifest: &[u8],
) -> Result<Option<String>, PackError> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| PackError::io("creating", parent, e))?;
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "dist".into());
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.new-"))
        .tempdir_in(parent)
        .map_err(|e| PackError::io("creating a temporary folder in", parent, e))?;
    for (rel, bytes) in files {
        let path = staging.path().join(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| PackError::io("creating", dir, e))?;
        }
        fs::write(&path, bytes).map_err(|e| PackError::io("writing", &path, e))?;
    }
    let manifest_path = staging.path().join("manifest.json");
    fs::write(&manifest_path, manifest).map_err(|e| PackError::io("writing", &manifest_path, e))?;

    let staged: PathBuf = staging.keep();
    // Where the kernel can, the new output and the old trade places in one
    // step, so that a reader of the output folder (ssrun picking up builds,
    // a script) never finds it missing; the old one then goes.
    if out.is_dir() && exchange(&staged, out).is_ok() {
        if let Err(e) = fs::remove_dir_all(&staged) {
            return Ok(Some(format!(
                "the previous output, moved aside to {}, could not be removed: {e}",
                staged.display()
            )));
        }
        return Ok(None);
    }
    // Otherwise: the old output moves aside, the new one takes its name, the old one goes.
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    let had_old = out.exists();
    if had_old && let Err(e) = fs::rename(out, &old) {
        let _ = fs::remove_dir_all(&staged);
        return Err(PackError::io("moving aside", out, e));
    }
    if let Err(e) = fs::rename(&staged, out) {
        if had_old {
            let _ = fs::rename(&old, out);
        }
        let _ = fs::remove_dir_all(&staged);
        return Err(PackError::io("moving into place", out, e));
    }
    if had_old && let Err(e) = fs::remove_dir_all(&old) {
        return Ok(Some(format!("the previous output, moved aside to {}, could not be removed: {e}", old.display())));
    }
    Ok(None)
}

/// Swaps two paths in one step (Linux's `renameat2` with `RENAME_EXCHANGE`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE).map_err(std::io::Error::from)
}

/// No swap in one step here: the caller renames twice.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_content_hash_and_maps_sit_beside() {
        let out =
            hashed(Output { name: "app.js".into(), folder: "assets", bytes: b"x".to_vec(), map: Some(b"{}".to_vec()) });
        assert_eq!(out[0].1.path, "assets/app.2d711642b726.js");
        assert_eq!(out[1].1.path, "assets/app.2d711642b726.js.map");
        assert!(out[0].2.ends_with(b"//# sourceMappingURL=app.2d711642b726.js.map\n"));
        assert_eq!(out[0].1.integrity, integrity(&out[0].2));
        // The digests describe the bytes written, comment included, and the map's its own.
        assert_eq!(out[0].1.sha256, hex::encode(Sha256::digest(&out[0].2)));
        assert_eq!(out[0].1.size, out[0].2.len() as u64);
        assert_eq!((out[1].0.as_str(), &out[1].2[..]), ("app.js.map", &b"{}"[..]));
        assert_eq!(out[1].1.sha256, hex::encode(Sha256::digest(b"{}")));
        assert_eq!(out[1].1.integrity, integrity(b"{}"));
        assert_eq!(out[1].1.size, 2);
    }

    #[test]
    fn long_names_are_cut_to_leave_room_beside_them() {
        assert_eq!(hashed_name("logo.png", b"x"), "logo.2d711642b726.png");
        let long = format!("{}.woff2", "é".repeat(124));
        let name = hashed_name(&long, b"x");
        assert!(name.len() <= LONGEST_NAME, "{} bytes", name.len());
        assert_eq!(name, format!("{}.2d711642b726.woff2", "é".repeat(110)));
        let no_extension = "x".repeat(255);
        assert_eq!(hashed_name(&no_extension, b"x"), format!("{}.2d711642b726", "x".repeat(227)));
        let long_extension = format!("a.{}", "y".repeat(250));
        assert_eq!(hashed_name(&long_extension, b"x").len(), LONGEST_NAME);
    }

    #[test]
    fn the_swap_replaces_the_whole_folder() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("dist");
        fs::create_dir_all(&out).unwrap();
        fs::write(out.join("stale.txt"), "old").unwrap();
        let files = BTreeMap::from([("assets/a.js".to_string(), b"1".to_vec())]);
        write_atomically(&out, &files, b"{}").unwrap();
        assert!(!out.join("stale.txt").exists());
        assert_eq!(fs::read(out.join("assets/a.js")).unwrap(), b"1");
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "only dist remains");
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_reader_never_finds_the_output_missing_while_it_is_swapped() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("dist");
        let files = BTreeMap::from([("assets/a.js".to_string(), b"1".to_vec())]);
        write_atomically(&out, &files, b"{}").unwrap();
        let (done, missing, looks) = (AtomicBool::new(false), AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    looks.fetch_add(1, Ordering::Relaxed);
                    if fs::metadata(out.join("manifest.json")).is_err() {
                        missing.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            for _ in 0..200 {
                write_atomically(&out, &files, b"{}").unwrap();
            }
            done.store(true, Ordering::Relaxed);
        });
        assert_eq!(missing.load(Ordering::Relaxed), 0, "missing in {} looks", looks.load(Ordering::Relaxed));
    }
}
