//! The MIME tree: bodies, attachments, nested messages, structural problems and part extraction.
//!
//! mail-parser numbers the parts of each (nested) message separately. We give every part of the
//! whole tree one number: top-level parts keep mail-parser's ids, and each nested message gets the
//! next free block of numbers, in breadth-first order. Parsing the same bytes again gives the same
//! numbers, which is what [`extract_part`] relies on.

use std::borrow::Cow;
use std::collections::VecDeque;

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::parsers::MessageStream;
use mail_parser::{Encoding, HeaderName, Message, MessagePart, MimeHeaders, PartType};
use sha2::{Digest, Sha256};

use super::headers::{self, first, raw_value, root_headers};
use super::html::html_to_text;
use super::ids::parse_single_id;
use super::message::parse_mail;
use super::{AttachmentInfo, NestedSummary};

/// Structural problems reported per message before the rest are summarised.
const MAX_PART_PROBLEMS: usize = 50;

/// Deepest nesting of message/rfc822 whose parts are listed as attachments. Each level hashes the
/// bytes of all levels inside it, so an unbounded depth would make hostile input quadratic.
const MAX_LISTED_DEPTH: usize = 8;

/// One message of the tree and where its parts are numbered.
pub(super) struct MessageBlock<'m, 'x> {
    pub message: &'m Message<'x>,
    /// Global number of this message's part 0.
    pub base: usize,
    /// Global number of the message/rfc822 part holding this message; `None` for the root.
    pub within: Option<usize>,
    /// How many message/rfc822 levels enclose this message (0 for the root).
    pub depth: usize,
}

/// All messages of the tree, root first, nested ones breadth first.
pub(super) fn message_blocks<'m, 'x>(root: &'m Message<'x>) -> Vec<MessageBlock<'m, 'x>> {
    let mut blocks = Vec::new();
    let mut queue = VecDeque::from([MessageBlock {
        message: root,
        base: 0,
        within: None,
        depth: 0,
    }]);
    let mut next_base = root.parts.len();
    while let Some(block) = queue.pop_front() {
        for (offset, part) in block.message.parts.iter().enumerate() {
            if let PartType::Message(nested) = &part.body {
                queue.push_back(MessageBlock {
                    message: nested,
                    base: next_base,
                    within: Some(block.base + offset),
                    depth: block.depth + 1,
                });
                next_base += nested.parts.len();
            }
        }
        blocks.push(block);
    }
    blocks
}

/// Joined text bodies (HTML rendered when a body has no text alternative) and joined HTML bodies.
/// Text line ends are normalised to `\n` and trailing whitespace is dropped; HTML is kept as sent.
/// An empty text alternative next to real HTML (common from Thunderbird) counts as HTML-only, and
/// a single-part message that mail-parser could only keep as raw text (e.g. a multipart without
/// boundary) gives that text, so search still sees the words.
pub(super) fn bodies(message: &Message<'_>) -> (String, Option<String>) {
    let mut text = String::new();
    for part in message
        .text_body
        .iter()
        .filter_map(|&id| message.parts.get(id as usize))
    {
        match &part.body {
            PartType::Text(body) => append_text(&mut text, body),
            PartType::Html(body) => append_text(&mut text, &html_to_text(body)),
            _ => {}
        }
    }
    let mut html: Option<String> = None;
    for part in message
        .html_body
        .iter()
        .filter_map(|&id| message.parts.get(id as usize))
    {
        if let PartType::Html(body) = &part.body {
            let target = html.get_or_insert_with(String::new);
            if !target.is_empty() {
                target.push('\n');
            }
            target.push_str(body);
        }
    }
    if text.is_empty() {
        let root = message.parts.first();
        let root_is_multipart = root
            .and_then(|part| part.content_type())
            .is_some_and(|ct| ct.ctype().eq_ignore_ascii_case("multipart"));
        match (&html, root.map(|part| &part.body)) {
            (Some(html), _) => append_text(&mut text, &html_to_text(html)),
            (None, Some(PartType::Text(raw_text))) => append_text(&mut text, raw_text),
            (None, Some(PartType::Binary(bytes))) if root_is_multipart => {
                append_text(&mut text, &String::from_utf8_lossy(bytes));
            }
            _ => {}
        }
    }
    (text, html)
}

fn append_text(target: &mut String, section: &str) {
    let section = section.trim_end();
    if section.is_empty() {
        return;
    }
    if !target.is_empty() {
        target.push('\n');
    }
    let mut pieces = section.split("\r\n");
    if let Some(head) = pieces.next() {
        target.push_str(head);
    }
    for piece in pieces {
        target.push('\n');
        target.push_str(piece);
    }
}

/// Attachments of the whole tree (nested messages included, then their own attachments) and a
/// summary of each nested message.
/// Messages nested deeper than [`MAX_LISTED_DEPTH`] are left out, with a problem noted.
pub(super) fn attachments(
    root: &Message<'_>,
    problems: &mut Vec<String>,
) -> (Vec<AttachmentInfo>, Vec<NestedSummary>) {
    let mut found = Vec::new();
    let mut nested = Vec::new();
    let blocks = message_blocks(root);
    if blocks.iter().any(|b| b.depth > MAX_LISTED_DEPTH) {
        problems.push(format!(
            "messages nested deeper than {MAX_LISTED_DEPTH} levels are not listed"
        ));
    }
    for block in blocks.into_iter().filter(|b| b.depth <= MAX_LISTED_DEPTH) {
        for &id in &block.message.attachments {
            let Some(part) = block.message.parts.get(id as usize) else {
                continue;
            };
            let part_index = block.base + id as usize;
            found.push(describe_attachment(
                block.message,
                part,
                part_index,
                block.within,
            ));
            if let PartType::Message(inner) = &part.body {
                nested.push(summarize_nested(inner, part_index));
            }
        }
    }
    (found, nested)
}

fn describe_attachment(
    message: &Message<'_>,
    part: &MessagePart<'_>,
    part_index: usize,
    within_message: Option<usize>,
) -> AttachmentInfo {
    let content = part_content(message, part);
    let disposition_inline = part.content_disposition().is_some_and(|d| d.is_inline());
    AttachmentInfo {
        part_index,
        filename: part.attachment_name().and_then(clean_filename),
        content_type: content_type(part),
        size: content.len() as u64,
        sha256: hex::encode(Sha256::digest(&content)),
        inline: disposition_inline || matches!(part.body, PartType::InlineBinary(_)),
        is_message: matches!(part.body, PartType::Message(_)),
        within_message,
    }
}

fn summarize_nested(message: &Message<'_>, part_index: usize) -> NestedSummary {
    let headers = root_headers(message);
    NestedSummary {
        part_index,
        subject: first(headers, HeaderName::Subject)
            .and_then(|h| h.value.as_text())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        from: headers::addresses(headers, HeaderName::From),
        message_id: first(headers, HeaderName::MessageId)
            .and_then(|h| parse_single_id(raw_value(message, h))),
    }
}

/// Lowercase `type/subtype`; RFC 2045 section 5.2 makes a missing Content-Type text/plain, and
/// RFC 2046 section 5.1.5 makes parts of multipart/digest message/rfc822.
fn content_type(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(subtype) => format!("{}/{}", ct.ctype(), subtype).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None if matches!(part.body, PartType::Message(_)) => "message/rfc822".to_owned(),
        None => "text/plain".to_owned(),
    }
}

/// Drops control characters; path separators are left for the download code to neutralise.
fn clean_filename(name: &str) -> Option<String> {
    let cleaned: String = name.chars().filter(|c| !c.is_control()).collect();
    let trimmed = cleaned.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// Transfer-decoded content of a part: what a user downloads. Text parts are decoded again from
/// the raw bytes, because mail-parser's text is already converted from its charset to UTF-8 and
/// a downloaded file must keep its own bytes.
fn part_content<'a>(message: &'a Message<'_>, part: &'a MessagePart<'_>) -> Cow<'a, [u8]> {
    let raw_body = || {
        message
            .raw_message
            .get(part.offset_body as usize..part.offset_end as usize)
            .unwrap_or_default()
    };
    match &part.body {
        PartType::Binary(bytes) | PartType::InlineBinary(bytes) => Cow::Borrowed(bytes.as_ref()),
        PartType::Message(nested) if part.encoding == Encoding::None => Cow::Borrowed(raw_body()),
        PartType::Message(nested) => Cow::Borrowed(nested.raw_message.as_ref()),
        // A part mail-parser could only recover holds its best guess at the content (e.g. a
        // broken nested message without the boundary it swallowed); keep that.
        PartType::Text(text) | PartType::Html(text) if part.is_encoding_problem => {
            Cow::Borrowed(text.as_bytes())
        }
        PartType::Text(_) | PartType::Html(_) => transfer_decode(raw_body(), part.encoding),
        PartType::Multipart(_) => Cow::Borrowed(&[]),
    }
}

fn transfer_decode(body: &[u8], encoding: Encoding) -> Cow<'_, [u8]> {
    let (end, decoded) = match encoding {
        Encoding::None => return Cow::Borrowed(body),
        Encoding::Base64 => MessageStream::new(body).decode_base64_mime(b""),
        Encoding::QuotedPrintable => MessageStream::new(body).decode_quoted_printable_mime(b""),
    };
    if end == usize::MAX {
        Cow::Borrowed(body)
    } else {
        Cow::Owned(decoded.into_owned())
    }
}

/// Decoded content of one part, numbered as in [`super::AttachmentInfo::part_index`]. `None`
/// when the bytes are not a mail, the number is out of range, or the part is a multipart
/// container (which has no content of its own).
pub fn extract_part(raw: &[u8], part_index: usize) -> Option<Vec<u8>> {
    let message = parse_mail(raw)?;
    let blocks = message_blocks(&message);
    let block = blocks
        .iter()
        .find(|b| part_index >= b.base && part_index < b.base + b.message.parts.len())?;
    let part = block.message.parts.get(part_index - block.base)?;
    if matches!(part.body, PartType::Multipart(_)) {
        return None;
    }
    Some(part_content(block.message, part).into_owned())
}

/// Reports broken MIME structure: missing or unmatched boundaries, undecodable charsets,
/// unknown transfer encodings and parts mail-parser could only recover as raw text.
pub(super) fn structure_problems(root: &Message<'_>, problems: &mut Vec<String>) {
    let mut found = Vec::new();
    for block in message_blocks(root) {
        for (offset, part) in block.message.parts.iter().enumerate() {
            check_part(block.message, part, block.base + offset, &mut found);
        }
    }
    let total = found.len();
    problems.extend(found.into_iter().take(MAX_PART_PROBLEMS));
    if total > MAX_PART_PROBLEMS {
        problems.push(format!(
            "{} more part problems omitted",
            total - MAX_PART_PROBLEMS
        ));
    }
}

fn check_part(
    message: &Message<'_>,
    part: &MessagePart<'_>,
    index: usize,
    found: &mut Vec<String>,
) {
    let content_type = part.content_type();
    let is_multipart = content_type.is_some_and(|ct| ct.ctype().eq_ignore_ascii_case("multipart"));
    if is_multipart {
        check_multipart(message, part, index, found);
    }
    let is_headers_only = index == 0 && part.offset_body as usize >= message.raw_message.len();
    if part.is_encoding_problem && !is_headers_only {
        found.push(format!(
            "part {index} could not be decoded and is kept as raw text"
        ));
    }
    if let (true, Some(charset)) = (
        part.is_text(),
        content_type.and_then(|ct| ct.attribute("charset")),
    ) && charset_decoder(charset.as_bytes()).is_none()
        && !is_utf8_alias(charset)
    {
        found.push(format!(
            "undecodable charset {} in part {index}",
            printable(charset)
        ));
    }
    if let Some(encoding) = part.content_transfer_encoding() {
        let known = ["7bit", "8bit", "binary", "base64", "quoted-printable"];
        if !known
            .iter()
            .any(|k| encoding.trim().eq_ignore_ascii_case(k))
        {
            found.push(format!(
                "unknown transfer encoding {} in part {index}",
                printable(encoding)
            ));
        }
    }
}

fn check_multipart(
    message: &Message<'_>,
    part: &MessagePart<'_>,
    index: usize,
    found: &mut Vec<String>,
) {
    let Some(boundary) = part.content_type().and_then(|ct| ct.attribute("boundary")) else {
        found.push(format!("missing boundary in part {index}"));
        return;
    };
    let PartType::Multipart(children) = &part.body else {
        found.push(format!("boundary not found in part {index}"));
        return;
    };
    let Some(last_child) = children
        .last()
        .and_then(|&id| message.parts.get(id as usize))
    else {
        return;
    };
    let raw = message.raw_message.as_ref();
    let end = last_child.offset_end as usize;
    if !closes_after(raw, end, boundary.as_bytes()) && !closes_before(raw, end, boundary.as_bytes())
    {
        found.push(format!("missing final boundary in part {index}"));
    }
}

/// Whether `--boundary--` (RFC 2046 section 5.1.1 close-delimiter) follows `position`, after the
/// line break that belongs to it.
fn closes_after(raw: &[u8], position: usize, boundary: &[u8]) -> bool {
    let rest = raw.get(position..).unwrap_or_default();
    let skipped = rest
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_whitespace())
        .count();
    let rest = rest.get(skipped..).unwrap_or_default();
    rest.strip_prefix(b"--")
        .and_then(|r| r.strip_prefix(boundary))
        .is_some_and(|r| r.starts_with(b"--"))
}

/// Whether the bytes before `position` end with the close-delimiter: mail-parser sometimes ends a
/// broken last part after the delimiter it swallowed.
fn closes_before(raw: &[u8], position: usize, boundary: &[u8]) -> bool {
    let head = raw.get(..position).unwrap_or_default();
    let trimmed = head.len()
        - head
            .iter()
            .rev()
            .take(4)
            .take_while(|b| b.is_ascii_whitespace())
            .count();
    let head = head.get(..trimmed).unwrap_or_default();
    head.strip_suffix(b"--")
        .and_then(|h| h.strip_suffix(boundary))
        .is_some_and(|h| h.ends_with(b"--"))
}

fn is_utf8_alias(charset: &str) -> bool {
    let aliases = [
        "utf8",
        "utf-8",
        "unicode-1-1-utf-8",
        "unicode11utf8",
        "unicode20utf8",
        "x-unicode20utf8",
    ];
    aliases
        .iter()
        .any(|a| charset.trim().eq_ignore_ascii_case(a))
}

/// A short, printable rendering of an untrusted token for a problem message.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::super::parse_message;
    use super::*;

    const NESTED: &str = "From: a@x.org\r\nSubject: outer\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
--b1\r\nContent-Type: message/rfc822\r\n\r\n\
From: Inner <inner@y.org>\r\nSubject: inner subject\r\nMessage-ID: <inner@y.org>\r\n\
Content-Type: multipart/mixed; boundary=\"b2\"\r\n\r\n\
--b2\r\nContent-Type: text/plain\r\n\r\ninner text\r\n\
--b2\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"in.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b2--\r\n\
--b1\r\nContent-Type: text/plain; charset=iso-8859-1; name=\"notes.txt\"\r\nContent-Disposition: attachment\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9\r\n--b1--\r\n";

    #[test]
    fn numbers_nested_parts_after_top_level_parts() {
        let parsed = parse_message(NESTED.as_bytes());
        let summary: Vec<_> = parsed
            .attachments
            .iter()
            .map(|a| {
                (
                    a.part_index,
                    a.filename.as_deref(),
                    a.is_message,
                    a.within_message,
                )
            })
            .collect();
        // Top level: 0 multipart, 1 text, 2 message, 3 notes.txt. Nested: 4 multipart, 5 text, 6 in.bin.
        assert_eq!(
            summary,
            [
                (2, None, true, None),
                (3, Some("notes.txt"), false, None),
                (6, Some("in.bin"), false, Some(2))
            ]
        );
        assert_eq!(parsed.nested.len(), 1);
        assert_eq!(parsed.nested[0].subject.as_deref(), Some("inner subject"));
        assert_eq!(parsed.nested[0].message_id.as_deref(), Some("inner@y.org"));
        assert_eq!(parsed.text_body, "see attached");
    }

    #[test]
    fn deep_nesting_is_listed_only_to_a_limit() {
        let mut raw = String::new();
        for _ in 0..MAX_LISTED_DEPTH + 5 {
            raw.push_str("From: a@x.org\r\nContent-Type: message/rfc822\r\n\r\n");
        }
        raw.push_str("From: z@x.org\r\n\r\nbody\r\n");
        let parsed = parse_message(raw.as_bytes());
        // The root and each listed level hold one nested message each.
        assert_eq!(parsed.attachments.len(), MAX_LISTED_DEPTH + 1);
        assert!(parsed.problems.iter().any(|p| p.contains("nested deeper")));
        // Deeper parts are still numbered and extractable: level k holds its message in part k.
        let innermost = MAX_LISTED_DEPTH + 4;
        let bytes = extract_part(raw.as_bytes(), innermost).unwrap_or_default();
        assert!(
            bytes.starts_with(b"From: z@x.org"),
            "{:?}",
            String::from_utf8_lossy(&bytes)
        );
        let body = extract_part(raw.as_bytes(), innermost + 1).unwrap_or_default();
        assert!(
            body.starts_with(b"body"),
            "{:?}",
            String::from_utf8_lossy(&body)
        );
    }

    #[test]
    fn extracts_decoded_bytes_matching_the_digest() {
        let raw = NESTED.as_bytes();
        let parsed = parse_message(raw);
        for attachment in &parsed.attachments {
            let bytes = extract_part(raw, attachment.part_index).expect("part exists");
            assert_eq!(bytes.len() as u64, attachment.size);
            assert_eq!(hex::encode(Sha256::digest(&bytes)), attachment.sha256);
        }
        assert_eq!(extract_part(raw, 6), Some(vec![0, 1, 2]));
        // Text attachments keep their own charset: é stays one latin-1 byte.
        assert_eq!(extract_part(raw, 3), Some(b"caf\xe9".to_vec()));
        let nested = extract_part(raw, 2).expect("nested message");
        assert!(nested.starts_with(b"From: Inner"));
        assert_eq!(extract_part(raw, 0), None);
        assert_eq!(extract_part(raw, 99), None);
        assert_eq!(extract_part(b"", 0), None);
    }

    #[test]
    fn reports_missing_and_unmatched_boundaries() {
        let raw = "From: a@x.org\r\nContent-Type: multipart/mixed\r\n\r\nbody\r\n";
        let parsed = parse_message(raw.as_bytes());
        assert!(
            parsed
                .problems
                .iter()
                .any(|p| p == "missing boundary in part 0")
        );
        assert_eq!(parsed.text_body, "body");
        let raw = "From: a@x.org\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\nbody\r\n";
        assert!(
            parse_message(raw.as_bytes())
                .problems
                .iter()
                .any(|p| p == "boundary not found in part 0")
        );
        let raw = "From: a@x.org\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n\r\nbody\r\n";
        assert!(
            parse_message(raw.as_bytes())
                .problems
                .iter()
                .any(|p| p == "missing final boundary in part 0")
        );
        let parsed = parse_message(NESTED.as_bytes());
        assert!(
            !parsed.problems.iter().any(|p| p.contains("boundary")),
            "{:?}",
            parsed.problems
        );
    }

    #[test]
    fn reports_unknown_charsets_and_encodings() {
        let raw = "From: a@x.org\r\nContent-Type: text/plain; charset=x-klingon\r\n\
                   Content-Transfer-Encoding: x-uuencode\r\n\r\nbody\r\n";
        let problems = parse_message(raw.as_bytes()).problems;
        assert!(
            problems
                .iter()
                .any(|p| p == "undecodable charset x-klingon in part 0"),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p == "unknown transfer encoding x-uuencode in part 0"),
            "{problems:?}"
        );
        let raw = "From: a@x.org\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nbody\r\n";
        assert!(
            !parse_message(raw.as_bytes())
                .problems
                .iter()
                .any(|p| p.contains("charset"))
        );
    }

    #[test]
    fn html_only_mail_gets_a_text_rendering() {
        let raw = "From: a@x.org\r\nContent-Type: text/html\r\n\r\n<p>Hello <b>there</b></p><p>Bye</p>\r\n";
        let parsed = parse_message(raw.as_bytes());
        assert_eq!(parsed.text_body, "Hello there\n\nBye");
        assert!(parsed.html_body.is_some_and(|h| h.contains("<b>there</b>")));
    }

    #[test]
    fn empty_text_alternative_falls_back_to_html() {
        let raw = "From: a@x.org\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n\
                   --b\r\nContent-Type: text/plain\r\n\r\n\r\n\
                   --b\r\nContent-Type: text/html\r\n\r\n<p>only here</p>\r\n--b--\r\n";
        assert_eq!(parse_message(raw.as_bytes()).text_body, "only here");
    }

    #[test]
    fn alternative_keeps_text_and_html_apart() {
        let raw = "From: a@x.org\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n\
                   --b\r\nContent-Type: text/plain\r\n\r\nplain version\r\n\
                   --b\r\nContent-Type: text/html\r\n\r\n<p>html version</p>\r\n--b--\r\n";
        let parsed = parse_message(raw.as_bytes());
        assert_eq!(parsed.text_body, "plain version");
        assert_eq!(parsed.html_body.as_deref(), Some("<p>html version</p>"));
        assert!(parsed.attachments.is_empty());
    }
}
