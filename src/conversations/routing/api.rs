//! The routing API the people service, the dashboard and the HTTP routes call: agents and
//! their presence, the queue, manual assignment, settings and business hours. Each change
//! commits with the routing it causes and returns the conversations whose assignment changed,
//! so the caller can announce them live.

use serde::{Deserialize, Serialize};

use super::agents::{self, Agent, AGENTS, DEFAULT_CAPACITY, MAX_CAPACITY};
use super::hours::{self, BusinessHours, HOURS};
use super::settings::{RoutingSettings, SETTINGS, SETTINGS_KEY};
use super::{drain, enqueue, leave, route, settings_in, QueueEntry, RoutingError, QUEUE};
use crate::conversations::model::{Conversation, ConversationState, CONVERSATIONS};
use crate::storage::{ConversationId, OutletId, Store, StoreError, TenantId, TenantWrite};

/// An agent with its current load, as the API and dashboard show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AgentView {
    pub user: String,
    pub outlets: Vec<OutletId>,
    pub capacity: u32,
    pub online: bool,
    pub load: u32,
    pub conversations: Vec<ConversationId>,
    pub updated_at_ms: i64,
}

fn view(t: &TenantWrite<'_, '_>, a: Agent) -> Result<AgentView, StoreError> {
    let conversations = agents::held_by(t, &a.user)?;
    Ok(AgentView {
        load: conversations.len() as u32,
        conversations,
        user: a.user,
        outlets: a.outlets,
        capacity: a.capacity,
        online: a.online,
        updated_at_ms: a.updated_at_ms,
    })
}

/// A routing change and the conversations whose assignment it changed (for live updates).
#[derive(Debug, Clone, PartialEq)]
pub struct Changed<T> {
    pub value: T,
    pub conversations: Vec<ConversationId>,
}

/// What to change about an agent; absent fields keep their value (or the default for a new one).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentUpdate {
    pub outlets: Option<Vec<OutletId>>,
    pub capacity: Option<u32>,
    pub online: Option<bool>,
}

/// Creates or updates an agent. Going online or gaining room takes queued conversations; going
/// offline or leaving an outlet sends conversations not yet picked up to someone else (or back
/// to the queue). Conversations the agent already took over stay with them.
pub async fn update_agent(
    store: &Store,
    tenant: TenantId,
    user: &str,
    update: AgentUpdate,
) -> Result<Changed<AgentView>, RoutingError> {
    agents::validate_user(user)?;
    if let Some(c) = update.capacity {
        if c > MAX_CAPACITY {
            return Err(RoutingError::invalid(
                "capacity",
                format!("must be 0-{MAX_CAPACITY}"),
            ));
        }
    }
    let user = user.to_string();
    store
        .write(move |ctx| {
            let now = crate::events::now_ms();
            let mut t = ctx.tenant(tenant);
            if let Some(outlets) = &update.outlets {
                for o in outlets {
                    if !t.contains(&crate::tenants::OUTLETS, o.as_bytes())? {
                        return Err(RoutingError::NotFound(format!("outlet {o}")).reject());
                    }
                }
            }
            let mut agent = t.get(&AGENTS, user.as_bytes())?.unwrap_or(Agent {
                user: user.clone(),
                outlets: Vec::new(),
                capacity: DEFAULT_CAPACITY,
                online: false,
                last_assigned_seq: 0,
                updated_at_ms: now,
            });
            if let Some(outlets) = &update.outlets {
                let mut outlets = outlets.clone();
                outlets.sort();
                outlets.dedup();
                agent.outlets = outlets;
            }
            if let Some(c) = update.capacity {
                agent.capacity = c;
            }
            if let Some(online) = update.online {
                agent.online = online;
            }
            agent.updated_at_ms = now;
            t.put(&AGENTS, user.as_bytes(), &agent)?;
            let mut changed = reroute_unclaimed(&mut t, &agent, false, now)?;
            changed.extend(drain(&mut t, now)?);
            let value = view(&t, agent)?;
            Ok(Changed {
                value,
                conversations: changed,
            })
        })
        .await
        .map_err(RoutingError::from)
}

/// Shorthand for presence changes (the dashboard calls it as agents sign in and out).
pub async fn set_online(
    store: &Store,
    tenant: TenantId,
    user: &str,
    online: bool,
) -> Result<Changed<AgentView>, RoutingError> {
    update_agent(
        store,
        tenant,
        user,
        AgentUpdate {
            online: Some(online),
            ..AgentUpdate::default()
        },
    )
    .await
}

pub async fn set_capacity(
    store: &Store,
    tenant: TenantId,
    user: &str,
    capacity: u32,
) -> Result<Changed<AgentView>, RoutingError> {
    update_agent(
        store,
        tenant,
        user,
        AgentUpdate {
            capacity: Some(capacity),
            ..AgentUpdate::default()
        },
    )
    .await
}

/// Conversations routed to `agent` that it can no longer take (offline, outlet dropped, or the
/// agent removed) go to the next in line or back to the queue. With `all`, conversations the
/// agent already took over are released too (the agent is gone) and wait for a person again.
fn reroute_unclaimed(
    t: &mut TenantWrite<'_, '_>,
    agent: &Agent,
    all: bool,
    now_ms: i64,
) -> Result<Vec<ConversationId>, StoreError> {
    let mut changed = Vec::new();
    for id in agents::held_by(t, &agent.user)? {
        let Some(mut c) = t.get(&CONVERSATIONS, id.as_bytes())? else {
            agents::give_back(t, &agent.user, id)?;
            continue;
        };
        if c.assigned_agent.as_deref() != Some(agent.user.as_str())
            || c.state == ConversationState::Closed
        {
            // A stale slot (should not happen): free it.
            agents::give_back(t, &agent.user, id)?;
            continue;
        }
        let unclaimed = c.state == ConversationState::PendingHuman;
        let must_move = all || (unclaimed && (!agent.online || !agent.serves(c.outlet)));
        if !must_move {
            continue;
        }
        if c.state == ConversationState::Human {
            c.state = ConversationState::PendingHuman;
        }
        leave(t, &mut c)?;
        if c.state == ConversationState::PendingHuman {
            route(t, &mut c, now_ms)?;
        }
        // Through the feed: open dashboards see the assignment at once.
        crate::conversations::feed::put_conversation(t, &c)?;
        changed.push(c.id);
    }
    Ok(changed)
}

/// Removes an agent (the user left the team). What they held waits for someone else.
pub async fn remove_agent(
    store: &Store,
    tenant: TenantId,
    user: &str,
) -> Result<Vec<ConversationId>, RoutingError> {
    let user = user.to_string();
    store
        .write(move |ctx| {
            let mut t = ctx.tenant(tenant);
            if t.get(&AGENTS, user.as_bytes())?.is_none() {
                return Err(RoutingError::NotFound(format!("agent {user:?}")).reject());
            }
            retire_agent(&mut t, &user, crate::events::now_ms())
        })
        .await
        .map_err(RoutingError::from)
}

/// [`remove_agent`] in the caller's commit; nothing when `user` is no agent.
pub fn retire_agent(
    t: &mut TenantWrite<'_, '_>,
    user: &str,
    now_ms: i64,
) -> Result<Vec<ConversationId>, StoreError> {
    let Some(mut agent) = t.get(&AGENTS, user.as_bytes())? else {
        return Ok(Vec::new());
    };
    agent.online = false;
    t.put(&AGENTS, user.as_bytes(), &agent)?;
    let mut changed = reroute_unclaimed(t, &agent, true, now_ms)?;
    t.delete(&AGENTS, user.as_bytes())?;
    changed.extend(drain(t, now_ms)?);
    Ok(changed)
}

/// The people service changed a person, in its commit: someone who no longer works
/// conversations (disabled, deleted, made a viewer) stops being an agent; someone limited to
/// fewer outlets serves only those. Returns the conversations whose routing changed.
pub fn person_changed(
    t: &mut TenantWrite<'_, '_>,
    user: &str,
    works_conversations: bool,
    outlets: &[OutletId],
    now_ms: i64,
) -> Result<Vec<ConversationId>, StoreError> {
    if !works_conversations {
        return retire_agent(t, user, now_ms);
    }
    let Some(mut agent) = t.get(&AGENTS, user.as_bytes())? else {
        return Ok(Vec::new());
    };
    if outlets.is_empty() {
        return Ok(Vec::new());
    }
    let mut narrowed: Vec<OutletId> = agent
        .outlets
        .iter()
        .copied()
        .filter(|o| outlets.contains(o))
        .collect();
    if narrowed.is_empty() {
        narrowed = outlets.to_vec();
        narrowed.sort();
        narrowed.dedup();
    }
    if narrowed == agent.outlets {
        return Ok(Vec::new());
    }
    agent.outlets = narrowed;
    agent.updated_at_ms = now_ms;
    t.put(&AGENTS, user.as_bytes(), &agent)?;
    let mut changed = reroute_unclaimed(t, &agent, false, now_ms)?;
    changed.extend(drain(t, now_ms)?);
    Ok(changed)
}

pub fn list_agents(store: &Store, tenant: TenantId) -> Result<Vec<AgentView>, RoutingError> {
    Ok(store.read(|r| {
        let t = r.tenant(tenant);
        t.scan(&AGENTS, &[], false, usize::MAX)?
            .into_iter()
            .map(|(_, a)| {
                let conversations = agents::held_by_read(&t, &a.user)?;
                Ok(AgentView {
                    load: conversations.len() as u32,
                    conversations,
                    user: a.user,
                    outlets: a.outlets,
                    capacity: a.capacity,
                    online: a.online,
                    updated_at_ms: a.updated_at_ms,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()
    })?)
}

pub fn get_agent(store: &Store, tenant: TenantId, user: &str) -> Result<AgentView, RoutingError> {
    list_agents(store, tenant)?
        .into_iter()
        .find(|a| a.user == user)
        .ok_or_else(|| RoutingError::NotFound(format!("agent {user:?}")))
}

/// Conversations waiting for an agent, oldest first (optionally of one outlet).
pub fn queue(
    store: &Store,
    tenant: TenantId,
    outlet: Option<Option<OutletId>>,
) -> Result<Vec<QueueEntry>, RoutingError> {
    let prefix = match outlet {
        Some(o) => hours::hours_key(o).to_vec(),
        None => Vec::new(),
    };
    let mut entries: Vec<QueueEntry> = store
        .read(|r| r.tenant(tenant).scan(&QUEUE, &prefix, false, usize::MAX))?
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    entries.sort_by_key(|e| e.since_ms);
    Ok(entries)
}

/// An admin assigns a handed-off conversation to an agent (any capacity: a person decided), or
/// with `None` puts it back in its outlet's queue.
pub async fn assign(
    store: &Store,
    tenant: TenantId,
    conversation: ConversationId,
    agent: Option<String>,
) -> Result<Changed<Conversation>, RoutingError> {
    if let Some(a) = &agent {
        agents::validate_user(a)?;
    }
    store
        .write(move |ctx| {
            let now = crate::events::now_ms();
            let mut t = ctx.tenant(tenant);
            let Some(mut c) = t.get(&CONVERSATIONS, conversation.as_bytes())? else {
                return Err(
                    RoutingError::NotFound(format!("conversation {conversation}")).reject(),
                );
            };
            if !matches!(
                c.state,
                ConversationState::PendingHuman | ConversationState::Human
            ) {
                return Err(StoreError::rejected(
                    "conflict",
                    format!(
                        "the conversation is {}: only a handed-off conversation is assigned",
                        c.state.as_str()
                    ),
                ));
            }
            if let Some(user) = &agent {
                if t.get(&AGENTS, user.as_bytes())?.is_none() {
                    return Err(RoutingError::NotFound(format!("agent {user:?}")).reject());
                }
            }
            let mut changed = vec![c.id];
            leave(&mut t, &mut c)?;
            match &agent {
                Some(user) => {
                    agents::take(&mut t, user, c.id, now)?;
                    c.assigned_agent = Some(user.clone());
                }
                None if c.state == ConversationState::PendingHuman => enqueue(&mut t, &c, now)?,
                None => {}
            }
            // Through the feed: open dashboards see the assignment at once.
            crate::conversations::feed::put_conversation(&mut t, &c)?;
            changed.extend(drain(&mut t, now)?);
            Ok(Changed {
                value: c,
                conversations: changed,
            })
        })
        .await
        .map_err(RoutingError::from)
}

pub fn settings(store: &Store, tenant: TenantId) -> Result<RoutingSettings, RoutingError> {
    Ok(store.read(|r| settings_in(&r.tenant(tenant)))?)
}

pub async fn set_settings(
    store: &Store,
    tenant: TenantId,
    new: RoutingSettings,
) -> Result<RoutingSettings, RoutingError> {
    new.validate()
        .map_err(|reason| RoutingError::invalid("settings", reason))?;
    store
        .write(move |ctx| ctx.tenant(tenant).put(&SETTINGS, SETTINGS_KEY, &new))
        .await?;
    Ok(new)
}

fn check_outlet(
    store: &Store,
    tenant: TenantId,
    outlet: Option<OutletId>,
) -> Result<(), RoutingError> {
    if let Some(o) = outlet {
        let exists = store.read(|r| {
            r.tenant(tenant)
                .contains(&crate::tenants::OUTLETS, o.as_bytes())
        })?;
        if !exists {
            return Err(RoutingError::NotFound(format!("outlet {o}")));
        }
    }
    Ok(())
}

/// Business hours of an outlet (None: the tenant's default), exactly as set.
pub fn business_hours(
    store: &Store,
    tenant: TenantId,
    outlet: Option<OutletId>,
) -> Result<Option<BusinessHours>, RoutingError> {
    check_outlet(store, tenant, outlet)?;
    Ok(store.read(|r| r.tenant(tenant).get(&HOURS, &hours::hours_key(outlet)))?)
}

/// Sets (or with `None` removes) the business hours of an outlet or the tenant's default.
pub async fn set_business_hours(
    store: &Store,
    tenant: TenantId,
    outlet: Option<OutletId>,
    hours: Option<BusinessHours>,
) -> Result<Option<BusinessHours>, RoutingError> {
    check_outlet(store, tenant, outlet)?;
    let hours = hours
        .map(|h| h.normalize())
        .transpose()
        .map_err(|(field, reason)| RoutingError::invalid(field, reason))?;
    let stored = hours.clone();
    store
        .write(move |ctx| {
            let mut t = ctx.tenant(tenant);
            match &stored {
                Some(h) => t.put(&HOURS, &hours::hours_key(outlet), h),
                None => t.delete(&HOURS, &hours::hours_key(outlet)).map(|_| ()),
            }
        })
        .await?;
    Ok(hours)
}
