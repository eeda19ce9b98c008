//! Runtime settings, with the original's defaults. `ssrun` reads them from
//! the app's `config/app.toml`, then `config/environments/ENV.toml`
//! ([`Config::load`]); a Rust program sets them with [`crate::App::with_config`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
    /// What the server logs of calls and events (`log.level`; default 3,
    /// production 0): 0 none of them, 1 calls that failed, 2 also every call
    /// answered (`-> app.square`) and every event published (`=> newMessage`),
    /// 3 also their arguments and data, 4 also the answers. Calls the
    /// client marks `silent` are left out at every level. Server code's own
    /// `console` lines, and errors the server logs for itself, are shown at
    /// every level.
    pub log_level: u8,
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
    /// Channels one session may be in at once (default 1,000); a subscribe
    /// past it fails with `bad_args`.
    pub max_channels_per_session: usize,
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
    /// The port `ssrun` listens on when `--port` is not given (`http.port`, default 3000).
    pub port: u16,
    /// How long a client may take to send a request's headers (and an HTTP
    /// API body, answered with 408 past it), and how long a kept-alive HTTP
    /// connection may sit idle (default 10 s); past it the connection is
    /// closed. WebSocket connections are not affected.
    pub header_timeout: Duration,
}

impl Config {
    /// The defaults for an environment: production logs no calls, in the
    /// browser or on the server.
    pub fn for_env(env: &str) -> Config {
        let production = env == "production";
        Config {
            client_log_level: if production { 0 } else { 2 },
            log_level: if production { 0 } else { 3 },
            ..Config::default()
        }
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
            log_level: 3,
            api_enabled: true,
            api_prefix: "api".to_string(),
            api_auth_module: None,
            offline_after: Duration::from_secs(120),
            purge_interval: Duration::from_secs(60),
            outgoing_queue: 1024,
            max_calls_in_flight: 256,
            max_channels_per_session: 1000,
            session_max_age: Duration::from_secs(30 * 24 * 3600),
            js_time_limit: Duration::from_secs(5),
            js_memory_limit: 256 * 1024 * 1024,
            reply_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            port: 3000,
        }
    }
}

/// What a TOML parse error says, with where it is: the line and column, and
/// the line itself.
fn toml_mistake(text: &str, error: &toml::de::Error) -> String {
    let Some(span) = error.span() else { return format!("not valid TOML: {}", error.message()) };
    let start = span.start.min(text.len());
    let before = text.get(..start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let shown = text[line_start..].lines().next().unwrap_or("").trim_end();
    format!("line {line}, column {column}: not valid TOML: {} (the line: `{shown}`)", error.message().trim_end())
}

/// A mistake in a config file: the file, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", file.display())]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// What is wrong, naming the key.
    pub message: String,
}

/// What a `[redis]` table in a config file gets: the settings of a store
/// shared between servers would go there, and there is none yet.
const NO_REDIS: &str = "[redis]: ssrun has no Redis support yet (sessions, users online and pub/sub live in the \
                        memory of one server); remove the [redis] table";

/// The keys `ssrun` reads, with what each takes (for error messages).
pub const KEYS: [(&str, &str); 18] = [
    ("http.port", "a port number (0 to 65535)"),
    ("log.level", "0 to 4"),
    ("client.heartbeat_interval", "seconds (more than 0)"),
    ("client.log.level", "0 to 4"),
    ("api.enabled", "true or false"),
    ("api.prefix", "a path segment of letters, digits, `-`, `_` and `~`"),
    ("api.auth.basic.module_name", "a lib/server module name"),
    ("users.online.mins_until_offline", "minutes (more than 0)"),
    ("users.online.update_interval", "seconds (more than 0)"),
    ("server.max_message_bytes", "a number of bytes, at least 1024"),
    ("server.outgoing_queue", "a count, at least 1"),
    ("server.max_calls_in_flight", "a count, at least 1"),
    ("server.max_channels_per_session", "a count, at least 1"),
    ("server.session_max_age", "seconds (more than 0)"),
    ("server.js_time_limit", "seconds (more than 0)"),
    ("server.js_memory_limit", "a number of bytes, at least 1048576 (1 MiB)"),
    ("server.reply_timeout", "seconds (more than 0)"),
    ("server.header_timeout", "seconds (more than 0)"),
];

impl Config {
    /// The defaults for `env`, then `app.toml`, then `environments/ENV.toml`
    /// of `config_dir` (an app's `config/` folder), each overriding the
    /// last. The `[build]` table is ssbuild's; any other key not in [`KEYS`],
    /// or a value of the wrong kind, is an error naming the file and the key.
    pub fn load(config_dir: Option<&Path>, env: &str) -> Result<Config, ConfigError> {
        Config::load_noting(config_dir, env, &mut BTreeMap::new())
    }

    /// The effective settings as TOML (`ssrun config`): every key ssrun
    /// reads, in tables, each with the file that set it or `default`.
    pub fn effective(config_dir: Option<&Path>, env: &str) -> Result<String, ConfigError> {
        let mut origins = BTreeMap::new();
        let config = Config::load_noting(config_dir, env, &mut origins)?;
        let mut out = format!("# ssrun's settings for the {env} environment\n");
        let mut table = "";
        for (key, _) in KEYS {
            let (head, rest) = key.split_once('.').expect("every key is in a table");
            if head != table {
                out.push_str(&format!("\n[{head}]\n"));
                table = head;
            }
            let origin = match origins.get(key) {
                Some(file) => format!("from {}", file.display()),
                None => "default".to_string(),
            };
            match config.value(key) {
                Some(value) => out.push_str(&format!("{rest} = {value}  # {origin}\n")),
                None => out.push_str(&format!("# {rest} is not set  ({origin})\n")),
            }
        }
        Ok(out)
    }

    /// A key's value as TOML; `None` when it has none.
    fn value(&self, key: &str) -> Option<toml::Value> {
        let seconds = |d: Duration| {
            let s = d.as_secs_f64();
            if s.fract() == 0.0 { toml::Value::Integer(s as i64) } else { toml::Value::Float(s) }
        };
        let int = |n: usize| toml::Value::Integer(n as i64);
        Some(match key {
            "http.port" => toml::Value::Integer(self.port.into()),
            "client.heartbeat_interval" => seconds(self.heartbeat_interval),
            "client.log.level" => toml::Value::Integer(self.client_log_level.into()),
            "log.level" => toml::Value::Integer(self.log_level.into()),
            "api.enabled" => toml::Value::Boolean(self.api_enabled),
            "api.prefix" => toml::Value::String(self.api_prefix.clone()),
            "api.auth.basic.module_name" => toml::Value::String(self.api_auth_module.clone()?),
            "users.online.mins_until_offline" => {
                let m = self.offline_after.as_secs_f64() / 60.0;
                if m.fract() == 0.0 { toml::Value::Integer(m as i64) } else { toml::Value::Float(m) }
            }
            "users.online.update_interval" => seconds(self.purge_interval),
            "server.max_message_bytes" => int(self.max_message_bytes),
            "server.outgoing_queue" => int(self.outgoing_queue),
            "server.max_calls_in_flight" => int(self.max_calls_in_flight),
            "server.max_channels_per_session" => int(self.max_channels_per_session),
            "server.session_max_age" => seconds(self.session_max_age),
            "server.js_time_limit" => seconds(self.js_time_limit),
            "server.js_memory_limit" => int(self.js_memory_limit),
            "server.reply_timeout" => seconds(self.reply_timeout),
            "server.header_timeout" => seconds(self.header_timeout),
            _ => unreachable!("every key of KEYS is handled"),
        })
    }

    /// The files the config of `env` is read from, in order, under the app's
    /// `config/` folder `dir` (either may be missing).
    pub fn files(dir: &Path, env: &str) -> [PathBuf; 2] {
        [dir.join("app.toml"), dir.join("environments").join(format!("{env}.toml"))]
    }

    /// [`Config::load`], noting in `origins` the file each key was last set by.
    fn load_noting(
        config_dir: Option<&Path>,
        env: &str,
        origins: &mut BTreeMap<String, PathBuf>,
    ) -> Result<Config, ConfigError> {
        let mut config = Config::for_env(env);
        let Some(dir) = config_dir else { return Ok(config) };
        for file in Config::files(dir, env) {
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ConfigError { file, message: format!("cannot read it: {e}") }),
            };
            let table: toml::Table = match text.parse() {
                Ok(table) => table,
                Err(e) => return Err(ConfigError { file, message: toml_mistake(&text, &e) }),
            };
            if table.contains_key("redis") {
                return Err(ConfigError { file, message: NO_REDIS.to_string() });
            }
            let mut leaves = Vec::new();
            flatten("", &table, &mut leaves);
            for (key, value) in leaves {
                if key == "build" || key.starts_with("build.") {
                    continue;
                }
                if let Err(message) = config.set(&key, value) {
                    return Err(ConfigError { file, message });
                }
                origins.insert(key, file.clone());
            }
        }
        Ok(config)
    }

    /// Sets one dotted key (not under `redis`: see [`NO_REDIS`]).
    fn set(&mut self, key: &str, value: &toml::Value) -> Result<(), String> {
        let wanted = KEYS.iter().find(|(k, _)| *k == key).map(|(_, w)| *w);
        let Some(wanted) = wanted else {
            let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
            return Err(format!("unknown key `{key}` (ssrun reads {}; [build] is ssbuild's)", known.join(", ")));
        };
        let wrong = || format!("`{key}` takes {wanted}, not {}", show(value));
        let number = || match value {
            toml::Value::Integer(i) => Some(*i as f64),
            toml::Value::Float(f) => Some(*f),
            _ => None,
        };
        let seconds = || {
            number().filter(|n| n.is_finite() && *n > 0.0 && *n < 1e9).map(Duration::from_secs_f64).ok_or_else(wrong)
        };
        let count = |min: i64| match value {
            toml::Value::Integer(i) if *i >= min => Ok(*i as usize),
            _ => Err(wrong()),
        };
        match key {
            "http.port" => match value {
                toml::Value::Integer(i) if (0..=65535).contains(i) => self.port = *i as u16,
                _ => return Err(wrong()),
            },
            "client.heartbeat_interval" => self.heartbeat_interval = seconds()?,
            "client.log.level" => match value {
                toml::Value::Integer(i) if (0..=4).contains(i) => self.client_log_level = *i as u8,
                _ => return Err(wrong()),
            },
            "log.level" => match value {
                toml::Value::Integer(i) if (0..=4).contains(i) => self.log_level = *i as u8,
                _ => return Err(wrong()),
            },
            "api.enabled" => self.api_enabled = value.as_bool().ok_or_else(wrong)?,
            "api.prefix" => {
                let prefix = value.as_str().map(|p| p.trim_matches('/')).ok_or_else(wrong)?;
                // Written in URLs as it is: nothing a browser would percent-encode.
                let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~');
                if prefix.is_empty() || !prefix.bytes().all(plain) {
                    return Err(wrong());
                }
                // Paths the server answers itself (the prefix is matched without case).
                let taken = [
                    ("assets", "where the app's hashed assets are served"),
                    ("_ss", "the WebSocket endpoint's"),
                    // `/api.json` is the API's index, so `/index.html` would be too.
                    ("index", "the page's (/index.html)"),
                ];
                for (taken, what) in taken {
                    if prefix.eq_ignore_ascii_case(taken) {
                        return Err(format!("`{key}` cannot be {prefix:?}: /{taken}/ is {what}"));
                    }
                }
                self.api_prefix = prefix.to_string();
            }
            "api.auth.basic.module_name" => {
                let name = value.as_str().filter(|n| !n.is_empty()).ok_or_else(wrong)?;
                self.api_auth_module = Some(name.to_string());
            }
            "users.online.mins_until_offline" => {
                self.offline_after = number()
                    .filter(|n| n.is_finite() && *n > 0.0 && *n < 1e7)
                    .map(|m| Duration::from_secs_f64(m * 60.0))
                    .ok_or_else(wrong)?
            }
            "users.online.update_interval" => self.purge_interval = seconds()?,
            "server.max_message_bytes" => self.max_message_bytes = count(1024)?,
            "server.outgoing_queue" => self.outgoing_queue = count(1)?,
            "server.max_calls_in_flight" => self.max_calls_in_flight = count(1)?,
            "server.max_channels_per_session" => self.max_channels_per_session = count(1)?,
            "server.session_max_age" => self.session_max_age = seconds()?,
            "server.js_time_limit" => self.js_time_limit = seconds()?,
            "server.js_memory_limit" => self.js_memory_limit = count(1024 * 1024)?,
            "server.reply_timeout" => self.reply_timeout = seconds()?,
            "server.header_timeout" => self.header_timeout = seconds()?,
            _ => unreachable!("every key of KEYS is handled"),
        }
        Ok(())
    }
}

/// The leaves of a TOML table as dotted keys (`[api.auth.basic]
/// module_name = ...` is `api.auth.basic.module_name`).
fn flatten<'a>(prefix: &str, table: &'a toml::Table, out: &mut Vec<(String, &'a toml::Value)>) {
    for (key, value) in table {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            toml::Value::Table(inner) => flatten(&path, inner, out),
            other => out.push((path, other)),
        }
    }
}

/// A value as an error message shows it.
fn show(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("the string {s:?}"),
        other => format!("{} {other}", other.type_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_config(files: &[(&str, &str)]) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ssrun-config-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn the_effective_settings_name_their_origin_and_read_back_the_same() {
        let dir = app_config(&[
            ("app.toml", "[http]\nport = 8080\n[server]\njs_time_limit = 0.5\n"),
            ("environments/production.toml", "[http]\nport = 80\n[api.auth.basic]\nmodule_name = \"custom_auth\"\n"),
        ]);
        let text = Config::effective(Some(&dir), "production").unwrap();
        let env_file = dir.join("environments").join("production.toml");
        assert!(text.contains(&format!("[http]\nport = 80  # from {}\n", env_file.display())), "{text}");
        assert!(text.contains(&format!("js_time_limit = 0.5  # from {}\n", dir.join("app.toml").display())), "{text}");
        assert!(text.contains("auth.basic.module_name = \"custom_auth\"  # from"), "{text}");
        assert!(text.contains("\n[client]\nheartbeat_interval = 30  # default\nlog.level = 0  # default\n"), "{text}");
        assert_eq!(text.matches(" = ").count(), KEYS.len(), "{text}");

        // Pasted into an app.toml, it gives the same settings.
        let copy = app_config(&[("app.toml", &text)]);
        let again = Config::effective(Some(&copy), "production").unwrap();
        let values = |t: &str| t.lines().map(|l| l.split("  #").next().unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!(values(&again), values(&text));

        let none = Config::effective(None, "development").unwrap();
        assert!(
            none.contains("# module_name") || none.contains("# auth.basic.module_name is not set  (default)"),
            "{none}"
        );
        assert!(none.contains("log.level = 2  # default"), "{none}");
    }

    #[test]
    fn files_override_the_defaults_and_the_environment_overrides_the_app() {
        let dir = app_config(&[
            (
                "app.toml",
                "[build]\nminify = false\n\n[http]\nport = 8080\n\n[log]\nlevel = 4\n\n[client]\nheartbeat_interval = 15\n\n\
                 [api.auth.basic]\nmodule_name = \"custom_auth\"\n\n[server]\njs_time_limit = 0.5\nmax_message_bytes = 131072\n",
            ),
            ("environments/production.toml", "[http]\nport = 80\n[users.online]\nmins_until_offline = 5\n"),
        ]);
        let dev = Config::load(Some(&dir), "development").unwrap();
        assert_eq!((dev.port, dev.heartbeat_interval, dev.client_log_level), (8080, Duration::from_secs(15), 2));
        assert_eq!(dev.api_auth_module.as_deref(), Some("custom_auth"));
        assert_eq!(dev.log_level, 4);
        assert_eq!((Config::for_env("development").log_level, Config::for_env("production").log_level), (3, 0));
        assert_eq!((dev.js_time_limit, dev.max_message_bytes), (Duration::from_millis(500), 131072));
        assert_eq!(dev.offline_after, Duration::from_secs(120));
        let prod = Config::load(Some(&dir), "production").unwrap();
        assert_eq!((prod.port, prod.client_log_level, prod.offline_after), (80, 0, Duration::from_secs(300)));
        assert_eq!(Config::load(None, "production").unwrap().port, 3000);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unknown_keys_wrong_values_and_bad_toml_name_the_file_and_key() {
        let cases = [
            ("[api]\nprefx = \"x\"\n", "unknown key `api.prefx` (ssrun reads http.port"),
            ("[redis]\nurl = \"redis://localhost\"\n", "[redis]: ssrun has no Redis support yet"),
            ("[redis]\n", "[redis]: ssrun has no Redis support yet"),
            ("[api]\nenabled = \"yes\"\n", "`api.enabled` takes true or false, not the string \"yes\""),
            ("[client.log]\nlevel = 7\n", "`client.log.level` takes 0 to 4, not integer 7"),
            ("[log]\nlevel = \"loud\"\n", "`log.level` takes 0 to 4, not the string \"loud\""),
            ("[server]\njs_time_limit = -1\n", "`server.js_time_limit` takes seconds (more than 0), not integer -1"),
            (
                "[server]\nmax_message_bytes = 1000\n",
                "`server.max_message_bytes` takes a number of bytes, at least 1024, not integer 1000",
            ),
            ("[api]\nprefix = \"a/b\"\n", "`api.prefix` takes a path segment"),
            ("[api]\nprefix = \"a b\"\n", "`api.prefix` takes a path segment of letters, digits"),
            ("[api]\nprefix = \"é\"\n", "`api.prefix` takes a path segment of letters, digits"),
            ("[api]\nprefix = \"Assets\"\n", "`api.prefix` cannot be \"Assets\": /assets/ is where the app's hashed"),
            ("[api]\nprefix = \"_ss\"\n", "`api.prefix` cannot be \"_ss\": /_ss/ is the WebSocket endpoint's"),
            ("[api]\nprefix = \"Index\"\n", "`api.prefix` cannot be \"Index\": /index/ is the page's (/index.html)"),
            ("[http]\nport = 70000\n", "`http.port` takes a port number"),
            ("[http\nport = 1\n", "line 1, column 6: not valid TOML"),
            ("[http]\nport = 1\nport = 2\n", "line 3, column 1: not valid TOML: duplicate key (the line: `port = 2`)"),
        ];
        for (text, expected) in cases {
            let dir = app_config(&[("app.toml", text)]);
            let error = Config::load(Some(&dir), "development").unwrap_err();
            assert!(error.file.ends_with("app.toml"), "{error}");
            assert!(error.to_string().contains(expected), "{text}: {error}");
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}
