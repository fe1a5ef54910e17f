//! Bad input: every case gets a protocol `error` and/or a close with a reason,
//! is counted in /metrics (and logged), never crashes the server, leaves the
//! stored document unchanged, and does not disturb other sessions.

mod common;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ReadDoc, ROOT};
use ciborium::Value;
use common::raw::Raw;
use common::{Server, TestDb, WAIT};
use fieldsync_shared::client::{Device, DocStatus};
use fieldsync_shared::protocol::Message;
use fieldsync_shared::DocumentId;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message as Ws;

fn cbor(v: Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(&v, &mut out).unwrap();
    out
}

fn t(s: &str) -> Value {
    Value::Text(s.into())
}

/// A healthy device with one acknowledged document: proves other sessions
/// keep working while a bad one is thrown out.
async fn healthy_device(server: &Server) -> (Device, DocumentId) {
    let dev = Device::new("healthy");
    dev.connect(&server.sync_url()).await.unwrap();
    let id = dev.create(|d| d.put(ROOT, "n", 0).unwrap());
    dev.wait_acknowledged(id, WAIT).await.unwrap();
    (dev, id)
}

async fn still_works(dev: &Device, id: DocumentId, n: i64) {
    assert!(dev.is_connected(), "healthy session was not disturbed");
    dev.change(id, |d| d.put(ROOT, "n", n).unwrap()).unwrap();
    dev.wait_acknowledged(id, WAIT).await.unwrap();
}

async fn undecodable_frames_are_refused(db: TestDb) {
    let server = Server::start(&db, &[]);
    let (dev, id) = healthy_device(&server).await;
    let errors = server.metric("fieldsync_protocol_errors_total");

    // Garbage before join.
    let mut raw = Raw::connect(&server).await;
    raw.send_bytes(b"\xff\xfe\xfdgarbage".to_vec()).await;
    raw.expect_error_then_close(1002, "undecodable").await;
    still_works(&dev, id, 1).await;

    // Not CBOR after a good join.
    let mut raw = Raw::joined(&server, "bad-1").await;
    raw.send_bytes(vec![0x1c, 0x00]).await;
    raw.expect_error_then_close(1002, "not valid CBOR").await;

    // CBOR, but not a map / no type / unknown type.
    let mut raw = Raw::joined(&server, "bad-2").await;
    raw.send_bytes(cbor(Value::Array(vec![t("sync")]))).await;
    raw.expect_error_then_close(1002, "not a CBOR map").await;
    let mut raw = Raw::joined(&server, "bad-3").await;
    raw.send_bytes(cbor(Value::Map(vec![
        (t("type"), t("teleport")),
        (t("senderId"), t("bad-3")),
    ])))
    .await;
    raw.expect_error_then_close(1002, "unknown message type `teleport`")
        .await;

    // Text frames.
    let mut raw = Raw::joined(&server, "bad-4").await;
    raw.ws
        .send(Ws::Text("{\"type\":\"join\"}".into()))
        .await
        .unwrap();
    raw.expect_error_then_close(1003, "text frames").await;

    still_works(&dev, id, 2).await;
    assert!(server.metric("fieldsync_protocol_errors_total") >= errors + 5);
}

async fn wrong_messages_are_refused(db: TestDb) {
    let server = Server::start(&db, &[]);
    let (dev, id) = healthy_device(&server).await;
    let empty = automerge::Automerge::new()
        .generate_sync_message(&mut sync::State::new())
        .unwrap()
        .encode();

    // Sync before join.
    let mut raw = Raw::connect(&server).await;
    raw.send(&Message::Sync {
        sender_id: "x".into(),
        target_id: "s".into(),
        document_id: id,
        data: empty.clone(),
    })
    .await;
    raw.expect_error_then_close(1002, "expected a join").await;

    // A client pretending to be a server.
    let mut raw = Raw::joined(&server, "bad-5").await;
    let server_peer = raw.server_peer.clone();
    raw.send(&Message::Peer {
        sender_id: "bad-5".into(),
        target_id: server_peer.clone(),
        peer_metadata: None,
        selected_protocol_version: "1".into(),
    })
    .await;
    raw.expect_error_then_close(1002, "sent by servers").await;

    // Spoofed sender id.
    let mut raw = Raw::joined(&server, "bad-6").await;
    raw.send(&Message::Sync {
        sender_id: "healthy".into(),
        target_id: server_peer.clone(),
        document_id: id,
        data: empty.clone(),
    })
    .await;
    raw.expect_error_then_close(1002, "does not match").await;

    // Unsupported protocol version.
    let mut raw = Raw::connect(&server).await;
    raw.send(&Message::Join {
        sender_id: "v2".into(),
        peer_metadata: None,
        supported_protocol_versions: vec!["2".into()],
    })
    .await;
    raw.expect_error_then_close(1002, "unsupported protocol version")
        .await;

    // A request with a malformed document id, and one with zero-length data.
    let mut raw = Raw::joined(&server, "bad-7").await;
    let request = |sender: &str, doc: &str, data: Vec<u8>| {
        cbor(Value::Map(vec![
            (t("type"), t("request")),
            (t("senderId"), t(sender)),
            (t("targetId"), t(&server_peer)),
            (t("documentId"), t(doc)),
            (t("data"), Value::Bytes(data)),
        ]))
    };
    raw.send_bytes(request("bad-7", "not-a-document-id", empty.clone()))
        .await;
    raw.expect_error_then_close(1002, "invalid documentId")
        .await;
    let mut raw = Raw::joined(&server, "bad-8").await;
    raw.send_bytes(request("bad-8", &id.to_string(), vec![]))
        .await;
    raw.expect_error_then_close(1002, "zero-length data").await;

    still_works(&dev, id, 1).await;
}

async fn corrupt_automerge_data_leaves_the_document_unchanged(db: TestDb) {
    let server = Server::start(&db, &[]);
    let (dev, id) = healthy_device(&server).await;
    let committed = server.metric("fieldsync_changes_committed_total");
    let heads_before = dev.heads(id);

    // Undecodable sync message bytes.
    let mut raw = Raw::joined(&server, "bad-9").await;
    let target = raw.server_peer.clone();
    raw.send(&Message::Sync {
        sender_id: "bad-9".into(),
        target_id: target.clone(),
        document_id: id,
        data: vec![0x42, 0x00, 0x13],
    })
    .await;
    raw.expect_error_then_close(1002, "invalid Automerge sync message")
        .await;

    // A well-formed sync message carrying a corrupted change, for the existing doc.
    let mut other = AutoCommit::new();
    other.put(ROOT, "evil", "x".repeat(64)).unwrap();
    let mut change = other.get_last_local_change().unwrap().raw_bytes().to_vec();
    let mid = change.len() / 2;
    change[mid] ^= 0x5a;
    let msg = sync::Message {
        heads: vec![],
        need: vec![],
        have: vec![],
        changes: vec![change].into(),
        flags: None,
        version: sync::MessageVersion::V1,
    };
    let mut raw = Raw::joined(&server, "bad-10").await;
    raw.send(&Message::Sync {
        sender_id: "bad-10".into(),
        target_id: target,
        document_id: id,
        data: msg.encode(),
    })
    .await;
    raw.expect_error_then_close(1002, "rejected Automerge data")
        .await;

    assert_eq!(
        server.metric("fieldsync_changes_committed_total"),
        committed,
        "nothing was stored"
    );
    // The stored document is exactly what it was, also after a restart.
    let server = server.crash_and_restart();
    let reader = Device::new("reader");
    reader.want(id);
    reader.connect(&server.sync_url()).await.unwrap();
    reader
        .wait_until(WAIT, "doc loads", |d| {
            d.status(id) == Some(DocStatus::Local)
        })
        .await
        .unwrap();
    assert_eq!(reader.heads(id), heads_before);
    assert!(reader
        .read(id, |d| d.get(ROOT, "evil").unwrap().is_none())
        .unwrap());
    drop(dev);
}

async fn oversized_frames_are_refused_and_large_tickets_fit(db: TestDb) {
    let server = Server::start(&db, &["--max-message-bytes", "65536"]);
    let (dev, id) = healthy_device(&server).await;
    let mut raw = Raw::joined(&server, "big").await;
    raw.send_bytes(vec![0u8; 100_000]).await;
    raw.expect_error_then_close(1009, "65536 byte limit").await;
    still_works(&dev, id, 1).await;
    drop(server);

    // With the default limit (8 MiB) a 3 MB ticket syncs in one message,
    // well past actix-ws' 64 KiB / 1 MiB defaults.
    let server = Server::start(&db, &[]);
    let dev = Device::new("photos");
    dev.connect(&server.sync_url()).await.unwrap();
    let big = dev.create(|d| {
        d.put(
            ROOT,
            "photo",
            automerge::ScalarValue::Bytes(vec![7u8; 3_000_000]),
        )
        .unwrap()
    });
    dev.wait_acknowledged(big, WAIT).await.unwrap();
}

/// Per-connection limits: message rate and documents per session. The
/// offender gets an error and a close with a reason; others carry on.
async fn connection_limits_are_enforced(db: TestDb) {
    let server = Server::start(
        &db,
        &[
            "--max-messages-per-sec",
            "20",
            "--max-docs-per-session",
            "3",
        ],
    );
    let (dev, id) = healthy_device(&server).await;
    let empty = automerge::Automerge::new()
        .generate_sync_message(&mut sync::State::new())
        .unwrap()
        .encode();

    // A burst far beyond 2 × 20 messages.
    let mut raw = Raw::joined(&server, "flood").await;
    let target = raw.server_peer.clone();
    for _ in 0..200 {
        raw.send(&Message::Request {
            sender_id: "flood".into(),
            target_id: target.clone(),
            document_id: id,
            data: empty.clone(),
        })
        .await;
    }
    loop {
        match raw.next().await {
            Some(Ok(Message::Error { message, .. })) => {
                assert!(message.contains("rate limit exceeded"), "{message}");
                break;
            }
            Some(Ok(_)) => continue, // replies to the requests that got through
            other => panic!("expected a rate-limit error, got {other:?}"),
        }
    }
    assert!(matches!(raw.next().await, Some(Err((1008, _)))));
    // The budget is the user's, not the connection's: reconnecting does not
    // refill it. Wait until it has (twice the rate, at 20 per second).
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;

    // The fourth distinct document in one session.
    let mut raw = Raw::joined(&server, "hoarder").await;
    for i in 0..4 {
        let doc = DocumentId::random();
        raw.send(&Message::Request {
            sender_id: "hoarder".into(),
            target_id: target.clone(),
            document_id: doc,
            data: empty.clone(),
        })
        .await;
        if i < 3 {
            assert!(matches!(
                raw.next().await,
                Some(Ok(Message::DocUnavailable { .. }))
            ));
        }
    }
    raw.expect_error_then_close(1008, "too many documents in one session (limit 3)")
        .await;

    assert!(server.metric("fieldsync_limit_violations_total") >= 2);
    still_works(&dev, id, 1).await;
}

on_both_backends!(
    connection_limits_are_enforced,
    undecodable_frames_are_refused,
    wrong_messages_are_refused,
    corrupt_automerge_data_leaves_the_document_unchanged,
    oversized_frames_are_refused_and_large_tickets_fit,
);
