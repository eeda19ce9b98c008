//! Pub/sub and users online.
//!
//! - [`Hub`]: this process's connections, by session, user and channel; it
//!   delivers an event to the local connections it concerns.
//! - [`Bus`]: how a published event reaches every instance's hub. [`MemoryBus`]
//!   hands it straight to the local hub (one instance); a shared bus carries it
//!   to the others.
//! - [`Publisher`]: `SS.publish` for server code.
//! - [`Presence`]: users online, from heartbeats; [`MemoryPresence`] keeps them here.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use tokio::net::tcp::OwnedWriteHalf;
use tungstenite::Utf8Bytes;

use crate::session::{BoxFuture, Session, StoreError};

/// Who an event is for.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Every connection signed in as this user.
    User(String),
    /// Every connection signed in as one of these users.
    Users(Vec<String>),
    /// Every connection.
    Broadcast,
    /// Every connection whose session joined one of these channels.
    Channels(Vec<String>),
}

/// One published event.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// Its audience.
    pub target: Target,
    /// The event name (`SS.events.on(name, ...)` in the browser).
    pub event: String,
    /// Its data.
    pub data: Value,
}

#[derive(Serialize)]
struct EventMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    event: &'a str,
    data: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
}

fn event_text(event: &str, data: &Value, channel: Option<&str>) -> Utf8Bytes {
    let message = EventMessage { kind: "event", event, data, channel };
    Utf8Bytes::from(serde_json::to_string(&message).expect("JSON values serialize"))
}

/// A connection's number in its hub.
pub type ConnId = u64;

/// One connection's queue of outgoing messages, bounded. Empty, it holds no
/// buffer: it is kept by every idle connection, so it is a few dozen bytes.
///
/// It has one reader, the connection's task, so the task's waker sits in the
/// queue's own lock: waiting takes no list of waiters (as a `Notify` would,
/// with a lock of its own to join it and another to leave it on every turn
/// of the connection's loop), and only the first message after a wait wakes
/// the task.
///
/// When the connection's task gives it the socket ([`Outbox::attach`]), a
/// message pushed while nothing is queued and the task is not writing is
/// written to the socket at once, by the pushing thread, with no task woken
/// (one system call per connection, and nothing else, for a broadcast to idle
/// connections). The task says when it wakes for anything else
/// ([`Outbox::hold`]: a frame, a finished call, the heartbeat), so that
/// nothing written here can overtake what it is about to write, and from
/// then, or from taking a message, until it waits here again with nothing to
/// take, nothing is written from here: the two never write at once nor out
/// of order. What such a write leaves unwritten of its frame (a full socket
/// buffer) is kept for the task, which writes it before anything else.
///
/// Such a write is a system call made under this outbox's lock, and by
/// [`Hub::deliver`] under the hub's read lock: a publisher on another thread
/// (the JavaScript engine's, or a bus's) makes connections that register,
/// leave or change channels meanwhile wait for the whole broadcast.
pub struct Outbox {
    state: Mutex<OutboxState>,
    capacity: usize,
}

struct OutboxState {
    queue: VecDeque<Utf8Bytes>,
    closed: Option<Closed>,
    /// The reader waiting for a message, if it is.
    waiting: Option<Waker>,
    /// The connection's socket, while messages may be written to it here.
    socket: Option<Attached>,
    /// The task holds the outbox (it took a message, or woke for something
    /// else, see [`Outbox::hold`]) and has not waited here since with
    /// nothing to take.
    busy: bool,
    /// The end of a frame written here in part, for the task to write first.
    rest: Option<Bytes>,
}

/// A socket an outbox may write to: its descriptor, kept open by the
/// writing half held beside it.
///
/// The send goes to the descriptor, read from here: reaching it through
/// the writing half would read two more places in memory per connection
/// (the half, then the stream it shares), each a cache miss when a
/// broadcast visits thousands of connections, which was most of a
/// broadcast's time in user space.
///
/// Off Unix, where descriptors are not at hand, the send goes through the
/// half (`try_write`, which also consults the runtime's readiness record).
struct Attached {
    #[cfg(unix)]
    fd: std::os::fd::RawFd,
    #[cfg_attr(unix, expect(dead_code, reason = "held to keep the descriptor open"))]
    socket: Arc<OwnedWriteHalf>,
}

impl Attached {
    fn new(socket: Arc<OwnedWriteHalf>) -> Attached {
        #[cfg(unix)]
        let fd = {
            use std::os::fd::AsRawFd;
            (*socket).as_ref().as_raw_fd()
        };
        Attached {
            #[cfg(unix)]
            fd,
            socket,
        }
    }

    /// Writes what the socket takes of `frame` now, without waiting. The
    /// descriptor is open: `socket` holds its writing half.
    fn send(&self, frame: &[u8]) -> std::io::Result<usize> {
        #[cfg(unix)]
        {
            let flags = nix::sys::socket::MsgFlags::from_bits_retain(NO_SIGNAL);
            nix::sys::socket::send(self.fd, frame, flags).map_err(std::io::Error::from)
        }
        #[cfg(not(unix))]
        {
            self.socket.try_write(frame)
        }
    }
}

/// Why an outbox closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Its queue filled up (the client reads too slowly), or its connection left the hub.
    Dropped,
    /// The server is shutting down.
    Shutdown,
}

/// Send flags: a peer gone is an error, never a SIGPIPE (a program that
/// embeds the server need not ignore the signal). Other Unixes have no such
/// flag: there a program that embeds the server should ignore SIGPIPE, as
/// Rust programs do by default.
#[cfg(any(target_os = "linux", target_os = "android"))]
const NO_SIGNAL: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
const NO_SIGNAL: libc::c_int = 0;

/// A message for one or more outboxes; framed for the socket (once) when
/// the first outbox writes it there.
pub struct Outgoing {
    text: Utf8Bytes,
    frame: std::cell::OnceCell<Bytes>,
}

impl Outgoing {
    /// A message of this text.
    pub fn new(text: Utf8Bytes) -> Outgoing {
        Outgoing { text, frame: std::cell::OnceCell::new() }
    }

    fn frame(&self) -> &Bytes {
        self.frame.get_or_init(|| crate::ws::socket::text_frame(self.text.as_str()))
    }
}

impl Outbox {
    /// An open, empty outbox holding at most `capacity` messages.
    pub fn new(capacity: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            state: Mutex::new(OutboxState {
                queue: VecDeque::new(),
                closed: None,
                waiting: None,
                socket: None,
                busy: false,
                rest: None,
            }),
            capacity: capacity.max(1),
        })
    }

    /// Queues a message; `false` when the outbox is full or closed.
    pub fn push(&self, text: Utf8Bytes) -> bool {
        self.send(&Outgoing::new(text))
    }

    /// Sends a message: writes it to the socket if it can go at once (see
    /// [`Outbox`]), or queues it; `false` when the outbox is full or closed.
    pub fn send(&self, message: &Outgoing) -> bool {
        let mut state = self.state.lock().expect("outbox lock");
        if state.closed.is_some() || state.queue.len() >= self.capacity {
            return false;
        }
        if state.queue.is_empty()
            && !state.busy
            && state.rest.is_none()
            && let Some(socket) = &state.socket
        {
            let frame = message.frame();
            // Sent on the descriptor, past the runtime's record of whether
            // the socket is writable (which would cost a look at one more
            // place in memory per connection): a socket that is full says
            // so, and the task's own write then finds it so too.
            match socket.send(frame) {
                Ok(n) if n == frame.len() => return true,
                Ok(n) => state.rest = Some(frame.slice(n..)),
                // Not writable now, or failed (which the task will find on
                // its own): queued for the task.
                Err(_) => state.queue.push_back(message.text.clone()),
            }
        } else {
            state.queue.push_back(message.text.clone());
        }
        let waiting = state.waiting.take();
        drop(state);
        if let Some(reader) = waiting {
            reader.wake();
        }
        true
    }

    /// Closes the outbox: what is queued is still delivered, then
    /// [`Outbox::pop`] says why it closed. The first reason given stays.
    pub fn close(&self, why: Closed) {
        let mut state = self.state.lock().expect("outbox lock");
        state.closed.get_or_insert(why);
        let waiting = state.waiting.take();
        drop(state);
        if let Some(reader) = waiting {
            reader.wake();
        }
    }

    /// Why it closed, if it did.
    pub fn closed(&self) -> Option<Closed> {
        self.state.lock().expect("outbox lock").closed
    }

    /// The next message, waiting for one; once closed and drained, why it
    /// closed. `None`: a frame written to the socket here is unfinished: the
    /// reader takes its rest with [`Outbox::hold`] and writes it first.
    /// Cancel-safe: a message is only taken when this returns it.
    pub async fn pop(&self) -> Result<Option<Utf8Bytes>, Closed> {
        std::future::poll_fn(|cx| self.poll_pop(cx)).await
    }

    /// [`Outbox::pop`] as a poll: when nothing is queued, the task of `cx`
    /// is woken by the next message or by the close. For the outbox's one
    /// reader: a second task polling it takes the first one's place.
    pub fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Result<Option<Utf8Bytes>, Closed>> {
        let mut state = self.state.lock().expect("outbox lock");
        if state.rest.is_some() {
            return Poll::Ready(Ok(None));
        }
        if let Some(text) = state.take() {
            return Poll::Ready(Ok(Some(text)));
        }
        if let Some(why) = state.closed {
            return Poll::Ready(Err(why));
        }
        match &mut state.waiting {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waiting => *waiting = Some(cx.waker().clone()),
        }
        // The reader waits with nothing to write (it writes what it took,
        // and what it wants to, before it waits).
        state.busy = false;
        Poll::Pending
    }

    /// Takes a message if one is queued, without waiting (a closed outbox
    /// says why at the next [`Outbox::pop`]).
    pub fn try_pop(&self) -> Option<Utf8Bytes> {
        self.state.lock().expect("outbox lock").take()
    }

    /// From now on, messages may be written to this socket from
    /// [`Outbox::send`], between the reader's writes.
    pub(crate) fn attach(&self, socket: Arc<OwnedWriteHalf>) {
        self.state.lock().expect("outbox lock").socket = Some(Attached::new(socket));
    }

    /// No more writes to the socket from here (the connection is ending):
    /// gives it back, with what is left of a frame written in part, which
    /// goes before anything else.
    pub(crate) fn detach(&self) -> Option<Bytes> {
        let mut state = self.state.lock().expect("outbox lock");
        state.socket = None;
        state.rest.take()
    }

    /// The reader woke for something else than a message here, and will
    /// write: nothing is written from here until it waits again
    /// ([`Outbox::poll_pop`]). Gives what is left of a frame written in part,
    /// which goes before anything else.
    pub(crate) fn hold(&self) -> Option<Bytes> {
        let mut state = self.state.lock().expect("outbox lock");
        state.busy = true;
        state.rest.take()
    }
}

impl OutboxState {
    /// The next message; an emptied queue gives back the room a burst took
    /// (an idle connection keeps a small one). The reader holds it until it
    /// is written, so nothing may be written past it meanwhile.
    fn take(&mut self) -> Option<Utf8Bytes> {
        let text = self.queue.pop_front()?;
        self.busy = true;
        if self.queue.is_empty() && self.queue.capacity() > 64 {
            self.queue.shrink_to(8);
        }
        Some(text)
    }
}

struct Conn {
    tx: Arc<Outbox>,
    state: Arc<Mutex<Session>>,
    session: String,
    user: Option<String>,
    /// In order (as the session's set gives them), to be searched.
    channels: Vec<String>,
    /// The session version the indexes above reflect.
    version: u64,
}

/// Connections by number, and indexes of their numbers.
///
/// Connections are kept by number in an ordered map, and each index's set
/// of numbers is ordered too (only the indexes' keys, sessions, users and
/// channels, are hashed): a broadcast visits connections in the order they
/// registered, and a delivery to a user or a channel visits its
/// connections in that order. The kernel's objects of each socket (its descriptor's entry,
/// its file, its socket, the peer's on loopback) were mostly allocated in the
/// order connections came, so visiting them in that order reads memory
/// nearly in sequence; a hash table's order, which is random, made the
/// kernel's part of a broadcast to 10,000 clients a fifth slower (a
/// broadcast is one send per connection, and little else).
#[derive(Default)]
struct Tables {
    conns: BTreeMap<ConnId, Conn>,
    by_session: HashMap<String, Ids>,
    by_user: HashMap<String, Ids>,
    by_channel: HashMap<String, Ids>,
}

type Ids = BTreeSet<ConnId>;

impl Tables {
    fn index(map: &mut HashMap<String, Ids>, key: &str, id: ConnId) {
        map.entry(key.to_string()).or_default().insert(id);
    }

    fn unindex(map: &mut HashMap<String, Ids>, key: &str, id: ConnId) {
        if let Some(set) = map.get_mut(key) {
            set.remove(&id);
            if set.is_empty() {
                map.remove(key);
            }
        }
    }

    fn remove(&mut self, id: ConnId) -> bool {
        let Some(conn) = self.conns.remove(&id) else { return false };
        conn.tx.close(Closed::Dropped);
        Self::unindex(&mut self.by_session, &conn.session, id);
        if let Some(user) = &conn.user {
            Self::unindex(&mut self.by_user, user, id);
        }
        for channel in &conn.channels {
            Self::unindex(&mut self.by_channel, channel, id);
        }
        true
    }
}

/// This process's connections.
#[derive(Default)]
pub struct Hub {
    tables: RwLock<Tables>,
    next: AtomicU64,
    stopping: AtomicBool,
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Hub {
        Hub::default()
    }

    /// Adds a connection of a session; events for it go to `tx`. `state` is
    /// the connection's copy of its session, kept up to date by [`Hub::refresh`].
    pub fn register(&self, state: Arc<Mutex<Session>>, tx: Arc<Outbox>) -> ConnId {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let session_id = state.lock().expect("session lock").id.clone();
        let mut t = self.tables.write().expect("hub lock");
        // The session may have changed through another of its connections
        // since this one read it: start from the newest copy here.
        let newest = t.by_session.get(&session_id).and_then(|ids| {
            let others = ids.iter().filter_map(|other| t.conns.get(other));
            others.max_by_key(|c| c.state.lock().expect("session lock").version)
        });
        let session = {
            let mut mine = state.lock().expect("session lock");
            if let Some(other) = newest {
                let theirs = other.state.lock().expect("session lock");
                if theirs.version > mine.version {
                    *mine = theirs.clone();
                }
            }
            mine.clone()
        };
        Tables::index(&mut t.by_session, &session.id, id);
        if let Some(user) = &session.user_id {
            Tables::index(&mut t.by_user, user, id);
        }
        for channel in &session.channels {
            Tables::index(&mut t.by_channel, channel, id);
        }
        let conn = Conn {
            tx,
            state,
            session: session.id.clone(),
            user: session.user_id.clone(),
            channels: session.channels.iter().cloned().collect(),
            version: session.version,
        };
        t.conns.insert(id, conn);
        if self.stopping.load(Ordering::SeqCst) {
            t.conns[&id].tx.close(Closed::Shutdown);
        }
        id
    }

    /// The server is shutting down: closes every connection's outbox, and
    /// those of connections registered from now on, with [`Closed::Shutdown`].
    pub fn shut_down(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for conn in self.tables.read().expect("hub lock").conns.values() {
            conn.tx.close(Closed::Shutdown);
        }
    }

    /// Removes a connection (it closed).
    pub fn unregister(&self, id: ConnId) {
        self.tables.write().expect("hub lock").remove(id);
    }

    /// Whether a session has a connection here.
    pub fn has_session(&self, session_id: &str) -> bool {
        self.tables.read().expect("hub lock").by_session.contains_key(session_id)
    }

    /// Whether a user has a connection here.
    pub fn has_user(&self, user_id: &str) -> bool {
        self.tables.read().expect("hub lock").by_user.contains_key(user_id)
    }

    /// How many connections are here.
    pub fn len(&self) -> usize {
        self.tables.read().expect("hub lock").conns.len()
    }

    /// Whether there are no connections.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Brings the session's local connections up to date with `session`
    /// (after a sign-in, sign-out or channel change). A copy older than what
    /// a connection already reflects changes nothing.
    pub fn refresh(&self, session: &Session) {
        let mut guard = self.tables.write().expect("hub lock");
        let t = &mut *guard;
        let ids: Vec<ConnId> = t.by_session.get(&session.id).map(|s| s.iter().copied().collect()).unwrap_or_default();
        for id in ids {
            let Some(conn) = t.conns.get_mut(&id) else { continue };
            if session.version <= conn.version {
                continue;
            }
            conn.version = session.version;
            if conn.user != session.user_id {
                if let Some(old) = &conn.user {
                    Tables::unindex(&mut t.by_user, old, id);
                }
                if let Some(new) = &session.user_id {
                    Tables::index(&mut t.by_user, new, id);
                }
                conn.user = session.user_id.clone();
            }
            for old in &conn.channels {
                if !session.channels.contains(old) {
                    Tables::unindex(&mut t.by_channel, old, id);
                }
            }
            for new in &session.channels {
                if conn.channels.binary_search(new).is_err() {
                    Tables::index(&mut t.by_channel, new, id);
                }
            }
            conn.channels = session.channels.iter().cloned().collect();
            // The connection whose change this is shares its copy with the
            // handle that made it, which is already up to date.
            let mut state = conn.state.lock().expect("session lock");
            if session.version > state.version {
                *state = session.clone();
            }
        }
    }

    /// Delivers an event to the local connections it is for; returns how many
    /// received it. A connection whose queue is full is dropped from the hub,
    /// which closes it (it reads too slowly).
    pub fn deliver(&self, published: &Published) -> usize {
        let mut slow = Vec::new();
        let mut sent = 0;
        {
            let t = self.tables.read().expect("hub lock");
            let mut send = |id: ConnId, conn: Option<&Conn>, message: &Outgoing| {
                if let Some(conn) = conn {
                    if conn.tx.send(message) {
                        sent += 1;
                    } else {
                        slow.push(id);
                    }
                }
            };
            let conn = |id: ConnId| t.conns.get(&id);
            match &published.target {
                Target::Broadcast => {
                    let text = Outgoing::new(event_text(&published.event, &published.data, None));
                    for (&id, conn) in &t.conns {
                        send(id, Some(conn), &text);
                    }
                }
                Target::User(user) => {
                    let text = Outgoing::new(event_text(&published.event, &published.data, None));
                    for &id in t.by_user.get(user).into_iter().flatten() {
                        send(id, conn(id), &text);
                    }
                }
                Target::Users(users) => {
                    let text = Outgoing::new(event_text(&published.event, &published.data, None));
                    let mut seen = HashSet::new();
                    for user in users {
                        for &id in t.by_user.get(user).into_iter().flatten() {
                            if seen.insert(id) {
                                send(id, conn(id), &text);
                            }
                        }
                    }
                }
                Target::Channels(channels) => {
                    let mut seen = HashSet::new();
                    for channel in channels {
                        let Some(ids) = t.by_channel.get(channel) else { continue };
                        let text = Outgoing::new(event_text(&published.event, &published.data, Some(channel)));
                        for &id in ids {
                            if seen.insert(id) {
                                send(id, conn(id), &text);
                            }
                        }
                    }
                }
            }
        }
        if !slow.is_empty() {
            let mut t = self.tables.write().expect("hub lock");
            for id in slow {
                t.remove(id);
            }
        }
        sent
    }
}

/// Carries published events to every instance's hub.
pub trait Bus: Send + Sync + 'static {
    /// Publishes one event.
    fn publish(&self, published: Published) -> BoxFuture<'_, Result<(), StoreError>>;
}

/// One instance: events go straight to the local hub.
pub struct MemoryBus {
    hub: Arc<Hub>,
}

impl MemoryBus {
    /// A bus delivering to `hub`.
    pub fn new(hub: Arc<Hub>) -> MemoryBus {
        MemoryBus { hub }
    }
}

impl Bus for MemoryBus {
    fn publish(&self, published: Published) -> BoxFuture<'_, Result<(), StoreError>> {
        self.hub.deliver(&published);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// `SS.publish`: sends events to users, channels or everyone.
#[derive(Clone)]
pub struct Publisher {
    bus: Arc<dyn Bus>,
    log_level: u8,
}

impl Publisher {
    /// A publisher over `bus`, logging nothing.
    pub fn new(bus: Arc<dyn Bus>) -> Publisher {
        Publisher { bus, log_level: 0 }
    }

    /// The same, logging what it publishes as `log.level` says (see
    /// [`crate::Config::log_level`]): from 2, `=> event to whom`; from 3,
    /// with the data.
    pub fn logging(self, level: u8) -> Publisher {
        Publisher { log_level: level, ..self }
    }

    /// Publishes `event` with `data` to `target`.
    pub async fn publish(&self, target: Target, event: &str, data: Value) -> Result<(), StoreError> {
        if self.log_level >= 2 {
            let to = match &target {
                Target::User(user) => format!("user {user}"),
                Target::Users(users) => format!("users {}", users.join(", ")),
                Target::Broadcast => "everyone".to_string(),
                Target::Channels(channels) => format!("channel {}", channels.join(", ")),
            };
            let mut line = format!("ssrun: => {event} to {to}");
            if self.log_level >= 3 {
                line.push(' ');
                line.push_str(&crate::actions::truncate(&data.to_string(), 200));
            }
            crate::outln!("{line}");
        }
        self.bus.publish(Published { target, event: event.to_string(), data }).await
    }

    /// To every connection of one user (`SS.publish.user`).
    pub async fn user(&self, user_id: &str, event: &str, data: Value) -> Result<(), StoreError> {
        self.publish(Target::User(user_id.to_string()), event, data).await
    }

    /// To every connection of several users (`SS.publish.users`).
    pub async fn users(&self, user_ids: &[&str], event: &str, data: Value) -> Result<(), StoreError> {
        self.publish(Target::Users(user_ids.iter().map(|s| s.to_string()).collect()), event, data).await
    }

    /// To everyone connected (`SS.publish.broadcast`).
    pub async fn broadcast(&self, event: &str, data: Value) -> Result<(), StoreError> {
        self.publish(Target::Broadcast, event, data).await
    }

    /// To the sessions that joined any of `channels` (`SS.publish.channel`).
    pub async fn channel(&self, channels: &[&str], event: &str, data: Value) -> Result<(), StoreError> {
        self.publish(Target::Channels(channels.iter().map(|s| s.to_string()).collect()), event, data).await
    }
}

/// Users online, from heartbeats.
pub trait Presence: Send + Sync + 'static {
    /// `user_id` was seen now.
    fn seen<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
    /// `user_id` signed out.
    fn gone<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The users seen within the offline period, sorted.
    fn online(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;
    /// Forgets users not seen within the offline period; returns how many.
    fn purge(&self) -> BoxFuture<'_, Result<usize, StoreError>>;
}

/// Users online in this process's memory.
pub struct MemoryPresence {
    seen: Mutex<HashMap<String, Instant>>,
    offline_after: Duration,
}

impl MemoryPresence {
    /// Users are offline `offline_after` their last heartbeat.
    pub fn new(offline_after: Duration) -> MemoryPresence {
        MemoryPresence { seen: Mutex::new(HashMap::new()), offline_after }
    }
}

impl Presence for MemoryPresence {
    fn seen<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.seen.lock().expect("presence lock").insert(user_id.to_string(), Instant::now());
        Box::pin(std::future::ready(Ok(())))
    }

    fn gone<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.seen.lock().expect("presence lock").remove(user_id);
        Box::pin(std::future::ready(Ok(())))
    }

    fn online(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        let seen = self.seen.lock().expect("presence lock");
        let mut users: Vec<String> =
            seen.iter().filter(|(_, at)| at.elapsed() < self.offline_after).map(|(u, _)| u.clone()).collect();
        users.sort();
        Box::pin(std::future::ready(Ok(users)))
    }

    fn purge(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        let mut seen = self.seen.lock().expect("presence lock");
        let before = seen.len();
        seen.retain(|_, at| at.elapsed() < self.offline_after);
        Box::pin(std::future::ready(Ok(before - seen.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn state(id: &str, user: Option<&str>, channels: &[&str]) -> Arc<Mutex<Session>> {
        Arc::new(Mutex::new(session(id, user, channels)))
    }

    fn session(id: &str, user: Option<&str>, channels: &[&str]) -> Session {
        Session {
            user_id: user.map(Into::into),
            channels: channels.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
            ..Session::new(id.into(), 0)
        }
    }

    fn drain(rx: &Outbox) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(m) = rx.try_pop() {
            out.push(m.to_string());
        }
        out
    }

    #[test]
    fn delivers_to_users_channels_and_everyone() {
        let hub = Hub::new();
        let (a, b) = (Outbox::new(8), Outbox::new(8));
        hub.register(state("s1", Some("ann"), &["red"]), a.clone());
        hub.register(state("s2", None, &["red", "blue"]), b.clone());
        let publish = |target, event: &str| hub.deliver(&Published { target, event: event.into(), data: 1.into() });
        assert_eq!(publish(Target::User("ann".into()), "u"), 1);
        assert_eq!(publish(Target::Channels(vec!["blue".into(), "red".into()]), "c"), 2);
        assert_eq!(publish(Target::Broadcast, "b"), 2);
        assert_eq!(publish(Target::Users(vec!["bob".into()]), "none"), 0);
        assert_eq!(
            drain(&a),
            [
                r#"{"type":"event","event":"u","data":1}"#,
                r#"{"type":"event","event":"c","data":1,"channel":"red"}"#,
                r#"{"type":"event","event":"b","data":1}"#
            ]
        );
        assert_eq!(
            drain(&b),
            [r#"{"type":"event","event":"c","data":1,"channel":"blue"}"#, r#"{"type":"event","event":"b","data":1}"#]
        );
    }

    #[test]
    fn refresh_moves_connections_between_users_and_channels() {
        let hub = Hub::new();
        let rx = Outbox::new(8);
        let shared = state("s1", None, &["red"]);
        let id = hub.register(shared.clone(), rx.clone());
        hub.refresh(&Session { version: 1, ..session("s1", Some("ann"), &["blue"]) });
        assert_eq!(shared.lock().unwrap().user_id.as_deref(), Some("ann"));
        let publish = |target| hub.deliver(&Published { target, event: "e".into(), data: Value::Null });
        assert_eq!(publish(Target::User("ann".into())), 1);
        assert_eq!(publish(Target::Channels(vec!["red".into()])), 0);
        assert_eq!(publish(Target::Channels(vec!["blue".into()])), 1);
        assert_eq!(drain(&rx).len(), 2);
        hub.unregister(id);
        assert!(hub.is_empty());
        assert_eq!(publish(Target::Broadcast), 0);
    }

    #[test]
    fn an_older_copy_of_a_session_never_replaces_a_newer_one() {
        let hub = Hub::new();
        let rx = Outbox::new(8);
        let shared = state("s1", None, &[]);
        hub.register(shared.clone(), rx.clone());
        // Two changes made through two connections come back out of order.
        let second = Session { version: 2, ..session("s1", None, &["a", "b"]) };
        let first = Session { version: 1, ..session("s1", None, &["a"]) };
        hub.refresh(&second);
        hub.refresh(&first);
        assert_eq!(shared.lock().unwrap().version, 2);
        let publish = |channel: &str| {
            hub.deliver(&Published {
                target: Target::Channels(vec![channel.into()]),
                event: "e".into(),
                data: Value::Null,
            })
        };
        assert_eq!(publish("b"), 1, "the connection is still in the channel the newer copy added");

        // A connection that read the session before those changes starts from the newest copy here.
        let late = state("s1", None, &[]);
        hub.register(late.clone(), Outbox::new(8));
        assert_eq!(late.lock().unwrap().version, 2);
        assert_eq!(publish("b"), 2);
    }

    #[test]
    fn a_full_queue_drops_the_slow_connection() {
        let hub = Hub::new();
        let rx = Outbox::new(1);
        hub.register(state("s1", None, &[]), rx.clone());
        let publish = || hub.deliver(&Published { target: Target::Broadcast, event: "e".into(), data: Value::Null });
        assert_eq!(publish(), 1);
        assert_eq!(publish(), 0);
        assert!(hub.is_empty());
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert!(runtime.block_on(rx.pop()).is_ok(), "what was queued is still delivered");
        assert_eq!(runtime.block_on(rx.pop()), Err(Closed::Dropped), "then the outbox ends");
    }

    #[test]
    fn shutting_down_closes_every_outbox_and_later_ones() {
        let hub = Hub::new();
        let (a, b) = (Outbox::new(8), Outbox::new(8));
        hub.register(state("s1", None, &[]), a.clone());
        assert_eq!(a.closed(), None);
        hub.shut_down();
        hub.register(state("s2", None, &[]), b.clone());
        assert_eq!(a.closed(), Some(Closed::Shutdown));
        assert_eq!(b.closed(), Some(Closed::Shutdown), "a connection that arrives during the shutdown");
        a.close(Closed::Dropped);
        assert_eq!(a.closed(), Some(Closed::Shutdown), "the first reason stays");
    }

    #[test]
    fn a_waiting_reader_is_woken_by_a_message_or_the_close_from_another_thread() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let outbox = Outbox::new(8);
        let later = |outbox: Arc<Outbox>, act: fn(&Outbox)| {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                act(&outbox);
            })
        };
        // The wake, not a later look: a reader left asleep would see the
        // message only when the timer, polling the pop after it, looks again.
        let within = |future| {
            runtime.block_on(async {
                tokio::select! {
                    biased;
                    _ = tokio::time::sleep(Duration::from_secs(5)) => Err("not woken within 5 s"),
                    popped = future => Ok(popped),
                }
            })
        };

        let writer = later(outbox.clone(), |o| assert!(o.push(Utf8Bytes::from_static("one"))));
        assert_eq!(within(outbox.pop()).expect("woken by the push").unwrap().unwrap().as_str(), "one");
        writer.join().unwrap();

        // Only the first message after a wait wakes the reader; the others are still read.
        let writer = later(outbox.clone(), |o| {
            for text in ["two", "three"] {
                assert!(o.push(Utf8Bytes::from_static(text)));
            }
        });
        assert_eq!(within(outbox.pop()).expect("woken by the push").unwrap().unwrap().as_str(), "two");
        writer.join().unwrap();
        assert_eq!(outbox.try_pop().unwrap().as_str(), "three");

        // A reader that polled from one task and then another is woken in the second.
        let waker_of_a_finished_task = runtime.block_on(async {
            tokio::spawn(async { std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await }).await.unwrap()
        });
        assert!(outbox.poll_pop(&mut Context::from_waker(&waker_of_a_finished_task)).is_pending());
        let closer = later(outbox.clone(), |o| o.close(Closed::Dropped));
        assert_eq!(within(outbox.pop()).expect("woken by the close"), Err(Closed::Dropped));
        closer.join().unwrap();
    }

    /// Frames read from `client` until `n` have come, as their payloads.
    async fn frames(client: &mut tokio::net::TcpStream, n: usize) -> Vec<String> {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        for _ in 0..n {
            let mut head = [0u8; 2];
            client.read_exact(&mut head).await.unwrap();
            assert_eq!(head[0], 0x81, "a final text frame");
            let len = match head[1] {
                126 => client.read_u16().await.unwrap() as usize,
                127 => client.read_u64().await.unwrap() as usize,
                len => len as usize,
            };
            let mut payload = vec![0u8; len];
            client.read_exact(&mut payload).await.unwrap();
            got.push(String::from_utf8(payload).unwrap());
        }
        got
    }

    #[tokio::test]
    async fn messages_go_straight_to_the_socket_only_when_nothing_is_before_them() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_read, writer) = server.into_split();
        let writer = Arc::new(writer);
        writer.writable().await.unwrap();
        let outbox = Outbox::new(8);
        let text = |t: &str| Utf8Bytes::from(t.to_string());
        // The reader waits again, having written what it took.
        let waits = |outbox: &Outbox| {
            assert!(outbox.poll_pop(&mut Context::from_waker(std::task::Waker::noop())).is_pending());
        };

        assert!(outbox.push(text("queued before")));
        outbox.attach(writer.clone());
        assert!(outbox.push(text("behind the queue")));
        assert_eq!(drain(&outbox), ["queued before", "behind the queue"], "nothing jumps the queue");
        // The reader holds what it took until it waits again.
        assert!(outbox.push(text("while the reader holds two")));
        assert_eq!(drain(&outbox), ["while the reader holds two"]);
        waits(&outbox);
        assert!(outbox.push(text("straight")));
        assert!(outbox.try_pop().is_none(), "written to the socket, not queued");
        assert_eq!(frames(&mut client, 1).await, ["straight"]);
        assert_eq!(outbox.hold(), None);
        assert!(outbox.push(text("while the reader writes")));
        assert_eq!(drain(&outbox), ["while the reader writes"]);
        waits(&outbox);

        // A frame larger than the socket takes now: written in part, and the
        // reader is told to write the rest before anything else.
        let big = "x".repeat(32 << 20);
        assert!(outbox.push(text(&big)));
        assert!(outbox.push(text("after the big one")));
        assert_eq!(outbox.poll_pop(&mut Context::from_waker(std::task::Waker::noop())), Poll::Ready(Ok(None)));
        let rest = outbox.hold().expect("the rest of the frame");
        assert!(!rest.is_empty() && rest.len() < big.len());
        assert_eq!(drain(&outbox), ["after the big one"]);
        let reading = tokio::spawn(async move { frames(&mut client, 2).await });
        let mut out = rest.to_vec();
        out.extend_from_slice(&crate::ws::socket::text_frame("after the big one"));
        let mut left = &out[..];
        while !left.is_empty() {
            match writer.try_write(left) {
                Ok(n) => left = &left[n..],
                Err(_) => writer.writable().await.unwrap(),
            }
        }
        waits(&outbox);
        let got = reading.await.unwrap();
        assert!(got[0] == big, "the big frame arrives whole");
        assert_eq!(got[1], "after the big one");
        assert_eq!(outbox.detach(), None);
        assert_eq!(Arc::strong_count(&writer), 1, "the outbox gave the socket back");
    }

    #[test]
    fn presence_lists_recent_users() {
        let presence = MemoryPresence::new(Duration::from_secs(60));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            presence.seen("bob").await.unwrap();
            presence.seen("ann").await.unwrap();
            assert_eq!(presence.online().await.unwrap(), ["ann", "bob"]);
            presence.gone("bob").await.unwrap();
            assert_eq!(presence.online().await.unwrap(), ["ann"]);
            assert_eq!(presence.purge().await.unwrap(), 0);
        });
        let stale = MemoryPresence::new(Duration::ZERO);
        rt.block_on(async {
            stale.seen("ann").await.unwrap();
            assert!(stale.online().await.unwrap().is_empty());
            assert_eq!(stale.purge().await.unwrap(), 1);
        });
    }
}
