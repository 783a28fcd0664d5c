//! Retrieval, prompt, generation, tools and guardrails: the bot turn.

pub mod intent;
pub mod language;
pub mod llm;
pub mod turn;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::conversations::{LiveBus, Source};
use crate::knowledge::NoAnswerPolicy;
use crate::storage::{OutletId, Store, TenantId};
use crate::whatsapp::sender::SenderHandle;

/// A passage retrieved from a tenant's knowledge base for a question.
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgePassage {
    pub document: String,
    pub chunk: String,
    /// The whole chunk (what the model reads).
    pub text: String,
    /// A sentence or two of it that best answer the question (what the offline responder says).
    /// Set on the best passage only.
    pub excerpt: String,
    /// Relevance, 0-1 (see `knowledge::retrieve`).
    pub score: f32,
    /// Whether the match is strong enough for the offline responder to answer with it alone.
    pub confident: bool,
}

impl KnowledgePassage {
    pub fn to_source(&self) -> Source {
        Source {
            document: self.document.clone(),
            chunk: self.chunk.clone(),
            score: self.score,
        }
    }
}

pub type RetrieveFuture<'a> = Pin<Box<dyn Future<Output = Vec<KnowledgePassage>> + Send + 'a>>;

/// Where answers come from. The knowledge service implements it; retrieval is always scoped to
/// the tenant (and the conversation's outlet) it is given. Async because it embeds the question
/// (CPU work, run off the async threads by the implementation).
pub trait KnowledgeRetriever: Send + Sync + 'static {
    /// Passages above the minimum score, best first; empty when nothing relevant is known.
    fn retrieve<'a>(
        &'a self,
        tenant: TenantId,
        outlet: Option<OutletId>,
        question: &'a str,
    ) -> RetrieveFuture<'a>;

    /// What to do when nothing relevant is found (a per-tenant setting).
    fn no_answer_policy(&self, tenant: TenantId) -> NoAnswerPolicy;
}

/// The assistant service. Cheap to clone.
#[derive(Clone)]
pub struct Assistant {
    pub store: Store,
    pub llm: Option<Arc<llm::LlmClient>>,
    pub knowledge: Option<Arc<dyn KnowledgeRetriever>>,
    pub sender: SenderHandle,
    pub live: LiveBus,
    pub history_messages: usize,
    pub max_tool_rounds: u32,
    /// Meter replies against the tenant's plan (off only to measure what metering costs).
    pub metering: bool,
}
