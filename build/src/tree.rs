//! API trees: where each module's exports land in `SS.client`, `SS.shared` and
//! `SS.server`, and the conflicts that make a tree impossible.
//!
//! Each folder is a key; each file's key is its name up to the first dot. A file
//! and a folder with the same key, or two files with the same key, cannot share
//! a place: both paths are named in the error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::diagnostic::Diagnostic;
use crate::discover::{Kind, Source, tree_key};

/// A node of an API tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Node {
    /// A module, by its path relative to the app root.
    Module(String),
    /// A folder of more nodes.
    Folder(Tree),
}

/// A tree: keys to nodes, sorted.
pub type Tree = BTreeMap<String, Node>;

/// Builds the tree of one kind from its sources. `private` lists folders whose
/// modules are left out of the tree (they can still be required).
pub fn build_tree<'a>(sources: impl Iterator<Item = &'a Source>, private: &[String]) -> Result<Tree, Vec<Diagnostic>> {
    let mut tree = Tree::new();
    // Where each key came from, to name both sides of a conflict.
    let mut origins: BTreeMap<Vec<String>, String> = BTreeMap::new();
    let mut problems = Vec::new();
    for source in sources {
        if is_private(&source.path, private) {
            continue;
        }
        let parts: Vec<&str> = source.inner_path().split('/').collect();
        let (file, folders) = parts.split_last().expect("a path has a file name");
        let key_path: Vec<String> = folders.iter().map(|f| (*f).to_string()).collect();
        for depth in 1..=key_path.len() {
            origins.entry(key_path[..depth].to_vec()).or_insert_with(|| folder_path(source, &key_path[..depth]));
        }
        let node = match descend(&mut tree, folders) {
            Ok(node) => node,
            Err((depth, other)) => {
                problems.push(conflict(&other, &folder_path(source, &key_path[..=depth]), source.kind));
                continue;
            }
        };
        let mut key_path = key_path;
        let key = tree_key(file).to_string();
        key_path.push(key.clone());
        match node.get(&key) {
            None => {
                node.insert(key, Node::Module(source.path.clone()));
                origins.insert(key_path, source.path.clone());
            }
            Some(_) => {
                let other = origins.get(&key_path).cloned().unwrap_or_default();
                problems.push(conflict(&other, &source.path, source.kind));
            }
        }
    }
    if problems.is_empty() { Ok(tree) } else { Err(problems) }
}

/// The folder node at `folders`, created as needed; a module in the way is an error (its depth and path).
fn descend<'t>(mut node: &'t mut Tree, folders: &[&str]) -> Result<&'t mut Tree, (usize, String)> {
    for (depth, folder) in folders.iter().enumerate() {
        let entry = node.entry((*folder).to_string()).or_insert_with(|| Node::Folder(Tree::new()));
        node = match entry {
            Node::Folder(inner) => inner,
            Node::Module(other) => return Err((depth, other.clone())),
        };
    }
    Ok(node)
}

/// Whether a module path sits in one of the private folders.
pub fn is_private(path: &str, private: &[String]) -> bool {
    private.iter().any(|folder| {
        let folder = folder.trim_end_matches('/');
        path.strip_prefix(folder).is_some_and(|rest| rest.starts_with('/'))
    })
}

fn folder_path(source: &Source, key_path: &[String]) -> String {
    format!("{}/{}/", source.kind.folder(), key_path.join("/"))
}

fn conflict(a: &str, b: &str, kind: Kind) -> Diagnostic {
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    let tree = match kind {
        Kind::Client => "SS.client",
        Kind::Shared => "SS.shared",
        _ => "SS.server",
    };
    Diagnostic::file(b, format!("`{first}` and `{second}` have the same key in {tree}: each file's key is its name up to the first dot, and a folder's key is its name"))
        .with_help(format!("rename one of them, or list its folder under `private_folders` in the [build] table of config/app.toml to keep it out of {tree}"))
}

/// Every module path in a tree, in key order.
pub fn modules_of(tree: &Tree) -> Vec<&str> {
    let mut out = Vec::new();
    fn walk<'a>(tree: &'a Tree, out: &mut Vec<&'a str>) {
        for node in tree.values() {
            match node {
                Node::Module(p) => out.push(p),
                Node::Folder(t) => walk(t, out),
            }
        }
    }
    walk(tree, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(path: &str, kind: Kind) -> Source {
        Source { path: path.into(), kind, text: String::new(), digest: [0; 32] }
    }

    #[test]
    fn folders_nest_and_keys_stop_at_the_first_dot() {
        let files = [src("app/client/app.js", Kind::Client), src("app/client/a/b.view.ts", Kind::Client)];
        let tree = build_tree(files.iter(), &[]).unwrap();
        assert_eq!(
            serde_json::to_string(&tree).unwrap(),
            r#"{"a":{"b":"app/client/a/b.view.ts"},"app":"app/client/app.js"}"#
        );
    }

    #[test]
    fn file_and_folder_with_one_key_name_both_paths() {
        let files = [src("app/client/a/b.js", Kind::Client), src("app/client/a/b/c.js", Kind::Client)];
        let err = build_tree(files.iter(), &[]).unwrap_err();
        assert!(err[0].message.contains("`app/client/a/b.js` and `app/client/a/b/`"), "{}", err[0].message);
    }

    #[test]
    fn two_files_with_one_key_name_both_paths() {
        let files = [src("app/shared/x.js", Kind::Shared), src("app/shared/x.util.js", Kind::Shared)];
        let err = build_tree(files.iter(), &[]).unwrap_err();
        assert!(err[0].message.contains("`app/shared/x.js` and `app/shared/x.util.js`"), "{}", err[0].message);
    }

    #[test]
    fn private_folders_stay_out() {
        let files = [src("app/client/vendor/x.js", Kind::Client), src("app/client/vendor/x.y.js", Kind::Client)];
        let tree = build_tree(files.iter(), &["app/client/vendor".into()]).unwrap();
        assert!(tree.is_empty());
    }
}
