//! Building an agent's reply as an RFC 5322 message: a Message-ID of the mailbox's domain, In-Reply-To
//! and References from the conversation (RFC 5322 section 3.6.4), the mailbox's From, `Re:` subject.
//! Pure: values in, bytes out.
use std::time::SystemTime;

use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Mailboxes};
use uuid::Uuid;

use super::DeliveryError;

/// What a reply is made of.
pub struct ReplyDraft<'a> {
    pub from_address: &'a str,
    pub from_name: Option<&'a str>,
    pub to: &'a [String],
    pub cc: &'a [String],
    /// The conversation's subject (any `Re:` is normalised to one).
    pub subject: &'a str,
    /// Message-ID (without <>) of the message replied to.
    pub in_reply_to: Option<&'a str>,
    /// The References chain of the message replied to, oldest first (without <>).
    pub references: &'a [String],
    pub body: &'a str,
    pub date: SystemTime,
}

/// A composed reply.
pub struct Composed {
    /// Message-ID without angle brackets.
    pub message_id: String,
    pub raw: Vec<u8>,
}

/// Domain part of an address.
pub fn domain_of(address: &str) -> &str {
    address
        .rsplit_once('@')
        .map_or("localhost", |(_, domain)| domain)
}

fn mailbox(address: &str, name: Option<&str>) -> Result<Mailbox, DeliveryError> {
    let parsed = address
        .parse()
        .map_err(|_| DeliveryError::Invalid(format!("`{address}` is not a valid address")))?;
    Ok(Mailbox::new(name.map(str::to_string), parsed))
}

/// `Re: ` + the subject, unless it already starts with a reply marker.
pub fn reply_subject(subject: &str) -> String {
    let trimmed = subject.trim();
    let lower = trimmed.to_lowercase();
    if lower.starts_with("re:") || lower.starts_with("re :") {
        trimmed.to_string()
    } else {
        format!("Re: {trimmed}")
    }
}

/// Composes the reply.
pub fn compose(draft: &ReplyDraft<'_>) -> Result<Composed, DeliveryError> {
    if draft.to.is_empty() {
        return Err(DeliveryError::Invalid(
            "a reply needs at least one recipient".to_string(),
        ));
    }
    let message_id = format!(
        "{}@{}",
        Uuid::now_v7().simple(),
        domain_of(draft.from_address)
    );
    let mut builder = Message::builder()
        .from(mailbox(draft.from_address, draft.from_name)?)
        .subject(reply_subject(draft.subject))
        .message_id(Some(format!("<{message_id}>")))
        .date(draft.date);
    let mut to = Mailboxes::new();
    for address in draft.to {
        to.push(mailbox(address, None)?);
    }
    for address in to {
        builder = builder.to(address);
    }
    for address in draft.cc {
        builder = builder.cc(mailbox(address, None)?);
    }
    if let Some(parent) = draft.in_reply_to {
        builder = builder.in_reply_to(format!("<{parent}>"));
        let mut chain: Vec<String> = draft
            .references
            .iter()
            .map(|id| format!("<{id}>"))
            .collect();
        let parent_ref = format!("<{parent}>");
        if !chain.contains(&parent_ref) {
            chain.push(parent_ref);
        }
        // Long chains keep the first and the last ids (RFC 5322 suggests trimming the middle).
        if chain.len() > 20 {
            let tail = chain.split_off(chain.len() - 19);
            chain.truncate(1);
            chain.extend(tail);
        }
        builder = builder.references(chain.join(" "));
    }
    let message = builder
        .header(ContentType::TEXT_PLAIN)
        .body(draft.body.to_string())
        .map_err(|err| DeliveryError::Invalid(format!("cannot build the reply: {err}")))?;
    Ok(Composed {
        message_id,
        raw: message.formatted(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_carries_threading_headers_and_parses_back() {
        let to = vec!["customer@example.org".to_string()];
        let references = vec!["a@example.org".to_string(), "b@example.org".to_string()];
        let composed = compose(&ReplyDraft {
            from_address: "support@example.com",
            from_name: Some("Example Support"),
            to: &to,
            cc: &[],
            subject: "Printer broken",
            in_reply_to: Some("b@example.org"),
            references: &references,
            body: "Hello,\nwe are on it. Grüße\n",
            date: SystemTime::UNIX_EPOCH,
        })
        .expect("compose");
        assert!(composed.message_id.ends_with("@example.com"));
        let parsed = crate::parse::parse_message(&composed.raw);
        assert_eq!(
            parsed.message_id.as_deref(),
            Some(composed.message_id.as_str())
        );
        assert_eq!(parsed.in_reply_to, vec!["b@example.org".to_string()]);
        assert_eq!(parsed.references, references);
        assert_eq!(parsed.subject.as_deref(), Some("Re: Printer broken"));
        assert!(parsed.text_body.contains("Grüße"));
        assert_eq!(parsed.from[0].email.as_deref(), Some("support@example.com"));
    }

    #[test]
    fn subject_gets_one_reply_marker() {
        assert_eq!(reply_subject("Re: x"), "Re: x");
        assert_eq!(reply_subject("x"), "Re: x");
    }

    #[test]
    fn bad_recipient_is_refused() {
        let to = vec!["not an address".to_string()];
        let err = compose(&ReplyDraft {
            from_address: "support@example.com",
            from_name: None,
            to: &to,
            cc: &[],
            subject: "s",
            in_reply_to: None,
            references: &[],
            body: "b",
            date: SystemTime::UNIX_EPOCH,
        })
        .err()
        .expect("invalid");
        assert!(err.to_string().contains("not a valid address"));
    }
}
