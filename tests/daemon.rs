//! The real `inboxd` binary: starts on the example Maildir with a new key, stops cleanly on SIGTERM,
//! refuses a second instance and bad config, survives kill -9 in the middle of a sync, and never logs
//! mail content.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use inboxd::store::Store;
use inboxd::store::entities::message;
use sea_orm::{EntityTrait, PaginatorTrait};

fn example_config(dir: &Path) -> std::path::PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/maildir");
    let path = dir.join("inboxd.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{}\"\n[[mailbox]]\nname = \"example\"\nkind = \"maildir\"\npath = \"{}\"\n",
            dir.join("data").display(),
            example.display()
        ),
    )
    .expect("config");
    path
}

#[tokio::test]
async fn serve_ingests_the_example_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = example_config(dir.path());
    let data = dir.path().join("data");
    let mut daemon = common::inboxd(&config, &["serve"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start inboxd");
    let ingested = common::wait_until(Duration::from_secs(30), || async {
        common::count_messages(&data).await >= 10
    })
    .await;
    assert!(ingested, "the example mailbox is ingested");
    // The daemon re-executed itself with its malloc settings, keeping the PID it was started with
    // (unless this environment brings its own GLIBC_TUNABLES, which it then keeps).
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        let environ =
            std::fs::read(format!("/proc/{}/environ", daemon.id())).expect("daemon environment");
        let expected = format!("GLIBC_TUNABLES={}", inboxd::service::malloc::TUNABLES);
        assert!(
            environ
                .split(|byte| *byte == 0)
                .any(|entry| entry == expected.as_bytes()),
            "the daemon's environment has {expected}"
        );
    }
    let key = std::fs::metadata(data.join("master.key")).expect("a key was generated");
    assert_eq!(
        key.permissions().mode() & 0o777,
        0o600,
        "the new key is private"
    );

    // A second instance on the same data directory is refused with a clear message.
    let second = common::inboxd(&config, &["serve"])
        .output()
        .expect("second");
    assert!(!second.status.success());
    let message = String::from_utf8_lossy(&second.stderr);
    assert!(
        message.contains("in use by another inboxd process"),
        "{message}"
    );

    let started = Instant::now();
    common::signal(&daemon, "TERM");
    let status =
        common::wait_exit(&mut daemon, Duration::from_secs(10)).expect("exits within 10 s");
    assert!(status.success(), "exit status {status:?}");
    eprintln!("stopped {:?} after SIGTERM", started.elapsed());
    let mut log = String::new();
    if let Some(mut stderr) = daemon.stderr.take() {
        std::io::Read::read_to_string(&mut stderr, &mut log).expect("log");
    }
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains("\u{1b}["), "no colours when not a terminal");
    // The example holds threads, an HTML-only mail and a bounce: all stored, none twice on restart.
    let stored = common::count_messages(&data).await;
    let rerun = common::inboxd(&config, &["sync", "--once", "--json"])
        .output()
        .expect("sync");
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&rerun.stdout).expect("json");
    assert_eq!(report[0]["stored"], 0, "{report}");
    assert_eq!(common::count_messages(&data).await, stored);
}

#[test]
fn bad_config_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "data_dir = \"/tmp/x\"\n[ingest]\nbatch_sise = 10\n").expect("write");
    let output = common::inboxd(&path, &["serve"]).output().expect("run");
    assert_eq!(output.status.code(), Some(78));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("bad.toml") && message.contains("batch_sise"),
        "{message}"
    );

    std::fs::write(
        &path,
        format!(
            "data_dir = \"{}\"\ndatabase = \"postgres://nobody@127.0.0.1:9/none\"\n",
            dir.path().display()
        ),
    )
    .expect("write");
    let output = common::inboxd(&path, &["migrate"]).output().expect("run");
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("`database`") && message.contains("cannot reach"),
        "{message}"
    );

    std::fs::write(&path, "data_dir = \"/proc/inboxd-not-writable\"\n").expect("write");
    let output = common::inboxd(&path, &["migrate"]).output().expect("run");
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && message.contains("`data_dir`"),
        "{message}"
    );
}

#[test]
fn inspect_reports_and_never_fails_on_bad_mail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bounce = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bounces/sisimai/lhost-postfix-03.eml");
    if bounce.exists() {
        let output = Command::new(common::binary())
            .args(["inspect", "--json"])
            .arg(&bounce)
            .output()
            .expect("run");
        assert!(output.status.success());
        let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
        assert!(
            value["delivery_report"]["recipients"]
                .as_array()
                .is_some_and(|r| !r.is_empty()),
            "{value}"
        );
    }
    let garbage = dir.path().join("garbage.eml");
    std::fs::write(&garbage, b"\x00\xff\x00 no headers").expect("write");
    let output = Command::new(common::binary())
        .arg("inspect")
        .arg(&garbage)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0));
    let output = Command::new(common::binary())
        .arg("inspect")
        .arg(dir.path().join("missing.eml"))
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test]
async fn kill_9_during_a_large_sync_loses_and_duplicates_nothing() {
    let Some(lab) = common::lab() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = common::unique("kill");
    let filler: String = (0..400)
        .map(|n| format!("line {n} of a longer support message body\r\n"))
        .collect();
    let folder = common::unique("t-");
    let mut client = lab.client("support").await;
    client.create_folder(&folder).await.expect("folder");
    let total = 300u64;
    for n in 0..total {
        let raw = common::message(
            &format!("{prefix}-{n}@x"),
            &format!("ticket {n}"),
            "c@example.org",
            &filler,
        );
        client.append(&folder, &raw).await.expect("append");
    }
    client.logout().await;
    let table = lab.mailbox_toml(dir.path(), "support", "support", &folder);
    let config = dir.path().join("inboxd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[ingest]\nbatch_size = 20\n{table}",
            dir.path().join("data").display()
        ),
    )
    .expect("config");
    let data = dir.path().join("data");
    let mut kills = 0;
    for delay in [150u64, 300, 450, 600, 900] {
        let mut child = common::inboxd(&config, &["sync", "--once"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run");
        std::thread::sleep(Duration::from_millis(delay));
        if child.try_wait().expect("wait").is_none() {
            common::signal(&child, "KILL");
            kills += 1;
        }
        let _ = child.wait();
        if common::count_messages(&data).await >= total {
            break;
        }
    }
    let output = common::inboxd(&config, &["sync", "--once", "--json"])
        .output()
        .expect("final sync");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("killed {kills} runs");
    assert!(kills >= 1, "at least one run was killed mid-sync");
    assert_eq!(
        common::count_messages(&data).await,
        total,
        "exactly the server's messages"
    );
    let url = format!("sqlite://{}", data.join("inboxd.db").display());
    let store = Store::connect(&url, &data.join("blobs"))
        .await
        .expect("store");
    let rows = message::Entity::find().all(&store.db).await.expect("rows");
    let distinct: std::collections::HashSet<_> =
        rows.iter().map(|row| row.content_hash.clone()).collect();
    assert_eq!(distinct.len() as u64, total, "no duplicates");
    let blob_files = walk(&data.join("blobs"));
    let with_file = rows.iter().filter(|row| row.blob_path.is_some()).count();
    let inline = inboxd::store::entities::message_blob::Entity::find()
        .count(&store.db)
        .await
        .expect("count") as usize;
    assert_eq!(
        (blob_files, with_file + inline),
        (with_file, total as usize),
        "one raw copy per message (blob file or database row), no orphan files left after the final run"
    );
}

fn walk(dir: &Path) -> usize {
    let mut files = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            files += walk(&entry.path());
        } else {
            files += 1;
        }
    }
    files
}

#[tokio::test]
async fn logs_never_carry_mail_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let maildir = dir.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    let canary = "Lq4canaryLog77";
    std::fs::write(
        maildir.join("new/1.x.host"),
        common::message(
            &format!("{canary}@x"),
            canary,
            &format!("{canary}@example.org"),
            canary,
        ),
    )
    .expect("write");
    std::fs::write(maildir.join("new/2.y.host"), b"\x00garbage\xff").expect("write");
    let config = dir.path().join("inboxd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[[mailbox]]\nname = \"m\"\nkind = \"maildir\"\npath = \"{}\"\n",
            dir.path().join("data").display(),
            maildir.display()
        ),
    )
    .expect("config");
    let output = common::inboxd(&config, &["--log-level", "trace", "sync", "--once"])
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let all = [output.stdout, output.stderr].concat();
    assert!(
        !String::from_utf8_lossy(&all).contains(canary),
        "mail content in the output"
    );
    assert!(!all.is_empty());
}

#[tokio::test]
async fn rotate_key_rewraps_everything_and_can_be_rerun() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = example_config(dir.path());
    let data = dir.path().join("data");
    let first = common::inboxd(&config, &["sync", "--once"])
        .output()
        .expect("sync");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let new_key = dir.path().join("new.key");
    assert!(
        common::inboxd(
            &config,
            &["key", "generate", "--out", new_key.to_str().expect("utf8")]
        )
        .status()
        .expect("gen")
        .success()
    );
    let new_key_arg = new_key.to_str().expect("utf8");
    let rotate = common::inboxd(&config, &["rotate-key", "--new-key-file", new_key_arg])
        .output()
        .expect("rotate");
    assert!(
        rotate.status.success(),
        "{}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    assert!(String::from_utf8_lossy(&rotate.stdout).contains("re-wrapped"));
    // Re-running is safe and says it is done.
    let again = common::inboxd(&config, &["rotate-key", "--new-key-file", new_key_arg])
        .output()
        .expect("rotate");
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // The old key is now refused; the new one reads everything.
    let old = common::inboxd(&config, &["sync", "--once"])
        .output()
        .expect("sync");
    assert!(
        !old.status.success(),
        "the old key must be refused after rotation"
    );
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        format!("key_file = \"{}\"\n{text}", new_key.display()),
    )
    .expect("config");
    let with_new = common::inboxd(&config, &["sync", "--once", "--json"])
        .output()
        .expect("sync");
    assert!(
        with_new.status.success(),
        "{}",
        String::from_utf8_lossy(&with_new.stderr)
    );
    let loaded = inboxd::crypto::load_key_file(&new_key).expect("key").key;
    let url = format!("sqlite://{}", data.join("inboxd.db").display());
    let store = Store::connect(&url, &data.join("blobs"))
        .await
        .expect("store");
    let conversations = inboxd::store::entities::conversation::Entity::find()
        .all(&store.db)
        .await
        .expect("rows");
    assert!(conversations.len() >= 4);
    for conversation in conversations {
        let view = inboxd::store::read::conversation(&store.db, &loaded, conversation.id)
            .await
            .expect("every conversation decrypts under the new key");
        for message in view.messages {
            inboxd::store::read::raw_message(&store.db, &loaded, store.blob_dir(), message.id)
                .await
                .expect("raw decrypts");
        }
    }
}

#[tokio::test]
async fn mailboxes_added_and_removed_at_run_time_take_effect_without_restart() {
    let Some(lab) = common::lab() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("inboxd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[ingest]\npoll_interval_secs = 1\n",
            data.display()
        ),
    )
    .expect("config");
    let mut daemon = common::inboxd(&config, &["serve"])
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let db_url = format!("sqlite://{}", data.join("inboxd.db").display());
    assert!(
        common::wait_until(Duration::from_secs(20), || async {
            data.join("master.key").exists() && Store::connect(&db_url, &data).await.is_ok()
        })
        .await,
        "the daemon starts"
    );
    // A Maildir added by an admin while the daemon runs.
    let maildir = dir.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    std::fs::write(
        maildir.join("new/1.a.host"),
        common::message("a@hot", "one", "a@example.org", "1"),
    )
    .expect("w");
    let added = common::inboxd(
        &config,
        &[
            "mailbox",
            "add-maildir",
            "extra",
            maildir.to_str().expect("utf8"),
        ],
    )
    .output()
    .expect("add");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert!(
        common::wait_until(Duration::from_secs(20), || async {
            common::count_messages(&data).await == 1
        })
        .await,
        "the new mailbox is synced without a restart"
    );
    // An IMAP mailbox added the same way: its password is sealed in the database.
    let folder = common::unique("t-");
    let mut client = lab.client("support").await;
    client.create_folder(&folder).await.expect("folder");
    client
        .append(
            &folder,
            &common::message("b@hot", "two", "b@example.org", "2"),
        )
        .await
        .expect("append");
    client.logout().await;
    let password = common::write_secret(dir.path(), "pw", &lab.password);
    let port = lab.imaps_port.to_string();
    let args = [
        "mailbox",
        "add-imap",
        "hotimap",
        "--host",
        &lab.host,
        "--port",
        &port,
        "--username",
        &lab.user("support"),
        "--password-file",
        password.to_str().expect("utf8"),
        "--ca-file",
        lab.ca_file.to_str().expect("utf8"),
        "--folder",
        &folder,
    ];
    let added = common::inboxd(&config, &args).output().expect("add-imap");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert!(
        common::wait_until(Duration::from_secs(20), || async {
            common::count_messages(&data).await == 2
        })
        .await,
        "the IMAP mailbox is synced without a restart"
    );
    let status = common::cli_json(&config, &["mailbox", "status", "hotimap", "--json"]);
    assert_eq!(status[0]["status"], "ok", "{status}");
    assert_eq!(status[0]["origin"], "admin", "{status}");
    let database = [
        std::fs::read(data.join("inboxd.db")).unwrap_or_default(),
        std::fs::read(data.join("inboxd.db-wal")).unwrap_or_default(),
    ]
    .concat();
    let needle = lab.password.as_bytes();
    assert!(
        !database.windows(needle.len()).any(|w| w == needle),
        "the password is sealed, never stored in the clear"
    );
    // Removal refuses to drop stored mail unless asked, then stops the task and deletes its data.
    let refused = common::inboxd(&config, &["mailbox", "remove", "extra"])
        .output()
        .expect("remove");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--delete-messages"));
    let removed = common::inboxd(
        &config,
        &["mailbox", "remove", "extra", "--delete-messages"],
    )
    .output()
    .expect("remove");
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    assert!(
        common::wait_until(Duration::from_secs(10), || async {
            common::count_messages(&data).await == 1
        })
        .await
    );
    let list = common::cli_json(&config, &["mailbox", "list", "--json"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    common::signal(&daemon, "TERM");
    let status = common::wait_exit(&mut daemon, Duration::from_secs(10)).expect("exits");
    assert!(status.success());
}

#[tokio::test]
async fn oversize_and_big_messages_are_stored_not_dropped() {
    let Some(lab) = common::lab() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = common::unique("t-");
    let mut client = lab.client("support").await;
    client.create_folder(&folder).await.expect("folder");
    let line = format!("{}\r\n", "b".repeat(998));
    let big_body: String = std::iter::repeat_n(line.as_str(), 30_000).collect(); // ~30 MB
    let big = common::message("big@size", "big one", "big@example.org", &big_body);
    let small = common::message("small@size", "small one", "s@example.org", "tiny");
    client.append(&folder, &big).await.expect("append big");
    client.append(&folder, &small).await.expect("append small");
    client.logout().await;
    let table = lab.mailbox_toml(dir.path(), "support", "support", &folder);
    let data = dir.path().join("data");
    let config = dir.path().join("inboxd.toml");
    // First with a 1 MB cap: the big one is kept as a flagged header-only record.
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[ingest]\nmax_message_bytes = 1048576\n{table}",
            data.display()
        ),
    )
    .expect("config");
    let report = common::cli_json(&config, &["sync", "--once", "--json"]);
    assert_eq!(report[0]["stored"], 2, "{report}");
    assert_eq!(report[0]["flagged"], 1, "{report}");
    let url = format!("sqlite://{}", data.join("inboxd.db").display());
    let store = Store::connect(&url, &data.join("blobs"))
        .await
        .expect("store");
    let rows = message::Entity::find().all(&store.db).await.expect("rows");
    let oversize = rows
        .iter()
        .find(|row| row.status == "oversize")
        .expect("flagged record");
    assert_eq!(
        oversize.raw_size as usize,
        big.len(),
        "the record keeps the real size"
    );
    drop(store);
    // Then with the default cap, in a fresh data dir: the 30 MB message is stored in full.
    let data2 = dir.path().join("data2");
    std::fs::write(
        &config,
        format!("data_dir = \"{}\"\n{table}", data2.display()),
    )
    .expect("config");
    let output = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(common::binary())
        .arg("--config")
        .arg(&config)
        .args(["sync", "--once", "--json"])
        .output();
    let output = match output {
        Ok(output) => output,
        Err(_) => common::inboxd(&config, &["sync", "--once", "--json"])
            .output()
            .expect("sync"),
    };
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(
        (report[0]["stored"].as_u64(), report[0]["flagged"].as_u64()),
        (Some(2), Some(0)),
        "{report}"
    );
    if let Some(rss) = String::from_utf8_lossy(&output.stderr)
        .lines()
        .find(|line| line.contains("Maximum resident set size"))
    {
        eprintln!("30 MB message ingest: {}", rss.trim());
    }
    let url = format!("sqlite://{}", data2.join("inboxd.db").display());
    let store = Store::connect(&url, &data2.join("blobs"))
        .await
        .expect("store");
    let key = inboxd::crypto::load_key_file(&data2.join("master.key"))
        .expect("key")
        .key;
    let rows = message::Entity::find().all(&store.db).await.expect("rows");
    let row = rows
        .iter()
        .find(|row| row.raw_size as usize == big.len())
        .expect("big row");
    let raw = inboxd::store::read::raw_message(&store.db, &key, store.blob_dir(), row.id)
        .await
        .expect("raw");
    assert_eq!(raw, big, "the 30 MB message round-trips byte for byte");
}
