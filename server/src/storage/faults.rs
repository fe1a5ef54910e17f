//! Injected storage faults, for the fault-tolerance tests (never on by default).
//!
//! `--inject-commit-faults RATE:MAX[:SEED]` makes each group commit fail with
//! probability RATE until MAX faults were injected, at one of the points where
//! real infrastructure fails:
//! - `BeforeTransaction`: no connection / the database is unreachable;
//! - `InsideTransaction`: the changes were written, then the transaction
//!   failed (disk full, I/O error) and was rolled back;
//! - `AfterCommit`: the commit reached the disk but its answer was lost (the
//!   connection dropped): the caller must treat it as failed, retries are
//!   idempotent.
//!

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPoint {
    BeforeTransaction,
    InsideTransaction,
    AfterCommit,
}

#[derive(Debug)]
pub struct FaultPlan {
    rate: f64,
    remaining: AtomicU64,
    rng: Mutex<StdRng>,
}

impl FaultPlan {
    /// Parses `RATE:MAX[:SEED]`, e.g. `0.3:40` or `0.3:40:7`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut parts = spec.split(':');
        let rate: f64 = parts
            .next()
            .and_then(|p| p.parse().ok())
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or("fault rate must be a number between 0 and 1")?;
        let max: u64 = parts
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or("expected RATE:MAX[:SEED]")?;
        let seed: u64 = match parts.next() {
            Some(p) => p.parse().map_err(|_| "seed must be a number")?,
            None => rand::random(),
        };
        tracing::warn!(
            rate,
            max,
            seed,
            "storage fault injection is ON (testing only)"
        );
        Ok(Self {
            rate,
            remaining: AtomicU64::new(max),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        })
    }

    fn rng(&self) -> std::sync::MutexGuard<'_, StdRng> {
        self.rng.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether (and where) the next commit fails.
    pub fn next_commit(&self) -> Option<FaultPoint> {
        if self.remaining.load(Ordering::Relaxed) == 0 || !self.rng().random_bool(self.rate) {
            return None;
        }
        self.remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .ok()?;
        Some(match self.rng().random_range(0..3) {
            0 => FaultPoint::BeforeTransaction,
            1 => FaultPoint::InsideTransaction,
            _ => FaultPoint::AfterCommit,
        })
    }
}

/// The error an injected fault reports, worded like the real ones.
pub fn injected_error(point: FaultPoint) -> crate::db::DbError {
    crate::db::DbError::Connect(format!("injected storage fault ({point:?})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_after_max_faults_and_parses_specs() {
        let plan = FaultPlan::parse("1:3:1").unwrap();
        let faults: Vec<_> = (0..10).filter_map(|_| plan.next_commit()).collect();
        assert_eq!(faults.len(), 3);
        assert!(FaultPlan::parse("2:3").is_err());
        assert!(FaultPlan::parse("0.5").is_err());
        let none = FaultPlan::parse("0:3").unwrap();
        assert!((0..100).all(|_| none.next_commit().is_none()));
    }
}
