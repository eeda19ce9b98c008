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
use axum::routing::any;

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
            // Shutdown first: once it is asked for, no connection waiting to
            // be accepted is taken. In development the next build's server
            // accepts on the same listening socket, and a request made after
            // the switch must reach it, not the build being retired.
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionRefused
                ) => continue,
                Err(e) => {
                    // Out of file descriptors, say: wait for some to be freed.
                    crate::errln!("ssrun: accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
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
    Router::new()
        // Every method reaches the handshake, which refuses all but GET with
        // the one method it allows.
        .route(crate::ws::PATH, any(crate::ws::upgrade))
        .fallback(dispatch)
        .with_state(shared)
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::Poll;
    use std::time::Duration;

    use axum::Router;

    /// A server told to stop takes no connection waiting to be accepted,
    /// even when it hears of both at once: in development the next build's
    /// server accepts on the same listening socket, and what arrives after
    /// the switch must reach it.
    #[tokio::test]
    async fn a_stopped_server_leaves_waiting_connections_to_the_next() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        // Many tries, as an unordered choice between two ready branches is random.
        for _ in 0..24 {
            // A stop that wakes nobody: the server hears of it only when the
            // connection wakes it, and then both are ready.
            let stop = Arc::new(AtomicBool::new(false));
            let stopped = stop.clone();
            let shutdown =
                std::future::poll_fn(
                    move |_| if stopped.load(Ordering::Relaxed) { Poll::Ready(()) } else { Poll::Pending },
                );
            let old = tokio::net::TcpListener::from_std(listener.try_clone().unwrap()).unwrap();
            let server = tokio::spawn(super::serve(old, Router::new(), Duration::from_secs(5), shutdown));
            tokio::time::sleep(Duration::from_millis(5)).await;
            stop.store(true, Ordering::Relaxed);
            let client = tokio::net::TcpStream::connect(address).await.unwrap();
            tokio::time::timeout(Duration::from_secs(5), server).await.expect("the server stops").unwrap().unwrap();
            // The connection is still there for the next server to accept.
            let next = tokio::net::TcpListener::from_std(listener.try_clone().unwrap()).unwrap();
            let (accepted, _) = tokio::time::timeout(Duration::from_secs(2), next.accept())
                .await
                .expect("the connection waits to be accepted")
                .unwrap();
            assert_eq!(accepted.peer_addr().unwrap(), client.local_addr().unwrap());
        }
    }
}
