//! ssrun serving a packed app over HTTP: the page, hashed assets with their
//! caching and precompressed variants, public files, the 404 page, and paths
//! that must never be served.

use std::time::{Duration, Instant};

use ss_tests::{RunningServer, fixture, http, pack_app};

fn packed_styled() -> (tempfile::TempDir, ssbuild::PackReport) {
    let app = fixture("styled");
    let report = pack_app(app.path(), "production");
    (app, report)
}

#[test]
fn the_page_is_never_cached_and_answers_304_to_its_etag() {
    let (app, report) = packed_styled();
    let server = RunningServer::start(app.path());
    let page = http(server.addr, "GET", "/", &[]);
    assert_eq!(page.status, 200);
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(page.body, std::fs::read(report.out.join("index.html")).unwrap());
    let etag = page.header("etag").expect("an etag").to_string();
    let again = http(server.addr, "GET", "/", &[("If-None-Match", &etag)]);
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
}

#[test]
fn assets_are_immutable_and_sent_precompressed_when_accepted() {
    let (app, report) = packed_styled();
    let server = RunningServer::start(app.path());
    let js = &report.manifest.assets["app.js"];
    let url = format!("/{}", js.path);
    let original = std::fs::read(report.out.join(&js.path)).unwrap();

    let plain = http(server.addr, "GET", &url, &[]);
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("cache-control"), Some("public, max-age=31536000, immutable"));
    assert_eq!(plain.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body, original);

    let br = http(server.addr, "GET", &url, &[("Accept-Encoding", "gzip, deflate, br")]);
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(br.body, std::fs::read(report.out.join(format!("{}.br", js.path))).unwrap());
    assert_eq!(br.header("vary"), Some("accept-encoding"));

    let gz = http(server.addr, "GET", &url, &[("Accept-Encoding", "gzip, br;q=0")]);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.body, std::fs::read(report.out.join(format!("{}.gz", js.path))).unwrap());

    let etag = plain.header("etag").unwrap().to_string();
    assert_eq!(http(server.addr, "GET", &url, &[("If-None-Match", &etag)]).status, 304);
    // Each encoding is its own representation, with its own ETag.
    let br_etag = br.header("etag").unwrap().to_string();
    let gz_etag = gz.header("etag").unwrap().to_string();
    assert!(etag != br_etag && etag != gz_etag && br_etag != gz_etag, "{etag} {br_etag} {gz_etag}");
    let revalidated = http(server.addr, "GET", &url, &[("Accept-Encoding", "br"), ("If-None-Match", &br_etag)]);
    assert_eq!(revalidated.status, 304);
    let changed = http(server.addr, "GET", &url, &[("Accept-Encoding", "br"), ("If-None-Match", &etag)]);
    assert_eq!(changed.status, 200, "the identity ETag does not validate the brotli body");

    let head = http(server.addr, "HEAD", &url, &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let post = http(server.addr, "POST", &url, &[("Content-Length", "0")]);
    assert_eq!((post.status, post.header("allow")), (405, Some("GET, HEAD")));
    let refused = http(server.addr, "GET", &url, &[("Accept-Encoding", "gzip;Q=0, br;Q=0")]);
    assert_eq!(refused.header("content-encoding"), None, "q=0 in capitals still refuses a coding");

    let image = &report.manifest.assets["app/css/img/dot.png"];
    let png = http(server.addr, "GET", &format!("/{}", image.path), &[("Accept-Encoding", "br")]);
    assert_eq!(png.header("content-type"), Some("image/png"));
    assert_eq!(png.header("content-encoding"), None, "images are not precompressed");
}

#[test]
fn assets_named_with_spaces_or_non_ascii_letters_are_served_as_browsers_ask() {
    let app = fixture("styled");
    let root = app.path();
    ss_tests::write(root, "app/css/img/é t.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>");
    ss_tests::write(root, "lib/css/9.extra.css", ".x { background: url(\"../../app/css/img/é t.svg\") }\n");
    let report = pack_app(root, "production");
    let server = RunningServer::start(root);
    let entry = &report.manifest.assets["app/css/img/é t.svg"];
    let name = entry.path.strip_prefix("assets/").unwrap();
    assert!(name.starts_with("é t."), "{name}");
    let encoded = format!("/assets/%C3%A9%20t.{}", name.strip_prefix("é t.").unwrap());
    let got = http(server.addr, "GET", &encoded, &[]);
    assert_eq!((got.status, got.header("content-type")), (200, Some("image/svg+xml")), "{encoded}");
    assert_eq!(got.body, std::fs::read(report.out.join(&entry.path)).unwrap());
    assert_eq!(http(server.addr, "GET", "/assets/%C3%A9%20t.000000000000.svg", &[]).status, 404);
    assert_eq!(http(server.addr, "GET", "/assets/%zz.svg", &[]).status, 400, "a broken escape is a bad path");
}

#[test]
fn a_client_that_never_finishes_its_headers_is_let_go_and_others_are_served() {
    use std::io::{Read, Write};
    let (app, _) = packed_styled();
    let path = app.path().to_path_buf();
    let server = RunningServer::here(move || {
        let loaded = ssrun::LoadedApp::load(&path).unwrap();
        let config =
            ssrun::Config { header_timeout: Duration::from_millis(300), ..ssrun::Config::for_env(&loaded.env) };
        ssrun::App::new(loaded).with_config(config)
    });
    let mut slow = std::net::TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = slow.read_to_end(&mut rest);
    assert!(read.is_ok(), "the connection is closed, not left waiting: {read:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());
    assert_eq!(http(server.addr, "GET", "/robots.txt", &[]).status, 200);
}

#[test]
fn public_files_and_the_404_page() {
    let (app, _) = packed_styled();
    let server = RunningServer::start(app.path());
    let robots = http(server.addr, "GET", "/robots.txt", &[]);
    assert_eq!(robots.status, 200);
    assert_eq!(robots.body, b"User-agent: *\nDisallow:\n");
    assert_eq!(robots.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(http(server.addr, "GET", "/img/logo.svg", &[]).header("content-type"), Some("image/svg+xml"));
    for spelling in ["/robots.txt/", "/robots%2etxt"] {
        let found = http(server.addr, "GET", spelling, &[]);
        assert_eq!(found.header("content-type"), Some("text/plain; charset=utf-8"), "{spelling}");
    }
    let missing = http(server.addr, "GET", "/no/such/page", &[]);
    assert_eq!(missing.status, 404);
    assert!(String::from_utf8_lossy(&missing.body).contains("This page does not exist"));
}

/// A deployment holds dist/, public/ and static/, without the app's source;
/// `.well-known/` is served from public/ (other hidden names never are).
#[test]
fn a_deployment_without_the_source_serves_public_files_and_the_404_page() {
    let (app, _) = packed_styled();
    let deploy = tempfile::tempdir().unwrap();
    for folder in ["dist", "public", "static"] {
        ss_tests::copy_tree(&app.path().join(folder), &deploy.path().join(folder));
    }
    ss_tests::write(deploy.path(), "public/.well-known/security.txt", "Contact: mailto:security@example.com\n");
    ss_tests::write(deploy.path(), "public/.hidden", "no");
    let server = RunningServer::start(&deploy.path().join("dist"));
    assert_eq!(http(server.addr, "GET", "/robots.txt", &[]).status, 200);
    let security = http(server.addr, "GET", "/.well-known/security.txt", &[]);
    assert_eq!((security.status, security.body.as_slice()), (200, &b"Contact: mailto:security@example.com\n"[..]));
    assert_eq!(http(server.addr, "GET", "/.hidden", &[]).status, 400);
    let missing = http(server.addr, "GET", "/no/such/page", &[]);
    assert_eq!(missing.status, 404);
    assert!(String::from_utf8_lossy(&missing.body).contains("This page does not exist"));
}

#[test]
fn server_code_the_manifest_and_paths_outside_public_are_never_served() {
    let (app, report) = packed_styled();
    let server = RunningServer::start(app.path());
    let server_js = &report.manifest.server["server.js"].path;
    std::fs::write(app.path().join("secret.txt"), "do not serve").unwrap();
    for path in [
        format!("/{server_js}"),
        format!("/assets/../{server_js}"),
        format!("/assets/%2e%2e/{server_js}"),
        "/manifest.json".to_string(),
        "/../secret.txt".to_string(),
        "/%2e%2e/secret.txt".to_string(),
        "/%2E%2E%2Fsecret.txt".to_string(),
        "/img/..%2f..%2fsecret.txt".to_string(),
        "/.ssbuild-cache/production.state.json".to_string(),
        "/../app/server/app.js".to_string(),
    ] {
        let response = http(server.addr, "GET", &path, &[]);
        assert!(response.status == 404 || response.status == 400, "{path}: {}", response.status);
        let body = String::from_utf8_lossy(&response.body);
        assert!(!body.contains("do not serve") && !body.contains("__ss.d("), "{path} leaked: {body}");
    }
}

#[test]
fn an_app_that_was_never_packed_is_explained() {
    let app = fixture("styled");
    let err = ssrun::LoadedApp::load(app.path()).unwrap_err().to_string();
    assert!(err.contains("neither manifest.json nor dist/manifest.json") && err.contains("ssbuild pack"), "{err}");
}
