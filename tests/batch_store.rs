//! Storing a whole batch at once (multi-row statements, cached thread ids) gives exactly what storing the
//! same messages one batch each gives: same conversations, counters, thread ids and duplicates, on SQLite
//! and PostgreSQL. The batch covers every threading path: a child before its parent, a merge, the
//! subject fallback, a conversation created and joined within the batch, a duplicate, and a delivery
//! report (which takes the per-message path) followed by a reply that must still find its thread.
mod common;

use std::collections::BTreeSet;
use std::path::Path;

use inboxd::app;
use inboxd::ingest::SyncReport;
use inboxd::ingest::commit::Ingestor;
use inboxd::ingest::maildir::MaildirSync;
use inboxd::store::entities::{conversation, message, message_address, thread_id};
use inboxd::store::{mailboxes, read};
use sea_orm::{EntityTrait, PaginatorTrait};
use tokio_util::sync::CancellationToken;

const BOUNCE: &str = "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r
To: s@example.com\r
Subject: Undelivered Mail Returned to Sender\r
Message-ID: <bounce-1@mx.example.org>\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B1\"\r
\r
--B1\r
Content-Type: text/plain\r
\r
Your message could not be delivered.\r
\r
--B1\r
Content-Type: message/delivery-status\r
\r
Reporting-MTA: dns; mx.example.org\r
\r
Final-Recipient: rfc822; gone@example.net\r
Action: failed\r
Status: 5.1.1\r
\r
--B1--\r
";

/// The messages, in Maildir name order (the order they are stored in).
fn messages() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        // The grandchild first, referring only to its (unseen) parent.
        ("01.c.host", b"Message-ID: <c@x>\r\nIn-Reply-To: <b@x>\r\nFrom: a@example.org\r\nTo: s@example.com\r\nSubject: Re: printer\r\n\r\nthird\r\n".to_vec()),
        ("02.a.host", common::message("a@x", "printer", "a@example.org", "first")),
        // Links the two conversations above: a merge.
        ("03.b.host", b"Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\nReferences: <a@x>\r\nFrom: s@example.com\r\nTo: a@example.org\r\nSubject: Re: printer\r\n\r\nsecond\r\n".to_vec()),
        // No reference, a reply marker, from a participant: joins by subject.
        ("04.d.host", b"Message-ID: <d@x>\r\nFrom: a@example.org\r\nTo: s@example.com\r\nSubject: RE: Printer\r\n\r\nfourth\r\n".to_vec()),
        // Same subject without a reply marker: a conversation of its own.
        ("05.e.host", b"Message-ID: <e@x>\r\nFrom: a@example.org\r\nTo: s@example.com\r\nSubject: printer\r\n\r\nfifth\r\n".to_vec()),
        // The same bytes as 02: a duplicate.
        ("06.a-again.host", common::message("a@x", "printer", "a@example.org", "first")),
        // Joins the conversation 05 created in this batch.
        ("07.f.host", b"Message-ID: <f@x>\r\nIn-Reply-To: <e@x>\r\nFrom: s@example.com\r\nTo: a@example.org\r\nSubject: Re: printer\r\n\r\nsixth\r\n".to_vec()),
        // A delivery report: stored message by message, the cache reloaded afterwards.
        ("08.bounce.host", BOUNCE.as_bytes().to_vec()),
        // After the report: still finds the merged conversation.
        ("09.g.host", b"Message-ID: <g@x>\r\nIn-Reply-To: <d@x>\r\nReferences: <a@x> <d@x>\r\nFrom: a@example.org\r\nTo: s@example.com\r\nSubject: Re: printer\r\n\r\nseventh\r\n".to_vec()),
        // Two messages of one new thread in the same batch, the child first.
        ("10.i.host", b"Message-ID: <i@x>\r\nIn-Reply-To: <h@x>\r\nFrom: z@example.org\r\nTo: s@example.com\r\nSubject: Re: scanner\r\n\r\nnine\r\n".to_vec()),
        ("11.h.host", common::message("h@x", "scanner", "z@example.org", "eight")),
    ]
}

/// What the store says about the conversations, independent of ids: for each conversation, its
/// messages (by their Maildir names), message count, unmatched-bounce flag and thread-id count.
type Shape = BTreeSet<(Vec<String>, i32, bool, usize)>;

async fn ingest(data: &Path, url: &str, batch_size: usize) -> (Shape, SyncReport, u64) {
    let maildir = data.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    for (name, raw) in messages() {
        std::fs::write(maildir.join("new").join(name), raw).expect("write message");
    }
    let config = common::config(
        data,
        url,
        &format!(
            "batch_size = {batch_size}\n[[mailbox]]\nname = \"local\"\nkind = \"maildir\"\npath = \"{}\"\n",
            maildir.display()
        ),
    );
    let opened = app::open(&config).await.expect("open");
    let mailbox_id = mailboxes::upsert_from_config(&opened.store.db, &config.mailboxes[0])
        .await
        .expect("mailbox row");
    let report = sync(&opened, &config, mailbox_id).await;
    let db = &opened.store.db;
    let names_of = |text: &str| -> String {
        let first = text.lines().next().unwrap_or_default().to_string();
        messages()
            .into_iter()
            .find(|(_, raw)| !first.is_empty() && String::from_utf8_lossy(raw).contains(&first))
            .map_or_else(|| "?".to_string(), |(name, _)| name.to_string())
    };
    let thread_ids = thread_id::Entity::find().all(db).await.expect("thread ids");
    let mut shape = Shape::new();
    let mut stored = 0;
    for row in conversation::Entity::find()
        .all(db)
        .await
        .expect("conversations")
    {
        let view = read::conversation(db, &opened.master, row.id)
            .await
            .expect("every message decrypts under its conversation's key");
        let mut names: Vec<String> = view
            .messages
            .iter()
            .map(|message| names_of(&message.body.text))
            .collect();
        names.sort();
        stored += names.len();
        let ids = thread_ids
            .iter()
            .filter(|id| id.conversation_id == row.id)
            .count();
        shape.insert((names, row.message_count, row.unmatched_bounce, ids));
    }
    let rows = message::Entity::find().count(db).await.expect("messages");
    assert_eq!(
        rows, stored as u64,
        "every message row is in a conversation"
    );
    let addresses = message_address::Entity::find()
        .count(db)
        .await
        .expect("addresses");
    opened.store.clone().close().await.expect("close");
    (shape, report, addresses)
}

#[tokio::test]
async fn one_batch_stores_what_one_message_per_batch_stores() {
    let dir = tempfile::tempdir().expect("tempdir");
    for backend in common::backends(dir.path()).await {
        let mut results = Vec::new();
        for batch_size in [1, 100] {
            let data = dir.path().join(format!("{}-{batch_size}", backend.name));
            std::fs::create_dir_all(&data).expect("data");
            let url = if backend.name == "sqlite" {
                format!("sqlite://{}", data.join("inboxd.db").display())
            } else {
                // One fresh database per run.
                common::fresh_postgres()
                    .await
                    .expect("postgres reachable a moment ago")
            };
            results.push(ingest(&data, &url, batch_size).await);
        }
        let (one_by_one, report_one, addresses_one) = &results[0];
        let (batched, report_batched, addresses_batched) = &results[1];
        assert_eq!(
            batched, one_by_one,
            "{}: conversations differ",
            backend.name
        );
        assert_eq!(report_batched, report_one, "{}", backend.name);
        assert_eq!(addresses_batched, addresses_one, "{}", backend.name);
        assert_eq!(report_batched.stored, 10, "{}", backend.name);
        assert_eq!(report_batched.duplicates, 1, "{}", backend.name);
        let sizes: Vec<usize> = batched.iter().map(|(names, ..)| names.len()).collect();
        assert_eq!(
            batched.len(),
            4,
            "{}: a+b+c+d+g, e+f, the bounce, h+i: {batched:?}",
            backend.name
        );
        assert!(sizes.contains(&5) && sizes.contains(&2), "{batched:?}");
        let merged = batched
            .iter()
            .find(|(names, ..)| names.len() == 5)
            .expect("merged conversation");
        assert_eq!(merged.1, 5, "{}: message_count of the merge", backend.name);
        assert!(
            batched.iter().any(|(names, _, unmatched, _)| *unmatched
                && names.iter().any(|name| name.starts_with("08"))),
            "{}: the bounce is flagged unmatched: {batched:?}",
            backend.name
        );
    }
}

/// Renames every message file of `maildir` to a fresh unique name, so that the next sync sees them as
/// new files and only the content hashes can tell that they are already known.
fn rename_all(maildir: &Path, round: usize) {
    for sub in ["new", "cur"] {
        let dir = maildir.join(sub);
        for entry in std::fs::read_dir(&dir).expect("read maildir") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            std::fs::rename(&path, dir.join(format!("r{round}-{name}"))).expect("rename");
        }
    }
}

/// One pass of the Maildir mailbox of `config` into `opened`.
async fn sync(
    opened: &app::Opened,
    config: &inboxd::config::Config,
    mailbox_id: uuid::Uuid,
) -> SyncReport {
    let mailbox = &config.mailboxes[0];
    let inboxd::config::MailboxSource::Maildir { path } = &mailbox.source else {
        panic!("maildir mailbox expected");
    };
    MaildirSync {
        name: mailbox.name.clone(),
        mailbox_id,
        path: path.clone(),
        ingest: config.ingest.clone(),
        // A new ingestor each time (it reads the store's legacy content-hash flag afresh).
        ingestor: Ingestor::new(opened.store.clone(), opened.master.clone()),
    }
    .sync_once(&CancellationToken::new())
    .await
    .expect("sync")
}

/// Content hashes are keyed BLAKE3 (`b3:`). A store from before them holds HMAC-SHA256 hashes in its
/// messages and tombstones: the migration flags such a store, and while the flag is set a message stored
/// or erased under its old hash is still recognised (no duplicate, no erased message brought back).
/// Without the flag the old hashes would not be looked up: the control at the end shows that this is
/// what the flag is for.
#[tokio::test]
async fn messages_stored_or_erased_under_legacy_content_hashes_are_still_recognised() {
    use inboxd::store::entities::tombstone;
    use inboxd::store::messages::holds_legacy_content_hashes;
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, QueryFilter};

    let dir = tempfile::tempdir().expect("tempdir");
    for backend in common::backends(dir.path()).await {
        let data = dir.path().join(format!("legacy-{}", backend.name));
        let maildir = data.join("Maildir");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
        }
        let stored_raw = common::message("kept@x", "invoice", "a@example.org", "stored before");
        let erased_raw = common::message("gone@x", "refund", "b@example.org", "erased before");
        let new_raw = common::message("new@x", "printer", "c@example.org", "stored now");
        std::fs::write(maildir.join("new/1.kept.host"), &stored_raw).expect("write");
        std::fs::write(maildir.join("new/2.new.host"), &new_raw).expect("write");
        let url = if backend.name == "sqlite" {
            format!("sqlite://{}", data.join("inboxd.db").display())
        } else {
            common::fresh_postgres()
                .await
                .expect("postgres reachable a moment ago")
        };
        let config = common::config(
            &data,
            &url,
            &format!(
                "[[mailbox]]\nname = \"local\"\nkind = \"maildir\"\npath = \"{}\"\n",
                maildir.display()
            ),
        );
        let opened = app::open(&config).await.expect("open");
        let db = &opened.store.db;
        let name = backend.name;
        assert!(
            !holds_legacy_content_hashes(db).await.expect("flag"),
            "{name}: a new store has no legacy hashes"
        );
        let mailbox_id = mailboxes::upsert_from_config(db, &config.mailboxes[0])
            .await
            .expect("mailbox row");
        let first = sync(&opened, &config, mailbox_id).await;
        assert_eq!(first.stored, 2, "{name}");
        let rows = message::Entity::find().all(db).await.expect("messages");
        assert!(
            rows.iter().all(|row| row.content_hash.starts_with("b3:")),
            "{name}: new hashes are keyed BLAKE3"
        );

        // Make it a store from before: "kept" stored under its HMAC-SHA256 hash, "gone" erased under
        // its (a content tombstone), and the store migrated from there.
        let hasher = opened.master.lookup_hasher();
        let kept_hash = hasher.content_hash(&stored_raw);
        message::Entity::update_many()
            .col_expr(
                message::Column::ContentHash,
                sea_orm::sea_query::Expr::value(hasher.legacy_content_hash(&stored_raw)),
            )
            .filter(message::Column::ContentHash.eq(kept_hash))
            .exec(db)
            .await
            .expect("legacy hash");
        tombstone::ActiveModel {
            mailbox_id: Set(mailbox_id),
            source_key: Set(format!(
                "content:{}",
                hasher.legacy_content_hash(&erased_raw)
            )),
            created_at: Set(inboxd::clock::now()),
        }
        .insert(db)
        .await
        .expect("legacy tombstone");
        db.execute_unprepared("DROP TABLE store_flags")
            .await
            .expect("drop");
        db.execute_unprepared(
            "DELETE FROM seaql_migrations WHERE version = 'm20261128_000005_create_store_flags'",
        )
        .await
        .expect("forget the migration");
        assert_eq!(opened.store.migrate().await.expect("migrate"), 1, "{name}");
        assert!(
            holds_legacy_content_hashes(db).await.expect("flag"),
            "{name}: the migration flags a store that already holds messages"
        );

        // The same mail again under new file names, plus the erased message: nothing is stored.
        std::fs::write(maildir.join("new/3.gone.host"), &erased_raw).expect("write");
        rename_all(&maildir, 1);
        let again = sync(&opened, &config, mailbox_id).await;
        assert_eq!(
            (again.stored, again.duplicates),
            (0, 3),
            "{name}: kept (legacy hash), gone (legacy tombstone) and new (b3) are all recognised"
        );

        // Control: without the flag the legacy hashes are not looked up, and both come back.
        db.execute_unprepared("DELETE FROM store_flags")
            .await
            .expect("clear flag");
        rename_all(&maildir, 2);
        let control = sync(&opened, &config, mailbox_id).await;
        assert_eq!(
            (control.stored, control.duplicates),
            (2, 1),
            "{name}: only the b3 hash is recognised without the flag"
        );
        opened.store.clone().close().await.expect("close");
    }
}
