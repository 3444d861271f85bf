//! Pure helpers for SMTP text: reply codes, queue ids, EHLO keywords, xtext, line ends.
//! No I/O, so every rule is unit-tested here.

use std::borrow::Cow;

/// What the server announced in its `EHLO` reply (RFC 5321 §4.1.1.1), as far as a
/// submission needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Capabilities {
    /// `DSN` (RFC 3461): NOTIFY/ORCPT/RET/ENVID are understood.
    pub(super) dsn: bool,
    /// `SIZE` (RFC 1870); `Some(0)` means announced without a limit.
    pub(super) size: Option<u64>,
    /// `8BITMIME` (RFC 6152).
    pub(super) eight_bit_mime: bool,
    /// `SMTPUTF8` (RFC 6531).
    pub(super) smtp_utf8: bool,
    /// SASL mechanisms of `AUTH` (RFC 4954 §3), upper-cased.
    pub(super) auth: Vec<String>,
}

impl Capabilities {
    /// Reads the keyword lines of an `EHLO` reply; the first line is the server's name.
    pub(super) fn from_ehlo_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Capabilities {
        let mut capabilities = Capabilities::default();
        for line in lines.skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            // EHLO keywords are case-insensitive (RFC 5321 §2.4).
            match keyword.to_ascii_uppercase().as_str() {
                "DSN" => capabilities.dsn = true,
                "8BITMIME" => capabilities.eight_bit_mime = true,
                "SMTPUTF8" => capabilities.smtp_utf8 = true,
                "AUTH" => capabilities
                    .auth
                    .extend(words.map(|word| word.to_ascii_uppercase())),
                "SIZE" => {
                    let limit = words.next().and_then(|value| value.parse().ok());
                    capabilities.size = Some(limit.unwrap_or(0));
                }
                _ => {}
            }
        }
        capabilities
    }
}

/// True for an RFC 3463 enhanced status code of the given class: `class.subject.detail`
/// with a 1-3 digit subject and detail.
fn is_enhanced_code(word: &str, class: u16) -> bool {
    let mut parts = word.split('.');
    let (Some(first), Some(subject), Some(detail), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits = |part: &str| {
        (1..=3).contains(&part.len()) && part.bytes().all(|byte| byte.is_ascii_digit())
    };
    first.parse::<u16>().ok() == Some(class)
        && first.len() == 1
        && digits(subject)
        && digits(detail)
}

/// Joins reply lines with spaces, dropping an enhanced status code that repeats the first
/// line's (RFC 2034 §4 puts it on every line).
pub(super) fn join_lines<'a>(mut lines: impl Iterator<Item = &'a str>) -> String {
    let Some(first) = lines.next() else {
        return String::new();
    };
    let first_code = first
        .split_whitespace()
        .next()
        .filter(|word| word.contains('.'));
    let mut joined = first.trim_end().to_owned();
    for line in lines {
        let line = match first_code {
            Some(code) => line
                .strip_prefix(code)
                .filter(|rest| rest.is_empty() || rest.starts_with(' '))
                .map_or(line, str::trim_start),
            None => line,
        };
        joined.push(' ');
        joined.push_str(line.trim_end());
    }
    joined
}

/// Splits a reply text into its enhanced status code (when it agrees with the reply code's
/// class, RFC 2034 §4) and the rest of the text.
pub(super) fn split_enhanced(text: &str, code: u16) -> (Option<String>, String) {
    let text = text.trim();
    let (first, rest) = text.split_once(' ').unwrap_or((text, ""));
    if is_enhanced_code(first, code / 100) {
        (Some(first.to_owned()), rest.trim_start().to_owned())
    } else {
        (None, text.to_owned())
    }
}

/// Finds the server's queue id in a reply to the message data. Recognised forms:
/// Postfix/SendGrid `Ok: queued as ID`, Exim `OK id=ID`, Exchange `[InternalId=ID, ...]`,
/// Gmail `OK  1700000000 ID - gsmtp`, qmail `ok 1700000000 qp ID`, Haraka
/// `Message Queued (ID)`, sendmail/OpenSMTPD `ID Message accepted for delivery`, Amazon SES
/// `Ok ID`.
pub(super) fn queue_id(text: &str) -> Option<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let lower: Vec<String> = words.iter().map(|word| word.to_ascii_lowercase()).collect();
    let position = |wanted: &str| lower.iter().position(|word| word == wanted);
    let word_after = |index: usize| words.get(index + 1).copied();

    let found = if let Some(index) = lower
        .windows(2)
        .position(|pair| pair[0] == "queued" && pair[1] == "as")
    {
        words.get(index + 2).copied()
    } else if let Some(value) = lower.iter().zip(&words).find_map(|(low, word)| {
        let start = low.find("id=")?;
        // `id=` alone or at the end of a longer key (`InternalId=`), not `pid=`-like keys.
        let key = low.get(..start)?;
        (key.is_empty() || key.ends_with("internal") || key.ends_with('['))
            .then(|| word.get(start + 3..))
            .flatten()
    }) {
        Some(value)
    } else if let Some(index) = position("gsmtp").filter(|index| *index >= 2) {
        (words.get(index - 1) == Some(&"-"))
            .then(|| words.get(index - 2).copied())
            .flatten()
    } else if let Some(index) = position("qp") {
        word_after(index)
    } else if let Some(index) = position("queued").filter(|index| *index > 0) {
        word_after(index).filter(|word| word.starts_with('('))
    } else if lower.get(1..4) == Some(&["message".into(), "accepted".into(), "for".into()]) {
        words.first().copied()
    } else if lower.len() == 2 && lower[0] == "ok" {
        word_after(0)
    } else {
        None
    };
    found.map(clean_id).filter(|id| looks_like_id(id))
}

/// Trims brackets and punctuation a reply puts around an id.
fn clean_id(word: &str) -> String {
    word.trim_matches(|character: char| "()[]<>,;.:".contains(character))
        .to_owned()
}

/// A queue id is one token of printable ASCII with at least one letter or digit.
fn looks_like_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id.bytes().all(|byte| byte.is_ascii_graphic())
        && id.bytes().any(|byte| byte.is_ascii_alphanumeric())
}

/// Length of `value` once xtext-encoded (RFC 3461 §4: `+`, `=` and characters outside
/// `!`..`~` become `+XX`).
pub(super) fn xtext_len(value: &str) -> usize {
    value
        .bytes()
        .map(|byte| {
            if byte == b'+' || byte == b'=' || !(b'!'..=b'~').contains(&byte) {
                3
            } else {
                1
            }
        })
        .sum()
}

/// Message data for lettre: bare CR and bare LF become CRLF (RFC 5321 §2.3.8 forbids them;
/// some servers take them as line ends, which opens SMTP smuggling), and one final CRLF is
/// removed because lettre always ends the data with `CRLF . CRLF`. The server then stores
/// exactly `raw`, with a final CRLF added if it had none.
pub(super) fn data_for_lettre(raw: &[u8]) -> Cow<'_, [u8]> {
    let needs_fix = raw.iter().enumerate().any(|(index, byte)| match byte {
        b'\r' => raw.get(index + 1) != Some(&b'\n'),
        b'\n' => index == 0 || raw.get(index - 1) != Some(&b'\r'),
        _ => false,
    });
    let data: Cow<'_, [u8]> = if needs_fix {
        let mut fixed = Vec::with_capacity(raw.len() + raw.len() / 32);
        let mut index = 0;
        while let Some(&byte) = raw.get(index) {
            match byte {
                b'\r' if raw.get(index + 1) == Some(&b'\n') => {
                    fixed.extend_from_slice(b"\r\n");
                    index += 1;
                }
                b'\r' | b'\n' => fixed.extend_from_slice(b"\r\n"),
                other => fixed.push(other),
            }
            index += 1;
        }
        Cow::Owned(fixed)
    } else {
        Cow::Borrowed(raw)
    };
    match data {
        Cow::Borrowed(bytes) => Cow::Borrowed(bytes.strip_suffix(b"\r\n").unwrap_or(bytes)),
        Cow::Owned(mut bytes) => {
            if bytes.ends_with(b"\r\n") {
                bytes.truncate(bytes.len() - 2);
            }
            Cow::Owned(bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_from_postfix_ehlo() {
        let lines = [
            "mx.inboxd.test",
            "PIPELINING",
            "SIZE 10240000",
            "STARTTLS",
            "ENHANCEDSTATUSCODES",
            "8BITMIME",
            "dsn",
            "SMTPUTF8",
        ];
        let capabilities = Capabilities::from_ehlo_lines(lines.into_iter());
        assert!(capabilities.dsn);
        assert!(capabilities.eight_bit_mime);
        assert!(capabilities.smtp_utf8);
        assert_eq!(capabilities.size, Some(10_240_000));
    }

    #[test]
    fn capabilities_ignore_server_name_and_unknown_keywords() {
        // A server named "DSN" announces nothing by its name.
        let lines = ["DSN", "SIZE", "X-DSN", "AUTH PLAIN"];
        let capabilities = Capabilities::from_ehlo_lines(lines.into_iter());
        assert!(!capabilities.dsn);
        assert_eq!(capabilities.size, Some(0));
        assert!(!capabilities.eight_bit_mime);
    }

    #[test]
    fn enhanced_code_is_split_when_class_matches() {
        assert_eq!(
            split_enhanced("5.1.1 <x@y>: Recipient address rejected", 550),
            (
                Some("5.1.1".to_owned()),
                "<x@y>: Recipient address rejected".to_owned()
            )
        );
        assert_eq!(
            split_enhanced("4.7.0 try later", 451),
            (Some("4.7.0".to_owned()), "try later".to_owned())
        );
        // Class disagrees with the reply code: not an enhanced code (RFC 2034 §4).
        assert_eq!(
            split_enhanced("2.0.0 odd", 550),
            (None, "2.0.0 odd".to_owned())
        );
        assert_eq!(
            split_enhanced("1.2 text", 250),
            (None, "1.2 text".to_owned())
        );
        assert_eq!(
            split_enhanced("5.1234.1 x", 550),
            (None, "5.1234.1 x".to_owned())
        );
        assert_eq!(split_enhanced("Ok", 250), (None, "Ok".to_owned()));
    }

    #[test]
    fn join_lines_drops_repeated_enhanced_code() {
        let lines = ["5.7.1 first part", "5.7.1 second part", "5.7.10 other"];
        assert_eq!(
            join_lines(lines.into_iter()),
            "5.7.1 first part second part 5.7.10 other"
        );
        assert_eq!(join_lines(["a", "b"].into_iter()), "a b");
        assert_eq!(join_lines(std::iter::empty()), "");
    }

    #[test]
    fn queue_id_variants() {
        let cases = [
            ("Ok: queued as 3A42898C0D2", Some("3A42898C0D2")),
            ("OK: queued as <ABC-123>", Some("ABC-123")),
            ("OK id=1tXyZa-000AbC-De", Some("1tXyZa-000AbC-De")),
            (
                "<msg@host> [InternalId=1095216660481, Hostname=AM0PR.eurprd.prod] Queued mail for delivery",
                Some("1095216660481"),
            ),
            (
                "OK  1731000000 d9443c01a7336-21f4a8c1d2fsm123456.55 - gsmtp",
                Some("d9443c01a7336-21f4a8c1d2fsm123456.55"),
            ),
            ("ok 1700000000 qp 4242", Some("4242")),
            ("Message Queued (4F0A1B2C.1.2)", Some("4F0A1B2C.1.2")),
            (
                "x9ABCDEF012345 Message accepted for delivery",
                Some("x9ABCDEF012345"),
            ),
            (
                "Ok 0100018c2f3d-aaaa-bbbb-000000",
                Some("0100018c2f3d-aaaa-bbbb-000000"),
            ),
            ("Ok", None),
            ("Great success", None),
            ("pid=12 Ok", None),
            ("Ok: queued as", None),
        ];
        for (text, expected) in cases {
            assert_eq!(queue_id(text).as_deref(), expected, "reply {text:?}");
        }
    }

    #[test]
    fn xtext_length_counts_encoded_characters() {
        assert_eq!(xtext_len("abc"), 3);
        assert_eq!(xtext_len("a+b=c d"), 1 + 3 + 1 + 3 + 1 + 3 + 1);
        assert_eq!(xtext_len(""), 0);
    }

    #[test]
    fn data_keeps_crlf_messages_and_drops_one_final_crlf() {
        let raw = b"Subject: x\r\n\r\n.line\r\nend\r\n";
        let data = data_for_lettre(raw);
        assert!(matches!(data, Cow::Borrowed(_)));
        assert_eq!(&*data, b"Subject: x\r\n\r\n.line\r\nend");
        assert_eq!(&*data_for_lettre(b"body"), b"body");
        // Only one CRLF goes: a final empty line the sender wrote stays.
        assert_eq!(&*data_for_lettre(b"a\r\n\r\n"), b"a\r\n");
    }

    #[test]
    fn data_turns_bare_line_ends_into_crlf() {
        assert_eq!(&*data_for_lettre(b"a\nb\rc\r\nd\n"), b"a\r\nb\r\nc\r\nd");
        assert_eq!(&*data_for_lettre(b"\n.\n"), b"\r\n.");
        assert_eq!(&*data_for_lettre(b"\r"), b"");
    }
}
