//! The CLI's side of the API: find the running daemon of this data directory and call it with the local
//! admin credential the daemon wrote for its own user. Plain HTTP/1.1 to loopback, no TLS, no pool.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

use crate::config::Config;
use crate::lock::{DataDirLock, LockError};

/// Exit codes the CLI uses (stable; scripts rely on them).
pub mod exit {
    /// A request was refused as invalid (bad query, bad value): fix the input.
    pub const INVALID: u8 = 2;
    /// What was asked for does not exist (or is hidden from this token).
    pub const NOT_FOUND: u8 = 3;
    /// The request conflicts with stored state (name in use, mailbox has messages…).
    pub const CONFLICT: u8 = 4;
    /// The daemon or a dependency is unavailable (EX_UNAVAILABLE).
    pub const UNAVAILABLE: u8 = 69;
    /// The credential was refused (EX_NOPERM).
    pub const NO_PERMISSION: u8 = 77;
}

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon answered with an API error.
    #[error("{message} ({code})")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// The daemon could not be reached or answered garbage.
    #[error("cannot reach the daemon's API at {address}: {message}")]
    Unreachable { address: String, message: String },
    /// The daemon runs but its credential file cannot be read by this user.
    #[error(
        "the daemon runs, but its admin credential {path} is not readable ({message}); run the command as the daemon's user"
    )]
    Credential { path: PathBuf, message: String },
}

impl ClientError {
    /// The exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Api { status, .. } => match *status {
                StatusCode::NOT_FOUND => exit::NOT_FOUND,
                StatusCode::CONFLICT => exit::CONFLICT,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => exit::NO_PERMISSION,
                status if status.is_client_error() => exit::INVALID,
                StatusCode::SERVICE_UNAVAILABLE => exit::UNAVAILABLE,
                _ => 1,
            },
            ClientError::Unreachable { .. } => exit::UNAVAILABLE,
            ClientError::Credential { .. } => exit::NO_PERMISSION,
        }
    }

    /// The API's error code, if the daemon answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A connection to the daemon's API.
pub struct DaemonClient {
    pub address: SocketAddr,
    token: String,
}

/// How long to wait for a starting daemon to publish its API.
const STARTUP_WAIT: Duration = Duration::from_secs(10);
/// Longest a request may take (a sync pass over big mailboxes is the slow one).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);

/// Whether the daemon runs on this data directory (it holds the lock).
pub fn daemon_running(data_dir: &Path) -> bool {
    if !data_dir.exists() {
        return false;
    }
    match DataDirLock::acquire(data_dir) {
        Ok(lock) => {
            drop(lock);
            false
        }
        Err(LockError::Busy { .. }) => true,
        Err(LockError::Io { .. }) => false,
    }
}

/// The running daemon's API, or `None` when no daemon runs (commands then work offline). When the daemon
/// runs but has not published an API (still starting, or its address was taken), this waits a little,
/// then gives `Ok(None)` with a warning on stderr if there is still none.
pub async fn locate(config: &Config) -> Result<Option<DaemonClient>, ClientError> {
    if !daemon_running(&config.data_dir) {
        return Ok(None);
    }
    let address_path = crate::api::address_file(&config.data_dir);
    let token_path = crate::api::token_file(&config.data_dir);
    let unavailable_path = crate::api::unavailable_file(&config.data_dir);
    let deadline = std::time::Instant::now() + STARTUP_WAIT;
    loop {
        if let Ok(marker) = std::fs::read_to_string(&unavailable_path)
            && let Some((pid, reason)) = marker.split_once('\n')
            && lock_holder(&config.data_dir) == pid.trim()
        {
            eprintln!(
                "inboxd: warning: the daemon runs without its API ({}); working on the database directly",
                reason.trim()
            );
            return Ok(None);
        }
        match (
            std::fs::read_to_string(&address_path),
            std::fs::read_to_string(&token_path),
        ) {
            (Ok(published), Ok(token))
                if published_by_lock_holder(&published, &config.data_dir) =>
            {
                let first = published.lines().next().unwrap_or_default().trim();
                let address = first.parse().map_err(|_| ClientError::Unreachable {
                    address: first.to_string(),
                    message: format!("{} does not hold an address", address_path.display()),
                })?;
                return Ok(Some(DaemonClient {
                    address,
                    token: token.trim().to_string(),
                }));
            }
            (_, Err(err)) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(ClientError::Credential {
                    path: token_path,
                    message: err.to_string(),
                });
            }
            _ => {}
        }
        if std::time::Instant::now() >= deadline || !daemon_running(&config.data_dir) {
            eprintln!(
                "inboxd: warning: the daemon runs but publishes no API (see its log for `api not started`); working on the database directly"
            );
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether the address file was written by the daemon that holds the lock now (not one that was killed
/// before it could clean up).
fn published_by_lock_holder(published: &str, data_dir: &Path) -> bool {
    let writer = published.lines().nth(1).map(str::trim);
    writer.is_some_and(|pid| !pid.is_empty() && pid == lock_holder(data_dir))
}

/// The pid written in the lock file by the process holding it.
fn lock_holder(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("inboxd.lock"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

impl DaemonClient {
    /// A client for an address and token (tests, or a remote admin with a token of their own).
    pub fn new(address: SocketAddr, token: String) -> DaemonClient {
        DaemonClient { address, token }
    }

    /// Sends one request; returns the status and body bytes.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let unreachable = |message: String| ClientError::Unreachable {
            address: self.address.to_string(),
            message,
        };
        let exchange = async {
            let stream = tokio::net::TcpStream::connect(self.address)
                .await
                .map_err(|err| unreachable(err.to_string()))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|err| unreachable(err.to_string()))?;
            tokio::spawn(connection);
            let mut request = Request::builder()
                .method(method)
                .uri(path)
                .header(hyper::header::HOST, self.address.to_string())
                .header(
                    hyper::header::AUTHORIZATION,
                    format!("Bearer {}", self.token),
                );
            let bytes = match body {
                Some(value) => {
                    request = request.header(hyper::header::CONTENT_TYPE, "application/json");
                    Bytes::from(value.to_string())
                }
                None => Bytes::new(),
            };
            let request = request
                .body(Full::new(bytes))
                .map_err(|err| unreachable(err.to_string()))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|err| unreachable(err.to_string()))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|err| unreachable(err.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| unreachable("no answer in time".to_string()))?
    }

    /// Sends a request and parses the JSON answer; API errors become [`ClientError::Api`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let (status, bytes) = self.send(method, path, body).await?;
        self.answer(status, &bytes)
    }

    /// Parses a JSON answer; an error status becomes [`ClientError::Api`] with its code and message.
    pub fn answer(
        &self,
        status: StatusCode,
        bytes: &[u8],
    ) -> Result<serde_json::Value, ClientError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|err| ClientError::Unreachable {
                address: self.address.to_string(),
                message: format!("answer {status} is not JSON: {err}"),
            })?;
        if status.is_success() {
            return Ok(value);
        }
        Err(ClientError::Api {
            status,
            code: value["error"]["code"]
                .as_str()
                .unwrap_or("unknown")
                .to_string(),
            message: value["error"]["message"]
                .as_str()
                .unwrap_or("the daemon refused the request")
                .to_string(),
        })
    }
}

/// Percent-encodes a query or path value.
pub fn encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
