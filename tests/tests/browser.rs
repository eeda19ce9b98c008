//! A packed app served by ssrun, opened in real headless Chromium: the
//! browser checks every tag's SRI integrity, so a page whose script ran and
//! whose styles applied proves the hashes, the precompressed variants and
//! the content types are right.

use ss_tests::{RunningServer, chromium, chromium_dom, fixture, pack_app};

#[test]
fn the_packed_page_loads_runs_and_escapes_template_data() {
    let Some(chromium) = chromium() else { return };
    let app = fixture("browser");
    for env in ["production", "development"] {
        pack_app(app.path(), env);
        let server = RunningServer::start(app.path());
        let dom = chromium_dom(&chromium, &format!("http://{}/", server.addr));
        assert!(dom.contains(r#"data-loaded="client:app;shared:greet""#), "{env}: the script did not run:\n{dom}");
        assert!(dom.contains("hello browser"), "{env}: {dom}");
        // The data's markup arrives as text: no <img> element, and the title is untouched.
        assert!(dom.contains("&lt;img src=x onerror="), "{env}: {dom}");
        assert!(!dom.contains("<img"), "{env}: template data became markup:\n{dom}");
        assert!(dom.contains("<title>browser fixture</title>"), "{env}: {dom}");
    }
}

#[test]
fn a_tampered_asset_is_refused_by_the_browser() {
    let Some(chromium) = chromium() else { return };
    let app = fixture("browser");
    let report = pack_app(app.path(), "development");
    // Change one byte of the script after packing, keeping its size: its
    // integrity no longer matches, and Chromium must not run it.
    let script = report.out.join(&report.manifest.assets["app.js"].path);
    let mut bytes = std::fs::read(&script).unwrap();
    let at = bytes.windows(5).position(|w| w == b"hello").expect("the shared module is in the bundle");
    bytes[at] = b'j';
    std::fs::write(&script, bytes).unwrap();
    let server = RunningServer::start(app.path());
    let dom = chromium_dom(&chromium, &format!("http://{}/", server.addr));
    assert!(!dom.contains("data-loaded"), "a script that fails its integrity check ran:\n{dom}");
}
