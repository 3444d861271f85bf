//! Message-ID extraction for Message-ID, In-Reply-To and References (RFC 5322 section 3.6.4).
//!
//! Real headers break the grammar in many ways: ids without angle brackets, ids folded across
//! lines, several ids in In-Reply-To, and free text around them such as
//! `Your message of "Mon, 1 Jan 2001 10:00" <id@host>` (RFC 822 allowed phrases there). The
//! scanner below skips comments and quoted strings, takes every `<...>` it finds, and falls back
//! to bare `local@domain` tokens only when no bracketed id exists. It is linear in the input.

use std::collections::HashSet;

/// Longest id accepted; RFC 5322 limits a line to 998 characters, so a longer id is garbage.
const MAX_ID_LEN: usize = 998;

/// Most ids kept from one header. RFC 5322 section 3.6.4 suggests trimming long References by
/// keeping the first id (the thread root) and the most recent ones, which is what we do.
pub(super) const MAX_IDS: usize = 1000;

/// Returns the cleaned ids of one header value, in order and deduplicated.
pub(super) fn parse_id_list(value: &[u8]) -> Vec<String> {
    let mut bracketed = Vec::new();
    let mut bare = Vec::new();
    scan(value, &mut bracketed, &mut bare);
    let candidates = if bracketed.is_empty() {
        bare.into_iter()
            .filter(|token| looks_like_bare_id(token))
            .collect()
    } else {
        bracketed
    };
    let mut seen = HashSet::with_capacity(candidates.len());
    let mut ids: Vec<String> = candidates
        .into_iter()
        .filter_map(clean_id)
        .filter(|id| seen.insert(id.clone()))
        .collect();
    if ids.len() > MAX_IDS {
        // Keep the root and the newest ancestors.
        let cut = ids.len() - (MAX_IDS - 1);
        ids.drain(1..cut);
    }
    ids
}

/// Returns the first usable id of a Message-ID header value.
pub(super) fn parse_single_id(value: &[u8]) -> Option<String> {
    parse_id_list(value).into_iter().next()
}

/// Splits a header value into bracketed candidates and bare tokens outside brackets, skipping
/// RFC 5322 comments and quoted strings (which hold the "Your message of ..." prose).
fn scan<'a>(value: &'a [u8], bracketed: &mut Vec<&'a [u8]>, bare: &mut Vec<&'a [u8]>) {
    let mut position = 0;
    let mut token_start: Option<usize> = None;
    while let Some(&byte) = value.get(position) {
        let is_separator =
            matches!(byte, b'(' | b'"' | b'<' | b',' | b';') || byte.is_ascii_whitespace();
        if is_separator {
            if let Some(start) = token_start.take() {
                bare.extend(value.get(start..position));
            }
        } else if token_start.is_none() {
            token_start = Some(position);
        }
        position = match byte {
            b'(' => skip_comment(value, position),
            b'"' => skip_quoted(value, position),
            b'<' => {
                let (candidate, next) = take_bracketed(value, position);
                bracketed.extend(candidate);
                next
            }
            _ => position + 1,
        };
    }
    if let Some(start) = token_start {
        bare.extend(value.get(start..));
    }
}

/// Skips a possibly nested comment starting at `start`; an unclosed comment runs to the end.
fn skip_comment(value: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut position = start;
    while let Some(&byte) = value.get(position) {
        match byte {
            b'\\' => position += 1,
            b'(' => depth += 1,
            b')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return position + 1;
                }
            }
            _ => {}
        }
        position += 1;
    }
    value.len()
}

/// Skips a quoted string starting at `start`; an unclosed one runs to the end.
fn skip_quoted(value: &[u8], start: usize) -> usize {
    let mut position = start + 1;
    while let Some(&byte) = value.get(position) {
        match byte {
            b'\\' => position += 1,
            b'"' => return position + 1,
            _ => {}
        }
        position += 1;
    }
    value.len()
}

/// Takes `<...>` starting at `start`. A second `<` before the `>` restarts the id there (so
/// `<<id>` gives `id`); a missing `>` takes the rest of the value as a candidate.
fn take_bracketed(value: &[u8], start: usize) -> (Option<&[u8]>, usize) {
    let mut content_start = start + 1;
    let mut position = content_start;
    while let Some(&byte) = value.get(position) {
        match byte {
            b'>' => return (value.get(content_start..position), position + 1),
            b'<' => content_start = position + 1,
            _ => {}
        }
        position += 1;
    }
    (value.get(content_start..), value.len())
}

/// A bare token is only taken as an id when it has the `left@right` shape of RFC 5322.
fn looks_like_bare_id(token: &[u8]) -> bool {
    let Some(at) = token.iter().position(|&b| b == b'@') else {
        return false;
    };
    at > 0 && at + 1 < token.len() && !token.contains(&b':')
}

/// Removes folding whitespace inside an id and rejects empty, overlong or binary ones.
fn clean_id(candidate: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(candidate);
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .trim_matches(|c| c == '<' || c == '>')
        .to_owned();
    let usable = !cleaned.is_empty()
        && cleaned.len() <= MAX_ID_LEN
        && cleaned.chars().any(char::is_alphanumeric)
        && !cleaned
            .chars()
            .any(|c| c.is_control() || c == '<' || c == '>' || c == '\u{fffd}');
    usable.then_some(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(value: &str) -> Vec<String> {
        parse_id_list(value.as_bytes())
    }

    #[test]
    fn takes_bracketed_ids_in_order() {
        assert_eq!(ids("<a@b> <c@d>\r\n\t<e@f>"), ["a@b", "c@d", "e@f"]);
    }

    #[test]
    fn drops_duplicates_keeping_first_position() {
        assert_eq!(ids("<a@b> <c@d> <a@b>"), ["a@b", "c@d"]);
    }

    #[test]
    fn accepts_ids_without_brackets() {
        assert_eq!(
            ids("  1234.5678@mail.example.com  "),
            ["1234.5678@mail.example.com"]
        );
        assert_eq!(ids("a@b, c@d"), ["a@b", "c@d"]);
    }

    #[test]
    fn removes_whitespace_folded_into_an_id() {
        assert_eq!(ids("<abc\r\n def@host>"), ["abcdef@host"]);
        assert_eq!(ids("< a@b >"), ["a@b"]);
    }

    #[test]
    fn skips_prose_around_in_reply_to_ids() {
        let value =
            "Your message of \"Mon, 01 Jan 2001 10:00:00 +0100.\" <200101010900.AA1@host.example>";
        assert_eq!(ids(value), ["200101010900.AA1@host.example"]);
        let value = "<id1@host> (John Doe's message of \"Tue, 2 Jan\" <john@example.com>)";
        assert_eq!(ids(value), ["id1@host"]);
    }

    #[test]
    fn prose_without_ids_gives_nothing() {
        assert!(ids("Your message of Monday").is_empty());
        assert!(ids("").is_empty());
        assert!(ids("<>").is_empty());
        assert!(ids("< >").is_empty());
        assert!(ids("<@>").is_empty());
    }

    #[test]
    fn keeps_bracketed_ids_without_at_sign() {
        // git-send-email once wrote "<yes>"; it is what the header says, so threading sees it.
        assert_eq!(ids("<yes>"), ["yes"]);
    }

    #[test]
    fn handles_unbalanced_brackets() {
        assert_eq!(ids("<<a@b>"), ["a@b"]);
        assert_eq!(ids("<a@b"), ["a@b"]);
        assert_eq!(ids("a@b>"), ["a@b"]);
        assert_eq!(ids("(unclosed comment <a@b>"), Vec::<String>::new());
    }

    #[test]
    fn rejects_control_characters_and_overlong_ids() {
        assert!(ids("<a\u{1}b@c>").is_empty());
        let long = format!("<{}@x>", "a".repeat(MAX_ID_LEN + 1));
        assert!(ids(&long).is_empty());
    }

    #[test]
    fn caps_very_long_reference_lists_keeping_root_and_newest() {
        let value: String = (0..MAX_IDS + 10).map(|i| format!("<{i}@x> ")).collect();
        let parsed = ids(&value);
        assert_eq!(parsed.len(), MAX_IDS);
        assert_eq!(parsed.first().map(String::as_str), Some("0@x"));
        assert_eq!(
            parsed.last().map(String::as_str),
            Some(format!("{}@x", MAX_IDS + 9).as_str())
        );
        assert_eq!(parsed.get(1).map(String::as_str), Some("11@x"));
    }

    #[test]
    fn single_id_takes_the_first() {
        assert_eq!(parse_single_id(b" <m1@x> <m2@x>"), Some("m1@x".to_owned()));
        assert_eq!(parse_single_id(b"   "), None);
    }

    #[test]
    fn is_linear_on_many_open_brackets() {
        let value = "<".repeat(200_000);
        let started = std::time::Instant::now();
        assert!(ids(&value).is_empty());
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}
