use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Note {
    text: String,
}

impl Record for Note {
    const VERSION: u16 = 2;
    const NAME: &'static str = "note";

    fn upgrade(version: u16, json: &[u8]) -> Result<Self, StoreError> {
        #[derive(Deserialize)]
        struct V1 {
            body: String,
        }
        match version {
            1 => {
                let old: V1 =
                    serde_json::from_slice(json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok(Note { text: old.body })
            }
            _ => Err(StoreError::Corrupt(format!("note version {version}"))),
        }
    }
}

// Test-only tags, far from the real ones.
const NOTES: Collection<Note> = Collection::new(200);
const OTHER_NOTES: Collection<Note> = Collection::new(201);
const GLOBAL_NOTES: GlobalCollection<Note> = GlobalCollection::new(200);

fn open(dir: &std::path::Path) -> Store {
    Store::open(&dir.join("test.redb"), 64, Box::new(|_| {})).unwrap()
}

fn note(text: &str) -> Note {
    Note { text: text.into() }
}

#[tokio::test]
async fn writes_are_durable_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = TenantId::new();
    {
        let store = open(dir.path());
        store
            .write(move |ctx| ctx.tenant(tenant).put(&NOTES, b"k", &note("hello")))
            .await
            .unwrap();
    }
    // The writer thread exits once every handle is dropped; the file lock goes with it.
    let mut reopened = None;
    for _ in 0..100 {
        match Store::open(&dir.path().join("test.redb"), 64, Box::new(|_| {})) {
            Ok(s) => {
                reopened = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    let store = reopened.expect("database reopens");
    let got = store.read(|r| r.tenant(tenant).get(&NOTES, b"k")).unwrap();
    assert_eq!(got, Some(note("hello")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let tenant = TenantId::new();
    // Hold the writer busy so the 400 writes below queue up behind it, whatever the machine's load.
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let blocker = store.clone();
    let hold = tokio::spawn(async move {
        blocker
            .write(move |_ctx| {
                let _ = started_tx.send(());
                std::thread::sleep(std::time::Duration::from_millis(300));
                Ok(())
            })
            .await
    });
    started_rx.recv().unwrap();
    let mut tasks = Vec::new();
    for i in 0..400u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .write(move |ctx| {
                    ctx.tenant(tenant)
                        .put(&NOTES, &i.to_be_bytes(), &note(&i.to_string()))
                })
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    hold.await.unwrap().unwrap();
    let rows = store
        .read(|r| r.tenant(tenant).scan(&NOTES, &[], false, usize::MAX))
        .unwrap();
    assert_eq!(rows.len(), 400);
    let stats = store.stats();
    assert_eq!(stats.jobs, 401);
    assert!(
        stats.commits < stats.jobs,
        "400 concurrent writes should share commits, got {stats:?}"
    );
}

#[tokio::test]
async fn a_rejected_write_leaves_no_trace_and_does_not_sink_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let tenant = TenantId::new();
    let bad = store.clone();
    let good = store.clone();
    let (a, b) = tokio::join!(
        bad.write(move |ctx| {
            ctx.tenant(tenant)
                .put(&NOTES, b"half", &note("written then rejected"))?;
            Err::<(), _>(StoreError::rejected("conflict", "no"))
        }),
        good.write(move |ctx| ctx.tenant(tenant).put(&NOTES, b"ok", &note("fine")))
    );
    assert_eq!(a.unwrap_err().code(), "conflict");
    b.unwrap();
    let (half, ok) = store
        .read(|r| {
            let t = r.tenant(tenant);
            Ok((t.get(&NOTES, b"half")?, t.get(&NOTES, b"ok")?))
        })
        .unwrap();
    assert_eq!(half, None);
    assert_eq!(ok, Some(note("fine")));
}

#[tokio::test]
async fn older_value_layouts_are_upgraded_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let tenant = TenantId::new();
    // A version-1 value as an older binary wrote it.
    let mut raw = 1u16.to_le_bytes().to_vec();
    raw.extend_from_slice(br#"{"body":"old layout"}"#);
    let key = {
        let mut k = tenant.as_bytes().to_vec();
        k.push(NOTES.tag());
        k.extend_from_slice(b"legacy");
        k
    };
    store
        .write(move |ctx| {
            ctx.tables
                .tenant
                .insert(key.as_slice(), raw.as_slice())
                .map_err(StoreError::from)?;
            Ok(())
        })
        .await
        .unwrap();
    let got = store
        .read(|r| r.tenant(tenant).get(&NOTES, b"legacy"))
        .unwrap();
    assert_eq!(got, Some(note("old layout")));
}

#[tokio::test]
async fn deleting_a_tenant_removes_exactly_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = (TenantId::new(), TenantId::new());
    store
        .write(move |ctx| {
            for t in [a, b] {
                ctx.tenant(t).put(&NOTES, b"1", &note("x"))?;
                ctx.tenant(t).put(&OTHER_NOTES, b"2", &note("y"))?;
            }
            ctx.operator().put(&GLOBAL_NOTES, b"g", &note("global"))?;
            Ok(())
        })
        .await
        .unwrap();
    let removed = store
        .write(move |ctx| ctx.operator().delete_tenant_rows(&a))
        .await
        .unwrap();
    assert_eq!(removed, 2);
    store
        .read(|r| {
            assert_eq!(r.operator().tenant_footprint(&a)?.0, 0);
            assert_eq!(r.operator().tenant_footprint(&b)?.0, 2);
            assert!(r.operator().get(&GLOBAL_NOTES, b"g")?.is_some());
            Ok(())
        })
        .unwrap();
}

/// Every public way into tenant data, tried from tenant B against tenant A's rows with the very
/// same collection and keys: none of them sees or changes A's data.
async fn try_every_storage_function_across_tenants(
    store: &Store,
    a: TenantId,
    b: TenantId,
    rows: BTreeMap<Vec<u8>, String>,
) {
    let seeded = rows.clone();
    store
        .write(move |ctx| {
            let mut t = ctx.tenant(a);
            for (k, v) in &seeded {
                t.put(&NOTES, k, &note(v))?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let keys: Vec<Vec<u8>> = rows.keys().cloned().collect();

    // Reads through B's read handle.
    let probe = keys.clone();
    store
        .read(move |r| {
            let t = r.tenant(b);
            assert_eq!(t.tenant(), b);
            for k in &probe {
                assert_eq!(t.get(&NOTES, k)?, None);
                assert!(!t.contains(&NOTES, k)?);
                assert!(t.scan(&NOTES, k, false, usize::MAX)?.is_empty());
                assert!(t.scan(&NOTES, k, true, usize::MAX)?.is_empty());
            }
            assert!(t.scan(&NOTES, &[], false, usize::MAX)?.is_empty());
            // A prefix that spells out A's id: still scoped under B.
            assert!(t.scan(&NOTES, a.as_bytes(), false, usize::MAX)?.is_empty());
            Ok(())
        })
        .unwrap();

    // Reads and writes through B's write handle, including deletes of A's keys.
    let probe = keys.clone();
    store
        .write(move |ctx| {
            let mut t = ctx.tenant(b);
            for k in &probe {
                assert_eq!(t.get(&NOTES, k)?, None);
                assert!(!t.contains(&NOTES, k)?);
                assert!(t.scan(&NOTES, k, false, usize::MAX)?.is_empty());
                assert!(!t.delete(&NOTES, k)?);
            }
            for k in &probe {
                assert!(t.insert_new(&NOTES, k, &note("b's own"))?);
                assert!(!t.insert_new(&NOTES, k, &note("again"))?);
            }
            // The global path reaches global collections only: nothing tenant-owned is named there.
            let g = t.global();
            for k in &probe {
                assert_eq!(g.get(&GLOBAL_NOTES, k)?, None);
            }
            Ok(())
        })
        .await
        .unwrap();

    // A's rows are exactly as written; B's writes landed under B.
    let expected = rows.clone();
    store
        .read(move |r| {
            let got: BTreeMap<Vec<u8>, String> = r
                .tenant(a)
                .scan(&NOTES, &[], false, usize::MAX)?
                .into_iter()
                .map(|(k, v)| (k, v.text))
                .collect();
            assert_eq!(got, expected);
            assert_eq!(
                r.tenant(b).scan(&NOTES, &[], false, usize::MAX)?.len(),
                expected.len()
            );
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn a_tenant_handle_cannot_reach_another_tenants_rows_through_any_function() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut rows = BTreeMap::new();
    rows.insert(b"conversation-1".to_vec(), "a secret".to_string());
    rows.insert(Vec::new(), "empty key".to_string());
    rows.insert(vec![0xff; 20], "high bytes".to_string());
    try_every_storage_function_across_tenants(&store, TenantId::new(), TenantId::new(), rows).await;
}

fn arb_tenant() -> impl Strategy<Value = TenantId> {
    any::<[u8; 16]>().prop_map(|b| TenantId(uuid::Uuid::from_bytes(b)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random tenant ids (including ids that share long prefixes) and random keys, values.
    #[test]
    fn isolation_holds_for_random_ids_and_keys(
        a in arb_tenant(),
        b in arb_tenant(),
        rows in prop::collection::btree_map(prop::collection::vec(any::<u8>(), 0..24), "[a-z]{0,12}", 1..8),
    ) {
        prop_assume!(a != b);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        rt.block_on(try_every_storage_function_across_tenants(&store, a, b, rows));
    }

    /// Tenants whose ids differ only in the last byte stay apart.
    #[test]
    fn isolation_holds_for_neighbouring_ids(
        prefix in any::<[u8; 15]>(),
        last in 0u8..255,
        key in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut ab = [0u8; 16];
        ab[..15].copy_from_slice(&prefix);
        ab[15] = last;
        let mut bb = ab;
        bb[15] = last + 1;
        let a = TenantId(uuid::Uuid::from_bytes(ab));
        let b = TenantId(uuid::Uuid::from_bytes(bb));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut rows = BTreeMap::new();
        rows.insert(key, "v".to_string());
        rt.block_on(try_every_storage_function_across_tenants(&store, a, b, rows));
    }
}

#[tokio::test]
async fn events_published_in_a_write_reach_the_listener_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let store = Store::open(
        &dir.path().join("t.redb"),
        16,
        Box::new(move |events| sink.lock().unwrap().extend(events)),
    )
    .unwrap();
    let tenant = TenantId::new();
    store
        .write(move |ctx| {
            crate::events::publish(
                ctx,
                tenant,
                crate::events::EventPayload::ConversationCompleted {
                    conversation: ConversationId::new(),
                },
            )?;
            crate::events::publish(
                ctx,
                tenant,
                crate::events::EventPayload::OutgoingMessage {
                    conversation: ConversationId::new(),
                    message: MessageId::new(),
                },
            )
        })
        .await
        .unwrap();
    // One envelope per subscribed consumer: analytics hears both, the sender the outgoing one.
    let seen = seen.lock().unwrap().clone();
    let consumers: Vec<_> = seen.iter().map(|e| e.consumer).collect();
    assert_eq!(
        consumers,
        [
            crate::events::Consumer::Analytics,
            crate::events::Consumer::Sender,
            crate::events::Consumer::Analytics
        ]
    );
    assert_eq!(
        crate::events::queue_depth(&store, crate::events::Consumer::Sender).unwrap(),
        1
    );
}

/// The notifier thread answers committed writes: answered means readable, events heard once and in
/// sequence order, and a rejected write spares its batch mates under concurrency.
mod notifier {
    use std::time::Duration;

    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

    use super::super::*;
    use crate::events::{publish, EventPayload};

    const NOTES: Collection<String> = Collection::new(collections::TENANT_SETTINGS);

    impl Record for String {
        const VERSION: u16 = 1;
        const NAME: &'static str = "test note";
    }

    /// A store whose listener forwards the sequence number of every event it hears.
    fn open(dir: &Path) -> (Store, UnboundedReceiver<u64>) {
        let (tx, heard) = unbounded_channel();
        let store = Store::open(
            &dir.join("t.redb"),
            64,
            Box::new(move |envelopes: Vec<Envelope>| {
                for e in envelopes {
                    let _ = tx.send(e.seq);
                }
            }),
        )
        .unwrap();
        (store, heard)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_answered_after_commit_and_events_heard_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut heard) = open(dir.path());
        let tenant = TenantId::new();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..300u32 {
            let store = store.clone();
            tasks.spawn(async move {
                let key = i.to_be_bytes();
                let answer = store
                    .write(move |ctx| {
                        ctx.tenant(tenant).put(&NOTES, &key, &format!("note {i}"))?;
                        publish(
                            ctx,
                            tenant,
                            EventPayload::OutgoingMessage {
                                conversation: ConversationId::new(),
                                message: MessageId::new(),
                            },
                        )?;
                        Ok(i)
                    })
                    .await
                    .unwrap();
                assert_eq!(answer, i);
                // Answered means committed: a fresh snapshot already holds the write.
                let stored = store.read(|r| r.tenant(tenant).get(&NOTES, &key)).unwrap();
                assert_eq!(stored.as_deref(), Some(format!("note {i}").as_str()));
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let stats = store.stats();
        assert_eq!(stats.jobs, 300);
        assert!(stats.commits <= 300);
        let mut seqs = Vec::new();
        while seqs.len() < 300 {
            let seq = tokio::time::timeout(Duration::from_secs(10), heard.recv())
                .await
                .expect("listener heard every event")
                .unwrap();
            seqs.push(seq);
        }
        assert_eq!(seqs, (1..=300).collect::<Vec<u64>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rejected_write_leaves_its_batch_mates_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(dir.path());
        let tenant = TenantId::new();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..50u32 {
            let store = store.clone();
            tasks.spawn(async move {
                let result = store
                    .write(move |ctx| {
                        ctx.tenant(tenant)
                            .put(&NOTES, &i.to_be_bytes(), &format!("{i}"))?;
                        if i % 7 == 0 {
                            return Err(StoreError::rejected("test_rejected", "no"));
                        }
                        Ok(())
                    })
                    .await;
                (i, result.map_err(|e| e.code()))
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (i, result) = done.unwrap();
            let stored = store
                .read(|r| r.tenant(tenant).get(&NOTES, &i.to_be_bytes()))
                .unwrap();
            if i % 7 == 0 {
                assert_eq!(result, Err("test_rejected"));
                assert_eq!(stored, None);
            } else {
                assert_eq!(result, Ok(()));
                assert_eq!(stored, Some(format!("{i}")));
            }
        }
    }
}

#[tokio::test]
async fn operator_count_counts_the_rows_under_a_prefix_and_nothing_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .write(|ctx| {
            for key in [&b"a1"[..], b"a2", b"a3", b"b1"] {
                ctx.operator().put(&GLOBAL_NOTES, key, &note("x"))?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let count = |prefix: &'static [u8]| {
        store
            .read(|r| r.operator().count(&GLOBAL_NOTES, prefix))
            .unwrap()
    };
    assert_eq!(count(b"a"), 3);
    assert_eq!(count(b"b"), 1);
    assert_eq!(count(b"c"), 0);
    assert_eq!(count(b""), 4);
}

#[tokio::test]
async fn insert_new_encoded_keeps_the_first_value_of_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = (TenantId::new(), TenantId::new());
    let first = record::Encoded::new(&note("first")).unwrap();
    let again = record::Encoded::new(&note("again")).unwrap();
    let inserted = store
        .write(move |ctx| {
            let mut t = ctx.tenant(a);
            let fresh = t.insert_new_encoded(&NOTES, b"wamid.1", &first)?;
            let repeated = t.insert_new_encoded(&NOTES, b"wamid.1", &again)?;
            // The same key bytes of another tenant are another row.
            let other = ctx
                .tenant(b)
                .insert_new_encoded(&NOTES, b"wamid.1", &again)?;
            Ok((fresh, repeated, other))
        })
        .await
        .unwrap();
    assert_eq!(inserted, (true, false, true));
    let (kept, others) = store
        .read(|r| {
            Ok((
                r.tenant(a).get(&NOTES, b"wamid.1")?,
                r.tenant(b).get(&NOTES, b"wamid.1")?,
            ))
        })
        .unwrap();
    assert_eq!(kept.map(|n| n.text), Some("first".to_string()));
    assert_eq!(others.map(|n| n.text), Some("again".to_string()));
}
