//! Thread keys: what the threading step (RFC 5256 REFERENCES, JWZ) needs from one message.

use std::collections::HashSet;

use super::subject::normalize_subject;
use super::{ParsedMessage, ThreadKeys};

/// Builds the thread keys of a parsed message. Parents come from References in order (oldest
/// first, RFC 5322 section 3.6.4), then In-Reply-To, deduplicated and without the message's own
/// id, which some clients put in their own References.
pub fn thread_keys(parsed: &ParsedMessage) -> ThreadKeys {
    let own = parsed.message_id.as_deref();
    let mut seen: HashSet<&str> = HashSet::new();
    let parent_ids = parsed
        .references
        .iter()
        .chain(&parsed.in_reply_to)
        .filter(|id| Some(id.as_str()) != own && seen.insert(id.as_str()))
        .cloned()
        .collect();

    let mut participants: Vec<String> = parsed
        .from
        .iter()
        .chain(&parsed.to)
        .chain(&parsed.cc)
        .filter_map(|address| address.email.as_deref())
        .map(str::to_lowercase)
        .collect();
    participants.sort_unstable();
    participants.dedup();

    ThreadKeys {
        message_id: parsed.message_id.clone(),
        parent_ids,
        normalized_subject: normalize_subject(parsed.subject.as_deref().unwrap_or_default()),
        participants,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Address, ParsedMessage};
    use super::*;

    fn address(email: &str) -> Address {
        Address {
            name: None,
            email: Some(email.to_owned()),
        }
    }

    #[test]
    fn orders_and_deduplicates_parents_without_own_id() {
        let parsed = ParsedMessage {
            message_id: Some("me@x".to_owned()),
            references: vec!["root@x".to_owned(), "me@x".to_owned(), "mid@x".to_owned()],
            in_reply_to: vec!["mid@x".to_owned(), "other@x".to_owned()],
            ..ParsedMessage::default()
        };
        let keys = thread_keys(&parsed);
        assert_eq!(keys.parent_ids, ["root@x", "mid@x", "other@x"]);
        assert_eq!(keys.message_id.as_deref(), Some("me@x"));
    }

    #[test]
    fn collects_lowercased_sorted_participants() {
        let parsed = ParsedMessage {
            subject: Some("Re: AW: Hello".to_owned()),
            from: vec![address("Zed@X.org")],
            to: vec![address("amy@y.org"), address("zed@x.org")],
            cc: vec![Address {
                name: Some("no email".to_owned()),
                email: None,
            }],
            bcc: vec![address("hidden@z.org")],
            ..ParsedMessage::default()
        };
        let keys = thread_keys(&parsed);
        assert_eq!(keys.participants, ["amy@y.org", "zed@x.org"]);
        assert_eq!(keys.normalized_subject, "hello");
    }
}
