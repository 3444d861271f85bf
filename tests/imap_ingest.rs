//! Ingest from the real Dovecot of the test lab: exactly once, IDLE, UIDVALIDITY changes, failures
//! isolated per mailbox, dropped connections recovered. Tests that inject faults use user alice alone
//! (so they never disturb the others, which use support).
mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use inboxd::app;
use inboxd::config::{Config, MailboxSource};
use inboxd::ingest::commit::Ingestor;
use inboxd::ingest::imap_sync::ImapSync;
use inboxd::store::entities::{mailbox, message};
use inboxd::store::{Store, mailboxes};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tokio_util::sync::CancellationToken;

async fn imap_sync(config: &Config, opened: &app::Opened, index: usize) -> ImapSync {
    let mailbox = &config.mailboxes[index];
    let id = mailboxes::upsert_from_config(&opened.store.db, mailbox)
        .await
        .expect("mailbox row");
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

async fn fresh_folder(lab: &common::Lab, user: &str, messages: &[Vec<u8>]) -> String {
    let folder = common::unique("t-");
    let mut client = lab.client(user).await;
    client.create_folder(&folder).await.expect("create folder");
    for raw in messages {
        client.append(&folder, raw).await.expect("append");
    }
    client.logout().await;
    folder
}

fn numbered(prefix: &str, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|n| {
            common::message(
                &format!("{prefix}-{n}@example.org"),
                &format!("question {n}"),
                &format!("customer{n}@example.org"),
                &format!("body {n}"),
            )
        })
        .collect()
}

async fn stored(db: &sea_orm::DatabaseConnection) -> u64 {
    message::Entity::find().count(db).await.unwrap_or(0)
}

#[tokio::test]
async fn appended_messages_are_ingested_once_and_uidvalidity_change_adds_no_duplicates() {
    let Some(lab) = common::lab() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let messages = numbered(&common::unique("once"), 6);
    for backend in common::backends(dir.path()).await {
        let folder = fresh_folder(&lab, "support", &messages).await;
        let mailbox = lab.mailbox_toml(dir.path(), "support", "support", &folder);
        let config = common::config(dir.path(), &backend.url, &mailbox);
        let opened = app::open(&config).await.expect("open");
        let sync = imap_sync(&config, &opened, 0).await;
        let cancel = CancellationToken::new();
        let first = sync.sync_once(&cancel).await.expect("first sync");
        assert_eq!(
            (first.fetched, first.stored),
            (6, 6),
            "{}: {first:?}",
            backend.name
        );
        let second = sync.sync_once(&cancel).await.expect("second sync");
        assert_eq!(second.fetched, 0, "{}: nothing new", backend.name);

        {
            // Recreate the folder: new UIDVALIDITY, same messages plus one.
            let mut client = lab.client("support").await;
            client.delete_folder(&folder).await.expect("delete");
            client.create_folder(&folder).await.expect("recreate");
            for raw in &messages {
                client.append(&folder, raw).await.expect("append");
            }
            client
                .append(
                    &folder,
                    &common::message("extra@x", "new one", "n@example.org", "new"),
                )
                .await
                .expect("append");
            client.logout().await;
            let third = sync.sync_once(&cancel).await.expect("resync");
            assert_eq!((third.stored, third.duplicates), (1, 6), "{third:?}");
            assert_eq!(stored(&opened.store.db).await, 7, "{}", backend.name);
        }
        opened.store.clone().close().await.expect("close");
        std::fs::remove_file(dir.path().join("master.key")).ok();
    }
}

/// Runs the daemon in-process; returns its shutdown token and join handle.
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

async fn observer(dir: &Path) -> Store {
    let url = format!("sqlite://{}", dir.join("inboxd.db").display());
    for _ in 0..100 {
        if dir.join("inboxd.db").exists()
            && let Ok(store) = Store::connect(&url, &dir.join("blobs")).await
        {
            return store;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("daemon never created its database");
}

#[tokio::test]
async fn idle_delivers_new_mail_within_seconds_and_shutdown_is_clean() {
    let Some(lab) = common::lab() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = common::unique("idle");
    let folder = fresh_folder(&lab, "support", &numbered(&prefix, 1)).await;
    let mailbox = lab.mailbox_toml(dir.path(), "support", "support", &folder);
    let url = format!("sqlite://{}", dir.path().join("inboxd.db").display());
    // A long poll interval: only IDLE can bring the second message in time.
    let mut config = common::config(dir.path(), &url, &mailbox);
    config.ingest.poll_interval = Duration::from_secs(600);
    let (shutdown, handle) = start_daemon(config);
    let store = observer(dir.path()).await;
    assert!(
        common::wait_until(Duration::from_secs(20), || async {
            stored(&store.db).await == 1
        })
        .await,
        "the first message is ingested"
    );
    tokio::time::sleep(Duration::from_millis(500)).await; // let the session enter IDLE
    let mut client = lab.client("support").await;
    client
        .append(
            &folder,
            &common::message(&format!("{prefix}-new@x"), "new", "n@example.org", "fresh"),
        )
        .await
        .expect("append");
    client.logout().await;
    let started = std::time::Instant::now();
    assert!(
        common::wait_until(Duration::from_secs(10), || async {
            stored(&store.db).await == 2
        })
        .await,
        "IDLE brings the new message within seconds"
    );
    eprintln!("new message stored {:?} after APPEND", started.elapsed());
    let stopping = std::time::Instant::now();
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("daemon stops within 10 s")
        .expect("join");
    result.expect("clean shutdown");
    assert!(stopping.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_failing_mailbox_reports_its_error_and_never_stops_the_others() {
    let Some(lab) = common::lab() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = fresh_folder(&lab, "support", &numbered(&common::unique("iso"), 3)).await;
    let good = lab.mailbox_toml(dir.path(), "good", "support", &folder);
    let wrong_password = lab
        .mailbox_toml(dir.path(), "wrongpw", "support", "INBOX")
        .replace("wrongpw.password", "wrongpw.badpassword");
    common::write_secret(dir.path(), "wrongpw.badpassword", "not-the-password");
    let closed_port = lab
        .mailbox_toml(dir.path(), "closed", "support", "INBOX")
        .replace(&format!("port = {}", lab.imaps_port), "port = 9");
    let untrusted = {
        let table = lab.mailbox_toml(dir.path(), "untrusted", "support", "INBOX");
        let ca_line = format!("ca_file = \"{}\"\n", lab.ca_file.display());
        table.replace(&ca_line, "")
    };
    let url = format!("sqlite://{}", dir.path().join("inboxd.db").display());
    let config = common::config(
        dir.path(),
        &url,
        &format!("{wrong_password}{closed_port}{untrusted}{good}"),
    );
    let (shutdown, handle) = start_daemon(config);
    let store = observer(dir.path()).await;
    assert!(
        common::wait_until(Duration::from_secs(20), || async {
            stored(&store.db).await == 3
        })
        .await,
        "the good mailbox syncs although three others fail"
    );
    let expectations = [
        ("wrongpw", "auth_failed", "check the password"),
        ("closed", "unreachable", "127.0.0.1"),
        ("untrusted", "tls_failed", "ca_file"),
    ];
    for (name, status, words) in expectations {
        let ok = common::wait_until(Duration::from_secs(20), || async {
            mailbox::Entity::find()
                .filter(mailbox::Column::Name.eq(name))
                .one(&store.db)
                .await
                .ok()
                .flatten()
                .is_some_and(|row| row.status == status && row.last_error.is_some())
        })
        .await;
        let row = mailbox::Entity::find()
            .filter(mailbox::Column::Name.eq(name))
            .one(&store.db)
            .await
            .expect("query")
            .expect("row");
        assert!(
            ok,
            "{name}: status {} error {:?}",
            row.status, row.last_error
        );
        let error = row.last_error.unwrap_or_default();
        assert!(error.contains(words), "{name}: {error}");
        assert!(
            !error.contains(&lab.password),
            "{name}: the password leaked into the status"
        );
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), handle)
        .await
        .expect("stops")
        .expect("join")
        .expect("clean");
}

#[tokio::test]
async fn a_connection_reset_mid_fetch_is_recovered_without_loss_or_duplicates() {
    let Some(lab) = common::lab() else { return };
    let (Ok(proxy_port), Ok(faultctl)) = (
        std::env::var("INBOXD_TEST_PROXY_PORT"),
        std::env::var("INBOXD_TEST_FAULTCTL"),
    ) else {
        common::missing::<()>("the fault proxy (INBOXD_TEST_PROXY_PORT)");
        return;
    };
    let control = |args: &[&str]| {
        std::process::Command::new("bash")
            .arg(&faultctl)
            .args(args)
            .status()
            .is_ok_and(|status| status.success())
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = common::unique("reset");
    // 24 messages of ~600 KB: through a 3 MB/s proxy the fetch takes several seconds.
    let filler = "x".repeat(76);
    let body: String = (0..8000).map(|_| format!("{filler}\r\n")).collect();
    let messages: Vec<Vec<u8>> = (0..24)
        .map(|n| {
            common::message(
                &format!("{prefix}-{n}@x"),
                &format!("big {n}"),
                "big@example.org",
                &body,
            )
        })
        .collect();
    let folder = fresh_folder(&lab, "alice", &messages).await;
    let table = lab
        .mailbox_toml(dir.path(), "alice", "alice", &folder)
        .replace(
            &format!("port = {}", lab.imaps_port),
            &format!("port = {proxy_port}"),
        );
    let url = format!("sqlite://{}", dir.path().join("inboxd.db").display());
    let mut config = common::config(dir.path(), &url, &table);
    config.ingest.batch_size = 3;
    assert!(control(&["bandwidth", "3000000"]), "throttle the proxy");
    let (shutdown, handle) = start_daemon(config);
    let store = observer(dir.path()).await;
    assert!(
        common::wait_until(Duration::from_secs(30), || async {
            stored(&store.db).await >= 3
        })
        .await,
        "the first batch is stored"
    );
    let before_reset = stored(&store.db).await;
    assert!(control(&["reset"]), "reset the connection");
    assert!(
        before_reset < 24,
        "the reset must hit the middle of the sync ({before_reset} stored)"
    );
    // Once reconnected (backoff is capped at 2 s here), kill the session from the server side too.
    let reconnected = common::wait_until(Duration::from_secs(15), || async {
        stored(&store.db).await > before_reset
    })
    .await;
    let before_kick = stored(&store.db).await;
    if reconnected && before_kick < 24 {
        // Best effort: doveadm answers "no users kicked" when the session is between logins.
        let kicked = lab.fault(&["kick", "alice"]);
        eprintln!("server-side kick at {before_kick} stored: {kicked}");
    }
    assert!(control(&["pass"]), "restore the proxy");
    assert!(
        common::wait_until(Duration::from_secs(60), || async {
            stored(&store.db).await == 24
        })
        .await,
        "every message arrives after the reconnect (had {})",
        stored(&store.db).await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stored(&store.db).await, 24, "and none twice");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), handle)
        .await
        .expect("stops")
        .expect("join")
        .expect("clean");
}

/// Minimal SMTP client over plain TCP to the test Postfix (which then delivers to Dovecot by LMTP).
fn smtp_send(port: u16, from: &str, to: &str, raw: &[u8]) {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to postfix");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let expect = |code: &str, reader: &mut BufReader<std::net::TcpStream>| loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("smtp reply");
        assert!(line.starts_with(code), "expected {code}, got {line}");
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    };
    expect("220", &mut reader);
    for (command, code) in [
        ("EHLO tests.inboxd.test".to_string(), "250"),
        (format!("MAIL FROM:<{from}>"), "250"),
        (format!("RCPT TO:<{to}>"), "250"),
        ("DATA".to_string(), "354"),
    ] {
        writer
            .write_all(format!("{command}\r\n").as_bytes())
            .expect("send");
        expect(code, &mut reader);
    }
    writer.write_all(raw).expect("data");
    writer.write_all(b"\r\n.\r\n").expect("end");
    expect("250", &mut reader);
    writer.write_all(b"QUIT\r\n").expect("quit");
}

#[tokio::test]
async fn mail_sent_through_postfix_is_ingested_from_dovecot() {
    let Some(lab) = common::lab() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let message_id = format!("{}@tests.inboxd.test", common::unique("postfix"));
    let raw = common::message(
        &message_id,
        "via postfix",
        "customer@example.org",
        "delivered by Postfix",
    );
    smtp_send(
        lab.smtp_port,
        "customer@example.org",
        &lab.user("bob"),
        &raw,
    );
    let mailbox = lab.mailbox_toml(dir.path(), "bob", "bob", "INBOX");
    let url = format!("sqlite://{}", dir.path().join("inboxd.db").display());
    let config = common::config(dir.path(), &url, &mailbox);
    let opened = app::open(&config).await.expect("open");
    let sync = imap_sync(&config, &opened, 0).await;
    let wanted = opened
        .master
        .lookup_hasher()
        .hash("message-id", message_id.as_bytes())
        .to_hex();
    let found = common::wait_until(Duration::from_secs(30), || async {
        let _ = sync.sync_once(&CancellationToken::new()).await;
        message::Entity::find()
            .filter(message::Column::MessageIdHash.eq(wanted.clone()))
            .count(&opened.store.db)
            .await
            .unwrap_or(0)
            == 1
    })
    .await;
    assert!(
        found,
        "the message went Postfix → Dovecot LMTP → inboxd exactly once"
    );
}

#[tokio::test]
async fn after_fetch_moves_server_copies_only_once_stored() {
    let Some(lab) = common::lab() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let messages = numbered(&common::unique("move"), 4);
    let folder = fresh_folder(&lab, "support", &messages).await;
    let archive = format!("{folder}-archive");
    let mut client = lab.client("support").await;
    client
        .create_folder(&archive)
        .await
        .expect("archive folder");
    client.logout().await;
    let table = format!(
        "{}after_fetch = \"move\"\nmove_to = \"{archive}\"\n",
        lab.mailbox_toml(dir.path(), "support", "support", &folder)
    );
    let url = format!("sqlite://{}", dir.path().join("inboxd.db").display());
    let config = common::config(dir.path(), &url, &table);
    let opened = app::open(&config).await.expect("open");
    let sync = imap_sync(&config, &opened, 0).await;
    let report = sync
        .sync_once(&CancellationToken::new())
        .await
        .expect("sync");
    assert_eq!(report.stored, 4, "{report:?}");
    let mut client = lab.client("support").await;
    let source = client.select(&folder).await.expect("select");
    assert_eq!(
        source.exists, 0,
        "every stored message left the watched folder"
    );
    let target = client.select(&archive).await.expect("select archive");
    assert_eq!(target.exists, 4, "and sits in the archive folder");
    client.logout().await;
    assert_eq!(stored(&opened.store.db).await, 4);
}
