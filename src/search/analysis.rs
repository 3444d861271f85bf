//! Text analysis: how field values become index terms, and how query values are normalized the
//! same way.
//!
//! Three analyzers, all case- and accent-insensitive (lowercase, then ASCII folding so that
//! "Müller" and "muller" give the same term):
//! - text (subject, body, attachment text): words split on non-alphanumerics, stemmed with the
//!   English Snowball stemmer ("invoices" and "invoice" both give "invoic"). No stop words are
//!   removed, so phrases match exactly.
//! - keyword (mailbox, folder, state, status, has): the whole value is one term.
//! - parts (participants, file names): the whole value, the pieces of an address (local part,
//!   domain and its parent domains) and every word, so `from:alice`, `from:example.org`,
//!   `from:alice@example.org` and `from:"Alice Smith"` all match.

use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RawTokenizer, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
    Token, TokenStream, Tokenizer, TokenizerManager,
};

use super::stemming::MemoStemmer;

/// Tokenizer name of text fields. DO NOT CHANGE without a schema version bump: the name is
/// stored in the index schema.
pub(super) const TEXT: &str = "inboxd_text";
/// Tokenizer name of keyword fields. DO NOT CHANGE (stored in the schema).
pub(super) const KEYWORD: &str = "inboxd_keyword";
/// Tokenizer name of participant and file-name fields. DO NOT CHANGE (stored in the schema).
pub(super) const PARTS: &str = "inboxd_parts";

/// Words longer than this (in bytes) are dropped from text fields: base64 runs and hashes
/// only bloat the term dictionary.
const MAX_WORD_BYTES: usize = 64;
/// Whole values (addresses, file names, mailbox names) longer than this are not indexed whole.
const MAX_VALUE_BYTES: usize = 255;

fn text_analyzer(stemmed: bool) -> TextAnalyzer {
    let builder = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_WORD_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter);
    if stemmed {
        builder.filter(MemoStemmer).build()
    } else {
        builder.build()
    }
}

fn keyword_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(RawTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_VALUE_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

fn parts_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(PartsTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_VALUE_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// The tokenizers the schema refers to, for the `Index`.
pub(super) fn tokenizer_manager() -> TokenizerManager {
    let manager = TokenizerManager::default();
    manager.register(TEXT, text_analyzer(true));
    manager.register(KEYWORD, keyword_analyzer());
    manager.register(PARTS, parts_analyzer());
    manager
}

/// Query-time normalization, mirroring the index-time analyzers.
#[derive(Clone)]
pub(super) struct QueryAnalyzers {
    text: TextAnalyzer,
    unstemmed: TextAnalyzer,
    keyword: TextAnalyzer,
}

impl Default for QueryAnalyzers {
    fn default() -> Self {
        QueryAnalyzers {
            text: text_analyzer(true),
            unstemmed: text_analyzer(false),
            keyword: keyword_analyzer(),
        }
    }
}

/// Every token text `analyzer` produces for `text`.
fn token_texts(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut stream = analyzer.token_stream(text);
    let mut texts = Vec::new();
    while let Some(token) = stream.next() {
        texts.push(token.text.clone());
    }
    texts
}

impl QueryAnalyzers {
    /// Terms of `text` in a text field (stemmed).
    pub(super) fn text_terms(&mut self, text: &str) -> Vec<String> {
        token_texts(&mut self.text, text)
    }

    /// Words of `text` normalized like a text field but not stemmed (for prefixes).
    pub(super) fn unstemmed_words(&mut self, text: &str) -> Vec<String> {
        token_texts(&mut self.unstemmed, text)
    }

    /// The stem of one already normalized word.
    pub(super) fn stem(&mut self, word: &str) -> String {
        token_texts(&mut self.text, word)
            .into_iter()
            .next()
            .unwrap_or_else(|| word.to_string())
    }

    /// A keyword value normalized as indexed (lowercase, folded, trimmed); empty if too long.
    pub(super) fn keyword(&mut self, text: &str) -> String {
        token_texts(&mut self.keyword, text.trim())
            .into_iter()
            .next()
            .unwrap_or_default()
    }

    /// A participant or file-name value as its whole term and its words, normalized as indexed.
    pub(super) fn parts(&mut self, text: &str) -> (String, Vec<String>) {
        let normalized = self.keyword(text);
        let whole = trim_punctuation(&normalized).to_string();
        let words = split_words(&whole)
            .map(|(_, word)| word.to_string())
            .collect();
        (whole, words)
    }
}

/// `text` without leading and trailing non-alphanumeric characters.
fn trim_punctuation(text: &str) -> &str {
    text.trim_matches(|character: char| !character.is_alphanumeric())
}

/// Maximal alphanumeric runs of `text` with their byte offsets.
fn split_words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split(|character: char| !character.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(move |word| (offset_in(text, word), word))
}

/// Emits, for one participant or file-name value: the whole value, for an address its local
/// part, domain and parent domains, then each word (positions in that order, so a quoted name
/// matches as a phrase).
#[derive(Clone, Default)]
struct PartsTokenizer {
    /// Tokens of the current value, in reverse order (popped by the stream).
    pending: Vec<Token>,
}

/// Token stream over [`PartsTokenizer::pending`].
struct PartsTokenStream<'a> {
    pending: &'a mut Vec<Token>,
    current: Token,
}

impl Tokenizer for PartsTokenizer {
    type TokenStream<'a> = PartsTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> PartsTokenStream<'a> {
        self.pending.clear();
        for (offset, piece) in value_parts(text) {
            self.pending.push(Token {
                offset_from: offset,
                offset_to: offset + piece.len(),
                position: self.pending.len(),
                text: piece.to_string(),
                position_length: 1,
            });
        }
        self.pending.reverse();
        PartsTokenStream {
            pending: &mut self.pending,
            current: Token::default(),
        }
    }
}

impl TokenStream for PartsTokenStream<'_> {
    fn advance(&mut self) -> bool {
        match self.pending.pop() {
            Some(token) => {
                self.current = token;
                true
            }
            None => false,
        }
    }

    fn token(&self) -> &Token {
        &self.current
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.current
    }
}

/// Byte offset of `piece` inside `text`; `piece` must be a subslice of `text`.
fn offset_in(text: &str, piece: &str) -> usize {
    let offset = (piece.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
    debug_assert!(
        offset + piece.len() <= text.len(),
        "piece is a subslice of text"
    );
    offset
}

/// The pieces [`PartsTokenizer`] emits for `text`, with their byte offsets in `text`.
fn value_parts(text: &str) -> Vec<(usize, &str)> {
    let whole = trim_punctuation(text);
    if whole.is_empty() {
        return Vec::new();
    }
    let mut parts = vec![whole];
    if let Some((local, domain)) = whole.rsplit_once('@') {
        let local = trim_punctuation(local);
        if !local.is_empty() {
            parts.push(local);
        }
        let mut suffix = trim_punctuation(domain);
        while let Some((_, parent)) = suffix.split_once('.') {
            parts.push(suffix);
            suffix = parent;
        }
    }
    let words: Vec<&str> = split_words(whole).map(|(_, word)| word).collect();
    if words != [whole] {
        parts.extend(words);
    }
    parts
        .into_iter()
        .map(|piece| (offset_in(text, piece), piece))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indexed(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
        token_texts(analyzer, text)
    }

    #[test]
    fn text_terms_fold_case_and_accents_and_stem() {
        let mut analyzer = text_analyzer(true);
        assert_eq!(
            indexed(&mut analyzer, "Müller's Invoices, CAFÉ refunds"),
            vec!["muller", "s", "invoic", "cafe", "refund"]
        );
        assert_eq!(indexed(&mut analyzer, "invoice"), vec!["invoic"]);
    }

    #[test]
    fn text_terms_drop_overlong_words() {
        let mut analyzer = text_analyzer(true);
        let base64_run = "A".repeat(MAX_WORD_BYTES + 1);
        assert_eq!(
            indexed(&mut analyzer, &format!("ok {base64_run}")),
            vec!["ok"]
        );
    }

    #[test]
    fn address_parts_cover_address_domain_and_words() {
        let mut analyzer = parts_analyzer();
        assert_eq!(
            indexed(&mut analyzer, "<Alice.Smith@Mail.Example.ORG>"),
            vec![
                "alice.smith@mail.example.org",
                "alice.smith",
                "mail.example.org",
                "example.org",
                "alice",
                "smith",
                "mail",
                "example",
                "org",
            ]
        );
    }

    #[test]
    fn name_and_file_name_parts() {
        let mut analyzer = parts_analyzer();
        assert_eq!(
            indexed(&mut analyzer, "José Müller"),
            vec!["jose muller", "jose", "muller"]
        );
        assert_eq!(indexed(&mut analyzer, "Bob"), vec!["bob"]);
        assert_eq!(
            indexed(&mut analyzer, "Invoice 2024-03.PDF"),
            vec!["invoice 2024-03.pdf", "invoice", "2024", "03", "pdf"]
        );
        assert!(indexed(&mut analyzer, " -- ").is_empty());
    }

    #[test]
    fn parts_tokens_have_sequential_positions_and_offsets() {
        let mut analyzer = parts_analyzer();
        let text = " bob@example.org";
        let mut stream = analyzer.token_stream(text);
        let mut seen = Vec::new();
        while let Some(token) = stream.next() {
            seen.push((
                token.position,
                text[token.offset_from..token.offset_to].to_string(),
            ));
        }
        assert_eq!(
            seen,
            vec![
                (0, "bob@example.org".to_string()),
                (1, "bob".to_string()),
                (2, "example.org".to_string()),
                (3, "bob".to_string()),
                (4, "example".to_string()),
                (5, "org".to_string()),
            ]
        );
    }

    #[test]
    fn query_normalization_matches_indexing() {
        let mut analyzers = QueryAnalyzers::default();
        assert_eq!(
            analyzers.parts("<Alice@Example.org>"),
            (
                "alice@example.org".to_string(),
                vec!["alice".into(), "example".into(), "org".into()]
            )
        );
        assert_eq!(analyzers.keyword("  Support EU "), "support eu");
        assert_eq!(analyzers.text_terms("Invoices"), vec!["invoic"]);
        assert_eq!(analyzers.unstemmed_words("Invoices"), vec!["invoices"]);
        assert_eq!(analyzers.stem("invoices"), "invoic");
    }
}
