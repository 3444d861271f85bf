//! CLI commands on conversations: list, show, reply. They run beside the daemon (no lock): reading is
//! safe, and a reply only enters the outbox; the daemon's sender delivers it.
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::commands::open_shared;
use crate::config::Config;
use crate::delivery::outbox::{ReplyRequest, enqueue_reply};
use crate::ingest::commit::Ingestor;
use crate::store::entities::{conversation, mailbox};
use crate::store::{mailboxes, read};

/// `inboxd conversations`
pub async fn list(
    config: &Config,
    mailbox_name: Option<&str>,
    limit: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (store, master) = open_shared(config).await?;
    let names: std::collections::HashMap<Uuid, String> = mailbox::Entity::find()
        .all(&store.db)
        .await?
        .into_iter()
        .map(|row| (row.id, row.name))
        .collect();
    let mut query = conversation::Entity::find()
        .order_by_desc(conversation::Column::LastActivityAt)
        .limit(u64::try_from(limit).unwrap_or(50));
    if let Some(name) = mailbox_name {
        let Some(row) = mailboxes::by_name(&store.db, name).await? else {
            bail!("no mailbox named `{name}`");
        };
        query = query.filter(conversation::Column::MailboxId.eq(row.id));
    }
    let mut out = Vec::new();
    for row in query.all(&store.db).await? {
        let subject = match &row.subject_sealed {
            Some(sealed) => {
                let key =
                    crate::store::threads::conversation_key(&store.db, &master, row.id).await?;
                let bytes = key.open(sealed, &crate::store::threads::subject_aad(&row.id))?;
                String::from_utf8_lossy(&bytes).into_owned()
            }
            None => String::new(),
        };
        out.push(serde_json::json!({
            "id": row.id, "mailbox": names.get(&row.mailbox_id), "state": row.state,
            "subject": subject, "messages": row.message_count, "last_activity_at": row.last_activity_at,
            "unmatched_bounce": row.unmatched_bounce,
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{:<36}  {:<12} {:<7} {:>4}  subject",
            "conversation", "mailbox", "state", "msgs"
        );
        for item in &out {
            println!(
                "{:<36}  {:<12} {:<7} {:>4}  {}",
                item["id"].as_str().unwrap_or_default(),
                item["mailbox"].as_str().unwrap_or_default(),
                item["state"].as_str().unwrap_or_default(),
                item["messages"],
                item["subject"].as_str().unwrap_or_default()
            );
        }
    }
    store.close().await?;
    Ok(ExitCode::SUCCESS)
}

/// `inboxd show ID`
pub async fn show(config: &Config, id: Uuid, json: bool) -> anyhow::Result<ExitCode> {
    let (store, master) = open_shared(config).await?;
    let view = read::conversation(&store.db, &master, id)
        .await
        .with_context(|| format!("conversation {id}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        println!(
            "conversation {}  [{}]  {}",
            view.id,
            view.state,
            view.subject.as_deref().unwrap_or("")
        );
        for message in &view.messages {
            let from: Vec<String> = message
                .headers
                .from
                .iter()
                .map(|a| a.email.clone().unwrap_or_default())
                .collect();
            println!(
                "\n--- {} {} from {} ({})",
                message.direction,
                message.id,
                from.join(", "),
                message.status
            );
            println!("{}", message.body.text.trim_end());
            for attachment in &message.attachments {
                println!(
                    "  [attachment] {} ({} bytes, {})",
                    attachment.meta.filename.as_deref().unwrap_or("unnamed"),
                    attachment.size,
                    attachment.meta.content_type
                );
            }
            for event in &message.events {
                println!(
                    "  [{}] {} {} {}",
                    event.event,
                    event.recipient,
                    event.status.as_deref().unwrap_or(""),
                    event.diagnostic.as_deref().unwrap_or("")
                );
            }
        }
    }
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
    let body = if body_file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(body_file)
            .with_context(|| format!("cannot read {}", body_file.display()))?
    };
    if body.trim().is_empty() {
        bail!("the reply is empty");
    }
    let (store, master) = open_shared(config).await?;
    let ingestor = Ingestor::new(store.clone(), Arc::new(master));
    let enqueued = enqueue_reply(
        &ingestor,
        &config.mailboxes,
        ReplyRequest {
            conversation_id,
            body,
            to,
            cc,
        },
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&enqueued)?);
    } else {
        println!(
            "reply {} queued for {} recipient(s); the daemon sends it",
            enqueued.message_id, enqueued.recipients
        );
    }
    store.close().await?;
    Ok(ExitCode::SUCCESS)
}
