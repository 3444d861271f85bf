//! Retention, legal hold, purge and data-subject requests through the running daemon: the API refuses
//! agents and bad input, the CLI goes through the API (audited as the daemon's local admin), and what is
//! purged or erased is gone from the store and from search.
mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::http::{Api, maildir};
use inboxd::store::entities::conversation;
use sea_orm::EntityTrait;
use sea_orm::sea_query::Expr;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_subject_requests_through_the_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = maildir(
        dir.path(),
        "help",
        &[
            common::message("d1@x", "Refund", "dora@example.org", "dorabody"),
            common::message("e1@x", "Login", "eve@example.org", "evebody"),
        ],
    );
    let data = dir.path().join("data");
    let config = dir.path().join("inboxd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n[[mailbox]]\nname = \"help\"\nkind = \"maildir\"\npath = \"{}\"\n",
            data.display(),
            source.display()
        ),
    )
    .expect("config");
    let mut daemon = common::inboxd(&config, &["serve"])
        .stderr(Stdio::null())
        .spawn()
        .expect("start inboxd");
    assert!(
        common::wait_until(Duration::from_secs(30), || async {
            data.join("api/address").exists() && common::count_messages(&data).await == 2
        })
        .await,
        "the daemon is up and has the mail"
    );
    let address: SocketAddr = std::fs::read_to_string(data.join("api/address"))
        .expect("address")
        .lines()
        .next()
        .unwrap_or_default()
        .parse()
        .expect("address");
    let admin = Api {
        address,
        token: Some(
            std::fs::read_to_string(data.join("api/local-admin.token"))
                .expect("token")
                .trim()
                .to_string(),
        ),
    };
    let created = common::cli_json(
        &config,
        &["token", "create", "agent1", "--role", "agent", "--json"],
    );
    let agent = admin.with(created["secret"].as_str().expect("secret"));
    let nobody = Api {
        address,
        token: None,
    };

    // Agents may not; nobody may not; bad input is a clean 4xx.
    for (method, path, body) in [
        ("PUT", "/v1/mailboxes/help/retention", json!({ "days": 3 })),
        ("POST", "/v1/purge", json!(null)),
        (
            "POST",
            "/v1/subjects/erase",
            json!({ "address": "dora@example.org" }),
        ),
        (
            "POST",
            "/v1/subjects/export",
            json!({ "address": "dora@example.org" }),
        ),
        ("PUT", "/v1/mailboxes/help/hold", json!({ "reason": "x" })),
    ] {
        let answer = agent.send(method, path, &body).await;
        assert_eq!(answer.status, 403, "agent {method} {path}");
        assert_eq!(nobody.send(method, path, &body).await.status, 401);
    }
    assert_eq!(agent.get("/v1/holds").await.status, 403);
    let bad = admin
        .send("POST", "/v1/subjects/erase", &json!({ "address": "nope" }))
        .await;
    assert_eq!((bad.status, bad.code().as_str()), (400, "invalid_request"));
    let zero = admin
        .send("PUT", "/v1/mailboxes/help/retention", &json!({ "days": 0 }))
        .await;
    assert_eq!(zero.status, 400);
    let unknown = admin
        .send(
            "PUT",
            "/v1/mailboxes/nosuch/retention",
            &json!({ "days": 3 }),
        )
        .await;
    assert_eq!(unknown.status, 404);
    let empty = admin
        .send("PUT", "/v1/mailboxes/help/hold", &json!({ "reason": " " }))
        .await;
    assert_eq!(empty.status, 400);
    let extra = admin
        .send(
            "PUT",
            "/v1/mailboxes/help/retention",
            &json!({ "days": 3, "x": 1 }),
        )
        .await;
    assert_eq!(extra.status, 400, "unknown fields are refused");

    // The CLI through the daemon.
    common::cli_ok(&config, &["retention", "set", "help", "--days", "7"]);
    assert_eq!(
        common::cli_json(&config, &["retention", "list", "--json"])[0]["retention_days"],
        7
    );
    let dry = common::cli_json(&config, &["purge", "--dry-run", "--json"]);
    assert_eq!(
        dry["mailboxes"][0]["conversations"], 0,
        "nothing is old yet: {dry}"
    );
    {
        let store = inboxd::store::Store::connect(
            &format!("sqlite://{}", data.join("inboxd.db").display()),
            &data.join("blobs"),
        )
        .await
        .expect("connect");
        conversation::Entity::update_many()
            .col_expr(
                conversation::Column::LastActivityAt,
                Expr::value(inboxd::clock::now() - chrono::Duration::days(30)),
            )
            .exec(&store.db)
            .await
            .expect("age");
        store.db.close().await.expect("close");
    }
    let dry = common::cli_json(&config, &["purge", "--dry-run", "--json"]);
    assert_eq!(dry["mailboxes"][0]["conversations"], 2, "{dry}");
    common::cli_ok(
        &config,
        &["hold", "set", "--mailbox", "help", "--reason", "audit 2026"],
    );
    let holds = common::cli_json(&config, &["hold", "list", "--json"]);
    assert_eq!(holds[0]["reason"], "audit 2026", "{holds}");
    let held = common::cli_json(&config, &["purge", "--json"]);
    assert_eq!(held["held_mailboxes"][0], "help", "{held}");
    common::cli_ok(&config, &["hold", "release", "--mailbox", "help"]);

    let out = dir.path().join("dora.tar");
    let exported = common::cli_json(
        &config,
        &[
            "subject",
            "export",
            "dora@example.org",
            "--out",
            out.to_str().expect("utf8"),
            "--json",
        ],
    );
    assert_eq!(
        (
            exported["messages"].as_u64(),
            exported["conversations"].as_u64()
        ),
        (Some(1), Some(1)),
        "{exported}"
    );
    let erased = common::cli_json(&config, &["subject", "erase", "dora@example.org", "--json"]);
    assert_eq!(erased["messages"], 1, "{erased}");
    let purged = common::cli_json(&config, &["purge", "--json"]);
    assert_eq!(purged["mailboxes"][0]["conversations"], 1, "{purged}");
    assert_eq!(common::count_messages(&data).await, 0);
    for word in ["dorabody", "evebody"] {
        let found = admin.get(&format!("/v1/search?q={word}")).await.json();
        assert_eq!(
            found["total"], 0,
            "{word} is not searchable any more: {found}"
        );
    }
    let audit = common::cli_json(&config, &["audit", "--json", "--limit", "100"]);
    let by_daemon: Vec<&str> = audit
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["actor"] == "token:local-admin")
        .filter_map(|r| r["action"].as_str())
        .collect();
    for action in [
        "retention.set",
        "hold.set",
        "hold.release",
        "subject.export",
        "subject.erase",
        "retention.purge",
    ] {
        assert!(
            by_daemon.contains(&action),
            "{action} audited through the API: {by_daemon:?}"
        );
    }
    common::signal(&daemon, "TERM");
    assert!(common::wait_exit(&mut daemon, Duration::from_secs(30)).is_some_and(|s| s.success()));
}
