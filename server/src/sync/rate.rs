//! Per-user sync budgets: messages, bytes and operations per second.
//!
//! Counting messages alone let one user send 8 MiB frames (or 100-byte
//! changes describing a million operations) as fast as the server could take
//! them. Each user gets one budget with three token buckets, shared by all of
//! their connections and batch requests, so opening more sockets buys nothing.
//!
//! Presence (ephemeral messages) has a budget of its own, much smaller: each
//! one is copied to every reader of the ticket, so its cost is multiplied by
//! the audience. Going over it drops presence instead of closing (presence is
//! best-effort; the general budget above still closes a flooder).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sustained rates; a bucket holds twice its rate, and never less than one
/// largest message (for bytes: the larger of a frame and what one message
/// may inflate to), so a single legal message always fits an idle budget.
#[derive(Clone, Copy, Debug)]
pub struct Rates {
    pub messages_per_sec: f64,
    pub bytes_per_sec: f64,
    pub rows_per_sec: f64,
    pub max_message_bytes: f64,
    pub max_message_rows: f64,
    pub ephemeral_messages_per_sec: f64,
    pub ephemeral_bytes_per_sec: f64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Exceeded {
    Messages(u64),
    Bytes(u64),
    Rows(u64),
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exceeded::Messages(n) => {
                write!(f, "rate limit exceeded: more than {n} messages per second")
            }
            Exceeded::Bytes(n) => write!(f, "rate limit exceeded: more than {n} bytes per second"),
            Exceeded::Rows(n) => write!(
                f,
                "rate limit exceeded: more than {n} operations per second"
            ),
        }
    }
}

struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
}

impl Bucket {
    fn new(rate: f64, largest: f64) -> Self {
        let rate = rate.max(1.0);
        let capacity = (2.0 * rate).max(largest);
        Self {
            rate,
            capacity,
            tokens: capacity,
        }
    }

    fn refill(&mut self, secs: f64) {
        self.tokens = (self.tokens + secs * self.rate).min(self.capacity);
    }
}

pub struct Budget {
    messages: Bucket,
    bytes: Bucket,
    rows: Bucket,
    ephemeral_messages: Bucket,
    ephemeral_bytes: Bucket,
    last: Instant,
}

impl Budget {
    pub fn new(r: Rates) -> Self {
        Self {
            messages: Bucket::new(r.messages_per_sec, 1.0),
            bytes: Bucket::new(r.bytes_per_sec, r.max_message_bytes),
            rows: Bucket::new(r.rows_per_sec, r.max_message_rows),
            ephemeral_messages: Bucket::new(r.ephemeral_messages_per_sec, 1.0),
            ephemeral_bytes: Bucket::new(
                r.ephemeral_bytes_per_sec,
                // Its CBOR envelope comes on top of the largest payload.
                crate::sync::session::MAX_EPHEMERAL_BYTES as f64 + 1024.0,
            ),
            last: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let secs = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        for b in [
            &mut self.messages,
            &mut self.bytes,
            &mut self.rows,
            &mut self.ephemeral_messages,
            &mut self.ephemeral_bytes,
        ] {
            b.refill(secs);
        }
    }

    /// One message of `bytes` bytes arrived.
    pub fn message(&mut self, bytes: usize) -> Result<(), Exceeded> {
        self.refill();
        if self.messages.tokens < 1.0 {
            return Err(Exceeded::Messages(self.messages.rate as u64));
        }
        if self.bytes.tokens < bytes as f64 {
            return Err(Exceeded::Bytes(self.bytes.rate as u64));
        }
        self.messages.tokens -= 1.0;
        self.bytes.tokens -= bytes as f64;
        Ok(())
    }

    /// An ephemeral message of `bytes` to relay (its frame was charged by
    /// `message` already): false when the presence budget is spent.
    pub fn ephemeral(&mut self, bytes: usize) -> bool {
        self.refill();
        if self.ephemeral_messages.tokens < 1.0 || self.ephemeral_bytes.tokens < bytes as f64 {
            return false;
        }
        self.ephemeral_messages.tokens -= 1.0;
        self.ephemeral_bytes.tokens -= bytes as f64;
        true
    }

    /// A measured sync message (`chunk_guard::Cost`): `rows` operations and
    /// column rows, and `inflated` bytes once decompressed, of which the
    /// `arrived` bytes of its frame were charged already. Compressed data is
    /// paid for at its inflated size: it is what memory and storage hold.
    pub fn sync_cost(
        &mut self,
        rows: u64,
        inflated: usize,
        arrived: usize,
    ) -> Result<(), Exceeded> {
        self.refill();
        let extra = inflated.saturating_sub(arrived) as f64;
        if self.rows.tokens < rows as f64 {
            return Err(Exceeded::Rows(self.rows.rate as u64));
        }
        if self.bytes.tokens < extra {
            return Err(Exceeded::Bytes(self.bytes.rate as u64));
        }
        self.rows.tokens -= rows as f64;
        self.bytes.tokens -= extra;
        Ok(())
    }
}

/// The budgets of users seen recently.
pub struct Budgets {
    rates: Rates,
    live: Mutex<HashMap<String, Arc<Mutex<Budget>>>>,
}

/// An unused budget is forgotten after this long (it has refilled by then:
/// a bucket holds two seconds of its rate, or one largest message).
const FORGET_AFTER: Duration = Duration::from_secs(60);

impl Budgets {
    pub fn new(rates: Rates) -> Self {
        Self {
            rates,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// The user's budget. It outlives the user's connections, so
    /// reconnecting does not refill it early.
    pub fn for_user(&self, user_id: &str) -> Arc<Mutex<Budget>> {
        let mut live = self.live.lock().expect("budgets lock");
        if let Some(b) = live.get(user_id) {
            return b.clone();
        }
        if live.len() >= 1024 {
            live.retain(|_, b| {
                Arc::strong_count(b) > 1
                    || b.lock().map_or(true, |b| b.last.elapsed() < FORGET_AFTER)
            });
        }
        let b = Arc::new(Mutex::new(Budget::new(self.rates)));
        live.insert(user_id.to_string(), b.clone());
        b
    }
}

/// Batch requests being processed: one per user, `max` in all (their
/// bodies are held in memory while they run).
pub struct BatchSlots {
    max: usize,
    users: Mutex<std::collections::HashSet<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum Busy {
    #[error("another batch of yours is still being processed; retry when it has finished")]
    User,
    #[error("the server is processing {0} batches; retry shortly")]
    Server(usize),
}

pub struct BatchSlot<'a> {
    slots: &'a BatchSlots,
    user: String,
}

impl BatchSlots {
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            users: Mutex::new(Default::default()),
        }
    }

    pub fn enter(&self, user: &str) -> Result<BatchSlot<'_>, Busy> {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if users.contains(user) {
            return Err(Busy::User);
        }
        if users.len() >= self.max {
            return Err(Busy::Server(self.max));
        }
        users.insert(user.to_string());
        Ok(BatchSlot {
            slots: self,
            user: user.to_string(),
        })
    }
}

impl Drop for BatchSlot<'_> {
    fn drop(&mut self) {
        let mut users = self.slots.users.lock().unwrap_or_else(|e| e.into_inner());
        users.remove(&self.user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATES: Rates = Rates {
        messages_per_sec: 10.0,
        bytes_per_sec: 1000.0,
        rows_per_sec: 100.0,
        max_message_bytes: 5000.0,
        max_message_rows: 50.0,
        ephemeral_messages_per_sec: 5.0,
        ephemeral_bytes_per_sec: 100_000.0,
    };

    #[test]
    fn each_dimension_is_limited_and_a_largest_message_fits_an_idle_budget() {
        let mut b = Budget::new(RATES);
        assert_eq!(b.message(5000), Ok(()), "one largest message passes");
        assert_eq!(b.message(10), Err(Exceeded::Bytes(1000)));
        let mut b = Budget::new(RATES);
        for _ in 0..20 {
            b.message(1).unwrap();
        }
        assert_eq!(b.message(1), Err(Exceeded::Messages(10)));
        let mut b = Budget::new(RATES);
        b.sync_cost(200, 0, 0).unwrap();
        assert_eq!(b.sync_cost(1, 0, 0), Err(Exceeded::Rows(100)));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(b.sync_cost(4, 0, 0), Ok(()), "refilled at the rate");
        // Compressed data pays for what it inflates to, beyond its frame.
        let mut b = Budget::new(RATES);
        b.message(1000).unwrap();
        assert_eq!(b.sync_cost(0, 4000, 1000), Ok(()));
        assert_eq!(
            b.sync_cost(0, 2001, 1000),
            Err(Exceeded::Bytes(1000)),
            "1000 left"
        );
    }

    #[test]
    fn presence_has_its_own_budget_and_spending_it_leaves_sync_alone() {
        let mut b = Budget::new(RATES);
        // 10 messages (twice the rate) pass, the 11th is dropped...
        for _ in 0..10 {
            assert!(b.ephemeral(100));
        }
        assert!(!b.ephemeral(100));
        // ...while sync traffic still has its whole budget.
        assert_eq!(b.message(1000), Ok(()));
        // Bytes: a largest (64 KiB) ephemeral fits an idle budget, then
        // only what the rate refills.
        let mut b = Budget::new(RATES);
        for _ in 0..3 {
            assert!(b.ephemeral(64 * 1024), "200 kB of burst");
        }
        assert!(!b.ephemeral(64 * 1024));
    }

    #[test]
    fn one_batch_per_user_and_a_few_in_all() {
        let slots = BatchSlots::new(2);
        let a = slots.enter("u1").unwrap();
        assert!(matches!(slots.enter("u1"), Err(Busy::User)));
        let _b = slots.enter("u2").unwrap();
        assert!(matches!(slots.enter("u3"), Err(Busy::Server(2))));
        drop(a);
        assert!(slots.enter("u1").is_ok());
    }

    #[test]
    fn a_users_connections_share_one_budget() {
        let budgets = Budgets::new(RATES);
        let a = budgets.for_user("u1");
        let b = budgets.for_user("u1");
        a.lock().unwrap().sync_cost(200, 0, 0).unwrap();
        assert!(b.lock().unwrap().sync_cost(1, 0, 0).is_err());
        assert!(budgets
            .for_user("u2")
            .lock()
            .unwrap()
            .sync_cost(1, 0, 0)
            .is_ok());
        drop((a, b));
        assert!(
            budgets
                .for_user("u1")
                .lock()
                .unwrap()
                .sync_cost(1, 0, 0)
                .is_err(),
            "reconnecting does not refill the budget"
        );
    }
}
