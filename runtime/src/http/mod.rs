//! HTTP: the page, hashed assets, `public/` files and the 404 page.
//! Everything that is not a WebSocket goes through [`router`].

mod files;

use std::sync::Arc;

use axum::Router;

use crate::app::LoadedApp;

/// The HTTP routes of a loaded app.
pub fn router(app: Arc<LoadedApp>) -> Router {
    Router::new().fallback(files::serve).with_state(app)
}
