//! Snippets: a fragment of the stored body (or the subject) with matched words in `<b>..</b>`.

use std::collections::BTreeMap;

use tantivy::snippet::SnippetGenerator;
use tantivy::{Score, Searcher, Term};

use super::SearchError;
use super::compile::Highlight;
use super::schema::Fields;

/// Longest snippet fragment, in bytes of source text.
const SNIPPET_MAX_BYTES: usize = 200;
/// Most index terms a prefix contributes to highlighting (per segment and field).
const MAX_PREFIX_HIGHLIGHT_TERMS: usize = 32;

/// Builds snippets for the hits of one query.
pub(super) struct SnippetMaker {
    generator: SnippetGenerator,
    /// False when the query has no positive text words: every snippet is then empty.
    highlights_anything: bool,
}

/// The first key after every key starting with `prefix`, or `None` when there is none.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl SnippetMaker {
    /// Prepares highlighting of `highlight` (prefixes expanded against the term dictionaries of
    /// the body and subject).
    pub(super) fn new(
        searcher: &Searcher,
        fields: &Fields,
        highlight: &Highlight,
    ) -> Result<SnippetMaker, SearchError> {
        let mut terms: BTreeMap<String, Score> = BTreeMap::new();
        for text in &highlight.terms {
            let mut frequency = 0;
            for field in [fields.body, fields.subject] {
                frequency += searcher.doc_freq(&Term::from_field_text(field, text))?;
            }
            terms.insert(text.clone(), 1.0 / (1.0 + frequency as Score));
        }
        for prefix in &highlight.prefixes {
            for segment in searcher.segment_readers() {
                for field in [fields.body, fields.subject] {
                    let inverted_index = segment.inverted_index(field)?;
                    let mut range = inverted_index.terms().range().ge(prefix.as_bytes());
                    if let Some(end) = prefix_end(prefix.as_bytes()) {
                        range = range.lt(end);
                    }
                    let mut stream = range.into_stream().map_err(tantivy::TantivyError::from)?;
                    let mut taken = 0;
                    while taken < MAX_PREFIX_HIGHLIGHT_TERMS && stream.advance() {
                        if let Ok(text) = std::str::from_utf8(stream.key()) {
                            terms.entry(text.to_string()).or_insert(0.5);
                        }
                        taken += 1;
                    }
                }
            }
        }
        let tokenizer = searcher.index().tokenizer_for_field(fields.body)?;
        Ok(SnippetMaker {
            highlights_anything: !terms.is_empty(),
            generator: SnippetGenerator::new(terms, tokenizer, fields.body, SNIPPET_MAX_BYTES),
        })
    }

    /// The snippet of a message: the best body fragment with a match, else the subject if it
    /// has a match, else the start of the body (or the subject when the body is empty).
    pub(super) fn snippet(&self, subject: &str, body: &str) -> String {
        let candidates: &[&str] = if self.highlights_anything {
            &[body, subject]
        } else {
            &[]
        };
        for text in candidates {
            let snippet = self.generator.snippet(text);
            if !snippet.highlighted().is_empty() {
                return collapse_whitespace(&snippet.to_html());
            }
        }
        let source = if body.trim().is_empty() {
            subject
        } else {
            body
        };
        collapse_whitespace(&escape_html(leading_text(source, SNIPPET_MAX_BYTES)))
    }
}

/// The start of `text`, at most `max_bytes`, cut at the last whitespace that fits.
fn leading_text(text: &str, max_bytes: usize) -> &str {
    let text = text.trim_start();
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let head = text.get(..end).unwrap_or_default();
    match head.rfind(char::is_whitespace) {
        Some(space) if space > 0 => head.get(..space).unwrap_or(head),
        _ => head,
    }
}

/// Escapes the characters HTML treats specially.
fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Replaces every whitespace run (line breaks of the body) with one space, and trims.
fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"inv"), Some(b"inw".to_vec()));
        assert_eq!(prefix_end(&[b'a', 0xff]), Some(vec![b'b']));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }

    #[test]
    fn leading_text_cuts_at_whitespace_and_char_boundaries() {
        assert_eq!(leading_text("  short", 10), "short");
        assert_eq!(leading_text("hello wonderful world", 12), "hello");
        assert_eq!(leading_text("ééééé", 3), "é");
    }

    #[test]
    fn escaping_and_whitespace() {
        assert_eq!(
            escape_html("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(collapse_whitespace(" a \n\n b\tc "), "a b c");
    }
}
