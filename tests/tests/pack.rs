//! Packing fixture apps: API trees, privacy, lib ordering, determinism,
//! atomicity, the cache, and packed bundles evaluated in Node.js.

use serde_json::json;
use ss_tests::{client_bundle, eval_bundle, files_under, fixture, have_node, pack_app, server_bundle, write};
use ssbuild::{PackOptions, PackReport, pack};

#[test]
fn trees_hold_exported_names_only() {
    let app = fixture("basic");
    let report = pack_app(app.path(), "production");
    let m = &report.manifest;
    let trees = serde_json::to_value(&m.trees).unwrap();
    assert_eq!(
        trees["client"],
        json!({"app": "app/client/app.js", "cycle": {"a": "app/client/cycle/a.js", "b": "app/client/cycle/b.js"},
               "nav": {"deep": {"item": "app/client/nav/deep/item.js"}, "menu": "app/client/nav/menu.ts"}})
    );
    assert_eq!(trees["shared"], json!({"format": "app/shared/format.ts", "math": "app/shared/math.js"}));
    assert_eq!(trees["server"], json!({"admin": {"users": "app/server/admin/users.ts"}, "app": "app/server/app.js"}));

    let exports = |p: &str| m.modules[p].exports.iter().cloned().collect::<Vec<_>>();
    assert_eq!(exports("app/client/app.js"), ["init", "squareLocally", "timesStarted", "usesSecret"]);
    assert_eq!(exports("app/client/nav/menu.ts"), ["firstItem", "size", "titles"]);
    assert_eq!(exports("app/shared/math.js"), ["answer", "circumference", "square"]);
    let all: String = serde_json::to_string(&m.modules).unwrap();
    for private in ["secretHelper", "privateCount", "notShared", "privateToTheServer", "_skipped", "entries"] {
        assert!(!all.contains(private), "{private} leaked into the manifest");
    }

    let actions = serde_json::to_value(&m.modules["app/server/app.js"].actions).unwrap();
    assert_eq!(actions, json!({"checkAuth": true, "nested": {"ping": true}, "square": true, "squareLater": true}));
    assert!(m.modules["app/server/admin/users.ts"].authenticate);
    assert!(!m.modules["app/server/app.js"].authenticate);
    assert_eq!(m.lib_server.keys().collect::<Vec<_>>(), ["custom_auth"]);
    assert_eq!(m.modules["app/shared/math.js"].bundles, ["client", "server"]);
}

#[test]
fn server_code_is_never_in_public_assets() {
    let app = fixture("basic");
    let report = pack_app(app.path(), "production");
    for asset in report.manifest.assets.values() {
        assert!(asset.path.starts_with("assets/"), "{}", asset.path);
        let text = std::fs::read_to_string(report.out.join(&asset.path)).unwrap();
        // Action names are public (the page gets the API tree); their code is not.
        assert!(!text.contains("pong") && !text.contains("custom_auth"), "server code in {}", asset.path);
    }
    let server = std::fs::read_to_string(server_bundle(&report)).unwrap();
    assert!(server.contains("pong") && server.contains("custom_auth"));
}

#[test]
fn lib_scripts_load_in_numeric_order_and_min_files_pass_through() {
    let app = fixture("basic");
    let report = pack_app(app.path(), "production");
    let bundle = std::fs::read_to_string(client_bundle(&report)).unwrap();
    let min = std::fs::read_to_string(app.path().join("lib/client/3.vendor.min.js")).unwrap();
    assert!(bundle.contains(&min), "the .min file is not byte-for-byte in the bundle");
    assert!(!bundle.contains("Loaded first"), "lib/client/2.first.js was not minified");
    let (first, vendor, second) =
        (bundle.find("\"first\"").unwrap(), bundle.find("'vendor-min'").unwrap(), bundle.find("\"second\"").unwrap());
    assert!(first < vendor && vendor < second);
}

fn check_client_bundle(report: &PackReport) {
    let result = eval_bundle(
        &client_bundle(report),
        "return {
            lib: libOrder,
            square: SS.client.app.squareLocally(7),
            secret: SS.client.app.usesSecret(),
            privateHidden: typeof SS.client.app.secretHelper,
            skipped: typeof SS.client._skipped,
            titles: SS.client.nav.menu.titles(),
            size: SS.client.nav.menu.size(),
            first: SS.client.nav.menu.firstItem(),
            made: SS.client.nav.deep.item.default('x').describe(),
            cycle: SS.client.cycle.a.fromB,
            circle: SS.shared.math.circumference(1),
            answer: SS.shared.math.answer(),
            label: SS.shared.format.labelFor('Mixed', 'lower'),
            // The stubs of the actions the packer found, there before any
            // socket (none here): a call waits for the session.
            server: [typeof SS.server.app.square, typeof SS.server.app.nested.ping, typeof SS.server.admin.users.list],
            waits: await Promise.race([
                SS.server.app.square(3).then(() => 'answered', () => 'failed'),
                new Promise((resolve) => setTimeout(() => resolve('waiting'), 50)),
            ]),
        };",
    );
    assert_eq!(
        result,
        json!({
            "lib": ["first", "vendor-min", "second"], "square": 49, "secret": 6, "privateHidden": "undefined",
            "skipped": "undefined", "titles": ["HOME", "PRODUCTS"], "size": 2, "first": "item:home", "made": "item:x",
            "cycle": {"loadedBeforeB": true, "done": false}, "circle": std::f64::consts::TAU, "answer": 42,
            "label": "mixed", "server": ["function", "function", "function"], "waits": "waiting"
        })
    );
}

#[test]
fn production_client_bundle_runs() {
    if !have_node() {
        return;
    }
    let app = fixture("basic");
    check_client_bundle(&pack_app(app.path(), "production"));
}

#[test]
fn development_client_bundle_runs_and_has_a_source_map() {
    if !have_node() {
        return;
    }
    let app = fixture("basic");
    let report = pack_app(app.path(), "development");
    check_client_bundle(&report);
    let map_entry = &report.manifest.assets["app.js.map"];
    let map: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.out.join(&map_entry.path)).unwrap()).unwrap();
    let sources: Vec<String> = map["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["map"]["sources"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()))
        .collect();
    assert!(sources.contains(&"app/client/nav/menu.ts".to_string()), "{sources:?}");
    let bundle = std::fs::read_to_string(client_bundle(&report)).unwrap();
    assert!(bundle.ends_with(&format!("//# sourceMappingURL={}\n", map_entry.path.trim_start_matches("assets/"))));
}

#[test]
fn server_bundle_runs_actions_with_shared_and_lib_server_modules() {
    if !have_node() {
        return;
    }
    let app = fixture("basic");
    let report = pack_app(app.path(), "production");
    let m = &report.manifest;
    let app_id = m.modules["app/server/app.js"].server_id.unwrap();
    let users_id = m.modules["app/server/admin/users.ts"].server_id.unwrap();
    let auth_id = m.lib_server["custom_auth"];
    let result = eval_bundle(
        &server_bundle(&report),
        &format!(
            "const app = __ss.load({app_id}).actions;
             let viaCallback; app.square(6, (v) => {{ viaCallback = v; }});
             const auth = __ss.load({auth_id});
             let authed; auth.authenticate({{ user: 'admin', password: 'secret' }}, (r) => {{ authed = r; }});
             return {{
               viaCallback, later: await app.squareLater(9), ping: app.nested.ping(),
               check: app.checkAuth('admin', 'secret'), authed,
               users: __ss.load({users_id}).actions.list(), shared: SS.shared.math.square(4), client: typeof SS.client,
             }};"
        ),
    );
    assert_eq!(
        result,
        json!({"viaCallback": 36, "later": 81, "ping": "pong", "check": true, "authed": {"success": true, "user_id": "admin"},
               "users": [], "shared": 16, "client": "undefined"})
    );
}

#[test]
fn output_is_byte_identical_whatever_the_order_on_disk() {
    let first = fixture("basic");
    // A second copy written in reverse order, so directory listings differ.
    let second = tempfile::tempdir().unwrap();
    let mut files: Vec<(String, Vec<u8>)> = files_under(first.path()).into_iter().collect();
    files.reverse();
    for (rel, bytes) in &files {
        write(second.path(), rel, bytes);
    }
    for env in ["production", "development"] {
        let a = pack_app(first.path(), env);
        let b = pack_app(second.path(), env);
        assert_eq!(files_under(&a.out), files_under(&b.out), "{env} output differs");
    }
}

#[test]
fn a_failed_pack_leaves_the_previous_output_untouched() {
    let app = fixture("basic");
    let good = pack_app(app.path(), "production");
    let before = files_under(&good.out);
    write(app.path(), "app/client/nav/broken.js", "export function (");
    let mut options = PackOptions::new(app.path(), "production");
    options.cache = false;
    let err = pack(&options).unwrap_err();
    assert!(err.to_string().contains("app/client/nav/broken.js:1:"), "{err}");
    assert_eq!(files_under(&good.out), before);
    let siblings: Vec<String> =
        std::fs::read_dir(app.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!siblings.iter().any(|n| n.starts_with(".dist")), "temporary folders left: {siblings:?}");
}

#[test]
fn the_cache_skips_unchanged_work() {
    let app = fixture("basic");
    let options = PackOptions::new(app.path(), "production");
    let cold = pack(&options).unwrap();
    assert_eq!((cold.compiled, cold.unchanged), (16, false), "13 files and the client library's three");
    let again = pack(&options).unwrap();
    assert!(again.unchanged);
    assert_eq!(again.manifest, cold.manifest);

    write(
        app.path(),
        "app/shared/math.js",
        "export const square = (n) => n * n * 1;\nexport const circumference = (r) => 2 * Math.PI * r;\nexport const answer = () => 42;\n",
    );
    let edited = pack(&options).unwrap();
    assert_eq!((edited.compiled, edited.cached, edited.unchanged), (1, 15, false));
    assert_ne!(edited.manifest.assets["app.js"].path, cold.manifest.assets["app.js"].path);

    // Deleting an output file makes the next pack write it again.
    std::fs::remove_file(client_bundle(&edited)).unwrap();
    let repaired = pack(&options).unwrap();
    assert!(!repaired.unchanged);
    assert!(client_bundle(&repaired).is_file());

    // So does a file changed in place, even with its size kept: its integrity
    // would no longer match, and browsers would refuse it.
    let bundle = client_bundle(&repaired);
    let mut bytes = std::fs::read(&bundle).unwrap();
    bytes[..5].copy_from_slice(b"XXXXX");
    std::fs::write(&bundle, &bytes).unwrap();
    let restored = pack(&options).unwrap();
    assert!(!restored.unchanged);
    assert_ne!(std::fs::read(client_bundle(&restored)).unwrap(), bytes);

    // And a precompressed variant changed in place: servers send it instead of the file.
    let bundle = client_bundle(&restored);
    let brotli = bundle.with_file_name(format!("{}.br", bundle.file_name().unwrap().to_str().unwrap()));
    let mut bytes = std::fs::read(&brotli).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&brotli, &bytes).unwrap();
    assert!(!pack(&options).unwrap().unchanged, "a damaged .br was taken for intact");
    assert_ne!(std::fs::read(&brotli).unwrap(), bytes);
    assert!(pack(&options).unwrap().unchanged);
}

#[test]
fn folders_named_like_built_ins_stay_in_the_tree() {
    if !have_node() {
        return;
    }
    let app = fixture("basic");
    write(app.path(), "app/client/constructor/x.js", "exports.x = 'cx';\n");
    write(app.path(), "app/client/toString/y.js", "exports.y = 'ty';\n");
    write(app.path(), "app/shared/hasOwnProperty.js", "exports.z = 'hz';\n");
    let report = pack_app(app.path(), "production");
    let result = eval_bundle(
        &client_bundle(&report),
        "return {
            x: SS.client.constructor.x.x, y: SS.client.toString.y.y, z: SS.shared.hasOwnProperty.z,
            objectUntouched: SS.client.constructor !== Object && !Object.getOwnPropertyNames(Object).includes('x'),
            prototypeUntouched: ({}).toString === Object.prototype.toString && typeof Object.prototype.toString === 'function',
        };",
    );
    assert_eq!(result, json!({"x": "cx", "y": "ty", "z": "hz", "objectUntouched": true, "prototypeUntouched": true}));
}

/// A TypeScript re-export of a type (`export { Shape } from './types'`) is no
/// name at run time, so no export; values re-exported beside it are, through
/// a chain of such re-exports too.
#[test]
fn typescript_reexports_of_types_are_not_exports() {
    let app = fixture("basic");
    write(
        app.path(),
        "app/client/geo/types.ts",
        "export interface Shape { n: number }\nexport const area = (s: Shape) => s.n * 2;\n",
    );
    write(
        app.path(),
        "app/client/geo/shapes.ts",
        "export { Shape, area } from './types';\nexport { Shape as Form } from './types';\n",
    );
    write(app.path(), "app/client/geo/index.ts", "export { Form, area as measure } from './shapes';\n");
    // Through `export *` of a module that re-exports a type, and a named
    // re-export of what that star brought.
    write(app.path(), "app/client/geo/all.ts", "export * from './shapes';\n");
    write(app.path(), "app/client/geo/pick.ts", "export { Form, Shape, area as size } from './all';\n");
    let report = pack_app(app.path(), "production");
    let exports = |p: &str| report.manifest.modules[p].exports.iter().cloned().collect::<Vec<_>>();
    assert_eq!(exports("app/client/geo/types.ts"), ["area"]);
    assert_eq!(exports("app/client/geo/shapes.ts"), ["area"]);
    assert_eq!(exports("app/client/geo/index.ts"), ["measure"]);
    assert_eq!(exports("app/client/geo/all.ts"), ["area"]);
    assert_eq!(exports("app/client/geo/pick.ts"), ["size"]);
    if have_node() {
        let result = eval_bundle(
            &client_bundle(&report),
            "return [SS.client.geo.index.measure({ n: 21 }), SS.client.geo.all.area({ n: 2 }), \
             SS.client.geo.pick.size({ n: 3 }), SS.client.geo.pick.Form === undefined];",
        );
        assert_eq!(result, json!([42, 4, 6, true]));
    }
}

/// TypeScript enums and namespaces, at the top level and inside functions,
/// run the same minified (production, whose compressor inlines the function
/// an enum becomes) as printed.
#[test]
fn typescript_enums_and_namespaces_inside_functions_survive_minifying() {
    if !have_node() {
        return;
    }
    for env in ["development", "production"] {
        let app = fixture("basic");
        write(
            app.path(),
            "app/client/kinds.ts",
            "export enum Top { A = 1, B }
             export function inner(): string { enum Color { Red, Green } return Color[1] + Color.Red; }
             export function spaced(): number { namespace N { export const x = 20; } return N.x + Top.B; }
             export const arrow = (): string => { enum Flag { On = 'on' } return Flag.On; };
",
        );
        let report = pack_app(app.path(), env);
        let result = eval_bundle(
            &client_bundle(&report),
            "const k = SS.client.kinds; return [k.inner(), k.spaced(), k.arrow(), k.Top.A, k.Top[2]];",
        );
        assert_eq!(result, json!(["Green0", 22, "on", 1, "B"]), "{env}");
    }
}

/// Code that works as written in Node or in a `<script>` tag works packed too:
/// an ES module's own top-level `module` and `require`, `#!` lines, a strict
/// library script before a sloppy one, and TypeScript's `satisfies`/`as const`
/// around the actions.
#[test]
fn module_wrapper_names_hashbangs_and_strict_lib_scripts_keep_their_meaning() {
    if !have_node() {
        return;
    }
    for env in ["development", "production"] {
        let app = fixture("basic");
        write(app.path(), "lib/client/1.strict.js", "\"use strict\";\nglobalThis.strictFirst = 1;\n");
        write(
            app.path(),
            "lib/client/5.sloppy.js",
            "sloppyGlobal = (function () { return this === globalThis; })();\n",
        );
        write(app.path(), "lib/client/6.bang.min.js", "#!/usr/bin/env node\nglobalThis.bangMin = 1;\n");
        write(
            app.path(),
            "app/client/own.js",
            "#!/usr/bin/env node\nconst module = { kind: 'own' };\nlet require = (x) => x + 1;\nexport const kind = module.kind;\nexport const next = require(1);\n",
        );
        write(
            app.path(),
            "app/server/typed.ts",
            "type Actions = Record<string, unknown>;\n\
             const more = { x(cb: (v: number) => void) { cb(1) } } as const;\n\
             export const actions = { square(n: number) { return n * n }, more, limits: { max: 5 } } satisfies Actions;\n\
             export const authenticate = true as const;\n",
        );
        let report = pack_app(app.path(), env);
        let result = eval_bundle(
            &client_bundle(&report),
            "return [strictFirst, sloppyGlobal, bangMin, SS.client.own.kind, SS.client.own.next];",
        );
        assert_eq!(result, json!([1, true, 1, "own", 2]), "{env}");
        let typed = &report.manifest.modules["app/server/typed.ts"];
        assert_eq!(serde_json::to_value(&typed.actions).unwrap(), json!({"more": {"x": true}, "square": true}));
        assert!(typed.authenticate, "{env}");
    }
}

/// Names the module transform adds keep their meaning when they meet the
/// file's own: two imports of files with the same name, a local named like
/// the binding an import becomes, and TypeScript's class fields moved into a
/// constructor whose parameter or local has the same name.
#[test]
fn names_added_by_the_module_transform_keep_their_meaning() {
    if !have_node() {
        return;
    }
    for env in ["development", "production"] {
        let app = fixture("basic");
        write(app.path(), "app/client/a/util.js", "export const v = 'a';\n");
        write(app.path(), "app/client/b/util.js", "export const v = 'b';\n");
        write(
            app.path(),
            "app/client/both.js",
            "import { v as va } from './a/util';\nimport { v as vb } from './b/util';\nexport const r = va + vb;\n",
        );
        write(
            app.path(),
            "app/client/shadow.js",
            "import { v } from './a/util';\nfunction inner() { const _util = 'local:'; return _util + v; }\nexport const r = inner();\n",
        );
        // TypeScript moves field initialisers into the constructor, next to
        // its parameters and locals.
        write(
            app.path(),
            "app/client/field.ts",
            "const label = 'outer';\nconst limit = 10;\n\
             export class A { name = label; max = limit; constructor(public label: string) { const limit = 99; } }\n\
             const a = new A('param');\nexport const r = [a.name, a.max, a.label];\n",
        );
        let report = pack_app(app.path(), env);
        let result =
            eval_bundle(&client_bundle(&report), "return [SS.client.both.r, SS.client.shadow.r, SS.client.field.r];");
        assert_eq!(result, json!(["ab", "local:a", ["outer", 10, "param"]]), "{env}");
    }
}

/// A second stylesheet entry beside the packed one is said not to be packed
/// (edits to it would change nothing), in each pack, the cached ones too.
#[test]
fn a_stylesheet_entry_beside_the_packed_one_is_warned_about() {
    let app = fixture("basic");
    let root = app.path();
    write(root, "app/css/app.scss", "$c: red;\nbody { color: $c; }\n");
    write(root, "app/css/app.css", "body { color: blue; }\n");
    for _ in 0..2 {
        let report = pack_app(root, "development");
        let warned: Vec<&String> = report.warnings.iter().filter(|w| w.contains("app.css")).collect();
        assert_eq!(warned.len(), 1, "{:?}", report.warnings);
        assert!(
            warned[0].starts_with("app/css/app.css is not packed: app/css/app.scss is the stylesheet"),
            "{}",
            warned[0]
        );
    }
    std::fs::remove_file(root.join("app/css/app.css")).unwrap();
    let report = pack_app(root, "development");
    assert!(!report.warnings.iter().any(|w| w.contains("stylesheet")), "{:?}", report.warnings);
}

/// Deeply nested code packs (the parser, the transforms and the minifier
/// recurse once per level): 700 nested parentheses or a chain of 5,000 `+`
/// took the process down on a usual thread stack.
#[test]
fn deeply_nested_code_packs() {
    let app = fixture("basic");
    let root = app.path();
    let parens = format!("exports.deep = {}1{};\n", "(".repeat(3000), ")".repeat(3000));
    let arrays = format!("exports.arrays = {}1{};\n", "[".repeat(5000), "]".repeat(5000));
    let chain = format!("exports.chain = 1{};\n", " + 1".repeat(20_000));
    write(root, "app/client/deep.js", format!("{parens}{arrays}{chain}"));
    write(root, "app/server/deep.js", format!("{parens}{chain}exports.actions = {{ n() {{ return 1; }} }};\n"));
    for env in ["development", "production"] {
        let report = pack_app(root, env);
        let client = std::fs::read_to_string(client_bundle(&report)).unwrap();
        assert!(client.contains("chain") && client.contains("arrays"), "{env}: the module is in the client bundle");
    }
}
