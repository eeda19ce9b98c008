//! The WebSocket endpoint (`/_ss/ws`) and one task per connection, speaking
//! the protocol of docs/protocol.md.
//!
//! The task owns its socket. It waits for whichever comes first (a frame, an
//! event from the hub, a finished call, the heartbeat tick, shutdown), then
//! handles whatever else is ready without waiting, and writes everything it
//! queued with one flush: under load many replies leave in one system call.

use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::OptionFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::time::Instant;
use tungstenite::Utf8Bytes;

use crate::Shared;
use crate::actions::{ActionError, ActionResult, CallLog, LogCall, SessionHandle};
use crate::pubsub::{Closed, Outbox};
use crate::session::{self, Session};

pub(crate) mod socket;

use socket::{Fault, Received, Socket};

/// The protocol version this server speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// The endpoint's path.
pub const PATH: &str = "/_ss/ws";
/// The session cookie's name.
pub const COOKIE: &str = "session_id";

/// Close codes (docs/protocol.md).
pub mod close {
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A binary frame arrived.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A message was larger than the limit.
    pub const TOO_BIG: u16 = 1009;
    /// The client asked for a protocol version this server does not speak.
    pub const BAD_VERSION: u16 = 4001;
    /// A message was not a JSON object with a known type.
    pub const MALFORMED: u16 = 4400;
    /// Nothing arrived for three heartbeat intervals.
    pub const IDLE: u16 = 4408;
    /// The client read too slowly and its queue filled up.
    pub const TOO_SLOW: u16 = 4429;
}

/// Why connections close with `1001`: the server stops (Ctrl-C, SIGTERM),
/// or a development server hands over to a new build.
const GOING_AWAY_REASON: &str = "the server is going away (stopping, or serving a new build)";

/// About how long a short reply is (`{"type":"reply","id":12,"result":625}`
/// and a little more), to make room for at once.
const REPLY_SIZE: usize = 64;
/// Events handled after the first one before a flush, at most.
const BATCH: usize = 64;
/// How long a closed connection waits for the client to close its side.
const LINGER: Duration = Duration::from_secs(1);

/// `GET /_ss/ws?v=1`: checks the WebSocket handshake and the origin, finds or
/// creates the session, and upgrades.
pub(crate) async fn upgrade(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    let headers = &parts.headers;
    if parts.method != axum::http::Method::GET {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET")], "a WebSocket handshake is a GET")
            .into_response();
    }
    let accept = match handshake(headers) {
        Ok(accept) => accept,
        Err(refused) => return refused.into_response(),
    };
    if !same_origin(headers) {
        return (StatusCode::FORBIDDEN, "the page's origin is not this server's").into_response();
    }
    let version = parts
        .uri
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "v").map(|(_, v)| v.into_owned()));
    let max = shared.config.max_message_bytes;
    let Some(upgraded) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return (StatusCode::UPGRADE_REQUIRED, "this connection cannot be upgraded").into_response();
    };
    if version.as_deref() != Some("1") {
        // No session for a client that cannot speak to this server.
        let reason = match version {
            None => "no protocol version: connect to /_ss/ws?v=1".to_string(),
            Some(v) => format!("protocol version {v:.20} is not spoken here: this server speaks {PROTOCOL_VERSION}"),
        };
        tokio::spawn(async move {
            let Some((io, read)) = upgraded.await.ok().and_then(socket::tcp_stream) else { return };
            let mut socket = Socket::new(io, &read, max);
            socket.close(close::BAD_VERSION, &reason, LINGER, Some(LINGER)).await;
        });
        return switching(accept);
    }
    let session = match find_or_create_session(&shared, headers).await {
        Ok(found) => found,
        Err(e) => {
            crate::errln!("ssrun: session store: {e}");
            return (StatusCode::SERVICE_UNAVAILABLE, "the session store is unavailable").into_response();
        }
    };
    // Set again on every connection, not only for a new session: the store
    // forgets a session once it is unused for `session_max_age`, so the
    // cookie's life runs from the last visit too.
    let cookie = set_cookie(&session.id, over_https(headers), shared.config.session_max_age);
    // `then`, not an async block, so that the task holds the connection
    // alone once the upgrade is done, not also what it was made from.
    tokio::spawn(upgraded.then(move |upgraded| {
        OptionFuture::from(
            upgraded
                .ok()
                .and_then(socket::tcp_stream)
                .map(|(io, read)| run(Socket::new(io, &read, max), shared, session)),
        )
    }));
    let mut response = switching(accept);
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

/// Checks a WebSocket opening handshake (RFC 6455, section 4.2.1) and gives
/// the `Sec-WebSocket-Accept` that answers it.
fn handshake(headers: &HeaderMap) -> Result<String, NotAHandshake> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return Err(NotAHandshake::NoUpgrade);
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v.as_bytes() != b"13") {
        return Err(NotAHandshake::OtherVersion);
    }
    // The key is 16 random bytes in base64.
    use base64::Engine as _;
    match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(key)
            if key.len() == 24
                && base64::engine::general_purpose::STANDARD
                    .decode_slice(key, &mut [0u8; 18])
                    .is_ok_and(|n| n == 16) =>
        {
            Ok(socket::accept_key(key.as_bytes()))
        }
        _ => Err(NotAHandshake::NoKey),
    }
}

/// Why a request to the endpoint is not a WebSocket handshake.
enum NotAHandshake {
    NoUpgrade,
    OtherVersion,
    NoKey,
}

impl IntoResponse for NotAHandshake {
    fn into_response(self) -> Response {
        let upgrade_required = |text: &'static str, headers: &[(header::HeaderName, &'static str)]| {
            let mut response = (StatusCode::UPGRADE_REQUIRED, text).into_response();
            for (name, value) in headers {
                response.headers_mut().insert(name, HeaderValue::from_static(value));
            }
            response
        };
        match self {
            NotAHandshake::NoUpgrade => upgrade_required(
                "this address speaks WebSocket only (the SS client connects here)",
                &[(header::UPGRADE, "websocket"), (header::CONNECTION, "upgrade")],
            ),
            NotAHandshake::OtherVersion => {
                upgrade_required("WebSocket version 13 is spoken here", &[(header::SEC_WEBSOCKET_VERSION, "13")])
            }
            NotAHandshake::NoKey => {
                (StatusCode::BAD_REQUEST, "a WebSocket handshake needs a Sec-WebSocket-Key: 16 bytes in base64")
                    .into_response()
            }
        }
    }
}

/// The answer that upgrades the connection.
fn switching(accept: String) -> Response {
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is a header value"));
    response
}

/// Whether the `Origin` header, when there is one, names this server's host:
/// the request's `Host`, or the host a proxy in front says the browser asked
/// for (`X-Forwarded-Host`; a page cannot set that header on a socket or on a
/// request that needs no preflight, so another site cannot forge it).
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Ok(origin) = origin.to_str() else { return false };
    let authority = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    // A proxy may list several hosts when chained: the first is the browser's.
    let forwarded =
        headers.get("x-forwarded-host").and_then(|h| h.to_str().ok()).and_then(|h| h.split(',').next()).map(str::trim);
    !authority.is_empty() && [host, forwarded].into_iter().flatten().any(|h| authority.eq_ignore_ascii_case(h))
}

/// The session named by the request's cookie, or a new one.
pub(crate) async fn find_or_create_session(shared: &Shared, headers: &HeaderMap) -> Result<Session, crate::StoreError> {
    if let Some(found) = existing_session(shared, headers).await? {
        return Ok(found);
    }
    shared.services.store.create().await
}

/// The session named by the request's cookie, if the store knows it.
pub(crate) async fn existing_session(
    shared: &Shared,
    headers: &HeaderMap,
) -> Result<Option<Session>, crate::StoreError> {
    for id in cookie_values(headers, COOKIE) {
        if session::well_formed(id)
            && let Some(found) = shared.services.store.load(id).await?
        {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn cookie_values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).filter_map(
        move |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        },
    )
}

fn set_cookie(id: &str, secure: bool, max_age: Duration) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let max_age = max_age.as_secs();
    HeaderValue::from_str(&format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"))
        .expect("session ids are cookie-safe")
}

/// Whether the page was loaded over HTTPS: its origin says so, or the proxy
/// in front of this server does (`X-Forwarded-Proto`). The cookie is then
/// marked `Secure`, so that it never travels over plain HTTP.
fn over_https(headers: &HeaderMap) -> bool {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let forwarded = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok());
    origin.is_some_and(|o| o.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://")))
        || forwarded.is_some_and(|p| p.split(',').next().is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
}

/// Writes the reply to the call whose id is `id` (its JSON text, as the
/// client wrote it) at the end of `out`.
fn write_reply(out: &mut Vec<u8>, id: &str, outcome: &ActionResult) {
    out.extend_from_slice(br#"{"type":"reply","id":"#);
    out.extend_from_slice(id.as_bytes());
    let written = match outcome {
        Ok(value) => {
            out.extend_from_slice(br#","result":"#);
            serde_json::to_writer(&mut *out, value)
        }
        Err(e) => {
            out.extend_from_slice(br#","error":{"code":""#);
            out.extend_from_slice(e.code().as_bytes());
            out.extend_from_slice(br#"","message":"#);
            let written = serde_json::to_writer(&mut *out, &e.to_string());
            out.push(b'}');
            written
        }
    };
    written.expect("JSON values serialize");
    out.push(b'}');
}

fn init_text(shared: &Shared, session: &Session) -> String {
    let head = serde_json::json!({
        "type": "init",
        "v": PROTOCOL_VERSION,
        "env": shared.loaded.env,
        "session": {"user_id": session.user_id, "created_at": session.created_at},
    })
    .to_string();
    format!("{}{}", &head[..head.len() - 1], shared.init_tail)
}

type CallFuture = futures_util::future::BoxFuture<'static, (Box<str>, ActionResult)>;

enum Event {
    Frame(Option<Result<Received, Fault>>),
    /// A queued message, or (`None`) the end of a frame the outbox wrote in part.
    Out(Result<Option<Utf8Bytes>, Closed>),
    Replied(Box<str>, ActionResult),
    Tick,
}

/// Why a connection ends.
enum End {
    /// The peer is gone: nothing more to send.
    Gone,
    /// The peer closed: send the answering close frame, then stop.
    Answered,
    /// Close with this code and reason.
    Close(u16, String),
}

fn closed_with(code: u16, reason: impl Into<String>) -> End {
    End::Close(code, reason.into())
}

/// One connection: everything its task keeps between events.
struct Connection {
    socket: Socket,
    outbox: Arc<Outbox>,
    id: crate::pubsub::ConnId,
    shared: Arc<Shared>,
    session: SessionHandle,
    calls: FuturesUnordered<CallFuture>,
    /// A signed-in user to mark as seen at the end of this batch.
    seen: Option<String>,
    /// Whether the outbox may write events to the socket itself (see
    /// `Outbox`): with one worker thread, where that saves a task's turn per
    /// connection and event, and costs no parallelism.
    shared_writes: bool,
    last_heard: Instant,
    /// A tick found the client silent for three intervals; the next tick,
    /// which comes after the event loop has looked at the socket again,
    /// closes the connection if it still is.
    seems_silent: bool,
}

/// The connection's task. Everything is set up before the future is made, so
/// that the future holds the connection once (an `async fn` would keep its
/// arguments and its locals apart, doubling the socket for every connection).
fn run(socket: Socket, shared: Arc<Shared>, session: Session) -> impl Future<Output = ()> + Send {
    let user = session.user_id.clone();
    let state = Arc::new(Mutex::new(session));
    let outbox = Outbox::new(shared.config.outgoing_queue);
    // Counted down when the connection is dropped, after its close frame.
    shared.sockets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let id = shared.services.hub.register(state.clone(), outbox.clone());
    let mut connection = Connection {
        socket,
        outbox,
        id,
        session: SessionHandle::new(state, shared.services.clone()),
        shared,
        calls: FuturesUnordered::new(),
        seen: user,
        shared_writes: tokio::runtime::Handle::current().metrics().num_workers() == 1,
        last_heard: Instant::now(),
        seems_silent: false,
    };
    async move { connection.live().await }
}

impl Drop for Connection {
    /// A task dropped before its end (the runtime shutting down) leaves no
    /// stale entry in the hub.
    fn drop(&mut self) {
        self.shared.services.hub.unregister(self.id);
        self.shared.sockets.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Connection {
    /// A frame came in: the client is alive.
    fn heard(&mut self) {
        self.last_heard = Instant::now();
        self.seems_silent = false;
        // Bytes read up to here are this message's (see `Socket::take_progress`).
        self.socket.take_progress();
    }

    async fn live(&mut self) {
        let end = self.serve().await;
        if let Some(rest) = self.outbox.detach() {
            self.socket.queue_first(&rest);
        }
        self.shared.services.hub.unregister(self.id);
        if let Some(engine) = &self.shared.engine {
            engine.disconnected(self.id);
        }
        let End::Close(code, reason) = end else { return };
        // What the client did wrong, or its network: for whoever wonders why a page reconnected.
        if self.shared.config.log_level >= 1 && code != close::GOING_AWAY && code != close::IDLE {
            let limit = if code == close::TOO_BIG {
                format!(" (server.max_message_bytes: {})", self.shared.config.max_message_bytes)
            } else {
                String::new()
            };
            crate::errln!("ssrun: closed a connection with {code}: {}{limit}", crate::log::one_line(&reason));
        }
        // At shutdown the server does not wait for the clients.
        let linger = (code != close::GOING_AWAY).then_some(LINGER);
        self.socket.close(code, &reason, self.shared.config.heartbeat() * 3, linger).await;
    }

    /// Handling an event never waits: it queues what to send, and each batch
    /// of events ends with one write. So what an idle connection's task keeps
    /// is the connection and the wait for its next event, no more.
    async fn serve(&mut self) -> End {
        let interval = self.shared.config.heartbeat();
        let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if self.outbox.closed() == Some(Closed::Shutdown) {
            return closed_with(close::GOING_AWAY, GOING_AWAY_REASON);
        }
        self.mark_seen().await;
        self.socket.queue_text(&init_text(&self.shared, &self.session.snapshot()));
        if !self.write().await {
            return End::Gone;
        }
        if self.shared_writes {
            // After the init message, which comes first.
            self.outbox.attach(self.socket.writer());
        }
        let max_calls = self.shared.config.max_calls_in_flight.max(1);
        loop {
            let first = next_event(&mut self.socket, &self.outbox, &mut self.calls, &mut tick, max_calls).await;
            // Woken by anything but a message taken from the outbox (which
            // holds it already): from here until this batch is written, the
            // outbox writes nothing itself, so that no event overtakes a
            // reply, a pong or the answer to a close; a frame it wrote in
            // part is finished first.
            if self.shared_writes
                && !matches!(first, Event::Out(Ok(Some(_))))
                && let Some(rest) = self.outbox.hold()
            {
                self.socket.queue_first(&rest);
            }
            // A message to send came first (a broadcast reaching every
            // connection): what else is queued goes in the same write, and
            // the socket, the calls and the heartbeat are looked at in the
            // next turn rather than polled a second time in this one (a
            // frame that came meanwhile waits for that write).
            let sending = matches!(first, Event::Out(Ok(_)));
            let mut outcome = self.handle(first, &mut tick);
            if sending {
                for text in std::iter::from_fn(|| self.outbox.try_pop()).take(BATCH) {
                    self.socket.queue_text(&text);
                }
            } else {
                for _ in 0..BATCH {
                    if outcome.is_err() {
                        break;
                    }
                    match self.ready_now(max_calls) {
                        Some(event) => outcome = self.handle(event, &mut tick),
                        None => break,
                    }
                }
            }
            self.mark_seen().await;
            match outcome {
                Ok(()) => {}
                Err(End::Gone) => return End::Gone,
                Err(End::Answered) => {
                    // What this batch queued before the peer's close went
                    // out with the answer to it, which comes last.
                    self.write().await;
                    return End::Gone;
                }
                Err(end @ End::Close(..)) => {
                    // What was answered before the close still goes out.
                    return if self.write().await { end } else { End::Gone };
                }
            }
            if !self.write().await {
                return End::Gone;
            }
        }
    }

    /// An event that is ready without waiting, for the batch after the
    /// first: a finished call, a frame already read or readable, a queued
    /// message. Looked at one by one, not through [`next_event`], which
    /// would also join and leave the outbox's and the timer's waits on
    /// every look; the heartbeat can wait for the next turn of the loop.
    /// Frames come before queued messages here, and the batch is bounded:
    /// a client that keeps its socket full still has its queued events
    /// taken when the loop's wait, which picks among what is ready at
    /// random, picks the outbox (and then up to a batch of them at once).
    fn ready_now(&mut self, max_calls: usize) -> Option<Event> {
        if !self.calls.is_empty()
            && let Some(Some((id, outcome))) = self.calls.next().now_or_never()
        {
            return Some(Event::Replied(id, outcome));
        }
        if self.calls.len() < max_calls
            && let Some(frame) = self.socket.next().now_or_never()
        {
            return Some(Event::Frame(frame));
        }
        self.outbox.try_pop().map(|text| Event::Out(Ok(Some(text))))
    }

    /// Records a signed-in user's heartbeat (or arrival) in users online.
    async fn mark_seen(&mut self) {
        if let Some(user) = self.seen.take()
            && let Err(e) = self.shared.services.presence.seen(&user).await
        {
            crate::errln!("ssrun: users online: {e}");
        }
    }

    /// Writes what this batch queued, with one flush; `false` when the peer is
    /// gone, or has not read for three heartbeat intervals. The time limit
    /// is set only when the socket does not take everything at once.
    async fn write(&mut self) -> bool {
        match self.socket.try_flush() {
            Ok(true) => true,
            Ok(false) => {
                let limit = self.shared.config.heartbeat() * 3;
                matches!(tokio::time::timeout(limit, self.socket.flush()).await, Ok(Ok(())))
            }
            Err(_) => false,
        }
    }

    /// Handles one event, queueing what to send; `Err` ends the connection.
    fn handle(&mut self, event: Event, tick: &mut tokio::time::Interval) -> Result<(), End> {
        let interval = tick.period();
        match event {
            Event::Tick => {
                // At the limit of calls in flight the socket is not read, so
                // heartbeats may be waiting unread: time spent so does not
                // count, and the client, whose heartbeats go unanswered, is
                // told twice per interval that the server is alive (twice,
                // so that each of its one-interval windows holds one even
                // when a beat comes late).
                if self.calls.len() >= self.shared.config.max_calls_in_flight.max(1) {
                    self.heard();
                    self.socket.queue_text(r#"{"type":"hb"}"#);
                    tick.reset_after(interval / 2);
                } else if self.socket.take_progress() {
                    // Part of a message arrived since the last tick.
                    self.heard();
                } else if self.last_heard.elapsed() > interval * 3 {
                    // After a stall of this thread (server code that ran
                    // long), the tick can come due before the event loop has
                    // seen the frames waiting in the socket: look once more
                    // shortly, after it has, before calling the client gone.
                    if self.seems_silent {
                        return Err(closed_with(close::IDLE, "no heartbeat for three intervals"));
                    }
                    self.seems_silent = true;
                    tick.reset_after((interval / 10).min(Duration::from_millis(100)));
                }
                Ok(())
            }
            Event::Out(Ok(Some(text))) => {
                self.socket.queue_text(&text);
                Ok(())
            }
            // The batch took the rest when it began.
            Event::Out(Ok(None)) => Ok(()),
            Event::Out(Err(Closed::Shutdown)) => Err(closed_with(close::GOING_AWAY, GOING_AWAY_REASON)),
            Event::Out(Err(Closed::Dropped)) => Err(closed_with(close::TOO_SLOW, "the client reads too slowly")),
            Event::Replied(id, outcome) => {
                self.socket.queue_text_with(REPLY_SIZE, |out| write_reply(out, &id, &outcome));
                Ok(())
            }
            Event::Frame(None) => Err(End::Gone),
            Event::Frame(Some(Err(fault))) => Err(closed_with(fault.code, fault.reason)),
            Event::Frame(Some(Ok(message))) => {
                self.heard();
                match message {
                    Received::Text(text) => self.message(&text),
                    Received::Binary => {
                        Err(closed_with(close::UNSUPPORTED_DATA, "binary frames are not part of the protocol"))
                    }
                    // The socket queued the pong; this batch's write sends it.
                    Received::Ping | Received::Pong => Ok(()),
                    // The socket queued the answering close frame.
                    Received::Close => Err(End::Answered),
                }
            }
        }
    }

    fn message(&mut self, text: &str) -> Result<(), End> {
        let malformed = |why: String| Err(End::Close(close::MALFORMED, why));
        if let Some((id, method, args)) = plain_call(text) {
            self.call(id, Some(Cow::Borrowed(method)), Some(Value::Array(args)), false);
            return Ok(());
        }
        // serde would also read a struct from an array, field by field: only an object is a message.
        let parsed = text.trim_start().starts_with('{').then(|| serde_json::from_str::<Incoming>(text));
        // JavaScript strings may hold half of a surrogate pair (text cut in the
        // middle of an emoji), and JSON.stringify writes it as an escape that
        // serde refuses: read such a message with U+FFFD in its place.
        let repaired;
        let parsed = match parsed {
            Some(Err(_)) => match crate::json::without_lone_surrogates(text) {
                Some(text) => {
                    repaired = text;
                    Some(serde_json::from_str::<Incoming>(&repaired))
                }
                None => parsed,
            },
            other => other,
        };
        let message = match parsed {
            Some(Ok(m)) => m,
            // Read again, only to say what is wrong.
            failed => match serde_json::from_str::<Value>(text) {
                Err(e) => return malformed(format!("not JSON: {e}")),
                Ok(Value::Object(_)) => {
                    let why = failed.and_then(Result::err).map(|e| e.to_string()).unwrap_or_default();
                    return malformed(format!("not a message: {why}"));
                }
                Ok(_) => return malformed("a message must be a JSON object".into()),
            },
        };
        match text_field(message.kind).as_deref() {
            Some("call") => {}
            Some("hb") => {
                self.seen = self.session.user_id();
                self.socket.queue_text(r#"{"type":"hb"}"#);
                return Ok(());
            }
            Some(other) => return malformed(format!("unknown message type {other:.40}")),
            None => return malformed("a message needs a \"type\"".into()),
        }
        // The id goes back exactly as written (`1e2` stays `1e2`).
        let id = match message.id.map(RawValue::get) {
            Some(id) if id.starts_with(|c: char| c == '"' || c == '-' || c.is_ascii_digit()) => id,
            _ => return malformed("a call needs an \"id\" (a number or a string)".into()),
        };
        let silent = message.silent.is_some_and(|s| s.get() == "true");
        self.call(id, text_field(message.method), message.args, silent);
        Ok(())
    }

    /// Starts a call whose id is `id` (its JSON text); a `silent` one is left out of the log.
    fn call(&mut self, id: &str, method: Option<Cow<str>>, args: Option<Value>, silent: bool) {
        let log = LogCall { level: self.shared.config.log_level, silent, http: false };
        match self.start_call(method, args, log) {
            // An action that answers at once (most do) is answered in this
            // batch without joining the calls in flight.
            Ok((mut future, log)) => match (&mut future).now_or_never() {
                Some(outcome) => {
                    if let Some(log) = log {
                        log.end(&outcome);
                    }
                    self.socket.queue_text_with(REPLY_SIZE, |out| write_reply(out, id, &outcome))
                }
                None => {
                    let id: Box<str> = id.into();
                    self.calls.push(Box::pin(future.map(move |outcome| {
                        if let Some(log) = log {
                            log.end(&outcome);
                        }
                        (id, outcome)
                    })))
                }
            },
            Err(e) => self.socket.queue_text_with(REPLY_SIZE, |out| write_reply(out, id, &Err(e))),
        }
    }

    fn start_call(
        &self,
        method: Option<Cow<str>>,
        args: Option<Value>,
        log: LogCall,
    ) -> Result<(crate::actions::Answer, Option<Box<CallLog>>), ActionError> {
        let Some(method) = method else {
            return Err(ActionError::BadRequest("a call needs a \"method\" string, like \"app.square\"".into()));
        };
        let args = match args {
            None => Vec::new(),
            Some(Value::Array(args)) => args,
            Some(_) => return Err(ActionError::BadRequest("\"args\" must be an array".into())),
        };
        let registry = &self.shared.registry;
        let Some(action) = registry.get(&method) else {
            let error = registry.not_found(&method);
            CallLog::refused(log, &method, &args, &error);
            return Err(error);
        };
        if action.authenticate && self.session.user_id().is_none() {
            let error = ActionError::Unauthorized(format!("{method} needs a signed-in user"));
            CallLog::refused(log, &method, &args, &error);
            return Err(error);
        }
        let log = CallLog::begin(log, &method, &args);
        let call = self.shared.call(action.name.clone(), args, self.session.clone(), Some(self.id));
        Ok((action.start(call, self.shared.config.reply_timeout), log))
    }
}

/// The fields of a client message the server reads (others are ignored),
/// taken as they come so that the checks above can say what is wrong. Read
/// straight into these rather than into a map first: a map of the whole
/// message costs a hash table and copies of the method and arguments on
/// every call. The type, the id and the method are slices of the message's
/// text: the id is copied only for a call that answers later, the method
/// once, into the call.
#[derive(serde::Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<&'a RawValue>,
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    method: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present")]
    args: Option<Value>,
    /// `true` for a call the client keeps out of the logs.
    #[serde(default, borrow)]
    silent: Option<&'a RawValue>,
}

/// The parts of a call written as the browser library writes it,
/// `{"type":"call","id":7,"method":"app.square","args":[25]}`: these keys in
/// this order, no space between them, a whole number for the id and a method
/// without escapes. Read here without serde's general path, which takes
/// several times as long; `None` for any other text, which is then read in
/// full (the same message, read either way, gives the same call).
fn plain_call(text: &str) -> Option<(&str, &str, Vec<Value>)> {
    let rest = text.strip_prefix(r#"{"type":"call","id":"#)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (id, rest) = rest.split_at(digits);
    // JSON writes no leading zero.
    if id.is_empty() || (id.len() > 1 && id.starts_with('0')) {
        return None;
    }
    let rest = rest.strip_prefix(r#","method":""#)?;
    // Up to its closing quote, with no escape or control character on the
    // way (a byte loop: a method name is a few bytes, too short for memchr).
    let end = rest.bytes().position(|b| b == b'"' || b == b'\\' || b < 0x20)?;
    let (method, rest) = rest.split_at(end);
    let rest = rest.strip_prefix(r#"","args":"#)?;
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Vec<Value>>();
    let args = stream.next()?.ok()?;
    (&rest[stream.byte_offset()..] == "}").then_some((id, method, args))
}

/// A field's text when it is a JSON string (borrowed from the message when
/// it holds no escape), `None` when it is absent or another kind of value.
fn text_field(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    let raw = raw?.get();
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    // The message parsed, so this is a valid JSON string, but for an escaped
    // lone surrogate, which reads as U+FFFD (see `json::without_lone_surrogates`).
    let repaired = crate::json::without_lone_surrogates(raw);
    serde_json::from_str::<String>(repaired.as_deref().unwrap_or(raw)).ok().map(Cow::Owned)
}

/// A field that is there, even as `null` (which `Option` alone reads as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    <Value as serde::Deserialize>::deserialize(d).map(Some)
}

async fn next_event(
    socket: &mut Socket,
    rx: &Outbox,
    calls: &mut FuturesUnordered<CallFuture>,
    tick: &mut tokio::time::Interval,
    max_calls: usize,
) -> Event {
    let reading = calls.len() < max_calls;
    let has_calls = !calls.is_empty();
    tokio::select! {
        Some((id, outcome)) = calls.next(), if has_calls => Event::Replied(id, outcome),
        out = rx.pop() => Event::Out(out),
        frame = socket.next(), if reading => Event::Frame(frame),
        _ = tick.tick() => {
            // After a stall of this task (a busy thread), frames may be
            // waiting beside an overdue tick: read what is ready first. (What
            // the event loop has not seen yet is read before the second look
            // that a silent connection gets before it is closed; see `handle`.)
            match reading.then(|| socket.next().now_or_never()).flatten() {
                Some(frame) => Event::Frame(frame),
                None => Event::Tick,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fields_are_borrowed_unless_escaped() {
        let field = |json: &str| {
            let message: Incoming = serde_json::from_str(json).expect("a message");
            text_field(message.method).map(|text| (matches!(text, Cow::Borrowed(_)), text.into_owned()))
        };
        assert_eq!(field(r#"{"method":"app.square"}"#), Some((true, "app.square".into())));
        assert_eq!(field(r#"{"method":"app.\u0073quare"}"#), Some((false, "app.square".into())));
        assert_eq!(field(r#"{"method":"a\"b"}"#), Some((false, "a\"b".into())));
        // Half of a surrogate pair reads as U+FFFD, as the rest of a message does.
        assert_eq!(field(r#"{"method":"app.\ud83d"}"#), Some((false, "app.\u{fffd}".into())));
        for other in [r#"{}"#, r#"{"method":null}"#, r#"{"method":5}"#, r#"{"method":["app.square"]}"#] {
            assert_eq!(field(other), None, "{other}");
        }
    }

    #[test]
    fn origin_must_match_host() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h));
        h.insert(header::HOST, HeaderValue::from_static("example.com:3000"));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://example.com:3000"));
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.test"));
        assert!(!same_origin(&h));
        // Behind a proxy that passes its own upstream name as Host.
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:3000"));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://chat.example.com"));
        assert!(!same_origin(&h));
        h.insert("x-forwarded-host", HeaderValue::from_static("chat.example.com, inner.proxy"));
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.test"));
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://"));
        h.insert("x-forwarded-host", HeaderValue::from_static(""));
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
    }

    #[test]
    fn cookies_are_secure_when_the_page_came_over_https() {
        let mut h = HeaderMap::new();
        assert!(!over_https(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://example.com"));
        assert!(!over_https(&h));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(over_https(&h), "a proxy that ends TLS says so");
        h.remove("x-forwarded-proto");
        h.insert(header::ORIGIN, HeaderValue::from_static("HTTPS://example.com"));
        assert!(over_https(&h));
        let month = Duration::from_secs(30 * 24 * 3600);
        assert!(set_cookie("abc", true, month).to_str().unwrap().ends_with("Max-Age=2592000; Secure"));
        assert!(!set_cookie("abc", false, month).to_str().unwrap().contains("Secure"));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; session_id=abc; b=2"));
        assert_eq!(cookie_values(&h, COOKIE).collect::<Vec<_>>(), ["abc"]);
    }

    fn reply_text(id: &str, outcome: &ActionResult) -> String {
        let mut out = Vec::new();
        write_reply(&mut out, id, outcome);
        String::from_utf8(out).expect("a reply is UTF-8")
    }

    #[test]
    fn replies_carry_the_id_and_the_error_code() {
        assert_eq!(reply_text("7", &Ok(Value::from(625))), r#"{"type":"reply","id":7,"result":625}"#);
        assert_eq!(reply_text(r#""a""#, &Ok(Value::Null)), r#"{"type":"reply","id":"a","result":null}"#);
        assert_eq!(
            reply_text("7", &Err(ActionError::NotFound("no \"such\"\naction".into()))),
            r#"{"type":"reply","id":7,"error":{"code":"not_found","message":"no \"such\"\naction"}}"#
        );
        for outcome in [Ok(serde_json::json!({"a": [1, "x\u{1}"]})), Err(ActionError::failed("broke"))] {
            let text = reply_text("1e2", &outcome);
            let reply: Value = serde_json::from_str(&text).expect("a reply is JSON");
            assert_eq!(reply["id"], serde_json::json!(100.0));
        }
    }

    #[test]
    fn plain_calls_read_as_the_general_path_reads_them() {
        let plain = [
            r#"{"type":"call","id":7,"method":"app.square","args":[25]}"#,
            r#"{"type":"call","id":0,"method":"a.b","args":[]}"#,
            r#"{"type":"call","id":12,"method":"a.b","args":[1, "two", {"three": [3]}, null]}"#,
        ];
        for text in plain {
            let (id, method, args) = plain_call(text).unwrap_or_else(|| panic!("{text} is plain"));
            let message: Incoming = serde_json::from_str(text).expect("a message");
            assert_eq!(Some(id), message.id.map(RawValue::get), "{text}");
            assert_eq!(Some(method), text_field(message.method).as_deref(), "{text}");
            assert_eq!(Some(Value::Array(args)), message.args, "{text}");
        }
        // Anything else goes the general way, which also says what is wrong.
        let other = [
            r#"{"type":"call","id":07,"method":"a.b","args":[]}"#,
            r#"{"type":"call","id":-1,"method":"a.b","args":[]}"#,
            r#"{"type":"call","id":1.5,"method":"a.b","args":[]}"#,
            r#"{"type":"call","id":"x","method":"a.b","args":[]}"#,
            r#"{"type":"call","id":,"method":"a.b","args":[]}"#,
            r#"{"type":"call","id":1,"method":"a\u0062","args":[]}"#,
            r#"{"type":"call","id":1,"method":"a\"b","args":[]}"#,
            "{\"type\":\"call\",\"id\":1,\"method\":\"a\tb\",\"args\":[]}",
            r#"{"type":"call","id":1,"method":"a.b","args":{}}"#,
            r#"{"type":"call","id":1,"method":"a.b","args":[}"#,
            r#"{"type":"call","id":1,"method":"a.b","args":["\ud83d"]}"#,
            r#"{"type":"call","id":1,"method":"a.b","args":[]} "#,
            r#"{"type":"call","id":1,"method":"a.b","args":[],"x":1}"#,
            r#"{"type":"call","id":1,"method":"a.b","args":[]}}"#,
            r#"{"type":"call","id":1,"args":[],"method":"a.b"}"#,
            r#"{"type":"hb"}"#,
        ];
        for text in other {
            assert!(plain_call(text).is_none(), "{text} is not plain");
        }
    }
}
