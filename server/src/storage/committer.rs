//! Group commit. Doc actors hand their new changes to the committer and wait;
//! a writer thread takes everything queued at that moment, writes it in one
//! transaction, and answers each waiter only after the commit returned. While a
//! transaction is in flight, new requests pile up and share the next one, so the
//! fsync cost is spread over all messages that arrived meanwhile. Under
//! concurrent load the writer also lingers briefly (`--commit-linger-us`,
//! default 500 µs) to gather more: fewer fsyncs per change, which on a busy
//! machine lowers both CPU per change and end-to-end latency (see README).
//!
//! Writers are plain threads that own a pooled connection and block on the
//! queue: no hop through the async runtime's blocking pool per batch.
//!
//! A failed batch is retried one write at a time, so one document whose write
//! cannot be stored never fails the others' commits. Every outcome is
//! recorded in `StorageHealth` (for `/health`) and logged with advice.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::faults::{self, FaultPlan, FaultPoint};
use super::health::{self, StorageHealth};
use super::{append_changes_then, DocWrite};
use crate::db::{Db, DbError};
use crate::metrics::METRICS;

/// Upper bound of messages per transaction (keeps one transaction's size sane).
const MAX_BATCH: usize = 1024;

/// A commit that did not happen (or whose outcome is unknown: treat the
/// changes as not stored; storing them again later is harmless).
#[derive(Debug, Clone, thiserror::Error)]
#[error("commit failed: {message}")]
pub struct CommitError {
    pub message: String,
    /// Storage is failing (outage, disk full): retry later.
    pub unavailable: bool,
}

impl CommitError {
    fn stopped(what: &str) -> Self {
        Self {
            message: what.into(),
            unavailable: true,
        }
    }
}

struct Request {
    write: DocWrite,
    done: oneshot::Sender<Result<(), CommitError>>,
    /// The waiter's span (doc actor → connection): the batch's span follows
    /// from each, so a trace leads from a device's message to its commit.
    span: tracing::Span,
}

#[derive(Clone)]
pub struct Committer {
    tx: std_mpsc::Sender<Request>,
    pub health: Arc<StorageHealth>,
    /// Injected faults (tests only; see `faults`).
    pub faults: Option<Arc<FaultPlan>>,
    db: Db,
}

struct Writer {
    db: Db,
    health: Arc<StorageHealth>,
    faults: Option<Arc<FaultPlan>>,
}

impl Committer {
    /// `writers` transactions may run at once: 1 for SQLite (one writer anyway),
    /// a few for PostgreSQL.
    pub fn start(db: Db, writers: usize, linger: Duration, faults: Option<Arc<FaultPlan>>) -> Self {
        let (tx, rx) = std_mpsc::channel::<Request>();
        let rx = Arc::new(Mutex::new(rx));
        let health = Arc::new(StorageHealth::default());
        for i in 0..writers.max(1) {
            let rx = rx.clone();
            let writer = Writer {
                db: db.clone(),
                health: health.clone(),
                faults: faults.clone(),
            };
            std::thread::Builder::new()
                .name(format!("fieldsync-commit-{i}"))
                .spawn(move || writer.run(&rx, linger))
                .expect("spawn commit thread");
        }
        Self {
            tx,
            health,
            faults,
            db,
        }
    }

    /// Resolves once `write` is durably committed (or the commit failed).
    pub async fn commit(&self, write: DocWrite) -> Result<(), CommitError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Request {
                write,
                done,
                span: tracing::Span::current(),
            })
            .map_err(|_| CommitError::stopped("committer stopped"))?;
        wait.await
            .map_err(|_| CommitError::stopped("committer dropped the request"))?
    }

    /// A small write that tells whether storage takes writes again; its
    /// outcome updates the health record like any commit.
    pub async fn probe(&self) -> Result<(), DbError> {
        let r = self.db.run(super::write_probe).await;
        match &r {
            Ok(()) => self.health.commit_ok(),
            Err(e) => self.health.commit_failed(&e.to_string()),
        }
        r
    }
}

impl Writer {
    fn run(&self, rx: &Mutex<std_mpsc::Receiver<Request>>, linger: Duration) {
        loop {
            let batch = {
                let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
                let Ok(first) = rx.recv() else { return };
                let mut batch = vec![first];
                drain(&rx, &mut batch);
                // Linger only under concurrent load (more than one message already
                // waiting): an idle server commits at once.
                if !linger.is_zero() && batch.len() > 1 && batch.len() < MAX_BATCH {
                    std::thread::sleep(linger);
                    drain(&rx, &mut batch);
                }
                batch
            };
            self.commit_batch(batch);
        }
    }
}

fn drain(rx: &std_mpsc::Receiver<Request>, batch: &mut Vec<Request>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(r) => batch.push(r),
            Err(_) => break,
        }
    }
}

impl Writer {
    fn commit_batch(&self, batch: Vec<Request>) {
        let span = tracing::info_span!("commit_batch", messages = batch.len());
        for r in &batch {
            span.follows_from(&r.span);
        }
        let _entered = span.enter();
        let (writes, dones): (Vec<DocWrite>, Vec<_>) =
            batch.into_iter().map(|r| (r.write, r.done)).unzip();
        match self.write(&writes) {
            Ok(()) => answer(dones, Ok(())),
            // Retry alone, so one document's write that cannot be stored does
            // not fail the others' (a storage outage fails them all anyway).
            Err(_) if writes.len() > 1 => {
                for (w, done) in writes.into_iter().zip(dones) {
                    let _ = done.send(self.write(std::slice::from_ref(&w)));
                }
            }
            Err(e) => answer(dones, Err(e)),
        }
    }

    /// One transaction for `writes`, with its metrics, health and log line.
    fn write(&self, writes: &[DocWrite]) -> Result<(), CommitError> {
        let started = Instant::now();
        let fault = self.faults.as_ref().and_then(|f| f.next_commit());
        let result = match fault {
            Some(FaultPoint::BeforeTransaction) => {
                Err(faults::injected_error(FaultPoint::BeforeTransaction))
            }
            Some(FaultPoint::InsideTransaction) => self.db.run_blocking(|c| {
                append_changes_then(c, writes, || {
                    Err(faults::injected_error(FaultPoint::InsideTransaction))
                })
            }),
            Some(FaultPoint::AfterCommit) => self
                .db
                .run_blocking(|c| append_changes_then(c, writes, || Ok(())))
                .and(Err(faults::injected_error(FaultPoint::AfterCommit))),
            None => self
                .db
                .run_blocking(|c| append_changes_then(c, writes, || Ok(()))),
        };
        let took = started.elapsed();
        METRICS.commit_duration.observe(took);
        match result {
            Ok(inserted) => {
                METRICS.commit_batch_size.record(writes.len() as f64);
                METRICS.commit_batches.inc();
                METRICS.commit_messages.add(writes.len() as u64);
                METRICS.changes_committed.add(inserted as u64);
                METRICS.commit_micros.add(took.as_micros() as u64);
                self.health.commit_ok();
                Ok(())
            }
            Err(e) => {
                METRICS.commit_failures.inc();
                self.health.commit_failed(&e.to_string());
                let docs: Vec<&str> = writes.iter().map(|w| w.doc_id.as_str()).collect();
                tracing::error!(
                    messages = writes.len(),
                    ?docs,
                    error = %e,
                    advice = %health::advice(&self.db.target, &e),
                    "commit failed; nothing of it is acknowledged, devices keep their changes and retry"
                );
                Err(CommitError {
                    message: e.to_string(),
                    unavailable: e.is_unavailable(),
                })
            }
        }
    }
}

fn answer(dones: Vec<oneshot::Sender<Result<(), CommitError>>>, result: Result<(), CommitError>) {
    for done in dones {
        // A waiter that went away (connection closed) is fine to ignore.
        let _ = done.send(result.clone());
    }
}
