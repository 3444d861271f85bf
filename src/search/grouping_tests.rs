//! The grouping collector against a naive reference: every match collected one by one, grouped
//! by conversation in a `BTreeMap`, ordered and paged by the documented rules. Random corpus
//! whose conversations are spread over several segments, with deleted messages and many equal
//! dates (so the tie-breaking rules are exercised).

use std::collections::BTreeMap;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::directory::RamDirectory;
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};
use uuid::Uuid;

use super::schema::{CONVERSATION_HIGH, CONVERSATION_LOW, DATE, MESSAGE_HIGH, MESSAGE_LOW};
use super::test_corpus::HEAP;
use super::{Order, SearchDoc, SearchIndex, SearchOptions};

/// Collects every match with its score.
struct EveryHit {
    scoring: bool,
}

struct SegmentHits(SegmentOrdinal, Vec<(SegmentOrdinal, DocId, Score)>);

impl Collector for EveryHit {
    type Fruit = Vec<(SegmentOrdinal, DocId, Score)>;
    type Child = SegmentHits;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        _: &SegmentReader,
    ) -> tantivy::Result<SegmentHits> {
        Ok(SegmentHits(segment, Vec::new()))
    }

    fn requires_scoring(&self) -> bool {
        self.scoring
    }

    fn merge_fruits(&self, fruits: Vec<Self::Fruit>) -> tantivy::Result<Self::Fruit> {
        Ok(fruits.into_iter().flatten().collect())
    }
}

impl SegmentCollector for SegmentHits {
    type Fruit = Vec<(SegmentOrdinal, DocId, Score)>;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.1.push((self.0, doc, score));
    }

    fn harvest(self) -> Self::Fruit {
        self.1
    }
}

/// One conversation of a page: id, newest, best score, matched, representative
/// (segment, doc, date, score), message ids newest first.
type Row = (u128, i64, Score, usize, (u32, DocId, i64, Score), Vec<Uuid>);

fn reference(index: &SearchIndex, query: &str, options: &SearchOptions) -> (usize, Vec<Row>) {
    let Some((query, _)) = index.compile_query(query, options).expect("query compiles") else {
        return (0, Vec::new());
    };
    let searcher = index.inner_searcher_for_tests();
    let mut hits = searcher
        .search(
            &*query,
            &EveryHit {
                scoring: options.order == Order::Relevance,
            },
        )
        .expect("search");
    hits.sort_by_key(|&(segment, doc, _)| (segment, doc));
    let mut groups: BTreeMap<u128, Row> = BTreeMap::new();
    let mut located: BTreeMap<u128, Vec<(i64, u32, DocId, Uuid)>> = BTreeMap::new();
    for (segment, doc, score) in hits {
        let fast_fields = searcher.segment_reader(segment).fast_fields();
        let read = |name: &str| {
            fast_fields
                .u64(name)
                .expect("column")
                .first(doc)
                .expect("value")
        };
        let conversation =
            (u128::from(read(CONVERSATION_HIGH)) << 64) | u128::from(read(CONVERSATION_LOW));
        let message = Uuid::from_u64_pair(read(MESSAGE_HIGH), read(MESSAGE_LOW));
        let date = fast_fields
            .i64(DATE)
            .expect("date")
            .first(doc)
            .expect("date value");
        located
            .entry(conversation)
            .or_default()
            .push((date, segment, doc, message));
        let row = groups.entry(conversation).or_insert_with(|| {
            (
                conversation,
                date,
                score,
                0,
                (segment, doc, date, score),
                Vec::new(),
            )
        });
        row.1 = row.1.max(date);
        row.2 = row.2.max(score);
        row.3 += 1;
        let (_, _, current_date, current_score) = row.4;
        let better = match options.order {
            Order::Newest => (date, score) > (current_date, current_score),
            Order::Relevance => {
                score > current_score || (score == current_score && date > current_date)
            }
        };
        if better {
            row.4 = (segment, doc, date, score);
        }
    }
    let mut rows: Vec<Row> = groups.into_values().collect();
    for row in &mut rows {
        let mut messages = located.remove(&row.0).expect("located");
        messages.sort_by_key(|&(date, segment, doc, _)| std::cmp::Reverse((date, segment, doc)));
        row.5 = messages.into_iter().map(|(.., id)| id).collect();
    }
    rows.sort_by(|left, right| {
        let by_date = right.1.cmp(&left.1).then(right.0.cmp(&left.0));
        match options.order {
            Order::Newest => by_date,
            Order::Relevance => right.2.total_cmp(&left.2).then(by_date),
        }
    });
    let total = rows.len();
    let page = rows
        .into_iter()
        .skip(options.offset)
        .take(options.limit)
        .collect();
    (total, page)
}

fn actual(index: &SearchIndex, query: &str, options: &SearchOptions) -> (usize, Vec<Row>) {
    let Some(found) = index.find(query, options).expect("search") else {
        return (0, Vec::new());
    };
    let rows = found
        .page
        .iter()
        .zip(found.message_ids)
        .map(|(group, ids)| {
            let hit = group.representative;
            (
                group.conversation,
                group.newest,
                group.best_score,
                group.matched,
                (hit.segment, hit.doc, hit.date, hit.score),
                ids,
            )
        })
        .collect();
    (found.total_conversations, rows)
}

/// xorshift64*, deterministic.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound
    }
}

const WORDS: &[&str] = &[
    "invoice", "refund", "parcel", "delivery", "late", "password", "reset", "broken", "order",
    "payment",
];

fn random_doc(random: &mut Random, number: u64) -> SearchDoc {
    let conversation = random.below(300);
    let mut body = String::new();
    for _ in 0..1 + random.below(12) {
        body.push_str(WORDS[random.below(WORDS.len() as u64) as usize]);
        body.push(' ');
    }
    SearchDoc {
        message_id: Uuid::from_u128(0x5000_0000 + u128::from(number)),
        // Large ids, so the high halves differ too.
        conversation_id: Uuid::from_u128((u128::from(conversation) << 70) | 0x77),
        mailbox: ["support", "billing"][random.below(2) as usize].to_string(),
        folder: None,
        subject: WORDS[random.below(WORDS.len() as u64) as usize].to_string(),
        body,
        from: vec![(None, Some(format!("c{conversation}@example.org")))],
        to: vec![(None, Some("support@acme.test".to_string()))],
        cc: Vec::new(),
        attachment_names: Vec::new(),
        attachment_text: String::new(),
        // Few distinct dates: many ties.
        date: super::test_corpus::at("2024-01-01T00:00:00Z")
            + chrono::Duration::hours(random.below(40) as i64),
        has_attachment: false,
        state: ["open", "closed"][random.below(2) as usize].to_string(),
        delivery_status: None,
    }
}

fn compare_all(index: &SearchIndex, label: &str) {
    let queries = [
        "invoice",
        "refund OR parcel",
        "\"late delivery\"",
        "invoice -refund",
        "-is:closed",
        "to:support@acme.test",
        "pay*",
        "nothingmatches",
    ];
    for query in queries {
        for order in [Order::Newest, Order::Relevance] {
            for (offset, limit) in [(0, 20), (0, 1000), (7, 5), (200, 20)] {
                for mailboxes in [None, Some(vec!["billing".to_string()])] {
                    let options = SearchOptions {
                        limit,
                        offset,
                        order,
                        mailboxes,
                    };
                    assert_eq!(
                        actual(index, query, &options),
                        reference(index, query, &options),
                        "{label}: {query:?} {options:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn grouping_matches_a_naive_reference() {
    let directory = RamDirectory::create();
    let index = SearchIndex::open_or_create(Box::new(directory.clone())).expect("index");
    let mut writer = index.writer(HEAP).expect("writer");
    let mut random = Random(0x1234_5678_9ABC_DEF1);
    let mut number = 0;
    for batch in 0..4 {
        for _ in 0..150 {
            writer
                .add(&random_doc(&mut random, number))
                .expect("document added");
            number += 1;
        }
        writer.commit().expect("commit");
        assert!(
            index.conversations_ready_for_tests(),
            "the commit numbered the new segment's conversations before any search"
        );
        if batch == 0 {
            compare_all(&index, "one segment");
        }
    }
    assert!(index.num_segments() > 1, "conversations span segments");
    compare_all(&index, "several segments");
    for deleted in (0..number).step_by(7) {
        writer
            .delete_message(Uuid::from_u128(0x5000_0000 + u128::from(deleted)))
            .expect("delete");
    }
    writer
        .delete_conversation(Uuid::from_u128((5u128 << 70) | 0x77))
        .expect("delete");
    writer.commit().expect("commit");
    compare_all(&index, "with deletions");
    let parallel =
        SearchIndex::open_or_create_with_threads(Box::new(directory), 3).expect("second handle");
    compare_all(&parallel, "segments searched on three threads");
}
