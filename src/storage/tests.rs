use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::*;
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
