//! Process metrics through the `metrics` facade, rendered as Prometheus text
//! by `metrics-exporter-prometheus` (its HTTP listener is not built: the
//! actix `/metrics` route renders the handle installed here).
//!
//! Every series is declared below, with its help text, and registered at
//! zero by `install`, so a scrape shows the whole set from the start (a
//! dashboard's `rate()` has a starting point; a test reading a counter that
//! never moved reads 0, not "missing"). Labelled series are registered for
//! every label value the code can produce (`LoginOutcome::ALL`, …).
//!
//! Units are in the names: `_seconds` histograms are observed in seconds
//! (buckets from 0.1 ms to 10 s), `_messages` in sync messages.
//!
//! Without `install` (unit tests, CLI commands) every call is a no-op.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// A monotonically increasing count.
pub struct Counter {
    name: &'static str,
    help: &'static str,
}

impl Counter {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Self { name, help }
    }
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        metrics::counter!(self.name).increment(n);
    }
}

/// A value that goes up and down. The process keeps its own copy, so the
/// server can read it back (`/health` reports open connections).
pub struct Gauge {
    name: &'static str,
    help: &'static str,
    value: AtomicI64,
}

impl Gauge {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            value: AtomicI64::new(0),
        }
    }
    pub fn inc(&self) {
        self.value.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(self.name).increment(1.0);
    }
    pub fn dec(&self) {
        self.value.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(self.name).decrement(1.0);
    }
    pub fn set(&self, v: i64) {
        self.value.store(v, Ordering::Relaxed);
        metrics::gauge!(self.name).set(v as f64);
    }
    pub fn get(&self) -> i64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// A distribution, rendered as a Prometheus histogram (`_bucket`, `_sum`,
/// `_count`).
pub struct Histogram {
    name: &'static str,
    help: &'static str,
}

impl Histogram {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Self { name, help }
    }
    /// For `_seconds` histograms.
    pub fn observe(&self, d: Duration) {
        metrics::histogram!(self.name).record(d.as_secs_f64());
    }
    pub fn record(&self, v: f64) {
        metrics::histogram!(self.name).record(v);
    }
}

pub struct Metrics {
    pub connections_open: Gauge,
    pub connections_total: Counter,
    pub frames_received: Counter,
    pub protocol_errors: Counter,
    pub sync_messages: Counter,
    pub docs_loaded: Counter,
    pub docs_active: Gauge,
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
    pub storage_degraded: Gauge,
    pub ack_latency: Histogram,
    pub apply_time: Histogram,
    pub validation_time: Histogram,
    pub projection_time: Histogram,
    pub commit_duration: Histogram,
    pub commit_batch_size: Histogram,
}

pub static METRICS: Metrics = Metrics {
    connections_open: Gauge::new("fieldsync_connections_open", "Open sync WebSocket connections (every state)"),
    connections_total: Counter::new("fieldsync_connections_total", "Sync connections accepted"),
    frames_received: Counter::new("fieldsync_frames_received_total", "WebSocket frames received"),
    protocol_errors: Counter::new("fieldsync_protocol_errors_total", "Connections ended by a protocol error"),
    sync_messages: Counter::new("fieldsync_sync_messages_total", "Automerge sync messages applied"),
    docs_loaded: Counter::new("fieldsync_docs_loaded_total", "Documents loaded from storage"),
    docs_active: Gauge::new("fieldsync_docs_active", "Documents held in memory"),
    docs_evicted: Counter::new("fieldsync_docs_evicted_total", "Idle documents evicted from memory"),
    docs_compacted: Counter::new("fieldsync_docs_compacted_total", "Snapshots written by compaction"),
    commit_batches: Counter::new("fieldsync_commit_batches_total", "Group-commit transactions"),
    commit_messages: Counter::new("fieldsync_commit_messages_total", "Sync messages committed"),
    commit_failures: Counter::new("fieldsync_commit_failures_total", "Failed group-commit transactions"),
    commit_micros: Counter::new("fieldsync_commit_micros_total", "Time spent in group commits (µs; see fieldsync_commit_duration_seconds)"),
    changes_committed: Counter::new("fieldsync_changes_committed_total", "New Automerge changes stored"),
    slow_peers_dropped: Counter::new("fieldsync_slow_peers_dropped_total", "Connections closed for not reading"),
    ephemeral_dropped: Counter::new("fieldsync_ephemeral_dropped_total", "Relayed presence messages not queued for a reader that is behind"),
    limit_violations: Counter::new("fieldsync_limit_violations_total", "Connections closed for exceeding a rate or document limit"),
    docs_evicted_diverged: Counter::new("fieldsync_docs_evicted_diverged_total", "Documents evicted and reloaded after a failed commit could not be rolled back exactly"),
    storage_unavailable: Counter::new("fieldsync_storage_unavailable_responses_total", "Requests answered 503 because storage was failing"),
    storage_degraded: Gauge::new("fieldsync_storage_degraded", "1 while commits are failing (see /health)"),
    ack_latency: Histogram::new("fieldsync_ack_latency_seconds", "Sync message with changes received until its reply is queued, after the durable commit"),
    apply_time: Histogram::new("fieldsync_apply_seconds", "Verifying a sync message's chunks and applying it to the document"),
    validation_time: Histogram::new("fieldsync_validation_seconds", "Judging the applied operations (permissions, status machine) and the server's follow-up changes, per message with new changes"),
    projection_time: Histogram::new("fieldsync_projection_seconds", "Computing the service-history rows of a committed message"),
    commit_duration: Histogram::new("fieldsync_commit_duration_seconds", "One group-commit transaction, successful or not"),
    commit_batch_size: Histogram::new("fieldsync_commit_batch_messages", "Sync messages per group-commit transaction"),
};

/// Histogram buckets for `_seconds` series: 0.1 ms to 10 s.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Buckets for messages per commit (the committer takes at most 1,024).
pub const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

pub const CONNECTIONS: &str = "fieldsync_connections";
pub const LOGINS: &str = "fieldsync_logins_total";
pub const EDITS_REJECTED: &str = "fieldsync_edits_rejected_total";

/// How a password login ended (`fieldsync_logins_total{outcome}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginOutcome {
    Ok,
    /// The account exists, the password does not match.
    BadPassword,
    /// No such account (or a name no account can have).
    UnknownUser,
    /// Right password, disabled account.
    Disabled,
    /// Too many login requests from the client's address (429).
    RateLimited,
    /// Too many failures for this account from this address (429).
    Locked,
    /// The password threads' queue is full (503).
    Busy,
    /// A password longer than any account can have (refused unchecked).
    Invalid,
    /// Storage failed.
    Error,
}

impl LoginOutcome {
    pub const ALL: [LoginOutcome; 9] = [
        Self::Ok,
        Self::BadPassword,
        Self::UnknownUser,
        Self::Disabled,
        Self::RateLimited,
        Self::Locked,
        Self::Busy,
        Self::Invalid,
        Self::Error,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::BadPassword => "bad_password",
            Self::UnknownUser => "unknown_user",
            Self::Disabled => "disabled",
            Self::RateLimited => "rate_limited",
            Self::Locked => "locked",
            Self::Busy => "busy",
            Self::Invalid => "invalid",
            Self::Error => "error",
        }
    }
}

pub fn login(outcome: LoginOutcome) {
    metrics::counter!(LOGINS, "outcome" => outcome.as_str()).increment(1);
}

/// Why an edit from a device was not kept (`fieldsync_edits_rejected_total{reason}`).
/// The first four are quarantined (the change is stored, the server undoes
/// the edit and lists it for the back office), counted per field and message;
/// the rest refuse a whole sync message (nothing of it is stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EditRejection {
    /// The role may not write this field (`shared/src/permissions.rs`).
    ForbiddenField,
    /// A status step the status machine does not allow this role.
    StatusTransition,
    /// A field only the server writes (`status_history`, `_forwards`).
    ServerRecord,
    /// The ticket is closed to this device: reconciled, or a past
    /// assignee's write-only window has ended.
    Locked,
    /// Undecodable or corrupt Automerge data.
    CorruptData,
    /// Changes whose dependencies never arrived, over the bound.
    MissingDependencies,
    /// The commit failed; the device keeps its changes and retries.
    StorageUnavailable,
}

impl EditRejection {
    pub const ALL: [EditRejection; 7] = [
        Self::ForbiddenField,
        Self::StatusTransition,
        Self::ServerRecord,
        Self::Locked,
        Self::CorruptData,
        Self::MissingDependencies,
        Self::StorageUnavailable,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ForbiddenField => "forbidden_field",
            Self::StatusTransition => "status_transition",
            Self::ServerRecord => "server_record",
            Self::Locked => "locked",
            Self::CorruptData => "corrupt_data",
            Self::MissingDependencies => "missing_dependencies",
            Self::StorageUnavailable => "storage_unavailable",
        }
    }
}

pub fn edit_rejected(reason: EditRejection) {
    metrics::counter!(EDITS_REJECTED, "reason" => reason.as_str()).increment(1);
}

/// Where a sync connection is (`fieldsync_connections{state}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Upgraded, no `join` yet.
    Handshaking,
    /// Joined: syncing.
    Open,
    /// Leaving its documents and closing the socket.
    Closing,
}

impl ConnState {
    pub const ALL: [ConnState; 3] = [Self::Handshaking, Self::Open, Self::Closing];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Handshaking => "handshaking",
            Self::Open => "open",
            Self::Closing => "closing",
        }
    }
}

/// One connection's place in `fieldsync_connections{state}`: counted in
/// one state at a time, and in none once dropped.
pub struct ConnGauge(ConnState);

impl ConnGauge {
    pub fn new() -> Self {
        metrics::gauge!(CONNECTIONS, "state" => ConnState::Handshaking.as_str()).increment(1.0);
        Self(ConnState::Handshaking)
    }
    pub fn set(&mut self, state: ConnState) {
        if state != self.0 {
            metrics::gauge!(CONNECTIONS, "state" => self.0.as_str()).decrement(1.0);
            metrics::gauge!(CONNECTIONS, "state" => state.as_str()).increment(1.0);
            self.0 = state;
        }
    }
}

impl Default for ConnGauge {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ConnGauge {
    fn drop(&mut self) {
        metrics::gauge!(CONNECTIONS, "state" => self.0.as_str()).decrement(1.0);
    }
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls return the same
/// handle) and registers every series at zero.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(METRICS.commit_batch_size.name.into()),
                    BATCH_BUCKETS,
                )
            })
            .expect("histogram buckets are not empty")
            .install_recorder()
            .expect("no other metrics recorder is installed");
        describe();
        handle
    })
}

fn describe() {
    let m = &METRICS;
    for c in [
        &m.connections_total,
        &m.frames_received,
        &m.protocol_errors,
        &m.sync_messages,
        &m.docs_loaded,
        &m.docs_evicted,
        &m.docs_compacted,
        &m.commit_batches,
        &m.commit_messages,
        &m.commit_failures,
        &m.commit_micros,
        &m.changes_committed,
        &m.slow_peers_dropped,
        &m.ephemeral_dropped,
        &m.limit_violations,
        &m.docs_evicted_diverged,
        &m.storage_unavailable,
    ] {
        metrics::describe_counter!(c.name, c.help);
        c.add(0);
    }
    for g in [&m.connections_open, &m.docs_active, &m.storage_degraded] {
        metrics::describe_gauge!(g.name, g.help);
        metrics::gauge!(g.name).set(g.get() as f64);
    }
    for h in [
        &m.ack_latency,
        &m.apply_time,
        &m.validation_time,
        &m.projection_time,
        &m.commit_duration,
    ] {
        metrics::describe_histogram!(h.name, metrics::Unit::Seconds, h.help);
        let _ = metrics::histogram!(h.name);
    }
    let h = &m.commit_batch_size;
    metrics::describe_histogram!(h.name, metrics::Unit::Count, h.help);
    let _ = metrics::histogram!(h.name);

    metrics::describe_gauge!(
        CONNECTIONS,
        "Sync WebSocket connections by state (handshaking, open, closing)"
    );
    for s in ConnState::ALL {
        metrics::gauge!(CONNECTIONS, "state" => s.as_str()).increment(0.0);
    }
    metrics::describe_counter!(LOGINS, "Password logins by outcome");
    for o in LoginOutcome::ALL {
        metrics::counter!(LOGINS, "outcome" => o.as_str()).increment(0);
    }
    metrics::describe_counter!(
        EDITS_REJECTED,
        "Device edits not kept, by reason: quarantined fields (forbidden_field, status_transition, server_record, locked) or refused messages"
    );
    for r in EditRejection::ALL {
        metrics::counter!(EDITS_REJECTED, "reason" => r.as_str()).increment(0);
    }
}

/// The Prometheus text of every series (empty before `install`).
pub fn render() -> String {
    HANDLE
        .get()
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

/// Histogram samples are buffered until a scrape folds them in; without a
/// scraper they would pile up, so fold them in periodically.
pub async fn upkeep_periodically() {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        if let Some(h) = HANDLE.get() {
            h.run_upkeep();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_with_its_labels_and_buckets() {
        install();
        METRICS.commit_batch_size.record(3.0);
        METRICS.ack_latency.observe(Duration::from_millis(7));
        login(LoginOutcome::BadPassword);
        edit_rejected(EditRejection::ServerRecord);
        let mut c = ConnGauge::new();
        c.set(ConnState::Open);
        let text = render();
        for line in [
            "fieldsync_connections_total ",
            "fieldsync_storage_degraded ",
            "fieldsync_logins_total{outcome=\"ok\"} ",
            "fieldsync_edits_rejected_total{reason=\"corrupt_data\"} ",
            "fieldsync_connections{state=\"handshaking\"} ",
            "fieldsync_ack_latency_seconds_bucket{le=\"0.01\"} ",
            "fieldsync_commit_batch_messages_bucket{le=\"4\"} ",
            "fieldsync_validation_seconds_count ",
        ] {
            assert!(text.contains(line), "no `{line}` in\n{text}");
        }
        // Other tests of this binary may count too: at least ours.
        let value = |prefix: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {prefix}"))
        };
        assert!(value("fieldsync_logins_total{outcome=\"bad_password\"} ") >= 1.0);
        assert!(value("fieldsync_edits_rejected_total{reason=\"server_record\"} ") >= 1.0);
        assert!(value("fieldsync_connections{state=\"open\"} ") >= 1.0);
        assert!(value("fieldsync_ack_latency_seconds_bucket{le=\"0.01\"} ") >= 1.0);
        assert!(value("fieldsync_commit_batch_messages_sum ") >= 3.0);
        drop(c);
    }

    /// The shipped Grafana dashboard asks only for series that exist.
    #[test]
    fn the_dashboard_uses_only_series_we_export() {
        install();
        let text = render();
        let dashboard = include_str!("../../scripts/grafana/fieldsync-dashboard.json");
        let parsed: serde_json::Value = serde_json::from_str(dashboard).unwrap();
        assert!(parsed["panels"].as_array().is_some_and(|p| p.len() > 5));
        let mut rest = dashboard;
        let mut seen = 0;
        while let Some(at) = rest.find("fieldsync_") {
            rest = &rest[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..end];
            rest = &rest[end..];
            if name == "fieldsync_" {
                continue;
            }
            seen += 1;
            // A series, or a family (a histogram's base name) by its TYPE line.
            let exported = |n: &str| {
                text.lines().any(|l| {
                    let l = l.strip_prefix("# TYPE ").unwrap_or(l);
                    l.starts_with(n) && l[n.len()..].starts_with([' ', '{'])
                })
            };
            assert!(
                exported(name),
                "the dashboard uses {name}, which /metrics lacks"
            );
        }
        assert!(seen > 20, "{seen}");
    }
}
