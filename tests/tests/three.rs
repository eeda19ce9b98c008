//! three.js, an input nobody here wrote, packed two ways: its one-file ES
//! build as one app module, and its source folder of about 750 ES modules.
//! After packing (and minifying), it must compute what the original computes.

use std::path::Path;

use ss_tests::{client_bundle, fixture, have_node, npm_package, write};
use ssbuild::{PackOptions, pack};

/// The same calculations, for `THREE` bound to the packed or the original library.
const CALCULATIONS: &str = "
    const v = new THREE.Vector3(1, 2, 3);
    const w = new THREE.Vector3(-4, 0.5, 2).normalize();
    const m = new THREE.Matrix4().compose(
        new THREE.Vector3(1, -2, 3),
        new THREE.Quaternion().setFromEuler(new THREE.Euler(0.3, -1.1, 2.5)),
        new THREE.Vector3(2, 2, 0.5));
    const box = new THREE.Box3().setFromPoints([v, w, new THREE.Vector3(9, -9, 0)]);
    const color = new THREE.Color('#3399ff').offsetHSL(0.1, -0.2, 0.05);
    return {
      length: v.length(),
      cross: v.clone().cross(w).toArray(),
      transformed: v.clone().applyMatrix4(m).toArray(),
      inverse: m.clone().invert().elements,
      box: [box.min.toArray(), box.max.toArray()],
      color: color.getHexString(),
      revision: THREE.REVISION,
    };";

fn compare(bundle: &Path, packed_binding: &str, original: &Path) {
    let packed = ss_tests::eval_bundle(bundle, &format!("const THREE = {packed_binding};\n{CALCULATIONS}"));
    let reference = ss_tests::eval_bundle(
        bundle,
        &format!("const THREE = await import({:?});\n{CALCULATIONS}", original.display().to_string()),
    );
    assert_eq!(packed, reference);
    assert_eq!(packed["revision"], "187");
}

#[test]
fn three_core_as_one_minified_module() {
    let (true, Some(three)) = (have_node(), npm_package("three")) else {
        return;
    };
    let app = fixture("three-core");
    let original = three.join("build/three.core.js");
    std::fs::copy(&original, app.path().join("app/client/three.js")).unwrap();
    let mut options = PackOptions::new(app.path(), "production");
    options.cache = false;
    let report = pack(&options).unwrap_or_else(|e| panic!("{e}"));
    let exports = &report.manifest.modules["app/client/three.js"].exports;
    assert!(
        exports.contains("Vector3") && exports.contains("WebGLRenderTarget") && exports.len() > 300,
        "{}",
        exports.len()
    );
    let size = report.manifest.assets["app.js"].size;
    assert!(size < 800_000, "minified bundle is {size} bytes");
    compare(&client_bundle(&report), "SS.client.three", &original);
}

#[test]
fn three_source_folder_of_es_modules() {
    let (true, Some(three)) = (have_node(), npm_package("three")) else {
        return;
    };
    let app = fixture("three-src");
    ss_tests::copy_tree(&three.join("src"), &app.path().join("app/client/three"));
    let mut options = PackOptions::new(app.path(), "production");
    options.cache = false;
    let report = pack(&options).unwrap_or_else(|e| panic!("{e}"));
    // Private modules are packed when something requires them: the WebGL
    // library, not the WebGPU renderer that Three.js does not import.
    let modules = &report.manifest.modules;
    let packed = modules.keys().filter(|p| p.starts_with("app/client/three/")).count();
    assert!(packed > 300, "{packed} modules");
    assert!(modules.contains_key("app/client/three/renderers/WebGLRenderer.js"));
    assert!(!modules.contains_key("app/client/three/renderers/webgpu/WebGPURenderer.js"));
    compare(&client_bundle(&report), "SS.client.app.three()", &three.join("src/Three.js"));

    // The same folder without `private_folders` breaks the API tree rules, and says so.
    write(app.path(), "config/app.toml", "");
    let err = pack(&options).unwrap_err().to_string();
    assert!(
        err.contains(
            "app/client/three/renderers/shaders/ShaderLib.js` and `app/client/three/renderers/shaders/ShaderLib/`"
        ),
        "{err}"
    );
}
