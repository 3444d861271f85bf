//! Retention, legal hold, purge and data-subject requests, on SQLite and PostgreSQL: deleted means gone —
//! rows, blob files, index entries (physically, checked in the decrypted index files) and data keys.
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use inboxd::app;
use inboxd::config::Config;
use inboxd::ingest::commit::Ingestor;
use inboxd::ingest::maildir::MaildirSync;
use inboxd::purge::hold::{HoldTarget, set_hold, set_retention};
use inboxd::purge::{retention, subject};
use inboxd::search::SearchOptions;
use inboxd::search::directory::scan_plaintext;
use inboxd::search::indexer::{IndexHandle, catch_up, index_key, open_index};
use inboxd::store::entities::{audit_entry, conversation, data_key, message, message_blob};
use inboxd::store::{mailboxes, read, threads};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const OLD: &str = "Kq7Zx2Vw9Jp4";
const HELD: &str = "Rb3Tm8Yc5Ln1";
const FRESH: &str = "Wd6Hs1Gf4Pe8";
// Canaries share no 4-byte sequence with each other or the rest of the mail: the index's document
// store is LZ4-compressed, and a shared run would be stored as a back-reference instead of bytes.

fn new_maildir(dir: &Path) -> PathBuf {
    let maildir = dir.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    maildir
}

fn with_attachment(id: &str, from: &str, to: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "Message-ID: <{id}>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0100\r\nFrom: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n--b\r\nContent-Type: text/plain; name=\"../../etc/notes {id}.txt\"\r\nContent-Disposition: attachment; filename=\"../../etc/notes {id}.txt\"\r\n\r\nattached text of {id}\r\n--b--\r\n"
    )
    .into_bytes()
}

fn reply(id: &str, parent: &str, from: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "Message-ID: <{id}>\r\nIn-Reply-To: <{parent}>\r\nReferences: <{parent}>\r\nDate: Sat, 28 Nov 2026 11:00:00 +0100\r\nFrom: <{from}>\r\nTo: <support@inboxd.test>\r\nSubject: Re: {subject}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

#[derive(Default)]
struct RawCopies {
    files: Vec<PathBuf>,
    inline: Vec<Uuid>,
}

impl RawCopies {
    fn len(&self) -> usize {
        self.files.len() + self.inline.len()
    }

    fn extend(&mut self, other: RawCopies) {
        self.files.extend(other.files);
        self.inline.extend(other.inline);
    }
}

struct Fixture {
    config: Config,
    opened: app::Opened,
    handle: IndexHandle,
    thread: Option<std::thread::JoinHandle<()>>,
    mailbox_id: Uuid,
}

impl Fixture {
    async fn new(data: &Path, url: &str, messages: &[(&str, Vec<u8>)]) -> Fixture {
        let maildir = new_maildir(&data.join("source"));
        for (name, raw) in messages {
            std::fs::write(maildir.join("new").join(name), raw).expect("write message");
        }
        let config = common::config(
            data,
            url,
            &format!(
                "[[mailbox]]\nname = \"help\"\nkind = \"maildir\"\npath = \"{}\"\n",
                maildir.display()
            ),
        );
        let opened = app::open(&config).await.expect("open");
        let mailbox = &config.mailboxes[0];
        let mailbox_id = mailboxes::upsert_from_config(&opened.store.db, mailbox)
            .await
            .expect("mailbox row");
        let inboxd::config::MailboxSource::Maildir { path } = &mailbox.source else {
            panic!("maildir expected");
        };
        let report = MaildirSync {
            name: mailbox.name.clone(),
            mailbox_id,
            path: path.clone(),
            ingest: config.ingest.clone(),
            ingestor: Ingestor::new(opened.store.clone(), opened.master.clone()),
        }
        .sync_once(&CancellationToken::new())
        .await
        .expect("sync");
        assert_eq!(
            report.stored as usize,
            messages.len(),
            "every message stored"
        );
        let (index, _) = open_index(
            &config.index_dir(),
            &opened.master,
            config.search.cache_bytes,
        )
        .expect("index");
        let (handle, thread) = IndexHandle::start(index).expect("writer");
        catch_up(&opened.store, &opened.master, &handle, None, |_, _| {})
            .await
            .expect("index");
        handle.flush().await.expect("flush");
        Fixture {
            config,
            opened,
            handle,
            thread: Some(thread),
            mailbox_id,
        }
    }

    fn hits(&self, query: &str) -> usize {
        self.handle
            .index
            .search(query, &SearchOptions::default())
            .expect("query")
            .total_conversations
    }

    fn index_holds(&self, needle: &str) -> bool {
        scan_plaintext(
            &self.config.index_dir(),
            &index_key(&self.opened.master),
            needle.as_bytes(),
        )
        .expect("scan index")
    }

    /// The conversation holding a message whose body has `needle`, by search.
    fn conversation_of(&self, needle: &str) -> Uuid {
        let results = self
            .handle
            .index
            .search(needle, &SearchOptions::default())
            .expect("query");
        assert_eq!(
            results.total_conversations, 1,
            "one conversation has {needle}"
        );
        results.hits[0].conversation_id
    }

    async fn age(&self, conversation_id: Uuid, days: i64) {
        conversation::Entity::update_many()
            .col_expr(
                conversation::Column::LastActivityAt,
                Expr::value(inboxd::clock::now() - chrono::Duration::days(days)),
            )
            .filter(conversation::Column::Id.eq(conversation_id))
            .exec(&self.opened.store.db)
            .await
            .expect("age");
    }

    /// Where the conversation's raw messages are: blob files (large messages) and `message_blobs`
    /// rows (small ones, by message id).
    async fn raw_copies(&self, conversation_id: Uuid) -> RawCopies {
        let rows = message::Entity::find()
            .filter(message::Column::ConversationId.eq(conversation_id))
            .all(&self.opened.store.db)
            .await
            .expect("rows");
        let mut copies = RawCopies::default();
        for row in rows {
            match row.blob_path {
                Some(path) => copies
                    .files
                    .push(self.opened.store.blob_path(&path).expect("path")),
                None => copies.inline.push(row.id),
            }
        }
        copies
    }

    /// How many of `copies` are still stored: files on disk plus `message_blobs` rows.
    async fn raw_copies_left(&self, copies: &RawCopies) -> usize {
        let rows = message_blob::Entity::find()
            .filter(message_blob::Column::MessageId.is_in(copies.inline.iter().copied()))
            .count(&self.opened.store.db)
            .await
            .expect("count");
        copies.files.iter().filter(|path| path.exists()).count() + rows as usize
    }

    async fn close(mut self) {
        drop(self.handle);
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        self.opened.store.close().await.expect("close");
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every byte of the SQLite database files (main file and WAL).
fn sqlite_bytes(data: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["inboxd.db", "inboxd.db-wal"] {
        if let Ok(bytes) = std::fs::read(data.join(name)) {
            all.extend(bytes);
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_conversations_are_purged_completely_and_held_and_fresh_ones_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    for backend in common::backends(dir.path()).await {
        let data = dir.path().join(backend.name);
        std::fs::create_dir_all(&data).expect("data dir");
        let url = if backend.name == "sqlite" {
            format!("sqlite://{}", data.join("inboxd.db").display())
        } else {
            backend.url.clone()
        };
        let fixture = Fixture::new(
            &data,
            &url,
            &[
                (
                    "1.old.host",
                    with_attachment("old@x", "ann@example.org", "help@x", "Old case", OLD),
                ),
                (
                    // Larger than the inline limit: this one's raw copy is a blob file, the first
                    // one's a `message_blobs` row, so the purge is checked on both.
                    "2.old.host",
                    reply(
                        "old2@x",
                        "old@x",
                        "ann@example.org",
                        "Old case",
                        &"thanks for the details\r\n".repeat(4_000),
                    ),
                ),
                (
                    "3.held.host",
                    with_attachment("held@x", "hal@example.org", "help@x", "Held case", HELD),
                ),
                (
                    "4.fresh.host",
                    with_attachment("fresh@x", "fay@example.org", "help@x", "Fresh", FRESH),
                ),
            ],
        )
        .await;
        let name = backend.name;
        let old = fixture.conversation_of(OLD);
        let held = fixture.conversation_of(HELD);
        let fresh = fixture.conversation_of(FRESH);
        fixture.age(old, 40).await;
        fixture.age(held, 40).await;
        fixture.age(fresh, 10).await;
        set_retention(&fixture.opened.store, "help", Some(30))
            .await
            .expect("retention");
        set_hold(
            &fixture.opened.store,
            &fixture.opened.master,
            &HoldTarget::Conversation(held),
            Some("litigation 2026-17"),
        )
        .await
        .expect("hold");

        // Positive controls and a copy of the old conversation's rows and blobs, taken before.
        assert!(
            fixture.index_holds(OLD),
            "{name}: decrypted index holds the canary"
        );
        let old_blobs = fixture.raw_copies(old).await;
        assert_eq!(
            (old_blobs.files.len(), old_blobs.inline.len()),
            (1, 1),
            "{name}: the large old message has a blob file, the small one a database copy"
        );
        assert_eq!(fixture.raw_copies_left(&old_blobs).await, 2);
        let old_rows = message::Entity::find()
            .filter(message::Column::ConversationId.eq(old))
            .all(&fixture.opened.store.db)
            .await
            .expect("rows");
        let old_key_row = data_key::Entity::find_by_id(old)
            .one(&fixture.opened.store.db)
            .await
            .expect("query")
            .expect("data key exists before");
        if name == "sqlite" {
            assert!(
                contains(&sqlite_bytes(&data), &old_key_row.wrapped_key),
                "positive control: the wrapped key is in the SQLite files before the purge"
            );
        }
        assert!(
            read::content_key(
                &fixture.opened.store.db,
                &fixture.opened.master,
                &old_rows[0]
            )
            .await
            .is_ok(),
            "{name}: the copied row decrypts before the purge"
        );

        // A dry run lists exactly the expired, unheld conversation and changes nothing.
        let dry = retention::run(
            &fixture.opened.store,
            &fixture.opened.master,
            Some(&fixture.handle),
            &retention::PurgeOptions {
                dry_run: true,
                ..retention::PurgeOptions::default()
            },
        )
        .await
        .expect("dry run");
        let listed: Vec<Uuid> = dry.mailboxes[0].expired.iter().map(|e| e.id).collect();
        assert_eq!(
            listed,
            vec![old],
            "{name}: dry run lists the old conversation"
        );
        assert_eq!(dry.mailboxes[0].held, 1, "{name}: the held one is reported");
        assert!(
            read::conversation(&fixture.opened.store.db, &fixture.opened.master, old)
                .await
                .is_ok()
        );

        let report = retention::run(
            &fixture.opened.store,
            &fixture.opened.master,
            Some(&fixture.handle),
            &retention::PurgeOptions {
                actor: "test".to_string(),
                ..retention::PurgeOptions::default()
            },
        )
        .await
        .expect("purge");
        let total = report.total();
        assert_eq!(
            (total.conversations, total.messages),
            (1, 2),
            "{name}: {report:?}"
        );
        assert!(total.bytes > 0);

        // Gone from the store, the disk and the index; the others are intact.
        assert!(
            read::conversation(&fixture.opened.store.db, &fixture.opened.master, old)
                .await
                .is_err(),
            "{name}: purged conversation cannot be fetched"
        );
        for id in [held, fresh] {
            let view = read::conversation(&fixture.opened.store.db, &fixture.opened.master, id)
                .await
                .expect("kept conversation decrypts");
            assert!(!view.messages.is_empty());
        }
        assert_eq!(
            fixture.raw_copies_left(&old_blobs).await,
            0,
            "{name}: blob file and database copy gone"
        );
        assert_eq!(fixture.hits(OLD), 0, "{name}: not found by search");
        assert_eq!(fixture.hits(HELD), 1, "{name}: held one still searchable");
        assert_eq!(fixture.hits(FRESH), 1);
        assert!(
            !fixture.index_holds(OLD),
            "{name}: the canary is physically gone from the decrypted index files"
        );
        assert!(
            fixture.index_holds(HELD),
            "{name}: positive control after purge"
        );
        // Crypto-shredding: the data key row is gone, so the copied rows no longer decrypt.
        assert!(
            data_key::Entity::find_by_id(old)
                .one(&fixture.opened.store.db)
                .await
                .expect("query")
                .is_none()
        );
        for row in &old_rows {
            let Err(err) =
                read::content_key(&fixture.opened.store.db, &fixture.opened.master, row).await
            else {
                panic!("{name}: the copied row must not decrypt any more");
            };
            assert!(err.to_string().contains("data key"), "{name}: {err}");
        }
        assert!(
            threads::conversation_key(&fixture.opened.store.db, &fixture.opened.master, old)
                .await
                .is_err()
        );

        // The audit record: counts and policy, no content, no addresses.
        let audits = audit_entry::Entity::find()
            .filter(audit_entry::Column::Action.eq("retention.purge"))
            .all(&fixture.opened.store.db)
            .await
            .expect("audit");
        assert_eq!(audits.len(), 1, "{name}: one audit record");
        let details: serde_json::Value = serde_json::from_str(&audits[0].details).expect("json");
        assert_eq!(details["conversations"], 1);
        assert_eq!(details["messages"], 2);
        assert_eq!(details["retention_days"], 30);
        assert_eq!(audits[0].target.as_deref(), Some("mailbox:help"));
        assert!(!audits[0].details.contains("example.org") && !audits[0].details.contains(OLD));

        // A second run finds nothing (idempotent) and keeps the held conversation until released.
        let again = retention::run(
            &fixture.opened.store,
            &fixture.opened.master,
            Some(&fixture.handle),
            &retention::PurgeOptions::default(),
        )
        .await
        .expect("purge again");
        assert_eq!(again.total().conversations, 0);
        set_hold(
            &fixture.opened.store,
            &fixture.opened.master,
            &HoldTarget::Conversation(held),
            None,
        )
        .await
        .expect("release");
        let released = retention::run(
            &fixture.opened.store,
            &fixture.opened.master,
            Some(&fixture.handle),
            &retention::PurgeOptions::default(),
        )
        .await
        .expect("purge after release");
        assert_eq!(
            released.total().conversations,
            1,
            "{name}: released hold is purged"
        );
        assert_eq!(
            fixture.hits(FRESH),
            1,
            "{name}: fresh conversation survives"
        );

        if name == "sqlite" {
            // secure_delete + checkpoint: neither the wrapped key nor any sealed body of the purged
            // conversation is left in the database files.
            fixture
                .opened
                .store
                .clone()
                .close()
                .await
                .expect("checkpoint");
            let bytes = sqlite_bytes(&data);
            assert!(contains(&bytes, b"SQLite format 3"), "positive control");
            assert!(
                !contains(&bytes, &old_key_row.wrapped_key),
                "the purged wrapped data key lingers in the SQLite file"
            );
            for row in &old_rows {
                if let Some(body) = &row.body_sealed {
                    assert!(
                        !contains(&bytes, body),
                        "a purged sealed body lingers in SQLite"
                    );
                }
            }
            drop(fixture.handle);
            if let Some(thread) = { fixture.thread } {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
        } else {
            fixture.close().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_hold_keeps_everything_and_config_retention_is_not_reset() {
    let dir = tempfile::tempdir().expect("tempdir");
    for backend in common::backends(dir.path()).await {
        let data = dir.path().join(backend.name);
        std::fs::create_dir_all(&data).expect("data dir");
        let url = if backend.name == "sqlite" {
            format!("sqlite://{}", data.join("inboxd.db").display())
        } else {
            backend.url.clone()
        };
        let fixture = Fixture::new(
            &data,
            &url,
            &[(
                "1.old.host",
                with_attachment("old@x", "ann@example.org", "help@x", "Old", OLD),
            )],
        )
        .await;
        let old = fixture.conversation_of(OLD);
        fixture.age(old, 400).await;
        set_retention(&fixture.opened.store, "help", Some(30))
            .await
            .expect("retention");
        // The config file sets no retention_days: re-reading it must not reset the admin's window.
        mailboxes::upsert_from_config(&fixture.opened.store.db, &fixture.config.mailboxes[0])
            .await
            .expect("reconcile");
        set_hold(
            &fixture.opened.store,
            &fixture.opened.master,
            &HoldTarget::Mailbox("help".to_string()),
            Some("audit"),
        )
        .await
        .expect("mailbox hold");
        let held = retention::run(
            &fixture.opened.store,
            &fixture.opened.master,
            Some(&fixture.handle),
            &retention::PurgeOptions::default(),
        )
        .await
        .expect("purge");
        assert_eq!(held.held_mailboxes, vec!["help".to_string()]);
        assert_eq!(
            held.total().conversations,
            0,
            "{}: held mailbox kept",
            backend.name
        );
        let holds = inboxd::purge::hold::list_holds(&fixture.opened.store, &fixture.opened.master)
            .await
            .expect("holds");
        assert_eq!(holds.len(), 1);
        assert_eq!(holds[0].reason.as_deref(), Some("audit"), "reason decrypts");
        set_hold(
            &fixture.opened.store,
            &fixture.opened.master,
            &HoldTarget::Mailbox("help".to_string()),
            None,
        )
        .await
        .expect("release");
        let purged = retention::run(
            &fixture.opened.store,
            &fixture.opened.master,
            Some(&fixture.handle),
            &retention::PurgeOptions::default(),
        )
        .await
        .expect("purge");
        assert_eq!(
            purged.total().conversations,
            1,
            "{}: window of 30 days applied",
            backend.name
        );
        assert!(
            set_hold(
                &fixture.opened.store,
                &fixture.opened.master,
                &HoldTarget::Conversation(old),
                Some("too late")
            )
            .await
            .is_err(),
            "a purged conversation cannot be held"
        );
        fixture.close().await;
    }
}

fn tar_entries(path: &Path) -> HashMap<String, Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).expect("archive");
    let mut archive = tar::Archive::new(file);
    let mut out = HashMap::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("read entry");
        out.insert(name, bytes);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_is_exported_then_erased_except_under_legal_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    for backend in common::backends(dir.path()).await {
        let data = dir.path().join(backend.name);
        std::fs::create_dir_all(&data).expect("data dir");
        let url = if backend.name == "sqlite" {
            format!("sqlite://{}", data.join("inboxd.db").display())
        } else {
            backend.url.clone()
        };
        let alice_first = with_attachment(
            "x1@x",
            "Alice@Example.org",
            "help@x",
            "Shared",
            "alicetext1",
        );
        let fixture = Fixture::new(
            &data,
            &url,
            &[
                // A shared conversation: Alice writes, Bob follows up.
                ("1.x.host", alice_first.clone()),
                (
                    "2.x.host",
                    reply("x2@x", "x1@x", "bob@example.org", "Shared", "bobtext2"),
                ),
                // Alice alone.
                (
                    "3.y.host",
                    reply("y1@x", "none@x", "alice@example.org", "Solo", "alicetext3"),
                ),
                // Unrelated.
                (
                    "4.z.host",
                    reply("z1@x", "none2@x", "carl@example.org", "Other", "carltext4"),
                ),
                // Alice, on legal hold.
                (
                    "5.w.host",
                    reply("w1@x", "none3@x", "alice@example.org", "Held", "alicetext5"),
                ),
            ],
        )
        .await;
        let name = backend.name;
        let shared = fixture.conversation_of("bobtext2");
        let solo = fixture.conversation_of("alicetext3");
        let held = fixture.conversation_of("alicetext5");
        set_hold(
            &fixture.opened.store,
            &fixture.opened.master,
            &HoldTarget::Conversation(held),
            Some("case"),
        )
        .await
        .expect("hold");
        let shared_key_before = data_key::Entity::find_by_id(shared)
            .one(&fixture.opened.store.db)
            .await
            .expect("query")
            .expect("key");
        let shared_rows_before = message::Entity::find()
            .filter(message::Column::ConversationId.eq(shared))
            .all(&fixture.opened.store.db)
            .await
            .expect("rows");
        assert_eq!(shared_rows_before.len(), 2);

        // Export: every message involving Alice (any case), as .eml plus attachments and a manifest.
        let out = data.join("alice.tar");
        let exported = subject::export(
            &fixture.opened.store,
            &fixture.opened.master,
            "ALICE@example.org",
            &out,
            "test",
        )
        .await
        .expect("export");
        assert_eq!(
            (exported.messages, exported.conversations),
            (3, 3),
            "{name}: {exported:?}"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&out).expect("file").permissions().mode() & 0o777,
            0o600
        );
        let entries = tar_entries(&out);
        let manifest: serde_json::Value =
            serde_json::from_slice(&entries["manifest.json"]).expect("manifest");
        assert_eq!(manifest["conversations"].as_array().map(Vec::len), Some(3));
        let emls: Vec<&Vec<u8>> = entries
            .iter()
            .filter(|(path, _)| path.ends_with(".eml"))
            .map(|(_, bytes)| bytes)
            .collect();
        assert_eq!(emls.len(), 3, "{name}: three .eml files");
        assert!(
            emls.iter().any(|bytes| **bytes == alice_first),
            "original bytes exported"
        );
        assert!(
            !emls.iter().any(|bytes| contains(bytes, b"bobtext2")),
            "Bob's mail not exported"
        );
        let attachment = entries
            .iter()
            .find(|(path, _)| path.contains("/attachments/"))
            .expect("attachment exported");
        assert!(
            attachment.0.ends_with("notes_x1_x.txt"),
            "safe name: {}",
            attachment.0
        );
        assert!(!attachment.0.contains(".."));
        assert!(contains(attachment.1, b"attached text of x1@x"));

        // Erase: Alice's messages go; Bob's stays (re-keyed); the held conversation is reported.
        let erased = subject::erase(
            &fixture.opened.store,
            &fixture.opened.master,
            Some(&fixture.handle),
            "alice@example.org",
            "test",
        )
        .await
        .expect("erase");
        assert_eq!(
            (erased.erased.messages, erased.erased.conversations),
            (2, 1),
            "{name}: {erased:?}"
        );
        assert_eq!(erased.held_conversations, vec![held]);
        assert_eq!(erased.held_messages, 1);
        let shared_view =
            read::conversation(&fixture.opened.store.db, &fixture.opened.master, shared)
                .await
                .expect("shared conversation still decrypts");
        assert_eq!(shared_view.messages.len(), 1);
        assert!(shared_view.messages[0].body.text.contains("bobtext2"));
        assert!(
            read::conversation(&fixture.opened.store.db, &fixture.opened.master, solo)
                .await
                .is_err()
        );
        let shared_key_after = data_key::Entity::find_by_id(shared)
            .one(&fixture.opened.store.db)
            .await
            .expect("query")
            .expect("key");
        assert_ne!(
            shared_key_before.wrapped_key, shared_key_after.wrapped_key,
            "re-keyed"
        );
        let kept = &shared_view.messages[0].id;
        let alice_row = shared_rows_before
            .iter()
            .find(|row| &row.id != kept)
            .expect("Alice's row copied before");
        assert!(
            read::content_key(&fixture.opened.store.db, &fixture.opened.master, alice_row)
                .await
                .is_err(),
            "{name}: a copy of an erased row no longer decrypts under the new key"
        );
        assert_eq!(
            fixture.hits("alicetext1"),
            0,
            "{name}: erased mail not searchable"
        );
        assert_eq!(fixture.hits("alicetext3"), 0);
        assert_eq!(fixture.hits("alicetext5"), 1, "held mail stays");
        assert_eq!(fixture.hits("bobtext2"), 1);
        assert_eq!(fixture.hits("carltext4"), 1);
        assert!(
            !fixture.index_holds("alicetext1"),
            "{name}: physically gone from the index"
        );
        let count = conversation::Entity::find()
            .filter(conversation::Column::MailboxId.eq(fixture.mailbox_id))
            .count(&fixture.opened.store.db)
            .await
            .expect("count");
        assert_eq!(count, 3, "{name}: shared, unrelated and held remain");
        let audits: Vec<String> = audit_entry::Entity::find()
            .all(&fixture.opened.store.db)
            .await
            .expect("audit")
            .into_iter()
            .map(|row| format!("{} {:?} {}", row.action, row.target, row.details))
            .collect();
        assert!(audits.iter().any(|a| a.starts_with("subject.export")));
        assert!(audits.iter().any(|a| a.starts_with("subject.erase")));
        assert!(
            audits.iter().all(|a| !a.to_lowercase().contains("alice")),
            "{audits:?}"
        );
        fixture.close().await;
    }
}

#[test]
fn safe_file_names_cannot_escape() {
    assert_eq!(subject::safe_file_name("../../etc/passwd"), "_._etc_passwd");
    assert_eq!(subject::safe_file_name("..."), "attachment");
    assert_eq!(
        subject::safe_file_name("Rechnung März.pdf"),
        "Rechnung_M_rz.pdf"
    );
    assert!(subject::safe_file_name(&"a".repeat(500)).len() <= 100);
    assert!(subject::validate_address("not an address").is_err());
    assert!(subject::validate_address("a@b").is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_mailbox_deletes_through_the_purge_path_and_respects_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    for backend in common::backends(dir.path()).await {
        let data = dir.path().join(backend.name);
        std::fs::create_dir_all(&data).expect("data dir");
        let url = if backend.name == "sqlite" {
            format!("sqlite://{}", data.join("inboxd.db").display())
        } else {
            backend.url.clone()
        };
        let fixture = Fixture::new(
            &data,
            &url,
            &[
                (
                    "1.a.host",
                    with_attachment("a@x", "ann@example.org", "help@x", "One", OLD),
                ),
                (
                    "2.b.host",
                    reply("b@x", "none@x", "bo@example.org", "Two", HELD),
                ),
            ],
        )
        .await;
        let name = backend.name;
        let first = fixture.conversation_of(OLD);
        let mut blobs = fixture.raw_copies(first).await;
        blobs.extend(fixture.raw_copies(fixture.conversation_of(HELD)).await);
        assert_eq!(blobs.len(), 2);
        assert_eq!(fixture.raw_copies_left(&blobs).await, 2);
        set_hold(
            &fixture.opened.store,
            &fixture.opened.master,
            &HoldTarget::Conversation(first),
            Some("case"),
        )
        .await
        .expect("hold");
        let refused = inboxd::purge::erase::remove_mailbox(
            &fixture.opened.store,
            Some(&fixture.handle),
            "help",
            "test",
        )
        .await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|err| err.to_string().contains("legal hold")),
            "{name}: a mailbox with held conversations is not removed"
        );
        assert_eq!(fixture.hits(OLD), 1);
        set_hold(
            &fixture.opened.store,
            &fixture.opened.master,
            &HoldTarget::Conversation(first),
            None,
        )
        .await
        .expect("release");
        let erased = inboxd::purge::erase::remove_mailbox(
            &fixture.opened.store,
            Some(&fixture.handle),
            "help",
            "test",
        )
        .await
        .expect("removed");
        assert_eq!((erased.conversations, erased.messages), (2, 2), "{name}");
        assert_eq!(
            fixture.raw_copies_left(&blobs).await,
            0,
            "{name}: raw copies gone"
        );
        assert_eq!(
            fixture.hits(OLD) + fixture.hits(HELD),
            0,
            "{name}: index entries gone"
        );
        assert!(
            !fixture.index_holds(OLD),
            "{name}: physically gone from the index"
        );
        assert!(
            mailboxes::by_name(&fixture.opened.store.db, "help")
                .await
                .expect("query")
                .is_none()
        );
        assert_eq!(
            data_key::Entity::find()
                .count(&fixture.opened.store.db)
                .await
                .expect("count"),
            0,
            "{name}: every data key destroyed"
        );
        fixture.close().await;
    }
}
