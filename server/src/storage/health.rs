//! What the server knows about its storage's health, for `/health`, `/ready`,
//! metrics and logs: the outcome of recent commits. Reads can succeed while
//! writes fail (disk full, read-only file), so a read probe alone would report
//! a broken server as healthy.

use std::sync::Mutex;

use crate::db::{now_millis, DbError, DbTarget};

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CommitHealth {
    /// Unix millis of the last successful commit (0: none yet).
    pub last_ok_at: i64,
    /// Unix millis and text of the last failed commit (0: none).
    pub last_error_at: i64,
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub consecutive_failures: u64,
}

impl CommitHealth {
    /// Writes are failing: the last commit failed and nothing succeeded since.
    pub fn failing(&self) -> bool {
        self.consecutive_failures > 0
    }
}

#[derive(Default)]
pub struct StorageHealth {
    commits: Mutex<CommitHealth>,
}

impl StorageHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, CommitHealth> {
        self.commits.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn commit_ok(&self) {
        let mut h = self.lock();
        if h.consecutive_failures > 0 {
            tracing::warn!(
                failures = h.consecutive_failures,
                "storage recovered: commits succeed again"
            );
        }
        h.last_ok_at = now_millis();
        h.consecutive_failures = 0;
        crate::metrics::METRICS.storage_degraded.set(0);
    }

    pub fn commit_failed(&self, error: &str) {
        let mut h = self.lock();
        h.last_error_at = now_millis();
        h.last_error = Some(error.to_string());
        h.consecutive_failures += 1;
        crate::metrics::METRICS.storage_degraded.set(1);
    }

    pub fn snapshot(&self) -> CommitHealth {
        self.lock().clone()
    }
}

/// What an operator should do about a storage error, naming the file or
/// database (logged with every failed commit).
pub fn advice(target: &DbTarget, e: &DbError) -> String {
    let text = e.to_string().to_lowercase();
    let place = target.display();
    if text.contains("disk is full") || text.contains("no space") {
        format!("{place}: the disk is full; free space (writes resume by themselves)")
    } else if text.contains("readonly") || text.contains("read-only") {
        format!("{place}: not writable; check file permissions, attributes and the mount")
    } else if e.is_unavailable() {
        format!("{place}: unreachable or failing; check that it runs and accepts connections")
    } else {
        format!("{place}: unexpected storage error")
    }
}

/// Free bytes on the filesystem holding `path` (SQLite), if it can be read.
pub fn free_bytes(path: &std::path::Path) -> Option<u64> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs only writes into the zeroed struct we pass.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}
