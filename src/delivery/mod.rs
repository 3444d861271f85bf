//! Replies and delivery events: composing an agent's reply, the outbox that sends it at most once per
//! recipient (SMTP with DSN requests, RFC 3461), and matching incoming delivery reports (RFC 3464) and
//! bounces to the messages they are about.
pub mod bounces;
pub mod compose;
pub mod outbox;
pub mod sender;
pub mod smtp;

/// Event kinds recorded per message and recipient.
pub mod event {
    /// Accepted into the outbox.
    pub const QUEUED: &str = "queued";
    /// Accepted by the relay (with its queue id when given).
    pub const SENT: &str = "sent";
    /// A temporary failure; inboxd retries.
    pub const DEFERRED: &str = "deferred";
    /// A remote MTA reported a delay (DSN action `delayed`).
    pub const DELAYED: &str = "delayed";
    /// Delivered (or relayed to a system without DSN) according to a DSN.
    pub const DELIVERED: &str = "delivered";
    /// Bounced according to a DSN or a non-standard bounce.
    pub const BOUNCED: &str = "bounced";
    /// Our side gave up (permanent SMTP error, retries exhausted, interrupted send).
    pub const FAILED: &str = "failed";
}

/// A delivery failure.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("invalid reply: {0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("mailbox `{0}` has no [mailbox.smtp] settings; replies cannot be sent from it")]
    NoSmtp(String),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("encryption: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("ingest: {0}")]
    Ingest(#[from] crate::ingest::IngestError),
}

/// The tag that names an outbox message in its envelope sender and ENVID: short, unique, no PII.
pub fn envelope_tag(message_id: &uuid::Uuid) -> String {
    let simple = message_id.simple().to_string();
    format!("ib{}", &simple[..])
}

/// `local+tag@domain` (VERP-style), so a bounce delivered to that address names its message even when it
/// quotes nothing.
pub fn verp_sender(address: &str, tag: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{local}+{tag}@{domain}"),
        None => address.to_string(),
    }
}

/// Finds an envelope tag in an address or header value (`…+ib<32 hex>@…`).
pub fn find_tag(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let mut rest = lower.as_str();
    while let Some(at) = rest.find("+ib") {
        let candidate = &rest[at + 1..];
        let hex: String = candidate[2..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        if hex.len() == 32 {
            return Some(format!("ib{hex}"));
        }
        rest = &rest[at + 3..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verp_tags_round_trip() {
        let id = uuid::Uuid::now_v7();
        let tag = envelope_tag(&id);
        let sender = verp_sender("support@example.com", &tag);
        assert!(sender.starts_with("support+ib"));
        assert_eq!(find_tag(&format!("To: <{sender}>")), Some(tag.clone()));
        assert_eq!(find_tag(&sender.to_uppercase()), Some(tag));
        assert_eq!(find_tag("support+other@example.com"), None);
    }
}
