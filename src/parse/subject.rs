//! Subject normalisation for threading (the "base subject" idea of RFC 5256 section 2.1,
//! extended to the reply and forward prefixes of common mail clients in other languages).

/// Reply and forward markers, lowercase, as written before the colon by mail clients in
/// English, German, Dutch, Scandinavian, Finnish, Polish, Italian, French, Spanish, Portuguese,
/// Turkish, Greek and Chinese.
const MARKERS: &[&str] = &[
    "re", "fw", "fwd", "aw", "wg", "sv", "vs", "vb", "vl", "antw", "antwort", "doorst", "odp",
    "pd", "rif", "r", "ref", "réf", "tr", "enc", "rv", "res", "ynt", "ilt", "απ", "σχετ", "πρθ",
    "回复", "回覆", "答复", "转发", "轉寄", "转寄", "轉發",
];

/// Longest marker word we look at, in characters.
const MAX_MARKER_CHARS: usize = 8;

/// Longest leading `[...]` tag that is treated as a tag rather than part of the subject.
const MAX_TAG_BYTES: usize = 100;

/// Reduces a subject to the part that stays the same across replies and forwards: leading reply
/// and forward markers in any case and language (`Re:`, `RE[2]:`, `Re(3):`, `AW:`, `回复：`...),
/// leading `[list]` tags and a trailing `(fwd)` are removed, whitespace is collapsed and the
/// result is lowercased.
///
/// Leading bracket tags that contain a digit (`[Bug 123]`, `[PATCH 2/5]`, `[rt #42]`) are kept,
/// because they tell apart tickets that share a title; markers after them are still removed.
/// A `[Fwd: ...]` wrapper is unwrapped.
pub fn normalize_subject(subject: &str) -> String {
    let mut rest = subject;
    let mut kept_tags: Vec<&str> = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = strip_marker(rest) {
            rest = after;
        } else if let Some((tag, after)) = split_bracket_tag(rest) {
            match unwrap_forward(tag) {
                Some(inner) => {
                    rest = inner;
                    // What followed the wrapper is rarely meaningful; keep it anyway.
                    if !after.trim().is_empty() {
                        return collapse(&[inner, after], &kept_tags);
                    }
                }
                None => {
                    if tag.chars().any(|c| c.is_ascii_digit()) {
                        kept_tags.push(tag);
                    }
                    rest = after;
                }
            }
        } else {
            break;
        }
    }
    collapse(&[strip_trailing_fwd(rest)], &kept_tags)
}

/// Strips one `marker[n]:` / `marker(n):` / `marker^n:` at the start of `text`.
fn strip_marker(text: &str) -> Option<&str> {
    let word_end = text
        .char_indices()
        .find(|(_, c)| !c.is_alphabetic())
        .map_or(text.len(), |(index, _)| index);
    let word = text.get(..word_end)?;
    if word.is_empty() || word.chars().count() > MAX_MARKER_CHARS {
        return None;
    }
    let lowered = word.to_lowercase();
    if !MARKERS.contains(&lowered.as_str()) {
        return None;
    }
    let after_count = skip_reply_count(text.get(word_end..)?);
    let after_space = after_count.trim_start_matches([' ', '\t']);
    after_space
        .strip_prefix(':')
        .or_else(|| after_space.strip_prefix('：'))
}

/// Skips a reply counter such as `[2]`, `(3)`, `^4` or `*5`.
fn skip_reply_count(text: &str) -> &str {
    let bracketed = [('[', ']'), ('(', ')')];
    for (open, close) in bracketed {
        if let Some(inner) = text.strip_prefix(open)
            && let Some(end) = inner.find(close)
            && inner
                .get(..end)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            return inner.get(end + 1..).unwrap_or_default();
        }
    }
    for prefix in ['^', '*'] {
        if let Some(inner) = text.strip_prefix(prefix) {
            let digits = inner.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 {
                return inner.get(digits..).unwrap_or_default();
            }
        }
    }
    text
}

/// Splits a leading `[tag]` into its content and the text after it.
fn split_bracket_tag(text: &str) -> Option<(&str, &str)> {
    let inner = text.strip_prefix('[')?;
    // Look at most MAX_TAG_BYTES ahead, cut at a char boundary.
    let limit = (0..=inner.len().min(MAX_TAG_BYTES))
        .rev()
        .find(|&i| inner.is_char_boundary(i))
        .unwrap_or(0);
    let end = inner.get(..limit)?.find(']')?;
    Some((inner.get(..end)?, inner.get(end + 1..)?))
}

/// `Fwd: subject` inside a `[Fwd: subject]` wrapper gives `subject`.
fn unwrap_forward(tag: &str) -> Option<&str> {
    strip_marker(tag.trim_start())
}

fn strip_trailing_fwd(text: &str) -> &str {
    let mut rest = text.trim_end();
    while rest.len() >= 5 {
        let split = rest.len() - 5;
        match (rest.get(..split), rest.get(split..)) {
            (Some(head), Some(tail)) if tail.eq_ignore_ascii_case("(fwd)") => {
                rest = head.trim_end()
            }
            _ => break,
        }
    }
    rest
}

fn collapse(pieces: &[&str], kept_tags: &[&str]) -> String {
    let mut words: Vec<String> = Vec::new();
    for tag in kept_tags {
        words.push(format!(
            "[{}]",
            tag.split_whitespace().collect::<Vec<_>>().join(" ")
        ));
    }
    for piece in pieces {
        words.extend(piece.split_whitespace().map(str::to_owned));
    }
    words.join(" ").to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::normalize_subject;

    #[test]
    fn normalizes_table_of_subjects() {
        let cases = [
            ("Hello world", "hello world"),
            ("Re: Hello world", "hello world"),
            ("RE: Hello world", "hello world"),
            ("re:Hello world", "hello world"),
            ("Re: Re: RE: Hello", "hello"),
            ("RE[2]: Hello", "hello"),
            ("Re(3): Hello", "hello"),
            ("Re^2: Hello", "hello"),
            ("Re : Hello", "hello"),
            ("Fwd: Hello", "hello"),
            ("FW: Hello", "hello"),
            ("Fw: Re: Hello", "hello"),
            ("AW: WG: Angebot", "angebot"),
            ("SV: VS: Tilbud", "tilbud"),
            ("Antw: Offerte", "offerte"),
            ("Antwort: Frage", "frage"),
            ("Doorst: Offerte", "offerte"),
            ("Odp: Pytanie", "pytanie"),
            ("RIF: Domanda", "domanda"),
            ("R: Domanda", "domanda"),
            ("Ref: Invoice", "invoice"),
            ("Réf : Facture", "facture"),
            ("TR: Facture", "facture"),
            ("ENC: Pedido", "pedido"),
            ("RV: Pedido", "pedido"),
            ("Ynt: Soru", "soru"),
            ("回复：你好", "你好"),
            ("转发: 你好", "你好"),
            ("ΑΠ: Γεια", "γεια"),
            ("[notmuch] Re: [PATCH] fix", "fix"),
            ("Re: [Bug 123] Crash on start", "[bug 123] crash on start"),
            ("[Bug 123] Re: Crash on start", "[bug 123] crash on start"),
            ("[PATCH 1/2] lib: add  thing", "[patch 1/2] lib: add thing"),
            ("Hello world (fwd)", "hello world"),
            ("Hello world (FWD) (fwd)", "hello world"),
            ("[Fwd: Hello world]", "hello world"),
            ("  Lots   of\t whitespace  ", "lots of whitespace"),
            ("Re:", ""),
            ("", ""),
            ("Regarding the invoice", "regarding the invoice"),
            ("Re-opened: ticket", "re-opened: ticket"),
            ("Reply: not a marker", "reply: not a marker"),
            ("Meeting: Re: budget", "meeting: re: budget"),
            ("[unclosed tag Re: x", "[unclosed tag re: x"),
            ("RE: ÄRGER mit Übergabe", "ärger mit übergabe"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_subject(input), expected, "input: {input:?}");
        }
    }

    #[test]
    fn survives_long_and_odd_input() {
        let long_tag = format!("[{}] Re: x", "a".repeat(500));
        assert!(normalize_subject(&long_tag).starts_with("[aaa"));
        let many_markers = "Re: ".repeat(10_000) + "x";
        assert_eq!(normalize_subject(&many_markers), "x");
        // 160 bytes of tag: too long to be a list tag, so it stays.
        let multibyte_tag = format!("[{}] y", "é".repeat(80));
        assert!(normalize_subject(&multibyte_tag).starts_with("[éé"));
        let short_tag = format!("[{}] y", "é".repeat(20));
        assert_eq!(normalize_subject(&short_tag), "y");
    }
}
