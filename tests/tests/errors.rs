//! Bad input: each case is a clear message naming the file (and line and
//! column where there is one), every error of the run is reported, and nothing
//! is written.

use ss_tests::{client_bundle, fixture, pack_app, pack_error, write};

/// The file each diagnostic of a failed pack names, in the order reported.
fn files_named(err: &ssbuild::PackError) -> Vec<&str> {
    err.diagnostics().iter().map(|d| d.file.as_str()).collect()
}

#[test]
fn every_syntax_error_is_reported_with_a_code_frame() {
    let app = fixture("basic");
    write(app.path(), "app/client/one.js", "export const a = 1;\nexport const b = ;\n");
    write(app.path(), "app/shared/two.ts", "let x: number = 1\nfunction (\n");
    write(app.path(), "app/client/three.js", "import { z } from './missing';\n");
    std::fs::remove_file(app.path().join("app/views/app.html")).unwrap();
    let (err, text) = pack_error(app.path());
    let files = files_named(&err);
    assert!(files.contains(&"app/client/one.js") && files.contains(&"app/shared/two.ts"), "{text}");
    assert!(text.contains("app/client/one.js:2:18"), "{text}");
    assert!(text.contains("> 2 | export const b = ;"), "{text}");
    assert!(text.contains("app/shared/two.ts:2:"), "{text}");
    // Errors found while linking the files that did compile are in the same report.
    assert!(text.contains("app/client/three.js:1:19"), "{text}");
    // And so are problems with the layout.
    assert!(text.contains("the app has no layout app/views/app.html"), "{text}");
    assert!(text.contains("nothing was written"), "{text}");
}

/// An action name that ssrun could not call stops the pack, however the
/// actions are written, naming the file: a dash in a file's name, a key
/// that is not an identifier, a reserved name nested or assigned.
#[test]
fn action_names_ssrun_cannot_call_stop_the_pack() {
    let app = fixture("basic");
    write(app.path(), "app/server/chat-room.js", "exports.actions = { ping() { return 'pong'; } };\n");
    write(app.path(), "app/server/keys.js", "exports.actions = { 'get-item'() { return 1; }, caf\u{e9}() {} };\n");
    write(app.path(), "app/server/nested.js", "exports.actions = { admin: { user() { return 1; } } };\n");
    write(app.path(), "app/server/assigned.js", "exports.actions = {};\nexports.actions.session = function () {};\n");
    write(app.path(), "app/server/fine.js", "exports.actions = { $ok_1() {}, deeper: { _also() {} } };\n");
    let (err, text) = pack_error(app.path());
    let mut files = files_named(&err);
    files.sort_unstable();
    assert_eq!(
        files,
        ["app/server/assigned.js", "app/server/chat-room.js", "app/server/keys.js", "app/server/nested.js"],
        "{text}"
    );
    assert!(
        text.contains("the action `chat-room.ping` cannot be called: `chat-room` is not a JavaScript identifier"),
        "{text}"
    );
    assert!(text.contains("chat_room.js rather than chat-room.js"), "{text}");
    assert!(
        text.contains("`get-item` is not a JavaScript identifier") || text.contains("`caf\u{e9}` is not"),
        "{text}"
    );
    assert!(text.contains("the action `nested.admin.user` cannot be called `user`"), "{text}");
    assert!(text.contains("the action `assigned.session` cannot be called `session`"), "{text}");
}

#[test]
fn a_file_and_a_folder_with_one_key_name_both_paths() {
    let app = fixture("basic");
    write(app.path(), "app/client/nav.js", "exports.x = 1;");
    let (_, text) = pack_error(app.path());
    assert!(text.contains("`app/client/nav.js` and `app/client/nav/` have the same key in SS.client"), "{text}");
}

/// A name imported from an ES module that does not export it is an error
/// at the import, with the name meant when it is a typo; a CommonJS module,
/// which may add exports at run time, is not held to its list.
#[test]
fn importing_a_name_an_es_module_does_not_export_is_an_error() {
    let app = fixture("basic");
    let root = app.path();
    write(root, "app/client/parts/helper.js", "export function helper() {}\nexport const other = 1;\n");
    write(root, "app/client/parts/index.js", "export * from './helper';\n");
    write(root, "app/client/parts/old.js", "exports.legacy = 1;\n");
    // ES syntax beside the `module` every module receives: its exports are not all listed.
    write(root, "app/client/parts/mixed.js", "import { other } from './helper';\nmodule.exports = () => other;\n");
    write(
        root,
        "app/client/parts/assign.js",
        "import { other } from './helper';\nObject.assign(exports, { other });\n",
    );
    write(
        root,
        "app/client/uses.js",
        "import { helpr, other } from './parts/helper';\nimport whole from './parts/helper';\n\
         import { helper, missing } from './parts';\nimport { anything } from './parts/old';\n\
         import mixed from './parts/mixed';\nimport { other as again } from './parts/assign';\n\
         export { gone } from './parts/helper';\nexport const all = [helpr, other, whole, helper, missing, anything, mixed, again];\n",
    );
    let (err, text) = pack_error(root);
    assert!(text.contains("app/client/uses.js:1:10") && text.contains("`helpr` is not exported by"), "{text}");
    assert!(text.contains("help: did you mean `helper`?"), "{text}");
    assert!(text.contains("app/client/uses.js:2:8") && text.contains("has no default export"), "{text}");
    assert!(!text.contains("parts/mixed.js has") && !text.contains("by app/client/parts/assign.js"), "{text}");
    assert!(text.contains("`missing` is not exported by app/client/parts/index.js"), "{text}");
    assert!(text.contains("help: it exports helper, other"), "{text}");
    assert!(text.contains("`gone` is not exported by app/client/parts/helper.js"), "{text}");
    assert!(!text.contains("`anything` is not"), "a CommonJS module's exports are not checked: {text}");
    assert_eq!(err.diagnostics().len(), 4, "{text}");
}

#[test]
fn missing_app_entry_is_explained() {
    let app = fixture("basic");
    std::fs::remove_file(app.path().join("app/client/app.js")).unwrap();
    let (_, text) = pack_error(app.path());
    assert!(text.contains("the app has no app/client/app.js (or app.ts)"), "{text}");
    assert!(text.contains("help: create it with `exports.init"), "{text}");
}

#[test]
fn app_entry_without_init_is_explained() {
    let app = fixture("basic");
    write(app.path(), "app/client/app.js", "exports.start = function () {};\n");
    let (_, text) = pack_error(app.path());
    assert!(text.contains("app/client/app.js"), "{text}");
    assert!(text.contains("app/client/app must export `init`"), "{text}");
}

#[test]
fn an_init_re_exported_with_export_star_counts_and_a_missing_one_is_named() {
    let app = fixture("basic");
    write(app.path(), "app/client/app.js", "export * from './start';\n");
    write(app.path(), "app/client/start.js", "export const notInit = 1;\n");
    let (_, text) = pack_error(app.path());
    assert!(text.contains("app/client/app must export `init`"), "{text}");
    write(app.path(), "app/client/start.js", "export function init() {}\n");
    ss_tests::pack_app(app.path(), "production");
}

#[test]
fn requiring_a_lib_script_and_a_bad_environment_setting_are_explained_where_they_are() {
    let app = fixture("basic");
    write(app.path(), "app/client/uses.js", "const first = require('../../lib/client/2.first');\nexports.f = first;\n");
    let (_, text) = pack_error(app.path());
    assert!(text.contains("`lib/client/2.first.js` is a classic script, not a module"), "{text}");
    assert!(text.contains("help: lib/client scripts run in order before any module"), "{text}");
    write(app.path(), "config/environments/production.toml", "[build]\nbrowsers = [\"no such browser 99\"]\n");
    let (_, text) = pack_error(app.path());
    assert!(text.contains("--> config/environments/production.toml"), "{text}");
    // A mistake in the config does not hide the mistakes in the code: one run reports both.
    assert!(text.contains("`lib/client/2.first.js` is a classic script, not a module"), "{text}");
}

#[test]
fn a_config_mistake_is_reported_with_the_code_errors_and_the_last_output_is_kept() {
    let app = fixture("basic");
    write(app.path(), "config/app.toml", "[build]\nminfy = false\n");
    write(app.path(), "app/client/broken.js", "export const a = ;\n");
    let (err, text) = pack_error(app.path());
    let files = files_named(&err);
    assert_eq!(files, ["config/app.toml", "app/client/broken.js"], "{text}");

    // Files that cannot be read are reported with the config's mistakes and
    // the other files' errors.
    write(app.path(), "app/client/latin1.js", b"exports.name = 'caf\xe9';\n");
    let (err, text) = pack_error(app.path());
    let files = files_named(&err);
    assert_eq!(files, ["config/app.toml", "app/client/latin1.js", "app/client/broken.js"], "{text}");
    std::fs::remove_file(app.path().join("app/client/latin1.js")).unwrap();

    // With only the config wrong, a pack fails even where the last pack of the
    // same sources left its output and its cache.
    std::fs::remove_file(app.path().join("app/client/broken.js")).unwrap();
    std::fs::remove_file(app.path().join("config/app.toml")).unwrap();
    let options = ssbuild::PackOptions::new(app.path(), "production");
    ssbuild::pack(&options).unwrap();
    let manifest = std::fs::read(app.path().join("dist/manifest.json")).unwrap();
    write(app.path(), "config/app.toml", "[build]\nminfy = false\n");
    let err = ssbuild::pack(&options).expect_err("a config with a mistake fails the pack");
    assert_eq!(err.diagnostics().len(), 1, "{err}");
    assert!(err.to_string().contains("unknown key `build.minfy`"), "{err}");
    assert_eq!(std::fs::read(app.path().join("dist/manifest.json")).unwrap(), manifest);
}

#[test]
fn two_lib_server_files_with_one_module_name_are_both_named() {
    let app = fixture("basic");
    write(app.path(), "lib/server/auth.js", "exports.which = 'file';\n");
    write(app.path(), "lib/server/auth/index.js", "exports.which = 'index';\n");
    let (_, text) = pack_error(app.path());
    assert!(
        text.contains("`lib/server/auth.js` and `lib/server/auth/index.js` are one lib/server module, `auth`"),
        "{text}"
    );
    // A dot inside the name is part of it: these are two modules.
    std::fs::remove_file(app.path().join("lib/server/auth/index.js")).unwrap();
    write(app.path(), "lib/server/auth.config.js", "exports.which = 'config';\n");
    ss_tests::pack_app(app.path(), "production");
}

#[test]
fn an_output_folder_that_is_or_holds_the_app_or_is_inside_it_is_refused() {
    let app = fixture("basic");
    let root = app.path();
    let sources = || ss_tests::files_under(&root.join("app"));
    let before = sources();
    let attempts = [
        (root.to_path_buf(), "is the app itself"),
        (root.join("app/.."), "is the app itself"),
        (root.parent().unwrap().to_path_buf(), "holds the app"),
        (root.join("app/client/out"), "inside the app's app/ folder"),
        (root.join("lib/new/deeper"), "inside the app's lib/ folder"),
        (root.join("public"), "inside the app's public/ folder"),
        (root.join(".git/dist"), "inside the app's .git/ folder"),
        (root.join("node_modules"), "inside the app's node_modules/ folder"),
    ];
    for (out, why) in attempts {
        let mut options = ssbuild::PackOptions::new(root, "production");
        options.out = Some(out.clone());
        let err = ssbuild::pack(&options).expect_err("the pack should be refused");
        let text = err.to_string();
        assert!(text.contains(why), "{}: {text}", out.display());
        assert!(text.contains("help: every pack replaces the output folder whole"), "{text}");
        assert_eq!(sources(), before, "{} changed the app", out.display());
        assert!(!root.join("app/client/out").exists() && !root.join("lib/new").exists());
    }
    let mut options = ssbuild::PackOptions::new(root, "production");
    options.out = Some(root.join("build/web"));
    ssbuild::pack(&options).expect("an output folder of its own is fine");
    // One named with `..` or `.` lands where the name leads.
    let outside = tempfile::tempdir().unwrap();
    options.out = Some(outside.path().join("site/not/.."));
    ssbuild::pack(&options).expect("an output folder named through ..");
    assert!(outside.path().join("site/manifest.json").is_file());
    options.out = Some(outside.path().join("site/."));
    let again = ssbuild::pack(&options).expect("an output folder named with .");
    assert_eq!(again.out, outside.path().join("site").canonicalize().unwrap());
    let names: Vec<_> = std::fs::read_dir(outside.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["site"], "nothing is left beside the output");
}

#[test]
fn an_output_folder_holding_files_no_pack_wrote_is_left_alone() {
    let app = fixture("basic");
    let elsewhere = tempfile::tempdir().unwrap();
    let mut options = ssbuild::PackOptions::new(app.path(), "production");
    // A folder of documents, another app, a manifest.json of another tool's.
    let documents = elsewhere.path().join("documents");
    std::fs::create_dir_all(documents.join("notes")).unwrap();
    std::fs::write(documents.join("thesis.txt"), "chapter one").unwrap();
    let other_tool = elsewhere.path().join("pwa");
    std::fs::create_dir_all(&other_tool).unwrap();
    std::fs::write(other_tool.join("manifest.json"), r#"{"name": "an app's web manifest"}"#).unwrap();
    for out in [&documents, &other_tool] {
        let before = ss_tests::files_under(out);
        options.out = Some(out.clone());
        let text = ssbuild::pack(&options).expect_err("the pack should be refused").to_string();
        assert!(text.contains("holds files that no pack wrote"), "{text}");
        assert!(text.contains("help: pass --out a new or empty folder"), "{text}");
        assert_eq!(ss_tests::files_under(out), before, "{} changed", out.display());
    }
    // A file where the folder would go.
    let file = elsewhere.path().join("file");
    std::fs::write(&file, "keep").unwrap();
    options.out = Some(file.clone());
    let text = ssbuild::pack(&options).expect_err("a file is not replaced").to_string();
    assert!(text.contains("is a file, not a folder"), "{text}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    // An empty folder, then the same folder with the pack's output in it
    // (and a file added since).
    let site = elsewhere.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    options.out = Some(site.clone());
    ssbuild::pack(&options).expect("an empty folder takes a pack");
    std::fs::write(site.join("stray.txt"), "x").unwrap();
    ssbuild::pack(&options).expect("an earlier pack's folder takes the next");
    assert!(site.join("manifest.json").is_file());
}

#[test]
fn an_environment_name_that_is_not_a_plain_word_is_refused() {
    let app = fixture("basic");
    for env in ["../../app/client", "a/b", "", "-x", "prod.v2"] {
        let options = ssbuild::PackOptions::new(app.path(), env);
        let text = ssbuild::pack(&options).expect_err(env).to_string();
        assert!(text.contains(&format!("`{env}` is not an environment name")), "{text}");
    }
    assert!(app.path().join("app/client/app.js").is_file());
    assert!(!app.path().join("dist").exists() && !app.path().join(".ssbuild-cache").exists());
    ss_tests::pack_app(app.path(), "staging-eu_2");
}

#[test]
fn non_utf8_file_is_named_with_its_position() {
    let app = fixture("basic");
    write(app.path(), "app/client/latin1.js", b"// ok\nexports.name = 'caf\xe9';\n");
    let (_, text) = pack_error(app.path());
    assert!(text.contains("app/client/latin1.js:2:20"), "{text}");
    assert!(text.contains("not valid UTF-8"), "{text}");
    assert!(text.contains("help: save the file as UTF-8"), "{text}");
}

#[cfg(unix)]
#[test]
fn a_file_name_that_is_not_utf8_is_named_and_refused() {
    use std::os::unix::ffi::OsStrExt;
    let app = fixture("basic");
    let client = app.path().join("app/client");
    std::fs::write(client.join(std::ffi::OsStr::from_bytes(b"caf\xe9.js")), "exports.x = 1;\n").unwrap();
    std::fs::write(client.join(std::ffi::OsStr::from_bytes(b"caf\xe8.js")), "exports.y = 1;\n").unwrap();
    let (err, text) = pack_error(app.path());
    // Both are named, each once, and neither is taken for a clash of keys.
    assert_eq!(err.diagnostics().len(), 2, "{text}");
    assert_eq!(text.matches("this file's name is not valid UTF-8").count(), 2, "{text}");
    assert!(text.contains("app/client/caf\u{fffd}.js"), "{text}");
    assert!(text.contains("help: rename it in UTF-8"), "{text}");
    assert!(!text.contains("same key"), "{text}");
}

#[cfg(unix)]
#[test]
fn unreadable_file_is_named() {
    let app = fixture("basic");
    std::os::unix::fs::symlink(app.path().join("nowhere.js"), app.path().join("app/client/gone.js")).unwrap();
    let (_, text) = pack_error(app.path());
    assert!(text.contains("app/client/gone.js"), "{text}");
    assert!(text.contains("this is a link to") && text.contains("nowhere.js, which does not exist"), "{text}");
    assert!(text.contains("help: point the link at a file, or remove it"), "{text}");

    // A link to nothing that would not be packed anyway (no .js name) is a warning saying so.
    std::fs::remove_file(app.path().join("app/client/gone.js")).unwrap();
    std::os::unix::fs::symlink(app.path().join("nowhere"), app.path().join("app/client/vendor")).unwrap();
    let report = ss_tests::pack_app(app.path(), "development");
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.starts_with("app/client/vendor is a link to") && w.contains("nowhere, which does not exist")),
        "{:?}",
        report.warnings
    );
}

#[cfg(unix)]
#[test]
fn links_from_browser_folders_into_server_code_are_refused() {
    use std::os::unix::fs::symlink;
    let app = fixture("basic");
    let root = app.path();
    // A file, a folder, and a stylesheet's asset, each a link into code or
    // configuration that must stay on the server.
    symlink(root.join("app/server/app.js"), root.join("app/client/secret.js")).unwrap();
    symlink("../../lib/server", root.join("app/shared/auth")).unwrap();
    std::fs::create_dir_all(root.join("config")).unwrap();
    write(root, "config/app.toml", "[api]\nenabled = true\n");
    write(root, "app/css/app.css", "body { background: url(logo.png) }\n");
    symlink("../../config/app.toml", root.join("app/css/logo.png")).unwrap();
    // Modules that require the refused files: the refusal is all that is
    // said about them (not also "module not found").
    write(root, "app/client/uses_secret.js", "module.exports = require('./secret');\n");
    write(root, "app/server/guard.js", "require('../shared/auth/custom_auth');\nexports.actions = {};\n");
    let (err, text) = pack_error(root);
    assert!(!text.contains("not found"), "{text}");
    assert!(text.contains("app/client/secret.js") && text.contains("this is a link to app/server/app.js"), "{text}");
    assert!(text.contains("and app/client is sent to browsers"), "{text}");
    assert!(text.contains("app/shared/auth/custom_auth.js"), "{text}");
    assert!(text.contains("a link to lib/server/custom_auth.js"), "{text}");
    assert!(text.contains("help: server code, config/ and hidden files never leave the server: move"), "{text}");
    assert!(text.contains("url(logo.png) points to app/css/logo.png, a link to config/app.toml"), "{text}");
    assert_eq!(err.diagnostics().len(), 3, "{text}");

    // A hidden file, and a link above a browser folder (`lib` -> a folder
    // in app/server holding `client/` and `server/`).
    std::fs::remove_file(root.join("app/client/secret.js")).unwrap();
    std::fs::remove_file(root.join("app/client/uses_secret.js")).unwrap();
    std::fs::remove_file(root.join("app/server/guard.js")).unwrap();
    std::fs::remove_file(root.join("app/shared/auth")).unwrap();
    std::fs::remove_file(root.join("app/css/logo.png")).unwrap();
    std::fs::remove_file(root.join("app/css/app.css")).unwrap();
    write(root, ".env", "DB_PASSWORD=hunter2\n");
    symlink("../../.env", root.join("app/views/env.html")).unwrap();
    let custom_auth = std::fs::read_to_string(root.join("lib/server/custom_auth.js")).unwrap();
    write(root, "app/server/vendor/server/custom_auth.js", &custom_auth);
    write(root, "app/server/vendor/client/x.js", "var SECRET = 'hunter2';\n");
    std::fs::rename(root.join("lib"), root.join("lib-real")).unwrap();
    symlink("app/server/vendor", root.join("lib")).unwrap();
    let (err, text) = pack_error(root);
    assert!(text.contains("app/views/env.html") && text.contains("this is a link to .env, a hidden file"), "{text}");
    assert!(text.contains("help: hidden files never leave the server"), "{text}");
    assert!(text.contains("lib/client/x.js") && text.contains("a link to app/server/vendor/client/x.js"), "{text}");
    assert_eq!(err.diagnostics().len(), 2, "{text}");
    std::fs::remove_file(root.join("lib")).unwrap();
    std::fs::rename(root.join("lib-real"), root.join("lib")).unwrap();
    std::fs::remove_dir_all(root.join("app/server/vendor")).unwrap();
    std::fs::remove_file(root.join("app/views/env.html")).unwrap();

    // Links that stay on their side are packed as before, and so are
    // packages a package manager keeps in a dotted folder (pnpm).
    write(root, "app/css/app.css", "body { background: url(logo.png) }\n");
    write(root, "node_modules/.pnpm/lib@1.0.0/node_modules/lib/dist/lib.js", "var fromPnpm = 1;\n");
    symlink(".pnpm/lib@1.0.0/node_modules/lib", root.join("node_modules/lib")).unwrap();
    symlink("../../node_modules/lib/dist/lib.js", root.join("lib/client/9.lib.js")).unwrap();
    symlink(root.join("app/shared/math.js"), root.join("app/client/math.js")).unwrap();
    symlink("../../public/logo.png", root.join("app/css/logo.png")).unwrap();
    write(root, "public/logo.png", "png");
    ssbuild::pack(&ssbuild::PackOptions::new(root, "development")).unwrap();
}

/// An app whose `app` folder is a link into a hidden folder: each entry is
/// refused as hidden, once, and not also said to be missing.
#[cfg(unix)]
#[test]
fn an_app_folder_linked_into_a_hidden_folder_is_refused_once_per_file() {
    let app = fixture("basic");
    let root = app.path();
    std::fs::create_dir_all(root.join(".src")).unwrap();
    std::fs::rename(root.join("app"), root.join(".src/app")).unwrap();
    std::os::unix::fs::symlink(".src/app", root.join("app")).unwrap();
    let (err, text) = pack_error(root);
    assert!(text.contains("this is a link to .src/app/client/app.js, a hidden file"), "{text}");
    assert!(text.contains("keep the app's files in folders whose names do not start with `.`"), "{text}");
    assert!(!text.contains("the app has no"), "{text}");
    let entry = err.diagnostics().iter().filter(|d| d.file == "app/client/app.js").count();
    assert_eq!(entry, 1, "{text}");
}

#[test]
fn a_missing_import_names_the_importing_file_and_line() {
    let app = fixture("basic");
    write(app.path(), "app/client/uses.js", "// first line\nimport { x } from './not-there';\nexports.y = x;\n");
    write(app.path(), "app/client/pkg.js", "const _ = require('lodash');\n");
    let (_, text) = pack_error(app.path());
    assert!(text.contains("module './not-there' not found"), "{text}");
    assert!(text.contains("app/client/uses.js:2:19"), "{text}");
    assert!(
        text.contains("'lodash' is a package name, and packages from node_modules are not supported yet"),
        "{text}"
    );
    assert!(text.contains("app/client/pkg.js:1:19"), "{text}");
}

#[test]
fn browser_code_cannot_require_server_files() {
    let app = fixture("basic");
    write(app.path(), "app/client/sneaky.js", "const s = require('../server/app');\n");
    let (_, text) = pack_error(app.path());
    assert!(text.contains("`app/server/app.js` is not sent to browsers"), "{text}");
}

#[test]
fn unknown_build_config_keys_are_named() {
    let app = fixture("basic");
    write(app.path(), "config/app.toml", "[build]\nminfy = false\n");
    let (_, text) = pack_error(app.path());
    assert!(text.contains("config/app.toml"), "{text}");
    assert!(text.contains("unknown key `build.minfy`"), "{text}");
}

#[test]
fn a_shared_module_problem_is_reported_once_and_browser_only_requires_are_caught() {
    let app = fixture("basic");
    write(app.path(), "app/shared/uses.js", "const gone = require('./gone');\nconst ui = require('../client/app');\n");
    let (err, text) = pack_error(app.path());
    let missing = err.diagnostics().iter().filter(|d| d.message.contains("module './gone' not found")).count();
    assert_eq!(missing, 1, "shared modules are linked twice but reported once:\n{text}");
    assert!(text.contains("`app/client/app.js` runs only in browsers, so server code cannot require it"), "{text}");
    assert!(text.contains("app/shared/uses.js:2:20"), "{text}");
}

#[test]
fn a_commonjs_declaration_named_like_the_module_parameters_is_explained() {
    let app = fixture("basic");
    write(app.path(), "app/client/clash.js", "const ok = 1;\nconst module = { x: 1 };\nexports.x = ok;\n");
    let (_, text) = pack_error(app.path());
    assert!(text.contains("app/client/clash.js:2:7"), "{text}");
    assert!(text.contains("clashes with the `module` every CommonJS module receives"), "{text}");
}

#[test]
fn a_column_after_multibyte_characters_counts_characters() {
    let app = fixture("basic");
    write(
        app.path(),
        "app/client/latin1.js",
        "exports.name = 'é€".as_bytes().iter().copied().chain(*b"\xff';\n").collect::<Vec<u8>>(),
    );
    let (_, text) = pack_error(app.path());
    // `exports.name = '` is 16 characters, then two more before the bad byte.
    assert!(text.contains("app/client/latin1.js:1:19"), "{text}");
}

#[test]
fn decorators_are_said_to_be_unsupported() {
    let app = fixture("basic");
    write(app.path(), "app/client/deco.ts", "function log(x: unknown) { return x; }\n@log\nexport class D {}\n");
    let (_, text) = pack_error(app.path());
    assert!(text.contains("app/client/deco.ts:2:1"), "{text}");
    assert!(text.contains("decorators (`@name`) are not supported yet"), "{text}");
}

#[test]
fn an_app_entry_in_another_module_extension_is_found() {
    let app = fixture("basic");
    let entry = std::fs::read_to_string(app.path().join("app/client/app.js")).unwrap();
    std::fs::remove_file(app.path().join("app/client/app.js")).unwrap();
    write(app.path(), "app/client/app.mjs", entry);
    let mut options = ssbuild::PackOptions::new(app.path(), "production");
    options.cache = false;
    ssbuild::pack(&options).expect("app.mjs is the app's entry");
}

#[test]
fn an_unreadable_file_does_not_hide_the_other_errors() {
    let app = fixture("basic");
    write(app.path(), "app/client/latin1.js", b"exports.name = 'caf\xe9';\n");
    write(app.path(), "app/client/uses.js", "const l = require('./latin1');\nexports.n = l.name;\n");
    write(app.path(), "app/client/broken.js", "export const b = ;\n");
    let (err, text) = pack_error(app.path());
    assert!(text.contains("app/client/latin1.js:1:20") && text.contains("not valid UTF-8"), "{text}");
    assert!(text.contains("app/client/broken.js:1:18"), "{text}");
    // The file that requires the unreadable one is not told it is missing.
    assert!(!text.contains("not found"), "{text}");
    assert_eq!(err.diagnostics().len(), 2, "{text}");
}

/// A private folder holds a package copied in whole: its files that nothing
/// requires (a command-line tool using Node.js) are not packed, and what
/// would be wrong with them in a browser does not fail the pack; once
/// something requires one, it does.
#[test]
fn private_folder_files_nothing_requires_do_not_fail_the_pack() {
    let app = fixture("basic");
    let root = app.path();
    write(root, "config/app.toml", "[build]\nprivate_folders = [\"app/client/vendor\"]\n");
    write(root, "app/client/vendor/used.js", "export const ok = 1;\n");
    write(root, "app/client/vendor/cli.js", "import fs from 'fs';\nexport const unused = fs;\n");
    write(root, "app/client/vendor/bin.js", "console.log(import.meta.url);\n");
    write(root, "app/client/usesvendor.js", "import { ok } from './vendor/used';\nexport const value = ok;\n");
    let report = pack_app(root, "development");
    let bundle = std::fs::read_to_string(client_bundle(&report)).unwrap();
    assert!(bundle.contains("vendor/used.js") && !bundle.contains("vendor/cli.js"), "only what is required is packed");
    std::fs::remove_dir_all(root.join("dist")).unwrap();

    write(
        root,
        "app/client/usesvendor.js",
        "import { ok } from './vendor/used';\nimport './vendor/cli';\nexport const v = ok;\n",
    );
    let (_, text) = pack_error(root);
    assert!(text.contains("'fs' is a package name") && text.contains("app/client/vendor/cli.js:1"), "{text}");
    assert!(!text.contains("vendor/bin.js"), "{text}");
}
