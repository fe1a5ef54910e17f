//! Password hashing on its own small, bounded pool.
//!
//! argon2 costs ~19 MiB and tens of milliseconds of CPU per password. Run on
//! the database pool, a login burst held the connections sync commits need;
//! run on tokio's blocking pool (up to 512 threads), it multiplied the memory.
//! Here a fixed number of threads (default: one per core) each keep one
//! argon2 buffer for their lifetime, and at most `queue` more requests wait;
//! beyond that `reserve` fails at once and the caller answers 503.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};

use argon2::Block;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::password::{self, PasswordError};

type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// Every worker is busy and the queue is full.
#[derive(Debug, thiserror::Error)]
#[error("the server is busy checking passwords; retry in a second")]
pub struct Busy;

pub struct PasswordPool {
    /// Admission: workers + queue places; a place is held from `reserve`
    /// until its job has run.
    places: Arc<Semaphore>,
    jobs: SyncSender<Job>,
}

impl PasswordPool {
    pub fn start(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        let capacity = workers + queue;
        // Never blocks: admission lets at most `capacity` jobs exist.
        let (tx, rx) = sync_channel::<Job>(capacity);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("password-{i}"))
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match job {
                            Ok(job) => job(&mut memory),
                            Err(_) => return,
                        }
                    }
                })
                .expect("spawn a password hashing thread");
        }
        Self {
            places: Arc::new(Semaphore::new(capacity)),
            jobs: tx,
        }
    }

    /// A place in the pool, or `Busy`. Reserve before other work (database
    /// reads, throttle counts), so a refusal costs nothing.
    pub fn reserve(&self) -> Result<Place, Busy> {
        let permit = self.places.clone().try_acquire_owned().map_err(|_| Busy)?;
        Ok(Place {
            permit,
            jobs: self.jobs.clone(),
        })
    }
}

/// A reserved place; spent by one `verify` or `hash`.
pub struct Place {
    permit: OwnedSemaphorePermit,
    jobs: SyncSender<Job>,
}

impl Place {
    async fn run<T: Send + 'static>(
        self,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> T {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let permit = self.permit;
        let job: Job = Box::new(move |memory| {
            let _ = tx.send(f(memory));
            // The place frees only when the work is done, even if the
            // request that asked for it has gone away.
            drop(permit);
        });
        self.jobs
            .try_send(job)
            .unwrap_or_else(|_| panic!("password pool: admission exceeded or workers gone"));
        rx.await.expect("a password hashing thread panicked")
    }

    /// Checks `password` against `stored`, or against a dummy hash when the
    /// user does not exist (same cost, so timing reveals nothing).
    pub async fn verify(self, password: String, stored: Option<String>) -> bool {
        self.run(move |memory| {
            let stored = match &stored {
                Some(s) => s.as_str(),
                None => password::dummy_hash(),
            };
            password::verify_with(&password, stored, memory)
        })
        .await
    }

    pub async fn hash(self, new_password: String) -> Result<String, PasswordError> {
        password::check_new(&new_password)?;
        self.run(move |_| password::hash(&new_password)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn places_are_bounded_and_freed_after_the_work() {
        let pool = PasswordPool::start(1, 1);
        let a = pool.reserve().unwrap();
        let b = pool.reserve().unwrap();
        assert!(pool.reserve().is_err(), "one worker + one queued");
        let stored = password::hash("correct horse").unwrap();
        assert!(a.verify("correct horse".into(), Some(stored.clone())).await);
        assert!(!b.verify("wrong horse".into(), None).await);
        let c = pool.reserve().expect("places are free again");
        assert!(c.verify("correct horse".into(), Some(stored)).await);
        drop(pool.reserve().unwrap()); // an unused place is returned too
        assert!(pool.reserve().is_ok());
    }
}
