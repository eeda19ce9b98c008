//! Sessions: what the server remembers about one browser between
//! connections (its user and its channels), found by the `session_id` cookie.
//! The store is a trait so that a shared store can hold them across instances;
//! [`MemoryStore`] keeps them in this process.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;

use crate::pubsub::Hub;

/// A boxed future, for the store and bus traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store or bus failed (the shared store is unreachable, say).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// One session.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The id in the cookie: 192 random bits, base64url.
    pub id: String,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at: u64,
    /// The user it is signed in as.
    pub user_id: Option<String>,
    /// The channels it has joined.
    pub channels: BTreeSet<String>,
    /// How many changes the store has applied to it: of two copies, the one
    /// with the higher version is the newer.
    pub version: u64,
}

impl Session {
    /// A new session: nobody signed in, no channels, no changes yet.
    pub fn new(id: String, created_at: u64) -> Session {
        Session { id, created_at, user_id: None, channels: BTreeSet::new(), version: 0 }
    }
}

/// A change to one session.
#[derive(Debug, Clone)]
pub enum Change {
    /// Sign in as this user, or out (`None`).
    User(Option<String>),
    /// Join these channels.
    Subscribe(Vec<String>),
    /// Leave these channels.
    Unsubscribe(Vec<String>),
}

/// Where sessions live.
pub trait SessionStore: Send + Sync + 'static {
    /// Creates a session with a fresh id.
    fn create(&self) -> BoxFuture<'_, Result<Session, StoreError>>;
    /// The session with this id, if this store issued it and still has it.
    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Session>, StoreError>>;
    /// Applies a change and returns the session as it is now (`None` when it
    /// is gone). A change never gives a session another id: the runtime keeps
    /// a connection's session id for the connection's life.
    fn update<'a>(&'a self, id: &'a str, change: Change) -> BoxFuture<'a, Result<Option<Session>, StoreError>>;
}

/// A new session id: 192 bits from the operating system's generator.
pub fn new_id() -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the operating system's random generator works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `id` has the shape of an id this server issues (so other text is
/// never even looked up).
pub fn well_formed(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// How long a session whose cookie never came back is kept (its browser may
/// not keep cookies at all: a crawler, a script) while it has no connection.
pub const UNCONFIRMED_MAX_AGE: Duration = Duration::from_secs(3600);

/// How many sessions whose cookie never came back the store holds before it
/// forgets the least recently used of those without a connection: each
/// WebSocket handshake without a cookie makes one, and a script can make
/// them as fast as it can connect. 100,000 such sessions take about 27 MB.
pub const UNCONFIRMED_LIMIT: usize = 100_000;

/// How many sessions of any kind the store holds before it forgets the least
/// recently used without a connection (those whose cookie never came back
/// first): a script that sends the cookie back makes sessions that are kept
/// for `session_max_age`. A million take about 270 MB.
pub const SESSION_LIMIT: usize = 1_000_000;

/// How long a new or just used session is safe from being forgotten to make
/// room, longer than a WebSocket handshake takes to join the hub.
pub const ROOM_GRACE: Duration = Duration::from_secs(10);

struct Entry {
    session: Session,
    used: Instant,
    /// The cookie came back (or the session was changed): a real browser session.
    confirmed: bool,
}

/// Sessions in this process's memory: lost when it stops.
pub struct MemoryStore {
    sessions: Mutex<Sessions>,
    max_age: Duration,
    unconfirmed_limit: usize,
    session_limit: usize,
    grace: Duration,
    /// The hubs of the servers using this store, which say which sessions
    /// have a connection open.
    hubs: Mutex<Vec<Weak<Hub>>>,
}

#[derive(Default)]
struct Sessions {
    by_id: HashMap<String, Entry>,
    /// How many of them are not `confirmed`.
    unconfirmed: usize,
    /// Above this many unconfirmed sessions (or sessions in all), the next
    /// one made first makes room: the limit, or more when the last look
    /// found too few to forget (so that a crowd of open connections does not
    /// make every new session look through them all).
    unconfirmed_look_above: usize,
    all_look_above: usize,
}

impl Sessions {
    /// The session `id`, marked used now and confirmed (its cookie came
    /// back, or it is being changed).
    fn touch(&mut self, id: &str) -> Option<&mut Entry> {
        let entry = self.by_id.get_mut(id)?;
        entry.used = Instant::now();
        self.unconfirmed -= usize::from(!entry.confirmed);
        entry.confirmed = true;
        Some(entry)
    }

    /// Forgets the session `id`, keeping the count of unconfirmed ones.
    fn forget(&mut self, id: &str) {
        if let Some(entry) = self.by_id.remove(id) {
            self.unconfirmed -= usize::from(!entry.confirmed);
        }
    }
}

impl MemoryStore {
    /// An empty store that forgets sessions unused for `max_age`.
    pub fn new(max_age: Duration) -> MemoryStore {
        MemoryStore {
            sessions: Mutex::new(Sessions {
                unconfirmed_look_above: UNCONFIRMED_LIMIT,
                all_look_above: SESSION_LIMIT,
                ..Sessions::default()
            }),
            max_age,
            unconfirmed_limit: UNCONFIRMED_LIMIT,
            session_limit: SESSION_LIMIT,
            grace: ROOM_GRACE,
            hubs: Mutex::new(Vec::new()),
        }
    }

    /// The same, holding at most `unconfirmed` sessions whose cookie never
    /// came back and `all` sessions in all (see [`UNCONFIRMED_LIMIT`] and
    /// [`SESSION_LIMIT`]) beyond those with a connection, and sparing those
    /// used within `grace` (see [`ROOM_GRACE`]).
    pub fn with_limits(mut self, unconfirmed: usize, all: usize, grace: Duration) -> MemoryStore {
        (self.unconfirmed_limit, self.session_limit, self.grace) = (unconfirmed.max(1), all.max(1), grace);
        let sessions = self.sessions.get_mut().expect("session lock");
        (sessions.unconfirmed_look_above, sessions.all_look_above) = (self.unconfirmed_limit, self.session_limit);
        self
    }

    /// Makes the store ask `hub` which sessions have a connection open
    /// before it forgets any to make room (a server using the store does
    /// this for its hub; the store holds it weakly).
    pub fn watch(&self, hub: &Arc<Hub>) {
        let mut hubs = self.hubs.lock().expect("hub list lock");
        hubs.retain(|h| h.strong_count() > 0);
        hubs.push(Arc::downgrade(hub));
    }

    /// The watched hubs that are still there: ask `hub.has_session(id)` of
    /// each to know whether a session has a connection open.
    fn live_hubs(&self) -> Vec<Arc<Hub>> {
        self.hubs.lock().expect("hub list lock").iter().filter_map(Weak::upgrade).collect()
    }

    /// Forgets the least recently used sessions without a connection (of
    /// those whose cookie never came back, or of all, those first), down to
    /// nine tenths of the limit, sparing those used within the grace period.
    fn make_room(&self, sessions: &mut Sessions, all: bool) {
        let hubs = self.live_hubs();
        let grace = self.grace;
        let mut idle: Vec<(bool, Instant, &String)> = sessions
            .by_id
            .iter()
            .filter(|(id, e)| {
                (all || !e.confirmed) && e.used.elapsed() >= grace && !hubs.iter().any(|hub| hub.has_session(id))
            })
            .map(|(id, e)| (e.confirmed, e.used, id))
            .collect();
        let (count, limit) = if all {
            (sessions.by_id.len(), self.session_limit)
        } else {
            (sessions.unconfirmed, self.unconfirmed_limit)
        };
        let excess = count.saturating_sub(limit - limit / 10).min(idle.len());
        if excess > 0 && excess < idle.len() {
            idle.select_nth_unstable(excess);
        }
        let gone: Vec<String> = idle.into_iter().take(excess).map(|(_, _, id)| id.clone()).collect();
        for id in &gone {
            sessions.forget(id);
        }
        let look_above = limit.max(count - excess + limit / 10);
        if all {
            sessions.all_look_above = look_above;
        } else {
            sessions.unconfirmed_look_above = look_above;
        }
    }

    /// Whether `entry` has gone unused for longer than it is kept: the
    /// maximum age, or [`UNCONFIRMED_MAX_AGE`] when its cookie never came back.
    fn outlived(&self, entry: &Entry) -> bool {
        let limit = if entry.confirmed { self.max_age } else { self.max_age.min(UNCONFIRMED_MAX_AGE) };
        entry.used.elapsed() >= limit
    }

    /// Forgets sessions unused for longer than the maximum age, and sessions
    /// whose cookie never came back after [`UNCONFIRMED_MAX_AGE`], but not
    /// those with a connection open on a watched hub ([`MemoryStore::watch`]).
    /// Returns how many went. (Between purges, [`SessionStore::load`] does
    /// not give out such a session either.)
    pub fn purge(&self) -> usize {
        let hubs = self.live_hubs();
        let live = |id: &str| hubs.iter().any(|hub| hub.has_session(id));
        let mut sessions = self.sessions.lock().expect("session lock");
        let sessions = &mut *sessions;
        let before = sessions.by_id.len();
        let mut unconfirmed_gone = 0;
        sessions.by_id.retain(|id, e| {
            let keep = !self.outlived(e) || live(id);
            unconfirmed_gone += usize::from(!keep && !e.confirmed);
            keep
        });
        sessions.unconfirmed -= unconfirmed_gone;
        before - sessions.by_id.len()
    }

    /// How many sessions are held.
    pub fn len(&self) -> usize {
        self.sessions.lock().expect("session lock").by_id.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SessionStore for MemoryStore {
    fn create(&self) -> BoxFuture<'_, Result<Session, StoreError>> {
        let session = Session::new(new_id(), now_ms());
        let entry = Entry { session: session.clone(), used: Instant::now(), confirmed: false };
        let mut sessions = self.sessions.lock().expect("session lock");
        if sessions.unconfirmed >= sessions.unconfirmed_look_above {
            self.make_room(&mut sessions, false);
        }
        if sessions.by_id.len() >= sessions.all_look_above {
            self.make_room(&mut sessions, true);
        }
        sessions.by_id.insert(session.id.clone(), entry);
        sessions.unconfirmed += 1;
        Box::pin(std::future::ready(Ok(session)))
    }

    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Session>, StoreError>> {
        let mut sessions = self.sessions.lock().expect("session lock");
        // A cookie kept past the session's age finds nothing, as it would
        // after the next purge (unless a connection still uses the session).
        if let Some(entry) = sessions.by_id.get(id)
            && self.outlived(entry)
            && !self.live_hubs().iter().any(|hub| hub.has_session(id))
        {
            sessions.forget(id);
            return Box::pin(std::future::ready(Ok(None)));
        }
        let found = sessions.touch(id).map(|e| e.session.clone());
        Box::pin(std::future::ready(Ok(found)))
    }

    fn update<'a>(&'a self, id: &'a str, change: Change) -> BoxFuture<'a, Result<Option<Session>, StoreError>> {
        let mut sessions = self.sessions.lock().expect("session lock");
        let found = sessions.touch(id).map(|e| {
            let session = &mut e.session;
            session.version += 1;
            match change {
                Change::User(user) => session.user_id = user,
                Change::Subscribe(names) => session.channels.extend(names),
                Change::Unsubscribe(names) => {
                    for name in &names {
                        session.channels.remove(name);
                    }
                }
            }
            session.clone()
        });
        Box::pin(std::future::ready(Ok(found)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<T>(f: BoxFuture<'_, T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn ids_are_long_random_and_recognised() {
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert!(well_formed(&a), "{a}");
        assert!(!well_formed("1234"));
        assert!(!well_formed(&format!("{}!", &a[..31])));
    }

    #[test]
    fn memory_store_keeps_changes_and_never_adopts_unknown_ids() {
        let store = MemoryStore::new(Duration::from_secs(60));
        let s = block(store.create()).unwrap();
        assert_eq!(block(store.load(&s.id)).unwrap().unwrap(), s);
        assert_eq!(block(store.load(&new_id())).unwrap(), None);
        let s2 = block(store.update(&s.id, Change::User(Some("ann".into())))).unwrap().unwrap();
        assert_eq!(s2.user_id.as_deref(), Some("ann"));
        assert_eq!((s.version, s2.version), (0, 1), "each change is a new version");
        block(store.update(&s.id, Change::Subscribe(vec!["a".into(), "b".into()]))).unwrap();
        let s3 = block(store.update(&s.id, Change::Unsubscribe(vec!["a".into()]))).unwrap().unwrap();
        assert_eq!(s3.channels.iter().collect::<Vec<_>>(), ["b"]);
        assert_eq!(block(store.update("nope", Change::User(None))).unwrap(), None);
    }

    #[test]
    fn memory_store_holds_a_bounded_number_of_sessions_whose_cookie_never_came_back() {
        let store = MemoryStore::new(Duration::from_secs(60)).with_limits(10, 1000, Duration::ZERO);
        let hub = Arc::new(Hub::new());
        store.watch(&hub);
        let confirmed: Vec<Session> = (0..5)
            .map(|_| {
                let s = block(store.create()).unwrap();
                block(store.load(&s.id)).unwrap().expect("a new session is there");
                s
            })
            .collect();
        let connected = block(store.create()).unwrap();
        let _connection = hub.register(Arc::new(Mutex::new(connected.clone())), crate::pubsub::Outbox::new(8));
        let first: Vec<Session> = (0..9).map(|_| block(store.create()).unwrap()).collect();
        assert_eq!(store.len(), 15, "up to the limit, every session is kept");
        std::thread::sleep(Duration::from_millis(2));
        let later: Vec<Session> = (0..40).map(|_| block(store.create()).unwrap()).collect();
        let held = |s: &Session| block(store.load(&s.id)).unwrap().is_some();
        // Checked before `held` confirms anything.
        let unconfirmed = store.len() - confirmed.len();
        assert!(unconfirmed <= 10, "{unconfirmed} sessions whose cookie never came back are held");
        assert!(confirmed.iter().all(held), "sessions whose cookie came back stay");
        assert!(held(&connected), "a session with a connection stays");
        assert!(held(later.last().unwrap()), "the newest stays");
        assert!(!first.iter().any(held), "the least recently used go first");
    }

    #[test]
    fn memory_store_holds_a_bounded_number_of_sessions_in_all_and_spares_new_ones() {
        let store = MemoryStore::new(Duration::from_secs(60)).with_limits(1000, 10, Duration::ZERO);
        let hub = Arc::new(Hub::new());
        store.watch(&hub);
        let confirm = |s: &Session| block(store.load(&s.id)).unwrap().is_some();
        let old: Vec<Session> = (0..5).map(|_| block(store.create()).unwrap()).collect();
        assert!(old.iter().all(confirm));
        let connected = block(store.create()).unwrap();
        let _connection = hub.register(Arc::new(Mutex::new(connected.clone())), crate::pubsub::Outbox::new(8));
        std::thread::sleep(Duration::from_millis(2));
        let cookieless: Vec<Session> = (0..20).map(|_| block(store.create()).unwrap()).collect();
        assert!(store.len() <= 10, "{} sessions are held", store.len());
        let held = |s: &Session| store.sessions.lock().unwrap().by_id.contains_key(&s.id);
        assert!(old.iter().all(held), "those whose cookie never came back go first");
        assert!(held(&connected) && held(cookieless.last().unwrap()));
        // Then the least recently used of those whose cookie came back.
        let newer: Vec<Session> = (0..10)
            .map(|_| {
                let s = block(store.create()).unwrap();
                assert!(confirm(&s));
                s
            })
            .collect();
        assert!(store.len() <= 11, "{} sessions are held", store.len());
        assert!(!held(&old[0]) && held(&connected) && held(newer.last().unwrap()));

        // Sessions used within the grace period (a handshake that has not
        // joined the hub yet) are never forgotten to make room.
        let store = MemoryStore::new(Duration::from_secs(60)).with_limits(10, 10, Duration::from_secs(3600));
        let made: Vec<Session> = (0..30).map(|_| block(store.create()).unwrap()).collect();
        assert_eq!(store.len(), 30);
        assert!(made.iter().all(|s| block(store.load(&s.id)).unwrap().is_some()));
    }

    #[test]
    fn memory_store_forgets_unused_sessions() {
        let store = MemoryStore::new(Duration::ZERO);
        let hub = Arc::new(Hub::new());
        store.watch(&hub);
        let kept = block(store.create()).unwrap();
        block(store.create()).unwrap();
        let connection = hub.register(Arc::new(Mutex::new(kept.clone())), crate::pubsub::Outbox::new(8));
        assert_eq!(store.purge(), 1, "a session with a connection stays");
        assert_eq!(store.len(), 1);
        hub.unregister(connection);
        assert_eq!(store.purge(), 1);
        assert!(store.is_empty());
    }

    /// A session past its age is not given out between purges: a cookie
    /// replayed after `session_max_age` gets nothing, unless a connection
    /// still uses the session.
    #[test]
    fn memory_store_gives_out_no_session_past_its_age() {
        let store = MemoryStore::new(Duration::from_millis(40));
        let hub = Arc::new(Hub::new());
        store.watch(&hub);
        let old = block(store.create()).unwrap();
        let connected = block(store.create()).unwrap();
        let fresh = block(store.create()).unwrap();
        assert!(block(store.load(&old.id)).unwrap().is_some());
        let _connection = hub.register(Arc::new(Mutex::new(connected.clone())), crate::pubsub::Outbox::new(8));
        std::thread::sleep(Duration::from_millis(60));
        assert!(block(store.load(&fresh.id)).unwrap().is_none(), "one whose cookie never came back");
        assert!(block(store.load(&old.id)).unwrap().is_none(), "one whose cookie came back");
        assert!(block(store.update(&old.id, Change::User(None))).unwrap().is_none());
        assert_eq!(store.len(), 1, "both are forgotten at once");
        assert!(block(store.load(&connected.id)).unwrap().is_some(), "one a connection uses stays");
    }
}
