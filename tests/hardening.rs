//! Issue 10: a signed-in user (or an anonymous client) must not be able to
//! exhaust the server's memory or CPU, whatever they send. Each attack is
//! sent to a real server; it must be refused with a clear reason, counted,
//! leave the server's peak memory within a stated bound, and not disturb an
//! honest device.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT};
use common::raw::Raw;
use common::{Server, TestDb, WAIT};
use fieldsync_shared::client::Device;
use fieldsync_shared::protocol::Message;
use fieldsync_shared::DocumentId;

/// Peak memory may grow by at most this much during an attack (KiB). The
/// server's own bounds: one message inflates to at most 32 MiB, CBOR frames
/// hold at most 4096 items.
const PEAK_GROWTH_KB: u64 = 120 * 1024;

async fn honest_device(server: &Server) -> (Device, DocumentId) {
    let dev = Device::new("honest");
    dev.connect(&server.sync_url()).await.unwrap();
    let id = dev.create(|d| d.put(ROOT, "n", 0).unwrap());
    dev.wait_acknowledged(id, WAIT).await.unwrap();
    (dev, id)
}

async fn still_works(dev: &Device, id: DocumentId, n: i64) {
    assert!(dev.is_connected(), "the honest session was not disturbed");
    dev.change(id, |d| d.put(ROOT, "n", n).unwrap()).unwrap();
    dev.wait_acknowledged(id, WAIT).await.unwrap();
}

fn sync_with(changes: Vec<Vec<u8>>) -> Vec<u8> {
    sync::Message {
        heads: vec![],
        need: vec![],
        have: vec![],
        changes: changes.into(),
        flags: None,
        version: sync::MessageVersion::V1,
    }
    .encode()
}

async fn send_sync(raw: &mut Raw, peer: &str, data: Vec<u8>) {
    let target = raw.server_peer.clone();
    raw.send(&Message::Sync {
        sender_id: peer.into(),
        target_id: target,
        document_id: DocumentId::random(),
        data,
    })
    .await;
}

/// A compressed-change chunk whose body inflates to `size` zero bytes.
fn deflate_bomb(size: usize) -> Vec<u8> {
    use flate2::write::DeflateEncoder;
    let mut enc = DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..size >> 20 {
        enc.write_all(&zeros).unwrap();
    }
    let body = enc.finish().unwrap();
    let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 2];
    let mut len = body.len();
    loop {
        let b = (len & 0x7f) as u8;
        len >>= 7;
        chunk.push(if len == 0 { b } else { b | 0x80 });
        if len == 0 {
            break;
        }
    }
    chunk.extend(body);
    chunk
}

async fn decompression_bomb_is_refused_before_it_inflates(db: TestDb) {
    let server = Server::start(&db, &[]);
    let (dev, id) = honest_device(&server).await;
    let violations = server.metric("fieldsync_limit_violations_total");
    let bomb = deflate_bomb(512 << 20);
    assert!(
        bomb.len() < 1 << 20,
        "a 512 MiB bomb fits in {} bytes",
        bomb.len()
    );
    let (_, peak_before) = server.memory_kb();

    let mut raw = Raw::joined(&server, "bomber").await;
    send_sync(&mut raw, "bomber", sync_with(vec![bomb])).await;
    raw.expect_error_then_close(1009, "inflates beyond").await;

    let (_, peak_after) = server.memory_kb();
    assert!(
        peak_after - peak_before < PEAK_GROWTH_KB,
        "peak memory grew by {} KiB",
        peak_after - peak_before
    );
    assert!(server.metric("fieldsync_limit_violations_total") > violations);
    still_works(&dev, id, 1).await;
}

async fn operation_bomb_is_refused_before_it_is_applied(db: TestDb) {
    let server = Server::start(&db, &[]);
    let (dev, id) = honest_device(&server).await;
    // ~150 bytes that describe 1.2 M list insertions.
    let mut bomb = AutoCommit::new();
    let list = bomb.put_object(ROOT, "l", ObjType::List).unwrap();
    for i in 0..1_200_000 {
        bomb.insert(&list, i, true).unwrap();
    }
    bomb.commit();
    let change = bomb.get_last_local_change().unwrap().raw_bytes().to_vec();
    assert!(change.len() < 300, "{} bytes", change.len());

    let mut raw = Raw::joined(&server, "op-bomber").await;
    let started = Instant::now();
    send_sync(&mut raw, "op-bomber", sync_with(vec![change])).await;
    raw.expect_error_then_close(1009, "more than 1000000 operations")
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    still_works(&dev, id, 1).await;
}

async fn cbor_item_flood_is_refused_before_it_is_decoded(db: TestDb) {
    let server = Server::start(&db, &[]);
    let (dev, id) = honest_device(&server).await;
    let (_, peak_before) = server.memory_kb();
    // An array of 4 M one-byte integers in one 4 MB frame.
    let n: u32 = 4 << 20;
    let mut frame = vec![0x9a];
    frame.extend(n.to_be_bytes());
    frame.resize(frame.len() + n as usize, 0x01);

    let mut raw = Raw::joined(&server, "flooder").await;
    raw.send_bytes(frame).await;
    raw.expect_error_then_close(1002, "more than 4096 CBOR items")
        .await;

    let (_, peak_after) = server.memory_kb();
    assert!(
        peak_after - peak_before < PEAK_GROWTH_KB,
        "peak memory grew by {} KiB",
        peak_after - peak_before
    );
    still_works(&dev, id, 1).await;
}

/// Bytes and operations are rate-limited per user, across connections.
async fn bytes_and_operations_are_rate_limited_per_user(db: TestDb) {
    // Rates so low that nothing refills during the test, however slow the
    // machine: the buckets hold one largest message each.
    let server = Server::start(
        &db,
        &[
            "--max-message-bytes",
            "100000",
            "--max-inflated-bytes",
            "100000",
            "--max-bytes-per-sec",
            "100",
            "--max-ops-per-message",
            "5000",
            "--max-ops-per-sec",
            "10",
        ],
    );
    // Two 60 kB frames on two connections of the same user: the second goes
    // over the user's byte budget (100 kB).
    let ephemeral = |peer: &str, target: &str| Message::Ephemeral {
        sender_id: peer.into(),
        target_id: target.into(),
        count: 1,
        session_id: "s".into(),
        document_id: DocumentId::random(),
        verified_sender: None,
        data: vec![7; 60_000],
    };
    let mut a = Raw::joined(&server, "bytes-a").await;
    let mut b = Raw::joined(&server, "bytes-b").await;
    let msg = ephemeral("bytes-a", &a.server_peer.clone());
    a.send(&msg).await;
    // Wait until the server has taken a's frame (it answers a request after
    // it), so b's frame is the one over the budget.
    let target = a.server_peer.clone();
    a.send(&Message::Request {
        sender_id: "bytes-a".into(),
        target_id: target,
        document_id: DocumentId::random(),
        data: automerge::Automerge::new()
            .generate_sync_message(&mut sync::State::new())
            .unwrap()
            .encode(),
    })
    .await;
    assert!(matches!(
        a.next().await,
        Some(Ok(Message::DocUnavailable { .. }))
    ));
    let msg = ephemeral("bytes-b", &b.server_peer.clone());
    b.send(&msg).await;
    b.expect_error_then_close(1008, "100 bytes per second")
        .await;

    // Operations: 3,000 list insertions pass, the next 3,000 do not (the
    // 40 kB left of the byte budget carry both messages).
    let mut doc = AutoCommit::new();
    let list = doc.put_object(ROOT, "l", ObjType::List).unwrap();
    let mut changes = vec![];
    for round in 0..2 {
        for i in 0..3000 {
            doc.insert(&list, round * 3000 + i, 1).unwrap();
        }
        doc.commit();
        changes.push(doc.get_last_local_change().unwrap().raw_bytes().to_vec());
    }
    let mut c = Raw::joined(&server, "ops-c").await;
    send_sync(&mut c, "ops-c", sync_with(vec![changes[0].clone()])).await;
    send_sync(&mut c, "ops-c", sync_with(vec![changes[1].clone()])).await;
    c.expect_error_then_close_skipping(1008, "operations per second")
        .await;
}

/// Compressed data is paid for at its inflated size: a few kB that inflate
/// to megabytes (kept in memory and storage) cost megabytes of the budget.
async fn compressed_data_is_charged_at_its_inflated_size(db: TestDb) {
    let server = Server::start(
        &db,
        &[
            "--max-bytes-per-sec",
            "100",
            "--max-inflated-bytes",
            "4000000",
            "--max-message-bytes",
            "1000000",
        ],
    );
    let change = |n: i64| {
        let mut d = AutoCommit::new();
        d.put(ROOT, "n", n).unwrap();
        d.commit_with(
            automerge::transaction::CommitOptions::default().with_message("\0".repeat(3_000_000)),
        );
        d.get_last_local_change().unwrap().clone().bytes().to_vec()
    };
    let (first, second) = (change(1), change(2));
    assert!(first.len() < 20_000, "{} bytes on the wire", first.len());
    let mut raw = Raw::joined(&server, "zipper").await;
    send_sync(&mut raw, "zipper", sync_with(vec![first])).await;
    send_sync(&mut raw, "zipper", sync_with(vec![second])).await;
    raw.expect_error_then_close_skipping(1008, "100 bytes per second")
        .await;
}

/// What a sync message asks Automerge to do when it answers (the `have`
/// bloom filters, list lengths) and what is relayed (ephemeral messages) is
/// bounded before anything is decoded or relayed.
async fn sync_envelopes_and_ephemeral_messages_are_bounded(db: TestDb) {
    let server = Server::start(&db, &[]);
    let (dev, id) = honest_device(&server).await;
    // A `have` whose bloom filter asks for 100 M probes per hash (seconds of
    // CPU and 400 MB when the server answers), one with 0 bits per entry
    // (a division by zero), and 4 M empty `have` entries in one frame.
    let have = |bloom: &[u8]| {
        let mut m = vec![0x42, 0, 0, 1, 0, bloom.len() as u8];
        m.extend(bloom);
        m.push(0);
        m
    };
    let mut flood = vec![0x42, 0, 0, 0x80, 0x80, 0x80, 0x02];
    flood.resize(flood.len() + 8_000_000, 0);
    flood.push(0);
    for (peer, data, needle) in [
        (
            "probes",
            have(&[1, 8, 0x80, 0xc2, 0xd7, 0x2f, 1]),
            "bad bloom filter",
        ),
        ("zero", have(&[1, 0, 7]), "bad bloom filter"),
        ("flood", flood, "`have` entries"),
    ] {
        let mut raw = Raw::joined(&server, peer).await;
        let target = raw.server_peer.clone();
        raw.send(&Message::Sync {
            sender_id: peer.into(),
            target_id: target,
            document_id: id,
            data,
        })
        .await;
        raw.expect_error_then_close(1002, needle).await;
    }
    // Presence messages are small.
    let mut raw = Raw::joined(&server, "loud").await;
    let target = raw.server_peer.clone();
    raw.send(&Message::Ephemeral {
        sender_id: "loud".into(),
        target_id: target,
        count: 1,
        session_id: "s".into(),
        document_id: id,
        verified_sender: None,
        data: vec![1; 100_000],
    })
    .await;
    raw.expect_error_then_close(1009, "ephemeral messages are limited")
        .await;
    still_works(&dev, id, 1).await;
}

/// Issue 15 (first part): stock clients pass relayed ephemerals back with
/// their original sender; that echo must not disconnect them. A peer id is
/// one device's while it is connected.
async fn ephemeral_echoes_are_dropped_and_peer_ids_are_not_shared(db: TestDb) {
    let server = Server::start(&db, &[]);
    let (_dev, id) = honest_device(&server).await;
    let empty = automerge::Automerge::new()
        .generate_sync_message(&mut sync::State::new())
        .unwrap()
        .encode();
    let mut peers = vec![];
    for name in ["pa", "pb"] {
        let mut raw = Raw::joined(&server, name).await;
        let target = raw.server_peer.clone();
        raw.send(&Message::Request {
            sender_id: name.into(),
            target_id: target,
            document_id: id,
            data: empty.clone(),
        })
        .await;
        assert!(matches!(raw.next().await, Some(Ok(Message::Sync { .. }))));
        peers.push(raw);
    }
    let server_peer = peers[0].server_peer.clone();
    let presence = |sender: &str, count: u64| Message::Ephemeral {
        sender_id: sender.into(),
        target_id: server_peer.clone(),
        count,
        session_id: format!("{sender}-session"),
        document_id: id,
        verified_sender: None,
        data: b"typing".to_vec(),
    };
    peers[0].send(&presence("pa", 1)).await;
    let relayed = loop {
        match peers[1].next().await {
            Some(Ok(m @ Message::Ephemeral { .. })) => break m,
            Some(Ok(_)) => continue,
            other => panic!("expected the relayed ephemeral, got {other:?}"),
        }
    };
    // pb passes it on, as stock clients do: dropped, pb stays connected.
    peers[1].send(&relayed).await;
    peers[1].send(&presence("pb", 1)).await;
    loop {
        match peers[0].next().await {
            Some(Ok(Message::Ephemeral { sender_id, .. })) => {
                assert_eq!(sender_id, "pb", "pa never gets its own message back");
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("pb's presence reaches pa, got {other:?}"),
        }
    }
    // Another device joining with pa's peer id, or the server's, is refused.
    for taken in ["pa".to_string(), server_peer.clone()] {
        let mut raw = Raw::connect(&server).await;
        raw.send(&Message::Join {
            sender_id: taken.clone(),
            peer_metadata: None,
            supported_protocol_versions: vec!["1".into()],
        })
        .await;
        raw.expect_error_then_close(1008, "in use by another device")
            .await;
    }
}

/// The batch endpoint checks the token before it reads the body.
async fn batch_refuses_a_bad_token_before_reading_the_body(db: TestDb) {
    let server = Server::start(&db, &[]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /api/v1/sync/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer not-a-token\r\n\
         Content-Type: application/json\r\nContent-Length: 33000000\r\n\r\n{{\"device\":"
    )
    .unwrap();
    let mut head = [0u8; 512];
    let n = s
        .read(&mut head)
        .expect("answered without waiting for the 33 MB body");
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(head.contains("invalid_token"), "{head}");
}

on_both_backends!(
    decompression_bomb_is_refused_before_it_inflates,
    operation_bomb_is_refused_before_it_is_applied,
    cbor_item_flood_is_refused_before_it_is_decoded,
    bytes_and_operations_are_rate_limited_per_user,
    batch_refuses_a_bad_token_before_reading_the_body,
    compressed_data_is_charged_at_its_inflated_size,
    sync_envelopes_and_ephemeral_messages_are_bounded,
    ephemeral_echoes_are_dropped_and_peer_ids_are_not_shared,
);
