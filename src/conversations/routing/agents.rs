//! Agents as routing sees them: a user id (owned by the people service), the outlets they serve,
//! how many conversations they can hold at once, and whether they are online. Their load is not a
//! counter but one row per held conversation, so it can never drift from the assignments.

use serde::{Deserialize, Serialize};

use super::RoutingError;
use crate::storage::collections as tags;
use crate::storage::{
    Collection, ConversationId, OutletId, Record, StoreError, TenantRead, TenantWrite,
};

/// Default number of conversations an agent holds at once.
pub const DEFAULT_CAPACITY: u32 = 5;
/// An agent's capacity is bounded so a typo cannot route a whole queue to one person.
pub const MAX_CAPACITY: u32 = 200;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Agent {
    /// The people service's user id.
    pub user: String,
    /// Outlets this agent serves; empty means every outlet.
    pub outlets: Vec<OutletId>,
    /// Most conversations routed to this agent at once.
    pub capacity: u32,
    pub online: bool,
    /// Round-robin position: the agent with the smallest value is next in line.
    pub last_assigned_seq: u64,
    pub updated_at_ms: i64,
}

impl Record for Agent {
    const VERSION: u16 = 1;
    const NAME: &'static str = "routing agent";
}

impl Agent {
    /// Whether this agent serves conversations of `outlet` (None: a channel without an outlet).
    pub fn serves(&self, outlet: Option<OutletId>) -> bool {
        match outlet {
            Some(o) => self.outlets.is_empty() || self.outlets.contains(&o),
            None => true,
        }
    }
}

/// One conversation an agent holds (its key is user | 0 | conversation).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Held {
    pub since_ms: i64,
}

impl Record for Held {
    const VERSION: u16 = 1;
    const NAME: &'static str = "held conversation";
}

pub const AGENTS: Collection<Agent> = Collection::new(tags::ROUTING_AGENTS);
pub const LOAD: Collection<Held> = Collection::new(tags::ROUTING_LOAD);

pub fn validate_user(user: &str) -> Result<(), RoutingError> {
    let ok = !user.is_empty()
        && user.len() <= 128
        && !user
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '/');
    if ok {
        Ok(())
    } else {
        Err(RoutingError::invalid(
            "user",
            "must be 1-128 characters without spaces, slashes or control characters",
        ))
    }
}

/// The load rows of one agent start with this prefix; the 0 byte ends the user id (user ids hold
/// no control characters), so "ana" never sees the rows of "anabel".
fn load_prefix(user: &str) -> Vec<u8> {
    let mut key = user.as_bytes().to_vec();
    key.push(0);
    key
}

pub fn load_key(user: &str, conversation: ConversationId) -> Vec<u8> {
    let mut key = load_prefix(user);
    key.extend_from_slice(conversation.as_bytes());
    key
}

fn ids_of(rows: Vec<(Vec<u8>, Held)>) -> Vec<ConversationId> {
    rows.into_iter()
        .filter_map(|(key, _)| ConversationId::from_slice(key.get(key.len().checked_sub(16)?..)?))
        .collect()
}

/// Conversations an agent holds now.
pub fn held_by(t: &TenantWrite<'_, '_>, user: &str) -> Result<Vec<ConversationId>, StoreError> {
    Ok(ids_of(t.scan(
        &LOAD,
        &load_prefix(user),
        false,
        usize::MAX,
    )?))
}

/// [`held_by`] on a read snapshot (API views).
pub fn held_by_read(t: &TenantRead<'_>, user: &str) -> Result<Vec<ConversationId>, StoreError> {
    Ok(ids_of(t.scan(
        &LOAD,
        &load_prefix(user),
        false,
        usize::MAX,
    )?))
}

pub fn load_of(t: &TenantWrite<'_, '_>, user: &str) -> Result<u32, StoreError> {
    Ok(t.scan(&LOAD, &load_prefix(user), false, usize::MAX)?.len() as u32)
}

pub fn all(t: &TenantWrite<'_, '_>) -> Result<Vec<Agent>, StoreError> {
    Ok(t.scan(&AGENTS, &[], false, usize::MAX)?
        .into_iter()
        .map(|(_, a)| a)
        .collect())
}

/// The next agent in line for a conversation of `outlet`: online, serving the outlet, below
/// capacity; among them the one assigned least recently (round robin), ties by user id.
pub fn next_in_line(
    t: &TenantWrite<'_, '_>,
    outlet: Option<OutletId>,
) -> Result<Option<Agent>, StoreError> {
    let mut best: Option<Agent> = None;
    for agent in all(t)? {
        if !agent.online || !agent.serves(outlet) || agent.capacity == 0 {
            continue;
        }
        if load_of(t, &agent.user)? >= agent.capacity {
            continue;
        }
        let better = match &best {
            None => true,
            Some(b) => (agent.last_assigned_seq, &agent.user) < (b.last_assigned_seq, &b.user),
        };
        if better {
            best = Some(agent);
        }
    }
    Ok(best)
}

/// Records that `user` holds `conversation` and moves the agent to the back of the line.
pub fn take(
    t: &mut TenantWrite<'_, '_>,
    user: &str,
    conversation: ConversationId,
    now_ms: i64,
) -> Result<(), StoreError> {
    let last = all(t)?
        .iter()
        .map(|a| a.last_assigned_seq)
        .max()
        .unwrap_or(0);
    if let Some(mut agent) = t.get(&AGENTS, user.as_bytes())? {
        agent.last_assigned_seq = last + 1;
        t.put(&AGENTS, user.as_bytes(), &agent)?;
    }
    t.put(
        &LOAD,
        &load_key(user, conversation),
        &Held { since_ms: now_ms },
    )
}

pub fn give_back(
    t: &mut TenantWrite<'_, '_>,
    user: &str,
    conversation: ConversationId,
) -> Result<(), StoreError> {
    t.delete(&LOAD, &load_key(user, conversation))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_checked() {
        assert!(validate_user("user_01HZX").is_ok());
        assert!(validate_user("ana@example.com").is_ok());
        for bad in ["", "a b", "a/b", "a\0b", &"x".repeat(129)] {
            assert!(validate_user(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_agent_without_outlets_serves_all() {
        let o = OutletId::new();
        let mut a = Agent {
            user: "ana".into(),
            outlets: vec![],
            capacity: 1,
            online: true,
            last_assigned_seq: 0,
            updated_at_ms: 0,
        };
        assert!(a.serves(Some(o)) && a.serves(None));
        a.outlets = vec![OutletId::new()];
        assert!(!a.serves(Some(o)) && a.serves(None));
    }

    #[test]
    fn load_keys_of_one_user_never_prefix_another() {
        let c = ConversationId::new();
        assert!(!load_key("anabel", c).starts_with(&load_prefix("ana")));
    }
}
