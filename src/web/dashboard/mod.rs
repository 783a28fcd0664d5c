//! The bundled dashboard: server-rendered pages (askama templates in `templates/`), a little CSS
//! and JavaScript (`static/`, compiled into the binary), and the live channel (a WebSocket per
//! signed-in tab) that pushes the changes of the conversations its viewer may see.

pub mod admin;
pub mod analytics;
pub mod audit;
pub mod error;
pub mod forget;
pub mod forms;
pub mod invitation;
pub mod knowledge;
pub mod live;
pub mod pages;
pub mod plan;
pub mod routing;
pub mod search;
pub mod session;
pub mod users;
pub mod views;

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;

use crate::conversations::LiveBus;
use crate::storage::Store;
use crate::web::{Access, Api};

pub use error::DashError;
pub use session::{Role, Viewer};

/// The dashboard's share of the application state.
pub struct DashboardState {
    pub sessions: session::Sessions,
    pub hub: Arc<live::LiveHub>,
    pub presence: live::Presence,
    pub search: Arc<search::SearchIndex>,
}

/// The dashboard's search indexes under the data directory (derived from the database: backups
/// leave them out and the service rebuilds them on start).
pub const SEARCH_DIR: &str = "search";

impl DashboardState {
    /// Starts the live hub and the search indexer. They run until `stop` turns true.
    pub fn start(
        store: Store,
        bus: LiveBus,
        data_dir: &std::path::Path,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(Self, Vec<tokio::task::JoinHandle<()>>), search::SearchError> {
        let hub = Arc::new(live::LiveHub::new(store.clone()));
        let search = Arc::new(search::SearchIndex::open_or_rebuild(
            &data_dir.join(SEARCH_DIR).join("conversations"),
        )?);
        let tasks = vec![
            tokio::spawn(hub.clone().run(bus.clone(), stop.clone())),
            tokio::spawn(search.clone().run(store, bus, stop)),
        ];
        Ok((
            Self {
                sessions: session::Sessions::default(),
                hub,
                presence: live::Presence::default(),
                search,
            },
            tasks,
        ))
    }
}

/// The dashboard's routes. Pages and forms are `Access::Page`: the `Viewer` extractor signs the
/// person in from the session cookie (no session: back to the sign-in form) and every handler
/// checks the role, the outlets and, on POST, the CSRF token.
pub fn api() -> Api {
    use Access::{Page, Public};
    Api::new()
        .get("/", Public, to_inbox)
        .get("/dash", Public, to_inbox)
        .get("/dash/signin", Public, pages::signin_form)
        .post("/dash/signin", Public, pages::signin)
        .post("/dash/signin/password", Public, pages::signin_password)
        .post("/dash/signout", Page, pages::signout)
        .get("/dash/inbox", Page, pages::inbox)
        .get("/dash/inbox/list", Page, pages::inbox_list)
        .get("/dash/c/{id}", Page, pages::conversation)
        .post("/dash/c/{id}/{action}", Page, pages::act)
        .get("/dash/canned", Page, pages::canned)
        .post("/dash/canned", Page, pages::canned_save)
        .post("/dash/canned/delete", Page, pages::canned_delete)
        .get("/dash/live", Page, live::socket)
        .merge(admin::api())
        .merge(routing::api())
        .merge(analytics::api())
        .get("/static/app.css", Public, css)
        .get("/static/live.js", Public, js)
        .map_router(|r| r.layer(axum::middleware::map_response(page_headers)))
}

async fn to_inbox() -> axum::response::Redirect {
    axum::response::Redirect::to("/dash/inbox")
}

/// Dashboard pages are never framed (clickjacking), never sniffed, and name no URL to others.
async fn page_headers(mut res: axum::response::Response) -> axum::response::Response {
    let h = res.headers_mut();
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    res
}

const APP_CSS: &str = include_str!("../../../static/app.css");
const LIVE_JS: &str = include_str!("../../../static/live.js");

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        APP_CSS,
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        LIVE_JS,
    )
}
