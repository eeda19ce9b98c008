//! A loaded app: `manifest.json` from a packed `dist/` folder, and every file
//! the page needs, read into memory once at start (with its precompressed
//! variants), so that serving never touches the disk.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use serde::Deserialize;

/// The manifest formats this runtime reads.
pub const MANIFEST_FORMAT: u32 = 1;

/// Why an app could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Neither `PATH/manifest.json` nor `PATH/dist/manifest.json` exists.
    #[error("no packed app at {0}: neither manifest.json nor dist/manifest.json is there (run `ssbuild pack` first)")]
    NotPacked(PathBuf),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `manifest.json` is not what ssbuild writes.
    #[error("{path} is not a valid manifest: {source}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The manifest's format is newer or older than this runtime reads.
    #[error(
        "{path} has format {found}, and this ssrun reads format {MANIFEST_FORMAT}: pack the app again with the ssbuild of the same release"
    )]
    Format {
        /// The manifest.
        path: PathBuf,
        /// Its format.
        found: u32,
    },
    /// A file the manifest lists is missing or has another size.
    #[error("{path} does not match the manifest (missing or changed since the pack): pack the app again")]
    Mismatch {
        /// The file.
        path: PathBuf,
    },
}

#[derive(Debug, Deserialize)]
struct ManifestFile {
    format: u32,
    env: String,
    #[serde(default = "default_public_url")]
    public_url: String,
    page: FileEntry,
    assets: BTreeMap<String, FileEntry>,
    #[serde(default)]
    modules: BTreeMap<String, ModuleFile>,
    #[serde(default)]
    server: BTreeMap<String, FileEntry>,
    #[serde(default)]
    lib_server: BTreeMap<String, u64>,
}

#[derive(Debug, Deserialize)]
struct ModuleFile {
    #[serde(default)]
    actions: Option<serde_json::Value>,
    #[serde(default)]
    server_id: Option<u64>,
    #[serde(default)]
    authenticate: bool,
}

/// One `app/server` file with actions.
#[derive(Debug, Clone)]
pub struct ServerFile {
    /// Its path in the app (`app/server/admin/users.ts`).
    pub path: String,
    /// Its place in the API tree (`admin.users`).
    pub key: String,
    /// Its module id in the server bundle.
    pub server_id: u64,
    /// Whether it sets `exports.authenticate = true`.
    pub authenticate: bool,
    /// Its actions' full names (`admin.users.list`).
    pub actions: Vec<String>,
}

/// The packed server code: what the embedded engine runs.
#[derive(Debug, Clone)]
pub struct ServerCode {
    /// Where the bundle is (for messages).
    pub path: PathBuf,
    /// The bundle's text.
    pub bundle: String,
    /// Files with actions, in path order.
    pub files: Vec<ServerFile>,
    /// `lib/server` modules by name, with their module ids.
    pub lib_server: BTreeMap<String, u64>,
    /// The bundle's source map (development builds), which stack traces are
    /// mapped through to the app's files.
    pub map: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FileEntry {
    path: String,
    size: u64,
    sha256: String,
    #[serde(default)]
    integrity: String,
    #[serde(default)]
    compressed: BTreeMap<String, u64>,
}

fn default_public_url() -> String {
    "/assets/".to_string()
}

/// The page's own script and stylesheet, as its tags name them. In
/// development the `init` message carries them, so that a page loaded from
/// an older build can tell (see docs/protocol.md).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageBuild {
    /// The URL of `app.js`.
    pub js: Option<String>,
    /// The URL of `app.css` and its SRI integrity, when the app has styles.
    pub css: Option<(String, String)>,
    /// A digest of `index.html` with the script's and stylesheet's URLs and
    /// integrities left out: it changes with the layout and the templates,
    /// and not with the code or the styles (which have their own fields).
    pub page: String,
}

/// [`PageBuild::page`] for a page whose script and stylesheet tags hold `parts`.
fn page_digest(page: &[u8], parts: &[&str]) -> String {
    use sha1::Digest as _;
    let mut text = String::from_utf8_lossy(page).into_owned();
    for part in parts.iter().filter(|p| !p.is_empty()) {
        text = text.replace(part, "");
    }
    sha1::Sha1::digest(text.as_bytes())[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// One file ready to serve.
#[derive(Debug, Clone)]
pub struct Asset {
    /// Its media type.
    pub content_type: &'static str,
    /// A strong validator: part of the sha256 of the content.
    pub etag: String,
    /// The content.
    pub body: Bytes,
    /// The gzip variant, when the pack made one.
    pub gzip: Option<Bytes>,
    /// The brotli variant, when the pack made one.
    pub br: Option<Bytes>,
}

/// A packed app, loaded.
#[derive(Debug)]
pub struct LoadedApp {
    /// The environment it was packed for.
    pub env: String,
    /// `index.html`.
    pub page: Asset,
    /// Public assets by URL path (`/assets/app.3f2a9c01b2d4.js`).
    pub assets: HashMap<String, Asset>,
    /// The app's `public/` folder, when the app's root is known.
    pub public_dir: Option<PathBuf>,
    /// `static/404.html`, when the app has one.
    pub not_found_page: Option<Bytes>,
    /// The folder holding `dist/` with `public/`, `static/` and `config/`,
    /// when it is an app's root or a deployment's folder.
    pub root: Option<PathBuf>,
    /// The app's `config/` folder, when there is one beside `dist/` (see [`crate::Config::load`]).
    pub config_dir: Option<PathBuf>,
    /// The server bundle and its action files, when the app has server code.
    pub server_code: Option<ServerCode>,
    /// The page's script and stylesheet.
    pub build: PageBuild,
    /// The manifest this was loaded from.
    pub manifest_path: PathBuf,
    /// The manifest's bytes, to tell a new build from this one.
    pub manifest_bytes: Vec<u8>,
}

impl LoadedApp {
    /// Loads the app at `path`: a `dist/` folder, or an app root holding `dist/`.
    pub fn load(path: &Path) -> Result<LoadedApp, LoadError> {
        let (dist, root) = if path.join("manifest.json").is_file() {
            // The app's root, or a deployment's folder holding dist/ with
            // public/, static/ and config/ beside it (the app's source is not needed).
            // The path is made absolute first: `.`, when serving from inside
            // dist/, has no parent of its own.
            let root = absolute(path)
                .parent()
                .filter(|p| ["app", "public", "static", "config"].iter().any(|d| p.join(d).is_dir()))
                .map(Path::to_path_buf);
            (path.to_path_buf(), root)
        } else if path.join("dist/manifest.json").is_file() {
            (path.join("dist"), Some(path.to_path_buf()))
        } else {
            return Err(LoadError::NotPacked(path.to_path_buf()));
        };
        let manifest_path = dist.join("manifest.json");
        let text = read(&manifest_path)?;
        let manifest: ManifestFile = serde_json::from_slice(&text)
            .map_err(|source| LoadError::Manifest { path: manifest_path.clone(), source })?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(LoadError::Format { path: manifest_path, found: manifest.format });
        }
        let page = load_asset(&dist, &manifest.page)?;
        let mut assets = HashMap::new();
        for entry in manifest.assets.values() {
            // Only the public folder is ever served: the server bundle is not in `assets`.
            if entry.path.starts_with("assets/") {
                assets.insert(format!("/{}", entry.path), load_asset(&dist, entry)?);
            }
        }
        let public_dir = root.as_ref().map(|r| r.join("public")).filter(|p| p.is_dir());
        let config_dir = root.as_ref().map(|r| r.join("config")).filter(|p| p.is_dir());
        let not_found_page =
            root.as_ref().map(|r| r.join("static/404.html")).and_then(|p| std::fs::read(p).ok()).map(Bytes::from);
        let mut files = Vec::new();
        for (path, module) in &manifest.modules {
            if let (Some(rest), Some(actions), Some(server_id)) =
                (path.strip_prefix("app/server/"), &module.actions, module.server_id)
            {
                // A file's key is its name up to the first dot.
                let (dir, file) = rest.rsplit_once('/').unwrap_or(("", rest));
                let key = file.split('.').next().unwrap_or(file);
                let key = if dir.is_empty() { key.to_string() } else { format!("{}.{key}", dir.replace('/', ".")) };
                let mut names = Vec::new();
                collect_actions(&key, actions, &mut names);
                files.push(ServerFile {
                    path: path.clone(),
                    key,
                    server_id,
                    authenticate: module.authenticate,
                    actions: names,
                });
            }
        }
        let server_code = match manifest.server.get("server.js") {
            Some(entry) => {
                let path = dist.join(&entry.path);
                let bytes = read(&path)?;
                if bytes.len() as u64 != entry.size {
                    return Err(LoadError::Mismatch { path });
                }
                let bundle = String::from_utf8(bytes).map_err(|_| LoadError::Mismatch { path: path.clone() })?;
                // A map that is missing or unreadable only costs the mapping of stack traces.
                let map = manifest
                    .server
                    .get("server.js.map")
                    .and_then(|entry| std::fs::read_to_string(dist.join(&entry.path)).ok());
                Some(ServerCode { path, bundle, files, lib_server: manifest.lib_server, map })
            }
            None => None,
        };
        let url = |name: &str| {
            manifest.assets.get(name).map(|entry| {
                (
                    format!("{}{}", manifest.public_url, entry.path.trim_start_matches("assets/")),
                    entry.integrity.clone(),
                )
            })
        };
        let (js, css) = (url("app.js"), url("app.css"));
        let parts: Vec<&str> =
            js.iter().chain(&css).flat_map(|(url, integrity)| [url.as_str(), integrity.as_str()]).collect();
        let build = PageBuild { page: page_digest(&page.body, &parts), js: js.map(|(url, _)| url), css };
        Ok(LoadedApp {
            env: manifest.env,
            page,
            assets,
            public_dir,
            not_found_page,
            config_dir,
            root,
            server_code,
            build,
            manifest_path,
            manifest_bytes: text,
        })
    }
}

/// `path` made absolute, so that its parent is the folder around it. A path
/// ending in a name keeps that name, so that a `dist` that is a link is
/// looked beside where it was named, as before; one ending in `.` or `..` is
/// resolved by the file system, since only it knows where `..` leads through
/// links. When neither can be done (the working folder is gone), the path is
/// kept as given.
fn absolute(path: &Path) -> PathBuf {
    // An empty path names the working folder, as it does when joined to a file name.
    let path = if path.as_os_str().is_empty() { Path::new(".") } else { path };
    let resolved = match path.components().next_back() {
        Some(Component::Normal(_)) => std::path::absolute(path),
        _ => std::fs::canonicalize(path),
    };
    resolved.unwrap_or_else(|_| path.to_path_buf())
}

fn collect_actions(base: &str, tree: &serde_json::Value, out: &mut Vec<String>) {
    match tree {
        serde_json::Value::Object(map) => {
            for (key, node) in map {
                collect_actions(&format!("{base}.{key}"), node, out);
            }
        }
        _ => out.push(base.to_string()),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read { path: path.to_path_buf(), source })
}

fn load_asset(dist: &Path, entry: &FileEntry) -> Result<Asset, LoadError> {
    let path = dist.join(&entry.path);
    let body = read(&path)?;
    if body.len() as u64 != entry.size {
        return Err(LoadError::Mismatch { path });
    }
    let variant = |encoding: &str, ext: &str| -> Result<Option<Bytes>, LoadError> {
        if entry.compressed.contains_key(encoding) {
            Ok(Some(Bytes::from(read(&dist.join(format!("{}.{ext}", entry.path)))?)))
        } else {
            Ok(None)
        }
    };
    Ok(Asset {
        content_type: content_type(&entry.path),
        etag: format!("\"{}\"", &entry.sha256[..entry.sha256.len().min(32)]),
        body: Bytes::from(body),
        gzip: variant("gzip", "gz")?,
        br: variant("br", "br")?,
    })
}

/// The media type of a file, by its extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_made_absolute_so_that_it_has_a_parent() {
        let here = std::fs::canonicalize(".").unwrap();
        assert_eq!(absolute(Path::new(".")), here);
        assert_eq!(absolute(Path::new("")), here);
        assert_eq!(absolute(Path::new("src/..")), here);
        let dist = absolute(Path::new("dist"));
        assert!(dist.is_absolute() && dist.ends_with("dist"), "{}", dist.display());
        assert_eq!(absolute(Path::new("./dist")), dist);
        assert!(absolute(Path::new(".")).parent().is_some_and(|p| !p.as_os_str().is_empty()));
    }
}
