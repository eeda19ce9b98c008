//! HTTP: the WebSocket endpoint, the HTTP API, and static files (the page,
//! hashed assets, `public/` files and the 404 page).

pub mod api;
mod files;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::get;

use crate::Shared;

/// How long requests under way at shutdown have to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Accepts connections and serves each with HTTP/1.1 (WebSocket upgrades
/// included) until `shutdown` resolves, then lets the requests under way end
/// (for at most [`SHUTDOWN_GRACE`]).
///
/// A client must send a request's headers within `header_timeout` (at most a
/// day; the HTTP API gives a body as long), and a kept-alive connection with
/// no request for that long is closed:
/// without that limit, connections that never finish their headers would be
/// held for ever, and enough of them would use up the server's file
/// descriptors.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tokio::sync::watch;

    // Each connection's task holds a receiver of `stop` (to hear of shutdown)
    // and of `done` (whose sender learns when every task has ended).
    let (stop, stop_heard) = watch::channel(false);
    let (done, done_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionRefused
                ) => continue,
                Err(e) => {
                    // Out of file descriptors, say: wait for some to be freed.
                    eprintln!("ssrun: accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small writes (a reply, an event) go out at once, not held back
        // until the peer acknowledges the last one (Nagle's algorithm). It
        // fails only on a connection already reset, which fails just after.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let (mut stop_heard, done_rx) = (stop_heard.clone(), done_rx.clone());
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(header_timeout.min(Duration::from_secs(86_400)));
            let mut connection = pin!(builder.serve_connection(TokioIo::new(stream), service).with_upgrades());
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stop_heard.changed() => {
                    // The request under way may end, within a limit: one
                    // whose body never comes must not keep the server from
                    // stopping.
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
                }
            }
            drop(done_rx);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    drop(done_rx);
    done.closed().await;
    Ok(())
}

/// The routes of a served app.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().route(crate::ws::PATH, get(crate::ws::upgrade)).fallback(dispatch).with_state(shared)
}

async fn dispatch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    if shared.config.api_enabled
        && let Some(rest) = api::under_prefix(request.uri().path(), &shared.config.api_prefix)
    {
        let rest = rest.to_string();
        return api::handle(shared, request, &rest).await;
    }
    let (parts, _) = request.into_parts();
    files::serve(&shared.loaded, &parts.method, &parts.uri, &parts.headers).await
}
