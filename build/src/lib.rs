//! ssbuild: the SocketStream offline compiler.
//!
//! `pack` reads like the pipeline it drives:
//! [`discover`] the sources, [`compile`] each ([`js`], in parallel, through the
//! [`cache`]), [`link`] them into bundles and API trees, [`emit`] the hashed
//! files and `manifest.json`. See ARCHITECTURE.md beside this crate.

#![forbid(unsafe_code)]

pub mod cache;
pub mod compile;
pub mod config;
pub mod css;
pub mod diagnostic;
pub mod discover;
pub mod disk;
pub mod emit;
pub mod exports;
pub mod js;
pub mod link;
pub mod manifest;
pub mod new;
mod parse;
pub mod tree;
pub mod views;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

pub use diagnostic::{Diagnostic, PackError};
use js::CodeOptions;
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
    /// Where browsers load assets from, over `build.public_url` (default `/assets/`).
    pub public_url: Option<String>,
}

impl PackOptions {
    /// Options for packing `app` in `env`, with the cache on.
    pub fn new(app: impl Into<PathBuf>, env: impl Into<String>) -> Self {
        PackOptions { app: app.into(), out: None, env: env.into(), cache: true, public_url: None }
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
    pack_inner(disk, options, None)
}

/// Packs as [`pack`] does, keeping the compiled modules in `warm` for the
/// next call (`ssbuild watch`): that pack takes them from memory instead of
/// reading the cache file, and the file is written in the background.
pub fn pack_warm(options: &PackOptions, warm: &mut cache::Warm) -> Result<PackReport, PackError> {
    pack_inner(&disk::RealDisk, options, Some(warm))
}

/// The stack of the threads a pack runs on. The parser, the transforms
/// and the minifier recurse once per level of nesting in the code (a few
/// kilobytes each), so on a usual 2 MB stack a file with 700 nested
/// parentheses, or a chain of 5,000 `+`, took the process down. Only what
/// is used of it is ever backed by memory.
const PACK_STACK: usize = 256 << 20;

/// Runs the pack on a thread with [`PACK_STACK`], and its parallel work on
/// a pool whose threads have as much (set once, by the first pack, unless
/// the program set up the pool itself before).
fn pack_inner(
    disk: &dyn disk::Disk,
    options: &PackOptions,
    warm: Option<&mut cache::Warm>,
) -> Result<PackReport, PackError> {
    static POOL: std::sync::Once = std::sync::Once::new();
    POOL.call_once(|| {
        let _ = rayon::ThreadPoolBuilder::new().stack_size(PACK_STACK).build_global();
    });
    std::thread::scope(|scope| {
        let packing = std::thread::Builder::new()
            .name("ssbuild-pack".into())
            .stack_size(PACK_STACK)
            .spawn_scoped(scope, || pack_here(disk, options, warm));
        match packing {
            Ok(packing) => packing.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(source) => {
                Err(PackError::Io { action: "starting a thread to pack", path: options.app.clone(), source })
            }
        }
    })
}

fn pack_here(
    disk: &dyn disk::Disk,
    options: &PackOptions,
    warm: Option<&mut cache::Warm>,
) -> Result<PackReport, PackError> {
    let started = Instant::now();
    let root = options.app.as_path();
    // The output folder by its real name: it is renamed whole, which needs a
    // name of its own (`.` or `dist/..` have none) and a parent to stage in.
    let out = resolved(&options.out_dir()).ok_or_else(|| PackError::Options {
        message: format!("cannot tell where the output folder {} is", options.out_dir().display()),
        help: "pass --out an absolute path".into(),
    })?;
    check_options(root, &out, &options.env)?;
    let mut stages = Stages::new(started);
    // A config with mistakes does not stop the run: the rest is checked with
    // what could be read (defaults for the rest), so that one report holds
    // every error, and nothing is written.
    let (mut config, config_problems) = config::load(disk, root, &options.env)?;
    if let Some(url) = &options.public_url {
        config.public_url = config::public_url(url).map_err(|why| PackError::Options {
            message: format!("--public-url {why}"),
            help: "pass the URL of the folder that holds the assets, such as https://cdn.example.com/app/".into(),
        })?;
    }
    let code = CodeOptions { minify: config.minify, compress: config.compress, source_map: config.source_maps };
    let sources = match discover::discover(disk, root, &config.private_folders) {
        Ok(sources) => sources,
        Err(PackError::Invalid(problems)) => {
            return Err(PackError::Invalid(config_problems.into_iter().chain(problems).collect()));
        }
        Err(e) => return Err(e),
    };
    stages.mark("discover");
    let mut warnings: Vec<String> =
        sources.ignored.iter().map(|p| format!("{p} is not packed: {}", why_ignored(p))).collect();
    warnings.extend(sources.dangling.iter().map(|(link, target)| {
        format!(
            "{link} is a link to {}, which does not exist: point it at a file or a folder, or remove it",
            target.display()
        )
    }));
    warnings.extend(css::unused_entries(&sources.styles));

    let mut cache = if options.cache && config_problems.is_empty() {
        match warm.as_deref() {
            Some(warm) => cache::Cache::open_warm(root, &options.env, warm),
            None => cache::Cache::open(root, &options.env),
        }
    } else {
        cache::Cache::disabled()
    };
    let fingerprint = fingerprint(&sources, &config, &out);
    let unchanged =
        if sources.problems.is_empty() { unchanged_output(disk, root, &cache, &fingerprint, &out) } else { None };
    if let Some(manifest) = unchanged {
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

    let compiled = compile::compile_all(&sources.files, code, &mut cache);
    stages.mark("compile");
    let compile::CompiledApp {
        files: compiled,
        loader,
        browser,
        server_copies,
        mut failed,
        mut problems,
        fresh,
        cached,
    } = compiled;
    // Files that could not be read were compiled empty: they count as failed.
    failed
        .extend(sources.files.iter().enumerate().filter(|(_, s)| sources.unreadable.contains(&s.path)).map(|(i, _)| i));
    problems.splice(0..0, config_problems.into_iter().chain(sources.problems.iter().cloned()));

    // Link, style and template even when some files failed, to report every error in one run.
    let mut left_out = BTreeSet::new();
    // Files found but not packed, each with its problem said already.
    let refused: BTreeSet<String> = sources.problems.iter().map(|d| d.file.clone()).collect();
    let linked = link::link(
        &sources.files,
        &compiled,
        &server_copies,
        &loader,
        &browser,
        &failed,
        &refused,
        &config,
        &mut left_out,
    );
    // Nor do a left-out module's compile errors (`import.meta` in a tool's bin/ script).
    problems.retain(|d| !left_out.contains(&d.file));
    stages.mark("link");
    let targets = css::targets(&config.browsers).expect("config::load checked the browsers");
    let styles = css::build(disk, root, &sources.styles, targets, config.minify);
    stages.mark("styles");
    let templates = views::templates(&sources.views);
    let layout = views::check_layout(&sources.views);
    let (linked, styles, (templates, view_warnings)) = match (linked, styles, templates, layout) {
        (Ok(l), Ok(s), Ok(t), Ok(())) if problems.is_empty() => (l, s, t),
        (l, s, t, layout) => {
            // An entry file refused already (a link into server code, say) is not said to be missing too.
            let named: std::collections::HashSet<String> = problems.iter().map(|d| d.file.clone()).collect();
            let news = l.err().into_iter().flatten().chain(s.err().into_iter().flatten());
            let news = news.chain(t.err().into_iter().flatten()).chain(layout.err());
            problems.extend(news.filter(|d| !(d.message.starts_with("the app has no") && named.contains(&d.file))));
            return Err(PackError::Invalid(problems));
        }
    };
    warnings.extend(view_warnings);
    let link::Linked { client, server: server_bundle, trees, modules, lib_server } = linked;

    // Name and describe every output.
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut assets = BTreeMap::new();
    let mut server = BTreeMap::new();
    let mut outputs = vec![emit::Output {
        name: "app.js".into(),
        folder: "assets",
        bytes: client.code.into_bytes(),
        map: client.map.map(String::into_bytes),
    }];
    if !styles.css.is_empty() {
        outputs.push(emit::Output {
            name: "app.css".into(),
            folder: "assets",
            bytes: styles.css.into_bytes(),
            map: None,
        });
    }
    outputs.push(emit::Output {
        name: "server.js".into(),
        folder: "server",
        bytes: server_bundle.code.into_bytes(),
        map: server_bundle.map.map(String::into_bytes),
    });
    // Each output (the client bundle, the stylesheet, the server bundle) is hashed on a thread of its own.
    let hashed: Vec<_> = outputs.into_par_iter().map(|output| (output.folder, emit::hashed(output))).collect();
    for (folder, named) in hashed {
        for (name, entry, bytes) in named {
            files.insert(entry.path.clone(), bytes);
            if folder == "server" {
                server.insert(name, entry)
            } else {
                assets.insert(name, entry)
            };
        }
    }
    for (app_path, (name, bytes)) in styles.assets {
        let entry = emit::describe(&format!("assets/{name}"), &bytes);
        files.insert(entry.path.clone(), bytes);
        assets.insert(app_path, entry);
    }

    // The page: the layout with tags pointing at the public URL.
    let url = |name: &str| format!("{}{}", config.public_url, assets[name].path.trim_start_matches("assets/"));
    let mut tags = Vec::new();
    if assets.contains_key("app.css") {
        tags.push(views::Tag::Style(url("app.css"), assets["app.css"].integrity.clone()));
    }
    tags.push(views::Tag::Script(url("app.js"), assets["app.js"].integrity.clone()));
    let html = views::render_page(&sources.views, &tags, &templates, config.minify)
        .map_err(|d| PackError::Invalid(vec![d]))?;
    let page = emit::describe("index.html", html.as_bytes());
    files.insert(page.path.clone(), html.into_bytes());
    let mut manifest = Manifest::new(&config.env, &config.public_url, page, assets, server, trees, modules, lib_server);
    stages.mark("hash");

    if config.precompress {
        precompress(&mut files, &mut manifest, &cache);
        stages.mark("compress");
    }
    let manifest_bytes = manifest.to_json();
    warnings.extend(emit::write_atomically(&out, &files, &manifest_bytes)?);
    stages.mark("write");
    let variants = manifest
        .files()
        .flat_map(|f| f.compressed.keys().map(|encoding| emit::variant_path(&f.path, encoding)))
        .map(|path| {
            let digest = hex::encode(discover::digest(&files[&path]));
            (path, digest)
        })
        .collect();
    let state = cache::State {
        fingerprint,
        manifest_sha256: hex::encode(Sha256::digest(&manifest_bytes)),
        extra_inputs: styles.inputs,
        variants,
    };
    cache.save(&state, warm);
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

/// Writes `.gz` and `.br` beside each text file of the page and the assets, in
/// parallel, reusing what an earlier pack compressed.
fn precompress(files: &mut BTreeMap<String, Vec<u8>>, manifest: &mut Manifest, cache: &cache::Cache) {
    let entries: Vec<&mut emit::FileEntry> = std::iter::once(&mut manifest.page)
        .chain(manifest.assets.values_mut())
        .filter(|e| emit::compressible(&e.path) && !e.path.ends_with(".map"))
        .collect();
    let done: Vec<(Vec<u8>, Vec<u8>)> = entries
        .par_iter()
        .map(|entry| {
            cache.compressed(&entry.sha256).unwrap_or_else(|| {
                let (gz, br) = emit::compress(&files[&entry.path]);
                cache.store_compressed(&entry.sha256, &gz, &br);
                (gz, br)
            })
        })
        .collect();
    let mut used = BTreeSet::new();
    for (entry, (gz, br)) in entries.into_iter().zip(done) {
        used.insert(entry.sha256.clone());
        for (encoding, bytes) in [("gzip", gz), ("br", br)] {
            entry.compressed.insert(encoding.into(), bytes.len() as u64);
            files.insert(emit::variant_path(&entry.path, encoding), bytes);
        }
    }
    cache.prune_compressed(&used);
}

/// Why discovery left a file out, for the warning.
fn why_ignored(path: &str) -> &'static str {
    if path.starts_with("lib/css/") {
        "lib/css holds .css files"
    } else if path.starts_with("app/views/") {
        "app/views holds .html files"
    } else if path.starts_with("lib/client/") {
        "lib/client holds .js scripts"
    } else {
        "app folders and lib/server hold .js and .ts modules"
    }
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

/// A digest of everything a pack's output depends on (files read beyond the
/// sources are checked separately, from the state the last pack left).
fn fingerprint(sources: &discover::Sources, config: &config::BuildConfig, out: &Path) -> String {
    let mut h = Sha256::new();
    h.update(env!("SSBUILD_BUILD_ID"));
    h.update(format!("{config:?}\0{}\0", out.display()));
    h.update(discover::digest(link::LOADER_SOURCE.as_bytes()));
    for (_, text) in link::BROWSER_FILES {
        h.update(discover::digest(text.as_bytes()));
    }
    for f in sources.files.iter().chain(&sources.styles).chain(&sources.views) {
        h.update(f.path.as_bytes());
        h.update([0]);
        h.update(f.digest);
    }
    hex::encode(h.finalize())
}

/// The current manifest, when the output is exactly what the last pack of the same inputs wrote.
fn unchanged_output(
    disk: &dyn disk::Disk,
    root: &Path,
    cache: &cache::Cache,
    fingerprint: &str,
    out: &Path,
) -> Option<Manifest> {
    let state = cache.state()?;
    if state.fingerprint != fingerprint {
        return None;
    }
    let same_extras = state
        .extra_inputs
        .iter()
        .all(|(path, sha)| disk.read(&root.join(path)).is_ok_and(|bytes| hex::encode(Sha256::digest(&bytes)) == *sha));
    if !same_extras {
        return None;
    }
    let bytes = std::fs::read(out.join("manifest.json")).ok()?;
    if hex::encode(Sha256::digest(&bytes)) != state.manifest_sha256 {
        return None;
    }
    let manifest: Manifest = serde_json::from_slice(&bytes).ok()?;
    // Every file must still hold what was written (a file changed in place keeps
    // its size, and a browser refuses a script whose integrity does not match),
    // and so must each precompressed variant, which servers send in its place.
    let intact = manifest.files().all(|f| {
        std::fs::read(out.join(&f.path)).is_ok_and(|bytes| hex::encode(Sha256::digest(&bytes)) == f.sha256)
            && f.compressed.keys().all(|encoding| {
                let variant = emit::variant_path(&f.path, encoding);
                state.variants.get(&variant).is_some_and(|digest| {
                    std::fs::read(out.join(&variant))
                        .is_ok_and(|bytes| hex::encode(discover::digest(&bytes)) == *digest)
                })
            })
    });
    intact.then_some(manifest)
}

/// Refuses options that would damage the app or cannot name files: an
/// environment name is part of file names (`config/environments/ENV.toml`, the
/// cache), and the output folder is replaced whole by every pack, so it must not
/// be the app, hold the app, or lie among the folders the app is packed from
/// (the next pack would read its own output). `out` is already [`resolved`].
fn check_options(root: &Path, out: &Path, env: &str) -> Result<(), PackError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if env.is_empty() || !env.chars().all(plain) || env.starts_with('-') {
        return Err(PackError::Options {
            message: format!("`{env}` is not an environment name"),
            help: "use letters, digits, `_` and `-`, such as production or staging-eu (it names \
                   config/environments/ENV.toml)"
                .into(),
        });
    }
    let Some(root) = resolved(root) else {
        return Err(PackError::io("finding", root, std::io::Error::from(std::io::ErrorKind::NotFound)));
    };
    let refuse = |why: &str| {
        Err(PackError::Options {
            message: format!("the output folder {} {why}", out.display()),
            help: "every pack replaces the output folder whole: pass --out a folder of its own, such as APP/dist"
                .into(),
        })
    };
    if out == root {
        return refuse("is the app itself");
    }
    if root.starts_with(out) {
        return refuse(&format!("holds the app ({})", root.display()));
    }
    for input in ["app", "lib", "config", "public", "static", cache::CACHE_DIR] {
        if out.starts_with(root.join(input)) {
            return refuse(&format!("is inside the app's {input}/ folder, which is packed from"));
        }
    }
    // Nor a folder the app keeps for other tools.
    if let Ok(inside) = out.strip_prefix(&root)
        && let Some(first) = inside.components().next().and_then(|c| c.as_os_str().to_str())
        && [".git", ".hg", ".svn", "node_modules"].contains(&first)
    {
        return refuse(&format!("is inside the app's {first}/ folder"));
    }
    // A pack replaces only a folder that is empty or was written by a pack:
    // anything else (another app, a folder of documents) is never removed.
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() && !packed_here(out) {
                return Err(PackError::Options {
                    message: format!(
                        "the output folder {} holds files that no pack wrote (it has no manifest.json of ssbuild's), \
                         and a pack would replace them all",
                        out.display()
                    ),
                    help: "pass --out a new or empty folder, or one an earlier pack wrote (move the files away to use \
                           this one)"
                        .into(),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) if out.exists() && !out.is_dir() => return refuse("is a file, not a folder"),
        Err(e) => return Err(PackError::io("reading", out, e)),
    }
    Ok(())
}

/// Whether `out` holds a pack's output: a `manifest.json` that ssbuild wrote.
pub fn packed_here(out: &Path) -> bool {
    let Ok(text) = std::fs::read(out.join("manifest.json")) else { return false };
    let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(&text) else { return false };
    manifest.get("generator").and_then(serde_json::Value::as_str).is_some_and(|g| g.starts_with("ssbuild"))
}

/// `path` made absolute with symbolic links and `..` resolved, also when its
/// last components do not exist yet.
fn resolved(path: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(path).ok()?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    let base = loop {
        if let Ok(real) = existing.canonicalize() {
            break real;
        }
        // The last component, `..` included (which `file_name` does not give).
        rest.push(existing.components().next_back()?.as_os_str().to_os_string());
        existing = existing.parent()?;
    };
    let mut out = base;
    for name in rest.iter().rev() {
        match name.to_str() {
            Some("..") => {
                out.pop();
            }
            Some(".") => {}
            _ => out.push(name),
        }
    }
    Some(out)
}
