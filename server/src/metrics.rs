//! Process-wide counters, exported as Prometheus text at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Self {
        Self(AtomicU64::new(0))
    }
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub struct Metrics {
    pub connections_open: Counter,
    pub connections_total: Counter,
    pub frames_received: Counter,
    pub protocol_errors: Counter,
    pub sync_messages: Counter,
    pub docs_loaded: Counter,
    pub docs_active: Counter,
    pub docs_evicted: Counter,
    pub docs_compacted: Counter,
    pub commit_batches: Counter,
    pub commit_messages: Counter,
    pub commit_failures: Counter,
    pub commit_micros: Counter,
    pub changes_committed: Counter,
    pub slow_peers_dropped: Counter,
    pub ephemeral_dropped: Counter,
    pub limit_violations: Counter,
    pub docs_evicted_diverged: Counter,
    pub storage_unavailable: Counter,
    pub storage_degraded: Counter,
}

pub static METRICS: Metrics = Metrics {
    connections_open: Counter::new(),
    connections_total: Counter::new(),
    frames_received: Counter::new(),
    protocol_errors: Counter::new(),
    sync_messages: Counter::new(),
    docs_loaded: Counter::new(),
    docs_active: Counter::new(),
    docs_evicted: Counter::new(),
    docs_compacted: Counter::new(),
    commit_batches: Counter::new(),
    commit_messages: Counter::new(),
    commit_failures: Counter::new(),
    commit_micros: Counter::new(),
    changes_committed: Counter::new(),
    slow_peers_dropped: Counter::new(),
    ephemeral_dropped: Counter::new(),
    limit_violations: Counter::new(),
    docs_evicted_diverged: Counter::new(),
    storage_unavailable: Counter::new(),
    storage_degraded: Counter::new(),
};

impl Metrics {
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &Counter, &str); 20] = [
            (
                "fieldsync_connections_open",
                "gauge",
                &self.connections_open,
                "Open sync WebSocket connections",
            ),
            (
                "fieldsync_connections_total",
                "counter",
                &self.connections_total,
                "Sync connections accepted",
            ),
            (
                "fieldsync_frames_received_total",
                "counter",
                &self.frames_received,
                "WebSocket frames received",
            ),
            (
                "fieldsync_protocol_errors_total",
                "counter",
                &self.protocol_errors,
                "Connections ended by a protocol error",
            ),
            (
                "fieldsync_sync_messages_total",
                "counter",
                &self.sync_messages,
                "Automerge sync messages applied",
            ),
            (
                "fieldsync_docs_loaded_total",
                "counter",
                &self.docs_loaded,
                "Documents loaded from storage",
            ),
            (
                "fieldsync_docs_active",
                "gauge",
                &self.docs_active,
                "Documents held in memory",
            ),
            (
                "fieldsync_docs_evicted_total",
                "counter",
                &self.docs_evicted,
                "Idle documents evicted from memory",
            ),
            (
                "fieldsync_docs_compacted_total",
                "counter",
                &self.docs_compacted,
                "Snapshots written by compaction",
            ),
            (
                "fieldsync_commit_batches_total",
                "counter",
                &self.commit_batches,
                "Group-commit transactions",
            ),
            (
                "fieldsync_commit_messages_total",
                "counter",
                &self.commit_messages,
                "Sync messages committed",
            ),
            (
                "fieldsync_commit_failures_total",
                "counter",
                &self.commit_failures,
                "Failed group-commit transactions",
            ),
            (
                "fieldsync_commit_micros_total",
                "counter",
                &self.commit_micros,
                "Time spent in group commits (µs)",
            ),
            (
                "fieldsync_changes_committed_total",
                "counter",
                &self.changes_committed,
                "New Automerge changes stored",
            ),
            (
                "fieldsync_slow_peers_dropped_total",
                "counter",
                &self.slow_peers_dropped,
                "Connections closed for not reading",
            ),
            (
                "fieldsync_ephemeral_dropped_total",
                "counter",
                &self.ephemeral_dropped,
                "Relayed presence messages not queued for a reader that is behind",
            ),
            (
                "fieldsync_limit_violations_total",
                "counter",
                &self.limit_violations,
                "Connections closed for exceeding a rate or document limit",
            ),
            (
                "fieldsync_docs_evicted_diverged_total",
                "counter",
                &self.docs_evicted_diverged,
                "Documents evicted and reloaded after a failed commit could not be rolled back exactly",
            ),
            (
                "fieldsync_storage_unavailable_responses_total",
                "counter",
                &self.storage_unavailable,
                "Requests answered 503 because storage was failing",
            ),
            (
                "fieldsync_storage_degraded",
                "gauge",
                &self.storage_degraded,
                "1 while commits are failing (see /health)",
            ),
        ];
        let mut out = String::new();
        for (name, kind, c, help) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                c.get()
            );
        }
        out
    }
}
