//! Shared test harness: the real servers started by `scripts/test.sh` (Dovecot, Postfix, PostgreSQL),
//! temp data directories, and helpers to build configs. With `CI=true`, a server that is not reachable
//! fails the test; elsewhere the test prints why and returns early.
#![allow(dead_code)]

pub mod http;

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use inboxd::config::Config;
use inboxd::imap::{ImapClient, ImapSettings, TlsMode};
use sea_orm::{ConnectionTrait, Database};

/// Whether servers are required (CI).
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// Called when a server is missing: fail in CI, skip elsewhere. Returns `None` so callers can `?`-style
/// return early.
pub fn missing<T>(what: &str) -> Option<T> {
    if ci() {
        panic!(
            "{what} is not reachable but CI=true requires it: run the tests through scripts/test.sh"
        );
    }
    eprintln!("SKIPPED: {what} is not reachable (run scripts/test.sh to start it)");
    None
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Connection details of the test mail lab.
#[derive(Clone, Debug)]
pub struct Lab {
    pub host: String,
    pub imap_port: u16,
    pub imaps_port: u16,
    pub smtp_port: u16,
    pub ca_file: PathBuf,
    pub password: String,
    pub domain: String,
    pub fault_sh: Option<PathBuf>,
    pub infra_root: PathBuf,
}

/// The lab, if its IMAPS port answers.
pub fn lab() -> Option<Lab> {
    let lab = Lab {
        host: env_or("INBOXD_TEST_IMAP_HOST", "127.0.0.1"),
        imap_port: env_or("INBOXD_TEST_IMAP_PORT", "10143").parse().ok()?,
        imaps_port: env_or("INBOXD_TEST_IMAPS_PORT", "10993").parse().ok()?,
        smtp_port: env_or("INBOXD_TEST_SMTP_PORT", "10025").parse().ok()?,
        ca_file: env_or(
            "INBOXD_TEST_IMAP_CA",
            "/tmp/inboxd-test-infra/dovecot/tls/ca.pem",
        )
        .into(),
        password: env_or("INBOXD_TEST_IMAP_PASSWORD", "secret"),
        domain: env_or("INBOXD_TEST_DOMAIN", "inboxd.test"),
        fault_sh: std::env::var("INBOXD_TEST_FAULT_SH")
            .ok()
            .map(PathBuf::from),
        infra_root: env_or("INBOXD_TEST_INFRA_ROOT", "/tmp/inboxd-test-infra").into(),
    };
    let address = format!("{}:{}", lab.host, lab.imaps_port);
    let reachable = address
        .parse()
        .ok()
        .and_then(|socket| TcpStream::connect_timeout(&socket, Duration::from_secs(2)).ok())
        .is_some();
    if !reachable || !lab.ca_file.exists() {
        return missing(&format!("the test Dovecot at {address}"));
    }
    Some(lab)
}

impl Lab {
    /// Full address of a lab user.
    pub fn user(&self, name: &str) -> String {
        format!("{name}@{}", self.domain)
    }

    /// Client settings for a lab user over implicit TLS.
    pub fn settings(&self, user: &str) -> ImapSettings {
        ImapSettings {
            host: self.host.clone(),
            port: self.imaps_port,
            tls: TlsMode::Implicit,
            username: self.user(user),
            password: self.password.clone(),
            auth: inboxd::oauth::sasl::AuthMechanism::Password,
            ca_file: Some(self.ca_file.clone()),
            insecure: false,
            timeout: Duration::from_secs(30),
        }
    }

    /// A client for test set-up (append, create and delete folders).
    pub async fn client(&self, user: &str) -> ImapClient {
        ImapClient::connect(&self.settings(user))
            .await
            .expect("connect to the test dovecot")
    }

    /// A `[[mailbox]]` TOML table for a lab user and folder; the password file is written into `dir`.
    pub fn mailbox_toml(&self, dir: &Path, name: &str, user: &str, folder: &str) -> String {
        let password_file = write_secret(dir, &format!("{name}.password"), &self.password);
        format!(
            "[[mailbox]]\nname = \"{name}\"\nkind = \"imap\"\nhost = \"{}\"\nport = {}\ntls = \"implicit\"\nusername = \"{}\"\npassword_file = \"{}\"\nca_file = \"{}\"\nfolders = [\"{folder}\"]\n",
            self.host,
            self.imaps_port,
            self.user(user),
            password_file.display(),
            self.ca_file.display()
        )
    }

    /// Runs `fault.sh` of the lab (kick, crash, restart, …).
    pub fn fault(&self, args: &[&str]) -> bool {
        let script = self.fault_sh.clone().unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/testlab/dovecot/fault.sh")
        });
        std::process::Command::new("bash")
            .arg(script)
            .args(args)
            .env("INFRA_ROOT", &self.infra_root)
            .status()
            .is_ok_and(|status| status.success())
    }
}

/// Writes a secret file with mode 0600.
pub fn write_secret(dir: &Path, name: &str, value: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, value).expect("write secret");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

/// A unique name for per-test folders and databases.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A database backend for storage tests.
pub struct Backend {
    pub name: &'static str,
    pub url: String,
}

/// A fresh PostgreSQL database of its own for one test, or `None` (skip) outside CI.
pub async fn fresh_postgres() -> Option<String> {
    let admin = env_or(
        "INBOXD_TEST_PG_ADMIN_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    );
    let run = env_or("INBOXD_TEST_RUN_ID", "local");
    let name = format!("inboxd_t_{run}_{}", unique("d"));
    let connection = match Database::connect(&admin).await {
        Ok(connection) => connection,
        Err(err) => return missing(&format!("PostgreSQL at {admin} ({err})")),
    };
    connection
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    let _ = connection.close().await;
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    Some(format!("{base}/{name}"))
}

/// SQLite in `dir`, and PostgreSQL when reachable (required in CI).
pub async fn backends(dir: &Path) -> Vec<Backend> {
    let mut list = vec![Backend {
        name: "sqlite",
        url: format!("sqlite://{}", dir.join("inboxd.db").display()),
    }];
    if let Some(url) = fresh_postgres().await {
        list.push(Backend {
            name: "postgres",
            url,
        });
    }
    list
}

/// A config for a test: everything under `dir`, the given database and extra TOML (mailboxes…). The API
/// listens on a free port (tests run in parallel) unless `extra` has an `[api]` table.
pub fn config(dir: &Path, database_url: &str, extra: &str) -> Config {
    let api = if extra.contains("[api]") {
        ""
    } else {
        "[api]\nlisten = \"127.0.0.1:0\"\n"
    };
    let text = format!(
        "data_dir = \"{}\"\ndatabase = \"{}\"\n{api}[ingest]\npoll_interval_secs = 1\nmax_backoff_secs = 2\nnetwork_timeout_secs = 20\n{extra}",
        dir.display(),
        database_url
    );
    let path = dir.join("inboxd.toml");
    std::fs::write(&path, &text).expect("write config");
    Config::load(&path).expect("valid test config")
}

/// A small RFC 5322 message.
pub fn message(message_id: &str, subject: &str, from: &str, body: &str) -> Vec<u8> {
    format!(
        "Message-ID: <{message_id}>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0100\r\nFrom: Customer <{from}>\r\nTo: Support <support@inboxd.test>\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// Path of the built `inboxd` binary (for tests that run the real process).
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_inboxd"))
}

/// Polls `check` every 100 ms until it returns true or `limit` passes.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The real binary with `--config`.
pub fn inboxd(config: &Path, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(binary());
    command.arg("--config").arg(config).args(args);
    command
}

/// Runs the CLI and asserts it succeeded; returns its standard output.
pub fn cli_ok(config: &Path, args: &[&str]) -> String {
    let output = inboxd(config, args).output().expect("run the cli");
    assert!(
        output.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// Runs the CLI (with `--json` among `args`), asserts it succeeded, and parses its output.
pub fn cli_json(config: &Path, args: &[&str]) -> serde_json::Value {
    let text = cli_ok(config, args);
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{args:?}: not json ({err}): {text}"))
}

/// Sends a signal (`TERM`, `HUP`, `KILL`) to a child we started.
pub fn signal(child: &std::process::Child, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} failed");
}

/// Waits up to `limit` for a child to exit.
pub fn wait_exit(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Messages stored in the SQLite database of a data directory (0 while it does not exist yet).
pub async fn count_messages(data: &Path) -> u64 {
    use sea_orm::{EntityTrait, PaginatorTrait};
    let url = format!("sqlite://{}", data.join("inboxd.db").display());
    let Ok(store) = inboxd::store::Store::connect(&url, &data.join("blobs")).await else {
        return 0;
    };
    let count = inboxd::store::entities::message::Entity::find()
        .count(&store.db)
        .await
        .unwrap_or(0);
    let _ = store.db.close().await;
    count
}

/// Every message of a folder as the server holds it now (raw bytes, in UID order).
pub async fn server_messages(lab: &Lab, user: &str, folder: &str) -> Vec<Vec<u8>> {
    server_messages_with(&lab.settings(user), folder).await
}

/// [`server_messages`] with explicit client settings (a private server, another port).
pub async fn server_messages_with(settings: &ImapSettings, folder: &str) -> Vec<Vec<u8>> {
    let mut client = ImapClient::connect(settings)
        .await
        .expect("connect to read the server's messages");
    client.select(folder).await.expect("select");
    let uids = client.uids_after(0).await.expect("uids");
    let mut all = Vec::new();
    for chunk in uids.chunks(50) {
        let fetched = client.fetch_batch(chunk).await.expect("fetch");
        all.extend(fetched.into_iter().map(|message| message.raw));
    }
    client.logout().await;
    all
}

/// SHA-256 of raw bytes, hex: how tests compare stored mail with what the server holds.
pub fn sha(raw: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(raw))
}

/// What a store holds, as raw-message digests with their counts (every message decrypted with `key`).
pub async fn stored_digests(
    store: &inboxd::store::Store,
    key: &inboxd::crypto::MasterKey,
) -> std::collections::HashMap<String, usize> {
    use sea_orm::EntityTrait;
    let rows = inboxd::store::entities::message::Entity::find()
        .all(&store.db)
        .await
        .expect("rows");
    let mut digests = std::collections::HashMap::new();
    for row in rows {
        let raw = inboxd::store::read::raw_message(&store.db, key, store.blob_dir(), row.id)
            .await
            .expect("every stored message decrypts");
        *digests.entry(sha(&raw)).or_insert(0) += 1;
    }
    digests
}

/// Starts `inboxd serve` with its log appended to `daemon.log` beside the config.
pub fn serve_logged(config: &Path) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.with_file_name("daemon.log"))
        .expect("log file");
    inboxd(config, &["serve"])
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("serve")
}

/// The last `lines` lines of the log written by [`serve_logged`].
pub fn daemon_log_tail(config: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(config.with_file_name("daemon.log")).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
