//! The index schema (one document per message) and how a [`SearchDoc`] becomes a document.
//!
//! Changing a field name, type, option or tokenizer changes the schema: an index built by an
//! older version then fails to open with [`super::SearchError::SchemaMismatch`] and is rebuilt.

use tantivy::TantivyDocument;
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, Schema, TextFieldIndexing, TextOptions,
};

use super::SearchDoc;
use super::analysis::{KEYWORD, PARTS, TEXT};

/// How much of the body (in bytes, cut at a character boundary) is stored for snippets. Matches
/// further in the body are still found; their snippet then comes from the subject or the start
/// of the body. Keeps the stored copy of mail text small.
pub const SNIPPET_SOURCE_MAX_BYTES: usize = 16 * 1024;

/// Fast-field column names read by the collector.
pub(super) const CONVERSATION_HIGH: &str = "conversation_hi";
pub(super) const CONVERSATION_LOW: &str = "conversation_lo";
pub(super) const MESSAGE_HIGH: &str = "message_hi";
pub(super) const MESSAGE_LOW: &str = "message_lo";
pub(super) const DATE: &str = "date";

/// The value indexed in the `has` field for `has:attachment`.
pub(super) const HAS_ATTACHMENT: &str = "attachment";

/// Handles of every schema field.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fields {
    /// Message id as 16 bytes, indexed only, for `delete_term`.
    pub(super) message_id: Field,
    /// Conversation id as 16 bytes, indexed only, for `delete_term`.
    pub(super) conversation_id: Field,
    /// Message id halves as fast columns, to read ids back without a stored field.
    pub(super) message_high: Field,
    pub(super) message_low: Field,
    /// Conversation id halves as fast columns, for grouping at query time.
    pub(super) conversation_high: Field,
    pub(super) conversation_low: Field,
    /// Unix seconds, fast column: ordering and date ranges.
    pub(super) date: Field,
    /// Text fields (positions for phrases); the subject is also stored for snippets.
    pub(super) subject: Field,
    pub(super) body: Field,
    pub(super) attachment_text: Field,
    /// Stored-only head of the body, the source of snippets.
    pub(super) snippet_body: Field,
    /// Participant and file-name fields (parts analyzer, positions).
    pub(super) from: Field,
    pub(super) to: Field,
    pub(super) cc: Field,
    pub(super) filename: Field,
    /// Keyword fields.
    pub(super) mailbox: Field,
    pub(super) folder: Field,
    pub(super) state: Field,
    pub(super) status: Field,
    pub(super) has: Field,
}

fn indexed_text(tokenizer: &str, record: IndexRecordOption, fieldnorms: bool) -> TextOptions {
    TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(tokenizer)
            .set_index_option(record)
            .set_fieldnorms(fieldnorms),
    )
}

/// Builds the schema and its field handles.
pub(super) fn build_schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let text = indexed_text(TEXT, IndexRecordOption::WithFreqsAndPositions, true);
    let parts = indexed_text(PARTS, IndexRecordOption::WithFreqsAndPositions, true);
    let keyword = indexed_text(KEYWORD, IndexRecordOption::Basic, false);
    let fields = Fields {
        message_id: builder.add_bytes_field("message_id", INDEXED),
        conversation_id: builder.add_bytes_field("conversation_id", INDEXED),
        message_high: builder.add_u64_field(MESSAGE_HIGH, FAST),
        message_low: builder.add_u64_field(MESSAGE_LOW, FAST),
        conversation_high: builder.add_u64_field(CONVERSATION_HIGH, FAST),
        conversation_low: builder.add_u64_field(CONVERSATION_LOW, FAST),
        date: builder.add_i64_field(DATE, FAST),
        subject: builder.add_text_field("subject", text.clone().set_stored()),
        body: builder.add_text_field("body", text.clone()),
        attachment_text: builder.add_text_field("attachment_text", text),
        snippet_body: builder.add_text_field("snippet_body", STORED),
        from: builder.add_text_field("from", parts.clone()),
        to: builder.add_text_field("to", parts.clone()),
        cc: builder.add_text_field("cc", parts.clone()),
        filename: builder.add_text_field("filename", parts),
        mailbox: builder.add_text_field("mailbox", keyword.clone()),
        folder: builder.add_text_field("folder", keyword.clone()),
        state: builder.add_text_field("state", keyword.clone()),
        status: builder.add_text_field("status", keyword.clone()),
        has: builder.add_text_field("has", keyword),
    };
    (builder.build(), fields)
}

/// The longest prefix of `text` that fits in `max_bytes` and ends at a character boundary.
fn truncate_at_char(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let end = (0..=max_bytes)
        .rev()
        .find(|&index| text.is_char_boundary(index))
        .unwrap_or(0);
    text.get(..end).unwrap_or_default()
}

/// Adds each participant's name and address as separate values of `field`.
fn add_participants(document: &mut TantivyDocument, field: Field, people: &[super::Participant]) {
    for (name, address) in people {
        for value in [name, address].into_iter().flatten() {
            document.add_text(field, value);
        }
    }
}

/// The tantivy document for one message.
pub(super) fn document(fields: &Fields, message: &SearchDoc) -> TantivyDocument {
    let mut document = TantivyDocument::default();
    document.add_bytes(fields.message_id, message.message_id.as_bytes());
    document.add_bytes(fields.conversation_id, message.conversation_id.as_bytes());
    let (message_high, message_low) = message.message_id.as_u64_pair();
    document.add_u64(fields.message_high, message_high);
    document.add_u64(fields.message_low, message_low);
    let (conversation_high, conversation_low) = message.conversation_id.as_u64_pair();
    document.add_u64(fields.conversation_high, conversation_high);
    document.add_u64(fields.conversation_low, conversation_low);
    document.add_i64(fields.date, message.date.timestamp());
    document.add_text(fields.subject, &message.subject);
    document.add_text(fields.body, &message.body);
    document.add_text(
        fields.snippet_body,
        truncate_at_char(&message.body, SNIPPET_SOURCE_MAX_BYTES),
    );
    if !message.attachment_text.is_empty() {
        document.add_text(fields.attachment_text, &message.attachment_text);
    }
    add_participants(&mut document, fields.from, &message.from);
    add_participants(&mut document, fields.to, &message.to);
    add_participants(&mut document, fields.cc, &message.cc);
    for name in &message.attachment_names {
        document.add_text(fields.filename, name);
    }
    document.add_text(fields.mailbox, &message.mailbox);
    if let Some(folder) = &message.folder {
        document.add_text(fields.folder, folder);
    }
    document.add_text(fields.state, &message.state);
    if let Some(status) = &message.delivery_status {
        document.add_text(fields.status, status);
    }
    if message.has_attachment {
        document.add_text(fields.has, HAS_ATTACHMENT);
    }
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate_at_char("abc", 10), "abc");
        assert_eq!(truncate_at_char("abc", 2), "ab");
        // "é" takes bytes 1..3: a cut at byte 2 falls back to byte 1.
        assert_eq!(truncate_at_char("aé", 2), "a");
        assert_eq!(truncate_at_char("éé", 3), "é");
        assert_eq!(truncate_at_char("é", 0), "");
    }

    #[test]
    fn schema_is_stable_between_builds() {
        let (first, _) = build_schema();
        let (second, _) = build_schema();
        assert_eq!(first, second);
        let stored: Vec<&str> = first
            .fields()
            .filter(|(_, entry)| entry.is_stored())
            .map(|(_, entry)| entry.name())
            .collect();
        assert_eq!(stored, vec!["subject", "snippet_body"]);
    }
}
