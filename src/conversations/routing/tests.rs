//! Routing against a real store: round robin within capacity, queueing, draining, presence.

use super::*;
use crate::conversations::actions;
use crate::conversations::{HandoffReason, OPEN_CONVERSATION};
use crate::storage::{ChannelId, Store};
use crate::tenants::{self, NewTenant};

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    tenant: TenantId,
    a: OutletId,
    b: OutletId,
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
    // Room for two outlets (Starter allows one).
    crate::billing::subscription::change_plan(&store, tenant, "enterprise", jiff::Timestamp::now())
        .await
        .unwrap();
    let a = tenants::create_outlet(&store, tenant, "A")
        .await
        .unwrap()
        .id;
    let b = tenants::create_outlet(&store, tenant, "B")
        .await
        .unwrap()
        .id;
    World {
        _dir: dir,
        store,
        tenant,
        a,
        b,
    }
}

impl World {
    async fn agent(&self, user: &str, outlets: Vec<OutletId>, capacity: u32, online: bool) {
        update_agent(
            &self.store,
            self.tenant,
            user,
            AgentUpdate {
                outlets: Some(outlets),
                capacity: Some(capacity),
                online: Some(online),
            },
        )
        .await
        .unwrap();
    }

    /// A conversation of `outlet` handed off now; returns it as stored.
    async fn handed_off(&self, outlet: Option<OutletId>) -> Conversation {
        let tenant = self.tenant;
        let id = ConversationId::new();
        self.store
            .write(move |ctx| {
                let now = crate::events::now_ms();
                let mut c = Conversation {
                    id,
                    channel: ChannelId::new(),
                    outlet,
                    contact_wa_id: format!("62{}", id.0.simple()),
                    contact_name: None,
                    state: ConversationState::Bot,
                    handoff_reason: None,
                    opened_at_ms: now,
                    closed_at_ms: None,
                    last_customer_message_ms: now,
                    last_message_ms: now,
                    message_count: 1,
                    assigned_agent: None,
                    unhelpful_turns: 0,
                };
                ctx.tenant(tenant).put(
                    &OPEN_CONVERSATION,
                    &crate::conversations::open_key(c.channel, &c.contact_wa_id),
                    &c.id,
                )?;
                actions::hand_off(ctx, tenant, &mut c, HandoffReason::CustomerAsked)?;
                ctx.tenant(tenant).put(&CONVERSATIONS, c.id.as_bytes(), &c)
            })
            .await
            .unwrap();
        self.get(id)
    }

    fn get(&self, id: ConversationId) -> Conversation {
        crate::conversations::get_conversation(&self.store, self.tenant, id)
            .unwrap()
            .unwrap()
    }

    fn load(&self, user: &str) -> u32 {
        get_agent(&self.store, self.tenant, user).unwrap().load
    }

    fn queued(&self) -> Vec<ConversationId> {
        queue(&self.store, self.tenant, None)
            .unwrap()
            .into_iter()
            .map(|e| e.conversation)
            .collect()
    }
}

#[tokio::test]
async fn round_robin_among_online_agents_of_the_outlet_within_capacity() {
    let w = world().await;
    w.agent("ana", vec![w.a], 2, true).await;
    w.agent("budi", vec![w.a], 1, true).await;
    w.agent("citra", vec![w.b], 5, true).await;
    w.agent("dewi", vec![w.a], 5, false).await;
    w.agent("eko", vec![], 1, true).await; // every outlet

    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(w.handed_off(Some(w.a)).await.assigned_agent);
    }
    let names: Vec<Option<&str>> = got.iter().map(|a| a.as_deref()).collect();
    assert_eq!(
        names,
        [Some("ana"), Some("budi"), Some("eko"), Some("ana"), None]
    );
    assert_eq!((w.load("ana"), w.load("budi"), w.load("eko")), (2, 1, 1));
    assert_eq!(w.load("citra"), 0, "another outlet's agent");
    assert_eq!(w.load("dewi"), 0, "offline");
    assert_eq!(w.queued().len(), 1);
}

#[tokio::test]
async fn with_nobody_online_handoffs_queue_and_are_taken_oldest_first() {
    let w = world().await;
    w.agent("ana", vec![w.a], 1, false).await;
    let first = w.handed_off(Some(w.a)).await;
    let second = w.handed_off(Some(w.a)).await;
    let other_outlet = w.handed_off(Some(w.b)).await;
    assert_eq!(w.queued(), [first.id, second.id, other_outlet.id]);
    assert!(first.assigned_agent.is_none());

    // Coming online takes the oldest conversation of the agent's outlet, up to capacity.
    let changed = set_online(&w.store, w.tenant, "ana", true).await.unwrap();
    assert_eq!(changed.conversations, [first.id]);
    assert_eq!(w.get(first.id).assigned_agent.as_deref(), Some("ana"));
    assert_eq!(w.queued(), [second.id, other_outlet.id]);

    // Closing frees the slot for the next in the queue, in the same commit.
    let (_, drained) = actions::close_routed(&w.store, w.tenant, first.id)
        .await
        .unwrap();
    assert_eq!(drained, [second.id]);
    assert_eq!(w.get(second.id).assigned_agent.as_deref(), Some("ana"));
    assert_eq!(w.load("ana"), 1);
    assert_eq!(w.queued(), [other_outlet.id]);

    // More capacity takes nothing of another outlet.
    set_capacity(&w.store, w.tenant, "ana", 5).await.unwrap();
    assert_eq!(w.queued(), [other_outlet.id]);
}

#[tokio::test]
async fn going_offline_passes_unclaimed_conversations_on_but_keeps_taken_ones() {
    let w = world().await;
    w.agent("ana", vec![w.a], 5, true).await;
    let unclaimed = w.handed_off(Some(w.a)).await;
    let taken = w.handed_off(Some(w.a)).await;
    actions::take_over(&w.store, w.tenant, taken.id)
        .await
        .unwrap();
    w.agent("budi", vec![w.a], 5, true).await;

    let changed = set_online(&w.store, w.tenant, "ana", false).await.unwrap();
    assert_eq!(changed.conversations, [unclaimed.id]);
    assert_eq!(w.get(unclaimed.id).assigned_agent.as_deref(), Some("budi"));
    assert_eq!(w.get(taken.id).assigned_agent.as_deref(), Some("ana"));
    assert_eq!(w.get(taken.id).state, ConversationState::Human);

    // Removing the agent puts what they held back in line.
    remove_agent(&w.store, w.tenant, "ana").await.unwrap();
    let c = w.get(taken.id);
    assert_eq!(c.state, ConversationState::PendingHuman);
    assert_eq!(c.assigned_agent.as_deref(), Some("budi"));
    assert!(get_agent(&w.store, w.tenant, "ana").is_err());
}

#[tokio::test]
async fn hand_back_and_manual_assignment_keep_the_load_exact() {
    let w = world().await;
    w.agent("ana", vec![], 1, true).await;
    w.agent("budi", vec![], 1, false).await;
    let c = w.handed_off(None).await;
    assert_eq!(c.assigned_agent.as_deref(), Some("ana"));

    // An admin may assign beyond capacity (a person decided) and to someone offline.
    let moved = assign(&w.store, w.tenant, c.id, Some("budi".into()))
        .await
        .unwrap();
    assert_eq!(moved.value.assigned_agent.as_deref(), Some("budi"));
    assert_eq!((w.load("ana"), w.load("budi")), (0, 1));

    // Unassigning puts it back in the queue.
    let back = assign(&w.store, w.tenant, c.id, None).await.unwrap();
    // Ana has room again and is online: the queue drains to her in the same commit.
    assert_eq!(back.conversations, [c.id, c.id]);
    assert_eq!(w.get(c.id).assigned_agent.as_deref(), Some("ana"));

    let (c, _) = actions::hand_back_routed(&w.store, w.tenant, c.id)
        .await
        .unwrap();
    assert_eq!(c.state, ConversationState::Bot);
    assert_eq!(c.assigned_agent, None);
    assert_eq!((w.load("ana"), w.load("budi")), (0, 0));
    assert!(w.queued().is_empty());

    // A conversation with the assistant is not assigned.
    let err = assign(&w.store, w.tenant, c.id, Some("ana".into()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "conflict");
    let waiting = w.handed_off(None).await;
    let err = assign(&w.store, w.tenant, waiting.id, Some("nobody".into()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "not_found");
}

#[tokio::test]
async fn agent_and_settings_input_is_checked() {
    let w = world().await;
    let err = update_agent(
        &w.store,
        w.tenant,
        "ana",
        AgentUpdate {
            outlets: Some(vec![OutletId::new()]),
            ..AgentUpdate::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "not_found");
    let err = set_capacity(&w.store, w.tenant, "ana", 10_000)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_input");
    assert!(set_online(&w.store, w.tenant, "bad user", true)
        .await
        .is_err());
    let err = set_settings(
        &w.store,
        w.tenant,
        RoutingSettings {
            allow_bot_return: true,
            unhelpful_turn_limit: 0,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "invalid_input");
    assert_eq!(
        settings(&w.store, w.tenant).unwrap(),
        RoutingSettings::default()
    );
    let err = set_business_hours(&w.store, w.tenant, Some(OutletId::new()), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "not_found");
}

#[tokio::test]
async fn the_agent_who_takes_over_holds_it_and_the_freed_slot_takes_the_next() {
    let w = world().await;
    w.agent("ana", vec![w.a], 1, true).await;
    w.agent("budi", vec![w.a], 1, false).await;
    let first = w.handed_off(Some(w.a)).await;
    let waiting = w.handed_off(Some(w.a)).await;
    assert_eq!(first.assigned_agent.as_deref(), Some("ana"));
    assert_eq!(w.queued(), [waiting.id]);

    // Budi (offline, and not the one it was routed to) steps in: it is his now.
    let (c, reassigned) = actions::take_over_by(&w.store, w.tenant, first.id, Some("budi".into()))
        .await
        .unwrap();
    assert_eq!(c.state, ConversationState::Human);
    assert_eq!(c.assigned_agent.as_deref(), Some("budi"));
    assert_eq!(reassigned, [waiting.id]);
    assert_eq!(w.get(waiting.id).assigned_agent.as_deref(), Some("ana"));
    assert_eq!((w.load("ana"), w.load("budi")), (1, 1));
    assert!(w.queued().is_empty());

    // Someone who is no agent (an admin, the operator) leaves the assignment as it is.
    let (c, reassigned) =
        actions::take_over_by(&w.store, w.tenant, waiting.id, Some("admin".into()))
            .await
            .unwrap();
    assert_eq!(c.assigned_agent.as_deref(), Some("ana"));
    assert!(reassigned.is_empty());
}

#[tokio::test]
async fn people_who_stop_working_conversations_stop_being_routed_to() {
    let w = world().await;
    w.agent("ana", vec![], 5, true).await;
    w.agent("budi", vec![], 5, true).await;
    let at_a = w.handed_off(Some(w.a)).await;
    let at_b = w.handed_off(Some(w.b)).await;
    let holder = |c: &Conversation| w.get(c.id).assigned_agent;
    let ana_has_b = holder(&at_b).as_deref() == Some("ana");

    // Ana now works for outlet A only: what she held of outlet B moves on.
    let (tenant, a) = (w.tenant, w.a);
    w.store
        .write(move |ctx| person_changed(&mut ctx.tenant(tenant), "ana", true, &[a], 0).map(|_| ()))
        .await
        .unwrap();
    assert_eq!(get_agent(&w.store, w.tenant, "ana").unwrap().outlets, [w.a]);
    assert_eq!(holder(&at_b).as_deref(), Some("budi"));
    if ana_has_b {
        assert_eq!(w.load("budi"), 2);
    }

    // Budi is disabled: he is no agent any more, and what he held waits for Ana (outlet A)
    // or in outlet B's queue.
    w.store
        .write(move |ctx| {
            person_changed(&mut ctx.tenant(tenant), "budi", false, &[], 0).map(|_| ())
        })
        .await
        .unwrap();
    assert!(get_agent(&w.store, w.tenant, "budi").is_err());
    assert_eq!(holder(&at_a).as_deref(), Some("ana"));
    assert_eq!(holder(&at_b), None);
    assert_eq!(w.queued(), [at_b.id]);
}
