//! The English stemmer with a memo of recent words: tantivy's `Stemmer` filter runs the Snowball
//! algorithm on every token, and mail repeats the same few thousand words endlessly (the stemmer was
//! the largest single cost of indexing, issue #5's profile). The output is exactly the Snowball stem,
//! so the index is the same as with tantivy's filter.

use std::borrow::Cow;
use std::mem;

use rustc_hash::FxHashMap;
use tantivy::tokenizer::{Token, TokenFilter, TokenStream, Tokenizer};

/// Words remembered per analyzer; when full the memo starts over (cheap, and a bulk import's
/// vocabulary settles within a few thousand messages).
const MEMO_WORDS: usize = 50_000;
/// Longer words are stemmed without the memo (rare, and they would bloat it).
const MEMO_MAX_WORD_BYTES: usize = 24;

/// English Snowball stemming with a memo; a drop-in for `Stemmer::new(Language::English)`.
#[derive(Clone, Default)]
pub(super) struct MemoStemmer;

impl TokenFilter for MemoStemmer {
    type Tokenizer<T: Tokenizer> = MemoStemmerFilter<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> MemoStemmerFilter<T> {
        MemoStemmerFilter {
            inner: tokenizer,
            memo: FxHashMap::default(),
        }
    }
}

/// The filter bound to its tokenizer. Each clone (tantivy clones an analyzer per indexing thread)
/// keeps a memo of its own, so nothing is shared or locked.
pub(super) struct MemoStemmerFilter<T> {
    inner: T,
    memo: FxHashMap<Box<str>, Box<str>>,
}

impl<T: Clone> Clone for MemoStemmerFilter<T> {
    fn clone(&self) -> Self {
        MemoStemmerFilter {
            inner: self.inner.clone(),
            memo: FxHashMap::default(),
        }
    }
}

impl<T: Tokenizer> Tokenizer for MemoStemmerFilter<T> {
    type TokenStream<'a> = MemoStemmerStream<'a, T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        MemoStemmerStream {
            tail: self.inner.token_stream(text),
            stemmer: frostem::Stemmer::new(frostem::Algorithm::English),
            memo: &mut self.memo,
            buffer: String::new(),
        }
    }
}

pub(super) struct MemoStemmerStream<'a, T> {
    tail: T,
    stemmer: frostem::Stemmer,
    memo: &'a mut FxHashMap<Box<str>, Box<str>>,
    buffer: String,
}

impl<T: TokenStream> MemoStemmerStream<'_, T> {
    fn stem_into_buffer(&mut self, word: &str) {
        self.buffer.clear();
        match self.stemmer.stem(word) {
            Cow::Owned(stem) => self.buffer = stem,
            Cow::Borrowed(stem) => self.buffer.push_str(stem),
        }
    }
}

impl<T: TokenStream> TokenStream for MemoStemmerStream<'_, T> {
    fn advance(&mut self) -> bool {
        if !self.tail.advance() {
            return false;
        }
        let word = mem::take(&mut self.tail.token_mut().text);
        if word.len() > MEMO_MAX_WORD_BYTES {
            self.stem_into_buffer(&word);
        } else if let Some(stem) = self.memo.get(word.as_str()) {
            self.buffer.clear();
            self.buffer.push_str(stem);
        } else {
            self.stem_into_buffer(&word);
            if self.memo.len() >= MEMO_WORDS {
                self.memo.clear();
            }
            self.memo
                .insert(word.as_str().into(), self.buffer.as_str().into());
        }
        // The token keeps the stem; the word's allocation becomes the next buffer.
        let token = self.tail.token_mut();
        token.text = mem::replace(&mut self.buffer, word);
        true
    }

    fn token(&self) -> &Token {
        self.tail.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.tail.token_mut()
    }
}

#[cfg(test)]
mod tests {
    use tantivy::tokenizer::{
        Language, LowerCaser, SimpleTokenizer, Stemmer, TextAnalyzer, TokenStream,
    };

    use super::*;

    fn tokens(analyzer: &mut TextAnalyzer, text: &str) -> Vec<(String, usize, usize, usize)> {
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        while let Some(token) = stream.next() {
            out.push((
                token.text.clone(),
                token.position,
                token.offset_from,
                token.offset_to,
            ));
        }
        out
    }

    /// Same tokens (text, position, offsets) as tantivy's own English stemmer, over real mail text
    /// given several times (memo misses, then hits), with words longer than the memo takes, and
    /// after the memo filled up and started over.
    #[test]
    fn memo_stemmer_matches_tantivy_stemmer() {
        let build = |memo: bool| {
            let builder = TextAnalyzer::builder(SimpleTokenizer::default()).filter(LowerCaser);
            if memo {
                builder.filter(MemoStemmer).build()
            } else {
                builder.filter(Stemmer::new(Language::English)).build()
            }
        };
        let mut plain = build(false);
        let mut memo = build(true);
        let text = "Invoices were generated; the generating jobs keep running. Running runners ran \
                    quickly, happily, relationally! Antidisestablishmentarianism internationalizations \
                    connection connected connecting connections généralement Müller 2026-11-28 \
                    caresses ponies ties caress cats feed agreed plastered bled motoring sing";
        for _ in 0..3 {
            assert_eq!(tokens(&mut memo, text), tokens(&mut plain, text));
        }
        // Fill the memo past its limit with distinct words, then check again.
        let many: String = (0..MEMO_WORDS + 10)
            .map(|i| format!("word{i}ing "))
            .collect();
        assert_eq!(tokens(&mut memo, &many), tokens(&mut plain, &many));
        assert_eq!(tokens(&mut memo, text), tokens(&mut plain, text));
        // A clone starts with its own memo and gives the same result.
        let mut cloned = memo.clone();
        assert_eq!(tokens(&mut cloned, text), tokens(&mut plain, text));
    }
}
