//! Gives the compiler an identity finer than its version: a hash of its own
//! sources and of the embedded client library, so that caches and the
//! "nothing changed" check never reuse output of a different build.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

fn main() {
    // A position-independent ssbuild spends about 8 ms of every run applying
    // some 60,000 relocations (swc's tables) before main: a tenth of a cold
    // pack and most of a pack with nothing changed. ssbuild is an offline
    // compiler, so it is linked at a fixed address; ssrun, a server, is not.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    let mut hasher = DefaultHasher::new();
    for dir in ["src", "../client"] {
        println!("cargo:rerun-if-changed={dir}");
        let mut files = Vec::new();
        collect(Path::new(dir), &mut files);
        files.sort();
        for file in files {
            file.hash(&mut hasher);
            std::fs::read(&file).unwrap_or_default().hash(&mut hasher);
        }
    }
    println!(
        "cargo:rustc-env=SSBUILD_BUILD_ID={}-{:016x}",
        std::env::var("CARGO_PKG_VERSION").unwrap_or_default(),
        hasher.finish()
    );
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}
