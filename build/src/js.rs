//! Stage 2 for code: one JavaScript or TypeScript file in, compiled code out.
//!
//! A module is parsed with swc, its exports are read ([`crate::exports`]),
//! TypeScript is stripped, ES `import`/`export` become CommonJS
//! `require`/`exports`, and the result is minified (production) or printed with
//! a source map (development). The output is the *body* of a module function
//! `function (require, module, exports) { ... }`: the linker writes the wrapper,
//! so that compiled code does not depend on module numbering and can be cached
//! by the file's content alone. Library scripts (`lib/client`) are plain
//! scripts: minified without renaming their globals, or passed through.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use swc_core::common::comments::{Comment, CommentKind, Comments, SingleThreadedComments};
use swc_core::common::source_map::SourceMapGenConfig;
use swc_core::common::sync::Lrc;
use swc_core::common::{
    BytePos, DUMMY_SP, FileName, GLOBALS, Globals, LineCol, Mark, SourceMap, Span, Spanned, SyntaxContext,
};
use swc_core::ecma::ast::{
    ArrowExpr, ArrowFunctionBody, AutoAccessor, AwaitExpr, BindingIdent, BlockStmt, CallExpr, Callee, CatchClause,
    Constructor, Decl, EmptyStmt, EsVersion, Expr, ExprOrSpread, ExprStmt, ForOfStmt, Function, FunctionBody,
    GetterProp, Ident, IdentName, Invalid, LabeledStmt, Lit, MemberExpr, MemberProp, MetaPropExpr, MetaPropKind,
    ModuleItem, Pat, Program, ReturnStmt, SetterProp, StaticBlock, Stmt, TryStmt, VarDecl, VarDeclKind, VarDeclarator,
};
use swc_core::ecma::atoms::Atom;
use swc_core::ecma::codegen::text_writer::JsWriter;
use swc_core::ecma::codegen::{Config as CodegenConfig, Emitter, Node as _};
use swc_core::ecma::minifier::option::{CompressOptions, ExtraOptions, MangleOptions, MinifyOptions};
use swc_core::ecma::parser::{EsSyntax, Syntax, TsSyntax, parse_file_as_program, parse_file_as_script};
use swc_core::ecma::transforms::base::fixer::fixer;
use swc_core::ecma::transforms::base::helpers::{HELPERS, Helpers, inject_helpers};
use swc_core::ecma::transforms::base::hygiene::hygiene;
use swc_core::ecma::transforms::base::resolver;
use swc_core::ecma::transforms::module::common_js::{self, FeatureFlag};
use swc_core::ecma::visit::{Visit, VisitMut, VisitMutWith, VisitWith};

use crate::diagnostic::Diagnostic;
use crate::exports::{Exports, read_exports};

/// How code is compiled; part of every cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CodeOptions {
    /// Minify (mangle, and compress if `compress`).
    pub minify: bool,
    /// When minifying, also rewrite code to smaller equivalents (swc's compress).
    pub compress: bool,
    /// Produce a source map.
    pub source_map: bool,
}

/// A `require('...')` (or `import`) found in a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Require {
    /// The specifier as written.
    pub specifier: String,
    /// 1-based line and column of the specifier, when known.
    pub position: Option<(usize, usize)>,
}

/// A name an ES module imports from another (`import { a } from './m'`,
/// `import a from './m'`: `default`), or re-exports by name (`export { a }
/// from './m'`): the linker checks that the other module exports it, when
/// that one's exports are all known (an ES module's are).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Import {
    /// The specifier as written.
    pub specifier: String,
    /// The name asked for.
    pub name: String,
    /// 1-based line and column of the name, when known.
    pub position: Option<(usize, usize)>,
    /// Re-exported (`export { a } from`) rather than imported.
    pub reexport: bool,
}

/// A compiled module or script.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compiled {
    /// The code (a module's function body, or a script).
    pub code: String,
    /// The source map of `code`, as JSON, when asked for.
    pub map: Option<String>,
    /// What the module exports (empty for scripts).
    pub exports: Exports,
    /// The modules it requires, in order of appearance, without duplicates.
    pub requires: Vec<Require>,
    /// Whether the code holds an `await` (see [`Awaits`]).
    pub awaits: bool,
    /// Whether the file was an ES module whose exports its syntax gives in
    /// full: one that never touches `module` or `exports` (a CommonJS
    /// module may add exports at run time).
    pub es_module: bool,
    /// The names it imports from other modules (an ES module's; TypeScript's
    /// imports of types are gone by then).
    pub imports: Vec<Import>,
}

/// What a module's `await` expressions become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Awaits {
    /// Left as written (browser code).
    Keep,
    /// Left as written, and noted in [`Compiled::awaits`] (`app/shared` as
    /// browsers get it: the server gets a [`Awaits::Tag`] copy when needed).
    Note,
    /// Async functions note the server's log tag when called (`__ss.t()`)
    /// and set it again wherever they resume (`__ss.e(tag, await x)`, and at
    /// the start of `catch` and `finally`): see [`AwaitTags`]. The module
    /// loader's versions do nothing; the server's prelude replaces them
    /// (docs/server.md, "Console output and timers").
    Tag,
}

/// Whether a file is TypeScript, by its extension.
pub fn is_typescript_path(path: &str) -> bool {
    [".ts", ".mts", ".cts"].iter().any(|ext| path.ends_with(ext))
}

/// Compiles one module of an app folder or `lib/server`, its `await`s left as written.
pub fn compile_module(path: &str, text: &str, options: CodeOptions) -> Result<Compiled, Vec<Diagnostic>> {
    compile_module_with(path, text, options, Awaits::Keep)
}

/// Compiles one module of an app folder or `lib/server`, its `await`s as `awaits` says.
pub fn compile_module_with(
    path: &str,
    text: &str,
    options: CodeOptions,
    awaits: Awaits,
) -> Result<Compiled, Vec<Diagnostic>> {
    let typescript = is_typescript_path(path);
    let syntax = if typescript {
        Syntax::Typescript(TsSyntax::default())
    } else {
        Syntax::Es(EsSyntax { allow_return_outside_function: true, ..Default::default() })
    };
    let unit = Unit::new(path, text, options);
    let mut errors = Vec::new();
    // A large ES module is parsed in parts on every core when it can be.
    let parsed = match crate::parse::module_in_parts(&unit.file, syntax, &unit.comments) {
        Some(program) => Ok(program),
        None => parse_file_as_program(&unit.file, syntax, EsVersion::latest(), Some(&unit.comments), &mut errors),
    };
    let program = match parsed {
        Ok(program) if errors.is_empty() => program,
        Ok(_) => return Err(unit.syntax_errors(errors)),
        Err(e) => {
            errors.push(e);
            return Err(unit.syntax_errors(errors));
        }
    };

    GLOBALS.set(&Globals::new(), || {
        HELPERS.set(&Helpers::new(false), || {
            let unresolved = Mark::new();
            let top_level = Mark::new();
            let mut program = program;
            program.mutate(resolver(unresolved, top_level, typescript));
            // Both only read the tree: on a large file they run side by side
            // on two cores. (The other thread has none of swc's globals, so
            // a mark is made into a context here, and only compared there.)
            let unresolved_context = SyntaxContext::empty().apply_mark(unresolved);
            let mut checked = None;
            let mistakes = rayon::in_place_scope(|scope| {
                scope.spawn(|_| {
                    let (exports, problems) = read_exports(&program);
                    let mut body = FunctionBodyCheck::new(unresolved_context);
                    program.visit_with(&mut body);
                    checked = Some((exports, module_problems(problems, body.found), body.exports_unlisted));
                });
                unit.early_errors(&program, unresolved, top_level)
            });
            let (exports, problems, exports_unlisted) = checked.expect("the scope waits for its tasks");
            if !problems.is_empty() {
                return Err(problems
                    .into_iter()
                    .map(|(span, message, help)| unit.diagnostic(span, message).with_help(help))
                    .collect());
            }
            if !mistakes.is_empty() {
                return Err(mistakes);
            }
            let es_module = program.is_module();
            // Whether its ES exports are all it exports (see [`FunctionBodyCheck`]).
            let exports_known = es_module && !exports_unlisted;
            // The names as written, to tell afterwards whether a transform
            // added one that could capture or be captured.
            // TypeScript's strip moves class fields into the constructor, and
            // the server's await tags insert calls into every async function:
            // both put names where another may capture them, and always get
            // the hygiene pass. An ES module's transform adds names at the
            // top level; whether one can meet another is checked.
            let plain_es_module = es_module && !typescript && awaits != Awaits::Tag;
            let written = plain_es_module.then(|| NamesWritten::of(&program));
            if !es_module {
                let clashes = wrapper_clashes(&program);
                if !clashes.is_empty() {
                    return Err(clashes.into_iter().map(|(span, name)| unit.diagnostic(span, format!(
                        "this top-level `{name}` clashes with the `{name}` every CommonJS module receives"
                    )).with_help(format!(
                        "rename it, or write the file as an ES module (import/export), whose top-level names are its own; \
                         `var {name}` would reuse the one the module receives"
                    ))).collect());
                }
            }
            // A `#!` line means nothing inside the module function, and breaks it.
            drop_hashbang(&mut program);
            if typescript {
                let mut scopes = TsScopes(false);
                program.visit_with(&mut scopes);
                program.mutate(swc_core::ecma::transforms::typescript::strip(unresolved, top_level));
                // The function strip writes for an enum or a namespace names its
                // parameter as the enum (`let E = function (E) {...}({})`) with
                // the outer binding's marks: the minifier, which tells bindings
                // apart by name and marks, takes the two for one, and inlining
                // the function declares it twice (`var a; let a = ...`). Read
                // afresh from the names, as the printed code reads, they are two.
                if scopes.0 {
                    program.visit_mut_with(&mut ForgetScopes);
                    program.mutate(resolver(unresolved, top_level, false));
                }
            }
            let imports = unit.imports(&program);
            if program.is_module() {
                let features = FeatureFlag { support_block_scoping: true, support_arrow: true };
                program.mutate(common_js::common_js(Default::default(), unresolved, Default::default(), features));
            }
            program.mutate(inject_helpers(unresolved));
            let mut tags = AwaitTags::new(None);
            if awaits == Awaits::Tag {
                tags.ss = Some(Ident::new("__ss".into(), DUMMY_SP, SyntaxContext::empty().apply_mark(unresolved)));
                program.visit_mut_with(&mut tags);
            } else if awaits == Awaits::Note {
                program.visit_with(&mut tags);
            }
            let requires = unit.requires(&program, unresolved);
            // Only a transform that adds names can make one capture another;
            // a plain CommonJS file prints as it was written.
            // An ES module's own `module` or `require` would also meet the
            // module function's parameter of that name.
            let rewritten = match written {
                None => typescript || awaits == Awaits::Tag,
                Some(written) => {
                    WRAPPER_NAMES[..2].iter().any(|name| written.names.contains_key(&Atom::from(*name)))
                        || written.clash_after(&program)
                }
            };
            let (code, map) = unit.finish(program, options, unresolved, top_level, true, es_module, rewritten);
            Ok(Compiled { code, map, exports, requires, awaits: tags.found, es_module: exports_known, imports })
        })
    })
}

/// Every name of an ES module with its syntax context (which binding it
/// is, as the resolver marked it) and how often it is written, before the
/// module transform.
struct NamesWritten {
    /// Each name and context, with the times it is written.
    pairs: HashMap<(Atom, SyntaxContext), u32>,
    /// Each name, with the count of its contexts.
    names: HashMap<Atom, u32>,
}

impl NamesWritten {
    fn of(program: &Program) -> NamesWritten {
        struct Collect<'a>(&'a mut NamesWritten);
        impl Visit for Collect<'_> {
            fn visit_ident(&mut self, ident: &Ident) {
                let times = self.0.pairs.entry((ident.sym.clone(), ident.ctxt)).or_insert(0);
                *times += 1;
                if *times == 1 {
                    *self.0.names.entry(ident.sym.clone()).or_insert(0) += 1;
                }
            }
        }
        let mut written = NamesWritten { pairs: HashMap::default(), names: HashMap::default() };
        program.visit_with(&mut Collect(&mut written));
        written
    }

    /// Whether the module transform wrote a name that printing could
    /// confuse with another, so that the hygiene pass must rename:
    /// - a name written in the file, with a context of its own (a file's own
    ///   top-level `exports` beside the one the module receives);
    /// - a new name made with two contexts (two imports both become `_util`);
    /// - more uses of a name and context than the file wrote (a getter that
    ///   reads an export, a global the transform calls) when the file also
    ///   binds that name elsewhere, where a use could land inside it.
    ///
    /// Otherwise every name means, printed, what it meant as written.
    fn clash_after(&self, program: &Program) -> bool {
        struct Check<'a> {
            written: &'a NamesWritten,
            added: HashMap<Atom, SyntaxContext>,
            used: HashMap<(Atom, SyntaxContext), u32>,
            clash: bool,
        }
        impl Visit for Check<'_> {
            fn visit_ident(&mut self, ident: &Ident) {
                if self.clash {
                    return;
                }
                let pair = (ident.sym.clone(), ident.ctxt);
                match self.written.pairs.get(&pair) {
                    Some(&times) => {
                        let used = self.used.entry(pair).or_insert(0);
                        *used += 1;
                        self.clash = *used > times && self.written.names.get(&ident.sym).is_some_and(|n| *n > 1);
                    }
                    None => {
                        self.clash = self.written.names.contains_key(&ident.sym)
                            || *self.added.entry(ident.sym.clone()).or_insert(ident.ctxt) != ident.ctxt;
                    }
                }
            }
        }
        let mut check = Check { written: self, added: HashMap::default(), used: HashMap::default(), clash: false };
        program.visit_with(&mut check);
        check.clash
    }
}

/// Whether a TypeScript program has an enum or a namespace (which strip
/// turns into a function whose parameter is named as the binding outside it).
struct TsScopes(bool);

impl Visit for TsScopes {
    fn visit_ts_enum_decl(&mut self, _: &swc_core::ecma::ast::TsEnumDecl) {
        self.0 = true;
    }

    fn visit_ts_module_decl(&mut self, _: &swc_core::ecma::ast::TsModuleDecl) {
        self.0 = true;
    }
}

/// Clears every scope mark resolver set, so that it can run again.
struct ForgetScopes;

impl VisitMut for ForgetScopes {
    fn visit_mut_syntax_context(&mut self, ctxt: &mut SyntaxContext) {
        *ctxt = SyntaxContext::empty();
    }
}

/// Top-level statements from which a minified module is written in parallel.
const PARALLEL_EMIT_ITEMS: usize = 64;

/// Top-level statements written minified, with no comments or map.
fn write_minified(cm: &Lrc<SourceMap>, cfg: CodegenConfig, items: &[ModuleItem]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut emitter =
        Emitter { cfg, cm: cm.clone(), comments: None, wr: JsWriter::new(cm.clone(), "\n", &mut out, None) };
    for item in items {
        item.emit_with(&mut emitter).expect("writing to memory cannot fail");
    }
    out
}

/// The parameters of the function the linker wraps every module in.
const WRAPPER_NAMES: [&str; 3] = ["require", "module", "exports"];

/// Top-level `let`, `const` and `class` declarations named like a parameter
/// of the module function: in a CommonJS file they stop the whole bundle from
/// loading (as they stop Node from loading the file).
fn wrapper_clashes(program: &Program) -> Vec<(Span, &'static str)> {
    use swc_core::ecma::utils::find_pat_ids;
    let stmts: Vec<&Stmt> = match program {
        Program::Script(s) => s.body.iter().collect(),
        Program::Module(m) => {
            m.body.iter().filter_map(|item| if let ModuleItem::Stmt(s) = item { Some(s) } else { None }).collect()
        }
    };
    let mut found = Vec::new();
    for stmt in stmts {
        let names: Vec<Ident> = match stmt {
            Stmt::Decl(Decl::Var(v)) if v.kind != VarDeclKind::Var => {
                v.decls.iter().flat_map(|d| find_pat_ids::<_, Ident>(&d.name)).collect()
            }
            Stmt::Decl(Decl::Class(c)) => vec![c.ident.clone()],
            _ => continue,
        };
        for ident in names {
            if let Some(name) = WRAPPER_NAMES.iter().find(|n| ident.sym == **n) {
                found.push((ident.span, *name));
            }
        }
    }
    found
}

/// Appends `require, module;` (as globals) to a module, for [`Unit::finish`];
/// `true` when it did.
fn wrapper_guard(program: &mut Program, unresolved: Mark) -> bool {
    use swc_core::ecma::ast::SeqExpr;
    let Program::Module(m) = program else { return false };
    let ctxt = SyntaxContext::empty().apply_mark(unresolved);
    let exprs = WRAPPER_NAMES[..2]
        .iter()
        .map(|name| Box::new(Expr::Ident(Ident::new((*name).into(), DUMMY_SP, ctxt))))
        .collect();
    let expr = Box::new(Expr::Seq(SeqExpr { span: DUMMY_SP, exprs }));
    m.body.push(ModuleItem::Stmt(Stmt::Expr(ExprStmt { span: DUMMY_SP, expr })));
    true
}

/// Drops a `#!` line (the code generator would print it where it breaks the bundle).
fn drop_hashbang(program: &mut Program) {
    match program {
        Program::Module(m) => m.shebang = None,
        Program::Script(s) => s.shebang = None,
    }
}

/// The problems [`read_exports`] and [`FunctionBodyCheck`] found, in order of position.
fn module_problems(
    exports: Vec<crate::exports::ExportProblem>,
    body: Vec<(Span, &'static str, String)>,
) -> Vec<(Span, String, String)> {
    let exports = exports.into_iter().map(|p| (p.span, p.message, p.help.to_string()));
    let mut all: Vec<_> = exports.chain(body.into_iter().map(|(s, m, h)| (s, m.to_string(), h))).collect();
    all.sort_by_key(|(span, _, _)| span.lo);
    all
}

/// Compiles one classic script of `lib/client`. Scripts named `NAME.min.js`
/// (a `min` part between dots), and every script of an unminified build, pass
/// through as they are, once parsed: a syntax error is reported in every build,
/// not left to break the page.
pub fn compile_script(path: &str, text: &str, options: CodeOptions) -> Result<Compiled, Vec<Diagnostic>> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let passthrough = name.split('.').skip(1).any(|part| part == "min") || !options.minify;
    let unit = Unit::new(path, text, options);
    let mut errors = Vec::new();
    let parsed = parse_file_as_script(
        &unit.file,
        Syntax::Es(EsSyntax::default()),
        EsVersion::latest(),
        Some(&unit.comments),
        &mut errors,
    );
    let script = match parsed {
        Ok(script) if errors.is_empty() => script,
        Ok(_) => return Err(unit.syntax_errors(errors)),
        Err(e) => {
            errors.push(e);
            return Err(unit.syntax_errors(errors));
        }
    };
    if passthrough {
        // Byte for byte, but for a `#!` line, which would break the scripts
        // after it in the bundle: it becomes a comment of the same length.
        let code = match text.strip_prefix("#!") {
            Some(rest) => format!("//{rest}"),
            None => text.to_string(),
        };
        return Ok(Compiled { code, map: None, ..Compiled::default() });
    }
    GLOBALS.set(&Globals::new(), || {
        let unresolved = Mark::new();
        let top_level = Mark::new();
        let mut program = Program::Script(script);
        drop_hashbang(&mut program);
        program.mutate(resolver(unresolved, top_level, false));
        let (code, map) = unit.finish(program, options, unresolved, top_level, false, false, false);
        Ok(Compiled { code, map, ..Compiled::default() })
    })
}

/// One file being compiled: its source map, file and comments.
struct Unit {
    cm: Lrc<SourceMap>,
    file: Lrc<swc_core::common::SourceFile>,
    comments: KeptComments,
    path: String,
}

impl Unit {
    fn new(path: &str, text: &str, options: CodeOptions) -> Self {
        let cm: Lrc<SourceMap> = Default::default();
        let file = cm.new_source_file(FileName::Real(PathBuf::from(path)).into(), text.to_string());
        let comments = KeptComments::new(!options.minify);
        Unit { cm, file, comments, path: path.to_string() }
    }

    fn position(&self, span: Span) -> Option<(usize, usize)> {
        if span.lo.is_dummy() || span.lo < self.file.start_pos || span.lo > self.file.end_pos {
            return None;
        }
        let loc = self.cm.lookup_char_pos(span.lo);
        // Columns count characters, as the code frame does (swc's own column
        // counts UTF-16 units, and its display column widens tabs).
        let offset = (span.lo - self.file.start_pos).0 as usize;
        let column = self.file.src.get(..offset).map_or(loc.col.0, |before| {
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            before[line_start..].chars().count()
        });
        Some((loc.line, column + 1))
    }

    fn diagnostic(&self, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at_or_file(&self.path, &self.file.src, self.position(span), message)
    }

    fn syntax_errors(&self, errors: Vec<swc_core::ecma::parser::error::Error>) -> Vec<Diagnostic> {
        let mut seen = BTreeSet::new();
        errors
            .into_iter()
            .filter(|e| seen.insert((e.span().lo, e.kind().msg().to_string())))
            .map(|e| {
                let diagnostic = self.diagnostic(e.span(), format!("syntax error: {}", e.kind().msg()));
                let offset = e.span().lo.0.saturating_sub(self.file.start_pos.0) as usize;
                let before = self.file.src.get(..offset).unwrap_or_default();
                if self.file.src.get(offset..).is_some_and(|rest| rest.starts_with('@')) {
                    diagnostic.with_help(
                        "decorators (`@name`) are not supported yet: ssbuild has no transform for them, and browsers do not run them",
                    )
                } else if let Some(word) = before.trim_end().strip_suffix("accessor")
                    && !word.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$')
                    && before.ends_with(char::is_whitespace)
                {
                    // A class field written `accessor name` (which JavaScript
                    // files cannot hold yet, and TypeScript's are refused too).
                    diagnostic.with_help(format!("{} {}", AUTO_ACCESSOR.0, AUTO_ACCESSOR.1))
                } else {
                    diagnostic
                }
            })
            .collect()
    }

    /// What JavaScript engines refuse before running anything although the
    /// parser accepts it: a name declared twice in one scope (`let a; let a`),
    /// a parameter name used twice, an assignment to a `const` or to an
    /// import, duplicate exports. Left in, each would stop the whole bundle
    /// from loading in the browser.
    fn early_errors(&self, program: &Program, unresolved: Mark, top_level: Mark) -> Vec<Diagnostic> {
        use swc_core::common::errors::{DiagnosticBuilder, Emitter, HANDLER, Handler};
        use swc_core::ecma::lints::rule::Rule;
        use swc_core::ecma::lints::rules::{LintParams, all};

        type Found = std::sync::Arc<std::sync::Mutex<Vec<(Span, String)>>>;
        struct Collect(Found);
        impl Emitter for Collect {
            fn emit(&mut self, db: &mut DiagnosticBuilder<'_>) {
                if let Some(span) = db.span.primary_span() {
                    self.0.lock().expect("not poisoned").push((span, db.message()));
                }
            }
        }

        let found = Found::default();
        let handler = Handler::with_emitter(false, false, Box::new(Collect(found.clone())));
        let config = Default::default();
        let mut rules = all(LintParams {
            program,
            lint_config: &config,
            unresolved_ctxt: SyntaxContext::empty().apply_mark(unresolved),
            top_level_ctxt: SyntaxContext::empty().apply_mark(top_level),
            es_version: EsVersion::latest(),
            source_map: self.cm.clone(),
        });
        HANDLER.set(&handler, || match program {
            Program::Module(m) => rules.lint_module(m),
            Program::Script(s) => rules.lint_script(s),
        });
        drop(handler);
        let mut found = std::mem::take(&mut *found.lock().expect("not poisoned"));
        found.sort_by_key(|(span, _)| span.lo);
        found
            .into_iter()
            .map(|(span, message)| {
                self.diagnostic(span, message)
                    .with_help("JavaScript engines refuse the whole file for this before running any of it")
            })
            .collect()
    }

    /// The names an ES module imports, or re-exports by name, from other
    /// modules (see [`Import`]); none for a script or a CommonJS module.
    fn imports(&self, program: &Program) -> Vec<Import> {
        use swc_core::ecma::ast::{ExportSpecifier, ImportSpecifier, ModuleDecl, ModuleExportName};
        let Program::Module(module) = program else { return Vec::new() };
        let name_of = |name: &ModuleExportName| match name {
            ModuleExportName::Ident(i) => i.sym.to_string(),
            ModuleExportName::Str(s) => s.value.to_string_lossy().into_owned(),
        };
        let mut found = Vec::new();
        let mut add = |src: &swc_core::ecma::ast::Str, name: String, span: Span, reexport: bool| {
            let specifier = src.value.to_string_lossy().into_owned();
            found.push(Import { specifier, name, position: self.position(span), reexport });
        };
        for item in &module.body {
            match item {
                ModuleItem::ModuleDecl(ModuleDecl::Import(import)) if !import.type_only => {
                    for specifier in &import.specifiers {
                        match specifier {
                            ImportSpecifier::Named(named) if !named.is_type_only => {
                                let name = named.imported.as_ref().map_or_else(|| named.local.sym.to_string(), name_of);
                                add(&import.src, name, named.span, false);
                            }
                            ImportSpecifier::Default(default) => {
                                add(&import.src, "default".into(), default.span, false)
                            }
                            _ => {}
                        }
                    }
                }
                ModuleItem::ModuleDecl(ModuleDecl::ExportNamed(export)) if !export.type_only => {
                    let Some(src) = &export.src else { continue };
                    for specifier in &export.specifiers {
                        if let ExportSpecifier::Named(named) = specifier
                            && !named.is_type_only
                        {
                            add(src, name_of(&named.orig), named.span, true);
                        }
                    }
                }
                _ => {}
            }
        }
        found
    }

    /// Every `require("literal")` that refers to the module's own `require`.
    fn requires(&self, program: &Program, unresolved: Mark) -> Vec<Require> {
        let mut finder = RequireFinder { unresolved, found: Vec::new() };
        program.visit_with(&mut finder);
        let mut seen = BTreeSet::new();
        finder
            .found
            .into_iter()
            .filter(|(spec, _)| seen.insert(spec.clone()))
            .map(|(specifier, span)| Require { specifier, position: self.position(span) })
            .collect()
    }

    /// Minifies or prints, then emits code (and a source map). `es_module`:
    /// the file was an ES module, whose top-level names are its own, so one
    /// named like a parameter of the module function is renamed.
    /// `rewritten`: a transform added or moved names that could meet the
    /// file's own (see [`NamesWritten`]), so that printing unminified needs the hygiene
    /// pass to keep each name meaning what it did. Otherwise the pass would
    /// change nothing, and its time grows with the square of the functions
    /// that bind the same name (swc checks each against one list of taken
    /// names shared by all sibling scopes): 11 s for a generated file of
    /// 60,000 functions.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        program: Program,
        options: CodeOptions,
        unresolved: Mark,
        top_level: Mark,
        module: bool,
        es_module: bool,
        rewritten: bool,
    ) -> (String, Option<String>) {
        // The names as written, before the minifier renames them.
        let mut names = NamesAt(HashMap::new());
        if options.minify && options.source_map {
            program.visit_with(&mut names);
        }
        let program = if options.minify {
            let compress = CompressOptions {
                // One pass, and no dropping of unused top-level declarations: on
                // three.js, each of those costs about a third more time for 0.2%
                // of gzip size (docs/benchmarks.md).
                passes: 1,
                // With either of these on, swc also runs a whole-program
                // dead-code pass before and after compressing (each to a fixed
                // point): 12% of a cold pack of three.js, for 0.3% of its gzip
                // size. Without them, code after a `return`, an `if` on a
                // constant whose branches fold into expressions, unused pure
                // calls and most unused locals still go; an unused local
                // function, assignments to unused locals, at times an unused
                // local as `let x = void 0`, and a `switch` on a constant stay.
                unused: false,
                dead_code: false,
                ..Default::default()
            };
            // Without the character-frequency count, names are handed out in
            // a fixed order instead of the order of the letters most used in
            // each module. The count writes the whole module out once more:
            // some 8 ms of a cold pack of three.core.js, for 0.4% of its gzip
            // size. Across many modules the fixed order gzips better (three's
            // src/, 757 modules: 1.3% smaller), as their names repeat.
            let mangle = MangleOptions { top_level: Some(module), disable_char_freq: true, ..Default::default() };
            // Compression is about a third of the time on large files, for about 2% of gzip size.
            let compress = options.compress.then_some(compress);
            let minify = MinifyOptions { compress, mangle: Some(mangle), ..Default::default() };
            let extra =
                ExtraOptions { unresolved_mark: unresolved, top_level_mark: top_level, mangle_name_cache: None };
            let mut p = swc_core::ecma::minifier::optimize(
                program,
                self.cm.clone(),
                Some(&self.comments),
                None,
                &minify,
                &extra,
            );
            p.mutate(fixer(None));
            p
        } else {
            let mut p = program;
            // hygiene renames a local binding only when it would capture a
            // global of the same name: a statement naming the module
            // function's parameters makes it rename top-level `module` and
            // `require` declarations (the minifier renames them anyway).
            if rewritten {
                let guard = es_module && wrapper_guard(&mut p, unresolved);
                p.mutate(hygiene());
                if guard && let Program::Module(m) = &mut p {
                    m.body.pop();
                }
            }
            p.mutate(fixer(Some(&self.comments)));
            p
        };

        let mut buf = Vec::new();
        let mut mappings: Vec<(BytePos, LineCol)> = Vec::new();
        let cfg = CodegenConfig::default().with_minify(options.minify).with_target(EsVersion::latest());
        match &program {
            // Minified, without comments or a map, a top-level statement is
            // written the same wherever it starts: a large module's are
            // written in runs on every core and joined in order (three.js's
            // code takes about 10 ms to write on one core, 6 ms on two).
            Program::Module(module)
                if options.minify && !options.source_map && module.body.len() >= PARALLEL_EMIT_ITEMS =>
            {
                let run = module.body.len().div_ceil(rayon::current_num_threads() * 4);
                let cm = &self.cm;
                let parts: Vec<Vec<u8>> =
                    module.body.par_chunks(run).map(|items| write_minified(cm, cfg, items)).collect();
                buf = parts.concat();
            }
            _ => {
                let writer =
                    JsWriter::new(self.cm.clone(), "\n", &mut buf, options.source_map.then_some(&mut mappings));
                let mut emitter = Emitter {
                    cfg,
                    cm: self.cm.clone(),
                    comments: if options.minify { None } else { Some(&self.comments) },
                    wr: writer,
                };
                emitter.emit_program(&program).expect("writing to memory cannot fail");
            }
        }
        // Freeing a large tree takes milliseconds: let another thread do it
        // while this one goes on.
        rayon::spawn(move || drop(program));
        let mut code = String::from_utf8(buf).expect("swc emits UTF-8");
        if options.minify {
            let legal = self.legal_comments();
            if !legal.is_empty() {
                code = format!("{legal}{code}");
            }
        }
        let map = options.source_map.then(|| {
            let map = self.cm.build_source_map(&mappings, None, MapConfig { names: names.0 });
            let mut out = Vec::new();
            map.to_writer(&mut out).expect("writing to memory cannot fail");
            String::from_utf8(out).expect("source maps are JSON")
        });
        (code, map)
    }

    /// License comments (`/*! ... */`, `@license`, `@preserve`), kept in minified output.
    fn legal_comments(&self) -> String {
        let (leading, trailing) = self.comments.inner.borrow_all();
        let mut all: Vec<&Comment> = leading.values().chain(trailing.values()).flatten().collect();
        all.sort_by_key(|c| c.span.lo);
        let mut out = String::new();
        for c in all {
            let text = c.text.as_str();
            let legal = is_legal(text);
            if legal {
                match c.kind {
                    CommentKind::Block => out.push_str(&format!("/*{text}*/\n")),
                    CommentKind::Line => out.push_str(&format!("//{text}\n")),
                }
            }
        }
        out
    }
}

/// Where the parser puts comments. Printed code keeps every comment; minified
/// code keeps only those that matter to it: annotations the minifier reads
/// (`/*#__PURE__*/`, `/*@__NO_SIDE_EFFECTS__*/` and the like) and license
/// comments. Storing the others costs about a tenth of a large file's
/// minification (three.js's documentation comments), for nothing.
pub(crate) struct KeptComments {
    pub(crate) all: bool,
    pub(crate) inner: SingleThreadedComments,
}

impl KeptComments {
    /// An empty store: keeping every comment (`all`), or only those
    /// minified code keeps (annotations for the minifier, licenses).
    pub(crate) fn new(all: bool) -> KeptComments {
        KeptComments { all, inner: SingleThreadedComments::default() }
    }

    fn keeps(&self, comment: &Comment) -> bool {
        let text = comment.text.as_str();
        self.all || text.contains("#__") || text.contains("@__") || is_legal(text)
    }

    fn kept(&self, mut comments: Vec<Comment>) -> Vec<Comment> {
        if !self.all {
            comments.retain(|c| self.keeps(c));
        }
        comments
    }
}

/// A license comment (`/*! ... */`, `@license`, `@preserve`): kept in minified output.
fn is_legal(text: &str) -> bool {
    text.starts_with('!') || text.contains("@license") || text.contains("@preserve")
}

impl Comments for KeptComments {
    fn add_leading(&self, pos: BytePos, comment: Comment) {
        if self.keeps(&comment) {
            self.inner.add_leading(pos, comment);
        }
    }

    fn add_leading_comments(&self, pos: BytePos, comments: Vec<Comment>) {
        let comments = self.kept(comments);
        if !comments.is_empty() {
            self.inner.add_leading_comments(pos, comments);
        }
    }

    fn has_leading(&self, pos: BytePos) -> bool {
        self.inner.has_leading(pos)
    }

    fn move_leading(&self, from: BytePos, to: BytePos) {
        self.inner.move_leading(from, to)
    }

    fn take_leading(&self, pos: BytePos) -> Option<Vec<Comment>> {
        self.inner.take_leading(pos)
    }

    fn get_leading(&self, pos: BytePos) -> Option<Vec<Comment>> {
        self.inner.get_leading(pos)
    }

    fn add_trailing(&self, pos: BytePos, comment: Comment) {
        if self.keeps(&comment) {
            self.inner.add_trailing(pos, comment);
        }
    }

    fn add_trailing_comments(&self, pos: BytePos, comments: Vec<Comment>) {
        let comments = self.kept(comments);
        if !comments.is_empty() {
            self.inner.add_trailing_comments(pos, comments);
        }
    }

    fn has_trailing(&self, pos: BytePos) -> bool {
        self.inner.has_trailing(pos)
    }

    fn move_trailing(&self, from: BytePos, to: BytePos) {
        self.inner.move_trailing(from, to)
    }

    fn take_trailing(&self, pos: BytePos) -> Option<Vec<Comment>> {
        self.inner.take_trailing(pos)
    }

    fn get_trailing(&self, pos: BytePos) -> Option<Vec<Comment>> {
        self.inner.get_trailing(pos)
    }

    fn add_pure_comment(&self, pos: BytePos) {
        self.inner.add_pure_comment(pos)
    }

    fn has_flag(&self, lo: BytePos, flag: &str) -> bool {
        self.inner.has_flag(lo, flag)
    }
}

/// How a module's source map is written. `names`: each identifier's name
/// as written, by where it starts, for the map's `names` (minified code
/// renames locals: with these, a debugger or an error tracker shows the
/// names of the source).
struct MapConfig {
    names: HashMap<BytePos, Atom>,
}

/// The identifiers of a program as written, by where each starts.
struct NamesAt(HashMap<BytePos, Atom>);

impl Visit for NamesAt {
    fn visit_ident(&mut self, ident: &Ident) {
        if !ident.span.lo.is_dummy() {
            self.0.insert(ident.span.lo, ident.sym.clone());
        }
    }
}

impl SourceMapGenConfig for MapConfig {
    fn file_name_to_source(&self, f: &FileName) -> String {
        f.to_string()
    }

    fn name_for_bytepos(&self, pos: BytePos) -> Option<&str> {
        self.names.get(&pos).map(|name| name.as_str())
    }

    fn inline_sources_content(&self, _: &FileName) -> bool {
        true
    }
}

/// Finds what an ES module may hold but a function body may not: the linker
/// packs each module as a function that runs when the module is first
/// required, so `await` outside any function and `import.meta` would make the
/// whole bundle fail to parse in the browser. Also what the parser accepts
/// but no engine runs yet, and nothing here transforms: an auto-accessor
/// (`accessor x = 1`, which TypeScript files may hold). In the same walk,
/// whether the file exports what its syntax does not list
/// (`exports_unlisted`): it reaches the `module` or `exports` every module
/// receives (`module.exports = ...` beside an `import`; `unresolved` tells
/// those from bindings of its own of that name), or it is TypeScript's
/// `export =` or `export import`.
struct FunctionBodyCheck {
    depth: usize,
    found: Vec<(Span, &'static str, String)>,
    unresolved: SyntaxContext,
    exports_unlisted: bool,
}

impl FunctionBodyCheck {
    fn new(unresolved: SyntaxContext) -> FunctionBodyCheck {
        FunctionBodyCheck { depth: 0, found: Vec::new(), unresolved, exports_unlisted: false }
    }
}

const TOP_LEVEL_AWAIT: (&str, &str) = (
    "top-level `await` is not supported: a module runs as a function when it is first required",
    "move the code into an async function, such as `export async function load() { ... }`, and await that",
);

const DYNAMIC_IMPORT: &str = "`import()` is not supported: every module of the app is in the bundle already, and \
                              the browser would fetch the path from the server";

/// Whether an `import()`'s path can be shown in a suggested `require`: a
/// relative path with nothing that would need escaping.
fn a_plain_path(path: &str) -> bool {
    (path.starts_with("./") || path.starts_with("../"))
        && path.len() <= 200
        && !path.contains(['\'', '\\', '\n', '\r', '\u{2028}', '\u{2029}'])
}

const AUTO_ACCESSOR: (&str, &str) = (
    "auto-accessors (`accessor name`) are not supported yet: ssbuild has no transform for them, and browsers and \
     the server's engine do not run them",
    "write a getter and a setter over a private field instead: `#name = 1; get name() { return this.#name; } set \
     name(v) { this.#name = v; }`",
);

impl Visit for FunctionBodyCheck {
    fn visit_ident(&mut self, ident: &Ident) {
        if ident.ctxt == self.unresolved && (ident.sym == "module" || ident.sym == "exports") {
            self.exports_unlisted = true;
        }
    }

    fn visit_module_decl(&mut self, decl: &swc_core::ecma::ast::ModuleDecl) {
        use swc_core::ecma::ast::ModuleDecl;
        if matches!(decl, ModuleDecl::TsExportAssignment(_) | ModuleDecl::TsImportEquals(_)) {
            self.exports_unlisted = true;
        }
        decl.visit_children_with(self);
    }

    fn visit_call_expr(&mut self, call: &CallExpr) {
        if let Callee::Import(_) = call.callee {
            // The path as written, when it is a plain string.
            let path = match call.args.first().map(|a| &*a.expr) {
                Some(Expr::Lit(Lit::Str(s))) if a_plain_path(&s.value.to_string_lossy()) => {
                    s.value.to_string_lossy().into_owned()
                }
                _ => "./a".to_string(),
            };
            let help = format!("require it instead (`require('{path}')`, or a static `import` at the top of the file)");
            self.found.push((call.span, DYNAMIC_IMPORT, help));
        }
        call.visit_children_with(self);
    }

    fn visit_auto_accessor(&mut self, a: &AutoAccessor) {
        self.found.push((a.span, AUTO_ACCESSOR.0, AUTO_ACCESSOR.1.to_string()));
        a.visit_children_with(self);
    }

    fn visit_function(&mut self, f: &Function) {
        self.depth += 1;
        f.visit_children_with(self);
        self.depth -= 1;
    }

    fn visit_arrow_expr(&mut self, f: &ArrowExpr) {
        self.depth += 1;
        f.visit_children_with(self);
        self.depth -= 1;
    }

    fn visit_await_expr(&mut self, e: &AwaitExpr) {
        if self.depth == 0 {
            self.found.push((e.span, TOP_LEVEL_AWAIT.0, TOP_LEVEL_AWAIT.1.to_string()));
        }
        e.visit_children_with(self);
    }

    fn visit_for_of_stmt(&mut self, s: &ForOfStmt) {
        if s.is_await && self.depth == 0 {
            self.found.push((s.span, TOP_LEVEL_AWAIT.0, TOP_LEVEL_AWAIT.1.to_string()));
        }
        s.visit_children_with(self);
    }

    fn visit_meta_prop_expr(&mut self, e: &MetaPropExpr) {
        if e.kind == MetaPropKind::ImportMeta {
            self.found.push((
                e.span,
                "`import.meta` is not available: modules are packed into functions, not loaded as ES modules",
                "pass the value in from app code instead".to_string(),
            ));
        }
    }
}

/// Finds async functions and, given the loader's `__ss`, makes them keep the
/// server's log tag across their waits ([`Awaits::Tag`]):
///
/// ```js
/// async function f() {
///   var __ssTag = __ss.t();          // the tag of the code that called f
///   const x = __ss.e(__ssTag, await g());
///   try { ... } catch (e) { __ss.e(__ssTag); ... } finally { __ss.e(__ssTag); ... }
///   { for await (const y of z) { __ss.e(__ssTag); ... } __ss.e(__ssTag); }
/// }
/// ```
///
/// `__ss.e(tag, value)` sets the tag and gives `value` back: every point
/// where the function resumes sets its tag again, with no extra promise (the
/// order in which promise callbacks run is unchanged). In an async generator
/// the same goes for `yield`. Each function's `__ssTag` is its own (a fresh
/// mark, renamed by hygiene if it meets another name).
struct AwaitTags {
    ss: Option<Ident>,
    found: bool,
    /// Per enclosing function, innermost last: its tag variable, and whether
    /// it is a generator; `None` for one that is not async.
    scopes: Vec<Option<(Ident, bool)>>,
}

impl AwaitTags {
    fn new(ss: Option<Ident>) -> AwaitTags {
        AwaitTags { ss, found: false, scopes: Vec::new() }
    }

    /// `__ss.NAME(args...)`.
    fn hook(&self, name: &str, args: Vec<Expr>) -> Box<Expr> {
        let ss = self.ss.clone().expect("only rewriting calls hooks");
        Box::new(Expr::Call(CallExpr {
            span: DUMMY_SP,
            ctxt: SyntaxContext::empty(),
            callee: Callee::Expr(Box::new(Expr::Member(MemberExpr {
                span: DUMMY_SP,
                obj: Box::new(Expr::Ident(ss)),
                prop: MemberProp::Ident(IdentName::new(name.into(), DUMMY_SP)),
            }))),
            args: args.into_iter().map(|expr| ExprOrSpread { spread: None, expr: Box::new(expr) }).collect(),
            type_args: None,
        }))
    }

    /// `__ss.e(__ssTag);` for the innermost function, when it is async.
    fn restore(&self) -> Option<Stmt> {
        let (tag, _) = self.scopes.last()?.as_ref()?;
        let expr = self.hook("e", vec![Expr::Ident(tag.clone())]);
        Some(Stmt::Expr(ExprStmt { span: DUMMY_SP, expr }))
    }

    /// Enters a function; gives the tag variable to declare when it is async.
    fn enter(&mut self, is_async: bool, is_generator: bool) -> Option<Ident> {
        if is_async {
            self.found = true;
        }
        let tag = (is_async && self.ss.is_some())
            .then(|| Ident::new("__ssTag".into(), DUMMY_SP, SyntaxContext::empty().apply_mark(Mark::new())));
        self.scopes.push(tag.clone().map(|t| (t, is_generator)));
        tag
    }

    /// `var __ssTag = __ss.t();`, after the body's directives.
    fn declare(&self, tag: Ident, body: &mut Vec<Stmt>) {
        let init = self.hook("t", Vec::new());
        let decl = Stmt::Decl(Decl::Var(Box::new(VarDecl {
            span: DUMMY_SP,
            ctxt: SyntaxContext::empty(),
            kind: VarDeclKind::Var,
            declare: false,
            decls: vec![VarDeclarator {
                span: DUMMY_SP,
                name: Pat::Ident(BindingIdent { id: tag, type_ann: None }),
                init: Some(init),
                definite: false,
            }],
        })));
        let directives = body
            .iter()
            .take_while(|s| matches!(s, Stmt::Expr(e) if matches!(&*e.expr, Expr::Lit(Lit::Str(_)))))
            .count();
        body.insert(directives, decl);
    }

    /// Visits something that is not an async function but has a body of its own.
    fn plain<T: VisitMutWith<Self>>(&mut self, node: &mut T) {
        self.scopes.push(None);
        node.visit_mut_children_with(self);
        self.scopes.pop();
    }
}

impl Visit for AwaitTags {
    fn visit_function(&mut self, f: &Function) {
        if f.is_async {
            self.found = true;
        }
        f.visit_children_with(self);
    }

    fn visit_arrow_expr(&mut self, a: &ArrowExpr) {
        if a.is_async {
            self.found = true;
        }
        a.visit_children_with(self);
    }
}

impl VisitMut for AwaitTags {
    fn visit_mut_function(&mut self, f: &mut Function) {
        let tag = self.enter(f.is_async, f.is_generator);
        f.visit_mut_children_with(self);
        self.scopes.pop();
        if let (Some(tag), Some(body)) = (tag, &mut f.body) {
            self.declare(tag, &mut body.stmts);
        }
    }

    fn visit_mut_arrow_expr(&mut self, a: &mut ArrowExpr) {
        let tag = self.enter(a.is_async, false);
        a.visit_mut_children_with(self);
        self.scopes.pop();
        if let Some(tag) = tag {
            if let ArrowFunctionBody::Expr(expr) = &mut *a.body {
                let arg = std::mem::replace(expr, Box::new(Expr::Invalid(Invalid { span: DUMMY_SP })));
                let stmts = vec![Stmt::Return(ReturnStmt { span: DUMMY_SP, arg: Some(arg) })];
                *a.body = ArrowFunctionBody::FunctionBody(FunctionBody { span: DUMMY_SP, stmts });
            }
            if let ArrowFunctionBody::FunctionBody(body) = &mut *a.body {
                self.declare(tag, &mut body.stmts);
            }
        }
    }

    fn visit_mut_constructor(&mut self, c: &mut Constructor) {
        self.plain(c);
    }

    fn visit_mut_getter_prop(&mut self, g: &mut GetterProp) {
        self.plain(g);
    }

    fn visit_mut_setter_prop(&mut self, s: &mut SetterProp) {
        self.plain(s);
    }

    fn visit_mut_static_block(&mut self, b: &mut StaticBlock) {
        self.plain(b);
    }

    fn visit_mut_expr(&mut self, expr: &mut Expr) {
        expr.visit_mut_children_with(self);
        let Some(Some((tag, is_generator))) = self.scopes.last() else { return };
        if matches!(expr, Expr::Await(_)) || (*is_generator && matches!(expr, Expr::Yield(_))) {
            let tag = Expr::Ident(tag.clone());
            let resumed = std::mem::replace(expr, Expr::Invalid(Invalid { span: DUMMY_SP }));
            *expr = *self.hook("e", vec![tag, resumed]);
        }
    }

    fn visit_mut_catch_clause(&mut self, c: &mut CatchClause) {
        c.visit_mut_children_with(self);
        if let Some(restore) = self.restore() {
            c.body.stmts.insert(0, restore);
        }
    }

    fn visit_mut_try_stmt(&mut self, t: &mut TryStmt) {
        t.visit_mut_children_with(self);
        if let (Some(restore), Some(finalizer)) = (self.restore(), &mut t.finalizer) {
            finalizer.stmts.insert(0, restore);
        }
    }

    fn visit_mut_labeled_stmt(&mut self, l: &mut LabeledStmt) {
        // A labelled `for await` is wrapped with its label (`visit_mut_stmt`):
        // a block between the label and the loop would break `continue label`.
        match &mut *l.body {
            Stmt::ForOf(f) if f.is_await => f.visit_mut_children_with(self),
            _ => l.visit_mut_children_with(self),
        }
    }

    fn visit_mut_stmt(&mut self, stmt: &mut Stmt) {
        stmt.visit_mut_children_with(self);
        let Some(restore) = self.restore() else { return };
        let for_await = match stmt {
            Stmt::ForOf(f) if f.is_await => f,
            Stmt::Labeled(l) => match &mut *l.body {
                Stmt::ForOf(f) if f.is_await => f,
                _ => return,
            },
            _ => return,
        };
        // Each step of the loop, and what follows it, resumes from the engine's own wait.
        let body = std::mem::replace(&mut *for_await.body, Stmt::Empty(EmptyStmt { span: DUMMY_SP }));
        let stmts = match body {
            Stmt::Block(b) => std::iter::once(restore.clone()).chain(b.stmts).collect(),
            other => vec![restore.clone(), other],
        };
        *for_await.body = Stmt::Block(BlockStmt { span: DUMMY_SP, ctxt: SyntaxContext::empty(), stmts });
        let loop_stmt = std::mem::replace(stmt, Stmt::Empty(EmptyStmt { span: DUMMY_SP }));
        *stmt =
            Stmt::Block(BlockStmt { span: DUMMY_SP, ctxt: SyntaxContext::empty(), stmts: vec![loop_stmt, restore] });
    }
}

struct RequireFinder {
    unresolved: Mark,
    found: Vec<(String, Span)>,
}

impl Visit for RequireFinder {
    fn visit_call_expr(&mut self, call: &CallExpr) {
        if let Callee::Expr(callee) = &call.callee
            && let Expr::Ident(id) = &**callee
            && id.sym == "require"
            && id.ctxt.outer() == self.unresolved
            && let [arg] = call.args.as_slice()
            && arg.spread.is_none()
            && let Expr::Lit(Lit::Str(s)) = &*arg.expr
        {
            let span = if s.span.lo.is_dummy() { call.span } else { s.span };
            self.found.push((s.value.to_atom_lossy().to_string(), span));
        }
        call.visit_children_with(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: CodeOptions = CodeOptions { minify: false, compress: false, source_map: true };
    const PROD: CodeOptions = CodeOptions { minify: true, compress: true, source_map: false };

    #[test]
    fn es_exports_become_commonjs() {
        let c = compile_module(
            "app/client/a.js",
            "import { b } from './b';\nexport function twice(x) { return b(x) * 2 }\nfunction hidden() {}\n",
            PROD,
        )
        .unwrap();
        assert_eq!(c.exports.names.iter().collect::<Vec<_>>(), ["twice"]);
        assert_eq!(c.requires, [Require { specifier: "./b".into(), position: Some((1, 19)) }]);
        assert!(c.code.contains("require(\"./b\")"), "{}", c.code);
        assert!(!c.code.contains("hidden"), "{}", c.code);
        assert!(!c.code.contains("import"), "{}", c.code);
    }

    #[test]
    fn dynamic_import_is_refused_with_its_line() {
        for path in ["app/client/m.js", "app/server/m.ts", "app/shared/m.js"] {
            let src = "exports.a = 1;\nexports.imp = () => import('../chart/pie');\nexports.b = (p) => import(p);\n";
            let errors = compile_module(path, src, DEV).unwrap_err();
            assert_eq!(errors.len(), 2, "{errors:?}");
            assert_eq!(errors[0].position, Some((2, 21)), "{:?}", errors[0]);
            assert!(errors[0].message.starts_with("`import()` is not supported"), "{:?}", errors[0]);
            // The path written is the one suggested; a computed one gets an example.
            let help = |i: usize| errors[i].help.clone().unwrap_or_default();
            assert!(help(0).contains("require('../chart/pie')"), "{:?}", errors[0]);
            assert!(help(1).contains("require('./a')"), "{:?}", errors[1]);
        }
        // `import.meta` and a method named `import` are not dynamic imports.
        assert!(compile_module("app/client/n.js", "exports.x = { import() { return 1; } }.import();\n", DEV).is_ok());
    }

    /// A minified module's map names the identifiers as written, so that a
    /// debugger or an error tracker can show them for the short ones.
    #[test]
    fn minified_maps_carry_the_names_as_written() {
        let options = CodeOptions { minify: true, compress: true, source_map: true };
        let src = "exports.total = function (prices) {\n  let runningTotal = 0;\n  for (const price of prices) runningTotal += price;\n  return runningTotal;\n};\n";
        let c = compile_module("app/client/sum.js", src, options).unwrap();
        assert!(!c.code.contains("runningTotal"), "{}", c.code);
        let map: serde_json::Value = serde_json::from_str(c.map.as_deref().unwrap()).unwrap();
        let names: Vec<&str> = map["names"].as_array().unwrap().iter().filter_map(|n| n.as_str()).collect();
        assert!(names.contains(&"runningTotal") && names.contains(&"prices"), "{names:?}");
        // Unminified, names stay as written and the map needs none.
        let c = compile_module("app/client/sum.js", src, DEV).unwrap();
        assert!(c.code.contains("runningTotal"));
    }

    /// An auto-accessor, which TypeScript's parser accepts and no engine
    /// runs yet, is an error at its place (it used to be copied into the
    /// bundle, which then failed to load as a whole); in a JavaScript file,
    /// where it is a syntax error, the same help comes with it.
    #[test]
    fn auto_accessors_are_refused_with_a_way_around() {
        for (path, src) in [
            ("app/client/acc.ts", "export class Box {\n  accessor size = 5;\n}\n"),
            (
                "app/server/acc.ts",
                "export class Box {\n  static accessor size: number = 5;\n}\nexports.actions = {};\n",
            ),
        ] {
            let errors = compile_module(path, src, DEV).unwrap_err();
            assert_eq!(errors.len(), 1, "{path}: {errors:?}");
            assert_eq!(errors[0].position, Some((2, 3)), "{path}: {:?}", errors[0]);
            assert!(
                errors[0].message.starts_with("auto-accessors (`accessor name`) are not supported"),
                "{:?}",
                errors
            );
            assert!(errors[0].help.as_deref().is_some_and(|h| h.contains("get name()")), "{:?}", errors[0]);
        }
        let errors = compile_module("app/client/acc.js", "class Box {\n  accessor size = 5;\n}\n", DEV).unwrap_err();
        assert!(errors[0].message.starts_with("syntax error"), "{errors:?}");
        assert!(errors[0].help.as_deref().is_some_and(|h| h.contains("auto-accessors")), "{errors:?}");
        // A field or a method named `accessor` is no auto-accessor.
        let plain = "export class Box {\n  accessor = 1;\n  accessor2() { return this.accessor; }\n}\n";
        assert!(compile_module("app/client/plain.ts", plain, DEV).is_ok());
        assert!(compile_module("app/client/plain.js", plain, DEV).is_ok());
    }

    #[test]
    fn typescript_is_stripped_and_type_exports_are_not_names() {
        let src = "import type { T } from './types';\nexport interface I { a: number }\nexport type U = string;\nexport const n: number = 1;\nexport enum Color { Red }\n";
        let c = compile_module("app/shared/t.ts", src, DEV).unwrap();
        assert_eq!(c.exports.names.iter().collect::<Vec<_>>(), ["Color", "n"]);
        assert!(c.requires.is_empty(), "{:?}", c.requires);
        assert!(!c.code.contains(": number"), "{}", c.code);
        assert!(c.map.is_some());
    }

    #[test]
    fn server_awaits_carry_the_log_tag_and_browser_awaits_stay() {
        let src = "exports.actions = {\n  async a(x) { 'use strict'; const y = await x; try { return (await y) + 1; } catch (e) { return 0; } finally { f(); } },\n};\nconst b = async (__ss) => await __ss;\nexports.b = b;\nasync function* g(xs) { for await (const x of xs) yield x; }\nexports.g = g;\nfunction plain() { try { f(); } catch (e) {} }\nexports.plain = plain;\n";
        let c = compile_module_with("app/server/app.js", src, DEV, Awaits::Tag).unwrap();
        assert!(c.awaits);
        let code = &c.code;
        // One tag per async function, noted after its directives.
        assert_eq!(code.matches("= __ss.t()").count(), 3, "{code}");
        assert!(code.contains("'use strict';\n        var __ssTag = __ss.t();"), "{code}");
        assert!(code.contains("const y = __ss.e(__ssTag, await x);"), "{code}");
        assert!(code.contains("return __ss.e(__ssTag, await y) + 1;"), "{code}");
        assert!(code.contains("catch (e) {\n            __ss.e(__ssTag);"), "{code}");
        assert!(code.contains("finally{\n            __ss.e(__ssTag);"), "{code}");
        // A local `__ss` does not capture the loader's: it is renamed.
        assert!(code.contains("__ss.e(__ssTag, await __ss1)"), "{code}");
        // An async generator: its `yield`, each step of `for await` and what follows the loop.
        assert!(code.contains("__ss.e(__ssTag, (yield x))"), "{code}");
        assert_eq!(code.matches("__ss.e(__ssTag);").count(), 4, "{code}");
        // A labelled `for await`: the label stays on the loop.
        let labelled =
            "exports.f = async function (xs) { outer: for await (const x of xs) { if (x) continue outer; } };\n";
        let c = compile_module_with("app/server/l.js", labelled, DEV, Awaits::Tag).unwrap();
        assert!(
            c.code.contains("{\n        outer: for await (const x of xs){\n            __ss.e(__ssTag);"),
            "{}",
            c.code
        );
        // A function that is not async is left alone.
        assert!(code.contains("function plain() {\n    try {\n        f();\n    } catch (e) {}"), "{code}");

        let c = compile_module_with("app/server/app.js", src, PROD, Awaits::Tag).unwrap();
        assert_eq!(c.code.matches("__ss.t()").count(), 3, "{}", c.code);
        assert!(c.code.matches("__ss.e(").count() >= 7, "{}", c.code);

        let noted = compile_module_with("app/shared/s.js", src, DEV, Awaits::Note).unwrap();
        assert!(noted.awaits);
        assert!(!noted.code.contains("__ss."), "{}", noted.code);
        let plain = compile_module_with("app/shared/s.js", "exports.f = () => 1;\n", DEV, Awaits::Note).unwrap();
        assert!(!plain.awaits);
    }

    #[test]
    fn local_types_exported_by_name_are_not_names() {
        let src = "interface I { a: number }\ntype U = string;\ndeclare const d: number;\nexport { I, U, d };\nexport { type I as J };\nclass K {}\nenum E { A }\nexport { K, E };\nexport const n = 1;\n";
        let c = compile_module("app/shared/t.ts", src, DEV).unwrap();
        assert_eq!(c.exports.names.iter().collect::<Vec<_>>(), ["E", "K", "d", "n"], "{}", c.code);
        let src = "import type { T } from './t';\nimport { type V, W } from './t';\nexport { T, V, W };\n";
        let c = compile_module("app/shared/u.ts", src, DEV).unwrap();
        assert_eq!(c.exports.names.iter().collect::<Vec<_>>(), ["W"], "{}", c.code);
    }

    #[test]
    fn server_actions_tree_is_read() {
        let src = "const admin = { purge() {} };\nexports.authenticate = true;\nexports.actions = {\n  square(n, cb) { cb(n * n) },\n  later: async () => 1,\n  admin,\n  nested: { deeper: function () {} },\n};\n";
        let c = compile_module("app/server/app.js", src, DEV).unwrap();
        let json = serde_json::to_string(&c.exports.actions).unwrap();
        assert_eq!(json, r#"{"admin":{"purge":true},"later":true,"nested":{"deeper":true},"square":true}"#);
        assert!(c.exports.authenticate);
        assert_eq!(c.exports.names.iter().collect::<Vec<_>>(), ["actions", "authenticate"]);
    }

    #[test]
    fn reserved_action_names_are_refused() {
        let err = compile_module("app/server/app.js", "exports.actions = { session() {} }", DEV).unwrap_err();
        assert!(err[0].message.contains("`session` cannot be an action name"), "{:?}", err);
        assert_eq!(err[0].position, Some((1, 19)));
    }

    #[test]
    fn columns_count_characters_not_display_width() {
        let err = compile_module("app/client/t.js", "function f() {\n\t\tif (x) {\n\t\t\treturn = 1;\n}}\n", DEV)
            .unwrap_err();
        assert_eq!(err[0].position, Some((3, 11)), "{err:?}");
        let err = compile_module("app/client/u.js", "const s = \"日本語😀\"; const t = ;\n", DEV).unwrap_err();
        assert_eq!(err[0].position, Some((1, 29)), "{err:?}");
    }

    #[test]
    fn what_a_function_body_cannot_hold_is_an_error_at_its_place() {
        let source = "export const a = 1;\nconst v = await load();\nfor await (const x of xs) {}\n\
                      async function ok() { await load(); for await (const y of ys) {} }\n\
                      const fine = async () => await load();\nexport const u = import.meta.url;\n";
        for options in [DEV, PROD] {
            let err = compile_module("app/client/m.js", source, options).unwrap_err();
            let found: Vec<_> =
                err.iter().map(|d| (d.position.unwrap().0, d.message.split(':').next().unwrap())).collect();
            assert_eq!(
                found,
                [
                    (2, "top-level `await` is not supported"),
                    (3, "top-level `await` is not supported"),
                    (6, "`import.meta` is not available")
                ],
                "{err:?}"
            );
        }
    }

    #[test]
    fn what_engines_refuse_before_running_is_an_error_at_its_place() {
        let source = "export const x = 1;\nconst a = 1;\nconst a = 2;\nfunction f(p, p) { 'use strict'; }\n\
                      const c = 1;\nc = 2;\n";
        for options in [DEV, PROD] {
            let err = compile_module("app/client/d.js", source, options).unwrap_err();
            let lines: Vec<usize> = err.iter().map(|d| d.position.unwrap().0).collect();
            assert_eq!(lines, [3, 4, 6], "{err:#?}");
        }
        let twice = "export const x = 1;\nconst y = 2;\nexport { y as x };\nexport default 1;\nexport default 2;\n";
        let err = compile_module("app/client/e.js", twice, PROD).unwrap_err();
        let found: Vec<_> = err.iter().map(|d| (d.position.unwrap().0, d.message.as_str())).collect();
        assert_eq!(found, [(3, "`x` is exported twice"), (5, "`default` is exported twice")], "{err:#?}");
        let merged = "export function f(a: string): string;\nexport function f(a: any) { return a; }\n\
                      export namespace N { export const y = 1; }\nexport namespace N { export const z = 2; }\n\
                      export enum E { A }\nexport enum E { B = 1 }\n";
        assert!(compile_module("app/client/m.ts", merged, PROD).is_ok(), "what TypeScript merges is exported once");
        let ts = "function f(a: string): string;\nfunction f(a: any) { return a; }\nnamespace N { export const y = 1; }\n\
                  namespace N { export const z = 2; }\ninterface I { a: 1 }\ninterface I { b: 2 }\nexport const ok = f('x');\n";
        assert!(compile_module("app/client/t.ts", ts, PROD).is_ok(), "overloads and merged declarations are fine");
        let fine = "var v = 1; var v = 2; function g() {} function g() {}\nexports.y = 1;\n";
        assert!(compile_module("app/client/f.js", fine, PROD).is_ok(), "what a script may repeat stays allowed");
        assert!(compile_module("app/client/l.js", "export let y = 1;\ny = 2;\n", PROD).is_ok());
    }

    #[test]
    fn lib_scripts_are_checked_in_every_build_and_only_min_parts_pass_through() {
        for (name, options) in
            [("lib/client/1.x.js", DEV), ("lib/client/2.x.min.js", PROD), ("lib/client/3.x.js", PROD)]
        {
            let err = compile_script(name, "var ok = 1;\nvar x = ;\n", options).unwrap_err();
            assert_eq!(err[0].position.map(|p| p.0), Some(2), "{name}: {err:?}");
        }
        let text = "var  spaced = 1 ;";
        assert_eq!(compile_script("lib/client/2.minimal.js", text, PROD).unwrap().code, "var spaced=1;");
        assert_eq!(compile_script("lib/client/2.jquery.min.js", text, PROD).unwrap().code, text);
        assert_eq!(compile_script("lib/client/2.x.js", text, DEV).unwrap().code, text);
    }

    #[test]
    fn every_syntax_error_has_a_position() {
        let err = compile_module("app/client/bad.js", "let ok = 1;\nlet = ;\n", DEV).unwrap_err();
        assert!(!err.is_empty());
        assert_eq!(err[0].position.map(|p| p.0), Some(2), "{:?}", err);
        assert!(err[0].frame.as_deref().unwrap_or("").contains("let = ;"));
    }

    #[test]
    fn min_scripts_pass_through_byte_for_byte() {
        let text = "var  spaced = 1 ;";
        let c = compile_script("lib/client/1.x.min.js", text, PROD).unwrap();
        assert_eq!(c.code, text);
        let c = compile_script("lib/client/1.x.js", "var  spaced = 1 ;", PROD).unwrap();
        assert_eq!(c.code, "var spaced=1;");
    }

    #[test]
    fn pure_annotations_reach_the_minifier() {
        let source = |note: &str| {
            format!("/** Documentation. */\nexports.init = function () {{ var x = {note} make(); return 1; }};\n")
        };
        let plain = compile_module("app/client/p.js", &source(""), PROD).unwrap();
        assert!(plain.code.contains("make()"), "a call that may have effects stays: {}", plain.code);
        for note in ["/*#__PURE__*/", "/* @__PURE__ */"] {
            let pure = compile_module("app/client/p.js", &source(note), PROD).unwrap();
            assert!(!pure.code.contains("make"), "{note} lets an unused call go: {}", pure.code);
        }
        let dev = compile_module("app/client/p.js", &source(""), DEV).unwrap();
        assert!(dev.code.contains("/** Documentation. */"), "development output keeps every comment: {}", dev.code);
    }

    /// The parallel writing of a large minified module joins runs of
    /// statements: each must be written as it would be in one piece, whatever
    /// comes before it (statements starting with `(`, `[`, `+`, `/`, a
    /// template, or a keyword, after a block, a class or a directive).
    #[test]
    fn top_level_statements_are_written_alike_in_runs() {
        let source = "'use strict';\nvar a = 1;\n(function () {})();\n[1, 2].forEach(f);\n+a;\n-a;\n/re/g.test('x');\n\
            `t${a}`;\nclass K { static x = 1 }\nif (a) {} else { a++ }\nlabel: for (;;) break label;\n\
            function g() { return }\nlet b = a in {} ? void 0 : typeof a;\n{ let c = 2 }\n;\nexport default a;\n\
            export const d = async () => { await 1 }, e = /x/;\nimport('./y');\nnew K;\n!function () {}();\n";
        let cm: Lrc<SourceMap> = Default::default();
        let file = cm.new_source_file(Lrc::new(FileName::Anon), source.to_string());
        let mut errors = Vec::new();
        let syntax = Syntax::Es(EsSyntax::default());
        let program = parse_file_as_program(&file, syntax, EsVersion::latest(), None, &mut errors).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        let Program::Module(module) = &program else { panic!("parsed as a script") };
        let cfg = CodegenConfig::default().with_minify(true).with_target(EsVersion::latest());
        let mut whole = Vec::new();
        Emitter { cfg, cm: cm.clone(), comments: None, wr: JsWriter::new(cm.clone(), "\n", &mut whole, None) }
            .emit_program(&program)
            .unwrap();
        assert!(module.body.len() > 15);
        for run in 1..=4 {
            let joined: Vec<u8> = module.body.chunks(run).flat_map(|items| write_minified(&cm, cfg, items)).collect();
            assert_eq!(String::from_utf8(joined).unwrap(), String::from_utf8(whole.clone()).unwrap(), "runs of {run}");
        }
    }

    #[test]
    fn license_comments_survive_minification() {
        let c = compile_module("app/client/l.js", "/*! keep me */\n// drop me\nexports.a = 1;\n", PROD).unwrap();
        assert!(c.code.starts_with("/*! keep me */"), "{}", c.code);
        assert!(!c.code.contains("drop me"));
    }
}
