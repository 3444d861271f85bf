//! Groups every matching message by conversation while collecting (fast-field columns give each
//! message's conversation and date), merges the groups of all segments, orders the conversations
//! and cuts the requested page.
//!
//! Grouping every match (not a top-k) gives an exact total of matching conversations and lets one
//! pass serve any page. Per matching message it keeps 8 bytes (its document and the index of its
//! conversation's group), so the message ids of the returned page need no second search.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Cardinality, Column, ColumnValues};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

use super::Order;
use super::schema::{CONVERSATION_HIGH, CONVERSATION_LOW, DATE};

/// A matching message located in the searcher, with what ordering needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct LocatedHit {
    pub(super) segment: SegmentOrdinal,
    pub(super) doc: DocId,
    /// Unix seconds.
    pub(super) date: i64,
    /// BM25 score, or 0 when not scoring.
    pub(super) score: Score,
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

impl ConversationGroup {
    fn new(conversation: u128, hit: LocatedHit) -> ConversationGroup {
        ConversationGroup {
            conversation,
            newest: hit.date,
            best_score: hit.score,
            matched: 1,
            representative: hit,
        }
    }

    /// Adds one more matching message.
    fn add(&mut self, hit: LocatedHit, order: Order) {
        self.newest = self.newest.max(hit.date);
        self.best_score = self.best_score.max(hit.score);
        self.matched += 1;
        if better_representative(&hit, &self.representative, order) {
            self.representative = hit;
        }
    }

    /// Adds the matches of the same conversation found in another segment.
    fn absorb(&mut self, other: &ConversationGroup, order: Order) {
        self.newest = self.newest.max(other.newest);
        self.best_score = self.best_score.max(other.best_score);
        self.matched += other.matched;
        if better_representative(&other.representative, &self.representative, order) {
            self.representative = other.representative;
        }
    }
}

/// The groups of one segment.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SegmentGroups {
    pub(super) segment: SegmentOrdinal,
    /// One group per conversation with matches in this segment.
    pub(super) groups: Vec<ConversationGroup>,
    /// Every matching document of the segment and the index of its group in `groups`.
    pub(super) hits: Vec<(DocId, u32)>,
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

/// Groups the matching messages of every segment by conversation.
pub(super) struct GroupingCollector {
    /// Whether BM25 scores are computed (only for relevance order).
    pub(super) order: Order,
}

/// Per-segment part of [`GroupingCollector`].
pub(super) struct GroupingSegmentCollector {
    conversation_high: Arc<dyn ColumnValues<u64>>,
    conversation_low: Arc<dyn ColumnValues<u64>>,
    date: Arc<dyn ColumnValues<i64>>,
    grouper: SegmentGrouper,
    /// Scratch buffers for block reads, reused across blocks.
    high_buffer: Vec<u64>,
    low_buffer: Vec<u64>,
    date_buffer: Vec<i64>,
}

/// Groups the hits of one segment as they arrive.
pub(super) struct SegmentGrouper {
    order: Order,
    /// Conversation → index in `result.groups`.
    index: IdMap<u32>,
    /// The conversation of the previous hit and its group: the messages of one conversation
    /// are often indexed together, and then consecutive hits skip the hash lookup.
    previous: Option<(u128, u32)>,
    result: SegmentGroups,
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

impl Collector for GroupingCollector {
    type Fruit = Vec<SegmentGroups>;
    type Child = GroupingSegmentCollector;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<GroupingSegmentCollector> {
        let fast_fields = reader.fast_fields();
        Ok(GroupingSegmentCollector {
            conversation_high: dense(fast_fields.u64(CONVERSATION_HIGH)?),
            conversation_low: dense(fast_fields.u64(CONVERSATION_LOW)?),
            date: dense(fast_fields.i64(DATE)?),
            grouper: SegmentGrouper::new(segment, self.order),
            high_buffer: Vec::new(),
            low_buffer: Vec::new(),
            date_buffer: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.order == Order::Relevance
    }

    fn merge_fruits(&self, fruits: Vec<SegmentGroups>) -> tantivy::Result<Vec<SegmentGroups>> {
        Ok(fruits)
    }
}

impl SegmentGrouper {
    pub(super) fn new(segment: SegmentOrdinal, order: Order) -> SegmentGrouper {
        SegmentGrouper {
            order,
            index: IdMap::default(),
            previous: None,
            result: SegmentGroups {
                segment,
                groups: Vec::new(),
                hits: Vec::new(),
            },
        }
    }

    /// Adds one matching message.
    pub(super) fn add(&mut self, doc: DocId, conversation: u128, date: i64, score: Score) {
        let hit = LocatedHit {
            segment: self.result.segment,
            doc,
            date,
            score,
        };
        let groups = &mut self.result.groups;
        let slot = match self.previous {
            Some((previous, slot)) if previous == conversation => slot,
            _ => {
                let next = groups.len() as u32;
                let slot = *self.index.entry(conversation).or_insert(next);
                self.previous = Some((conversation, slot));
                if slot == next {
                    groups.push(ConversationGroup::new(conversation, hit));
                    self.result.hits.push((doc, slot));
                    return;
                }
                slot
            }
        };
        if let Some(group) = groups.get_mut(slot as usize) {
            group.add(hit, self.order);
        }
        self.result.hits.push((doc, slot));
    }

    pub(super) fn finish(self) -> SegmentGroups {
        self.result
    }
}

impl SegmentCollector for GroupingSegmentCollector {
    type Fruit = SegmentGroups;

    fn collect(&mut self, doc: DocId, score: Score) {
        let conversation = (u128::from(self.conversation_high.get_val(doc)) << 64)
            | u128::from(self.conversation_low.get_val(doc));
        let date = self.date.get_val(doc);
        self.grouper.add(doc, conversation, date, score);
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
        for (((&doc, &high), &low), &date) in rows {
            let conversation = (u128::from(high) << 64) | u128::from(low);
            self.grouper.add(doc, conversation, date, 0.0);
        }
    }

    fn harvest(self) -> SegmentGroups {
        self.grouper.finish()
    }
}

/// True when `candidate` should replace `current` as a conversation's representative.
fn better_representative(candidate: &LocatedHit, current: &LocatedHit, order: Order) -> bool {
    match order {
        Order::Newest => (candidate.date, candidate.score) > (current.date, current.score),
        Order::Relevance => {
            candidate.score > current.score
                || (candidate.score == current.score && candidate.date > current.date)
        }
    }
}

/// Merges the groups of every segment into one group per conversation (unordered).
pub(super) fn merge(segments: &[SegmentGroups], order: Order) -> Vec<ConversationGroup> {
    let mut non_empty = segments.iter().filter(|segment| !segment.groups.is_empty());
    let (Some(first), None) = (non_empty.next(), non_empty.clone().next()) else {
        return merge_several(segments, order);
    };
    // One segment with matches: its groups are already one per conversation.
    first.groups.clone()
}

fn merge_several(segments: &[SegmentGroups], order: Order) -> Vec<ConversationGroup> {
    let total: usize = segments.iter().map(|segment| segment.groups.len()).sum();
    let mut index: IdMap<u32> = IdMap::with_capacity_and_hasher(total, Default::default());
    let mut merged: Vec<ConversationGroup> = Vec::with_capacity(total);
    for segment in segments {
        for group in &segment.groups {
            let next = merged.len() as u32;
            let slot = *index.entry(group.conversation).or_insert(next);
            match merged.get_mut(slot as usize) {
                Some(existing) => existing.absorb(group, order),
                None => merged.push(*group),
            }
        }
    }
    merged
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

    /// (conversation, date, score); the document id is the date.
    type Hit = (u128, i64, f32);

    fn segment(ordinal: SegmentOrdinal, hits: &[Hit], order: Order) -> SegmentGroups {
        let mut grouper = SegmentGrouper::new(ordinal, order);
        for &(conversation, date, score) in hits {
            grouper.add(date as DocId, conversation, date, score);
        }
        grouper.finish()
    }

    fn group(hits: &[Hit], order: Order) -> Vec<ConversationGroup> {
        merge(&[segment(0, hits, order)], order)
    }

    fn ids(groups: &[ConversationGroup]) -> Vec<u128> {
        groups.iter().map(|group| group.conversation).collect()
    }

    #[test]
    fn groups_count_messages_and_keep_newest() {
        let hits = [(1, 10, 0.5), (2, 30, 0.1), (1, 20, 0.2), (1, 5, 0.9)];
        let mut groups = group(&hits, Order::Newest);
        groups.sort_by_key(|group| group.conversation);
        assert_eq!(groups.len(), 2);
        let first = groups.first().expect("conversation 1");
        assert_eq!((first.newest, first.matched), (20, 3));
        assert_eq!(first.best_score, 0.9);
        assert_eq!(first.representative.date, 20);
        let by_relevance = group(&hits, Order::Relevance);
        let first = by_relevance
            .iter()
            .find(|group| group.conversation == 1)
            .expect("present");
        assert_eq!(first.representative.date, 5);
    }

    #[test]
    fn segment_hits_point_at_their_groups() {
        let groups = segment(
            3,
            &[(7, 1, 0.0), (7, 2, 0.0), (8, 3, 0.0), (7, 4, 0.0)],
            Order::Newest,
        );
        assert_eq!(ids(&groups.groups), vec![7, 8]);
        assert_eq!(groups.hits, vec![(1, 0), (2, 0), (3, 1), (4, 0)]);
        assert_eq!(groups.groups[0].representative.segment, 3);
    }

    #[test]
    fn segments_merge_by_conversation() {
        for order in [Order::Newest, Order::Relevance] {
            let segments = [
                segment(0, &[(1, 10, 0.5), (2, 30, 0.1)], order),
                segment(1, &[], order),
                segment(2, &[(1, 40, 0.2), (3, 5, 0.3), (1, 2, 0.9)], order),
            ];
            let mut groups = merge(&segments, order);
            groups.sort_by_key(|group| group.conversation);
            assert_eq!(ids(&groups), vec![1, 2, 3]);
            let first = groups.first().expect("conversation 1");
            assert_eq!(
                (first.newest, first.matched, first.best_score),
                (40, 3, 0.9)
            );
            let expected = match order {
                Order::Newest => (2, 40),
                Order::Relevance => (2, 2),
            };
            assert_eq!(
                (first.representative.segment, first.representative.date),
                expected
            );
        }
    }

    #[test]
    fn pages_follow_the_order() {
        let hits: Vec<Hit> = (0..10).map(|n| (n, 100 - n as i64, n as f32)).collect();
        let groups = group(&hits, Order::Newest);
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
        let groups = group(&[(5, 10, 0.0), (9, 10, 0.0), (7, 10, 0.0)], Order::Newest);
        assert_eq!(ids(&page(groups, Order::Newest, 0, 10)), vec![9, 7, 5]);
    }

    #[test]
    fn id_hasher_folds_halves() {
        let mut hasher = IdHasher::default();
        hasher.write_u128((3u128 << 64) | 5);
        assert_eq!(hasher.finish(), 3 ^ 5);
    }
}
