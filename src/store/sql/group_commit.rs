//! Group commit for single adds: concurrent `add_job` calls share one multi-row
//! `INSERT`, so a burst of adds (an order service adding one job per order over HTTP,
//! the HTTP adds) costs one statement and one commit (one WAL flush) per batch instead of
//! one per job.
//!
//! An add that finds nothing queued and no flush running is alone: it runs its own
//! statement in its own future, and adds that arrive meanwhile queue behind it. Any
//! other `add_job` puts its job on the queue and waits for its own answer; if no flush
//! is running, it spawns one: a task that takes up to [`CHUNK`] queued jobs, inserts
//! them in one statement, answers each caller, and repeats until the queue is empty.
//! Jobs that arrive while a statement is being written form the next batch, so batches
//! grow with the load, and a lone add (one caller adding one job after another) costs
//! its statement and commit and no hand-over to a task and back: on a loaded two-core
//! machine each such hop waits for a core, and the bound a lone caller is measured
//! against is one durable commit per add (`benches/durable_adds.rs`, BENCHMARKS.md).
//!
//! # Ground rules
//! - Same semantics as one insert per job: each caller learns when its own row is
//!   committed. A batch is all or nothing in the database; when it fails (a taken id, a
//!   job that cannot be serialised, a lost connection), every job of it is inserted again
//!   on its own, so each caller gets its own answer: `Conflict` only for the taken id.
//! - Batches are flushed by a spawned task, not in a caller's future: an HTTP handler
//!   dropped mid-request (its client went away) cannot strand the callers queued behind
//!   it. A lone add does run in its caller's future, but whatever queued behind it is
//!   handed to a flush task when that future ends, finished or dropped. A flush that
//!   panics drops its callers' reply channels (they get `Unavailable`) and gives the
//!   queue up, so the next add starts a new flush.
//! - One writer of adds at a time, as before: the lone add holds the queue's `flushing`
//!   mark while it writes.
//! - The queue's lock is a `std` mutex held only to push or take jobs, never across
//!   an `.await`.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::{failure, is_conflict, Dialect, SqlStore, CHUNK};
use crate::job::Job;
use crate::store::StoreError;

type Reply = oneshot::Sender<Result<Job, StoreError>>;

/// The jobs waiting to be inserted, and whether a flush task is running.
#[derive(Debug, Default)]
pub(super) struct AddQueue {
    pending: Vec<(Job, Reply)>,
    flushing: bool,
}

fn lock(queue: &Mutex<AddQueue>) -> MutexGuard<'_, AddQueue> {
    // A panic while holding the lock leaves a plain Vec and a flag, both still usable.
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<D: Dialect> SqlStore<D> {
    /// Adds `job` as part of whatever batch is being formed; see the module docs.
    pub(super) async fn add_job_grouped(&self, job: Job) -> Result<Job, StoreError> {
        let alone = {
            let mut queue = lock(&self.adds);
            let alone = !queue.flushing && queue.pending.is_empty();
            queue.flushing |= alone;
            alone
        };
        if alone {
            // Hands on what queues meanwhile when this future ends, however it ends.
            let _handover = Handover(self.clone());
            return self.add_one(job).await;
        }
        let (reply, answer) = oneshot::channel();
        let start_flush = {
            let mut queue = lock(&self.adds);
            queue.pending.push((job, reply));
            !std::mem::replace(&mut queue.flushing, true)
        };
        if start_flush {
            let store = self.clone();
            tokio::spawn(async move { store.flush_adds().await });
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::unavailable(
                "the add was dropped by a failed group commit".to_owned(),
            ))
        })
    }

    /// Inserts queued jobs, a batch at a time, until the queue is empty.
    async fn flush_adds(self) {
        let guard = FlushGuard(Arc::clone(&self.adds));
        loop {
            let batch: Vec<(Job, Reply)> = {
                let mut queue = lock(&self.adds);
                if queue.pending.is_empty() {
                    queue.flushing = false;
                    break;
                }
                let take = queue.pending.len().min(CHUNK);
                queue.pending.drain(..take).collect()
            };
            self.insert_batch(batch).await;
        }
        std::mem::forget(guard);
    }

    /// One statement for the whole batch; on any failure, one per job.
    async fn insert_batch(&self, batch: Vec<(Job, Reply)>) {
        let (mut jobs, replies): (Vec<Job>, Vec<Reply>) = batch.into_iter().unzip();
        if jobs.len() > 1 {
            if let Ok(Ok(())) = self.insert_jobs(&mut jobs).await {
                for (job, reply) in jobs.into_iter().zip(replies) {
                    // A caller that went away no longer needs its answer.
                    let _ = reply.send(Ok(job));
                }
                return;
            }
        }
        for (job, reply) in jobs.into_iter().zip(replies) {
            let _ = reply.send(self.add_one(job).await);
        }
    }

    /// Inserts one job in its own statement.
    pub(super) async fn add_one(&self, job: Job) -> Result<Job, StoreError> {
        let mut jobs = [job];
        match self.insert_jobs(&mut jobs).await? {
            Ok(()) => {
                let [job] = jobs;
                Ok(job)
            }
            Err(error) if is_conflict::<D>(&error) => {
                let [job] = jobs;
                Err(StoreError::Conflict(job.id))
            }
            Err(error) => Err(failure::<D>(error)),
        }
    }
}

/// Ends a lone add's turn as the writer: the adds that queued behind it go to a new
/// flush task, or, with none, the queue is free for the next lone add.
struct Handover<D: Dialect>(SqlStore<D>);

impl<D: Dialect> Drop for Handover<D> {
    fn drop(&mut self) {
        let mut queue = lock(&self.0.adds);
        if queue.pending.is_empty() {
            queue.flushing = false;
            return;
        }
        drop(queue);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let store = self.0.clone();
                runtime.spawn(async move { store.flush_adds().await });
            }
            // No runtime left to flush on (it is shutting down): the queued callers'
            // replies are dropped, so they get `Unavailable`, as from a failed flush.
            Err(_) => {
                let mut queue = lock(&self.0.adds);
                queue.pending.clear();
                queue.flushing = false;
            }
        }
    }
}

/// Gives the queue up if a flush task unwinds: its callers' replies are dropped (they
/// get `Unavailable`) and the next add starts a fresh flush.
struct FlushGuard(Arc<Mutex<AddQueue>>);

impl Drop for FlushGuard {
    fn drop(&mut self) {
        let mut queue = lock(&self.0);
        queue.pending.clear();
        queue.flushing = false;
    }
}
