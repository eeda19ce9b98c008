//! The embedded JavaScript engine (QuickJS-ng through rquickjs) that runs the
//! app's server actions.
//!
//! One engine thread owns the QuickJS runtime. Calls arrive as jobs on a
//! channel; the thread runs a single-threaded tokio scheduler, so an action
//! that awaits (a timer, a session change, a promise) lets other calls run
//! meanwhile. On a server with one CPU the engine lives on the server's own
//! thread instead ([`Engine::start_here`]), and a call from that thread runs
//! its JavaScript at once, without the channel. Every entry into JavaScript,
//! with the promise jobs it queued, gets a deadline (`js_time_limit`):
//! QuickJS's interrupt handler stops a loop that passes it, and the call is
//! answered with an error. The runtime also has a memory limit; running out
//! is an error for that call, and the engine stays usable.
//!
//! The server-side API (`this.session`, `SS.publish`, `SS.server`, console,
//! timers) is written in JavaScript in `prelude.js` over a handful of native
//! functions installed here as `__host`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rquickjs::class::{ClassKind, JsCell, JsClass, Readable, Trace, Tracer};
use rquickjs::function::Params;
use rquickjs::{Class, Constructor, Context, Ctx, Function, JsLifetime, Object, Persistent, Runtime};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::actions::{ActionError, ActionResult, SessionHandle};
use crate::app::ServerCode;

mod sourcemap;
use crate::pubsub::{ConnId, Presence, Publisher, Target};

const PRELUDE: &str = include_str!("prelude.js");

/// How the engine is limited and how it reports errors.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Longest a single entry into JavaScript may run.
    pub time_limit: Duration,
    /// The engine's memory limit, in bytes.
    pub memory_limit: usize,
    /// How long a call may wait for its answer (callback or promise) in all.
    pub reply_timeout: Duration,
    /// Errors carry their message and stack (development), or a generic
    /// message and an id that is also in the server log (production).
    pub detailed_errors: bool,
}

/// The server code could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(pub String);

enum Job {
    Call {
        name: Arc<str>,
        /// The action's place in [`Engine::actions`].
        index: usize,
        args: Vec<Value>,
        session: SessionHandle,
        connection: Option<ConnId>,
        reply: oneshot::Sender<ActionResult>,
    },
    Disconnected(ConnId),
    Evaluate {
        source: String,
        reply: oneshot::Sender<ActionResult>,
    },
    Authenticate {
        module: String,
        username: String,
        password: String,
        reply: oneshot::Sender<ActionResult>,
    },
}

/// A running engine. Cheap to clone; the thread stops when the last clone is dropped.
#[derive(Clone)]
pub struct Engine {
    jobs: mpsc::UnboundedSender<Job>,
    /// Set for an engine started with [`Engine::start_here`]: its key in
    /// this thread's [`LOCAL_HOSTS`].
    local: Option<u64>,
    /// The actions the server code defines, sorted.
    pub actions: Arc<Vec<String>>,
    /// The `app/server` files (by key, `admin.users`) whose exports had a
    /// true `authenticate` once loaded.
    pub authenticate: Arc<Vec<String>>,
    /// How long a caller waits for an answer, time in the queue included.
    reply_timeout: Duration,
}

#[derive(serde::Deserialize)]
struct Index {
    actions: Vec<String>,
    authenticate: Vec<String>,
    /// Server files whose actions no one can call (no `actions` object, a
    /// member that is not a function), each said once at load.
    warnings: Vec<String>,
}

impl Engine {
    /// Starts the engine thread: evaluates the prelude and the server bundle
    /// and indexes the actions. Fails with the error (and its stack) when the
    /// server code throws while loading.
    pub fn start(
        code: &ServerCode,
        settings: EngineSettings,
        publisher: Publisher,
        presence: Arc<dyn Presence>,
    ) -> Result<Engine, EngineError> {
        let (jobs, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let code = code.clone();
        let reply_timeout = settings.reply_timeout;
        std::thread::Builder::new()
            .name("ssrun-js".into())
            .spawn(move || {
                let scheduler = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start the engine's scheduler: {e}")));
                        return;
                    }
                };
                let local = tokio::task::LocalSet::new();
                local.block_on(&scheduler, run(code, settings, publisher, presence, rx, ready_tx));
            })
            .map_err(|e| EngineError(format!("cannot start the engine thread: {e}")))?;
        let index = ready_rx.recv().map_err(|_| EngineError("the engine thread stopped while starting".into()))?;
        Ok(Engine::new(jobs, index.map_err(EngineError)?, None, reply_timeout))
    }

    /// Starts the engine on the calling thread instead of a thread of its
    /// own: it runs as a task of the current [`tokio::task::LocalSet`], so
    /// calls reach it without crossing threads. For a server on a
    /// single-threaded scheduler (one CPU); a loop in server code then holds
    /// up the whole server until the time limit stops it. Panics outside a
    /// `LocalSet`.
    pub fn start_here(
        code: &ServerCode,
        settings: EngineSettings,
        publisher: Publisher,
        presence: Arc<dyn Presence>,
    ) -> Result<Engine, EngineError> {
        let (jobs, rx) = mpsc::unbounded_channel();
        let reply_timeout = settings.reply_timeout;
        let (host, index) = start_host(code, settings, publisher, presence).map_err(EngineError)?;
        static KEYS: AtomicU64 = AtomicU64::new(1);
        let key = KEYS.fetch_add(1, Ordering::Relaxed);
        LOCAL_HOSTS.with(|hosts| {
            let mut hosts = hosts.borrow_mut();
            hosts.retain(|(_, host)| host.strong_count() > 0);
            hosts.push((key, Rc::downgrade(&host)));
        });
        tokio::task::spawn_local(serve_jobs(host, rx));
        Ok(Engine::new(jobs, index, Some(key), reply_timeout))
    }

    fn new(jobs: mpsc::UnboundedSender<Job>, index: Index, local: Option<u64>, reply_timeout: Duration) -> Engine {
        let (actions, authenticate) = (Arc::new(index.actions), Arc::new(index.authenticate));
        Engine { jobs, local, actions, authenticate, reply_timeout }
    }

    /// Hands a job to the engine: runs it at once when the engine lives on
    /// this thread and is not already running JavaScript, else queues it.
    fn submit(&self, job: Job) -> Result<(), ()> {
        // `try_with`: a connection dropped while its thread ends finds no
        // registry, and queues (the job is then dropped with the channel).
        let here = self.local.and_then(|key| {
            LOCAL_HOSTS
                .try_with(|hosts| hosts.borrow().iter().find(|(k, _)| *k == key).and_then(|(_, host)| host.upgrade()))
                .ok()
                .flatten()
        });
        match here {
            Some(host) if !host.running.get() => {
                host.handle_direct(job);
                Ok(())
            }
            _ => self.jobs.send(job).map_err(|_| ()),
        }
    }

    /// Sends a job that answers through `reply`, and waits for the answer,
    /// at most `reply_timeout` from now: jobs run one at a time, and a call
    /// that waits behind others (loops stopped only by the time limit, say)
    /// is answered all the same. A job whose caller has stopped waiting is
    /// dropped unrun when its turn comes.
    async fn ask(&self, name: &str, job: impl FnOnce(oneshot::Sender<ActionResult>) -> Job) -> ActionResult {
        self.ask_for(name, true, job).await
    }

    /// As [`Engine::ask`]; logs a call that gives no answer when `log`.
    async fn ask_for(
        &self,
        name: &str,
        log: bool,
        job: impl FnOnce(oneshot::Sender<ActionResult>) -> Job,
    ) -> ActionResult {
        let stopped = || ActionError::failed("the JavaScript engine has stopped");
        let (reply, mut answer) = oneshot::channel();
        self.submit(job(reply)).map_err(|_| stopped())?;
        // A call that ran at once and answered (a synchronous action on this
        // thread) needs no timer.
        match answer.try_recv() {
            Ok(answer) => return answer,
            Err(oneshot::error::TryRecvError::Closed) => return Err(stopped()),
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        match tokio::time::timeout(self.reply_timeout, answer).await {
            Ok(answer) => answer.unwrap_or_else(|_| Err(stopped())),
            Err(_) => {
                let error = no_answer(name, self.reply_timeout);
                if log {
                    crate::errln!("ssrun: {error}");
                }
                Err(error)
            }
        }
    }

    /// Calls a JavaScript action.
    pub async fn call(
        &self,
        name: Arc<str>,
        args: Vec<Value>,
        session: SessionHandle,
        connection: Option<ConnId>,
    ) -> ActionResult {
        let Some(index) = self.index_of(&name) else {
            return Err(ActionError::NotFound(format!("no JavaScript action {name}")));
        };
        self.call_listed(index, name, args, session, connection).await
    }

    /// Where the action `name` is in [`Engine::actions`], for [`Engine::call_listed`].
    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.actions.binary_search_by(|action| action.as_str().cmp(name)).ok()
    }

    /// Calls the action at `index` of [`Engine::actions`], named `name`: as
    /// [`Engine::call`], with the name looked up once beforehand.
    pub(crate) async fn call_listed(
        &self,
        index: usize,
        name: Arc<str>,
        args: Vec<Value>,
        session: SessionHandle,
        connection: Option<ConnId>,
    ) -> ActionResult {
        let label = name.clone();
        self.ask(&label, |reply| Job::Call { name, index, args, session, connection, reply }).await
    }

    /// Tells the server code that a connection closed (`session.on('disconnect')`).
    pub fn disconnected(&self, connection: ConnId) {
        let _ = self.submit(Job::Disconnected(connection));
    }

    /// Checks HTTP API credentials with `exports.authenticate({username,
    /// password}, cb)` of the `lib/server` module `module`: the user id when
    /// its response has `success: true`, `None` otherwise.
    pub async fn authenticate(
        &self,
        module: &str,
        username: String,
        password: String,
    ) -> Result<Option<String>, String> {
        let module_name = module.to_string();
        let job = |reply| Job::Authenticate { module: module_name, username, password, reply };
        let response = self.ask(&format!("lib/server/{module}"), job).await.map_err(|e| e.to_string())?;
        if response["success"] != Value::Bool(true) {
            return Ok(None);
        }
        match &response["user_id"] {
            Value::String(id) => Ok(Some(id.clone())),
            Value::Number(id) => Ok(Some(id.to_string())),
            _ => Err(format!("lib/server/{module}: a successful response needs a user_id")),
        }
    }

    /// Evaluates JavaScript in the engine, as the console does: gives the
    /// value as text (JSON where it has a JSON form), after awaiting a Promise.
    pub async fn evaluate(&self, source: String) -> Result<String, String> {
        // The console prints the error itself.
        match self.ask_for("the input", false, |reply| Job::Evaluate { source, reply }).await {
            Ok(Value::String(text)) => Ok(text),
            Ok(other) => Ok(other.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Raises a flag for as long as it lives, and puts it back as it was when
/// dropped, also when a panic unwinds through.
struct Flag<'a> {
    flag: &'a std::cell::Cell<bool>,
    was: bool,
}

impl<'a> Flag<'a> {
    fn raise(flag: &'a std::cell::Cell<bool>) -> Flag<'a> {
        Flag { flag, was: flag.replace(true) }
    }
}

impl Drop for Flag<'_> {
    fn drop(&mut self) {
        self.flag.set(self.was);
    }
}

thread_local! {
    /// The engines started on this thread with [`Engine::start_here`], by
    /// key, for the calls that reach them directly.
    static LOCAL_HOSTS: RefCell<Vec<(u64, std::rc::Weak<Host>)>> = const { RefCell::new(Vec::new()) };
}

/// Work that must run as a task of the engine's `LocalSet`.
type LocalTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

struct Pending {
    name: Arc<str>,
    reply: oneshot::Sender<ActionResult>,
    /// The caller's session; none for the console.
    session: Option<SessionHandle>,
    deadline: Instant,
}

/// Hashes a number key (a call, connection or timer id: the host makes
/// them, so no client can choose them to collide) with one multiplication,
/// where the standard hasher takes a hundred-odd steps.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct State {
    pending: IdMap<Pending>,
    /// The session of each open connection that called into JavaScript, so
    /// that server code can still use it after its call has answered.
    connections: IdMap<Connected>,
    /// Running timers; `None` until a timer set by a direct job is spawned.
    timers: IdMap<Option<tokio::task::AbortHandle>>,
    next_call: u64,
}

/// An open connection that called into JavaScript.
struct Connected {
    session: SessionHandle,
}

struct Host {
    /// Never freed: QuickJS aborts when a runtime is freed with values still
    /// referenced (timers, callbacks, promises of calls in flight). An engine
    /// ends with its server: with the process, except in development, where
    /// each new build's server replaces the last and the old engine's memory
    /// stays with the process (see `pickup`).
    runtime: std::mem::ManuallyDrop<Runtime>,
    context: std::mem::ManuallyDrop<Context>,
    /// When the running entry into JavaScript must stop, in nanoseconds
    /// since `base` (0: none is running), for the interrupt handler.
    deadline: Arc<AtomicU64>,
    base: Instant,
    settings: EngineSettings,
    publisher: Publisher,
    presence: Arc<dyn Presence>,
    state: RefCell<State>,
    /// The prelude's `call`, and the prototype of the [`Reply`] each call
    /// gets (`Function.prototype`).
    call: RefCell<Option<(Persistent<Function<'static>>, Persistent<Object<'static>>)>>,
    /// The client's call whose action is running now (0: none): its
    /// [`Reply`] keeps a primitive answer given meanwhile in `given`, for
    /// [`Host::begin`] to send, rather than sending it itself.
    current: Cell<u64>,
    given: RefCell<Option<ActionResult>>,
    /// Set while JavaScript runs (a call that arrives meanwhile is queued).
    running: std::cell::Cell<bool>,
    /// Set while a job runs directly in a caller's task, outside the
    /// engine's `LocalSet`: what the job starts in the background then waits
    /// in `deferred` for the engine's own task to spawn it.
    direct: std::cell::Cell<bool>,
    deferred: RefCell<Vec<(Option<u64>, LocalTask)>>,
    /// Wakes the engine's task when `deferred` has work.
    wake: tokio::sync::Notify,
    /// Promises rejected with no handler yet, with what they were rejected
    /// with: those still unhandled once the promise jobs ran are logged.
    unhandled: Unhandled,
}

type Unhandled = Rc<RefCell<Vec<(Persistent<rquickjs::Value<'static>>, String)>>>;

type Shared = Rc<Host>;

impl Host {
    /// Starts an entry's time limit, from `now` (the interrupt handler,
    /// which QuickJS calls every few thousand steps, stops JavaScript past it).
    fn arm(&self, now: Instant) {
        let at = now.saturating_duration_since(self.base) + self.settings.time_limit;
        self.deadline.store(at.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Runs `f` inside the context, then the promise jobs it queued, all
    /// within one time limit: a chain of promise jobs that never ends (`for
    /// (;;) await 0`) is stopped like a loop, instead of holding the engine
    /// (and, on one CPU, the server) for good.
    fn enter<R>(&self, f: impl FnOnce(Ctx<'_>) -> R) -> R {
        self.enter_at(Instant::now(), f)
    }

    /// [`Host::enter`], its time limit counted from `now` (a clock read the
    /// caller made already).
    fn enter_at<R>(&self, now: Instant, f: impl FnOnce(Ctx<'_>) -> R) -> R {
        let _running = Flag::raise(&self.running);
        self.arm(now);
        let result = self.context.with(f);
        self.drain();
        result
    }

    /// Runs `job` in the caller's task (which is on the engine's thread, but
    /// may be outside its `LocalSet`).
    fn handle_direct(self: &Rc<Self>, job: Job) {
        let _direct = Flag::raise(&self.direct);
        handle(self, job);
    }

    /// Runs `task` in the background as a task of the engine's `LocalSet`;
    /// with a timer id, records its handle so that clearing the timer stops it.
    fn spawn(&self, timer: Option<u64>, task: LocalTask) {
        if self.direct.get() {
            if let Some(id) = timer {
                self.state.borrow_mut().timers.insert(id, None);
            }
            self.deferred.borrow_mut().push((timer, task));
            self.wake.notify_one();
            return;
        }
        // What direct jobs left goes first, to keep the order things were started in.
        if !self.deferred.borrow().is_empty() {
            self.spawn_deferred();
        }
        let handle = tokio::task::spawn_local(task);
        if let Some(id) = timer {
            self.state.borrow_mut().timers.insert(id, Some(handle.abort_handle()));
        }
    }

    /// Spawns what direct jobs left in `deferred` (from the engine's task).
    fn spawn_deferred(&self) {
        let tasks = std::mem::take(&mut *self.deferred.borrow_mut());
        for (timer, task) in tasks {
            match timer {
                // Cleared before it could start.
                Some(id) if !self.state.borrow().timers.contains_key(&id) => {}
                _ => self.spawn(timer, task),
            }
        }
    }

    fn drain(&self) {
        let mut ran = false;
        loop {
            match self.runtime.execute_pending_job() {
                Ok(true) => ran = true,
                Ok(false) => break,
                Err(job) => {
                    ran = true;
                    job.0.with(|ctx| {
                        let (message, stack) = exception_text(&ctx, rquickjs::Error::Exception);
                        if !self.fail_interrupted(&ctx, &message, &stack) {
                            crate::errln!("ssrun: [server] a promise callback failed: {message}");
                        }
                    });
                }
            }
        }
        if ran {
            // The last job resumed some action's code and left its log tag set.
            self.context.with(|ctx| {
                if let Ok(idle) = global_fn(&ctx, "idle") {
                    let _ = idle.call::<_, ()>(());
                }
            });
        }
        self.deadline.store(0, Ordering::Relaxed);
        let unhandled = std::mem::take(&mut *self.unhandled.borrow_mut());
        for (_, reason) in unhandled {
            crate::errln!("ssrun: [server] a promise was rejected and nothing handled it: {reason}");
        }
    }

    /// Records a call waiting for its answer since `now`; gives its id.
    fn expect(
        &self,
        name: Arc<str>,
        reply: oneshot::Sender<ActionResult>,
        session: Option<SessionHandle>,
        now: Instant,
    ) -> u64 {
        let mut state = self.state.borrow_mut();
        state.next_call += 1;
        let id = state.next_call;
        let deadline = now + self.settings.reply_timeout;
        state.pending.insert(id, Pending { name, reply, session, deadline });
        id
    }

    /// Records a call as waiting for its answer and starts it in JavaScript
    /// with `start` (given the call's id). `start` may give the answer
    /// itself, when the JavaScript gave it before returning; when starting
    /// throws, the call is answered with that error at once. Either is sent
    /// before the promise jobs the call queued run, as an answer from
    /// JavaScript is: a call that answered at once does not wait for them.
    fn begin(
        &self,
        name: Arc<str>,
        reply: oneshot::Sender<ActionResult>,
        session: Option<SessionHandle>,
        start: impl FnOnce(&Ctx<'_>, u64) -> rquickjs::Result<Option<ActionResult>>,
    ) {
        // One clock read for the call's reply deadline and its time limit.
        let now = Instant::now();
        let id = self.expect(name.clone(), reply, session, now);
        self.enter_at(now, |ctx| {
            let outcome = match start(&ctx, id) {
                Ok(None) => return,
                Ok(Some(outcome)) => outcome,
                Err(e) => {
                    let (message, stack) = exception_text(&ctx, e);
                    match self.stopped(&ctx) {
                        Some(outcome) => {
                            // Answered before the time limit stopped it: the
                            // answer stands, and what stopped it is logged.
                            crate::errln!("ssrun: [{name}] error: after the call was answered: {message}\n{stack}");
                            outcome
                        }
                        None => Err(self.failure(&name, &message, &stack)),
                    }
                }
            };
            self.answer(id, outcome);
        });
    }

    /// After an entry into JavaScript ended in an exception (the time
    /// limit, or a throw on the prelude's way out of `call`): the prelude
    /// sets its state back, and this gives the answer the call gave before,
    /// if it gave a primitive one (its [`Reply`] kept it in `given`).
    fn stopped(&self, ctx: &Ctx<'_>) -> Option<ActionResult> {
        // The time limit has passed: a new one for this short run.
        self.arm(Instant::now());
        let _ = global_fn(ctx, "stopped").and_then(|f| f.call::<_, ()>(()));
        self.given.borrow_mut().take()
    }

    /// After a promise job or a timer ended in an exception that nothing
    /// in JavaScript could catch (the time limit): fails the client's call
    /// that work ran for with it, as if the call's synchronous part had
    /// run into the limit; `false` when no call waits for that answer (the
    /// work was no client's, or its call was answered), for the caller to log.
    fn fail_interrupted(&self, ctx: &Ctx<'_>, message: &str, stack: &str) -> bool {
        // A new time limit for this short run only: the jobs still queued
        // behind the stopped one stay under the limit that stopped it.
        let expired = self.deadline.load(Ordering::Relaxed);
        self.arm(Instant::now());
        let claimed = match global_fn(ctx, "interrupted").and_then(|f| f.call::<_, f64>(())) {
            Ok(id) if id >= 0.0 => Some(id as u64),
            _ => None,
        };
        self.deadline.store(expired, Ordering::Relaxed);
        let Some(id) = claimed else { return false };
        let Some(name) = self.state.borrow().pending.get(&id).map(|p| p.name.clone()) else { return false };
        self.answer(id, Err(self.failure(&name, message, stack)));
        true
    }

    /// Answers the call `id` with `value`, given to its [`Reply`] (which
    /// has checked that it is the call's first answer).
    fn settle<'js>(&self, ctx: &Ctx<'js>, id: u64, value: rquickjs::Value<'js>) -> rquickjs::Result<()> {
        if value.is_number() || value.is_string() || value.is_bool() || value.is_null() || value.is_undefined() {
            let outcome = primitive_json(ctx, &value);
            if self.current.get() == id {
                *self.given.borrow_mut() = Some(outcome);
            } else {
                self.answer(id, outcome);
            }
            return Ok(());
        }
        // An object (an Error fails the call), a symbol or a BigInt: the
        // prelude makes it JSON, or an error, as `JSON.stringify` does.
        let Some(name) = self.state.borrow().pending.get(&id).map(|p| p.name.clone()) else { return Ok(()) };
        global_fn(ctx, "finish")?.call::<_, ()>((id as f64, &*name, value))
    }

    fn answer(&self, id: u64, outcome: ActionResult) {
        if let Some(pending) = self.state.borrow_mut().pending.remove(&id) {
            let _ = pending.reply.send(outcome);
        }
    }

    /// The error a caller sees for a JavaScript error (message, stack).
    fn failure(&self, name: &str, message: &str, stack: &str) -> ActionError {
        if self.settings.detailed_errors || name == "console" {
            let stack = stack.trim_end();
            ActionError::failed(if stack.is_empty() { message.to_string() } else { format!("{message}\n{stack}") })
        } else {
            let mut bytes = [0u8; 6];
            getrandom::fill(&mut bytes).expect("the operating system's random generator works");
            let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            crate::errln!("ssrun: error {id} in {name}: {message}\n{stack}");
            ActionError::failed(format!("{name} failed (error {id} in the server log)"))
        }
    }

    /// Answers calls past their reply timeout with that error, and forgets
    /// them. [`Engine::ask`] times the wait from when the job was queued, so
    /// its caller has the same error already as a rule; but the two clocks
    /// run on different threads, and a caller whose task is late to wake must
    /// still find the timeout here rather than a dropped reply.
    fn sweep(&self) {
        let now = Instant::now();
        let late: Vec<Pending> =
            self.state.borrow_mut().pending.extract_if(|_, p| p.deadline <= now).map(|(_, p)| p).collect();
        for pending in late {
            // Logged here only when the caller is still waiting: one that
            // stopped waiting logged the same timeout itself ([`Engine::ask`]).
            let error = no_answer(&pending.name, self.settings.reply_timeout);
            let text = error.to_string();
            if pending.reply.send(Err(error)).is_ok() {
                crate::errln!("ssrun: {text}");
            }
        }
    }
}

/// The message and stack of the exception behind `error`.
fn exception_text(ctx: &Ctx<'_>, error: rquickjs::Error) -> (String, String) {
    if !matches!(error, rquickjs::Error::Exception) {
        return (error.to_string(), String::new());
    }
    caught_text(ctx, ctx.catch())
}

/// The message and stack of a caught exception.
fn caught_text<'js>(ctx: &Ctx<'js>, value: rquickjs::Value<'js>) -> (String, String) {
    let (message, stack) = thrown_text(ctx, value);
    (if stack.is_none() { format!("uncaught: {message}") } else { message }, stack.unwrap_or_default())
}

/// The file of the server bundle whose top level threw `value` (the module
/// loader keeps it: client/modules.js), when a module's load threw it.
fn failed_module<'js>(ctx: &Ctx<'js>, value: &rquickjs::Value<'js>) -> Option<String> {
    let loader: rquickjs::Object = ctx.globals().get("__ss").ok()?;
    let failed_in: rquickjs::Function = loader.get("failedIn").ok()?;
    match failed_in.call::<_, Option<String>>((value.clone(),)) {
        Ok(file) => file,
        Err(_) => {
            // Leaves no exception pending (the engine out of memory, say).
            ctx.catch();
            None
        }
    }
}

/// What was thrown (or a promise was rejected with): an error's `Name:
/// message` and its stack, or the value as JSON and no stack.
fn thrown_text<'js>(ctx: &Ctx<'js>, value: rquickjs::Value<'js>) -> (String, Option<String>) {
    if let Some(exception) = value.as_object().cloned().and_then(rquickjs::Exception::from_object) {
        let message = exception.message().unwrap_or_default();
        let name: String = exception.as_object().get("name").unwrap_or_else(|_| "Error".into());
        let message = if message == "interrupted" {
            "the time limit for one run of server code passed, and it was stopped".to_string()
        } else {
            format!("{name}: {message}")
        };
        return (message, Some(exception.stack().unwrap_or_default()));
    }
    if value.is_null() {
        // What QuickJS throws when it cannot even make an error.
        return (
            "null (thrown by the code, or by the engine when it is out of memory: see server.js_memory_limit)".into(),
            None,
        );
    }
    let text = ctx.json_stringify(value).ok().flatten().and_then(|s| s.to_string().ok()).unwrap_or_else(|| {
        "a value that is not an Error and could not be written out (the engine may be out of memory: see \
         server.js_memory_limit)"
            .into()
    });
    (text, None)
}

async fn run(
    code: ServerCode,
    settings: EngineSettings,
    publisher: Publisher,
    presence: Arc<dyn Presence>,
    jobs: mpsc::UnboundedReceiver<Job>,
    ready: std::sync::mpsc::Sender<Result<Index, String>>,
) {
    let host = match start_host(&code, settings, publisher, presence) {
        Ok((host, actions)) => {
            let _ = ready.send(Ok(actions));
            host
        }
        Err(message) => {
            let _ = ready.send(Err(message));
            return;
        }
    };
    serve_jobs(host, jobs).await;
}

/// The error of a call that was not answered within `limit`.
fn no_answer(name: &str, limit: Duration) -> ActionError {
    ActionError::failed(format!(
        "{name} gave no answer within {} s: it neither returned a value, nor called its callback, nor settled its \
         Promise (or it waited that long behind other calls)",
        limit.as_secs_f64()
    ))
}

/// Runs jobs until every [`Engine`] handle is gone.
async fn serve_jobs(host: Shared, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut sweep = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => handle(&host, job),
                None => break,
            },
            _ = host.wake.notified() => host.spawn_deferred(),
            _ = sweep.tick() => host.sweep(),
        }
    }
    // Every sender is gone: the server this engine served has stopped. Its
    // timers hold the engine weakly and would end at their next tick; they
    // end now instead (a long interval would otherwise sit in the scheduler,
    // beside a newer engine, until then).
    host.deferred.borrow_mut().clear();
    let timers = std::mem::take(&mut host.state.borrow_mut().timers);
    for task in timers.into_values().flatten() {
        task.abort();
    }
}

fn handle(host: &Shared, job: Job) {
    // A caller that stopped waiting (it timed out, or hung up) has no use for
    // the work: do not run it.
    let abandoned = match &job {
        Job::Call { reply, .. } | Job::Evaluate { reply, .. } | Job::Authenticate { reply, .. } => reply.is_closed(),
        Job::Disconnected(_) => false,
    };
    if abandoned {
        return;
    }
    match job {
        Job::Call { name, index, args, session, connection, reply } => {
            if let Some(connection) = connection {
                let mut state = host.state.borrow_mut();
                state.connections.entry(connection).or_insert_with(|| Connected { session: session.clone() });
            }
            let state = session.state();
            host.begin(name, reply, Some(session), |ctx, id| {
                let (call, proto) = host.call.borrow().clone().expect("the host is started");
                let (call, proto) = (call.restore(ctx)?, proto.restore(ctx)?);
                let answered = Cell::new(false);
                let record = Reply { id, connection, session: state, answered, host: Rc::downgrade(host) };
                let record = Class::instance_proto(record, proto)?;
                // Up to two arguments go as they are; more go as one array.
                let count = args.len();
                let (a, b) = match count {
                    0..=2 => {
                        let mut args = args.iter();
                        let mut next = || match args.next() {
                            Some(value) => to_js(ctx, value),
                            None => Ok(rquickjs::Value::new_undefined(ctx.clone())),
                        };
                        (next()?, next()?)
                    }
                    _ => (to_js(ctx, &Value::Array(args))?, rquickjs::Value::new_undefined(ctx.clone())),
                };
                let outer = host.current.replace(id);
                // Small numbers as integers: JavaScript compares those fastest.
                let result = call.call::<_, ()>((record, index as i32, count as i32, a, b));
                host.current.set(outer);
                result?;
                Ok(host.given.borrow_mut().take())
            });
        }
        Job::Disconnected(connection) => {
            // A connection that never called server code set no handlers.
            // Those it set find its session while they run, through the
            // connection, which is forgotten after them.
            let Some(session) = host.state.borrow().connections.get(&connection).map(|c| c.session.clone()) else {
                return;
            };
            let (created_at, user_id) = session.created_and_user();
            let session_id = session.id();
            host.enter(|ctx| {
                let result = global_fn(&ctx, "disconnect")
                    .and_then(|f| f.call::<_, ()>((connection as f64, session_id, created_at as f64, user_id)));
                if let Err(e) = result {
                    crate::errln!("ssrun: [server] disconnect handlers: {}", exception_text(&ctx, e).0);
                }
            });
            host.state.borrow_mut().connections.remove(&connection);
        }
        Job::Authenticate { module, username, password, reply } => {
            host.begin(format!("lib/server/{module}").into(), reply, None, |ctx, id| {
                global_fn(ctx, "authenticate")?.call::<_, ()>((id as f64, module.as_str(), username, password))?;
                Ok(None)
            });
        }
        Job::Evaluate { source, reply } => {
            host.begin("console".into(), reply, None, |ctx, id| {
                global_fn(ctx, "evaluate")?.call::<_, ()>((id as f64, source.as_str()))?;
                Ok(None)
            });
        }
    }
}

/// A client's call of a JavaScript action, as the prelude holds it: the
/// callback the action gets last (calling it answers the call: the first
/// answer wins) and the call's record, which ties the work the action
/// leaves behind (awaits, timers, session changes) to the call. A native
/// callable object costs less to make per call than a JavaScript closure
/// (which gets `length` and `name` defined on it) with an array for the
/// record behind it; the prelude asks the host for the rest (`record`).
struct Reply {
    id: u64,
    connection: Option<ConnId>,
    /// The session's state, read when server code asks (`record`): its
    /// user then, not at the call's start. Not the whole `SessionHandle`,
    /// whose services a record kept by server code would keep alive.
    session: Arc<std::sync::Mutex<crate::session::Session>>,
    answered: Cell<bool>,
    host: Weak<Host>,
}

impl<'js> Trace<'js> for Reply {
    // It holds no JavaScript values.
    fn trace<'a>(&self, _tracer: Tracer<'a, 'js>) {}
}

// SAFETY: the trait says what a type is with its `'js` lifetime changed,
// which rquickjs relies on when it hands a class's value out; `Reply` has
// no lifetime to change (all it holds is `'static`), so it is itself.
#[allow(unsafe_code)]
unsafe impl<'js> JsLifetime<'js> for Reply {
    type Changed<'to> = Reply;
}

impl<'js> JsClass<'js> for Reply {
    const NAME: &'static str = "answer";
    const KIND: ClassKind = ClassKind::Callable;
    type Mutable = Readable;

    fn constructor(_ctx: &Ctx<'js>) -> rquickjs::Result<Option<Constructor<'js>>> {
        Ok(None)
    }

    fn call<'a>(this: &JsCell<'js, Self>, params: Params<'a, 'js>) -> rquickjs::Result<rquickjs::Value<'js>> {
        let ctx = params.ctx();
        let undefined = rquickjs::Value::new_undefined(ctx.clone());
        let reply = this.borrow();
        if reply.answered.replace(true) {
            return Ok(undefined);
        }
        if let Some(host) = reply.host.upgrade() {
            host.settle(ctx, reply.id, params.arg(0).unwrap_or_else(|| undefined.clone()))?;
        }
        Ok(undefined)
    }
}

fn global_fn<'js>(ctx: &Ctx<'js>, name: &str) -> rquickjs::Result<Function<'js>> {
    let host: Object = ctx.globals().get("__ss_host")?;
    host.get(name)
}

fn start_host(
    code: &ServerCode,
    settings: EngineSettings,
    publisher: Publisher,
    presence: Arc<dyn Presence>,
) -> Result<(Shared, Index), String> {
    let runtime = Runtime::new().map_err(|e| format!("cannot create the JavaScript runtime: {e}"))?;
    runtime.set_memory_limit(settings.memory_limit);
    runtime.set_max_stack_size(1024 * 1024);
    // Reference counting frees most garbage at once; the cycle collector need not run often.
    runtime.set_gc_threshold(16 * 1024 * 1024);
    let deadline = Arc::new(AtomicU64::new(0));
    let base = Instant::now();
    {
        let deadline = deadline.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || {
            let at = deadline.load(Ordering::Relaxed);
            at != 0 && base.elapsed().as_nanos() as u64 > at
        })));
    }
    let unhandled = Unhandled::default();
    {
        let unhandled = unhandled.clone();
        runtime.set_host_promise_rejection_tracker(Some(Box::new(move |ctx, promise, reason, handled| {
            let mut list = unhandled.borrow_mut();
            if handled {
                // A handler came later (`run` attaches one to an async
                // action's promise once the action has returned).
                list.retain(|(p, _)| p.clone().restore(&ctx).map_or(true, |p| p != promise));
            } else {
                let (message, stack) = thrown_text(&ctx, reason);
                let text = format!("{message}\n{}", stack.unwrap_or_default()).trim_end().to_string();
                list.push((Persistent::save(&ctx, promise), text));
            }
        })));
    }
    let context = Context::full(&runtime).map_err(|e| format!("cannot create the JavaScript context: {e}"))?;
    let host = Rc::new(Host {
        runtime: std::mem::ManuallyDrop::new(runtime),
        context: std::mem::ManuallyDrop::new(context),
        deadline,
        base,
        settings,
        publisher,
        presence,
        state: RefCell::new(State::default()),
        call: RefCell::new(None),
        current: Cell::new(0),
        given: RefCell::new(None),
        running: Default::default(),
        direct: Default::default(),
        deferred: Default::default(),
        wake: Default::default(),
        unhandled,
    });
    let files: Vec<(String, u64)> = code.files.iter().map(|f| (f.key.clone(), f.server_id)).collect();
    let files_json = serde_json::to_string(&files).expect("strings and numbers are JSON");
    let lib_json = serde_json::to_string(&code.lib_server).expect("a map of numbers is JSON");
    let bundle_name = code.path.display().to_string();
    let loaded = host.enter(|ctx| -> Result<Index, String> {
        let fail = |ctx: &Ctx<'_>, what: &str, e: rquickjs::Error| {
            let (message, stack) = exception_text(ctx, e);
            format!("{what}: {message}\n{stack}").trim_end().to_string()
        };
        // Where modules load: names the file whose top level threw, where a
        // module's load threw (a thrown string has no stack to tell, and in
        // production the stack names only the bundle).
        let fail_loading = |ctx: &Ctx<'_>, what: &str, e: rquickjs::Error| {
            let (what, (message, stack)) = if matches!(e, rquickjs::Error::Exception) {
                let value = ctx.catch();
                let what = match failed_module(ctx, &value) {
                    Some(file) => format!("loading {file} ({bundle_name})"),
                    None => what.to_string(),
                };
                (what, caught_text(ctx, value))
            } else {
                (what.to_string(), (e.to_string(), String::new()))
            };
            format!("{what}: {message}\n{stack}").trim_end().to_string()
        };
        install(&ctx, &host).map_err(|e| fail(&ctx, "installing the host functions", e))?;
        if let Some(map) = code.map.as_deref().and_then(|map| sourcemap::BundleMap::parse(map, &code.bundle)) {
            install_source_map(&ctx, bundle_name.clone(), map)
                .map_err(|e| fail(&ctx, "installing the host functions", e))?;
        }
        let mut options = rquickjs::context::EvalOptions::default();
        options.global = true;
        options.filename = Some("ssrun:prelude.js".into());
        ctx.eval_with_options::<(), _>(PRELUDE, options).map_err(|e| fail(&ctx, "the server prelude", e))?;
        install_process_env(&ctx).map_err(|e| fail(&ctx, "installing process.env", e))?;
        let mut options = rquickjs::context::EvalOptions::default();
        options.global = true;
        options.strict = false;
        options.filename = Some(bundle_name.clone());
        ctx.eval_with_options::<(), _>(code.bundle.as_str(), options)
            .map_err(|e| fail_loading(&ctx, &format!("loading the server code ({bundle_name})"), e))?;
        let index = global_fn(&ctx, "index").map_err(|e| fail(&ctx, "the server prelude", e))?;
        let names: String = index
            .call((files_json.as_str(), lib_json.as_str()))
            .map_err(|e| fail_loading(&ctx, "reading exports.actions of app/server", e))?;
        let mut index: Index = serde_json::from_str(&names).map_err(|e| format!("the action index: {e}"))?;
        for warning in std::mem::take(&mut index.warnings) {
            crate::errln!("ssrun: warning: {warning}");
        }
        // Calls name their action by its place in this order (Rust's, which
        // `Engine::index_of` searches), not by its name.
        index.actions.sort();
        let order = serde_json::to_string(&index.actions).expect("strings are JSON");
        global_fn(&ctx, "order")
            .and_then(|f| f.call::<_, ()>((order,)))
            .map_err(|e| fail(&ctx, "the server prelude", e))?;
        let call = global_fn(&ctx, "call").map_err(|e| fail(&ctx, "the server prelude", e))?;
        let proto = ctx
            .globals()
            .get::<_, Object>("Function")
            .and_then(|f| f.get::<_, Object>("prototype"))
            .map_err(|e| fail(&ctx, "the server prelude", e))?;
        *host.call.borrow_mut() = Some((Persistent::save(&ctx, call), Persistent::save(&ctx, proto)));
        Ok(index)
    })?;
    Ok((host, loaded))
}

/// Sets the global `process.env`: a copy of this process's environment
/// variables as they were when the engine started (those whose name and
/// value are Unicode), as strings. It is where server code finds its
/// secrets (`process.env.DATABASE_URL`), as in Node.js; a change to it stays
/// in the engine, and `process` has nothing else.
fn install_process_env(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
    let env = Object::new(ctx.clone())?;
    for (name, value) in std::env::vars_os() {
        if let (Ok(name), Ok(value)) = (name.into_string(), value.into_string()) {
            env.set(name, value)?;
        }
    }
    let process = Object::new(ctx.clone())?;
    process.set("env", env)?;
    ctx.globals().set("process", process)
}

/// Adds `__host.source(file, line, column)` to `__host`: where a position of
/// the bundle `bundle` came from, as `path:line:column`, or `null`. The
/// prelude formats stack traces with it.
fn install_source_map<'js>(ctx: &Ctx<'js>, bundle: String, map: sourcemap::BundleMap) -> rquickjs::Result<()> {
    let native: Object = ctx.globals().get("__host")?;
    native.set(
        "source",
        Function::new(ctx.clone(), move |file: String, line: f64, column: f64| -> Option<String> {
            if file != bundle || !(line >= 1.0 && column >= 0.0) {
                return None;
            }
            map.lookup_engine(line as u32, column as u32).map(|(path, l, c)| format!("{path}:{l}:{c}"))
        })?,
    )
}

/// Installs `__host`: the native half of the server API.
fn install<'js>(ctx: &Ctx<'js>, host: &Shared) -> rquickjs::Result<()> {
    let native = Object::new(ctx.clone())?;

    let h = Rc::downgrade(host);
    native.set(
        "reply",
        Function::new(ctx.clone(), move |id: f64, is_error: bool, text: String| {
            // Whether the call was still waiting for its answer: one past its
            // reply timeout, or whose caller has gone, is not answered.
            let Some(host) = h.upgrade() else { return false };
            let id = id as u64;
            if !host.state.borrow().pending.contains_key(&id) {
                return false;
            }
            let outcome = if is_error {
                let error: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let message = error["message"].as_str().unwrap_or("the action failed");
                let stack = error["stack"].as_str().unwrap_or("");
                if error["expose"] == true {
                    // An SS.Error: meant for the caller, in every environment, with its code.
                    let message = message.to_string();
                    Err(match error["code"].as_str() {
                        Some("bad_args") => ActionError::BadArgs(message),
                        Some("unauthorized") => ActionError::Unauthorized(message),
                        Some("not_found") => ActionError::NotFound(message),
                        _ => ActionError::Failed(message),
                    })
                } else {
                    let name = host.state.borrow().pending.get(&id).map(|p| p.name.clone()).unwrap_or_default();
                    Err(host.failure(&name, message, stack))
                }
            } else {
                answer_from_json(&text)
            };
            host.answer(id, outcome);
            true
        })?,
    )?;

    // The console's input, run as a script of its own (as a browser's
    // console runs each entry): its top-level `let`, `const` and `class`
    // stay for the next input, and it may `await` at its top level. Gives
    // a Promise of `{ value }`, the input's completion value.
    native.set(
        "script",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, source: String| -> rquickjs::Result<rquickjs::Value<'js>> {
            let mut options = rquickjs::context::EvalOptions::default();
            options.global = true;
            // Sloppy, as consoles are (`x = 5` makes a global).
            options.strict = false;
            options.promise = true;
            options.backtrace_barrier = true;
            options.filename = Some("console".into());
            ctx.eval_with_options(source, options)
        })?,
    )?;

    // Claims a client's call for an answer (see [`Reply`]): its id when
    // nothing answered it yet, else -1 (and -1 for anything but a call).
    native.set(
        "claim",
        Function::new(ctx.clone(), |record: rquickjs::Value<'js>| match Class::<Reply>::from_value(&record) {
            Ok(record) => {
                let record = record.borrow();
                if record.answered.replace(true) { -1.0 } else { record.id as f64 }
            }
            Err(_) => -1.0,
        })?,
    )?;

    // What the prelude reads of a client's call, when it needs more than
    // the call itself: [call id, session id, created at, user id,
    // connection (-1: none)], as its records of other calls hold them.
    native.set(
        "record",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, record: Class<'js, Reply>| -> rquickjs::Result<rquickjs::Array<'js>> {
                let record = record.borrow();
                let (id, created_at, user_id) = {
                    let session = record.session.lock().expect("session lock");
                    (session.id.clone(), session.created_at, session.user_id.clone())
                };
                let fields = rquickjs::Array::new(ctx.clone())?;
                fields.set(0, record.id as f64)?;
                fields.set(1, id)?;
                fields.set(2, created_at as f64)?;
                fields.set(3, user_id)?;
                fields.set(4, record.connection.map_or(-1.0, |c| c as f64))?;
                Ok(fields)
            },
        )?,
    )?;

    let h = Rc::downgrade(host);
    native.set(
        "session",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, id: f64, connection: f64, op: String, args: String, done: Function<'js>| {
                let Some(host) = h.upgrade() else { return };
                let session = {
                    let state = host.state.borrow();
                    state.pending.get(&(id as u64)).and_then(|p| p.session.clone()).or_else(|| {
                        (connection >= 0.0)
                            .then(|| state.connections.get(&(connection as u64)).map(|c| c.session.clone()))
                            .flatten()
                    })
                };
                let done = Persistent::save(&ctx, done);
                let args: Vec<String> = serde_json::from_str(&args).unwrap_or_default();
                // The user before this change: a logout takes them offline.
                let before = session.as_ref().and_then(|s| s.user_id());
                if let Some(session) = &session {
                    match op.as_str() {
                        "set_user" => session.assume_user(args.first().cloned()),
                        "logout" => session.assume_user(None),
                        _ => {}
                    }
                }
                let spawner = host.clone();
                let task = async move {
                    let outcome = match session {
                        None => Err(ActionError::failed(
                            "this code runs outside a call from a client, so it has no session",
                        )),
                        Some(session) => session_op(&session, &op, &args, before).await,
                    };
                    host.enter(|ctx| {
                        let result = done.restore(&ctx).and_then(|done| match outcome {
                            Ok(value) => done.call::<_, ()>((None::<String>, value.to_string())),
                            // The code too: the caller's mistake (`bad_args`) reaches the caller as such.
                            Err(e) => done.call::<_, ()>((Some(e.to_string()), None::<String>, e.code())),
                        });
                        if let Err(e) = result {
                            crate::errln!("ssrun: [server] a session callback failed: {}", exception_text(&ctx, e).0);
                        }
                    });
                };
                spawner.spawn(None, Box::pin(task));
            },
        )?,
    )?;

    let h = Rc::downgrade(host);
    native.set(
        "publish",
        Function::new(ctx.clone(), move |kind: String, targets: String, event: String, data: String| {
            let Some(host) = h.upgrade() else { return };
            let targets: Vec<String> = serde_json::from_str(&targets).unwrap_or_default();
            let data: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            let target = match kind.as_str() {
                "user" => Target::User(targets.into_iter().next().unwrap_or_default()),
                "users" => Target::Users(targets),
                "channel" => Target::Channels(targets),
                _ => Target::Broadcast,
            };
            let publisher = host.publisher.clone();
            host.spawn(
                None,
                Box::pin(async move {
                    if let Err(e) = publisher.publish(target, &event, data).await {
                        crate::errln!("ssrun: [server] publish {event}: {e}");
                    }
                }),
            );
        })?,
    )?;

    let h = Rc::downgrade(host);
    native.set(
        "online",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, done: Function<'js>| {
            let Some(host) = h.upgrade() else { return };
            let done = Persistent::save(&ctx, done);
            let presence = host.presence.clone();
            let task = {
                let host = host.clone();
                async move {
                    let users = presence.online().await.unwrap_or_else(|e| {
                        crate::errln!("ssrun: [server] users online: {e}");
                        Vec::new()
                    });
                    host.enter(|ctx| {
                        if let Err(e) =
                            done.restore(&ctx).and_then(|done| done.call::<_, ()>((json!(users).to_string(),)))
                        {
                            crate::errln!(
                                "ssrun: [server] SS.users.online.now callback: {}",
                                exception_text(&ctx, e).0
                            );
                        }
                    });
                }
            };
            host.spawn(None, Box::pin(task));
        })?,
    )?;

    native.set(
        "log",
        Function::new(ctx.clone(), |level: u32, tag: String, text: String| {
            let label = match level {
                0 => "error",
                1 => "warn",
                2 => "log",
                _ => "debug",
            };
            if level <= 1 {
                crate::errln!("ssrun: [{tag}] {label}: {text}");
            } else {
                crate::outln!("ssrun: [{tag}] {text}");
            }
        })?,
    )?;

    let h = Rc::downgrade(host);
    native.set(
        "setTimer",
        Function::new(ctx.clone(), move |id: f64, ms: f64, repeat: bool| {
            let Some(host) = h.upgrade() else { return };
            let weak = Rc::downgrade(&host);
            let id = id as u64;
            let period = Duration::from_secs_f64((ms / 1000.0).clamp(0.0, 1e9)).max(if repeat {
                Duration::from_millis(1)
            } else {
                Duration::ZERO
            });
            let task = async move {
                loop {
                    tokio::time::sleep(period).await;
                    let Some(host) = weak.upgrade() else { return };
                    if !repeat {
                        host.state.borrow_mut().timers.remove(&id);
                    }
                    host.enter(|ctx| {
                        if let Err(e) = global_fn(&ctx, "fire").and_then(|f| f.call::<_, ()>((id as f64,))) {
                            let (message, stack) = exception_text(&ctx, e);
                            if !host.fail_interrupted(&ctx, &message, &stack) {
                                crate::errln!("ssrun: [timer] {message}\n{stack}");
                            }
                        }
                    });
                    if !repeat {
                        return;
                    }
                }
            };
            host.spawn(Some(id), Box::pin(task));
        })?,
    )?;

    let h = Rc::downgrade(host);
    native.set(
        "live",
        Function::new(ctx.clone(), move |connection: f64| {
            h.upgrade().is_some_and(|host| host.state.borrow().connections.contains_key(&(connection as u64)))
        })?,
    )?;

    let h = Rc::downgrade(host);
    native.set(
        "clearTimer",
        Function::new(ctx.clone(), move |id: f64| {
            let Some(host) = h.upgrade() else { return };
            if let Some(Some(task)) = host.state.borrow_mut().timers.remove(&(id as u64)) {
                task.abort();
            }
        })?,
    )?;

    ctx.globals().set("__host", native)
}

/// An answer from its JSON text (`JSON.stringify`'s), where half of a
/// surrogate pair in a string reads as U+FFFD.
fn answer_from_json(text: &str) -> ActionResult {
    serde_json::from_str(text).or_else(|e| {
        let fixed = crate::json::without_lone_surrogates(text).and_then(|fixed| serde_json::from_str(&fixed).ok());
        fixed.ok_or_else(|| unreadable_answer(&e))
    })
}

/// Why an answer's text could not be read back.
fn unreadable_answer(e: &serde_json::Error) -> ActionError {
    // JSON.stringify wrote it, so it is JSON; what fails is depth.
    if e.to_string().starts_with("recursion limit exceeded") {
        ActionError::failed(format!(
            "the answer is nested more than {ANSWER_DEPTH} levels deep (arrays and objects inside each other), \
             deeper than ssrun sends: flatten it, or send it as a JSON string"
        ))
    } else {
        ActionError::failed(format!("the answer is not JSON: {e}"))
    }
}

/// How deep an answer may nest: serde_json's limit while reading it.
const ANSWER_DEPTH: usize = 127;

/// `value` as JSON, for the values `JSON.stringify` writes without looking
/// inside (numbers, strings, booleans, null; undefined as null, as when it
/// is an array element), and as it would write them: whole numbers as JSON
/// integers (`625`, not `625.0`), NaN and the infinities as null.
fn primitive_json<'js>(ctx: &Ctx<'js>, value: &rquickjs::Value<'js>) -> ActionResult {
    if let Some(n) = value.as_int() {
        return Ok(Value::from(n));
    }
    if let Some(n) = value.as_float() {
        // In range, the casts are exact for whole numbers (-0 becomes 0).
        const TWO_TO_63: f64 = 9_223_372_036_854_775_808.0;
        if n.fract() == 0.0 && (-TWO_TO_63..TWO_TO_63).contains(&n) {
            return Ok(Value::from(n as i64));
        }
        if n.fract() == 0.0 && (0.0..2.0 * TWO_TO_63).contains(&n) {
            return Ok(Value::from(n as u64));
        }
        return Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number));
    }
    if let Some(b) = value.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Some(s) = value.as_string() {
        return match s.to_string() {
            Ok(s) => Ok(Value::String(s)),
            // Half of a surrogate pair is not UTF-8: go the way of JSON text.
            Err(_) => match ctx.json_stringify(value.clone()) {
                Ok(Some(text)) => answer_from_json(&text.to_string().unwrap_or_default()),
                _ => Err(ActionError::failed("the answer is a string that cannot be read")),
            },
        };
    }
    if value.is_null() || value.is_undefined() {
        return Ok(Value::Null);
    }
    Err(ActionError::failed(format!("the answer is a {}, not a value with a JSON form", value.type_name())))
}

/// `value` as a JavaScript value, built directly rather than through JSON text.
fn to_js<'js>(ctx: &Ctx<'js>, value: &Value) -> rquickjs::Result<rquickjs::Value<'js>> {
    use rquickjs::IntoJs;
    Ok(match value {
        Value::Null => rquickjs::Value::new_null(ctx.clone()),
        Value::Bool(b) => rquickjs::Value::new_bool(ctx.clone(), *b),
        Value::Number(n) => match n.as_i64() {
            Some(i) if i32::try_from(i).is_ok() => rquickjs::Value::new_int(ctx.clone(), i as i32),
            _ => rquickjs::Value::new_float(ctx.clone(), n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => s.as_str().into_js(ctx)?,
        Value::Array(items) => {
            let array = rquickjs::Array::new(ctx.clone())?;
            for (i, item) in items.iter().enumerate() {
                array.set(i, to_js(ctx, item)?)?;
            }
            array.into_value()
        }
        Value::Object(map) => {
            let object = Object::new(ctx.clone())?;
            for (key, item) in map {
                // Defined, not assigned, as `JSON.parse` does: a key
                // `__proto__` from a client is a property like any other,
                // never the object's prototype.
                let property =
                    rquickjs::object::Property::from(to_js(ctx, item)?).writable().enumerable().configurable();
                object.prop(key.as_str(), property)?;
            }
            object.into_value()
        }
    })
}

async fn session_op(
    session: &SessionHandle,
    op: &str,
    args: &[String],
    before: Option<String>,
) -> Result<Value, ActionError> {
    let names: Vec<&str> = args.iter().map(String::as_str).collect();
    match op {
        "set_user" => {
            let user = args.first().ok_or_else(|| ActionError::BadArgs("setUserId needs a user id".into()))?;
            session.set_user_id(user).await?;
            Ok(Value::Bool(true))
        }
        "logout" => session.logout_user(before).await.map(|_| Value::Bool(true)),
        "subscribe" => session.subscribe(&names).await.map(|_| json!(session.channels())),
        "unsubscribe" => session.unsubscribe(&names).await.map(|_| json!(session.channels())),
        "channels" => Ok(json!(session.channels())),
        other => Err(ActionError::BadRequest(format!("unknown session operation {other}"))),
    }
}
