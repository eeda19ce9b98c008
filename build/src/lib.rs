//! ssbuild: the SocketStream offline compiler.
//!
//! `pack` reads like the pipeline it drives:
//! [`discover`] the sources, compile each ([`js`], in parallel, through the
//! [`cache`]), [`link`] them into bundles and API trees, [`emit`] the hashed
//! files and `manifest.json`. See ARCHITECTURE.md beside this crate.

pub mod cache;
pub mod config;
pub mod diagnostic;
pub mod discover;
pub mod disk;
pub mod emit;
pub mod exports;
pub mod js;
pub mod link;
pub mod manifest;
pub mod tree;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

pub use diagnostic::{Diagnostic, PackError};
use discover::{Kind, Source};
use js::{CodeOptions, Compiled};
pub use manifest::Manifest;

/// What to pack and where.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// The app's root folder.
    pub app: PathBuf,
    /// The output folder (default: `APP/dist`).
    pub out: Option<PathBuf>,
    /// The environment (`development`, `staging`, `production`, or any).
    pub env: String,
    /// Use and update the persistent cache in `APP/.ssbuild-cache`.
    pub cache: bool,
}

impl PackOptions {
    /// Options for packing `app` in `env`, with the cache on.
    pub fn new(app: impl Into<PathBuf>, env: impl Into<String>) -> Self {
        PackOptions { app: app.into(), out: None, env: env.into(), cache: true }
    }

    /// The output folder.
    pub fn out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| self.app.join("dist"))
    }
}

/// What a pack did.
#[derive(Debug)]
pub struct PackReport {
    /// The manifest of the output.
    pub manifest: Manifest,
    /// Where the output is.
    pub out: PathBuf,
    /// Files compiled in this run (the rest came from the cache).
    pub compiled: usize,
    /// Files taken from the cache.
    pub cached: usize,
    /// True when nothing had changed and the output was left as it was.
    pub unchanged: bool,
    /// Things worth saying that did not stop the pack.
    pub warnings: Vec<String>,
    /// Wall time of the pack.
    pub elapsed: Duration,
    /// Wall time of each stage, in order (for `ssbuild pack --timings`).
    pub stages: Vec<(&'static str, Duration)>,
}

/// Packs an app from the real disk.
pub fn pack(options: &PackOptions) -> Result<PackReport, PackError> {
    pack_with(&disk::RealDisk, options)
}

/// Packs an app read through `disk`; output goes to the real disk.
pub fn pack_with(disk: &dyn disk::Disk, options: &PackOptions) -> Result<PackReport, PackError> {
    let started = Instant::now();
    let root = options.app.as_path();
    let out = options.out_dir();
    let mut stages = Stages::new(started);
    let config = config::load(disk, root, &options.env)?;
    let code = CodeOptions { minify: config.minify, source_map: config.source_maps };
    let sources = discover::discover(disk, root)?;
    stages.mark("discover");
    let warnings: Vec<String> =
        sources.ignored.iter().map(|p| format!("{p} is not a .js or .ts file, so it is not packed")).collect();

    let mut cache = if options.cache { cache::Cache::open(root, &options.env) } else { cache::Cache::disabled() };
    let fingerprint = fingerprint(&sources.files, &config, &out);
    if let Some(manifest) = unchanged_output(&cache, &fingerprint, &out) {
        return Ok(PackReport {
            manifest,
            out,
            compiled: 0,
            cached: sources.files.len(),
            unchanged: true,
            warnings,
            elapsed: started.elapsed(),
            stages: stages.done(),
        });
    }
    cache.load_entries();
    stages.mark("load cache");

    // Compile every file (and the loader), in parallel, through the cache.
    let loader = Source {
        path: link::LOADER_PATH.to_string(),
        kind: Kind::LibClient,
        text: link::LOADER_SOURCE.to_string(),
        digest: Sha256::digest(link::LOADER_SOURCE).into(),
    };
    let all: Vec<&Source> = sources.files.iter().chain(std::iter::once(&loader)).collect();
    let results: Vec<(String, bool, Result<Compiled, Vec<Diagnostic>>)> = all
        .par_iter()
        .map(|source| {
            let what = if source.kind == Kind::LibClient { "script" } else { "module" };
            let key = cache::Cache::key(what, &source.path, &source.digest, code);
            if let Some(hit) = cache.get(&key) {
                return (key, false, Ok(hit.clone()));
            }
            let result = if source.kind == Kind::LibClient {
                js::compile_script(&source.path, &source.text, code)
            } else {
                js::compile_module(&source.path, &source.text, code)
            };
            (key, true, result)
        })
        .collect();

    stages.mark("compile");
    let mut compiled = Vec::with_capacity(results.len());
    let mut failed = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    let (mut fresh, mut cached) = (0, 0);
    for (index, (key, is_fresh, result)) in results.into_iter().enumerate() {
        match result {
            Ok(c) => {
                if is_fresh {
                    fresh += 1
                } else {
                    cached += 1
                }
                cache.keep(key, c.clone(), is_fresh);
                compiled.push(c);
            }
            Err(mut d) => {
                problems.append(&mut d);
                failed.insert(index);
                compiled.push(Compiled::default());
            }
        }
    }
    let loader = compiled.pop().expect("the loader was compiled last");
    // Link even when some files failed, to report the link's errors in the same run.
    let linked = link::link(&sources.files, &compiled, &loader, &failed, &config);
    let linked = match linked {
        Ok(linked) if problems.is_empty() => linked,
        Ok(_) => return Err(PackError::Invalid(problems)),
        Err(mut more) => {
            problems.append(&mut more);
            return Err(PackError::Invalid(problems));
        }
    };
    stages.mark("link");
    let link::Linked { client, server: server_bundle, trees, modules, lib_server } = linked;

    // Name, describe and write.
    let mut files = BTreeMap::new();
    let mut assets = BTreeMap::new();
    let bundles = [
        emit::Output {
            name: "app.js".into(),
            folder: "assets",
            bytes: client.code.into_bytes(),
            map: client.map.map(String::into_bytes),
        },
        emit::Output {
            name: "server.js".into(),
            folder: "server",
            bytes: server_bundle.code.into_bytes(),
            map: server_bundle.map.map(String::into_bytes),
        },
    ];
    let mut server = Vec::new();
    for bundle in bundles {
        let is_server = bundle.folder == "server";
        for (name, entry, bytes) in emit::hashed(bundle) {
            files.insert(entry.path.clone(), bytes);
            if is_server {
                server.push((name, entry))
            } else {
                assets.insert(name, entry);
            }
        }
    }
    let manifest = Manifest::new(&config.env, assets, server.into_iter().collect(), trees, modules, lib_server);
    let manifest_bytes = manifest.to_json();
    stages.mark("hash");
    emit::write_atomically(&out, &files, &manifest_bytes)?;
    stages.mark("write");
    cache.save(&cache::State { fingerprint, manifest_sha256: hex::encode(Sha256::digest(&manifest_bytes)) });
    stages.mark("save cache");
    Ok(PackReport {
        manifest,
        out,
        compiled: fresh,
        cached,
        unchanged: false,
        warnings,
        elapsed: started.elapsed(),
        stages: stages.done(),
    })
}

/// Wall-clock marks between stages.
struct Stages {
    last: Instant,
    marks: Vec<(&'static str, Duration)>,
}

impl Stages {
    fn new(started: Instant) -> Self {
        Stages { last: started, marks: Vec::new() }
    }

    fn mark(&mut self, stage: &'static str) {
        let now = Instant::now();
        self.marks.push((stage, now - self.last));
        self.last = now;
    }

    fn done(self) -> Vec<(&'static str, Duration)> {
        self.marks
    }
}

/// A digest of everything a pack's output depends on.
fn fingerprint(files: &[Source], config: &config::BuildConfig, out: &Path) -> String {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION"));
    h.update(format!("{config:?}\0{}\0", out.display()));
    h.update(Sha256::digest(link::LOADER_SOURCE));
    for f in files {
        h.update(f.path.as_bytes());
        h.update([0]);
        h.update(f.digest);
    }
    hex::encode(h.finalize())
}

/// The current manifest, when the output is exactly what the last pack of the same inputs wrote.
fn unchanged_output(cache: &cache::Cache, fingerprint: &str, out: &Path) -> Option<Manifest> {
    let state = cache.state()?;
    if state.fingerprint != fingerprint {
        return None;
    }
    let bytes = std::fs::read(out.join("manifest.json")).ok()?;
    if hex::encode(Sha256::digest(&bytes)) != state.manifest_sha256 {
        return None;
    }
    let manifest: Manifest = serde_json::from_slice(&bytes).ok()?;
    let complete = manifest.files().all(|f| std::fs::metadata(out.join(&f.path)).is_ok_and(|m| m.len() == f.size));
    complete.then_some(manifest)
}
