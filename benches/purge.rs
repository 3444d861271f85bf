//! Purge benchmark: stores N expired conversations (default 100,000; `cargo bench --bench purge -- N`)
//! through the real ingest path (Maildir source, parse, seal, blobs, index), then measures the ingest
//! rate of a second mailbox on its own (baseline) and a full retention purge of the N conversations
//! while a third mailbox ingests, and reports the purge time and the ingest rate during the purge
//! relative to the baseline (targets: purge < 60 s for 100,000 conversations, ingest ≥ 0.5 of its
//! normal rate).
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use inboxd::app;
use inboxd::config::{Config, MailboxSource};
use inboxd::ingest::commit::Ingestor;
use inboxd::ingest::maildir::MaildirSync;
use inboxd::purge::hold::set_retention;
use inboxd::purge::retention::{self, PurgeOptions};
use inboxd::search::indexer::{IndexHandle, open_index};
use inboxd::store::entities::{conversation, message};
use inboxd::store::mailboxes;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn maildir(root: &Path, name: &str, count: usize, tag: &str) -> PathBuf {
    let dir = root.join(name);
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).expect("maildir");
    }
    for n in 0..count {
        let raw = format!(
            "Message-ID: <{tag}-{n}@bench.example>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0100\r\nFrom: Customer {n} <c{n}@example.org>\r\nTo: support@example.com\r\nSubject: {tag} order {n} did not arrive\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello, my order {n} has not arrived yet. Could you check the tracking number?\r\nThanks, customer {n}\r\n"
        );
        std::fs::write(dir.join("new").join(format!("{n}.{tag}.bench")), raw).expect("write");
    }
    dir
}

fn sync_for(
    config: &Config,
    opened: &app::Opened,
    index: &IndexHandle,
    name: &str,
    id: Uuid,
) -> MaildirSync {
    let mailbox = config
        .mailboxes
        .iter()
        .find(|m| m.name == name)
        .expect("mailbox in config");
    let MailboxSource::Maildir { path } = &mailbox.source else {
        panic!("maildir expected");
    };
    MaildirSync {
        name: name.to_string(),
        mailbox_id: id,
        path: path.clone(),
        ingest: config.ingest.clone(),
        ingestor: Ingestor::new(opened.store.clone(), Arc::clone(&opened.master))
            .with_index(index.clone()),
    }
}

async fn count(opened: &app::Opened, mailbox: Uuid) -> u64 {
    message::Entity::find()
        .filter(message::Column::MailboxId.eq(mailbox))
        .count(&opened.store.db)
        .await
        .expect("count")
}

/// Messages of `mailbox` stored per second over `window`, measured while `during` runs (or for the
/// window alone).
async fn ingest_rate(opened: &app::Opened, mailbox: Uuid, window: Duration) -> f64 {
    let before = count(opened, mailbox).await;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let after = count(opened, mailbox).await;
    (after - before) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    // INBOXD_BENCH_LOG=inboxd::purge=debug,inboxd::ingest=debug shows per-batch timings.
    if let Ok(filter) = std::env::var("INBOXD_BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(n));
}

async fn run(n: usize) {
    let root = tempfile::tempdir().expect("tempdir");
    // The baseline needs a few seconds of ingest; the concurrent ingest must outlast the purge.
    // (The baseline mailbox must still be ingesting when its window closes: checked below.)
    let baseline_count = 60_000;
    let live_count = n.max(20_000);
    println!("generating {n} expired, {baseline_count} + {live_count} live messages…");
    let old_dir = maildir(root.path(), "old", n, "old");
    let live_a = maildir(root.path(), "live-a", baseline_count, "livea");
    let live_b = maildir(root.path(), "live-b", live_count, "liveb");
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).expect("data");
    let text = format!(
        "data_dir = \"{}\"\n[[mailbox]]\nname = \"old\"\nkind = \"maildir\"\npath = \"{}\"\n[[mailbox]]\nname = \"live-a\"\nkind = \"maildir\"\npath = \"{}\"\n[[mailbox]]\nname = \"live-b\"\nkind = \"maildir\"\npath = \"{}\"\n",
        data.display(),
        old_dir.display(),
        live_a.display(),
        live_b.display()
    );
    let config_path = root.path().join("inboxd.toml");
    std::fs::write(&config_path, text).expect("config");
    let config = Config::load(&config_path).expect("config");
    let opened = app::open(&config).await.expect("open");
    let (index, _) = open_index(
        &config.index_dir(),
        &opened.master,
        config.search.cache_bytes,
    )
    .expect("index");
    let (handle, thread) = IndexHandle::start(index).expect("writer");
    let mut ids = std::collections::HashMap::new();
    for mailbox in &config.mailboxes {
        let id = mailboxes::upsert_from_config(&opened.store.db, mailbox)
            .await
            .expect("row");
        ids.insert(mailbox.name.clone(), id);
    }

    let started = Instant::now();
    let report = sync_for(&config, &opened, &handle, "old", ids["old"])
        .sync_once(&CancellationToken::new())
        .await
        .expect("ingest");
    handle.flush().await.expect("flush");
    println!(
        "stored {} messages in {:.1} s ({:.0} msg/s, with indexing)",
        report.stored,
        started.elapsed().as_secs_f64(),
        report.stored as f64 / started.elapsed().as_secs_f64()
    );
    conversation::Entity::update_many()
        .col_expr(
            conversation::Column::LastActivityAt,
            Expr::value(inboxd::clock::now() - chrono::Duration::days(400)),
        )
        .filter(conversation::Column::MailboxId.eq(ids["old"]))
        .exec(&opened.store.db)
        .await
        .expect("age");
    set_retention(&opened.store, "old", Some(365))
        .await
        .expect("retention");

    // Baseline: live-a ingests alone.
    let window = Duration::from_secs(8);
    let baseline_sync = sync_for(&config, &opened, &handle, "live-a", ids["live-a"]);
    let baseline_task =
        tokio::spawn(async move { baseline_sync.sync_once(&CancellationToken::new()).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = ingest_rate(&opened, ids["live-a"], window).await;
    let baseline_finished = baseline_task.is_finished();
    let _ = baseline_task.await;
    println!(
        "baseline ingest: {baseline:.0} msg/s{}",
        if baseline_finished {
            " (WARNING: the baseline ingest ended inside its window, so this rate is too low)"
        } else {
            ""
        }
    );

    // The purge, with live-b ingesting meanwhile.
    let live_sync = sync_for(&config, &opened, &handle, "live-b", ids["live-b"]);
    let live_task =
        tokio::spawn(async move { live_sync.sync_once(&CancellationToken::new()).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = count(&opened, ids["live-b"]).await;
    let purge_started = Instant::now();
    let report = retention::run(
        &opened.store,
        &opened.master,
        Some(&handle),
        &PurgeOptions {
            batch_size: config.retention.batch_size,
            ..PurgeOptions::default()
        },
    )
    .await
    .expect("purge");
    let purge_time = purge_started.elapsed();
    let after = count(&opened, ids["live-b"]).await;
    let during = (after - before) as f64 / purge_time.as_secs_f64();
    let live_finished = live_task.is_finished();
    let _ = live_task.await;
    let total = report.total();
    assert_eq!(
        total.conversations as usize, n,
        "every expired conversation purged"
    );
    let left = count(&opened, ids["old"]).await;
    assert_eq!(left, 0, "no message of the expired mailbox left");
    println!(
        "purged {} conversations ({} messages, {} bytes) in {:.1} s ({:.0} conversations/s)",
        total.conversations,
        total.messages,
        total.bytes,
        purge_time.as_secs_f64(),
        total.conversations as f64 / purge_time.as_secs_f64()
    );
    println!(
        "ingest during the purge: {during:.0} msg/s = {:.2} of baseline{}",
        during / baseline,
        if live_finished {
            " (WARNING: the live ingest ended before the purge; raise N)"
        } else {
            ""
        }
    );
    println!(
        "targets: purge < 60 s: {}; ingest ≥ 0.5 of baseline: {}",
        if purge_time < Duration::from_secs(60) {
            "met"
        } else {
            "NOT met"
        },
        if during / baseline >= 0.5 {
            "met"
        } else {
            "NOT met"
        }
    );
    drop(handle);
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    opened.store.close().await.expect("close");
}
