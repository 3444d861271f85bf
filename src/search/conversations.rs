//! Dense conversation numbers, so that grouping matches by conversation is array indexing
//! rather than hashing 128-bit ids.
//!
//! Per segment (built once from the conversation id columns, cached by segment id: segments are
//! immutable, and deletions do not change which conversation a document belongs to):
//! [`SegmentConversations`] numbers the segment's distinct conversations `0..n` in the order of
//! their first document, gives each document its conversation's number, and lists each
//! conversation's documents. It costs 8 bytes per document and 36 per conversation (about 17 MB
//! for 1,000,000 messages in 250,000 conversations), plus the date and message id columns it
//! keeps open. A search adds 16 bytes per conversation and one bit per document of each segment.
//!
//! Per searcher (built when the set of segments changes): [`Conversations`] numbers the
//! conversations of all segments in ascending id order and maps every segment's numbers to these
//! global ones, flagging conversations found in several segments (only those need merging).
//! Ascending id order means that comparing global numbers compares conversation ids, which
//! breaks ties in the result order. From scratch this is a k-way merge of the segments' sorted
//! ids; when segments were only added (a commit), the previous numbering is extended instead.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use tantivy::columnar::ColumnValues;
use tantivy::index::SegmentId;
use tantivy::{DocId, Searcher, SearcherGeneration, SegmentReader, Warmer};
use tracing::{debug, warn};

use super::collector::dense;
use super::schema::{CONVERSATION_HIGH, CONVERSATION_LOW, DATE, MESSAGE_HIGH, MESSAGE_LOW};

/// The conversations of one segment, and the columns every search reads from it.
pub(super) struct SegmentConversations {
    segment: SegmentId,
    /// The segment's date and message id columns, opened once: opening a column reads it from
    /// the directory, which for the encrypted directory may mean copying it out of the cache.
    pub(super) date: Arc<dyn ColumnValues<i64>>,
    pub(super) message_high: Arc<dyn ColumnValues<u64>>,
    pub(super) message_low: Arc<dyn ColumnValues<u64>>,
    /// Local number of each document's conversation, indexed by document id. Local numbers
    /// follow the order of each conversation's first document, so documents close together
    /// use tallies close together while collecting.
    ordinal_of_doc: Vec<u32>,
    /// (conversation id, local number) of every conversation, ascending.
    sorted: Vec<(u128, u32)>,
    /// The documents of local number `n` are `docs[starts[n]..starts[n + 1]]`, ascending.
    starts: Vec<u32>,
    docs: Vec<DocId>,
}

impl SegmentConversations {
    /// Reads the conversation id of every document of `reader` (deleted ones included).
    pub(super) fn build(reader: &SegmentReader) -> tantivy::Result<SegmentConversations> {
        let fast_fields = reader.fast_fields();
        let high = dense(fast_fields.u64(CONVERSATION_HIGH)?);
        let low = dense(fast_fields.u64(CONVERSATION_LOW)?);
        let count = reader.max_doc() as usize;
        let mut ordinal_of_doc: Vec<u32> = Vec::with_capacity(count);
        let mut ids: Vec<u128> = Vec::new();
        let mut local_of_id: IdMap<u32> = IdMap::default();
        // The messages of a conversation are often indexed together: consecutive documents of
        // the same conversation skip the hash lookup.
        let mut previous: Option<(u128, u32)> = None;
        let mut highs = vec![0u64; count.min(4096)];
        let mut lows = vec![0u64; count.min(4096)];
        let mut start = 0usize;
        while start < count {
            let length = (count - start).min(highs.len());
            let (highs, lows) = (&mut highs[..length], &mut lows[..length]);
            high.get_range(start as u64, highs);
            low.get_range(start as u64, lows);
            for (&high, &low) in highs.iter().zip(lows.iter()) {
                let id = (u128::from(high) << 64) | u128::from(low);
                let local = match previous {
                    Some((previous_id, local)) if previous_id == id => local,
                    _ => {
                        let next = ids.len() as u32;
                        let local = *local_of_id.entry(id).or_insert(next);
                        if local == next {
                            ids.push(id);
                        }
                        previous = Some((id, local));
                        local
                    }
                };
                ordinal_of_doc.push(local);
            }
            start += length;
        }
        drop(local_of_id);
        // Documents by conversation (a counting sort: documents stay ascending).
        let mut starts = vec![0u32; ids.len() + 1];
        for &local in &ordinal_of_doc {
            if let Some(slot) = starts.get_mut(local as usize + 1) {
                *slot += 1;
            }
        }
        for index in 1..starts.len() {
            starts[index] += starts[index - 1];
        }
        let mut next = starts.clone();
        let mut docs: Vec<DocId> = vec![0; count];
        for (doc, &local) in ordinal_of_doc.iter().enumerate() {
            if let Some(position) = next.get_mut(local as usize)
                && let Some(slot) = docs.get_mut(*position as usize)
            {
                *slot = doc as DocId;
                *position += 1;
            }
        }
        let mut sorted: Vec<(u128, u32)> = ids
            .into_iter()
            .enumerate()
            .map(|(local, id)| (id, local as u32))
            .collect();
        sorted.sort_unstable();
        Ok(SegmentConversations {
            segment: reader.segment_id(),
            date: dense(fast_fields.i64(DATE)?),
            message_high: dense(fast_fields.u64(MESSAGE_HIGH)?),
            message_low: dense(fast_fields.u64(MESSAGE_LOW)?),
            ordinal_of_doc,
            sorted,
            starts,
            docs,
        })
    }

    /// The segment these numbers belong to.
    pub(super) fn segment_id(&self) -> SegmentId {
        self.segment
    }

    /// Local conversation number of each document, indexed by document id.
    pub(super) fn ordinals(&self) -> &[u32] {
        &self.ordinal_of_doc
    }

    /// Number of distinct conversations in the segment.
    pub(super) fn len(&self) -> usize {
        self.sorted.len()
    }

    /// The local number of conversation `id`, if the segment holds any of its documents.
    pub(super) fn find(&self, id: u128) -> Option<u32> {
        let index = self.sorted.binary_search_by_key(&id, |&(id, _)| id).ok()?;
        self.sorted.get(index).map(|&(_, local)| local)
    }

    /// The documents of local conversation number `ordinal`, ascending.
    pub(super) fn docs(&self, ordinal: u32) -> &[DocId] {
        let index = ordinal as usize;
        match (self.starts.get(index), self.starts.get(index + 1)) {
            (Some(&start), Some(&end)) => self.docs.get(start as usize..end as usize),
            _ => None,
        }
        .unwrap_or_default()
    }

    /// The message id of `doc`.
    pub(super) fn message_id(&self, doc: DocId) -> uuid::Uuid {
        uuid::Uuid::from_u64_pair(
            self.message_high.get_val(doc),
            self.message_low.get_val(doc),
        )
    }

    /// Approximate heap size, for the debug log.
    fn bytes(&self) -> usize {
        self.ordinal_of_doc.len() * 4
            + self.sorted.len() * 32
            + self.starts.len() * 4
            + self.docs.len() * 4
    }
}

impl std::fmt::Debug for SegmentConversations {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SegmentConversations")
            .field("segment", &self.segment)
            .field("docs", &self.ordinal_of_doc.len())
            .field("conversations", &self.sorted.len())
            .finish_non_exhaustive()
    }
}

/// Hashes a `u128` id by folding its halves: ids are UUIDs (random or time-ordered with a
/// random half), so no further mixing is needed, and SipHash would dominate the build time.
#[derive(Default)]
struct IdHasher(u64);

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
type IdMap<V> = HashMap<u128, V, BuildHasherDefault<IdHasher>>;

/// The conversations of every segment of one searcher, numbered globally.
#[derive(Debug)]
pub(super) struct Conversations {
    /// By segment ordinal.
    segments: Vec<Arc<SegmentConversations>>,
    /// Per segment ordinal: the global number of each local number, with [`SHARED`] set when
    /// other segments hold documents of the same conversation.
    global_of_local: Vec<Vec<u32>>,
    /// Conversation id of each global number, ascending.
    ids: Vec<u128>,
}

/// Flag of a global number in [`Conversations::segment`]: the conversation has documents in
/// several segments. Global numbers themselves stay below it (fewer than 2^31 conversations).
pub(super) const SHARED: u32 = 1 << 31;

impl Conversations {
    fn merge(segments: Vec<Arc<SegmentConversations>>) -> Conversations {
        let mut global_of_local: Vec<Vec<u32>> = segments
            .iter()
            .map(|segment| vec![0; segment.len()])
            .collect();
        let mut ids: Vec<u128> = Vec::new();
        // (next id, segment ordinal, position in that segment's sorted ids)
        let mut heap: BinaryHeap<Reverse<(u128, usize, usize)>> = segments
            .iter()
            .enumerate()
            .filter_map(|(segment, conversations)| {
                Some(Reverse((conversations.sorted.first()?.0, segment, 0)))
            })
            .collect();
        // The (segment, local number) pairs of the current id.
        let mut run: Vec<(usize, u32)> = Vec::new();
        let mut flush = |run: &mut Vec<(usize, u32)>, global: usize| {
            let shared = if run.len() > 1 { SHARED } else { 0 };
            for (segment, local) in run.drain(..) {
                if let Some(slot) = global_of_local
                    .get_mut(segment)
                    .and_then(|map| map.get_mut(local as usize))
                {
                    *slot = global as u32 | shared;
                }
            }
        };
        while let Some(Reverse((id, segment, position))) = heap.pop() {
            if ids.last() != Some(&id) {
                if !ids.is_empty() {
                    flush(&mut run, ids.len() - 1);
                }
                ids.push(id);
            }
            let sorted = segments
                .get(segment)
                .map(|conversations| conversations.sorted.as_slice())
                .unwrap_or_default();
            if let Some(&(_, local)) = sorted.get(position) {
                run.push((segment, local));
            }
            if let Some(&(next, _)) = sorted.get(position + 1) {
                heap.push(Reverse((next, segment, position + 1)));
            }
        }
        if !ids.is_empty() {
            flush(&mut run, ids.len() - 1);
        }
        Conversations {
            segments,
            global_of_local,
            ids,
        }
    }

    /// The numbering of `segments`, which are `previous`'s segments (in any order) plus some
    /// added ones: linear passes over the previous numbering instead of a k-way merge of every
    /// segment. After a commit only the new segment is added, so this is the common case.
    fn extend(previous: &Conversations, segments: Vec<Arc<SegmentConversations>>) -> Conversations {
        let position_before: HashMap<SegmentId, usize> = previous
            .segments
            .iter()
            .enumerate()
            .map(|(position, segment)| (segment.segment, position))
            .collect();
        let added: Vec<Arc<SegmentConversations>> = segments
            .iter()
            .filter(|segment| !position_before.contains_key(&segment.segment))
            .cloned()
            .collect();
        let added = Conversations::merge(added);
        // Two-way merge of the sorted ids; where each old and each added number goes, and
        // which new numbers both sides hold.
        let (old_ids, added_ids) = (&previous.ids, &added.ids);
        let mut ids: Vec<u128> = Vec::with_capacity(old_ids.len() + added_ids.len());
        let mut old_to_new: Vec<u32> = Vec::with_capacity(old_ids.len());
        let mut added_to_new: Vec<u32> = Vec::with_capacity(added_ids.len());
        let mut on_both_sides: Vec<bool> = Vec::with_capacity(old_ids.len() + added_ids.len());
        let (mut old, mut new) = (old_ids.iter().peekable(), added_ids.iter().peekable());
        loop {
            let next = match (old.peek(), new.peek()) {
                (Some(&&left), Some(&&right)) => left.min(right),
                (Some(&&left), None) => left,
                (None, Some(&&right)) => right,
                (None, None) => break,
            };
            let number = ids.len() as u32;
            let from_old = old.next_if(|&&id| id == next).is_some();
            let from_added = new.next_if(|&&id| id == next).is_some();
            if from_old {
                old_to_new.push(number);
            }
            if from_added {
                added_to_new.push(number);
            }
            ids.push(next);
            on_both_sides.push(from_old && from_added);
        }
        let renumber = |numbers: &[u32], to_new: &[u32]| -> Vec<u32> {
            numbers
                .iter()
                .map(|&number| {
                    let global = to_new
                        .get((number & !SHARED) as usize)
                        .copied()
                        .unwrap_or_default();
                    let both = on_both_sides.get(global as usize).copied().unwrap_or(false);
                    global | (number & SHARED) | if both { SHARED } else { 0 }
                })
                .collect()
        };
        let mut added_position = 0;
        let global_of_local = segments
            .iter()
            .map(|segment| match position_before.get(&segment.segment) {
                Some(&position) => renumber(
                    previous
                        .global_of_local
                        .get(position)
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                    &old_to_new,
                ),
                None => {
                    let numbers = added
                        .global_of_local
                        .get(added_position)
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    added_position += 1;
                    renumber(numbers, &added_to_new)
                }
            })
            .collect();
        Conversations {
            segments,
            global_of_local,
            ids,
        }
    }

    /// The conversations of segment `ordinal`, and the global number of each local number
    /// (with the [`SHARED`] flag).
    pub(super) fn segment(&self, ordinal: usize) -> Option<(&Arc<SegmentConversations>, &[u32])> {
        Some((
            self.segments.get(ordinal)?,
            self.global_of_local.get(ordinal)?.as_slice(),
        ))
    }

    /// Number of distinct conversations in the searcher's segments.
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Conversation id of global number `ordinal` (the [`SHARED`] flag ignored).
    pub(super) fn id(&self, ordinal: u32) -> u128 {
        self.ids
            .get((ordinal & !SHARED) as usize)
            .copied()
            .unwrap_or_default()
    }

    /// The per-segment conversations, by segment ordinal.
    pub(super) fn segments(&self) -> &[Arc<SegmentConversations>] {
        &self.segments
    }
}

/// Keeps the per-segment conversations of the current segments and the global numbering of the
/// latest searcher.
#[derive(Default)]
pub(super) struct ConversationCache {
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    segments: HashMap<SegmentId, Arc<SegmentConversations>>,
    latest: Option<(Vec<SegmentId>, Arc<Conversations>)>,
}

impl ConversationCache {
    /// The conversations of `searcher`'s segments, built for the segments not seen before.
    /// Segments no longer in the searcher are forgotten (a search still running on an older
    /// searcher keeps what it uses alive).
    pub(super) fn for_searcher(&self, searcher: &Searcher) -> tantivy::Result<Arc<Conversations>> {
        let readers = searcher.segment_readers();
        let segment_ids: Vec<SegmentId> = readers.iter().map(SegmentReader::segment_id).collect();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((ids, conversations)) = &state.latest
            && *ids == segment_ids
        {
            return Ok(conversations.clone());
        }
        // New segments are read on the search threads.
        let known = &state.segments;
        let segments = searcher.index().search_executor().map(
            |reader: &SegmentReader| match known.get(&reader.segment_id()) {
                Some(conversations) => Ok(conversations.clone()),
                None => {
                    let built = Arc::new(SegmentConversations::build(reader)?);
                    debug!(
                        docs = reader.max_doc(),
                        conversations = built.len(),
                        bytes = built.bytes(),
                        "conversation numbers of a new index segment"
                    );
                    Ok(built)
                }
            },
            readers.iter(),
        )?;
        state.segments = segments
            .iter()
            .map(|conversations| (conversations.segment, conversations.clone()))
            .collect();
        let conversations = Arc::new(match &state.latest {
            Some((previous_ids, previous))
                if previous_ids.iter().all(|id| segment_ids.contains(id)) =>
            {
                Conversations::extend(previous, segments)
            }
            _ => Conversations::merge(segments),
        });
        state.latest = Some((segment_ids, conversations.clone()));
        Ok(conversations)
    }
}

impl ConversationCache {
    /// Whether the numbering of `searcher`'s segments is already built.
    #[cfg(test)]
    pub(super) fn is_built_for(&self, searcher: &Searcher) -> bool {
        let segment_ids: Vec<SegmentId> = searcher
            .segment_readers()
            .iter()
            .map(SegmentReader::segment_id)
            .collect();
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .latest
            .as_ref()
            .is_some_and(|(ids, _)| *ids == segment_ids)
    }
}

/// Numbers the conversations of new segments when the index reader loads them (after a commit,
/// on the committing thread), rather than in the first search that uses them.
impl Warmer for ConversationCache {
    fn warm(&self, searcher: &Searcher) -> tantivy::Result<()> {
        // A failure here must not fail the commit: the next search tries again and reports it.
        if let Err(error) = self.for_searcher(searcher) {
            warn!(%error, "cannot number the conversations of new index segments");
        }
        Ok(())
    }

    fn garbage_collect(&self, _live_generations: &[&SearcherGeneration]) {
        // Each new searcher already replaces what the previous one used.
    }
}

#[cfg(test)]
mod tests {
    use tantivy::columnar::EmptyColumnValues;

    use super::*;

    fn segment(ids: &[u128]) -> Arc<SegmentConversations> {
        let mut sorted: Vec<(u128, u32)> = ids
            .iter()
            .enumerate()
            .map(|(local, &id)| (id, local as u32))
            .collect();
        sorted.sort_unstable();
        let empty_u64: Arc<dyn ColumnValues<u64>> = Arc::new(EmptyColumnValues);
        Arc::new(SegmentConversations {
            segment: SegmentId::generate_random(),
            date: Arc::new(EmptyColumnValues),
            message_high: empty_u64.clone(),
            message_low: empty_u64,
            ordinal_of_doc: Vec::new(),
            starts: (0..=ids.len() as u32).collect(),
            docs: (0..ids.len() as u32).collect(),
            sorted,
        })
    }

    #[test]
    fn extending_the_numbering_matches_numbering_from_scratch() {
        // xorshift64*, deterministic.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut random = |bound: u64| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound
        };
        for round in 0..50 {
            let mut all: Vec<Arc<SegmentConversations>> = (0..1 + random(5))
                .map(|_| {
                    let ids: Vec<u128> = (0..random(30)).map(|_| u128::from(random(60))).collect();
                    let mut unique = ids.clone();
                    unique.sort_unstable();
                    unique.dedup();
                    // Local numbers in another order than the ids.
                    unique.reverse();
                    segment(&unique)
                })
                .collect();
            let before = random(all.len() as u64 + 1) as usize;
            let previous = Conversations::merge(all.get(..before).unwrap_or_default().to_vec());
            // The searcher may list the segments in another order.
            let count = all.len();
            all.rotate_left(round % count);
            let extended = Conversations::extend(&previous, all.clone());
            let scratch = Conversations::merge(all);
            assert_eq!(extended.ids, scratch.ids, "round {round}");
            assert_eq!(
                extended.global_of_local, scratch.global_of_local,
                "round {round}"
            );
        }
    }

    #[test]
    fn global_numbers_follow_conversation_ids_across_segments() {
        let conversations = Conversations::merge(vec![
            segment(&[30, 10]),
            segment(&[]),
            segment(&[20, 30, 5]),
        ]);
        assert_eq!(conversations.ids, vec![5, 10, 20, 30]);
        assert_eq!(
            conversations.global_of_local,
            vec![vec![3 | SHARED, 1], vec![], vec![2, 3 | SHARED, 0]]
        );
        assert_eq!(conversations.len(), 4);
        assert_eq!(conversations.id(2), 20);
        assert_eq!(conversations.id(3 | SHARED), 30);
    }
}
