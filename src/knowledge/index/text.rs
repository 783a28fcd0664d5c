//! BM25 full text: one tantivy index for every tenant, with a term space per tenant. Every word is
//! indexed as `<tenant>_<word>` and a question is looked up the same way, so a tenant's query can
//! only ever match that tenant's entries (and word statistics are per tenant, as they should be).
//! Because the query is then a plain disjunction of terms, tantivy answers it with block-max WAND
//! instead of intersecting with a tenant filter: that keeps BM25 fast at 100k chunks per tenant.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use tantivy::collector::{DocSetCollector, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STORED, STRING,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
    WhitespaceTokenizer,
};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, Term};

use crate::storage::{KnowledgeBaseId, TenantId};

/// The text field holds pre-analysed, tenant-prefixed words separated by spaces.
const TOKENIZER: &str = "wacrm_prefixed";
/// Indexing memory shared by tantivy's writer threads.
const WRITER_MEMORY: usize = 50_000_000;

struct Fields {
    tenant: Field,
    kb: Field,
    key: Field,
    chunk: Field,
    text: Field,
}

pub struct TextIndex {
    index: Index,
    fields: Fields,
    writer: Mutex<IndexWriter>,
    reader: IndexReader,
}

/// A chunk to index.
pub struct TextEntry<'a> {
    pub tenant: TenantId,
    pub kb: KnowledgeBaseId,
    pub chunk: u64,
    pub text: &'a str,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let tenant = b.add_text_field("tenant", STRING);
    let kb = b.add_text_field("kb", STRING);
    // tenant:chunk, the unique term deletions use.
    let key = b.add_text_field("key", STRING);
    let chunk = b.add_u64_field("chunk", INDEXED | FAST | STORED);
    let text = b.add_text_field(
        "text",
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TOKENIZER)
                .set_index_option(IndexRecordOption::WithFreqs),
        ),
    );
    (
        b.build(),
        Fields {
            tenant,
            kb,
            key,
            chunk,
            text,
        },
    )
}

fn analyzer() -> TextAnalyzer {
    // Language-neutral on purpose: customers mix Indonesian and English, and a stemmer for one
    // would mangle the other. Accents folded so "café" finds "cafe".
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// English and Indonesian function words (sorted: binary search).
const STOPWORDS: &[&str] = &[
    "a", "ada", "adalah", "agar", "akan", "aku", "am", "an", "and", "any", "apa", "apakah", "are",
    "as", "at", "atau", "be", "been", "begitu", "bisa", "boleh", "bolehkah", "but", "by", "can",
    "could", "dalam", "dan", "dari", "dengan", "di", "did", "do", "does", "for", "from", "get",
    "got", "had", "harus", "has", "have", "how", "i", "if", "in", "ini", "into", "is", "it", "itu",
    "jika", "juga", "kalau", "kami", "kamu", "kan", "ke", "kenapa", "kok", "lagi", "mau", "may",
    "me", "mengapa", "my", "nya", "of", "on", "or", "our", "pada", "saja", "saya", "should", "so",
    "sudah", "that", "the", "their", "them", "then", "there", "these", "they", "this", "to",
    "untuk", "us", "was", "we", "were", "what", "when", "where", "which", "who", "why", "will",
    "with", "would", "ya", "yang", "you", "your",
];

fn key_of(tenant: TenantId, chunk: u64) -> String {
    format!("{tenant}:{chunk}")
}

/// Words of `text` as indexed, each in the tenant's term space.
fn tenant_words(tenant: TenantId, text: &str, skip_stopwords: bool) -> Vec<String> {
    let prefix = tenant.0.simple().to_string();
    let mut analyzer = analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        let t = &stream.token().text;
        if skip_stopwords && STOPWORDS.binary_search(&t.as_str()).is_ok() {
            continue;
        }
        out.push(format!("{prefix}_{t}"));
    }
    out
}

impl TextIndex {
    /// Opens the index in `dir`, creating it when absent.
    pub fn open(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let (schema, fields) = schema();
        let directory = MmapDirectory::open(dir).map_err(|e| e.to_string())?;
        let index = Index::open_or_create(directory, schema).map_err(|e| e.to_string())?;
        index.tokenizers().register(
            TOKENIZER,
            TextAnalyzer::builder(WhitespaceTokenizer::default()).build(),
        );
        let writer = index.writer(WRITER_MEMORY).map_err(|e| e.to_string())?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e: tantivy::TantivyError| e.to_string())?;
        Ok(Self {
            index,
            fields,
            writer: Mutex::new(writer),
            reader,
        })
    }

    /// Adds and removes entries, commits, and makes the change visible to searches.
    pub fn apply(&self, add: &[TextEntry<'_>], remove: &[(TenantId, u64)]) -> Result<(), String> {
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let f = &self.fields;
        for (tenant, chunk) in remove {
            writer.delete_term(Term::from_field_text(f.key, &key_of(*tenant, *chunk)));
        }
        for e in add {
            // Delete first: re-adding an existing entry (reconcile, retry) must not duplicate it.
            writer.delete_term(Term::from_field_text(f.key, &key_of(e.tenant, e.chunk)));
            writer
                .add_document(doc!(
                    f.tenant => e.tenant.to_string(),
                    f.kb => e.kb.to_string(),
                    f.key => key_of(e.tenant, e.chunk),
                    f.chunk => e.chunk,
                    f.text => tenant_words(e.tenant, e.text, false).join(" "),
                ))
                .map_err(|e| e.to_string())?;
        }
        writer.commit().map_err(|e| e.to_string())?;
        drop(writer);
        self.reader.reload().map_err(|e| e.to_string())
    }

    /// Removes every entry of a tenant.
    pub fn remove_tenant(&self, tenant: TenantId) -> Result<(), String> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        writer.delete_term(Term::from_field_text(
            self.fields.tenant,
            &tenant.to_string(),
        ));
        writer.commit().map_err(|e| e.to_string())?;
        drop(writer);
        self.reader.reload().map_err(|e| e.to_string())
    }

    /// Removes every entry of a tenant from the index files themselves: deletions are only marks
    /// until their segments merge, and a deleted tenant's text must not stay on disk. Returns how
    /// many entries it had.
    pub fn purge_tenant(&self, tenant: TenantId) -> Result<u64, String> {
        let had = self.tenant_chunks(tenant)?.len() as u64;
        self.remove_tenant(tenant)?;
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let segments = self
            .index
            .searchable_segment_ids()
            .map_err(|e| e.to_string())?;
        if !segments.is_empty() {
            writer.merge(&segments).wait().map_err(|e| e.to_string())?;
        }
        writer
            .garbage_collect_files()
            .wait()
            .map_err(|e| e.to_string())?;
        drop(writer);
        self.reader.reload().map_err(|e| e.to_string())?;
        Ok(had)
    }

    /// Removes everything (reindex).
    pub fn clear(&self) -> Result<(), String> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        writer.delete_all_documents().map_err(|e| e.to_string())?;
        writer.commit().map_err(|e| e.to_string())?;
        drop(writer);
        self.reader.reload().map_err(|e| e.to_string())
    }

    /// Best BM25 matches of one tenant: (chunk number, score), best first. `only` restricts them to
    /// some of its bases (None: all of them, the fast path).
    pub fn search(
        &self,
        tenant: TenantId,
        only: Option<&[KnowledgeBaseId]>,
        question: &str,
        k: usize,
    ) -> Result<Vec<(u64, f32)>, String> {
        // Function words ("how", "do", "bisa") would pull in any passage that happens to use
        // them; a short question is better served by its content words alone.
        let mut terms = tenant_words(tenant, question, true);
        let mut seen = HashSet::new();
        terms.retain(|t| seen.insert(t.clone()));
        if terms.is_empty() || only.is_some_and(<[_]>::is_empty) || k == 0 {
            return Ok(Vec::new());
        }
        let f = &self.fields;
        let words: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|t| {
                let q: Box<dyn Query> = Box::new(TermQuery::new(
                    Term::from_field_text(f.text, t),
                    IndexRecordOption::WithFreqs,
                ));
                (Occur::Should, q)
            })
            .collect();
        // Restricting to some bases costs an intersection; most searches cover all of them.
        let query: Box<dyn Query> = match only {
            Some(bases) => {
                let bases: Vec<(Occur, Box<dyn Query>)> = bases
                    .iter()
                    .map(|kb| {
                        let q: Box<dyn Query> = Box::new(TermQuery::new(
                            Term::from_field_text(f.kb, &kb.to_string()),
                            IndexRecordOption::Basic,
                        ));
                        (Occur::Should, q)
                    })
                    .collect();
                Box::new(BooleanQuery::new(vec![
                    (Occur::Must, Box::new(BooleanQuery::new(bases))),
                    (Occur::Must, Box::new(BooleanQuery::new(words))),
                ]))
            }
            None => Box::new(BooleanQuery::new(words)),
        };
        let searcher = self.reader.searcher();
        let top = searcher
            .search(query.as_ref(), &TopDocs::with_limit(k))
            .map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(top.len());
        for (score, address) in top {
            let column = searcher
                .segment_reader(address.segment_ord)
                .fast_fields()
                .u64("chunk")
                .map_err(|e| e.to_string())?;
            if let Some(chunk) = column.first(address.doc_id) {
                out.push((chunk, score));
            }
        }
        Ok(out)
    }

    /// Every chunk number indexed for a tenant (reconciliation with redb).
    pub fn tenant_chunks(&self, tenant: TenantId) -> Result<HashSet<u64>, String> {
        let searcher = self.reader.searcher();
        let query = TermQuery::new(
            Term::from_field_text(self.fields.tenant, &tenant.to_string()),
            IndexRecordOption::Basic,
        );
        let docs = searcher
            .search(&query, &DocSetCollector)
            .map_err(|e| e.to_string())?;
        let mut out = HashSet::with_capacity(docs.len());
        for address in docs {
            let column = searcher
                .segment_reader(address.segment_ord)
                .fast_fields()
                .u64("chunk")
                .map_err(|e| e.to_string())?;
            if let Some(chunk) = column.first(address.doc_id) {
                out.insert(chunk);
            }
        }
        Ok(out)
    }

    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopwords_are_sorted_for_binary_search() {
        let mut sorted = STOPWORDS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, STOPWORDS);
    }

    #[test]
    fn a_tenants_query_never_matches_another_tenants_identical_text() {
        let dir = tempfile::tempdir().unwrap();
        let index = TextIndex::open(dir.path()).unwrap();
        let (a, b) = (TenantId::new(), TenantId::new());
        let (kb_a, kb_b) = (KnowledgeBaseId::new(), KnowledgeBaseId::new());
        let text = "Kopi susu costs 25000 rupiah";
        index
            .apply(
                &[
                    TextEntry {
                        tenant: a,
                        kb: kb_a,
                        chunk: 1,
                        text,
                    },
                    TextEntry {
                        tenant: b,
                        kb: kb_b,
                        chunk: 1,
                        text,
                    },
                ],
                &[],
            )
            .unwrap();
        // Even naming tenant B's base, tenant A's query only sees tenant A's rows.
        assert_eq!(
            index
                .search(a, Some(&[kb_a, kb_b]), "kopi susu", 10)
                .unwrap()
                .len(),
            1
        );
        assert!(index
            .search(a, Some(&[kb_b]), "kopi susu", 10)
            .unwrap()
            .is_empty());
        index.apply(&[], &[(a, 1)]).unwrap();
        assert!(index.search(a, None, "kopi", 10).unwrap().is_empty());
        assert_eq!(index.tenant_chunks(b).unwrap(), HashSet::from([1]));
        // Re-adding the same entry does not duplicate it.
        let again = [TextEntry {
            tenant: b,
            kb: kb_b,
            chunk: 1,
            text,
        }];
        index.apply(&again, &[]).unwrap();
        assert_eq!(index.search(b, None, "café kopi", 10).unwrap().len(), 1);
    }
}
