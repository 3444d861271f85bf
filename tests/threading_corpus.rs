//! Threading judged against real threads: the notmuch corpora (LKML and notmuch's own test mail) with
//! labels derived from their References graph. Each corpus is ingested as a Maildir into its own mailbox;
//! a labelled thread counts as rebuilt exactly when its messages form exactly one conversation holding
//! nothing else.
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use inboxd::app;
use inboxd::ingest::commit::Ingestor;
use inboxd::ingest::maildir::MaildirSync;
use inboxd::store::entities::message;
use inboxd::store::mailboxes;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/threads")
}

#[tokio::test]
async fn notmuch_threads_are_rebuilt() {
    let labels: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("labels.json")).expect("labels"))
            .expect("json");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("inboxd.db").display());
    let mut exact_total = 0;
    let mut thread_total = 0;
    let mut config_text = String::new();
    let corpora = labels["corpora"].as_object().expect("corpora");
    for name in corpora.keys() {
        let maildir = dir.path().join("src").join(name);
        std::fs::create_dir_all(maildir.join("cur")).expect("maildir");
        std::fs::create_dir_all(maildir.join("new")).expect("maildir");
        for entry in std::fs::read_dir(fixtures().join(name)).expect("corpus") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), maildir.join("cur").join(entry.file_name())).expect("copy");
        }
        config_text.push_str(&format!(
            "[[mailbox]]\nname = \"{name}\"\nkind = \"maildir\"\npath = \"{}\"\n",
            maildir.display()
        ));
    }
    let config = common::config(dir.path(), &url, &config_text);
    let opened = app::open(&config).await.expect("open");
    let ingestor = Ingestor::new(opened.store.clone(), Arc::clone(&opened.master));
    let hasher = opened.master.lookup_hasher();
    for mailbox in &config.mailboxes {
        let id = mailboxes::upsert_from_config(&opened.store.db, mailbox)
            .await
            .expect("row");
        let inboxd::config::MailboxSource::Maildir { path } = &mailbox.source else {
            unreachable!()
        };
        let report = MaildirSync {
            name: mailbox.name.clone(),
            mailbox_id: id,
            path: path.clone(),
            ingest: config.ingest.clone(),
            ingestor: ingestor.clone(),
        }
        .sync_once(&CancellationToken::new())
        .await
        .expect("sync");
        let corpus = &corpora[&mailbox.name];
        // message-id hash -> conversation
        let rows = message::Entity::find()
            .filter(message::Column::MailboxId.eq(id))
            .all(&opened.store.db)
            .await
            .expect("rows");
        let by_hash: HashMap<String, Uuid> = rows
            .iter()
            .filter_map(|row| {
                row.message_id_hash
                    .clone()
                    .map(|hash| (hash, row.conversation_id))
            })
            .collect();
        let conversation_of = |message_id: &str| {
            let bare = message_id.trim_start_matches('<').trim_end_matches('>');
            by_hash
                .get(&hasher.hash("message-id", bare.as_bytes()).to_hex())
                .copied()
        };
        let mut members: BTreeMap<Uuid, BTreeSet<String>> = BTreeMap::new();
        for (file, info) in corpus["messages"].as_object().expect("messages") {
            if let Some(conversation) = info["message_id"].as_str().and_then(conversation_of) {
                members
                    .entry(conversation)
                    .or_default()
                    .insert(file.clone());
            }
        }
        let mut exact = 0;
        let threads = corpus["threads"].as_array().expect("threads");
        for thread in threads {
            let files: BTreeSet<String> = thread["files"]
                .as_array()
                .expect("files")
                .iter()
                .filter_map(|file| file.as_str().map(str::to_string))
                .collect();
            let conversations: BTreeSet<Uuid> = thread["message_ids"]
                .as_array()
                .expect("ids")
                .iter()
                .filter_map(|id| id.as_str().and_then(conversation_of))
                .collect();
            if conversations.len() == 1
                && conversations
                    .first()
                    .and_then(|conversation| members.get(conversation))
                    .is_some_and(|held| *held == files)
            {
                exact += 1;
            }
        }
        eprintln!(
            "{}: {} messages stored, {exact} of {} threads rebuilt exactly",
            mailbox.name,
            report.stored,
            threads.len()
        );
        exact_total += exact;
        thread_total += threads.len();
    }
    eprintln!("threading: {exact_total} of {thread_total} threads rebuilt exactly");
    assert!(thread_total >= 30, "the labels cover the corpora");
    assert!(
        exact_total * 100 >= thread_total * 90,
        "at least 90% of the threads must be rebuilt exactly ({exact_total}/{thread_total})"
    );
}
