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

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

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
    tx: std_mpsc::Sender<Request>,
}

impl Committer {
    /// `writers` transactions may run at once: 1 for SQLite (one writer anyway),
    /// a few for PostgreSQL.
    pub fn start(db: Db, writers: usize, linger: Duration) -> Self {
        let (tx, rx) = std_mpsc::channel::<Request>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..writers.max(1) {
            let rx = rx.clone();
            let db = db.clone();
            std::thread::Builder::new()
                .name(format!("fieldsync-commit-{i}"))
                .spawn(move || writer_loop(&db, &rx, linger))
                .expect("spawn commit thread");
        }
        Self { tx }
    }

    /// Resolves once `write` is durably committed (or the commit failed).
    pub async fn commit(&self, write: DocWrite) -> Result<(), CommitError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Request { write, done })
            .map_err(|_| CommitError("committer stopped".into()))?;
        wait.await
            .map_err(|_| CommitError("committer dropped the request".into()))?
    }
}

fn writer_loop(db: &Db, rx: &Mutex<std_mpsc::Receiver<Request>>, linger: Duration) {
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
        commit_batch(db, batch);
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

fn commit_batch(db: &Db, batch: Vec<Request>) {
    let started = Instant::now();
    let (writes, dones): (Vec<DocWrite>, Vec<_>) =
        batch.into_iter().map(|r| (r.write, r.done)).unzip();
    let messages = writes.len();
    let result = match db.run_blocking(|c| append_changes(c, &writes)) {
        Ok(inserted) => {
            METRICS.commit_batches.inc();
            METRICS.commit_messages.add(messages as u64);
            METRICS.changes_committed.add(inserted as u64);
            METRICS
                .commit_micros
                .add(started.elapsed().as_micros() as u64);
            Ok(())
        }
        Err(e) => {
            METRICS.commit_failures.inc();
            tracing::error!(messages, error = %e, "group commit failed");
            Err(CommitError(e.to_string()))
        }
    };
    for done in dones {
        // A waiter that went away (connection closed) is fine to ignore.
        let _ = done.send(result.clone());
    }
}
