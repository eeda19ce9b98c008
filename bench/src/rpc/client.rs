//! The load generator's side of both protocols, over one plain WebSocket each:
//! ssrun's (docs/protocol.md) and Socket.IO v4's text framing (engine.io
//! packets `0` open, `2` ping, `3` pong, `4` message; socket.io packets `0`
//! connect, `2` event, `3` ack).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::stamped::Stamped;

/// Which server protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// ssrun, served by `ss-bench serve`.
    Ssrun,
    /// Socket.IO on Node.js, served by bench/socketio/server.js.
    SocketIo,
}

/// One connected client, its handshake done.
pub struct Conn {
    ws: WebSocketStream<Stamped>,
    proto: Proto,
    next_id: u64,
    /// How often the server wants to hear from an idle ssrun client.
    heartbeat: Duration,
}

/// The fields of an ssrun message that the load generator looks at.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    result: Option<f64>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default, borrow)]
    event: Option<&'a str>,
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    client: Option<InitClient>,
}

#[derive(Deserialize)]
struct InitClient {
    heartbeat_interval: f64,
}

impl Conn {
    /// Connects and completes the handshake: ssrun's `init` received, or
    /// Socket.IO's `40{"sid":...}` received. With `stamp`, the kernel's
    /// receive time of each read is kept (see [`Stamped`]); such clients are
    /// the many idle ones, and write each message as it is sent. Others
    /// gather what they send until a flush, so a batch of calls leaves in one
    /// write.
    pub async fn open(proto: Proto, addr: SocketAddr, stamp: bool) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        let tcp = Stamped::new(tcp, stamp)?;
        let url = match proto {
            Proto::Ssrun => format!("ws://{addr}/_ss/ws?v=1"),
            Proto::SocketIo => format!("ws://{addr}/socket.io/?EIO=4&transport=websocket"),
        };
        // Small buffers: 10,000 of these live in one process.
        let write_buffer = if stamp { 0 } else { 64 * 1024 };
        let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(write_buffer);
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(config))
            .await
            .with_context(|| format!("WebSocket handshake with {addr}"))?;
        let mut conn = Conn { ws, proto, next_id: 0, heartbeat: Duration::from_secs(30) };
        match proto {
            Proto::Ssrun => {
                let first = conn.text().await?;
                let init: Incoming = serde_json::from_str(&first).with_context(|| format!("first message {first}"))?;
                if init.kind != "init" {
                    bail!("expected init first, got {first}");
                }
                if let Some(client) = init.client {
                    conn.heartbeat = Duration::from_secs_f64(client.heartbeat_interval.max(1.0));
                }
            }
            Proto::SocketIo => {
                let open = conn.text().await?;
                if !open.starts_with("0{") {
                    bail!("expected the engine.io open packet, got {open}");
                }
                conn.send("40".to_string()).await?;
                let connected = conn.text().await?;
                if !connected.starts_with("40{") {
                    bail!("expected the namespace connect answer 40{{...}}, got {connected}");
                }
            }
        }
        Ok(conn)
    }

    async fn send(&mut self, text: String) -> anyhow::Result<()> {
        self.ws.send(Message::text(text)).await.context("sending")
    }

    /// The next text message; answers Socket.IO's pings on the way.
    async fn text(&mut self) -> anyhow::Result<Utf8Bytes> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    if self.proto == Proto::SocketIo && text.as_str() == "2" {
                        self.send("3".to_string()).await?;
                        continue;
                    }
                    return Ok(text);
                }
                Some(Ok(Message::Close(frame))) => bail!("the server closed the connection: {frame:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e).context("reading"),
                None => bail!("the server closed the connection"),
            }
        }
    }

    /// The text of a call of `method` with one argument, under a new id.
    /// ssrun: the `bench.*` and `app.*` actions; Socket.IO: the event of the
    /// same last name, with an ack.
    fn request(&mut self, method: &str, arg: u64) -> (u64, String) {
        self.next_id += 1;
        let id = self.next_id;
        let text = match self.proto {
            Proto::Ssrun => format!(r#"{{"type":"call","id":{id},"method":"{method}","args":[{arg}]}}"#),
            Proto::SocketIo => {
                let event = method.rsplit('.').next().unwrap_or(method);
                format!(r#"42{id}["{event}",{arg}]"#)
            }
        };
        (id, text)
    }

    /// The id of the call `text` answers, if it is an answer, after checking
    /// that its value is `expect` (`None`: null).
    fn answer(&self, text: &str, method: &str, expect: Option<f64>) -> anyhow::Result<Option<u64>> {
        match self.proto {
            Proto::Ssrun => {
                let msg: Incoming = serde_json::from_str(text).with_context(|| format!("message {text}"))?;
                if msg.kind != "reply" {
                    return Ok(None);
                }
                if let Some(error) = msg.error {
                    bail!("{method} failed: {error}");
                }
                if msg.result != expect {
                    bail!("{method} answered {text}");
                }
                Ok(msg.id)
            }
            Proto::SocketIo => {
                let Some(rest) = text.strip_prefix("43") else { return Ok(None) };
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                let (id, rest) = rest.split_at(digits);
                let Ok(id) = id.parse::<u64>() else { return Ok(None) };
                let answer: Vec<f64> = serde_json::from_str(rest).with_context(|| format!("ack {text}"))?;
                if answer.first().copied() != expect {
                    bail!("{method} acknowledged {text}");
                }
                Ok(Some(id))
            }
        }
    }

    /// Sends a call of `method` with one argument and waits for its answer,
    /// which must be `expect` (`None`: null).
    async fn call(&mut self, method: &str, arg: u64, expect: Option<f64>) -> anyhow::Result<()> {
        let (id, text) = self.request(method, arg);
        self.send(text).await?;
        loop {
            let text = self.text().await?;
            if self.answer(&text, method, expect)? == Some(id) {
                return Ok(());
            }
        }
    }

    /// Sends `k` calls of `app.square(n)` in one write, then waits for all of
    /// their answers (in any order), checking each; pushes each call's
    /// latency to `took`.
    pub async fn squares(&mut self, n: u64, k: usize, took: &mut Vec<Duration>) -> anyhow::Result<()> {
        let started = Instant::now();
        let first = self.next_id + 1;
        for _ in 0..k {
            let (_, text) = self.request("app.square", n);
            self.ws.feed(Message::text(text)).await.context("sending")?;
        }
        self.ws.flush().await.context("sending")?;
        let expect = Some((n * n) as f64);
        let mut left = k;
        while left > 0 {
            let text = self.text().await?;
            if let Some(id) = self.answer(&text, "app.square", expect)? {
                if id < first || id > self.next_id {
                    bail!("an answer to call {id}, which is not in flight: {text}");
                }
                took.push(started.elapsed());
                left -= 1;
            }
        }
        Ok(())
    }

    /// Asks the server to send `tick` with `data` to everyone connected, or
    /// to the channel `bench` (`to_channel`), and waits until it says it did.
    pub async fn broadcast(&mut self, data: u64, to_channel: bool) -> anyhow::Result<()> {
        let method = if to_channel { "bench.channel" } else { "bench.broadcast" };
        self.call(method, data, self.done()).await
    }

    /// Joins the channel `bench`.
    pub async fn join(&mut self) -> anyhow::Result<()> {
        self.call("bench.join", 0, self.done()).await
    }

    /// What the `bench.*` actions answer: ssrun's return null, Socket.IO's handlers ack 1.
    fn done(&self) -> Option<f64> {
        match self.proto {
            Proto::Ssrun => None,
            Proto::SocketIo => Some(1.0),
        }
    }

    /// The data of a `tick` event, if `text` is one.
    fn tick(&self, text: &str) -> Option<u64> {
        match self.proto {
            Proto::Ssrun => {
                let msg: Incoming = serde_json::from_str(text).ok()?;
                if msg.kind == "event" && msg.event == Some("tick") { msg.data?.as_u64() } else { None }
            }
            Proto::SocketIo => text.strip_prefix(r#"42["tick","#)?.strip_suffix(']')?.parse().ok(),
        }
    }

    /// Stays connected, answering pings (Socket.IO) or sending heartbeats
    /// (ssrun), and reports every `tick` on `ticks`. Returns when the server
    /// closes; `dropped` then counts it.
    pub async fn idle(mut self, ticks: mpsc::UnboundedSender<Tick>, dropped: Arc<AtomicUsize>) {
        let period = self.heartbeat;
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let ssrun = self.proto == Proto::Ssrun;
        loop {
            tokio::select! {
                msg = self.ws.next() => {
                    let read = now_us();
                    match msg {
                        Some(Ok(Message::Text(text))) => {
                            if let Some(sent) = self.tick(&text) {
                                let arrived = self.ws.get_ref().received.map_or(read, |d| d.as_micros() as u64);
                                let _ = ticks.send(Tick { sent, arrived, read });
                            } else if !ssrun && text.as_str() == "2" && self.send("3".to_string()).await.is_err() {
                                break;
                            }
                        }
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                        Some(Ok(_)) => {}
                    }
                }
                _ = heartbeat.tick(), if ssrun => {
                    if self.send(r#"{"type":"hb"}"#.to_string()).await.is_err() {
                        break;
                    }
                }
            }
        }
        dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Closes the connection (best effort).
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// One `tick` event received; times in microseconds since the Unix epoch.
pub struct Tick {
    /// The event's data: when the broadcast was asked for.
    pub sent: u64,
    /// When the kernel received it.
    pub arrived: u64,
    /// When the load generator read it.
    pub read: u64,
}

/// Microseconds since the Unix epoch: the clock of the kernel's receive times.
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Opens `n` connections, at most `parallel` handshakes at a time.
pub async fn connect_many(
    proto: Proto,
    addr: SocketAddr,
    n: usize,
    parallel: usize,
    stamp: bool,
) -> anyhow::Result<Vec<Conn>> {
    futures_util::stream::iter(0..n)
        .map(|_| Conn::open(proto, addr, stamp))
        .buffer_unordered(parallel)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}
