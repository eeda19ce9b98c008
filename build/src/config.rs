//! The `[build]` table of an app's config: `config/app.toml`, then
//! `config/environments/ENV.toml` over it. Other tables belong to `ssrun` and
//! are left for it to check.

use std::path::Path;

use crate::diagnostic::{Diagnostic, PackError};
use crate::disk::Disk;

/// Build settings after defaults, app config and environment config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildConfig {
    /// The environment name (`development`, `staging`, `production`, or any).
    pub env: String,
    /// Minify code (default: every environment but development).
    pub minify: bool,
    /// When minifying, also compress code (default: true). Off, cold packs of
    /// large files take about a third less time and output grows about 2% (gzip).
    pub compress: bool,
    /// Write source maps (default: development only).
    pub source_maps: bool,
    /// Folders (relative to the app root) whose modules are packed and can be
    /// required, but are not part of an API tree: vendored code such as a
    /// library's source folder.
    pub private_folders: Vec<String>,
    /// Browsers to prefix and lower CSS for, as browserslist queries (empty: [`crate::css::DEFAULT_BROWSERS`]).
    pub browsers: Vec<String>,
    /// Where browsers fetch the assets folder from: `/assets/`, or a CDN's URL.
    pub public_url: String,
    /// Write `.gz` and `.br` beside each text asset (default: when minifying).
    pub precompress: bool,
}

impl BuildConfig {
    /// The defaults of an environment.
    pub fn defaults(env: &str) -> Self {
        let development = env == "development";
        BuildConfig {
            env: env.to_string(),
            minify: !development,
            compress: true,
            source_maps: development,
            private_folders: Vec::new(),
            browsers: Vec::new(),
            public_url: DEFAULT_PUBLIC_URL.to_string(),
            precompress: !development,
        }
    }
}

/// Where assets are served from when nothing else is said.
pub const DEFAULT_PUBLIC_URL: &str = "/assets/";

const KEYS: [&str; 7] =
    ["minify", "compress", "source_maps", "private_folders", "browsers", "public_url", "precompress"];

/// A public URL ends with a slash, so that file names can follow it.
pub fn normalize_public_url(url: &str) -> String {
    if url.ends_with('/') { url.to_string() } else { format!("{url}/") }
}

/// A public URL as the page will use it (see [`normalize_public_url`]), or
/// why `url` cannot be one: asset names are added at its end, so it is a
/// folder's path (`/assets/`) or an http(s) URL, without a query or a fragment.
pub fn public_url(url: &str) -> Result<String, String> {
    let lower = url.to_ascii_lowercase();
    if !(url.starts_with('/') || lower.starts_with("https://") || lower.starts_with("http://")) {
        return Err(format!(
            "{url:?} is not where browsers can load assets from: give a path (/assets/) or an http(s) URL \
             (https://cdn.example.com/app/)"
        ));
    }
    if let Some(c) =
        url.chars().find(|c| matches!(c, '?' | '#' | '"' | '<' | '>' | '\\') || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{url:?} holds {c:?}: asset names are added to the end of this URL, so it names a folder, without a \
             query, a fragment, spaces or quotes"
        ));
    }
    Ok(normalize_public_url(url))
}

/// Reads the build config of the app at `root` for `env`: the settings, with
/// the defaults in place of what could not be read, and the mistakes found
/// (so that a pack can go on checking the code before it reports them all).
pub fn load(disk: &dyn Disk, root: &Path, env: &str) -> Result<(BuildConfig, Vec<Diagnostic>), PackError> {
    let mut config = BuildConfig::defaults(env);
    let mut problems = Vec::new();
    let mut browsers_from = "config/app.toml".to_string();
    for rel in ["config/app.toml".to_string(), format!("config/environments/{env}.toml")] {
        let path = root.join(&rel);
        if !disk.is_file(&path) {
            continue;
        }
        let bytes = disk.read(&path).map_err(|e| PackError::io("reading", &path, e))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                problems.push(toml_error(&rel, &text, &e));
                continue;
            }
        };
        // The other tables are ssrun's, which checks them when it starts;
        // one named nearly `build` is a typo, and its settings would be
        // left out of this pack without a word.
        for key in table.keys().filter(|k| *k != "build") {
            if key.eq_ignore_ascii_case("build") || crate::diagnostic::nearly(key, "build") {
                problems.push(
                    Diagnostic::file(&rel, format!("[{key}] is no table ssbuild or ssrun reads"))
                        .with_help("ssbuild's settings go in a [build] table"),
                );
            }
        }
        let Some(build) = table.get("build") else {
            continue;
        };
        let Some(build) = build.as_table() else {
            problems.push(
                Diagnostic::file(&rel, "`build` must be a table").with_help("write `[build]` followed by its keys"),
            );
            continue;
        };
        for (key, value) in build {
            let ok = match key.as_str() {
                "minify" => value.as_bool().map(|b| config.minify = b).is_some(),
                "compress" => value.as_bool().map(|b| config.compress = b).is_some(),
                "source_maps" => value.as_bool().map(|b| config.source_maps = b).is_some(),
                "precompress" => value.as_bool().map(|b| config.precompress = b).is_some(),
                "public_url" => match value.as_str().map(public_url) {
                    Some(Ok(url)) => {
                        config.public_url = url;
                        true
                    }
                    Some(Err(why)) => {
                        problems.push(Diagnostic::file(&rel, format!("`build.public_url`: {why}")));
                        continue;
                    }
                    None => false,
                },
                "browsers" => match value.as_array() {
                    Some(items) if items.iter().all(|i| i.is_str()) => {
                        config.browsers = items.iter().filter_map(|i| i.as_str()).map(str::to_string).collect();
                        browsers_from = rel.clone();
                        true
                    }
                    _ => false,
                },
                "private_folders" => match value.as_array() {
                    Some(items) if items.iter().all(|i| i.is_str()) => {
                        config.private_folders = items
                            .iter()
                            .filter_map(|i| i.as_str())
                            .map(|s| s.trim_end_matches('/').to_string())
                            .collect();
                        true
                    }
                    _ => false,
                },
                _ => {
                    problems.push(
                        Diagnostic::file(&rel, format!("unknown key `build.{key}`"))
                            .with_help(format!("the [build] table takes: {}", KEYS.join(", "))),
                    );
                    continue;
                }
            };
            if !ok {
                let wanted = match key.as_str() {
                    "private_folders" | "browsers" => "an array of strings",
                    "public_url" => "a string",
                    _ => "true or false",
                };
                problems
                    .push(Diagnostic::file(&rel, format!("`build.{key}` must be {wanted}, not {}", value.type_str())));
            }
        }
    }
    if let Err(e) = crate::css::targets(&config.browsers) {
        problems.push(
            Diagnostic::file(browsers_from, format!("`build.browsers` is not a valid browserslist query: {e}"))
                .with_help(format!("for example: browsers = [\"{}\"]", crate::css::DEFAULT_BROWSERS)),
        );
        config.browsers = BuildConfig::defaults(env).browsers;
    }
    Ok((config, problems))
}

fn toml_error(file: &str, text: &str, error: &toml::de::Error) -> Diagnostic {
    let message = format!("invalid TOML: {}", error.message());
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            Diagnostic::at(file, text, line, col, message)
        }
        None => Diagnostic::file(file, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::MemoryDisk;

    #[test]
    fn environment_file_wins_and_unknown_keys_are_named() {
        let mut disk = MemoryDisk::new();
        disk.insert("/a/config/app.toml", "[build]\nminify = false\nprivate_folders = ['app/client/three/']\n");
        disk.insert("/a/config/environments/production.toml", "[build]\nminify = true\n");
        let (c, problems) = load(&disk, Path::new("/a"), "production").unwrap();
        assert!(c.minify && problems.is_empty());
        assert_eq!(c.private_folders, ["app/client/three"]);

        disk.insert("/a/config/environments/staging.toml", "[build]\nminfy = true\nsource_maps = 1\n");
        let (c, problems) = load(&disk, Path::new("/a"), "staging").unwrap();
        let messages: Vec<_> = problems.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(messages, ["unknown key `build.minfy`", "`build.source_maps` must be true or false, not integer"]);
        // What could be read still counts, so that the rest of the pack is checked as it will be built.
        assert!(!c.minify);
        assert_eq!(c.private_folders, ["app/client/three"]);

        // A table named nearly `build` is a typo; ssrun's own tables are its to check.
        disk.insert(
            "/a/config/environments/qa.toml",
            "[biuld]\nminify = true\n[Build]\nx = 1\n[api]\nprefix = 'rpc'\n",
        );
        let (c, problems) = load(&disk, Path::new("/a"), "qa").unwrap();
        let messages: Vec<_> = problems.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            ["[Build] is no table ssbuild or ssrun reads", "[biuld] is no table ssbuild or ssrun reads"]
        );
        assert_eq!(problems[0].help.as_deref(), Some("ssbuild's settings go in a [build] table"));
        assert!(!c.minify);
    }

    #[test]
    fn a_public_url_is_a_folder_browsers_can_load_from() {
        assert_eq!(public_url("https://cdn.example.com/app").unwrap(), "https://cdn.example.com/app/");
        assert_eq!(public_url("/static/").unwrap(), "/static/");
        assert_eq!(public_url("//cdn.example.com/x/").unwrap(), "//cdn.example.com/x/");
        for (bad, why) in [
            ("https://cdn.example.com/app/?v=1", "holds '?'"),
            ("/a#b/", "holds '#'"),
            ("/my assets/", "holds ' '"),
            ("ftp://x/", "is not where browsers can load assets from"),
            ("cdn.example.com/app/", "is not where browsers can load assets from"),
        ] {
            let error = public_url(bad).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
        let mut disk = MemoryDisk::new();
        disk.insert("/a/config/app.toml", "[build]\npublic_url = \"https://cdn.example.com/?v=2\"\n");
        let (c, problems) = load(&disk, Path::new("/a"), "production").unwrap();
        assert_eq!(c.public_url, DEFAULT_PUBLIC_URL);
        assert!(problems[0].message.starts_with("`build.public_url`: \"https://cdn.example.com/?v=2\" holds '?'"));
    }
}
