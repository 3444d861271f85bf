//! Integration tests: a realistic support corpus of 30 messages in 17 conversations, indexed in
//! a `RamDirectory` (an `MmapDirectory` for the on-disk purge check), queried through the
//! public API. Expected sets are worked out by hand from the corpus below.

use std::collections::BTreeSet;

use tantivy::directory::{MmapDirectory, RamDirectory};
use uuid::Uuid;

use super::test_corpus::{HEAP, at, conversation, corpus, message};
use super::*;

fn build(directory: Box<dyn tantivy::Directory>) -> SearchIndex {
    let index = SearchIndex::open_or_create(directory).expect("index opens");
    let mut writer = index.writer(HEAP).expect("writer opens");
    for doc in corpus() {
        writer.add(&doc).expect("document added");
    }
    writer.commit().expect("commit");
    index
}

fn ram_index() -> SearchIndex {
    build(Box::new(RamDirectory::create()))
}

fn all(query: &str, options: SearchOptions) -> SearchResults {
    let index = ram_index();
    index
        .search(query, &options)
        .unwrap_or_else(|error| panic!("{query:?}: {error}"))
}

fn numbers(results: &SearchResults) -> Vec<u16> {
    results
        .hits
        .iter()
        .map(|hit| (hit.conversation_id.as_u128() - 0x1000) as u16)
        .collect()
}

fn wide() -> SearchOptions {
    SearchOptions {
        limit: 100,
        ..SearchOptions::default()
    }
}

fn matching(index: &SearchIndex, query: &str) -> BTreeSet<u16> {
    let results = index
        .search(query, &wide())
        .unwrap_or_else(|error| panic!("{query:?}: {error}"));
    assert_eq!(results.total_conversations, results.hits.len(), "{query:?}");
    numbers(&results).into_iter().collect()
}

#[test]
fn every_operator_and_field_finds_the_expected_conversations() {
    let index = ram_index();
    assert_eq!(index.num_docs(), 30);
    let cases: &[(&str, &[u16])] = &[
        ("invoice", &[1, 8, 13]),
        ("invoices", &[1, 8, 13]),
        ("invoice 4711", &[1]),
        ("invoice AND 4711", &[1]),
        ("refunded", &[3, 15]),
        ("Müller", &[2]),
        ("muller", &[2]),
        ("MULLER", &[2]),
        ("jurgen", &[2]),
        ("cafe", &[11]),
        ("zoe", &[11]),
        ("EMILIE", &[5]),
        ("\"late delivery\"", &[2]),
        ("late delivery", &[2, 16]),
        ("deliv*", &[2, 4, 9, 16]),
        ("passw*", &[6]),
        ("sign-on", &[5]),
        ("sign-o*", &[5]),
        ("filename:quote-20*", &[5]),
        ("hello", &[1, 17]),
        ("invoice -from:news@marketing.example", &[1, 13]),
        ("-is:closed mailbox:billing", &[7, 13]),
        ("refund OR password", &[3, 6, 15]),
        ("(refund OR password) is:open", &[6]),
        ("is:closed refund OR password", &[3, 15]),
        ("-(refund OR password) mailbox:billing", &[7, 13]),
        ("from:alice", &[1, 7]),
        ("from:alice.smith@example.org", &[1, 7]),
        ("from:example.org", &[1, 6, 7, 16]),
        ("from:\"Alice Smith\"", &[1, 7]),
        ("from:obrien", &[10]),
        ("from:O'Brien", &[10]),
        ("from:(alice OR dave)", &[1, 6, 7]),
        ("to:billing@acme.test", &[3, 7, 13]),
        ("cc:alice", &[10]),
        ("cc:carol@customer.example", &[3]),
        ("subject:invoice", &[1, 13]),
        ("subject:\"contract renewal\"", &[15]),
        ("body:4711", &[1]),
        ("mailbox:billing", &[3, 7, 13]),
        ("mailbox:\"sales eu\"", &[5, 10, 15]),
        ("mailbox:SALES*", &[5, 10, 15]),
        ("folder:spam", &[8]),
        ("folder:inbox", &[5, 6]),
        ("has:attachment", &[1, 5, 13]),
        ("filename:pdf", &[1, 5, 13]),
        ("filename:invoice-4711.pdf", &[1]),
        ("filename:requirements.docx", &[5]),
        ("filename:\"quote 2024\"", &[5]),
        ("filename:invoice*", &[1, 13]),
        ("before:2024-02-01", &[1]),
        ("after:2024-02-01 before:2024-02-02", &[2]),
        ("after:2024/07/01", &[14, 15, 16, 17]),
        ("is:open", &[1, 4, 5, 6, 9, 10, 11, 12, 13, 16]),
        ("is:pending", &[2, 7, 17]),
        ("is:closed", &[3, 8, 14, 15]),
        ("status:bounced", &[4]),
        ("status:BOUNCED", &[4]),
        ("status:delayed", &[9]),
        ("nonexistentword", &[]),
    ];
    for (query, expected) in cases {
        let expected: BTreeSet<u16> = expected.iter().copied().collect();
        assert_eq!(matching(&index, query), expected, "query {query:?}");
    }
}

#[test]
fn handles_can_move_across_threads() {
    fn shared<T: Send + Sync>() {}
    fn sent<T: Send>() {}
    shared::<SearchIndex>();
    sent::<IndexWriterHandle>();
}

#[test]
fn field_scope_changes_which_messages_match() {
    let index = ram_index();
    let anywhere = index.search("4711", &wide()).expect("valid");
    let body_only = index.search("body:4711", &wide()).expect("valid");
    let first = |results: &SearchResults| results.hits.first().map(|hit| hit.matched_messages);
    assert_eq!(
        first(&anywhere),
        Some(3),
        "subjects of all three messages carry 4711"
    );
    assert_eq!(
        first(&body_only),
        Some(2),
        "body of message 1, attachment text of message 2"
    );
}

#[test]
fn mailbox_scoping_restricts_results_case_insensitively() {
    let index = ram_index();
    let scoped = |mailboxes: &[&str]| {
        let options = SearchOptions {
            mailboxes: Some(mailboxes.iter().map(|name| name.to_string()).collect()),
            ..wide()
        };
        let results = index.search("invoice", &options).expect("valid");
        numbers(&results).into_iter().collect::<BTreeSet<u16>>()
    };
    assert_eq!(scoped(&["billing"]), BTreeSet::from([13]));
    assert_eq!(scoped(&["SUPPORT"]), BTreeSet::from([1, 8]));
    assert_eq!(scoped(&["billing", "support"]), BTreeSet::from([1, 8, 13]));
    assert_eq!(scoped(&["sales eu"]), BTreeSet::new());
}

#[test]
fn pages_are_newest_first_with_a_stable_total() {
    let index = ram_index();
    let page = |offset: usize| {
        let options = SearchOptions {
            limit: 4,
            offset,
            ..SearchOptions::default()
        };
        index.search("mailbox:support", &options).expect("valid")
    };
    let pages: Vec<SearchResults> = [0, 4, 8, 12].into_iter().map(page).collect();
    assert!(
        pages
            .iter()
            .all(|results| results.total_conversations == 11)
    );
    let orders: Vec<Vec<u16>> = pages.iter().map(numbers).collect();
    assert_eq!(
        orders,
        vec![
            vec![17, 16, 14, 12],
            vec![11, 9, 8, 6],
            vec![4, 2, 1],
            vec![]
        ]
    );
    let newest = pages
        .first()
        .and_then(|results| results.hits.first())
        .map(|hit| hit.newest);
    assert_eq!(newest, Some(at("2024-07-16T09:00:00Z")));
}

#[test]
fn newest_date_and_message_ids_come_from_matching_messages_only() {
    let results = all("hello", wide());
    let first_conversation = results
        .hits
        .iter()
        .find(|hit| hit.conversation_id == conversation(1))
        .expect("conversation 1 matches");
    assert_eq!(first_conversation.newest, at("2024-01-10T09:00:00Z"));
    assert_eq!(first_conversation.message_ids, vec![message(1)]);
    let invoices = all("invoice", wide());
    let thread = invoices
        .hits
        .iter()
        .find(|hit| hit.conversation_id == conversation(1));
    assert_eq!(
        thread.map(|hit| hit.message_ids.clone()),
        Some(vec![message(3), message(2), message(1)])
    );
}

#[test]
fn relevance_order_puts_the_best_match_first() {
    let by_relevance = all(
        "refund",
        SearchOptions {
            order: Order::Relevance,
            ..wide()
        },
    );
    assert_eq!(numbers(&by_relevance), vec![3, 15]);
    let scores: Vec<f32> = by_relevance.hits.iter().map(|hit| hit.score).collect();
    assert!(scores.iter().all(|score| *score > 0.0));
    assert!(scores.windows(2).all(|pair| pair[0] >= pair[1]));
    let by_date = all("refund", wide());
    assert_eq!(numbers(&by_date), vec![15, 3]);
}

#[test]
fn snippets_highlight_matches_and_escape_html() {
    let index = ram_index();
    let snippet_of = |query: &str| {
        let results = index.search(query, &wide()).expect("valid");
        results
            .hits
            .first()
            .map(|hit| hit.snippet.clone())
            .unwrap_or_default()
    };
    let body = snippet_of("expired");
    assert!(body.contains("link <b>expired</b> immediately"), "{body}");
    let subject = snippet_of("password reset");
    assert_eq!(subject, "Re: <b>Password</b> <b>reset</b> not working");
    let escaped = snippet_of("passphrases");
    assert!(
        escaped.contains("a &lt; b style <b>passphrases</b> &amp; symbols"),
        "{escaped}"
    );
    let stemmed = snippet_of("received");
    assert!(stemmed.contains("<b>received</b> tea"), "{stemmed}");
    let prefixed = snippet_of("passw*");
    assert!(prefixed.contains("<b>Password</b>"), "{prefixed}");
    let plain = snippet_of("from:judy");
    assert_eq!(plain, "Just saying hello to the team.");
    let negated = snippet_of("team -hello");
    assert!(!negated.contains("<b>hello</b>"));
}

#[test]
fn invalid_queries_are_errors_not_empty_results() {
    let index = ram_index();
    for (query, column) in [
        ("subject:(", 9),
        ("from:", 1),
        ("a OR", 3),
        ("!!!", 1),
        ("x y:z", 3),
    ] {
        match index.search(query, &wide()) {
            Err(SearchError::Query(error)) => assert_eq!(error.position, column, "{query:?}"),
            other => panic!("{query:?} gave {other:?}"),
        }
    }
}

#[test]
fn adding_twice_keeps_one_copy() {
    let index = ram_index();
    let mut writer = index.writer(HEAP).expect("writer");
    let mut docs = corpus();
    for doc in &docs {
        writer.add(doc).expect("re-add");
    }
    writer.commit().expect("commit");
    assert_eq!(index.num_docs(), 30);
    let first = docs.first_mut().expect("corpus is not empty");
    first.subject = "Changed subject zanzibar".to_string();
    writer.add(first).expect("update");
    writer.commit().expect("commit");
    assert_eq!(index.num_docs(), 30);
    assert_eq!(matching(&index, "zanzibar"), BTreeSet::from([1]));
    let expected: std::collections::HashSet<Uuid> = (1..=30).map(message).collect();
    assert_eq!(index.indexed_message_ids().expect("ids"), expected);
}

#[test]
fn deleting_messages_and_conversations() {
    let index = ram_index();
    let mut writer = index.writer(HEAP).expect("writer");
    writer.delete_conversation(conversation(3)).expect("delete");
    writer.delete_message(message(27)).expect("delete");
    assert_eq!(
        matching(&index, "refund"),
        BTreeSet::from([3, 15]),
        "not before commit"
    );
    writer.commit().expect("commit");
    assert_eq!(index.num_docs(), 27);
    assert_eq!(matching(&index, "refund"), BTreeSet::new());
    assert_eq!(matching(&index, "contract"), BTreeSet::from([15]));
    let ids = index.indexed_message_ids().expect("ids");
    assert!(
        !ids.contains(&message(6)) && !ids.contains(&message(7)) && !ids.contains(&message(27))
    );
    assert_eq!(ids.len(), 27);
}

#[test]
fn index_survives_reopening_and_rejects_another_schema() {
    let directory = RamDirectory::create();
    let first = build(Box::new(directory.clone()));
    drop(first);
    let reopened = SearchIndex::open_or_create(Box::new(directory)).expect("reopens");
    assert_eq!(reopened.num_docs(), 30);
    assert_eq!(matching(&reopened, "cafe"), BTreeSet::from([11]));
    let mut writer = reopened.writer(HEAP).expect("writer");
    writer
        .delete_conversation(conversation(11))
        .expect("delete");
    writer.close().expect("close commits");
    assert_eq!(reopened.num_docs(), 29);
    assert!(reopened.writer(HEAP).is_ok(), "close released the lock");

    let foreign = RamDirectory::create();
    let mut builder = tantivy::schema::Schema::builder();
    builder.add_text_field("title", tantivy::schema::TEXT);
    tantivy::Index::create(foreign.clone(), builder.build(), Default::default())
        .expect("foreign index");
    let error = SearchIndex::open_or_create(Box::new(foreign))
        .err()
        .expect("must fail");
    assert!(matches!(error, SearchError::SchemaMismatch) && error.needs_rebuild());
}

/// Every file of the index directory that contains `needle`.
fn files_containing(path: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(path).expect("index directory lists") {
        let entry = entry.expect("directory entry");
        let bytes = std::fs::read(entry.path()).expect("index file reads");
        if bytes.windows(needle.len()).any(|window| window == needle) {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

/// Every stored document of every segment, deleted ones included.
fn stored_texts(index: &SearchIndex) -> Vec<String> {
    let searcher = index.inner_searcher_for_tests();
    let mut texts = Vec::new();
    for segment in searcher.segment_readers() {
        let store = segment.get_store_reader(1).expect("store opens");
        for doc in 0..segment.max_doc() {
            let stored: tantivy::TantivyDocument = store.get(doc).expect("stored doc");
            texts.push(tantivy::Document::to_json(&stored, searcher.schema()));
        }
    }
    texts
}

#[test]
fn purge_removes_deleted_text_from_disk() {
    let temporary = tempfile::tempdir().expect("temp dir");
    let directory = MmapDirectory::open(temporary.path()).expect("mmap directory");
    let index = build(Box::new(directory));
    // One indexing thread (15 MB), so both messages below land in the same segment.
    let mut writer = index.writer(15_000_000).expect("writer");
    let mut secret = corpus().remove(0);
    secret.message_id = message(99);
    secret.body = "Confidential marker quixotically-unique-zebracorn text".to_string();
    let mut neighbour = corpus().remove(1);
    neighbour.message_id = message(98);
    // Same segment as a live message: a segment left with no live document is dropped at
    // commit anyway, which would make the purge trivially pass.
    writer.add(&secret).expect("add");
    writer.add(&neighbour).expect("add");
    writer.commit().expect("commit");
    writer.delete_message(message(99)).expect("delete");
    writer.commit().expect("commit");
    assert_eq!(matching(&index, "zebracorn"), BTreeSet::new());
    // Positive control: deleting alone leaves the text in the segment files.
    assert!(!files_containing(temporary.path(), b"zebracorn").is_empty());
    assert!(
        stored_texts(&index)
            .iter()
            .any(|text| text.contains("zebracorn"))
    );

    writer.purge_physically().expect("purge");
    assert_eq!(
        files_containing(temporary.path(), b"zebracorn"),
        Vec::<String>::new()
    );
    assert!(
        !stored_texts(&index)
            .iter()
            .any(|text| text.contains("zebracorn"))
    );
    assert_eq!(index.num_docs(), 31);
    assert_eq!(matching(&index, "cafe"), BTreeSet::from([11]));
    writer
        .add(&secret)
        .expect("writer still works after a purge");
}
