//! What agents add to conversations: labels, private notes, template messages, and the tenant's
//! canned responses. Each change is committed with its live-feed entry. (Who a conversation is
//! assigned to is routing's: `Conversation::assigned_agent`.)

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::actions::{add_note, queue_outbound};
use super::feed::{append, put_conversation, FeedKind};
use super::model::*;
use crate::storage::collections as tags;
use crate::storage::{Collection, ConversationId, Record, Store, StoreError, TenantId};
use crate::whatsapp::outbound::OutboundContent;

/// Rows written before assignment moved to routing also hold an `assignee` (a display name);
/// it is ignored on reading and dropped on the next write.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ConversationExtras {
    #[serde(default)]
    pub labels: Vec<String>,
}

impl Record for ConversationExtras {
    const VERSION: u16 = 1;
    const NAME: &'static str = "conversation extras";
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CannedResponse {
    /// Typed as `/shortcut` in the reply box.
    pub shortcut: String,
    pub text: String,
}

impl Record for CannedResponse {
    const VERSION: u16 = 1;
    const NAME: &'static str = "canned response";
}

/// conversation → extras.
pub const EXTRAS: Collection<ConversationExtras> = Collection::new(tags::CONVERSATION_EXTRAS);
/// shortcut → canned response.
pub const CANNED: Collection<CannedResponse> = Collection::new(tags::CANNED_RESPONSES);

fn rejected(code: &'static str, msg: impl Into<String>) -> StoreError {
    StoreError::rejected(code, msg)
}

fn load_open(
    ctx: &mut crate::storage::WriteCtx<'_>,
    tenant: TenantId,
    conversation: ConversationId,
) -> Result<Conversation, StoreError> {
    let c = ctx
        .tenant(tenant)
        .get(&CONVERSATIONS, conversation.as_bytes())?
        .ok_or_else(|| {
            rejected(
                "not_found",
                format!("conversation {conversation} not found"),
            )
        })?;
    if c.state == ConversationState::Closed {
        return Err(rejected("conflict", "the conversation is closed"));
    }
    Ok(c)
}

pub fn extras_of(
    store: &Store,
    tenant: TenantId,
    conversation: ConversationId,
) -> Result<ConversationExtras, StoreError> {
    Ok(store
        .read(|r| r.tenant(tenant).get(&EXTRAS, conversation.as_bytes()))?
        .unwrap_or_default())
}

pub fn all_extras(
    store: &Store,
    tenant: TenantId,
) -> Result<HashMap<ConversationId, ConversationExtras>, StoreError> {
    Ok(store
        .read(|r| r.tenant(tenant).scan(&EXTRAS, &[], false, usize::MAX))?
        .into_iter()
        .filter_map(|(k, v)| Some((ConversationId::from_slice(&k)?, v)))
        .collect())
}

/// Replaces the conversation's labels (trimmed, lower-cased, deduplicated).
pub async fn set_labels(
    store: &Store,
    tenant: TenantId,
    conversation: ConversationId,
    labels: Vec<String>,
) -> Result<ConversationExtras, StoreError> {
    let mut clean = Vec::new();
    for l in labels {
        let l = l.trim().to_lowercase();
        if l.is_empty() {
            continue;
        }
        if l.chars().count() > 32 {
            return Err(rejected("invalid_input", "label: at most 32 characters"));
        }
        if !clean.contains(&l) {
            clean.push(l);
        }
    }
    if clean.len() > 10 {
        return Err(rejected("invalid_input", "labels: at most 10"));
    }
    store
        .write(move |ctx| {
            let c = ctx
                .tenant(tenant)
                .get(&CONVERSATIONS, conversation.as_bytes())?
                .ok_or_else(|| rejected("not_found", "conversation not found"))?;
            let mut t = ctx.tenant(tenant);
            let mut extras = t.get(&EXTRAS, conversation.as_bytes())?.unwrap_or_default();
            extras.labels = clean.clone();
            t.put(&EXTRAS, conversation.as_bytes(), &extras)?;
            append(&mut t, FeedKind::State, c.id, None)?;
            Ok(extras)
        })
        .await
}

/// A private note: agents see it, the customer never does.
pub async fn private_note(
    store: &Store,
    tenant: TenantId,
    conversation: ConversationId,
    author_name: String,
    text: String,
) -> Result<Message, StoreError> {
    let text = text.trim().to_string();
    if text.is_empty() || text.chars().count() > 4096 {
        return Err(rejected("invalid_input", "note: must be 1-4096 characters"));
    }
    store
        .write(move |ctx| {
            let mut c = ctx
                .tenant(tenant)
                .get(&CONVERSATIONS, conversation.as_bytes())?
                .ok_or_else(|| rejected("not_found", "conversation not found"))?;
            let m = add_note(
                ctx,
                tenant,
                &mut c,
                Author::Agent,
                format!("{author_name}: {text}"),
            )?;
            ctx.tenant(tenant)
                .put(&CONVERSATIONS, c.id.as_bytes(), &c)?;
            Ok(m)
        })
        .await
}

fn valid_template_name(name: &str) -> bool {
    (1..=512).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn valid_language(code: &str) -> bool {
    (2..=8).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'-')
}

/// An approved template message: the only kind WhatsApp delivers once the 24-hour window is
/// closed. The agent holds the conversation from here.
pub async fn send_template(
    store: &Store,
    tenant: TenantId,
    conversation: ConversationId,
    name: String,
    language_code: String,
) -> Result<Message, StoreError> {
    let name = name.trim().to_string();
    let language_code = language_code.trim().to_string();
    if !valid_template_name(&name) {
        return Err(rejected(
            "invalid_input",
            "template: the name as approved in WhatsApp Manager (a-z, 0-9, _)",
        ));
    }
    if !valid_language(&language_code) {
        return Err(rejected(
            "invalid_input",
            "language: a code such as en_US or id",
        ));
    }
    store
        .write(move |ctx| {
            let mut c = load_open(ctx, tenant, conversation)?;
            if c.state != ConversationState::Human {
                c.state = ConversationState::Human;
                super::actions::clear_pending_turn(ctx, tenant, conversation)?;
            }
            let m = queue_outbound(
                ctx,
                tenant,
                &mut c,
                Author::Agent,
                OutboundContent::Template {
                    name: name.clone(),
                    language_code: language_code.clone(),
                    components: serde_json::Value::Array(Vec::new()),
                },
                Vec::new(),
            )?;
            put_conversation(&mut ctx.tenant(tenant), &c)?;
            Ok(m)
        })
        .await
}

pub fn list_canned(store: &Store, tenant: TenantId) -> Result<Vec<CannedResponse>, StoreError> {
    Ok(store
        .read(|r| r.tenant(tenant).scan(&CANNED, &[], false, 1000))?
        .into_iter()
        .map(|(_, c)| c)
        .collect())
}

pub fn canned(
    store: &Store,
    tenant: TenantId,
    shortcut: &str,
) -> Result<Option<CannedResponse>, StoreError> {
    let key = shortcut.trim_start_matches('/').to_lowercase();
    store.read(|r| r.tenant(tenant).get(&CANNED, key.as_bytes()))
}

pub async fn save_canned(
    store: &Store,
    tenant: TenantId,
    shortcut: &str,
    text: &str,
) -> Result<CannedResponse, StoreError> {
    let shortcut = shortcut.trim().trim_start_matches('/').to_lowercase();
    let ok = (1..=32).contains(&shortcut.len())
        && shortcut
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        return Err(rejected(
            "invalid_input",
            "shortcut: 1-32 characters of a-z, 0-9, - and _",
        ));
    }
    let text = text.trim().to_string();
    if text.is_empty() || text.chars().count() > 4096 {
        return Err(rejected("invalid_input", "text: must be 1-4096 characters"));
    }
    let record = CannedResponse { shortcut, text };
    let saved = record.clone();
    store
        .write(move |ctx| {
            ctx.tenant(tenant)
                .put(&CANNED, record.shortcut.as_bytes(), &record)
        })
        .await?;
    Ok(saved)
}

pub async fn delete_canned(
    store: &Store,
    tenant: TenantId,
    shortcut: &str,
) -> Result<(), StoreError> {
    let key = shortcut.trim_start_matches('/').to_lowercase();
    store
        .write(move |ctx| {
            ctx.tenant(tenant)
                .delete(&CANNED, key.as_bytes())
                .map(|_| ())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extras_written_with_an_assignee_still_read() {
        let old = br#"{"assignee":"Ana","labels":["vip"]}"#;
        let mut bytes = ConversationExtras::VERSION.to_le_bytes().to_vec();
        bytes.extend_from_slice(old);
        let read: ConversationExtras = crate::storage::record::decode(&bytes).unwrap();
        assert_eq!(read.labels, vec!["vip".to_string()]);
    }

    #[test]
    fn template_names_and_languages_are_checked() {
        assert!(valid_template_name("order_update_2"));
        assert!(!valid_template_name("Order Update"));
        assert!(!valid_template_name(""));
        assert!(valid_language("en_US") && valid_language("id"));
        assert!(!valid_language("e") && !valid_language("en US"));
    }
}
