//! OAuth2 mailboxes against the real lab: Dovecot checks every XOAUTH2/OAUTHBEARER login through the
//! lab's token-introspection endpoint (scripts/testlab/tools/oauth_server.py), which also plays the
//! provider's token and authorization endpoints. Each test registers its own client id there, so tests
//! running in parallel never share tokens. Connections are cut through a per-test TCP relay, never by
//! kicking a lab user, so other tests are not disturbed.
mod common;
// Mailboxes an admin adds at run time (CLI, API) with OAuth.
mod oauth_admin;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use inboxd::app;
use inboxd::config::{Config, MailboxSource, Secret};
use inboxd::ingest::commit::Ingestor;
use inboxd::ingest::imap_sync::ImapSync;
use inboxd::store::entities::{mailbox, message};
use inboxd::store::{Store, mailboxes};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The lab's test OAuth2 provider.
struct Provider {
    address: SocketAddr,
}

fn provider() -> Option<Provider> {
    let Ok(url) = std::env::var("INBOXD_TEST_OAUTH_URL") else {
        return common::missing("the lab's OAuth test provider (INBOXD_TEST_OAUTH_URL)");
    };
    let address: SocketAddr = url.trim_start_matches("http://").parse().ok()?;
    if std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_err() {
        return common::missing(&format!("the lab's OAuth test provider at {url}"));
    }
    Some(Provider { address })
}

impl Provider {
    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    async fn control(&self, action: &str, body: &Value) -> Value {
        let answer = common::http::http(
            self.address,
            "POST",
            &format!("/control/{action}"),
            None,
            Some("application/json"),
            body.to_string().as_bytes(),
        )
        .await;
        assert_eq!(answer.status, 200, "control {action}");
        answer.json()
    }

    /// Registers a fresh client for the lab's support user; returns (client id, first refresh token).
    async fn client(&self, access_ttl: u64, rotate: bool) -> (String, String) {
        self.client_with_secret(access_ttl, rotate, "s3cret").await
    }

    /// [`Provider::client`] whose token requests must carry `secret`.
    async fn client_with_secret(
        &self,
        access_ttl: u64,
        rotate: bool,
        secret: &str,
    ) -> (String, String) {
        let client_id = common::unique("client-");
        let answer = self
            .control(
                "client",
                &json!({ "client_id": client_id, "client_secret": secret, "username": "support@inboxd.test",
                         "access_ttl": access_ttl, "rotate": rotate }),
            )
            .await;
        let refresh = answer["refresh_token"].as_str().expect("refresh token");
        (client_id, refresh.to_string())
    }

    async fn stats(&self, client_id: &str) -> Value {
        common::http::http(
            self.address,
            "GET",
            &format!("/control/stats?client_id={client_id}"),
            None,
            None,
            b"",
        )
        .await
        .json()
    }
}

/// A `[[mailbox]]` table signing in to the lab's Dovecot at `port` with OAuth (generic provider).
#[allow(clippy::too_many_arguments)]
fn oauth_mailbox(
    dir: &Path,
    lab: &common::Lab,
    provider: &Provider,
    name: &str,
    client_id: &str,
    folder: &str,
    port: u16,
    mechanism: &str,
) -> String {
    let secret = common::write_secret(dir, &format!("{name}.client-secret"), "s3cret");
    format!(
        "[[mailbox]]\nname = \"{name}\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"implicit\"\nusername = \"{}\"\nca_file = \"{}\"\nfolders = [\"{folder}\"]\n[mailbox.oauth]\nprovider = \"generic\"\nclient_id = \"{client_id}\"\nclient_secret_file = \"{}\"\nmechanism = \"{mechanism}\"\nauthorization_url = \"{url}/authorize\"\ntoken_url = \"{url}/token\"\nscopes = [\"mail\"]\n",
        lab.user("support"),
        lab.ca_file.display(),
        secret.display(),
        url = provider.url(),
    )
}

async fn fresh_folder(lab: &common::Lab, count: usize) -> (String, String) {
    let folder = common::unique("oauth-");
    let mut client = lab.client("support").await;
    client.create_folder(&folder).await.expect("create folder");
    for n in 0..count {
        append(&mut client, &folder, &folder, n).await;
    }
    client.logout().await;
    (folder.clone(), folder)
}

async fn append(client: &mut inboxd::imap::ImapClient, folder: &str, prefix: &str, n: usize) {
    let raw = common::message(
        &format!("{prefix}-{n}@example.org"),
        &format!("oauth question {n}"),
        &format!("customer{n}@example.org"),
        &format!("body {n}"),
    );
    client.append(folder, &raw).await.expect("append");
}

async fn append_one(lab: &common::Lab, folder: &str, n: usize) {
    let mut client = lab.client("support").await;
    append(&mut client, folder, folder, n).await;
    client.logout().await;
}

async fn seed(store: &Store, master: &inboxd::crypto::MasterKey, config: &Config, refresh: &str) {
    let id = mailboxes::upsert_from_config(&store.db, &config.mailboxes[0])
        .await
        .expect("mailbox row");
    inboxd::store::oauth::save_authorization(
        &store.db,
        master,
        id,
        &Secret::new(refresh.to_string()),
        None,
    )
    .await
    .expect("seed the refresh token");
}

fn sync_of(config: &Config, opened: &app::Opened, id: uuid::Uuid) -> ImapSync {
    let mailbox = &config.mailboxes[0];
    let MailboxSource::Imap(account) = &mailbox.source else {
        panic!("imap mailbox expected");
    };
    ImapSync {
        name: mailbox.name.clone(),
        mailbox_id: id,
        account: account.clone(),
        ingest: config.ingest.clone(),
        ingestor: Ingestor::new(opened.store.clone(), Arc::clone(&opened.master)),
    }
}

/// A TCP relay to Dovecot's IMAPS port (TLS passes through) whose connections the test can cut.
struct Relay {
    port: u16,
    cut: CancellationToken,
}

impl Relay {
    async fn start(target: u16) -> Arc<std::sync::Mutex<Relay>> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("address").port();
        let relay = Arc::new(std::sync::Mutex::new(Relay {
            port,
            cut: CancellationToken::new(),
        }));
        let shared = Arc::clone(&relay);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let cut = shared.lock().expect("relay").cut.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = cut.cancelled() => {}
                    }
                });
            }
        });
        relay
    }

    /// Drops every open connection (new ones still go through).
    fn cut_all(relay: &std::sync::Mutex<Relay>) {
        let mut relay = relay.lock().expect("relay");
        relay.cut.cancel();
        relay.cut = CancellationToken::new();
    }
}

async fn stored(db: &sea_orm::DatabaseConnection) -> u64 {
    message::Entity::find().count(db).await.unwrap_or(0)
}

async fn status_of(db: &sea_orm::DatabaseConnection, name: &str) -> (String, Option<String>) {
    mailbox::Entity::find()
        .filter(mailbox::Column::Name.eq(name))
        .one(db)
        .await
        .ok()
        .flatten()
        .map_or((String::new(), None), |row| (row.status, row.last_error))
}

#[tokio::test]
async fn a_refreshed_token_syncs_and_a_token_expired_early_is_refreshed_after_the_refusal() {
    let (Some(lab), Some(provider)) = (common::lab(), provider()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for (backend, mechanism) in common::backends(dir.path())
        .await
        .into_iter()
        .zip(["xoauth2", "oauthbearer"])
    {
        let (client_id, refresh) = provider.client(3600, false).await;
        let (folder, _) = fresh_folder(&lab, 2).await;
        let table = oauth_mailbox(
            dir.path(),
            &lab,
            &provider,
            "gmail",
            &client_id,
            &folder,
            lab.imaps_port,
            mechanism,
        );
        let config = common::config(dir.path(), &backend.url, &table);
        let opened = app::open(&config).await.expect("open");
        seed(&opened.store, &opened.master, &config, &refresh).await;
        let id = mailboxes::by_name(&opened.store.db, "gmail")
            .await
            .expect("query")
            .expect("row")
            .id;
        let sync = sync_of(&config, &opened, id);
        let cancel = CancellationToken::new();
        let first = sync.sync_once(&cancel).await.expect("first sync");
        assert_eq!(first.stored, 2, "{}/{mechanism}: {first:?}", backend.name);
        let stats = provider.stats(&client_id).await;
        assert_eq!(
            stats["refreshes"], 1,
            "{}: one refresh: {stats}",
            backend.name
        );
        assert_eq!(stats["introspections_active"], 1, "{stats}");

        // The provider ends the token long before the expiry it announced: Dovecot refuses it, the
        // daemon refreshes once and logs in with the new token.
        provider
            .control("expire", &json!({ "client_id": client_id }))
            .await;
        append_one(&lab, &folder, 7).await;
        let second = sync.sync_once(&cancel).await.expect("sync after expiry");
        assert_eq!(second.stored, 1, "{}: {second:?}", backend.name);
        let stats = provider.stats(&client_id).await;
        assert_eq!(
            stats["refreshes"], 2,
            "{}: refreshed after the refusal: {stats}",
            backend.name
        );
        assert_eq!(stats["introspections"], 3, "{stats}");

        // The cached token is reused while valid: no refresh for a third pass.
        sync.sync_once(&cancel).await.expect("third sync");
        assert_eq!(provider.stats(&client_id).await["refreshes"], 2);

        // Nothing readable at rest.
        let row = inboxd::store::oauth::get(&opened.store.db, id)
            .await
            .expect("query")
            .expect("token row");
        assert!(
            !row.refresh_token_sealed
                .windows(refresh.len())
                .any(|window| window == refresh.as_bytes()),
            "refresh token stored in the clear"
        );
        opened.store.close().await.expect("close");
    }
}

fn start_daemon(
    config: Config,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(app::run(config, shutdown.clone(), None));
    (shutdown, handle)
}

async fn observer(url: &str, dir: &Path) -> Store {
    for _ in 0..100 {
        if let Ok(store) = Store::connect(url, &dir.join("blobs")).await
            && inboxd::store::settings::get(&store.db, "x").await.is_ok()
            && mailbox::Entity::find().count(&store.db).await.is_ok()
        {
            return store;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("daemon never created its database");
}

async fn stop(shutdown: CancellationToken, handle: tokio::task::JoinHandle<anyhow::Result<()>>) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .expect("daemon stops in time")
        .expect("join")
        .expect("daemon ran cleanly");
}

#[tokio::test]
async fn a_rotated_refresh_token_is_persisted_and_used_after_a_restart() {
    let (Some(lab), Some(provider)) = (common::lab(), provider()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for backend in common::backends(dir.path()).await {
        let data = dir.path().join(backend.name);
        std::fs::create_dir_all(&data).expect("data dir");
        // Access tokens live 1 s, so every connection refreshes, and every refresh rotates.
        let (client_id, first_refresh) = provider.client(1, true).await;
        let (folder, _) = fresh_folder(&lab, 1).await;
        let table = oauth_mailbox(
            &data,
            &lab,
            &provider,
            "m365",
            &client_id,
            &folder,
            lab.imaps_port,
            "xoauth2",
        );
        let config = common::config(&data, &backend.url, &table);
        {
            let opened = app::open(&config).await.expect("open");
            seed(&opened.store, &opened.master, &config, &first_refresh).await;
            opened.store.close().await.expect("close");
        }
        let (shutdown, handle) = start_daemon(config.clone());
        let store = observer(&backend.url, &data).await;
        assert!(
            common::wait_until(Duration::from_secs(20), || async {
                stored(&store.db).await == 1
            })
            .await,
            "{}: first message synced",
            backend.name
        );
        stop(shutdown, handle).await;

        let master = app::load_master_key(&config.key).expect("key");
        let id = mailboxes::by_name(&store.db, "m365")
            .await
            .expect("query")
            .expect("row")
            .id;
        let row = inboxd::store::oauth::get(&store.db, id)
            .await
            .expect("query")
            .expect("row");
        let kept = inboxd::store::oauth::open_refresh(&master, &row).expect("opens");
        let stats = provider.stats(&client_id).await;
        assert_ne!(
            kept.expose(),
            first_refresh,
            "{}: rotated token saved",
            backend.name
        );
        assert_eq!(
            stats["refresh_tokens"],
            json!([kept.expose()]),
            "{}: the stored token is the provider's only live one",
            backend.name
        );

        // After a restart only the rotated token works (the first one is dead at the provider).
        append_one(&lab, &folder, 5).await;
        let (shutdown, handle) = start_daemon(config.clone());
        assert!(
            common::wait_until(Duration::from_secs(20), || async {
                stored(&store.db).await == 2
            })
            .await,
            "{}: synced after the restart with the rotated token",
            backend.name
        );
        stop(shutdown, handle).await;
        let stats = provider.stats(&client_id).await;
        assert_eq!(stats["invalid_grants"], 0, "{}: {stats}", backend.name);
        assert!(stats["refreshes"].as_u64().unwrap_or(0) >= 2, "{stats}");
        store.close().await.expect("close");
    }
}

/// Follows the authorization URL like a browser: the test provider answers 302 to the loopback
/// redirect at once; the redirect's answer is the page `mailbox authorize` shows.
async fn act_as_browser(url: &str) -> u16 {
    let rest = url.trim_start_matches("http://");
    let (authority, path) = rest.split_at(rest.find('/').expect("path"));
    let address: SocketAddr = authority.parse().expect("provider address");
    let answer = common::http::http(address, "GET", path, None, None, b"").await;
    assert_eq!(answer.status, 302, "authorize endpoint redirects");
    let location = answer.headers.get("location").expect("location").clone();
    let rest = location.trim_start_matches("http://");
    // `http://127.0.0.1:PORT?code=…`: a browser requests `/?code=…`.
    let (authority, query) = rest.split_at(rest.find('?').expect("query"));
    let address: SocketAddr = authority
        .trim_end_matches('/')
        .parse()
        .expect("redirect address");
    let path = format!("/{query}");
    common::http::http(address, "GET", &path, None, None, b"")
        .await
        .status
}

/// Runs `inboxd mailbox authorize NAME --json`, plays the browser for it and waits for it to finish;
/// returns its last output line.
async fn authorize_with_cli(config_path: &Path, name: &str) -> Value {
    let mut child = common::inboxd(
        config_path,
        &[
            "mailbox",
            "authorize",
            name,
            "--port",
            "0",
            "--timeout-secs",
            "30",
            "--json",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("start the cli");
    let stdout = child.stdout.take().expect("stdout");
    let (first, mut reader) = tokio::task::spawn_blocking(move || {
        // The first JSON document (pretty-printed over several lines) carries the URL.
        let mut reader = BufReader::new(stdout);
        let mut first = String::new();
        while serde_json::from_str::<Value>(&first).is_err() {
            match reader.read_line(&mut first) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        (first, reader)
    })
    .await
    .expect("read the cli");
    let started: Value = serde_json::from_str(&first).unwrap_or_else(|err| {
        let _ = child.kill();
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        panic!("authorize printed no JSON ({err}): {first:?} {stderr}")
    });
    let url = started["authorization_url"]
        .as_str()
        .expect("url")
        .to_string();
    assert!(
        url.contains("code_challenge_method=S256") && url.contains("&state="),
        "{url}"
    );
    assert_eq!(
        act_as_browser(&url).await,
        200,
        "the redirect page reports success"
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = common::wait_exit(&mut child, Duration::from_secs(30));
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
        (status, rest)
    })
    .await
    .expect("wait for the cli");
    assert!(
        status.0.is_some_and(|code| code.success()),
        "authorize exits 0: {:?} {}",
        status.0,
        status.1
    );
    serde_json::from_str(status.1.trim()).expect("final json line")
}

// Multi-threaded: the CLI (a child process) calls the in-process daemon while the test waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_marks_needs_reauthorization_others_carry_on_and_authorize_repairs_it() {
    let (Some(lab), Some(provider)) = (common::lab(), provider()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Relay::start(lab.imaps_port).await;
    let port = relay.lock().expect("relay").port;
    let (client_id, refresh) = provider.client(3600, false).await;
    let (oauth_folder, _) = fresh_folder(&lab, 1).await;
    let (password_folder, _) = fresh_folder(&lab, 1).await;
    let oauth = oauth_mailbox(
        dir.path(),
        &lab,
        &provider,
        "oauthbox",
        &client_id,
        &oauth_folder,
        port,
        "xoauth2",
    );
    let password = lab.mailbox_toml(dir.path(), "passbox", "support", &password_folder);
    let url = format!("sqlite://{}", dir.path().join("inboxd.db").display());
    let config = common::config(dir.path(), &url, &format!("{oauth}{password}"));
    let config_path = dir.path().join("inboxd.toml");
    {
        let opened = app::open(&config).await.expect("open");
        seed(&opened.store, &opened.master, &config, &refresh).await;
        opened.store.close().await.expect("close");
    }
    let (shutdown, handle) = start_daemon(config.clone());
    let store = observer(&url, dir.path()).await;
    assert!(
        common::wait_until(Duration::from_secs(20), || async {
            stored(&store.db).await == 2
        })
        .await,
        "both mailboxes synced"
    );

    // The admin revokes the app's access at the provider; the open session lives on until the
    // connection drops, then the reconnect finds the token dead and the refresh refused.
    provider
        .control("revoke", &json!({ "client_id": client_id }))
        .await;
    Relay::cut_all(&relay);
    assert!(
        common::wait_until(Duration::from_secs(20), || async {
            status_of(&store.db, "oauthbox").await.0 == "needs_reauthorization"
        })
        .await,
        "status after revocation: {:?}",
        status_of(&store.db, "oauthbox").await
    );
    let (_, error) = status_of(&store.db, "oauthbox").await;
    let error = error.unwrap_or_default();
    assert!(
        error.contains("inboxd mailbox authorize oauthbox"),
        "{error}"
    );
    assert!(!error.contains(&refresh), "no token in the status: {error}");

    let status = common::cli_json(&config_path, &["mailbox", "status", "oauthbox", "--json"]);
    let status = if status.is_array() {
        status[0].clone()
    } else {
        status
    };
    assert_eq!(status["status"], "needs_reauthorization", "{status}");
    let address: SocketAddr = std::fs::read_to_string(inboxd::api::address_file(dir.path()))
        .expect("api address")
        .lines()
        .next()
        .expect("line")
        .parse()
        .expect("address");
    let token = std::fs::read_to_string(inboxd::api::token_file(dir.path())).expect("api token");
    let metrics =
        common::http::http(address, "GET", "/metrics", Some(token.trim()), None, b"").await;
    let metrics = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(
        metrics.contains("inboxd_mailbox_needs_reauthorization{mailbox=\"oauthbox\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("inboxd_mailbox_needs_reauthorization{mailbox=\"passbox\"} 0"));

    // No hammering: the refused grant is not retried, while the password mailbox carries on.
    let requests = provider.stats(&client_id).await["token_requests"].clone();
    append_one(&lab, &password_folder, 9).await;
    assert!(
        common::wait_until(Duration::from_secs(20), || async {
            stored(&store.db).await == 3
        })
        .await,
        "the password mailbox keeps syncing"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        provider.stats(&client_id).await["token_requests"],
        requests,
        "no token requests while waiting for re-authorization"
    );

    // The admin re-authorizes through the running daemon; the mailbox recovers by itself.
    let done = authorize_with_cli(&config_path, "oauthbox").await;
    assert_eq!(done["state"], "authorized", "{done}");
    append_one(&lab, &oauth_folder, 4).await;
    assert!(
        common::wait_until(Duration::from_secs(20), || async {
            stored(&store.db).await == 4 && status_of(&store.db, "oauthbox").await.0 == "ok"
        })
        .await,
        "re-authorized mailbox syncs again: {:?}",
        status_of(&store.db, "oauthbox").await
    );
    assert_eq!(provider.stats(&client_id).await["code_exchanges"], 1);
    stop(shutdown, handle).await;
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_authorize_stores_sealed_tokens_and_rotate_key_reseals_them() {
    let (Some(lab), Some(provider)) = (common::lab(), provider()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for backend in common::backends(dir.path()).await {
        let data = dir.path().join(backend.name);
        std::fs::create_dir_all(&data).expect("data dir");
        let (client_id, _) = provider.client(3600, false).await;
        let (folder, _) = fresh_folder(&lab, 1).await;
        let table = oauth_mailbox(
            &data,
            &lab,
            &provider,
            "gmail",
            &client_id,
            &folder,
            lab.imaps_port,
            "oauthbearer",
        );
        let config = common::config(&data, &backend.url, &table);
        let config_path = data.join("inboxd.toml");

        // No daemon: the CLI listens for the redirect itself and stores the tokens.
        let done = authorize_with_cli(&config_path, "gmail").await;
        assert_eq!(done["state"], "authorized", "{}: {done}", backend.name);
        assert_eq!(provider.stats(&client_id).await["code_exchanges"], 1);

        let new_key = data.join("new.key");
        common::cli_ok(
            &config_path,
            &["key", "generate", "--out", new_key.to_str().expect("path")],
        );
        let rotated = common::cli_json(
            &config_path,
            &[
                "rotate-key",
                "--new-key-file",
                new_key.to_str().expect("path"),
                "--json",
            ],
        );
        assert_eq!(
            rotated["resealed_oauth_grants"], 1,
            "{}: {rotated}",
            backend.name
        );
        let old_key = app::load_master_key(&config.key).expect("old key");
        std::fs::copy(&new_key, data.join("master.key")).expect("switch to the new key");

        let opened = app::open(&config).await.expect("open with the new key");
        let row = mailboxes::by_name(&opened.store.db, "gmail")
            .await
            .expect("query")
            .expect("row");
        let grant = inboxd::store::oauth::get(&opened.store.db, row.id)
            .await
            .expect("query")
            .expect("grant stored");
        assert_eq!(grant.generation, 1);
        assert!(inboxd::store::oauth::open_refresh(&old_key, &grant).is_err());
        let refresh = inboxd::store::oauth::open_refresh(&opened.master, &grant)
            .expect("opens under the new key");
        let live = provider.stats(&client_id).await["refresh_tokens"].clone();
        assert!(
            live.as_array()
                .is_some_and(|tokens| tokens.iter().any(|token| token == refresh.expose())),
            "{live}"
        );
        // The access token from the code exchange is still fresh: the sync needs no refresh.
        let sync = sync_of(&config, &opened, row.id);
        let report = sync
            .sync_once(&CancellationToken::new())
            .await
            .expect("sync with the authorized grant");
        assert_eq!(report.stored, 1, "{}: {report:?}", backend.name);
        assert_eq!(provider.stats(&client_id).await["refreshes"], 0);
        opened.store.close().await.expect("close");
    }
}

#[tokio::test]
async fn replies_are_submitted_with_xoauth2_and_oauthbearer_through_postfix_and_dovecot_sasl() {
    let (Some(lab), Some(provider)) = (common::lab(), provider()) else {
        return;
    };
    let Some(port) = std::env::var("INBOXD_TEST_SUBMISSION_PORT")
        .ok()
        .and_then(|port| port.parse::<u16>().ok())
    else {
        common::missing::<()>("the lab's Postfix submission port (INBOXD_TEST_SUBMISSION_PORT)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for mechanism in ["xoauth2", "oauthbearer"] {
        let (client_id, refresh) = provider.client(3600, false).await;
        let table = format!(
            "{}[mailbox.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"starttls\"\nca_file = \"{}\"\noauth = true\n",
            oauth_mailbox(
                dir.path(),
                &lab,
                &provider,
                "sender",
                &client_id,
                "INBOX",
                lab.imaps_port,
                mechanism
            )
            .replace(
                "[mailbox.oauth]",
                "address = \"support@inboxd.test\"\n[mailbox.oauth]"
            ),
            lab.ca_file.display()
        );
        let url = format!(
            "sqlite://{}",
            dir.path().join(format!("{mechanism}.db")).display()
        );
        let config = common::config(dir.path(), &url, &table);
        let outgoing = config.mailboxes[0].outgoing.clone().expect("smtp side");
        let opened = app::open(&config).await.expect("open");
        seed(&opened.store, &opened.master, &config, &refresh).await;
        let id = mailboxes::by_name(&opened.store.db, "sender")
            .await
            .expect("query")
            .expect("row")
            .id;
        let context = inboxd::ingest::imap_sync::OAuthContext {
            db: &opened.store.db,
            key: &opened.master,
            mailbox_id: id,
        };
        let base =
            inboxd::delivery::sender::smtp_settings("sender", &outgoing, Duration::from_secs(20))
                .expect("settings");
        let envelope = inboxd::delivery::smtp::Envelope {
            mail_from: "support@inboxd.test".to_string(),
            recipients: vec!["alice@inboxd.test".to_string()],
            envelope_id: String::new(),
        };
        let dsn = inboxd::delivery::smtp::DsnRequest {
            notify: Vec::new(),
            ret_headers_only: true,
        };
        let raw = common::message(
            &format!("{}@inboxd.test", common::unique("smtp-")),
            "oauth reply",
            "support@inboxd.test",
            "hello",
        );

        // Without credentials the submission port refuses the recipient: the AUTH below is what counts.
        let mut anonymous = base.clone();
        anonymous.username = None;
        anonymous.password = None;
        let refused = inboxd::delivery::smtp::send(&anonymous, &envelope, &dsn, &raw)
            .await
            .expect("anonymous session");
        assert!(refused.data.is_none(), "{mechanism}: {refused:?}");

        let settings = inboxd::delivery::sender::with_oauth_token(
            "sender",
            &outgoing,
            base.clone(),
            &context,
            None,
        )
        .await
        .expect("token");
        let outcome = inboxd::delivery::smtp::send(&settings, &envelope, &dsn, &raw)
            .await
            .expect("authenticated send");
        assert!(
            outcome.data.as_ref().is_some_and(|data| data.accepted),
            "{mechanism}: {outcome:?}"
        );

        // A token the provider ended early is refused by the relay; a refreshed one is accepted.
        provider
            .control("expire", &json!({ "client_id": client_id }))
            .await;
        let error = inboxd::delivery::smtp::send(&settings, &envelope, &dsn, &raw)
            .await
            .expect_err("expired token refused");
        assert!(error.is_auth(), "{mechanism}: {error}");
        let used = settings.password.clone().map(Secret::new);
        let renewed = inboxd::delivery::sender::with_oauth_token(
            "sender",
            &outgoing,
            base,
            &context,
            used.as_ref(),
        )
        .await
        .expect("refreshed token");
        let outcome = inboxd::delivery::smtp::send(&renewed, &envelope, &dsn, &raw)
            .await
            .expect("send with the refreshed token");
        assert!(
            outcome.data.as_ref().is_some_and(|data| data.accepted),
            "{mechanism}: {outcome:?}"
        );
        assert_eq!(
            provider.stats(&client_id).await["refreshes"],
            2,
            "{mechanism}"
        );
        opened.store.close().await.expect("close");
    }
}
