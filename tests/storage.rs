//! Storage, threading and encryption at rest, on SQLite and PostgreSQL.
mod common;

use std::path::Path;

use base64::Engine;
use inboxd::app;
use inboxd::config::Config;
use inboxd::crypto::MasterKey;
use inboxd::ingest::commit::Ingestor;
use inboxd::ingest::maildir::MaildirSync;
use inboxd::store::entities::{conversation, message, message_blob};
use inboxd::store::{folders, mailboxes, read};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, EntityTrait, PaginatorTrait, Statement,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const CANARY: &str = "Zq7canaryXw93";

fn maildir_config(dir: &Path, url: &str, maildir: &Path) -> Config {
    common::config(
        dir,
        url,
        &format!(
            "[[mailbox]]\nname = \"local\"\nkind = \"maildir\"\npath = \"{}\"\n",
            maildir.display()
        ),
    )
}

fn new_maildir(dir: &Path) -> std::path::PathBuf {
    let maildir = dir.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    maildir
}

fn drop_in(maildir: &Path, name: &str, raw: &[u8]) {
    std::fs::write(maildir.join("new").join(name), raw).expect("write message");
}

async fn sync(config: &Config, opened: &app::Opened) -> inboxd::ingest::SyncReport {
    let mailbox = &config.mailboxes[0];
    let id = mailboxes::upsert_from_config(&opened.store.db, mailbox)
        .await
        .expect("mailbox row");
    let inboxd::config::MailboxSource::Maildir { path } = &mailbox.source else {
        panic!("maildir expected");
    };
    MaildirSync {
        name: mailbox.name.clone(),
        mailbox_id: id,
        path: path.clone(),
        ingest: config.ingest.clone(),
        ingestor: Ingestor::new(opened.store.clone(), opened.master.clone()),
    }
    .sync_once(&CancellationToken::new())
    .await
    .expect("sync")
}

fn canary_message() -> Vec<u8> {
    let attachment = base64::engine::general_purpose::STANDARD
        .encode(format!("attachment text {CANARY} inside\n"));
    format!(
        "Message-ID: <m1@example.org>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0100\r\n\
From: Canary Person <{CANARY}@example.org>\r\nTo: support@example.com\r\n\
Subject: Order {CANARY} broken\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nHello, my code is {CANARY}.\r\n--b1\r\n\
Content-Type: text/plain; name=\"{CANARY}.txt\"\r\nContent-Disposition: attachment; filename=\"{CANARY}.txt\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{attachment}\r\n--b1--\r\n"
    )
    .into_bytes()
}

/// Every encoding of the canary a leak could take.
fn canary_needles() -> Vec<Vec<u8>> {
    let mut needles = vec![
        CANARY.as_bytes().to_vec(),
        CANARY.to_lowercase().into_bytes(),
    ];
    let utf16le: Vec<u8> = CANARY.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let utf16be: Vec<u8> = CANARY.encode_utf16().flat_map(u16::to_be_bytes).collect();
    needles.push(utf16le);
    needles.push(utf16be);
    needles.push(hex::encode(CANARY).into_bytes());
    // base64 at each of the three alignments, without the partial edge characters
    for offset in 0..3 {
        let padded = format!("{}{CANARY}", "x".repeat(offset));
        let encoded = base64::engine::general_purpose::STANDARD.encode(padded);
        let start = (offset * 4).div_ceil(3) + 1;
        let inner = &encoded[start..encoded.len().saturating_sub(4)];
        needles.push(inner.as_bytes().to_vec());
    }
    needles
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn scan_dir(dir: &Path, needles: &[Vec<u8>], skip: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).expect("read dir").flatten() {
            let path = entry.path();
            if path.starts_with(skip) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                for needle in needles {
                    if contains(&bytes, needle) {
                        found.push(format!(
                            "{} ({})",
                            path.display(),
                            String::from_utf8_lossy(needle)
                        ));
                    }
                }
            }
        }
    }
    found
}

/// A logical dump of every table: each row as text (PostgreSQL renders bytea as hex, which the hex
/// needle covers; SQLite blobs are dumped with hex() too).
async fn dump_database(db: &impl ConnectionTrait) -> Vec<u8> {
    let backend = db.get_database_backend();
    let tables = [
        "instance_settings",
        "mailboxes",
        "folder_states",
        "conversations",
        "data_keys",
        "messages",
        "thread_ids",
        "attachments",
        "message_addresses",
        "delivery_events",
        "outbox",
        "notes",
        "api_tokens",
        "audit_log",
    ];
    let mut dump = Vec::new();
    for table in tables {
        let sql = match backend {
            sea_orm::DbBackend::Postgres => format!("SELECT t::text AS row FROM {table} t"),
            _ => format!("SELECT * FROM {table}"),
        };
        let rows = db
            .query_all_raw(Statement::from_string(backend, sql))
            .await
            .expect("dump table");
        for row in rows {
            dump.extend_from_slice(format!("{row:?}").as_bytes());
            dump.push(b'\n');
        }
    }
    dump
}

#[tokio::test]
async fn canary_never_reaches_disk_in_plaintext() {
    let dir = tempfile::tempdir().expect("tempdir");
    for backend in common::backends(dir.path()).await {
        let data = dir.path().join(backend.name);
        std::fs::create_dir_all(&data).expect("data dir");
        let maildir = new_maildir(&data.join("source"));
        drop_in(&maildir, "1.canary.host", &canary_message());
        let url = if backend.name == "sqlite" {
            format!("sqlite://{}", data.join("inboxd.db").display())
        } else {
            backend.url.clone()
        };
        let config = maildir_config(&data, &url, &maildir);
        let opened = app::open(&config).await.expect("open");
        let report = sync(&config, &opened).await;
        assert_eq!(
            report.stored, 1,
            "{}: the canary message is stored",
            backend.name
        );

        // Positive control: it decrypts, and the canary is really in there.
        let conversation_id =
            read::conversation_ids(&opened.store.db, opened_mailbox(&opened).await)
                .await
                .expect("ids")[0];
        let view = read::conversation(&opened.store.db, &opened.master, conversation_id)
            .await
            .expect("decrypt");
        assert!(view.subject.as_deref().is_some_and(|s| s.contains(CANARY)));
        let message = &view.messages[0];
        assert!(message.body.text.contains(CANARY));
        assert_eq!(
            message.attachments[0].meta.filename.as_deref(),
            Some(format!("{CANARY}.txt").as_str())
        );
        let raw = read::raw_message(
            &opened.store.db,
            &opened.master,
            opened.store.blob_dir(),
            message.id,
        )
        .await
        .expect("raw");
        assert_eq!(raw, canary_message());

        let needles = canary_needles();
        let dump = dump_database(&opened.store.db).await;
        assert!(!dump.is_empty());
        for needle in &needles {
            assert!(
                !contains(&dump, needle),
                "{}: database dump holds {:?}",
                backend.name,
                String::from_utf8_lossy(needle)
            );
        }
        opened.store.clone().close().await.expect("close");
        let leaks = scan_dir(&data, &needles, &data.join("source"));
        assert!(
            leaks.is_empty(),
            "{}: plaintext on disk: {leaks:?}",
            backend.name
        );
    }
}

async fn opened_mailbox(opened: &app::Opened) -> Uuid {
    mailboxes::by_name(&opened.store.db, "local")
        .await
        .expect("query")
        .expect("mailbox")
        .id
}

#[tokio::test]
async fn wrong_key_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    for backend in common::backends(dir.path()).await {
        let config = common::config(dir.path(), &backend.url, "");
        {
            let opened = app::open(&config)
                .await
                .expect("first open records the key");
            opened.store.clone().close().await.expect("close");
        }
        let other_key = dir.path().join(format!("other-{}.key", backend.name));
        inboxd::crypto::create_key_file(&other_key).expect("second key");
        let mut wrong = config.clone();
        wrong.key = inboxd::config::KeySource::File {
            path: other_key,
            create_if_missing: false,
        };
        let err = app::open(&wrong)
            .await
            .err()
            .expect("wrong key must be refused");
        assert!(
            format!("{err:#}").contains("does not match this database"),
            "{}: {err:#}",
            backend.name
        );
        std::fs::remove_file(dir.path().join("master.key")).ok();
    }
}

#[tokio::test]
async fn migrations_are_idempotent_and_checkpoints_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    for backend in common::backends(dir.path()).await {
        let config = common::config(dir.path(), &backend.url, "");
        let opened = app::open(&config).await.expect("open");
        assert_eq!(
            opened.store.migrate().await.expect("again"),
            0,
            "{}",
            backend.name
        );
        let mailbox = inboxd::config::MailboxConfig {
            name: format!("mb-{}", backend.name),
            source: inboxd::config::MailboxSource::Maildir {
                path: "/nowhere".into(),
            },
            retention_days: Some(30),
            enabled: true,
            outgoing: None,
        };
        let id = mailboxes::upsert_from_config(&opened.store.db, &mailbox)
            .await
            .expect("upsert");
        let again = mailboxes::upsert_from_config(&opened.store.db, &mailbox)
            .await
            .expect("upsert");
        assert_eq!(id, again, "upsert keeps the row");
        assert_eq!(
            folders::get(&opened.store.db, id, "INBOX")
                .await
                .expect("get"),
            None
        );
        for (validity, last) in [(7, 10), (7, 25), (9, 3)] {
            let checkpoint = folders::Checkpoint {
                uid_validity: validity,
                last_uid: last,
            };
            folders::set(&opened.store.db, id, "INBOX", checkpoint)
                .await
                .expect("set");
            assert_eq!(
                folders::get(&opened.store.db, id, "INBOX")
                    .await
                    .expect("get"),
                Some(checkpoint),
                "{}",
                backend.name
            );
        }
        opened.store.clone().close().await.expect("close");
        std::fs::remove_file(dir.path().join("master.key")).ok();
    }
}

#[tokio::test]
async fn tampered_or_swapped_ciphertext_fails_loudly() {
    let dir = tempfile::tempdir().expect("tempdir");
    for backend in common::backends(dir.path()).await {
        let data = dir.path().join(backend.name);
        std::fs::create_dir_all(&data).expect("data");
        let maildir = new_maildir(&data.join("source"));
        drop_in(
            &maildir,
            "1.a.host",
            &common::message("a@x", "first", "a@example.org", "body one"),
        );
        drop_in(
            &maildir,
            "2.b.host",
            &common::message("b@x", "second", "b@example.org", "body two"),
        );
        let url = if backend.name == "sqlite" {
            format!("sqlite://{}", data.join("inboxd.db").display())
        } else {
            backend.url.clone()
        };
        let config = maildir_config(&data, &url, &maildir);
        let opened = app::open(&config).await.expect("open");
        assert_eq!(sync(&config, &opened).await.stored, 2);
        let db = &opened.store.db;
        let rows = message::Entity::find().all(db).await.expect("rows");
        assert_eq!(rows.len(), 2);
        // Small messages keep their sealed raw copy in `message_blobs`: intact it opens to the
        // exact bytes; swapped with the other message's copy or with a byte flipped it does not.
        let raw_of = |id| read::raw_message(db, &opened.master, opened.store.blob_dir(), id);
        let blobs = message_blob::Entity::find().all(db).await.expect("blobs");
        assert_eq!(blobs.len(), 2, "{}: both raw copies inline", backend.name);
        assert!(rows.iter().all(|row| row.blob_path.is_none()));
        let original = raw_of(rows[0].id).await.expect("intact raw opens");
        assert!(original.windows(8).any(|w| w == b"body one"));
        let other = blobs
            .iter()
            .find(|blob| blob.message_id != rows[0].id)
            .expect("other blob");
        let swapped = message_blob::ActiveModel {
            message_id: Set(rows[0].id),
            sealed: Set(other.sealed.clone()),
        };
        swapped.update(db).await.expect("swap blob");
        assert!(
            raw_of(rows[0].id).await.is_err(),
            "{}: another message's raw copy must not open",
            backend.name
        );
        let mut flipped = other.sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x01;
        let tampered = message_blob::ActiveModel {
            message_id: Set(other.message_id),
            sealed: Set(flipped),
        };
        tampered.update(db).await.expect("tamper blob");
        assert!(raw_of(other.message_id).await.is_err());
        // Swap the sealed headers of the two messages: AAD binds each to its row.
        let (first, second) = (rows[0].clone(), rows[1].clone());
        let mut active: message::ActiveModel = first.clone().into();
        active.header_sealed = Set(second.header_sealed.clone());
        active.update(db).await.expect("swap");
        let err = read::conversation(db, &opened.master, first.conversation_id).await;
        assert!(
            err.is_err(),
            "{}: a swapped ciphertext must not decrypt",
            backend.name
        );
        // Flip one byte of the other message's body.
        let mut body = second.body_sealed.clone().expect("body");
        let middle = body.len() / 2;
        body[middle] ^= 0x01;
        let mut active: message::ActiveModel = second.clone().into();
        active.body_sealed = Set(Some(body));
        active.update(db).await.expect("tamper");
        assert!(
            read::conversation(db, &opened.master, second.conversation_id)
                .await
                .is_err()
        );
        // A different master key cannot unwrap the data keys.
        let stranger = MasterKey::generate();
        assert!(
            read::conversation(db, &stranger, second.conversation_id)
                .await
                .is_err()
        );
        opened.store.clone().close().await.expect("close");
    }
}

#[tokio::test]
async fn maildir_ingest_is_exactly_once_and_flags_malformed_mail() {
    let dir = tempfile::tempdir().expect("tempdir");
    for backend in common::backends(dir.path()).await {
        let data = dir.path().join(backend.name);
        std::fs::create_dir_all(&data).expect("data");
        let maildir = new_maildir(&data.join("source"));
        drop_in(
            &maildir,
            "1.a.host",
            &common::message("a@x", "hello", "a@example.org", "one"),
        );
        drop_in(
            &maildir,
            "2.garbage.host",
            b"\x00\xff\xfe not a mail at all \x00",
        );
        let url = if backend.name == "sqlite" {
            format!("sqlite://{}", data.join("inboxd.db").display())
        } else {
            backend.url.clone()
        };
        let config = maildir_config(&data, &url, &maildir);
        let opened = app::open(&config).await.expect("open");
        let first = sync(&config, &opened).await;
        assert_eq!(
            (first.stored, first.flagged),
            (2, 1),
            "{}: {first:?}",
            backend.name
        );
        let second = sync(&config, &opened).await;
        assert_eq!(
            second.fetched, 0,
            "{}: nothing new on the second pass",
            backend.name
        );
        // A mail client moves the file to cur/ and adds flags: still the same message.
        std::fs::rename(
            maildir.join("new/1.a.host"),
            maildir.join("cur/1.a.host:2,S"),
        )
        .expect("mv");
        let third = sync(&config, &opened).await;
        assert_eq!(third.stored, 0, "{}: {third:?}", backend.name);
        let count = message::Entity::find()
            .count(&opened.store.db)
            .await
            .expect("count");
        assert_eq!(count, 2);
        let flagged = message::Entity::find()
            .all(&opened.store.db)
            .await
            .expect("rows");
        assert!(flagged.iter().any(|row| row.status == "unparsed"));
        opened.store.clone().close().await.expect("close");
    }
}

#[tokio::test]
async fn replies_join_their_conversation_even_out_of_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    for backend in common::backends(dir.path()).await {
        let data = dir.path().join(backend.name);
        std::fs::create_dir_all(&data).expect("data");
        let maildir = new_maildir(&data.join("source"));
        let url = if backend.name == "sqlite" {
            format!("sqlite://{}", data.join("inboxd.db").display())
        } else {
            backend.url.clone()
        };
        let config = maildir_config(&data, &url, &maildir);
        let opened = app::open(&config).await.expect("open");
        // The grandchild arrives first, referring only to its parent (not yet seen).
        let grandchild = "Message-ID: <c@x>\r\nIn-Reply-To: <b@x>\r\nFrom: a@example.org\r\nTo: s@example.com\r\nSubject: Re: printer\r\n\r\nthird\r\n";
        drop_in(&maildir, "1.c.host", grandchild.as_bytes());
        sync(&config, &opened).await;
        drop_in(
            &maildir,
            "2.a.host",
            &common::message("a@x", "printer", "a@example.org", "first"),
        );
        sync(&config, &opened).await;
        let conversations = conversation::Entity::find()
            .count(&opened.store.db)
            .await
            .expect("count");
        assert_eq!(
            conversations, 2,
            "{}: unrelated until the middle message arrives",
            backend.name
        );
        let middle = "Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\nReferences: <a@x>\r\nFrom: s@example.com\r\nTo: a@example.org\r\nSubject: Re: printer\r\n\r\nsecond\r\n";
        drop_in(&maildir, "3.b.host", middle.as_bytes());
        sync(&config, &opened).await;
        let all = conversation::Entity::find()
            .all(&opened.store.db)
            .await
            .expect("rows");
        assert_eq!(
            all.len(),
            1,
            "{}: the middle message merges both",
            backend.name
        );
        assert_eq!(all[0].message_count, 3);
        let view = read::conversation(&opened.store.db, &opened.master, all[0].id)
            .await
            .expect("merged conversation decrypts");
        assert_eq!(view.messages.len(), 3);
        // Subject fallback: a reply without any reference, from a participant.
        drop_in(&maildir, "4.d.host", b"Message-ID: <d@x>\r\nFrom: a@example.org\r\nTo: s@example.com\r\nSubject: RE: Printer\r\n\r\nfourth\r\n");
        // Same subject, but no reply marker: a new conversation.
        drop_in(&maildir, "5.e.host", b"Message-ID: <e@x>\r\nFrom: a@example.org\r\nTo: s@example.com\r\nSubject: printer\r\n\r\nfifth\r\n");
        sync(&config, &opened).await;
        let all = conversation::Entity::find()
            .all(&opened.store.db)
            .await
            .expect("rows");
        assert_eq!(all.len(), 2, "{}", backend.name);
        assert!(all.iter().any(|row| row.message_count == 4));
        opened.store.clone().close().await.expect("close");
    }
}

#[tokio::test]
async fn a_schema_newer_than_the_binary_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for backend in common::backends(dir.path()).await {
        let config = common::config(dir.path(), &backend.url, "");
        let opened = app::open(&config).await.expect("open");
        opened
            .store
            .db
            .execute_unprepared(
                "INSERT INTO seaql_migrations (version, applied_at) VALUES ('m29990101_000001_from_the_future', 0)",
            )
            .await
            .expect("pretend a newer binary migrated");
        opened.store.clone().close().await.expect("close");
        drop(opened);
        let err = app::open(&config).await.err().expect("refused");
        assert!(
            format!("{err:#}").contains("newer than this binary"),
            "{}: {err:#}",
            backend.name
        );
        std::fs::remove_file(dir.path().join("master.key")).ok();
    }
}
