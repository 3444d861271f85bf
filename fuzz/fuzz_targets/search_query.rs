//! The Gmail-like query language: parse, then compile and run against an (empty) index.
//! Oracle: never panics or overflows the stack; a query either runs or gets a QueryError.
#![no_main]

use std::sync::LazyLock;

use inboxd::search::{SearchIndex, SearchOptions};
use libfuzzer_sys::fuzz_target;

static INDEX: LazyLock<SearchIndex> = LazyLock::new(|| {
    SearchIndex::open_or_create(Box::new(tantivy::directory::RamDirectory::create()))
        .expect("in-memory index")
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = inboxd::search::query::parse(text);
    let searched = INDEX.search(text, &SearchOptions::default());
    if parsed.is_err() {
        assert!(searched.is_err(), "a query that does not parse must not run");
    }
});
