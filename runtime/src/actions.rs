//! The action registry: `SS.server.<path>` names mapped to handlers, and what
//! a handler gets ([`Call`]): its arguments, the caller's session, `SS.publish`
//! and users online. Native (Rust) actions are registered through
//! [`crate::App::action`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::pubsub::{Hub, Presence, Publisher};
use crate::session::{BoxFuture, Change, Session, SessionStore, StoreError};

/// Why a call failed. Each variant is a protocol error code (docs/protocol.md).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActionError {
    /// The call itself is malformed (`bad_request`).
    #[error("{0}")]
    BadRequest(String),
    /// No such action (`not_found`).
    #[error("{0}")]
    NotFound(String),
    /// Wrong number or type of arguments (`bad_args`).
    #[error("{0}")]
    BadArgs(String),
    /// The action needs a signed-in user (`unauthorized`).
    #[error("{0}")]
    Unauthorized(String),
    /// The action failed (`failed`).
    #[error("{0}")]
    Failed(String),
}

impl ActionError {
    /// The protocol's error code.
    pub fn code(&self) -> &'static str {
        match self {
            ActionError::BadRequest(_) => "bad_request",
            ActionError::NotFound(_) => "not_found",
            ActionError::BadArgs(_) => "bad_args",
            ActionError::Unauthorized(_) => "unauthorized",
            ActionError::Failed(_) => "failed",
        }
    }

    /// A failure with this message.
    pub fn failed(message: impl Into<String>) -> ActionError {
        ActionError::Failed(message.into())
    }
}

impl From<StoreError> for ActionError {
    fn from(e: StoreError) -> ActionError {
        ActionError::Failed(format!("session store: {e}"))
    }
}

/// What an action returns.
pub type ActionResult = Result<Value, ActionError>;

type Handler = Arc<dyn Fn(Call) -> BoxFuture<'static, ActionResult> + Send + Sync>;

/// One registered action.
#[derive(Clone)]
pub struct Action {
    pub(crate) handler: Handler,
    /// Whether callers need a signed-in user (`exports.authenticate = true`).
    pub authenticate: bool,
    /// The action's name: for the error when it does not answer in time,
    /// and as each call's `method` (shared, not copied per call).
    pub(crate) name: Arc<str>,
    /// Whether the server bounds the wait for its answer by `reply_timeout`
    /// (native actions; the engine bounds JavaScript ones itself).
    timed: bool,
}

impl Action {
    /// Starts a call; with `limit` (the server's `reply_timeout`), one that
    /// has not answered by then is answered with an error and dropped.
    pub(crate) fn start(&self, call: Call, limit: Duration) -> Answer {
        let limit = self.timed.then(|| (limit, self.name.clone()));
        Answer { call: (self.handler)(call), limit, timer: None }
    }
}

/// What the server logs of a call: its `log.level` (see
/// [`crate::Config::log_level`]), whether the client marked the call
/// `silent`, and whether it came over the HTTP API.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LogCall {
    pub level: u8,
    pub silent: bool,
    pub http: bool,
}

/// A call being logged: what its line will say, once it is answered.
pub(crate) struct CallLog {
    name: String,
    /// The arguments as JSON (cut short), from level 3.
    args: Option<String>,
    level: u8,
    http: bool,
    started: std::time::Instant,
}

impl CallLog {
    /// What to log of the call to `name` with `args` once it is answered
    /// ([`CallLog::end`]); `None` when nothing is (level 0, or a silent
    /// call). Kept apart from the call's [`Answer`], on the heap: a server
    /// that logs no calls carries nothing for it.
    #[inline]
    pub(crate) fn begin(log: LogCall, name: &str, args: &[Value]) -> Option<Box<CallLog>> {
        if log.level == 0 || log.silent {
            return None;
        }
        Some(CallLog::logging(log, name, args))
    }

    /// Out of the way of the path a server that logs no calls takes.
    #[cold]
    fn logging(log: LogCall, name: &str, args: &[Value]) -> Box<CallLog> {
        let args = (log.level >= 3).then(|| truncate(&serde_json::to_string(args).unwrap_or_default(), 200));
        let name = name.to_string();
        Box::new(CallLog { name, args, level: log.level, http: log.http, started: std::time::Instant::now() })
    }

    /// Logs a call refused before it started (no such action, no signed-in user).
    pub(crate) fn refused(log: LogCall, name: &str, args: &[Value], error: &ActionError) {
        if let Some(entry) = CallLog::begin(log, name, args) {
            entry.end(&Err(error.clone()));
        }
    }

    /// The call's line: `-> app.square [25] = 625 (0.1 ms)`, on stdout; a
    /// failure on stderr, from level 1.
    pub(crate) fn end(self, outcome: &ActionResult) {
        if outcome.is_ok() && self.level < 2 {
            return;
        }
        let mut line = format!("ssrun: -> {}", crate::log::one_line(&self.name));
        if let Some(args) = &self.args {
            line.push(' ');
            line.push_str(args);
        }
        match outcome {
            Ok(value) if self.level >= 4 => {
                line.push_str(" = ");
                line.push_str(&truncate(&value.to_string(), 200));
            }
            Ok(_) => {}
            Err(e) => line.push_str(&format!(
                " failed ({}): {}",
                e.code(),
                crate::log::one_line(&truncate(&e.to_string(), 300))
            )),
        }
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        line.push_str(&format!(" ({ms:.1} ms{})", if self.http { ", HTTP API" } else { "" }));
        if outcome.is_err() {
            crate::errln!("{line}");
        } else {
            crate::outln!("{line}");
        }
    }
}

/// A call's answer, or an error once its time limit has passed without one.
/// The timer starts only when the first poll finds no answer yet: an action
/// that answers at once costs no timer.
pub(crate) struct Answer {
    call: BoxFuture<'static, ActionResult>,
    limit: Option<(Duration, Arc<str>)>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Future for Answer {
    type Output = ActionResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ActionResult> {
        let this = &mut *self;
        if let Poll::Ready(outcome) = this.call.as_mut().poll(cx) {
            return Poll::Ready(outcome);
        }
        let Some((limit, name)) = &this.limit else { return Poll::Pending };
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(*limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let message = format!("{name} gave no answer within {} s", limit.as_secs_f64());
                crate::errln!("ssrun: {message}");
                Poll::Ready(Err(ActionError::failed(message)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Every action, by dotted name (`app.square`).
#[derive(Clone, Default)]
pub struct Registry {
    /// Looked up on every call by a name the client sent. Its keys are the
    /// program's own names, so a fast hash that is not built to withstand
    /// chosen collisions is enough: what a client sends only ever probes the
    /// table, never fills it.
    actions: HashMap<String, Action, foldhash::fast::RandomState>,
}

impl Registry {
    /// Adds an action. Panics on a name that is not `a.b.c` of identifiers, on
    /// the reserved names `session` and `user`, and on a name that is both an
    /// action and a namespace of others: these are mistakes in the program.
    pub fn add<F, Fut>(&mut self, name: &str, authenticate: bool, handler: F)
    where
        F: Fn(Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ActionResult> + Send + 'static,
    {
        self.insert(name, authenticate, true, handler);
    }

    /// Adds an action whose answer the JavaScript engine times itself.
    pub(crate) fn add_javascript<F, Fut>(&mut self, name: &str, authenticate: bool, handler: F)
    where
        F: Fn(Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ActionResult> + Send + 'static,
    {
        self.insert(name, authenticate, false, handler);
    }

    fn insert<F, Fut>(&mut self, name: &str, authenticate: bool, timed: bool, handler: F)
    where
        F: Fn(Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ActionResult> + Send + 'static,
    {
        if let Err(problem) = self.check(name) {
            panic!("{problem}");
        }
        let handler: Handler = Arc::new(move |call| Box::pin(handler(call)));
        self.actions.insert(name.to_string(), Action { handler, authenticate, name: name.into(), timed });
    }

    /// Why `name` cannot be added (a malformed name, a reserved one, or a
    /// clash with an action that is also a namespace), if it cannot.
    pub fn check(&self, name: &str) -> Result<(), String> {
        let parts: Vec<&str> = name.split('.').collect();
        let identifier = |p: &str| {
            !p.is_empty()
                && !p.starts_with(|c: char| c.is_ascii_digit())
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        };
        if parts.len() < 2 || !parts.iter().all(|p| identifier(p)) {
            return Err(format!(
                "action name {name:?} must be a file path and an action, like \"app.square\", made of letters, digits, _ and $"
            ));
        }
        let last = parts[parts.len() - 1];
        if last == "session" || last == "user" {
            return Err(format!("action name {name:?}: `session` and `user` are reserved"));
        }
        for existing in self.actions.keys() {
            if existing.starts_with(&format!("{name}.")) || name.starts_with(&format!("{existing}.")) {
                return Err(format!(
                    "action {name:?} clashes with {existing:?}: a name cannot be both an action and a namespace"
                ));
            }
        }
        Ok(())
    }

    /// The action with this name.
    pub fn get(&self, name: &str) -> Option<&Action> {
        self.actions.get(name)
    }

    /// Every name, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.actions.keys().map(String::as_str).collect();
        names.sort();
        names
    }

    /// The API tree: nested objects whose leaves (`1`) are actions.
    pub fn tree(&self) -> Value {
        let mut root = Map::new();
        for name in self.names() {
            let mut node = &mut root;
            let parts: Vec<&str> = name.split('.').collect();
            for part in &parts[..parts.len() - 1] {
                node = node
                    .entry(part.to_string())
                    .or_insert_with(|| Value::Object(Map::new()))
                    .as_object_mut()
                    .expect("registration keeps namespaces and actions apart");
            }
            node.insert(parts[parts.len() - 1].to_string(), Value::from(1));
        }
        Value::Object(root)
    }

    /// The error for a call to an unknown action, naming the actions of the
    /// same namespace (or, when it has none, some that exist).
    pub fn not_found(&self, name: &str) -> ActionError {
        let names = self.names();
        let namespace = name.rsplit_once('.').map(|(ns, _)| ns).unwrap_or("");
        let near: Vec<&str> =
            names.iter().copied().filter(|n| n.rsplit_once('.').map(|(ns, _)| ns) == Some(namespace)).collect();
        let (shown, total) = if near.is_empty() { (names.clone(), names.len()) } else { (near.clone(), near.len()) };
        let known = if shown.is_empty() {
            "this server has no actions".to_string()
        } else {
            let list: Vec<&str> = shown.into_iter().take(20).collect();
            format!("actions here: {}{}", list.join(", "), if total > 20 { ", ..." } else { "" })
        };
        // A name longer than any action's is cut short: the reply need not
        // carry back all a caller sent.
        let shown_name = match name.char_indices().nth(100) {
            Some((cut, _)) => format!("{}... ({} bytes)", &name[..cut], name.len()),
            None => name.to_string(),
        };
        ActionError::NotFound(format!("no action {shown_name}; {known}"))
    }
}

/// The services a session handle needs to change a session everywhere.
pub(crate) struct SessionServices {
    pub store: Arc<dyn SessionStore>,
    pub hub: Arc<Hub>,
    pub presence: Arc<dyn Presence>,
    /// `server.max_channels_per_session`.
    pub max_channels: usize,
}

/// The caller's session, as server code sees it (`this.session`).
#[derive(Clone)]
pub struct SessionHandle {
    state: Arc<Mutex<Session>>,
    stored: bool,
    services: Arc<SessionServices>,
}

impl SessionHandle {
    /// A handle on a stored session; `state` is shared with the connection's hub entry.
    pub(crate) fn new(state: Arc<Mutex<Session>>, services: Arc<SessionServices>) -> SessionHandle {
        SessionHandle { state, stored: true, services }
    }

    /// The session's state alone, shared with the connection (without the
    /// services that change it): what server code reads of it later.
    pub(crate) fn state(&self) -> Arc<Mutex<Session>> {
        self.state.clone()
    }

    /// A session that exists for one HTTP API call only (no cookie came with it).
    pub(crate) fn transient(services: Arc<SessionServices>) -> SessionHandle {
        let session = Session::new(String::new(), 0);
        SessionHandle { state: Arc::new(Mutex::new(session)), stored: false, services }
    }

    /// Sets the user for the rest of this call only, without changing the
    /// stored session (an HTTP API call signed in with Basic Auth).
    pub(crate) fn sign_in_for_this_call(&self, user_id: String) {
        self.state.lock().expect("session lock").user_id = Some(user_id);
    }

    /// Records a sign-in or sign-out on this handle at once, before the store
    /// confirms it, so that the caller's next call already sees it.
    pub(crate) fn assume_user(&self, user_id: Option<String>) {
        if self.stored {
            self.state.lock().expect("session lock").user_id = user_id;
        }
    }

    /// When the session was made, and its signed-in user.
    pub fn created_and_user(&self) -> (u64, Option<String>) {
        let state = self.state.lock().expect("session lock");
        (state.created_at, state.user_id.clone())
    }

    /// A copy of the session as it is now.
    pub fn snapshot(&self) -> Session {
        self.state.lock().expect("session lock").clone()
    }

    /// The session id (empty for an HTTP API call without a session).
    pub fn id(&self) -> String {
        self.state.lock().expect("session lock").id.clone()
    }

    /// The signed-in user.
    pub fn user_id(&self) -> Option<String> {
        self.state.lock().expect("session lock").user_id.clone()
    }

    /// When the session was created, in milliseconds since the Unix epoch.
    pub fn created_at(&self) -> u64 {
        self.state.lock().expect("session lock").created_at
    }

    /// The channels the session has joined.
    pub fn channels(&self) -> Vec<String> {
        self.state.lock().expect("session lock").channels.iter().cloned().collect()
    }

    async fn change(&self, change: Change) -> Result<Session, ActionError> {
        if !self.stored {
            return Err(ActionError::failed(
                "this call has no session to change: HTTP API calls have one only when they send the session_id cookie",
            ));
        }
        let id = self.id();
        let session = self
            .services
            .store
            .update(&id, change)
            .await?
            .ok_or_else(|| ActionError::failed("the session has expired; reload the page"))?;
        debug_assert_eq!(session.id, id, "a session store's update kept the session's id");
        {
            // Two changes may come back in either order: the newer one stays.
            let mut state = self.state.lock().expect("session lock");
            if session.version > state.version {
                *state = session.clone();
            }
        }
        self.services.hub.refresh(&session);
        Ok(session)
    }

    /// Signs the session in as `user_id`: events for that user reach it, and
    /// the user is online (`setUserId`).
    pub async fn set_user_id(&self, user_id: &str) -> Result<(), ActionError> {
        self.change(Change::User(Some(user_id.to_string()))).await?;
        self.services.presence.seen(user_id).await?;
        Ok(())
    }

    /// Signs the session out (`user.logout`). The user goes offline unless
    /// another of their sessions has a connection here (on other instances,
    /// their next heartbeat brings them back within one interval).
    pub async fn logout(&self) -> Result<(), ActionError> {
        self.logout_user(self.user_id()).await
    }

    /// As [`SessionHandle::logout`], for a session whose user was `before`
    /// (the engine signs its copy of the session out at once, before this runs).
    pub(crate) async fn logout_user(&self, before: Option<String>) -> Result<(), ActionError> {
        self.change(Change::User(None)).await?;
        if let Some(user) = before
            && !self.services.hub.has_user(&user)
        {
            self.services.presence.gone(&user).await?;
        }
        Ok(())
    }

    /// Joins channels (`channel.subscribe`).
    pub async fn subscribe(&self, channels: &[&str]) -> Result<(), ActionError> {
        check_channels(channels)?;
        let limit = self.services.max_channels;
        let (new, after) = {
            let state = self.state.lock().expect("session lock");
            let new: std::collections::BTreeSet<&str> =
                channels.iter().copied().filter(|c| !state.channels.contains(*c)).collect();
            (new.len(), state.channels.len() + new.len())
        };
        // (Joining only channels it is in already is fine, even past a
        // limit lowered since.)
        if new > 0 && after > limit {
            return Err(ActionError::BadArgs(format!(
                "a session can be in at most {limit} channels (server.max_channels_per_session), and this would make \
                 it {after}: unsubscribe from some first, or raise the setting"
            )));
        }
        self.change(Change::Subscribe(channels.iter().map(|s| s.to_string()).collect())).await.map(drop)
    }

    /// Leaves channels (`channel.unsubscribe`).
    pub async fn unsubscribe(&self, channels: &[&str]) -> Result<(), ActionError> {
        self.change(Change::Unsubscribe(channels.iter().map(|s| s.to_string()).collect())).await.map(drop)
    }
}

fn check_channels(channels: &[&str]) -> Result<(), ActionError> {
    for c in channels {
        if c.is_empty() || c.len() > 200 || c.chars().any(char::is_control) {
            return Err(ActionError::BadArgs(format!(
                "channel name {c:?}: use 1 to 200 characters, none of them control characters"
            )));
        }
    }
    Ok(())
}

/// One call of an action.
pub struct Call {
    /// The action's name (`app.square`).
    pub method: Arc<str>,
    /// Every argument, as given.
    pub args: Vec<Value>,
    /// The caller's session.
    pub session: SessionHandle,
    /// `SS.publish`.
    pub publish: Publisher,
    /// The connection the call came over (none for the HTTP API).
    pub connection: Option<crate::pubsub::ConnId>,
    pub(crate) presence: Arc<dyn Presence>,
}

impl Call {
    /// Argument `index` (from 0), converted to `T`; a `bad_args` error naming
    /// the argument when it is missing or of another type.
    pub fn arg<T: DeserializeOwned>(&self, index: usize) -> Result<T, ActionError> {
        let value = self.args.get(index).cloned().unwrap_or(Value::Null);
        serde_json::from_value(value).map_err(|e| {
            let given = match self.args.get(index) {
                None => "nothing".to_string(),
                Some(v) => truncate(&v.to_string(), 60),
            };
            ActionError::BadArgs(format!("{}: argument {} is {given}: {e}", self.method, index + 1))
        })
    }

    /// The users online now (`SS.users.online.now`).
    pub async fn users_online(&self) -> Result<Vec<String>, ActionError> {
        Ok(self.presence.online().await?)
    }
}

pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        let mut r = Registry::default();
        r.add("app.square", false, |_call| async { Ok(Value::Null) });
        r.add("admin.users.list", true, |_call| async { Ok(Value::Null) });
        r
    }

    #[test]
    fn tree_nests_namespaces() {
        assert_eq!(registry().tree(), serde_json::json!({"admin": {"users": {"list": 1}}, "app": {"square": 1}}));
    }

    #[test]
    fn not_found_names_what_exists() {
        let e = registry().not_found("app.sqare");
        assert_eq!(e.code(), "not_found");
        assert_eq!(e.to_string(), "no action app.sqare; actions here: app.square");
        let e = registry().not_found("shop.buy");
        assert_eq!(e.to_string(), "no action shop.buy; actions here: admin.users.list, app.square");
        // A long name is cut short (at a character, not inside one).
        let long = format!("app.{}", "é".repeat(30_000));
        let text = registry().not_found(&long).to_string();
        assert!(text.starts_with(&format!("no action app.{}... (60004 bytes); ", "é".repeat(96))), "{text}");
        assert!(text.len() < 400, "{}", text.len());
    }

    #[test]
    #[should_panic(expected = "both an action and a namespace")]
    fn a_name_cannot_be_an_action_and_a_namespace() {
        registry().add("app.square.more", false, |_call| async { Ok(Value::Null) });
    }

    #[test]
    #[should_panic(expected = "reserved")]
    fn reserved_names_are_refused() {
        registry().add("app.session", false, |_call| async { Ok(Value::Null) });
    }

    #[test]
    #[should_panic(expected = "must be a file path and an action")]
    fn a_single_name_is_refused() {
        registry().add("square", false, |_call| async { Ok(Value::Null) });
    }
}
