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
    /// Write source maps (default: development only).
    pub source_maps: bool,
    /// Folders (relative to the app root) whose modules are packed and can be
    /// required, but are not part of an API tree: vendored code such as a
    /// library's source folder.
    pub private_folders: Vec<String>,
}

impl BuildConfig {
    /// The defaults of an environment.
    pub fn defaults(env: &str) -> Self {
        let development = env == "development";
        BuildConfig {
            env: env.to_string(),
            minify: !development,
            source_maps: development,
            private_folders: Vec::new(),
        }
    }
}

const KEYS: [&str; 3] = ["minify", "source_maps", "private_folders"];

/// Reads the build config of the app at `root` for `env`.
pub fn load(disk: &dyn Disk, root: &Path, env: &str) -> Result<BuildConfig, PackError> {
    let mut config = BuildConfig::defaults(env);
    let mut problems = Vec::new();
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
                "source_maps" => value.as_bool().map(|b| config.source_maps = b).is_some(),
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
                let wanted = if key == "private_folders" { "an array of strings" } else { "true or false" };
                problems
                    .push(Diagnostic::file(&rel, format!("`build.{key}` must be {wanted}, not {}", value.type_str())));
            }
        }
    }
    if problems.is_empty() { Ok(config) } else { Err(PackError::Invalid(problems)) }
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
        let c = load(&disk, Path::new("/a"), "production").unwrap();
        assert!(c.minify);
        assert_eq!(c.private_folders, ["app/client/three"]);

        disk.insert("/a/config/environments/staging.toml", "[build]\nminfy = true\nsource_maps = 1\n");
        let err = load(&disk, Path::new("/a"), "staging").unwrap_err();
        let messages: Vec<_> = err.diagnostics().iter().map(|d| d.message.as_str()).collect();
        assert_eq!(messages, ["unknown key `build.minfy`", "`build.source_maps` must be true or false, not integer"]);
    }
}
