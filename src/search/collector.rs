//! Collects every matching message with its conversation and date (fast-field columns), then
//! groups them by conversation, orders the conversations and cuts the requested page.
//!
//! Collecting every match (not a top-k) gives an exact total of matching conversations and
//! lets one pass serve any page; it costs a few tens of bytes per matching message.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Cardinality, Column, ColumnValues};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

use super::Order;
use super::schema::{CONVERSATION_HIGH, CONVERSATION_LOW, DATE};

/// One matching message. 32 bytes: large result sets hold one per matching message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct MessageHit {
    /// Conversation id halves (`Uuid::as_u64_pair`).
    pub(super) conversation_high: u64,
    pub(super) conversation_low: u64,
    /// Unix seconds.
    pub(super) date: i64,
    /// BM25 score, or 0 when not scoring.
    pub(super) score: Score,
    pub(super) doc: DocId,
}

impl MessageHit {
    /// The conversation id as one number (`Uuid::as_u128`).
    pub(super) fn conversation(&self) -> u128 {
        (u128::from(self.conversation_high) << 64) | u128::from(self.conversation_low)
    }
}

/// The hits of one segment.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SegmentHits {
    pub(super) segment: SegmentOrdinal,
    pub(super) hits: Vec<MessageHit>,
}

/// A matching message located in the searcher.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct LocatedHit {
    pub(super) segment: SegmentOrdinal,
    pub(super) hit: MessageHit,
}

/// A conversation with matching messages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ConversationGroup {
    pub(super) conversation: u128,
    /// Date of the newest matching message.
    pub(super) newest: i64,
    /// Best score of the matching messages.
    pub(super) best_score: Score,
    /// Number of matching messages.
    pub(super) matched: usize,
    /// The message whose text makes the snippet: the newest match, or the best-scoring one
    /// when ordering by relevance.
    pub(super) representative: LocatedHit,
}

/// Hashes a `u128` id by folding its halves: ids are random UUIDs, so no further mixing is
/// needed, and SipHash would dominate the grouping time of large result sets.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = (value as u64) ^ ((value >> 64) as u64);
    }
}

/// A map keyed by a UUID as `u128`.
pub(super) type IdMap<V> = HashMap<u128, V, BuildHasherDefault<IdHasher>>;

/// Collects [`MessageHit`]s for every matching message.
pub(super) struct MessageHitCollector {
    /// Whether BM25 scores are computed (only for relevance order).
    pub(super) scoring: bool,
}

/// Per-segment part of [`MessageHitCollector`].
pub(super) struct MessageHitSegmentCollector {
    conversation_high: Arc<dyn ColumnValues<u64>>,
    conversation_low: Arc<dyn ColumnValues<u64>>,
    date: Arc<dyn ColumnValues<i64>>,
    hits: SegmentHits,
    /// Scratch buffers for block reads, reused across blocks.
    high_buffer: Vec<u64>,
    low_buffer: Vec<u64>,
    date_buffer: Vec<i64>,
}

/// Direct access to a column's values; every document has exactly one value, so the column
/// is "full" and row ids are doc ids (anything else falls back to first-or-default).
fn dense<T>(column: Column<T>) -> Arc<dyn ColumnValues<T>>
where
    T: PartialOrd + Copy + Debug + Send + Sync + Default + 'static,
{
    if column.get_cardinality() == Cardinality::Full {
        column.values
    } else {
        column.first_or_default_col(T::default())
    }
}

impl Collector for MessageHitCollector {
    type Fruit = Vec<SegmentHits>;
    type Child = MessageHitSegmentCollector;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<MessageHitSegmentCollector> {
        let fast_fields = reader.fast_fields();
        Ok(MessageHitSegmentCollector {
            conversation_high: dense(fast_fields.u64(CONVERSATION_HIGH)?),
            conversation_low: dense(fast_fields.u64(CONVERSATION_LOW)?),
            date: dense(fast_fields.i64(DATE)?),
            // Capacity for every document of the segment: untouched capacity costs no memory
            // (the pages are never faulted in), and growing by doubling copied megabytes.
            hits: SegmentHits {
                segment,
                hits: Vec::with_capacity(reader.max_doc() as usize),
            },
            high_buffer: Vec::new(),
            low_buffer: Vec::new(),
            date_buffer: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.scoring
    }

    fn merge_fruits(&self, fruits: Vec<SegmentHits>) -> tantivy::Result<Vec<SegmentHits>> {
        Ok(fruits)
    }
}

impl SegmentCollector for MessageHitSegmentCollector {
    type Fruit = SegmentHits;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.hits.hits.push(MessageHit {
            conversation_high: self.conversation_high.get_val(doc),
            conversation_low: self.conversation_low.get_val(doc),
            date: self.date.get_val(doc),
            score,
            doc,
        });
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        self.high_buffer.resize(docs.len(), 0);
        self.low_buffer.resize(docs.len(), 0);
        self.date_buffer.resize(docs.len(), 0);
        self.conversation_high.get_vals(docs, &mut self.high_buffer);
        self.conversation_low.get_vals(docs, &mut self.low_buffer);
        self.date.get_vals(docs, &mut self.date_buffer);
        let rows = docs
            .iter()
            .zip(&self.high_buffer)
            .zip(&self.low_buffer)
            .zip(&self.date_buffer);
        self.hits
            .hits
            .extend(rows.map(|(((&doc, &high), &low), &date)| MessageHit {
                conversation_high: high,
                conversation_low: low,
                date,
                score: 0.0,
                doc,
            }));
    }

    fn harvest(self) -> SegmentHits {
        self.hits
    }
}

/// True when `candidate` should replace `current` as a conversation's representative.
fn better_representative(candidate: &MessageHit, current: &MessageHit, order: Order) -> bool {
    match order {
        Order::Newest => (candidate.date, candidate.score) > (current.date, current.score),
        Order::Relevance => {
            candidate.score > current.score
                || (candidate.score == current.score && candidate.date > current.date)
        }
    }
}

/// Groups hits by conversation (unordered).
pub(super) fn group(segments: &[SegmentHits], order: Order) -> Vec<ConversationGroup> {
    let total_hits = segments.iter().map(|segment| segment.hits.len()).sum();
    let mut groups: IdMap<ConversationGroup> =
        IdMap::with_capacity_and_hasher(total_hits, Default::default());
    for segment_hits in segments {
        for hit in &segment_hits.hits {
            let located = LocatedHit {
                segment: segment_hits.segment,
                hit: *hit,
            };
            groups
                .entry(hit.conversation())
                .and_modify(|group| {
                    group.newest = group.newest.max(hit.date);
                    group.best_score = group.best_score.max(hit.score);
                    group.matched += 1;
                    if better_representative(hit, &group.representative.hit, order) {
                        group.representative = located;
                    }
                })
                .or_insert(ConversationGroup {
                    conversation: hit.conversation(),
                    newest: hit.date,
                    best_score: hit.score,
                    matched: 1,
                    representative: located,
                });
        }
    }
    groups.into_values().collect()
}

/// Result order of two conversations (`Less` comes first); total, so pages are stable.
fn compare(
    left: &ConversationGroup,
    right: &ConversationGroup,
    order: Order,
) -> std::cmp::Ordering {
    let by_date = right
        .newest
        .cmp(&left.newest)
        .then(right.conversation.cmp(&left.conversation));
    match order {
        Order::Newest => by_date,
        Order::Relevance => right.best_score.total_cmp(&left.best_score).then(by_date),
    }
}

/// The conversations of page `offset..offset + limit` in result order.
pub(super) fn page(
    mut groups: Vec<ConversationGroup>,
    order: Order,
    offset: usize,
    limit: usize,
) -> Vec<ConversationGroup> {
    let end = offset.saturating_add(limit).min(groups.len());
    if offset >= end {
        return Vec::new();
    }
    if end < groups.len() {
        groups.select_nth_unstable_by(end, |left, right| compare(left, right, order));
        groups.truncate(end);
    }
    groups.sort_unstable_by(|left, right| compare(left, right, order));
    groups.split_off(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(conversation: u64, date: i64, score: f32) -> MessageHit {
        MessageHit {
            conversation_high: 0,
            conversation_low: conversation,
            date,
            score,
            doc: date as u32,
        }
    }

    fn one_segment(hits: &[MessageHit]) -> Vec<SegmentHits> {
        vec![SegmentHits {
            segment: 0,
            hits: hits.to_vec(),
        }]
    }

    fn ids(groups: &[ConversationGroup]) -> Vec<u128> {
        groups.iter().map(|group| group.conversation).collect()
    }

    #[test]
    fn groups_count_messages_and_keep_newest() {
        let hits = [
            hit(1, 10, 0.5),
            hit(2, 30, 0.1),
            hit(1, 20, 0.2),
            hit(1, 5, 0.9),
        ];
        let mut groups = group(&one_segment(&hits), Order::Newest);
        groups.sort_by_key(|group| group.conversation);
        assert_eq!(groups.len(), 2);
        let first = groups.first().expect("conversation 1");
        assert_eq!((first.newest, first.matched), (20, 3));
        assert_eq!(first.best_score, 0.9);
        assert_eq!(first.representative.hit.date, 20);
        let by_relevance = group(&one_segment(&hits), Order::Relevance);
        let first = by_relevance
            .iter()
            .find(|group| group.conversation == 1)
            .expect("present");
        assert_eq!(first.representative.hit.date, 5);
    }

    #[test]
    fn pages_follow_the_order() {
        let hits: Vec<MessageHit> = (0..10).map(|n| hit(n, 100 - n as i64, n as f32)).collect();
        let groups = group(&one_segment(&hits), Order::Newest);
        assert_eq!(
            ids(&page(groups.clone(), Order::Newest, 0, 3)),
            vec![0, 1, 2]
        );
        assert_eq!(ids(&page(groups.clone(), Order::Newest, 8, 5)), vec![8, 9]);
        assert!(page(groups.clone(), Order::Newest, 10, 5).is_empty());
        assert!(page(groups.clone(), Order::Newest, 0, 0).is_empty());
        assert_eq!(ids(&page(groups, Order::Relevance, 1, 2)), vec![8, 7]);
    }

    #[test]
    fn equal_dates_are_ordered_by_conversation() {
        let hits = [hit(5, 10, 0.0), hit(9, 10, 0.0), hit(7, 10, 0.0)];
        let groups = group(&one_segment(&hits), Order::Newest);
        assert_eq!(ids(&page(groups, Order::Newest, 0, 10)), vec![9, 7, 5]);
    }

    #[test]
    fn id_hasher_folds_halves() {
        let mut hasher = IdHasher::default();
        hasher.write_u128((3u128 << 64) | 5);
        assert_eq!(hasher.finish(), 3 ^ 5);
    }
}
