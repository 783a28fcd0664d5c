//! Billing against a real store: quotas inside writes, metering at explicit instants (period
//! boundaries in the tenant's zone, across DST switches), warnings once per period, plan changes.

use jiff::Timestamp;

use super::meter::{usage_of, warnings, TokenUsage};
use super::plans::{Limit, LimitOverrides, NewPlan, MB};
use super::subscription::{change_plan, load_account, set_overrides, Subscription};
use super::*;
use crate::storage::{Store, TenantId};
use crate::tenants::{self, NewTenant};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.redb"), 64, Box::new(|_| {})).unwrap();
    Fixture { _dir: dir, store }
}

async fn tenant(store: &Store, slug: &str, tz: &str) -> TenantId {
    tenants::create_tenant(
        store,
        NewTenant {
            slug: slug.into(),
            name: slug.into(),
            time_zone: tz.into(),
        },
    )
    .await
    .unwrap()
    .id
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// Puts the tenant on Starter with a subscription started at `start`, in its zone.
async fn subscribe_at(store: &Store, tenant: TenantId, start: &str, tz: &str) {
    let plan = plans::seeds().remove(0);
    let sub = Subscription::start(at(start).as_millisecond(), tz, &plan).unwrap();
    store
        .write(move |ctx| ctx.tenant(tenant).put(&SUBSCRIPTION, &[], &sub))
        .await
        .unwrap();
}

async fn limit_messages(store: &Store, tenant: TenantId, n: u64) {
    set_overrides(
        store,
        tenant,
        LimitOverrides {
            assistant_messages: Some(Limit::Max(n)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
}

async fn meter(store: &Store, tenant: TenantId, now: Timestamp) -> Metered {
    store
        .write(move |ctx| meter_reply(ctx, tenant, now))
        .await
        .unwrap()
}

async fn check(store: &Store, tenant: TenantId, r: Resource) -> Result<(), StoreError> {
    store.write(move |ctx| check_quota(ctx, tenant, r)).await
}

#[tokio::test]
async fn a_starter_tenant_gets_one_outlet_and_a_second_is_refused_whole() {
    let f = fixture();
    let t = tenant(&f.store, "acme", "UTC").await;
    tenants::create_outlet(&f.store, t, "Main street")
        .await
        .unwrap();
    let err = tenants::create_outlet(&f.store, t, "Harbour")
        .await
        .unwrap_err();
    assert_eq!(err.code(), QUOTA_EXCEEDED);
    let message = err.to_string();
    assert!(message.contains("outlet limit"), "{message}");
    assert!(message.contains("allows 1 outlet"), "{message}");
    assert!(message.contains("Starter"), "{message}");
    let outlets = tenants::list_outlets(&f.store, t).unwrap();
    assert_eq!(outlets.len(), 1);
    assert_eq!(outlets[0].name, "Main street");
    // Growth allows three.
    change_plan(&f.store, t, "growth", Timestamp::now())
        .await
        .unwrap();
    tenants::create_outlet(&f.store, t, "Harbour")
        .await
        .unwrap();
    tenants::create_outlet(&f.store, t, "Airport")
        .await
        .unwrap();
    assert!(tenants::create_outlet(&f.store, t, "Fourth").await.is_err());
    assert_eq!(tenants::list_outlets(&f.store, t).unwrap().len(), 3);
}

#[tokio::test]
async fn knowledge_bases_are_checked_inside_the_creating_write_and_refusal_leaves_nothing() {
    let f = fixture();
    let t = tenant(&f.store, "acme", "UTC").await;
    let sentinel = |name: &str| tenants::Outlet {
        id: crate::storage::OutletId::new(),
        name: name.into(),
        created_at_ms: 0,
    };
    // Stand-in for the knowledge module's write: its own row, then the check.
    let create = |row: tenants::Outlet| {
        let store = f.store.clone();
        async move {
            store
                .write(move |ctx| {
                    ctx.tenant(t)
                        .put(&tenants::OUTLETS, row.id.as_bytes(), &row)?;
                    check_quota(ctx, t, Resource::KnowledgeBases)
                })
                .await
        }
    };
    create(sentinel("kb one")).await.unwrap();
    let err = create(sentinel("kb two")).await.unwrap_err();
    assert_eq!(err.code(), QUOTA_EXCEEDED);
    assert!(err.to_string().contains("allows 1 knowledge base"), "{err}");
    assert!(err.to_string().contains("Starter"), "{err}");
    // The refused write stored nothing, not even its own row.
    let names: Vec<String> = tenants::list_outlets(&f.store, t)
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, ["kb one"]);
    assert_eq!(quota::held(&f.store, t).unwrap().1.knowledge_bases, 1);
    // Deleting one gives the slot back.
    f.store
        .write(move |ctx| release_quota(ctx, t, Resource::KnowledgeBases))
        .await
        .unwrap();
    check(&f.store, t, Resource::KnowledgeBases).await.unwrap();
    // Enterprise has no cap on knowledge bases.
    change_plan(&f.store, t, "enterprise", Timestamp::now())
        .await
        .unwrap();
    for _ in 0..20 {
        check(&f.store, t, Resource::KnowledgeBases).await.unwrap();
    }
}

#[tokio::test]
async fn uploads_past_50_mb_on_starter_are_refused_with_the_sizes() {
    let f = fixture();
    let t = tenant(&f.store, "acme", "UTC").await;
    check(&f.store, t, Resource::StorageBytes(30 * MB))
        .await
        .unwrap();
    check(&f.store, t, Resource::StorageBytes(20 * MB))
        .await
        .unwrap();
    let err = check(&f.store, t, Resource::StorageBytes(1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), QUOTA_EXCEEDED);
    let message = err.to_string();
    assert!(message.contains("allows 50 MB"), "{message}");
    assert!(message.contains("50 MB are stored"), "{message}");
    assert_eq!(quota::held(&f.store, t).unwrap().1.storage_bytes, 50 * MB);
    f.store
        .write(move |ctx| release_quota(ctx, t, Resource::StorageBytes(20 * MB)))
        .await
        .unwrap();
    assert!(check(&f.store, t, Resource::StorageBytes(21 * MB))
        .await
        .is_err());
    check(&f.store, t, Resource::StorageBytes(20 * MB))
        .await
        .unwrap();
}

#[tokio::test]
async fn concurrent_checks_never_share_the_last_slot() {
    let f = fixture();
    let t = tenant(&f.store, "acme", "UTC").await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = f.store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .write(move |ctx| check_quota(ctx, t, Resource::StorageBytes(10 * MB)))
                .await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(quota::held(&f.store, t).unwrap().1.storage_bytes, 50 * MB);
}

#[tokio::test]
async fn concurrent_replies_at_the_edge_of_the_quota_never_exceed_it() {
    let f = fixture();
    let t = tenant(&f.store, "acme", "UTC").await;
    limit_messages(&f.store, t, 10).await;
    let now = Timestamp::now();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let store = f.store.clone();
        tasks.push(tokio::spawn(async move {
            store.write(move |ctx| meter_reply(ctx, t, now)).await
        }));
    }
    let mut included = 0;
    let mut exhausted = 0;
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Metered::Included => included += 1,
            Metered::Exhausted => exhausted += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((included, exhausted), (10, 90));
    let account = load_account(&f.store, t).unwrap();
    let period = account.calendar.period_at(now).unwrap();
    let usage = usage_of(&f.store, t, period.number).unwrap().unwrap();
    assert_eq!(usage.assistant_replies, 10);
    assert_eq!(usage.quota_handoffs, 90);
}

#[tokio::test]
async fn warnings_at_80_and_100_percent_come_once_per_period() {
    let f = fixture();
    let t = tenant(&f.store, "acme", "Asia/Jakarta").await;
    subscribe_at(&f.store, t, "2024-04-15T20:00:00Z", "Asia/Jakarta").await; // Apr 16, 03:00 WIB
    limit_messages(&f.store, t, 10).await;
    let in_first = at("2024-04-20T05:00:00Z");
    let mut outcomes = Vec::new();
    for _ in 0..7 {
        outcomes.push(meter(&f.store, t, in_first).await);
    }
    assert!(warnings(&f.store, t).unwrap().is_empty());
    for _ in 0..8 {
        outcomes.push(meter(&f.store, t, in_first).await);
    }
    assert_eq!(
        outcomes.iter().filter(|m| **m == Metered::Included).count(),
        10
    );
    let w = warnings(&f.store, t).unwrap();
    let seen: Vec<(u32, u8, u64)> = w
        .iter()
        .map(|w| (w.period, w.threshold_percent, w.used))
        .collect();
    assert_eq!(seen, [(0, 100, 10), (0, 80, 8)]);
    assert_eq!(w[0].period_label, "2024-04-16");
    assert_eq!(w[0].plan, "starter");
    // The next period (from May 16, 00:00 WIB = May 15, 17:00 UTC) starts from zero and warns
    // again, once.
    let in_second = at("2024-05-15T17:00:00Z");
    for _ in 0..12 {
        meter(&f.store, t, in_second).await;
    }
    let w = warnings(&f.store, t).unwrap();
    let periods: Vec<(u32, u8)> = w.iter().map(|w| (w.period, w.threshold_percent)).collect();
    assert_eq!(periods, [(1, 100), (1, 80), (0, 100), (0, 80)]);
}

#[tokio::test]
async fn the_period_boundary_resets_usage_at_local_midnight_across_the_new_york_spring_switch() {
    let f = fixture();
    let t = tenant(&f.store, "ny", "America/New_York").await;
    // Subscribed Feb 15 (EST); the boundary is Mar 15 00:00 EDT = 04:00 UTC (not 05:00).
    subscribe_at(&f.store, t, "2024-02-15T15:00:00Z", "America/New_York").await;
    limit_messages(&f.store, t, 2).await;
    let before = at("2024-03-15T03:59:59Z"); // Mar 14, 23:59:59 EDT
    assert_eq!(meter(&f.store, t, before).await, Metered::Included);
    assert_eq!(meter(&f.store, t, before).await, Metered::Included);
    assert_eq!(meter(&f.store, t, before).await, Metered::Exhausted);
    assert!(!reply_allowed(&f.store, t, before).unwrap());
    // 04:30 UTC would still be Mar 14 at the winter offset; in New York it is already Mar 15.
    let after = at("2024-03-15T04:30:00Z");
    assert!(reply_allowed(&f.store, t, after).unwrap());
    assert_eq!(meter(&f.store, t, after).await, Metered::Included);
    assert_eq!(
        usage_of(&f.store, t, 0).unwrap().unwrap().assistant_replies,
        2
    );
    let second = usage_of(&f.store, t, 1).unwrap().unwrap();
    assert_eq!(second.assistant_replies, 1);
    assert_eq!(second.start_ms, at("2024-03-15T04:00:00Z").as_millisecond());
}

#[tokio::test]
async fn the_period_boundary_resets_usage_at_local_midnight_across_the_berlin_autumn_switch() {
    let f = fixture();
    let t = tenant(&f.store, "berlin", "Europe/Berlin").await;
    subscribe_at(&f.store, t, "2024-09-30T22:30:00Z", "Europe/Berlin").await; // Oct 1, 00:30 CEST
    limit_messages(&f.store, t, 1).await;
    // Oct 31, 23:30 CET: at the summer offset this would already be November.
    let late_october = at("2024-10-31T22:30:00Z");
    assert_eq!(meter(&f.store, t, late_october).await, Metered::Included);
    assert_eq!(meter(&f.store, t, late_october).await, Metered::Exhausted);
    let november = at("2024-10-31T23:00:00Z"); // Nov 1, 00:00 CET
    assert_eq!(meter(&f.store, t, november).await, Metered::Included);
    let first = usage_of(&f.store, t, 0).unwrap().unwrap();
    assert_eq!(first.end_ms - first.start_ms, (31 * 24 + 1) * 3_600_000);
}

#[tokio::test]
async fn overage_is_metered_separately_when_the_plan_allows_it() {
    let f = fixture();
    let t = tenant(&f.store, "acme", "UTC").await;
    plans::create_plan(
        &f.store,
        NewPlan {
            id: "flex".into(),
            name: "Flex".into(),
            price: Money::new(4_900, Currency::USD),
            limits: Limits {
                assistant_messages: Limit::Max(2),
                outlets: Limit::Max(1),
                knowledge_bases: Limit::Max(1),
                storage_bytes: Limit::Max(10 * MB),
            },
            overage: Some(Money::new(5, Currency::USD)),
        },
    )
    .await
    .unwrap();
    change_plan(&f.store, t, "flex", Timestamp::now())
        .await
        .unwrap();
    let now = Timestamp::now();
    let outcomes = [
        meter(&f.store, t, now).await,
        meter(&f.store, t, now).await,
        meter(&f.store, t, now).await,
        meter(&f.store, t, now).await,
    ];
    assert_eq!(
        outcomes,
        [
            Metered::Included,
            Metered::Included,
            Metered::Overage,
            Metered::Overage
        ]
    );
    assert!(reply_allowed(&f.store, t, now).unwrap());
    let account = load_account(&f.store, t).unwrap();
    let period = account.calendar.period_at(now).unwrap();
    let usage = usage_of(&f.store, t, period.number).unwrap().unwrap();
    assert_eq!(
        (
            usage.assistant_replies,
            usage.overage_replies,
            usage.overage_charge_minor
        ),
        (2, 2, 10)
    );
    let st = report::statement_of(&f.store, t, "current", now).unwrap();
    assert_eq!(
        st.lines.last().unwrap().amount,
        Money::new(10, Currency::USD)
    );
}

#[tokio::test]
async fn a_plan_change_applies_its_limits_at_once() {
    let f = fixture();
    let t = tenant(&f.store, "acme", "UTC").await;
    plans::create_plan(
        &f.store,
        NewPlan {
            id: "tiny".into(),
            name: "Tiny".into(),
            price: Money::new(900, Currency::USD),
            limits: Limits {
                assistant_messages: Limit::Max(2),
                outlets: Limit::Max(0),
                knowledge_bases: Limit::Max(0),
                storage_bytes: Limit::Max(0),
            },
            overage: None,
        },
    )
    .await
    .unwrap();
    change_plan(&f.store, t, "tiny", Timestamp::now())
        .await
        .unwrap();
    let now = Timestamp::now();
    meter(&f.store, t, now).await;
    meter(&f.store, t, now).await;
    assert_eq!(meter(&f.store, t, now).await, Metered::Exhausted);
    assert!(tenants::create_outlet(&f.store, t, "x").await.is_err());
    change_plan(&f.store, t, "starter", Timestamp::now())
        .await
        .unwrap();
    assert_eq!(meter(&f.store, t, now).await, Metered::Included);
    tenants::create_outlet(&f.store, t, "x").await.unwrap();
    // Back to tiny: the outlet stays, the period's 3 replies already exceed its 2.
    change_plan(&f.store, t, "tiny", Timestamp::now())
        .await
        .unwrap();
    assert!(!reply_allowed(&f.store, t, now).unwrap());
    assert_eq!(tenants::list_outlets(&f.store, t).unwrap().len(), 1);
    let account = load_account(&f.store, t).unwrap();
    let spans: Vec<&str> = account
        .subscription
        .spans
        .iter()
        .map(|s| s.plan.as_str())
        .collect();
    assert_eq!(spans, ["starter", "tiny", "starter", "tiny"]);
}

#[tokio::test]
async fn plan_changes_refuse_unknown_archived_and_foreign_currency_plans() {
    let f = fixture();
    let t = tenant(&f.store, "acme", "UTC").await;
    let now = Timestamp::now();
    assert_eq!(
        change_plan(&f.store, t, "platinum", now)
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    plans::update_plan(
        &f.store,
        "growth",
        plans::PlanUpdate {
            archived: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        change_plan(&f.store, t, "growth", now)
            .await
            .unwrap_err()
            .code(),
        "conflict"
    );
    plans::create_plan(
        &f.store,
        NewPlan {
            id: "rupiah".into(),
            name: "Rupiah".into(),
            price: Money::parse("1500000", Currency::parse("IDR").unwrap()).unwrap(),
            limits: plans::seeds()[0].limits,
            overage: None,
        },
    )
    .await
    .unwrap();
    let err = change_plan(&f.store, t, "rupiah", now).await.unwrap_err();
    assert_eq!(err.code(), "conflict");
    assert!(err.to_string().contains("USD"), "{err}");
}

#[tokio::test]
async fn an_edited_seed_is_stored_and_its_limits_apply_to_current_subscribers() {
    let f = fixture();
    let t = tenant(&f.store, "acme", "UTC").await;
    let edited = plans::update_plan(
        &f.store,
        "starter",
        plans::PlanUpdate {
            price: Some(Money::new(10_900, Currency::USD)),
            limits: Some(LimitOverrides {
                outlets: Some(Limit::Max(2)),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(edited.limits.outlets, Limit::Max(2));
    assert_eq!(edited.limits.assistant_messages, Limit::Max(500));
    let listed = plans::list_plans(&f.store).unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(
        listed
            .iter()
            .find(|p| p.id == "starter")
            .unwrap()
            .price
            .minor,
        10_900
    );
    tenants::create_outlet(&f.store, t, "a").await.unwrap();
    tenants::create_outlet(&f.store, t, "b").await.unwrap();
    // Currency is fixed for a plan.
    let err = plans::update_plan(
        &f.store,
        "starter",
        plans::PlanUpdate {
            price: Some(Money::new(1, Currency::parse("EUR").unwrap())),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "invalid_input");
}

#[tokio::test]
async fn tokens_are_recorded_per_tenant_and_never_capped() {
    let f = fixture();
    let a = tenant(&f.store, "aa", "UTC").await;
    let b = tenant(&f.store, "bb", "UTC").await;
    limit_messages(&f.store, a, 0).await;
    let tokens = TokenUsage {
        llm_calls: 1,
        llm_prompt_tokens: 900,
        llm_completion_tokens: 100,
        embedding_tokens: 0,
    };
    for _ in 0..3 {
        record_tokens(&f.store, a, tokens).await.unwrap();
    }
    record_tokens(
        &f.store,
        a,
        TokenUsage {
            embedding_tokens: 5_000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let now = Timestamp::now();
    let period = load_account(&f.store, a)
        .unwrap()
        .calendar
        .period_at(now)
        .unwrap();
    let usage = usage_of(&f.store, a, period.number).unwrap().unwrap();
    assert_eq!(
        (
            usage.llm_calls,
            usage.llm_prompt_tokens,
            usage.llm_completion_tokens,
            usage.embedding_tokens
        ),
        (3, 2_700, 300, 5_000)
    );
    assert!(usage_of(&f.store, b, period.number).unwrap().is_none());
}

#[tokio::test]
async fn deleting_a_tenant_removes_its_billing_rows() {
    let f = fixture();
    let t = tenant(&f.store, "acme", "UTC").await;
    limit_messages(&f.store, t, 1).await;
    meter(&f.store, t, Timestamp::now()).await;
    check(&f.store, t, Resource::StorageBytes(10))
        .await
        .unwrap();
    let (rows, _) = f.store.read(|r| r.operator().tenant_footprint(&t)).unwrap();
    assert!(rows >= 4, "{rows}");
    f.store
        .write(move |ctx| ctx.operator().delete_tenant_rows(&t))
        .await
        .unwrap();
    let (rows, _) = f.store.read(|r| r.operator().tenant_footprint(&t)).unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn a_tenant_without_a_subscription_row_is_on_starter_since_its_creation_day() {
    let f = fixture();
    let t = tenant(&f.store, "acme", "Asia/Jakarta").await;
    let account = load_account(&f.store, t).unwrap();
    assert!(!account.stored);
    assert_eq!(account.plan.id, "starter");
    let created = tenants::get_tenant(&f.store, t)
        .unwrap()
        .unwrap()
        .created_at_ms;
    let today = Timestamp::from_millisecond(created)
        .unwrap()
        .in_tz("Asia/Jakarta")
        .unwrap()
        .date();
    assert_eq!(account.subscription.anchor, today);
    // Metering writes the row, freezing the start and the price.
    meter(&f.store, t, Timestamp::now()).await;
    assert!(load_account(&f.store, t).unwrap().stored);
}
