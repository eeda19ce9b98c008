//! End to end in headless Chromium: a packed app boots, calls actions over the
//! socket in both styles, receives an event published to its user, and
//! survives a server restart in the middle of its session, and a server that
//! stops answering without closing the socket; a page older than its server
//! stops reconnecting; a page with as many calls in flight as the server
//! allows keeps its connection.

use serde_json::json;
use ss_tests::{Browser, Reports, RunningServer, chromium, fixture, pack_app, wait_for_report, with_demo_actions};

#[test]
fn the_browser_calls_listens_and_survives_a_restart() {
    let Some(chromium) = chromium() else { return };
    let dir = fixture("realtime");
    pack_app(dir.path(), "development");
    let reports = Reports::default();
    let app = || with_demo_actions(ssrun::App::new(ssrun::LoadedApp::load(dir.path()).unwrap()), reports.clone());
    let server = RunningServer::with_app(app(), 0);
    let port = server.addr.port();
    let _browser = Browser::open(&chromium, &format!("http://127.0.0.1:{port}/"));

    assert_eq!(wait_for_report(&reports, "init", 30), json!({"env": "development", "inits": 1, "connected": true}));
    assert_eq!(wait_for_report(&reports, "square", 10), json!(625));
    assert_eq!(wait_for_report(&reports, "callback", 10), json!(25));
    assert_eq!(wait_for_report(&reports, "error", 10), json!("bad_args"));
    assert_eq!(wait_for_report(&reports, "timeout", 10), json!("timeout"), "a per-call timeout fires");
    assert_eq!(wait_for_report(&reports, "silent", 10), json!(9));
    assert_eq!(wait_for_report(&reports, "event", 10), json!({"data": "hello ann", "channel": null}));
    wait_for_report(&reports, "ready_for_restart", 10);

    // Stop the server; the page calls square(7) as soon as its socket drops.
    drop(server);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        !reports.lock().unwrap().iter().any(|(step, _)| step == "after_restart"),
        "nothing can answer while the server is down"
    );
    let _server = RunningServer::with_app(app(), port);
    assert_eq!(wait_for_report(&reports, "after_restart", 30), json!({"result": 49, "inits": 1}));
    assert_eq!(wait_for_report(&reports, "reconnected", 10), json!(true));
    let inits = reports.lock().unwrap().iter().filter(|(step, _)| step == "init").count();
    assert_eq!(inits, 1, "init runs once per page load");
}

#[test]
fn the_browser_gives_up_on_a_server_that_stops_answering() {
    let Some(chromium) = chromium() else { return };
    let dir = fixture("stalled");
    pack_app(dir.path(), "development");
    let reports = Reports::default();
    let path = dir.path().to_path_buf();
    let recorded = reports.clone();
    // One thread serves everything, so an action that blocks it stalls the
    // whole server while every socket stays open.
    let server = RunningServer::here(move || {
        let loaded = ssrun::LoadedApp::load(&path).unwrap();
        let mut config = ssrun::Config::for_env(&loaded.env);
        config.heartbeat_interval = std::time::Duration::from_secs(1);
        with_demo_actions(ssrun::App::new(loaded).with_config(config), recorded).action(
            "test.stall",
            |call: ssrun::Call| async move {
                let ms: u64 = call.arg(0)?;
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Ok(serde_json::Value::Null)
            },
        )
    });
    let port = server.addr.port();
    let _browser = Browser::open(&chromium, &format!("http://127.0.0.1:{port}/"));

    assert_eq!(wait_for_report(&reports, "ready", 30), json!(true));
    // Heartbeats go every second; the first unanswered one drops the
    // connection, and its call fails rather than waiting on a dead socket.
    assert_eq!(wait_for_report(&reports, "stall", 20), json!("disconnected"));
    assert_eq!(wait_for_report(&reports, "disconnected", 10), json!(true));
    let reconnected = wait_for_report(&reports, "reconnected", 20);
    assert!(reconnected["after_ms"].as_u64().is_some(), "{reconnected}");
}

/// Packs the fixture app `name`, serves it with the demo actions and the
/// settings `configure` makes, and opens its page in Chromium.
fn open_page(
    chromium: &std::path::Path,
    name: &str,
    configure: impl FnOnce(&mut ssrun::Config),
) -> (tempfile::TempDir, Reports, RunningServer, Browser) {
    let dir = fixture(name);
    pack_app(dir.path(), "development");
    let reports = Reports::default();
    let loaded = ssrun::LoadedApp::load(dir.path()).unwrap();
    let mut config = ssrun::Config::for_env(&loaded.env);
    configure(&mut config);
    let app = with_demo_actions(ssrun::App::new(loaded).with_config(config), reports.clone());
    let server = RunningServer::with_app(app, 0);
    let browser = Browser::open(chromium, &format!("http://127.0.0.1:{}/", server.addr.port()));
    (dir, reports, server, browser)
}

#[test]
fn a_page_that_was_busy_reads_the_answers_waiting_for_it_before_giving_up() {
    let Some(chromium) = chromium() else { return };
    let (_dir, reports, _server, _browser) =
        open_page(&chromium, "blocking", |c| c.heartbeat_interval = std::time::Duration::from_millis(300));

    assert_eq!(wait_for_report(&reports, "ready", 30), json!(true));
    // The server answered every heartbeat at once; the page was only slow
    // to read the answers, eight times over.
    assert_eq!(wait_for_report(&reports, "blocked", 30), json!({"drops": 0, "connected": true}));
}

#[test]
fn a_page_at_its_limit_of_calls_keeps_its_connection() {
    let Some(chromium) = chromium() else { return };
    let (_dir, reports, _server, _browser) = open_page(&chromium, "busy", |c| {
        c.heartbeat_interval = std::time::Duration::from_secs(1);
        c.max_calls_in_flight = 1;
    });

    assert_eq!(wait_for_report(&reports, "ready", 30), json!(true));
    // The one call allowed in flight takes 3.5 s, over three heartbeats that
    // the server does not read meanwhile; the page keeps its connection.
    let slow = wait_for_report(&reports, "slow", 20);
    assert_eq!(slow["value"], "done", "{slow}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let steps: Vec<String> = reports.lock().unwrap().iter().map(|(step, _)| step.clone()).collect();
    assert_eq!(steps, ["ready", "slow"], "the page never took the server for gone");
}

/// Forwards connections to `target`, changing the protocol version a
/// WebSocket upgrade asks for to 9; counts those upgrades.
fn version_changing_proxy(
    runtime: &tokio::runtime::Runtime,
    target: std::net::SocketAddr,
    upgrades: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let upgrades = upgrades.clone();
            tokio::spawn(async move {
                let mut server = tokio::net::TcpStream::connect(target).await?;
                let mut head = vec![0; 16 * 1024];
                let n = client.read(&mut head).await?;
                head.truncate(n);
                let asked = b"GET /_ss/ws?v=1 ";
                if head.starts_with(asked) {
                    head[asked.len() - 2] = b'9';
                    upgrades.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                server.write_all(&head).await?;
                tokio::io::copy_bidirectional(&mut client, &mut server).await?;
                std::io::Result::Ok(())
            });
        }
    });
    addr
}

#[test]
fn a_page_older_than_its_server_stops_reconnecting() {
    let Some(chromium) = chromium() else { return };
    let dir = fixture("outdated");
    pack_app(dir.path(), "development");
    let reports = Reports::default();
    let app = with_demo_actions(ssrun::App::new(ssrun::LoadedApp::load(dir.path()).unwrap()), reports.clone());
    let server = RunningServer::with_app(app, 0);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let upgrades = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let proxy = version_changing_proxy(&runtime, server.addr, upgrades.clone());
    let _browser = Browser::open(&chromium, &format!("http://{proxy}/"));

    assert_eq!(wait_for_report(&reports, "reconnect_failed", 30), serde_json::Value::Null);
    // Reconnecting would start again within a quarter of a second.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(upgrades.load(std::sync::atomic::Ordering::SeqCst), 1, "one attempt, then no more");
    let steps: Vec<String> = reports.lock().unwrap().iter().map(|(step, _)| step.clone()).collect();
    assert_eq!(steps, ["reconnect_failed"], "init never ran: the server never sent init");
}
