//! Shared LRU cache of decrypted plaintext: single blocks, and whole files.
//!
//! tantivy re-reads the same ranges on every query (whole fast-field columns, fieldnorms, the
//! posting lists of common terms), so without a cache each query would decrypt them again.
//! Blocks serve small random reads (the document store); a whole decrypted file serves every read
//! of a hot file as a zero-copy slice, as an mmap would (see `file.rs` for when a file is loaded
//! whole).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use tantivy::directory::OwnedBytes;

use super::CacheStats;

/// Cache key: the random per-file id (not the file name, since meta.json is rewritten under the
/// same name) and which part of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct BlockKey {
    pub(super) file_id: u128,
    pub(super) part: Part,
}

/// The cached part of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Part {
    /// One block, by index.
    Block(u64),
    /// The whole plaintext of the file.
    Whole,
}

impl BlockKey {
    /// Block `index` of file `file_id`.
    pub(super) fn block(file_id: u128, index: u64) -> BlockKey {
        BlockKey {
            file_id,
            part: Part::Block(index),
        }
    }

    /// The whole plaintext of file `file_id`.
    pub(super) fn whole(file_id: u128) -> BlockKey {
        BlockKey {
            file_id,
            part: Part::Whole,
        }
    }
}

/// A byte-bounded LRU of decrypted blocks and files shared by every file handle of one directory.
pub(super) struct BlockCache {
    capacity_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Taken for every lookup and insert; never held across I/O or decryption.
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    entries: HashMap<BlockKey, CacheEntry>,
    /// Last-use tick → key; the first entry is the least recently used.
    recency: BTreeMap<u64, BlockKey>,
    next_tick: u64,
    used_bytes: usize,
}

struct CacheEntry {
    block: OwnedBytes,
    tick: u64,
}

impl BlockCache {
    /// A cache holding at most `capacity_bytes` of plaintext; 0 disables caching.
    pub(super) fn new(capacity_bytes: usize) -> BlockCache {
        BlockCache {
            capacity_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            state: Mutex::new(CacheState::default()),
        }
    }

    /// The cached block, marking it most recently used.
    pub(super) fn get(&self, key: BlockKey) -> Option<OwnedBytes> {
        let mut state = self.lock();
        let tick = state.bump_tick();
        let state = &mut *state;
        let found = match state.entries.get_mut(&key) {
            Some(entry) => {
                state.recency.remove(&entry.tick);
                entry.tick = tick;
                state.recency.insert(tick, key);
                Some(entry.block.clone())
            }
            None => None,
        };
        // A file not (yet) cached whole is not a miss: its reads go on to the block lookups.
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        } else if key.part != Part::Whole {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Whether an entry of `len` bytes may be cached at all: whole files larger than this are
    /// read block by block instead (a quarter of the capacity, so one large file cannot flush
    /// everything else).
    pub(super) fn admits_whole_file(&self, len: usize) -> bool {
        len > 0 && len <= self.capacity_bytes / 4
    }

    /// Inserts (or replaces) an entry, evicting least recently used ones to stay within capacity.
    pub(super) fn insert(&self, key: BlockKey, block: OwnedBytes) {
        // Empty blocks (empty files) are not worth an entry, and would never be evicted by size.
        if block.is_empty() || block.len() > self.capacity_bytes {
            return;
        }
        let mut state = self.lock();
        state.remove(key);
        while state.used_bytes + block.len() > self.capacity_bytes {
            if !state.evict_oldest() {
                break;
            }
        }
        let tick = state.bump_tick();
        state.used_bytes += block.len();
        state.recency.insert(tick, key);
        state.entries.insert(key, CacheEntry { block, tick });
    }

    /// Caches the whole plaintext of a file, dropping its single blocks (every read of the file
    /// is now served by the whole entry).
    pub(super) fn insert_whole_file(&self, file_id: u128, plaintext: OwnedBytes) {
        self.remove_parts(file_id, |part| part != Part::Whole);
        self.insert(BlockKey::whole(file_id), plaintext);
    }

    /// Drops every block of one file, so plaintext of a deleted file does not linger in memory
    /// longer than its open handles.
    pub(super) fn remove_file(&self, file_id: u128) {
        self.remove_parts(file_id, |_| true);
    }

    fn remove_parts(&self, file_id: u128, selected: impl Fn(Part) -> bool) {
        let mut state = self.lock();
        let keys: Vec<BlockKey> = state
            .entries
            .keys()
            .filter(|key| key.file_id == file_id && selected(key.part))
            .copied()
            .collect();
        for key in keys {
            state.remove(key);
        }
    }

    /// Counters and occupancy, for metrics and benchmarks.
    pub(super) fn stats(&self) -> CacheStats {
        let used_bytes = self.lock().used_bytes;
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            used_bytes,
            capacity_bytes: self.capacity_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        // The state stays consistent even if a holder panicked: no code under the lock can panic
        // between the paired map updates.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl CacheState {
    fn bump_tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    fn remove(&mut self, key: BlockKey) {
        if let Some(entry) = self.entries.remove(&key) {
            self.recency.remove(&entry.tick);
            self.used_bytes -= entry.block.len();
        }
    }

    fn evict_oldest(&mut self) -> bool {
        match self.recency.pop_first() {
            Some((_, key)) => {
                if let Some(entry) = self.entries.remove(&key) {
                    self.used_bytes -= entry.block.len();
                }
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(fill: u8, len: usize) -> OwnedBytes {
        OwnedBytes::new(vec![fill; len])
    }

    fn key(file_id: u128, index: u64) -> BlockKey {
        BlockKey::block(file_id, index)
    }

    #[test]
    fn evicts_least_recently_used_within_capacity() {
        let cache = BlockCache::new(300);
        cache.insert(key(1, 0), block(1, 100));
        cache.insert(key(1, 1), block(2, 100));
        cache.insert(key(2, 0), block(3, 100));
        assert!(
            cache.get(key(1, 0)).is_some(),
            "touch (1,0) so (1,1) is oldest"
        );
        cache.insert(key(2, 1), block(4, 100));
        assert!(cache.get(key(1, 1)).is_none());
        assert_eq!(cache.get(key(1, 0)).as_deref(), Some(&[1u8; 100][..]));
        assert!(cache.get(key(2, 0)).is_some());
        assert!(cache.get(key(2, 1)).is_some());
        let stats = cache.stats();
        assert_eq!(stats.used_bytes, 300);
        assert_eq!((stats.hits, stats.misses), (4, 1));
    }

    #[test]
    fn keys_distinguish_files_and_replacement_keeps_accounting() {
        let cache = BlockCache::new(1000);
        cache.insert(key(1, 0), block(1, 10));
        cache.insert(key(2, 0), block(2, 10));
        cache.insert(key(1, 0), block(3, 20));
        assert_eq!(cache.get(key(1, 0)).as_deref(), Some(&[3u8; 20][..]));
        assert_eq!(cache.get(key(2, 0)).as_deref(), Some(&[2u8; 10][..]));
        assert_eq!(cache.stats().used_bytes, 30);
        cache.remove_file(1);
        assert!(cache.get(key(1, 0)).is_none());
        assert_eq!(cache.stats().used_bytes, 10);
    }

    #[test]
    fn oversized_blocks_and_zero_capacity_are_not_cached() {
        let cache = BlockCache::new(0);
        cache.insert(key(1, 0), block(1, 1));
        cache.insert(key(1, 1), block(1, 0));
        assert!(cache.get(key(1, 0)).is_none());
        assert!(cache.get(key(1, 1)).is_none());
        let small = BlockCache::new(10);
        small.insert(key(1, 0), block(1, 11));
        assert!(small.get(key(1, 0)).is_none());
        assert_eq!(small.stats().used_bytes, 0);
    }

    #[test]
    fn whole_files_share_the_budget_and_go_with_their_file() {
        let cache = BlockCache::new(400);
        assert!(cache.admits_whole_file(100));
        assert!(!cache.admits_whole_file(101));
        assert!(!cache.admits_whole_file(0));
        cache.insert(key(1, 0), block(2, 100));
        cache.insert_whole_file(1, block(1, 100));
        assert!(
            cache.get(key(1, 0)).is_none(),
            "blocks give way to the whole file"
        );
        cache.insert(key(1, 1), block(2, 100));
        cache.insert(BlockKey::whole(2), block(3, 100));
        assert_eq!(
            cache.get(BlockKey::whole(1)).as_deref(),
            Some(&[1u8; 100][..])
        );
        assert_eq!(cache.get(key(1, 1)).as_deref(), Some(&[2u8; 100][..]));
        cache.insert(key(3, 0), block(4, 200));
        assert!(
            cache.get(BlockKey::whole(2)).is_none(),
            "least recently used"
        );
        cache.remove_file(1);
        assert!(cache.get(BlockKey::whole(1)).is_none());
        assert!(cache.get(key(1, 1)).is_none());
        assert_eq!(cache.stats().used_bytes, 200);
    }
}
