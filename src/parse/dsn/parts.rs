//! Walks the MIME tree of a report: finds the machine-readable report parts, the
//! human-readable text, and what the returned original message tells us.

use mail_parser::{
    Addr, Address, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};

use super::fields::addresses_in;
use super::text::{MAX_PROSE, cut_before_original, truncate};

/// What we know about the returned original message (the optional third part of an
/// RFC 6522 `multipart/report`, or headers quoted in a text bounce).
#[derive(Debug, Default)]
pub(super) struct Original {
    /// Message-ID with angle brackets; ids without `@` are ignored as malformed.
    pub message_id: Option<String>,
    /// Return-Path (or X-Envelope-From) address.
    pub envelope_from: Option<String>,
    /// Lowercase addresses of the original's author/sender: never a failed recipient.
    pub senders: Vec<String>,
    /// Lowercase To/Cc addresses of the original.
    pub recipients: Vec<String>,
}

/// True when `part` has the content type `ctype/subtype` (case-insensitive).
pub(super) fn has_type(part: &MessagePart<'_>, ctype: &str, subtypes: &[&str]) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case(ctype)
            && ct
                .subtype()
                .is_some_and(|sub| subtypes.iter().any(|s| sub.eq_ignore_ascii_case(s)))
    })
}

/// The `report-type` parameter of a top-level `multipart/report` (RFC 6522).
pub(super) fn report_type(message: &Message<'_>) -> Option<String> {
    let root = message.parts.first()?;
    if !has_type(root, "multipart", &["report"]) {
        return None;
    }
    root.content_type()
        .and_then(|ct| ct.attribute("report-type"))
        .map(|t| t.trim().to_ascii_lowercase())
}

/// Bodies of the parts of `ctype/subtypes` in this message (not inside attached messages).
pub(super) fn bodies_of_type(message: &Message<'_>, ctype: &str, subtypes: &[&str]) -> Vec<String> {
    message
        .parts
        .iter()
        .filter(|part| has_type(part, ctype, subtypes))
        .map(|part| String::from_utf8_lossy(part.contents()).into_owned())
        .collect()
}

/// The human-readable text of the report: its `text/plain` parts (or `text/html` turned
/// into text when there is no plain part), excluding returned headers and messages.
pub(super) fn report_texts(message: &Message<'_>) -> Vec<String> {
    let readable = |part: &&MessagePart<'_>| {
        // A multipart whose boundary never appears is left as text by mail-parser.
        part.content_type().is_none_or(|ct| {
            ct.ctype().eq_ignore_ascii_case("multipart")
                || ct.ctype().eq_ignore_ascii_case("text") && is_readable_subtype(ct.subtype())
        })
    };
    let plain: Vec<String> = message
        .parts
        .iter()
        .filter(readable)
        .filter_map(|part| match &part.body {
            PartType::Text(text) => Some(text.to_string()),
            _ => None,
        })
        .collect();
    if !plain.is_empty() {
        return plain;
    }
    message
        .parts
        .iter()
        .filter_map(|part| match &part.body {
            PartType::Html(html) => Some(mail_parser::decoders::html::html_to_text(html)),
            _ => None,
        })
        .collect()
}

fn is_readable_subtype(subtype: Option<&str>) -> bool {
    subtype.is_none_or(|sub| sub.eq_ignore_ascii_case("plain"))
}

/// A header of the top-level message as trimmed raw text.
pub(super) fn header_text(message: &Message<'_>, name: &str) -> Option<String> {
    if message.parts.is_empty() {
        return None;
    }
    message
        .header_raw(name)
        .map(|value| value.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|value| !value.is_empty())
}

/// Lowercase addresses of one address header value.
pub(super) fn address_list(value: Option<&Address<'_>>) -> Vec<String> {
    value
        .map(|address| {
            address
                .iter()
                .filter_map(|addr: &Addr<'_>| addr.address.as_deref())
                .filter(|address| address.contains('@'))
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default()
}

/// Collects the returned original message's identity from an attached `message/rfc822`,
/// a `text/rfc822-headers` part, or headers quoted in the report text.
pub(super) fn find_original(message: &Message<'_>, texts: &[String]) -> Original {
    let mut original = Original::default();
    for part in &message.parts {
        if let PartType::Message(nested) = &part.body {
            if nested.message_id().is_some() {
                absorb_headers(&mut original, nested);
                continue;
            }
            // Blank lines before the returned headers make mail-parser see an empty
            // header block; parse the part's raw bytes again without them.
            let start = part.raw_body_offset() as usize;
            let end = part.raw_end_offset() as usize;
            let raw = message
                .raw_message()
                .get(start..end)
                .unwrap_or_default()
                .trim_ascii_start();
            match MessageParser::default().parse_headers(raw) {
                Some(headers) if headers.message_id().is_some() => {
                    absorb_headers(&mut original, &headers);
                }
                _ => absorb_headers(&mut original, nested),
            }
        } else if has_type(part, "text", &["rfc822-headers", "rfc822-header"])
            || has_type(
                part,
                "message",
                &["rfc822-headers", "rfc822", "global-headers"],
            )
        {
            // Some MTAs put blank lines before the returned headers.
            let contents = part.contents().trim_ascii_start();
            if let Some(headers) = MessageParser::default().parse_headers(contents) {
                absorb_headers(&mut original, &headers);
            }
        }
    }
    for text in texts {
        // The returned headers open the quoted original; its body does not matter.
        let start = cut_before_original(text).len();
        let quoted = text.get(start..).unwrap_or_default();
        absorb_quoted_headers(&mut original, &truncate(quoted, MAX_PROSE));
    }
    original
}

fn absorb_headers(original: &mut Original, headers: &Message<'_>) {
    if headers.parts.is_empty() {
        return;
    }
    if original.message_id.is_none() {
        original.message_id = headers
            .message_id()
            .map(|id| id.trim_matches(['<', '>']))
            .filter(|id| id.contains('@'))
            .map(|id| format!("<{id}>"));
    }
    if original.envelope_from.is_none() {
        original.envelope_from = match headers.return_path() {
            HeaderValue::Text(text) => bare_address(text),
            HeaderValue::TextList(list) => list.last().and_then(|text| bare_address(text)),
            _ => None,
        }
        .or_else(|| headers.header_raw("X-Envelope-From").and_then(bare_address));
    }
    let envelope_from = original.envelope_from.clone();
    add_unique(&mut original.senders, address_list(headers.from()));
    add_unique(&mut original.senders, address_list(headers.sender()));
    add_unique(&mut original.senders, envelope_from);
    add_unique(&mut original.recipients, address_list(headers.to()));
    add_unique(&mut original.recipients, address_list(headers.cc()));
}

/// Reads `Message-ID:`, `Return-Path:` and `From:` lines of headers quoted as text
/// (qmail, Exim and most non-standard bounces return the message this way).
fn absorb_quoted_headers(original: &mut Original, quoted: &str) {
    let lines: Vec<&str> = quoted.lines().collect();
    for (index, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let Some((name, value)) = trimmed.split_once(':') else {
            continue;
        };
        let value = match value.trim() {
            "" => lines.get(index + 1).map_or("", |next| next.trim()),
            value => value,
        };
        match name.to_ascii_lowercase().as_str() {
            "message-id" if original.message_id.is_none() => {
                original.message_id = bracketed(value);
            }
            "return-path" => {
                if original.envelope_from.is_none() {
                    original.envelope_from = bare_address(value);
                }
                add_unique(&mut original.senders, bare_address(value));
            }
            "from" | "sender" => add_unique(
                &mut original.senders,
                addresses_in(value).into_iter().map(|(_, a)| a),
            ),
            "to" | "cc" => add_unique(
                &mut original.recipients,
                addresses_in(value).into_iter().map(|(_, a)| a),
            ),
            _ => {}
        }
    }
}

/// Most addresses remembered per list: quoted text can repeat headers many times.
const MAX_ADDRESSES: usize = 64;

fn add_unique(list: &mut Vec<String>, addresses: impl IntoIterator<Item = String>) {
    for address in addresses {
        if list.len() >= MAX_ADDRESSES {
            return;
        }
        if !list.contains(&address) {
            list.push(address);
        }
    }
}

fn bracketed(value: &str) -> Option<String> {
    let start = value.find('<')?;
    let end = start + value.get(start..)?.find('>')?;
    let id = value.get(start + 1..end)?.trim();
    (id.contains('@') && !id.contains(char::is_whitespace)).then(|| format!("<{id}>"))
}

fn bare_address(value: &str) -> Option<String> {
    addresses_in(value)
        .into_iter()
        .next()
        .map(|(_, address)| address)
}
