//! A development server picking up new builds (`ssrun::pickup`): sessions
//! survive the switch, `init` names the build, and in real headless Chromium
//! a changed stylesheet is swapped into the open page while changed code or
//! templates reload it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ss_tests::{Browser, Reports, WsClient, chromium, with_demo_actions, write};

const PAGE: &str = "<!doctype html>\n<html><head><title>pickup</title><SocketStream></head><body></body></html>\n";

/// The client code of version `v`: reports its version and a random page id
/// once, then the body's colour every 100 ms.
fn client_code(v: u32) -> String {
    format!(
        r#"var page = Math.random().toString(36).slice(2);
exports.init = function () {{
  SS.server.test.report('init', {{ version: {v}, page: page }});
  setInterval(function () {{
    SS.server.test.report('color', {{ color: getComputedStyle(document.body).color, page: page }});
  }}, 100);
}};
"#
    )
}

fn app(root: &Path) {
    write(root, "app/views/app.html", PAGE);
    write(root, "app/client/app.js", client_code(1));
    write(root, "app/css/app.css", "body { color: rgb(1, 2, 3); }\n");
}

fn pack(root: &Path) -> ssbuild::PackReport {
    ssbuild::pack(&ssbuild::PackOptions::new(root, "development")).expect("the app packs")
}

/// Serves the app at `root` as `ssrun` does in development, with the demo
/// actions recording into `reports`, until the returned sender is dropped.
fn serve(root: &Path, reports: Reports) -> (std::net::SocketAddr, std::sync::mpsc::Sender<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let root = root.to_path_buf();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async move {
            let store = Arc::new(ssrun::MemoryStore::new(Duration::from_secs(3600)));
            let presence: Arc<dyn ssrun::Presence> = Arc::new(ssrun::MemoryPresence::new(Duration::from_secs(120)));
            let make = move |loaded: ssrun::LoadedApp| -> Result<ssrun::App, String> {
                let app = ssrun::App::new(loaded).with_memory_store(store.clone()).with_presence(presence.clone());
                Ok(with_demo_actions(app, reports.clone()))
            };
            let first = make(ssrun::LoadedApp::load(&root).unwrap()).unwrap();
            let stop = async move {
                // The sender's drop ends the wait (on a thread, not to block the scheduler).
                let _ = tokio::task::spawn_blocking(move || stopped.recv()).await;
            };
            ssrun::pickup::serve_picking_up(first, listener, make, |line| println!("{line}"), stop).await.unwrap();
        });
    });
    (addr, stop)
}

/// Waits up to `seconds` for a report that `matches`; returns its value.
fn wait_until(
    reports: &Reports,
    seconds: u64,
    what: &str,
    matches: impl Fn(&str, &serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some((_, value)) = reports.lock().unwrap().iter().rev().find(|(step, value)| matches(step, value)) {
            return value.clone();
        }
        assert!(Instant::now() < deadline, "no report of {what} within {seconds} s: {:?}", reports.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_new_build_is_served_with_the_same_sessions_and_init_names_it() {
    let dir = tempfile::tempdir().unwrap();
    app(dir.path());
    let first = pack(dir.path());
    let reports = Reports::default();
    let (addr, _stop) = serve(dir.path(), reports);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let mut client = WsClient::connect(addr, None).await;
        let url = |report: &ssbuild::PackReport, name: &str| format!("/{}", report.manifest.assets[name].path);
        assert_eq!(client.init["build"]["js"], url(&first, "app.js"), "{}", client.init);
        assert_eq!(client.init["build"]["css"], url(&first, "app.css"), "{}", client.init);
        assert_eq!(client.init["build"]["css_integrity"], first.manifest.assets["app.css"].integrity);
        let session = client.set_cookie.clone().expect("a new session");
        assert_eq!(client.call(1, "app.login", serde_json::json!(["ann"])).await["result"], "ann");

        write(dir.path(), "app/css/app.css", "body { color: rgb(4, 5, 6); }\n");
        let second = tokio::task::spawn_blocking({
            let root = dir.path().to_path_buf();
            move || pack(&root)
        })
        .await
        .unwrap();
        assert_eq!(client.closed().await.0, 1001, "the old server closes its connections");

        // The browser reconnects with its cookie: the same session, signed in, and the new build.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut again = loop {
            let client = WsClient::connect(addr, Some(&session)).await;
            if client.init["build"]["css"] == url(&second, "app.css") || Instant::now() > deadline {
                break client;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(again.init["build"]["css"], url(&second, "app.css"), "{}", again.init);
        assert_eq!(again.init["build"]["js"], url(&first, "app.js"), "the code did not change");
        assert_eq!(again.init["build"]["page"], client.init["build"]["page"], "nor did the rest of the page");
        assert_eq!(again.init["session"]["user_id"], "ann", "{}", again.init);
        assert_eq!(again.set_cookie.as_deref(), Some(session.as_str()), "the session was found, not replaced");
        assert_eq!(again.call(2, "app.whoami", serde_json::json!([])).await["result"], "ann");
    });
}

#[test]
fn in_the_browser_styles_swap_in_place_and_code_or_templates_reload_the_page() {
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    app(dir.path());
    pack(dir.path());
    let reports = Reports::default();
    let (addr, _stop) = serve(dir.path(), reports.clone());
    let _browser = Browser::open(&chromium, &format!("http://{addr}/"));

    let first = wait_until(&reports, 30, "the first init", |step, _| step == "init");
    assert_eq!(first["version"], 1, "{first}");
    let page = first["page"].as_str().unwrap().to_string();
    let is_color = |color: &'static str, page: String| {
        move |step: &str, value: &serde_json::Value| step == "color" && value["color"] == color && value["page"] == page
    };
    wait_until(&reports, 30, "the first colour", is_color("rgb(1, 2, 3)", page.clone()));

    // A new stylesheet: the same page (no reload) shows it.
    write(dir.path(), "app/css/app.css", "body { color: rgb(4, 5, 6); }\n");
    pack(dir.path());
    wait_until(&reports, 30, "the new colour in the same page", is_color("rgb(4, 5, 6)", page.clone()));
    let inits = reports.lock().unwrap().iter().filter(|(step, _)| step == "init").count();
    assert_eq!(inits, 1, "a stylesheet change reloaded the page: {:?}", reports.lock().unwrap());

    // New code: the page reloads and runs it, with the new stylesheet.
    write(dir.path(), "app/client/app.js", client_code(2));
    pack(dir.path());
    let second = wait_until(&reports, 30, "the reloaded page", |step, value| step == "init" && value["version"] == 2);
    let new_page = second["page"].as_str().unwrap().to_string();
    assert_ne!(new_page, page);
    wait_until(&reports, 30, "the colour in the reloaded page", is_color("rgb(4, 5, 6)", new_page.clone()));

    // A new template, with the same code and styles: the page reloads for it.
    write(dir.path(), "app/views/chat/line.html", "<p>{{text}}</p>\n");
    pack(dir.path());
    let third = wait_until(&reports, 30, "the page reloaded for its template", |step, value| {
        step == "init" && value["page"] != new_page.as_str() && value["page"] != page.as_str()
    });
    assert_eq!(third["version"], 2, "{third}");
}

/// Stands between the browser and `target`, and answers the first
/// `stale` requests for the page itself with `page` (as a cache in the
/// way could): every request gets a connection of its own, so each request
/// for the page is seen and counted in `pages`.
fn stale_page_proxy(
    runtime: &tokio::runtime::Runtime,
    target: std::net::SocketAddr,
    page: String,
    stale: usize,
    pages: Arc<std::sync::atomic::AtomicUsize>,
) -> std::net::SocketAddr {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (page, pages) = (page.clone(), pages.clone());
            tokio::spawn(async move {
                // The request's head (requests here have no body).
                let mut head = Vec::new();
                let mut buf = [0; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = client.read(&mut buf).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                let text = String::from_utf8_lossy(&head).to_string();
                if text.starts_with("GET / ") && pages.fetch_add(1, Ordering::SeqCst) < stale {
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{page}",
                        page.len()
                    );
                    return client.write_all(response.as_bytes()).await;
                }
                let mut server = tokio::net::TcpStream::connect(target).await?;
                if text.contains("Upgrade: websocket") || text.contains("upgrade: websocket") {
                    server.write_all(&head).await?;
                    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
                    return Ok(());
                }
                // One request per connection: the browser opens a new one for the next.
                let head = text
                    .split("\r\n")
                    .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
                    .collect::<Vec<_>>()
                    .join("\r\n")
                    .replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);
                server.write_all(head.as_bytes()).await?;
                let mut answer = Vec::new();
                server.read_to_end(&mut answer).await?;
                client.write_all(&answer).await?;
                std::io::Result::Ok(())
            });
        }
    });
    addr
}

/// A page whose HTML links the stylesheet of an earlier build (a cache
/// served it): `stale` requests for the page get that HTML. Gives the
/// reports, how many times the page was asked for, and the body's colour
/// in the page that ran `init`, once it has run and a moment more has passed.
fn open_stale_page(stale: usize) -> (Reports, usize, String) {
    let chromium = chromium().expect("the caller checked");
    let dir = tempfile::tempdir().unwrap();
    app(dir.path());
    pack(dir.path());
    let old_page = std::fs::read_to_string(dir.path().join("dist/index.html")).unwrap();
    write(dir.path(), "app/css/app.css", "body { color: rgb(4, 5, 6); }\n");
    pack(dir.path());
    let new_page = std::fs::read_to_string(dir.path().join("dist/index.html")).unwrap();
    assert_ne!(old_page, new_page, "the stylesheet's name changed");

    let reports = Reports::default();
    let (addr, _stop) = serve(dir.path(), reports.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let pages = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let proxy = stale_page_proxy(&runtime, addr, old_page, stale, pages.clone());
    let _browser = Browser::open(&chromium, &format!("http://{proxy}/"));
    let init = wait_until(&reports, 30, "init", |step, _| step == "init");
    let page = init["page"].clone();
    // Reloading again would take well under this.
    std::thread::sleep(Duration::from_secs(2));
    // The page's latest colour, its stylesheet loaded by now.
    let color = wait_until(&reports, 30, "a colour", |step, value| step == "color" && value["page"] == page);
    let pages = pages.load(std::sync::atomic::Ordering::SeqCst);
    (reports, pages, color["color"].as_str().unwrap_or_default().to_string())
}

#[test]
fn in_the_browser_a_page_with_an_older_stylesheet_reloads_once_for_the_current_one() {
    if chromium().is_none() {
        return;
    }
    let (reports, pages, color) = open_stale_page(1);
    assert_eq!(pages, 2, "the stale page, then the current one");
    let inits = reports.lock().unwrap().iter().filter(|(step, _)| step == "init").count();
    assert_eq!(inits, 1, "init ran in the current page only: {:?}", reports.lock().unwrap());
    assert_eq!(color, "rgb(4, 5, 6)", "the current stylesheet applies");
}

#[test]
fn in_the_browser_a_page_that_stays_stale_after_its_reload_does_not_reload_again() {
    if chromium().is_none() {
        return;
    }
    let (reports, pages, _) = open_stale_page(usize::MAX);
    assert_eq!(pages, 2, "one reload, then the page runs as it is");
    let inits = reports.lock().unwrap().iter().filter(|(step, _)| step == "init").count();
    assert_eq!(inits, 1, "{:?}", reports.lock().unwrap());
}
