//! Per-tenant retention of conversations (and, through a hook, documents), and erasure of one
//! customer's data on request. Both delete the same things for a conversation: its messages, the
//! wamid index and the webhook dedupe markers of those messages, its pending turn, its open-pointer;
//! erasure also removes the contact and any queued or parked event about the customer. Search
//! indexes and analytics are told through [`DataHooks`]. Each erasure writes an audit record, in
//! the same commit, without the customer's number (only a keyed hash of it).

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::conversations::turns::{schedule_key, TURN_SCHEDULE};
use crate::conversations::{
    open_key, Conversation, CONTACTS, CONVERSATIONS, MESSAGES, MESSAGE_BY_WAMID, OPEN_CONVERSATION,
    PENDING_TURNS,
};
use crate::events::{EventPayload, DEAD_LETTERS, EVENT_QUEUE};
use crate::storage::collections as tags;
use crate::storage::{
    Collection, ConversationId, GlobalCollection, Record, Store, StoreError, TenantId, TenantWrite,
    WriteCtx,
};
use crate::whatsapp::ingress::RECEIVED;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// Conversations deleted per commit by the sweep (bounded transactions).
const SWEEP_BATCH: usize = 200;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RetentionPolicy {
    /// Conversations whose last message is older than this many days are deleted. None: kept.
    pub conversation_days: Option<u32>,
    /// Documents older than this are deleted (by the knowledge service, through its hook).
    pub document_days: Option<u32>,
}

impl Record for RetentionPolicy {
    const VERSION: u16 = 1;
    const NAME: &'static str = "retention policy";
}

pub const RETENTION: Collection<RetentionPolicy> = Collection::new(tags::RETENTION_POLICY);
const POLICY_KEY: &[u8] = b"policy";

/// An operations audit record. The audit log (people and roles) takes these over; until then they
/// are listed by `GET /api/v1/ops/audit`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditRecord {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub tenant: Option<TenantId>,
    /// What the action was about, without personal data (e.g. a hash of the customer's number).
    pub subject: String,
    pub detail: serde_json::Value,
}

impl Record for AuditRecord {
    const VERSION: u16 = 1;
    const NAME: &'static str = "audit record";
}

pub const AUDIT: GlobalCollection<AuditRecord> = GlobalCollection::new(tags::OPS_AUDIT);

fn audit_key(at_ms: i64) -> Vec<u8> {
    let mut key = at_ms.to_be_bytes().to_vec();
    key.extend_from_slice(uuid::Uuid::now_v7().as_bytes());
    key
}

pub fn write_audit(ctx: &mut WriteCtx<'_>, record: &AuditRecord) -> Result<(), StoreError> {
    ctx.operator().put(&AUDIT, &audit_key(record.at_ms), record)
}

pub fn list_audit(store: &Store, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
    store.read(|r| {
        Ok(r.operator()
            .scan(&AUDIT, &[], true, limit)?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    })
}

/// What other services must forget when data goes (search indexes, analytics detail, documents).
pub trait DataHooks: Send + Sync {
    /// One customer's data was erased from storage; `conversations` were theirs.
    fn customer_erased(&self, tenant: TenantId, wa_id: &str, conversations: &[ConversationId]);
    /// Conversations were deleted by retention.
    fn conversations_expired(&self, tenant: TenantId, conversations: &[ConversationId]) {
        let _ = (tenant, conversations);
    }
    /// The tenant's documents older than `before_ms` are due for deletion.
    fn documents_expired(&self, tenant: TenantId, before_ms: i64) {
        let _ = (tenant, before_ms);
    }
}

#[derive(Clone, Default)]
pub struct HookRegistry {
    hooks: Arc<RwLock<Vec<Arc<dyn DataHooks>>>>,
}

impl HookRegistry {
    pub fn register(&self, hook: Arc<dyn DataHooks>) {
        if let Ok(mut h) = self.hooks.write() {
            h.push(hook);
        }
    }
    fn each(&self, f: impl Fn(&dyn DataHooks)) {
        if let Ok(h) = self.hooks.read() {
            for hook in h.iter() {
                f(hook.as_ref());
            }
        }
    }
}

pub fn get_policy(store: &Store, tenant: TenantId) -> Result<RetentionPolicy, StoreError> {
    Ok(store
        .read(|r| r.tenant(tenant).get(&RETENTION, POLICY_KEY))?
        .unwrap_or_default())
}

pub async fn set_policy(
    store: &Store,
    tenant: TenantId,
    policy: RetentionPolicy,
) -> Result<(), StoreError> {
    if policy.conversation_days == Some(0) || policy.document_days == Some(0) {
        return Err(StoreError::rejected(
            "invalid_input",
            "retention days must be at least 1 (leave it out to keep data)",
        ));
    }
    store
        .write(move |ctx| {
            ctx.tenant(tenant).put(&RETENTION, POLICY_KEY, &policy)?;
            write_audit(
                ctx,
                &AuditRecord {
                    at_ms: crate::events::now_ms(),
                    actor: "operator".into(),
                    action: "retention.set".into(),
                    tenant: Some(tenant),
                    subject: "retention policy".into(),
                    detail: serde_json::to_value(&policy).unwrap_or_default(),
                },
            )
        })
        .await
}

/// Deletes one conversation and everything that exists only because of it. Returns messages deleted.
fn delete_conversation(t: &mut TenantWrite<'_, '_>, c: &Conversation) -> Result<u64, StoreError> {
    let tenant = t.tenant();
    let messages = t.scan(&MESSAGES, c.id.as_bytes(), false, usize::MAX)?;
    for (suffix, m) in &messages {
        t.delete(&MESSAGES, suffix)?;
        if let Some(wamid) = &m.wamid {
            t.delete(&MESSAGE_BY_WAMID, wamid.as_bytes())?;
            t.delete(&RECEIVED, wamid.as_bytes())?;
            let status_prefix = format!("status:{wamid}:");
            for (key, _) in t.scan(&RECEIVED, status_prefix.as_bytes(), false, usize::MAX)? {
                t.delete(&RECEIVED, &key)?;
            }
        }
    }
    if let Some(pending) = t.get(&PENDING_TURNS, c.id.as_bytes())? {
        t.delete(&PENDING_TURNS, c.id.as_bytes())?;
        t.global()
            .delete(&TURN_SCHEDULE, &schedule_key(pending.due_ms, tenant, c.id))?;
    }
    let open = open_key(c.channel, &c.contact_wa_id);
    if t.get(&OPEN_CONVERSATION, &open)? == Some(c.id) {
        t.delete(&OPEN_CONVERSATION, &open)?;
    }
    t.delete(&CONVERSATIONS, c.id.as_bytes())?;
    Ok(messages.len() as u64)
}

fn event_concerns(payload: &EventPayload, wa_id: &str, conversations: &[ConversationId]) -> bool {
    match payload {
        EventPayload::InboundMessage { message, .. } => message.from == wa_id,
        EventPayload::InboundStatus { status, .. } => status.recipient_id == wa_id,
        EventPayload::OutgoingMessage { conversation, .. }
        | EventPayload::ConversationCompleted { conversation } => {
            conversations.contains(conversation)
        }
        _ => false,
    }
}

/// Hash of a customer's number under the tenant id: lets an operator confirm an erasure of a
/// number they know without the audit trail holding the number.
pub fn subject_hash(tenant: TenantId, wa_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update(wa_id.as_bytes());
    format!("sha256:{}", hex::encode(h.finalize()))
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ErasureReport {
    pub conversations: u64,
    pub messages: u64,
    pub contact: bool,
    pub events: u64,
    pub subject: String,
}

/// Erases everything stored about customer `wa_id` of `tenant`, in one commit with its audit record,
/// then tells the hooks (search indexes, analytics).
pub async fn erase_customer(
    store: &Store,
    hooks: &HookRegistry,
    tenant: TenantId,
    wa_id: &str,
    actor: &str,
) -> Result<ErasureReport, StoreError> {
    let wa_id = wa_id.trim().trim_start_matches('+').to_string();
    // A number, or the business-scoped user id WhatsApp gives when the number is withheld.
    if wa_id.is_empty()
        || wa_id.len() > 64
        || !wa_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    {
        return Err(StoreError::rejected(
            "invalid_input",
            "customer: a WhatsApp number (digits) or user id",
        ));
    }
    let (who, actor) = (wa_id.clone(), actor.to_string());
    let (report, conversations) = store
        .write(move |ctx| {
            let mut report = ErasureReport {
                subject: subject_hash(tenant, &who),
                ..ErasureReport::default()
            };
            let mut t = ctx.tenant(tenant);
            let theirs: Vec<Conversation> = t
                .scan(&CONVERSATIONS, &[], false, usize::MAX)?
                .into_iter()
                .map(|(_, c)| c)
                .filter(|c| c.contact_wa_id == who)
                .collect();
            for c in &theirs {
                report.messages += delete_conversation(&mut t, c)?;
                report.conversations += 1;
            }
            report.contact = t.delete(&CONTACTS, who.as_bytes())?;
            let ids: Vec<ConversationId> = theirs.iter().map(|c| c.id).collect();
            let mut op = ctx.operator();
            for (key, envelope) in op.scan(&EVENT_QUEUE, &[], false, usize::MAX)? {
                if envelope.tenant == tenant && event_concerns(&envelope.payload, &who, &ids) {
                    op.delete(&EVENT_QUEUE, &key)?;
                    report.events += 1;
                }
            }
            for (key, dead) in op.scan(&DEAD_LETTERS, &[], false, usize::MAX)? {
                if dead.envelope.tenant == tenant
                    && event_concerns(&dead.envelope.payload, &who, &ids)
                {
                    op.delete(&DEAD_LETTERS, &key)?;
                    report.events += 1;
                }
            }
            write_audit(
                ctx,
                &AuditRecord {
                    at_ms: crate::events::now_ms(),
                    actor: actor.clone(),
                    action: "customer.erase".into(),
                    tenant: Some(tenant),
                    subject: report.subject.clone(),
                    detail: serde_json::json!({
                        "conversations": report.conversations,
                        "messages": report.messages,
                        "contact": report.contact,
                        "events": report.events,
                    }),
                },
            )?;
            Ok((report, ids))
        })
        .await?;
    hooks.each(|h| h.customer_erased(tenant, &wa_id, &conversations));
    tracing::info!(tenant = %tenant, subject = %report.subject, conversations = report.conversations, messages = report.messages, "customer data erased");
    Ok(report)
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SweepReport {
    pub tenants: u64,
    pub conversations: u64,
    pub messages: u64,
    pub contacts: u64,
}

/// Applies every tenant's retention policy as of `now_ms`.
pub async fn sweep(
    store: &Store,
    hooks: &HookRegistry,
    now_ms: i64,
) -> Result<SweepReport, StoreError> {
    let mut report = SweepReport::default();
    let tenants = crate::tenants::list_tenants(store).map_err(|e| match e {
        crate::tenants::TenantError::Store(s) => s,
        other => StoreError::Io(other.to_string()),
    })?;
    for tenant in tenants {
        let policy = get_policy(store, tenant.id)?;
        if let Some(days) = policy.document_days {
            let before = now_ms - days as i64 * DAY_MS;
            hooks.each(|h| h.documents_expired(tenant.id, before));
        }
        let Some(days) = policy.conversation_days else {
            continue;
        };
        report.tenants += 1;
        let cutoff = now_ms - days as i64 * DAY_MS;
        let tenant_id = tenant.id;
        loop {
            let (conversations, messages, ids) = store
                .write(move |ctx| {
                    let mut t = ctx.tenant(tenant_id);
                    let old: Vec<Conversation> = t
                        .scan(&CONVERSATIONS, &[], false, usize::MAX)?
                        .into_iter()
                        .map(|(_, c)| c)
                        .filter(|c| c.last_message_ms < cutoff)
                        .take(SWEEP_BATCH)
                        .collect();
                    let mut messages = 0;
                    for c in &old {
                        messages += delete_conversation(&mut t, c)?;
                    }
                    let ids: Vec<ConversationId> = old.iter().map(|c| c.id).collect();
                    Ok((old.len() as u64, messages, ids))
                })
                .await?;
            report.conversations += conversations;
            report.messages += messages;
            if !ids.is_empty() {
                hooks.each(|h| h.conversations_expired(tenant_id, &ids));
            }
            if conversations < SWEEP_BATCH as u64 {
                break;
            }
        }
        // Contacts not seen since the cutoff and with no conversation left, and old dedupe markers.
        report.contacts += store
            .write(move |ctx| {
                let mut t = ctx.tenant(tenant_id);
                let still: std::collections::HashSet<String> = t
                    .scan(&CONVERSATIONS, &[], false, usize::MAX)?
                    .into_iter()
                    .map(|(_, c)| c.contact_wa_id)
                    .collect();
                let mut removed = 0;
                for (key, contact) in t.scan(&CONTACTS, &[], false, usize::MAX)? {
                    if contact.last_seen_ms < cutoff && !still.contains(&contact.wa_id) {
                        t.delete(&CONTACTS, &key)?;
                        removed += 1;
                    }
                }
                for (key, marker) in t.scan(&RECEIVED, &[], false, usize::MAX)? {
                    if marker.at_ms < cutoff {
                        t.delete(&RECEIVED, &key)?;
                    }
                }
                Ok(removed)
            })
            .await?;
    }
    if report.conversations > 0 {
        tracing::info!(
            conversations = report.conversations,
            messages = report.messages,
            contacts = report.contacts,
            "retention sweep deleted expired data"
        );
    }
    Ok(report)
}

/// Runs the sweep every `interval` until `stop` turns true.
pub async fn run_sweeper(
    store: Store,
    hooks: HookRegistry,
    interval: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        if let Err(e) = sweep(&store, &hooks, crate::events::now_ms()).await {
            tracing::error!(error = %e, "retention sweep failed; will try again");
        }
    }
}
