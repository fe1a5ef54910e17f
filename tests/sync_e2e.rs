//! End-to-end sync: the real server process driven by Rust device clients.

mod common;

use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ReadDoc, ROOT};
use common::{Server, TestDb, WAIT};
use fieldsync_shared::client::{Device, DocStatus};
use fieldsync_shared::DocumentId;

fn new_ticket(doc: &mut AutoCommit) {
    doc.put(ROOT, "ticket_no", "T-1001").unwrap();
    doc.put(ROOT, "status", "new").unwrap();
    let notes = doc.put_object(ROOT, "notes", ObjType::Text).unwrap();
    doc.splice_text(&notes, 0, 0, "Pump makes noise.").unwrap();
}

fn get_str(doc: &AutoCommit, key: &str) -> Option<String> {
    doc.get(ROOT, key)
        .unwrap()
        .and_then(|(v, _)| v.into_scalar().ok())
        .and_then(|s| s.into_string().ok())
}

fn notes(doc: &AutoCommit) -> String {
    let (_, id) = doc.get(ROOT, "notes").unwrap().unwrap();
    doc.text(id).unwrap()
}

fn splice_notes(doc: &mut AutoCommit, pos: usize, text: &str) {
    let (_, id) = doc.get(ROOT, "notes").unwrap().unwrap();
    doc.splice_text(&id, pos, 0, text).unwrap();
}

/// A second device that fetches `id` from the server.
async fn fetch(server: &Server, name: &str, id: DocumentId) -> Device {
    let d = Device::new(name);
    d.want(id);
    d.connect(&server.sync_url()).await.unwrap();
    d.wait_until(WAIT, "document arrives", |d| {
        d.status(id) == Some(DocStatus::Local)
    })
    .await
    .unwrap();
    d
}

async fn fan_out_live(db: TestDb) {
    let server = Server::start(&db, &[]);
    let a = Device::new("tech-a");
    a.connect(&server.sync_url()).await.unwrap();
    let id = a.create(new_ticket);
    a.wait_acknowledged(id, WAIT).await.unwrap();

    let b = fetch(&server, "tech-b", id).await;
    assert_eq!(
        b.read(id, |d| get_str(d, "ticket_no")).flatten().as_deref(),
        Some("T-1001")
    );

    a.change(id, |d| d.put(ROOT, "status", "en_route").unwrap())
        .unwrap();
    b.wait_until(WAIT, "b sees a's change", |b| {
        b.read(id, |d| get_str(d, "status")).flatten().as_deref() == Some("en_route")
    })
    .await
    .unwrap();

    b.change(id, |d| d.put(ROOT, "status", "on_site").unwrap())
        .unwrap();
    a.wait_until(WAIT, "a sees b's change", |a| {
        a.read(id, |d| get_str(d, "status")).flatten().as_deref() == Some("on_site")
    })
    .await
    .unwrap();
    // The server's status-history change follows each step: both end equal.
    let b2 = b.clone();
    a.wait_until(WAIT, "a and b converge", |a| a.heads(id) == b2.heads(id))
        .await
        .unwrap_or_else(|_| panic!("{:?} != {:?}", a.heads(id), b.heads(id)));
}

async fn offline_edits_converge(db: TestDb) {
    let server = Server::start(&db, &[]);
    let a = Device::new("tech-a");
    a.connect(&server.sync_url()).await.unwrap();
    let id = a.create(new_ticket);
    a.wait_acknowledged(id, WAIT).await.unwrap();
    let b = fetch(&server, "tech-b", id).await;

    // B goes offline (a basement with no signal) and edits; A edits online.
    b.disconnect().await;
    b.change(id, |d| {
        d.put(ROOT, "work_done", "replaced bearing").unwrap();
        splice_notes(d, 0, "[B] ");
    })
    .unwrap();
    a.change(id, |d| {
        d.put(ROOT, "appointment", "2026-11-24T09:00Z").unwrap();
        let end = notes(d).len();
        splice_notes(d, end, " [A] customer called back.");
    })
    .unwrap();
    a.wait_acknowledged(id, WAIT).await.unwrap();
    assert_eq!(b.pending(), vec![id], "B's offline edit is queued");

    b.connect(&server.sync_url()).await.unwrap();
    b.wait_acknowledged(id, WAIT).await.unwrap();
    a.wait_until(WAIT, "a converges", |a| a.heads(id) == b.heads(id))
        .await
        .unwrap();

    for dev in [&a, &b] {
        dev.read(id, |d| {
            assert_eq!(get_str(d, "work_done").as_deref(), Some("replaced bearing"));
            assert_eq!(
                get_str(d, "appointment").as_deref(),
                Some("2026-11-24T09:00Z")
            );
            assert_eq!(notes(d), "[B] Pump makes noise. [A] customer called back.");
        });
    }
    assert!(b.pending().is_empty());
}

/// Every change the server acknowledged is still there after SIGKILL, even
/// while a device was writing steadily.
async fn acknowledged_changes_survive_a_crash(db: TestDb) {
    // Five documents changed every 5 ms can pass the default 500 messages/s
    // per user on a fast run; this test is about durability, not limits.
    let server = Server::start(&db, &["--max-messages-per-sec", "100000"]);
    let dev = Device::new("writer");
    dev.connect(&server.sync_url()).await.unwrap();
    let docs: Vec<DocumentId> = (0..5)
        .map(|_| dev.create(|d| d.put(ROOT, "counter", 0).unwrap()))
        .collect();
    for id in &docs {
        dev.wait_acknowledged(*id, WAIT).await.unwrap();
    }

    // Write steadily; remember the highest value the server acknowledged per doc.
    let mut acked = vec![0i64; docs.len()];
    let started = std::time::Instant::now();
    let mut value = 0i64;
    while started.elapsed() < Duration::from_millis(1500) {
        value += 1;
        for id in &docs {
            dev.change(*id, |d| d.put(ROOT, "counter", value).unwrap())
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        // Every 20th round, let the acknowledgements catch up: with writes
        // every 5 ms and a commit that takes longer (PostgreSQL on a busy
        // machine) the server's heads never equal ours at a sample.
        if value % 20 == 0 {
            for id in &docs {
                dev.wait_acknowledged(*id, WAIT).await.unwrap();
            }
        }
        for (i, id) in docs.iter().enumerate() {
            if dev.acknowledged(*id) {
                acked[i] = dev
                    .read(*id, |d| {
                        d.get(ROOT, "counter").unwrap().unwrap().0.as_i64().unwrap()
                    })
                    .unwrap();
            }
        }
    }
    assert!(
        acked.iter().all(|v| *v > 0),
        "some writes were acknowledged: {acked:?}"
    );

    let server = server.crash_and_restart();
    for (i, id) in docs.iter().enumerate() {
        let reader = fetch(&server, &format!("reader-{i}"), *id).await;
        let stored = reader
            .read(*id, |d| {
                d.get(ROOT, "counter").unwrap().unwrap().0.as_i64().unwrap()
            })
            .unwrap();
        assert!(
            stored >= acked[i],
            "doc {i}: acknowledged {} but only {stored} survived",
            acked[i]
        );
    }

    // The writer reconnects and its unacknowledged tail is synced too.
    dev.connect(&server.sync_url()).await.unwrap();
    for id in &docs {
        dev.wait_acknowledged(*id, WAIT).await.unwrap();
    }
    let reader = fetch(&server, "final-reader", docs[0]).await;
    assert_eq!(reader.heads(docs[0]), dev.heads(docs[0]));
}

async fn unknown_documents_are_unavailable(db: TestDb) {
    let server = Server::start(&db, &[]);
    let dev = Device::new("tech");
    let id = DocumentId::random();
    dev.want(id);
    dev.connect(&server.sync_url()).await.unwrap();
    dev.wait_until(WAIT, "doc-unavailable", |d| {
        d.status(id) == Some(DocStatus::Unavailable)
    })
    .await
    .unwrap();

    // Once someone uploads it, the device that asked receives it.
    let other = Device::new("dispatcher");
    other.import(id, {
        let mut d = AutoCommit::new();
        d.put(ROOT, "ticket_no", "T-7").unwrap();
        d.commit();
        d
    });
    other.connect(&server.sync_url()).await.unwrap();
    other.wait_acknowledged(id, WAIT).await.unwrap();
    dev.wait_until(WAIT, "late arrival", |d| d.heads(id) == other.heads(id))
        .await
        .unwrap();
}

async fn idle_documents_are_evicted_compacted_and_reloaded(db: TestDb) {
    let server = Server::start(&db, &["--idle-evict-secs", "1", "--compact-after", "10"]);
    let dev = Device::new("tech");
    dev.connect(&server.sync_url()).await.unwrap();
    let id = dev.create(new_ticket);
    for i in 0..25 {
        dev.change(id, |d| d.put(ROOT, "step", i).unwrap()).unwrap();
        dev.wait_acknowledged(id, WAIT).await.unwrap();
    }
    assert!(
        server.metric("fieldsync_docs_compacted_total") >= 2,
        "compaction ran during writes"
    );
    dev.disconnect().await;

    let deadline = std::time::Instant::now() + WAIT;
    while server.metric("fieldsync_docs_active") > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "document was never evicted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.metric("fieldsync_docs_evicted_total") >= 1);

    // Reloaded from snapshot + remaining changes, identical; also after a restart.
    let reader = fetch(&server, "reader", id).await;
    assert_eq!(reader.heads(id), dev.heads(id));
    let server = server.crash_and_restart();
    let reader = fetch(&server, "reader-2", id).await;
    assert_eq!(reader.heads(id), dev.heads(id));
    assert_eq!(reader.read(id, |d| notes(d)).unwrap(), "Pump makes noise.");
}

async fn ephemeral_messages_reach_the_other_peers(db: TestDb) {
    let server = Server::start(&db, &[]);
    let a = Device::new("tech-a");
    a.connect(&server.sync_url()).await.unwrap();
    let id = a.create(new_ticket);
    a.wait_acknowledged(id, WAIT).await.unwrap();
    let b = fetch(&server, "tech-b", id).await;
    a.wait_until(WAIT, "a in sync", |a| a.acknowledged(id))
        .await
        .unwrap();

    a.send_ephemeral(id, b"\xa1\x66cursor\x05".to_vec());
    b.wait_until(WAIT, "ephemeral arrives", |b| {
        !b.ephemeral_received().is_empty()
    })
    .await
    .unwrap();
    let got = b.ephemeral_received()[0].clone();
    assert_eq!(
        (got.document_id, got.sender_id.as_str(), got.data.as_slice()),
        (id, "tech-a", &b"\xa1\x66cursor\x05"[..])
    );
    // The server says which signed-in user sent it.
    let sender = got
        .sender
        .expect("relayed ephemerals name the verified sender");
    assert_eq!(
        (sender.user_id.is_empty(), sender.role.as_str()),
        (false, "admin")
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        a.ephemeral_received().is_empty(),
        "the sender does not get its own message back"
    );
}

async fn a_second_join_replaces_the_old_connection(db: TestDb) {
    let server = Server::start(&db, &[]);
    let first = Device::new("same-peer");
    let phone = server.sync_url_for(&server.token, "phone-1");
    first.connect(&phone).await.unwrap();
    let id = first.create(new_ticket);
    first.wait_acknowledged(id, WAIT).await.unwrap();

    let second = Device::new("same-peer");
    second.want(id);
    second.connect(&phone).await.unwrap();
    first
        .wait_until(WAIT, "old connection closed", |d| !d.is_connected())
        .await
        .unwrap();
    let (code, reason) = first.last_close().expect("closed by the server");
    assert_eq!(code, 1000);
    assert!(reason.contains("replaced"), "{reason}");
    second
        .wait_until(WAIT, "new connection syncs", |d| {
            d.heads(id) == first.heads(id)
        })
        .await
        .unwrap();
}

/// A device with an on-disk store keeps its offline edits across an app
/// restart and syncs them on the next connect.
async fn offline_edits_survive_a_device_restart(db: TestDb) {
    let server = Server::start(&db, &[]);
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let phone = Device::open("tech-phone", dir.path()).unwrap();
        let id = phone.create(new_ticket);
        phone
            .change(id, |d| d.put(ROOT, "work_done", "offline edit").unwrap())
            .unwrap();
        assert_eq!(phone.pending(), vec![id]);
        id
        // The app is killed here, never having been online.
    };
    let phone = Device::open("tech-phone", dir.path()).unwrap();
    assert_eq!(
        phone.pending(),
        vec![id],
        "the offline queue survived the restart"
    );
    phone.connect(&server.sync_url()).await.unwrap();
    phone.wait_acknowledged(id, WAIT).await.unwrap();
    assert!(phone.pending().is_empty());

    let office = fetch(&server, "office", id).await;
    assert_eq!(
        office
            .read(id, |d| get_str(d, "work_done"))
            .flatten()
            .as_deref(),
        Some("offline edit")
    );
}

/// `/metrics` tells an operator what happened: a synced change (ack
/// latency, commit duration and batch size, validation and projection
/// time), failed logins by outcome, a quarantined edit by reason,
/// connections by state; REST answers carry an `X-Request-Id`.
async fn metrics_describe_what_happened(db: TestDb) {
    let server = Server::start(&db, &[]);
    let series = |s: &str| {
        server
            .series(s)
            .unwrap_or_else(|| panic!("no {s} in\n{}", server.get("/metrics")))
    };
    // Every series is there from the start, at zero.
    assert_eq!(
        series("fieldsync_edits_rejected_total{reason=\"server_record\"}"),
        0.0
    );
    assert_eq!(
        series("fieldsync_logins_total{outcome=\"bad_password\"}"),
        0.0
    );
    assert_eq!(series("fieldsync_ack_latency_seconds_count"), 0.0);
    assert_eq!(series("fieldsync_connections{state=\"open\"}"), 0.0);
    // The harness logged in once.
    assert_eq!(series("fieldsync_logins_total{outcome=\"ok\"}"), 1.0);

    // Two failed logins, answered 401 with a request id.
    for (user, password) in [
        (common::HARNESS_USER, "not the password"),
        ("nobody-here", "whatever"),
    ] {
        let body = serde_json::json!({"username": user, "password": password}).to_string();
        let reply = common::http_full(
            server.port,
            "POST",
            "/api/v1/auth/login",
            None,
            "application/json",
            body.as_bytes(),
        );
        assert_eq!(reply.status, 401, "{user}");
        let id = reply.header("x-request-id").expect("an X-Request-Id");
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    }
    assert_eq!(
        series("fieldsync_logins_total{outcome=\"bad_password\"}"),
        1.0
    );
    assert_eq!(
        series("fieldsync_logins_total{outcome=\"unknown_user\"}"),
        1.0
    );
    let health = common::http_full(server.port, "GET", "/health", None, "text/plain", b"");
    assert!(
        health.header("x-request-id").is_some(),
        "{:?}",
        health.headers
    );

    let a = Device::new("tech-a");
    a.connect(&server.sync_url()).await.unwrap();
    let id = a.create(new_ticket);
    a.wait_acknowledged(id, WAIT).await.unwrap();
    assert!(series("fieldsync_connections{state=\"open\"}") >= 1.0);
    a.change(id, |d| {
        d.put(ROOT, "work_done", "cleaned the filter").unwrap()
    })
    .unwrap();
    a.wait_acknowledged(id, WAIT).await.unwrap();
    // A field only the server writes: undone and quarantined, even for an admin.
    a.change(id, |d| d.put(ROOT, "status_history", "forged").unwrap())
        .unwrap();
    a.wait_acknowledged(id, WAIT).await.unwrap();
    common::wait_for("the quarantined edit is counted", || {
        series("fieldsync_edits_rejected_total{reason=\"server_record\"}") >= 1.0
    });
    assert_eq!(
        series("fieldsync_edits_rejected_total{reason=\"corrupt_data\"}"),
        0.0
    );

    // Three acknowledged messages with changes at least (each committed).
    let acks = series("fieldsync_ack_latency_seconds_count");
    assert!(acks >= 3.0, "{acks} acknowledgements");
    let ack_sum = series("fieldsync_ack_latency_seconds_sum");
    assert!(
        ack_sum > 0.0 && ack_sum / acks < WAIT.as_secs_f64(),
        "mean ack latency {} s",
        ack_sum / acks
    );
    assert_eq!(
        series("fieldsync_ack_latency_seconds_bucket{le=\"+Inf\"}"),
        acks
    );
    assert!(series("fieldsync_ack_latency_seconds_bucket{le=\"10\"}") <= acks);
    let commits = series("fieldsync_commit_duration_seconds_count");
    assert!(commits >= 3.0, "{commits} commits");
    assert!(series("fieldsync_commit_duration_seconds_sum") > 0.0);
    // One scrape: the batch-size histogram agrees with the commit counters.
    let text = server.get("/metrics");
    let one = |s: &str| common::metric_series(&text, s).unwrap_or_else(|| panic!("no {s}"));
    assert_eq!(
        one("fieldsync_commit_batch_messages_count"),
        one("fieldsync_commit_batches_total")
    );
    assert_eq!(
        one("fieldsync_commit_batch_messages_sum"),
        one("fieldsync_commit_messages_total")
    );
    assert!(one("fieldsync_commit_batch_messages_bucket{le=\"1024\"}") >= 3.0);
    for h in [
        "fieldsync_apply_seconds",
        "fieldsync_validation_seconds",
        "fieldsync_projection_seconds",
    ] {
        assert!(series(&format!("{h}_count")) >= 3.0, "{h}");
    }

    a.disconnect().await;
    common::wait_for("the connection is gone from every state", || {
        ["handshaking", "open", "closing"]
            .iter()
            .all(|s| series(&format!("fieldsync_connections{{state=\"{s}\"}}")) == 0.0)
    });
    assert_eq!(server.metric("fieldsync_connections_open"), 0);
    assert!(server.metric("fieldsync_connections_total") >= 1);
}

/// SIGTERM (a rolling upgrade): every device hears 1001 "going away" with a
/// reason before the listener closes, the process exits well within the 5 s
/// shutdown timeout, and every acknowledged change is there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_devices_to_reconnect_and_loses_nothing() {
    let db = TestDb::new(common::Backend::Sqlite);
    let mut server = Server::start(&db, &[]);
    let a = Device::new("tech-a");
    a.connect(&server.sync_url()).await.unwrap();
    let id = a.create(new_ticket);
    for i in 0..20 {
        a.change(id, |d| d.put(ROOT, "counter", i as i64).unwrap())
            .unwrap();
    }
    a.wait_acknowledged(id, WAIT).await.unwrap();

    let started = std::time::Instant::now();
    let status = server.terminate();
    let took = started.elapsed();
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(3), "exited after {took:?}");
    a.wait_until(WAIT, "the close frame", |d| d.last_close().is_some())
        .await
        .unwrap();
    let (code, reason) = a.last_close().unwrap();
    assert_eq!(code, 1001, "{reason}");
    assert!(reason.contains("reconnect"), "{reason}");

    let again = server.restart();
    let b = fetch(&again, "tech-b", id).await;
    let counter = b
        .read(id, |d| {
            d.get(ROOT, "counter").unwrap().map(|(v, _)| v.as_i64())
        })
        .flatten()
        .flatten();
    assert_eq!(counter, Some(19));
}

on_both_backends!(
    metrics_describe_what_happened,
    offline_edits_survive_a_device_restart,
    fan_out_live,
    offline_edits_converge,
    acknowledged_changes_survive_a_crash,
    unknown_documents_are_unavailable,
    idle_documents_are_evicted_compacted_and_reloaded,
    ephemeral_messages_reach_the_other_peers,
    a_second_join_replaces_the_old_connection,
);
