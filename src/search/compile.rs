//! Turns a parsed [`Expr`] into a tantivy query, normalizing values with the same analyzers as
//! the index, and records the positive words for snippet highlighting.

use std::collections::BTreeSet;
use std::ops::Bound;

use chrono::NaiveDate;
use tantivy::Term;
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, Occur, PhrasePrefixQuery, PhraseQuery, Query, RangeQuery,
    TermQuery, TermSetQuery,
};
use tantivy::schema::{Field, IndexRecordOption};

use super::analysis::QueryAnalyzers;
use super::query::{Clause, Expr, KeywordField, QueryError, TextScope, Value};
use super::schema::{Fields, HAS_ATTACHMENT};

/// Maximum number of index terms one prefix expands to (per field and segment). Bounds the
/// cost of short prefixes; a prefix matching more terms only matches the first ones in
/// alphabetical order.
const MAX_PREFIX_EXPANSIONS: u32 = 1000;

/// Subject matches weigh more than body matches when ordering by relevance.
const SUBJECT_BOOST: f32 = 2.0;

/// Words to highlight in snippets: analyzed (stemmed) terms and unstemmed prefixes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Highlight {
    pub(super) terms: BTreeSet<String>,
    pub(super) prefixes: BTreeSet<String>,
}

/// A compiled query and what to highlight.
pub(super) struct Compiled {
    pub(super) query: Box<dyn Query>,
    pub(super) highlight: Highlight,
}

/// Compiles `expr` against `fields`.
pub(super) fn compile(
    expr: &Expr,
    fields: &Fields,
    analyzers: QueryAnalyzers,
) -> Result<Compiled, QueryError> {
    let mut compiler = Compiler {
        fields,
        analyzers,
        highlight: Highlight::default(),
    };
    let query = compiler.expr(expr, false)?;
    Ok(Compiled {
        query,
        highlight: compiler.highlight,
    })
}

/// A query matching messages in any of `mailboxes` (already non-empty).
pub(super) fn mailbox_filter(
    mailboxes: &[String],
    fields: &Fields,
    analyzers: &mut QueryAnalyzers,
) -> Box<dyn Query> {
    let terms = mailboxes
        .iter()
        .map(|mailbox| Term::from_field_text(fields.mailbox, &analyzers.keyword(mailbox)));
    Box::new(TermSetQuery::new(terms))
}

/// Unix seconds of midnight UTC starting `date`.
fn midnight(date: NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0)
        .expect("midnight exists on every day")
        .and_utc()
        .timestamp()
}

fn term_query(term: Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs))
}

/// Words starting with `terms.last()`, consecutive with the preceding terms if any.
fn prefix_query(terms: Vec<Term>) -> Box<dyn Query> {
    let mut query = PhrasePrefixQuery::new(terms);
    query.set_max_expansions(MAX_PREFIX_EXPANSIONS);
    Box::new(query)
}

/// A term for one word, a phrase for several, nothing for none.
fn words_query(field: Field, words: &[String]) -> Option<Box<dyn Query>> {
    match words {
        [] => None,
        [word] => Some(term_query(Term::from_field_text(field, word))),
        _ => Some(Box::new(PhraseQuery::new(
            words
                .iter()
                .map(|word| Term::from_field_text(field, word))
                .collect(),
        ))),
    }
}

/// One query, or a disjunction of several, or nothing.
fn any_of(mut queries: Vec<Box<dyn Query>>) -> Option<Box<dyn Query>> {
    match queries.len() {
        0 => None,
        1 => queries.pop(),
        _ => Some(Box::new(BooleanQuery::new(
            queries
                .into_iter()
                .map(|query| (Occur::Should, query))
                .collect(),
        ))),
    }
}

/// Every document except those matching `excluded`.
fn all_but(excluded: Box<dyn Query>) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(vec![
        (Occur::Must, Box::new(AllQuery)),
        (Occur::MustNot, excluded),
    ]))
}

/// A text value analyzed once, to be applied to several text fields.
enum TextForm {
    /// Stemmed terms: one term, or a phrase.
    Words(Vec<String>),
    /// Stemmed leading words, then the candidate forms (unstemmed and stemmed) of the prefix.
    Prefix {
        leading: Vec<String>,
        variants: Vec<String>,
    },
}

struct Compiler<'a> {
    fields: &'a Fields,
    analyzers: QueryAnalyzers,
    highlight: Highlight,
}

impl Compiler<'_> {
    /// Compiles `expr`; `negated` tells whether an odd number of negations encloses it (its
    /// words are then not highlighted).
    fn expr(&mut self, expr: &Expr, negated: bool) -> Result<Box<dyn Query>, QueryError> {
        match expr {
            Expr::And(items) => {
                let mut clauses = Vec::with_capacity(items.len() + 1);
                for item in items {
                    match item {
                        Expr::Not(inner) => {
                            clauses.push((Occur::MustNot, self.expr(inner, !negated)?));
                        }
                        positive => clauses.push((Occur::Must, self.expr(positive, negated)?)),
                    }
                }
                if clauses.iter().all(|(occur, _)| *occur == Occur::MustNot) {
                    clauses.push((Occur::Must, Box::new(AllQuery)));
                }
                Ok(Box::new(BooleanQuery::new(clauses)))
            }
            Expr::Or(items) => {
                let mut alternatives = Vec::with_capacity(items.len());
                for item in items {
                    alternatives.push(self.expr(item, negated)?);
                }
                Ok(any_of(alternatives).expect("the parser never builds an empty OR"))
            }
            Expr::Not(inner) => Ok(all_but(self.expr(inner, !negated)?)),
            Expr::Clause(clause) => self.clause(clause, negated),
        }
    }

    fn clause(&mut self, clause: &Clause, negated: bool) -> Result<Box<dyn Query>, QueryError> {
        let fields = self.fields;
        match clause {
            Clause::Text {
                scope,
                value,
                column,
            } => self
                .text(*scope, value, negated)
                .ok_or_else(|| QueryError::new(*column, "no searchable words in this term")),
            Clause::Keyword {
                field,
                value,
                column,
            } => {
                let field = match field {
                    KeywordField::Mailbox => fields.mailbox,
                    KeywordField::Folder => fields.folder,
                    KeywordField::Status => fields.status,
                };
                self.keyword(field, value)
                    .ok_or_else(|| QueryError::new(*column, "no searchable words in this value"))
            }
            Clause::HasAttachment => Ok(term_query(Term::from_field_text(
                fields.has,
                HAS_ATTACHMENT,
            ))),
            Clause::State(state) => Ok(term_query(Term::from_field_text(
                fields.state,
                state.as_str(),
            ))),
            Clause::Before(date) => Ok(Box::new(RangeQuery::new(
                Bound::Unbounded,
                Bound::Excluded(Term::from_field_i64(fields.date, midnight(*date))),
            ))),
            Clause::After(date) => Ok(Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_i64(fields.date, midnight(*date))),
                Bound::Unbounded,
            ))),
        }
    }

    /// A text value in the fields of `scope`; `None` when nothing in it can be searched.
    fn text(&mut self, scope: TextScope, value: &Value, negated: bool) -> Option<Box<dyn Query>> {
        let fields = self.fields;
        let (text_fields, parts_fields): (&[Field], &[Field]) = match scope {
            TextScope::Anywhere => (
                &[fields.subject, fields.body, fields.attachment_text],
                &[fields.from, fields.to, fields.cc, fields.filename],
            ),
            TextScope::Subject => (&[fields.subject], &[]),
            TextScope::Body => (&[fields.body, fields.attachment_text], &[]),
            TextScope::From => (&[], &[fields.from]),
            TextScope::To => (&[], &[fields.to]),
            TextScope::Cc => (&[], &[fields.cc]),
            TextScope::Filename => (&[], &[fields.filename]),
        };
        let mut queries = Vec::new();
        if !text_fields.is_empty() {
            let form = self.text_form(value, negated);
            for &field in text_fields {
                if let Some(query) = text_field_query(field, &form) {
                    queries.push(if field == fields.subject {
                        Box::new(BoostQuery::new(query, SUBJECT_BOOST))
                    } else {
                        query
                    });
                }
            }
        }
        for &field in parts_fields {
            queries.extend(self.parts(field, value));
        }
        any_of(queries)
    }

    /// Analyzes a value for text fields and records what to highlight.
    fn text_form(&mut self, value: &Value, negated: bool) -> TextForm {
        let form = match value {
            Value::Word(text) | Value::Phrase(text) => {
                TextForm::Words(self.analyzers.text_terms(text))
            }
            Value::Prefix(text) => {
                let mut words = self.analyzers.unstemmed_words(text);
                let last = words.pop().unwrap_or_default();
                let leading = words.iter().map(|word| self.analyzers.stem(word)).collect();
                let mut variants = vec![self.analyzers.stem(&last), last];
                variants.dedup();
                variants.retain(|variant| !variant.is_empty());
                TextForm::Prefix { leading, variants }
            }
        };
        if !negated {
            match &form {
                TextForm::Words(terms) => self.highlight.terms.extend(terms.iter().cloned()),
                TextForm::Prefix { leading, variants } => {
                    self.highlight.terms.extend(leading.iter().cloned());
                    self.highlight.prefixes.extend(variants.iter().cloned());
                }
            }
        }
        form
    }

    /// A value in a participant or file-name field: the whole normalized value as one term, or
    /// its words as a phrase.
    fn parts(&mut self, field: Field, value: &Value) -> Option<Box<dyn Query>> {
        let (Value::Word(text) | Value::Phrase(text) | Value::Prefix(text)) = value;
        let (whole, words) = self.analyzers.parts(text);
        if words.is_empty() {
            return None;
        }
        // An address or domain is indexed whole (and split into its parts), so the whole term
        // is exact; a phrase over its words would only add cost on very long posting lists.
        let address_like = field != self.fields.filename
            && whole.contains(['@', '.'])
            && !whole.contains(char::is_whitespace);
        let single_word = address_like || (words.len() == 1 && words.first() == Some(&whole));
        let whole_term = Term::from_field_text(field, &whole);
        let to_terms = |words: &[String]| -> Vec<Term> {
            words
                .iter()
                .map(|word| Term::from_field_text(field, word))
                .collect()
        };
        match value {
            Value::Prefix(_) if single_word => Some(prefix_query(vec![whole_term])),
            Value::Prefix(_) => any_of(vec![
                prefix_query(vec![whole_term]),
                prefix_query(to_terms(&words)),
            ]),
            _ if single_word => Some(term_query(whole_term)),
            _ => any_of(
                [Some(term_query(whole_term)), words_query(field, &words)]
                    .into_iter()
                    .flatten()
                    .collect(),
            ),
        }
    }

    /// A whole-value match (or prefix) on a keyword field.
    fn keyword(&mut self, field: Field, value: &Value) -> Option<Box<dyn Query>> {
        let (Value::Word(text) | Value::Phrase(text) | Value::Prefix(text)) = value;
        let normalized = self.analyzers.keyword(text);
        if normalized.is_empty() {
            return None;
        }
        let term = Term::from_field_text(field, &normalized);
        Some(match value {
            Value::Prefix(_) => prefix_query(vec![term]),
            _ => Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
        })
    }
}

/// The query for an analyzed text value in one text field.
fn text_field_query(field: Field, form: &TextForm) -> Option<Box<dyn Query>> {
    match form {
        TextForm::Words(terms) => words_query(field, terms),
        TextForm::Prefix { leading, variants } => any_of(
            variants
                .iter()
                .map(|variant| {
                    let terms = leading
                        .iter()
                        .chain(std::iter::once(variant))
                        .map(|word| Term::from_field_text(field, word))
                        .collect();
                    prefix_query(terms)
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::query::parse;
    use crate::search::schema::build_schema;

    fn compiled(input: &str) -> Result<Compiled, QueryError> {
        let (_, fields) = build_schema();
        let expr = parse(input).expect("test query parses");
        compile(&expr, &fields, QueryAnalyzers::default())
    }

    #[test]
    fn highlight_skips_negated_words_and_keeps_prefixes() {
        let highlight = compiled("Invoices -spam (refund OR -\"not this\") deliv*")
            .expect("compiles")
            .highlight;
        let terms: Vec<&str> = highlight.terms.iter().map(String::as_str).collect();
        assert_eq!(terms, vec!["invoic", "refund"]);
        let prefixes: Vec<&str> = highlight.prefixes.iter().map(String::as_str).collect();
        assert_eq!(prefixes, vec!["deliv"]);
    }

    #[test]
    fn double_negation_highlights_again() {
        let highlight = compiled("-(a -refund)").expect("compiles").highlight;
        assert!(highlight.terms.contains("refund"));
        assert!(!highlight.terms.contains("a"));
    }

    #[test]
    fn terms_without_searchable_characters_are_errors() {
        let error = compiled("refund !!!").err().expect("must fail");
        assert_eq!(
            (error.position, error.message.as_str()),
            (8, "no searchable words in this term")
        );
        let error = compiled("from:<>").err().expect("must fail");
        assert_eq!(error.position, 6);
    }

    #[test]
    fn midnight_is_utc_start_of_day() {
        let date = NaiveDate::from_ymd_opt(2024, 3, 1).expect("valid date");
        assert_eq!(midnight(date), 1_709_251_200);
    }
}
