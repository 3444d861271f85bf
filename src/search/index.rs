//! The index handle (searching) and the single writer handle (adding, deleting, purging).

use std::collections::HashSet;
use std::sync::Arc;

use chrono::DateTime;
use tantivy::columnar::Column;
use tantivy::query::{BooleanQuery, Occur, Query};
use tantivy::schema::Value;
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument,
    TantivyError, Term, Warmer,
};
use tracing::debug;
use uuid::Uuid;

use super::analysis::{QueryAnalyzers, tokenizer_manager};
use super::collector::{self, ConversationGroup, GroupingCollector, SegmentMatches};
use super::compile::{Highlight, compile, mailbox_filter};
use super::conversations::{ConversationCache, Conversations};
use super::schema::{Fields, MESSAGE_HIGH, MESSAGE_LOW, build_schema, document};
use super::snippet::SnippetMaker;
use super::{ConversationHit, SearchDoc, SearchError, SearchOptions, SearchResults, query};

/// The search index: cheap to clone (shared inside), safe to search from many threads.
#[derive(Clone)]
pub struct SearchIndex {
    inner: Arc<Inner>,
}

struct Inner {
    index: Index,
    /// Reloaded explicitly after each commit of the writer handle (no file watching, which
    /// the encrypted directory cannot offer across handles).
    reader: IndexReader,
    fields: Fields,
    analyzers: QueryAnalyzers,
    /// Dense conversation numbers of the current segments, built when the reader loads new
    /// segments (after each commit), so searches do not wait for it.
    conversations: Arc<ConversationCache>,
}

impl SearchIndex {
    /// Opens the index stored in `directory`, or creates an empty one.
    ///
    /// Fails with [`SearchError::SchemaMismatch`] when the directory holds an index of another
    /// schema version: delete it and rebuild from the database.
    pub fn open_or_create(
        directory: Box<dyn tantivy::Directory>,
    ) -> Result<SearchIndex, SearchError> {
        Self::open_or_create_with_threads(directory, 1)
    }

    /// [`Self::open_or_create`] searching the segments of an index on a pool of `threads`
    /// threads (1: on the calling thread, the default). The segments of one search are spread
    /// over the pool; this shortens a search only when its work is spread over segments of
    /// similar size and cores are idle (not the case in the benchmark's index, where one merged
    /// segment holds most messages: `--threads=2` gave no gain on a busy 2-core machine).
    pub fn open_or_create_with_threads(
        directory: Box<dyn tantivy::Directory>,
        threads: usize,
    ) -> Result<SearchIndex, SearchError> {
        let (schema, fields) = build_schema();
        let mut index = Index::builder()
            .schema(schema)
            .tokenizers(tokenizer_manager())
            .open_or_create(directory)
            .map_err(|error| match error {
                TantivyError::SchemaError(_) => SearchError::SchemaMismatch,
                other => SearchError::from(other),
            })?;
        if threads > 1 {
            index.set_multithread_executor(threads)?;
        }
        let conversations = Arc::new(ConversationCache::default());
        let warmer: Arc<dyn Warmer> = conversations.clone();
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .warmers(vec![Arc::downgrade(&warmer)])
            .try_into()?;
        Ok(SearchIndex {
            inner: Arc::new(Inner {
                index,
                reader,
                fields,
                analyzers: QueryAnalyzers::default(),
                conversations,
            }),
        })
    }

    /// Opens the one writer of this index, with an indexing memory budget of `heap_bytes` (at
    /// least 15 MB). One indexing thread and one merge thread: on a small machine the parse and
    /// encrypt threads need the other cores, a second indexing thread doubled the segments (and
    /// merges) of every commit, and each concurrent merge holds memory of its own (issue #3's
    /// bounded RSS).
    ///
    /// Fails with [`SearchError::WriterBusy`] while another writer is open.
    pub fn writer(&self, heap_bytes: usize) -> Result<IndexWriterHandle, SearchError> {
        let writer = self
            .inner
            .index
            .writer_with_options(writer_options(heap_bytes))?;
        Ok(IndexWriterHandle {
            writer: Some(writer),
            index: self.clone(),
            heap_bytes,
        })
    }

    /// Makes the latest commit visible to searches (the writer handle does it after each of
    /// its commits).
    pub fn reload(&self) -> Result<(), SearchError> {
        Ok(self.inner.reader.reload()?)
    }

    /// Number of messages in the index (committed and not deleted).
    pub fn num_docs(&self) -> u64 {
        self.inner.reader.searcher().num_docs()
    }

    /// Number of segments of the current searcher (diagnostics: many small segments slow
    /// queries until merges catch up).
    pub fn num_segments(&self) -> usize {
        self.inner.reader.searcher().segment_readers().len()
    }

    /// Ids of every indexed message, so the caller can index what the database has and the
    /// index lacks (after a crash or a rebuild).
    pub fn indexed_message_ids(&self) -> Result<HashSet<Uuid>, SearchError> {
        let searcher = self.inner.reader.searcher();
        let mut ids = HashSet::with_capacity(searcher.num_docs() as usize);
        for segment in searcher.segment_readers() {
            let fast_fields = segment.fast_fields();
            let high = fast_fields.u64(MESSAGE_HIGH)?;
            let low = fast_fields.u64(MESSAGE_LOW)?;
            for doc in segment.doc_ids_alive() {
                ids.insert(read_uuid(&high, &low, doc));
            }
        }
        Ok(ids)
    }

    /// Runs `query` (see [`super::query`]) and returns one page of matching conversations.
    ///
    /// An invalid query fails with [`SearchError::Query`], never with an empty result.
    pub fn search(
        &self,
        query: &str,
        options: &SearchOptions,
    ) -> Result<SearchResults, SearchError> {
        let Some(found) = self.find(query, options)? else {
            return Ok(SearchResults {
                total_conversations: 0,
                hits: Vec::new(),
            });
        };
        let snippets = SnippetMaker::new(&found.searcher, &self.inner.fields, &found.highlight)?;
        let mut conversation_hits = Vec::with_capacity(found.page.len());
        for (group, message_ids) in found.page.iter().zip(found.message_ids) {
            conversation_hits.push(ConversationHit {
                conversation_id: Uuid::from_u128(group.conversation),
                score: group.best_score,
                newest: DateTime::from_timestamp(group.newest, 0).unwrap_or_default(),
                matched_messages: group.matched,
                snippet: self.snippet(&found.searcher, &snippets, &group.representative)?,
                message_ids,
            });
        }
        Ok(SearchResults {
            total_conversations: found.total_conversations,
            hits: conversation_hits,
        })
    }

    /// The page of conversations matching `query` with their representatives and message ids
    /// (no snippets yet); `None` when the mailbox scope is empty.
    pub(super) fn find(
        &self,
        query: &str,
        options: &SearchOptions,
    ) -> Result<Option<Found>, SearchError> {
        let inner = &*self.inner;
        let Some((query, highlight)) = self.compile_query(query, options)? else {
            return Ok(None);
        };
        let searcher = inner.reader.searcher();
        let conversations = inner.conversations.for_searcher(&searcher)?;
        let collector = GroupingCollector {
            order: options.order,
            conversations: conversations.clone(),
        };
        let segments = searcher.search(&*query, &collector)?;
        let (total_conversations, page) = collector::select(
            &segments,
            &conversations,
            options.order,
            options.offset,
            options.limit,
        );
        let message_ids = message_ids(&conversations, &segments, &page);
        Ok(Some(Found {
            searcher,
            highlight,
            total_conversations,
            page,
            message_ids,
        }))
    }

    /// `query` compiled with the mailbox scope of `options`, and the words to highlight; `None`
    /// when the scope is empty (nothing can match).
    pub(super) fn compile_query(
        &self,
        query: &str,
        options: &SearchOptions,
    ) -> Result<Option<ScopedQuery>, SearchError> {
        let inner = &*self.inner;
        let expr = query::parse(query)?;
        let mut analyzers = inner.analyzers.clone();
        let compiled = compile(&expr, &inner.fields, analyzers.clone())?;
        let query: Box<dyn Query> = match &options.mailboxes {
            None => compiled.query,
            Some(mailboxes) if mailboxes.is_empty() => return Ok(None),
            Some(mailboxes) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, compiled.query),
                (
                    Occur::Must,
                    mailbox_filter(mailboxes, &inner.fields, &mut analyzers),
                ),
            ])),
        };
        Ok(Some((query, compiled.highlight)))
    }

    /// Whether the conversation numbering of the current searcher is built (tests).
    #[cfg(test)]
    pub(super) fn conversations_ready_for_tests(&self) -> bool {
        let searcher = self.inner.reader.searcher();
        self.inner.conversations.is_built_for(&searcher)
    }

    /// The current searcher, for tests that inspect segments.
    #[cfg(test)]
    pub(super) fn inner_searcher_for_tests(&self) -> Searcher {
        self.inner.reader.searcher()
    }

    /// The snippet of one message, from its stored subject and body head.
    fn snippet(
        &self,
        searcher: &Searcher,
        snippets: &SnippetMaker,
        located: &collector::LocatedHit,
    ) -> Result<String, SearchError> {
        let fields = &self.inner.fields;
        let address = DocAddress::new(located.segment, located.doc);
        let stored: TantivyDocument = searcher.doc(address)?;
        let text_of = |field| {
            stored
                .get_first(field)
                .and_then(|value| value.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        Ok(snippets.snippet(&text_of(fields.subject), &text_of(fields.snippet_body)))
    }
}

/// A UUID read back from its two fast-field halves.
fn read_uuid(high: &Column<u64>, low: &Column<u64>, doc: tantivy::DocId) -> Uuid {
    Uuid::from_u64_pair(
        high.first(doc).unwrap_or_default(),
        low.first(doc).unwrap_or_default(),
    )
}

/// Ids of the matching messages of each conversation of `page`, newest first.
fn message_ids(
    conversations: &Conversations,
    segments: &[SegmentMatches],
    page: &[ConversationGroup],
) -> Vec<Vec<Uuid>> {
    // The segments with matches, and their conversation numbers and columns.
    let sources: Vec<_> = segments
        .iter()
        .filter(|matches| !matches.is_empty())
        .filter_map(|matches| {
            let (numbers, _) = conversations.segment(matches.segment as usize)?;
            Some((matches, numbers))
        })
        .collect();
    page.iter()
        .map(|group| {
            // (date, segment, doc) of each matching message of the conversation.
            let mut list: Vec<(i64, usize, tantivy::DocId)> = Vec::with_capacity(group.matched);
            for (position, (matches, numbers)) in sources.iter().enumerate() {
                let Some(local) = numbers.find(group.conversation) else {
                    continue;
                };
                for &doc in numbers.docs(local) {
                    if matches.contains(doc) {
                        list.push((numbers.date.get_val(doc), position, doc));
                    }
                }
            }
            // Sources are in segment order, so this is (date, segment, doc) order.
            list.sort_by_key(|&located| std::cmp::Reverse(located));
            list.into_iter()
                .filter_map(|(_, position, doc)| {
                    let (_, numbers) = sources.get(position)?;
                    Some(numbers.message_id(doc))
                })
                .collect()
        })
        .collect()
}

/// A compiled query with its mailbox scope, and the words to highlight.
pub(super) type ScopedQuery = (Box<dyn Query>, Highlight);

/// What [`SearchIndex::find`] found: one page of conversations.
pub(super) struct Found {
    pub(super) searcher: Searcher,
    pub(super) highlight: Highlight,
    /// Number of matching conversations (all pages).
    pub(super) total_conversations: usize,
    /// The page's conversations in result order.
    pub(super) page: Vec<ConversationGroup>,
    /// The matching message ids of each conversation of the page, newest first.
    pub(super) message_ids: Vec<Vec<Uuid>>,
}

/// The only writer of the index. Changes become visible to searches at [`Self::commit`];
/// dropping the handle without committing discards them. Calls block (commits and purges do
/// I/O and merging): async callers use `spawn_blocking`.
pub struct IndexWriterHandle {
    /// `None` only while [`Self::purge_physically`] swaps the writer.
    writer: Option<IndexWriter>,
    index: SearchIndex,
    heap_bytes: usize,
}

impl IndexWriterHandle {
    /// The tantivy writer, reopened if a failed purge left none.
    fn writer(&mut self) -> Result<&mut IndexWriter, SearchError> {
        if self.writer.is_none() {
            self.writer = Some(
                self.index
                    .inner
                    .index
                    .writer_with_options(writer_options(self.heap_bytes))?,
            );
        }
        Ok(self.writer.as_mut().expect("the writer was just set"))
    }

    /// Adds (or replaces) a message: any document with the same message id is deleted first,
    /// so adding twice keeps one copy.
    pub fn add(&mut self, message: &SearchDoc) -> Result<(), SearchError> {
        let fields = self.index.inner.fields;
        let document = document(&fields, message);
        let writer = self.writer()?;
        writer.delete_term(Term::from_field_bytes(
            fields.message_id,
            message.message_id.as_bytes(),
        ));
        writer.add_document(document)?;
        Ok(())
    }

    /// Deletes one message (effective at the next commit).
    pub fn delete_message(&mut self, message_id: Uuid) -> Result<(), SearchError> {
        let field = self.index.inner.fields.message_id;
        self.writer()?
            .delete_term(Term::from_field_bytes(field, message_id.as_bytes()));
        Ok(())
    }

    /// Deletes every message of a conversation (effective at the next commit). To change the
    /// conversation's state, delete it and add its messages again.
    pub fn delete_conversation(&mut self, conversation_id: Uuid) -> Result<(), SearchError> {
        let field = self.index.inner.fields.conversation_id;
        self.writer()?
            .delete_term(Term::from_field_bytes(field, conversation_id.as_bytes()));
        Ok(())
    }

    /// Makes every change durable and visible to searches; returns the commit's opstamp.
    pub fn commit(&mut self) -> Result<u64, SearchError> {
        let opstamp = self.writer()?.commit()?;
        self.index.reload()?;
        Ok(opstamp)
    }

    /// Commits, waits for running segment merges to finish, and releases the writer lock (the
    /// shutdown path: dropping the handle instead abandons uncommitted changes and merges).
    pub fn close(mut self) -> Result<(), SearchError> {
        self.commit()?;
        if let Some(writer) = self.writer.take() {
            writer.wait_merging_threads()?;
        }
        self.index.reload()
    }

    /// Commits, then rewrites every segment that holds deleted messages and removes the old
    /// files, so the text of deleted messages no longer exists in the index directory (GDPR
    /// erasure). Waits for running merges first. Searches still running on an older searcher
    /// keep their files alive until they finish; the next commit collects them.
    pub fn purge_physically(&mut self) -> Result<(), SearchError> {
        self.commit()?;
        if let Some(writer) = self.writer.take() {
            writer.wait_merging_threads()?;
        }
        let index = self.index.inner.index.clone();
        let with_deletes: Vec<_> = index
            .searchable_segment_metas()?
            .into_iter()
            .filter(|meta| meta.has_deletes())
            .map(|meta| meta.id())
            .collect();
        let writer = self.writer()?;
        if !with_deletes.is_empty() {
            writer.merge(&with_deletes).wait()?;
        }
        self.index.reload()?;
        let collected = self.writer()?.garbage_collect_files().wait()?;
        debug!(
            merged_segments = with_deletes.len(),
            deleted_files = collected.deleted_files.len(),
            "purged deleted messages from the index"
        );
        Ok(())
    }
}

/// See [`SearchIndex::writer`].
fn writer_options(heap_bytes: usize) -> tantivy::indexer::IndexWriterOptions {
    tantivy::indexer::IndexWriterOptions::builder()
        .num_worker_threads(1)
        .num_merge_threads(1)
        .memory_budget_per_thread(heap_bytes)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::directory::RamDirectory;

    #[test]
    fn second_writer_is_refused_until_the_first_is_dropped() {
        let index = SearchIndex::open_or_create(Box::new(RamDirectory::create())).expect("creates");
        let first = index.writer(20_000_000).expect("first writer");
        let second = index.writer(20_000_000);
        assert!(matches!(second, Err(SearchError::WriterBusy)));
        assert!(second.err().is_some_and(|error| error.is_transient()));
        drop(first);
        assert!(index.writer(20_000_000).is_ok());
    }

    #[test]
    fn empty_mailbox_scope_matches_nothing_but_still_validates() {
        let index = SearchIndex::open_or_create(Box::new(RamDirectory::create())).expect("creates");
        let options = SearchOptions {
            mailboxes: Some(Vec::new()),
            ..SearchOptions::default()
        };
        let results = index.search("anything", &options).expect("valid query");
        assert_eq!(results.total_conversations, 0);
        let error = index.search("(", &options).expect_err("invalid query");
        assert!(error.is_query_error());
    }
}
