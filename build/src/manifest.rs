//! `manifest.json`: what a pack wrote and what the runtime needs to serve it.
//! The format is versioned ([`crate::emit::MANIFEST_FORMAT`]) and documented in
//! docs/manifest.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::emit::{FileEntry, MANIFEST_FORMAT};
use crate::link::ModuleEntry;
use crate::tree::Tree;

/// The manifest of a packed app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The format version.
    pub format: u32,
    /// The program and version that wrote it.
    pub generator: String,
    /// The environment the app was packed for.
    pub env: String,
    /// The URL the page loads assets from (`/assets/`, or a CDN's).
    pub public_url: String,
    /// The single page, `index.html`.
    pub page: FileEntry,
    /// Public files (served to browsers), by logical name (`app.js`).
    pub assets: BTreeMap<String, FileEntry>,
    /// Server files (never served), by logical name (`server.js`).
    pub server: BTreeMap<String, FileEntry>,
    /// The API trees `client`, `shared` and `server`; leaves are module paths.
    pub trees: BTreeMap<String, Tree>,
    /// Every module by path: its bundle ids, exports, actions.
    pub modules: BTreeMap<String, ModuleEntry>,
    /// `lib/server` modules by name, with their id in the server bundle.
    pub lib_server: BTreeMap<String, usize>,
}

impl Manifest {
    /// Assembles the manifest of a linked app whose files were named.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        env: &str,
        public_url: &str,
        page: FileEntry,
        assets: BTreeMap<String, FileEntry>,
        server: BTreeMap<String, FileEntry>,
        trees: BTreeMap<&'static str, Tree>,
        modules: BTreeMap<String, ModuleEntry>,
        lib_server: BTreeMap<String, usize>,
    ) -> Self {
        Manifest {
            format: MANIFEST_FORMAT,
            generator: concat!("ssbuild ", env!("CARGO_PKG_VERSION")).to_string(),
            env: env.to_string(),
            public_url: public_url.to_string(),
            page,
            assets,
            server,
            trees: trees.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            modules,
            lib_server,
        }
    }

    /// Every file the manifest lists.
    pub fn files(&self) -> impl Iterator<Item = &FileEntry> {
        std::iter::once(&self.page).chain(self.assets.values()).chain(self.server.values())
    }

    /// Pretty JSON with a final newline; the same manifest gives the same bytes.
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("the manifest is JSON");
        bytes.push(b'\n');
        bytes
    }
}
