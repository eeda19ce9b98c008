//! Compiled modules keyed by everything that decides their output: the file's
//! path and content, the compiler options and ssbuild's version. The cache is a
//! file per environment in `APP/.ssbuild-cache/`, holding the entries the last
//! pack used, plus a fingerprint of that pack's inputs so that a pack with
//! nothing changed can stop early.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::js::{CodeOptions, Compiled};

/// The build of ssbuild (version and a hash of its sources): output of another build is never reused.
const CACHE_VERSION: &str = env!("SSBUILD_BUILD_ID");

/// The state a pack leaves for the next one.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// Fingerprint of every input of the pack.
    pub fingerprint: String,
    /// sha256 of the manifest it wrote.
    pub manifest_sha256: String,
    /// Files the pack read beyond the discovered sources (SCSS from elsewhere,
    /// url() targets): path relative to the app -> sha256.
    #[serde(default)]
    pub extra_inputs: std::collections::BTreeMap<String, String>,
    /// The precompressed variants it wrote (`.gz`, `.br`): path in the
    /// output folder -> hex [`crate::discover::digest`] of their bytes.
    #[serde(default)]
    pub variants: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    version: String,
    entries: HashMap<String, Arc<Compiled>>,
}

/// The persistent cache of one app and environment.
#[derive(Debug)]
pub struct Cache {
    dir: Option<PathBuf>,
    env: String,
    old: HashMap<String, Arc<Compiled>>,
    used: HashMap<String, Arc<Compiled>>,
    changed: bool,
    /// Set when the entries came from memory (a [`Warm`] cache): they are
    /// not read from the disk, and written back to it in the background.
    warm: bool,
}

/// What `ssbuild watch` keeps between packs: the entries the last pack used,
/// so that the next one neither reads nor waits for the cache file, and the
/// thread writing that file in the background.
#[derive(Debug, Default)]
pub struct Warm {
    entries: Option<HashMap<String, Arc<Compiled>>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Warm {
    /// Waits for the cache file being written, if any.
    pub fn flush(&mut self) {
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Warm {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The cache's folder in the app's root.
pub const CACHE_DIR: &str = ".ssbuild-cache";

impl Cache {
    /// A cache that keeps nothing (for `--no-cache` and tests).
    pub fn disabled() -> Self {
        Cache { dir: None, env: String::new(), old: HashMap::new(), used: HashMap::new(), changed: false, warm: false }
    }

    /// The cache of the app at `root`; the entries are loaded later, only if needed.
    pub fn open(root: &Path, env: &str) -> Self {
        Cache {
            dir: Some(root.join(CACHE_DIR)),
            env: env.to_string(),
            old: HashMap::new(),
            used: HashMap::new(),
            changed: false,
            warm: false,
        }
    }

    /// The cache of the app at `root`, with the entries `warm` kept from the
    /// last pack of this process when it has them (else they are read from
    /// the disk as usual). `warm` keeps them too (they are shared), so a pack
    /// that fails or stops early, its output unchanged, leaves them for the
    /// next one.
    pub fn open_warm(root: &Path, env: &str, warm: &Warm) -> Self {
        let mut cache = Cache::open(root, env);
        if let Some(entries) = &warm.entries {
            cache.old = entries.clone();
            cache.warm = true;
        }
        cache
    }

    /// The state the last pack left, if any.
    pub fn state(&self) -> Option<State> {
        let path = self.dir.as_ref()?.join(format!("{}.state.json", self.env));
        serde_json::from_slice(&fs::read(path).ok()?).ok()
    }

    /// Loads the compiled entries of the last pack.
    pub fn load_entries(&mut self) {
        if self.warm {
            return;
        }
        let Some(dir) = &self.dir else { return };
        let path = dir.join(format!("{}.modules.json", self.env));
        if let Ok(bytes) = fs::read(path)
            && let Ok(stored) = serde_json::from_slice::<Stored>(&bytes)
            && stored.version == CACHE_VERSION
        {
            self.old = stored.entries;
        }
    }

    /// The key of a compilation.
    pub fn key(what: &str, path: &str, digest: &[u8; 32], options: CodeOptions) -> String {
        let mut h = Sha256::new();
        for part in
            [CACHE_VERSION, what, path, &format!("{}{}{}", options.minify, options.compress, options.source_map)]
        {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.update(digest);
        hex::encode(h.finalize())
    }

    /// A cached result.
    pub fn get(&self, key: &str) -> Option<&Arc<Compiled>> {
        self.old.get(key)
    }

    /// Records a result used by this pack (`fresh`: it was compiled now).
    pub fn keep(&mut self, key: String, compiled: Arc<Compiled>, fresh: bool) {
        self.changed |= fresh;
        self.used.insert(key, compiled);
    }

    /// gzip and brotli of content with this sha256, from an earlier pack.
    pub fn compressed(&self, sha256: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        let dir = self.compressed_dir()?;
        Some((fs::read(dir.join(format!("{sha256}.gz"))).ok()?, fs::read(dir.join(format!("{sha256}.br"))).ok()?))
    }

    /// Keeps gzip and brotli of content with this sha256 for later packs.
    pub fn store_compressed(&self, sha256: &str, gz: &[u8], br: &[u8]) {
        let Some(dir) = self.compressed_dir() else { return };
        if fs::create_dir_all(&dir).is_ok() {
            write_replacing(&dir.join(format!("{sha256}.gz")), gz);
            write_replacing(&dir.join(format!("{sha256}.br")), br);
        }
    }

    /// Removes compressed content this pack did not use.
    pub fn prune_compressed(&self, used: &std::collections::BTreeSet<String>) {
        let Some(dir) = self.compressed_dir() else { return };
        let Ok(entries) = fs::read_dir(&dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let sha = name.split('.').next().unwrap_or("");
            if !used.contains(sha) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    fn compressed_dir(&self) -> Option<PathBuf> {
        Some(self.dir.as_ref()?.join("compressed").join(&self.env))
    }

    /// Saves the entries this pack used and its state. Failures only cost
    /// speed, so they are ignored. With `warm`, the entries also stay in
    /// memory for the next pack, and their file is written on a thread of its
    /// own (the state, small, is written now).
    pub fn save(mut self, state: &State, warm: Option<&mut Warm>) {
        let changed = self.changed || self.used.len() != self.old.len();
        let Some(dir) = self.dir.take() else { return };
        let entries = std::mem::take(&mut self.used);
        let ready = fs::create_dir_all(&dir).is_ok();
        if ready {
            let ignore = dir.join(".gitignore");
            if !ignore.exists() {
                let _ = fs::write(ignore, "*\n");
            }
        }
        let modules = dir.join(format!("{}.modules.json", self.env));
        match warm {
            Some(warm) => {
                // One writer at a time: they share the file and its temporary name.
                warm.flush();
                if ready && changed {
                    let stored = Stored { version: CACHE_VERSION.to_string(), entries: entries.clone() };
                    warm.writer = Some(std::thread::spawn(move || {
                        if let Ok(bytes) = serde_json::to_vec(&stored) {
                            write_replacing(&modules, &bytes);
                        }
                    }));
                }
                warm.entries = Some(entries);
            }
            None if ready && changed => {
                let stored = Stored { version: CACHE_VERSION.to_string(), entries };
                if let Ok(bytes) = serde_json::to_vec(&stored) {
                    write_replacing(&modules, &bytes);
                }
            }
            None => {}
        }
        if ready && let Ok(bytes) = serde_json::to_vec(state) {
            write_replacing(&dir.join(format!("{}.state.json", self.env)), &bytes);
        }
    }
}

fn write_replacing(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if fs::write(&tmp, bytes).is_ok() && fs::rename(&tmp, path).is_err() {
        let _ = fs::remove_file(&tmp);
    }
}
