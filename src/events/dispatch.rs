//! Runs a consumer's handler over its queue: events of one lane (one conversation, one recipient)
//! in order, different lanes concurrently up to a limit, failures retried with backoff and finally
//! parked as dead letters so one poisoned event never blocks the rest.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use super::{ack, now_ms, queue_key, Consumer, DeadLetter, Envelope, DEAD_LETTERS, EVENT_QUEUE};
use crate::storage::{Store, StoreError, WriteCtx};

/// Events with the same lane key are handled one at a time, in sequence order.
pub type LaneKey = String;

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth trying again later (storage hiccup, remote API down).
    #[error("{0}")]
    Retry(String),
    /// Will never succeed; park it as a dead letter at once.
    #[error("{0}")]
    Permanent(String),
}

impl From<StoreError> for HandlerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Corrupt(m) => HandlerError::Permanent(m),
            other => HandlerError::Retry(other.to_string()),
        }
    }
}

/// One event being handled. The handler acks it inside its own final write (`ack_in`), so the
/// effect and the queue removal commit together; otherwise the dispatcher acks it afterwards.
pub struct Delivery {
    pub envelope: Envelope,
    acked: AtomicBool,
}

impl Delivery {
    pub fn ack_in(&self, ctx: &mut WriteCtx<'_>) -> Result<(), StoreError> {
        ack(ctx, self.envelope.consumer, self.envelope.seq)?;
        self.acked.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Tells the dispatcher the handler already acked this event in its own commit (through
    /// `events::ack` with this envelope's consumer and seq).
    pub fn mark_acked(&self) {
        self.acked.store(true, Ordering::SeqCst);
    }
}

pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'a>>;

pub trait Handler: Send + Sync + 'static {
    fn consumer(&self) -> Consumer;
    fn lane(&self, envelope: &Envelope) -> LaneKey;
    fn handle<'a>(&'a self, delivery: &'a Delivery) -> HandlerFuture<'a>;
}

const MAX_ATTEMPTS: u32 = 8;

/// Feeds one consumer's events to its handler.
pub struct Dispatcher;

impl Dispatcher {
    /// Runs until `shutdown` turns true, then lets in-flight lanes finish their current event and
    /// returns; what is left stays queued in redb for the next start.
    pub async fn run(
        store: Store,
        handler: Arc<dyn Handler>,
        mut live: mpsc::UnboundedReceiver<Envelope>,
        concurrency: usize,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let consumer = handler.consumer();
        // Everything committed before this snapshot is in it; live envelopes with a smaller
        // sequence number are therefore duplicates of loaded ones.
        let (backlog, snapshot_seq) = match load_backlog(&store, consumer) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(consumer = consumer.name(), error = %e, "cannot load event backlog");
                (Vec::new(), 0)
            }
        };
        if !backlog.is_empty() {
            tracing::info!(
                consumer = consumer.name(),
                pending = backlog.len(),
                "resuming queued events"
            );
        }
        let lanes: Arc<Mutex<HashMap<LaneKey, VecDeque<Envelope>>>> = Arc::default();
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let stopping = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();

        let enqueue = |envelope: Envelope, tasks: &mut JoinSet<()>| {
            let key = handler.lane(&envelope);
            let mut map = match lanes.lock() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            if let Some(queue) = map.get_mut(&key) {
                queue.push_back(envelope);
                return;
            }
            map.insert(key.clone(), VecDeque::from([envelope]));
            drop(map);
            tasks.spawn(run_lane(
                store.clone(),
                handler.clone(),
                lanes.clone(),
                key,
                permits.clone(),
                stopping.clone(),
            ));
        };

        for envelope in backlog {
            enqueue(envelope, &mut tasks);
        }
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { break; }
                }
                next = live.recv() => match next {
                    Some(envelope) => {
                        if envelope.seq >= snapshot_seq {
                            enqueue(envelope, &mut tasks);
                        }
                    }
                    None => break,
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        stopping.store(true, Ordering::SeqCst);
        while tasks.join_next().await.is_some() {}
        tracing::debug!(consumer = consumer.name(), "dispatcher stopped");
    }
}

fn load_backlog(store: &Store, consumer: Consumer) -> Result<(Vec<Envelope>, u64), StoreError> {
    store.read(|r| {
        let op = r.operator();
        let rows = op.scan(
            &EVENT_QUEUE,
            &[queue_key(consumer, 0)[0]],
            false,
            usize::MAX,
        )?;
        let next_seq = crate::storage::next_event_seq(&op)?;
        Ok((rows.into_iter().map(|(_, e)| e).collect(), next_seq))
    })
}

async fn run_lane(
    store: Store,
    handler: Arc<dyn Handler>,
    lanes: Arc<Mutex<HashMap<LaneKey, VecDeque<Envelope>>>>,
    key: LaneKey,
    permits: Arc<Semaphore>,
    stopping: Arc<AtomicBool>,
) {
    let Ok(_permit) = permits.acquire_owned().await else {
        return;
    };
    loop {
        if stopping.load(Ordering::SeqCst) {
            // Leave the rest queued in redb; the next start picks it up.
            if let Ok(mut map) = lanes.lock() {
                map.remove(&key);
            }
            return;
        }
        let next = {
            let mut map = match lanes.lock() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            let front = map.get_mut(&key).and_then(|q| q.pop_front());
            if front.is_none() {
                map.remove(&key);
            }
            front
        };
        let Some(envelope) = next else { return };
        deliver(&store, handler.as_ref(), envelope, &stopping).await;
    }
}

async fn deliver(store: &Store, handler: &dyn Handler, envelope: Envelope, stopping: &AtomicBool) {
    let consumer = envelope.consumer;
    let seq = envelope.seq;
    let delivery = Delivery {
        envelope,
        acked: AtomicBool::new(false),
    };
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let result = handler.handle(&delivery).await;
        match result {
            Ok(()) => {
                if !delivery.acked.load(Ordering::SeqCst) {
                    if let Err(e) = store.write(move |ctx| ack(ctx, consumer, seq)).await {
                        tracing::warn!(consumer = consumer.name(), seq, error = %e, "ack failed; event will be redelivered");
                    }
                }
                return;
            }
            Err(HandlerError::Retry(reason)) if attempt < MAX_ATTEMPTS => {
                tracing::warn!(consumer = consumer.name(), seq, attempt, tenant = %delivery.envelope.tenant, %reason, "handler failed; retrying");
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let delay = Duration::from_millis(100u64.saturating_mul(1 << attempt.min(8)));
                tokio::time::sleep(delay).await;
                // A handler may fail because the app is stopping (it sees the stop signal before
                // this loop does): no new attempt then, the event stays queued.
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
            }
            Err(error) => {
                tracing::error!(consumer = consumer.name(), seq, attempt, tenant = %delivery.envelope.tenant, %error, "handler gave up; event parked as a dead letter");
                let letter = DeadLetter {
                    envelope: delivery.envelope.clone(),
                    error: error.to_string(),
                    attempts: attempt,
                    at_ms: now_ms(),
                };
                let result = store
                    .write(move |ctx| {
                        ctx.operator()
                            .put(&DEAD_LETTERS, &queue_key(consumer, seq), &letter)?;
                        ack(ctx, consumer, seq)
                    })
                    .await;
                if let Err(e) = result {
                    tracing::error!(consumer = consumer.name(), seq, error = %e, "cannot park dead letter");
                }
                return;
            }
        }
    }
}
