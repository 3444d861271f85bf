//! CLI commands of retention, legal hold, purge, data-subject requests and the audit log. Commands that
//! delete take the data-directory lock (the daemon must be stopped; while it runs, the same actions go
//! through its API) and open the search index so that its entries go too.
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;

use crate::app::{self, Opened};
use crate::cli::{HoldAction, RetentionAction, SubjectAction};
use crate::commands::open_shared;
use crate::config::Config;
use crate::purge::hold::{self, HoldTarget};
use crate::purge::{retention, subject};
use crate::search::indexer::{IndexHandle, open_index};
use crate::store::{StoreError, audit, mailboxes};

/// The actor the audit log records for CLI actions: the local user.
fn actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".to_string());
    format!("cli:{user}")
}

/// The store with the lock, plus the index writer (stopped by [`close_with_index`]).
async fn open_with_index(
    config: &Config,
) -> anyhow::Result<(Opened, IndexHandle, std::thread::JoinHandle<()>)> {
    let opened = app::open(config).await?;
    let (index, _) = open_index(&config.index_dir(), &opened.master)?;
    let (handle, thread) = IndexHandle::start(index)?;
    Ok((opened, handle, thread))
}

async fn close_with_index(
    opened: Opened,
    handle: IndexHandle,
    thread: std::thread::JoinHandle<()>,
) -> anyhow::Result<()> {
    handle.flush().await?;
    drop(handle);
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    opened.store.close().await?;
    Ok(())
}

fn not_found(err: StoreError) -> anyhow::Error {
    match err {
        StoreError::NotFound(what) => anyhow::anyhow!("no such {what}"),
        other => other.into(),
    }
}

/// `inboxd purge [--dry-run]`
pub async fn purge(config: &Config, dry_run: bool, json: bool) -> anyhow::Result<ExitCode> {
    let (opened, handle, thread) = open_with_index(config).await?;
    let options = retention::PurgeOptions {
        dry_run,
        batch_size: config.retention.batch_size,
        actor: actor(),
        ..retention::PurgeOptions::default()
    };
    let report = retention::run(&opened.store, &opened.master, Some(&handle), &options).await?;
    close_with_index(opened, handle, thread).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if dry_run { "would purge" } else { "purged" };
    for mailbox in &report.mailboxes {
        println!(
            "{}: {verb} {} conversations, {} messages, {} bytes (retention {} days, before {}; {} on hold kept)",
            mailbox.mailbox,
            mailbox.erased.conversations,
            mailbox.erased.messages,
            mailbox.erased.bytes,
            mailbox.retention_days,
            mailbox.cutoff.format("%Y-%m-%d %H:%M"),
            mailbox.held,
        );
        for expired in &mailbox.expired {
            println!(
                "  {}  {}  {:>3} msgs  {}",
                expired.id,
                expired.last_activity_at.format("%Y-%m-%d"),
                expired.messages,
                expired.subject.as_deref().unwrap_or("(no subject)")
            );
        }
    }
    for name in &report.held_mailboxes {
        println!("{name}: on legal hold, nothing purged");
    }
    if report.mailboxes.is_empty() && report.held_mailboxes.is_empty() {
        println!("no mailbox has a retention window; nothing to purge");
    }
    Ok(ExitCode::SUCCESS)
}

/// `inboxd retention set|list`
pub async fn retention(config: &Config, action: RetentionAction) -> anyhow::Result<ExitCode> {
    match action {
        RetentionAction::Set {
            mailbox,
            days,
            forever,
        } => {
            if let Some(from_file) = config
                .mailboxes
                .iter()
                .find(|m| m.name == mailbox && m.retention_days.is_some())
            {
                bail!(
                    "mailbox `{}` takes retention_days from the config file{}; change it there and reload the daemon (SIGHUP)",
                    from_file.name,
                    config
                        .path
                        .as_ref()
                        .map(|path| format!(" ({})", path.display()))
                        .unwrap_or_default()
                );
            }
            let days = if forever { None } else { days };
            let opened = app::open(config).await?;
            let previous = hold::set_retention(&opened.store, &mailbox, days)
                .await
                .map_err(not_found)?;
            audit::record(
                &opened.store.db,
                &actor(),
                "retention.set",
                Some(&format!("mailbox:{mailbox}")),
                serde_json::json!({ "retention_days": days, "previous": previous }),
            )
            .await?;
            opened.store.close().await?;
            match days {
                Some(days) => println!(
                    "mailbox `{mailbox}` keeps conversations {days} days after their last activity (takes effect at the next purge)"
                ),
                None => println!("mailbox `{mailbox}` keeps conversations forever"),
            }
            Ok(ExitCode::SUCCESS)
        }
        RetentionAction::List { json } => {
            let (store, _) = open_shared(config).await?;
            let rows = mailboxes::list(&store.db).await?;
            store.close().await?;
            if json {
                let out: Vec<_> = rows
                    .iter()
                    .map(|row| {
                        serde_json::json!({
                            "mailbox": row.name, "retention_days": row.retention_days,
                            "legal_hold": row.legal_hold,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("{:<24} {:>10}  HOLD", "MAILBOX", "RETENTION");
                for row in rows {
                    println!(
                        "{:<24} {:>10}  {}",
                        row.name,
                        row.retention_days
                            .map_or_else(|| "forever".to_string(), |days| format!("{days} d")),
                        if row.legal_hold { "yes" } else { "-" }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn hold_target(
    conversation: Option<uuid::Uuid>,
    mailbox: Option<String>,
) -> anyhow::Result<HoldTarget> {
    match (conversation, mailbox) {
        (Some(id), None) => Ok(HoldTarget::Conversation(id)),
        (None, Some(name)) => Ok(HoldTarget::Mailbox(name)),
        _ => bail!("give exactly one of --conversation ID or --mailbox NAME"),
    }
}

/// `inboxd hold set|release|list`
pub async fn hold(config: &Config, action: HoldAction) -> anyhow::Result<ExitCode> {
    match action {
        HoldAction::Set {
            conversation,
            mailbox,
            reason,
        } => {
            let target = hold_target(conversation, mailbox)?;
            if reason.trim().is_empty() {
                bail!("--reason must not be empty: say why the hold is placed");
            }
            let opened = app::open(config).await?;
            hold::set_hold(&opened.store, &opened.master, &target, Some(&reason))
                .await
                .map_err(not_found)?;
            audit::record(
                &opened.store.db,
                &actor(),
                "hold.set",
                Some(&target.to_string()),
                serde_json::json!({}),
            )
            .await?;
            opened.store.close().await?;
            println!("{target} is on legal hold");
            Ok(ExitCode::SUCCESS)
        }
        HoldAction::Release {
            conversation,
            mailbox,
        } => {
            let target = hold_target(conversation, mailbox)?;
            let opened = app::open(config).await?;
            hold::set_hold(&opened.store, &opened.master, &target, None)
                .await
                .map_err(not_found)?;
            audit::record(
                &opened.store.db,
                &actor(),
                "hold.release",
                Some(&target.to_string()),
                serde_json::json!({}),
            )
            .await?;
            opened.store.close().await?;
            println!("{target}: hold lifted");
            Ok(ExitCode::SUCCESS)
        }
        HoldAction::List { json } => {
            let (store, master) = open_shared(config).await?;
            let holds = hold::list_holds(&store, &master).await?;
            store.close().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&holds)?);
            } else if holds.is_empty() {
                println!("no legal holds");
            } else {
                for entry in holds {
                    println!(
                        "{}  {}",
                        entry.target,
                        entry.reason.as_deref().unwrap_or("(no reason)")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `inboxd subject export|erase`
pub async fn subject(config: &Config, action: SubjectAction) -> anyhow::Result<ExitCode> {
    match action {
        SubjectAction::Export { address, out, json } => {
            subject::validate_address(&address).map_err(anyhow::Error::msg)?;
            if out.exists() {
                bail!(
                    "{} exists; choose a new file for the export (it is never overwritten)",
                    out.display()
                );
            }
            let (store, master) = open_shared(config).await?;
            let report = subject::export(&store, &master, &address, &out, &actor()).await?;
            store.close().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "exported {} messages in {} conversations ({} attachments, {} bytes) to {}",
                    report.messages,
                    report.conversations,
                    report.attachments,
                    report.bytes,
                    report.file.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SubjectAction::Erase { address, json } => {
            subject::validate_address(&address).map_err(anyhow::Error::msg)?;
            let (opened, handle, thread) = open_with_index(config).await?;
            let master = Arc::clone(&opened.master);
            let report =
                subject::erase(&opened.store, &master, Some(&handle), &address, &actor()).await?;
            close_with_index(opened, handle, thread).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "erased {} messages ({} whole conversations, {} bytes)",
                    report.erased.messages, report.erased.conversations, report.erased.bytes
                );
                if !report.held_conversations.is_empty() {
                    println!(
                        "kept {} messages in {} conversations on legal hold:",
                        report.held_messages,
                        report.held_conversations.len()
                    );
                    for id in &report.held_conversations {
                        println!("  {id}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `inboxd audit`
pub async fn audit(config: &Config, limit: u64, json: bool) -> anyhow::Result<ExitCode> {
    let (store, _) = open_shared(config).await?;
    let records = audit::list(&store.db, limit, 0).await?;
    store.close().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else {
        for record in records {
            println!(
                "{}  {:<20} {:<18} {:<32} {}",
                record.at.format("%Y-%m-%d %H:%M:%S"),
                record.actor,
                record.action,
                record.target.as_deref().unwrap_or("-"),
                record.details
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
