//! Retrieval, prompt, generation, tools and guardrails: the bot turn.

pub mod intent;
pub mod language;
pub mod llm;
pub mod turn;

use std::sync::Arc;

use crate::conversations::{LiveBus, Source};
use crate::storage::{OutletId, Store, TenantId};
use crate::whatsapp::sender::SenderHandle;

/// A passage retrieved from a tenant's knowledge base for a question.
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgePassage {
    pub document: String,
    pub chunk: String,
    pub text: String,
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

/// Where answers come from. The knowledge service implements it; retrieval is always scoped to
/// the tenant (and the conversation's outlet) it is given.
pub trait KnowledgeRetriever: Send + Sync + 'static {
    fn retrieve(
        &self,
        tenant: TenantId,
        outlet: Option<OutletId>,
        question: &str,
    ) -> Vec<KnowledgePassage>;
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
