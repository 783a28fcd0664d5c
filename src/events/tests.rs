use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::*;
use crate::storage::Store;

/// A sender-side consumer double that records what it saw and can be told to fail.
struct Recorder {
    seen: Mutex<Vec<(String, u64)>>,
    failures_left: AtomicU32,
    permanent: bool,
    done: tokio::sync::Notify,
    /// How long each event takes to handle.
    delay: Duration,
}

impl Handler for Recorder {
    fn consumer(&self) -> Consumer {
        Consumer::Sender
    }
    fn lane(&self, envelope: &Envelope) -> LaneKey {
        match &envelope.payload {
            EventPayload::OutgoingMessage { conversation, .. } => conversation.to_string(),
            _ => String::new(),
        }
    }
    fn handle<'a>(&'a self, delivery: &'a Delivery) -> HandlerFuture<'a> {
        Box::pin(async move {
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            if self.failures_left.load(Ordering::SeqCst) > 0 {
                self.failures_left.fetch_sub(1, Ordering::SeqCst);
                return Err(if self.permanent {
                    HandlerError::Permanent("broken".into())
                } else {
                    HandlerError::Retry("flaky".into())
                });
            }
            let lane = self.lane(&delivery.envelope);
            self.seen
                .lock()
                .unwrap()
                .push((lane, delivery.envelope.seq));
            self.done.notify_waiters();
            Ok(())
        })
    }
}

fn recorder(failures: u32, permanent: bool) -> Arc<Recorder> {
    Arc::new(Recorder {
        seen: Mutex::default(),
        failures_left: AtomicU32::new(failures),
        permanent,
        done: tokio::sync::Notify::new(),
        delay: Duration::ZERO,
    })
}

/// Every event seen once, and each lane's events in sequence order.
fn assert_once_and_in_lane_order(seen: Vec<(String, u64)>) {
    let mut seqs: Vec<u64> = seen.iter().map(|(_, seq)| *seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), seen.len(), "an event was handled twice");
    let mut per_lane: HashMap<String, Vec<u64>> = HashMap::new();
    for (lane, seq) in seen {
        per_lane.entry(lane).or_default().push(seq);
    }
    for seqs in per_lane.values() {
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(seqs, &sorted, "one lane's events must be handled in order");
    }
}

fn open(path: &std::path::Path) -> (Store, mpsc::UnboundedReceiver<Envelope>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let store = Store::open(
        path,
        64,
        Box::new(move |events| {
            for e in events {
                if e.consumer == Consumer::Sender {
                    let _ = tx.send(e);
                }
            }
        }),
    )
    .unwrap();
    (store, rx)
}

async fn publish_outgoing(store: &Store, tenant: TenantId, conversation: ConversationId, n: usize) {
    for _ in 0..n {
        store
            .write(move |ctx| {
                publish(
                    ctx,
                    tenant,
                    EventPayload::OutgoingMessage {
                        conversation,
                        message: MessageId::new(),
                    },
                )
            })
            .await
            .unwrap();
    }
}

async fn wait_seen(r: &Recorder, n: usize) -> Vec<(String, u64)> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let notified = r.done.notified();
            if r.seen.lock().unwrap().len() >= n {
                return r.seen.lock().unwrap().clone();
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    })
    .await
    .expect("events delivered in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_delivered_in_order_per_lane_and_acked() {
    let dir = tempfile::tempdir().unwrap();
    let (store, rx) = open(&dir.path().join("e.redb"));
    let r = recorder(0, false);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(Dispatcher::run(store.clone(), r.clone(), rx, 8, stop_rx));
    let tenant = TenantId::new();
    let (c1, c2) = (ConversationId::new(), ConversationId::new());
    tokio::join!(
        publish_outgoing(&store, tenant, c1, 20),
        publish_outgoing(&store, tenant, c2, 20)
    );
    assert_once_and_in_lane_order(wait_seen(&r, 40).await);
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(queue_depth(&store, Consumer::Sender).unwrap(), 0);
}

/// More events than the memory window, both queued before the start (a restart after an outage)
/// and announced live faster than the handler keeps up: the dispatcher leaves the overflow in
/// redb and pages it in, and every event is still handled once, in lane order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_beyond_the_memory_window_is_paged_in_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, rx) = open(&dir.path().join("e.redb"));
    let tenant = TenantId::new();
    let lanes: Vec<ConversationId> = (0..4).map(|_| ConversationId::new()).collect();
    for lane in &lanes {
        publish_outgoing(&store, tenant, *lane, 10).await;
    }
    let r = Arc::new(Recorder {
        delay: Duration::from_millis(2),
        ..Arc::into_inner(recorder(0, false)).unwrap()
    });
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(Dispatcher::run_windowed(
        store.clone(),
        r.clone(),
        rx,
        2,
        4,
        stop_rx,
    ));
    let publishing = lanes
        .iter()
        .map(|lane| publish_outgoing(&store, tenant, *lane, 10));
    futures::future::join_all(publishing).await;
    assert_once_and_in_lane_order(wait_seen(&r, 80).await);
    tokio::time::timeout(Duration::from_secs(10), async {
        while queue_depth(&store, Consumer::Sender).unwrap() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every event acked");
    // Nothing more arrives after the backlog is worked off.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(r.seen.lock().unwrap().len(), 80);
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_events_are_redelivered_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.redb");
    let tenant = TenantId::new();
    {
        // Published, but no dispatcher runs: as if the process died before handling them.
        let (store, _rx) = open(&path);
        publish_outgoing(&store, tenant, ConversationId::new(), 3).await;
    }
    let (store, rx) = loop {
        match std::panic::catch_unwind(|| open(&path)) {
            Ok(v) => break v,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let r = recorder(0, false);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(Dispatcher::run(store.clone(), r.clone(), rx, 4, stop_rx));
    assert_eq!(wait_seen(&r, 3).await.len(), 3);
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(queue_depth(&store, Consumer::Sender).unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_permanent_ones_parked() {
    let dir = tempfile::tempdir().unwrap();
    let (store, rx) = open(&dir.path().join("e.redb"));
    let r = recorder(2, false);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(Dispatcher::run(store.clone(), r.clone(), rx, 4, stop_rx));
    publish_outgoing(&store, TenantId::new(), ConversationId::new(), 1).await;
    assert_eq!(wait_seen(&r, 1).await.len(), 1);
    stop.send(true).unwrap();
    task.await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (store, rx) = open(&dir.path().join("e.redb"));
    let r = recorder(1, true);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(Dispatcher::run(store.clone(), r.clone(), rx, 4, stop_rx));
    publish_outgoing(&store, TenantId::new(), ConversationId::new(), 1).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while queue_depth(&store, Consumer::Sender).unwrap() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let letters = store
        .read(|r| r.operator().scan(&DEAD_LETTERS, &[], false, usize::MAX))
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].1.error, "broken");
    assert!(r.seen.lock().unwrap().is_empty());
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[test]
fn prepared_events_store_what_publish_stores() {
    use crate::storage::record::{decode, encode};
    use crate::whatsapp::payload::{InboundMessage, MessageContent};
    let tenant = TenantId::new();
    let payload = EventPayload::InboundMessage {
        channel: crate::storage::ChannelId::new(),
        profile_name: Some("Budi \"B\" Santoso".into()),
        message: Box::new(InboundMessage {
            wamid: "wamid.HBgN\u{00e9}".into(),
            from: "6281234567890".into(),
            from_user_id: None,
            timestamp: 1_700_000_000,
            content: MessageContent::Text {
                body: "Halo\nbuka jam berapa? \u{1f600} \\ </tag>".into(),
            },
            context: None,
            referral: None,
            raw: serde_json::json!({"id": "wamid.x", "type": "text", "text": {"body": "Halo\n\u{1f600}"}})
                .into(),
        }),
    };
    let event = PreparedEvent::new(tenant, payload.clone()).unwrap();
    // Incoming messages go to two consumers; each gets the payload.
    assert_eq!(event.copies.len(), 2);
    assert!(event
        .copies
        .iter()
        .all(|(_, c)| c.as_ref() == Some(&payload)));
    for (seq, consumer) in [(7u64, Consumer::Conversations), (8, Consumer::Analytics)] {
        let envelope = Envelope {
            seq,
            consumer,
            tenant,
            at_ms: event.at_ms,
            payload: payload.clone(),
        };
        let prepared = Encoded::<Envelope>::from_mirror(&EnvelopeRow {
            seq,
            consumer,
            tenant,
            at_ms: event.at_ms,
            payload: &event.json,
        })
        .unwrap();
        assert_eq!(prepared.as_bytes(), encode(&envelope).unwrap().as_slice());
        assert_eq!(decode::<Envelope>(prepared.as_bytes()).unwrap(), envelope);
    }
    // Published twice, as a write job is when its batch is retried: the second run finds the
    // up-front copies taken and still stores and hands on the whole payload.
    let dir = tempfile::tempdir().unwrap();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let listener = heard.clone();
    let store = Store::open(
        &dir.path().join("test.redb"),
        64,
        Box::new(move |events| listener.lock().unwrap().extend(events)),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let shared = Arc::new(Mutex::new(event));
    for _ in 0..2 {
        let shared = shared.clone();
        runtime
            .block_on(store.write(move |ctx| publish_prepared(ctx, &mut shared.lock().unwrap())))
            .unwrap();
    }
    let stored = store
        .read(|r| r.operator().scan(&EVENT_QUEUE, &[], false, usize::MAX))
        .unwrap();
    assert_eq!(stored.len(), 4);
    assert!(stored.iter().all(|(_, e)| e.payload == payload));
    // The listener hears of a commit before its writer is answered.
    let heard = heard.lock().unwrap();
    assert_eq!(heard.len(), 4);
    assert!(heard.iter().all(|e| e.payload == payload));
}
