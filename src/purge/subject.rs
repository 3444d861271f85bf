//! Data-subject requests (GDPR articles 15, 17 and 20): export and erasure of everything stored that
//! involves one email address, as sender or recipient. Messages are found by the keyed address hash
//! (`message_addresses`), never by scanning plaintext. Erasure goes through the same path as purge.
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use sea_orm::sea_query::Condition;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use serde::Serialize;
use uuid::Uuid;

use super::erase::{CHUNK, Erased, erase_messages};
use crate::crypto::MasterKey;
use crate::ingest::prepare::normalize_address;
use crate::search::indexer::IndexHandle;
use crate::store::entities::{conversation, mailbox, message, message_address};
use crate::store::{Store, StoreError, audit, read};

/// The keyed hash an address is stored under.
pub fn address_hash(master: &MasterKey, address: &str) -> String {
    master
        .lookup_hasher()
        .hash("address", normalize_address(address).as_bytes())
        .to_hex()
}

/// How the audit log names a subject: a prefix of the keyed hash, never the address.
fn audit_target(hash: &str) -> String {
    format!("subject:{}", &hash[..hash.len().min(16)])
}

/// Rejects what cannot be an email address before any lookup.
pub fn validate_address(address: &str) -> Result<(), String> {
    let trimmed = address.trim();
    let Some((local, domain)) = trimmed.rsplit_once('@') else {
        return Err(format!(
            "`{trimmed}` is not an email address (expected local@domain)"
        ));
    };
    if local.is_empty() || domain.is_empty() || trimmed.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{trimmed}` is not an email address (expected local@domain)"
        ));
    }
    Ok(())
}

/// Ids of every message that involves the address, with the roles it had.
async fn involved(store: &Store, hash: &str) -> Result<BTreeMap<Uuid, Vec<String>>, StoreError> {
    let rows: Vec<(Uuid, String)> = message_address::Entity::find()
        .select_only()
        .column(message_address::Column::MessageId)
        .column(message_address::Column::Role)
        .filter(message_address::Column::AddressHash.eq(hash))
        .into_tuple()
        .all(&store.db)
        .await?;
    let mut out: BTreeMap<Uuid, Vec<String>> = BTreeMap::new();
    for (id, role) in rows {
        let roles = out.entry(id).or_default();
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    Ok(out)
}

/// One exported message in the manifest.
#[derive(Debug, Serialize)]
pub struct ExportedMessage {
    pub id: Uuid,
    pub direction: String,
    pub roles: Vec<String>,
    pub date: Option<String>,
    pub subject: Option<String>,
    pub from: Vec<crate::parse::Address>,
    pub to: Vec<crate::parse::Address>,
    pub cc: Vec<crate::parse::Address>,
    pub status: String,
    /// Path of the original message in the archive (absent when only headers were kept).
    pub eml: Option<String>,
    pub attachments: Vec<ExportedAttachment>,
    pub delivery_events: Vec<read::EventView>,
}

/// One exported attachment in the manifest.
#[derive(Debug, Serialize)]
pub struct ExportedAttachment {
    pub filename: Option<String>,
    pub content_type: String,
    pub size: i64,
    /// Path in the archive.
    pub file: Option<String>,
}

/// One conversation in the manifest (only the messages that involve the subject).
#[derive(Debug, Serialize)]
pub struct ExportedConversation {
    pub id: Uuid,
    pub mailbox: String,
    pub subject: Option<String>,
    pub state: String,
    pub messages: Vec<ExportedMessage>,
}

/// The manifest (`manifest.json` in the archive).
#[derive(Debug, Serialize)]
pub struct Manifest {
    pub address: String,
    pub exported_at: chrono::DateTime<chrono::Utc>,
    pub format: &'static str,
    pub conversations: Vec<ExportedConversation>,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    pub conversations: usize,
    pub messages: usize,
    pub attachments: usize,
    pub bytes: u64,
}

/// A file name safe in any archive tool and file system: letters, digits, `.`, `-`, `_`; no leading dot;
/// bounded length.
pub fn safe_file_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    while out.contains("..") {
        out = out.replace("..", ".");
    }
    while out.starts_with('.') {
        out.remove(0);
    }
    out.truncate(100);
    if out.is_empty() || out.chars().all(|c| c == '_') {
        "attachment".to_string()
    } else {
        out
    }
}

/// Writes a tar archive of everything that involves `address` to `out` (mode 0600, written to a temporary
/// file and renamed, so a crash never leaves half an archive under the final name). Audited.
pub async fn export(
    store: &Store,
    master: &MasterKey,
    address: &str,
    out: &Path,
    actor: &str,
) -> Result<ExportReport, StoreError> {
    let (archive, mut report) = export_archive(store, master, address, actor).await?;
    let target = out.to_path_buf();
    tokio::task::spawn_blocking(move || write_file(&target, &archive))
        .await
        .map_err(|err| StoreError::Corrupt {
            what: "export task".to_string(),
            message: err.to_string(),
        })??;
    report.file = Some(out.to_path_buf());
    Ok(report)
}

/// The tar archive (in memory) of everything that involves `address`. Audited.
pub async fn export_archive(
    store: &Store,
    master: &MasterKey,
    address: &str,
    actor: &str,
) -> Result<(Vec<u8>, ExportReport), StoreError> {
    let hash = address_hash(master, address);
    let messages = involved(store, &hash).await?;
    let mut by_conversation: BTreeMap<Uuid, Vec<Uuid>> = BTreeMap::new();
    for chunk in messages.keys().copied().collect::<Vec<_>>().chunks(CHUNK) {
        let rows: Vec<(Uuid, Uuid)> = message::Entity::find()
            .select_only()
            .column(message::Column::Id)
            .column(message::Column::ConversationId)
            .filter(message::Column::Id.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(&store.db)
            .await?;
        for (id, conversation_id) in rows {
            by_conversation.entry(conversation_id).or_default().push(id);
        }
    }
    let names: BTreeMap<Uuid, String> = mailbox::Entity::find()
        .all(&store.db)
        .await?
        .into_iter()
        .map(|row| (row.id, row.name))
        .collect();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut manifest = Manifest {
        address: normalize_address(address),
        exported_at: crate::clock::now(),
        format: "inboxd-subject-export/1",
        conversations: Vec::new(),
    };
    let mut report = ExportReport {
        file: None,
        conversations: 0,
        messages: 0,
        attachments: 0,
        bytes: 0,
    };
    for (conversation_id, ids) in by_conversation {
        let view = read::conversation(&store.db, master, conversation_id).await?;
        let wanted: HashSet<Uuid> = ids.into_iter().collect();
        let mut exported = ExportedConversation {
            id: view.id,
            mailbox: names.get(&view.mailbox_id).cloned().unwrap_or_default(),
            subject: view.subject.clone(),
            state: view.state.clone(),
            messages: Vec::new(),
        };
        for message_view in view.messages.into_iter().filter(|m| wanted.contains(&m.id)) {
            let base = format!("conversations/{conversation_id}/{}", message_view.id);
            // A header-only record (oversize mail) has no raw message; any other failure stops the
            // export rather than hand out an archive that silently lacks a message.
            let raw = match read::raw_message(&store.db, master, store.blob_dir(), message_view.id)
                .await
            {
                Ok(raw) => Some(raw),
                Err(StoreError::NotFound(_)) => None,
                Err(err) => return Err(err),
            };
            let mut attachments = Vec::new();
            for (position, attachment) in message_view.attachments.iter().enumerate() {
                let index = usize::try_from(attachment.part_index).unwrap_or(usize::MAX);
                let body = raw
                    .as_deref()
                    .and_then(|raw| crate::parse::extract_part(raw, index));
                let file = body.map(|bytes| {
                    let name =
                        safe_file_name(attachment.meta.filename.as_deref().unwrap_or("attachment"));
                    let path = format!("{base}/attachments/{position:03}-{name}");
                    report.attachments += 1;
                    files.push((path.clone(), bytes));
                    path
                });
                attachments.push(ExportedAttachment {
                    filename: attachment.meta.filename.clone(),
                    content_type: attachment.meta.content_type.clone(),
                    size: attachment.size,
                    file,
                });
            }
            let eml = raw.map(|raw| {
                let path = format!("{base}.eml");
                report.bytes += raw.len() as u64;
                files.push((path.clone(), raw));
                path
            });
            report.messages += 1;
            exported.messages.push(ExportedMessage {
                id: message_view.id,
                direction: message_view.direction,
                roles: messages.get(&message_view.id).cloned().unwrap_or_default(),
                date: message_view.headers.date,
                subject: message_view.headers.subject,
                from: message_view.headers.from,
                to: message_view.headers.to,
                cc: message_view.headers.cc,
                status: message_view.status,
                eml,
                attachments,
                delivery_events: message_view.events,
            });
        }
        if !exported.messages.is_empty() {
            report.conversations += 1;
            manifest.conversations.push(exported);
        }
    }
    let manifest_json =
        serde_json::to_vec_pretty(&manifest).map_err(|err| StoreError::Corrupt {
            what: "export manifest".to_string(),
            message: err.to_string(),
        })?;
    files.insert(0, ("manifest.json".to_string(), manifest_json));
    let archive = tokio::task::spawn_blocking(move || tar_bytes(&files))
        .await
        .map_err(|err| StoreError::Corrupt {
            what: "export task".to_string(),
            message: err.to_string(),
        })??;
    audit::record(
        &store.db,
        actor,
        "subject.export",
        Some(&audit_target(&hash)),
        serde_json::json!({
            "conversations": report.conversations,
            "messages": report.messages,
            "attachments": report.attachments,
            "bytes": report.bytes,
        }),
    )
    .await?;
    Ok((archive, report))
}

fn tar_bytes(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, StoreError> {
    let error = |err: std::io::Error| StoreError::Corrupt {
        what: "export archive".to_string(),
        message: err.to_string(),
    };
    let mut builder = tar::Builder::new(Vec::new());
    let now = u64::try_from(crate::clock::now().timestamp()).unwrap_or(0);
    for (path, data) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(now);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, data.as_slice())
            .map_err(error)?;
    }
    builder.into_inner().map_err(error)
}

/// Writes `bytes` to `out` with mode 0600, through a temporary file and a rename.
pub fn write_file(out: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let blob_error = |err: std::io::Error| StoreError::Blob {
        path: out.to_path_buf(),
        message: err.to_string(),
    };
    let file_name = out
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".to_string());
    let temporary = out.with_file_name(format!(".{file_name}.partial"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(blob_error)?;
    file.write_all(bytes).map_err(blob_error)?;
    file.sync_all().map_err(blob_error)?;
    std::fs::rename(&temporary, out).map_err(blob_error)?;
    Ok(())
}

/// What an erasure did.
#[derive(Debug, Clone, Serialize)]
pub struct EraseReport {
    #[serde(flatten)]
    pub erased: Erased,
    /// Conversations left alone because they (or their mailbox) are on legal hold.
    pub held_conversations: Vec<Uuid>,
    /// Messages in those conversations that involve the subject and were kept.
    pub held_messages: u64,
}

/// Erases every message that involves `address` (and a conversation with nothing else left), except in
/// conversations on legal hold, which are reported. Audited.
pub async fn erase(
    store: &Store,
    master: &MasterKey,
    index: Option<&IndexHandle>,
    address: &str,
    actor: &str,
) -> Result<EraseReport, StoreError> {
    let hash = address_hash(master, address);
    let ids: Vec<Uuid> = involved(store, &hash).await?.into_keys().collect();
    let held_mailboxes: Vec<Uuid> = mailbox::Entity::find()
        .select_only()
        .column(mailbox::Column::Id)
        .filter(mailbox::Column::LegalHold.eq(true))
        .into_tuple()
        .all(&store.db)
        .await?;
    let still = Condition::all()
        .add(conversation::Column::LegalHold.eq(false))
        .add(conversation::Column::MailboxId.is_not_in(held_mailboxes.iter().copied()));
    // The request is on record before anything is erased; the outcome after.
    audit::record(
        &store.db,
        actor,
        "subject.erase.requested",
        Some(&audit_target(&hash)),
        serde_json::json!({ "messages_found": ids.len() }),
    )
    .await?;
    let erased = erase_messages(store, master, index, &ids, still).await?;
    // Whatever is left of the subject's messages is held.
    let left = involved(store, &hash).await?;
    let mut held_conversations: Vec<Uuid> = Vec::new();
    for chunk in left.keys().copied().collect::<Vec<_>>().chunks(CHUNK) {
        let rows: Vec<Uuid> = message::Entity::find()
            .select_only()
            .column(message::Column::ConversationId)
            .filter(message::Column::Id.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(&store.db)
            .await?;
        held_conversations.extend(rows);
    }
    held_conversations.sort();
    held_conversations.dedup();
    let report = EraseReport {
        erased,
        held_conversations,
        held_messages: left.len() as u64,
    };
    if let Some(index) = index {
        super::retention::finish(store, Some(index)).await;
    } else {
        super::retention::compact(store).await?;
    }
    audit::record(
        &store.db,
        actor,
        "subject.erase",
        Some(&audit_target(&hash)),
        serde_json::json!({
            "conversations": report.erased.conversations,
            "messages": report.erased.messages,
            "bytes": report.erased.bytes,
            "held_conversations": report.held_conversations.len(),
            "held_messages": report.held_messages,
        }),
    )
    .await?;
    Ok(report)
}
