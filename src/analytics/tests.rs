//! The consumer against a real store: each event counts once however often it is delivered.

use super::consumer::apply;
use super::model::*;
use crate::conversations::{Conversation, ConversationState, HandoffReason, CONVERSATIONS};
use crate::events::{publish, Consumer, Envelope, EventPayload};
use crate::storage::{ChannelId, ConversationId, Store, TenantId};
use crate::tenants::{self, NewTenant};
use crate::whatsapp::payload::{InboundMessage, MessageContent};

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    tenant: TenantId,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.redb"), 16, Box::new(|_| {})).unwrap();
    let tenant = tenants::create_tenant(
        &store,
        NewTenant {
            slug: "acme".into(),
            name: "Acme".into(),
            time_zone: "Asia/Jakarta".into(),
        },
    )
    .await
    .unwrap()
    .id;
    World {
        _dir: dir,
        store,
        tenant,
    }
}

impl World {
    /// Publishes `payload` and returns its analytics envelope, as queued.
    async fn publish(&self, payload: EventPayload) -> Envelope {
        let tenant = self.tenant;
        self.store
            .write(move |ctx| publish(ctx, tenant, payload.clone()))
            .await
            .unwrap();
        self.store
            .read(|r| {
                r.operator()
                    .scan(&crate::events::EVENT_QUEUE, &[], false, usize::MAX)
            })
            .unwrap()
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| e.consumer == Consumer::Analytics)
            .max_by_key(|e| e.seq)
            .unwrap()
    }

    async fn deliver(&self, envelope: &Envelope) -> bool {
        let envelope = envelope.clone();
        self.store
            .write(move |ctx| apply(ctx, &envelope))
            .await
            .unwrap()
    }

    fn day(&self, day: &str) -> DayStats {
        self.store
            .read(|r| r.tenant(self.tenant).get(&DAYS, &day_key(day, None)))
            .unwrap()
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn a_redelivered_event_counts_once() {
    let w = world().await;
    // 2024-05-15 10:00 in Jakarta (03:00 UTC).
    let sent = 1_715_742_000;
    let inbound = w
        .publish(EventPayload::InboundMessage {
            channel: ChannelId::new(),
            profile_name: None,
            message: Box::new(InboundMessage {
                wamid: "wamid.ONE".into(),
                from: "6281".into(),
                from_user_id: None,
                timestamp: sent,
                content: MessageContent::Text { body: "hi".into() },
                context: None,
                referral: None,
                raw: serde_json::Value::Null.into(),
            }),
        })
        .await;
    assert!(w.deliver(&inbound).await);
    for _ in 0..3 {
        assert!(!w.deliver(&inbound).await, "already folded in");
    }
    let day = w.day("2024-05-15");
    assert_eq!(day.customer_messages, 1);
    assert_eq!(day.customer_messages_by_hour[10], 1);
}

#[tokio::test]
async fn a_conversation_is_counted_once_whichever_event_sees_it_first() {
    let w = world().await;
    let tenant = w.tenant;
    let id = ConversationId::new();
    let opened_at_ms = 1_715_742_000_000;
    w.store
        .write(move |ctx| {
            ctx.tenant(tenant).put(
                &CONVERSATIONS,
                id.as_bytes(),
                &Conversation {
                    id,
                    channel: ChannelId::new(),
                    outlet: None,
                    contact_wa_id: "6281".into(),
                    contact_name: None,
                    state: ConversationState::Closed,
                    handoff_reason: None,
                    opened_at_ms,
                    closed_at_ms: Some(opened_at_ms + 60_000),
                    last_customer_message_ms: opened_at_ms,
                    last_message_ms: opened_at_ms,
                    message_count: 1,
                    assigned_agent: None,
                    unhelpful_turns: 0,
                },
            )
        })
        .await
        .unwrap();
    // The handoff is seen before the opening (a conversation older than analytics).
    let handoff = w
        .publish(EventPayload::ConversationHandedOff {
            conversation: id,
            outlet: None,
            reason: HandoffReason::NoGroundedAnswer,
            at_ms: opened_at_ms + 1_000,
            question: Some("Do you sell gift cards?".into()),
            agent: None,
        })
        .await;
    let opened = w
        .publish(EventPayload::ConversationOpened {
            conversation: id,
            channel: ChannelId::new(),
            outlet: None,
            opened_at_ms,
        })
        .await;
    let completed = w
        .publish(EventPayload::ConversationCompleted { conversation: id })
        .await;
    for envelope in [&handoff, &opened, &completed, &handoff, &completed, &opened] {
        w.deliver(envelope).await;
    }
    let day = w.day("2024-05-15");
    assert_eq!(day.conversations, 1);
    assert_eq!(day.handed_off, 1);
    assert_eq!(day.handoff_reasons.get("no_grounded_answer"), Some(&1));
    assert_eq!((day.closed, day.resolved_by_human), (1, 1));
    assert_eq!(day.resolution_human.total_ms, 60_000);
    let unanswered = w
        .store
        .read(|r| r.tenant(tenant).scan(&UNANSWERED, b"2024-05-15", false, 10))
        .unwrap();
    assert_eq!(unanswered.len(), 1);
    assert_eq!(unanswered[0].1.count, 1);
}

#[test]
fn a_scope_is_narrowed_to_the_outlets_a_person_works_for() {
    use super::Scope;
    use crate::storage::OutletId;
    let (a, b) = (OutletId::new(), OutletId::new());
    // Unrestricted: every scope as asked.
    for scope in [Scope::All, Scope::Outlet(None), Scope::Outlet(Some(b))] {
        assert_eq!(scope.clone().limited_to(&[]), Some(scope));
    }
    // Limited to `a`: "all" is their outlets; their own outlet passes; another outlet, the
    // channels without an outlet, or a list reaching beyond theirs are refused.
    let mine = [a];
    assert_eq!(Scope::All.limited_to(&mine), Some(Scope::Outlets(vec![a])));
    assert_eq!(
        Scope::Outlet(Some(a)).limited_to(&mine),
        Some(Scope::Outlet(Some(a)))
    );
    assert_eq!(
        Scope::Outlets(vec![a]).limited_to(&mine),
        Some(Scope::Outlets(vec![a]))
    );
    assert_eq!(Scope::Outlet(Some(b)).limited_to(&mine), None);
    assert_eq!(Scope::Outlet(None).limited_to(&mine), None);
    assert_eq!(Scope::Outlets(vec![a, b]).limited_to(&mine), None);
}
