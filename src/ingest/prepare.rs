//! CPU-side of ingest: parse a raw message, compute its keyed lookup hashes, seal everything that came
//! from the mail under a fresh per-message content key and seal the raw bytes as an encrypted blob: in
//! memory for a small message (stored in the database with its row), as a blob file for a large one.
//! Runs on blocking threads; the database work happens afterwards in `store::messages`.
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{IngestError, Origin, RawMessage};
use crate::crypto::{
    Aad, BlobWriter, CryptoError, DataKey, KeyedHasher, open_blob, read_blob, seal_blob,
};
use crate::parse::{self, Address, ParsedMessage};
use crate::store::blob_relative_path;

/// Message status: parsed normally.
pub const STATUS_PARSED: &str = "parsed";
/// Stored raw, flagged: the parser could not make sense of it.
pub const STATUS_UNPARSED: &str = "unparsed";
/// Larger than `ingest.max_message_bytes`: only its headers were fetched and stored.
pub const STATUS_OVERSIZE: &str = "oversize";

/// Text and HTML bodies are sealed for reading up to this size each; the complete message is always kept
/// in the raw blob. Bounds the memory one huge message takes while it is prepared.
pub const MAX_STORED_BODY: usize = 4 * 1024 * 1024;

/// Raw messages up to this size are sealed in memory and stored in the database (`message_blobs`) in the
/// batch's transaction; larger ones get a blob file of their own. Most support mail is a few KiB: one
/// file each would cost a file creation, a rename and an unlink at purge, which on ext4 is the largest
/// single cost of ingest (issue #3's profile). One blob chunk: the sealed copy is at most 64 KiB + 61
/// bytes.
pub const INLINE_BLOB_MAX: usize = 64 * 1024;

/// Messages larger than this are not probed for a delivery report.
const DSN_PROBE_LIMIT: usize = 4 * 1024 * 1024;

/// Cheap test on the parsed message before the delivery-report recogniser parses it again: reports are
/// machine-sent (multipart/report, a null or daemon sender, Auto-Submitted, X-Failed-Recipients) or at
/// least say so in their subject. Ordinary mail — the bulk of ingest — skips the second parse.
pub fn may_be_report(parsed: &ParsedMessage) -> bool {
    if parsed.auto.is_automatic || parsed.auto.is_auto_reply {
        return true;
    }
    let header_says = parsed.headers.iter().any(|(name, value)| {
        let name = name.to_ascii_lowercase();
        (name == "content-type" && value.to_ascii_lowercase().contains("report"))
            || name == "x-failed-recipients"
            || name.starts_with("x-ses-")
            || name == "x-autoreply"
    });
    if header_says {
        return true;
    }
    let sender_is_system = parsed
        .from
        .iter()
        .chain(parsed.sender.iter())
        .any(|address| {
            let text = format!(
                "{} {}",
                address.email.as_deref().unwrap_or_default(),
                address.name.as_deref().unwrap_or_default()
            )
            .to_ascii_lowercase();
            [
                "mailer-daemon",
                "postmaster",
                "mail delivery",
                "mailer",
                "daemon",
                "bounce",
                "noreply",
                "no-reply",
                "mail administrator",
                "system",
            ]
            .iter()
            .any(|word| text.contains(word))
        });
    let subject = parsed.subject.as_deref().unwrap_or_default().to_lowercase();
    let subject_says = [
        "deliver",
        "undeliver",
        "returned",
        "failure",
        "fail",
        "bounce",
        "rejected",
        "delay",
        "warning",
        "not read",
        "error",
        "notification",
        "unzustellbar",
        "non remis",
        "abuse",
        "report",
        "auto",
        "out of office",
        "vacation",
        "absent",
        "automatic",
        "message status",
        "mail system",
        "could not",
        "nicht",
        "problem",
        "returning",
        "notice",
    ]
    .iter()
    .any(|word| subject.contains(word));
    sender_is_system || subject_says || parsed.subject.is_none()
}

fn truncate_text(mut text: String) -> String {
    if text.len() > MAX_STORED_BODY {
        let mut end = MAX_STORED_BODY;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.shrink_to_fit();
    }
    text
}

/// Where a prepared message's sealed raw bytes are.
pub enum PreparedBlob {
    /// A blob file, by its path relative to the blob directory (written, not yet fsynced).
    File(String),
    /// Sealed in memory (blob format), to be stored in `message_blobs` with the message row.
    Inline(Vec<u8>),
}

impl PreparedBlob {
    /// The blob file's relative path, for a message that has one.
    pub fn file(&self) -> Option<&String> {
        match self {
            PreparedBlob::File(relative) => Some(relative),
            PreparedBlob::Inline(_) => None,
        }
    }
}

/// A message ready to be committed: every mail-derived value is sealed or hashed.
pub struct PreparedMessage {
    pub id: Uuid,
    pub origin: Origin,
    /// Key that seals this message's fields and blob; wrapped under the conversation key at commit.
    pub content_key: DataKey,
    pub message_id_hash: Option<String>,
    /// Hashes of In-Reply-To and References ids.
    pub parent_hashes: Vec<String>,
    /// Keyed BLAKE3 hash of the raw bytes (`b3:…`): identifies the message within its mailbox.
    pub content_hash: String,
    /// The older HMAC-SHA256 content hash, computed only while the store may hold such hashes (see
    /// `store::messages::holds_legacy_content_hashes`); looked up, never stored.
    pub legacy_content_hash: Option<String>,
    /// Hash of the normalised subject, when it is not empty.
    pub subject_hash: Option<String>,
    /// The subject carried a reply or forward marker (only such mail may join by subject).
    pub is_reply_subject: bool,
    /// Plain subject, kept in memory only, sealed under the conversation key at commit.
    pub subject: Option<String>,
    /// Hashes of the From addresses.
    pub sender_hashes: Vec<String>,
    /// Hash of the sorted participant set.
    pub participants_hash: Option<String>,
    /// (address hash, role) for data-subject lookups.
    pub address_hashes: Vec<(String, &'static str)>,
    pub header_sealed: Vec<u8>,
    pub body_sealed: Vec<u8>,
    pub problem_sealed: Option<Vec<u8>>,
    pub attachments: Vec<PreparedAttachment>,
    pub blob: PreparedBlob,
    pub raw_size: u64,
    pub status: &'static str,
    pub is_automatic: bool,
    pub is_auto_reply: bool,
    pub is_bounce: bool,
    pub received_at: DateTime<Utc>,
    /// The delivery report this message carries (DSN, bounce, ARF, auto-reply), kept in memory only.
    pub report: Option<crate::parse::dsn::DeliveryReport>,
    /// Values of the headers that name the envelope recipient of a bounce (To, Delivered-To,
    /// X-Original-To, Return-Path), where a VERP tag may be found. Memory only.
    pub envelope_hints: Vec<String>,
    /// Set for replies: the conversation they belong to, whatever threading would say.
    pub conversation: Option<Uuid>,
    /// The search document (plaintext, memory only); conversation and mailbox are filled at commit.
    pub search: Option<crate::search::SearchDoc>,
}

impl PreparedMessage {
    /// Every content hash this message may be stored or buried under: its own, and the legacy one.
    pub fn content_hashes(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.content_hash.as_str()).chain(self.legacy_content_hash.as_deref())
    }

    /// Decrypts the sealed raw bytes again (file under `blob_dir`, or inline): for checks that the
    /// stored copy is exactly what was fetched.
    pub fn open_raw(&self, blob_dir: &Path) -> Result<Vec<u8>, CryptoError> {
        let aad = message_aad("message.raw", &self.id);
        match &self.blob {
            PreparedBlob::File(relative) => {
                read_blob(&blob_dir.join(relative), &self.content_key, &aad)
            }
            PreparedBlob::Inline(sealed) => open_blob(sealed, &self.content_key, &aad),
        }
    }
}

/// Attachment metadata, sealed.
pub struct PreparedAttachment {
    pub id: Uuid,
    pub part_index: i32,
    pub size: i64,
    pub meta_sealed: Vec<u8>,
}

/// Headers as an agent reads them (sealed as JSON in `messages.header_sealed`).
#[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct StoredHeaders {
    pub subject: Option<String>,
    pub from: Vec<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub reply_to: Vec<Address>,
    pub date: Option<String>,
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
}

/// Bodies (sealed as JSON in `messages.body_sealed`).
#[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct StoredBody {
    pub text: String,
    pub html: Option<String>,
}

/// Attachment metadata (sealed as JSON in `attachments.meta_sealed`).
#[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct StoredAttachment {
    pub filename: Option<String>,
    pub content_type: String,
    pub sha256: String,
    pub inline: bool,
    pub is_message: bool,
}

/// AAD of a message field: binds the ciphertext to its message row and field.
pub fn message_aad(field: &'static str, message_id: &Uuid) -> Aad {
    Aad::new(field).with_bytes(message_id.as_bytes())
}

/// AAD of an attachment's metadata.
pub fn attachment_aad(attachment_id: &Uuid, message_id: &Uuid) -> Aad {
    Aad::new("attachment.meta")
        .with_bytes(attachment_id.as_bytes())
        .with_bytes(message_id.as_bytes())
}

/// Canonical form of an address for keyed hashing: trimmed and lowercased.
pub fn normalize_address(address: &str) -> String {
    address.trim().to_lowercase()
}

/// Parses, hashes, seals and writes one message. Pure CPU and file work: call from a blocking thread.
/// `legacy_hashes`: also compute the older content hash (the store may hold such hashes).
pub fn prepare(
    message: RawMessage,
    hasher: &KeyedHasher,
    blob_dir: &Path,
    received_at: DateTime<Utc>,
    legacy_hashes: bool,
) -> Result<PreparedMessage, IngestError> {
    let id = Uuid::now_v7();
    let content_key = DataKey::generate();
    let mut parsed = parse::parse_message(&message.raw);
    let keys = parse::thread_keys(&parsed);
    let hash = |domain: &str, value: &str| hasher.hash(domain, value.as_bytes()).to_hex();

    let content_hash = hasher.content_hash(&message.raw);
    let legacy_content_hash = legacy_hashes.then(|| hasher.legacy_content_hash(&message.raw));
    let message_id_hash = keys.message_id.as_deref().map(|id| hash("message-id", id));
    let parent_hashes = keys
        .parent_ids
        .iter()
        .map(|id| hash("message-id", id))
        .collect();
    let subject_hash =
        (!keys.normalized_subject.is_empty()).then(|| hash("subject", &keys.normalized_subject));
    let is_reply_subject = parsed.subject.as_deref().is_some_and(|subject| {
        let plain = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        plain.to_lowercase() != keys.normalized_subject
    });
    let participants_hash = (!keys.participants.is_empty())
        .then(|| hash("participants", &keys.participants.join("\n")));
    let emails = |list: &[Address]| -> Vec<String> {
        list.iter()
            .filter_map(|address| address.email.as_deref())
            .map(normalize_address)
            .collect()
    };
    let sender_hashes: Vec<String> = emails(&parsed.from)
        .iter()
        .map(|email| hash("address", email))
        .collect();
    let mut address_hashes = Vec::new();
    for (role, list) in [
        ("from", &parsed.from),
        ("to", &parsed.to),
        ("cc", &parsed.cc),
        ("bcc", &parsed.bcc),
        ("reply-to", &parsed.reply_to),
        ("sender", &parsed.sender),
    ] {
        for email in emails(list) {
            let entry = (hash("address", &email), role);
            if !address_hashes.contains(&entry) {
                address_hashes.push(entry);
            }
        }
    }

    let (status, problem) = status_of(&message, &parsed);
    let problem_sealed =
        problem.map(|text| content_key.seal(text.as_bytes(), &message_aad("message.problem", &id)));
    let headers = StoredHeaders {
        subject: parsed.subject.clone(),
        from: parsed.from.clone(),
        to: parsed.to.clone(),
        cc: parsed.cc.clone(),
        reply_to: parsed.reply_to.clone(),
        date: parsed.date.map(|date| date.to_rfc3339()),
        message_id: parsed.message_id.clone(),
        in_reply_to: parsed.in_reply_to.clone(),
        references: parsed.references.clone(),
    };
    let body = StoredBody {
        text: truncate_text(std::mem::take(&mut parsed.text_body)),
        html: parsed.html_body.take().map(truncate_text),
    };
    let people = |list: &[Address]| -> Vec<(Option<String>, Option<String>)> {
        list.iter()
            .map(|address| (address.name.clone(), address.email.clone()))
            .collect()
    };
    let has_text_attachment = parsed
        .attachments
        .iter()
        .any(|a| a.content_type.to_ascii_lowercase().starts_with("text/") && a.size <= 1024 * 1024);
    let attachment_text = if has_text_attachment {
        parsed
            .attachments
            .iter()
            .filter(|a| {
                a.content_type.to_ascii_lowercase().starts_with("text/") && a.size <= 1024 * 1024
            })
            .filter_map(|a| parse::extract_part(&message.raw, a.part_index))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        String::new()
    };
    let search = crate::search::SearchDoc {
        message_id: id,
        conversation_id: Uuid::nil(),
        mailbox: String::new(),
        folder: match &message.origin {
            Origin::Imap { folder, .. } => Some(folder.clone()),
            _ => None,
        },
        subject: parsed.subject.clone().unwrap_or_default(),
        body: body.text.clone(),
        from: people(&parsed.from),
        to: people(&parsed.to),
        cc: people(&parsed.cc),
        attachment_names: parsed
            .attachments
            .iter()
            .filter_map(|a| a.filename.clone())
            .collect(),
        attachment_text,
        date: parsed
            .date
            .map_or(received_at, |date| date.with_timezone(&Utc)),
        has_attachment: parsed.attachments.iter().any(|a| !a.inline),
        state: "open".to_string(),
        delivery_status: None,
    };
    let header_sealed = content_key.seal(&to_json(&headers)?, &message_aad("message.header", &id));
    let body_sealed = content_key.seal(&to_json(&body)?, &message_aad("message.body", &id));
    let attachments = seal_attachments(&parsed, &content_key, &id)?;

    let raw_aad = message_aad("message.raw", &id);
    let blob = if message.raw.len() <= INLINE_BLOB_MAX {
        PreparedBlob::Inline(seal_blob(&message.raw, &content_key, &raw_aad))
    } else {
        let blob_relative = blob_relative_path(&id);
        let final_path = blob_dir.join(&blob_relative);
        // The temp file goes into the blob's own bucket directory: the rename then stays within one
        // directory (no filesystem-wide cross-directory rename lock, which the two prepare threads
        // otherwise contend for), and new inodes spread over the buckets' block groups. A leftover
        // temp file is unreferenced, so `commit::sweep_orphans` removes it like any orphan.
        let temp_dir = final_path.parent().unwrap_or(blob_dir);
        let mut writer = BlobWriter::create(temp_dir, &final_path, &content_key, &raw_aad)?;
        writer.write_all(&message.raw)?;
        // Made durable for the whole batch at once (`commit::make_durable`) before the commit refers
        // to it.
        writer.finish_unsynced()?;
        PreparedBlob::File(blob_relative)
    };

    // Delivery reports are small; a second parse of a huge message would only cost memory.
    let report = if message.raw.len() <= DSN_PROBE_LIMIT
        && message.origin != Origin::Outbound
        && may_be_report(&parsed)
    {
        parse::dsn::delivery_report(&message.raw)
    } else {
        None
    };
    let is_bounce = report.as_ref().is_some_and(|report| report.is_bounce);
    let envelope_hints = parsed
        .headers
        .iter()
        .filter(|(name, _)| {
            [
                "to",
                "delivered-to",
                "x-original-to",
                "return-path",
                "envelope-to",
            ]
            .contains(&name.to_ascii_lowercase().as_str())
        })
        .map(|(_, value)| value.clone())
        .collect();
    Ok(PreparedMessage {
        id,
        origin: message.origin,
        content_key,
        message_id_hash,
        parent_hashes,
        content_hash,
        legacy_content_hash,
        subject_hash,
        is_reply_subject,
        subject: parsed.subject.clone(),
        sender_hashes,
        participants_hash,
        address_hashes,
        header_sealed,
        body_sealed,
        problem_sealed,
        attachments,
        blob,
        raw_size: message.oversize_of.unwrap_or(message.raw.len() as u64),
        status,
        is_automatic: parsed.auto.is_automatic,
        is_auto_reply: parsed.auto.is_auto_reply,
        is_bounce,
        received_at,
        report,
        envelope_hints,
        conversation: None,
        search: Some(search),
    })
}

fn status_of(message: &RawMessage, parsed: &ParsedMessage) -> (&'static str, Option<String>) {
    if let Some(size) = message.oversize_of {
        return (
            STATUS_OVERSIZE,
            Some(format!(
                "message of {size} bytes exceeds ingest.max_message_bytes; only its headers were stored"
            )),
        );
    }
    match &parsed.unparsed {
        Some(reason) => (STATUS_UNPARSED, Some(reason.clone())),
        // Malformed but readable (a broken boundary, an unknown charset, an unusable Message-ID): stored
        // as parsed, with what was wrong kept beside it so an agent sees why the mail may look odd.
        None if !parsed.problems.is_empty() => {
            let mut text = format!("parse problems: {}", parsed.problems.join("; "));
            if text.len() > MAX_PROBLEM_TEXT {
                let mut end = MAX_PROBLEM_TEXT;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
                text.push('…');
            }
            (STATUS_PARSED, Some(text))
        }
        None => (STATUS_PARSED, None),
    }
}

/// Longest problem text kept with a message.
const MAX_PROBLEM_TEXT: usize = 4096;

fn to_json(value: &impl Serialize) -> Result<Vec<u8>, IngestError> {
    serde_json::to_vec(value).map_err(|err| IngestError::Internal(err.to_string()))
}

fn seal_attachments(
    parsed: &ParsedMessage,
    key: &DataKey,
    message_id: &Uuid,
) -> Result<Vec<PreparedAttachment>, IngestError> {
    parsed
        .attachments
        .iter()
        .map(|attachment| {
            let id = Uuid::now_v7();
            let meta = StoredAttachment {
                filename: attachment.filename.clone(),
                content_type: attachment.content_type.clone(),
                sha256: attachment.sha256.clone(),
                inline: attachment.inline,
                is_message: attachment.is_message,
            };
            Ok(PreparedAttachment {
                id,
                part_index: i32::try_from(attachment.part_index).unwrap_or(i32::MAX),
                size: i64::try_from(attachment.size).unwrap_or(i64::MAX),
                meta_sealed: key.seal(&to_json(&meta)?, &attachment_aad(&id, message_id)),
            })
        })
        .collect()
}
