//! A real tantivy index on [`EncryptedDirectory`]: search, reload on commit, no plaintext at rest,
//! and physical removal of purged text by delete + merge + garbage collection.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use tantivy::collector::Count;
use tantivy::directory::MmapDirectory;
use tantivy::indexer::NoMergePolicy;
use tantivy::query::TermQuery;
use tantivy::schema::{Field, IndexRecordOption, STORED, STRING, Schema, TEXT, Value};
use tantivy::{
    DocAddress, Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, TantivyDocument,
    Term, doc,
};

use super::{DEFAULT_CACHE_BYTES, EncryptedDirectory, scan_plaintext};

const KEY: [u8; 32] = [0x42; 32];
const DOCS: usize = 5_000;
/// A token no generated text contains; stored verbatim in the notes of `CANARY_DOCS`.
const CANARY: &str = "qzcanaryvx";
const CANARY_DOCS: [usize; 3] = [17, 2_600, 4_999];
/// A token stored only in the note of `SURVIVOR_DOC`, which is never deleted: the positive control
/// that scanning still sees stored text after the purge. Unique substrings keep lz4 from splitting it.
const SURVIVOR: &str = "qzsurvivor42";
const SURVIVOR_DOC: usize = 1_000;
const WORDS: [&str; 16] = [
    "invoice", "refund", "shipping", "delayed", "order", "customer", "support", "ticket",
    "payment", "address", "warranty", "return", "label", "courier", "parcel", "account",
];

struct Fields {
    id: Field,
    body: Field,
    note: Field,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let fields = Fields {
        id: builder.add_text_field("id", STRING | STORED),
        body: builder.add_text_field("body", TEXT),
        note: builder.add_text_field("note", TEXT | STORED),
    };
    (builder.build(), fields)
}

fn document(fields: &Fields, number: usize) -> TantivyDocument {
    let body: Vec<&str> = (0..12)
        .map(|i| WORDS[(number * 7 + i * 13) % WORDS.len()])
        .collect();
    let mut note = format!(
        "note for message {number} about {}",
        WORDS[number % WORDS.len()]
    );
    let mut body = body.join(" ");
    if CANARY_DOCS.contains(&number) {
        body.push_str(&format!(" {CANARY}"));
        note.push_str(&format!(" secret {CANARY} end"));
    }
    if number == SURVIVOR_DOC {
        note.push_str(&format!(" keep {SURVIVOR}"));
    }
    doc!(fields.id => format!("m{number}"), fields.body => body, fields.note => note)
}

fn add_documents(writer: &IndexWriter, fields: &Fields, numbers: std::ops::Range<usize>) {
    for number in numbers {
        writer
            .add_document(document(fields, number))
            .expect("add document");
    }
}

fn canary_count(reader: &IndexReader, fields: &Fields) -> usize {
    let query = TermQuery::new(
        Term::from_field_text(fields.body, CANARY),
        IndexRecordOption::Basic,
    );
    reader.searcher().search(&query, &Count).expect("search")
}

fn raw_files_contain(dir: &Path, needle: &[u8]) -> bool {
    fs::read_dir(dir).expect("list").any(|entry| {
        let raw = fs::read(entry.expect("entry").path()).expect("read raw");
        raw.windows(needle.len()).any(|window| window == needle)
    })
}

/// Waits for the reader to pick up a commit through the watch callback (no manual reload).
fn wait_for_docs(reader: &IndexReader, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while reader.searcher().num_docs() != expected {
        assert!(
            Instant::now() < deadline,
            "reader did not reload after commit"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn index_search_reload_leak_check_and_purge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let directory = EncryptedDirectory::open(dir.path(), KEY, DEFAULT_CACHE_BYTES).expect("open");
    let (schema, fields) = schema();
    let index = Index::create(directory.clone(), schema, IndexSettings::default()).expect("create");
    let reader: IndexReader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::OnCommitWithDelay)
        .try_into()
        .expect("reader");
    let mut writer: IndexWriter = index
        .writer_with_num_threads(1, 20_000_000)
        .expect("writer");
    writer.set_merge_policy(Box::new(NoMergePolicy));
    add_documents(&writer, &fields, 0..DOCS / 2);
    writer.commit().expect("first commit");
    add_documents(&writer, &fields, DOCS / 2..DOCS);
    writer.commit().expect("second commit");
    wait_for_docs(&reader, DOCS as u64);
    assert_eq!(index.searchable_segment_ids().expect("segments").len(), 2);

    assert_eq!(canary_count(&reader, &fields), CANARY_DOCS.len());
    let searcher = reader.searcher();
    let query = TermQuery::new(
        Term::from_field_text(fields.id, "m17"),
        IndexRecordOption::Basic,
    );
    let top = searcher
        .search(
            &query,
            &tantivy::collector::TopDocs::with_limit(1).order_by_score(),
        )
        .expect("search");
    let (_, address): (f32, DocAddress) = *top.first().expect("m17 found");
    let stored: TantivyDocument = searcher.doc(address).expect("stored doc");
    let note = stored
        .get_first(fields.note)
        .and_then(|value| value.as_str())
        .expect("note");
    assert!(note.contains(CANARY));

    assert!(
        !raw_files_contain(dir.path(), CANARY.as_bytes()),
        "canary in raw encrypted files"
    );
    assert!(
        !raw_files_contain(dir.path(), b"note for message"),
        "stored text in raw files"
    );
    assert!(scan_plaintext(dir.path(), &KEY, CANARY.as_bytes()).expect("scan"));
    assert!(scan_plaintext(dir.path(), &KEY, SURVIVOR.as_bytes()).expect("scan"));

    // Purge: delete, commit, merge every segment, collect garbage.
    writer.delete_term(Term::from_field_text(fields.body, CANARY));
    writer.commit().expect("delete commit");
    assert!(
        scan_plaintext(dir.path(), &KEY, CANARY.as_bytes()).expect("scan"),
        "a delete alone only marks documents; the text stays until a merge"
    );
    let segments = index.searchable_segment_ids().expect("segments");
    writer.merge(&segments).wait().expect("merge");
    writer
        .garbage_collect_files()
        .wait()
        .expect("garbage collection");

    reader.reload().expect("reload");
    assert_eq!(
        reader.searcher().num_docs(),
        (DOCS - CANARY_DOCS.len()) as u64
    );
    assert_eq!(canary_count(&reader, &fields), 0);
    assert!(!scan_plaintext(dir.path(), &KEY, CANARY.as_bytes()).expect("scan"));
    assert!(scan_plaintext(dir.path(), &KEY, SURVIVOR.as_bytes()).expect("scan"));

    // The searcher from before the merge still reads its (now deleted) files through open handles.
    let old_doc: TantivyDocument = searcher
        .doc(address)
        .expect("old searcher survives deletion");
    assert_eq!(
        old_doc
            .get_first(fields.id)
            .and_then(|value| value.as_str()),
        Some("m17")
    );
    writer.wait_merging_threads().expect("writer shutdown");

    // Reopening from disk (fresh directory instance, empty cache) sees the purged index.
    let reopened = EncryptedDirectory::open(dir.path(), KEY, 0).expect("reopen");
    let index = Index::open(reopened).expect("open index");
    let reader = index.reader().expect("reader");
    assert_eq!(
        reader.searcher().num_docs(),
        (DOCS - CANARY_DOCS.len()) as u64
    );
    assert!(
        Index::open(EncryptedDirectory::open(dir.path(), [0x43; 32], 0).expect("open")).is_err()
    );
}

/// Positive control for the raw-bytes check above: the same documents in tantivy's plain
/// MmapDirectory leave the canary readable on disk.
#[test]
fn the_same_index_unencrypted_leaks_the_canary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (schema, fields) = schema();
    let directory = MmapDirectory::open(dir.path()).expect("mmap directory");
    let index = Index::create(directory, schema, IndexSettings::default()).expect("create");
    let mut writer: IndexWriter = index
        .writer_with_num_threads(1, 20_000_000)
        .expect("writer");
    add_documents(&writer, &fields, 0..DOCS);
    writer.commit().expect("commit");
    assert!(raw_files_contain(dir.path(), CANARY.as_bytes()));
}
