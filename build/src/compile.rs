//! Stage 2: every code file compiled, in parallel (rayon), through the cache.
//!
//! Input: the discovered code files, plus the embedded client library.
//! Output: one [`Compiled`] per file, in the same order (an empty one where a
//! file failed, so that linking can still look for more errors), the set of
//! files that failed, and their diagnostics.

use std::collections::BTreeSet;

use rayon::prelude::*;

use crate::cache::Cache;
use crate::diagnostic::Diagnostic;
use crate::discover::{Kind, Source};
use crate::js::{self, CodeOptions, Compiled};
use crate::link;

/// The result of compiling an app's code.
#[derive(Debug)]
pub struct CompiledApp {
    /// One entry per code file, in discovery order.
    pub files: Vec<Compiled>,
    /// The module loader (`client/modules.js`), compiled.
    pub loader: Compiled,
    /// The browser library ([`link::BROWSER_FILES`]), compiled.
    pub browser: Vec<Compiled>,
    /// Indexes of files that failed to compile.
    pub failed: BTreeSet<usize>,
    /// Their diagnostics.
    pub problems: Vec<Diagnostic>,
    /// How many files were compiled now, and how many came from the cache.
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
    let all: Vec<&Source> = files.iter().chain(&library).collect();
    let results: Vec<(String, bool, Result<Compiled, Vec<Diagnostic>>)> = all
        .par_iter()
        .map(|source| {
            let what = if source.kind == Kind::LibClient { "script" } else { "module" };
            let key = Cache::key(what, &source.path, &source.digest, code);
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

    let mut compiled = Vec::with_capacity(results.len());
    let mut failed = BTreeSet::new();
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
    let browser = compiled.split_off(compiled.len() - link::BROWSER_FILES.len());
    let loader = compiled.pop().expect("the loader was compiled before the browser library");
    CompiledApp { files: compiled, loader, browser, failed, problems, fresh, cached }
}
