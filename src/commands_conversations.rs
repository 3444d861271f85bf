//! CLI commands on conversations without a running daemon: list, show, reply, straight on the database.
//! (While the daemon runs they go through its API: `commands_api`.)
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use uuid::Uuid;

use crate::commands::open_shared;
use crate::commands_output as output;
use crate::config::Config;
use crate::delivery::outbox::{ReplyRequest, enqueue_reply};
use crate::ingest::commit::Ingestor;
use crate::store::conversations::{self, Filter, STATES};
use crate::store::{mailboxes, notes, read};

/// `inboxd conversations` filters.
pub struct ListFilter {
    pub mailbox: Option<String>,
    pub state: Option<String>,
    pub assignee: Option<String>,
    pub limit: usize,
    pub offset: usize,
}

/// `inboxd conversations`
pub async fn list(config: &Config, wanted: ListFilter, json: bool) -> anyhow::Result<ExitCode> {
    if let Some(state) = &wanted.state
        && !STATES.contains(&state.as_str())
    {
        bail!("--state must be one of open, pending, closed; got `{state}`");
    }
    let (store, master) = open_shared(config).await?;
    let rows = mailboxes::list(&store.db).await?;
    let names: std::collections::HashMap<Uuid, String> =
        rows.iter().map(|row| (row.id, row.name.clone())).collect();
    let mailbox_ids = match &wanted.mailbox {
        Some(name) => {
            let Some(row) = rows.iter().find(|row| &row.name == name) else {
                bail!("no mailbox named `{name}`");
            };
            Some(vec![row.id])
        }
        None => None,
    };
    let filter = Filter {
        mailbox_ids,
        state: wanted.state,
        assignee: wanted
            .assignee
            .map(|name| if name == "none" { String::new() } else { name }),
        limit: u64::try_from(wanted.limit).unwrap_or(u64::MAX),
        offset: u64::try_from(wanted.offset).unwrap_or(0),
    };
    let (_, summaries) = conversations::list(&store.db, &master, &filter).await?;
    let items: Vec<serde_json::Value> = summaries
        .iter()
        .map(|summary| {
            let mut value = serde_json::to_value(summary).unwrap_or_default();
            value["mailbox"] = serde_json::json!(names.get(&summary.mailbox_id));
            value
        })
        .collect();
    output::conversations(&items, json);
    store.close().await?;
    Ok(ExitCode::SUCCESS)
}

/// `inboxd show ID`
pub async fn show(config: &Config, id: Uuid, json: bool) -> anyhow::Result<ExitCode> {
    let (store, master) = open_shared(config).await?;
    let view = read::conversation(&store.db, &master, id)
        .await
        .with_context(|| format!("conversation {id}"))?;
    let row = conversations::by_id(&store.db, id).await?;
    let mut value = serde_json::to_value(&view)?;
    value["assignee"] = serde_json::json!(row.and_then(|row| row.assignee));
    value["notes"] = serde_json::to_value(notes::list(&store.db, &master, id).await?)?;
    output::conversation(&value, json);
    store.close().await?;
    Ok(ExitCode::SUCCESS)
}

/// `inboxd reply ID --body-file F`
pub async fn reply(
    config: &Config,
    conversation_id: Uuid,
    body_file: &Path,
    to: Vec<String>,
    cc: Vec<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let body = crate::commands_api::read_body(body_file)?;
    let (store, master) = open_shared(config).await?;
    let master = Arc::new(master);
    let configs = mailboxes::all_configs(&store.db, &master, &config.mailboxes).await?;
    let ingestor = Ingestor::new(store.clone(), master);
    let enqueued = enqueue_reply(
        &ingestor,
        &configs,
        ReplyRequest {
            conversation_id,
            body,
            to,
            cc,
        },
    )
    .await?;
    if json {
        output::json(&serde_json::to_value(&enqueued)?);
    } else {
        println!(
            "reply {} queued for {} recipient(s); the daemon sends it",
            enqueued.message_id, enqueued.recipients
        );
    }
    store.close().await?;
    Ok(ExitCode::SUCCESS)
}
