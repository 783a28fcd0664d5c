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
// billing: 35-39 (30-34 belong to people/auth)
pub const BILLING_SUBSCRIPTION: u8 = 35;
pub const BILLING_PERIOD_USAGE: u8 = 36;
pub const BILLING_QUOTA_WARNINGS: u8 = 37;
pub const BILLING_HOLDINGS: u8 = 38;
// People and roles (30-39).
pub const USERS: u8 = 30;
pub const API_KEYS: u8 = 31;
pub const INVITATIONS: u8 = 32;
pub const TENANT_AUDIT: u8 = 33;
/// Operations (50-59): a tenant's retention policy.
pub const RETENTION_POLICY: u8 = 50;

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
    BILLING_SUBSCRIPTION,
    BILLING_PERIOD_USAGE,
    BILLING_QUOTA_WARNINGS,
    BILLING_HOLDINGS,
    USERS,
    API_KEYS,
    INVITATIONS,
    TENANT_AUDIT,
    RETENTION_POLICY,
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
// billing: 38-39 (global 30-37 belong to people/auth)
pub const BILLING_PLANS: u8 = 39;
// People and roles (30-39).
/// Sign-in names (lower-cased emails) of operators and users.
pub const LOGINS: u8 = 30;
pub const OPERATORS: u8 = 31;
/// Sessions by hash of their token.
pub const SESSIONS: u8 = 32;
/// API keys by hash of their secret.
pub const API_KEY_INDEX: u8 = 33;
/// Invitations by hash of their token.
pub const INVITATION_INDEX: u8 = 34;
/// OIDC (issuer, subject) pairs linked to users.
pub const OIDC_LINKS: u8 = 35;
/// Failed sign-in counters by hash of the email.
pub const SIGN_IN_LOCKOUTS: u8 = 36;
/// Audit entries not owned by one tenant (operator actions, unknown sign-in names).
pub const GLOBAL_AUDIT: u8 = 37;
/// Operations (50-59): the minimal audit trail (erasures, restores) the audit log will absorb.
pub const OPS_AUDIT: u8 = 50;
/// Operations: the row `/readyz` writes to prove the store takes writes.
pub const OPS_PROBE: u8 = 51;

pub const ALL_GLOBAL_TAGS: &[u8] = &[
    GLOBAL_META_TAG,
    TENANTS,
    TENANT_BY_SLUG,
    ROUTE_BY_PHONE_NUMBER_ID,
    EVENT_QUEUE,
    TURN_SCHEDULE,
    VERIFY_TOKENS,
    DEAD_LETTERS,
    BILLING_PLANS,
    LOGINS,
    OPERATORS,
    SESSIONS,
    API_KEY_INDEX,
    INVITATION_INDEX,
    OIDC_LINKS,
    SIGN_IN_LOCKOUTS,
    GLOBAL_AUDIT,
    OPS_AUDIT,
    OPS_PROBE,
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
