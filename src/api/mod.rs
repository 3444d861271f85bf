//! The HTTP API (JSON, bearer tokens) served by the daemon; the CLI talks to it while the daemon runs.
//!
//! Layout: [`routes`] is the one table of every route (method, path, handler); the router is built from
//! it and the OpenAPI test checks the table against `openapi.json`. Handlers live in one file per
//! resource and never build queries: they call `store::*`, `search`, `delivery::outbox`.
//!
//! Adding an endpoint: write the handler (extract [`auth::Caller`], call `require_admin()` for admin
//! actions, write an audit record for changes), add one line to [`routes`], describe it in
//! `openapi.json`, and add its client call in `crate::client`.
mod auth;
mod conversations;
pub mod error;
mod health;
mod mailbox_body;
pub(crate) mod mailboxes;
pub mod oauth;
mod openapi;
mod retention;
pub(crate) mod search;
mod tokens;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, post, put};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use self::auth::Caller;
pub use self::error::ApiError;
use crate::config::IngestConfig;
use crate::crypto::MasterKey;
use crate::ingest::commit::Ingestor;
use crate::ingest::supervisor::MailboxSet;
use crate::search::indexer::IndexHandle;
use crate::store::Store;

/// Largest request body accepted (replies, notes, mailbox settings are all far smaller).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most items one page may hold.
pub const MAX_PAGE: u64 = 500;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct ApiState(Arc<Shared>);

/// The daemon's parts the API works with.
pub struct Shared {
    pub store: Store,
    pub master: Arc<MasterKey>,
    /// Ingestor that indexes what it commits (replies, `POST /v1/sync`).
    pub ingestor: Ingestor,
    /// The daemon's one index: searches read it, changes are sent to its writer thread.
    pub index: IndexHandle,
    /// Config-file mailboxes (replaced on reload) and ingest settings.
    pub mailboxes: MailboxSet,
    /// Notified after a reply is queued so the sender sends it at once; owned by the sender.
    pub outbox_wake: Arc<Notify>,
    /// Held while `POST /v1/sync` runs: one API-driven pass at a time.
    pub sync_running: tokio::sync::Mutex<()>,
    /// Cancelled at shutdown; long requests (sync) stop with it.
    pub cancel: CancellationToken,
    /// OAuth authorizations started through the API, by mailbox name (written by their waiting tasks).
    pub authorizations:
        std::sync::Mutex<std::collections::HashMap<String, oauth::AuthorizationState>>,
}

impl std::ops::Deref for ApiState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl ApiState {
    /// Wraps the daemon's parts.
    pub fn new(shared: Shared) -> ApiState {
        ApiState(Arc::new(shared))
    }

    /// Config-file and admin mailboxes as the daemon runs them.
    pub async fn mailbox_configs(&self) -> Result<Vec<crate::config::MailboxConfig>, ApiError> {
        let from_config = self.mailboxes.from_config.read().await.clone();
        Ok(
            crate::store::mailboxes::all_configs(&self.store.db, &self.master, &from_config)
                .await?,
        )
    }

    /// The state of the last authorization of a mailbox started through the API.
    pub fn authorizations(&self, name: &str) -> Option<oauth::AuthorizationState> {
        self.authorizations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Records where an authorization stands.
    pub fn set_authorization(&self, name: &str, state: oauth::AuthorizationState) {
        self.authorizations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_string(), state);
    }

    /// Current ingest settings.
    pub async fn ingest_config(&self) -> IngestConfig {
        self.mailboxes.ingest.read().await.clone()
    }
}

/// One route: method, path (axum and OpenAPI share the `{param}` syntax) and handler.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub handler: MethodRouter<ApiState>,
}

fn route(method: Method, path: &'static str, handler: MethodRouter<ApiState>) -> Route {
    Route {
        method,
        path,
        handler,
    }
}

/// Every route of the API. The router is built from this table only, so it is the complete list.
pub fn routes() -> Vec<Route> {
    use conversations as c;
    vec![
        route(Method::GET, "/healthz", get(health::healthz)),
        route(Method::GET, "/readyz", get(health::readyz)),
        route(Method::GET, "/metrics", get(health::metrics)),
        route(Method::GET, "/openapi.json", get(openapi::document)),
        route(Method::GET, "/v1/whoami", get(tokens::whoami)),
        route(Method::GET, "/v1/conversations", get(c::list)),
        route(Method::GET, "/v1/conversations/{id}", get(c::show)),
        route(
            Method::PUT,
            "/v1/conversations/{id}/state",
            put(c::set_state),
        ),
        route(
            Method::PUT,
            "/v1/conversations/{id}/assignee",
            put(c::assign),
        ),
        route(
            Method::POST,
            "/v1/conversations/{id}/replies",
            post(c::reply),
        ),
        route(Method::GET, "/v1/conversations/{id}/notes", get(c::notes)),
        route(
            Method::POST,
            "/v1/conversations/{id}/notes",
            post(c::add_note),
        ),
        route(
            Method::GET,
            "/v1/conversations/{id}/messages/{message_id}/raw",
            get(c::raw),
        ),
        route(
            Method::GET,
            "/v1/conversations/{id}/messages/{message_id}/attachments/{attachment_id}",
            get(c::attachment),
        ),
        route(Method::GET, "/v1/search", get(search::search)),
        route(Method::GET, "/v1/mailboxes", get(mailboxes::list)),
        route(Method::POST, "/v1/mailboxes", post(mailboxes::add)),
        route(Method::GET, "/v1/mailboxes/{name}", get(mailboxes::status)),
        route(Method::PUT, "/v1/mailboxes/{name}", put(mailboxes::change)),
        route(
            Method::DELETE,
            "/v1/mailboxes/{name}",
            delete(mailboxes::remove),
        ),
        route(
            Method::POST,
            "/v1/mailboxes/{name}/test",
            post(mailboxes::test),
        ),
        route(
            Method::POST,
            "/v1/mailboxes/{name}/authorize",
            post(oauth::start),
        ),
        route(
            Method::GET,
            "/v1/mailboxes/{name}/authorize",
            get(oauth::status),
        ),
        route(Method::POST, "/v1/sync", post(mailboxes::sync)),
        route(Method::GET, "/v1/tokens", get(tokens::list)),
        route(Method::POST, "/v1/tokens", post(tokens::create)),
        route(Method::DELETE, "/v1/tokens/{token}", delete(tokens::revoke)),
        route(Method::GET, "/v1/audit", get(tokens::audit)),
        route(
            Method::PUT,
            "/v1/mailboxes/{name}/retention",
            put(retention::set_retention),
        ),
        route(
            Method::PUT,
            "/v1/conversations/{id}/hold",
            put(retention::hold_conversation),
        ),
        route(
            Method::DELETE,
            "/v1/conversations/{id}/hold",
            delete(retention::release_conversation),
        ),
        route(
            Method::PUT,
            "/v1/mailboxes/{name}/hold",
            put(retention::hold_mailbox),
        ),
        route(
            Method::DELETE,
            "/v1/mailboxes/{name}/hold",
            delete(retention::release_mailbox),
        ),
        route(Method::GET, "/v1/holds", get(retention::holds)),
        route(Method::POST, "/v1/purge", post(retention::purge)),
        route(Method::POST, "/v1/subjects/export", post(retention::export)),
        route(Method::POST, "/v1/subjects/erase", post(retention::erase)),
    ]
}

/// The router: every route of [`routes`], a JSON 404 for the rest, and the body size limit.
pub fn router(state: ApiState) -> Router {
    let mut router = Router::new();
    for entry in routes() {
        router = router.route(entry.path, entry.handler);
    }
    router
        .fallback(|| async {
            ApiError::NotFound("no such endpoint; see /openapi.json for the routes".to_string())
        })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Where the daemon publishes what the local CLI needs: `<data_dir>/api/`.
pub fn runtime_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("api")
}

/// The file holding the local admin token (mode 0600).
pub fn token_file(data_dir: &Path) -> PathBuf {
    runtime_dir(data_dir).join("local-admin.token")
}

/// The file holding the address the API actually listens on, and the daemon's pid on a second line.
pub fn address_file(data_dir: &Path) -> PathBuf {
    runtime_dir(data_dir).join("address")
}

/// The file saying why the running daemon has no API (so the CLI falls back at once instead of waiting).
pub fn unavailable_file(data_dir: &Path) -> PathBuf {
    runtime_dir(data_dir).join("unavailable")
}

/// Removes what an earlier daemon published (it may have been killed): called once the lock is held.
pub fn clear_published(data_dir: &Path) {
    for path in [
        address_file(data_dir),
        token_file(data_dir),
        unavailable_file(data_dir),
    ] {
        let _ = std::fs::remove_file(path);
    }
}

/// Records that the API did not start, and why (no secrets in `reason`); the daemon's pid comes first,
/// as in [`address_file`].
pub fn publish_unavailable(data_dir: &Path, reason: &str) {
    let _ = std::fs::create_dir_all(runtime_dir(data_dir));
    let _ = write_private(
        &unavailable_file(data_dir),
        &format!("{}\n{reason}\n", std::process::id()),
    );
}

/// Writes `contents` to `path` readable by this user only (created 0600, then renamed into place).
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// Rotates the `local-admin` token and writes its secret to [`token_file`] (never logged).
pub async fn publish_local_admin(store: &Store, data_dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::fs::DirBuilderExt;
    let dir = runtime_dir(data_dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let secret = crate::store::tokens::rotate_local_admin(&store.db).await?;
    let path = token_file(data_dir);
    write_private(&path, &secret).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// A bound listener: the API serves on it until cancelled.
pub struct Listener {
    listener: tokio::net::TcpListener,
    /// The address actually bound (port 0 in the config picks a free one).
    pub address: SocketAddr,
}

/// Binds the API's address and publishes it for the CLI.
pub async fn bind(listen: SocketAddr, data_dir: &Path) -> anyhow::Result<Listener> {
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("config key `api.listen`: cannot listen on {listen}; pick a free address")
        })?;
    let address = listener.local_addr()?;
    let path = address_file(data_dir);
    // The pid lets the CLI tell this file from one a killed daemon left behind (it compares it with the
    // pid in the lock file).
    write_private(&path, &format!("{address}\n{}\n", std::process::id()))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Listener { listener, address })
}

/// Serves until `cancel`; in-flight requests finish first (the caller bounds the wait).
pub async fn serve(
    listener: Listener,
    state: ApiState,
    cancel: CancellationToken,
    data_dir: PathBuf,
) {
    info!(address = %listener.address, "api listening");
    let app = router(state);
    let result = axum::serve(listener.listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await;
    if let Err(err) = result {
        warn!(error = %err, "api server stopped with an error");
    }
    clear_published(&data_dir);
    info!("api stopped");
}
