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
    let mailbox = &config.mailboxes[0];
    let mailbox_id = mailboxes::upsert_from_config(&opened.store.db, mailbox)
        .await
        .expect("mailbox row");
    let report = MaildirSync {
        name: mailbox.name.clone(),
        mailbox_id,
        path: maildir.clone(),
        ingest: config.ingest.clone(),
        ingestor: Ingestor::new(opened.store.clone(), opened.master.clone()),
    }
    .sync_once(&CancellationToken::new())
    .await
    .expect("sync");
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
