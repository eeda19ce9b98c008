//! The WebSocket protocol (docs/protocol.md), spoken by a raw client: calls and
//! replies, sessions, pub/sub, heartbeats, and every kind of bad input.

use std::time::Duration;

use serde_json::{Value, json};
use ss_tests::{Reports, RunningServer, WsClient, fixture, pack_app, with_demo_actions, ws_open};
use tokio_tungstenite::tungstenite::Message;

struct Served {
    _dir: tempfile::TempDir,
    server: RunningServer,
}

fn serve_with(config: impl FnOnce(&mut ssrun::Config)) -> Served {
    let dir = fixture("realtime");
    pack_app(dir.path(), "development");
    let app = demo_app(dir.path(), config);
    Served { server: RunningServer::with_app(app, 0), _dir: dir }
}

/// As `serve_with`, on one thread: where the server writes an event to an
/// idle connection's socket from the publishing task.
fn serve_on_one_thread_with(config: impl FnOnce(&mut ssrun::Config) + Send + 'static) -> Served {
    let dir = fixture("realtime");
    pack_app(dir.path(), "development");
    let path = dir.path().to_path_buf();
    Served { server: RunningServer::here(move || demo_app(&path, config)), _dir: dir }
}

fn demo_app(path: &std::path::Path, config: impl FnOnce(&mut ssrun::Config)) -> ssrun::App {
    let loaded = ssrun::LoadedApp::load(path).expect("the packed app loads");
    let mut settings = ssrun::Config::for_env(&loaded.env);
    config(&mut settings);
    with_demo_actions(ssrun::App::new(loaded).with_config(settings), Reports::default())
}

fn serve() -> Served {
    serve_with(|_| {})
}

#[tokio::test]
async fn init_carries_the_api_tree_and_a_fresh_session_cookie() {
    let s = serve();
    let client = WsClient::connect(s.server.addr, None).await;
    let init = &client.init;
    assert_eq!(init["v"], 1);
    assert_eq!(init["env"], "development");
    assert_eq!(init["api"]["app"]["square"], 1);
    assert_eq!(init["api"]["secure"]["secret"], 1);
    assert_eq!(init["session"]["user_id"], Value::Null);
    assert!(init["session"]["created_at"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(init["client"]["heartbeat_interval"], 30);
    assert_eq!(init["client"]["max_message_bytes"], 65536, "the browser library fails a call too big to send");
    assert!(init.get("session").unwrap().get("id").is_none(), "the id stays in the HttpOnly cookie");
    let cookie = client.set_cookie.as_deref().expect("a session cookie on the upgrade");
    assert_eq!(cookie.len(), 32, "192 bits in base64url");

    let (_, response) = ws_open(s.server.addr, "/_ss/ws?v=1", &[]).await.unwrap();
    let header = response.headers()["set-cookie"].to_str().unwrap();
    for attribute in ["Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(header.contains(attribute), "{header}");
    }
}

#[tokio::test]
async fn calls_are_answered_by_id_with_every_argument_as_given() {
    let s = serve();
    let mut c = WsClient::connect(s.server.addr, None).await;
    assert_eq!(c.call(1, "app.square", json!([25])).await, json!({"type": "reply", "id": 1, "result": 625}));
    let echoed = c.call(2, "app.echo", json!([0, "", false, null, [1], {"a": 1}])).await;
    assert_eq!(echoed["result"], json!([0, "", false, null, [1], {"a": 1}]));
    // String ids are echoed too; a call without args has none.
    c.send_text(r#"{"type":"call","id":"x-1","method":"app.echo"}"#).await;
    assert_eq!(c.next_json().await, json!({"type": "reply", "id": "x-1", "result": []}));
    // Ids go back exactly as written, whatever number they spell.
    for id in ["1e2", "-0", "123456789012345678901234567890", "1e400", r#""\u00e9""#] {
        c.send_text(format!(r#"{{"type":"call","id":{id},"method":"app.echo"}}"#)).await;
        assert_eq!(c.next_text().await, format!(r#"{{"type":"reply","id":{id},"result":[]}}"#));
    }
    // Half of a surrogate pair (a string cut inside an emoji, as
    // JSON.stringify writes it) reads as U+FFFD instead of closing the socket.
    c.send_text(r#"{"type":"call","id":9,"method":"app.echo","args":["ok\ud83d"]}"#).await;
    assert_eq!(c.next_json().await["result"], json!(["ok\u{fffd}"]));

    // A slow call does not hold up a fast one: replies come back as they finish.
    c.send_call(3, "app.slow", json!([300, "slow"])).await;
    c.send_call(4, "app.square", json!([3])).await;
    assert_eq!(c.next_json().await["id"], 4);
    assert_eq!(c.next_json().await, json!({"type": "reply", "id": 3, "result": "slow"}));
}

#[tokio::test]
async fn errors_reach_the_call_that_failed() {
    let s = serve();
    let mut c = WsClient::connect(s.server.addr, None).await;
    let reply = c.call(1, "app.sqare", json!([2])).await;
    assert_eq!(reply["error"]["code"], "not_found");
    assert!(reply["error"]["message"].as_str().unwrap().contains("app.square"), "{reply}");
    let reply = c.call(2, "app.square", json!(["x"])).await;
    assert_eq!(reply["error"]["code"], "bad_args");
    assert!(reply["error"]["message"].as_str().unwrap().starts_with("app.square: argument 1 is \"x\""), "{reply}");
    assert_eq!(
        c.call(3, "app.fail", json!([])).await["error"],
        json!({"code": "failed", "message": "the disk is full"})
    );
    c.send_text(r#"{"type":"call","id":4,"method":"app.square","args":5}"#).await;
    assert_eq!(c.next_json().await["error"]["code"], "bad_request");
    c.send_text(r#"{"type":"call","id":5}"#).await;
    assert_eq!(c.next_json().await["error"]["code"], "bad_request");
    assert_eq!(c.call(6, "secure.secret", json!([])).await["error"]["code"], "unauthorized");
    // The connection is still fine.
    assert_eq!(c.call(7, "app.square", json!([4])).await["result"], 16);
}

/// Sends `message` on a new connection and returns the close code; checks that
/// another client is served all along.
async fn closes_with(addr: std::net::SocketAddr, message: Message) -> (u16, String) {
    let mut bystander = WsClient::connect(addr, None).await;
    let mut c = WsClient::connect(addr, None).await;
    c.send_message(message).await;
    let closed = c.closed().await;
    assert_eq!(bystander.call(1, "app.square", json!([9])).await["result"], 81);
    closed
}

#[tokio::test]
async fn bad_input_closes_with_a_documented_code_and_others_are_served() {
    let s = serve_with(|c| c.max_message_bytes = 1024);
    let addr = s.server.addr;
    let (code, reason) = closes_with(addr, Message::text("{not json")).await;
    assert_eq!(code, 4400);
    assert!(reason.starts_with("not JSON"), "{reason}");
    assert_eq!(closes_with(addr, Message::text("[1,2]")).await.0, 4400);
    // The fields of a call in order, as an array, are not a call either.
    let (code, reason) = closes_with(addr, Message::text(r#"["call",1,"app.square",[5]]"#)).await;
    assert_eq!((code, reason.as_str()), (4400, "a message must be a JSON object"));
    assert_eq!(closes_with(addr, Message::text(r#"{"type":"call","id":null,"method":"app.square"}"#)).await.0, 4400);
    let (code, reason) =
        closes_with(addr, Message::text(r#"{"type":"call","id":1,"method":"app.square","method":"x"}"#)).await;
    assert_eq!(code, 4400);
    assert!(reason.starts_with("not a message: duplicate field"), "{reason}");
    assert_eq!(closes_with(addr, Message::text(r#"{"id":1}"#)).await.0, 4400);
    assert_eq!(
        closes_with(addr, Message::text(r#"{"type":"shout"}"#)).await,
        (4400, "unknown message type shout".into())
    );
    assert_eq!(closes_with(addr, Message::text(r#"{"type":"call","method":"app.square"}"#)).await.0, 4400);
    assert_eq!(closes_with(addr, Message::binary(vec![1, 2, 3])).await.0, 1003);
    let big = format!(r#"{{"type":"call","id":1,"method":"app.echo","args":["{}"]}}"#, "x".repeat(2000));
    assert_eq!(closes_with(addr, Message::text(big)).await.0, 1009);
    // Just under the cap is fine.
    let mut c = WsClient::connect(addr, None).await;
    let reply = c.call(1, "app.echo", json!(["y".repeat(900)])).await;
    assert_eq!(reply["result"][0].as_str().unwrap().len(), 900);
    // Arguments nested up to 126 deep are read (docs/protocol.md); deeper is unreadable.
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let call = |depth: usize| format!(r#"{{"type":"call","id":2,"method":"app.square","args":[{}]}}"#, nested(depth));
    c.send_message(Message::text(call(126))).await;
    assert_eq!(c.next_json().await["error"]["code"], "bad_args");
    let (code, reason) = closes_with(addr, Message::text(call(127))).await;
    assert_eq!(code, 4400, "{reason}");
    assert!(reason.contains("recursion limit"), "{reason}");
}

#[tokio::test]
async fn the_version_and_origin_are_checked() {
    let s = serve();
    let addr = s.server.addr;
    for path in ["/_ss/ws?v=2", "/_ss/ws"] {
        let (mut stream, response) = ws_open(addr, path, &[]).await.unwrap();
        assert!(response.headers().get("set-cookie").is_none(), "no session for a client that cannot talk");
        let (code, reason) = ss_tests::closed(&mut stream).await;
        assert_eq!(code, 4001, "{path}");
        assert!(reason.contains("speaks 1") || reason.contains("v=1"), "{reason}");
    }
    let foreign = ws_open(addr, "/_ss/ws?v=1", &[("Origin", "https://elsewhere.example")]).await;
    match foreign {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("a foreign origin must be refused: {:?}", other.map(|(_, r)| r.status())),
    }
    let own = format!("http://{addr}");
    assert!(ws_open(addr, "/_ss/ws?v=1", &[("Origin", &own)]).await.is_ok());
}

#[tokio::test]
async fn a_session_is_restored_on_reconnect_and_forged_ids_are_never_adopted() {
    let s = serve();
    let addr = s.server.addr;
    let mut first = WsClient::connect(addr, None).await;
    let id = first.set_cookie.clone().unwrap();
    first.call(1, "app.login", json!(["ann"])).await;
    first.call(2, "app.join", json!(["red"])).await;
    drop(first);

    let mut again = WsClient::connect(addr, Some(&id)).await;
    // The known session is kept, and its cookie set again (its life runs from the latest visit).
    assert_eq!(again.set_cookie.as_deref(), Some(id.as_str()), "the known session is kept");
    assert_eq!(again.init["session"]["user_id"], "ann");
    assert_eq!(again.call(1, "app.channels", json!([])).await["result"], json!(["red"]));
    assert_eq!(again.call(2, "secure.secret", json!([])).await["result"], json!({"for": "ann"}));

    let forged = "A".repeat(32);
    let stranger = WsClient::connect(addr, Some(&forged)).await;
    let issued = stranger.set_cookie.clone().expect("a new session instead");
    assert_ne!(issued, forged);
    assert_eq!(stranger.init["session"]["user_id"], Value::Null);
    let junk = WsClient::connect(addr, Some("../../etc")).await;
    assert!(junk.set_cookie.is_some());
}

#[tokio::test]
async fn events_reach_users_channels_and_everyone() {
    events_reach_users_channels_and_everyone_on(serve_with(|_| {})).await;
    events_reach_users_channels_and_everyone_on(serve_on_one_thread_with(|_| {})).await;
}

async fn events_reach_users_channels_and_everyone_on(s: Served) {
    let addr = s.server.addr;
    let mut ann1 = WsClient::connect(addr, None).await;
    let ann_id = ann1.set_cookie.clone().unwrap();
    ann1.call(1, "app.login", json!(["ann"])).await;
    let mut ann2 = WsClient::connect(addr, Some(&ann_id)).await;
    let mut bob = WsClient::connect(addr, None).await;
    bob.call(1, "app.login", json!(["bob"])).await;
    bob.call(2, "app.join", json!(["red"])).await;

    bob.call(3, "app.tell", json!(["ann", {"text": "hi ann"}])).await;
    for ann in [&mut ann1, &mut ann2] {
        assert_eq!(ann.next_json().await, json!({"type": "event", "event": "note", "data": {"text": "hi ann"}}));
    }
    ann1.call(2, "app.say", json!(["red", "to red"])).await;
    assert_eq!(bob.next_json().await, json!({"type": "event", "event": "said", "data": "to red", "channel": "red"}));
    ann1.call(3, "app.broadcast", json!(["all"])).await;
    // ann1 gets the broadcast before its own reply; the others get it alone.
    for c in [&mut ann2, &mut bob] {
        assert_eq!(c.next_json().await, json!({"type": "event", "event": "news", "data": "all"}));
    }
    // Nobody got what was not for them: the next thing each sees is its own reply.
    assert_eq!(ann2.call(9, "app.whoami", json!([])).await["result"], "ann");
    bob.call(4, "app.leave", json!(["red"])).await;
    ann1.call(4, "app.say", json!(["red", "again"])).await;
    assert_eq!(bob.call(5, "app.whoami", json!([])).await, json!({"type": "reply", "id": 5, "result": "bob"}));
}

#[tokio::test]
async fn calls_are_answered_while_broadcasts_flood_the_connection() {
    calls_are_answered_while_broadcasts_flood_the_connection_on(serve_with(|_| {})).await;
    calls_are_answered_while_broadcasts_flood_the_connection_on(serve_on_one_thread_with(|_| {})).await;
}

async fn calls_are_answered_while_broadcasts_flood_the_connection_on(s: Served) {
    let addr = s.server.addr;
    let mut sender = WsClient::connect(addr, None).await;
    let mut reader = WsClient::connect(addr, None).await;
    const FLOOD: u64 = 500;
    for i in 0..FLOOD {
        sender.send_call(i + 1, "app.broadcast", json!([i])).await;
    }
    reader.send_call(1, "app.square", json!([7])).await;
    // The reader's reply comes among the events, and no event is lost.
    let mut events = std::collections::BTreeSet::new();
    let mut replied = false;
    while events.len() < FLOOD as usize || !replied {
        let message = reader.next_json().await;
        match message["type"].as_str() {
            Some("event") => assert!(events.insert(message["data"].as_u64().unwrap()), "twice: {message}"),
            Some("reply") => {
                assert_eq!(message["result"], 49);
                replied = true;
            }
            _ => panic!("unexpected: {message}"),
        }
    }
    // The sender, which read nothing meanwhile, gets every reply and every event too.
    let (mut replies, mut news) = (0, 0);
    while replies < FLOOD || news < FLOOD {
        match sender.next_json().await["type"].as_str() {
            Some("reply") => replies += 1,
            Some("event") => news += 1,
            other => panic!("unexpected: {other:?}"),
        }
    }
}

#[tokio::test]
async fn heartbeats_are_answered_and_mark_users_online() {
    let s = serve();
    let mut c = WsClient::connect(s.server.addr, None).await;
    c.send_text(r#"{"type":"hb"}"#).await;
    assert_eq!(c.next_json().await, json!({"type": "hb"}));
    assert_eq!(c.call(1, "app.online", json!([])).await["result"], json!([]));
    c.call(2, "app.login", json!(["cy"])).await;
    c.send_text(r#"{"type":"hb"}"#).await;
    assert_eq!(c.next_json().await, json!({"type": "hb"}));
    assert_eq!(c.call(3, "app.online", json!([])).await["result"], json!(["cy"]));
    c.call(4, "app.logout", json!([])).await;
    assert_eq!(c.call(5, "app.online", json!([])).await["result"], json!([]));

    // Signed in from two browsers (two sessions): signing out of one leaves the user online.
    let mut phone = WsClient::connect(s.server.addr, None).await;
    c.call(6, "app.login", json!(["cy"])).await;
    phone.call(1, "app.login", json!(["cy"])).await;
    phone.call(2, "app.logout", json!([])).await;
    assert_eq!(c.call(7, "app.online", json!([])).await["result"], json!(["cy"]), "still signed in on the other");
    c.call(8, "app.logout", json!([])).await;
    assert_eq!(c.call(9, "app.online", json!([])).await["result"], json!([]));
}

#[tokio::test]
async fn silent_connections_are_closed_and_users_who_stop_are_purged() {
    let s = serve_with(|c| {
        c.heartbeat_interval = Duration::from_millis(100);
        c.offline_after = Duration::from_millis(250);
        c.purge_interval = Duration::from_millis(100);
    });
    let mut quiet = WsClient::connect(s.server.addr, None).await;
    // The server times the silence from the login frame, which cannot
    // arrive before it is sent.
    let started = std::time::Instant::now();
    quiet.call(1, "app.login", json!(["dee"])).await;
    assert_eq!(quiet.closed().await.0, 4408);
    assert!(started.elapsed() >= Duration::from_millis(300), "closed after three intervals, not before");
    let mut c = WsClient::connect(s.server.addr, None).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(c.call(1, "app.online", json!([])).await["result"], json!([]), "dee stopped sending heartbeats");
}

/// A message arriving slowly, over more than three heartbeat intervals, is
/// the client speaking, not silence.
#[tokio::test]
async fn a_message_that_arrives_slowly_keeps_its_connection_open() {
    use tokio::io::AsyncWriteExt;
    let s = serve_with(|c| c.heartbeat_interval = Duration::from_millis(100));
    let mut stream = raw::open(s.server.addr, &[]).await;
    let text = format!(r#"{{"type":"call","id":1,"method":"app.echo","args":["{}"]}}"#, "x".repeat(300));
    let frame = raw::frame(0x81, text.as_bytes());
    // Ten intervals, a piece every 20 ms.
    let started = std::time::Instant::now();
    for piece in frame.chunks(frame.len().div_ceil(50)) {
        stream.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() > Duration::from_millis(600), "{:?}", started.elapsed());
    let (opcode, reply) = raw::server_frame(&mut stream).await.expect("the reply, not a close");
    assert_eq!(opcode, 1, "{}", String::from_utf8_lossy(&reply));
    let reply: Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(reply["id"], 1, "{reply}");
}

#[tokio::test]
async fn a_client_at_its_limit_of_calls_is_not_taken_for_silent() {
    let s = serve_with(|c| {
        c.heartbeat_interval = Duration::from_millis(100);
        c.max_calls_in_flight = 1;
    });
    let mut c = WsClient::connect(s.server.addr, None).await;
    // The one call allowed in flight lasts ten intervals, during which the
    // server reads nothing from this client, heartbeats included.
    c.send_call(1, "app.slow", json!([1000, "done"])).await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.send_text(r#"{"type":"hb"}"#).await;
    }
    // Meanwhile the server says twice per interval that it is alive, since
    // the client's heartbeats go unanswered.
    let mut beats = 0;
    loop {
        let message = c.next_json().await;
        if message == json!({"type": "hb"}) {
            beats += 1;
            continue;
        }
        assert_eq!(message, json!({"type": "reply", "id": 1, "result": "done"}));
        break;
    }
    // About 20 (two per interval). The bound is loose because a loaded
    // machine delays some; what it guards is that the server goes on beating
    // while the call keeps it from reading this client (a server that stopped
    // would send none), and the reply above shows the client was not dropped.
    assert!((5..=24).contains(&beats), "{beats} heartbeats from the server during the call");
    for _ in 0..10 {
        assert_eq!(c.next_json().await, json!({"type": "hb"}), "the heartbeats are read once the call is answered");
    }
}

#[tokio::test]
async fn a_client_that_does_not_read_is_disconnected() {
    a_client_that_does_not_read_is_disconnected_on(serve_with(|c| c.outgoing_queue = 4)).await;
    a_client_that_does_not_read_is_disconnected_on(serve_on_one_thread_with(|c| c.outgoing_queue = 4)).await;
}

async fn a_client_that_does_not_read_is_disconnected_on(s: Served) {
    let addr = s.server.addr;
    let mut reader = WsClient::connect(addr, None).await;
    reader.call(1, "app.login", json!(["slow"])).await;
    let mut publisher = WsClient::connect(addr, None).await;
    let chunk = "z".repeat(60_000);
    // Far more than the socket buffers hold: the server stops writing, the queue fills.
    for id in 0..400u64 {
        publisher.call(id, "app.tell", json!(["slow", chunk])).await;
    }
    assert_eq!(reader.closed().await.0, 4429);
}

#[tokio::test]
async fn on_one_thread_an_event_published_by_a_call_follows_its_reply() {
    // The server writes events straight to an idle connection's socket; a
    // connection woken by a call is not idle until its reply is written.
    let s = serve_on_one_thread_with(|_| {});
    let mut client = WsClient::connect(s.server.addr, None).await;
    client.call(1, "app.login", json!(["ann"])).await;
    for i in 0..20u64 {
        client.send_call(10 + i, "app.notify_me", json!([i])).await;
        let reply = client.next_json().await;
        assert!(reply["type"] == "reply" && reply["id"] == 10 + i, "the reply first: {reply}");
        let event = client.next_json().await;
        assert!(event["type"] == "event" && event["data"] == i, "then the event: {event}");
    }
}

#[tokio::test]
async fn events_larger_than_the_socket_takes_arrive_whole_and_in_order() {
    // On one thread the server writes an event to an idle connection's socket
    // as it is published; what the socket does not take is finished by the
    // connection's task before anything else it writes.
    let settings = |c: &mut ssrun::Config| {
        c.outgoing_queue = 1000;
        c.max_message_bytes = 1 << 20;
    };
    events_larger_than_the_socket_takes_arrive_whole_and_in_order_on(serve_with(settings)).await;
    events_larger_than_the_socket_takes_arrive_whole_and_in_order_on(serve_on_one_thread_with(settings)).await;
}

async fn events_larger_than_the_socket_takes_arrive_whole_and_in_order_on(s: Served) {
    let addr = s.server.addr;
    let mut reader = WsClient::connect(addr, None).await;
    reader.call(1, "app.login", json!(["late"])).await;
    let mut publisher = WsClient::connect(addr, None).await;
    const EVENTS: usize = 64;
    let text = |i: usize| format!("{i}:{}", "y".repeat(900_000 + i));
    // About 58 MB while the reader reads nothing: more than the socket's
    // buffers take (Linux lets a loopback reader's grow to 32 MiB).
    for i in 0..EVENTS {
        publisher.call(i as u64, "app.tell", json!(["late", text(i)])).await;
    }
    reader.send_call(2, "app.square", json!([3])).await;
    let (mut next, mut replied) = (0, false);
    while next < EVENTS || !replied {
        let message = reader.next_json().await;
        match message["type"].as_str() {
            Some("event") => {
                assert!(message["data"].as_str() == Some(text(next).as_str()), "event {next} whole and in its turn");
                next += 1;
            }
            Some("reply") => {
                assert_eq!(message["result"], 9);
                replied = true;
            }
            _ => panic!("unexpected: {message}"),
        }
    }
}

#[tokio::test]
async fn shutdown_closes_sockets_with_going_away() {
    let s = serve();
    let mut c = WsClient::connect(s.server.addr, None).await;
    let Served { _dir, server } = s;
    let closing = tokio::task::spawn_blocking(move || drop(server));
    assert_eq!(c.closed().await.0, 1001);
    closing.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_clients_are_all_answered() {
    let s = serve();
    let addr = s.server.addr;
    let mut clients = Vec::new();
    for n in 0..1000u64 {
        clients.push(tokio::spawn(async move {
            let mut c = WsClient::connect(addr, None).await;
            for i in 0..5u64 {
                c.send_call(i, "app.square", json!([n + i])).await;
            }
            let mut answered = 0;
            while answered < 5 {
                let reply = c.next_json().await;
                let i = reply["id"].as_u64().unwrap();
                assert_eq!(reply["result"], json!((n + i) * (n + i)));
                answered += 1;
            }
            c
        }));
    }
    let mut open = Vec::new();
    for client in clients {
        open.push(client.await.expect("every client is answered"));
    }
    assert_eq!(open.len(), 1000);
    // All still connected: one broadcast reaches every one of them.
    open[0].call(99, "app.broadcast", json!(["everyone"])).await;
    for c in open.iter_mut().skip(1) {
        assert_eq!(c.next_json().await["data"], "everyone");
    }
}

#[tokio::test]
async fn a_native_action_that_does_not_answer_in_time_fails_and_others_go_on() {
    let s = serve_with(|c| c.reply_timeout = Duration::from_millis(1000));
    let mut c = WsClient::connect(s.server.addr, None).await;
    let started = std::time::Instant::now();
    c.send_call(1, "app.slow", json!([60_000, "late"])).await;
    // Others are answered meanwhile, and so is a slow call within the limit.
    c.send_call(2, "app.square", json!([3])).await;
    c.send_call(3, "app.slow", json!([50, "in time"])).await;
    let replies = c.replies(3).await;
    assert_eq!(replies.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [2, 3, 1], "the late call is answered last");
    let reply = |id: u64| &replies.iter().find(|(i, _)| *i == id).unwrap().1;
    assert_eq!(reply(2)["result"], 9);
    assert_eq!(reply(3)["result"], "in time");
    assert_eq!(reply(1)["error"]["code"], "failed");
    assert_eq!(reply(1)["error"]["message"], "app.slow gave no answer within 1 s");
    assert!(started.elapsed() < Duration::from_secs(3), "answered after {:?}", started.elapsed());

    // The HTTP API has the same limit.
    let addr = s.server.addr;
    let response = tokio::task::spawn_blocking(move || ss_tests::http(addr, "GET", "/api/app/slow.json?60000", &[]))
        .await
        .unwrap();
    assert_eq!(response.status, 500, "{}", String::from_utf8_lossy(&response.body));
    assert!(String::from_utf8_lossy(&response.body).contains("app.slow gave no answer within 1 s"));
}

/// A WebSocket spoken byte by byte, to send what a library would not.
mod raw {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    pub fn request(path: &str, extra: &str) -> String {
        request_with("GET", path, extra)
    }

    pub fn request_with(method: &str, path: &str, extra: &str) -> String {
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n")
    }

    pub fn upgrade_request() -> String {
        let headers = format!(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
        );
        request("/_ss/ws?v=1", &headers)
    }

    /// A client's frame, masked.
    pub fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let key = [0xA1, 0x02, 0x5C, 0xE7];
        let mut frame = vec![first];
        if payload.len() < 126 {
            frame.push(0x80 | payload.len() as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        frame
    }

    /// Reads an HTTP response head.
    pub async fn head(stream: &mut TcpStream) -> String {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8];
            assert_eq!(stream.read(&mut byte).await.expect("a response"), 1, "the response ended early");
            head.push(byte[0]);
        }
        String::from_utf8(head).expect("an ASCII head")
    }

    /// Reads one server frame: (opcode, payload); `None` when the stream ends.
    pub async fn server_frame(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
        let read = async {
            let mut head = [0u8; 2];
            stream.read_exact(&mut head).await.ok()?;
            assert_eq!(head[0] & 0x80, 0x80, "the server sends whole frames");
            assert_eq!(head[1] & 0x80, 0, "the server does not mask");
            let len = match head[1] & 0x7F {
                126 => usize::from(stream.read_u16().await.ok()?),
                127 => stream.read_u64().await.ok()? as usize,
                n => usize::from(n),
            };
            let mut payload = vec![0; len];
            stream.read_exact(&mut payload).await.ok()?;
            Some((head[0] & 0x0F, payload))
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), read).await.expect("a frame within 10 s")
    }

    /// Connects and upgrades, sending `then` in the same write as the request.
    pub async fn open(addr: std::net::SocketAddr, then: &[u8]) -> TcpStream {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut bytes = upgrade_request().into_bytes();
        bytes.extend_from_slice(then);
        stream.write_all(&bytes).await.unwrap();
        let head = head(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(head.to_ascii_lowercase().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
        let (opcode, init) = server_frame(&mut stream).await.expect("init");
        assert_eq!(opcode, 1);
        assert!(String::from_utf8(init).unwrap().starts_with(r#"{"type":"init""#));
        stream
    }

    /// The close frame's code, after which the server ends the connection.
    pub async fn close_code(stream: &mut TcpStream) -> u16 {
        loop {
            match server_frame(stream).await {
                Some((8, payload)) => {
                    assert_eq!(server_frame(stream).await, None, "nothing after the close frame");
                    return u16::from_be_bytes([payload[0], payload[1]]);
                }
                Some(_) => continue,
                None => panic!("the connection ended without a close frame"),
            }
        }
    }
}

#[tokio::test]
async fn frames_are_read_and_written_as_rfc_6455_says() {
    use tokio::io::AsyncWriteExt;
    let s = serve_with(|c| c.max_message_bytes = 1024);
    let addr = s.server.addr;

    // A call sent with the handshake, before its answer came back.
    let call = br#"{"type":"call","id":1,"method":"app.square","args":[12]}"#;
    let mut stream = raw::open(addr, &raw::frame(0x81, call)).await;
    let (opcode, reply) = raw::server_frame(&mut stream).await.unwrap();
    assert_eq!((opcode, String::from_utf8(reply).unwrap().as_str()), (1, r#"{"type":"reply","id":1,"result":144}"#));

    // A call in three frames with a ping between them, the second frame
    // written in two halves, apart.
    let call = br#"{"type":"call","id":2,"method":"app.square","args":[3]}"#;
    let mut bytes = raw::frame(0x01, &call[..10]);
    bytes.extend(raw::frame(0x89, b"still there?"));
    let middle = raw::frame(0x00, &call[10..30]);
    bytes.extend_from_slice(&middle[..9]);
    stream.write_all(&bytes).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut rest = middle[9..].to_vec();
    rest.extend(raw::frame(0x80, &call[30..]));
    stream.write_all(&rest).await.unwrap();
    assert_eq!(raw::server_frame(&mut stream).await.unwrap(), (0xA, b"still there?".to_vec()), "the pong");
    let (_, reply) = raw::server_frame(&mut stream).await.unwrap();
    assert_eq!(String::from_utf8(reply).unwrap(), r#"{"type":"reply","id":2,"result":9}"#);

    // The client's close is answered with its code, and the server hangs up.
    stream.write_all(&raw::frame(0x88, &[0x03, 0xE8, b'o', b'k'])).await.unwrap();
    assert_eq!(raw::close_code(&mut stream).await, 1000);

    // A call read in the same batch as the close is answered before the
    // close's answer, which comes last.
    let call_then_close = [
        raw::frame(0x81, br#"{"type":"call","id":3,"method":"app.square","args":[4]}"#),
        raw::frame(0x88, &[0x03, 0xE8]),
    ]
    .concat();
    let mut closing = raw::open(addr, &call_then_close).await;
    let (opcode, reply) = raw::server_frame(&mut closing).await.expect("the reply");
    assert_eq!((opcode, String::from_utf8(reply).unwrap().as_str()), (1, r#"{"type":"reply","id":3,"result":16}"#));
    assert_eq!(raw::close_code(&mut closing).await, 1000);

    // Frames that break the protocol close the connection with the code that
    // says why, and another client is served all along.
    let mut bystander = WsClient::connect(addr, None).await;
    let broken: [(&str, Vec<u8>, u16); 6] = [
        ("unmasked", vec![0x81, 0x02, b'{', b'}'], 1002),
        ("compressed, never agreed", raw::frame(0xC1, b"{}"), 1002),
        ("an unknown opcode", raw::frame(0x83, b"{}"), 1002),
        ("not UTF-8", raw::frame(0x81, &[b'"', 0xC3, 0x28, b'"']), 1007),
        ("a continuation of nothing", raw::frame(0x80, b"{}"), 1002),
        ("over the limit, in pieces", [raw::frame(0x01, &[b' '; 600]), raw::frame(0x80, &[b' '; 600])].concat(), 1009),
    ];
    for (what, bytes, code) in broken {
        let mut stream = raw::open(addr, &bytes).await;
        assert_eq!(raw::close_code(&mut stream).await, code, "{what}");
        assert_eq!(bystander.call(1, "app.square", json!([4])).await["result"], 16, "after {what}");
    }
}

#[tokio::test]
async fn requests_that_are_not_a_websocket_handshake_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = serve();
    let addr = s.server.addr;
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
    let key = format!("Sec-WebSocket-Key: {}\r\n", raw::KEY);
    let version = "Sec-WebSocket-Version: 13\r\n";
    let cases = [
        ("a plain GET", "GET", String::new(), "426", ""),
        (
            "an old version",
            "GET",
            format!("{upgrade}{key}Sec-WebSocket-Version: 8\r\n"),
            "426",
            "sec-websocket-version: 13",
        ),
        ("no key", "GET", format!("{upgrade}{version}"), "400", ""),
        ("a key of 5 bytes", "GET", format!("{upgrade}Sec-WebSocket-Key: c2hvcnQ=\r\n{version}"), "400", ""),
        ("a HEAD", "HEAD", format!("{upgrade}{key}{version}"), "405", "allow: get\r\n"),
        ("a POST", "POST", format!("{upgrade}{key}{version}Content-Length: 0\r\n"), "405", "allow: get\r\n"),
    ];
    for (what, method, headers, status, header) in cases {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = raw::request_with(method, "/_ss/ws?v=1", &format!("{headers}Connection: close\r\n"));
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with(&format!("HTTP/1.1 {status}")), "{what}: {response}");
        assert!(response.to_ascii_lowercase().contains(header), "{what}: {response}");
        assert!(!response.to_ascii_lowercase().contains("set-cookie"), "{what}: no session without a socket");
    }
}

/// Pub/sub and sessions sit behind traits: an app given a bus and a session
/// store of its own publishes through that bus and keeps sessions in that
/// store, and events still reach their audience.
#[tokio::test]
async fn a_bus_and_a_session_store_of_the_apps_own_are_used() {
    use ssrun::pubsub::Published;
    use ssrun::session::{BoxFuture, Change};
    use ssrun::{Bus, MemoryBus, MemoryStore, Session, SessionStore, StoreError};
    use std::sync::{Arc, Mutex};

    struct Recording {
        inner: MemoryBus,
        events: Arc<Mutex<Vec<String>>>,
    }
    impl Bus for Recording {
        fn publish(&self, published: Published) -> BoxFuture<'_, Result<(), StoreError>> {
            self.events.lock().unwrap().push(published.event.clone());
            self.inner.publish(published)
        }
    }
    struct Counting {
        inner: MemoryStore,
        changes: Arc<Mutex<Vec<String>>>,
    }
    impl SessionStore for Counting {
        fn create(&self) -> BoxFuture<'_, Result<Session, StoreError>> {
            self.inner.create()
        }
        fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Session>, StoreError>> {
            self.inner.load(id)
        }
        fn update<'a>(&'a self, id: &'a str, change: Change) -> BoxFuture<'a, Result<Option<Session>, StoreError>> {
            self.changes.lock().unwrap().push(format!("{change:?}"));
            self.inner.update(id, change)
        }
    }

    let dir = fixture("realtime");
    pack_app(dir.path(), "development");
    let app = ssrun::App::new(ssrun::LoadedApp::load(dir.path()).unwrap());
    let events = Arc::new(Mutex::new(Vec::new()));
    let changes = Arc::new(Mutex::new(Vec::new()));
    let bus = Recording { inner: MemoryBus::new(app.hub()), events: events.clone() };
    let store = Counting { inner: MemoryStore::new(Duration::from_secs(60)), changes: changes.clone() };
    let app = with_demo_actions(app.with_bus(Arc::new(bus)).with_session_store(Arc::new(store)), Reports::default());
    let server = RunningServer::with_app(app, 0);

    let mut ann = WsClient::connect(server.addr, None).await;
    ann.call(1, "app.login", json!(["ann"])).await;
    ann.call(2, "app.join", json!(["red"])).await;
    let mut bob = WsClient::connect(server.addr, None).await;
    bob.call(1, "app.say", json!(["red", "hello"])).await;
    assert_eq!(ann.next_json().await, json!({"type": "event", "event": "said", "data": "hello", "channel": "red"}));
    bob.call(2, "app.tell", json!(["ann", "psst"])).await;
    assert_eq!(ann.next_json().await["data"], "psst");
    assert_eq!(*events.lock().unwrap(), ["said", "note"]);
    let changes = changes.lock().unwrap().join(" | ");
    assert!(
        changes.contains("ann") && changes.contains("red"),
        "the sign-in and the channel went to the store: {changes}"
    );
}

/// Handshakes without a cookie cannot fill the in-memory session store: past
/// its limit it forgets the least recently used sessions whose cookie never
/// came back, but never one whose connection is still open.
#[tokio::test]
async fn cookieless_handshakes_are_bounded_and_a_connected_session_is_kept() {
    let dir = fixture("realtime");
    pack_app(dir.path(), "development");
    let store =
        std::sync::Arc::new(ssrun::MemoryStore::new(Duration::from_secs(3600)).with_limits(3, 1000, Duration::ZERO));
    let loaded = ssrun::LoadedApp::load(dir.path()).expect("the packed app loads");
    let app = with_demo_actions(ssrun::App::new(loaded), Reports::default()).with_memory_store(store.clone());
    let server = RunningServer::with_app(app, 0);
    // The oldest session of all, so the first to go were its connection not counted.
    let connected = WsClient::connect(server.addr, None).await;
    let id = connected.set_cookie.clone().expect("a session cookie");
    for _ in 0..20 {
        drop(WsClient::connect(server.addr, None).await);
    }
    assert!(store.len() < 21, "{} sessions are held", store.len());
    let again = WsClient::connect(server.addr, Some(&id)).await;
    assert_eq!(again.set_cookie.as_deref(), Some(id.as_str()), "the connected client's session is still there");
    drop(connected);
}
