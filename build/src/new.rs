//! `ssbuild new NAME`: a working app written from the template in
//! `new_project/`, which is embedded in the binary.

use std::path::{Path, PathBuf};

/// Each file of the template: where it goes in the new app, and its text.
/// `__NAME__` in a text becomes the app's name. (`gitignore` is stored
/// without its dot so that it does not apply to the template folder itself.)
pub const FILES: [(&str, &str); 14] = [
    (".gitignore", include_str!("../../new_project/gitignore")),
    ("README.md", include_str!("../../new_project/README.md")),
    ("app/client/app.js", include_str!("../../new_project/app/client/app.js")),
    ("app/css/app.scss", include_str!("../../new_project/app/css/app.scss")),
    ("app/server/app.js", include_str!("../../new_project/app/server/app.js")),
    ("app/server/chat.js", include_str!("../../new_project/app/server/chat.js")),
    ("app/shared/format.js", include_str!("../../new_project/app/shared/format.js")),
    ("app/views/app.html", include_str!("../../new_project/app/views/app.html")),
    ("app/views/chat/message.html", include_str!("../../new_project/app/views/chat/message.html")),
    ("config/app.toml", include_str!("../../new_project/config/app.toml")),
    ("config/environments/production.toml", include_str!("../../new_project/config/environments/production.toml")),
    ("public/favicon.svg", include_str!("../../new_project/public/favicon.svg")),
    ("public/robots.txt", include_str!("../../new_project/public/robots.txt")),
    ("static/404.html", include_str!("../../new_project/static/404.html")),
];

/// Why an app could not be written.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    /// The folder is there already, with something in it.
    #[error("{} already exists and is not empty", .0.display())]
    Exists(PathBuf),
    /// The name has no last part to call the app by (`..`, `/`).
    #[error("`{}` does not name a folder to create", .0.display())]
    BadName(PathBuf),
    /// Writing failed; nothing was left behind.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// What could not be written.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl NewError {
    /// What to do about it.
    pub fn help(&self) -> &'static str {
        match self {
            NewError::Exists(_) => "choose another name, or remove that folder first",
            NewError::BadName(_) => "pass the path of a new folder, such as `ssbuild new my-app`",
            NewError::Write { .. } => "check that the folder can be written there (nothing was left behind)",
        }
    }
}

/// Writes a new app into `target`, which must not exist or be empty (missing
/// parent folders are made; `.` is the current folder, when empty). A new
/// folder is written beside its place first and then renamed into it; an
/// existing empty one is written in place, and emptied again on failure. So a
/// failure leaves nothing half-written. Gives the files written.
pub fn create(target: &Path) -> Result<Vec<&'static str>, NewError> {
    let absolute = std::path::absolute(target).map_err(|source| NewError::Write { path: target.into(), source })?;
    // `a/.` and `a/b/..` name folders too; the app is called by the folder's own name.
    let normal: PathBuf = absolute.components().fold(PathBuf::new(), |mut p, c| {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                p.pop();
            }
            other => p.push(other),
        }
        p
    });
    let name = normal
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| NewError::BadName(target.to_path_buf()))?
        .to_string();
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| NewError::Write { path, source }
    };
    let existing_empty = match std::fs::read_dir(&normal) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(NewError::Exists(target.to_path_buf()));
            }
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(write_err(target)(e)),
    };
    let parent = normal.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let into = if existing_empty {
        normal.clone()
    } else {
        parent.join(format!(".{name}.ssbuild-new-{}", std::process::id()))
    };
    let written = (|| {
        for (path, text) in FILES {
            let file = into.join(path);
            let dir = file.parent().expect("a template file sits in the app's folder");
            std::fs::create_dir_all(dir).map_err(write_err(dir))?;
            let shown = if path.ends_with(".html") { crate::views::escape_html(&name) } else { name.clone() };
            std::fs::write(&file, text.replace("__NAME__", &shown)).map_err(write_err(&target.join(path)))?;
        }
        if !existing_empty {
            std::fs::rename(&into, &normal).map_err(write_err(target))?;
        }
        Ok(())
    })();
    if written.is_err() {
        if existing_empty {
            // Empty it again: only what this run wrote is there.
            if let Ok(entries) = std::fs::read_dir(&into) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(&into);
        }
    }
    written?;
    Ok(FILES.iter().map(|(path, _)| *path).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file under new_project/ is in [`FILES`], and nothing else.
    #[test]
    fn the_embedded_list_is_the_template_folder() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../new_project");
        let mut on_disk: Vec<String> = walkdir::WalkDir::new(&root)
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| e.path().strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/"))
            .map(|p| if p == "gitignore" { ".gitignore".to_string() } else { p })
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        listed.sort();
        assert_eq!(listed, on_disk);
    }

    #[test]
    fn an_app_is_written_once_and_never_over_another() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("chat-room");
        let files = create(&target).unwrap();
        assert_eq!(files.len(), FILES.len());
        let page = std::fs::read_to_string(target.join("app/views/app.html")).unwrap();
        assert!(page.contains("<title>chat-room</title>"), "{page}");
        assert!(!page.contains("__NAME__"));
        assert!(target.join(".gitignore").is_file());
        // Nothing left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(create(&target.join(".")).is_err(), "not over a folder with files");

        let err = create(&target).unwrap_err();
        assert!(matches!(err, NewError::Exists(_)), "{err}");
        assert!(err.to_string().ends_with("chat-room already exists and is not empty"), "{err}");

        // An empty folder is fine.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        create(&empty).unwrap();
        assert!(empty.join("app/client/app.js").is_file());

        assert!(matches!(create(Path::new("/")), Err(NewError::BadName(_))));
        // `.` and `..` name the folders they stand for.
        let here = dir.path().join("here");
        std::fs::create_dir(&here).unwrap();
        create(&here.join("sub/..")).unwrap();
        let page = std::fs::read_to_string(here.join("app/views/app.html")).unwrap();
        assert!(page.contains("<title>here</title>"), "{page}");
        // Names are escaped in pages.
        let odd = dir.path().join("a&b<c>");
        create(&odd).unwrap();
        let page = std::fs::read_to_string(odd.join("app/views/app.html")).unwrap();
        assert!(page.contains("<title>a&amp;b&lt;c&gt;</title>"), "{page}");
        assert!(std::fs::read_to_string(odd.join("README.md")).unwrap().starts_with("# a&b<c>\n"));
        // Missing parent folders are made, as `mkdir -p` does.
        create(&dir.path().join("apps/deeper/app")).unwrap();
        assert!(dir.path().join("apps/deeper/app/config/app.toml").is_file());
    }
}
