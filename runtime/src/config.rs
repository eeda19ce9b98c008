//! Runtime settings, with the original's defaults. Set them from Rust with
//! [`crate::App::with_config`]; reading them from `config/*.toml` is not built yet.

use std::time::Duration;

/// What a running server is allowed and told to do.
#[derive(Debug, Clone)]
pub struct Config {
    /// The largest WebSocket message or HTTP API body accepted, in bytes (default 64 KiB).
    pub max_message_bytes: usize,
    /// How often browsers send a heartbeat (`client.heartbeat_interval`, default 30 s).
    /// A connection that sends nothing for three intervals is closed.
    pub heartbeat_interval: Duration,
    /// The browser library's log level, 0-4 (`client.log.level`; default 2, production 0).
    pub client_log_level: u8,
    /// Whether the HTTP API is served (`api.enabled`, default true).
    pub api_enabled: bool,
    /// The HTTP API's path prefix, matched case-insensitively (`api.prefix`, default `api`).
    pub api_prefix: String,
    /// The `lib/server` module that checks HTTP API Basic Auth credentials
    /// with `exports.authenticate({username, password}, cb)`
    /// (`api.auth.basic.module_name`; none by default).
    pub api_auth_module: Option<String>,
    /// Users are offline once no heartbeat came for this long
    /// (`users.online.mins_until_offline`, default 2 minutes).
    pub offline_after: Duration,
    /// How often offline users are purged (`users.online.update_interval`, default 60 s).
    pub purge_interval: Duration,
    /// Messages waiting for one slow client before it is disconnected (default 1024).
    pub outgoing_queue: usize,
    /// Calls one connection may have running at once; it is not read beyond that (default 256).
    pub max_calls_in_flight: usize,
    /// Sessions unused for this long are forgotten by the in-memory store (default 30 days).
    pub session_max_age: Duration,
    /// Longest one run of JavaScript server code may take before it is
    /// stopped (default 5 s): an action's synchronous part, a timer, a callback.
    pub js_time_limit: Duration,
    /// The JavaScript engine's memory limit in bytes (default 256 MiB).
    pub js_memory_limit: usize,
    /// How long an action may take to answer, awaiting included (default 30
    /// s); past it the caller gets a `failed` error, and a native action's
    /// future is dropped.
    pub reply_timeout: Duration,
    /// How long a client may take to send a request's headers, and how long
    /// a kept-alive HTTP connection may sit idle (default 10 s); past it the
    /// connection is closed. WebSocket connections are not affected.
    pub header_timeout: Duration,
}

impl Config {
    /// The defaults for an environment: production logs nothing in the browser.
    pub fn for_env(env: &str) -> Config {
        Config { client_log_level: if env == "production" { 0 } else { 2 }, ..Config::default() }
    }

    /// The heartbeat interval in use: `heartbeat_interval`, at least 10 ms.
    /// Browsers are told this one, and connections check against it.
    pub(crate) fn heartbeat(&self) -> Duration {
        self.heartbeat_interval.max(Duration::from_millis(10))
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_message_bytes: 64 * 1024,
            heartbeat_interval: Duration::from_secs(30),
            client_log_level: 2,
            api_enabled: true,
            api_prefix: "api".to_string(),
            api_auth_module: None,
            offline_after: Duration::from_secs(120),
            purge_interval: Duration::from_secs(60),
            outgoing_queue: 1024,
            max_calls_in_flight: 256,
            session_max_age: Duration::from_secs(30 * 24 * 3600),
            js_time_limit: Duration::from_secs(5),
            js_memory_limit: 256 * 1024 * 1024,
            reply_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
        }
    }
}
