//! Conversation search (tantivy): by the customer's name, number (or its last digits), or the
//! text of any message.
//!
//! The index is derived from redb and lives in the data directory. It follows each tenant's live
//! feed; how far it got is stored in the index's own commit payload, so a restart resumes where it
//! stopped. A tenant whose position predates what the feed keeps, a missing or unreadable index,
//! or a schema change is rebuilt from the store. A lost index is never a loss of data.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, Value, STORED, STRING, TEXT};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};
use tokio::sync::watch;

use crate::conversations::feed::{self, FeedKind, FeedRead};
use crate::conversations::{
    message_key, Author, Conversation, LiveBus, Message, MessageBody, CONVERSATIONS, MESSAGES,
};
use crate::storage::{ConversationId, Store, StoreError, TenantId};

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search index: {0}")]
    Index(String),
    /// Another process holds the index: never rebuilt over it.
    #[error("search index in use by another process: {0}")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SearchError {
    pub fn code(&self) -> &'static str {
        match self {
            SearchError::Index(_) => "search_index",
            SearchError::Busy(_) => "search_index_busy",
            SearchError::Store(e) => e.code(),
        }
    }
}

impl From<tantivy::TantivyError> for SearchError {
    fn from(e: tantivy::TantivyError) -> Self {
        match e {
            tantivy::TantivyError::LockFailure(..) => SearchError::Busy(e.to_string()),
            other => SearchError::Index(other.to_string()),
        }
    }
}

#[derive(Clone, Copy)]
struct Fields {
    tenant: Field,
    conversation: Field,
    /// "c:<conversation>" or "m:<message>": what a re-index replaces.
    doc_id: Field,
    text: Field,
    who: Field,
    /// Suffixes of the customer's number, so "4567890" finds +62 812 3456 7890.
    number: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let f = Fields {
        tenant: b.add_text_field("tenant", STRING),
        conversation: b.add_text_field("conversation", STRING | STORED),
        doc_id: b.add_text_field("doc_id", STRING),
        text: b.add_text_field("text", TEXT),
        who: b.add_text_field("who", TEXT),
        number: b.add_text_field("number", STRING),
    };
    (b.build(), f)
}

/// Per tenant: the last feed entry indexed.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Progress {
    v: u32,
    tenants: HashMap<TenantId, u64>,
}

const PROGRESS_VERSION: u32 = 1;
const WRITER_MEMORY: usize = 15_000_000;
const MIN_NUMBER_SUFFIX: usize = 4;

pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    progress: Mutex<Progress>,
    /// Tenants deleted (or being deleted): never indexed again.
    purged: Mutex<HashSet<TenantId>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl SearchIndex {
    fn open(path: &Path) -> Result<Self, SearchError> {
        let (schema, fields) = schema();
        std::fs::create_dir_all(path).map_err(|e| SearchError::Index(e.to_string()))?;
        let dir = tantivy::directory::MmapDirectory::open(path)
            .map_err(|e| SearchError::Index(e.to_string()))?;
        let index = Index::open_or_create(dir, schema)?;
        Self::with_index(index, fields)
    }

    fn in_memory() -> Result<Self, SearchError> {
        let (schema, fields) = schema();
        Self::with_index(Index::create_in_ram(schema), fields)
    }

    fn with_index(index: Index, fields: Fields) -> Result<Self, SearchError> {
        let progress = index
            .load_metas()?
            .payload
            .and_then(|p| serde_json::from_str::<Progress>(&p).ok())
            .filter(|p| p.v == PROGRESS_VERSION)
            .unwrap_or(Progress {
                v: PROGRESS_VERSION,
                tenants: HashMap::new(),
            });
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let writer = index.writer_with_num_threads(1, WRITER_MEMORY)?;
        Ok(Self {
            index,
            reader,
            writer: Mutex::new(writer),
            fields,
            progress: Mutex::new(progress),
            purged: Mutex::default(),
        })
    }

    /// Opens the index at `path`; an unreadable one (or one of an older schema) is deleted and
    /// rebuilt from the store by `run`. If even that fails, search runs from memory.
    pub fn open_or_rebuild(path: &Path) -> Result<Self, SearchError> {
        match Self::open(path) {
            Ok(s) => return Ok(s),
            Err(e @ SearchError::Busy(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "search index unreadable; rebuilding it")
            }
        }
        let _ = std::fs::remove_dir_all(path);
        Self::open(path).or_else(|e| {
            tracing::error!(error = %e, "cannot create the search index on disk; keeping it in memory");
            Self::in_memory()
        })
    }

    /// Conversations of `tenant` matching `q`, best first.
    pub fn search(
        &self,
        tenant: TenantId,
        q: &str,
        limit: usize,
    ) -> Result<Vec<ConversationId>, SearchError> {
        let f = self.fields;
        let parser = {
            let mut p = QueryParser::for_index(&self.index, vec![f.text, f.who]);
            p.set_conjunction_by_default();
            p
        };
        let (user_query, _errors) = parser.parse_query_lenient(q);
        let mut either: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Should, user_query)];
        let digits: String = q.chars().filter(|c| c.is_ascii_digit()).collect();
        let only_number = q
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')'));
        if only_number && digits.len() >= MIN_NUMBER_SUFFIX {
            either.push((
                Occur::Should,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.number, &digits),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        let query = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.tenant, &tenant.to_string()),
                    IndexRecordOption::Basic,
                )),
            ),
            (Occur::Must, Box::new(BooleanQuery::new(either))),
        ]);
        let searcher = self.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(limit.max(1) * 4))?;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (_, addr) in top {
            let d: TantivyDocument = searcher.doc(addr)?;
            if let Some(c) = d
                .get_first(f.conversation)
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse::<ConversationId>().ok())
            {
                if seen.insert(c) {
                    out.push(c);
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn add_conversation(&self, w: &IndexWriter, tenant: TenantId, c: &Conversation) {
        let f = self.fields;
        let id = format!("c:{}", c.id);
        w.delete_term(Term::from_field_text(f.doc_id, &id));
        let who = format!(
            "{} {} +{}",
            c.contact_name.clone().unwrap_or_default(),
            c.contact_wa_id,
            c.contact_wa_id
        );
        let mut d = doc!(
            f.tenant => tenant.to_string(),
            f.conversation => c.id.to_string(),
            f.doc_id => id,
            f.who => who,
        );
        let n = c.contact_wa_id.len();
        for start in 0..=n.saturating_sub(MIN_NUMBER_SUFFIX) {
            if let Some(suffix) = c.contact_wa_id.get(start..) {
                d.add_text(f.number, suffix);
            }
        }
        let _ = w.add_document(d);
    }

    fn add_message(&self, w: &IndexWriter, tenant: TenantId, m: &Message) {
        let f = self.fields;
        if matches!(m.body, MessageBody::Note { .. }) && m.author == Author::System {
            return;
        }
        let id = format!("m:{}", m.id);
        w.delete_term(Term::from_field_text(f.doc_id, &id));
        let _ = w.add_document(doc!(
            f.tenant => tenant.to_string(),
            f.conversation => m.conversation.to_string(),
            f.doc_id => id,
            f.text => m.body.preview_text(),
        ));
    }

    /// Indexes everything of `tenant` from the store.
    fn rebuild_tenant(&self, store: &Store, tenant: TenantId) -> Result<u64, SearchError> {
        // The feed position first: anything committed after it is indexed again by catch-up
        // (documents are replaced by id, so twice is harmless).
        let latest = feed::latest_seq(store, tenant)?;
        let w = lock(&self.writer);
        w.delete_term(Term::from_field_text(
            self.fields.tenant,
            &tenant.to_string(),
        ));
        let conversations =
            crate::conversations::list_conversations(store, tenant, None, usize::MAX)?;
        for c in &conversations {
            self.add_conversation(&w, tenant, c);
            let messages: Vec<Message> = store
                .read(|r| {
                    r.tenant(tenant)
                        .scan(&MESSAGES, c.id.as_bytes(), false, usize::MAX)
                })?
                .into_iter()
                .map(|(_, m)| m)
                .collect();
            for m in &messages {
                self.add_message(&w, tenant, m);
            }
        }
        Ok(latest)
    }

    /// Indexes the tenant's feed entries after its last position. Returns whether anything
    /// changed.
    fn catch_up(&self, store: &Store, tenant: TenantId) -> Result<bool, SearchError> {
        if lock(&self.purged).contains(&tenant) {
            return Ok(false);
        }
        let known = lock(&self.progress).tenants.get(&tenant).copied();
        let Some(mut after) = known else {
            let latest = self.rebuild_tenant(store, tenant)?;
            lock(&self.progress).tenants.insert(tenant, latest);
            return Ok(true);
        };
        let mut changed = false;
        loop {
            let entries = match feed::read_after(store, tenant, after, 1000)? {
                FeedRead::Gap { .. } => {
                    let latest = self.rebuild_tenant(store, tenant)?;
                    lock(&self.progress).tenants.insert(tenant, latest);
                    return Ok(true);
                }
                FeedRead::Entries(e) => e,
            };
            if entries.is_empty() {
                break;
            }
            let w = lock(&self.writer);
            for e in &entries {
                after = e.seq;
                let Some(mid) = e.message.filter(|_| e.kind == FeedKind::Message) else {
                    continue;
                };
                let (c, m) = store.read(|r| {
                    let t = r.tenant(tenant);
                    Ok((
                        t.get(&CONVERSATIONS, e.conversation.as_bytes())?,
                        t.get(&MESSAGES, &message_key(e.conversation, mid))?,
                    ))
                })?;
                if let Some(c) = c {
                    self.add_conversation(&w, tenant, &c);
                }
                if let Some(m) = m {
                    self.add_message(&w, tenant, &m);
                }
            }
            drop(w);
            changed = true;
            lock(&self.progress).tenants.insert(tenant, after);
        }
        Ok(changed)
    }

    fn commit(&self) -> Result<(), SearchError> {
        let payload = serde_json::to_string(&*lock(&self.progress))
            .map_err(|e| SearchError::Index(e.to_string()))?;
        let mut w = lock(&self.writer);
        let mut prepared = w.prepare_commit()?;
        prepared.set_payload(&payload);
        prepared.commit()?;
        drop(w);
        self.reader.reload()?;
        Ok(())
    }

    /// Brings the index up to date with every tenant's feed.
    pub fn sync(&self, store: &Store, only: Option<&HashSet<TenantId>>) -> Result<(), SearchError> {
        let tenants: Vec<TenantId> = match only {
            Some(set) => set.iter().copied().collect(),
            None => crate::tenants::list_tenants(store)
                .map_err(|e| SearchError::Index(e.to_string()))?
                .into_iter()
                .map(|t| t.id)
                .collect(),
        };
        let mut changed = false;
        for t in tenants {
            changed |= self.catch_up(store, t)?;
        }
        if changed {
            self.commit()?;
        }
        Ok(())
    }

    /// Removes every document of `tenant` from the index files themselves (merged away, not
    /// only marked deleted), and stops indexing it. Returns how many documents it had.
    pub fn purge(&self, tenant: TenantId) -> Result<u64, SearchError> {
        lock(&self.purged).insert(tenant);
        let term = Term::from_field_text(self.fields.tenant, &tenant.to_string());
        let had = self.reader.searcher().search(
            &TermQuery::new(term.clone(), IndexRecordOption::Basic),
            &tantivy::collector::Count,
        )? as u64;
        lock(&self.progress).tenants.remove(&tenant);
        {
            let w = lock(&self.writer);
            w.delete_term(term);
        }
        self.commit()?;
        self.merge_away_deleted()?;
        Ok(had)
    }

    /// Removes deleted conversations (and their messages) from the index files themselves.
    pub fn forget(
        &self,
        tenant: TenantId,
        conversations: &[ConversationId],
    ) -> Result<(), SearchError> {
        if conversations.is_empty() {
            return Ok(());
        }
        {
            let w = lock(&self.writer);
            for c in conversations {
                w.delete_term(Term::from_field_text(
                    self.fields.conversation,
                    &c.to_string(),
                ));
            }
        }
        self.commit()?;
        self.merge_away_deleted()?;
        tracing::info!(%tenant, conversations = conversations.len(), "inbox search: deleted conversations removed");
        Ok(())
    }

    /// Rewrites the segments so deleted documents leave the files (a deletion is only a mark
    /// until its segment merges).
    fn merge_away_deleted(&self) -> Result<(), SearchError> {
        let mut w = lock(&self.writer);
        let segments = self.index.searchable_segment_ids()?;
        if !segments.is_empty() {
            w.merge(&segments).wait()?;
        }
        w.garbage_collect_files().wait()?;
        drop(w);
        self.reader.reload()?;
        Ok(())
    }

    /// Follows the live bus (and a slow tick for anything a dropped notice hid).
    pub async fn run(self: Arc<Self>, store: Store, bus: LiveBus, mut stop: watch::Receiver<bool>) {
        let mut updates = bus.subscribe();
        let mut full = true;
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            let mut dirty = HashSet::new();
            if !full {
                tokio::select! {
                    _ = stop.changed() => { if *stop.borrow() { break; } continue; }
                    _ = tick.tick() => full = true,
                    got = updates.recv() => match got {
                        Ok(u) => {
                            dirty.insert(u.tenant);
                            // A burst is indexed in one commit.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            loop {
                                match updates.try_recv() {
                                    Ok(u) => { dirty.insert(u.tenant); }
                                    Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => full = true,
                                    Err(_) => break,
                                }
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => full = true,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    },
                }
            }
            let this = self.clone();
            let store2 = store.clone();
            let only = if full { None } else { Some(dirty) };
            full = false;
            let done = tokio::task::spawn_blocking(move || this.sync(&store2, only.as_ref())).await;
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, code = e.code(), "search indexing failed; will retry")
                }
                Err(e) => tracing::error!(error = %e, "search indexer panicked"),
            }
        }
    }
}

impl crate::tenants::lifecycle::TenantDataOwner for SearchIndex {
    fn name(&self) -> &'static str {
        "conversation search"
    }

    fn purge_tenant(
        &self,
        tenant: &crate::tenants::Tenant,
    ) -> Result<crate::tenants::lifecycle::PurgeReport, String> {
        let removed = self.purge(tenant.id).map_err(|e| e.to_string())?;
        let mut report = crate::tenants::lifecycle::PurgeReport::default();
        report.detail.insert("search_documents".into(), removed);
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversations::feed::put_message;
    use crate::conversations::{ConversationState, Direction, MessageStatus};
    use crate::storage::{ChannelId, MessageId};
    use crate::whatsapp::payload::MessageContent;

    fn conversation(name: &str, wa: &str) -> Conversation {
        Conversation {
            id: ConversationId::new(),
            channel: ChannelId::new(),
            outlet: None,
            contact_wa_id: wa.into(),
            contact_name: Some(name.into()),
            state: ConversationState::Bot,
            handoff_reason: None,
            opened_at_ms: 0,
            closed_at_ms: None,
            last_customer_message_ms: 0,
            last_message_ms: 0,
            message_count: 1,
            assigned_agent: None,
            unhelpful_turns: 0,
        }
    }

    fn message(c: &Conversation, text: &str) -> Message {
        Message {
            id: MessageId::new(),
            conversation: c.id,
            direction: Direction::Inbound,
            author: Author::Customer,
            body: MessageBody::Inbound {
                content: MessageContent::Text { body: text.into() },
                context: None,
                referral: None,
            },
            status: MessageStatus::Received,
            wamid: None,
            created_at_ms: 0,
            status_at_ms: 0,
            failure: None,
            attempts: 0,
            sources: vec![],
            unanswered: None,
        }
    }

    async fn store_with(store: &Store, tenant: TenantId, c: &Conversation, text: &str) {
        let (c, m) = (c.clone(), message(c, text));
        store
            .write(move |ctx| {
                let mut t = ctx.tenant(tenant);
                t.put(&CONVERSATIONS, c.id.as_bytes(), &c)?;
                put_message(&mut t, &m, FeedKind::Message)
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn finds_by_name_number_suffix_and_text_within_one_tenant_and_resumes_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb"), 64, Box::new(|_| {})).unwrap();
        let (acme, other) = (TenantId::new(), TenantId::new());
        let budi = conversation("Budi Santoso", "6281234567890");
        let siti = conversation("Siti", "6289900011122");
        let stranger = conversation("Budi Other", "6281234567890");
        store_with(&store, acme, &budi, "Is the espresso machine repaired?").await;
        store_with(&store, acme, &siti, "Refund for my order please").await;
        store_with(&store, other, &stranger, "espresso refund").await;

        let path = dir.path().join("search");
        let index = SearchIndex::open_or_rebuild(&path).unwrap();
        let all: HashSet<_> = [acme, other].into_iter().collect();
        index.sync(&store, Some(&all)).unwrap();
        assert_eq!(index.search(acme, "budi", 10).unwrap(), vec![budi.id]);
        assert_eq!(index.search(acme, "espresso", 10).unwrap(), vec![budi.id]);
        assert_eq!(index.search(acme, "refund", 10).unwrap(), vec![siti.id]);
        assert_eq!(index.search(acme, "4567890", 10).unwrap(), vec![budi.id]);
        assert_eq!(
            index.search(acme, "+62 812-3456-7890", 10).unwrap(),
            vec![budi.id]
        );
        assert!(index
            .search(acme, "nothing-like-this", 10)
            .unwrap()
            .is_empty());
        assert_eq!(
            index.search(other, "espresso", 10).unwrap(),
            vec![stranger.id]
        );
        drop(index);

        // Reopened: resumes from its stored position, indexing only what came since.
        store_with(&store, acme, &siti, "the croissant was stale").await;
        let index = SearchIndex::open_or_rebuild(&path).unwrap();
        assert_eq!(lock(&index.progress).tenants.get(&acme), Some(&2));
        index.sync(&store, Some(&all)).unwrap();
        assert_eq!(index.search(acme, "croissant", 10).unwrap(), vec![siti.id]);
        assert_eq!(index.search(acme, "espresso", 10).unwrap(), vec![budi.id]);
    }

    #[tokio::test]
    async fn a_purged_tenant_leaves_nothing_in_the_index_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb"), 64, Box::new(|_| {})).unwrap();
        let (gone, kept) = (TenantId::new(), TenantId::new());
        let c = conversation("Gone Customer", "6281111222333");
        let k = conversation("Kept", "6289999888777");
        store_with(&store, gone, &c, "secret espresso order").await;
        store_with(&store, kept, &k, "espresso").await;
        let path = dir.path().join("search");
        let index = SearchIndex::open_or_rebuild(&path).unwrap();
        let both: HashSet<_> = [gone, kept].into_iter().collect();
        index.sync(&store, Some(&both)).unwrap();
        let files_mention = |needle: &str| {
            std::fs::read_dir(&path).unwrap().any(|entry| {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                String::from_utf8_lossy(&bytes).contains(needle)
            })
        };
        // The check below means something: the files do spell the tenant's id out.
        assert!(files_mention(&gone.to_string()));
        assert_eq!(index.purge(gone).unwrap(), 2);
        // Syncing again does not bring it back.
        index.sync(&store, Some(&both)).unwrap();
        assert!(index.search(gone, "espresso", 5).unwrap().is_empty());
        assert_eq!(index.search(kept, "espresso", 5).unwrap(), vec![k.id]);
        assert!(!files_mention(&gone.to_string()));
        assert!(!files_mention("6281111222333") && !files_mention(&c.id.to_string()));
        assert!(files_mention(&kept.to_string()));
    }

    #[test]
    fn an_unreadable_index_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("search");
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("meta.json"), b"{not json").unwrap();
        let index = SearchIndex::open_or_rebuild(&path).unwrap();
        assert!(index.search(TenantId::new(), "x", 5).unwrap().is_empty());
    }
}
