//! Forgetting deleted conversations (a customer's erasure, retention): the per-conversation
//! record goes, and so does each time the conversation asked an unanswered question, with the
//! customer's own wording. Day figures stay: they are counts that name nobody.

use super::model::{normalize_question, TRACKED, UNANSWERED};
use crate::ops::retention::DataHooks;
use crate::storage::{ConversationId, StoreError, TenantId, TenantWrite, WriteCtx};

/// The analytics hook of `ops::retention`, registered at launch.
pub struct AnalyticsForgets;

impl DataHooks for AnalyticsForgets {
    fn customer_erased(&self, _: TenantId, _: &str, _: &[ConversationId]) {
        // Everything was done in the erasure's commit (`forget_conversations_in`).
    }

    fn forget_conversations_in(
        &self,
        ctx: &mut WriteCtx<'_>,
        tenant: TenantId,
        conversations: &[ConversationId],
    ) -> Result<u64, StoreError> {
        forget_conversations(&mut ctx.tenant(tenant), conversations)
    }
}

/// Removes what analytics keeps about `conversations`; returns the rows removed or rewritten.
/// Unanswered rows are scanned whole: erasure and retention are rare, the rows are few (one per
/// day, outlet and distinct question).
pub fn forget_conversations(
    t: &mut TenantWrite<'_, '_>,
    conversations: &[ConversationId],
) -> Result<u64, StoreError> {
    let mut rows = 0;
    for c in conversations {
        if t.delete(&TRACKED, c.as_bytes())? {
            rows += 1;
        }
    }
    for (key, mut row) in t.scan(&UNANSWERED, &[], false, usize::MAX)? {
        let before = row.asked_in.len();
        row.asked_in.retain(|c| !conversations.contains(c));
        let removed = (before - row.asked_in.len()) as u64;
        let wording_gone = row.text_from.is_some_and(|c| conversations.contains(&c));
        if removed == 0 && !wording_gone {
            continue;
        }
        rows += 1;
        row.count = row.count.saturating_sub(removed);
        if row.count == 0 {
            t.delete(&UNANSWERED, &key)?;
            continue;
        }
        if wording_gone {
            // Whoever still counts here asked this very question, up to case and punctuation.
            row.text = normalize_question(&row.text);
            row.text_from = None;
        }
        t.put(&UNANSWERED, &key, &row)?;
    }
    Ok(rows)
}
