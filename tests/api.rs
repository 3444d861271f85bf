//! The HTTP API of a real daemon (in-process, on SQLite and PostgreSQL): every endpoint for every role,
//! refusals, scoping that never reveals hidden data, revocation at once, hostile input, downloads with
//! safe names, replies committed before 202, metrics after an ingest. The CLI side is in `api_cli.rs`.
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::http::{Api, http, maildir};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// A message with an attachment whose name tries to escape the download directory.
fn with_hostile_attachment() -> Vec<u8> {
    b"Message-ID: <att@alpha>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0100\r\nFrom: Customer <carol@example.org>\r\nTo: support@inboxd.test\r\nSubject: Invoice attached\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nSee the invoice.\r\n--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"../../etc/cron.d/evil\\\"x.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nSU5WT0lDRSBCWVRFUw==\r\n--b1--\r\n"
        .to_vec()
}

/// The daemon running in this process on a temp dir and `database_url`, with mailboxes `alpha` (replies
/// configured, to a closed port so they stay queued) and `beta`.
struct Daemon {
    api: Api,
    admin: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    data: PathBuf,
}

async fn start_daemon(dir: &Path, database_url: &str) -> Daemon {
    let alpha = maildir(
        dir,
        "alpha",
        &[
            common::message(
                "a1@alpha",
                "Order 4711 missing",
                "alice@example.org",
                "where is zebrafish order",
            ),
            with_hostile_attachment(),
        ],
    );
    let beta = maildir(
        dir,
        "beta",
        &[common::message(
            "b1@beta",
            "Secret beta topic",
            "bob@example.org",
            "quokka sighting report",
        )],
    );
    let extra = format!(
        "[api]\nlisten = \"127.0.0.1:0\"\n\
         [[mailbox]]\nname = \"alpha\"\nkind = \"maildir\"\npath = \"{}\"\naddress = \"support@inboxd.test\"\n\
         [mailbox.smtp]\nhost = \"127.0.0.1\"\nport = 9\ninsecure = true\n\
         [[mailbox]]\nname = \"beta\"\nkind = \"maildir\"\npath = \"{}\"\n",
        alpha.display(),
        beta.display()
    );
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let config = common::config(&data, database_url, &extra);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(inboxd::app::run(config, shutdown.clone(), None));
    let address_file = data.join("api/address");
    assert!(
        common::wait_until(Duration::from_secs(30), || async { address_file.exists() }).await,
        "the daemon publishes its api address"
    );
    let address: SocketAddr = std::fs::read_to_string(&address_file)
        .expect("address")
        .lines()
        .next()
        .unwrap_or_default()
        .parse()
        .expect("socket address");
    let admin = std::fs::read_to_string(data.join("api/local-admin.token"))
        .expect("token")
        .trim()
        .to_string();
    let api = Api {
        address,
        token: None,
    };
    let admin_api = api.with(&admin);
    assert!(
        common::wait_until(Duration::from_secs(30), || {
            let admin_api = admin_api.clone();
            async move {
                let answer = admin_api.get("/v1/conversations").await;
                answer.status == 200 && answer.json()["total"].as_u64() >= Some(3)
            }
        })
        .await,
        "both mailboxes are ingested"
    );
    // The index commits within a second of the ingest.
    assert!(
        common::wait_until(Duration::from_secs(20), || {
            let admin_api = admin_api.clone();
            async move {
                let answer = admin_api.get("/v1/search?q=quokka").await;
                answer.status == 200 && answer.json()["total"] == 1
            }
        })
        .await,
        "the ingested mail is searchable"
    );
    Daemon {
        api,
        admin,
        shutdown,
        task,
        data,
    }
}

impl Daemon {
    async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the daemon stops in time")
            .expect("the daemon task does not panic");
        result.expect("the daemon stops cleanly");
        assert!(
            !self.data.join("api/local-admin.token").exists(),
            "the credential is removed at shutdown"
        );
    }
}

async fn conversation_id(api: &Api, subject: &str) -> String {
    let list = api.get("/v1/conversations?limit=500").await.json();
    list["conversations"]
        .as_array()
        .and_then(|items| items.iter().find(|item| item["subject"] == subject))
        .and_then(|item| item["id"].as_str())
        .unwrap_or_else(|| panic!("no conversation `{subject}` in {list}"))
        .to_string()
}

async fn create_token(admin: &Api, name: &str, role: &str, mailboxes: Option<Vec<&str>>) -> String {
    let answer = admin
        .send(
            "POST",
            "/v1/tokens",
            &json!({ "name": name, "role": role, "mailboxes": mailboxes }),
        )
        .await;
    assert_eq!(
        answer.status,
        201,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.json()["secret"]
        .as_str()
        .expect("the secret is shown once")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_endpoint_for_every_role_on_both_backends() {
    let dir = tempfile::tempdir().expect("tempdir");
    for backend in common::backends(dir.path()).await {
        let root = dir.path().join(backend.name);
        std::fs::create_dir_all(&root).expect("root");
        let url = if backend.name == "sqlite" {
            format!("sqlite://{}", root.join("inboxd.db").display())
        } else {
            backend.url.clone()
        };
        let daemon = start_daemon(&root, &url).await;
        roles_and_refusals(&daemon).await;
        agent_work(&daemon, backend.name == "sqlite").await;
        admin_work(&daemon, &root).await;
        hostile_input(&daemon).await;
        public_endpoints(&daemon).await;
        daemon.stop().await;
        eprintln!("{}: api checks passed", backend.name);
    }
}

async fn roles_and_refusals(daemon: &Daemon) {
    let api = &daemon.api;
    let admin = api.with(&daemon.admin);
    // 401: no token, a malformed one, an unknown one, another scheme — all alike.
    let none = api.get("/v1/conversations").await;
    assert_eq!((none.status, none.code().as_str()), (401, "unauthorized"));
    assert!(none.headers.contains_key("www-authenticate"));
    for token in ["garbage", "inboxd_0000", &format!("{}x", daemon.admin)] {
        let answer = api.with(token).get("/v1/conversations").await;
        assert_eq!(answer.status, 401, "token {token}");
        assert_eq!(answer.body, none.body, "401s never say why");
    }
    let basic = http(api.address, "GET", "/v1/whoami", None, None, b"").await;
    assert_eq!(basic.status, 401);

    let scoped = create_token(&admin, "agent-alpha", "agent", Some(vec!["alpha"])).await;
    let agent = api.with(&scoped);
    let me = agent.get("/v1/whoami").await.json();
    assert_eq!(
        (me["role"].as_str(), me["mailboxes"][0].as_str()),
        (Some("agent"), Some("alpha"))
    );

    // 403: every admin endpoint, for an agent.
    let beta_id = conversation_id(&admin, "Secret beta topic").await;
    for (method, path, body) in [
        ("GET", "/v1/mailboxes", json!(null)),
        (
            "POST",
            "/v1/mailboxes",
            json!({"name": "x", "kind": "maildir", "path": "/tmp"}),
        ),
        ("GET", "/v1/mailboxes/alpha", json!(null)),
        (
            "PUT",
            "/v1/mailboxes/alpha",
            json!({"kind": "maildir", "path": "/tmp"}),
        ),
        ("DELETE", "/v1/mailboxes/alpha", json!(null)),
        ("POST", "/v1/mailboxes/alpha/test", json!(null)),
        ("POST", "/v1/sync", json!({})),
        ("GET", "/v1/tokens", json!(null)),
        (
            "POST",
            "/v1/tokens",
            json!({"name": "mine", "role": "admin"}),
        ),
        ("DELETE", "/v1/tokens/agent-alpha", json!(null)),
        ("GET", "/v1/audit", json!(null)),
    ] {
        let answer = agent.send(method, path, &body).await;
        assert_eq!(
            answer.status,
            403,
            "{method} {path}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        assert_eq!(answer.code(), "forbidden");
    }

    // 404 that does not reveal: a conversation of another mailbox answers exactly like a missing one.
    let missing = uuid::Uuid::now_v7().to_string();
    for suffix in ["", "/notes"] {
        let hidden = agent
            .get(&format!("/v1/conversations/{beta_id}{suffix}"))
            .await;
        let absent = agent
            .get(&format!("/v1/conversations/{missing}{suffix}"))
            .await;
        assert_eq!((hidden.status, absent.status), (404, 404));
        assert_eq!(
            String::from_utf8_lossy(&hidden.body).replace(&beta_id, "ID"),
            String::from_utf8_lossy(&absent.body).replace(&missing, "ID")
        );
    }
    for (method, path, body) in [
        (
            "PUT",
            format!("/v1/conversations/{beta_id}/state"),
            json!({"state": "closed"}),
        ),
        (
            "PUT",
            format!("/v1/conversations/{beta_id}/assignee"),
            json!({"assignee": "me"}),
        ),
        (
            "POST",
            format!("/v1/conversations/{beta_id}/replies"),
            json!({"body": "hi"}),
        ),
        (
            "POST",
            format!("/v1/conversations/{beta_id}/notes"),
            json!({"body": "hi"}),
        ),
    ] {
        let answer = agent.send(method, &path, &body).await;
        assert_eq!(answer.status, 404, "{method} {path}");
    }
    let hidden_mailbox = agent.get("/v1/conversations?mailbox=beta").await;
    let absent_mailbox = agent.get("/v1/conversations?mailbox=nosuch").await;
    assert_eq!((hidden_mailbox.status, absent_mailbox.status), (404, 404));
    assert_eq!(
        String::from_utf8_lossy(&hidden_mailbox.body).replace("beta", "X"),
        String::from_utf8_lossy(&absent_mailbox.body).replace("nosuch", "X")
    );
    // The scoped agent lists and finds only its mailbox's conversations.
    let listed = agent.get("/v1/conversations").await.json();
    assert_eq!(listed["total"], 2, "{listed}");
    assert!(
        listed["conversations"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|c| c["mailbox"] == "alpha")
    );
    let found = agent.get("/v1/search?q=quokka").await.json();
    assert_eq!(found["total"], 0, "search is scoped: {found}");
    let found = admin.get("/v1/search?q=quokka").await.json();
    assert_eq!(
        found["hits"][0]["conversation_id"].as_str(),
        Some(beta_id.as_str())
    );

    // Revocation takes effect at the very next request.
    assert_eq!(agent.get("/v1/whoami").await.status, 200);
    let revoked = admin
        .send("DELETE", "/v1/tokens/agent-alpha", &json!(null))
        .await;
    assert_eq!(revoked.status, 200);
    assert_eq!(agent.get("/v1/whoami").await.status, 401);
    assert_eq!(agent.get("/v1/conversations").await.status, 401);
    let again = admin
        .send("DELETE", "/v1/tokens/agent-alpha", &json!(null))
        .await;
    assert_eq!(again.status, 404, "nothing left to revoke");
}

async fn agent_work(daemon: &Daemon, sqlite: bool) {
    let admin = daemon.api.with(&daemon.admin);
    let secret = create_token(&admin, "agent-all", "agent", None).await;
    let agent = daemon.api.with(&secret);
    let order = conversation_id(&agent, "Order 4711 missing").await;
    let beta = conversation_id(&agent, "Secret beta topic").await;

    // Filters and paging.
    let page = agent.get("/v1/conversations?limit=1&offset=1").await.json();
    assert_eq!(
        (
            page["total"].as_u64(),
            page["conversations"].as_array().map(Vec::len)
        ),
        (Some(3), Some(1))
    );
    let in_beta = agent.get("/v1/conversations?mailbox=beta").await.json();
    assert_eq!(in_beta["total"], 1);

    // State, with the index following (is:pending).
    let changed = agent
        .send(
            "PUT",
            &format!("/v1/conversations/{order}/state"),
            &json!({"state": "pending"}),
        )
        .await;
    assert_eq!(
        changed.status,
        200,
        "{}",
        String::from_utf8_lossy(&changed.body)
    );
    let bad = agent
        .send(
            "PUT",
            &format!("/v1/conversations/{order}/state"),
            &json!({"state": "done"}),
        )
        .await;
    assert_eq!((bad.status, bad.code().as_str()), (400, "invalid_request"));
    assert!(
        bad.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("open, pending, closed")
    );
    let pending = agent.get("/v1/conversations?state=pending").await.json();
    assert_eq!(
        pending["conversations"][0]["id"].as_str(),
        Some(order.as_str())
    );
    assert!(
        common::wait_until(Duration::from_secs(10), || {
            let agent = agent.clone();
            async move {
                agent
                    .get("/v1/search?q=zebrafish%20is:pending")
                    .await
                    .json()["total"]
                    == 1
            }
        })
        .await,
        "the new state is searchable"
    );

    // Assign, then filter by assignee; unassign.
    let assigned = agent
        .send(
            "PUT",
            &format!("/v1/conversations/{beta}/assignee"),
            &json!({"assignee": "dana"}),
        )
        .await;
    assert_eq!(assigned.status, 200);
    let mine = agent.get("/v1/conversations?assignee=dana").await.json();
    assert_eq!(
        (
            mine["total"].as_u64(),
            mine["conversations"][0]["id"].as_str()
        ),
        (Some(1), Some(beta.as_str()))
    );
    let unassigned = agent.get("/v1/conversations?assignee=none").await.json();
    assert_eq!(unassigned["total"], 2);

    // Notes: sealed, listed, shown with the conversation, never in the clear in the database.
    let note_text = "customer is a VIP, handle with care 9f3a";
    let note = agent
        .send(
            "POST",
            &format!("/v1/conversations/{order}/notes"),
            &json!({"body": note_text}),
        )
        .await;
    assert_eq!(note.status, 201);
    assert_eq!(note.json()["author"], "agent-all");
    let notes = agent
        .get(&format!("/v1/conversations/{order}/notes"))
        .await
        .json();
    assert_eq!(notes["notes"][0]["body"], note_text);
    if sqlite {
        let bytes = [
            std::fs::read(daemon.data.join("inboxd.db")).unwrap_or_default(),
            std::fs::read(daemon.data.join("inboxd.db-wal")).unwrap_or_default(),
        ]
        .concat();
        let needle = note_text.as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "notes are sealed"
        );
    }

    // Read one conversation: decrypted messages, attachments with a safe download name, raw message.
    let attached = conversation_id(&agent, "Invoice attached").await;
    let view = agent
        .get(&format!("/v1/conversations/{attached}"))
        .await
        .json();
    let message = &view["messages"][0];
    assert_eq!(
        message["body"]["text"].as_str().map(str::trim),
        Some("See the invoice.")
    );
    let message_id = message["id"].as_str().expect("message id");
    let attachment_id = message["attachments"][0]["id"]
        .as_str()
        .expect("attachment id");
    let download = agent
        .get(&format!(
            "/v1/conversations/{attached}/messages/{message_id}/attachments/{attachment_id}"
        ))
        .await;
    assert_eq!(download.status, 200);
    assert_eq!(download.body, b"INVOICE BYTES");
    let disposition = download
        .headers
        .get("content-disposition")
        .cloned()
        .unwrap_or_default();
    assert!(
        disposition.starts_with("attachment; filename=\"evilx.pdf\""),
        "{disposition}"
    );
    assert!(!disposition.contains(".."), "{disposition}");
    assert_eq!(
        download
            .headers
            .get("x-content-type-options")
            .map(String::as_str),
        Some("nosniff")
    );
    assert_eq!(
        download.headers.get("content-type").map(String::as_str),
        Some("application/octet-stream")
    );
    let raw = agent
        .get(&format!(
            "/v1/conversations/{attached}/messages/{message_id}/raw"
        ))
        .await;
    assert_eq!(raw.status, 200);
    assert!(String::from_utf8_lossy(&raw.body).contains("Message-ID: <att@alpha>"));
    // A message id from another conversation is not found through this one.
    let elsewhere = agent
        .get(&format!(
            "/v1/conversations/{order}/messages/{message_id}/raw"
        ))
        .await;
    assert_eq!(elsewhere.status, 404);

    // Reply: committed (stored, queued event) before 202; beta has no SMTP settings: 409 naming the fix.
    let reply = agent
        .send(
            "POST",
            &format!("/v1/conversations/{order}/replies"),
            &json!({"body": "We are on it."}),
        )
        .await;
    assert_eq!(
        reply.status,
        202,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let reply_id = reply.json()["message_id"]
        .as_str()
        .expect("message id")
        .to_string();
    let view = agent
        .get(&format!("/v1/conversations/{order}"))
        .await
        .json();
    let stored = view["messages"]
        .as_array()
        .and_then(|messages| messages.iter().find(|m| m["id"] == reply_id.as_str()))
        .expect("the reply is in its conversation");
    assert_eq!(stored["direction"], "outbound");
    assert_eq!(stored["events"][0]["event"], "queued");
    assert_eq!(stored["events"][0]["recipient"], "alice@example.org");
    let no_smtp = agent
        .send(
            "POST",
            &format!("/v1/conversations/{beta}/replies"),
            &json!({"body": "hello"}),
        )
        .await;
    assert_eq!((no_smtp.status, no_smtp.code().as_str()), (409, "conflict"));
    assert!(String::from_utf8_lossy(&no_smtp.body).contains("smtp"));
    let empty = agent
        .send(
            "POST",
            &format!("/v1/conversations/{order}/replies"),
            &json!({"body": "  "}),
        )
        .await;
    assert_eq!(empty.status, 400);

    // Search: query errors are 400 invalid_query with the reason.
    let broken = agent.get("/v1/search?q=from:(alice").await;
    assert_eq!(
        (broken.status, broken.code().as_str()),
        (400, "invalid_query")
    );
}

async fn admin_work(daemon: &Daemon, root: &Path) {
    let admin = daemon.api.with(&daemon.admin);
    // Tokens: create shows the secret once; list never does.
    let list = admin.get("/v1/tokens").await;
    assert!(
        !String::from_utf8_lossy(&list.body).contains("inboxd_"),
        "no secrets in the list"
    );
    let names: Vec<String> = list.json()["tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();
    assert!(names.contains(&"local-admin".to_string()) && names.contains(&"agent-all".to_string()));
    let duplicate = admin
        .send(
            "POST",
            "/v1/tokens",
            &json!({"name": "agent-all", "role": "agent"}),
        )
        .await;
    assert_eq!(duplicate.status, 409);
    let bad_role = admin
        .send("POST", "/v1/tokens", &json!({"name": "x", "role": "root"}))
        .await;
    assert_eq!(bad_role.status, 400);
    let scoped_admin = admin
        .send(
            "POST",
            "/v1/tokens",
            &json!({"name": "x", "role": "admin", "mailboxes": ["alpha"]}),
        )
        .await;
    assert_eq!(scoped_admin.status, 400);
    let unknown_mailbox = admin
        .send(
            "POST",
            "/v1/tokens",
            &json!({"name": "x", "role": "agent", "mailboxes": ["nope"]}),
        )
        .await;
    assert_eq!(unknown_mailbox.status, 400);

    // Mailboxes: add, status, change, test, sync, remove.
    let gamma = maildir(
        root,
        "gamma",
        &[common::message(
            "g1@gamma",
            "Gamma hello",
            "gina@example.org",
            "gamma body",
        )],
    );
    let added = admin
        .send(
            "POST",
            "/v1/mailboxes",
            &json!({"name": "gamma", "kind": "maildir", "path": gamma, "address": "gamma@inboxd.test",
                    "smtp": {"host": "127.0.0.1", "port": 9, "insecure": true}}),
        )
        .await;
    assert_eq!(
        added.status,
        201,
        "{}",
        String::from_utf8_lossy(&added.body)
    );
    assert_eq!(added.json()["origin"], "admin");
    let again = admin
        .send(
            "POST",
            "/v1/mailboxes",
            &json!({"name": "gamma", "kind": "maildir", "path": gamma}),
        )
        .await;
    assert_eq!(again.status, 409);
    let config_one = admin
        .send(
            "PUT",
            "/v1/mailboxes/alpha",
            &json!({"kind": "maildir", "path": gamma}),
        )
        .await;
    assert_eq!(
        config_one.status, 409,
        "config-file mailboxes are changed in the file"
    );
    let relative = admin
        .send(
            "POST",
            "/v1/mailboxes",
            &json!({"name": "rel", "kind": "maildir", "path": "x/y"}),
        )
        .await;
    assert_eq!(relative.status, 400);
    let no_password = admin
        .send(
            "POST",
            "/v1/mailboxes",
            &json!({"name": "imapx", "kind": "imap", "host": "h", "username": "u"}),
        )
        .await;
    assert_eq!(no_password.status, 400);
    assert!(String::from_utf8_lossy(&no_password.body).contains("password"));
    let synced = admin
        .send("POST", "/v1/sync", &json!({"mailbox": "gamma"}))
        .await;
    assert_eq!(
        synced.status,
        200,
        "{}",
        String::from_utf8_lossy(&synced.body)
    );
    let reports = synced.json();
    assert!(reports["reports"][0]["error"].is_null(), "{reports}");
    let synced = common::wait_until(Duration::from_secs(20), || {
        let admin = admin.clone();
        async move { admin.get("/v1/mailboxes/gamma").await.json()["messages_stored"] == 1 }
    })
    .await;
    assert!(
        synced,
        "gamma is synced: {} {reports}",
        admin.get("/v1/mailboxes/gamma").await.json()
    );
    let gamma_conversation = conversation_id(&admin, "Gamma hello").await;
    let reply = admin
        .send(
            "POST",
            &format!("/v1/conversations/{gamma_conversation}/replies"),
            &json!({"body": "hi gina"}),
        )
        .await;
    assert_eq!(
        reply.status,
        202,
        "admin mailboxes send replies too: {}",
        String::from_utf8_lossy(&reply.body)
    );
    let tested = admin
        .send("POST", "/v1/mailboxes/gamma/test", &json!(null))
        .await
        .json();
    assert_eq!(tested["checks"][0]["ok"], true, "{tested}");
    assert_eq!(
        tested["ok"], false,
        "the smtp relay on port 9 is refused: {tested}"
    );
    let changed = admin
        .send(
            "PUT",
            "/v1/mailboxes/gamma",
            &json!({"kind": "maildir", "path": gamma, "enabled": false}),
        )
        .await;
    assert_eq!(changed.status, 200);
    assert_eq!(changed.json()["enabled"], false);
    let refused = admin
        .send("DELETE", "/v1/mailboxes/gamma", &json!(null))
        .await;
    assert_eq!(refused.status, 409);
    assert!(String::from_utf8_lossy(&refused.body).contains("delete_messages"));
    let removed = admin
        .send(
            "DELETE",
            "/v1/mailboxes/gamma?delete_messages=true",
            &json!(null),
        )
        .await;
    assert_eq!(
        removed.status,
        200,
        "{}",
        String::from_utf8_lossy(&removed.body)
    );
    assert_eq!(admin.get("/v1/mailboxes/gamma").await.status, 404);
    assert_eq!(
        admin
            .send("POST", "/v1/mailboxes/nosuch/test", &json!(null))
            .await
            .status,
        404
    );

    // The audit log names who did what; never content or addresses.
    let audit = admin.get("/v1/audit?limit=500").await;
    assert_eq!(audit.status, 200);
    let records = audit.json()["records"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let actions: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap_or_default().to_string(),
                r["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for expected in [
        ("token:local-admin", "token.create"),
        ("token:local-admin", "token.revoke"),
        ("token:local-admin", "mailbox.add"),
        ("token:local-admin", "mailbox.change"),
        ("token:local-admin", "mailbox.test"),
        ("token:local-admin", "mailbox.remove"),
        ("token:local-admin", "sync.run"),
        ("token:agent-all", "conversation.reply"),
        ("token:agent-all", "conversation.note"),
        ("token:agent-all", "conversation.state"),
    ] {
        assert!(
            actions
                .iter()
                .any(|(actor, action)| actor == expected.0 && action == expected.1),
            "{expected:?} not in {actions:?}"
        );
    }
    let text = String::from_utf8_lossy(&audit.body);
    for secret in ["@", "VIP", "We are on it"] {
        assert!(
            !text.contains(secret),
            "the audit log holds no content or address ({secret})"
        );
    }
    let over = admin.get("/v1/audit?limit=100000").await;
    assert_eq!(
        (over.status, over.code().as_str()),
        (400, "invalid_parameter")
    );
}

async fn hostile_input(daemon: &Daemon) {
    let address = daemon.api.address;
    let token = Some(daemon.admin.as_str());
    let json_type = Some("application/json");
    let huge = vec![b'a'; 3 * 1024 * 1024];
    let answer = http(address, "POST", "/v1/tokens", token, json_type, &huge).await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (413, "body_too_large")
    );
    let answer = http(
        address,
        "POST",
        "/v1/tokens",
        token,
        json_type,
        b"{\"name\": ",
    )
    .await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (400, "invalid_json")
    );
    let answer = http(
        address,
        "POST",
        "/v1/tokens",
        token,
        json_type,
        b"{\"name\":\"\xff\xfe\",\"role\":\"agent\"}",
    )
    .await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (400, "invalid_json")
    );
    let answer = http(
        address,
        "POST",
        "/v1/tokens",
        token,
        json_type,
        b"{\"name\":\"x\",\"role\":\"agent\",\"extra\":1}",
    )
    .await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (400, "invalid_body")
    );
    let answer = http(
        address,
        "POST",
        "/v1/tokens",
        token,
        Some("text/plain"),
        b"{}",
    )
    .await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (415, "unsupported_media_type")
    );
    let answer = http(
        address,
        "GET",
        "/v1/conversations/not-a-uuid",
        token,
        None,
        b"",
    )
    .await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (400, "invalid_path")
    );
    let answer = http(
        address,
        "GET",
        "/v1/conversations?limit=abc",
        token,
        None,
        b"",
    )
    .await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (400, "invalid_parameter")
    );
    let answer = http(
        address,
        "GET",
        "/v1/conversations?state=%FF",
        token,
        None,
        b"",
    )
    .await;
    assert_eq!(answer.status, 400);
    let answer = http(address, "GET", "/v1/../../etc/passwd", token, None, b"").await;
    assert!(
        answer.status == 404 || answer.status == 400,
        "{}",
        answer.status
    );
    let answer = http(address, "PATCH", "/v1/tokens", token, None, b"").await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (405, "method_not_allowed")
    );
    let answer = http(
        address,
        "GET",
        "/v1/search?q=%22unterminated",
        token,
        None,
        b"",
    )
    .await;
    assert!(
        answer.status == 200 || answer.code() == "invalid_query",
        "{}",
        answer.status
    );
    let deep = format!("/v1/search?q={}", "(".repeat(5000));
    let answer = http(address, "GET", &deep, token, None, b"").await;
    assert!(
        answer.status < 500,
        "deep nesting is refused cleanly: {}",
        answer.status
    );
    // Still healthy after all that.
    assert_eq!(
        http(address, "GET", "/healthz", None, None, b"")
            .await
            .status,
        200
    );
}

async fn public_endpoints(daemon: &Daemon) {
    let api = &daemon.api;
    let ready = api.get("/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["database"], "ok");
    assert_eq!(api.get("/healthz").await.status, 200);
    let document = api.get("/openapi.json").await.json();
    assert!(document["paths"]["/v1/conversations"]["get"].is_object());
    // Metrics need a token, and show the ingest, the queue and searches.
    assert_eq!(api.get("/metrics").await.status, 401);
    let metrics = api.with(&daemon.admin).get("/metrics").await;
    assert_eq!(
        metrics.headers.get("content-type").map(String::as_str),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
    };
    assert!(value("inboxd_messages_ingested_total ") >= 4.0, "{text}");
    assert!(
        value("inboxd_outbox_queued ") >= 1.0,
        "the queued replies: {text}"
    );
    assert!(
        value("inboxd_search_duration_seconds_count ") >= 3.0,
        "{text}"
    );
    assert!(
        text.contains("inboxd_mailbox_up{mailbox=\"alpha\"} 1"),
        "{text}"
    );
    assert!(text.contains("inboxd_purged_messages_total "), "{text}");
}
