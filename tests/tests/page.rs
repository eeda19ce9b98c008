//! Styles, views and the single page: CSS order and minification, url()
//! assets, templates, tags with SRI in order, the public URL, precompression,
//! SS.tmpl's escaping, Bootstrap's SCSS, and each bad-input message.

use std::io::Read;

use sha2::{Digest, Sha384};
use ss_tests::{
    client_bundle, eval_bundle, fixture, have_node, npm_package, pack_app, pack_error, pack_with_url, write,
};
use ssbuild::{PackOptions, PackReport, pack};

fn read(report: &PackReport, path: &str) -> Vec<u8> {
    std::fs::read(report.out.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn css(report: &PackReport) -> String {
    String::from_utf8(read(report, &report.manifest.assets["app.css"].path)).unwrap()
}

/// The `(attribute value of src/href, integrity)` of every script and stylesheet tag, in order.
fn tags(html: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(['<']) {
        rest = &rest[start + 1..];
        let end = rest.find('>').unwrap();
        let tag = &rest[..end];
        let name = tag.split([' ', '>']).next().unwrap().to_string();
        if name == "link" || name == "script" {
            let attr = |key: &str| -> String {
                let at = tag.find(&format!("{key}=")).unwrap_or_else(|| panic!("no {key} in <{tag}>")) + key.len() + 1;
                let value = &tag[at..];
                if let Some(quoted) = value.strip_prefix('"') {
                    quoted[..quoted.find('"').unwrap()].to_string()
                } else {
                    value.split([' ', '>']).next().unwrap().to_string()
                }
            };
            let url = if name == "link" { attr("href") } else { attr("src") };
            assert!(tag.contains("crossorigin"), "<{tag}> has no crossorigin");
            out.push((name, url, attr("integrity")));
        }
    }
    out
}

#[test]
fn styles_follow_lib_order_and_are_minified() {
    let app = fixture("styled");
    write(app.path(), "config/app.toml", "[build]\nbrowsers = [\"safari 13\"]\n");
    let report = pack_app(app.path(), "production");
    let css = css(&report);
    let (reset, theme, logo) =
        (css.find("html,body{").unwrap(), css.find(".theme-marker{").unwrap(), css.find(".logo{").unwrap());
    assert!(reset < theme && theme < logo, "{css}");
    assert!(!css.contains("/*") && !css.contains('\n'), "not minified: {css}");
    assert!(css.contains("color:#369"), "the SCSS variable from the partial: {css}");
    assert!(css.contains(".chat .message{padding:8px}"), "nesting and arithmetic: {css}");
    assert!(css.contains("-webkit-user-select:none"), "prefixed for Safari 13: {css}");

    write(app.path(), "config/app.toml", "[build]\nbrowsers = [\"chrome 130\"]\n");
    let modern = self::css(&pack_app(app.path(), "production"));
    assert!(!modern.contains("-webkit-user-select"), "no prefix for Chrome 130: {modern}");
}

#[test]
fn url_assets_are_hashed_copied_and_rewritten() {
    let app = fixture("styled");
    let report = pack_app(app.path(), "production");
    let css = css(&report);
    for (source, suffix) in [("app/css/img/dot.png", ""), ("app/css/fonts/icons.woff2", "?v=2#iefix")] {
        let entry = &report.manifest.assets[source];
        let name = entry.path.strip_prefix("assets/").unwrap();
        assert!(css.contains(&format!("url({name}{suffix})")), "{name} not referenced: {css}");
        assert_eq!(read(&report, &entry.path), std::fs::read(app.path().join(source)).unwrap());
        let hash = &hex::encode(sha2::Sha256::digest(read(&report, &entry.path)))[..12];
        assert!(name.contains(hash), "{name} is not named by its content");
    }
    assert!(css.contains("url(https://cdn.example.com/x.png)"), "external URLs stay: {css}");
}

#[test]
fn index_has_tags_in_order_with_matching_integrity_and_templates() {
    let app = fixture("styled");
    for env in ["production", "development"] {
        let report = pack_app(app.path(), env);
        let html = String::from_utf8(read(&report, "index.html")).unwrap();
        let found = tags(&html);
        assert_eq!(found.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(), ["link", "script"], "{html}");
        for (_, url, integrity) in &found {
            let file = url.strip_prefix("/assets/").unwrap_or_else(|| panic!("{url} is not under /assets/"));
            let bytes = read(&report, &format!("assets/{file}"));
            let expected = format!(
                "sha384-{}",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, Sha384::digest(&bytes))
            );
            assert_eq!(integrity, &expected, "{url}");
        }
        let script = html.find("<script").unwrap();
        let info = html.find("people-customers-info").expect("template id");
        let message = html.find("chat-message").expect("template id");
        assert!(script < message && message < info, "templates come after the tags, by id");
        assert!(html.contains("<h2>{{name}}</h2>"), "{html}");
        assert!(!html.to_lowercase().contains("<socketstream"), "{html}");
        assert_eq!(report.manifest.page.integrity, ssbuild::emit::integrity(html.as_bytes()));
    }
}

#[test]
fn public_url_prefixes_every_asset_url() {
    let app = fixture("styled");
    let report = pack_with_url(app.path(), "production", Some("https://cdn.example.com/app"));
    assert_eq!(report.manifest.public_url, "https://cdn.example.com/app/");
    let html = String::from_utf8(read(&report, "index.html")).unwrap();
    for (_, url, _) in tags(&html) {
        let file = url.strip_prefix("https://cdn.example.com/app/").unwrap_or_else(|| panic!("{url}"));
        assert!(report.out.join("assets").join(file).is_file(), "{file} is not in dist/assets");
    }
}

#[test]
fn precompressed_files_decompress_to_the_asset() {
    let app = fixture("styled");
    let report = pack_app(app.path(), "production");
    let mut checked = 0;
    for entry in report.manifest.assets.values().chain([&report.manifest.page]) {
        let original = read(&report, &entry.path);
        if !ssbuild::emit::compressible(&entry.path) {
            assert!(entry.compressed.is_empty(), "{} should not be compressed", entry.path);
            continue;
        }
        let gz = read(&report, &format!("{}.gz", entry.path));
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut unzipped).unwrap();
        assert_eq!(unzipped, original, "{}.gz", entry.path);
        let br = read(&report, &format!("{}.br", entry.path));
        let mut unbrotli = Vec::new();
        brotli::Decompressor::new(&br[..], 4096).read_to_end(&mut unbrotli).unwrap();
        assert_eq!(unbrotli, original, "{}.br", entry.path);
        assert_eq!(entry.compressed["gzip"], gz.len() as u64);
        assert_eq!(entry.compressed["br"], br.len() as u64);
        checked += 1;
    }
    assert_eq!(checked, 3, "index.html, app.js and app.css");

    let dev = pack_app(app.path(), "development");
    assert!(dev.manifest.assets.values().all(|e| e.compressed.is_empty()), "development builds are not precompressed");
}

#[test]
fn templates_escape_data_and_insert_trusted_html_only_when_asked() {
    if !have_node() {
        return;
    }
    let app = fixture("styled");
    let report = pack_app(app.path(), "production");
    let html = String::from_utf8(read(&report, "index.html")).unwrap();
    // The template as the packed page has it, for a stand-in document.
    let start = html.find("<template id=chat-message>").unwrap() + "<template id=chat-message>".len();
    let template = &html[start..start + html[start..].find("</template>").unwrap()];
    let result = eval_bundle(
        &client_bundle(&report),
        &format!(
            "globalThis.document = {{ getElementById: (id) => id === 'chat-message' ? {{ innerHTML: {template:?} }} : null }};
             const evil = '<script>alert(1)</script>';
             let missing; try {{ SS.tmpl('nope', {{}}); }} catch (e) {{ missing = e.message; }}
             return {{
               escaped: SS.tmpl('chat-message', {{ user: {{ name: evil }}, text: '\"quoted\" & <i>' }}),
               trusted: SS.tmpl('chat-message', {{ user: {{ name: 'Ann' }}, text: 'hi', trusted: '<em>ok</em>' }}),
               missing,
             }};"
        ),
    );
    assert_eq!(
        result["escaped"],
        "<p class=message><b>&lt;script&gt;alert(1)&lt;/script&gt;</b>: &quot;quoted&quot; &amp; &lt;i&gt; </p>"
    );
    assert_eq!(result["trusted"], "<p class=message><b>Ann</b>: hi <em>ok</em></p>");
    assert!(result["missing"].as_str().unwrap().contains("no template with id 'nope'"));
}

#[test]
fn bootstrap_scss_compiles() {
    let Some(bootstrap) = npm_package("bootstrap") else { return };
    let app = fixture("basic");
    ss_tests::copy_tree(&bootstrap.join("scss"), &app.path().join("app/css/bootstrap"));
    write(
        app.path(),
        "app/css/app.scss",
        "$primary: #6f42c1;\n@import 'bootstrap/bootstrap';\n.app { color: $primary; }\n",
    );
    let report = pack_app(app.path(), "production");
    let css = css(&report);
    assert!(
        css.starts_with("@charset \"UTF-8\";:root,[data-bs-theme=light]{")
            || css.contains(":root,[data-bs-theme=light]{"),
        "{}",
        &css[..200]
    );
    for needle in [".btn{", ".container{", "--bs-primary:#6f42c1", ".app{color:#6f42c1}"] {
        assert!(css.contains(needle), "missing {needle}");
    }
    assert!(css.len() > 150_000 && css.len() < 260_000, "{} bytes", css.len());
}

#[test]
fn an_scss_error_names_the_partial_and_line() {
    let app = fixture("styled");
    write(app.path(), "app/css/partials/_vars.scss", "$brand: #336699;\n$space: 4px\n.broken {\n");
    let text = pack_error(app.path()).1;
    assert!(text.contains("app/css/partials/_vars.scss:"), "{text}");
    assert!(text.contains("SCSS error"), "{text}");
}

#[test]
fn a_layout_without_the_marker_or_a_layout_at_all_is_explained() {
    let app = fixture("styled");
    write(app.path(), "app/views/app.html", "<!doctype html><html><head><title>x</title></head><body></body></html>\n");
    let text = pack_error(app.path()).1;
    assert!(text.contains("app/views/app.html") && text.contains("no <SocketStream> tag"), "{text}");

    write(app.path(), "app/views/app.html", "<html><head></head>\n<body>\n  <SocketStream>\n</body></html>\n");
    let text = pack_error(app.path()).1;
    assert!(text.contains("app/views/app.html:3:1") && text.contains("must be in the layout's <head>"), "{text}");

    std::fs::remove_file(app.path().join("app/views/app.html")).unwrap();
    let text = pack_error(app.path()).1;
    assert!(text.contains("the app has no layout app/views/app.html"), "{text}");
}

#[test]
fn colliding_template_ids_name_both_files() {
    let app = fixture("styled");
    write(app.path(), "app/views/people-customers/info.html", "<p>again</p>");
    let text = pack_error(app.path()).1;
    assert!(
        text.contains("`app/views/people/customers/info.html` and `app/views/people-customers/info.html` both make the template id `people-customers-info`")
            || text.contains("`app/views/people-customers/info.html` and `app/views/people/customers/info.html` both make the template id `people-customers-info`"),
        "{text}"
    );
}

#[test]
fn a_url_to_a_missing_file_is_named() {
    let app = fixture("styled");
    write(app.path(), "lib/css/5.icons.css", ".icon {\n  background: url(../../app/css/img/missing.svg);\n}\n");
    let text = pack_error(app.path()).1;
    assert!(text.contains("lib/css/5.icons.css:2:"), "{text}");
    assert!(text.contains("app/css/img/missing.svg, which does not exist"), "{text}");
}

/// An `@import` of a full URL (a web font's stylesheet) is the browser's to
/// load and stays; one of a file that is not inlined is an error placed where
/// it is written, with help that fits SCSS or plain CSS.
#[test]
fn css_imports_of_full_urls_stay_and_others_are_placed_and_explained() {
    let app = fixture("styled");
    let entry = std::fs::read_to_string(app.path().join("app/css/app.scss")).unwrap();
    let font = "@import url(\"https://fonts.googleapis.com/css2?family=Inter\");\n";
    write(app.path(), "app/css/app.scss", format!("{entry}\n{font}"));
    let report = pack(&PackOptions::new(app.path(), "production")).unwrap();
    let css = report.manifest.assets.values().find(|a| a.path.ends_with(".css")).unwrap();
    let text = std::fs::read_to_string(report.out.join(&css.path)).unwrap();
    assert!(text.starts_with("@import \"https://fonts.googleapis.com/css2?family=Inter\";"), "{text}");
    std::fs::remove_dir_all(report.out).unwrap();

    let lines = entry.lines().count();
    write(app.path(), "app/css/app.scss", format!("{entry}\n@import \"normalize.css\";\n"));
    let text = pack_error(app.path()).1;
    assert!(text.contains(&format!("app/css/app.scss:{}:1", lines + 2)), "{text}");
    assert!(text.contains("@import of 'normalize.css' is not bundled"), "{text}");
    assert!(text.contains("help: Sass inlines an @import written without `.css`"), "{text}");

    write(app.path(), "app/css/app.scss", entry);
    write(app.path(), "lib/css/6.more.css", "@import \"other.css\";\n.more { color: red; }\n");
    let text = pack_error(app.path()).1;
    assert!(text.contains("lib/css/6.more.css:1:9"), "{text}");
    assert!(text.contains("help: a .css file's @imports are not followed"), "{text}");
}

#[test]
fn an_unchanged_pack_still_notices_an_edited_scss_import_from_outside_app_css() {
    let app = fixture("styled");
    write(app.path(), "shared-styles/_colors.scss", "$accent: #111111;\n");
    write(app.path(), "app/css/app.scss", "@import '../../shared-styles/colors';\n.a { color: $accent; }\n");
    let options = PackOptions::new(app.path(), "production");
    let first = pack(&options).unwrap();
    assert!(css(&first).contains("color:#111"));
    assert!(pack(&options).unwrap().unchanged);
    write(app.path(), "shared-styles/_colors.scss", "$accent: #222222;\n");
    let second = pack(&options).unwrap();
    assert!(!second.unchanged);
    assert!(css(&second).contains("color:#222"), "{}", css(&second));
}
