//! Stage 2: every code file compiled, in parallel (rayon), through the cache.
//!
//! Input: the discovered code files, plus the embedded client library.
//! Output: one [`Compiled`] per file, in the same order (an empty one where a
//! file failed, so that linking can still look for more errors), the set of
//! files that failed, and their diagnostics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rayon::prelude::*;

use crate::cache::Cache;
use crate::diagnostic::Diagnostic;
use crate::discover::{Kind, Source};
use crate::js::{self, Awaits, CodeOptions, Compiled};
use crate::link;

/// The result of compiling an app's code. Modules are shared with the cache,
/// which keeps them for the next pack (in watch mode, in memory).
#[derive(Debug)]
pub struct CompiledApp {
    /// One entry per code file, in discovery order.
    pub files: Vec<Arc<Compiled>>,
    /// The module loader (`client/modules.js`), compiled.
    pub loader: Arc<Compiled>,
    /// The browser library ([`link::BROWSER_FILES`]), compiled.
    pub browser: Vec<Arc<Compiled>>,
    /// The server bundle's copies of `app/shared` modules that `await`, by
    /// index in `files` (their `await`s rewritten, [`Awaits::Tag`]); the
    /// other shared modules are the same on both sides.
    pub server_copies: BTreeMap<usize, Arc<Compiled>>,
    /// Indexes of files that failed to compile.
    pub failed: BTreeSet<usize>,
    /// Their diagnostics.
    pub problems: Vec<Diagnostic>,
    /// How many compilations ran now (a server copy counts as one more).
    pub fresh: usize,
    /// How many came from the cache.
    pub cached: usize,
}

/// Compiles `files` and the client library, reusing and filling `cache`.
pub fn compile_all(files: &[Source], code: CodeOptions, cache: &mut Cache) -> CompiledApp {
    let library: Vec<Source> = std::iter::once((link::LOADER_PATH, link::LOADER_SOURCE))
        .chain(link::BROWSER_FILES)
        .map(|(path, text)| Source {
            path: path.to_string(),
            kind: Kind::LibClient,
            text: text.to_string(),
            digest: crate::discover::digest(text.as_bytes()),
        })
        .collect();
    let all: Vec<(&Source, Awaits)> =
        files.iter().map(|s| (s, awaits_of(s.kind))).chain(library.iter().map(|s| (s, Awaits::Keep))).collect();
    let results = compile_each(&all, code, cache);
    let mut compiled = Vec::with_capacity(results.len());
    let mut failed = BTreeSet::new();
    let mut problems = Vec::new();
    let (mut fresh, mut cached) = (0, 0);
    for (index, (key, is_fresh, result)) in results.into_iter().enumerate() {
        match result {
            Ok(c) => {
                *if is_fresh { &mut fresh } else { &mut cached } += 1;
                cache.keep(key, Arc::clone(&c), is_fresh);
                compiled.push(c);
            }
            Err(mut d) => {
                problems.append(&mut d);
                failed.insert(index);
                compiled.push(Arc::default());
            }
        }
    }
    let browser = compiled.split_off(compiled.len() - link::BROWSER_FILES.len());
    let loader = compiled.pop().expect("the loader was compiled before the browser library");

    // Second pass: server copies of the shared modules that await.
    let shared: Vec<usize> = (0..files.len())
        .filter(|&i| files[i].kind == Kind::Shared && compiled[i].awaits && !failed.contains(&i))
        .collect();
    let again: Vec<(&Source, Awaits)> = shared.iter().map(|&i| (&files[i], Awaits::Tag)).collect();
    let mut server_copies = BTreeMap::new();
    for (&i, (key, is_fresh, result)) in shared.iter().zip(compile_each(&again, code, cache)) {
        match result {
            Ok(c) => {
                *if is_fresh { &mut fresh } else { &mut cached } += 1;
                cache.keep(key, Arc::clone(&c), is_fresh);
                server_copies.insert(i, c);
            }
            Err(mut d) => {
                problems.append(&mut d);
                failed.insert(i);
            }
        }
    }
    CompiledApp { files: compiled, loader, browser, server_copies, failed, problems, fresh, cached }
}

/// How a file of `kind` compiles its `await`s (the server's own code is only
/// ever in the server bundle).
fn awaits_of(kind: Kind) -> Awaits {
    match kind {
        Kind::Server | Kind::LibServer => Awaits::Tag,
        Kind::Shared => Awaits::Note,
        _ => Awaits::Keep,
    }
}

/// A module compiled, or what stopped it.
type Compilation = Result<Arc<Compiled>, Vec<Diagnostic>>;

/// Compiles each source in parallel through the cache: its cache key, whether
/// it was compiled now, and the result.
fn compile_each(all: &[(&Source, Awaits)], code: CodeOptions, cache: &Cache) -> Vec<(String, bool, Compilation)> {
    all.par_iter()
        .map(|&(source, awaits)| {
            let what = match (source.kind, awaits) {
                (Kind::LibClient, _) => "script",
                (_, Awaits::Keep) => "module",
                (_, Awaits::Note) => "module, awaits noted",
                (_, Awaits::Tag) => "module, awaits tagged",
            };
            let key = Cache::key(what, &source.path, &source.digest, code);
            if let Some(hit) = cache.get(&key) {
                return (key, false, Ok(Arc::clone(hit)));
            }
            let result = if source.kind == Kind::LibClient {
                js::compile_script(&source.path, &source.text, code)
            } else {
                js::compile_module_with(&source.path, &source.text, code, awaits)
            };
            (key, true, result.map(Arc::new))
        })
        .collect()
}
