//! Full-text search over conversations.
//!
//! Agents type a Gmail-like query (see [`query`] for the grammar); the index holds one tantivy
//! document per message and results are grouped by conversation at query time.
//!
//! The index is derived data: the database is the truth and the index can be rebuilt from it
//! ([`SearchIndex::indexed_message_ids`] tells the caller what is missing). It runs on any
//! tantivy [`Directory`](tantivy::Directory), so the caller can pass an encrypted one.
//!
//! What the index keeps (privacy): every searchable field is indexed (terms and positions), but
//! only two are stored in the document store, both for snippets: the subject and the first
//! [`SNIPPET_SOURCE_MAX_BYTES`] of the body text. Addresses, attachment names and attachment text
//! are indexed, never stored. Identifiers and the date live in fast-field columns.
//!
//! All calls are synchronous and CPU-bound: async callers run them in `spawn_blocking`.

mod analysis;
mod collector;
mod compile;
mod conversations;
pub mod directory;
mod index;
pub mod indexer;
mod lexer;
pub mod query;
mod schema;
mod snippet;
mod stemming;

#[cfg(test)]
mod grouping_tests;
#[cfg(test)]
mod test_corpus;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use self::index::{IndexWriterHandle, SearchIndex};
pub use self::query::QueryError;
pub use self::schema::SNIPPET_SOURCE_MAX_BYTES;

/// A participant as written in a header: `(display name, email address)`, either may be absent.
pub type Participant = (Option<String>, Option<String>);

/// One message as the indexer sees it.
///
/// The caller extracts text from the parsed message; nothing here is read back from the index
/// except the subject and the head of `body` (for snippets).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchDoc {
    /// Database id of the message; the index keeps at most one document per id.
    pub message_id: Uuid,
    /// Conversation the message belongs to; results are grouped by it.
    pub conversation_id: Uuid,
    /// Name of the shared mailbox (matched case-insensitively by `mailbox:` and the scoping).
    pub mailbox: String,
    /// IMAP folder the message was fetched from, if known (`folder:`).
    pub folder: Option<String>,
    /// Decoded subject.
    pub subject: String,
    /// Plain text of the message: text parts plus the text of HTML parts.
    pub body: String,
    /// `From:` participants.
    pub from: Vec<Participant>,
    /// `To:` participants.
    pub to: Vec<Participant>,
    /// `Cc:` participants.
    pub cc: Vec<Participant>,
    /// File names of attachments (`filename:`).
    pub attachment_names: Vec<String>,
    /// Text of text-like attachments (searched like the body, never stored).
    pub attachment_text: String,
    /// Message date; orders results and answers `before:` / `after:`.
    pub date: DateTime<Utc>,
    /// Whether the message has at least one attachment (`has:attachment`).
    pub has_attachment: bool,
    /// Conversation state at indexing time: `open`, `pending` or `closed` (`is:`).
    ///
    /// The state belongs to the conversation but is indexed per message: when it changes, the
    /// caller re-adds every message of the conversation (adding is idempotent).
    pub state: String,
    /// Delivery status such as `bounced` (`status:`), if the message reports one.
    pub delivery_status: Option<String>,
}

/// How results are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// By the date of the newest matching message, newest first.
    #[default]
    Newest,
    /// By the best BM25 score of a matching message, then newest first.
    Relevance,
}

/// Paging, ordering and scoping of one search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchOptions {
    /// Maximum number of conversations returned.
    pub limit: usize,
    /// Number of conversations skipped (in result order) before the first returned one.
    pub offset: usize,
    /// Result order.
    pub order: Order,
    /// When set, only messages in these mailboxes (compared case-insensitively) can match;
    /// an empty list matches nothing. Used to scope an agent to its mailboxes.
    pub mailboxes: Option<Vec<String>>,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            limit: 20,
            offset: 0,
            order: Order::Newest,
            mailboxes: None,
        }
    }
}

/// One page of conversations.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchResults {
    /// Number of conversations with at least one matching message (all pages).
    pub total_conversations: usize,
    /// The conversations of the requested page, in result order.
    pub hits: Vec<ConversationHit>,
}

/// A conversation with at least one matching message.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationHit {
    /// The conversation.
    pub conversation_id: Uuid,
    /// Best score of its matching messages (0 when ordered by date, which does not score).
    pub score: f32,
    /// Date of its newest matching message.
    pub newest: DateTime<Utc>,
    /// Number of its messages that match.
    pub matched_messages: usize,
    /// HTML fragment of the best message's body (or subject) with matched words in `<b>..</b>`;
    /// the text is HTML-escaped.
    pub snippet: String,
    /// Ids of the matching messages, newest first.
    pub message_ids: Vec<Uuid>,
}

/// Errors of the search module.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The query text is invalid; show the message to the user.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The index on disk was built with another schema: rebuild it from the database.
    #[error("index schema does not match this version: rebuild the index")]
    SchemaMismatch,
    /// Another `IndexWriter` holds the index lock.
    #[error("index writer lock is held by another writer")]
    WriterBusy,
    /// The index files are damaged (or failed authentication): rebuild it from the database.
    #[error("index is corrupted: {0}")]
    Corrupted(String),
    /// Any other index failure (I/O, directory, thread).
    #[error("index error: {0}")]
    Index(String),
}

impl SearchError {
    /// True when the query text is at fault (a user error, not a server error).
    pub fn is_query_error(&self) -> bool {
        matches!(self, SearchError::Query(_))
    }

    /// True when the index should be deleted and rebuilt from the database.
    pub fn needs_rebuild(&self) -> bool {
        matches!(
            self,
            SearchError::SchemaMismatch | SearchError::Corrupted(_)
        )
    }

    /// True when retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, SearchError::WriterBusy)
    }
}

impl From<tantivy::TantivyError> for SearchError {
    fn from(error: tantivy::TantivyError) -> Self {
        use tantivy::TantivyError;
        match error {
            TantivyError::LockFailure(..) => SearchError::WriterBusy,
            TantivyError::DataCorruption(corruption) => {
                SearchError::Corrupted(format!("{corruption:?}"))
            }
            other => SearchError::Index(other.to_string()),
        }
    }
}
