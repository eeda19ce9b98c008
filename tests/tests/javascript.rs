//! JavaScript server actions in the embedded engine: the seed README's
//! examples end to end in Chromium, and actions that misbehave.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ss_tests::{Browser, RunningServer, WsClient, chromium, fixture, http, pack_app, write};

struct Served {
    _dir: tempfile::TempDir,
    server: RunningServer,
}

fn serve_seed(env: &str, config: impl FnOnce(&mut ssrun::Config)) -> Served {
    let (dir, app) = seed_app(env, config);
    Served { server: RunningServer::with_app(app, 0), _dir: dir }
}

/// The seed app packed for `env`, with its JavaScript engine started.
fn seed_app(env: &str, config: impl FnOnce(&mut ssrun::Config)) -> (tempfile::TempDir, ssrun::App) {
    let dir = fixture("seed");
    pack_app(dir.path(), env);
    let loaded = ssrun::LoadedApp::load(dir.path()).expect("the packed app loads");
    let mut settings = ssrun::Config::for_env(&loaded.env);
    config(&mut settings);
    let app = ssrun::App::new(loaded).with_config(settings).with_javascript().expect("the server code starts");
    (dir, app)
}

/// The seed app (development) served on a single-threaded scheduler with
/// the engine on the server's thread.
fn serve_seed_here(config: impl FnOnce(&mut ssrun::Config) + Send + 'static) -> Served {
    let dir = fixture("seed");
    pack_app(dir.path(), "development");
    let path = dir.path().to_path_buf();
    let server = RunningServer::here(move || {
        let loaded = ssrun::LoadedApp::load(&path).unwrap();
        let mut settings = ssrun::Config::for_env(&loaded.env);
        config(&mut settings);
        ssrun::App::new(loaded).with_config(settings).with_javascript_here().expect("the server code starts")
    });
    Served { server, _dir: dir }
}

/// The seed app (development) with one more server file, `app/server/{name}`, served.
fn serve_seed_with(name: &str, source: &str) -> Served {
    let dir = fixture("seed");
    write(dir.path(), &format!("app/server/{name}"), source);
    pack_app(dir.path(), "development");
    let app = ssrun::App::new(ssrun::LoadedApp::load(dir.path()).unwrap()).with_javascript().expect("starts");
    Served { server: RunningServer::with_app(app, 0), _dir: dir }
}

/// Calls `method` (no arguments) every 20 ms until it answers `expected`;
/// fails, saying `what`, after 5 s. Call ids count up from `*id`.
async fn until_answers(client: &mut WsClient, id: &mut u64, method: &str, expected: Value, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = client.call(*id, method, json!([])).await;
        *id += 1;
        if reply["result"] == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {reply}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn results(addr: std::net::SocketAddr) -> Vec<(String, Value)> {
    let response = http(addr, "GET", "/api/results/all.json", &[]);
    assert_eq!(response.status, 200);
    let list: Vec<Value> = serde_json::from_slice(&response.body).unwrap();
    list.into_iter().map(|r| (r["step"].as_str().unwrap().to_string(), r["value"].clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_examples_run_in_the_browser() {
    let Some(chromium) = chromium() else { return };
    let s = serve_seed("development", |_| {});
    let addr = s.server.addr;
    // A second client that joins no channel and signs in as nobody.
    let mut bystander = WsClient::connect(addr, None).await;
    let _browser = Browser::open(&chromium, &format!("http://{addr}/"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let seen = tokio::task::spawn_blocking(move || results(addr)).await.unwrap();
        if seen.iter().any(|(step, _)| step == "done") {
            break seen;
        }
        assert!(Instant::now() < deadline, "the scenario did not finish: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let get = |step: &str| seen.iter().find(|(s, _)| s == step).map(|(_, v)| v.clone()).unwrap_or(Value::Null);
    assert_eq!(get("square_callback"), json!(625));
    assert_eq!(get("square_returned"), json!(625));
    assert_eq!(get("square_later"), json!(36));
    let circumference = 2.0 * (355.0 / 113.0) * 20.0;
    assert_eq!(get("circumference_client"), json!(circumference));
    assert_eq!(get("circumference_server"), json!(circumference));
    assert_eq!(get("square_via_server"), json!(81));
    assert_eq!(get("before_login"), json!("unauthorized"));
    assert_eq!(get("bad_login"), json!(false));
    assert_eq!(get("login"), json!("joebloggs"));
    assert_eq!(get("after_login"), json!("21323"));
    assert_eq!(get("publish_user"), json!({"text": "Wow this is cool!", "channel": null}));
    assert_eq!(
        get("publish_channel"),
        json!({"text": {"from": "mickymouse", "message": "Has anyone seen Tom?"}, "channel": "disney"})
    );
    assert_eq!(get("channels"), json!(["disney"]));
    // The bystander got neither the user's message nor the channel's: its next message is its own reply.
    assert_eq!(
        bystander.call(1, "app.squareReturned", json!([3])).await,
        json!({"type": "reply", "id": 1, "result": 9})
    );
}

/// Serves the seed app with a JavaScript time limit of 400 ms (and `reply_timeout`),
/// starts `action` from one client, and checks that a call from another client
/// is answered within about the time limit meanwhile: gives the server and the
/// first client, its reply still to read.
async fn stalled_call(action: &str, reply_timeout: Duration) -> (Served, WsClient) {
    let limit = Duration::from_millis(400);
    let s = serve_seed("development", |c| {
        c.js_time_limit = limit;
        c.reply_timeout = reply_timeout;
    });
    let addr = s.server.addr;
    let mut stalled = WsClient::connect(addr, None).await;
    let mut other = WsClient::connect(addr, None).await;
    let started = Instant::now();
    stalled.send_call(1, action, json!([])).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A JavaScript call waits for the engine, at most the time limit.
    assert_eq!(other.call(1, "app.squareReturned", json!([4])).await["result"], 16);
    // (A loaded machine adds its delays.)
    assert!(started.elapsed() < limit + Duration::from_millis(2500), "answered after {:?}", started.elapsed());
    (s, stalled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_is_stopped_and_others_are_answered_meanwhile() {
    let (_s, mut looping) = stalled_call("misbehave.loop", Duration::from_secs(30)).await;
    let reply = looping.next_json().await;
    assert_eq!(reply["error"]["code"], "failed");
    assert!(reply["error"]["message"].as_str().unwrap().contains("time limit"), "{reply}");
    // The engine is fine afterwards.
    assert_eq!(looping.call(2, "app.squareReturned", json!([5])).await["result"], 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_given_before_a_loop_is_the_reply() {
    let (_s, mut looping) = stalled_call("misbehave.answerThenLoop", Duration::from_secs(30)).await;
    assert_eq!(looping.next_json().await, json!({"type": "reply", "id": 1, "result": "answered"}));
    // The stopped call left nothing behind: the next call is answered as usual.
    assert_eq!(looping.call(2, "app.squareReturned", json!([5])).await["result"], 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_chain_of_awaits_is_stopped_like_a_loop() {
    // Each await is a short promise job; together they are held to the time
    // limit, and the call they ran for gets its error (long before the 30 s
    // reply timeout).
    let (_s, mut spinning) = stalled_call("misbehave.spin", Duration::from_secs(30)).await;
    let reply = spinning.next_json().await;
    assert_eq!(reply["error"]["code"], "failed", "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("time limit"), "{reply}");
    assert_eq!(spinning.call(2, "app.squareReturned", json!([5])).await["result"], 25);
}

/// A loop in the call's work after its synchronous part (after an await, in
/// a `then` callback, in a timer) fails the call when the time limit stops
/// it, as one in the synchronous part does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_after_an_await_in_a_then_or_in_a_timer_fails_its_call() {
    for action in ["misbehave.loopAfterAwait", "misbehave.loopInThen", "misbehave.loopInTimer"] {
        let started = Instant::now();
        let (_s, mut looping) = stalled_call(action, Duration::from_secs(30)).await;
        let reply = looping.next_json().await;
        assert_eq!(reply["error"]["code"], "failed", "{action}: {reply}");
        assert!(reply["error"]["message"].as_str().unwrap().contains("time limit"), "{action}: {reply}");
        assert!(started.elapsed() < Duration::from_secs(10), "{action}: answered after {:?}", started.elapsed());
        assert_eq!(looping.call(2, "app.squareReturned", json!([5])).await["result"], 25, "{action}");
    }
}

/// A module whose first load the time limit stopped (required lazily, in
/// an action) is not left half made: the next require runs it again, as
/// after a throw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_whose_load_the_time_limit_stopped_loads_again_when_next_required() {
    let dir = fixture("seed");
    write(dir.path(), "app/server/lazy.js", "exports.actions = { state() { return require('slowstart').state; } };\n");
    write(
        dir.path(),
        "lib/server/slowstart.js",
        "globalThis.starts = (globalThis.starts || 0) + 1;\nexports.state = 'half made';\n\
         if (globalThis.starts === 1) { for (;;) {} }\nexports.state = 'loaded on start ' + globalThis.starts;\n",
    );
    pack_app(dir.path(), "development");
    let loaded = ssrun::LoadedApp::load(dir.path()).unwrap();
    let mut settings = ssrun::Config::for_env(&loaded.env);
    settings.js_time_limit = Duration::from_millis(300);
    let app = ssrun::App::new(loaded).with_config(settings).with_javascript().expect("starts");
    let server = RunningServer::with_app(app, 0);
    let mut c = WsClient::connect(server.addr, None).await;
    let reply = c.call(1, "lazy.state", json!([])).await;
    assert!(reply["error"]["message"].as_str().unwrap().contains("time limit"), "{reply}");
    assert_eq!(c.call(2, "lazy.state", json!([])).await["result"], "loaded on start 2");
    assert_eq!(c.call(3, "lazy.state", json!([])).await["result"], "loaded on start 2");
}

#[tokio::test]
async fn thrown_errors_and_rejections_reach_the_caller_with_their_stack_in_development() {
    let s = serve_seed("development", |_| {});
    let mut c = WsClient::connect(s.server.addr, None).await;
    let reply = c.call(1, "misbehave.throws", json!([])).await;
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("Error: boom\n"), "{message}");
    // The development bundle's source map leads back to the file, line and column.
    assert!(message.contains("\n    at throws (app/server/misbehave.js:13:"), "the stack names the action: {message}");
    let reply = c.call(2, "misbehave.rejects", json!([])).await;
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("TypeError: not today"), "{reply}");
    assert!(message.contains("at rejects (app/server/misbehave.js:22:"), "{message}");
    assert_eq!(c.call(3, "app.square", json!([3])).await["result"], 9);
}

/// A callback an action handed to the server API, or a timer it set, is
/// still the action's code: what it throws fails the call. And a rejection
/// with something that is not an Error, handed to a callback that answers,
/// is still a failure.
#[tokio::test]
async fn errors_thrown_later_and_plain_rejections_fail_the_call() {
    let s = serve_seed("development", |_| {});
    let mut c = WsClient::connect(s.server.addr, None).await;
    let message = |reply: &Value| reply["error"]["message"].as_str().unwrap_or_default().to_string();
    let reply = c.call(1, "misbehave.throwsInCallback", json!([])).await;
    assert!(message(&reply).starts_with("TypeError: cannot read property 'length' of undefined"), "{reply}");
    let reply = c.call(2, "misbehave.throwsInTimer", json!([])).await;
    assert!(message(&reply).starts_with("Error: too late"), "{reply}");
    let reply = c.call(6, "misbehave.throwsInTimerLater", json!([])).await;
    assert!(message(&reply).starts_with("Error: later still"), "set after an await, still the call's: {reply}");
    let reply = c.call(3, "misbehave.rejectsWithText", json!([])).await;
    assert_eq!(message(&reply), "no thanks", "{reply}");
    let reply = c.call(4, "misbehave.passesOn", json!([])).await;
    assert!(message(&reply).starts_with("Error: no thanks"), "{reply}");
    assert_eq!(c.call(5, "app.square", json!([3])).await["result"], 9);
}

/// A namespace the packer cannot follow (an object from a lib/server module) is
/// still a tree of actions, callable from browsers and listed for them.
#[tokio::test]
async fn namespaces_required_from_other_files_are_callable() {
    let dir = fixture("seed");
    write(dir.path(), "lib/server/user_actions.js", "exports.actions = {\n  list() { return ['ann', 'bob']; },\n};\n");
    write(
        dir.path(),
        "app/server/people.js",
        "exports.authenticate = true;\nexports.actions = {\n  users: require('user_actions').actions,\n  \
         count() { return 2; },\n};\n",
    );
    pack_app(dir.path(), "development");
    let app = ssrun::App::new(ssrun::LoadedApp::load(dir.path()).unwrap()).with_javascript().expect("starts");
    let server = RunningServer::with_app(app, 0);
    let mut c = WsClient::connect(server.addr, None).await;
    assert_eq!(c.init["api"]["people"]["users"]["list"], json!(1), "{}", c.init["api"]);
    // The file's flag holds for them too.
    assert_eq!(c.call(1, "people.users.list", json!([])).await["error"]["code"], "unauthorized");
    let signed = c.call(2, "auth.authenticate", json!([{"username": "joe", "password": "secret"}])).await;
    assert_eq!(signed["result"]["success"], true, "{signed}");
    assert_eq!(c.call(3, "people.users.list", json!([])).await["result"], json!(["ann", "bob"]));
    assert_eq!(c.call(4, "people.count", json!([])).await["result"], 2);
}

/// `SS.Error` with a code: the caller gets that code, over the WebSocket
/// and the HTTP API (a 400 for `bad_args`), in production too.
#[tokio::test]
async fn an_ss_error_carries_its_code_to_the_caller() {
    let s = serve_seed("production", |_| {});
    let mut c = WsClient::connect(s.server.addr, None).await;
    let reply = c.call(1, "misbehave.half", json!(["two"])).await;
    assert_eq!(reply["error"], json!({"code": "bad_args", "message": "half needs a number"}), "{reply}");
    assert_eq!(c.call(2, "misbehave.half", json!([3])).await["result"], 1.5);
    let refused = http(s.server.addr, "GET", "/api/misbehave/half.json?two", &[]);
    assert_eq!(refused.status, 400, "{}", String::from_utf8_lossy(&refused.body));
    assert!(String::from_utf8_lossy(&refused.body).contains("half needs a number"));
    assert_eq!(http(s.server.addr, "GET", "/api/misbehave/half.json?3", &[]).status, 200);
    // A code that is not one is a mistake in the action.
    let reply = c.call(3, "misbehave.madeUpCode", json!([])).await;
    assert_eq!(reply["error"]["code"], "failed", "{reply}");
    // `unauthorized` over HTTP: a 401 with its challenge where Basic Auth
    // can sign in, a 403 where nothing can.
    assert_eq!(http(s.server.addr, "GET", "/api/misbehave/membersOnly.json", &[]).status, 403);
    let d = serve_seed("development", |c| c.api_auth_module = Some("custom_auth".into()));
    let challenged = http(d.server.addr, "GET", "/api/misbehave/membersOnly.json", &[]);
    assert_eq!((challenged.status, challenged.header("www-authenticate")), (401, Some("Basic realm=\"Secure API\"")));
    let mut c = WsClient::connect(d.server.addr, None).await;
    let signed = c.call(7, "auth.authenticate", json!([{"username": "joe", "password": "secret"}])).await;
    assert_eq!(signed["result"]["success"], true, "{signed}");
    let cookie = format!("session_id={}", c.set_cookie.clone().unwrap());
    // The seed's sign-in answers before the session store has the user: ask until it has.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let refused = http(d.server.addr, "GET", "/api/misbehave/membersOnly.json", &[("Cookie", cookie.as_str())]);
        if refused.status == 401 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        assert_eq!(
            (refused.status, refused.header("www-authenticate")),
            (403, None),
            "signed in already: no challenge"
        );
        break;
    }
    let reply = c.call(1, "misbehave.madeUpCode", json!([])).await;
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "TypeError: SS.Error takes the code failed, bad_args, unauthorized, not_found; not \"teapot\""
        ),
        "{reply}"
    );
}

#[tokio::test]
async fn server_files_named_like_built_ins_get_their_own_branch() {
    let dir = fixture("seed");
    write(
        dir.path(),
        "app/server/toString.js",
        "exports.actions = {\n  x() { return 'tx'; },\n  viaServer() { return SS.server.toString.x(); },\n  \
         builtInsUntouched() { return typeof Object.prototype.toString.x === 'undefined' && SS.server.toString !== Object.prototype.toString; },\n};\n",
    );
    pack_app(dir.path(), "development");
    let app = ssrun::App::new(ssrun::LoadedApp::load(dir.path()).unwrap()).with_javascript().expect("starts");
    let server = RunningServer::with_app(app, 0);
    let mut c = WsClient::connect(server.addr, None).await;
    assert_eq!(c.call(1, "toString.x", json!([])).await["result"], "tx");
    assert_eq!(c.call(2, "toString.viaServer", json!([])).await["result"], "tx");
    assert_eq!(c.call(3, "toString.builtInsUntouched", json!([])).await["result"], true);
}

#[tokio::test]
async fn set_user_id_takes_a_user_id_and_nothing_else() {
    let s = serve_seed("development", |_| {});
    let mut c = WsClient::connect(s.server.addr, None).await;
    for (id, bad) in [(1, json!(null)), (2, json!("")), (3, json!({"id": 1})), (4, json!(false))] {
        let reply = c.call(id, "misbehave.signInAs", json!([bad])).await;
        let message = reply["error"]["message"].as_str().unwrap_or("");
        assert!(message.starts_with("TypeError: setUserId needs a user id"), "{bad}: {reply}");
    }
    assert_eq!(c.call(5, "misbehave.signInAs", json!([42])).await["result"], "42");
    assert_eq!(c.call(6, "misbehave.signInAs", json!(["ann"])).await["result"], "ann");
}

/// Publishing or subscribing with no name (or null, an empty string, an
/// object) is an error the action sees, not an event for a user, channel or
/// event named "undefined"; numbers and strings are names.
#[tokio::test]
async fn publish_and_subscribe_refuse_a_missing_name() {
    let source = "exports.actions = {\n  \
        run(what) {\n    const p = SS.publish;\n    switch (what) {\n      \
        case 'broadcast': p.broadcast(); break;\n      case 'user': p.user(undefined, 'e', 1); break;\n      \
        case 'users': p.users(['ann', null], 'e', 1); break;\n      case 'channel': p.channel({}, 'e', 1); break;\n      \
        case 'event': p.channel('red', '', 1); break;\n      case 'subscribe': this.session.channel.subscribe(); break;\n      \
        case 'set': p.channel(new Set(['red']), 'e', 1); break;\n      case 'nested': p.user([], 'e', 1); break;\n      \
        case 'nan': p.user(0 / 0, 'e', 1); break;\n      \
        case 'good': p.user(42, 'e', 1); p.channel(['red', 7, 'NaN', '[object Object]'], 'e', 1); p.broadcast('e');\n        \
          p.user({ toString() { return 'ann'; } }, 'e', 1); p.users([], 'e', 1); break;\n    }\n    \
        return 'published';\n  },\n};\n";
    let s = serve_seed_with("names.js", source);
    let mut c = WsClient::connect(s.server.addr, None).await;
    let refused = [
        (
            "broadcast",
            "TypeError: SS.publish.broadcast needs an event name (a non-empty string or a number), not undefined",
        ),
        ("user", "TypeError: SS.publish.user needs a user id (a non-empty string or a number), not undefined"),
        ("users", "TypeError: SS.publish.users needs user ids (a non-empty string or a number), not null"),
        (
            "channel",
            "TypeError: SS.publish.channel needs channel names (a non-empty string or a number), not an object",
        ),
        (
            "event",
            "TypeError: SS.publish.channel needs an event name (a non-empty string or a number), not an empty string",
        ),
        (
            "subscribe",
            "TypeError: channel.subscribe needs channel names (a non-empty string or a number), not undefined",
        ),
        ("set", "TypeError: SS.publish.channel needs channel names (a non-empty string or a number), not an object"),
        ("nested", "TypeError: SS.publish.user needs a user id (a non-empty string or a number), not an array"),
        ("nan", "TypeError: SS.publish.user needs a user id (a non-empty string or a number), not NaN"),
    ];
    for (id, (what, expected)) in refused.into_iter().enumerate() {
        let reply = c.call(id as u64 + 1, "names.run", json!([what])).await;
        let message = reply["error"]["message"].as_str().unwrap_or("");
        assert!(message.starts_with(expected), "{what}: {reply}");
    }
    assert_eq!(c.call(20, "names.run", json!(["good"])).await["result"], "published");
}

#[tokio::test]
async fn production_errors_are_generic_with_an_id() {
    let s = serve_seed("production", |_| {});
    let mut c = WsClient::connect(s.server.addr, None).await;
    let reply = c.call(1, "misbehave.throws", json!([])).await;
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("misbehave.throws failed (error "), "{message}");
    assert!(!message.contains("boom") && !message.contains(" at "), "no details leak: {message}");
}

/// An authentication module that throws, or one that is not there, fails
/// the call through the callback form as through the Promise form: in
/// production with the generic message, its details in the log only.
#[tokio::test]
async fn a_failing_authentication_module_fails_the_call_without_details_in_production() {
    let dir = fixture("seed");
    write(
        dir.path(),
        "lib/server/db_auth.js",
        "exports.authenticate = function (params, cb) { throw new Error('db down: postgres://admin:hunter2@db/users'); };\n",
    );
    let action = |module: &str| {
        format!(
            "  {module}(params, cb) {{\n    this.session.authenticate('{module}', params, (response) => {{\n      \
             if (response.success) this.session.setUserId(response.user_id);\n      cb(response);\n    }});\n  }},\n  \
             async {module}Awaited(params) {{ return await this.session.authenticate('{module}', params); }},\n"
        )
    };
    write(
        dir.path(),
        "app/server/signin.js",
        format!("exports.actions = {{\n{}{}}};\n", action("db_auth"), action("nowhere")),
    );
    pack_app(dir.path(), "production");
    let app = ssrun::App::new(ssrun::LoadedApp::load(dir.path()).unwrap()).with_javascript().expect("starts");
    let server = RunningServer::with_app(app, 0);
    let mut c = WsClient::connect(server.addr, None).await;
    for (id, method) in
        ["signin.db_auth", "signin.db_authAwaited", "signin.nowhere", "signin.nowhereAwaited"].iter().enumerate()
    {
        let reply = c.call(id as u64 + 1, method, json!([{"username": "joe"}])).await;
        let message = reply["error"]["message"].as_str().unwrap_or_else(|| panic!("{method}: {reply}"));
        assert!(message.starts_with(&format!("{method} failed (error ")), "{method}: {message}");
        assert!(
            !message.contains("hunter2") && !message.contains("lib/server module"),
            "{method}: no details leak: {message}"
        );
    }
}

#[tokio::test]
async fn unbounded_allocation_is_an_error_and_the_engine_survives() {
    let s = serve_seed("development", |c| c.js_memory_limit = 64 * 1024 * 1024);
    let mut c = WsClient::connect(s.server.addr, None).await;
    let reply = c.call(1, "misbehave.hog", json!([])).await;
    assert!(reply["error"]["message"].as_str().unwrap().contains("out of memory"), "{reply}");
    assert_eq!(c.call(2, "app.squareLater", json!([7])).await["result"], 49);
}

#[tokio::test]
async fn a_promise_that_never_settles_and_a_forgotten_callback_time_out() {
    let s = serve_seed("development", |c| c.reply_timeout = Duration::from_millis(500));
    let mut c = WsClient::connect(s.server.addr, None).await;
    c.send_call(1, "misbehave.never", json!([])).await;
    c.send_call(2, "misbehave.forget", json!([1])).await;
    // Other calls are not held up meanwhile.
    c.send_call(3, "app.square", json!([2])).await;
    let replies = c.replies(3).await;
    assert_eq!(replies[0].0, 3, "{replies:?}");
    assert_eq!(replies[0].1["result"], 4);
    for (id, reply) in &replies[1..] {
        assert!(*id == 1 || *id == 2, "{reply}");
        assert!(reply["error"]["message"].as_str().unwrap().contains("gave no answer within 0.5 s"), "{reply}");
    }
}

/// The engine's own sweep of late calls may come before the caller's timer
/// fires (they run on different threads): the caller must still be told its
/// call timed out, not that the engine stopped.
#[test]
fn a_caller_that_wakes_after_the_engine_gave_up_still_gets_the_timeout() {
    let (_dir, app) = seed_app("development", |c| c.reply_timeout = Duration::from_millis(200));
    let engine = app.engine().expect("the engine runs").clone();
    let scheduler = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    scheduler.block_on(async {
        let mut call = std::pin::pin!(engine.evaluate("new Promise(() => {})".into()));
        std::future::poll_fn(|cx| {
            assert!(call.as_mut().poll(cx).is_pending(), "a Promise that never settles has no answer yet");
            std::task::Poll::Ready(())
        })
        .await;
        // This thread is busy past the timeout and the engine's next sweep.
        std::thread::sleep(Duration::from_millis(700));
        let error = call.await.expect_err("the call times out");
        assert!(error.contains("console gave no answer within 0.2 s"), "{error}");
    });
}

#[tokio::test]
async fn calls_queued_behind_loops_are_answered_in_time_and_abandoned_loops_never_run() {
    // Each loop holds the engine for the time limit (0.5 s); a call not
    // started within the reply timeout (1.25 s) is dropped unrun. The
    // timeout falls halfway between the starts of the third loop (1 s) and
    // the fourth (1.5 s), so which loops run does not hang on a race.
    let s = serve_seed("development", |c| {
        c.js_time_limit = Duration::from_millis(500);
        c.reply_timeout = Duration::from_millis(1250);
    });
    // A client queues six loops (3 s of engine time) and hangs up: the
    // loops nobody waits for are dropped, so another client's call runs once
    // the loop under way is stopped.
    let mut looper = WsClient::connect(s.server.addr, None).await;
    for id in 0..6 {
        looper.send_call(id, "misbehave.loop", json!([])).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(looper);
    let mut other = WsClient::connect(s.server.addr, None).await;
    let started = Instant::now();
    assert_eq!(other.call(1, "app.square", json!([3])).await["result"], 9);
    // One loop, or two when the server is slow to see the hang-up; not six.
    // (Six would take 3 s.)
    assert!(started.elapsed() < Duration::from_millis(2400), "waited {:?}", started.elapsed());

    // A client that stays gets its loops stopped one by one; a call queued
    // behind them is answered within the reply timeout all the same. The
    // first three loops run (to 1.5 s) and the rest are dropped; the call,
    // queued at 0.1 s, times out at 1.35 s, before its turn.
    let mut looper = WsClient::connect(s.server.addr, None).await;
    for id in 0..8 {
        looper.send_call(id, "misbehave.loop", json!([])).await;
    }
    // Inside the first loop, so the eight are queued before the next call.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let reply = other.call(2, "app.square", json!([4])).await;
    assert!(started.elapsed() < Duration::from_millis(2500), "waited {:?}", started.elapsed());
    assert!(reply["error"]["message"].as_str().unwrap_or("").contains("gave no answer within 1.25 s"), "{reply}");
}

#[tokio::test]
async fn awaiting_actions_do_not_block_each_other() {
    let s = serve_seed("development", |_| {});
    let mut c = WsClient::connect(s.server.addr, None).await;
    let started = Instant::now();
    for id in 0..100u64 {
        c.send_call(id, "misbehave.dawdle", json!([100, id])).await;
    }
    for _ in 0..100 {
        let reply = c.next_json().await;
        let id = reply["id"].as_u64().unwrap();
        assert_eq!(reply["result"], json!(id * id));
    }
    // Each waits 100 ms on a timer; one after another would take 10 s.
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());
}

#[test]
fn server_code_that_throws_while_loading_stops_the_start_with_its_stack() {
    let dir = fixture("seed");
    ss_tests::write(dir.path(), "app/server/broken.js", "exports.actions = {};\nnull.crash;\n");
    pack_app(dir.path(), "development");
    let loaded = ssrun::LoadedApp::load(dir.path()).unwrap();
    let error = ssrun::App::new(loaded).with_javascript().err().expect("the start fails").to_string();
    assert!(error.contains("TypeError: cannot read property 'crash' of null"), "{error}");
}

#[test]
fn the_http_api_calls_javascript_actions_and_refuses_authenticated_files() {
    let s = serve_seed("development", |_| {});
    let addr = s.server.addr;
    let answer = http(addr, "GET", "/api/app/square.json?25", &[]);
    assert_eq!(String::from_utf8_lossy(&answer.body), "625");
    let answer = http(addr, "GET", "/api/app/circumference.json?1", &[]);
    assert_eq!(String::from_utf8_lossy(&answer.body), (2.0 * 355.0 / 113.0f64).to_string());
    assert_eq!(http(addr, "GET", "/api/secret/whoami.json", &[]).status, 403);
    assert_eq!(http(addr, "GET", "/api/misbehave/throws.json", &[]).status, 500);
}

#[test]
fn the_console_evaluates_with_the_server_api_and_awaits_promises() {
    let dir = fixture("seed");
    pack_app(dir.path(), "production");
    let app = ssrun::App::new(ssrun::LoadedApp::load(dir.path()).unwrap()).with_javascript().unwrap();
    let engine = app.engine().unwrap().clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let eval = |source: &str| runtime.block_on(engine.evaluate(source.to_string()));
    assert_eq!(eval("SS.shared.calculate.circumference(1)"), Ok((2.0 * 355.0 / 113.0f64).to_string()));
    assert_eq!(eval("SS.server.app.squareLater(6)"), Ok("36".into()));
    assert_eq!(eval("var kept = 2; kept * 21"), Ok("42".into()));
    assert_eq!(eval("kept"), Ok("2".into()), "definitions stay for the next line");
    assert_eq!(eval("typeof SS.publish.broadcast"), Ok("\"function\"".into()));
    let error = eval("SS.server.misbehave.throws()").unwrap_err();
    assert!(error.starts_with("Error: boom"), "the console shows details even in production: {error}");
    assert!(eval("nope(").unwrap_err().starts_with("SyntaxError"));
}

#[tokio::test]
async fn disconnect_handlers_run_when_the_connection_closes() {
    let dir = fixture("seed");
    ss_tests::write(
        dir.path(),
        "app/server/watch.js",
        "let gone = 0;\nexports.actions = {\n  watch() { this.session.on('disconnect', () => { gone += 1; }); return true; },\n  \
         later(cb) { cb(true); setTimeout(() => this.session.on('disconnect', () => { gone += 10; }), 300); },\n  \
         gone() { return gone; },\n};\n",
    );
    pack_app(dir.path(), "development");
    let app = ssrun::App::new(ssrun::LoadedApp::load(dir.path()).unwrap()).with_javascript().unwrap();
    let server = RunningServer::with_app(app, 0);
    let mut watched = WsClient::connect(server.addr, None).await;
    watched.call(1, "watch.watch", json!([])).await;
    let mut other = WsClient::connect(server.addr, None).await;
    assert_eq!(other.call(1, "watch.gone", json!([])).await["result"], 0);
    drop(watched);
    let mut id = 2;
    until_answers(&mut other, &mut id, "watch.gone", json!(1), "the disconnect handler did not run").await;

    // A handler added after its connection closed runs then, rather than never.
    let mut brief = WsClient::connect(server.addr, None).await;
    brief.call(1, "watch.later", json!([])).await;
    drop(brief);
    until_answers(&mut other, &mut id, "watch.gone", json!(11), "the late disconnect handler did not run").await;
}

/// The seed README's recipe: a handler set in `init` signs the user out
/// when the connection closes, through the session it is handed, which is
/// the session as it is then (signed in after the handler was set).
#[tokio::test]
async fn a_disconnect_handler_gets_the_session_as_it_is_and_can_sign_out() {
    let dir = fixture("seed");
    ss_tests::write(
        dir.path(),
        "app/server/leave.js",
        "exports.actions = {\n  init(cb) {\n    this.session.on('disconnect', function (session) {\n      \
         console.log('User ID ' + session.user_id + ' has just logged out!');\n      \
         if (this.session !== session) throw new Error('this.session is not the session handed over');\n      \
         session.user.logout();\n    });\n    cb(true);\n  },\n};\n",
    );
    pack_app(dir.path(), "development");
    let app = ssrun::App::new(ssrun::LoadedApp::load(dir.path()).unwrap()).with_javascript().unwrap();
    let server = RunningServer::with_app(app, 0);
    let mut joe = WsClient::connect(server.addr, None).await;
    let session_id = joe.set_cookie.clone().expect("a new session sets its cookie");
    assert_eq!(joe.call(1, "leave.init", json!([])).await["result"], true);
    let signed = joe.call(2, "auth.authenticate", json!([{"username": "joe", "password": "secret"}])).await;
    assert_eq!(signed["result"]["success"], true, "{signed}");
    let mut other = WsClient::connect(server.addr, None).await;
    let mut id = 1;
    until_answers(&mut other, &mut id, "app.online", json!(["21323"]), "joe is not online").await;
    drop(joe);
    // Signing out takes the user offline at once, not at the purge minutes later.
    until_answers(&mut other, &mut id, "app.online", json!([]), "the handler did not sign joe out").await;
    let mut back = WsClient::connect(server.addr, Some(&session_id)).await;
    assert_eq!(back.set_cookie.as_deref().unwrap_or(&session_id), session_id, "the session was found, not replaced");
    assert_eq!(back.call(1, "secret.whoami", json!([])).await["error"]["code"], "unauthorized");
}

#[test]
fn the_http_api_signs_in_with_basic_auth_through_a_lib_server_module() {
    let s = serve_seed("development", |c| c.api_auth_module = Some("custom_auth".into()));
    let addr = s.server.addr;
    let none = http(addr, "GET", "/api/secret/whoami.json", &[]);
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Basic realm=\"Secure API\""));
    let wrong = http(addr, "GET", "/api/secret/whoami.json", &[("Authorization", "Basic am9lOm5vcGU=")]); // joe:nope
    assert_eq!(wrong.status, 401);
    let right = http(addr, "GET", "/api/secret/whoami.json", &[("Authorization", "Basic am9lOnNlY3JldA==")]); // joe:secret
    assert_eq!((right.status, String::from_utf8_lossy(&right.body).into_owned()), (200, "\"21323\"".to_string()));
}

#[test]
fn an_unknown_api_auth_module_stops_the_start() {
    let dir = fixture("seed");
    pack_app(dir.path(), "development");
    let loaded = ssrun::LoadedApp::load(dir.path()).unwrap();
    let config = ssrun::Config { api_auth_module: Some("nope".into()), ..ssrun::Config::for_env(&loaded.env) };
    let error = ssrun::App::new(loaded).with_config(config).with_javascript().err().unwrap().to_string();
    assert!(error.contains("lib/server/nope") && error.contains("custom_auth"), "{error}");
    assert!(error.starts_with("the setting api.auth.basic.module_name (config/app.toml"), "names the setting: {error}");
}

#[tokio::test]
async fn authenticate_set_in_a_way_the_packer_cannot_read_still_guards_the_file() {
    let dir = fixture("seed");
    ss_tests::write(
        dir.path(),
        "app/server/vault.js",
        "const GUARDED = true;\nexports.authenticate = GUARDED;\nexports.actions = { open() { return 'gold'; } };\n",
    );
    pack_app(dir.path(), "development");
    let app = ssrun::App::new(ssrun::LoadedApp::load(dir.path()).unwrap()).with_javascript().unwrap();
    let server = RunningServer::with_app(app, 0);
    let mut c = WsClient::connect(server.addr, None).await;
    assert_eq!(c.call(1, "vault.open", json!([])).await["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn the_session_stays_usable_after_the_action_answered() {
    let dir = fixture("seed");
    ss_tests::write(
        dir.path(),
        "app/server/later.js",
        "exports.actions = {\n  join(channel) { setTimeout(() => this.session.channel.subscribe(channel).then(null, (e) => console.error(e.message)), 20); return true; },\n};\n",
    );
    pack_app(dir.path(), "development");
    let app = ssrun::App::new(ssrun::LoadedApp::load(dir.path()).unwrap()).with_javascript().unwrap();
    let server = RunningServer::with_app(app, 0);
    let mut c = WsClient::connect(server.addr, None).await;
    assert_eq!(c.call(1, "later.join", json!(["red"])).await["result"], true);
    let mut id = 2;
    until_answers(&mut c, &mut id, "chat.list", json!(["red"]), "the channel joined after the answer").await;
}

/// An action whose source cannot read `this` runs with none made for it;
/// every way of reading it (directly, in an arrow function, through `eval`,
/// an escaped `eval`, which the packer writes out plainly, or `super`) still
/// finds the call's session.
#[tokio::test]
async fn every_way_an_action_reads_its_this_finds_the_session() {
    let dir = fixture("seed");
    ss_tests::write(
        dir.path(),
        "app/server/whoami.js",
        r#"const base = { id() { return this.session.id; } };
const actions = {
  direct(cb) { cb(this.session.id); },
  arrow(cb) { setTimeout(() => cb(this.session.id), 1); },
  viaEval(cb) { cb(eval('th' + 'is').session.id); },
  viaSuper(cb) { cb(super.id()); },
  viaEscapedEval(cb) { cb(ev\u0061l('th' + 'is').session.id); },
  plain(n, cb) { cb(n * 2); },
  plainAsync: async (n) => n + 1,
};
Object.setPrototypeOf(actions, base);
exports.actions = actions;
"#,
    );
    pack_app(dir.path(), "development");
    let app = ssrun::App::new(ssrun::LoadedApp::load(dir.path()).unwrap()).with_javascript().unwrap();
    let engine = app.engine().unwrap().clone();
    let plain: Vec<String> = serde_json::from_str(&engine.evaluate("__ss_host.plain()".into()).await.unwrap()).unwrap();
    let plain: Vec<&str> = plain.iter().map(String::as_str).filter(|name| name.starts_with("whoami.")).collect();
    assert_eq!(plain, ["whoami.plain", "whoami.plainAsync"], "the actions run with no `this`");
    let server = RunningServer::with_app(app, 0);
    let mut c = WsClient::connect(server.addr, None).await;
    let id = c.call(1, "whoami.direct", json!([])).await["result"].clone();
    assert!(id.as_str().is_some_and(|s| s.len() >= 16), "a session id: {id}");
    let reading = ["whoami.arrow", "whoami.viaEval", "whoami.viaSuper", "whoami.viaEscapedEval"];
    for (n, method) in reading.into_iter().enumerate() {
        assert_eq!(c.call(2 + n as u64, method, json!([])).await["result"], id, "{method}");
    }
    assert_eq!(c.call(10, "whoami.plain", json!([21])).await["result"], 42);
    assert_eq!(c.call(11, "whoami.plainAsync", json!([41])).await["result"], 42);
}

#[test]
fn an_action_name_that_is_not_an_identifier_stops_the_start_with_the_file_named() {
    let dir = fixture("seed");
    // A key the packer cannot read (it refuses the names it can see).
    ss_tests::write(
        dir.path(),
        "app/server/things.js",
        "exports.actions = {};\nObject.assign(exports.actions, { 'my-list': () => 1 });\n",
    );
    pack_app(dir.path(), "development");
    let loaded = ssrun::LoadedApp::load(dir.path()).unwrap();
    let error = ssrun::App::new(loaded).with_javascript().err().expect("the start fails").to_string();
    assert!(error.contains("app/server/things.js") && error.contains("letters, digits"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_can_share_the_server_thread() {
    let limit = Duration::from_millis(300);
    let Served { server, _dir } = serve_seed_here(move |c| c.js_time_limit = limit);
    let mut c = WsClient::connect(server.addr, None).await;
    assert_eq!(c.call(1, "app.square", json!([25])).await["result"], 625);
    let started = Instant::now();
    for id in 0..50u64 {
        c.send_call(id + 10, "misbehave.dawdle", json!([100, id])).await;
    }
    for _ in 0..50 {
        let reply = c.next_json().await;
        let n = reply["id"].as_u64().unwrap() - 10;
        assert_eq!(reply["result"], json!(n * n));
    }
    // One after another, they would take 5 s.
    assert!(started.elapsed() < Duration::from_millis(4000), "awaits overlap: {:?}", started.elapsed());
    let mut other = WsClient::connect(server.addr, None).await;
    let started = Instant::now();
    c.send_call(2, "misbehave.loop", json!([])).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(other.call(1, "app.squareReturned", json!([4])).await["result"], 16);
    assert!(started.elapsed() < limit + Duration::from_millis(2500), "answered after {:?}", started.elapsed());
    assert!(c.next_json().await["error"]["message"].as_str().unwrap().contains("time limit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_does_not_take_clients_that_kept_beating_for_silent() {
    // With the engine on the server's thread, a loop stalls every connection
    // for longer than three heartbeat intervals. A client that sent its
    // heartbeats all along finds them waiting, unread, beside the overdue
    // tick: they are read first, and it stays connected.
    let Served { server, _dir } = serve_seed_here(|c| {
        c.js_time_limit = Duration::from_millis(500);
        c.heartbeat_interval = Duration::from_millis(100);
    });
    let mut beating = WsClient::connect(server.addr, None).await;
    let mut looper = WsClient::connect(server.addr, None).await;
    let beats = tokio::spawn(async move {
        for _ in 0..50 {
            beating.send_text(r#"{"type":"hb"}"#).await;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        beating.call(1, "app.square", json!([6])).await
    });
    for id in 0..4 {
        // The looper beats too while it waits, as the browser client does.
        looper.send_call(id, "misbehave.loop", json!([])).await;
        let reply = loop {
            looper.send_text(r#"{"type":"hb"}"#).await;
            match tokio::time::timeout(Duration::from_millis(40), looper.next_json()).await {
                Ok(message) if message["type"] == "reply" => break message,
                _ => continue,
            }
        };
        assert!(reply["error"]["message"].as_str().unwrap().contains("time limit"), "{reply}");
    }
    assert_eq!(beats.await.unwrap()["result"], 36);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_api_works_when_calls_run_on_the_server_thread() {
    // With the engine on the server's thread, a call runs its JavaScript in
    // the connection's task; what it starts in the background (timers,
    // session changes, publishing, the users online) is handed to the
    // engine's own task. Each of those, from a call run that way:
    let dir = fixture("seed");
    ss_tests::write(
        dir.path(),
        "app/server/background.js",
        "let fired = 0, gone = 0;\nexports.actions = {\n  \
         timers() { const t = setTimeout(() => { fired += 1; }, 10); clearTimeout(t); setTimeout(() => { fired += 100; }, 10); return true; },\n  \
         fired() { return fired; },\n  \
         watch() { this.session.on('disconnect', () => { gone += 1; }); return true; },\n  \
         gone() { return gone; },\n};\n",
    );
    pack_app(dir.path(), "development");
    let path = dir.path().to_path_buf();
    let server = RunningServer::here(move || {
        let loaded = ssrun::LoadedApp::load(&path).unwrap();
        ssrun::App::new(loaded).with_javascript_here().expect("the server code starts")
    });
    let mut a = WsClient::connect(server.addr, None).await;
    let mut b = WsClient::connect(server.addr, None).await;

    // A timer cleared in the call that set it never fires; the other does.
    assert_eq!(a.call(1, "background.timers", json!([])).await["result"], true);
    until_answers(&mut a, &mut 2, "background.fired", json!(100), "the timer did not fire").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(a.call(100, "background.fired", json!([])).await["result"], 100);

    // Session changes: signing in, joining a channel; publishing to it and to the user.
    let signed = a.call(101, "auth.authenticate", json!([{"username": "joe", "password": "secret"}])).await;
    assert_eq!(signed["result"]["success"], true, "{signed}");
    assert_eq!(a.call(102, "chat.join", json!(["red"])).await["result"], json!(["red"]));
    assert_eq!(b.call(1, "chat.say", json!(["red", "hello"])).await["result"], true);
    let event = a.next_json().await;
    assert_eq!((event["event"].as_str(), event["data"].as_str()), (Some("newMessage"), Some("hello")), "{event}");
    until_answers(&mut b, &mut 2, "app.online", json!(["21323"]), "joe is not online").await;
    assert_eq!(b.call(1000, "app.testMessage", json!(["21323"])).await["result"], true);
    let event = a.next_json().await;
    assert_eq!(event["data"], "Wow this is cool!", "{event}");

    // A disconnect handler runs when its connection closes.
    assert_eq!(a.call(103, "background.watch", json!([])).await["result"], true);
    drop(a);
    until_answers(&mut b, &mut 1001, "background.gone", json!(1), "the disconnect handler did not run").await;
}

/// Arguments reach an action as `JSON.parse` would give them, in any number,
/// with the callback last; answers come back as `JSON.stringify` would write
/// them, whether returned or passed to the callback.
#[tokio::test]
async fn arguments_and_answers_keep_their_json_meaning() {
    let served = serve_seed_with(
        "echo.js",
        r#"exports.actions = {
  shape() {
    const args = Array.prototype.slice.call(arguments);
    const cb = args.pop();
    return { n: args.length, args, cbIsFunction: typeof cb === 'function' };
  },
  sum3(a, b, c, cb) { cb(a + b + c); },
  proto(o) {
    return { own: Object.keys(o), polluted: o.polluted === undefined ? null : o.polluted,
             plain: Object.getPrototypeOf(o) === Object.prototype, inner: o.__proto__ };
  },
  returned(v) { return v; },
  called(v, cb) { cb(v); },
  special(kind, cb) {
    const values = { nan: NaN, infinity: -Infinity, negativeZero: -0, undefined: undefined,
      lone: '\ud83dx', loneInside: { s: 'a\udc00' }, twoTo64: 2 ** 64, minusTwoTo63: -(2 ** 63) };
    cb(values[kind]);
  },
};
"#,
    );
    let mut c = WsClient::connect(served.server.addr, None).await;
    let mut call = async |method: &str, args: Value| {
        let reply = c.call_next(method, args.clone()).await;
        assert!(reply.get("error").is_none(), "{method}({args}): {reply}");
        reply["result"].clone()
    };

    for args in [json!([]), json!([1]), json!([1, "two"]), json!([1, "two", [3], {"four": 4}])] {
        let n = args.as_array().unwrap().len();
        assert_eq!(call("echo.shape", args.clone()).await, json!({"n": n, "args": args, "cbIsFunction": true}));
    }
    assert_eq!(call("echo.sum3", json!([1, 2, 3])).await, 6);

    // A key `__proto__` is a property like any other, never the prototype.
    let answer = call("echo.proto", json!([{"__proto__": {"polluted": true}, "a": 1}])).await;
    assert_eq!(
        answer,
        json!({"own": ["__proto__", "a"], "polluted": null, "plain": true, "inner": {"polluted": true}})
    );

    let values = [
        json!(625),
        json!(-3),
        json!(2.5),
        json!(1e300),
        json!(4611686018427387904u64),
        json!("h\u{e9}llo \u{2713} \u{2028} \"quoted\" \\"),
        json!(""),
        json!(true),
        json!(false),
        json!(null),
        json!([1, "a", null]),
        json!({"b": {"c": [null, 1.5]}}),
    ];
    for value in values {
        assert_eq!(call("echo.returned", json!([value.clone()])).await, value, "returned");
        assert_eq!(call("echo.called", json!([value.clone()])).await, value, "through the callback");
    }

    for (kind, expected) in [
        ("nan", json!(null)),
        ("infinity", json!(null)),
        ("negativeZero", json!(0)),
        ("undefined", json!(null)),
        ("lone", json!("\u{fffd}x")),
        ("loneInside", json!({"s": "a\u{fffd}"})),
        ("twoTo64", json!(18446744073709551616.0)),
        ("minusTwoTo63", json!(-9223372036854775808i64)),
    ] {
        assert_eq!(call("echo.special", json!([kind])).await, expected, "{kind}");
    }
}

#[tokio::test]
async fn a_logout_takes_the_user_offline_and_session_errors_reach_the_caller() {
    let dir = fixture("seed");
    ss_tests::write(
        dir.path(),
        "app/server/account.js",
        "exports.actions = {\n\
           async cycle(user) {\n\
             await this.session.setUserId(user);\n\
             const before = await SS.users.online.now();\n\
             await this.session.user.logout();\n\
             return { before, after: await SS.users.online.now() };\n\
           },\n\
           refuse(cb) { cb(new Error('no such room')); },\n\
           badChannel(cb) { this.session.channel.subscribe('', cb); },\n\
         };\n",
    );
    pack_app(dir.path(), "development");
    let app = ssrun::App::new(ssrun::LoadedApp::load(dir.path()).unwrap()).with_javascript().unwrap();
    let server = RunningServer::with_app(app, 0);
    let mut c = WsClient::connect(server.addr, None).await;
    assert_eq!(c.call(1, "account.cycle", json!(["ann"])).await["result"], json!({"before": ["ann"], "after": []}));
    // An Error handed to a callback is an error for the caller, not `{}`.
    let refused = c.call(2, "account.refuse", json!([])).await;
    assert!(refused["error"]["message"].as_str().unwrap_or("").contains("no such room"), "{refused}");
    let bad = c.call(3, "account.badChannel", json!([])).await;
    assert!(bad["error"]["message"].as_str().unwrap_or("").contains("channel"), "{bad}");
    // Over the HTTP API, with no session cookie, a session change fails loudly.
    let addr = server.addr;
    let logout = tokio::task::spawn_blocking(move || http(addr, "GET", "/api/auth/logout.json", &[])).await.unwrap();
    assert_eq!(logout.status, 500, "{}", String::from_utf8_lossy(&logout.body));
    assert!(String::from_utf8_lossy(&logout.body).contains("no session to change"));
}

/// A session joins at most `server.max_channels_per_session` channels: a
/// subscribe past it fails alone, with `bad_args`; joining one it is in
/// already, or one after leaving another, is fine.
#[tokio::test]
async fn a_session_joins_a_bounded_number_of_channels() {
    let s = serve_seed("development", |c| c.max_channels_per_session = 3);
    let mut c = WsClient::connect(s.server.addr, None).await;
    assert_eq!(c.call(1, "chat.join", json!([["a", "b"]])).await["result"], json!(["a", "b"]));
    assert_eq!(c.call(2, "chat.join", json!([["b", "c"]])).await["result"], json!(["a", "b", "c"]));
    let refused = c.call(3, "chat.join", json!([["d", "a"]])).await;
    assert_eq!(refused["error"]["code"], "bad_args", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("at most 3 channels (server.max_channels_per_session)"), "{message}");
    assert!(message.contains("make it 4"), "{message}");
    assert_eq!(c.call(4, "chat.list", json!([])).await["result"], json!(["a", "b", "c"]), "nothing was joined");
    assert_eq!(c.call(5, "chat.join", json!(["a"])).await["result"], json!(["a", "b", "c"]));
    c.call(6, "chat.leave", json!(["a"])).await;
    assert_eq!(c.call(7, "chat.join", json!(["d"])).await["result"], json!(["b", "c", "d"]));
}

#[tokio::test]
async fn the_callback_is_a_function_like_any_other_and_its_first_answer_wins() {
    let served = serve_seed_with(
        "cb.js",
        r#"let kept = null;
exports.actions = {
  kind(cb) {
    cb({ typeof: typeof cb, isFunction: cb instanceof Function, length: cb.length, name: cb.name,
         callable: Object.prototype.toString.call(cb) });
  },
  viaCall(v, cb) { cb.call(null, v); },
  viaApply(v, cb) { cb.apply(null, [v, 'ignored']); },
  viaBind(v, cb) { cb.bind(null)(v); },
  twice(cb) { cb(1); cb(2); return 3; },
  afterReturning(cb) { cb('first'); throw new Error('too late to count'); },
  later(cb) { setTimeout(() => cb('from a timer'), 5); },
  keep(cb) { kept = cb; },
  release(cb) { kept('for the first call'); cb('released'); },
  error(cb) { cb(new TypeError('handed over')); },
  bigint(cb) { cb(1n); },
  symbol(cb) { cb(Symbol('s')); },
  construct(cb) { return new cb(); },
  reenter(cb) { cb({ toJSON() { cb(2); return 1; } }); },
  badJson(cb) { cb({ toJSON() { throw new Error('no JSON here'); } }); },
  thenable() { return { then(resolve) { resolve(5); } }; },
};
"#,
    );
    let server = &served.server;
    let mut c = WsClient::connect(server.addr, None).await;
    let kind = c.call_next("cb.kind", json!([])).await;
    assert_eq!(
        kind["result"],
        json!({"typeof": "function", "isFunction": true, "length": 0, "name": "", "callable": "[object Function]"}),
        "{kind}"
    );
    for how in ["viaCall", "viaApply", "viaBind"] {
        assert_eq!(c.call_next(&format!("cb.{how}"), json!([7])).await["result"], 7, "{how}");
    }
    assert_eq!(c.call_next("cb.twice", json!([])).await["result"], 1);
    assert_eq!(c.call_next("cb.afterReturning", json!([])).await["result"], "first");
    assert_eq!(c.call_next("cb.later", json!([])).await["result"], "from a timer");

    let mut other = WsClient::connect(server.addr, None).await;
    other.send_call(1, "cb.keep", json!([])).await;
    // A connection's calls start in the order they came: `keep` has run.
    assert_eq!(other.call(2, "cb.twice", json!([])).await["result"], 1);
    // The kept callback, called while `release` runs, answers its own call.
    assert_eq!(c.call_next("cb.release", json!([])).await["result"], "released");
    assert_eq!(other.replies(1).await[0].1["result"], "for the first call");

    let error = c.call_next("cb.error", json!([])).await;
    assert!(error["error"]["message"].as_str().unwrap_or("").contains("TypeError: handed over"), "{error}");
    let bigint = c.call_next("cb.bigint", json!([])).await;
    assert!(bigint["error"]["message"].as_str().unwrap_or("").contains("not JSON"), "{bigint}");
    assert_eq!(c.call_next("cb.symbol", json!([])).await["result"], Value::Null);
    let construct = c.call_next("cb.construct", json!([])).await;
    assert!(construct["error"]["message"].as_str().unwrap_or("").contains("constructor"), "{construct}");
    // The callback called again while its first answer is made JSON.
    assert_eq!(c.call_next("cb.reenter", json!([])).await["result"], 1);
    let bad = c.call_next("cb.badJson", json!([])).await;
    assert!(bad["error"]["message"].as_str().unwrap_or("").contains("not JSON: no JSON here"), "{bad}");
    assert_eq!(c.call_next("cb.thenable", json!([])).await["result"], 5);

    // Over the HTTP API, with no connection: at once, later, and failing.
    let addr = server.addr;
    let get = |path: &'static str| tokio::task::spawn_blocking(move || http(addr, "GET", path, &[]));
    let twice = get("/api/cb/twice.json").await.unwrap();
    assert_eq!((twice.status, String::from_utf8_lossy(&twice.body).trim()), (200, "1"));
    let later = get("/api/cb/later.json").await.unwrap();
    assert_eq!((later.status, String::from_utf8_lossy(&later.body).trim()), (200, "\"from a timer\""));
    let error = get("/api/cb/error.json").await.unwrap();
    assert_eq!(error.status, 500, "{}", String::from_utf8_lossy(&error.body));
    assert!(String::from_utf8_lossy(&error.body).contains("handed over"));
}

#[tokio::test]
async fn an_answer_nested_too_deep_says_so_and_the_engine_goes_on() {
    let s = serve_seed_with(
        "deep.js",
        "exports.actions = { nest(n) { let v = 1; for (let i = 0; i < n; i++) v = [v]; return v; } };\n",
    );
    let mut c = WsClient::connect(s.server.addr, None).await;
    // The reply around it is one level more for this client's reader.
    let reply = c.call(1, "deep.nest", json!([126])).await;
    assert_eq!(reply["result"].to_string().matches('[').count(), 126, "{reply}");
    let reply = c.call(2, "deep.nest", json!([128])).await;
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("the answer is nested more than 127 levels deep"), "{reply}");
    assert!(message.contains("send it as a JSON string"), "{reply}");
    assert_eq!(c.call(3, "deep.nest", json!([0])).await["result"], 1);
}

#[tokio::test]
async fn a_local_named_like_the_await_tag_helper_keeps_its_meaning() {
    let s = serve_seed_with(
        "tagx.js",
        "const host = typeof __ss;\nexports.actions = { async local() { const __ss = { note: 'mine:' }; await null; return __ss.note + host; } };\n",
    );
    let mut c = WsClient::connect(s.server.addr, None).await;
    assert_eq!(c.call(1, "tagx.local", json!([])).await["result"], "mine:object");
}
