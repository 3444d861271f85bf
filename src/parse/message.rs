//! [`parse_message`]: raw bytes to [`ParsedMessage`].

use mail_parser::{HeaderName, Message, MessageParser};

use super::ParsedMessage;
use super::auto::auto_signals;
use super::headers::{addresses, all, first, header_list, raw_value, root_headers, to_chrono};
use super::ids::{parse_id_list, parse_single_id};
use super::parts::{attachments, bodies, structure_problems};

/// Parses one message. Never panics: bytes that are not a mail give a `ParsedMessage` whose
/// `unparsed` says why, holding whatever could still be read; oddities that do not stop parsing
/// are listed in `problems`.
pub fn parse_message(raw: &[u8]) -> ParsedMessage {
    let mut parsed = ParsedMessage {
        size: raw.len() as u64,
        ..ParsedMessage::default()
    };
    if raw.iter().all(u8::is_ascii_whitespace) {
        parsed.unparsed = Some("empty message".to_owned());
        return parsed;
    }
    let (_, skipped) = mail_start(raw);
    if skipped.blank_lines {
        parsed
            .problems
            .push("leading blank lines skipped".to_owned());
    }
    if skipped.mbox_line {
        parsed
            .problems
            .push("leading mbox From_ line skipped".to_owned());
    }
    let Some(message) = parse_mail(raw) else {
        parsed.unparsed = Some("no header fields found".to_owned());
        return parsed;
    };
    let headers = root_headers(&message);
    if headers.is_empty() {
        parsed.unparsed = Some("no header fields found".to_owned());
    } else if !headers.iter().any(|h| !h.name.is_other()) {
        parsed.unparsed = Some("no standard header fields found".to_owned());
    }
    parsed.headers = header_list(&message, &mut parsed.problems);
    read_identity(&message, &mut parsed);
    read_addresses(&message, &mut parsed);
    read_date(&message, &mut parsed);
    (parsed.text_body, parsed.html_body) = bodies(&message);
    (parsed.attachments, parsed.nested) = attachments(&message, &mut parsed.problems);
    structure_problems(&message, &mut parsed.problems);
    parsed.auto = auto_signals(&parsed);
    parsed
}

/// Runs mail-parser over the bytes after [`mail_start`]. [`super::extract_part`] uses the same
/// entry point so part numbers match.
pub(super) fn parse_mail(raw: &[u8]) -> Option<Message<'_>> {
    MessageParser::new().parse(raw.get(mail_start(raw).0..).unwrap_or_default())
}

/// Where the header section starts, and whether leading blank lines or an mbox `From ` line were
/// skipped to get there. mail-parser would read a blank first line as the end of an empty header
/// section, and an mbox separator as a header field named "From foo@bar Mon Jan  1 10".
fn mail_start(raw: &[u8]) -> (usize, Skipped) {
    let mut start = 0;
    let mut skipped = Skipped::default();
    while let Some(line_end) = blank_line_end(raw.get(start..).unwrap_or_default()) {
        start += line_end;
        skipped.blank_lines = true;
    }
    let rest = raw.get(start..).unwrap_or_default();
    if has_mbox_from_line(rest) {
        start += rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        skipped.mbox_line = true;
    }
    (start, skipped)
}

#[derive(Default)]
struct Skipped {
    blank_lines: bool,
    mbox_line: bool,
}

/// Length of the first line if it holds only whitespace and more text follows it.
fn blank_line_end(text: &[u8]) -> Option<usize> {
    let stop = text
        .iter()
        .position(|&b| b == b'\n' || !b.is_ascii_whitespace())?;
    (text.get(stop) == Some(&b'\n') && stop + 1 < text.len()).then_some(stop + 1)
}

/// An mbox separator line is `From ` and an envelope sender; `From :` is an obsolete-syntax
/// From header field (RFC 5322 section 4.5) and must be kept.
fn has_mbox_from_line(raw: &[u8]) -> bool {
    raw.strip_prefix(b"From ")
        .and_then(|rest| rest.iter().find(|b| !matches!(b, b' ' | b'\t')))
        .is_some_and(|&b| b != b':' && b != b'\n' && b != b'\r')
}

fn read_identity(message: &Message<'_>, parsed: &mut ParsedMessage) {
    let headers = root_headers(message);
    match first(headers, HeaderName::MessageId) {
        Some(header) => {
            parsed.message_id = parse_single_id(raw_value(message, header));
            if parsed.message_id.is_none() {
                parsed
                    .problems
                    .push("unusable message-id header".to_owned());
            }
        }
        None => parsed.problems.push("missing message-id header".to_owned()),
    }
    parsed.in_reply_to = joined_ids(message, HeaderName::InReplyTo);
    parsed.references = joined_ids(message, HeaderName::References);
    parsed.subject = first(headers, HeaderName::Subject)
        .and_then(|h| h.value.as_text())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    for (name, label) in [
        (HeaderName::MessageId, "message-id"),
        (HeaderName::Subject, "subject"),
    ] {
        if all(headers, name).nth(1).is_some() {
            parsed
                .problems
                .push(format!("duplicate {label} header, first one used"));
        }
    }
}

/// Ids of every occurrence of an id-list header, deduplicated across occurrences.
fn joined_ids(message: &Message<'_>, name: HeaderName<'static>) -> Vec<String> {
    let mut occurrences = all(root_headers(message), name).map(|h| raw_value(message, h));
    match (occurrences.next(), occurrences.next()) {
        (None, _) => Vec::new(),
        (Some(only), None) => parse_id_list(only),
        (Some(head), Some(second)) => {
            let mut joined = head.to_vec();
            for value in std::iter::once(second).chain(occurrences) {
                joined.push(b' ');
                joined.extend_from_slice(value);
            }
            parse_id_list(&joined)
        }
    }
}

fn read_addresses(message: &Message<'_>, parsed: &mut ParsedMessage) {
    let headers = root_headers(message);
    parsed.from = addresses(headers, HeaderName::From);
    parsed.sender = addresses(headers, HeaderName::Sender);
    parsed.reply_to = addresses(headers, HeaderName::ReplyTo);
    parsed.to = addresses(headers, HeaderName::To);
    parsed.cc = addresses(headers, HeaderName::Cc);
    parsed.bcc = addresses(headers, HeaderName::Bcc);
    if parsed.from.iter().all(|a| a.email.is_none()) {
        parsed.problems.push("missing from address".to_owned());
    }
}

fn read_date(message: &Message<'_>, parsed: &mut ParsedMessage) {
    match first(root_headers(message), HeaderName::Date) {
        None => parsed.problems.push("missing date header".to_owned()),
        Some(header) => {
            parsed.date = header.value.as_datetime().and_then(to_chrono);
            if parsed.date.is_none() {
                parsed.problems.push("invalid date header".to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIMPLE: &str = "From: \"Ann Smith\" <Ann@Example.ORG>\r\nTo: b@x.org, Team: c@y.org;\r\n\
Cc: D <d@z.org>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= again\r\nDate: Tue, 1 Jul 2003 10:52:37 +0200\r\n\
Message-ID: <m2@x.org>\r\nIn-Reply-To: Your message of Monday <m1@x.org>\r\nReferences: <m0@x.org>\r\n <m1@x.org>\r\n\
\r\nHello\r\n";

    #[test]
    fn reads_the_usual_fields() {
        let parsed = parse_message(SIMPLE.as_bytes());
        assert_eq!(parsed.unparsed, None);
        assert_eq!(parsed.message_id.as_deref(), Some("m2@x.org"));
        assert_eq!(parsed.in_reply_to, ["m1@x.org"]);
        assert_eq!(parsed.references, ["m0@x.org", "m1@x.org"]);
        assert_eq!(parsed.subject.as_deref(), Some("Grüße again"));
        assert_eq!(
            parsed.from.first().and_then(|a| a.email.as_deref()),
            Some("Ann@example.org")
        );
        assert_eq!(
            parsed.from.first().and_then(|a| a.name.as_deref()),
            Some("Ann Smith")
        );
        assert_eq!(parsed.to.len(), 2);
        assert_eq!(parsed.cc.len(), 1);
        assert_eq!(
            parsed.date.map(|d| d.to_rfc3339()).as_deref(),
            Some("2003-07-01T10:52:37+02:00")
        );
        assert_eq!(parsed.text_body, "Hello");
        assert_eq!(parsed.size, SIMPLE.len() as u64);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
    }

    #[test]
    fn empty_and_headerless_input_is_unparsed() {
        assert_eq!(
            parse_message(b"").unparsed.as_deref(),
            Some("empty message")
        );
        assert_eq!(
            parse_message(b" \r\n ").unparsed.as_deref(),
            Some("empty message")
        );
        assert!(
            parse_message(b"just some text without any header\n")
                .unparsed
                .is_some()
        );
        assert!(
            parse_message(&[0xff, 0xfe, 0x00, 0x3a, 0x10])
                .unparsed
                .is_some()
        );
        let parsed = parse_message(b"X-Only-Custom: yes\r\n\r\nbody");
        assert_eq!(
            parsed.unparsed.as_deref(),
            Some("no standard header fields found")
        );
        assert_eq!(parsed.headers.len(), 1);
    }

    #[test]
    fn reports_header_problems() {
        let parsed = parse_message(b"From: a@x.org\r\nDate: someday\r\nMessage-ID: <>\r\n\r\nx");
        assert!(parsed.problems.contains(&"invalid date header".to_owned()));
        assert!(
            parsed
                .problems
                .contains(&"unusable message-id header".to_owned())
        );
        let parsed = parse_message(b"Subject: s\r\nSubject: t\r\n\r\nx");
        assert_eq!(parsed.subject.as_deref(), Some("s"));
        for expected in [
            "missing date header",
            "missing message-id header",
            "missing from address",
        ] {
            assert!(parsed.problems.iter().any(|p| p == expected), "{expected}");
        }
        assert!(
            parsed
                .problems
                .iter()
                .any(|p| p.starts_with("duplicate subject"))
        );
    }

    #[test]
    fn skips_mbox_from_line() {
        let raw = format!("From someone@x.org Mon Jan  1 10:00:00 2001\n{}", SIMPLE);
        let parsed = parse_message(raw.as_bytes());
        assert_eq!(parsed.message_id.as_deref(), Some("m2@x.org"));
        assert!(
            parsed
                .headers
                .first()
                .is_some_and(|(name, _)| name == "From")
        );
        assert!(parsed.problems.iter().any(|p| p.contains("mbox")));
    }

    #[test]
    fn keeps_obsolete_from_header_with_space_before_colon() {
        let parsed = parse_message(b"From : a@x.org\r\nSubject: s\r\n\r\nx");
        assert_eq!(
            parsed.from.first().and_then(|a| a.email.as_deref()),
            Some("a@x.org")
        );
        assert!(!parsed.problems.iter().any(|p| p.contains("mbox")));
    }

    #[test]
    fn skips_leading_blank_lines() {
        let raw = format!("   \r\n\n{SIMPLE}");
        let parsed = parse_message(raw.as_bytes());
        assert_eq!(parsed.unparsed, None);
        assert_eq!(parsed.message_id.as_deref(), Some("m2@x.org"));
        assert!(
            parsed
                .problems
                .iter()
                .any(|p| p == "leading blank lines skipped")
        );
    }

    #[test]
    fn joins_repeated_reference_headers() {
        let raw = b"From: a@x.org\r\nReferences: <a@x>\r\nReferences: <b@x> <a@x>\r\n\r\nx";
        assert_eq!(parse_message(raw).references, ["a@x", "b@x"]);
    }

    #[test]
    fn headers_only_message_has_no_part_problem() {
        let parsed = parse_message(b"From: a@x.org\r\nSubject: s");
        assert_eq!(parsed.unparsed, None);
        assert!(
            !parsed.problems.iter().any(|p| p.contains("part")),
            "{:?}",
            parsed.problems
        );
    }
}
