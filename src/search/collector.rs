//! Groups every matching message by conversation while collecting, merges the groups of all
//! segments, orders the conversations and cuts the requested page.
//!
//! Grouping every match (not a top-k) gives an exact total of matching conversations and lets one
//! pass serve any page. Conversations are numbered densely (see [`super::conversations`]), so a
//! match costs an array lookup of its conversation's number, an update of that conversation's
//! tally, and one bit in the segment's set of matching documents (from which the message ids of
//! the returned page are read, with no second search).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Debug;
use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Cardinality, Column, ColumnValues};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader, TantivyError};

use super::Order;
use super::conversations::{Conversations, SHARED, SegmentConversations};

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

/// A conversation with matching messages, as returned on a page.
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
    /// when ordering by relevance (ties: the first in segment and document order).
    pub(super) representative: LocatedHit,
}

/// What the matches of one conversation add up to.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tally {
    /// Date of the newest match.
    newest: i64,
    /// Best score of the matches.
    best_score: Score,
    /// Number of matches.
    matched: u32,
    /// The representative match (see [`ConversationGroup::representative`]); its segment is
    /// kept next to the tally.
    representative_doc: DocId,
    representative_date: i64,
    representative_score: Score,
}

/// True when a match of (date, score) `candidate` should replace the representative `current`.
fn better_representative(candidate: (i64, Score), current: (i64, Score), order: Order) -> bool {
    let ((candidate_date, candidate_score), (current_date, current_score)) = (candidate, current);
    match order {
        Order::Newest => (candidate_date, candidate_score) > (current_date, current_score),
        Order::Relevance => {
            candidate_score > current_score
                || (candidate_score == current_score && candidate_date > current_date)
        }
    }
}

/// The matches of one segment, tallied per conversation in slots indexed by local
/// conversation number.
///
/// By date, no scores are computed (every score is 0), so the representative is the first
/// match with the newest date: its date is the newest. By relevance the representative is the
/// first best-scoring match (ties: newer), so its score is the best score and only its date
/// needs a slot of its own.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SegmentMatches {
    pub(super) segment: SegmentOrdinal,
    order: Order,
    /// By local conversation number.
    slots: Vec<Slot>,
    /// By local conversation number, by relevance only (empty otherwise).
    relevance: Vec<RelevanceSlot>,
    /// Local numbers of the conversations with matches, in the order of their first match.
    touched: Vec<u32>,
    /// Bit set of the matching documents.
    hits: Vec<u64>,
}

/// The tally of one conversation in one segment (one cache line holds four).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Slot {
    newest: i64,
    /// Number of matches (0: none).
    matched: u32,
    representative: DocId,
}

/// What ordering by relevance adds to a [`Slot`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct RelevanceSlot {
    best_score: Score,
    representative_date: i64,
}

impl SegmentMatches {
    fn new(
        segment: SegmentOrdinal,
        order: Order,
        conversations: usize,
        max_doc: DocId,
    ) -> SegmentMatches {
        let relevance = if order == Order::Relevance {
            conversations
        } else {
            0
        };
        SegmentMatches {
            segment,
            order,
            slots: vec![Slot::default(); conversations],
            relevance: vec![RelevanceSlot::default(); relevance],
            touched: Vec::new(),
            hits: vec![0; (max_doc as usize).div_ceil(64)],
        }
    }

    /// Adds one matching message of local conversation `local`.
    #[inline(always)]
    fn add(&mut self, local: u32, doc: DocId, date: i64, score: Score) {
        let index = local as usize;
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let first = slot.matched == 0;
        slot.matched += 1;
        if first {
            self.touched.push(local);
            slot.newest = date;
            slot.representative = doc;
        }
        match self.order {
            Order::Newest => {
                if date > slot.newest {
                    slot.newest = date;
                    slot.representative = doc;
                }
            }
            Order::Relevance => {
                let Some(relevance) = self.relevance.get_mut(index) else {
                    return;
                };
                if first {
                    *relevance = RelevanceSlot {
                        best_score: score,
                        representative_date: date,
                    };
                } else {
                    slot.newest = slot.newest.max(date);
                    if better_representative(
                        (date, score),
                        (relevance.representative_date, relevance.best_score),
                        Order::Relevance,
                    ) {
                        slot.representative = doc;
                        relevance.representative_date = date;
                    }
                    relevance.best_score = relevance.best_score.max(score);
                }
            }
        }
        if let Some(word) = self.hits.get_mut((doc / 64) as usize) {
            *word |= 1 << (doc % 64);
        }
    }

    /// The tally of local conversation `local`.
    fn tally(&self, local: u32) -> Option<Tally> {
        let slot = self.slots.get(local as usize)?;
        let (best_score, representative_date) = match self.order {
            Order::Newest => (0.0, slot.newest),
            Order::Relevance => {
                let relevance = self.relevance.get(local as usize)?;
                (relevance.best_score, relevance.representative_date)
            }
        };
        Some(Tally {
            newest: slot.newest,
            best_score,
            matched: slot.matched,
            representative_doc: slot.representative,
            representative_date,
            representative_score: best_score,
        })
    }

    /// Whether `doc` matched.
    pub(super) fn contains(&self, doc: DocId) -> bool {
        self.hits
            .get((doc / 64) as usize)
            .is_some_and(|word| word & (1 << (doc % 64)) != 0)
    }

    /// Whether any document of the segment matched.
    pub(super) fn is_empty(&self) -> bool {
        self.touched.is_empty()
    }
}

/// Groups the matching messages of every segment by conversation.
pub(super) struct GroupingCollector {
    /// Whether BM25 scores are computed (only for relevance order).
    pub(super) order: Order,
    /// The conversation numbers of the searcher's segments.
    pub(super) conversations: Arc<Conversations>,
}

/// Per-segment part of [`GroupingCollector`].
pub(super) struct GroupingSegmentCollector {
    conversations: Arc<SegmentConversations>,
    date: Arc<dyn ColumnValues<i64>>,
    matches: SegmentMatches,
    /// Scratch buffer for block reads of dates.
    date_buffer: Vec<i64>,
}

/// Direct access to a column's values; every document has exactly one value, so the column
/// is "full" and row ids are doc ids (anything else falls back to first-or-default).
pub(super) fn dense<T>(column: Column<T>) -> Arc<dyn ColumnValues<T>>
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
    type Fruit = Vec<SegmentMatches>;
    type Child = GroupingSegmentCollector;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<GroupingSegmentCollector> {
        let conversations = match self.conversations.segments().get(segment as usize) {
            Some(conversations) if conversations.segment_id() == reader.segment_id() => {
                conversations.clone()
            }
            _ => {
                return Err(TantivyError::InternalError(format!(
                    "conversation numbers were built for other segments than segment {segment}"
                )));
            }
        };
        Ok(GroupingSegmentCollector {
            matches: SegmentMatches::new(
                segment,
                self.order,
                conversations.len(),
                reader.max_doc(),
            ),
            date: conversations.date.clone(),
            conversations,
            date_buffer: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.order == Order::Relevance
    }

    fn merge_fruits(&self, fruits: Vec<SegmentMatches>) -> tantivy::Result<Vec<SegmentMatches>> {
        Ok(fruits)
    }
}

impl SegmentCollector for GroupingSegmentCollector {
    type Fruit = SegmentMatches;

    fn collect(&mut self, doc: DocId, score: Score) {
        let Some(&local) = self.conversations.ordinals().get(doc as usize) else {
            return;
        };
        let date = self.date.get_val(doc);
        self.matches.add(local, doc, date, score);
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        self.date_buffer.resize(docs.len(), 0);
        self.date.get_vals(docs, &mut self.date_buffer);
        let ordinals = self.conversations.ordinals();
        for (&doc, &date) in docs.iter().zip(&self.date_buffer) {
            if let Some(&local) = ordinals.get(doc as usize) {
                self.matches.add(local, doc, date, 0.0);
            }
        }
    }

    fn harvest(self) -> SegmentMatches {
        self.matches
    }
}

/// The matches of one conversation over all segments.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Merged {
    /// Global conversation number (ascending numbers are ascending conversation ids).
    global: u32,
    /// Segment of the representative.
    segment: SegmentOrdinal,
    tally: Tally,
}

impl Merged {
    /// Adds the matches of the same conversation found in a later segment.
    fn absorb(&mut self, segment: SegmentOrdinal, other: &Tally, order: Order) {
        let tally = &mut self.tally;
        tally.newest = tally.newest.max(other.newest);
        tally.best_score = tally.best_score.max(other.best_score);
        tally.matched += other.matched;
        if better_representative(
            (other.representative_date, other.representative_score),
            (tally.representative_date, tally.representative_score),
            order,
        ) {
            tally.representative_doc = other.representative_doc;
            tally.representative_date = other.representative_date;
            tally.representative_score = other.representative_score;
            self.segment = segment;
        }
    }

    /// Sort key: result order is descending key order (newest match, then conversation id; by
    /// relevance the best score first).
    fn key(&self, order: Order) -> u128 {
        let newest = u128::from(self.tally.newest as u64 ^ (1 << 63));
        let global = u128::from(self.global);
        match order {
            Order::Newest => (newest << 32) | global,
            Order::Relevance => {
                // `f32::total_cmp` order as an unsigned integer.
                let bits = self.tally.best_score.to_bits() as i32;
                let ordered = (bits ^ ((((bits >> 31) as u32) >> 1) as i32)) as u32 ^ (1 << 31);
                (u128::from(ordered) << 96) | (newest << 32) | global
            }
        }
    }
}

/// The requested page of conversations in result order, and the number of matching
/// conversations (all pages).
///
/// Each matching conversation is considered once: its tally goes straight to a bounded heap of
/// the best `offset + limit` keys, except for conversations with documents in several segments,
/// whose tallies are first merged (in segment order, so ties keep the earlier segment's
/// representative).
pub(super) fn select(
    segments: &[SegmentMatches],
    conversations: &Conversations,
    order: Order,
    offset: usize,
    limit: usize,
) -> (usize, Vec<ConversationGroup>) {
    let mut top = Top::new(offset.saturating_add(limit), order);
    let mut total = 0usize;
    // Conversations found in several segments, and the position + 1 of each global number in
    // `shared` (0: not yet seen); allocated when first needed.
    let mut shared: Vec<Merged> = Vec::new();
    let mut position: Vec<u32> = Vec::new();
    for segment in segments {
        let Some((_, global_of_local)) = conversations.segment(segment.segment as usize) else {
            continue;
        };
        for &local in &segment.touched {
            let (Some(&global), Some(tally)) =
                (global_of_local.get(local as usize), segment.tally(local))
            else {
                continue;
            };
            let entry = Merged {
                global: global & !SHARED,
                segment: segment.segment,
                tally,
            };
            if global & SHARED == 0 {
                total += 1;
                top.offer(entry);
                continue;
            }
            if position.is_empty() {
                position = vec![0; conversations.len()];
            }
            let Some(slot) = position.get_mut(entry.global as usize) else {
                continue;
            };
            match shared.get_mut((*slot as usize).wrapping_sub(1)) {
                Some(existing) if *slot != 0 => existing.absorb(entry.segment, &tally, order),
                _ => {
                    shared.push(entry);
                    *slot = shared.len() as u32;
                }
            }
        }
    }
    total += shared.len();
    for entry in shared {
        top.offer(entry);
    }
    let page = top
        .into_sorted()
        .into_iter()
        .skip(offset)
        .map(|entry| ConversationGroup {
            conversation: conversations.id(entry.global),
            newest: entry.tally.newest,
            best_score: entry.tally.best_score,
            matched: entry.tally.matched as usize,
            representative: LocatedHit {
                segment: entry.segment,
                doc: entry.tally.representative_doc,
                date: entry.tally.representative_date,
                score: entry.tally.representative_score,
            },
        })
        .collect();
    (total, page)
}

/// The `wanted` entries of highest key seen so far.
struct Top {
    wanted: usize,
    order: Order,
    /// Min-heap of (key, index in `kept`).
    heap: BinaryHeap<Reverse<(u128, usize)>>,
    kept: Vec<Merged>,
}

impl Top {
    fn new(wanted: usize, order: Order) -> Top {
        Top {
            wanted,
            order,
            heap: BinaryHeap::new(),
            kept: Vec::new(),
        }
    }

    #[inline]
    fn offer(&mut self, entry: Merged) {
        if self.wanted == 0 {
            return;
        }
        let key = entry.key(self.order);
        if self.heap.len() < self.wanted {
            self.heap.push(Reverse((key, self.kept.len())));
            self.kept.push(entry);
            return;
        }
        if let Some(mut lowest) = self.heap.peek_mut()
            && key > lowest.0.0
        {
            let index = lowest.0.1;
            if let Some(slot) = self.kept.get_mut(index) {
                *slot = entry;
            }
            *lowest = Reverse((key, index));
        }
    }

    /// The kept entries, highest key first.
    fn into_sorted(self) -> Vec<Merged> {
        let Top { heap, mut kept, .. } = self;
        // Ascending `Reverse` order is descending key order.
        let order: Vec<usize> = heap
            .into_sorted_vec()
            .into_iter()
            .map(|Reverse((_, index))| index)
            .collect();
        let mut sorted = Vec::with_capacity(order.len());
        for index in order {
            if let Some(entry) = kept.get_mut(index) {
                sorted.push(*entry);
            }
        }
        kept.clear();
        sorted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(global: u32, newest: i64, best_score: f32) -> Merged {
        Merged {
            global,
            segment: 0,
            tally: Tally {
                newest,
                best_score,
                matched: 1,
                representative_doc: 0,
                representative_date: newest,
                representative_score: best_score,
            },
        }
    }

    #[test]
    fn keys_order_by_date_then_conversation() {
        let order = Order::Newest;
        assert!(merged(0, 10, 0.0).key(order) > merged(5, 9, 0.0).key(order));
        assert!(merged(6, 10, 0.0).key(order) > merged(5, 10, 0.0).key(order));
        assert!(merged(0, -5, 0.0).key(order) < merged(0, 3, 0.0).key(order));
        assert!(merged(0, i64::MIN, 0.0).key(order) < merged(0, i64::MAX, 0.0).key(order));
    }

    #[test]
    fn relevance_keys_order_by_score_then_date() {
        let order = Order::Relevance;
        assert!(merged(0, 1, 2.5).key(order) > merged(9, 100, 2.0).key(order));
        assert!(merged(0, 100, 2.0).key(order) > merged(9, 1, 2.0).key(order));
        assert!(merged(0, 1, 0.0).key(order) > merged(9, 1, -1.0).key(order));
        assert!(merged(3, 1, 1.0).key(order) > merged(2, 1, 1.0).key(order));
    }

    #[test]
    fn segment_tallies_count_and_keep_the_representative() {
        let mut matches = SegmentMatches::new(0, Order::Newest, 2, 10);
        for (doc, date) in [(1, 10), (2, 20), (3, 20), (4, 5)] {
            matches.add(1, doc, date, 0.0);
        }
        assert_eq!(matches.touched, vec![1]);
        assert_eq!(matches.slots[0], Slot::default());
        let tally = matches.tally(1).expect("tallied");
        assert_eq!(
            (tally.newest, tally.matched, tally.representative_doc),
            (20, 4, 2)
        );
        assert!(matches.contains(3) && !matches.contains(5));
        let mut matches = SegmentMatches::new(0, Order::Relevance, 1, 10);
        for (doc, date, score) in [(1, 10, 0.5), (2, 20, 0.9), (3, 30, 0.9), (4, 5, 0.9)] {
            matches.add(0, doc, date, score);
        }
        let tally = matches.tally(0).expect("tallied");
        assert_eq!((tally.representative_doc, tally.best_score), (3, 0.9));
    }

    #[test]
    fn top_keeps_the_highest_keys_in_order() {
        let mut top = Top::new(3, Order::Newest);
        for (global, newest) in [(1, 5), (2, 9), (3, 1), (4, 7), (5, 9), (6, 2)] {
            top.offer(merged(global, newest, 0.0));
        }
        let globals: Vec<u32> = top.into_sorted().iter().map(|entry| entry.global).collect();
        assert_eq!(globals, vec![5, 2, 4]);
    }
}
