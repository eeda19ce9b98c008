//! What the tests that run the `ssrun` program share.

use std::path::Path;

/// The browser fixture packed for production into a folder of the test's own
/// (with the cache off, nothing is written into the fixture); its output is
/// `dist/` there.
pub fn packed_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut options =
        ssbuild::PackOptions::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/apps/browser"), "production");
    options.cache = false;
    options.out = Some(dir.path().join("dist"));
    ssbuild::pack(&options).expect("the fixture packs");
    dir
}
