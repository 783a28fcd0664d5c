//! Contacts, conversations and messages; bot/human state, handoff; the debounced bot turn.

pub mod actions;
pub mod inbound;
pub mod model;
pub mod routes;
pub mod turns;

use serde::Serialize;
use tokio::sync::broadcast;

pub use model::*;

use crate::storage::{ConversationId, Store, StoreError, TenantId};

/// What changed, announced after the commit to whoever watches live (dashboard, simulator).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LiveUpdate {
    pub tenant: TenantId,
    pub conversation: ConversationId,
    pub what: &'static str,
}

impl LiveUpdate {
    pub fn message(tenant: TenantId, conversation: ConversationId) -> Self {
        Self {
            tenant,
            conversation,
            what: "message",
        }
    }
    pub fn status(tenant: TenantId, conversation: ConversationId) -> Self {
        Self {
            tenant,
            conversation,
            what: "status",
        }
    }
    pub fn state(tenant: TenantId, conversation: ConversationId) -> Self {
        Self {
            tenant,
            conversation,
            what: "state",
        }
    }
}

/// In-process fan-out of live updates. Lossy by design: a slow watcher misses notifications and
/// re-reads the store (the store, not this bus, is the truth).
#[derive(Clone)]
pub struct LiveBus {
    tx: broadcast::Sender<LiveUpdate>,
}

impl Default for LiveBus {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self { tx }
    }
}

impl LiveBus {
    pub fn publish(&self, update: LiveUpdate) {
        let _ = self.tx.send(update);
    }
    pub fn subscribe(&self) -> broadcast::Receiver<LiveUpdate> {
        self.tx.subscribe()
    }
}

/// Conversations of a tenant, newest activity first.
pub fn list_conversations(
    store: &Store,
    tenant: TenantId,
    state: Option<ConversationState>,
    limit: usize,
) -> Result<Vec<Conversation>, StoreError> {
    let mut all: Vec<Conversation> = store
        .read(|r| {
            r.tenant(tenant)
                .scan(&CONVERSATIONS, &[], false, usize::MAX)
        })?
        .into_iter()
        .map(|(_, c)| c)
        .filter(|c| state.is_none_or(|s| c.state == s))
        .collect();
    all.sort_by_key(|c| std::cmp::Reverse(c.last_message_ms));
    all.truncate(limit);
    Ok(all)
}

pub fn get_conversation(
    store: &Store,
    tenant: TenantId,
    conversation: ConversationId,
) -> Result<Option<Conversation>, StoreError> {
    store.read(|r| {
        r.tenant(tenant)
            .get(&CONVERSATIONS, conversation.as_bytes())
    })
}

/// The newest `limit` messages of a conversation, oldest first.
pub fn recent_messages(
    store: &Store,
    tenant: TenantId,
    conversation: ConversationId,
    limit: usize,
) -> Result<Vec<Message>, StoreError> {
    let mut rows = store.read(|r| {
        r.tenant(tenant)
            .scan(&MESSAGES, conversation.as_bytes(), true, limit)
    })?;
    rows.reverse();
    Ok(rows.into_iter().map(|(_, m)| m).collect())
}

/// The open conversation of a customer on a channel, if any.
pub fn open_conversation_of(
    store: &Store,
    tenant: TenantId,
    channel: crate::storage::ChannelId,
    wa_id: &str,
) -> Result<Option<Conversation>, StoreError> {
    store.read(|r| {
        let t = r.tenant(tenant);
        match t.get(&OPEN_CONVERSATION, &open_key(channel, wa_id))? {
            Some(id) => Ok(t
                .get(&CONVERSATIONS, id.as_bytes())?
                .filter(|c| c.state != ConversationState::Closed)),
            None => Ok(None),
        }
    })
}
