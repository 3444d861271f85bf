//! `inboxd search` and `inboxd reindex`.
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;

use crate::app;
use crate::commands::open_shared;
use crate::config::Config;
use crate::search::indexer::{IndexHandle, catch_up, open_index, open_index_readonly};
use crate::search::{Order, SearchOptions};
use crate::store::threads::{conversation_key, subject_aad};

/// Searches the index (read-only; works beside a running daemon).
pub async fn search(
    config: &Config,
    query: &str,
    limit: usize,
    offset: usize,
    relevance: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if let Err(err) = crate::api::search::check_shape(query) {
        eprintln!("inboxd: {err}");
        return Ok(ExitCode::from(2));
    }
    let (store, master) = open_shared(config).await?;
    let unreadable = "the search index is missing or unreadable; start the daemon (it rebuilds it) or run `inboxd reindex`";
    let index = match open_index_readonly(&config.index_dir(), &master, config.search.cache_bytes) {
        Ok(Some(index)) => index,
        Ok(None) => bail!("{unreadable}"),
        Err(err) => bail!("{unreadable} ({err})"),
    };
    let options = SearchOptions {
        limit,
        offset,
        order: if relevance {
            Order::Relevance
        } else {
            Order::Newest
        },
        mailboxes: None,
    };
    let results = match index.search(query, &options) {
        Ok(results) => results,
        Err(err) if err.is_query_error() => {
            eprintln!("inboxd: {err}");
            return Ok(ExitCode::from(2));
        }
        Err(err) => return Err(err.into()),
    };
    let mut rows = Vec::new();
    for hit in &results.hits {
        let subject =
            match crate::store::entities::conversation::Entity::find_by_id(hit.conversation_id)
                .one(&store.db)
                .await?
                .and_then(|row| row.subject_sealed)
            {
                Some(sealed) => {
                    let key = conversation_key(&store.db, &master, hit.conversation_id).await?;
                    String::from_utf8_lossy(&key.open(&sealed, &subject_aad(&hit.conversation_id))?)
                        .into_owned()
                }
                None => String::new(),
            };
        rows.push(serde_json::json!({
            "conversation_id": hit.conversation_id, "subject": subject, "newest": hit.newest,
            "matched_messages": hit.matched_messages, "score": hit.score, "snippet": hit.snippet,
        }));
    }
    let value = serde_json::json!({ "total": results.total_conversations, "hits": rows });
    crate::commands_output::search(&value, json);
    store.close().await?;
    Ok(ExitCode::SUCCESS)
}

use sea_orm::EntityTrait;

/// Rebuilds the index from the store, with progress on a terminal.
pub async fn reindex(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let opened = app::open(config).await?;
    let dir = config.index_dir();
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let (index, _) = open_index(&dir, &opened.master, config.search.cache_bytes)?;
    let (handle, thread) = IndexHandle::start(index)?;
    let terminal = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let master = Arc::clone(&opened.master);
    let count = catch_up(&opened.store, &master, &handle, None, |done, total| {
        if terminal && (done % 50 == 0 || done == total) {
            let width = 30;
            let filled = done * width / total.max(1);
            eprint!(
                "\rreindexing [{}{}] {done}/{total} conversations",
                "#".repeat(filled),
                " ".repeat(width - filled)
            );
            let _ = std::io::stderr().flush();
        }
    })
    .await?;
    if terminal {
        eprintln!();
    }
    handle.flush().await?;
    drop(handle);
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    if json {
        crate::commands_output::json(&serde_json::json!({
            "indexed": count, "seconds": started.elapsed().as_secs_f64(),
        }));
    } else {
        println!(
            "indexed {count} messages in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    opened.store.close().await?;
    Ok(ExitCode::SUCCESS)
}
