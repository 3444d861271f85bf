//! Reading header fields of one (possibly nested) message: raw names, decoded values, addresses
//! and dates.

use std::borrow::Cow;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
use mail_parser::parsers::MessageStream;
use mail_parser::{Header, HeaderName, HeaderValue, Message};

use super::{Address, MAX_HEADER_VALUE_BYTES, MAX_HEADERS};

/// The header fields of a message's root part.
pub(super) fn root_headers<'m, 'x>(message: &'m Message<'x>) -> &'m [Header<'x>] {
    message
        .parts
        .first()
        .map(|part| part.headers.as_slice())
        .unwrap_or_default()
}

/// Raw bytes of a header's value (after the colon, folding included), from the buffer the
/// message was parsed from.
pub(super) fn raw_value<'a>(message: &'a Message<'_>, header: &Header<'_>) -> &'a [u8] {
    message
        .raw_message
        .get(header.offset_start as usize..header.offset_end as usize)
        .unwrap_or_default()
}

/// The field name as written, without the colon.
pub(super) fn raw_name(message: &Message<'_>, header: &Header<'_>) -> String {
    let bytes = message
        .raw_message
        .get(header.offset_field as usize..header.offset_start as usize)
        .unwrap_or_default();
    let text = String::from_utf8_lossy(bytes);
    let name = text.trim().trim_end_matches(':').trim_end();
    if name.is_empty() {
        header.name.as_str().to_owned()
    } else {
        name.to_owned()
    }
}

/// Unfolds a raw value and decodes RFC 2047 encoded-words in it.
pub(super) fn decode_value(raw: &[u8]) -> String {
    if !raw.windows(2).any(|pair| pair == b"=?") {
        return unfold(raw);
    }
    // mail-parser ends a value at a newline that is not followed by whitespace; without one the
    // value would come back empty.
    let input: Cow<'_, [u8]> = if raw.ends_with(b"\n") {
        Cow::Borrowed(raw)
    } else {
        let mut owned = raw.to_vec();
        owned.push(b'\n');
        Cow::Owned(owned)
    };
    match MessageStream::new(&input).parse_unstructured() {
        HeaderValue::Text(text) => text.into_owned(),
        _ => String::new(),
    }
}

/// The common case without encoded-words: folding whitespace (RFC 5322 section 2.2.3) and runs
/// of blanks become one space, as mail-parser's unstructured parser would make them.
fn unfold(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut pending_space = false;
    for &byte in raw {
        if byte.is_ascii_whitespace() {
            pending_space = !out.is_empty();
        } else {
            if pending_space {
                out.push(b' ');
                pending_space = false;
            }
            out.push(byte);
        }
    }
    String::from_utf8(out)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

/// Header fields in order as (raw name, decoded value), capped at [`MAX_HEADERS`] fields and
/// [`MAX_HEADER_VALUE_BYTES`] per value; what was cut is reported in `problems`.
pub(super) fn header_list(
    message: &Message<'_>,
    problems: &mut Vec<String>,
) -> Vec<(String, String)> {
    let headers = root_headers(message);
    if headers.len() > MAX_HEADERS {
        problems.push(format!(
            "too many header fields ({}), kept {MAX_HEADERS}",
            headers.len()
        ));
    }
    let mut truncated = 0usize;
    let list = headers
        .iter()
        .take(MAX_HEADERS)
        .map(|header| {
            let mut value = decode_value(raw_value(message, header));
            if value.len() > MAX_HEADER_VALUE_BYTES {
                truncate_at_char_boundary(&mut value, MAX_HEADER_VALUE_BYTES);
                truncated += 1;
            }
            (raw_name(message, header), value)
        })
        .collect();
    if truncated > 0 {
        problems.push(format!(
            "{truncated} header values truncated to {MAX_HEADER_VALUE_BYTES} bytes"
        ));
    }
    list
}

pub(super) fn truncate_at_char_boundary(text: &mut String, max_bytes: usize) {
    if text.len() <= max_bytes {
        return;
    }
    let cut = (0..=max_bytes)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    text.truncate(cut);
}

/// All occurrences of a header, in order.
pub(super) fn all<'m, 'x>(
    headers: &'m [Header<'x>],
    name: HeaderName<'static>,
) -> impl Iterator<Item = &'m Header<'x>> + use<'m, 'x> {
    headers.iter().filter(move |header| header.name == name)
}

/// The first occurrence of a header (RFC 5322 allows one; most readers take the first).
pub(super) fn first<'m, 'x>(
    headers: &'m [Header<'x>],
    name: HeaderName<'static>,
) -> Option<&'m Header<'x>> {
    headers.iter().find(|header| header.name == name)
}

/// Addresses of every occurrence of an address header, groups flattened.
pub(super) fn addresses(headers: &[Header<'_>], name: HeaderName<'static>) -> Vec<Address> {
    all(headers, name)
        .filter_map(|header| header.value.as_address())
        .flat_map(|address| address.iter())
        .filter_map(|addr| convert_address(addr.name.as_deref(), addr.address.as_deref()))
        .collect()
}

/// Cleans one mailbox: trims both parts, lowercases the domain (RFC 5321 section 2.4: domains
/// are case-insensitive, local parts may not be) and drops entries with neither part.
pub(super) fn convert_address(name: Option<&str>, email: Option<&str>) -> Option<Address> {
    let name = name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    let email = email.map(clean_email).filter(|e| !e.is_empty());
    (name.is_some() || email.is_some()).then_some(Address { name, email })
}

fn clean_email(email: &str) -> String {
    let email = email.trim().trim_matches(|c| c == '<' || c == '>').trim();
    match email.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_lowercase()),
        None => email.to_owned(),
    }
}

/// Converts mail-parser's date to chrono, keeping the written zone. `None` when any field is out
/// of range (mail-parser accepts e.g. day 0 or hour 99).
pub(super) fn to_chrono(date: &mail_parser::DateTime) -> Option<DateTime<FixedOffset>> {
    if !(1900..=9999).contains(&date.year) {
        return None;
    }
    let zone_seconds = i32::from(date.tz_hour) * 3600 + i32::from(date.tz_minute) * 60;
    let zone = FixedOffset::east_opt(if date.tz_before_gmt {
        -zone_seconds
    } else {
        zone_seconds
    })?;
    // A leap second (RFC 5322 allows :60) is read as :59.
    let second = date.second.min(59);
    let naive = NaiveDate::from_ymd_opt(
        i32::from(date.year),
        u32::from(date.month),
        u32::from(date.day),
    )?
    .and_hms_opt(
        u32::from(date.hour),
        u32::from(date.minute),
        u32::from(second),
    )?;
    zone.from_local_datetime(&naive).single()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    #[test]
    fn decodes_encoded_words_and_unfolds() {
        assert_eq!(
            decode_value(b" =?utf-8?q?J=C3=B6rg?= and\r\n\tfriends\r\n"),
            "Jörg and friends"
        );
        assert_eq!(decode_value(b" no newline at end"), "no newline at end");
        assert_eq!(decode_value(b""), "");
        assert_eq!(
            decode_value(b"  plain\r\n  folded \t value \r\n"),
            "plain folded value"
        );
        assert_eq!(decode_value(b" caf\xe9"), "caf\u{fffd}");
    }

    #[test]
    fn lists_raw_names_and_decoded_values() {
        let raw = b"SUBJECT: =?iso-8859-1?q?caf=E9?=\r\nX-Custom :  v \r\n\r\nbody";
        let message = MessageParser::new().parse(&raw[..]).expect("has headers");
        let mut problems = Vec::new();
        let list = header_list(&message, &mut problems);
        assert_eq!(
            list,
            [
                ("SUBJECT".to_owned(), "café".to_owned()),
                ("X-Custom".to_owned(), "v".to_owned())
            ]
        );
        assert!(problems.is_empty());
    }

    #[test]
    fn caps_header_count_and_value_size() {
        let mut raw = String::new();
        for i in 0..MAX_HEADERS + 5 {
            raw.push_str(&format!("X-H{i}: v\r\n"));
        }
        raw.push_str(&format!(
            "X-Big: {}\r\n\r\n",
            "a".repeat(MAX_HEADER_VALUE_BYTES + 10)
        ));
        let message = MessageParser::new()
            .parse(raw.as_bytes())
            .expect("has headers");
        let mut problems = Vec::new();
        assert_eq!(header_list(&message, &mut problems).len(), MAX_HEADERS);
        assert_eq!(problems.len(), 1);

        let raw = format!("X-Big: {}\r\n\r\n", "é".repeat(MAX_HEADER_VALUE_BYTES));
        let message = MessageParser::new()
            .parse(raw.as_bytes())
            .expect("has headers");
        let mut problems = Vec::new();
        let list = header_list(&message, &mut problems);
        assert!(
            list.first()
                .is_some_and(|(_, v)| v.len() <= MAX_HEADER_VALUE_BYTES && v.len() > 60_000)
        );
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn cleans_addresses() {
        let cleaned = convert_address(Some("  Ann "), Some(" Ann.Smith@Example.COM "));
        assert_eq!(
            cleaned,
            Some(Address {
                name: Some("Ann".to_owned()),
                email: Some("Ann.Smith@example.com".to_owned())
            })
        );
        assert_eq!(convert_address(Some(" "), Some("")), None);
        assert_eq!(
            convert_address(None, Some("undisclosed")),
            Some(Address {
                name: None,
                email: Some("undisclosed".to_owned())
            })
        );
    }

    #[test]
    fn flattens_groups() {
        let raw = b"To: Team: a@x.org, B <b@Y.org>;, c@z.org\r\n\r\n";
        let message = MessageParser::new().parse(&raw[..]).expect("has headers");
        let emails: Vec<_> = addresses(root_headers(&message), HeaderName::To)
            .into_iter()
            .filter_map(|a| a.email)
            .collect();
        assert_eq!(emails, ["a@x.org", "b@y.org", "c@z.org"]);
    }

    #[test]
    fn converts_dates_keeping_the_zone() {
        let parse = |text: &str| {
            let raw = format!("Date: {text}\r\n\r\n");
            let message = MessageParser::new().parse(raw.as_bytes())?.into_owned();
            message.date().and_then(to_chrono)
        };
        let date = parse("Tue, 1 Jul 2003 10:52:37 +0200").expect("valid");
        assert_eq!(date.to_rfc3339(), "2003-07-01T10:52:37+02:00");
        let date = parse("Mon, 31 Dec 2001 23:59:60 -0330").expect("leap second");
        assert_eq!(date.to_rfc3339(), "2001-12-31T23:59:59-03:30");
        assert_eq!(parse("Fri, 31 Feb 2003 10:00:00 +0000"), None);
        assert_eq!(parse("yesterday"), None);
    }
}
