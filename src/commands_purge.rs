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
pub(crate) async fn open_with_index(
    config: &Config,
) -> anyhow::Result<(Opened, IndexHandle, std::thread::JoinHandle<()>)> {
    let opened = app::open(config).await?;
    let (index, _) = open_index(
        &config.index_dir(),
        &opened.master,
        config.search.cache_bytes,
    )?;
    let (handle, thread) = IndexHandle::start(index)?;
    Ok((opened, handle, thread))
}

pub(crate) async fn close_with_index(
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
    print_purge(&serde_json::to_value(&report)?, json);
    Ok(ExitCode::SUCCESS)
}

/// Prints a purge report (from this process or from the daemon's API).
pub fn print_purge(report: &serde_json::Value, json: bool) {
    if json {
        println!("{report:#}");
        return;
    }
    let verb = if report["dry_run"] == true {
        "would purge"
    } else {
        "purged"
    };
    let empty = Vec::new();
    let mailboxes = report["mailboxes"].as_array().unwrap_or(&empty);
    let held = report["held_mailboxes"].as_array().unwrap_or(&empty);
    for mailbox in mailboxes {
        println!(
            "{}: {verb} {} conversations, {} messages, {} bytes (retention {} days, before {}; {} on hold kept)",
            mailbox["mailbox"].as_str().unwrap_or("?"),
            mailbox["conversations"],
            mailbox["messages"],
            mailbox["bytes"],
            mailbox["retention_days"],
            mailbox["cutoff"].as_str().unwrap_or("?"),
            mailbox["held"],
        );
        for expired in mailbox["expired"].as_array().unwrap_or(&empty) {
            println!(
                "  {}  {}  {:>3} msgs  {}",
                expired["id"].as_str().unwrap_or("?"),
                expired["last_activity_at"].as_str().unwrap_or("?"),
                expired["messages"],
                expired["subject"].as_str().unwrap_or("(no subject)")
            );
        }
    }
    for name in held {
        println!(
            "{}: on legal hold, nothing purged",
            name.as_str().unwrap_or("?")
        );
    }
    if mailboxes.is_empty() && held.is_empty() {
        println!("no mailbox has a retention window; nothing to purge");
    }
}

/// `inboxd retention set|list`
pub async fn retention(config: &Config, action: RetentionAction) -> anyhow::Result<ExitCode> {
    match action {
        RetentionAction::Set {
            mailbox,
            days,
            forever,
        } => {
            if hold::retention_from_file(&config.mailboxes, &mailbox) {
                bail!(
                    "mailbox `{mailbox}` takes retention_days from the config file{}; change it there and reload the daemon (SIGHUP)",
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
            print_retention_set(&mailbox, days);
            Ok(ExitCode::SUCCESS)
        }
        RetentionAction::List { json } => {
            let (store, _) = open_shared(config).await?;
            let rows: Vec<serde_json::Value> = mailboxes::list(&store.db)
                .await?
                .iter()
                .map(mailboxes::status_json)
                .collect();
            store.close().await?;
            print_retention_list(&rows, json);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_retention_set(mailbox: &str, days: Option<u32>) {
    match days {
        Some(days) => println!(
            "mailbox `{mailbox}` keeps conversations {days} days after their last activity (takes effect at the next purge)"
        ),
        None => println!("mailbox `{mailbox}` keeps conversations forever"),
    }
}

fn print_retention_list(rows: &[serde_json::Value], json: bool) {
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|row| {
                serde_json::json!({
                    "mailbox": row["name"], "retention_days": row["retention_days"],
                    "legal_hold": row["legal_hold"],
                })
            })
            .collect();
        println!("{:#}", serde_json::Value::Array(out));
        return;
    }
    println!("{:<24} {:>10}  HOLD", "MAILBOX", "RETENTION");
    for row in rows {
        println!(
            "{:<24} {:>10}  {}",
            row["name"].as_str().unwrap_or("?"),
            row["retention_days"]
                .as_u64()
                .map_or_else(|| "forever".to_string(), |days| format!("{days} d")),
            if row["legal_hold"] == true {
                "yes"
            } else {
                "-"
            }
        );
    }
}

fn print_holds(holds: &serde_json::Value, json: bool) {
    if json {
        println!("{holds:#}");
        return;
    }
    let empty = Vec::new();
    let list = holds.as_array().unwrap_or(&empty);
    if list.is_empty() {
        println!("no legal holds");
    }
    for entry in list {
        println!(
            "{} {}  {}",
            entry["target"]["kind"].as_str().unwrap_or("?"),
            entry["target"]["id"].as_str().unwrap_or("?"),
            entry["reason"].as_str().unwrap_or("(no reason)")
        );
    }
}

fn print_export(report: &serde_json::Value, json: bool) {
    if json {
        println!("{report:#}");
    } else {
        println!(
            "exported {} messages in {} conversations ({} attachments, {} bytes) to {}",
            report["messages"],
            report["conversations"],
            report["attachments"],
            report["bytes"],
            report["file"].as_str().unwrap_or("?")
        );
    }
}

fn print_erase(report: &serde_json::Value, json: bool) {
    if json {
        println!("{report:#}");
        return;
    }
    println!(
        "erased {} messages ({} whole conversations, {} bytes)",
        report["messages"], report["conversations"], report["bytes"]
    );
    let empty = Vec::new();
    let held = report["held_conversations"].as_array().unwrap_or(&empty);
    if !held.is_empty() {
        println!(
            "kept {} messages in {} conversations on legal hold:",
            report["held_messages"],
            held.len()
        );
        for id in held {
            println!("  {}", id.as_str().unwrap_or("?"));
        }
    }
}

fn print_audit(records: &[serde_json::Value], json: bool) {
    if json {
        println!("{:#}", serde_json::Value::Array(records.to_vec()));
        return;
    }
    for record in records {
        println!(
            "{}  {:<20} {:<18} {:<32} {}",
            record["at"].as_str().unwrap_or("?"),
            record["actor"].as_str().unwrap_or("?"),
            record["action"].as_str().unwrap_or("?"),
            record["target"].as_str().unwrap_or("-"),
            record["details"]
        );
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
            print_holds(&serde_json::to_value(&holds)?, json);
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
            print_export(&serde_json::to_value(&report)?, json);
            Ok(ExitCode::SUCCESS)
        }
        SubjectAction::Erase { address, json } => {
            subject::validate_address(&address).map_err(anyhow::Error::msg)?;
            let (opened, handle, thread) = open_with_index(config).await?;
            let master = Arc::clone(&opened.master);
            let report =
                subject::erase(&opened.store, &master, Some(&handle), &address, &actor()).await?;
            close_with_index(opened, handle, thread).await?;
            print_erase(&serde_json::to_value(&report)?, json);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `inboxd audit`
pub async fn audit(config: &Config, limit: u64, json: bool) -> anyhow::Result<ExitCode> {
    let (store, _) = open_shared(config).await?;
    let records = audit::list(&store.db, limit, 0).await?;
    store.close().await?;
    let values: Vec<serde_json::Value> = records
        .iter()
        .map(|record| serde_json::to_value(record).unwrap_or_default())
        .collect();
    print_audit(&values, json);
    Ok(ExitCode::SUCCESS)
}

/// The same commands through the running daemon's API (the daemon owns the data directory).
pub async fn through_daemon(
    client: &crate::client::DaemonClient,
    command: crate::cli::Command,
) -> Result<ExitCode, crate::client::ClientError> {
    use crate::cli::Command;
    use crate::client::encode;
    use hyper::Method;
    use serde_json::json;
    match command {
        Command::Purge { dry_run, json } => {
            let value = client
                .call(Method::POST, &format!("/v1/purge?dry_run={dry_run}"), None)
                .await?;
            print_purge(&value, json);
        }
        Command::Retention {
            action:
                RetentionAction::Set {
                    mailbox,
                    days,
                    forever,
                },
        } => {
            let days = if forever { None } else { days };
            client
                .call(
                    Method::PUT,
                    &format!("/v1/mailboxes/{}/retention", encode(&mailbox)),
                    Some(&json!({ "days": days })),
                )
                .await?;
            print_retention_set(&mailbox, days);
        }
        Command::Retention {
            action: RetentionAction::List { json },
        } => {
            let value = client.call(Method::GET, "/v1/mailboxes", None).await?;
            let rows = value["mailboxes"]
                .as_array()
                .or_else(|| value.as_array())
                .cloned()
                .unwrap_or_default();
            print_retention_list(&rows, json);
        }
        Command::Hold { action } => match action {
            HoldAction::Set {
                conversation,
                mailbox,
                reason,
            } => {
                let path = hold_path(conversation, mailbox.as_deref());
                client
                    .call(Method::PUT, &path, Some(&json!({ "reason": reason })))
                    .await?;
                println!("legal hold placed");
            }
            HoldAction::Release {
                conversation,
                mailbox,
            } => {
                let path = hold_path(conversation, mailbox.as_deref());
                client.call(Method::DELETE, &path, None).await?;
                println!("legal hold lifted");
            }
            HoldAction::List { json } => {
                let value = client.call(Method::GET, "/v1/holds", None).await?;
                print_holds(&value["holds"], json);
            }
        },
        Command::Subject { action } => match action {
            SubjectAction::Export { address, out, json } => {
                if out.exists() {
                    eprintln!(
                        "inboxd: {} exists; choose a new file for the export (it is never overwritten)",
                        out.display()
                    );
                    return Ok(ExitCode::from(crate::client::exit::CONFLICT));
                }
                let (status, bytes) = client
                    .send(
                        Method::POST,
                        "/v1/subjects/export",
                        Some(&json!({ "address": address })),
                    )
                    .await?;
                if !status.is_success() {
                    // An error answer is JSON, read like any other.
                    client.answer(status, &bytes)?;
                }
                if let Err(err) = subject::write_file(&out, &bytes) {
                    eprintln!("inboxd: {err}");
                    return Ok(ExitCode::FAILURE);
                }
                let report = summarize_archive(&bytes, &out);
                print_export(&report, json);
            }
            SubjectAction::Erase { address, json } => {
                let value = client
                    .call(
                        Method::POST,
                        "/v1/subjects/erase",
                        Some(&json!({ "address": address })),
                    )
                    .await?;
                print_erase(&value, json);
            }
        },
        Command::Audit { limit, json } => {
            let value = client
                .call(
                    Method::GET,
                    &format!("/v1/audit?limit={}", limit.clamp(1, 500)),
                    None,
                )
                .await?;
            print_audit(value["records"].as_array().map_or(&[], Vec::as_slice), json);
        }
        _ => unreachable!("dispatched by commands_api"),
    }
    Ok(ExitCode::SUCCESS)
}

fn hold_path(conversation: Option<uuid::Uuid>, mailbox: Option<&str>) -> String {
    match (conversation, mailbox) {
        (Some(id), _) => format!("/v1/conversations/{id}/hold"),
        (None, Some(name)) => format!("/v1/mailboxes/{}/hold", crate::client::encode(name)),
        (None, None) => "/v1/holds".to_string(),
    }
}

/// Counts of an export archive, read back from its manifest.
fn summarize_archive(bytes: &[u8], out: &std::path::Path) -> serde_json::Value {
    use std::io::Read;
    let mut manifest = serde_json::Value::Null;
    let mut attachments = 0usize;
    if let Ok(entries) = tar::Archive::new(bytes).entries() {
        for mut entry in entries.flatten() {
            let path = entry
                .path()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            if path == "manifest.json" {
                let mut text = Vec::new();
                if entry.read_to_end(&mut text).is_ok() {
                    manifest = serde_json::from_slice(&text).unwrap_or_default();
                }
            } else if path.contains("/attachments/") {
                attachments += 1;
            }
        }
    }
    let conversations = manifest["conversations"].as_array().map_or(0, Vec::len);
    let messages: usize = manifest["conversations"].as_array().map_or(0, |list| {
        list.iter()
            .map(|c| c["messages"].as_array().map_or(0, Vec::len))
            .sum()
    });
    serde_json::json!({
        "file": out, "conversations": conversations, "messages": messages,
        "attachments": attachments, "bytes": bytes.len(),
    })
}
