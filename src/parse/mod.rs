//! Mail parsing for ingest: raw RFC 5322 bytes in, owned values out.
//!
//! Built on `mail-parser` for the MIME tree, charsets and RFC 2047/2231 decoding; this module adds
//! what inboxd needs on top: cleaned Message-ID lists (RFC 5322 section 3.6.4), thread keys, a
//! linear-time HTML to text renderer, attachment digests, RFC 3834 automatic-mail signals and a
//! list of non-fatal problems. Everything here is pure: no I/O, no logging of content, and
//! [`parse_message`] never panics on any input.

mod auto;
pub mod dsn;
mod entities;
mod headers;
mod html;
mod ids;
mod message;
mod parts;
mod report;
mod subject;
mod thread;

#[cfg(test)]
mod tests;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

pub use html::html_to_text;
pub use message::parse_message;
pub use parts::extract_part;
pub use report::{inspect_json, render_text};
pub use subject::normalize_subject;
pub use thread::thread_keys;

/// Most header fields kept in [`ParsedMessage::headers`]; the rest are counted in `problems`.
pub const MAX_HEADERS: usize = 1000;

/// Longest decoded header value kept in [`ParsedMessage::headers`], in bytes.
pub const MAX_HEADER_VALUE_BYTES: usize = 64 * 1024;

/// Everything ingest needs from one message, owned so it can cross threads and outlive the raw bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ParsedMessage {
    /// Message-ID without the angle brackets; `None` when missing, empty or unusable.
    pub message_id: Option<String>,
    /// Ids from In-Reply-To, cleaned, deduplicated, in header order (RFC 5322 section 3.6.4).
    pub in_reply_to: Vec<String>,
    /// Ids from References, cleaned, deduplicated, in header order.
    pub references: Vec<String>,
    /// Subject with RFC 2047 encoded-words decoded.
    pub subject: Option<String>,
    /// From addresses (groups flattened).
    pub from: Vec<Address>,
    /// Sender addresses.
    pub sender: Vec<Address>,
    /// Reply-To addresses.
    pub reply_to: Vec<Address>,
    /// To addresses.
    pub to: Vec<Address>,
    /// Cc addresses.
    pub cc: Vec<Address>,
    /// Bcc addresses.
    pub bcc: Vec<Address>,
    /// Origination date with the zone it was written in.
    pub date: Option<DateTime<FixedOffset>>,
    /// Plain-text body parts joined; a rendering of the HTML when the mail has no text part.
    pub text_body: String,
    /// HTML body parts joined, when the mail has any.
    pub html_body: Option<String>,
    /// Attachments, nested messages and the attachments inside nested messages.
    pub attachments: Vec<AttachmentInfo>,
    /// One summary per nested message/rfc822 part, in the order of `attachments`.
    pub nested: Vec<NestedSummary>,
    /// Top-level header fields in order: raw name, decoded and unfolded value.
    pub headers: Vec<(String, String)>,
    /// Signals that the message was sent by a machine (RFC 3834, RFC 2369, RFC 2919).
    pub auto: AutoSignals,
    /// Size of the raw message in bytes.
    pub size: u64,
    /// Why the bytes could not be read as a mail at all; the other fields hold whatever was found.
    pub unparsed: Option<String>,
    /// Non-fatal oddities, e.g. "missing boundary" or "invalid date header".
    pub problems: Vec<String>,
}

/// One mailbox from an address header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Address {
    /// Display name, decoded.
    pub name: Option<String>,
    /// Address with surrounding whitespace removed and the domain lowercased; the local part is
    /// kept as written because RFC 5321 section 2.4 lets it be case-sensitive.
    pub email: Option<String>,
}

/// A part a user can download: a file, an inline image or a nested message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttachmentInfo {
    /// Stable part number for [`extract_part`]. Top-level parts keep mail-parser's part id; parts of
    /// nested messages are numbered after all top-level parts, one block per nested message in the
    /// order they are found (breadth first).
    pub part_index: usize,
    /// File name from Content-Disposition or Content-Type, RFC 2231/2047 decoded.
    pub filename: Option<String>,
    /// Lowercase `type/subtype`.
    pub content_type: String,
    /// Size of the transfer-decoded content in bytes.
    pub size: u64,
    /// Hex SHA-256 of the transfer-decoded content (what [`extract_part`] returns).
    pub sha256: String,
    /// True when the part is meant to be shown inline (Content-Disposition inline, or an image in
    /// multipart/related) rather than offered as a file.
    pub inline: bool,
    /// True for a nested message/rfc822 (or message/global) part.
    pub is_message: bool,
    /// `part_index` of the nested message this part sits in; `None` for top-level parts.
    pub within_message: Option<usize>,
}

/// Headline of a nested message (a forwarded mail, or the original returned in a bounce).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NestedSummary {
    /// `part_index` of the message/rfc822 part.
    pub part_index: usize,
    /// Decoded subject of the nested message.
    pub subject: Option<String>,
    /// From addresses of the nested message.
    pub from: Vec<Address>,
    /// Message-ID of the nested message without brackets.
    pub message_id: Option<String>,
}

/// Signals that a message was generated by a machine, so inboxd must not auto-respond to it
/// (RFC 3834 section 2) and may treat it differently from a customer's reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AutoSignals {
    /// Auto-Submitted value (RFC 3834 section 5), trimmed.
    pub auto_submitted: Option<String>,
    /// Precedence value, trimmed and lowercased (not standard, but widely set by lists and bulk
    /// senders).
    pub precedence: Option<String>,
    /// List-Id identifier without brackets (RFC 2919).
    pub list_id: Option<String>,
    /// A List-Unsubscribe header is present (RFC 2369).
    pub list_unsubscribe: bool,
    /// X-Autoreply or X-Autorespond is present (de-facto vacation-responder markers).
    pub x_autoreply: bool,
    /// Any signal that a machine sent the message: Auto-Submitted other than "no", bulk-like
    /// Precedence, list headers, X-Auto-Response-Suppress, a null Return-Path, a MAILER-DAEMON
    /// sender, or an auto-reply.
    pub is_automatic: bool,
    /// The message is an automatic reply to another message (vacation, out of office):
    /// Auto-Submitted: auto-replied, X-Autoreply/X-Autorespond, or an auto-reply subject prefix.
    pub is_auto_reply: bool,
}

/// The keys the threading step needs from one message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ThreadKeys {
    /// The message's own id.
    pub message_id: Option<String>,
    /// References in order, then In-Reply-To, deduplicated, without the message's own id.
    pub parent_ids: Vec<String>,
    /// Subject after [`normalize_subject`].
    pub normalized_subject: String,
    /// Lowercased addresses from From, To and Cc, sorted and deduplicated.
    pub participants: Vec<String>,
}
