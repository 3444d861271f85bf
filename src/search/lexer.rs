//! Splits a query string into tokens for [`super::query`]. Pure: no I/O, no index.
//!
//! Columns are 1-based and count characters (not bytes), so they point at the right place in
//! what the user typed whatever the script.

use super::query::QueryError;

/// One lexical token with the column of its first character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Token {
    pub(super) kind: TokenKind,
    pub(super) column: usize,
}

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TokenKind {
    LeftParen,
    RightParen,
    /// The uppercase keyword `OR`.
    Or,
    /// The uppercase keyword `AND` (same as juxtaposition).
    And,
    /// A `-` in front of a term.
    Not,
    /// A bare word, possibly ending in `*`.
    Word(String),
    /// The text between double quotes.
    Phrase(String),
    /// `name:` (lowercased). The lexer guarantees that a value token (word, phrase or `(`)
    /// follows immediately.
    Field(String),
}

/// Characters that end a bare word.
fn ends_word(character: char) -> bool {
    character.is_whitespace() || matches!(character, '(' | ')' | '"')
}

/// Tokenizes `input`; fails on an unterminated or empty phrase, a dangling `-` or a field
/// without a value.
pub(super) fn tokenize(input: &str) -> Result<Vec<Token>, QueryError> {
    let characters: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    while let Some(&character) = characters.get(index) {
        let column = index + 1;
        if character.is_whitespace() {
            index += 1;
            continue;
        }
        match character {
            '(' => {
                tokens.push(Token {
                    kind: TokenKind::LeftParen,
                    column,
                });
                index += 1;
            }
            ')' => {
                tokens.push(Token {
                    kind: TokenKind::RightParen,
                    column,
                });
                index += 1;
            }
            '"' => index = lex_phrase(&characters, index, &mut tokens)?,
            '-' => {
                let next = characters.get(index + 1).copied();
                if next.is_none_or(|next| next.is_whitespace() || next == ')') {
                    return Err(QueryError::new(column, "nothing to negate after '-'"));
                }
                tokens.push(Token {
                    kind: TokenKind::Not,
                    column,
                });
                index += 1;
            }
            _ => index = lex_word(&characters, index, &mut tokens)?,
        }
    }
    Ok(tokens)
}

/// Lexes `"..."` starting at the opening quote; returns the index after the closing quote.
fn lex_phrase(
    characters: &[char],
    start: usize,
    tokens: &mut Vec<Token>,
) -> Result<usize, QueryError> {
    let column = start + 1;
    let rest = characters.get(start + 1..).unwrap_or_default();
    let Some(length) = rest.iter().position(|&character| character == '"') else {
        return Err(QueryError::new(column, "unterminated quote"));
    };
    let text: String = rest.get(..length).unwrap_or_default().iter().collect();
    if text.trim().is_empty() {
        return Err(QueryError::new(column, "empty phrase"));
    }
    tokens.push(Token {
        kind: TokenKind::Phrase(text),
        column,
    });
    Ok(start + length + 2)
}

/// Lexes a bare word (a keyword, a `field:value` or a plain word) starting at `start`; returns
/// the index after it.
fn lex_word(
    characters: &[char],
    start: usize,
    tokens: &mut Vec<Token>,
) -> Result<usize, QueryError> {
    let column = start + 1;
    let rest = characters.get(start..).unwrap_or_default();
    let length = rest
        .iter()
        .position(|&character| ends_word(character))
        .unwrap_or(rest.len());
    let word: String = rest.get(..length).unwrap_or_default().iter().collect();
    let end = start + length;
    match word.as_str() {
        "OR" => tokens.push(Token {
            kind: TokenKind::Or,
            column,
        }),
        "AND" => tokens.push(Token {
            kind: TokenKind::And,
            column,
        }),
        _ => match split_field(&word) {
            Some((name, value)) => {
                let name_length = name.chars().count();
                tokens.push(Token {
                    kind: TokenKind::Field(name.to_ascii_lowercase()),
                    column,
                });
                if !value.is_empty() {
                    tokens.push(Token {
                        kind: TokenKind::Word(value.to_string()),
                        column: column + name_length + 1,
                    });
                } else if !matches!(characters.get(end), Some('"' | '(')) {
                    return Err(QueryError::new(
                        column,
                        format!("missing value after '{name}:'"),
                    ));
                }
            }
            None => tokens.push(Token {
                kind: TokenKind::Word(word),
                column,
            }),
        },
    }
    Ok(end)
}

/// Splits `name:value` when `name` is made of ASCII letters; a URL (`http://...`) stays a word.
fn split_field(word: &str) -> Option<(&str, &str)> {
    let (name, value) = word.split_once(':')?;
    let is_name = !name.is_empty()
        && name
            .chars()
            .all(|character| character.is_ascii_alphabetic());
    (is_name && !value.starts_with("//")).then_some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(input: &str) -> Vec<(TokenKind, usize)> {
        tokenize(input)
            .expect("test input lexes")
            .into_iter()
            .map(|token| (token.kind, token.column))
            .collect()
    }

    fn word(text: &str) -> TokenKind {
        TokenKind::Word(text.to_string())
    }

    fn error(input: &str) -> (usize, String) {
        let error = tokenize(input).expect_err("test input must fail");
        (error.position, error.message)
    }

    #[test]
    fn words_parens_and_keywords_carry_columns() {
        assert_eq!(
            kinds("(a OR b) AND c"),
            vec![
                (TokenKind::LeftParen, 1),
                (word("a"), 2),
                (TokenKind::Or, 4),
                (word("b"), 7),
                (TokenKind::RightParen, 8),
                (TokenKind::And, 10),
                (word("c"), 14),
            ]
        );
    }

    #[test]
    fn lowercase_or_is_a_word() {
        assert_eq!(
            kinds("a or b"),
            vec![(word("a"), 1), (word("or"), 3), (word("b"), 6)]
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(kinds("Müller ö"), vec![(word("Müller"), 1), (word("ö"), 8)]);
    }

    #[test]
    fn phrase_and_field_with_phrase() {
        assert_eq!(
            kinds(r#"from:"Alice Smith" "x y""#),
            vec![
                (TokenKind::Field("from".into()), 1),
                (TokenKind::Phrase("Alice Smith".into()), 6),
                (TokenKind::Phrase("x y".into()), 20),
            ]
        );
    }

    #[test]
    fn field_value_column_points_after_colon() {
        assert_eq!(
            kinds("x Subject:Hi"),
            vec![
                (word("x"), 1),
                (TokenKind::Field("subject".into()), 3),
                (word("Hi"), 11)
            ]
        );
    }

    #[test]
    fn urls_and_times_are_words() {
        assert_eq!(
            kinds("http://a.example/x 10:30"),
            vec![(word("http://a.example/x"), 1), (word("10:30"), 20)]
        );
    }

    #[test]
    fn negation_and_hyphenated_words() {
        assert_eq!(
            kinds("-spam e-mail"),
            vec![(TokenKind::Not, 1), (word("spam"), 2), (word("e-mail"), 7)]
        );
    }

    #[test]
    fn lexing_errors_have_columns() {
        assert_eq!(error(r#"a "open"#), (3, "unterminated quote".to_string()));
        assert_eq!(error(r#"a "" b"#), (3, "empty phrase".to_string()));
        assert_eq!(
            error("a - b"),
            (3, "nothing to negate after '-'".to_string())
        );
        assert_eq!(error("a -"), (3, "nothing to negate after '-'".to_string()));
        assert_eq!(
            error("x from: bob"),
            (3, "missing value after 'from:'".to_string())
        );
        assert_eq!(error("to:"), (1, "missing value after 'to:'".to_string()));
    }
}
