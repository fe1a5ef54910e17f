//! Group commit. Doc actors hand their new changes to the committer and wait;
//! a worker takes everything queued at that moment, writes it in one
//! transaction, and answers each waiter only after the commit returned. While a
//! transaction is in flight, new requests pile up and share the next one, so the
//! fsync cost is spread over all messages that arrived meanwhile without adding
//! a timer-based delay.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, Mutex};

use super::{append_changes, DocWrite};
use crate::db::Db;
use crate::metrics::METRICS;

/// Upper bound of messages per transaction (keeps one transaction's size sane).
const MAX_BATCH: usize = 1024;

#[derive(Debug, Clone, thiserror::Error)]
#[error("commit failed: {0}")]
pub struct CommitError(pub String);

struct Request {
    write: DocWrite,
    done: oneshot::Sender<Result<(), CommitError>>,
}

#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Request>,
}

impl Committer {
    /// `workers` transactions may run at once: 1 for SQLite (one writer anyway),
    /// a few for PostgreSQL.
    pub fn start(db: Db, workers: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Request>(8 * MAX_BATCH);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..workers.max(1) {
            let rx = rx.clone();
            let db = db.clone();
            tokio::spawn(async move {
                loop {
                    let batch = {
                        let mut rx = rx.lock().await;
                        let Some(first) = rx.recv().await else { return };
                        let mut batch = vec![first];
                        while batch.len() < MAX_BATCH {
                            match rx.try_recv() {
                                Ok(r) => batch.push(r),
                                Err(_) => break,
                            }
                        }
                        batch
                    };
                    commit_batch(&db, batch).await;
                }
            });
        }
        Self { tx }
    }

    /// Resolves once `write` is durably committed (or the commit failed).
    pub async fn commit(&self, write: DocWrite) -> Result<(), CommitError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Request { write, done })
            .await
            .map_err(|_| CommitError("committer stopped".into()))?;
        wait.await.map_err(|_| CommitError("committer dropped the request".into()))?
    }
}

async fn commit_batch(db: &Db, batch: Vec<Request>) {
    let started = Instant::now();
    let (writes, dones): (Vec<DocWrite>, Vec<_>) = batch.into_iter().map(|r| (r.write, r.done)).unzip();
    let changes: usize = writes.iter().map(|w| w.changes.len()).sum();
    let messages = writes.len();
    let result = db.run(move |c| append_changes(c, &writes)).await;
    let result = match result {
        Ok(inserted) => {
            METRICS.commit_batches.inc();
            METRICS.commit_messages.add(messages as u64);
            METRICS.changes_committed.add(inserted as u64);
            METRICS.commit_micros.add(started.elapsed().as_micros() as u64);
            tracing::trace!(messages, changes, inserted, "group commit");
            Ok(())
        }
        Err(e) => {
            METRICS.commit_failures.inc();
            tracing::error!(messages, changes, error = %e, "group commit failed");
            Err(CommitError(e.to_string()))
        }
    };
    for done in dones {
        // A waiter that went away (connection closed) is fine to ignore.
        let _ = done.send(result.clone());
    }
}
