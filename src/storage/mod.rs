//! redb access: the one source of truth.
//!
//! One writer thread owns all writes and folds concurrent requests into shared durable commits
//! (group commit): a caller's future resolves only after the commit holding its write is on disk.
//! Reads run on MVCC snapshots in the caller's task and never wait for the writer.

pub mod collections;
pub mod ids;
pub mod record;
pub mod scoped;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use redb::{Database, Durability, TableHandle};
use tokio::sync::{mpsc, oneshot, watch};

use crate::events::Envelope;
pub use ids::*;
pub use record::Record;
use scoped::WriteTables;
pub use scoped::{
    Collection, GlobalCollection, GlobalWrite, OperatorRead, OperatorWrite, Rows, TenantRead,
    TenantWrite,
};
pub use scoped::{GLOBAL_TABLE, TENANT_TABLE};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("the store is shutting down")]
    Closed,
    /// A write rejected by its own logic (validation, conflict). Nothing of it was committed.
    #[error("{message}")]
    Rejected { code: &'static str, message: String },
}

impl StoreError {
    pub fn rejected(code: &'static str, message: impl Into<String>) -> Self {
        StoreError::Rejected {
            code,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Io(_) => "storage_io",
            StoreError::Corrupt(_) => "storage_corrupt",
            StoreError::Closed => "storage_closed",
            StoreError::Rejected { code, .. } => code,
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Io(e.to_string())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError
);

/// Everything one write job may touch: the two tables and the events published in this commit.
pub struct WriteCtx<'t> {
    tables: WriteTables<'t>,
    next_seq: u64,
    published: Vec<Envelope>,
}

impl<'t> WriteCtx<'t> {
    /// A handle scoped to one tenant. The tenant id comes from an authenticated request or from an
    /// event that carries it; the handle then builds every key itself.
    pub fn tenant(&mut self, tenant: TenantId) -> TenantWrite<'_, 't> {
        TenantWrite {
            tenant,
            tables: &mut self.tables,
        }
    }

    /// The explicit operator path: cross-tenant work only (registry, routing, dispatch, deletion).
    pub fn operator(&mut self) -> OperatorWrite<'_, 't> {
        OperatorWrite {
            tables: &mut self.tables,
        }
    }

    /// Reserves the next event sequence number (used by `events::publish`).
    pub(crate) fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    pub(crate) fn record_published(&mut self, envelope: Envelope) {
        self.published.push(envelope);
    }
}

/// A read snapshot.
pub struct ReadCtx {
    tenant: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    global: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl ReadCtx {
    pub fn tenant(&self, tenant: TenantId) -> TenantRead<'_> {
        TenantRead {
            tenant,
            table: &self.tenant,
        }
    }
    pub fn operator(&self) -> OperatorRead<'_> {
        OperatorRead {
            global: &self.global,
            tenant: &self.tenant,
        }
    }
}

trait Job: Send {
    fn run(&mut self, ctx: &mut WriteCtx<'_>) -> Result<(), StoreError>;
    fn finish(self: Box<Self>, result: Result<(), StoreError>);
}

struct TypedJob<F, R> {
    op: F,
    output: Option<R>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<F, R> Job for TypedJob<F, R>
where
    F: FnMut(&mut WriteCtx<'_>) -> Result<R, StoreError> + Send,
    R: Send,
{
    fn run(&mut self, ctx: &mut WriteCtx<'_>) -> Result<(), StoreError> {
        self.output = Some((self.op)(ctx)?);
        Ok(())
    }
    fn finish(mut self: Box<Self>, result: Result<(), StoreError>) {
        let outcome = match (result, self.output.take()) {
            (Ok(()), Some(output)) => Ok(output),
            (Ok(()), None) => Err(StoreError::Io("write produced no result".into())),
            (Err(e), _) => Err(e),
        };
        // The caller may have gone away (request cancelled); its write is committed regardless.
        let _ = self.reply.send(outcome);
    }
}

/// Called by the writer thread with the events of each durable commit, in commit order.
pub type CommitListener = Box<dyn Fn(Vec<Envelope>) + Send + Sync>;

/// Group-commit statistics, for benchmarks and metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct CommitStats {
    pub commits: u64,
    pub jobs: u64,
    /// Writer time spent running jobs inside their transactions.
    pub run_us: u64,
    /// Writer time spent in `commit` (page writes and the fsync).
    pub commit_us: u64,
}

#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    jobs: mpsc::Sender<Box<dyn Job>>,
    path: PathBuf,
    stats: Arc<std::sync::Mutex<CommitStats>>,
    closed: StoreClosed,
}

/// Resolves once every handle of a store is gone and its database file is closed: redb's clean
/// close syncs the file, and a process that exits before it finishes leaves a file that needs a
/// repair on the next open (and an in-process reopen finds it still locked).
#[derive(Clone)]
pub struct StoreClosed(watch::Receiver<bool>);

impl StoreClosed {
    pub async fn wait(mut self) {
        // An error means the writer thread is gone without saying so (it panicked): also closed.
        let _ = self.0.wait_for(|closed| *closed).await;
    }
}

const META_NEXT_SEQ: &[u8] = b"next_event_seq";

impl Store {
    /// Opens (or creates) the database at `path` and starts the writer thread. `listener` hears of
    /// every committed event.
    pub fn open(
        path: &Path,
        max_batch: usize,
        listener: CommitListener,
    ) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        {
            // Create both tables up front so read transactions never meet a missing table.
            let txn = db.begin_write()?;
            txn.open_table(TENANT_TABLE)?;
            txn.open_table(GLOBAL_TABLE)?;
            txn.commit()?;
        }
        let db = Arc::new(db);
        let next_seq = {
            let txn = db.begin_read()?;
            let global = txn.open_table(GLOBAL_TABLE)?;
            let key = meta_key(META_NEXT_SEQ);
            let value = global.get(key.as_slice())?;
            match value {
                Some(v) => {
                    let bytes: [u8; 8] = v
                        .value()
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("event sequence counter".into()))?;
                    u64::from_be_bytes(bytes)
                }
                None => 1,
            }
        };
        // Bounded: when the writer falls behind, callers wait (backpressure) instead of memory growing.
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>(max_batch.max(1) * 8);
        let stats = Arc::new(std::sync::Mutex::new(CommitStats::default()));
        let (settled_tx, settled_rx) = std::sync::mpsc::channel::<Settled>();
        std::thread::Builder::new()
            .name("wacrm-notify".into())
            .spawn(move || notify_loop(settled_rx, listener))
            .map_err(|e| StoreError::Io(format!("cannot start notifier thread: {e}")))?;
        let writer_db = db.clone();
        let writer_stats = stats.clone();
        let (closed_tx, closed_rx) = watch::channel(false);
        std::thread::Builder::new()
            .name("wacrm-writer".into())
            .spawn(move || {
                writer_loop(writer_db, rx, max_batch, next_seq, settled_tx, writer_stats);
                // The loop ends when the last `Store` is dropped, and it owned the last database
                // handle, which it dropped (closing the file) on return.
                let _ = closed_tx.send(true);
            })
            .map_err(|e| StoreError::Io(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            db,
            jobs: tx,
            path: path.to_path_buf(),
            stats,
            closed: StoreClosed(closed_rx),
        })
    }

    /// Resolves once every handle is dropped and the writer has released the database file, so
    /// the same file can be opened again (restart, backup, check). Bounded by `timeout`.
    pub fn closed(&self, timeout: std::time::Duration) -> impl std::future::Future<Output = bool> {
        let closed = self.closed.clone();
        async move { tokio::time::timeout(timeout, closed.wait()).await.is_ok() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A raw read transaction over the whole file: a consistent snapshot of every table, for
    /// whole-store operations (backup). Every write acknowledged before this call is in it.
    pub fn begin_snapshot(&self) -> Result<redb::ReadTransaction, StoreError> {
        Ok(self.db.begin_read()?)
    }

    /// Writes waiting for the writer thread, and how many may wait before callers block
    /// (load shedding and metrics).
    pub fn writer_backlog(&self) -> (usize, usize) {
        let max = self.jobs.max_capacity();
        (max - self.jobs.capacity(), max)
    }

    pub fn stats(&self) -> CommitStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// Runs `op` inside a shared durable commit and returns its result once that commit is on disk.
    /// `op` may run more than once (if another job of its batch fails, the batch is retried without
    /// it), so it must not consume what it captures. An `Err` from `op` discards all of its writes.
    pub async fn write<R, F>(&self, op: F) -> Result<R, StoreError>
    where
        F: FnMut(&mut WriteCtx<'_>) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(TypedJob {
            op,
            output: None,
            reply,
        });
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a consistent snapshot. Cheap; safe to call from async code for short reads.
    pub fn read<R>(
        &self,
        f: impl FnOnce(&ReadCtx) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let txn = self.db.begin_read()?;
        let ctx = ReadCtx {
            tenant: txn.open_table(TENANT_TABLE)?,
            global: txn.open_table(GLOBAL_TABLE)?,
        };
        f(&ctx)
    }

    /// Names of the tables in the file (used by checks and tests).
    pub fn table_names(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let names = txn
            .list_tables()?
            .map(|t| t.name().to_string())
            .collect::<Vec<_>>();
        Ok(names)
    }
}

/// Key of a storage meta row (global table, tag 0).
pub fn meta_key(name: &[u8]) -> Vec<u8> {
    let mut key = vec![collections::GLOBAL_META_TAG];
    key.extend_from_slice(name);
    key
}

/// A finished commit: its callers still to be answered, and the events it published.
struct Settled {
    jobs: Vec<Box<dyn Job>>,
    /// Applies to every job of `jobs`: all committed, or none (storage failure).
    outcome: Result<(), String>,
    published: Vec<Envelope>,
}

impl Settled {
    fn deliver(self, listener: &CommitListener) {
        // The listener hears of the events before their writers hear back: a caller that
        // published something finds it handed on (in its consumer's channel) on return.
        if !self.published.is_empty() {
            listener(self.published);
        }
        match self.outcome {
            Ok(()) => {
                for job in self.jobs {
                    job.finish(Ok(()));
                }
            }
            Err(message) => {
                for job in self.jobs {
                    job.finish(Err(StoreError::Io(message.clone())));
                }
            }
        }
    }
}

fn writer_loop(
    db: Arc<Database>,
    mut rx: mpsc::Receiver<Box<dyn Job>>,
    max_batch: usize,
    mut next_seq: u64,
    settled_tx: std::sync::mpsc::Sender<Settled>,
    stats: Arc<std::sync::Mutex<CommitStats>>,
) {
    // Answering callers and the listener is handed to the notifier thread: each answer wakes a
    // task, and on a small machine those wakes preempt whoever makes them. Measured on 2 cores,
    // answering inline took as long as the commit itself, with the next batch waiting behind it.
    let mut inline: Option<CommitListener> = None;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let size = batch.len();
        let (settled, commit_time) = commit_batch(&db, batch, &mut next_seq);
        let elapsed = started.elapsed();
        // Counted before the notifier answers anyone, so a caller that reads the stats after its
        // write returned sees its own commit in them.
        if let Ok(mut s) = stats.lock() {
            s.commits += 1;
            s.jobs += size as u64;
            s.commit_us += commit_time.as_micros() as u64;
            s.run_us += elapsed.saturating_sub(commit_time).as_micros() as u64;
        }
        tracing::trace!(
            jobs = size,
            elapsed_us = elapsed.as_micros() as u64,
            "group commit"
        );
        if let Err(std::sync::mpsc::SendError(settled)) = settled_tx.send(settled) {
            // The notifier is gone (its listener panicked): answer callers here rather than leave
            // them hanging. Events are no longer announced live; they stay queued in redb and
            // are delivered on the next start.
            let listener = inline.get_or_insert_with(|| Box::new(|_| {}));
            settled.deliver(listener);
        }
    }
    drop(db);
    tracing::debug!("writer thread stopped");
}

/// Answers the callers of each commit and tells the listener of its events, in commit order.
fn notify_loop(rx: std::sync::mpsc::Receiver<Settled>, listener: CommitListener) {
    while let Ok(settled) = rx.recv() {
        settled.deliver(&listener);
    }
}

/// Runs a batch of jobs in one transaction. A job whose own logic fails is answered with its error
/// and the batch is retried without it, so one bad write never takes others down with it. Returns
/// the settled batch and the time its commit took.
fn commit_batch(
    db: &Database,
    mut jobs: Vec<Box<dyn Job>>,
    next_seq: &mut u64,
) -> (Settled, std::time::Duration) {
    loop {
        if jobs.is_empty() {
            return (
                Settled {
                    jobs,
                    outcome: Ok(()),
                    published: Vec::new(),
                },
                std::time::Duration::ZERO,
            );
        }
        let attempt = run_jobs(db, &mut jobs, *next_seq);
        match attempt {
            Ok((seq_after, published, commit_time)) => {
                *next_seq = seq_after;
                return (
                    Settled {
                        jobs,
                        outcome: Ok(()),
                        published,
                    },
                    commit_time,
                );
            }
            Err(BatchFailure::Job(index, error)) => {
                let failed = jobs.remove(index);
                failed.finish(Err(error));
            }
            Err(BatchFailure::Storage(error)) => {
                let message = error.to_string();
                tracing::error!(error = %message, "commit failed");
                return (
                    Settled {
                        jobs,
                        outcome: Err(message),
                        published: Vec::new(),
                    },
                    std::time::Duration::ZERO,
                );
            }
        }
    }
}

enum BatchFailure {
    Job(usize, StoreError),
    Storage(StoreError),
}

fn run_jobs(
    db: &Database,
    jobs: &mut [Box<dyn Job>],
    first_seq: u64,
) -> Result<(u64, Vec<Envelope>, std::time::Duration), BatchFailure> {
    let mut txn = db
        .begin_write()
        .map_err(|e| BatchFailure::Storage(e.into()))?;
    txn.set_durability(Durability::Immediate);
    let (seq_after, published) = {
        let tables = WriteTables {
            tenant: txn
                .open_table(TENANT_TABLE)
                .map_err(|e| BatchFailure::Storage(e.into()))?,
            global: txn
                .open_table(GLOBAL_TABLE)
                .map_err(|e| BatchFailure::Storage(e.into()))?,
        };
        let mut ctx = WriteCtx {
            tables,
            next_seq: first_seq,
            published: Vec::new(),
        };
        for (index, job) in jobs.iter_mut().enumerate() {
            if let Err(error) = job.run(&mut ctx) {
                // Dropping `ctx` and `txn` without commit aborts everything of this attempt.
                return Err(match error {
                    StoreError::Io(_) => BatchFailure::Storage(error),
                    other => BatchFailure::Job(index, other),
                });
            }
        }
        if ctx.next_seq != first_seq {
            let key = meta_key(META_NEXT_SEQ);
            ctx.tables
                .global
                .insert(key.as_slice(), ctx.next_seq.to_be_bytes().as_slice())
                .map_err(|e| BatchFailure::Storage(e.into()))?;
        }
        (ctx.next_seq, ctx.published)
    };
    let committing = Instant::now();
    txn.commit().map_err(|e| BatchFailure::Storage(e.into()))?;
    Ok((seq_after, published, committing.elapsed()))
}

#[cfg(test)]
mod tests;

/// The sequence number the next published event will get, as of this snapshot. Every event with a
/// smaller number was committed before the snapshot.
pub fn next_event_seq(op: &OperatorRead<'_>) -> Result<u64, StoreError> {
    let key = meta_key(META_NEXT_SEQ);
    match op.global.get(key.as_slice())? {
        Some(v) => {
            let bytes: [u8; 8] = v
                .value()
                .try_into()
                .map_err(|_| StoreError::Corrupt("event sequence counter".into()))?;
            Ok(u64::from_be_bytes(bytes))
        }
        None => Ok(1),
    }
}
