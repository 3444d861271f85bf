//! Retention with the real binary: the daemon's purge survives kill -9 at random points (restarted, it
//! finishes the job and loses nothing else, while new mail keeps arriving), and the CLI commands of
//! retention, hold, purge, data-subject requests and the audit log.
mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use inboxd::store::Store;
use inboxd::store::entities::{conversation, message, message_blob};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect};

fn new_maildir(dir: &Path) -> PathBuf {
    let maildir = dir.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    maildir
}

fn drop_in(maildir: &Path, name: &str, raw: &[u8]) {
    // Write then rename, as an MDA does, so the daemon never reads half a file.
    let temporary = maildir.join("tmp").join(name);
    std::fs::write(&temporary, raw).expect("write");
    std::fs::rename(&temporary, maildir.join("new").join(name)).expect("deliver");
}

fn write_config(dir: &Path, maildir: &Path, batch: u32) -> PathBuf {
    let path = dir.join("inboxd.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n[ingest]\npoll_interval_secs = 1\n[retention]\npurge_interval_secs = 3600\nbatch_size = {batch}\n[[mailbox]]\nname = \"help\"\nkind = \"maildir\"\npath = \"{}\"\n",
            dir.join("data").display(),
            maildir.display()
        ),
    )
    .expect("config");
    path
}

async fn store(dir: &Path) -> Store {
    let data = dir.join("data");
    Store::connect(
        &format!("sqlite://{}", data.join("inboxd.db").display()),
        &data.join("blobs"),
    )
    .await
    .expect("connect")
}

async fn conversations(dir: &Path) -> u64 {
    let store = store(dir).await;
    let count = conversation::Entity::find()
        .count(&store.db)
        .await
        .unwrap_or(u64::MAX);
    let _ = store.db.close().await;
    count
}

fn serve(config: &Path) -> Child {
    common::serve_logged(config)
}

fn daemon_log(config: &Path) -> String {
    common::daemon_log_tail(config, 40)
}

fn blob_files(dir: &Path) -> usize {
    let mut count = 0;
    for bucket in std::fs::read_dir(dir.join("data/blobs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        count += std::fs::read_dir(bucket.path())
            .into_iter()
            .flatten()
            .count();
    }
    count
}

/// Subject ids of the messages the store holds, read back through the CLI (decrypting every one).
fn stored_subjects(config: &Path) -> Vec<String> {
    let list = common::cli_json(config, &["conversations", "--json", "--limit", "100000"]);
    list.as_array()
        .expect("array")
        .iter()
        .map(|row| row["subject"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_killed_at_random_points_finishes_and_loses_nothing_else() {
    const EXPIRED: usize = 1500;
    const KEPT: usize = 5;
    let dir = tempfile::tempdir().expect("tempdir");
    let maildir = new_maildir(dir.path());
    for n in 0..EXPIRED {
        drop_in(
            &maildir,
            &format!("{n}.old.host"),
            &common::message(
                &format!("old{n}@x"),
                &format!("expired {n}"),
                "ann@example.org",
                "oldword",
            ),
        );
    }
    for n in 0..KEPT {
        drop_in(
            &maildir,
            &format!("{n}.keep.host"),
            &common::message(
                &format!("keep{n}@x"),
                &format!("held {n}"),
                "kim@example.org",
                "keepword",
            ),
        );
    }
    let config = write_config(dir.path(), &maildir, 10);
    let synced = common::cli_json(&config, &["sync", "--once", "--json"]);
    assert_eq!(synced[0]["stored"], (EXPIRED + KEPT) as u64, "{synced}");

    // Time passes: everything is 90 days old; the kept ones are put on legal hold.
    {
        let store = store(dir.path()).await;
        conversation::Entity::update_many()
            .col_expr(
                conversation::Column::LastActivityAt,
                Expr::value(inboxd::clock::now() - chrono::Duration::days(90)),
            )
            .exec(&store.db)
            .await
            .expect("age");
        store.close().await.expect("close");
    }
    let listed = common::cli_json(&config, &["conversations", "--json", "--limit", "100000"]);
    for row in listed.as_array().expect("array") {
        if row["subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("held "))
        {
            let id = row["id"].as_str().expect("id");
            common::cli_ok(
                &config,
                &["hold", "set", "--conversation", id, "--reason", "case 7"],
            );
        }
    }
    common::cli_ok(&config, &["retention", "set", "help", "--days", "30"]);

    // Kill -9 the purging daemon at varied points, delivering new mail meanwhile.
    let mut fresh = 0usize;
    let mut kills = 0;
    let mut last = conversations(dir.path()).await;
    for round in 0..6u64 {
        let mut daemon = serve(&config);
        for _ in 0..3 {
            drop_in(
                &maildir,
                &format!("{fresh}.fresh.host"),
                &common::message(
                    &format!("fresh{fresh}@x"),
                    &format!("fresh {fresh}"),
                    "new@example.org",
                    "freshword",
                ),
            );
            fresh += 1;
        }
        // Wait for some progress, then kill at a point that varies with the round.
        let target = last.saturating_sub(40 + round * 37);
        common::wait_until(Duration::from_secs(60), || async {
            conversations(dir.path()).await <= target
        })
        .await;
        tokio::time::sleep(Duration::from_millis(round * 13)).await;
        common::signal(&daemon, "KILL");
        let _ = daemon.wait();
        kills += 1;
        let now = conversations(dir.path()).await;
        assert!(
            now < last || now <= (KEPT + fresh) as u64,
            "round {round}: purge makes progress ({last} -> {now}); daemon log:\n{}",
            daemon_log(&config)
        );
        last = now;
        if now <= (KEPT + fresh) as u64 {
            break;
        }
    }
    assert!(kills >= 2, "the purge was interrupted at least twice");

    // A clean run finishes the job.
    let mut daemon = serve(&config);
    let want = (KEPT + fresh) as u64;
    let finished = common::wait_until(Duration::from_secs(120), || async {
        conversations(dir.path()).await == want
            && common::count_messages(&dir.path().join("data")).await == want
    })
    .await;
    // The index catches up with the fresh mail (searches run beside the daemon).
    let hits =
        |query: &str| common::cli_json(&config, &["search", "--json", query])["total"].as_u64();
    let indexed = common::wait_until(Duration::from_secs(60), || async {
        hits("freshword") == Some(fresh as u64) && hits("keepword") == Some(KEPT as u64)
    })
    .await;
    common::signal(&daemon, "TERM");
    assert!(common::wait_exit(&mut daemon, Duration::from_secs(60)).is_some_and(|s| s.success()));
    assert!(
        finished,
        "purge finished: {} conversations left, want {want}",
        conversations(dir.path()).await
    );

    // Nothing else lost, nothing duplicated, everything decrypts.
    let mut subjects = stored_subjects(&config);
    subjects.sort();
    let mut expected: Vec<String> = (0..KEPT)
        .map(|n| format!("held {n}"))
        .chain((0..fresh).map(|n| format!("fresh {n}")))
        .collect();
    expected.sort();
    assert_eq!(subjects, expected);

    // One raw copy per stored message (a blob file, or a `message_blobs` row for a small one), and
    // no leftovers of the purged ones in either place.
    let store = store(dir.path()).await;
    let with_file = message::Entity::find()
        .filter(message::Column::BlobPath.is_not_null())
        .count(&store.db)
        .await
        .expect("count");
    let inline = message_blob::Entity::find()
        .count(&store.db)
        .await
        .expect("count");
    assert_eq!(
        (blob_files(dir.path()) as u64, with_file + inline),
        (with_file, want),
        "one raw copy per stored message, no leftovers"
    );

    // The index agrees with the store.
    let stored: HashSet<uuid::Uuid> = message::Entity::find()
        .select_only()
        .column(message::Column::Id)
        .into_tuple::<uuid::Uuid>()
        .all(&store.db)
        .await
        .expect("ids")
        .into_iter()
        .collect();
    store.close().await.expect("close");
    let key = inboxd::crypto::load_key_file(&dir.path().join("data/master.key"))
        .expect("key")
        .key;
    let (index, _) =
        inboxd::search::indexer::open_index(&dir.path().join("data/index"), &key, 64 << 20)
            .expect("index");
    assert_eq!(
        index.indexed_message_ids().expect("indexed"),
        stored,
        "index == store"
    );
    drop(index);
    assert!(indexed, "the index caught up with the fresh mail");
    assert_eq!(hits("oldword"), Some(0));
    assert_eq!(hits("keepword"), Some(KEPT as u64));
    assert_eq!(hits("freshword"), Some(fresh as u64));
    let audit = common::cli_json(&config, &["audit", "--json", "--limit", "1000"]);
    let purged: u64 = audit
        .as_array()
        .expect("array")
        .iter()
        .filter(|row| row["action"] == "retention.purge")
        .filter_map(|row| row["details"]["conversations"].as_u64())
        .sum();
    assert_eq!(
        purged, EXPIRED as u64,
        "audit records account for every purged conversation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_hold_purge_and_subject_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let maildir = new_maildir(dir.path());
    drop_in(
        &maildir,
        "1.a.host",
        &common::message("a@x", "Refund", "dora@example.org", "dorabody"),
    );
    drop_in(
        &maildir,
        "2.b.host",
        &common::message("b@x", "Login", "eve@example.org", "evebody"),
    );
    let config = write_config(dir.path(), &maildir, 100);
    common::cli_ok(&config, &["sync", "--once"]);

    let listed = common::cli_json(&config, &["retention", "list", "--json"]);
    assert_eq!(listed[0]["retention_days"], serde_json::Value::Null);
    common::cli_ok(&config, &["retention", "set", "help", "--days", "7"]);
    assert_eq!(
        common::cli_json(&config, &["retention", "list", "--json"])[0]["retention_days"],
        7
    );
    let unknown = common::inboxd(&config, &["retention", "set", "nope", "--days", "7"])
        .output()
        .expect("run");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no such mailbox nope"));

    // Nothing is old yet: the dry run lists nothing.
    let dry = common::cli_json(&config, &["purge", "--dry-run", "--json"]);
    assert_eq!(dry["mailboxes"][0]["conversations"], 0, "{dry}");
    {
        let store = store(dir.path()).await;
        conversation::Entity::update_many()
            .col_expr(
                conversation::Column::LastActivityAt,
                Expr::value(inboxd::clock::now() - chrono::Duration::days(8)),
            )
            .exec(&store.db)
            .await
            .expect("age");
        store.close().await.expect("close");
    }
    let dry = common::cli_json(&config, &["purge", "--dry-run", "--json"]);
    assert_eq!(dry["mailboxes"][0]["conversations"], 2, "{dry}");
    let subjects: Vec<&str> = dry["mailboxes"][0]["expired"]
        .as_array()
        .expect("expired list")
        .iter()
        .filter_map(|row| row["subject"].as_str())
        .collect();
    assert!(subjects.contains(&"Refund") && subjects.contains(&"Login"));
    assert_eq!(
        conversations(dir.path()).await,
        2,
        "a dry run changes nothing"
    );

    // Hold the mailbox: a purge keeps everything.
    common::cli_ok(
        &config,
        &["hold", "set", "--mailbox", "help", "--reason", "tax audit"],
    );
    let holds = common::cli_json(&config, &["hold", "list", "--json"]);
    assert_eq!(holds[0]["reason"], "tax audit");
    let held = common::cli_json(&config, &["purge", "--json"]);
    assert_eq!(held["held_mailboxes"][0], "help");
    assert_eq!(conversations(dir.path()).await, 2);
    common::cli_ok(&config, &["hold", "release", "--mailbox", "help"]);

    // A subject export, then erasure, then the purge takes the rest.
    let out = dir.path().join("dora.tar");
    let exported = common::cli_json(
        &config,
        &[
            "subject",
            "export",
            "dora@example.org",
            "--out",
            out.to_str().expect("utf-8"),
            "--json",
        ],
    );
    assert_eq!(exported["messages"], 1);
    assert!(out.exists());
    let again = common::inboxd(
        &config,
        &[
            "subject",
            "export",
            "dora@example.org",
            "--out",
            out.to_str().expect("utf-8"),
        ],
    )
    .output()
    .expect("run");
    assert!(!again.status.success(), "an export never overwrites a file");
    let bad = common::inboxd(&config, &["subject", "erase", "not-an-address"])
        .output()
        .expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an email address"));
    let erased = common::cli_json(&config, &["subject", "erase", "dora@example.org", "--json"]);
    assert_eq!(erased["messages"], 1);
    assert_eq!(conversations(dir.path()).await, 1);
    let purged = common::cli_json(&config, &["purge", "--json"]);
    assert_eq!(purged["mailboxes"][0]["conversations"], 1, "{purged}");
    assert_eq!(conversations(dir.path()).await, 0);

    // While the daemon runs, purge goes through its API, and offline-only commands refuse clearly.
    let mut daemon = serve(&config);
    assert!(
        common::wait_until(Duration::from_secs(30), || async {
            dir.path().join("data/api/address").exists()
        })
        .await
    );
    let through = common::inboxd(&config, &["purge", "--json"])
        .output()
        .expect("run");
    let busy = common::inboxd(&config, &["reindex"]).output().expect("run");
    common::signal(&daemon, "TERM");
    let _ = common::wait_exit(&mut daemon, Duration::from_secs(30));
    assert!(
        through.status.success(),
        "{}",
        String::from_utf8_lossy(&through.stderr)
    );
    assert!(!busy.status.success());
    let message = String::from_utf8_lossy(&busy.stderr).to_lowercase();
    assert!(
        message.contains("in use by another inboxd process"),
        "{message}"
    );

    let audit = common::cli_json(&config, &["audit", "--json"]);
    let actions: Vec<&str> = audit
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|row| row["action"].as_str())
        .collect();
    for action in [
        "retention.set",
        "hold.set",
        "hold.release",
        "subject.export",
        "subject.erase",
        "retention.purge",
    ] {
        assert!(actions.contains(&action), "audit has {action}: {actions:?}");
    }
    let text = audit.to_string();
    assert!(
        !text.contains("dora") && !text.contains("tax audit"),
        "no addresses or reasons in the audit log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_reasons_survive_key_rotation_and_offline_commands_speak_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let maildir = new_maildir(dir.path());
    drop_in(
        &maildir,
        "1.a.host",
        &common::message("a@x", "Refund", "dora@example.org", "dorabody"),
    );
    let config = write_config(dir.path(), &maildir, 100);
    common::cli_ok(&config, &["sync", "--once"]);
    assert_eq!(
        common::cli_json(&config, &["migrate", "--json"])["schema"],
        "up to date"
    );
    assert_eq!(
        common::cli_json(&config, &["reindex", "--json"])["indexed"],
        1
    );
    common::cli_ok(
        &config,
        &["hold", "set", "--mailbox", "help", "--reason", "case 42"],
    );
    let new_key = dir.path().join("new.key");
    let generated = common::cli_json(
        &config,
        &[
            "key",
            "generate",
            "--out",
            new_key.to_str().expect("utf8"),
            "--json",
        ],
    );
    assert_eq!(generated["mode"], "0600");
    let rotated = common::cli_json(
        &config,
        &[
            "rotate-key",
            "--new-key-file",
            new_key.to_str().expect("utf8"),
            "--json",
        ],
    );
    assert_eq!(rotated["resealed_hold_reasons"], 1, "{rotated}");
    assert_eq!(rotated["rewrapped_data_keys"], 1, "{rotated}");
    // The config now points at the new key: the reason still opens.
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        format!("key_file = \"{}\"\n{text}", new_key.display()),
    )
    .expect("config");
    let holds = common::cli_json(&config, &["hold", "list", "--json"]);
    assert_eq!(holds[0]["reason"], "case 42", "{holds}");
}
