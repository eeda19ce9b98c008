//! Stage 3: compiled modules in, bundles out.
//!
//! Resolves every `require`/`import` to a module of the same bundle, works out
//! the API trees, and writes the client bundle (lib/client scripts, the module
//! loader, app/client and app/shared modules) and the server bundle (app/server,
//! lib/server and app/shared modules), each ending with the boot call that
//! mounts its trees.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::BuildConfig;
use crate::diagnostic::Diagnostic;
use crate::discover::{Kind, MODULE_EXTENSIONS, Source};
use crate::disk::normalize;
use crate::exports::{ActionNode, RESERVED_ACTIONS, is_action_identifier};
use crate::js::Compiled;
use crate::tree::{Node, Tree, build_tree, is_private, modules_of};

/// One bundle's text and (in development) its source map.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// JavaScript.
    pub code: String,
    /// An index source map of `code`, as JSON.
    pub map: Option<String>,
}

/// What the manifest says about one module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleEntry {
    /// `client` or `server`: the bundle holding the module (shared modules are in both).
    pub bundles: Vec<String>,
    /// Its id in the client bundle, if there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<usize>,
    /// Its id in the server bundle, if there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<usize>,
    /// Exported names (with those of `export * from` followed).
    pub exports: BTreeSet<String>,
    /// Server files: the `exports.actions` tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<BTreeMap<String, ActionNode>>,
    /// Server files: `exports.authenticate = true`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub authenticate: bool,
}

/// The linked app.
#[derive(Debug)]
pub struct Linked {
    /// The bundle for browsers.
    pub client: Bundle,
    /// The bundle for ssrun (never served).
    pub server: Bundle,
    /// `SS.client`, `SS.shared`, `SS.server` (leaves are module paths).
    pub trees: BTreeMap<&'static str, Tree>,
    /// Every module, by path.
    pub modules: BTreeMap<String, ModuleEntry>,
    /// `lib/server` modules by the name server code uses for them.
    pub lib_server: BTreeMap<String, usize>,
}

/// The module loader every bundle starts with.
pub const LOADER_PATH: &str = "client/modules.js";
/// Its text, embedded.
pub const LOADER_SOURCE: &str = include_str!("../../client/modules.js");
/// The browser library that only the client bundle carries, in order:
/// `SS.tmpl`, then the socket (`SS.server`, `SS.events`, `SS.socket`).
pub const BROWSER_FILES: [(&str, &str); 2] = [
    ("client/tmpl.js", include_str!("../../client/tmpl.js")),
    ("client/socket.js", include_str!("../../client/socket.js")),
];

/// Links compiled sources. `compiled[i]` belongs to `sources[i]`, and
/// `server_copies` holds the server bundle's own compilation of a source
/// where it differs; `loader` is
/// the compiled loader, `browser` the compiled browser library (one entry per [`BROWSER_FILES`]). `failed` lists sources that did not compile (their
/// entries in `compiled` are empty): linking then only looks for more errors.
/// `left_out` gets the private-folder modules that nothing requires: they are
/// not packed, and their problems are not the pack's. `refused` names the
/// files that were found but left out with a problem of their own (a link
/// into server code, say): a require of one is not reported again as a
/// module that is not there.
#[allow(clippy::too_many_arguments)]
pub fn link(
    sources: &[Source],
    compiled: &[Arc<Compiled>],
    server_copies: &BTreeMap<usize, Arc<Compiled>>,
    loader: &Compiled,
    browser: &[Arc<Compiled>],
    failed: &BTreeSet<usize>,
    refused: &BTreeSet<String>,
    config: &BuildConfig,
    left_out: &mut BTreeSet<String>,
) -> Result<Linked, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let by_path: HashMap<&str, usize> = sources.iter().enumerate().map(|(i, s)| (s.path.as_str(), i)).collect();
    // The same lookup for the refused files (the index means nothing).
    let refused: HashMap<&str, usize> = refused.iter().map(|path| (path.as_str(), 0)).collect();
    let paths = Paths { found: &by_path, refused: &refused };

    // Trees.
    let mut trees = BTreeMap::new();
    for (name, kind) in [("client", Kind::Client), ("shared", Kind::Shared), ("server", Kind::Server)] {
        match build_tree(sources.iter().filter(|s| s.kind == kind), &config.private_folders) {
            Ok(tree) => {
                trees.insert(name, tree);
            }
            Err(mut d) => problems.append(&mut d),
        }
    }
    let exports = follow_star_exports(sources, compiled, &by_path);
    check_app_init(sources, compiled, &exports, failed, &by_path, &mut problems);
    check_imports(sources, compiled, &exports, failed, &by_path, config, &mut problems);
    check_lib_server_names(sources, &mut problems);
    let mut actions = Vec::new();
    if let Some(server_tree) = trees.get("server") {
        server_actions(server_tree, "", compiled, failed, &by_path, &mut actions);
    }
    check_action_names(&actions, &mut problems);

    // Bundles: which sources each holds, in load order.
    let mut private = PrivateModules::new();
    let client = plan(
        sources,
        compiled,
        &[Kind::Client, Kind::Shared],
        Side::Client,
        paths,
        config,
        &mut problems,
        &mut private,
    );
    let server = plan(
        sources,
        compiled,
        &[Kind::Server, Kind::LibServer, Kind::Shared],
        Side::Server,
        paths,
        config,
        &mut problems,
        &mut private,
    );
    // A private-folder module nothing requires is not packed: what is wrong
    // with it (a require of a Node.js package, say) does not matter.
    for (&m, (reached, found)) in &mut private {
        if *reached {
            problems.append(found);
        } else {
            left_out.insert(sources[m].path.clone());
        }
    }
    if !problems.is_empty() || failed.iter().any(|&m| !left_out.contains(&sources[m].path)) {
        return Err(problems);
    }
    let (client_members, client_ids, client_deps) = (client.members, client.ids, client.deps);
    let (server_members, server_ids, server_deps) = (server.members, server.ids, server.deps);

    let mut modules = BTreeMap::new();
    for (i, source) in sources.iter().enumerate() {
        let (client_id, server_id) = (client_ids.get(&i).copied(), server_ids.get(&i).copied());
        if client_id.is_none() && server_id.is_none() {
            continue;
        }
        let bundles = [("client", client_id), ("server", server_id)]
            .iter()
            .filter(|(_, id)| id.is_some())
            .map(|(n, _)| n.to_string())
            .collect();
        let is_server = source.kind == Kind::Server;
        modules.insert(
            source.path.clone(),
            ModuleEntry {
                bundles,
                client_id,
                server_id,
                exports: exports[i].clone(),
                actions: if is_server { Some(compiled[i].exports.actions.clone().unwrap_or_default()) } else { None },
                authenticate: is_server && compiled[i].exports.authenticate,
            },
        );
    }
    let lib_server = server_members
        .iter()
        .filter(|&&s| sources[s].kind == Kind::LibServer)
        .map(|&s| (lib_server_name(&sources[s]), server_ids[&s]))
        .collect();

    let development = config.env == "development";
    // Modules of the API trees run when their bundle starts; the others when first required.
    let in_trees: std::collections::HashSet<&str> = trees.values().flat_map(modules_of).collect();
    let lib_scripts: Vec<usize> =
        sources.iter().enumerate().filter(|(_, s)| s.kind == Kind::LibClient).map(|(i, _)| i).collect();
    let mut client = Writer::new(config.source_maps);
    // A statement first: a `"use strict"` opening the first script must not
    // become the directive of the whole bundle, making every script after it strict.
    if !lib_scripts.is_empty() {
        client.push_raw(";\n");
    }
    for &i in &lib_scripts {
        client.push_module(&compiled[i]);
        client.push_raw("\n;\n");
    }
    client.push_module(loader);
    client.push_raw("\n");
    // The actions found in app/server, for the browser library to make
    // SS.server's stubs from before the first session is ready.
    client.push_raw(&format!("__ss.api = {};\n", serde_json::Value::Object(api_tree(&actions))));
    for part in browser {
        client.push_module(part);
        client.push_raw("\n");
    }
    write_modules(&mut client, |s| &compiled[s], &client_members, &client_deps);
    let client_trees = [("client", &trees["client"]), ("shared", &trees["shared"])];
    let start: Vec<usize> = client_members
        .iter()
        .filter(|&&s| in_trees.contains(sources[s].path.as_str()))
        .map(|s| client_ids[s])
        .collect();
    client.push_raw(&boot_call(
        &client_trees,
        &client_ids,
        &by_path,
        &start,
        development.then_some((&client_members, sources)),
    ));

    let mut server = Writer::new(config.source_maps);
    server.push_module(loader);
    server.push_raw("\n");
    write_modules(&mut server, |s| server_copies.get(&s).unwrap_or(&compiled[s]), &server_members, &server_deps);
    let start: Vec<usize> = server_members
        .iter()
        .filter(|&&s| in_trees.contains(sources[s].path.as_str()))
        .map(|s| server_ids[s])
        .collect();
    let server_trees = [("shared", &trees["shared"])];
    server.push_raw(&boot_call(&server_trees, &server_ids, &by_path, &start, Some((&server_members, sources))));

    Ok(Linked { client: client.finish(), server: server.finish(), trees, modules, lib_server })
}

fn members(sources: &[Source], kinds: &[Kind]) -> Vec<usize> {
    kinds.iter().flat_map(|k| sources.iter().enumerate().filter(move |(_, s)| s.kind == *k).map(|(i, _)| i)).collect()
}

fn check_app_init(
    sources: &[Source],
    compiled: &[Arc<Compiled>],
    exports: &[BTreeSet<String>],
    failed: &BTreeSet<usize>,
    by_path: &HashMap<&str, usize>,
    problems: &mut Vec<Diagnostic>,
) {
    let app = crate::discover::MODULE_EXTENSIONS
        .iter()
        .find_map(|ext| by_path.get(format!("app/client/app.{ext}").as_str()).copied());
    match app {
        None => problems.push(
            Diagnostic::file("app/client/app.js", "the app has no app/client/app.js (or app.ts)")
                .with_help("create it with `exports.init = function () { ... }`: it runs once the socket is up and the session is ready"),
        ),
        // Names re-exported with `export * from` count; when some file failed to
        // compile, what it would re-export is unknown, so the check waits for it.
        Some(i) if !failed.contains(&i)
            && !exports[i].contains("init")
            && (compiled[i].exports.star_from.is_empty() || failed.is_empty()) => problems.push(
            Diagnostic::file(&sources[i].path, "app/client/app must export `init`")
                .with_help("add `exports.init = function () { ... }` (or `export function init() { ... }`): it runs once the session is ready"),
        ),
        Some(_) => {}
    }
}

/// Names imported from an ES module that does not export them: in a
/// browser's own ES modules that stops the whole page from loading; packed,
/// the name would be `undefined` at run time, far from the typo. Only
/// modules whose exports are all known are checked against: an ES module
/// (not CommonJS, which may add exports at run time) whose `export *`s lead
/// only to such modules. A module in a private folder is checked only when
/// something requires it (its problems count then), so not here. Nor is a
/// TypeScript module's import from another TypeScript module: the name may
/// be a type (`export { Props } from './types'`), which strip cannot tell
/// from a value without the types; nor a TypeScript module's re-export by
/// name, which may name a type a declaration file beside a JavaScript
/// module gives.
fn check_imports(
    sources: &[Source],
    compiled: &[Arc<Compiled>],
    exports: &[BTreeSet<String>],
    failed: &BTreeSet<usize>,
    by_path: &HashMap<&str, usize>,
    config: &BuildConfig,
    problems: &mut Vec<Diagnostic>,
) {
    // Whether each module's exports are all known, its `export *`s followed:
    // every ES module that compiled, then, round by round, not those whose
    // `export *` leads to a module that is not (or to none). What stays is
    // the largest such set, so a cycle of `export *`s adds nothing unknown,
    // whichever module of it is asked about first.
    let stars: Vec<Vec<Option<usize>>> = sources
        .iter()
        .zip(compiled)
        .map(|(s, c)| c.exports.star_from.iter().map(|spec| resolve(&s.path, spec, side_of(s), by_path).ok()).collect())
        .collect();
    let mut known: Vec<bool> = (0..sources.len()).map(|i| compiled[i].es_module && !failed.contains(&i)).collect();
    let mut changed = true;
    while changed {
        changed = false;
        for i in 0..sources.len() {
            if known[i] && stars[i].iter().any(|target| !target.is_some_and(|t| known[t])) {
                known[i] = false;
                changed = true;
            }
        }
    }
    for (i, source) in sources.iter().enumerate() {
        if failed.contains(&i) || is_private(&source.path, &config.private_folders) {
            continue;
        }
        for import in &compiled[i].imports {
            // A require that does not resolve is reported as such.
            let Ok(target) = resolve(&source.path, &import.specifier, side_of(source), by_path) else { continue };
            if exports[target].contains(&import.name)
                || (source.is_typescript() && (sources[target].is_typescript() || import.reexport))
                || !known[target]
            {
                continue;
            }
            let what = &sources[target].path;
            let message = if import.name == "default" {
                format!("{what} has no default export")
            } else {
                format!("`{}` is not exported by {what}", import.name)
            };
            let names = &exports[target];
            let near = names
                .iter()
                .find(|n| n.eq_ignore_ascii_case(&import.name) || crate::diagnostic::nearly(n, &import.name));
            let help = match near {
                Some(near) if import.name == "default" => format!("import a name it exports, such as `{{ {near} }}`"),
                Some(near) => format!("did you mean `{near}`?"),
                None if names.is_empty() => format!("{what} exports nothing"),
                None => {
                    let list: Vec<&str> = names.iter().map(String::as_str).take(12).collect();
                    format!("it exports {}{}", list.join(", "), if names.len() > 12 { ", ..." } else { "" })
                }
            };
            problems.push(Diagnostic::at_or_file(&source.path, &source.text, import.position, message).with_help(help));
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// The modules of one bundle, in load order, with their ids and resolved requires.
struct Plan {
    /// Source indexes, in load order; a module's id is its position here.
    members: Vec<usize>,
    /// Source index -> id.
    ids: HashMap<usize, usize>,
    /// For each member: specifier -> id.
    deps: Vec<BTreeMap<String, usize>>,
}

/// Resolves the requires of the sources of `kinds`, then keeps the modules
/// that can run: every module outside the private folders, and the private
/// modules they require (directly or not).
/// The private-folder modules of both bundles: whether a bundle requires
/// each, and the problems found with it (which count only if one does).
type PrivateModules = BTreeMap<usize, (bool, Vec<Diagnostic>)>;

/// The sources by path, and the files left out with a problem of their own
/// (see [`link`]).
#[derive(Clone, Copy)]
struct Paths<'a> {
    found: &'a HashMap<&'a str, usize>,
    refused: &'a HashMap<&'a str, usize>,
}

#[allow(clippy::too_many_arguments)]
fn plan(
    sources: &[Source],
    compiled: &[Arc<Compiled>],
    kinds: &[Kind],
    side: Side,
    paths: Paths<'_>,
    config: &BuildConfig,
    problems: &mut Vec<Diagnostic>,
    private: &mut PrivateModules,
) -> Plan {
    let candidates = members(sources, kinds);
    let in_bundle: BTreeSet<usize> = candidates.iter().copied().collect();
    let mut found: HashMap<usize, Vec<Diagnostic>> = HashMap::new();
    let resolved: HashMap<usize, BTreeMap<String, usize>> = candidates
        .iter()
        .map(|&m| {
            let own = found.entry(m).or_default();
            (m, resolve_requires(sources, compiled, m, &in_bundle, side, paths, own))
        })
        .collect();

    let mut reachable: BTreeSet<usize> = BTreeSet::new();
    let mut queue: Vec<usize> =
        candidates.iter().copied().filter(|&m| !is_private(&sources[m].path, &config.private_folders)).collect();
    while let Some(m) = queue.pop() {
        if reachable.insert(m) {
            queue.extend(resolved[&m].values().copied());
        }
    }
    for &m in &candidates {
        let own = found.remove(&m).unwrap_or_default();
        if is_private(&sources[m].path, &config.private_folders) {
            let entry = private.entry(m).or_default();
            entry.0 |= reachable.contains(&m);
            entry.1.extend(own);
        } else {
            problems.extend(own);
        }
    }
    let members: Vec<usize> = candidates.into_iter().filter(|m| reachable.contains(m)).collect();
    let ids: HashMap<usize, usize> = members.iter().enumerate().map(|(id, &s)| (s, id)).collect();
    let deps = members
        .iter()
        .map(|m| resolved[m].iter().map(|(spec, target)| (spec.clone(), ids[target])).collect())
        .collect();
    Plan { members, ids, deps }
}

/// One module's requires: specifier -> source index of a module in the same bundle.
fn resolve_requires(
    sources: &[Source],
    compiled: &[Arc<Compiled>],
    m: usize,
    in_bundle: &BTreeSet<usize>,
    side: Side,
    paths: Paths<'_>,
    problems: &mut Vec<Diagnostic>,
) -> BTreeMap<String, usize> {
    let source = &sources[m];
    let mut deps = BTreeMap::new();
    for req in &compiled[m].requires {
        // Shared modules are linked into both bundles. The client side reports
        // every problem of theirs; the server side only what the client side
        // cannot see: a require of a browser-only file.
        let report_all = !(side == Side::Server && source.kind == Kind::Shared);
        let problem = match resolve(&source.path, &req.specifier, side, paths.found) {
            Ok(target) if in_bundle.contains(&target) => {
                deps.insert(req.specifier.clone(), target);
                continue;
            }
            Ok(target) => wrong_side(&sources[target], side),
            Err(_) if !report_all => continue,
            // What it names was found and refused, and that was reported at the file.
            Err(_) if resolve(&source.path, &req.specifier, side, paths.refused).is_ok() => continue,
            Err(p) => p,
        };
        let (message, help) = problem;
        problems.push(Diagnostic::at_or_file(&source.path, &source.text, req.position, message).with_help(help));
    }
    deps
}

fn wrong_side(target: &Source, side: Side) -> (String, String) {
    if target.kind == Kind::LibClient {
        return (
            format!("`{}` is a classic script, not a module: it cannot be required", target.path),
            "lib/client scripts run in order before any module: use the globals they define".to_string(),
        );
    }
    match side {
        Side::Client => (
            format!("`{}` is not sent to browsers, so browser code cannot require it", target.path),
            "move the code both sides need to app/shared".to_string(),
        ),
        Side::Server => (
            format!("`{}` runs only in browsers, so server code cannot require it", target.path),
            "move the code both sides need to app/shared".to_string(),
        ),
    }
}

/// Resolves a specifier written in `from` to a source index.
fn resolve(from: &str, specifier: &str, side: Side, by_path: &HashMap<&str, usize>) -> Result<usize, (String, String)> {
    // As in Node, `.`, `..` and a path ending in `/` name a folder only.
    let folder_only = specifier == "." || specifier == ".." || specifier.ends_with('/');
    // The candidates in order, tried one by one (most requires name their
    // file exactly, and are found by the first).
    let find = |base: &str| -> Option<usize> {
        let get = |candidate: &str| by_path.get(candidate).copied();
        if !folder_only {
            if let Some(i) = get(base) {
                return Some(i);
            }
            let mut candidate = String::with_capacity(base.len() + 10);
            for ext in MODULE_EXTENSIONS {
                candidate.clear();
                candidate.push_str(base);
                candidate.push('.');
                candidate.push_str(ext);
                if let Some(i) = get(&candidate) {
                    return Some(i);
                }
            }
            // TypeScript style: `./x.js` written for `x.ts`.
            if let Some(stem) = base.strip_suffix(".js") {
                for ext in ["ts", "mts", "cts"] {
                    if let Some(i) = get(&format!("{stem}.{ext}")) {
                        return Some(i);
                    }
                }
            }
        }
        MODULE_EXTENSIONS.iter().find_map(|ext| get(&format!("{base}/index.{ext}")))
    };
    let base = if specifier.starts_with("./") || specifier.starts_with("../") || specifier == "." || specifier == ".." {
        let dir = from.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        match normalize(&format!("{dir}/{specifier}")) {
            Some(p) => p,
            None => {
                return Err((
                    format!("'{specifier}' points outside the app"),
                    "require files inside the app folders".into(),
                ));
            }
        }
    } else if specifier.starts_with('/') {
        return Err((
            format!("'{specifier}' is an absolute path"),
            "use a path relative to this file, such as './x'".into(),
        ));
    } else if side == Side::Server {
        format!("lib/server/{specifier}")
    } else {
        return Err((
            format!("'{specifier}' is a package name, and packages from node_modules are not supported yet"),
            "put the library's file in lib/client (a script) or app/client (a module), and require it by relative path"
                .into(),
        ));
    };
    if let Some(i) = find(&base) {
        return Ok(i);
    }
    if let Some(refused) = not_a_module(specifier, side) {
        return Err(refused);
    }
    let help = if side == Side::Server && !specifier.starts_with('.') {
        format!("server code finds bare names in lib/server: create lib/server/{specifier}.js, or use a relative path")
    } else {
        "check the path; names starting with `_` or `.` are not packed".to_string()
    };
    Err((format!("module '{specifier}' not found (looked for {base}, with .js/.ts and /index)"), help))
}

/// Why a specifier naming a file that is not JavaScript or TypeScript
/// (`./data.json`, `./app.css`, `./view.jsx`) cannot be required, and what to
/// do instead, on the side that requires it.
fn not_a_module(specifier: &str, side: Side) -> Option<(String, String)> {
    let name = specifier.rsplit('/').next().unwrap_or(specifier);
    let (_, ext) = name.rsplit_once('.').filter(|(stem, _)| !stem.is_empty())?;
    let ext = ext.to_ascii_lowercase();
    // Only names that are surely files of another kind: `./jquery.min` and
    // `./lodash.debounce` are modules with a dot in their names.
    let help = match (ext.as_str(), side) {
        ("jsx" | "tsx", _) => {
            return Some((
                format!("'{specifier}' names a .{ext} file, and JSX is not supported yet"),
                "write the component with plain calls (`h('div', props, children)` or your library's equivalent) \
                 in a .js or .ts file"
                    .to_string(),
            ));
        }
        ("json", Side::Client) => {
            "make it a module (`module.exports = { ... }` in a .js file), or serve it from public/ and fetch it"
        }
        ("css" | "scss" | "sass" | "less", Side::Client) => {
            "stylesheets are packed from app/css: @import it from app/css/app.scss"
        }
        ("html" | "htm", Side::Client) => {
            "templates in app/views reach the browser through SS.tmpl; the layout is app/views/app.html"
        }
        (
            "txt" | "md" | "svg" | "png" | "jpg" | "jpeg" | "gif" | "webp" | "wasm" | "yaml" | "yml" | "toml" | "csv"
            | "xml",
            Side::Client,
        ) => "put the file in public/ and fetch it by URL, or turn its content into a module",
        // Server code: nothing here should end up public.
        (
            "json" | "css" | "scss" | "sass" | "less" | "html" | "htm" | "txt" | "md" | "svg" | "png" | "jpg" | "jpeg"
            | "gif" | "webp" | "wasm" | "yaml" | "yml" | "toml" | "csv" | "xml",
            Side::Server,
        ) => {
            "turn its content into a module (`module.exports = { ... }` in a .js file beside it); secrets belong \
             in the environment, which server code reads as `process.env` (`process.env.DATABASE_URL`)"
        }
        _ => return None,
    };
    Some((
        format!("'{specifier}' names a .{ext} file, and only JavaScript and TypeScript modules can be required"),
        help.to_string(),
    ))
}

/// Exported names with `export * from` followed (cycles stop), less the
/// names of TypeScript types re-exported by name (see [`drop_type_reexports`]).
fn follow_star_exports(
    sources: &[Source],
    compiled: &[Arc<Compiled>],
    by_path: &HashMap<&str, usize>,
) -> Vec<BTreeSet<String>> {
    let mut own: Vec<BTreeSet<String>> = compiled.iter().map(|c| c.exports.names.clone()).collect();
    // Named re-exports from one TypeScript module of another: (module,
    // name, name in the target, target).
    let mut between_typescript = Vec::new();
    for i in (0..sources.len()).filter(|&i| sources[i].is_typescript()) {
        for (name, orig, spec) in &compiled[i].exports.named_from {
            if let Ok(target) = resolve(&sources[i].path, spec, side_of(&sources[i]), by_path)
                && sources[target].is_typescript()
            {
                between_typescript.push((i, name.as_str(), orig.as_str(), target));
            }
        }
    }
    // Each round but the last drops at least one name, so the rounds end.
    loop {
        let names = expand_star_exports(sources, compiled, by_path, &own);
        if !drop_type_reexports(&between_typescript, &names, &mut own) {
            return names;
        }
    }
}

/// Each module's names `own`, with those of the modules it `export * from`s.
fn expand_star_exports(
    sources: &[Source],
    compiled: &[Arc<Compiled>],
    by_path: &HashMap<&str, usize>,
    own: &[BTreeSet<String>],
) -> Vec<BTreeSet<String>> {
    fn collect(
        i: usize,
        sources: &[Source],
        compiled: &[Arc<Compiled>],
        by_path: &HashMap<&str, usize>,
        own: &[BTreeSet<String>],
        seen: &mut BTreeSet<usize>,
        out: &mut BTreeSet<String>,
    ) {
        if !seen.insert(i) {
            return;
        }
        out.extend(own[i].iter().cloned());
        for spec in &compiled[i].exports.star_from {
            if let Ok(target) = resolve(&sources[i].path, spec, side_of(&sources[i]), by_path) {
                let mut inner = BTreeSet::new();
                collect(target, sources, compiled, by_path, own, seen, &mut inner);
                inner.remove("default");
                out.extend(inner);
            }
        }
    }
    (0..sources.len())
        .map(|i| {
            if compiled[i].exports.star_from.is_empty() {
                return own[i].clone();
            }
            let mut out = BTreeSet::new();
            collect(i, sources, compiled, by_path, own, &mut BTreeSet::new(), &mut out);
            out
        })
        .collect()
}

fn side_of(source: &Source) -> Side {
    if matches!(source.kind, Kind::Server | Kind::LibServer) { Side::Server } else { Side::Client }
}

/// TypeScript's `export { T } from './types'` of a type: no name at run
/// time, so not one of the module's exports. A name re-exported by name from
/// another TypeScript module whose exports (`names`, with its `export *`s
/// followed) lack it is dropped from `own`; says whether one was. Types are
/// stripped from a module's exports, so over rounds of this and of
/// [`expand_star_exports`] they leave chains of re-exports of either kind.
/// A name re-exported from a JavaScript module stays: such a module may set
/// its exports at run time (CommonJS), so its list can be short.
fn drop_type_reexports(
    between_typescript: &[(usize, &str, &str, usize)],
    names: &[BTreeSet<String>],
    own: &mut [BTreeSet<String>],
) -> bool {
    let mut changed = false;
    for &(i, name, orig, target) in between_typescript {
        if !names[target].contains(orig) {
            changed |= own[i].remove(name);
        }
    }
    changed
}

/// Two `lib/server` files with one module name (`auth.js`, `auth.ts`,
/// `auth/index.js`) would leave `require('auth')` and the manifest's list of
/// authentication modules naming different files.
fn check_lib_server_names(sources: &[Source], problems: &mut Vec<Diagnostic>) {
    let mut by_name: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for source in sources.iter().filter(|s| s.kind == Kind::LibServer) {
        by_name.entry(lib_server_name(source)).or_default().push(&source.path);
    }
    for (name, mut paths) in by_name.into_iter().filter(|(_, paths)| paths.len() > 1) {
        paths.sort_unstable();
        let listed = paths.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(" and ");
        problems.push(
            Diagnostic::file(paths[0], format!("{listed} are one lib/server module, `{name}`"))
                .with_help("keep one of them, or rename the others"),
        );
    }
}

/// The actions of the server tree's files that compiled: each file's path
/// and its actions' full names (`chat.room.send`: the file's place in the
/// tree, then its key in `exports.actions`).
fn server_actions<'a>(
    tree: &'a Tree,
    prefix: &str,
    compiled: &[Arc<Compiled>],
    failed: &BTreeSet<usize>,
    by_path: &HashMap<&str, usize>,
    out: &mut Vec<(&'a str, Vec<String>)>,
) {
    for (key, node) in tree {
        let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match node {
            Node::Folder(inner) => server_actions(inner, &name, compiled, failed, by_path, out),
            Node::Module(path) => {
                let Some(&i) = by_path.get(path.as_str()).filter(|i| !failed.contains(i)) else { continue };
                let mut found = Vec::new();
                if let Some(actions) = &compiled[i].exports.actions {
                    action_names(actions, &name, &mut found);
                }
                out.push((path.as_str(), found));
            }
        }
    }
}

/// Every action's full name is one `SS.server` and ssrun can call: parts
/// that are JavaScript identifiers (ASCII letters, digits, `_` and `$`, as in
/// `/api/chat/room/send`), the last of them not `session` or `user`, which
/// the action's `this` holds. ssrun checks the same when it starts; found
/// here, the mistake stops the pack instead.
fn check_action_names(actions: &[(&str, Vec<String>)], problems: &mut Vec<Diagnostic>) {
    for (path, found) in actions {
        let mut reported = BTreeSet::new();
        for full in found {
            let parts: Vec<&str> = full.split('.').collect();
            let (message, help) = if let Some(bad) = parts.iter().find(|p| !is_action_identifier(p)) {
                (
                    format!(
                        "the action `{full}` cannot be called: `{bad}` is not a JavaScript identifier (the name \
                         comes from this file's path and its key in `exports.actions`)"
                    ),
                    "use ASCII letters, digits, `_` and `$` in file and folder names under app/server and in action \
                     keys (chat_room.js rather than chat-room.js)",
                )
            } else if let Some(reserved) = parts.last().filter(|p| RESERVED_ACTIONS.contains(p)) {
                (
                    format!(
                        "the action `{full}` cannot be called `{reserved}`: `session` and `user` are kept for \
                         the action's own context (`this.session`)"
                    ),
                    "rename the action",
                )
            } else {
                continue;
            };
            // One report per file and kind of mistake is enough.
            if reported.insert(help) {
                problems.push(Diagnostic::file(*path, message).with_help(help));
            }
        }
    }
}

/// The server API tree as the browser library takes it: nested objects
/// whose leaves (`1`) are the actions' names. A name that is both an action
/// and a namespace (ssrun refuses that) keeps the first.
fn api_tree(actions: &[(&str, Vec<String>)]) -> serde_json::Map<String, serde_json::Value> {
    let mut api = serde_json::Map::new();
    'names: for name in actions.iter().flat_map(|(_, names)| names) {
        let parts: Vec<&str> = name.split('.').collect();
        let (last, branches) = parts.split_last().expect("a name has a part");
        let mut at = &mut api;
        for part in branches {
            let next = at.entry(part.to_string()).or_insert_with(|| serde_json::Value::Object(Default::default()));
            match next {
                serde_json::Value::Object(inner) => at = inner,
                _ => continue 'names,
            }
        }
        at.entry(last.to_string()).or_insert(serde_json::Value::from(1));
    }
    api
}

fn action_names(node: &BTreeMap<String, ActionNode>, prefix: &str, out: &mut Vec<String>) {
    for (key, child) in node {
        let name = format!("{prefix}.{key}");
        match child {
            ActionNode::Action(_) => out.push(name),
            ActionNode::Namespace(inner) => action_names(inner, &name, out),
        }
    }
}

fn lib_server_name(source: &Source) -> String {
    let inner = source.inner_path();
    let (dir, file) = inner.rsplit_once('/').map(|(d, f)| (Some(d), f)).unwrap_or((None, inner));
    // Only the extension goes: `db.config.js` is the module `db.config`, as
    // `require('db.config')` finds it.
    let stem = MODULE_EXTENSIONS.iter().find_map(|ext| file.strip_suffix(&format!(".{ext}"))).unwrap_or(file);
    match (dir, stem) {
        (Some(d), "index") => d.to_string(),
        (Some(d), s) => format!("{d}/{s}"),
        (None, s) => s.to_string(),
    }
}

fn write_modules<'a>(
    w: &mut Writer<'a>,
    code: impl Fn(usize) -> &'a Compiled,
    members: &[usize],
    deps: &[BTreeMap<String, usize>],
) {
    for (id, (&s, deps)) in members.iter().zip(deps).enumerate() {
        let deps = serde_json::to_string(deps).expect("a map of strings to numbers is JSON");
        w.push_raw(&format!("__ss.d({id},{deps},function(require,module,exports){{\n"));
        w.push_module(code(s));
        w.push_raw("\n});\n");
    }
}

fn boot_call(
    trees: &[(&str, &Tree)],
    ids: &HashMap<usize, usize>,
    by_path: &HashMap<&str, usize>,
    start: &[usize],
    names: Option<(&Vec<usize>, &[Source])>,
) -> String {
    fn numbered(tree: &Tree, ids: &HashMap<usize, usize>, by_path: &HashMap<&str, usize>) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (key, node) in tree {
            let value = match node {
                Node::Module(path) => match by_path.get(path.as_str()).and_then(|s| ids.get(s)) {
                    Some(id) => serde_json::Value::from(*id),
                    None => continue,
                },
                Node::Folder(inner) => numbered(inner, ids, by_path),
            };
            map.insert(key.clone(), value);
        }
        serde_json::Value::Object(map)
    }
    let mut mounts = serde_json::Map::new();
    for (name, tree) in trees {
        mounts.insert((*name).to_string(), numbered(tree, ids, by_path));
    }
    let start = serde_json::to_string(start).expect("numbers are JSON");
    let names = match names {
        Some((members, sources)) => {
            let paths: Vec<&str> = members.iter().map(|&s| sources[s].path.as_str()).collect();
            format!(",{}", serde_json::to_string(&paths).expect("strings are JSON"))
        }
        None => String::new(),
    };
    format!("__ss.boot({},{start}{names});\n", serde_json::Value::Object(mounts))
}

/// Concatenates code and builds an index source map of the parts that have one.
struct Writer<'a> {
    code: String,
    line: usize,
    sections: Option<Vec<(usize, &'a str)>>,
}

impl<'a> Writer<'a> {
    fn new(source_maps: bool) -> Self {
        Writer { code: String::new(), line: 0, sections: source_maps.then(Vec::new) }
    }

    fn push_raw(&mut self, text: &str) {
        // A plain byte count (vectorised), not a search for each newline.
        self.line += text.bytes().filter(|&b| b == b'\n').count();
        self.code.push_str(text);
    }

    fn push_module(&mut self, compiled: &'a Compiled) {
        if let (Some(sections), Some(map)) = (&mut self.sections, &compiled.map) {
            sections.push((self.line, map.as_str()));
        }
        self.push_raw(&compiled.code);
    }

    fn finish(self) -> Bundle {
        let map = self.sections.map(|sections| {
            let size = sections.iter().map(|(_, map)| map.len() + 48).sum::<usize>() + 32;
            let mut out = String::with_capacity(size);
            out.push_str(r#"{"version":3,"sections":["#);
            for (n, (line, map)) in sections.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"offset":{"line":"#);
                out.push_str(&line.to_string());
                out.push_str(r#","column":0},"map":"#);
                out.push_str(map);
                out.push('}');
            }
            out.push_str("]}");
            out
        });
        Bundle { code: self.code, map }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalize_inside_the_app_only() {
        assert_eq!(normalize("app/client/a/../b/./c").as_deref(), Some("app/client/b/c"));
        assert_eq!(normalize("app/../../x"), None);
    }

    #[test]
    fn specifiers_resolve_with_extensions_and_index_files() {
        let paths = ["app/client/a.js", "app/client/lib/index.ts", "app/shared/x.ts", "lib/server/auth.js"];
        let by_path: HashMap<&str, usize> = paths.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        assert_eq!(resolve("app/client/b.js", "./a", Side::Client, &by_path), Ok(0));
        assert_eq!(resolve("app/client/b.js", "./lib", Side::Client, &by_path), Ok(1));
        assert_eq!(resolve("app/client/b.js", "../shared/x.js", Side::Client, &by_path), Ok(2));
        assert_eq!(resolve("app/server/s.js", "auth", Side::Server, &by_path), Ok(3));
        let err = resolve("app/client/b.js", "lodash", Side::Client, &by_path).unwrap_err();
        assert!(err.0.contains("packages from node_modules are not supported yet"));
        let err = resolve("app/client/b.js", "./nope", Side::Client, &by_path).unwrap_err();
        assert!(err.0.contains("module './nope' not found"));
        // A file of another kind is named as such, with what to do instead;
        // a module with a dot in its name is only not found.
        let (message, help) = resolve("app/client/b.js", "./data.json", Side::Client, &by_path).unwrap_err();
        assert!(message.contains("'./data.json' names a .json file, and only JavaScript and TypeScript"), "{message}");
        assert!(help.contains("module.exports") && help.contains("public/"), "{help}");
        let (_, help) = resolve("app/client/b.js", "../css/app.SCSS", Side::Client, &by_path).unwrap_err();
        assert!(help.contains("app/css/app.scss"), "{help}");
        // Server code is never told to make a file public.
        let (_, help) = resolve("app/server/s.js", "../../config/db.json", Side::Server, &by_path).unwrap_err();
        assert!(help.contains("module.exports") && !help.contains("public/"), "{help}");
        let (message, _) = resolve("app/client/b.js", "./Comp.jsx", Side::Client, &by_path).unwrap_err();
        assert!(message.contains("JSX is not supported yet"), "{message}");
        let err = resolve("app/client/b.js", "./jquery.min", Side::Client, &by_path).unwrap_err();
        assert!(err.0.contains("module './jquery.min' not found"), "{}", err.0);
        // `.`, `..` and `dir/` name the folder's index, never a file beside the folder.
        let paths = ["app/client/pkg.js", "app/client/pkg/index.js", "app/client/pkg/user.js"];
        let by_path: HashMap<&str, usize> = paths.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        assert_eq!(resolve("app/client/pkg/user.js", ".", Side::Client, &by_path), Ok(1));
        assert_eq!(resolve("app/client/pkg/user.js", "./", Side::Client, &by_path), Ok(1));
        assert_eq!(resolve("app/client/b.js", "./pkg/", Side::Client, &by_path), Ok(1));
        assert_eq!(resolve("app/client/b.js", "./pkg", Side::Client, &by_path), Ok(0));
    }
}
