//! Presence (ephemeral messages) under attack, issue 15: a signed-in user can
//! neither speak as someone else nor silence them, a peer taken off a ticket
//! stops broadcasting into it, and a flood of relayed presence is bounded in
//! memory while honest devices keep their acknowledgements.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use automerge::sync::{self, SyncDoc as _};
use automerge::transaction::Transactable;
use automerge::ROOT;
use common::raw::Raw;
use common::{add_users, http, Server, TestDb, WAIT};
use fieldsync_shared::client::Device;
use fieldsync_shared::protocol::{Message, VerifiedSender};
use fieldsync_shared::DocumentId;
use futures_util::StreamExt;
use serde_json::json;

fn assign(server: &Server, doc: DocumentId, tech: &str) {
    let (status, body) = http(
        server.port,
        "PUT",
        &format!("/api/v1/tickets/{doc}/assignment"),
        Some(&server.token),
        Some(json!({ "technician": tech })),
    );
    assert_eq!(status, 200, "assign to {tech}: {body}");
}

fn user_id(server: &Server, token: &str) -> String {
    let (status, body) = http(server.port, "GET", "/api/v1/me", Some(token), None);
    assert_eq!(status, 200, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// A raw peer signed in with `token` on `device`, joined as `peer`, that has
/// asked for `doc` and got the server's first answer.
async fn subscribed(
    server: &Server,
    token: &str,
    device: &str,
    peer: &str,
    doc: DocumentId,
) -> Raw {
    let mut raw = Raw::joined_url(&server.sync_url_for(token, device), peer).await;
    let target = raw.server_peer.clone();
    raw.send(&Message::Request {
        sender_id: peer.into(),
        target_id: target,
        document_id: doc,
        data: automerge::Automerge::new()
            .generate_sync_message(&mut sync::State::new())
            .unwrap()
            .encode(),
    })
    .await;
    match raw.next().await {
        Some(Ok(Message::Sync { .. })) => raw,
        other => panic!("{peer} expected the ticket, got {other:?}"),
    }
}

fn presence(sender: &str, session: &str, count: u64, doc: DocumentId, data: Vec<u8>) -> Message {
    Message::Ephemeral {
        sender_id: sender.into(),
        target_id: String::new(),
        count,
        session_id: session.into(),
        document_id: doc,
        data,
        verified_sender: None,
    }
}

/// The next relayed ephemeral: (sender peer, session id, verified sender).
async fn next_presence(raw: &mut Raw) -> (String, String, VerifiedSender) {
    loop {
        match raw.next().await {
            Some(Ok(Message::Ephemeral {
                sender_id,
                session_id,
                verified_sender,
                ..
            })) => {
                let who = verified_sender.expect("the server names the verified sender");
                return (sender_id, session_id, who);
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a relayed ephemeral, got {other:?}"),
        }
    }
}

/// Holes 3 and 4 (second point), end to end: what a technician can do with
/// a dispatcher's peer and session ids read off relayed presence.
async fn presence_is_tied_to_the_signed_in_sender(db: TestDb) {
    add_users(
        &db,
        &[
            ("dora", "dispatcher"),
            ("tim", "technician"),
            ("tom", "technician"),
        ],
    );
    let server = Server::start(&db, &[]);
    let admin = Device::new("admin-desk");
    admin.connect(&server.sync_url()).await.unwrap();
    let id = admin.create(|d| d.put(ROOT, "status", "new").unwrap());
    admin.wait_acknowledged(id, WAIT).await.unwrap();
    assign(&server, id, "tim");
    let dora = server.login("dora", "dora-password");
    let tim = server.login("tim", "tim-password");
    let (dora_id, tim_id) = (user_id(&server, &dora), user_id(&server, &tim));

    let mut disp = subscribed(&server, &dora, "dora-laptop", "disp-peer", id).await;
    let mut tech = subscribed(&server, &tim, "tim-phone", "tech-peer", id).await;
    let mut viewer = subscribed(&server, &server.token, "viewer-desk", "viewer", id).await;

    // The dispatcher's presence names her, with a session id the server tagged.
    disp.send(&presence(
        "disp-peer",
        "disp-s",
        1,
        id,
        b"on ticket".to_vec(),
    ))
    .await;
    let (from, disp_session, who) = next_presence(&mut viewer).await;
    assert_eq!(from, "disp-peer");
    let disp_tag = disp_session
        .strip_prefix("disp-s.")
        .expect("sender's session id, tagged");
    assert!(disp_tag.len() == 16 && disp_tag.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        (who.user_id.as_str(), who.role.as_str()),
        (dora_id.as_str(), "dispatcher")
    );
    let (_, _, seen_by_tech) = next_presence(&mut tech).await;
    assert_eq!(seen_by_tech.user_id, dora_id);

    // The technician sends under her session id (read off the relayed one)
    // with a huge count and a forged verifiedSender: it is relayed as *his*
    // session and *his* identity, so no client drops her next messages.
    tech.send(&Message::Ephemeral {
        sender_id: "tech-peer".into(),
        target_id: String::new(),
        count: 1 << 62,
        session_id: "disp-s".into(),
        document_id: id,
        data: b"I am the dispatcher".to_vec(),
        verified_sender: Some(who.clone()),
    })
    .await;
    let (from, session, claimed) = next_presence(&mut viewer).await;
    assert_eq!(from, "tech-peer");
    assert_ne!(
        session, disp_session,
        "another device cannot produce her session id"
    );
    assert!(session.starts_with("disp-s.") && !session.ends_with(disp_tag));
    assert_eq!(
        (claimed.user_id.as_str(), claimed.role.as_str()),
        (tim_id.as_str(), "technician")
    );
    // The dispatcher's next message (count 2) still comes through as hers.
    disp.send(&presence(
        "disp-peer",
        "disp-s",
        2,
        id,
        b"still here".to_vec(),
    ))
    .await;
    let (from, session, _) = next_presence(&mut viewer).await;
    assert_eq!(
        (from.as_str(), session.as_str()),
        ("disp-peer", disp_session.as_str())
    );

    // Nor can he join with her peer id (or the server's) while she is connected.
    let server_peer = viewer.server_peer.clone();
    for taken in ["disp-peer", server_peer.as_str()] {
        let mut raw = Raw::connect_url(&server.sync_url_for(&tim, "tim-tablet")).await;
        raw.send(&Message::Join {
            sender_id: taken.into(),
            peer_metadata: None,
            supported_protocol_versions: vec!["1".into()],
        })
        .await;
        raw.expect_error_then_close(1008, "in use by another device")
            .await;
    }

    // Taken off the ticket, the technician may still upload (write-only) but
    // no longer broadcasts into it: the viewer's next presence is Dora's.
    assign(&server, id, "tom");
    tokio::time::sleep(Duration::from_millis(300)).await;
    tech.send(&presence(
        "tech-peer",
        "tech-s",
        1,
        id,
        b"still typing".to_vec(),
    ))
    .await;
    disp.send(&presence("disp-peer", "disp-s", 3, id, b"marker".to_vec()))
        .await;
    let (from, _, _) = next_presence(&mut viewer).await;
    assert_eq!(
        from, "disp-peer",
        "a technician off the ticket is not relayed"
    );
}

struct Flood {
    figures: serde_json::Value,
    sent: u64,
    per_reader: f64,
    rss_growth_kib: u64,
    rss_left_kib: u64,
    p99_flooded_ms: u128,
    p99_elsewhere_ms: u128,
}

/// A ticket with 30 subscribers that never read and 10 that do, plus honest
/// devices writing to it and to another ticket; a dispatcher floods the
/// ticket with 60 KiB presence messages from 4 connections for 3 s
/// (reconnecting when closed). Returns what happened.
async fn flood(db: &TestDb, extra: &[&str]) -> Flood {
    // One flood at a time: with two cores, concurrent floods would measure
    // each other.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    add_users(db, &[("mallory", "dispatcher")]);
    let server = Server::start(db, extra);
    let honest = Device::new("honest-on-flooded");
    honest.connect(&server.sync_url()).await.unwrap();
    let flooded = honest.create(|d| d.put(ROOT, "n", 0).unwrap());
    honest.wait_acknowledged(flooded, WAIT).await.unwrap();
    let other_dev = Device::new("honest-elsewhere");
    other_dev.connect(&server.sync_url()).await.unwrap();
    let other = other_dev.create(|d| d.put(ROOT, "n", 0).unwrap());
    other_dev.wait_acknowledged(other, WAIT).await.unwrap();

    const STALLED: usize = 30;
    const FLOOD_SECS: u64 = 3;
    const READERS: usize = 10;
    let token = server.token.clone();
    let mut stalled = Vec::new();
    for i in 0..STALLED {
        let name = format!("stalled-{i}");
        stalled.push(subscribed(&server, &token, &name, &name, flooded).await);
    }
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for i in 0..READERS {
        let name = format!("reader-{i}");
        let mut raw = subscribed(&server, &token, &name, &name, flooded).await;
        let (received, stop) = (received.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(200), raw.ws.next()).await {
                    Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b)))) => {
                        if matches!(
                            fieldsync_shared::protocol::decode(&b),
                            Ok(Message::Ephemeral { .. })
                        ) {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(Some(Ok(_))) | Err(_) => {}
                    Ok(_) => panic!("a reading subscriber was disconnected"),
                }
            }
        }));
    }
    let mallory = server.login("mallory", "mallory-password");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_before, _) = server.memory_kb();

    // Honest devices write and wait for each acknowledgement meanwhile.
    let honest_task = |dev: Device, id: DocumentId| {
        tokio::spawn(async move {
            let mut acks = Vec::new();
            for n in 1..=30i64 {
                let t = Instant::now();
                dev.change(id, |d| d.put(ROOT, "n", n).unwrap()).unwrap();
                dev.wait_acknowledged(id, WAIT).await.expect("acknowledged");
                acks.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
            acks.sort();
            acks
        })
    };
    let on_flooded = honest_task(honest.clone(), flooded);
    let elsewhere = honest_task(other_dev.clone(), other);

    let sent = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let mut attackers = Vec::new();
    for c in 0..4 {
        let url = server.sync_url_for(&mallory, &format!("mallory-{c}"));
        let (sent, closed) = (sent.clone(), closed.clone());
        attackers.push(tokio::spawn(async move {
            let started = Instant::now();
            let payload = vec![0x5a; 60 * 1024];
            let peer = format!("mallory-{c}");
            let mut count = 0;
            while started.elapsed() < Duration::from_secs(FLOOD_SECS) {
                // Joining fails too while the user's budget is spent.
                let mut raw = Raw::connect_url(&url).await;
                raw.send(&Message::Join {
                    sender_id: peer.clone(),
                    peer_metadata: None,
                    supported_protocol_versions: vec!["1".into()],
                })
                .await;
                // Bounded waits: a server that stops reading an attacker
                // who does not read (backpressure) must not hang the test.
                let target = match tokio::time::timeout(Duration::from_secs(5), raw.next()).await {
                    Ok(Some(Ok(Message::Peer { sender_id, .. }))) => sender_id,
                    _ => {
                        closed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                raw.send(&Message::Request {
                    sender_id: peer.clone(),
                    target_id: target,
                    document_id: flooded,
                    data: automerge::Automerge::new()
                        .generate_sync_message(&mut sync::State::new())
                        .unwrap()
                        .encode(),
                })
                .await;
                while started.elapsed() < Duration::from_secs(FLOOD_SECS) {
                    count += 1;
                    let msg = presence(&peer, &peer, count, flooded, payload.clone());
                    use futures_util::SinkExt;
                    let frame = fieldsync_shared::protocol::encode(&msg);
                    let send = raw.ws.send(tokio_tungstenite::tungstenite::Message::Binary(
                        frame.into(),
                    ));
                    if !matches!(
                        tokio::time::timeout(Duration::from_secs(5), send).await,
                        Ok(Ok(()))
                    ) {
                        closed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    // Read what the server says without waiting for it.
                    if let Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)))) =
                        tokio::time::timeout(Duration::ZERO, raw.ws.next()).await
                    {
                        closed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }));
    }
    for a in attackers {
        a.await.unwrap();
    }
    let acks_flooded = on_flooded.await.unwrap();
    let acks_elsewhere = elsewhere.await.unwrap();
    let (_, peak) = server.memory_kb();
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    drop(stalled);
    // The server hands freed memory back every 5 s.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (rss_after, _) = server.memory_kb();
    assert!(honest.is_connected() && other_dev.is_connected());
    let p99 = |a: &[Duration]| a[a.len() * 99 / 100].as_millis();
    let sent = sent.load(Ordering::Relaxed);
    let per_reader = received.load(Ordering::Relaxed) as f64 / READERS as f64;
    let figures = json!({
        "limits": extra,
        "ephemerals_sent": sent,
        "attacker_connections_closed": closed.load(Ordering::Relaxed),
        "relayed_per_reading_subscriber": per_reader,
        "dropped": server.metric("fieldsync_ephemeral_dropped_total"),
        "rss_before_mib": rss_before / 1024,
        "rss_peak_mib": peak / 1024,
        "rss_after_mib": rss_after / 1024,
        "ack_p99_ms_flooded_ticket": p99(&acks_flooded),
        "ack_p99_ms_other_ticket": p99(&acks_elsewhere),
    });
    println!("presence flood: {figures}");
    Flood {
        sent,
        per_reader,
        rss_growth_kib: peak.saturating_sub(rss_before),
        rss_left_kib: rss_after.saturating_sub(rss_before),
        p99_flooded_ms: p99(&acks_flooded),
        p99_elsewhere_ms: p99(&acks_elsewhere),
        figures,
    }
}

/// Hole 2 with the default limits: one user's flood reaches each reader as
/// at most the presence budget (64 KiB/s per user), and honest devices'
/// acknowledgements stay prompt on the flooded ticket and elsewhere.
async fn presence_flood_within_default_limits(db: TestDb) {
    let f = flood(&db, &[]).await;
    let fig = &f.figures;
    assert!(f.sent > 20, "the flood went through: {fig}");
    // 3 s x 64 KiB/s + a 130 KiB burst = about 5 messages of 60 KiB.
    assert!(f.per_reader >= 1.0 && f.per_reader <= 7.0, "{fig}");
    assert!(f.rss_growth_kib < 64 * 1024, "{fig}");
    assert!(
        f.p99_flooded_ms < 1000 && f.p99_elsewhere_ms < 1000,
        "{fig}"
    );
}

/// Hole 2 with every rate limit lifted (think of many users, each within
/// their budget): the send queues alone bound memory. Each reader that
/// stops reading holds at most 256 KiB of relayed presence in fieldsync's
/// queue (one shared buffer per message) plus the WebSocket writer's 32
/// frames (2 MiB at 64 KiB): about 2.3 MiB per subscriber, 92 MiB for these
/// 40, plus allocator slack. Memory returns after the burst.
async fn presence_flood_with_limits_lifted_stays_bounded(db: TestDb) {
    let lifted = [
        "--max-bytes-per-sec",
        "4000000000",
        "--max-messages-per-sec",
        "1000000",
        "--max-ephemeral-per-sec",
        "1000000",
        "--max-ephemeral-bytes-per-sec",
        "4000000000",
    ];
    let f = flood(&db, &lifted).await;
    let fig = &f.figures;
    assert!(f.sent > 200, "the flood went through: {fig}");
    assert!(f.rss_growth_kib < 256 * 1024, "{fig}");
    assert!(
        f.rss_left_kib < 48 * 1024,
        "memory returned after the burst: {fig}"
    );
}

on_both_backends!(
    presence_is_tied_to_the_signed_in_sender,
    presence_flood_within_default_limits,
    presence_flood_with_limits_lifted_stays_bounded,
);
