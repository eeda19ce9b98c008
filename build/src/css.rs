//! Styles: `lib/css/*.css` in numeric order, then the app's stylesheet
//! (`app/css/app.scss` compiled with grass, or `app/css/app.css`), each parsed,
//! prefixed for the configured browsers and (in production) minified by
//! lightningcss, into one `app.css`. Files that `url()` points to inside the app
//! become content-hashed assets and the references are rewritten.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use lightningcss::dependencies::{Dependency, DependencyOptions};
use lightningcss::printer::PrinterOptions;
use lightningcss::stylesheet::{MinifyOptions, ParserOptions, StyleSheet};
use lightningcss::targets::{Browsers, Targets};
use sha2::{Digest, Sha256};

use crate::diagnostic::{Diagnostic, display_path};
use crate::discover::{Kind, Source};
use crate::disk::{Disk, PrivateFolders, is_private, normalize};
use crate::emit::hashed_name;

/// The browsers styles are prefixed for when the config names none
/// (browserslist's own defaults).
pub const DEFAULT_BROWSERS: &str = "> 0.5%, last 2 versions, Firefox ESR, not dead";

/// The stylesheet of an app and the files it references.
#[derive(Debug, Default)]
pub struct Styles {
    /// The CSS of `app.css`, with asset URLs written in (relative to the assets folder).
    pub css: String,
    /// Files referenced by `url()`: app path -> (hashed file name, bytes).
    pub assets: BTreeMap<String, (String, Vec<u8>)>,
    /// Files read outside the discovered sources (SCSS imported from elsewhere,
    /// url() targets), with their sha256, so that the next pack can tell whether they changed.
    pub inputs: BTreeMap<String, String>,
    /// The app's private folders, resolved at the first url() asset.
    private: Option<PrivateFolders>,
    /// `@import` rules of full URLs, which go first in the stylesheet
    /// (browsers ignore an @import that follows other rules).
    imports: Vec<String>,
}

/// Resolves `browsers` (browserslist queries) to lightningcss targets.
pub fn targets(browsers: &[String]) -> Result<Targets, String> {
    let queries: Vec<&str> = if browsers.is_empty() {
        DEFAULT_BROWSERS.split(',').map(str::trim).collect()
    } else {
        browsers.iter().map(String::as_str).collect()
    };
    match Browsers::from_browserslist(queries) {
        Ok(browsers) => Ok(Targets { browsers, ..Targets::default() }),
        Err(e) => Err(e.to_string()),
    }
}

/// The names the app's stylesheet entry may have, the first found packed.
const ENTRIES: [&str; 3] = ["app/css/app.scss", "app/css/app.sass", "app/css/app.css"];

/// A warning for each stylesheet entry that is there beside the one packed
/// (an `app.css` beside `app.scss`: its edits would change nothing).
pub fn unused_entries(styles: &[Source]) -> Vec<String> {
    let present: Vec<&str> = ENTRIES
        .iter()
        .copied()
        .filter(|entry| styles.iter().any(|s| s.kind == Kind::Style && s.path == *entry))
        .collect();
    present
        .iter()
        .skip(1)
        .map(|unused| {
            format!(
                "{unused} is not packed: {} is the stylesheet (the first of app.scss, app.sass, app.css); \
                 rename it (to _base.css, say) and @import it from there, or remove it",
                present[0]
            )
        })
        .collect()
}

/// Builds the app's stylesheet. `styles` are the discovered `lib/css` and `app/css` files.
pub fn build(
    disk: &dyn Disk,
    root: &Path,
    styles: &[Source],
    targets: Targets,
    minify: bool,
) -> Result<Styles, Vec<Diagnostic>> {
    let mut out = Styles::default();
    let mut problems = Vec::new();
    let mut sheets: Vec<(String, String, String)> = Vec::new(); // (file named in errors, base folder for url(), css)
    for lib in styles.iter().filter(|s| s.kind == Kind::LibStyle) {
        let base = lib.path.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap_or_default();
        sheets.push((lib.path.clone(), base, lib.text.clone()));
    }
    let app_styles: Vec<&Source> = styles.iter().filter(|s| s.kind == Kind::Style).collect();
    let entry = ENTRIES.iter().find_map(|p| app_styles.iter().find(|s| s.path == *p));
    // The SCSS files the stylesheet was compiled from.
    let mut compiled_from: Vec<&Source> = Vec::new();
    if let Some(entry) = entry {
        if entry.path.ends_with(".css") {
            sheets.push((entry.path.clone(), "app/css".into(), entry.text.clone()));
        } else {
            match compile_sass(disk, root, entry, styles) {
                Ok((css, extra, read)) => {
                    out.inputs.extend(extra);
                    // The entry first, then the partials in the order they were read.
                    compiled_from.push(*entry);
                    compiled_from.extend(
                        read.iter().filter_map(|p| app_styles.iter().find(|s| s.path == *p && s.path != entry.path)),
                    );
                    sheets.push((entry.path.clone(), "app/css".into(), css));
                }
                Err(d) => problems.push(d),
            }
        }
    }

    let mut parts = Vec::new();
    for (file, base, css) in &sheets {
        // A url() in compiled SCSS is looked for in the SCSS it came from.
        let written = if file.ends_with(".scss") || file.ends_with(".sass") { &compiled_from[..] } else { &[] };
        match process(disk, root, (file, written), base, css, targets, minify, &mut out) {
            Ok(code) => parts.push(code),
            Err(mut d) => problems.append(&mut d),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let imports = std::mem::take(&mut out.imports);
    out.css = imports.into_iter().chain(parts).collect::<Vec<_>>().join(if minify { "" } else { "\n" });
    Ok(out)
}

/// What [`compile_sass`] gives: the CSS, the files read that are not among
/// the discovered styles (with their digests), and the paths of all the
/// files read, in order.
type CompiledSass = (String, BTreeMap<String, String>, Vec<String>);

/// Compiles an SCSS entry with grass, reading through `disk`.
fn compile_sass(disk: &dyn Disk, root: &Path, entry: &Source, styles: &[Source]) -> Result<CompiledSass, Diagnostic> {
    let fs = SassFs {
        disk,
        root,
        private: PrivateFolders::of(disk, root),
        read: Mutex::new(Vec::new()),
        refused: Mutex::new(None),
    };
    let options = grass::Options::default()
        .fs(&fs)
        .load_path(root.join("app/css"))
        .style(grass::OutputStyle::Expanded)
        .quiet(true);
    let path = root.join(&entry.path);
    let result = grass::from_path(&path, &options);
    let refused = fs.refused.lock().ok().and_then(|mut refused| refused.take());
    if let (Err(_), Some(private)) = (&result, refused) {
        return Err(Diagnostic::file(
            &entry.path,
            format!("a stylesheet imports {private}, which browsers must not see: server code, config/ and hidden files never become CSS"),
        )
        .with_help("keep what stylesheets share (variables, mixins) in a partial under app/css or lib/css"));
    }
    let css = result.map_err(|e| sass_error(root, *e))?;
    let mut extra = BTreeMap::new();
    let mut read = Vec::new();
    for file in fs.read.into_inner().unwrap_or_default() {
        let rel = display_path(root, &file);
        if !styles.iter().any(|s| s.path == rel)
            && let Ok(bytes) = disk.read(&file)
        {
            extra.insert(rel.clone(), hex::encode(Sha256::digest(&bytes)));
        }
        read.push(rel);
    }
    Ok((css, extra, read))
}

fn sass_error(root: &Path, error: grass::Error) -> Diagnostic {
    match error.kind() {
        grass::ErrorKind::ParseError { message, loc, .. } => {
            let file = display_path(root, Path::new(loc.file.name()));
            let d = Diagnostic::at(
                file,
                loc.file.source(),
                loc.begin.line + 1,
                loc.begin.column + 1,
                format!("SCSS error: {message}"),
            );
            match sass_help(&message) {
                Some(help) => d.with_help(help),
                None => d,
            }
        }
        grass::ErrorKind::IoError(e) => Diagnostic::file("app/css", format!("cannot read the stylesheet: {e}")),
        grass::ErrorKind::FromUtf8Error(e) => {
            Diagnostic::file("app/css", format!("a stylesheet is not valid UTF-8: {e}"))
        }
        _ => Diagnostic::file("app/css", "the SCSS compiler failed"),
    }
}

/// What to do about the SCSS mistakes made most often.
fn sass_help(message: &str) -> Option<&'static str> {
    let help = match message.trim_end_matches('.') {
        "Undefined variable" => {
            "define it above this line (`$name: value;`), or @import the partial that defines it first; \
             with @use, write it as `module.$name`"
        }
        "Undefined mixin" => "define it with @mixin above this line, or @import the partial that defines it first",
        "Undefined function" => {
            "define it with @function above this line, or @import the partial that defines it first"
        }
        "Can't find stylesheet to import" => {
            "paths are relative to the importing file or to app/css; a partial `_name.scss` is imported as 'name'"
        }
        _ => return None,
    };
    Some(help)
}

/// grass reads files through the pack's disk; it records what it read, and
/// refuses server code, configuration and hidden files.
#[derive(Debug)]
struct SassFs<'a> {
    disk: &'a dyn Disk,
    root: &'a Path,
    private: PrivateFolders,
    read: Mutex<Vec<PathBuf>>,
    /// The first private file an import reached, by its app path.
    refused: Mutex<Option<String>>,
}

impl grass::Fs for SassFs<'_> {
    fn is_dir(&self, path: &Path) -> bool {
        !self.disk.is_file(path) && self.disk.files_under(path).is_ok_and(|f| !f.is_empty())
    }

    fn is_file(&self, path: &Path) -> bool {
        self.disk.is_file(path)
    }

    // grass panics on an error reading a file it found (0.13: an I/O error
    // is not among those it expects there), so a refusal or a failed read
    // is given to it as a stylesheet that stops with `@error`.
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        let stop = |why: String| Ok(format!("@error {};\n", css_string_literal(&why)).into_bytes());
        let written = normalize(&display_path(self.root, path)).filter(|rel| is_private(rel));
        if let Some(private) = written.or_else(|| self.private.holding(self.disk, path)) {
            let why = format!("{private} is not for browsers");
            if let Ok(mut refused) = self.refused.lock() {
                refused.get_or_insert(private);
            }
            return stop(why);
        }
        if let Ok(mut read) = self.read.lock() {
            read.push(path.to_path_buf());
        }
        self.disk.read(path).or_else(|e| stop(format!("cannot read this file: {e}")))
    }
}

/// Parses, prefixes, minifies and prints one stylesheet; rewrites its url()s.
#[allow(clippy::too_many_arguments)]
fn process(
    disk: &dyn Disk,
    root: &Path,
    (file, written): (&str, &[&Source]),
    base: &str,
    css: &str,
    targets: Targets,
    minify: bool,
    out: &mut Styles,
) -> Result<String, Vec<Diagnostic>> {
    let options = ParserOptions { filename: file.to_string(), ..ParserOptions::default() };
    let mut sheet = StyleSheet::parse(css, options).map_err(|e| {
        let message = format!("CSS error: {}", e.kind);
        vec![match e.loc {
            Some(loc) => Diagnostic::at(file, css, loc.line as usize + 1, loc.column as usize, message),
            None => Diagnostic::file(file, message),
        }]
    })?;
    sheet
        .minify(MinifyOptions { targets, ..MinifyOptions::default() })
        .map_err(|e| vec![Diagnostic::file(file, format!("CSS error: {}", e.kind))])?;
    let printed = sheet
        .to_css(PrinterOptions {
            minify,
            targets,
            analyze_dependencies: Some(DependencyOptions { remove_imports: false }),
            ..PrinterOptions::default()
        })
        .map_err(|e| vec![Diagnostic::file(file, format!("CSS error: {}", e.kind))])?;
    let mut code = printed.code;
    let mut problems = Vec::new();
    for dep in printed.dependencies.unwrap_or_default() {
        match dep {
            Dependency::Url(url) => {
                let (target, suffix) = split_suffix(&url.url);
                let replacement = if is_external(&url.url) {
                    url.url.clone()
                } else {
                    match asset(disk, root, base, target, out) {
                        Ok(name) => format!("{name}{suffix}"),
                        Err(message) => {
                            let (line, col) = (url.loc.start.line as usize, url.loc.start.column as usize);
                            let d = if written.is_empty() {
                                Diagnostic::at(file, css, line, col, message)
                            } else {
                                match find_url(written, target) {
                                    Some((source, line, col)) => {
                                        Diagnostic::at(&source.path, &source.text, line, col, message)
                                    }
                                    // Built by interpolation or a function: not written out anywhere.
                                    None => Diagnostic::file(file, message),
                                }
                            };
                            problems.push(d.with_help("url() paths are relative to the stylesheet (for SCSS, to app/css); use a full URL for files outside the app"));
                            continue;
                        }
                    }
                };
                code = put_url(&code, &url.placeholder, &replacement);
            }
            // A full URL (a web font's stylesheet) or a path from the site's
            // root is the browser's to load, as for url().
            // It moves to the top of the whole stylesheet, before lib/css's rules.
            Dependency::Import(import) if is_external(&import.url) => {
                let Some(at) = code.find(&import.placeholder) else { continue };
                let start = code[..at].rfind("@import").unwrap_or(at);
                let end = code[at..].find(';').map_or(code.len(), |e| at + e + 1);
                let quoted = format!("\"{}\"", import.placeholder);
                let rule = &code[start..end];
                let rule = if rule.contains(&quoted) {
                    rule.replace(&quoted, &css_string_literal(&import.url))
                } else {
                    rule.replace(&import.placeholder, &css_string(&import.url))
                };
                out.imports.push(rule);
                code.replace_range(start..end, "");
            }
            Dependency::Import(import) => {
                let message = format!("@import of '{}' is not bundled", import.url);
                let d = if written.is_empty() {
                    let (line, col) = (import.loc.start.line as usize, import.loc.start.column as usize);
                    Diagnostic::at(file, css, line, col, message)
                } else {
                    match find_import(written, &import.url) {
                        Some((source, line, col)) => Diagnostic::at(&source.path, &source.text, line, col, message),
                        None => Diagnostic::file(file, message),
                    }
                };
                let help = if written.is_empty() {
                    "a .css file's @imports are not followed: write the stylesheet as app/css/app.scss, which inlines \
                     them, or give a full https:// URL for the browser to load"
                } else {
                    "Sass inlines an @import written without `.css` (`@import 'normalize'`); one that names a .css \
                     file or uses url() is left to the browser, which only a full https:// URL can serve"
                };
                problems.push(d.with_help(help));
            }
        }
    }
    if problems.is_empty() { Ok(code) } else { Err(problems) }
}

/// Where `@import` of `target` is written in the stylesheets `written` (the
/// entry first, then the partials it read), outside comments: the file, and
/// the line and column of the `@import`, both from 1.
fn find_import<'a>(written: &[&'a Source], target: &str) -> Option<(&'a Source, usize, usize)> {
    written.iter().find_map(|source| {
        let text = without_comments(&source.text);
        text.lines().enumerate().find_map(|(i, line)| {
            let at = line.find("@import")?;
            line[at..].contains(target).then(|| (*source, i + 1, line[..at].chars().count() + 1))
        })
    })
}

/// Where `url(target)` is written in the stylesheets `written` (the entry
/// first, then the partials it read), outside comments: the file, and the
/// line and column of the target, both from 1.
fn find_url<'a>(written: &[&'a Source], target: &str) -> Option<(&'a Source, usize, usize)> {
    written.iter().find_map(|source| {
        // Comments blanked, one space for each character, so that lines and
        // columns stay; `url(` looked for in ASCII lower case (`URL(`), which
        // keeps byte offsets; the target matched as written.
        let text = without_comments(&source.text);
        let lower = text.to_ascii_lowercase();
        lower.match_indices("url(").find_map(|(at, _)| {
            let inside = text[at + 4..].trim_start_matches([' ', '\t']);
            let inside = inside.strip_prefix(['"', '\'']).unwrap_or(inside);
            let after = inside.strip_prefix(target)?;
            if !after.is_empty() && !after.starts_with([')', '"', '\'', ' ', '\t', '\n', '?', '#']) {
                return None;
            }
            let before = &text[..text.len() - after.len() - target.len()];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().unwrap_or(before).chars().count() + 1;
            Some((*source, line, col))
        })
    })
}

/// SCSS text with its `/* */` and `//` comments blanked: each character of a
/// comment but a line break becomes a space. A `//` after a `:` or a `(` is
/// a URL's (`url(http://...)`, `url(//cdn/...)`), not a comment; quoted
/// strings are left alone.
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let (mut quote, mut last, mut escaped) = (None, '\0', false);
    while let Some(c) = chars.next() {
        match (quote, c, chars.peek()) {
            (Some(q), _, _) => {
                if c == q && !escaped {
                    quote = None;
                }
                escaped = c == '\\' && !escaped;
                out.push(c);
            }
            (None, '"' | '\'', _) => {
                quote = Some(c);
                out.push(c);
            }
            (None, '/', Some('*')) => {
                out.push_str("  ");
                chars.next();
                let mut prev = '\0';
                for c in chars.by_ref() {
                    out.push(if c == '\n' { '\n' } else { ' ' });
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            (None, '/', Some('/')) if last != ':' && last != '(' => {
                out.push(' ');
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                    out.push(' ');
                }
            }
            _ => out.push(c),
        }
        last = c;
    }
    out
}

/// `data:`, `http:`, `//host`, `/root` and `#fragment` URLs are left as they are.
fn is_external(url: &str) -> bool {
    url.starts_with('/') || url.starts_with('#') || url.contains(':')
}

/// `font.woff2?v=3#iefix` -> (`font.woff2`, `?v=3#iefix`).
fn split_suffix(url: &str) -> (&str, &str) {
    match url.find(['?', '#']) {
        Some(i) => url.split_at(i),
        None => (url, ""),
    }
}

/// `code` with each place lightningcss printed `placeholder` holding `url`
/// instead. Inside `url(...)` the placeholder is printed quoted, and a plain
/// URL needs no quotes there; elsewhere (`image-set("a.png" 1x)`, which
/// takes strings) it is a string, and stays one.
fn put_url(code: &str, placeholder: &str, url: &str) -> String {
    let quoted_len = placeholder.len() + 2;
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find(placeholder) {
        let quoted_here = at > 0 && rest.as_bytes()[at - 1] == b'"' && rest[at + placeholder.len()..].starts_with('"');
        let (start, end) = if quoted_here { (at - 1, at - 1 + quoted_len) } else { (at, at + placeholder.len()) };
        out.push_str(&rest[..start]);
        let in_url = out.len() >= 4 && out.as_bytes()[out.len() - 4..].eq_ignore_ascii_case(b"url(");
        match (quoted_here, in_url) {
            (true, true) => out.push_str(&css_string(url)),
            (true, false) => out.push_str(&css_string_literal(url)),
            (false, _) => out.push_str(url),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `text` as a double-quoted CSS string.
fn css_string_literal(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', " "))
}

/// Quotes a URL for `url(...)` when it needs it.
fn css_string(url: &str) -> String {
    if url.chars().any(|c| c.is_whitespace() || "()'\"\\".contains(c)) {
        format!("\"{}\"", url.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        url.to_string()
    }
}

/// Reads a referenced file and names it by content; returns the file name to use in CSS.
fn asset(disk: &dyn Disk, root: &Path, base: &str, target: &str, out: &mut Styles) -> Result<String, String> {
    let rel = normalize(&format!("{base}/{target}")).ok_or_else(|| format!("url({target}) points outside the app"))?;
    if is_private(&rel) {
        return Err(format!(
            "url({target}) points to {rel}, which browsers must not see: server code, config/ and hidden files \
             never become assets"
        ));
    }
    if let Some((name, _)) = out.assets.get(&rel) {
        return Ok(name.clone());
    }
    let private_folders = out.private.get_or_insert_with(|| PrivateFolders::of(disk, root));
    if let Some(private) = private_folders.holding(disk, &root.join(&rel)) {
        return Err(format!(
            "url({target}) points to {rel}, a link to {private}, which browsers must not see: server code, \
             config/ and hidden files never become assets"
        ));
    }
    let bytes =
        disk.read(&root.join(&rel)).map_err(|_| format!("url({target}) points to {rel}, which does not exist"))?;
    let name = hashed_name(rel.rsplit('/').next().unwrap_or(&rel), &bytes);
    out.inputs.insert(rel.clone(), hex::encode(Sha256::digest(&bytes)));
    out.assets.insert(rel, (name.clone(), bytes));
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::MemoryDisk;

    #[test]
    fn server_code_config_and_hidden_files_never_become_assets() {
        let mut disk = MemoryDisk::new();
        for file in ["app/server/db.js", "lib/server/auth.js", "config/app.toml", "app/css/.env", "public/logo.png"] {
            disk.insert(format!("/a/{file}"), b"secret".to_vec());
        }
        let text = ".a{background:url(../server/db.js)}\n.b{background:url(../../lib/server/auth.js)}\n\
                    .c{background:url(../../config/app.toml)}\n.d{background:url(.env)}\n\
                    .e{background:url(../../public/logo.png)}\n";
        let styles = [style("app/css/app.css", Kind::Style, text)];
        disk.insert("/a/app/css/app.css", text.as_bytes().to_vec());
        let err = build(&disk, Path::new("/a"), &styles, targets(&[]).unwrap(), true).unwrap_err();
        let lines: Vec<usize> = err.iter().filter_map(|d| d.position.map(|p| p.0)).collect();
        assert_eq!(lines, [1, 2, 3, 4], "{err:?}");
        assert!(err[0].message.contains("app/server/db.js, which browsers must not see"), "{}", err[0].message);
        assert!(!is_private("public/logo.png") && !is_private("app/css/img/a.png") && !is_private("assets/x.woff2"));
        assert!(is_private("app/Server/db.js") && is_private("Config/app.toml") && is_private(".env"));
        assert!(!is_private("node_modules/.pnpm/f@1/node_modules/f/x.woff2") && !is_private("configs/x.png"));
    }

    fn style(path: &str, kind: Kind, text: &str) -> Source {
        Source { path: path.into(), kind, text: text.into(), digest: [0; 32] }
    }

    #[test]
    fn lib_css_comes_first_and_urls_become_hashed_assets() {
        let mut disk = MemoryDisk::new();
        disk.insert("/a/app/css/img/logo.png", b"PNG".to_vec());
        let styles = [
            style("lib/css/1.reset.css", Kind::LibStyle, "html { margin: 0 }"),
            style(
                "app/css/app.scss",
                Kind::Style,
                "$c: #ff0000;\n.logo { color: $c; background: url(img/logo.png?x=1) }\n",
            ),
        ];
        disk.insert("/a/app/css/app.scss", styles[1].text.as_bytes().to_vec());
        let out = build(&disk, Path::new("/a"), &styles, targets(&[]).unwrap(), true).unwrap();
        let name = &out.assets["app/css/img/logo.png"].0;
        assert!(name.starts_with("logo.") && name.ends_with(".png"));
        assert_eq!(out.css, format!("html{{margin:0}}.logo{{color:red;background:url({name}?x=1)}}"));
    }

    /// `image-set()` takes strings: an asset's hashed name stays quoted
    /// there (unquoted, the browser drops the whole declaration); in `url()`
    /// (the prefixed fallback's, a background's) it needs no quotes.
    #[test]
    fn image_set_keeps_its_strings() {
        let mut disk = MemoryDisk::new();
        disk.insert("/a/app/css/img/dot.png", b"PNG".to_vec());
        disk.insert("/a/app/css/img/dot 2x.png", b"PNG2".to_vec());
        let text = ".f { background-image: image-set(url(img/dot.png) 1x, \"img/dot 2x.png\" 2x) }\n\
                    .g { background: url(img/dot.png) }\n";
        let styles = [style("app/css/app.css", Kind::Style, text)];
        disk.insert("/a/app/css/app.css", text.as_bytes().to_vec());
        let chrome_90 = targets(&["chrome 90".to_string()]).unwrap();
        let out = build(&disk, Path::new("/a"), &styles, chrome_90, true).unwrap();
        let one = &out.assets["app/css/img/dot.png"].0;
        let two = &out.assets["app/css/img/dot 2x.png"].0;
        let fallback = format!("background-image:-webkit-image-set(url({one}) 1x,url(\"{two}\") 2x)");
        assert!(out.css.contains(&fallback), "{}", out.css);
        assert!(out.css.contains(&format!("background-image:image-set(\"{one}\" 1x,\"{two}\" 2x)")), "{}", out.css);
        assert!(out.css.contains(&format!(".g{{background:url({one})}}")), "{}", out.css);
    }

    #[test]
    fn a_url_to_a_missing_file_is_named() {
        let disk = MemoryDisk::new();
        let styles = [style("lib/css/1.x.css", Kind::LibStyle, "a {}\nb { background: url(../img/none.png) }")];
        let err = build(&disk, Path::new("/a"), &styles, targets(&[]).unwrap(), true).unwrap_err();
        assert_eq!(err[0].file, "lib/css/1.x.css");
        assert_eq!(err[0].position, Some((2, 21)));
        assert!(err[0].message.contains("lib/img/none.png, which does not exist"), "{}", err[0].message);
    }

    #[test]
    fn a_missing_url_in_scss_is_found_where_it_is_written() {
        let mut disk = MemoryDisk::new();
        // A comment and a partial nobody imports mention the same URLs first.
        let entry = "@import 'parts/icons';\n/* was: url(img/a.png) */ // url(img/b.png)\n.a { background: url(http://x/y.png), url(img/a.png) }\n";
        let old = "// unused\n.o { background: url(img/b.png) }\n";
        let partial =
            "$dir: 'img';\n.b {\n  background: URL( \"img/b.png\" );\n  border-image: url(#{$dir}/c.png);\n}\n";
        disk.insert("/a/app/css/app.scss", entry);
        disk.insert("/a/app/css/_old.scss", old);
        disk.insert("/a/app/css/parts/_icons.scss", partial);
        let styles = [
            style("app/css/app.scss", Kind::Style, entry),
            style("app/css/_old.scss", Kind::Style, old),
            style("app/css/parts/_icons.scss", Kind::Style, partial),
        ];
        let mut err = build(&disk, Path::new("/a"), &styles, targets(&[]).unwrap(), true).unwrap_err();
        err.sort_by_key(|d| d.message.clone());
        let found: Vec<(&str, Option<(usize, usize)>)> = err.iter().map(|d| (d.file.as_str(), d.position)).collect();
        assert_eq!(
            found,
            [
                ("app/css/app.scss", Some((3, 43))),
                ("app/css/parts/_icons.scss", Some((3, 21))),
                // Made by interpolation: written nowhere as such.
                ("app/css/app.scss", None),
            ]
        );
        assert!(err[0].frame.as_deref().is_some_and(|f| f.contains("url(img/a.png) }")), "{:?}", err[0].frame);

        // The URL is matched as written: `Logo.png` is not `logo.png`.
        let mut disk = MemoryDisk::new();
        let entry = ".a { background: url(img/Logo.png) }\n.b { background: url(img/logo.png) }\n";
        disk.insert("/a/app/css/app.scss", entry);
        disk.insert("/a/app/css/img/Logo.png", "png");
        let styles = [style("app/css/app.scss", Kind::Style, entry)];
        let err = build(&disk, Path::new("/a"), &styles, targets(&[]).unwrap(), true).unwrap_err();
        assert_eq!((err.len(), err[0].position), (1, Some((2, 22))), "{err:?}");
    }

    #[test]
    fn comments_are_blanked_in_place() {
        let text = "a /* b\nc */ d // e: url(x)\nf: url(http://g/h) 'i // j' /* é */ k";
        let blank = without_comments(text);
        assert_eq!(blank, "a     \n     d             \nf: url(http://g/h) 'i // j'         k");
        assert_eq!(blank.chars().count(), text.chars().count());
        // A string ending in an escaped backslash ends there; `url(//host)` is no comment.
        let text = "c: \"\\\\\"; /* x */ url(//cdn/y.png), url(z.png) // w";
        assert_eq!(without_comments(text), "c: \"\\\\\";         url(//cdn/y.png), url(z.png)     ");
    }

    #[test]
    fn scss_cannot_import_server_code_or_config() {
        for import in ["../../config/theme", "../server/theme", "../../.secrets/theme"] {
            let mut disk = MemoryDisk::new();
            let entry = format!("@import '{import}';\n.a {{ color: red; }}\n");
            disk.insert("/a/app/css/app.scss", entry.as_str());
            disk.insert("/a/config/_theme.scss", "$secret: 1; .s { content: 'secret'; }\n");
            disk.insert("/a/app/server/_theme.scss", "$secret: 1; .s { content: 'secret'; }\n");
            disk.insert("/a/.secrets/_theme.scss", "$secret: 1; .s { content: 'secret'; }\n");
            let styles = [style("app/css/app.scss", Kind::Style, &entry)];
            let err = build(&disk, Path::new("/a"), &styles, targets(&[]).unwrap(), true).unwrap_err();
            assert_eq!(err[0].file, "app/css/app.scss");
            assert!(err[0].message.contains("which browsers must not see"), "{import}: {}", err[0].message);
        }
    }

    /// A disk on which one file is listed but cannot be read.
    #[derive(Debug)]
    struct Unreadable(MemoryDisk, &'static str);

    impl Disk for Unreadable {
        fn files_under(&self, dir: &Path) -> std::io::Result<Vec<crate::disk::Listed>> {
            self.0.files_under(dir)
        }
        fn is_file(&self, path: &Path) -> bool {
            self.0.is_file(path)
        }
        fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
            if path.ends_with(self.1) {
                return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied"));
            }
            self.0.read(path)
        }
        fn real_path(&self, path: &Path) -> Option<PathBuf> {
            self.0.real_path(path)
        }
        fn link_target(&self, path: &Path) -> Option<PathBuf> {
            self.0.link_target(path)
        }
    }

    #[test]
    fn a_partial_that_cannot_be_read_is_an_error_not_a_crash() {
        let mut disk = MemoryDisk::new();
        let entry = "@import 'broken';\n";
        disk.insert("/a/app/css/app.scss", entry);
        disk.insert("/a/app/css/_broken.scss", ".b { color: red; }\n");
        let styles = [style("app/css/app.scss", Kind::Style, entry)];
        let disk = Unreadable(disk, "_broken.scss");
        let err = build(&disk, Path::new("/a"), &styles, targets(&[]).unwrap(), true).unwrap_err();
        assert_eq!(err[0].file, "app/css/_broken.scss");
        assert!(err[0].message.contains("cannot read this file: denied"), "{}", err[0].message);
    }

    #[test]
    fn common_scss_mistakes_get_help() {
        for (scss, help) in [
            (".a { color: $nope; }\n", "define it above this line"),
            (".a { @include nope; }\n", "define it with @mixin"),
            ("@import 'nope';\n", "a partial `_name.scss` is imported as 'name'"),
        ] {
            let mut disk = MemoryDisk::new();
            disk.insert("/a/app/css/app.scss", scss);
            let styles = [style("app/css/app.scss", Kind::Style, scss)];
            let err = build(&disk, Path::new("/a"), &styles, targets(&[]).unwrap(), true).unwrap_err();
            assert!(err[0].help.as_deref().is_some_and(|h| h.contains(help)), "{scss}: {:?}", err[0]);
        }
    }

    #[test]
    fn scss_errors_name_the_partial() {
        let mut disk = MemoryDisk::new();
        disk.insert("/a/app/css/app.scss", "@import 'parts/colors';\n");
        disk.insert("/a/app/css/parts/_colors.scss", "$a: 1;\n.x { width: $missing; }\n");
        let styles = [style("app/css/app.scss", Kind::Style, "@import 'parts/colors';\n")];
        let err = build(&disk, Path::new("/a"), &styles, targets(&[]).unwrap(), true).unwrap_err();
        assert_eq!(err[0].file, "app/css/parts/_colors.scss");
        assert_eq!(err[0].position, Some((2, 13)));
        assert!(err[0].message.contains("Undefined variable"), "{}", err[0].message);
    }

    #[test]
    fn prefixes_follow_the_targets() {
        let disk = MemoryDisk::new();
        let styles = [style("lib/css/1.x.css", Kind::LibStyle, ".a { user-select: none }")];
        let old = build(&disk, Path::new("/a"), &styles, targets(&["safari 12".into()]).unwrap(), true).unwrap();
        assert!(old.css.contains("-webkit-user-select:none"), "{}", old.css);
        let new = build(&disk, Path::new("/a"), &styles, targets(&["chrome 120".into()]).unwrap(), true).unwrap();
        assert_eq!(new.css, ".a{user-select:none}");
    }
}
