//! Handoff routing: a handed-off conversation goes to an online agent of its outlet (round robin
//! within each agent's capacity), else waits in the outlet's queue until one is free. Every
//! routing change happens in the commit of the state change that causes it (handoff, close,
//! hand back, presence), so a crash never leaves a conversation both queued and assigned.
//!
//! Agents here are only what routing needs (user id, outlets, capacity, online); people and
//! roles belong to the people service, which calls this API with its user ids.

pub mod agents;
mod api;
pub mod hours;
pub mod routes;
pub mod settings;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::model::{Conversation, ConversationState, CONVERSATIONS};
use crate::assistant::language::{self, Lang};
use crate::storage::collections as tags;
use crate::storage::{
    Collection, ConversationId, OutletId, Record, StoreError, TenantId, TenantRead, TenantWrite,
    WriteCtx,
};
pub use api::*;
pub use hours::{availability, Availability, BusinessHours, HOURS};
pub use settings::{RoutingSettings, SETTINGS, SETTINGS_KEY};

#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{message}")]
    Rejected { code: &'static str, message: String },
    #[error(transparent)]
    Store(StoreError),
}

impl RoutingError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        RoutingError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            RoutingError::NotFound(_) => "not_found",
            RoutingError::Invalid { .. } => "invalid_input",
            RoutingError::Rejected { code, .. } => code,
            RoutingError::Store(e) => e.code(),
        }
    }

    fn reject(self) -> StoreError {
        StoreError::rejected(self.code(), self.to_string())
    }
}

impl From<StoreError> for RoutingError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rejected { code, message } => RoutingError::Rejected { code, message },
            other => RoutingError::Store(other),
        }
    }
}

/// A conversation waiting for an agent. Key: outlet (or zeros) | since (ms, BE) | conversation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueueEntry {
    pub conversation: ConversationId,
    pub outlet: Option<OutletId>,
    pub since_ms: i64,
}

impl Record for QueueEntry {
    const VERSION: u16 = 1;
    const NAME: &'static str = "queued conversation";
}

pub const QUEUE: Collection<QueueEntry> = Collection::new(tags::ROUTING_QUEUE);

fn queue_key(outlet: Option<OutletId>, since_ms: i64, conversation: ConversationId) -> Vec<u8> {
    let mut key = hours::hours_key(outlet).to_vec();
    key.extend_from_slice(&(since_ms.max(0) as u64).to_be_bytes());
    key.extend_from_slice(conversation.as_bytes());
    key
}

/// Where a handoff went.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "routed", rename_all = "snake_case")]
pub enum Routed {
    Assigned { agent: String },
    Queued,
}

/// Sends a conversation that needs a person to the next agent in line, or to its outlet's queue.
/// The caller saves `c`.
pub fn route(
    t: &mut TenantWrite<'_, '_>,
    c: &mut Conversation,
    now_ms: i64,
) -> Result<Routed, StoreError> {
    leave(t, c)?;
    match agents::next_in_line(t, c.outlet)? {
        Some(agent) => {
            agents::take(t, &agent.user, c.id, now_ms)?;
            c.assigned_agent = Some(agent.user.clone());
            Ok(Routed::Assigned { agent: agent.user })
        }
        None => {
            enqueue(t, c, now_ms)?;
            Ok(Routed::Queued)
        }
    }
}

fn enqueue(t: &mut TenantWrite<'_, '_>, c: &Conversation, now_ms: i64) -> Result<(), StoreError> {
    t.put(
        &QUEUE,
        &queue_key(c.outlet, now_ms, c.id),
        &QueueEntry {
            conversation: c.id,
            outlet: c.outlet,
            since_ms: now_ms,
        },
    )
}

/// Removes the conversation from its outlet's queue (it is being handled, or needs nobody).
pub fn dequeue(t: &mut TenantWrite<'_, '_>, c: &Conversation) -> Result<bool, StoreError> {
    let prefix = hours::hours_key(c.outlet);
    let found = t
        .scan(&QUEUE, &prefix, false, usize::MAX)?
        .into_iter()
        .find(|(_, e)| e.conversation == c.id);
    match found {
        Some((key, _)) => t.delete(&QUEUE, &key),
        None => Ok(false),
    }
}

/// The conversation needs no routing any more (closed, back with the assistant): frees its
/// agent's slot and its place in the queue. The caller saves `c`.
pub fn leave(
    t: &mut TenantWrite<'_, '_>,
    c: &mut Conversation,
) -> Result<Option<String>, StoreError> {
    let released = c.assigned_agent.take();
    if let Some(user) = &released {
        agents::give_back(t, user, c.id)?;
    }
    dequeue(t, c)?;
    Ok(released)
}

/// A person took `c` over. When they are an agent it is theirs now, in their slot; the slot of
/// whoever it was routed to goes to the oldest waiting conversation. Returns the conversations
/// (besides `c`) whose assignment changed. The caller saves `c`.
pub fn taken_by(
    t: &mut TenantWrite<'_, '_>,
    c: &mut Conversation,
    user: &str,
    now_ms: i64,
) -> Result<Vec<ConversationId>, StoreError> {
    if c.assigned_agent.as_deref() == Some(user)
        || t.get(&agents::AGENTS, user.as_bytes())?.is_none()
    {
        return Ok(Vec::new());
    }
    leave(t, c)?;
    agents::take(t, user, c.id, now_ms)?;
    c.assigned_agent = Some(user.to_string());
    drain(t, now_ms)
}

/// Gives queued conversations to agents with room, oldest first. Runs in every commit that may
/// free room (close, hand back, an agent coming online or taking more). Returns the
/// conversations it assigned.
pub fn drain(t: &mut TenantWrite<'_, '_>, now_ms: i64) -> Result<Vec<ConversationId>, StoreError> {
    let mut assigned = Vec::new();
    if !agents::all(t)?.iter().any(|a| a.online && a.capacity > 0) {
        return Ok(assigned);
    }
    let mut entries = t.scan(&QUEUE, &[], false, usize::MAX)?;
    entries.sort_by_key(|(_, e)| e.since_ms);
    for (key, entry) in entries {
        let current = t.get(&CONVERSATIONS, entry.conversation.as_bytes())?;
        let Some(mut c) = current
            .filter(|c| c.state == ConversationState::PendingHuman && c.assigned_agent.is_none())
        else {
            // Stale: closed, taken or handed back without passing through here.
            t.delete(&QUEUE, &key)?;
            continue;
        };
        let Some(agent) = agents::next_in_line(t, c.outlet)? else {
            continue;
        };
        agents::take(t, &agent.user, c.id, now_ms)?;
        c.assigned_agent = Some(agent.user);
        // Through the feed: open dashboards see the assignment at once.
        crate::conversations::feed::put_conversation(t, &c)?;
        t.delete(&QUEUE, &key)?;
        assigned.push(c.id);
    }
    Ok(assigned)
}

/// Routing settings of a tenant (defaults when never set).
pub fn settings_in(t: &TenantRead<'_>) -> Result<RoutingSettings, StoreError> {
    Ok(t.get(&SETTINGS, SETTINGS_KEY)?.unwrap_or_default())
}

pub fn settings_of(t: &TenantWrite<'_, '_>) -> Result<RoutingSettings, StoreError> {
    Ok(t.get(&SETTINGS, SETTINGS_KEY)?.unwrap_or_default())
}

/// The hours that apply to a conversation of `outlet`: the outlet's own, else the tenant's
/// default, else none (always open).
pub fn hours_for(
    t: &TenantWrite<'_, '_>,
    outlet: Option<OutletId>,
) -> Result<Option<BusinessHours>, StoreError> {
    if outlet.is_some() {
        if let Some(h) = t.get(&HOURS, &hours::hours_key(outlet))? {
            return Ok(Some(h));
        }
    }
    t.get(&HOURS, &hours::hours_key(None))
}

/// What to tell a customer whose handoff found nobody online, if the team is away: when it will
/// answer (outside business hours, in the tenant's time zone), or None when within hours.
pub fn away_notice(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    c: &Conversation,
    lang: Lang,
) -> Result<Option<String>, StoreError> {
    let tz = ctx
        .operator()
        .get(&crate::tenants::TENANTS, tenant.as_bytes())?
        .and_then(|t| TimeZone::get(&t.time_zone).ok())
        .unwrap_or(TimeZone::UTC);
    let hours = hours_for(&ctx.tenant(tenant), c.outlet)?;
    let now = Timestamp::now();
    Ok(match availability(hours.as_ref(), now, &tz) {
        Availability::Open => None,
        Availability::ClosedUntil(opens) => {
            Some(language::closed_notice(lang, &opens, &now.to_zoned(tz)))
        }
        Availability::Closed => Some(language::closed_notice_no_hours(lang).to_string()),
    })
}

#[cfg(test)]
mod tests;
