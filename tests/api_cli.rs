//! The CLI against the real `inboxd` binary while the daemon runs: every command that reads or changes
//! live data goes through the API with the daemon's local admin credential (the audit log shows it),
//! the credential is private and rotated at each start, and the same commands work offline.
mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::http::{Api, maildir};
use serde_json::Value;

fn cli(config: &Path, args: &[&str]) -> std::process::Output {
    common::inboxd(config, args).output().expect("run the cli")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_works_through_the_running_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alpha = maildir(
        dir.path(),
        "alpha",
        &[common::message(
            "c1@alpha",
            "Refund for order 99",
            "erin@example.org",
            "please refund the wombat",
        )],
    );
    let extra_dir = maildir(
        dir.path(),
        "extra",
        &[common::message(
            "e1@extra",
            "Extra mailbox mail",
            "frank@example.org",
            "platypus",
        )],
    );
    let data = dir.path().join("data");
    let config = dir.path().join("inboxd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n[[mailbox]]\nname = \"alpha\"\nkind = \"maildir\"\npath = \"{}\"\naddress = \"support@inboxd.test\"\n[mailbox.smtp]\nhost = \"127.0.0.1\"\nport = 9\ninsecure = true\n",
            data.display(),
            alpha.display()
        ),
    )
    .expect("config");
    let mut daemon = common::inboxd(&config, &["serve"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start inboxd");
    let token_file = data.join("api/local-admin.token");
    assert!(
        common::wait_until(Duration::from_secs(30), || async {
            data.join("api/address").exists()
        })
        .await,
        "the daemon publishes its api"
    );
    let mode = std::fs::metadata(&token_file)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "only the daemon's user can read the credential"
    );
    let first_secret = std::fs::read_to_string(&token_file).expect("secret");

    // mailbox add-maildir / list / status / test through the API.
    let added = common::cli_json(
        &config,
        &[
            "mailbox",
            "add-maildir",
            "extra",
            extra_dir.to_str().expect("utf8"),
            "--json",
        ],
    );
    assert_eq!(added["origin"], "admin");
    let listed = common::cli_json(&config, &["mailbox", "list", "--json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    let table = common::cli_ok(&config, &["mailbox", "list"]);
    assert!(
        table.contains("extra") && table.contains("mailbox"),
        "{table}"
    );
    let tested = common::cli_json(&config, &["mailbox", "test", "extra", "--json"]);
    assert_eq!(tested["ok"], true, "{tested}");
    let failing = cli(&config, &["mailbox", "test", "alpha"]);
    assert_eq!(
        failing.status.code(),
        Some(1),
        "the smtp relay of alpha is refused"
    );
    let unknown = cli(&config, &["mailbox", "status", "nosuch"]);
    assert_eq!(
        unknown.status.code(),
        Some(3),
        "not found has its own exit code"
    );

    // sync --once through the daemon, then search / conversations / show / reply.
    let reports = common::cli_json(&config, &["sync", "--once", "--json"]);
    assert!(
        reports
            .as_array()
            .is_some_and(|r| r.iter().all(|r| r["error"].is_null())),
        "{reports}"
    );
    assert!(
        common::wait_until(Duration::from_secs(20), || {
            let config = config.clone();
            async move {
                let output = cli(&config, &["search", "--json", "platypus"]);
                output.status.success()
                    && serde_json::from_slice::<Value>(&output.stdout)
                        .is_ok_and(|v| v["total"] == 1)
            }
        })
        .await,
        "search goes through the daemon's index"
    );
    let bad_query = cli(&config, &["search", "from:(x"]);
    assert_eq!(bad_query.status.code(), Some(2));
    let conversations =
        common::cli_json(&config, &["conversations", "--json", "--limit", "100000"]);
    let refund = conversations
        .as_array()
        .and_then(|items| items.iter().find(|i| i["subject"] == "Refund for order 99"))
        .and_then(|i| i["id"].as_str())
        .expect("the refund conversation")
        .to_string();
    let filtered = common::cli_json(&config, &["conversations", "--json", "--mailbox", "extra"]);
    assert_eq!(filtered.as_array().map(Vec::len), Some(1), "{filtered}");
    let shown = common::cli_json(&config, &["show", &refund, "--json"]);
    assert_eq!(
        shown["mailbox"], "alpha",
        "show came through the API: {shown}"
    );
    let body = dir.path().join("reply.txt");
    std::fs::write(&body, "Refund issued.").expect("body");
    let queued = common::cli_json(
        &config,
        &[
            "reply",
            &refund,
            "--body-file",
            body.to_str().expect("utf8"),
            "--json",
        ],
    );
    assert_eq!(queued["recipients"], 1, "{queued}");
    // state / assign / note, then the conversation shows them.
    common::cli_ok(&config, &["state", &refund, "pending"]);
    common::cli_ok(&config, &["assign", &refund, "dana"]);
    let note = dir.path().join("note.txt");
    std::fs::write(&note, "called the customer").expect("note");
    common::cli_ok(
        &config,
        &["note", &refund, "--body-file", note.to_str().expect("utf8")],
    );
    let shown = common::cli_json(&config, &["show", &refund, "--json"]);
    assert_eq!(
        (shown["state"].as_str(), shown["assignee"].as_str()),
        (Some("pending"), Some("dana")),
        "{shown}"
    );
    assert_eq!(shown["notes"][0]["body"], "called the customer");
    let bad_state = cli(&config, &["state", &refund, "done"]);
    assert_eq!(
        bad_state.status.code(),
        Some(2),
        "invalid input has its own exit code"
    );
    common::cli_ok(&config, &["assign", &refund, "--none"]);
    let pending = common::cli_json(
        &config,
        &[
            "conversations",
            "--json",
            "--state",
            "pending",
            "--assignee",
            "none",
        ],
    );
    assert!(
        pending
            .as_array()
            .is_some_and(|items| items.iter().any(|i| i["id"] == refund.as_str())),
        "{pending}"
    );
    let missing = cli(&config, &["show", &uuid::Uuid::now_v7().to_string()]);
    assert_eq!(missing.status.code(), Some(3));

    // token create / list / revoke.
    let created = common::cli_json(
        &config,
        &[
            "token",
            "create",
            "bot",
            "--role",
            "agent",
            "--mailbox",
            "alpha",
            "--json",
        ],
    );
    let secret = created["secret"]
        .as_str()
        .expect("secret shown once")
        .to_string();
    let tokens = common::cli_json(&config, &["token", "list", "--json"]);
    assert!(
        tokens
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "bot"))
    );
    assert!(
        !tokens.to_string().contains(&secret),
        "the list never shows secrets"
    );
    let address: SocketAddr = std::fs::read_to_string(data.join("api/address"))
        .expect("address")
        .lines()
        .next()
        .unwrap_or_default()
        .parse()
        .expect("address");
    let bot = Api {
        address,
        token: Some(secret),
    };
    assert_eq!(bot.get("/v1/whoami").await.status, 200);
    common::cli_ok(&config, &["token", "revoke", "bot"]);
    assert_eq!(bot.get("/v1/whoami").await.status, 401, "revoked at once");
    let twice = cli(&config, &["token", "revoke", "bot"]);
    assert_eq!(twice.status.code(), Some(3));
    let duplicate = cli(
        &config,
        &["token", "create", "local-admin", "--role", "admin"],
    );
    assert_eq!(duplicate.status.code(), Some(4));

    // mailbox remove: refused with stored mail unless asked.
    let refused = cli(&config, &["mailbox", "remove", "extra"]);
    assert_eq!(refused.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--delete-messages"));
    common::cli_ok(
        &config,
        &["mailbox", "remove", "extra", "--delete-messages"],
    );

    // Everything above went through the API: the audit log names the daemon's local admin token.
    let admin = bot.with(first_secret.trim());
    let audit = admin.get("/v1/audit?limit=500").await.json();
    let actions: Vec<&str> = audit["records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["actor"] == "token:local-admin")
        .filter_map(|r| r["action"].as_str())
        .collect();
    for action in [
        "mailbox.add",
        "mailbox.test",
        "mailbox.remove",
        "sync.run",
        "token.create",
        "token.revoke",
        "conversation.reply",
    ] {
        assert!(actions.contains(&action), "{action} not in {actions:?}");
    }

    // Restart: the credential is rotated; the old one stops working.
    common::signal(&daemon, "TERM");
    let status = common::wait_exit(&mut daemon, Duration::from_secs(20)).expect("exits");
    assert!(status.success());
    let mut log = String::new();
    if let Some(mut stderr) = daemon.stderr.take() {
        std::io::Read::read_to_string(&mut stderr, &mut log).expect("log");
    }
    assert!(
        !log.contains(first_secret.trim()),
        "the credential is never logged"
    );
    assert!(log.contains("api listening"), "{log}");
    assert!(!token_file.exists(), "removed at shutdown");

    // Offline, the same commands work on the database directly (state changes need the daemon).
    let offline_state = cli(&config, &["state", &refund, "closed"]);
    assert_eq!(offline_state.status.code(), Some(69));
    let offline = common::cli_json(&config, &["conversations", "--json"]);
    assert!(offline.as_array().is_some_and(|items| !items.is_empty()));
    let offline_tokens = common::cli_json(&config, &["token", "list", "--json"]);
    assert!(
        offline_tokens
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "bot"))
    );

    let mut daemon = common::inboxd(&config, &["serve"])
        .stderr(Stdio::null())
        .spawn()
        .expect("restart inboxd");
    assert!(
        common::wait_until(Duration::from_secs(30), || async {
            data.join("api/address").exists()
        })
        .await
    );
    let second_secret = std::fs::read_to_string(&token_file).expect("secret");
    assert_ne!(first_secret, second_secret, "rotated at each start");
    let address: SocketAddr = std::fs::read_to_string(data.join("api/address"))
        .expect("address")
        .lines()
        .next()
        .unwrap_or_default()
        .parse()
        .expect("address");
    let old = Api {
        address,
        token: Some(first_secret.trim().to_string()),
    };
    assert_eq!(old.get("/v1/whoami").await.status, 401);
    assert_eq!(
        old.with(second_secret.trim())
            .get("/v1/whoami")
            .await
            .status,
        200
    );
    common::signal(&daemon, "TERM");
    assert!(common::wait_exit(&mut daemon, Duration::from_secs(20)).is_some_and(|s| s.success()));
}
