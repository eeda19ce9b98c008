//! `ssrun config` prints the settings a start would use, from the app's
//! `config/` folder beside `dist/`.

use std::process::Command;

mod common;
use common::packed_fixture;

#[test]
fn ssrun_config_prints_the_effective_settings_with_their_origin() {
    let dir = packed_fixture();
    std::fs::create_dir_all(dir.path().join("config/environments")).unwrap();
    std::fs::write(dir.path().join("config/environments/production.toml"), "[server]\nreply_timeout = 12\n").unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_ssrun")).arg("config").arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("# ssrun's settings for the production environment\n"), "{text}");
    assert!(text.contains("\n[http]\nport = 3000  # default\n"), "{text}");
    assert!(text.contains("\nreply_timeout = 12  # from "), "{text}");
    assert!(text.contains("production.toml\n"), "{text}");
    assert!(text.parse::<toml::Table>().is_ok(), "{text}");

    std::fs::write(dir.path().join("config/app.toml"), "[server]\nreply_timout = 12\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ssrun")).arg("config").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("app.toml: unknown key `server.reply_timout`"), "{stderr}");
}
