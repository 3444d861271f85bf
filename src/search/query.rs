//! The query language agents type, parsed into an [`Expr`]. Pure: no I/O, no index.
//!
//! Grammar (Gmail-like):
//!
//! - `word` matches the word in the subject, body, attachment text, participants or file names;
//!   `"exact phrase"` matches consecutive words; `invoi*` matches words starting with `invoi`
//!   (at least two characters before the `*`, which is only allowed at the end).
//! - Terms side by side must all match (AND; the uppercase keyword `AND` may be written).
//!   `a OR b` matches either. `OR` binds tighter than AND, as in Gmail: `a b OR c` is
//!   `a AND (b OR c)`. Parentheses group; `-term` or `-(group)` negates.
//! - Fields: `from:` `to:` `cc:` (address or display name: `from:alice`,
//!   `from:alice@example.org`, `from:example.org`, `from:"Alice Smith"`), `subject:`, `body:`,
//!   `filename:`, `mailbox:`, `folder:`, `status:` (delivery status, e.g. `status:bounced`),
//!   `has:attachment`, `is:open|pending|closed`, `before:` / `after:` with `YYYY-MM-DD` or
//!   `YYYY/MM/DD` (UTC days; `after:` includes the day, `before:` excludes it). Text fields
//!   accept a group: `from:(alice OR bob)`. Field names are case-insensitive.
//! - Matching is case- and accent-insensitive, and body words are stemmed (English).
//!
//! Anything else is an error with the column (1-based, in characters) where it was found:
//! unbalanced quotes or parentheses, an unknown field, a bad date or value, a dangling
//! operator, an empty query.

use chrono::NaiveDate;

use super::lexer::{Token, TokenKind, tokenize};

/// A query that could not be parsed, with the column where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query error at column {position}: {message}")]
pub struct QueryError {
    /// 1-based column, counted in characters, of the offending part of the query.
    pub position: usize,
    /// What is wrong, in lowercase.
    pub message: String,
}

impl QueryError {
    pub(super) fn new(position: usize, message: impl Into<String>) -> Self {
        QueryError {
            position,
            message: message.into(),
        }
    }
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Every sub-expression must match.
    And(Vec<Expr>),
    /// At least one sub-expression must match.
    Or(Vec<Expr>),
    /// The sub-expression must not match.
    Not(Box<Expr>),
    /// A single condition.
    Clause(Clause),
}

/// A single condition on a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clause {
    /// Text searched in one or more text fields.
    Text {
        /// Where to look.
        scope: TextScope,
        /// What to look for.
        value: Value,
        /// Column of the value in the query, for errors found later (nothing searchable).
        column: usize,
    },
    /// A whole-value match on a keyword field (case- and accent-insensitive).
    Keyword {
        /// Which field.
        field: KeywordField,
        /// The value (a prefix is allowed).
        value: Value,
        /// Column of the value in the query.
        column: usize,
    },
    /// `has:attachment`.
    HasAttachment,
    /// `is:open`, `is:pending`, `is:closed`.
    State(ConversationState),
    /// `before:DATE`: messages dated before midnight UTC starting that day.
    Before(NaiveDate),
    /// `after:DATE`: messages dated at or after midnight UTC starting that day.
    After(NaiveDate),
}

/// Where a text clause looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextScope {
    /// No field given: subject, body, attachment text, participants and file names.
    Anywhere,
    /// `subject:`.
    Subject,
    /// `body:` (body and attachment text).
    Body,
    /// `from:`.
    From,
    /// `to:`.
    To,
    /// `cc:`.
    Cc,
    /// `filename:`.
    Filename,
}

/// Keyword fields, matched on their whole (normalized) value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeywordField {
    /// `mailbox:`.
    Mailbox,
    /// `folder:`.
    Folder,
    /// `status:` (delivery status).
    Status,
}

/// Conversation states known to `is:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationState {
    /// `is:open`.
    Open,
    /// `is:pending`.
    Pending,
    /// `is:closed`.
    Closed,
}

impl ConversationState {
    /// The state as indexed (lowercase).
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationState::Open => "open",
            ConversationState::Pending => "pending",
            ConversationState::Closed => "closed",
        }
    }
}

/// A searched value, as typed (normalization happens against the index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A bare word (which may still contain punctuation, e.g. an address).
    Word(String),
    /// Quoted text: its words must be consecutive.
    Phrase(String),
    /// A word typed with a trailing `*` (the star removed).
    Prefix(String),
}

/// Parses a query; see the module documentation for the grammar.
pub fn parse(input: &str) -> Result<Expr, QueryError> {
    let tokens = tokenize(input)?;
    let mut parser = Parser {
        tokens,
        next: 0,
        depth: 0,
    };
    let items = parser.parse_and(TextScope::Anywhere)?;
    if let Some(token) = parser.peek() {
        debug_assert_eq!(token.kind, TokenKind::RightParen);
        return Err(QueryError::new(token.column, "unbalanced ')'"));
    }
    combine(items, Expr::And).ok_or_else(|| QueryError::new(1, "empty query"))
}

/// Wraps several expressions with `make`, or returns a single one as is.
fn combine(mut items: Vec<Expr>, make: fn(Vec<Expr>) -> Expr) -> Option<Expr> {
    match items.len() {
        0 => None,
        1 => items.pop(),
        _ => Some(make(items)),
    }
}

/// Deepest nesting of `(` groups and `-` negations the parser accepts: it is recursive descent, and
/// this keeps any input far from the stack limit whoever calls it.
pub const MAX_NESTING: usize = 32;

/// Recursive-descent parser over the token list.
struct Parser {
    tokens: Vec<Token>,
    next: usize,
    /// Current nesting of unary operands (each `(` and `-` adds one).
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next)
    }

    fn advance(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.next).cloned();
        self.next += 1;
        token
    }

    /// True when no operand can start at the next token.
    fn at_operand_end(&self) -> bool {
        self.peek().is_none_or(|token| {
            matches!(
                token.kind,
                TokenKind::RightParen | TokenKind::Or | TokenKind::And
            )
        })
    }

    /// `and := or ([AND] or)*`, up to `)` or the end.
    fn parse_and(&mut self, scope: TextScope) -> Result<Vec<Expr>, QueryError> {
        let mut items = Vec::new();
        while let Some(token) = self.peek() {
            let column = token.column;
            match token.kind {
                TokenKind::RightParen => break,
                TokenKind::Or => {
                    return Err(QueryError::new(column, "OR needs a term before it"));
                }
                TokenKind::And => {
                    if items.is_empty() {
                        return Err(QueryError::new(column, "AND needs a term before it"));
                    }
                    self.advance();
                    if self.at_operand_end() {
                        return Err(QueryError::new(column, "AND needs a term after it"));
                    }
                }
                _ => items.push(self.parse_or(scope)?),
            }
        }
        Ok(items)
    }

    /// `or := unary (OR unary)*`.
    fn parse_or(&mut self, scope: TextScope) -> Result<Expr, QueryError> {
        let mut alternatives = vec![self.parse_unary(scope)?];
        while let Some(token) = self.peek().filter(|token| token.kind == TokenKind::Or) {
            let column = token.column;
            self.advance();
            if self.at_operand_end() {
                return Err(QueryError::new(column, "OR needs a term after it"));
            }
            alternatives.push(self.parse_unary(scope)?);
        }
        Ok(combine(alternatives, Expr::Or).expect("at least one alternative was parsed"))
    }

    /// `unary := '-' unary | primary`.
    fn parse_unary(&mut self, scope: TextScope) -> Result<Expr, QueryError> {
        if self.depth >= MAX_NESTING {
            let column = self.peek().map_or(1, |token| token.column);
            return Err(QueryError::new(
                column,
                format!(
                    "the query nests more than {MAX_NESTING} levels of `(` or `-`; simplify it"
                ),
            ));
        }
        self.depth += 1;
        let result = self.parse_unary_inner(scope);
        self.depth -= 1;
        result
    }

    fn parse_unary_inner(&mut self, scope: TextScope) -> Result<Expr, QueryError> {
        match self.peek() {
            Some(token) if token.kind == TokenKind::Not => {
                let column = token.column;
                self.advance();
                if self.at_operand_end() {
                    return Err(QueryError::new(column, "nothing to negate after '-'"));
                }
                Ok(Expr::Not(Box::new(self.parse_unary(scope)?)))
            }
            _ => self.parse_primary(scope),
        }
    }

    /// `primary := '(' and ')' | field value | word | phrase`.
    fn parse_primary(&mut self, scope: TextScope) -> Result<Expr, QueryError> {
        let Some(token) = self.advance() else {
            return Err(QueryError::new(1, "unexpected end of query"));
        };
        let column = token.column;
        match token.kind {
            TokenKind::LeftParen => self.parse_group(column, scope),
            TokenKind::Word(word) => Ok(Expr::Clause(Clause::Text {
                scope,
                value: word_value(&word, column)?,
                column,
            })),
            TokenKind::Phrase(phrase) => Ok(Expr::Clause(Clause::Text {
                scope,
                value: Value::Phrase(phrase),
                column,
            })),
            TokenKind::Field(name) => self.parse_field(&name, column),
            TokenKind::RightParen => Err(QueryError::new(column, "unbalanced ')'")),
            TokenKind::Or | TokenKind::And | TokenKind::Not => {
                Err(QueryError::new(column, "expected a search term"))
            }
        }
    }

    /// The rest of a group after its `(` at `column`.
    fn parse_group(&mut self, column: usize, scope: TextScope) -> Result<Expr, QueryError> {
        let items = self.parse_and(scope)?;
        match self.advance() {
            Some(token) if token.kind == TokenKind::RightParen => {}
            _ => return Err(QueryError::new(column, "unclosed '('")),
        }
        combine(items, Expr::And).ok_or_else(|| QueryError::new(column, "empty parentheses"))
    }

    /// A `name:` token at `column` and its value.
    fn parse_field(&mut self, name: &str, column: usize) -> Result<Expr, QueryError> {
        let value_token = self
            .advance()
            .expect("the lexer puts a value token after every field");
        let value_column = value_token.column;
        let text_scope = match name {
            "from" => Some(TextScope::From),
            "to" => Some(TextScope::To),
            "cc" => Some(TextScope::Cc),
            "subject" => Some(TextScope::Subject),
            "body" => Some(TextScope::Body),
            "filename" => Some(TextScope::Filename),
            _ => None,
        };
        if let Some(scope) = text_scope {
            return match value_token.kind {
                TokenKind::LeftParen => self.parse_group(value_column, scope),
                kind => Ok(Expr::Clause(Clause::Text {
                    scope,
                    value: token_value(kind, value_column)?,
                    column: value_column,
                })),
            };
        }
        let keyword_field = match name {
            "mailbox" => Some(KeywordField::Mailbox),
            "folder" => Some(KeywordField::Folder),
            "status" => Some(KeywordField::Status),
            _ => None,
        };
        if !matches!(
            name,
            "mailbox" | "folder" | "status" | "has" | "is" | "before" | "after"
        ) {
            return Err(QueryError::new(column, format!("unknown field '{name}'")));
        }
        if value_token.kind == TokenKind::LeftParen {
            return Err(QueryError::new(
                value_column,
                format!("'{name}:' takes a single value, not a group"),
            ));
        }
        let value = token_value(value_token.kind, value_column)?;
        if let Some(field) = keyword_field {
            return Ok(Expr::Clause(Clause::Keyword {
                field,
                value,
                column: value_column,
            }));
        }
        special_clause(name, &value, value_column).map(Expr::Clause)
    }
}

/// The value of a word or phrase token.
fn token_value(kind: TokenKind, column: usize) -> Result<Value, QueryError> {
    match kind {
        TokenKind::Word(word) => word_value(&word, column),
        TokenKind::Phrase(phrase) => Ok(Value::Phrase(phrase)),
        _ => Err(QueryError::new(column, "expected a value")),
    }
}

/// A bare word, or a prefix when it ends with `*`.
fn word_value(word: &str, column: usize) -> Result<Value, QueryError> {
    let Some(star_index) = word.chars().position(|character| character == '*') else {
        return Ok(Value::Word(word.to_string()));
    };
    let length = word.chars().count();
    if star_index + 1 != length {
        return Err(QueryError::new(
            column + star_index,
            "'*' is only allowed at the end of a word",
        ));
    }
    let prefix = word.trim_end_matches('*');
    if prefix
        .chars()
        .filter(|character| character.is_alphanumeric())
        .count()
        < 2
    {
        return Err(QueryError::new(
            column + star_index,
            "a prefix needs at least 2 letters or digits before '*'",
        ));
    }
    Ok(Value::Prefix(prefix.to_string()))
}

/// The text of a value, for fields that take a fixed vocabulary or a date.
fn value_text(value: &Value) -> &str {
    match value {
        Value::Word(text) | Value::Phrase(text) | Value::Prefix(text) => text.trim(),
    }
}

/// `has:`, `is:`, `before:` and `after:`.
fn special_clause(name: &str, value: &Value, column: usize) -> Result<Clause, QueryError> {
    let text = value_text(value);
    let lowercase = text.to_lowercase();
    let prefix_error = || QueryError::new(column, format!("'{name}:' does not take a prefix"));
    if matches!(value, Value::Prefix(_)) {
        return Err(prefix_error());
    }
    match name {
        "has" => match lowercase.as_str() {
            "attachment" | "attachments" => Ok(Clause::HasAttachment),
            _ => Err(QueryError::new(
                column,
                format!("unknown value '{text}' for has:, expected attachment"),
            )),
        },
        "is" => match lowercase.as_str() {
            "open" => Ok(Clause::State(ConversationState::Open)),
            "pending" => Ok(Clause::State(ConversationState::Pending)),
            "closed" => Ok(Clause::State(ConversationState::Closed)),
            _ => Err(QueryError::new(
                column,
                format!("unknown value '{text}' for is:, expected open, pending or closed"),
            )),
        },
        "before" | "after" => {
            let date = parse_date(text).ok_or_else(|| {
                QueryError::new(
                    column,
                    format!("invalid date '{text}', expected YYYY-MM-DD or YYYY/MM/DD"),
                )
            })?;
            Ok(if name == "before" {
                Clause::Before(date)
            } else {
                Clause::After(date)
            })
        }
        _ => unreachable!("parse_field only passes has, is, before and after"),
    }
}

/// Parses `YYYY-MM-DD` or `YYYY/MM/DD` (month and day may have one digit).
fn parse_date(text: &str) -> Option<NaiveDate> {
    let separator = if text.contains('-') { '-' } else { '/' };
    let mut parts = text.split(separator);
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    let all_digits = |part: &str| part.chars().all(|character| character.is_ascii_digit());
    let shapes_ok = parts.next().is_none()
        && year.len() == 4
        && (1..=2).contains(&month.len())
        && (1..=2).contains(&day.len())
        && all_digits(year)
        && all_digits(month)
        && all_digits(day);
    if !shapes_ok {
        return None;
    }
    NaiveDate::from_ymd_opt(year.parse().ok()?, month.parse().ok()?, day.parse().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders an expression compactly: `and(a, or(b, c))`, `from:"x y"`, `-a`.
    fn show(expr: &Expr) -> String {
        let list = |items: &[Expr]| items.iter().map(show).collect::<Vec<_>>().join(", ");
        match expr {
            Expr::And(items) => format!("and({})", list(items)),
            Expr::Or(items) => format!("or({})", list(items)),
            Expr::Not(inner) => format!("-{}", show(inner)),
            Expr::Clause(clause) => show_clause(clause),
        }
    }

    fn show_clause(clause: &Clause) -> String {
        let value_text = |value: &Value| match value {
            Value::Word(word) => word.clone(),
            Value::Phrase(phrase) => format!("\"{phrase}\""),
            Value::Prefix(prefix) => format!("{prefix}*"),
        };
        match clause {
            Clause::Text { scope, value, .. } => match scope {
                TextScope::Anywhere => value_text(value),
                scope => format!(
                    "{}:{}",
                    format!("{scope:?}").to_lowercase(),
                    value_text(value)
                ),
            },
            Clause::Keyword { field, value, .. } => {
                format!(
                    "{}:{}",
                    format!("{field:?}").to_lowercase(),
                    value_text(value)
                )
            }
            Clause::HasAttachment => "has:attachment".to_string(),
            Clause::State(state) => format!("is:{}", state.as_str()),
            Clause::Before(date) => format!("before:{date}"),
            Clause::After(date) => format!("after:{date}"),
        }
    }

    fn parsed(input: &str) -> String {
        match parse(input) {
            Ok(expr) => show(&expr),
            Err(error) => panic!("{input:?} failed: {error}"),
        }
    }

    fn failed(input: &str) -> (usize, String) {
        match parse(input) {
            Ok(expr) => panic!("{input:?} parsed as {}", show(&expr)),
            Err(error) => (error.position, error.message),
        }
    }

    #[test]
    fn valid_queries_parse_to_the_expected_tree() {
        let cases = [
            ("refund", "refund"),
            ("  refund  ", "refund"),
            ("Refund Müller", "and(Refund, Müller)"),
            ("a b c", "and(a, b, c)"),
            ("a AND b", "and(a, b)"),
            ("a OR b", "or(a, b)"),
            ("a OR b OR c", "or(a, b, c)"),
            ("a b OR c", "and(a, or(b, c))"),
            ("a OR b c", "and(or(a, b), c)"),
            ("a or b", "and(a, or, b)"),
            ("(a b) OR c", "or(and(a, b), c)"),
            ("((a))", "a"),
            ("(a OR b) (c OR d)", "and(or(a, b), or(c, d))"),
            ("-spam", "-spam"),
            ("invoice -spam", "and(invoice, -spam)"),
            ("-(a OR b)", "-or(a, b)"),
            ("-a OR b", "or(-a, b)"),
            ("--a", "--a"),
            ("e-mail", "e-mail"),
            ("\"late delivery\"", "\"late delivery\""),
            ("\"late delivery\" refund", "and(\"late delivery\", refund)"),
            ("-\"do not reply\"", "-\"do not reply\""),
            ("invoi*", "invoi*"),
            ("from:alice", "from:alice"),
            ("FROM:alice", "from:alice"),
            ("from:alice@example.org", "from:alice@example.org"),
            ("from:\"Alice Smith\"", "from:\"Alice Smith\""),
            ("from:(alice OR bob)", "or(from:alice, from:bob)"),
            ("from:(alice subject:x)", "and(from:alice, subject:x)"),
            (
                "to:support@example.com cc:boss",
                "and(to:support@example.com, cc:boss)",
            ),
            ("subject:invoice", "subject:invoice"),
            ("subject:re:hello", "subject:re:hello"),
            ("body:refund", "body:refund"),
            ("filename:invoice.pdf", "filename:invoice.pdf"),
            ("filename:inv*", "filename:inv*"),
            ("mailbox:support", "mailbox:support"),
            ("mailbox:\"Sales EU\"", "mailbox:\"Sales EU\""),
            ("folder:INBOX", "folder:INBOX"),
            ("status:bounced", "status:bounced"),
            ("has:attachment", "has:attachment"),
            ("has:Attachments", "has:attachment"),
            ("is:open", "is:open"),
            ("is:PENDING", "is:pending"),
            ("is:closed", "is:closed"),
            ("before:2024-03-01", "before:2024-03-01"),
            ("after:2024/3/1", "after:2024-03-01"),
            ("after:2024-02-29", "after:2024-02-29"),
            ("-from:noreply", "-from:noreply"),
            ("-is:closed refund", "and(-is:closed, refund)"),
            ("http://example.org/x", "http://example.org/x"),
            ("10:30", "10:30"),
            ("a (b OR -c)", "and(a, or(b, -c))"),
        ];
        for (input, expected) in cases {
            assert_eq!(parsed(input), expected, "query {input:?}");
        }
    }

    const DATE_HINT: &str = "expected YYYY-MM-DD or YYYY/MM/DD";

    #[rustfmt::skip]
    #[test]
    fn invalid_queries_report_the_column() {
        let bad_date = |text: &str| format!("invalid date '{text}', {DATE_HINT}");
        let cases: Vec<(&str, usize, String)> = vec![
            ("", 1, "empty query".into()),
            ("   ", 1, "empty query".into()),
            ("\"open", 1, "unterminated quote".into()),
            ("a \"b c", 3, "unterminated quote".into()),
            ("a \"  \"", 3, "empty phrase".into()),
            ("(a", 1, "unclosed '('".into()),
            ("x (a (b)", 3, "unclosed '('".into()),
            ("from:(a", 6, "unclosed '('".into()),
            ("a)", 2, "unbalanced ')'".into()),
            ("a) (b", 2, "unbalanced ')'".into()),
            (")", 1, "unbalanced ')'".into()),
            ("a ()", 3, "empty parentheses".into()),
            ("OR a", 1, "OR needs a term before it".into()),
            ("a OR", 3, "OR needs a term after it".into()),
            ("a OR OR b", 3, "OR needs a term after it".into()),
            ("(a OR) b", 4, "OR needs a term after it".into()),
            ("AND a", 1, "AND needs a term before it".into()),
            ("a AND", 3, "AND needs a term after it".into()),
            ("-", 1, "nothing to negate after '-'".into()),
            ("a -OR b", 3, "nothing to negate after '-'".into()),
            ("foo:bar", 1, "unknown field 'foo'".into()),
            ("a label:x", 3, "unknown field 'label'".into()),
            ("from:", 1, "missing value after 'from:'".into()),
            ("is:done", 4, "unknown value 'done' for is:, expected open, pending or closed".into()),
            ("has:pdf", 5, "unknown value 'pdf' for has:, expected attachment".into()),
            ("has:att*", 5, "'has:' does not take a prefix".into()),
            ("is:(open)", 4, "'is:' takes a single value, not a group".into()),
            ("mailbox:(a OR b)", 9, "'mailbox:' takes a single value, not a group".into()),
            ("before:2024-13-01", 8, bad_date("2024-13-01")),
            ("after:yesterday", 7, bad_date("yesterday")),
            ("after:2023-02-29", 7, bad_date("2023-02-29")),
            ("after:2024-01-01-02", 7, bad_date("2024-01-01-02")),
            ("after:2024-01/02", 7, bad_date("2024-01/02")),
            ("after:24-01-02", 7, bad_date("24-01-02")),
            ("a*", 2, "a prefix needs at least 2 letters or digits before '*'".into()),
            ("in*v", 3, "'*' is only allowed at the end of a word".into()),
            ("**", 1, "'*' is only allowed at the end of a word".into()),
        ];
        for (input, column, message) in cases {
            assert_eq!(failed(input), (column, message), "query {input:?}");
        }
    }

    #[test]
    fn error_display_names_the_column() {
        let error = parse("a (b").expect_err("unclosed group");
        assert_eq!(error.to_string(), "query error at column 3: unclosed '('");
    }

    #[test]
    fn clauses_keep_the_column_of_their_value() {
        let Ok(Expr::And(items)) = parse("alpha subject:beta") else {
            panic!("expected a conjunction");
        };
        let columns: Vec<usize> = items
            .iter()
            .map(|item| match item {
                Expr::Clause(Clause::Text { column, .. }) => *column,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(columns, vec![1, 15]);
    }

    #[test]
    fn phrase_and_prefix_values_are_kept_verbatim() {
        let Ok(Expr::Clause(Clause::Text { value, .. })) = parse("\"Müller  GmbH\"") else {
            panic!("expected a clause");
        };
        assert_eq!(value, Value::Phrase("Müller  GmbH".to_string()));
        let Ok(Expr::Clause(Clause::Keyword { field, value, .. })) = parse("mailbox:supp*") else {
            panic!("expected a keyword clause");
        };
        assert_eq!(
            (field, value),
            (KeywordField::Mailbox, Value::Prefix("supp".into()))
        );
    }

    #[test]
    fn nesting_is_bounded_whatever_the_caller() {
        let nested = |depth: usize| format!("{}a{}", "(".repeat(depth), ")".repeat(depth));
        assert!(parse(&nested(MAX_NESTING - 1)).is_ok());
        let error = parse(&nested(100_000)).expect_err("too deep");
        assert!(error.message.contains("nests more than"), "{error:?}");
        assert!(parse(&format!("{}a", "-".repeat(100_000))).is_err());
        assert!(parse(&format!("{}a", "- ".repeat(100_000))).is_err());
        let negated = format!("{}a", "-(".repeat(MAX_NESTING / 2 - 1));
        assert!(parse(&format!("{negated}{}", ")".repeat(MAX_NESTING / 2 - 1))).is_ok());
    }
}
