//! What a module makes public, read from its syntax tree before it is
//! transformed: exported names (ES `export` and CommonJS `exports.x =`), the
//! targets of `export * from`, and for server files the `exports.actions` tree
//! and the `exports.authenticate` flag.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use swc_core::common::{Span, Spanned};
use swc_core::ecma::ast::*;
use swc_core::ecma::utils::find_pat_ids;

/// A node of a server file's action tree: an action, or a namespace of more nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ActionNode {
    /// A callable action (`true` in JSON).
    Action(bool),
    /// A nested object of actions.
    Namespace(BTreeMap<String, ActionNode>),
}

/// Names that cannot be actions: the action context uses them.
pub const RESERVED_ACTIONS: [&str; 2] = ["session", "user"];

/// Whether `part` (a folder, a file's key or an action's key) can be part of
/// an action's name: a JavaScript identifier of ASCII letters, digits, `_`
/// and `$`, as `SS.server.a.b` and `/api/a/b` reach it. ssbuild checks the
/// names it can read when packing; ssrun checks every name when it starts,
/// with the same rule (`Registry::check`: the runtime does not link the
/// compiler).
pub fn is_action_identifier(part: &str) -> bool {
    !part.is_empty()
        && !part.starts_with(|c: char| c.is_ascii_digit())
        && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// What a module exports, as far as its syntax says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exports {
    /// Exported names, sorted.
    pub names: BTreeSet<String>,
    /// Specifiers of `export * from '...'`, whose names are added at link time.
    pub star_from: Vec<String>,
    /// `export { orig as name } from '...'`: (name, orig, specifier). In
    /// TypeScript, `orig` may be a type of that module, which is no name at
    /// run time: the linker drops such names (it sees that module's exports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub named_from: Vec<(String, String, String)>,
    /// `exports.actions`, when the module sets it.
    pub actions: Option<BTreeMap<String, ActionNode>>,
    /// Whether the module sets `exports.authenticate = true`.
    pub authenticate: bool,
}

/// A problem found while reading exports, at a span.
#[derive(Debug)]
pub struct ExportProblem {
    /// Where.
    pub span: Span,
    /// What.
    pub message: String,
    /// What to do.
    pub help: &'static str,
}

/// Reads the exports of a parsed program.
///
/// It compares names only, never scope marks (`SyntaxContext`), and needs
/// none of swc's thread-local state: `js::compile_module` runs it on another
/// thread, beside the scope checks.
pub fn read_exports(program: &Program) -> (Exports, Vec<ExportProblem>) {
    let mut reader = Reader {
        exports: Exports::default(),
        problems: Vec::new(),
        top: HashMap::new(),
        es_names: HashMap::new(),
        types: HashSet::new(),
    };
    let items: Vec<&ModuleItem>;
    let stmts: Vec<&Stmt>;
    match program {
        Program::Module(m) => {
            items = m.body.iter().collect();
            stmts = m.body.iter().filter_map(|i| i.as_stmt()).collect();
        }
        Program::Script(s) => {
            items = Vec::new();
            stmts = s.body.iter().collect();
        }
    }
    reader.index_top_level(&items, &stmts);
    for item in &items {
        if let ModuleItem::ModuleDecl(decl) = item {
            reader.module_decl(decl);
        }
    }
    for stmt in &stmts {
        if let Stmt::Expr(ExprStmt { expr, .. }) = stmt {
            reader.expr(expr);
        }
    }
    (reader.exports, reader.problems)
}

/// A top-level binding the action reader can follow.
enum TopBinding<'a> {
    Function,
    Value(&'a Expr),
}

struct Reader<'a> {
    exports: Exports,
    problems: Vec<ExportProblem>,
    top: HashMap<String, TopBinding<'a>>,
    /// Names exported with ES syntax so far, and how (see [`EsExport`]).
    es_names: HashMap<String, EsExport>,
    /// Top-level names that are TypeScript types only (interfaces, type
    /// aliases, `declare`d names, type imports): `export { T }` of one is gone
    /// once types are stripped.
    types: HashSet<String>,
}

/// How a name was exported with ES syntax: TypeScript lets some
/// declarations share a name (overload signatures with their function,
/// namespaces and enums that merge); anything else exported twice is an
/// error in every engine.
#[derive(Clone, Copy, PartialEq, Eq)]
enum EsExport {
    Single,
    Merging,
}

impl<'a> Reader<'a> {
    fn index_top_level(&mut self, items: &[&'a ModuleItem], stmts: &[&'a Stmt]) {
        let exported_decls = items.iter().filter_map(|i| match i {
            ModuleItem::ModuleDecl(ModuleDecl::ExportDecl(e)) => Some(&e.decl),
            _ => None,
        });
        let plain_decls = stmts.iter().filter_map(|s| s.as_decl());
        let (mut types, mut values) = (HashSet::new(), HashSet::new());
        for decl in exported_decls.clone().chain(plain_decls.clone()) {
            // `declare`d names are values that exist elsewhere at run time (globals).
            let (names, ambient): (Vec<String>, bool) = match decl {
                Decl::TsInterface(i) => (vec![i.id.sym.to_string()], true),
                Decl::TsTypeAlias(a) => (vec![a.id.sym.to_string()], true),
                other => (value_decl_names(other), false),
            };
            if ambient { types.extend(names) } else { values.extend(names) }
        }
        for item in items {
            if let ModuleItem::ModuleDecl(ModuleDecl::Import(import)) = item {
                for spec in &import.specifiers {
                    let (local, type_only) = match spec {
                        ImportSpecifier::Named(n) => (&n.local, import.type_only || n.is_type_only),
                        ImportSpecifier::Default(d) => (&d.local, import.type_only),
                        ImportSpecifier::Namespace(n) => (&n.local, import.type_only),
                    };
                    if type_only {
                        types.insert(local.sym.to_string())
                    } else {
                        values.insert(local.sym.to_string())
                    };
                }
            }
        }
        self.types = types.difference(&values).cloned().collect();
        for decl in exported_decls.chain(plain_decls) {
            match decl {
                Decl::Fn(f) => {
                    self.top.insert(f.ident.sym.to_string(), TopBinding::Function);
                }
                Decl::Var(v) => {
                    for d in &v.decls {
                        if let (Pat::Ident(id), Some(init)) = (&d.name, &d.init) {
                            let binding = match &**init {
                                Expr::Fn(_) | Expr::Arrow(_) => TopBinding::Function,
                                other => TopBinding::Value(other),
                            };
                            self.top.insert(id.id.sym.to_string(), binding);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn add(&mut self, name: impl Into<String>) {
        self.exports.names.insert(name.into());
    }

    /// Adds a name exported with ES syntax, reporting a second export of it.
    fn add_es(&mut self, name: String, how: EsExport, span: Span) {
        match self.es_names.insert(name.clone(), how) {
            Some(EsExport::Single) if how == EsExport::Single => self.problems.push(ExportProblem {
                span,
                message: format!("`{name}` is exported twice"),
                help: "a module exports each name once: rename one of the exports",
            }),
            _ => {}
        }
        self.add(name);
    }

    fn module_decl(&mut self, decl: &'a ModuleDecl) {
        match decl {
            ModuleDecl::ExportDecl(ExportDecl { decl, span }) => {
                let how = match decl {
                    Decl::Fn(f) if f.function.body.is_none() => EsExport::Merging,
                    Decl::TsEnum(_) | Decl::TsModule(_) => EsExport::Merging,
                    _ => EsExport::Single,
                };
                for name in value_decl_names(decl) {
                    if name == "actions"
                        && let Decl::Var(v) = decl
                        && let Some(init) = v.decls.iter().find_map(|d| d.init.as_deref())
                    {
                        self.set_actions(init);
                    }
                    if name == "authenticate"
                        && let Decl::Var(v) = decl
                        && let Some(init) = v.decls.iter().find_map(|d| d.init.as_deref())
                    {
                        self.exports.authenticate = is_true(init);
                    }
                    self.add_es(name, how, *span);
                }
            }
            ModuleDecl::ExportNamed(NamedExport { specifiers, type_only: false, src, .. }) => {
                for spec in specifiers {
                    match spec {
                        ExportSpecifier::Named(ExportNamedSpecifier {
                            orig: ModuleExportName::Ident(local), ..
                        }) if src.is_none() && self.types.contains(local.sym.as_str()) => {}
                        ExportSpecifier::Named(ExportNamedSpecifier {
                            orig, exported, is_type_only: false, ..
                        }) => {
                            let name = export_name(exported.as_ref().unwrap_or(orig));
                            if let Some(src) = src {
                                self.exports.named_from.push((
                                    name.clone(),
                                    export_name(orig),
                                    src.value.to_atom_lossy().to_string(),
                                ));
                            }
                            if name == "actions"
                                && let ModuleExportName::Ident(local) = orig
                                && let Some(TopBinding::Value(init)) = self.top.get(local.sym.as_str())
                            {
                                let init: &'a Expr = init;
                                self.set_actions(init);
                            }
                            self.add_es(name, EsExport::Single, spec.span());
                        }
                        ExportSpecifier::Default(d) => {
                            self.add_es(d.exported.sym.to_string(), EsExport::Single, d.exported.span)
                        }
                        ExportSpecifier::Namespace(ns) => self.add_es(export_name(&ns.name), EsExport::Single, ns.span),
                        ExportSpecifier::Named(_) => {}
                    }
                }
            }
            ModuleDecl::ExportDefaultDecl(ExportDefaultDecl { decl, span })
                if !matches!(decl, DefaultDecl::TsInterfaceDecl(_)) =>
            {
                let how = match decl {
                    DefaultDecl::Fn(f) if f.function.body.is_none() => EsExport::Merging,
                    _ => EsExport::Single,
                };
                self.add_es("default".into(), how, *span);
            }
            ModuleDecl::ExportDefaultExpr(e) => self.add_es("default".into(), EsExport::Single, e.span),
            ModuleDecl::ExportAll(ExportAll { src, type_only: false, .. }) => {
                self.exports.star_from.push(src.value.to_atom_lossy().to_string());
            }
            _ => {}
        }
    }

    /// A top-level expression statement: CommonJS exports.
    fn expr(&mut self, expr: &'a Expr) {
        match expr {
            Expr::Seq(seq) => seq.exprs.iter().for_each(|e| self.expr(e)),
            Expr::Paren(p) => self.expr(&p.expr),
            Expr::Assign(assign) if assign.op == AssignOp::Assign => {
                if let AssignTarget::Simple(SimpleAssignTarget::Member(member)) = &assign.left {
                    self.assignment(member, &assign.right);
                }
                self.expr(&assign.right);
            }
            Expr::Call(call) => {
                // Object.defineProperty(exports, "name", { ... })
                if let Callee::Expr(callee) = &call.callee
                    && let Expr::Member(m) = &**callee
                    && is_ident(&m.obj, "Object")
                    && member_name(&m.prop).as_deref() == Some("defineProperty")
                    && let [target, name, ..] = call.args.as_slice()
                    && is_exports_object(&target.expr)
                    && let Expr::Lit(Lit::Str(s)) = &*name.expr
                {
                    let name = s.value.to_atom_lossy().to_string();
                    if name != "__esModule" {
                        self.add(name);
                    }
                }
            }
            _ => {}
        }
    }

    fn assignment(&mut self, target: &'a MemberExpr, value: &'a Expr) {
        // exports.name = ..., module.exports.name = ...
        if is_exports_object(&target.obj) {
            if let Some(name) = member_name(&target.prop) {
                match name.as_str() {
                    "actions" => self.set_actions(value),
                    "authenticate" => self.exports.authenticate = is_true(value),
                    _ => {}
                }
                self.add(name);
            }
            return;
        }
        // module.exports = { a, b }
        if is_ident(&target.obj, "module") && member_name(&target.prop).as_deref() == Some("exports") {
            if let Expr::Object(obj) = unparen(value) {
                for prop in &obj.props {
                    if let Some((key, prop_value)) = prop_entry(prop) {
                        if key == "actions"
                            && let Some(v) = prop_value
                        {
                            self.set_actions(v);
                        }
                        if key == "authenticate" {
                            self.exports.authenticate = prop_value.is_some_and(is_true);
                        }
                        self.add(key);
                    }
                }
            }
            return;
        }
        // exports.actions.name = ...
        if let Expr::Member(inner) = &*target.obj
            && is_exports_object(&inner.obj)
            && member_name(&inner.prop).as_deref() == Some("actions")
            && let Some(name) = member_name(&target.prop)
        {
            let node = self.action_node(value);
            self.exports.actions.get_or_insert_with(BTreeMap::new).insert(name, node);
        }
    }

    fn set_actions(&mut self, value: &'a Expr) {
        match self.action_node(value) {
            ActionNode::Namespace(tree) => {
                for reserved in RESERVED_ACTIONS {
                    if tree.contains_key(reserved) {
                        self.problems.push(ExportProblem {
                            span: value.span(),
                            message: format!(
                                "`{reserved}` cannot be an action name: `session` and `user` are kept for the \
                                 action's own context (`this.session`)"
                            ),
                            help: "rename the action",
                        });
                    }
                }
                self.exports.actions = Some(tree);
            }
            ActionNode::Action(_) => self.problems.push(ExportProblem {
                span: value.span(),
                message: "`exports.actions` must be an object (of functions and nested objects)".into(),
                help: "write `exports.actions = { name(args, cb) { ... } }` so that ssbuild can list the actions",
            }),
        }
    }

    fn action_node(&mut self, value: &'a Expr) -> ActionNode {
        match unparen(value) {
            Expr::Object(obj) => {
                let mut tree = BTreeMap::new();
                for prop in &obj.props {
                    match prop_entry(prop) {
                        // Settings beside the actions (`limits: { max: 5 }`) are not actions.
                        Some((_, Some(v))) if matches!(unparen(v), Expr::Lit(_) | Expr::Array(_) | Expr::Tpl(_)) => {}
                        Some((key, Some(v))) => {
                            let node = self.action_node(v);
                            // A namespace with no actions (only settings, say) is left out.
                            if !matches!(&node, ActionNode::Namespace(t) if t.is_empty()) {
                                tree.insert(key, node);
                            }
                        }
                        Some((key, None)) => {
                            // A shorthand `{ name }` may name a top-level object of more actions.
                            let node = match self.top.get(key.as_str()) {
                                Some(TopBinding::Value(init)) => {
                                    let init: &'a Expr = init;
                                    self.action_node(init)
                                }
                                _ => ActionNode::Action(true),
                            };
                            tree.insert(key, node);
                        }
                        None => self.problems.push(ExportProblem {
                            span: prop.span(),
                            message: "this entry of the actions object has no name ssbuild can read".into(),
                            help: "use plain names for actions (no spread, no computed keys)",
                        }),
                    }
                }
                ActionNode::Namespace(tree)
            }
            Expr::Ident(id) => match self.top.get(id.sym.as_str()) {
                Some(TopBinding::Value(init)) => {
                    let init: &'a Expr = init;
                    self.action_node(init)
                }
                _ => ActionNode::Action(true),
            },
            _ => ActionNode::Action(true),
        }
    }
}

/// The key and (for key-value and shorthand entries) the value of an object entry.
/// Methods and shorthands are `(key, None)`; spreads and computed keys are `None`.
fn prop_entry(prop: &PropOrSpread) -> Option<(String, Option<&Expr>)> {
    let PropOrSpread::Prop(prop) = prop else {
        return None;
    };
    match &**prop {
        Prop::KeyValue(kv) => prop_name(&kv.key).map(|k| (k, Some(&*kv.value))),
        Prop::Method(m) => prop_name(&m.key).map(|k| (k, None)),
        Prop::Shorthand(id) => Some((id.sym.to_string(), None)),
        _ => None,
    }
}

fn prop_name(key: &PropName) -> Option<String> {
    match key {
        PropName::Ident(id) => Some(id.sym.to_string()),
        PropName::Str(s) => Some(s.value.to_atom_lossy().to_string()),
        PropName::Num(n) => Some(n.value.to_string()),
        _ => None,
    }
}

/// The expression inside parentheses and TypeScript's wrappers that leave
/// the value as it is (`x satisfies T`, `x as T`, `x as const`, `<T>x`, `x!`).
fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        Expr::TsSatisfies(t) => unparen(&t.expr),
        Expr::TsAs(t) => unparen(&t.expr),
        Expr::TsConstAssertion(t) => unparen(&t.expr),
        Expr::TsTypeAssertion(t) => unparen(&t.expr),
        Expr::TsNonNull(t) => unparen(&t.expr),
        Expr::TsInstantiation(t) => unparen(&t.expr),
        other => other,
    }
}

fn is_true(e: &Expr) -> bool {
    matches!(unparen(e), Expr::Lit(Lit::Bool(Bool { value: true, .. })))
}

fn is_ident(e: &Expr, name: &str) -> bool {
    matches!(unparen(e), Expr::Ident(id) if id.sym == name)
}

/// `exports` or `module.exports`.
fn is_exports_object(e: &Expr) -> bool {
    match unparen(e) {
        Expr::Ident(id) => id.sym == "exports",
        Expr::Member(m) => is_ident(&m.obj, "module") && member_name(&m.prop).as_deref() == Some("exports"),
        _ => false,
    }
}

fn member_name(prop: &MemberProp) -> Option<String> {
    match prop {
        MemberProp::Ident(id) => Some(id.sym.to_string()),
        MemberProp::Computed(c) => match &*c.expr {
            Expr::Lit(Lit::Str(s)) => Some(s.value.to_atom_lossy().to_string()),
            _ => None,
        },
        MemberProp::PrivateName(_) => None,
    }
}

fn export_name(name: &ModuleExportName) -> String {
    match name {
        ModuleExportName::Ident(id) => id.sym.to_string(),
        ModuleExportName::Str(s) => s.value.to_atom_lossy().to_string(),
    }
}

/// Names a declaration binds at run time (type-only declarations bind none).
fn value_decl_names(decl: &Decl) -> Vec<String> {
    match decl {
        Decl::Fn(f) if !f.declare => vec![f.ident.sym.to_string()],
        Decl::Class(c) if !c.declare => vec![c.ident.sym.to_string()],
        Decl::Var(v) if !v.declare => {
            v.decls.iter().flat_map(|d| find_pat_ids::<_, Ident>(&d.name)).map(|id| id.sym.to_string()).collect()
        }
        Decl::Using(u) => {
            u.decls.iter().flat_map(|d| find_pat_ids::<_, Ident>(&d.name)).map(|id| id.sym.to_string()).collect()
        }
        Decl::TsEnum(e) if !e.declare => vec![e.id.sym.to_string()],
        Decl::TsModule(m) if !m.declare => match &m.id {
            TsModuleName::Ident(id) => vec![id.sym.to_string()],
            TsModuleName::Str(_) => vec![],
        },
        _ => vec![],
    }
}
