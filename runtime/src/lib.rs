//! ssrun: the SocketStream runtime. It loads a packed app (see
//! [`app::LoadedApp`]) and serves it over HTTP ([`http`]).
//!
//! Built so far: the page, hashed assets (immutable, ETag, precompressed),
//! `public/` files and the 404 page. Not built yet: the WebSocket protocol,
//! server actions, the HTTP API, sessions, pub/sub and users online.

pub mod app;
pub mod http;

use std::future::Future;
use std::sync::Arc;

pub use app::{LoadError, LoadedApp};

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    app: Arc<LoadedApp>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, http::router(app)).with_graceful_shutdown(shutdown).await
}
