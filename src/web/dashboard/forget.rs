//! Forgetting deleted conversations (a customer's erasure, retention) in what the dashboard keeps:
//! agents' additions (notes, labels), the live feed's entries about them, and the inbox
//! search index.

use std::sync::Arc;

use super::search::SearchIndex;
use crate::conversations::extras::EXTRAS;
use crate::conversations::feed::LIVE_FEED;
use crate::ops::retention::DataHooks;
use crate::storage::{ConversationId, StoreError, TenantId, WriteCtx};

/// The dashboard's hook of `ops::retention`, registered at launch.
pub struct DashboardForgets {
    pub search: Arc<SearchIndex>,
}

impl DashboardForgets {
    fn forget_indexed(&self, tenant: TenantId, conversations: &[ConversationId]) {
        if let Err(e) = self.search.forget(tenant, conversations) {
            // The rows are gone; a rebuild of the index (it is derived) drops the rest.
            tracing::error!(%tenant, error = %e, "inbox search: cannot remove deleted conversations");
        }
    }
}

impl DataHooks for DashboardForgets {
    fn customer_erased(&self, tenant: TenantId, _: &str, conversations: &[ConversationId]) {
        self.forget_indexed(tenant, conversations);
    }

    fn conversations_expired(&self, tenant: TenantId, conversations: &[ConversationId]) {
        self.forget_indexed(tenant, conversations);
    }

    fn forget_conversations_in(
        &self,
        ctx: &mut WriteCtx<'_>,
        tenant: TenantId,
        conversations: &[ConversationId],
    ) -> Result<u64, StoreError> {
        let mut t = ctx.tenant(tenant);
        let mut rows = 0;
        for c in conversations {
            if t.delete(&EXTRAS, c.as_bytes())? {
                rows += 1;
            }
        }
        // Feed entries keep their sequence numbers (cursors and the next number depend on them)
        // but no longer name the conversation: readers skip an entry whose conversation is gone.
        for (key, mut entry) in t.scan(&LIVE_FEED, &[], false, usize::MAX)? {
            if conversations.contains(&entry.conversation) {
                entry.conversation = ConversationId(uuid::Uuid::nil());
                entry.message = None;
                t.put(&LIVE_FEED, &key, &entry)?;
                rows += 1;
            }
        }
        Ok(rows)
    }
}
