//! The tenant's live feed: a durable, ordered record of what changed (a message stored, a
//! message's status, a conversation's state), written in the same commit as the change.
//!
//! The in-process `LiveBus` only says "something changed" and may drop notices; this feed is what
//! dashboards read, so a dashboard that was disconnected asks for everything after the last
//! sequence number it saw and gets every missed change exactly once. Sequence numbers are per
//! tenant and follow commit order (one writer). The oldest entries are pruned as new ones arrive;
//! a client whose cursor predates what is kept reloads its page from the store instead.

use serde::{Deserialize, Serialize};

use super::model::{message_key, Conversation, Message, CONVERSATIONS, MESSAGES};
use crate::storage::collections as tags;
use crate::storage::{
    Collection, ConversationId, MessageId, Record, Store, StoreError, TenantId, TenantWrite,
};

/// Entries kept per tenant. At a few hundred changes a minute this is hours of history: far more
/// than any reconnect needs.
pub const FEED_RETAIN: u64 = 50_000;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FeedKind {
    /// A message was stored (customer, assistant, agent, note).
    Message,
    /// A stored message changed (delivery status, failure reason).
    Status,
    /// The conversation changed (state, handoff, assignment, labels).
    State,
}

impl FeedKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            FeedKind::Message => "message",
            FeedKind::Status => "status",
            FeedKind::State => "state",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct FeedEntry {
    pub seq: u64,
    pub kind: FeedKind,
    pub conversation: ConversationId,
    pub message: Option<MessageId>,
    /// When the change was written (µs since the epoch): fan-out latency is measured from here.
    pub at_us: i64,
}

impl Record for FeedEntry {
    const VERSION: u16 = 1;
    const NAME: &'static str = "live feed entry";
}

/// seq (u64 big-endian) → entry.
pub const LIVE_FEED: Collection<FeedEntry> = Collection::new(tags::LIVE_FEED);

pub fn now_us() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

fn last_seq(t: &TenantWrite<'_, '_>) -> Result<u64, StoreError> {
    Ok(t.scan(&LIVE_FEED, &[], true, 1)?
        .first()
        .map(|(_, e)| e.seq)
        .unwrap_or(0))
}

/// Appends an entry in the caller's write and prunes the oldest. Returns its sequence number.
pub fn append(
    t: &mut TenantWrite<'_, '_>,
    kind: FeedKind,
    conversation: ConversationId,
    message: Option<MessageId>,
) -> Result<u64, StoreError> {
    append_retaining(t, kind, conversation, message, FEED_RETAIN)
}

fn append_retaining(
    t: &mut TenantWrite<'_, '_>,
    kind: FeedKind,
    conversation: ConversationId,
    message: Option<MessageId>,
    retain: u64,
) -> Result<u64, StoreError> {
    let seq = last_seq(t)? + 1;
    t.put(
        &LIVE_FEED,
        &seq.to_be_bytes(),
        &FeedEntry {
            seq,
            kind,
            conversation,
            message,
            at_us: now_us(),
        },
    )?;
    if seq > retain {
        t.delete(&LIVE_FEED, &(seq - retain).to_be_bytes())?;
    }
    Ok(seq)
}

/// Stores a message and records it in the feed: `kind` is `Message` for a new one, `Status` for
/// a change to one already stored.
pub fn put_message(
    t: &mut TenantWrite<'_, '_>,
    message: &Message,
    kind: FeedKind,
) -> Result<(), StoreError> {
    t.put(
        &MESSAGES,
        &message_key(message.conversation, message.id),
        message,
    )?;
    append(t, kind, message.conversation, Some(message.id))?;
    Ok(())
}

/// Stores a conversation and records the change in the feed.
pub fn put_conversation(
    t: &mut TenantWrite<'_, '_>,
    conversation: &Conversation,
) -> Result<(), StoreError> {
    t.put(&CONVERSATIONS, conversation.id.as_bytes(), conversation)?;
    append(t, FeedKind::State, conversation.id, None)?;
    Ok(())
}

/// What a reader gets from the feed after its cursor.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedRead {
    /// Every entry after the cursor, oldest first (possibly none).
    Entries(Vec<FeedEntry>),
    /// Entries after the cursor were pruned: the reader must reload from the store.
    Gap { latest: u64 },
}

/// The newest sequence number of a tenant's feed (0 when empty).
pub fn latest_seq(store: &Store, tenant: TenantId) -> Result<u64, StoreError> {
    store.read(|r| latest_seq_in(&r.tenant(tenant)))
}

pub fn latest_seq_in(t: &crate::storage::TenantRead<'_>) -> Result<u64, StoreError> {
    Ok(t.scan(&LIVE_FEED, &[], true, 1)?
        .first()
        .map(|(_, e)| e.seq)
        .unwrap_or(0))
}

/// Entries after `after`, at most `limit` of them, oldest first.
pub fn read_after(
    store: &Store,
    tenant: TenantId,
    after: u64,
    limit: usize,
) -> Result<FeedRead, StoreError> {
    store.read(|r| {
        let t = r.tenant(tenant);
        let oldest = t
            .scan(&LIVE_FEED, &[], false, 1)?
            .first()
            .map(|(_, e)| e.seq);
        let latest = latest_seq_in(&t)?;
        if let Some(oldest) = oldest {
            if after + 1 < oldest {
                return Ok(FeedRead::Gap { latest });
            }
        } else if after < latest {
            return Ok(FeedRead::Gap { latest });
        }
        if after >= latest {
            return Ok(FeedRead::Entries(Vec::new()));
        }
        // Keys are big-endian seqs: scan the range after the cursor by walking from its successor.
        let mut out = Vec::new();
        let mut seq = after + 1;
        while seq <= latest && out.len() < limit {
            if let Some(e) = t.get(&LIVE_FEED, &seq.to_be_bytes())? {
                out.push(e);
            }
            seq += 1;
        }
        Ok(FeedRead::Entries(out))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Store;

    fn store(dir: &std::path::Path) -> Store {
        Store::open(&dir.join("db.redb"), 64, Box::new(|_| {})).unwrap()
    }

    #[tokio::test]
    async fn entries_follow_commit_order_and_resume_after_a_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let tenant = TenantId::new();
        let other = TenantId::new();
        let c = ConversationId::new();
        for _ in 0..5 {
            store
                .write(move |ctx| {
                    append(&mut ctx.tenant(tenant), FeedKind::Message, c, None)?;
                    append(&mut ctx.tenant(other), FeedKind::State, c, None)
                })
                .await
                .unwrap();
        }
        assert_eq!(latest_seq(&store, tenant).unwrap(), 5);
        let FeedRead::Entries(after_two) = read_after(&store, tenant, 2, 100).unwrap() else {
            panic!("gap");
        };
        assert_eq!(
            after_two.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert!(after_two.iter().all(|e| e.kind == FeedKind::Message));
        assert_eq!(
            read_after(&store, tenant, 5, 100).unwrap(),
            FeedRead::Entries(vec![])
        );
        let FeedRead::Entries(limited) = read_after(&store, tenant, 0, 2).unwrap() else {
            panic!("gap");
        };
        assert_eq!(limited.len(), 2);
    }

    #[tokio::test]
    async fn a_cursor_older_than_what_is_kept_is_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let tenant = TenantId::new();
        let c = ConversationId::new();
        store
            .write(move |ctx| {
                let mut t = ctx.tenant(tenant);
                for _ in 0..13 {
                    append_retaining(&mut t, FeedKind::Message, c, None, 10)?;
                }
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(
            read_after(&store, tenant, 1, 10).unwrap(),
            FeedRead::Gap { latest: 13 }
        );
        let FeedRead::Entries(recent) = read_after(&store, tenant, 4, 10).unwrap() else {
            panic!("the cursor just before the oldest kept entry is no gap");
        };
        assert_eq!(recent.first().map(|e| e.seq), Some(5));
    }
}
