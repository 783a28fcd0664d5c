//! Debounced bot turns. A customer message in bot mode (re)schedules the conversation's turn at
//! `now + debounce`; the schedule is a durable global index (due time | tenant | conversation), so
//! turns survive a crash. This task wakes at the earliest due time and hands the turn to the
//! assistant. A turn that was rescheduled meanwhile is recognised by its id and skipped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::storage::collections as tags;
use crate::storage::{ConversationId, GlobalCollection, MessageId, Record, Store, TenantId};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct ScheduledTurn {
    pub due_ms: i64,
    pub tenant: TenantId,
    pub conversation: ConversationId,
    /// Identifies this scheduling; a newer message gives the conversation a new turn id.
    pub turn: MessageId,
}

impl Record for ScheduledTurn {
    const VERSION: u16 = 1;
    const NAME: &'static str = "scheduled turn";
}

pub const TURN_SCHEDULE: GlobalCollection<ScheduledTurn> =
    GlobalCollection::new(tags::TURN_SCHEDULE);

pub fn schedule_key(due_ms: i64, tenant: TenantId, conversation: ConversationId) -> Vec<u8> {
    let mut key = Vec::with_capacity(40);
    key.extend_from_slice(&(due_ms.max(0) as u64).to_be_bytes());
    key.extend_from_slice(tenant.as_bytes());
    key.extend_from_slice(conversation.as_bytes());
    key
}

pub type TurnFuture = Pin<Box<dyn Future<Output = TurnResult> + Send>>;

pub enum TurnResult {
    Done,
    /// Could not finish (storage hiccup): try again after this delay.
    RetryAfter(Duration),
}

/// The assistant: runs one due turn, and removes it from the schedule in the commit of its outcome.
pub trait TurnRunner: Send + Sync + 'static {
    fn run_turn(&self, turn: ScheduledTurn) -> TurnFuture;
}

/// Handle used to tell the scheduler about turns committed after it started.
#[derive(Clone)]
pub struct TurnScheduler {
    tx: mpsc::UnboundedSender<ScheduledTurn>,
}

impl TurnScheduler {
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<ScheduledTurn>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, rx)
    }

    pub fn schedule(&self, turn: ScheduledTurn) {
        // Only fails once the scheduler stopped; the turn stays durable and runs after restart.
        let _ = self.tx.send(turn);
    }
}

pub async fn run_scheduler(
    store: Store,
    runner: Arc<dyn TurnRunner>,
    mut rx: mpsc::UnboundedReceiver<ScheduledTurn>,
    concurrency: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut heap: BinaryHeap<Reverse<ScheduledTurn>> = BinaryHeap::new();
    match store.read(|r| r.operator().scan(&TURN_SCHEDULE, &[], false, usize::MAX)) {
        Ok(rows) => {
            if !rows.is_empty() {
                tracing::info!(pending = rows.len(), "resuming scheduled assistant turns");
            }
            heap.extend(rows.into_iter().map(|(_, t)| Reverse(t)));
        }
        Err(e) => tracing::error!(error = %e, "cannot load the turn schedule"),
    }
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let (retry_tx, mut retry_rx) = mpsc::unbounded_channel::<ScheduledTurn>();
    let mut tasks = JoinSet::new();
    loop {
        let now = crate::events::now_ms();
        while heap.peek().is_some_and(|Reverse(t)| t.due_ms <= now) {
            let Some(Reverse(turn)) = heap.pop() else {
                break;
            };
            let runner = runner.clone();
            let permits = permits.clone();
            let retry_tx = retry_tx.clone();
            tasks.spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                if let TurnResult::RetryAfter(delay) = runner.run_turn(turn).await {
                    let mut again = turn;
                    again.due_ms = crate::events::now_ms() + delay.as_millis() as i64;
                    let _ = retry_tx.send(again);
                }
            });
        }
        let sleep_for = heap
            .peek()
            .map(|Reverse(t)| Duration::from_millis((t.due_ms - now).max(0) as u64))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                if *shutdown.borrow() { break; }
            }
            Some(turn) = rx.recv() => heap.push(Reverse(turn)),
            Some(turn) = retry_rx.recv() => heap.push(Reverse(turn)),
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = tokio::time::sleep(sleep_for) => {}
        }
    }
    // Turns in flight finish (their outcome commits or they stay scheduled for the next start).
    while tasks.join_next().await.is_some() {}
    tracing::debug!("turn scheduler stopped");
}
