//! Pure helpers that build command arguments: UID sets, quoted strings, mailbox names.

use base64::Engine as _;
use base64::alphabet::IMAP_MUTF7;
use base64::engine::{GeneralPurpose, general_purpose::NO_PAD};

use super::ImapError;

/// Ranges per command. Keeps command lines far below server limits (Dovecot: 64 KiB) even for
/// scattered UIDs (at most ~22 bytes per range).
pub(super) const MAX_RANGES_PER_COMMAND: usize = 500;

/// Turns UIDs into IMAP sequence sets (RFC 3501 §9 `sequence-set`) such as `1:5,7,9:12`.
///
/// Sorts and de-duplicates, drops UID 0 (not a valid UID), joins consecutive UIDs into ranges, and
/// splits into several sets of at most `max_ranges` ranges each. Ranges only span requested UIDs.
pub(super) fn uid_sets(uids: &[u32], max_ranges: usize) -> Vec<String> {
    debug_assert!(max_ranges > 0);
    let mut sorted: Vec<u32> = uids.iter().copied().filter(|&uid| uid != 0).collect();
    sorted.sort_unstable();
    sorted.dedup();

    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for uid in sorted {
        match ranges.last_mut() {
            Some((_, end)) if end.checked_add(1) == Some(uid) => *end = uid,
            _ => ranges.push((uid, uid)),
        }
    }

    ranges
        .chunks(max_ranges.max(1))
        .map(|chunk| {
            chunk
                .iter()
                .map(|&(start, end)| {
                    if start == end {
                        start.to_string()
                    } else {
                        format!("{start}:{end}")
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

/// Encodes a folder name given in Unicode as an IMAP quoted string in modified UTF-7
/// (RFC 3501 §5.1.3), e.g. `Entwürfe` → `"Entw&APw-rfe"`.
pub(super) fn quoted_mailbox(name: &str) -> Result<String, ImapError> {
    if name.is_empty() {
        return Err(ImapError::Config("empty folder name".to_owned()));
    }
    if name.chars().any(char::is_control) {
        return Err(ImapError::Config(
            "folder name contains control characters".to_owned(),
        ));
    }
    Ok(quote(&modified_utf7(name)))
}

/// Wraps ASCII text in an IMAP quoted string, escaping `\` and `"` (RFC 3501 §9 `quoted`).
fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for character in text.chars() {
        if character == '"' || character == '\\' {
            quoted.push('\\');
        }
        quoted.push(character);
    }
    quoted.push('"');
    quoted
}

/// Modified UTF-7: printable ASCII stands for itself, `&` becomes `&-`, and every run of other
/// characters becomes `&` + base64 (`,` instead of `/`, no padding) of its UTF-16BE form + `-`.
fn modified_utf7(name: &str) -> String {
    let engine = GeneralPurpose::new(&IMAP_MUTF7, NO_PAD);
    let mut encoded = String::with_capacity(name.len());
    let mut pending_utf16: Vec<u8> = Vec::new();
    let flush = |pending: &mut Vec<u8>, out: &mut String| {
        if !pending.is_empty() {
            out.push('&');
            out.push_str(&engine.encode(&pending[..]));
            out.push('-');
            pending.clear();
        }
    };
    for character in name.chars() {
        if (' '..='~').contains(&character) {
            flush(&mut pending_utf16, &mut encoded);
            if character == '&' {
                encoded.push_str("&-");
            } else {
                encoded.push(character);
            }
        } else {
            let mut units = [0u16; 2];
            for unit in character.encode_utf16(&mut units) {
                pending_utf16.extend_from_slice(&unit.to_be_bytes());
            }
        }
    }
    flush(&mut pending_utf16, &mut encoded);
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_join_consecutive_and_sort() {
        assert_eq!(
            uid_sets(&[7, 3, 1, 2, 3, 9, 10, 11, 0], 100),
            vec!["1:3,7,9:11"]
        );
        assert_eq!(uid_sets(&[], 100), Vec::<String>::new());
        assert_eq!(
            uid_sets(&[u32::MAX, u32::MAX - 1], 100),
            vec![format!("{}:{}", u32::MAX - 1, u32::MAX)]
        );
    }

    #[test]
    fn uid_sets_split_by_range_count() {
        let scattered: Vec<u32> = (1..=7).map(|n| n * 10).collect();
        assert_eq!(uid_sets(&scattered, 3), vec!["10,20,30", "40,50,60", "70"]);
    }

    #[test]
    fn mailbox_names_use_modified_utf7() {
        // Examples from RFC 3501 §5.1.3.
        assert_eq!(
            quoted_mailbox("~peter/mail/台北/日本語").ok(),
            Some("\"~peter/mail/&U,BTFw-/&ZeVnLIqe-\"".to_owned())
        );
        assert_eq!(
            quoted_mailbox("Entwürfe").ok(),
            Some("\"Entw&APw-rfe\"".to_owned())
        );
        assert_eq!(quoted_mailbox("A&B").ok(), Some("\"A&-B\"".to_owned()));
        // Astral characters take a UTF-16 surrogate pair.
        assert_eq!(quoted_mailbox("x😀").ok(), Some("\"x&2D3eAA-\"".to_owned()));
    }

    #[test]
    fn quoting_escapes_and_rejects_control_characters() {
        assert_eq!(
            quoted_mailbox(r#"a"b\c"#).ok(),
            Some(r#""a\"b\\c""#.to_owned())
        );
        assert!(matches!(
            quoted_mailbox("bad\r\nname"),
            Err(ImapError::Config(_))
        ));
        assert!(matches!(quoted_mailbox(""), Err(ImapError::Config(_))));
    }
}
