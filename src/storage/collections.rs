//! The one place collection tags are allocated, so two modules can never share a key space.
//! Each module declares its own typed `Collection` with one of these tags. Never reuse a retired tag.

// Tenant-owned collections (keys: tenant id | tag | suffix).
pub const TENANT_SETTINGS: u8 = 1;
pub const OUTLETS: u8 = 2;
pub const CHANNELS: u8 = 3;
pub const CONTACTS: u8 = 4;
pub const CONVERSATIONS: u8 = 5;
pub const OPEN_CONVERSATION_BY_CUSTOMER: u8 = 6;
pub const MESSAGES: u8 = 7;
pub const MESSAGE_BY_WAMID: u8 = 8;
pub const INBOUND_RECEIVED: u8 = 9;
pub const PENDING_TURNS: u8 = 10;
// Analytics (40-44): aggregates kept by the analytics consumer.
pub const ANALYTICS_DAYS: u8 = 40;
pub const ANALYTICS_CONVERSATIONS: u8 = 41;
pub const ANALYTICS_UNANSWERED: u8 = 42;
// Handoff routing (45-49, from the analytics range: one owner for both): agents, their load,
// the outlets' queues, business hours, settings.
pub const ROUTING_AGENTS: u8 = 45;
pub const ROUTING_LOAD: u8 = 46;
pub const ROUTING_QUEUE: u8 = 47;
pub const ROUTING_HOURS: u8 = 48;
pub const ROUTING_SETTINGS: u8 = 49;

pub const ALL_TENANT_TAGS: &[u8] = &[
    TENANT_SETTINGS,
    OUTLETS,
    CHANNELS,
    CONTACTS,
    CONVERSATIONS,
    OPEN_CONVERSATION_BY_CUSTOMER,
    MESSAGES,
    MESSAGE_BY_WAMID,
    INBOUND_RECEIVED,
    PENDING_TURNS,
    ANALYTICS_DAYS,
    ANALYTICS_CONVERSATIONS,
    ANALYTICS_UNANSWERED,
    ROUTING_AGENTS,
    ROUTING_LOAD,
    ROUTING_QUEUE,
    ROUTING_HOURS,
    ROUTING_SETTINGS,
];

// Global collections (operator path; keys: tag | suffix).
pub const GLOBAL_META_TAG: u8 = 0;
pub const TENANTS: u8 = 1;
pub const TENANT_BY_SLUG: u8 = 2;
pub const ROUTE_BY_PHONE_NUMBER_ID: u8 = 3;
pub const EVENT_QUEUE: u8 = 4;
pub const TURN_SCHEDULE: u8 = 5;
pub const VERIFY_TOKENS: u8 = 6;
pub const DEAD_LETTERS: u8 = 7;

pub const ALL_GLOBAL_TAGS: &[u8] = &[
    GLOBAL_META_TAG,
    TENANTS,
    TENANT_BY_SLUG,
    ROUTE_BY_PHONE_NUMBER_ID,
    EVENT_QUEUE,
    TURN_SCHEDULE,
    VERIFY_TOKENS,
    DEAD_LETTERS,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_unique() {
        for tags in [ALL_TENANT_TAGS, ALL_GLOBAL_TAGS] {
            let mut sorted = tags.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), tags.len());
        }
    }
}
