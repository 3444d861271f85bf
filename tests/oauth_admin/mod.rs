//! OAuth mailboxes an admin adds at run time: `inboxd mailbox add-imap --oauth-*` offline and
//! `POST`/`PUT /v1/mailboxes` through the running daemon. Their client secret is sealed with the
//! mailbox's settings; they are authorized, marked `needs_reauthorization`, synced, re-sealed by
//! `rotate-key` and send replies exactly like mailboxes from the config file.
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use inboxd::app;
use inboxd::config::{MailboxConfig, PasswordSource};
use inboxd::store::{Store, mailboxes};
use serde_json::{Value, json};

use super::{Provider, authorize_with_cli, common, fresh_folder, provider, start_daemon, stop};

/// Whether `haystack` holds `needle` anywhere.
fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Every byte of the SQLite files under `dir` (database, WAL), to look for secrets at rest.
fn sqlite_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).expect("data dir").flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("inboxd.db") {
            all.extend(std::fs::read(entry.path()).unwrap_or_default());
        }
    }
    all
}

/// The CLI's arguments of `mailbox add-imap` for the lab's support user with a generic OAuth provider,
/// replies through the lab's submission port with the same grant.
fn add_imap_args(
    lab: &common::Lab,
    provider: &Provider,
    (name, client_id, secret_file, folder): (&str, &str, &Path, &str),
    submission_port: u16,
) -> Vec<String> {
    let ca = lab.ca_file.display().to_string();
    [
        "mailbox",
        "add-imap",
        name,
        "--host",
        "127.0.0.1",
        "--port",
        &lab.imaps_port.to_string(),
        "--username",
        &lab.user("support"),
        "--ca-file",
        &ca,
        "--folder",
        folder,
        "--oauth-provider",
        "generic",
        "--oauth-client-id",
        client_id,
        "--oauth-client-secret-file",
        secret_file.to_str().expect("utf8"),
        "--oauth-mechanism",
        "oauthbearer",
        "--oauth-authorization-url",
        &format!("{}/authorize", provider.url()),
        "--oauth-token-url",
        &format!("{}/token", provider.url()),
        "--oauth-scope",
        "mail",
        "--address",
        "support@inboxd.test",
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        &submission_port.to_string(),
        "--smtp-tls",
        "starttls",
        "--smtp-ca-file",
        &ca,
        "--smtp-oauth",
        "--json",
    ]
    .iter()
    .map(|arg| (*arg).to_string())
    .collect()
}

fn submission_port() -> Option<u16> {
    match std::env::var("INBOXD_TEST_SUBMISSION_PORT")
        .ok()
        .and_then(|port| port.parse::<u16>().ok())
    {
        Some(port) => Some(port),
        None => common::missing("the lab's Postfix submission port (INBOXD_TEST_SUBMISSION_PORT)"),
    }
}

/// Runs the CLI and returns (exit code, parsed JSON of its output or Null).
fn cli(config: &Path, args: &[&str]) -> (i32, Value) {
    let output = common::inboxd(config, args).output().expect("run the cli");
    let value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), value)
}

fn client_secret_of(config: &MailboxConfig) -> Option<String> {
    match config.oauth()?.client_secret.as_ref()? {
        PasswordSource::Stored(secret) => Some(secret.expose().to_string()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth_mailbox_added_offline_is_authorized_synced_and_its_client_secret_resealed_by_rotate_key()
 {
    let (Some(lab), Some(provider), Some(submission)) =
        (common::lab(), provider(), submission_port())
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for backend in common::backends(dir.path()).await {
        let data = dir.path().join(backend.name);
        std::fs::create_dir_all(&data).expect("data dir");
        let secret = common::unique("client-secret-canary-");
        let (client_id, _) = provider.client_with_secret(3600, false, &secret).await;
        let (folder, _) = fresh_folder(&lab, 1).await;
        let config = common::config(&data, &backend.url, "");
        let config_path = data.join("inboxd.toml");
        let secret_file = common::write_secret(&data, "client-secret", &secret);
        let args = add_imap_args(
            &lab,
            &provider,
            ("gmail", &client_id, &secret_file, &folder),
            submission,
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let added = common::cli_json(&config_path, &args);
        assert_eq!(added["origin"], "admin", "{}: {added}", backend.name);
        assert!(!added.to_string().contains(&secret));

        // Not signed in yet: a pass says what to run, and nothing is asked of the provider.
        let (code, report) = cli(
            &config_path,
            &["sync", "--once", "--mailbox", "gmail", "--json"],
        );
        assert_ne!(code, 0, "{}: {report}", backend.name);
        let (code, status) = cli(&config_path, &["mailbox", "status", "gmail", "--json"]);
        let status = if status.is_array() {
            status[0].clone()
        } else {
            status
        };
        assert_eq!(code, 0);
        assert_eq!(
            status["status"], "needs_reauthorization",
            "{}: {status}",
            backend.name
        );
        assert!(
            status["last_error"]
                .as_str()
                .is_some_and(|error| error.contains("inboxd mailbox authorize gmail")),
            "{status}"
        );
        assert_eq!(provider.stats(&client_id).await["token_requests"], 0);

        // Offline sign-in: the code exchange carries the sealed client secret (the provider checks it).
        let done = authorize_with_cli(&config_path, "gmail").await;
        assert_eq!(done["state"], "authorized", "{}: {done}", backend.name);
        assert_eq!(provider.stats(&client_id).await["code_exchanges"], 1);
        let tested = common::cli_json(&config_path, &["mailbox", "test", "gmail", "--json"]);
        assert_eq!(
            tested["ok"], true,
            "{}: IMAP OAUTHBEARER and SMTP AUTH through the submission port: {tested}",
            backend.name
        );

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
        assert_eq!(rotated["resealed_mailboxes"], 1, "{rotated}");
        assert_eq!(rotated["resealed_oauth_grants"], 1, "{rotated}");
        let old_key = app::load_master_key(&config.key).expect("old key");
        std::fs::copy(&new_key, data.join("master.key")).expect("switch to the new key");
        let new_key = app::load_master_key(&config.key).expect("new key");
        {
            let store = Store::connect(&backend.url, &data.join("blobs"))
                .await
                .expect("connect");
            let row = mailboxes::by_name(&store.db, "gmail")
                .await
                .expect("query")
                .expect("row");
            let sealed = row.settings_sealed.clone().expect("sealed settings");
            assert!(
                !contains(&sealed, &secret),
                "client secret stored in the clear"
            );
            assert!(mailboxes::admin_config(&old_key, &row).is_err());
            let opened = mailboxes::admin_config(&new_key, &row).expect("opens under the new key");
            assert_eq!(client_secret_of(&opened), Some(secret.clone()));
            store.close().await.expect("close");
        }
        if backend.name == "sqlite" {
            assert!(
                !contains(&sqlite_bytes(&data), &secret),
                "client secret in the SQLite files"
            );
        }

        // The provider ends the access token: the pass refreshes with the re-sealed secret and syncs.
        provider
            .control("expire", &json!({ "client_id": client_id }))
            .await;
        let report = common::cli_json(
            &config_path,
            &["sync", "--once", "--mailbox", "gmail", "--json"],
        );
        let stored: u64 = report["reports"]
            .as_array()
            .or_else(|| report.as_array())
            .into_iter()
            .flatten()
            .filter_map(|report| report["stored"].as_u64())
            .sum();
        assert_eq!(stored, 1, "{}: {report}", backend.name);
        let stats = provider.stats(&client_id).await;
        assert_eq!(stats["refreshes"], 1, "{}: {stats}", backend.name);
        let (_, status) = cli(&config_path, &["mailbox", "status", "gmail", "--json"]);
        let status = if status.is_array() {
            status[0].clone()
        } else {
            status
        };
        assert_eq!(status["status"], "ok", "{}: {status}", backend.name);
    }
}

/// The daemon's API address and the admin token it wrote into the data directory.
fn api_of(data: &Path) -> common::http::Api {
    let address: SocketAddr = std::fs::read_to_string(inboxd::api::address_file(data))
        .expect("api address")
        .lines()
        .next()
        .expect("line")
        .parse()
        .expect("address");
    let token = std::fs::read_to_string(inboxd::api::token_file(data)).expect("api token");
    common::http::Api {
        address,
        token: Some(token.trim().to_string()),
    }
}

async fn wait_for_api(data: &Path) -> common::http::Api {
    assert!(
        common::wait_until(Duration::from_secs(20), || async {
            inboxd::api::token_file(data).exists() && inboxd::api::address_file(data).exists()
        })
        .await,
        "the daemon's api never came up"
    );
    api_of(data)
}

/// The `POST /v1/mailboxes` body of an OAuth mailbox of the lab's support user, replies with the grant.
fn api_body(
    lab: &common::Lab,
    provider: &Provider,
    client_id: &str,
    folder: &str,
    submission: u16,
) -> Value {
    let ca = lab.ca_file.display().to_string();
    json!({
        "kind": "imap", "host": "127.0.0.1", "port": lab.imaps_port, "username": lab.user("support"),
        "ca_file": ca, "folders": [folder],
        "oauth": {
            "provider": "generic", "client_id": client_id, "mechanism": "xoauth2",
            "authorization_url": format!("{}/authorize", provider.url()),
            "token_url": format!("{}/token", provider.url()), "scopes": ["mail"],
        },
        "address": "support@inboxd.test",
        "smtp": { "host": "127.0.0.1", "port": submission, "tls": "starttls", "ca_file": ca, "oauth": true },
    })
}

async fn mailbox_status(api: &common::http::Api, name: &str) -> Value {
    api.get(&format!("/v1/mailboxes/{name}")).await.json()
}

/// The events of message `id` in conversation `conversation`.
async fn events(api: &common::http::Api, conversation: &str, id: &str) -> Vec<String> {
    let view = api.get(&format!("/v1/conversations/{conversation}")).await;
    view.json()["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|message| message["id"].as_str() == Some(id))
        .flat_map(|message| message["events"].as_array().cloned().unwrap_or_default())
        .filter_map(|event| event["event"].as_str().map(str::to_string))
        .collect()
}

async fn refused_introspections(provider: &Provider, client_id: &str) -> u64 {
    let stats = provider.stats(client_id).await;
    stats["introspections"].as_u64().unwrap_or(0)
        - stats["introspections_active"].as_u64().unwrap_or(0)
}

// Multi-threaded: the CLI (a child process) calls the in-process daemon while the test waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth_mailbox_added_through_the_api_waits_for_authorization_syncs_and_sends_a_reply_after_a_refresh()
 {
    let (Some(lab), Some(provider), Some(submission)) =
        (common::lab(), provider(), submission_port())
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for backend in common::backends(dir.path()).await {
        let data = dir.path().join(backend.name);
        std::fs::create_dir_all(&data).expect("data dir");
        let secret = common::unique("api-client-secret-");
        let (client_id, _) = provider.client_with_secret(3600, false, &secret).await;
        let (folder, _) = fresh_folder(&lab, 1).await;
        let config = common::config(&data, &backend.url, "");
        let config_path = data.join("inboxd.toml");
        let (shutdown, handle) = start_daemon(config.clone());
        let api = wait_for_api(&data).await;
        let name = "m365";
        let mut body = api_body(&lab, &provider, &client_id, &folder, submission);
        body["name"] = json!(name);

        // Bad settings are refused with the field to fix.
        for (change, expected) in [
            (json!({ "password": "x" }), "remove the password"),
            (
                json!({ "oauth": { "provider": "generic", "client_id": "c" } }),
                "`oauth.authorization_url`",
            ),
            (
                json!({ "oauth": null, "password": "pw" }),
                "`smtp.oauth` needs",
            ),
            (
                json!({ "oauth": { "provider": "yahoo", "client_id": "c" } }),
                "`oauth.provider`",
            ),
        ] {
            let mut bad = body.clone();
            for (key, value) in change.as_object().expect("object") {
                bad[key] = value.clone();
            }
            let answer = api.send("POST", "/v1/mailboxes", &bad).await;
            assert_eq!(answer.status, 400, "{change}");
            let message = answer.json()["error"]["message"].to_string();
            assert!(message.contains(expected), "{change}: {message}");
        }

        body["oauth"]["client_secret"] = json!(secret);
        let added = api.send("POST", "/v1/mailboxes", &body).await;
        assert_eq!(
            added.status,
            201,
            "{}",
            String::from_utf8_lossy(&added.body)
        );
        assert!(!contains(&added.body, &secret));

        // Until an admin signs it in, the mailbox says so (status, metric) and waits.
        assert!(
            common::wait_until(Duration::from_secs(20), || async {
                mailbox_status(&api, name).await["status"] == "needs_reauthorization"
            })
            .await,
            "{}: {}",
            backend.name,
            mailbox_status(&api, name).await
        );
        let status = mailbox_status(&api, name).await;
        assert!(
            status["last_error"]
                .as_str()
                .is_some_and(|error| error.contains("inboxd mailbox authorize m365")),
            "{status}"
        );
        let metrics = api.get("/metrics").await;
        assert!(
            String::from_utf8_lossy(&metrics.body)
                .contains("inboxd_mailbox_needs_reauthorization{mailbox=\"m365\"} 1"),
            "metric"
        );
        assert_eq!(provider.stats(&client_id).await["token_requests"], 0);

        // Signed in through the daemon, the mailbox syncs by itself.
        let done = authorize_with_cli(&config_path, name).await;
        assert_eq!(done["state"], "authorized", "{}: {done}", backend.name);
        assert!(
            common::wait_until(Duration::from_secs(20), || async {
                mailbox_status(&api, name).await["messages_stored"] == 1
            })
            .await,
            "{}: {}",
            backend.name,
            mailbox_status(&api, name).await
        );
        assert_eq!(mailbox_status(&api, name).await["status"], "ok");

        // Changed without `client_secret`: the sealed one is kept. Disabled, so that only the
        // sender uses the grant from here on.
        let mut change = api_body(&lab, &provider, &client_id, &folder, submission);
        change["enabled"] = json!(false);
        let changed = api
            .send("PUT", &format!("/v1/mailboxes/{name}"), &change)
            .await;
        assert_eq!(
            changed.status,
            200,
            "{}",
            String::from_utf8_lossy(&changed.body)
        );
        let page = api.get("/v1/conversations?mailbox=m365").await.json();
        let conversation = page["conversations"][0]["id"]
            .as_str()
            .expect("the synced conversation")
            .to_string();
        tokio::time::sleep(Duration::from_millis(1500)).await;

        // The provider ends the access token early. The sender's first AUTH is refused by Postfix
        // (Dovecot asks the provider), it refreshes once and submits with the new token.
        provider
            .control("expire", &json!({ "client_id": client_id }))
            .await;
        let refreshes = provider.stats(&client_id).await["refreshes"]
            .as_u64()
            .unwrap_or(0);
        let refused = refused_introspections(&provider, &client_id).await;
        let queued = api
            .send(
                "POST",
                &format!("/v1/conversations/{conversation}/replies"),
                &json!({ "body": "Thanks, we are on it.", "to": [lab.user("alice")] }),
            )
            .await;
        assert_eq!(
            queued.status,
            202,
            "{}",
            String::from_utf8_lossy(&queued.body)
        );
        let reply = queued.json()["message_id"]
            .as_str()
            .expect("message id")
            .to_string();
        assert!(
            common::wait_until(Duration::from_secs(30), || async {
                let seen = events(&api, &conversation, &reply).await;
                seen.iter()
                    .any(|event| event == "sent" || event == "delivered")
            })
            .await,
            "{}: reply events {:?}",
            backend.name,
            events(&api, &conversation, &reply).await
        );
        let seen = events(&api, &conversation, &reply).await;
        assert!(
            !seen
                .iter()
                .any(|event| event == "deferred" || event == "failed"),
            "{}: sent at the first attempt: {seen:?}",
            backend.name
        );
        let stats = provider.stats(&client_id).await;
        assert_eq!(
            stats["refreshes"].as_u64().unwrap_or(0),
            refreshes + 1,
            "{}: one refresh: {stats}",
            backend.name
        );
        assert_eq!(
            refused_introspections(&provider, &client_id).await,
            refused + 1,
            "{}: the expired token was tried once and refused: {stats}",
            backend.name
        );
        stop(shutdown, handle).await;
        let stats = provider.stats(&client_id).await;
        assert_eq!(stats["invalid_grants"], 0, "{stats}");
    }
}
