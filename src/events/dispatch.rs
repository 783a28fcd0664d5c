//! Runs a consumer's handler over its queue: events of one lane (one conversation, one recipient)
//! in order, different lanes concurrently up to a limit, failures retried with backoff and finally
//! parked as dead letters so one poisoned event never blocks the rest.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify, Semaphore};
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

/// At most this many of a consumer's events are held in memory (queued in lanes or being
/// handled); the rest stay in redb and are read a page at a time as the handler catches up. A
/// flood of webhooks, or a restart after a long outage, costs disk, not memory.
pub const MEMORY_WINDOW: usize = 4096;

/// Envelopes held in memory, shared by the dispatcher and its lanes.
struct Held {
    count: AtomicUsize,
    /// Signalled when a lane finishes an event while the dispatcher waits for room.
    room: Notify,
}

impl Held {
    fn release(&self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
        self.room.notify_one();
    }
}

/// Where the feed of events comes from. Live: envelopes announced by the store as they commit.
/// Paging: from redb, because the window was full when envelopes were announced (they were
/// dropped; redb has them) or because the dispatcher has just started.
struct Feed {
    paging: bool,
    /// Every event up to this sequence number is handled, in memory, or no longer queued.
    high_water: u64,
    /// The highest live envelope dropped while paging: the page that ends the paging must have
    /// been read after it was committed.
    dropped_max: Option<u64>,
}

impl Dispatcher {
    /// Runs until `shutdown` turns true, then lets in-flight lanes finish their current event and
    /// returns; what is left stays queued in redb for the next start.
    pub async fn run(
        store: Store,
        handler: Arc<dyn Handler>,
        live: mpsc::UnboundedReceiver<Envelope>,
        concurrency: usize,
        shutdown: watch::Receiver<bool>,
    ) {
        Self::run_windowed(store, handler, live, concurrency, MEMORY_WINDOW, shutdown).await
    }

    /// [`Dispatcher::run`] with at most `window` events in memory.
    pub async fn run_windowed(
        store: Store,
        handler: Arc<dyn Handler>,
        mut live: mpsc::UnboundedReceiver<Envelope>,
        concurrency: usize,
        window: usize,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let consumer = handler.consumer();
        let window = window.max(2);
        let lanes: Arc<Mutex<HashMap<LaneKey, VecDeque<Envelope>>>> = Arc::default();
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let stopping = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Held {
            count: AtomicUsize::new(0),
            room: Notify::new(),
        });
        let mut tasks = JoinSet::new();

        let enqueue = |envelope: Envelope, tasks: &mut JoinSet<()>| {
            held.count.fetch_add(1, Ordering::SeqCst);
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
                held.clone(),
            ));
        };

        // A start reads what earlier runs left queued, a page at a time, like any catch-up.
        let mut feed = Feed {
            paging: true,
            high_water: 0,
            dropped_max: None,
        };
        let mut resumed = 0usize;
        while !*shutdown.borrow() {
            let in_memory = held.count.load(Ordering::SeqCst);
            if feed.paging && in_memory <= window / 2 {
                let limit = window - in_memory;
                // A page is thousands of decoded rows: read off the runtime's workers.
                let read = {
                    let store = store.clone();
                    let after = feed.high_water;
                    tokio::task::spawn_blocking(move || load_page(&store, consumer, after, limit))
                        .await
                        .unwrap_or_else(|e| Err(StoreError::Io(format!("page read: {e}"))))
                };
                match read {
                    Ok((page, next_seq)) => {
                        let caught_up = page.len() < limit;
                        resumed += page.len();
                        for envelope in page {
                            feed.high_water = envelope.seq;
                            enqueue(envelope, &mut tasks);
                        }
                        // Everything queued when the page was read is in memory now. If no
                        // envelope was dropped after that read, the live feed takes over: its
                        // copies of events numbered below `next_seq` are duplicates.
                        if caught_up && feed.dropped_max.is_none_or(|d| d < next_seq) {
                            feed.paging = false;
                            feed.dropped_max = None;
                            feed.high_water = feed.high_water.max(next_seq.saturating_sub(1));
                            if resumed > 0 {
                                tracing::info!(
                                    consumer = consumer.name(),
                                    events = resumed,
                                    "caught up with queued events"
                                );
                                resumed = 0;
                            }
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(consumer = consumer.name(), error = %e, "cannot read queued events; retrying");
                        tokio::select! {
                            _ = shutdown.changed() => {}
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        continue;
                    }
                }
            }
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    // The sender is gone: nobody can ask for a stop any more, so stop now.
                    if changed.is_err() { break; }
                }
                next = live.recv() => match next {
                    Some(envelope) if feed.paging => {
                        feed.dropped_max = feed.dropped_max.max(Some(envelope.seq));
                    }
                    Some(envelope) if envelope.seq > feed.high_water => {
                        if held.count.load(Ordering::SeqCst) >= window {
                            // Full: leave it (and what follows) in redb until there is room.
                            feed.paging = true;
                            feed.dropped_max = Some(envelope.seq);
                        } else {
                            feed.high_water = envelope.seq;
                            enqueue(envelope, &mut tasks);
                        }
                    }
                    Some(_) => {}
                    None => break,
                },
                _ = held.room.notified(), if feed.paging => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        stopping.store(true, Ordering::SeqCst);
        while tasks.join_next().await.is_some() {}
        tracing::debug!(consumer = consumer.name(), "dispatcher stopped");
    }
}

/// Up to `limit` of `consumer`'s queued events numbered after `after`, and the sequence number
/// the next event will get as of the same snapshot.
fn load_page(
    store: &Store,
    consumer: Consumer,
    after: u64,
    limit: usize,
) -> Result<(Vec<Envelope>, u64), StoreError> {
    store.read(|r| {
        let op = r.operator();
        let rows = op.scan_after(
            &EVENT_QUEUE,
            &[consumer.tag()],
            &queue_key(consumer, after),
            limit,
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
    held: Arc<Held>,
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
        held.release();
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
