//! ssrun: the SocketStream runtime. It loads a packed app ([`LoadedApp`]) and
//! serves it ([`App::serve`]): the page and assets over HTTP ([`http`]), the
//! WebSocket protocol of docs/protocol.md ([`ws`]), the HTTP API, sessions
//! ([`session`]), pub/sub and users online ([`pubsub`]).
//!
//! Server actions are the app's JavaScript (`app/server`), run in an embedded
//! engine ([`quickjs`], started by [`App::with_javascript`]), and native
//! actions registered from Rust ([`App::action`]).
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let app = ssrun::App::new(ssrun::LoadedApp::load("my-app".as_ref())?)
//!     .action("app.square", |call: ssrun::Call| async move {
//!         let n: f64 = call.arg(0)?;
//!         Ok(serde_json::json!(n * n))
//!     });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! app.serve(listener, std::future::pending()).await?;
//! # Ok(()) }
//! ```

pub mod actions;
pub mod app;
pub mod config;
pub mod http;
mod json;
pub mod log;
pub mod pickup;
pub mod pubsub;
pub mod quickjs;
pub mod session;
pub mod ws;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use actions::{ActionError, ActionResult, Call, Registry, SessionHandle};
pub use app::{LoadError, LoadedApp};
pub use config::{Config, ConfigError};
pub use pubsub::{Bus, Hub, MemoryBus, MemoryPresence, Presence, Publisher, Target};
pub use session::{MemoryStore, Session, SessionStore, StoreError};

use actions::SessionServices;
use session::BoxFuture;

type BasicAuth = Arc<dyn Fn(String, String) -> BoxFuture<'static, Result<Option<String>, StoreError>> + Send + Sync>;

/// How the JavaScript engine is started: [`quickjs::Engine::start`] or [`quickjs::Engine::start_here`].
type EngineStart = fn(
    &app::ServerCode,
    quickjs::EngineSettings,
    Publisher,
    Arc<dyn Presence>,
) -> Result<quickjs::Engine, quickjs::EngineError>;

/// A packed app with its server actions, ready to serve.
pub struct App {
    loaded: Arc<LoadedApp>,
    config: Config,
    registry: Registry,
    hub: Arc<Hub>,
    store: Option<Arc<dyn SessionStore>>,
    /// Set with [`App::with_memory_store`]: a store in memory that the caller
    /// keeps (and this app purges of old sessions).
    memory_store: Option<Arc<MemoryStore>>,
    bus: Arc<dyn Bus>,
    presence: Option<Arc<dyn Presence>>,
    basic_auth: Option<BasicAuth>,
    engine: Option<quickjs::Engine>,
}

impl App {
    /// An app with no actions yet, the defaults of its environment, and
    /// sessions, pub/sub and users online in memory.
    pub fn new(loaded: LoadedApp) -> App {
        let hub = Arc::new(Hub::new());
        App {
            config: Config::for_env(&loaded.env),
            loaded: Arc::new(loaded),
            registry: Registry::default(),
            bus: Arc::new(MemoryBus::new(hub.clone())),
            hub,
            store: None,
            memory_store: None,
            presence: None,
            basic_auth: None,
            engine: None,
        }
    }

    /// Starts the JavaScript engine on the app's server code and registers
    /// every action of `app/server` that no native action of the same name
    /// replaces. Call it after [`App::with_config`] (the engine's limits come
    /// from there). Fails when the server code throws while loading.
    pub fn with_javascript(self) -> Result<App, quickjs::EngineError> {
        self.javascript(quickjs::Engine::start)
    }

    /// As [`App::with_javascript`], with the engine on the calling thread (see
    /// [`quickjs::Engine::start_here`]): for a server on a single-threaded
    /// scheduler, where it saves two thread switches per call. Call it inside
    /// a [`tokio::task::LocalSet`] on the thread that runs [`App::serve`]
    /// (there, or in a task `tokio::spawn` started on that scheduler).
    pub fn with_javascript_here(self) -> Result<App, quickjs::EngineError> {
        self.javascript(quickjs::Engine::start_here)
    }

    /// Starts the engine where a server on [`server_runtime`] wants it: on
    /// the calling thread when the process may use one CPU (then call it
    /// inside a [`tokio::task::LocalSet`] on the thread that runs
    /// [`App::serve`]), on a thread of its own otherwise.
    pub fn with_javascript_for_server_runtime(self) -> Result<App, quickjs::EngineError> {
        if single_cpu() { self.with_javascript_here() } else { self.with_javascript() }
    }

    fn javascript(mut self, start: EngineStart) -> Result<App, quickjs::EngineError> {
        let Some(code) = self.loaded.server_code.clone() else { return Ok(self) };
        let presence = self.presence.get_or_insert_with(|| Arc::new(MemoryPresence::new(self.config.offline_after)));
        let settings = quickjs::EngineSettings {
            time_limit: self.config.js_time_limit,
            memory_limit: self.config.js_memory_limit,
            reply_timeout: self.config.reply_timeout,
            // As ssbuild: every environment but development (staging, say) is treated as production.
            detailed_errors: self.loaded.env == "development",
        };
        let publisher = Publisher::new(self.bus.clone()).logging(self.config.log_level);
        let engine = start(&code, settings, publisher, presence.clone())?;
        // Shared by the actions: a call clones one counted reference, not
        // the engine's handles one by one.
        let shared = Arc::new(engine.clone());
        for file in &code.files {
            let runtime_flag = engine.authenticate.contains(&file.key);
            if runtime_flag && !file.authenticate {
                crate::errln!(
                    "ssrun: warning: {} sets exports.authenticate in a way the packer cannot read; its actions need a signed-in user",
                    file.path
                );
            }
            let authenticate = file.authenticate || runtime_flag;
            // The packer's names first; then those only the engine found
            // under this file's key: a namespace the packer cannot follow
            // (`users: require('./users').actions`) is a tree of actions
            // once loaded. A name goes to the file with the longest key
            // that holds it, and an action the packer named but the engine
            // did not find (it is not a function once loaded) is left out.
            let found = engine.actions.iter().filter(|name| {
                !file.actions.contains(name)
                    && name.strip_prefix(file.key.as_str()).is_some_and(|rest| rest.starts_with('.'))
                    && !code.files.iter().any(|other| {
                        other.key.len() > file.key.len()
                            && name.strip_prefix(other.key.as_str()).is_some_and(|rest| rest.starts_with('.'))
                    })
            });
            for name in file.actions.iter().chain(found) {
                if self.registry.get(name).is_some() || !engine.actions.contains(name) {
                    continue;
                }
                if let Err(problem) = self.registry.check(name) {
                    return Err(quickjs::EngineError(format!("{}: {problem}", file.path)));
                }
                let Some(index) = engine.index_of(name) else { continue };
                let engine = shared.clone();
                self.registry.add_javascript(name, authenticate, move |call: Call| {
                    let engine = engine.clone();
                    async move { engine.call_listed(index, call.method, call.args, call.session, call.connection).await }
                });
            }
        }
        if let (Some(module), None) = (self.config.api_auth_module.clone(), &self.basic_auth) {
            if !code.lib_server.contains_key(&module) {
                let there = if code.lib_server.is_empty() {
                    "lib/server has no modules".to_string()
                } else {
                    format!("lib/server has {}", code.lib_server.keys().cloned().collect::<Vec<_>>().join(", "))
                };
                return Err(quickjs::EngineError(format!(
                    "the setting api.auth.basic.module_name (config/app.toml, or config/environments/{env}.toml) \
                     names lib/server/{module}, and there is no such module ({there}): add lib/server/{module}.js, \
                     or name one that is there",
                    env = self.loaded.env
                )));
            }
            let engine = engine.clone();
            self = self.api_basic_auth(move |user, password| {
                let (engine, module) = (engine.clone(), module.clone());
                async move { engine.authenticate(&module, user, password).await.map_err(StoreError) }
            });
        }
        self.engine = Some(engine);
        Ok(self)
    }

    /// The JavaScript engine, once [`App::with_javascript`] started it.
    pub fn engine(&self) -> Option<&quickjs::Engine> {
        self.engine.as_ref()
    }

    /// Replaces the settings.
    pub fn with_config(mut self, config: Config) -> App {
        self.config = config;
        self
    }

    /// Keeps sessions in `store` instead of this process's memory.
    pub fn with_session_store(mut self, store: Arc<dyn SessionStore>) -> App {
        self.store = Some(store);
        self
    }

    /// Keeps sessions in `store`, a store in this process's memory that the
    /// caller holds on to: a server that is replaced by a new one in the same
    /// process (a new build picked up in development) hands it over, and
    /// browsers keep their sessions.
    pub fn with_memory_store(mut self, store: Arc<MemoryStore>) -> App {
        self.store = Some(store.clone());
        self.memory_store = Some(store);
        self
    }

    /// Publishes through `bus` instead of straight to this process's hub. A
    /// bus that several instances share carries each event to every one of
    /// them, and each hands it to its own hub ([`App::hub`],
    /// [`Hub::deliver`]). Call it before [`App::with_javascript`], whose
    /// engine publishes through it.
    pub fn with_bus(mut self, bus: Arc<dyn Bus>) -> App {
        self.bus = bus;
        self
    }

    /// Keeps users online in `presence` instead of a table of this app's own.
    /// Call it before [`App::with_javascript`], whose engine uses it.
    pub fn with_presence(mut self, presence: Arc<dyn Presence>) -> App {
        self.presence = Some(presence);
        self
    }

    /// Registers a native action, callable as `SS.server.<name>` (for
    /// example `app.square`) over the WebSocket and the HTTP API. A call that
    /// has not answered within `reply_timeout` is answered with a `failed`
    /// error and its future dropped. Panics on a malformed or clashing name
    /// (see [`Registry::add`]).
    pub fn action<F, Fut>(mut self, name: &str, handler: F) -> App
    where
        F: Fn(Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ActionResult> + Send + 'static,
    {
        self.registry.add(name, false, handler);
        self
    }

    /// Registers an action that refuses callers whose session has no user,
    /// as `exports.authenticate = true` does for a JavaScript file.
    pub fn authenticated_action<F, Fut>(mut self, name: &str, handler: F) -> App
    where
        F: Fn(Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ActionResult> + Send + 'static,
    {
        self.registry.add(name, true, handler);
        self
    }

    /// How the HTTP API checks Basic Auth credentials for authenticated
    /// actions: `check(username, password)` gives the user id, or `None` to refuse.
    pub fn api_basic_auth<F, Fut>(mut self, check: F) -> App
    where
        F: Fn(String, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<String>, StoreError>> + Send + 'static,
    {
        self.basic_auth = Some(Arc::new(move |user, password| Box::pin(check(user, password))));
        self
    }

    /// `SS.publish`, usable from anywhere in the program.
    pub fn publisher(&self) -> Publisher {
        Publisher::new(self.bus.clone()).logging(self.config.log_level)
    }

    /// The environment the app was packed for.
    pub fn env(&self) -> &str {
        &self.loaded.env
    }

    /// This process's connections.
    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// The actions registered so far.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Serves the app on `listener` until `shutdown` completes; then open
    /// sockets are closed with code 1001 so that browsers reconnect elsewhere.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let config = self.config.clone();
        let memory_store = match (&self.store, self.memory_store) {
            (_, Some(memory)) => Some(memory),
            (Some(_), None) => None,
            (None, None) => Some(Arc::new(MemoryStore::new(config.session_max_age))),
        };
        if let Some(memory) = &memory_store {
            // So that making room for new sessions spares those connected here.
            memory.watch(&self.hub);
        }
        let store: Arc<dyn SessionStore> = match (&self.store, &memory_store) {
            (Some(store), _) => store.clone(),
            (None, Some(memory)) => memory.clone(),
            (None, None) => unreachable!("one of the two is set"),
        };
        let presence: Arc<dyn Presence> =
            self.presence.unwrap_or_else(|| Arc::new(MemoryPresence::new(config.offline_after)));
        let shared = Arc::new(Shared {
            sockets: Default::default(),
            init_tail: format!(
                r#","client":{{"log_level":{},"heartbeat_interval":{},"max_message_bytes":{}}},"api":{}{}}}"#,
                config.client_log_level,
                // In seconds, fractions included.
                config.heartbeat().as_secs_f64(),
                config.max_message_bytes,
                self.registry.tree(),
                build_field(&self.loaded)
            ),
            loaded: self.loaded,
            publisher: Publisher::new(self.bus).logging(config.log_level),
            services: Arc::new(SessionServices {
                store,
                hub: self.hub.clone(),
                presence: presence.clone(),
                max_channels: config.max_channels_per_session,
            }),
            registry: self.registry,
            basic_auth: self.basic_auth,
            engine: self.engine,
            config,
        });
        let housekeeping = tokio::spawn(housekeeping(shared.clone(), memory_store));
        let hub = shared.services.hub.clone();
        let signal = async move {
            shutdown.await;
            hub.shut_down();
        };
        let router = http::router(shared.clone());
        let result = http::serve(listener, router, shared.config.header_timeout, signal).await;
        housekeeping.abort();
        // Give sockets a moment to send their close frames.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while shared.sockets.load(std::sync::atomic::Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        result
    }
}

/// The `build` field of `init` (development only): the page's script and
/// stylesheet and a digest of the rest of the page, so that a page from an
/// older build reloads itself, or swaps its stylesheet when only that changed.
fn build_field(loaded: &LoadedApp) -> String {
    if loaded.env != "development" {
        return String::new();
    }
    let (css, integrity) = match &loaded.build.css {
        Some((url, integrity)) => (Some(url), Some(integrity)),
        None => (None, None),
    };
    let build = &loaded.build;
    format!(
        r#","build":{}"#,
        serde_json::json!({ "js": build.js, "css": css, "css_integrity": integrity, "page": build.page })
    )
}

/// Everything the handlers share.
pub(crate) struct Shared {
    pub loaded: Arc<LoadedApp>,
    pub config: Config,
    pub registry: Registry,
    pub services: Arc<SessionServices>,
    pub publisher: Publisher,
    pub basic_auth: Option<BasicAuth>,
    pub engine: Option<quickjs::Engine>,
    /// The end of every `init` message: client settings and the API tree.
    pub init_tail: String,
    /// WebSocket connections whose task has not ended: at shutdown the
    /// server waits for them to send their close frames (leaving the hub,
    /// which they do first, is not enough).
    pub sockets: std::sync::atomic::AtomicUsize,
}

impl Shared {
    pub(crate) fn call(
        &self,
        method: Arc<str>,
        args: Vec<Value>,
        session: SessionHandle,
        connection: Option<pubsub::ConnId>,
    ) -> Call {
        Call {
            method,
            args,
            session,
            publish: self.publisher.clone(),
            connection,
            presence: self.services.presence.clone(),
        }
    }
}

/// Purges users who stopped sending heartbeats, and old sessions.
async fn housekeeping(shared: Arc<Shared>, memory_store: Option<Arc<MemoryStore>>) {
    let mut tick = tokio::time::interval(shared.config.purge_interval.max(Duration::from_millis(100)));
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = shared.services.presence.purge().await {
            crate::errln!("ssrun: cannot purge users online: {e}");
        }
        if let Some(store) = &memory_store {
            // The connections of every server using the store count (`watch`).
            store.purge();
        }
    }
}

/// Whether this process may use only one CPU (then a server runs a
/// single-threaded scheduler, and the JavaScript engine on that thread).
pub fn single_cpu() -> bool {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) == 1
}

/// The tokio runtime a server should run on: one worker per CPU this process
/// may use, or a single-threaded scheduler when it may use only one (a
/// multi-threaded runtime with one worker lets some connections wait far
/// longer than others under load).
pub fn server_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    if single_cpu() {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    }
}
