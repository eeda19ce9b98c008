//! HTTP: the WebSocket endpoint, the HTTP API, and static files (the page,
//! hashed assets, `public/` files and the 404 page).

pub mod api;
mod files;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::get;

use crate::Shared;

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
