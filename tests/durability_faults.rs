//! Durability under storage faults, on both backends: commits fail at random
//! points (before the transaction, inside it, after it reached the disk but
//! lost its answer) while devices edit tickets concurrently and the
//! dispatcher API edits them in between; status steps make the server add
//! its own changes on top of the devices' (the graph that once broke the
//! in-memory rollback). Afterwards:
//! - every head the server ever reported to a device is in storage, with all
//!   its ancestors (nothing acknowledged was lost), checked on the stored
//!   rows after a kill -9;
//! - after a restart every replica converges with the server.
//!
//! The server is started with the test-only `--inject-commit-faults`.

mod common;

use std::time::{Duration, Instant};

use automerge::ReadDoc;
use common::{http, Server, TestDb};
use fieldsync_server::db::Db;
use fieldsync_server::storage;
use fieldsync_shared::client::{Device, DocStatus};
use fieldsync_shared::status::Status;
use fieldsync_shared::ticket;
use fieldsync_shared::DocumentId;
use serde_json::json;

const TICKETS: usize = 4;
const DEVICES: usize = 4;
const ROUNDS: usize = 30;

on_both_backends!(acknowledged_changes_survive_failing_commits);

fn create_ticket(server: &Server, n: usize) -> DocumentId {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http(
            server.port,
            "POST",
            "/api/v1/tickets",
            Some(&server.token),
            Some(
                json!({"customer_name": format!("Customer {n}"), "product": "Pump",
                        "fault_description": "Leaks", "priority": "B"}),
            ),
        );
        match status {
            201 => return DocumentId::parse_url_or_id(body["url"].as_str().unwrap()).unwrap(),
            503 => assert!(Instant::now() < deadline, "storage never recovered"),
            _ => panic!("creating a ticket: {status} {body}"),
        }
    }
}

/// Connects, retrying while the server refuses (storage failing).
async fn ensure_connected(device: &Device, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !device.is_connected() {
        if device.connect(url).await.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "could not reconnect for 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Keeps the device connected until the server acknowledged all of `ids`.
async fn sync_until_acknowledged(device: &Device, url: &str, ids: &[DocumentId]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        ensure_connected(device, url).await;
        let done = |d: &Device| ids.iter().all(|id| d.acknowledged(*id));
        let _ = device
            .wait_until(Duration::from_secs(2), "acknowledgement", |d| {
                done(d) || !d.is_connected()
            })
            .await;
        if done(device) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never got its changes acknowledged",
            device.peer_id()
        );
    }
}

/// One device's work: notes, visits and status steps on its two tickets.
async fn work(device: Device, url: String, ids: Vec<DocumentId>, seed: usize, rounds: usize) {
    for id in &ids {
        device.want(*id);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        ensure_connected(&device, &url).await;
        let _ = device
            .wait_until(Duration::from_secs(2), "tickets", |d| {
                ids.iter().all(|id| d.status(*id) == Some(DocStatus::Local)) || !d.is_connected()
            })
            .await;
        if ids
            .iter()
            .all(|id| device.status(*id) == Some(DocStatus::Local))
        {
            break;
        }
        assert!(Instant::now() < deadline, "tickets never arrived");
    }
    for round in 0..rounds {
        ensure_connected(&device, &url).await;
        let id = ids[(round + seed) % ids.len()];
        let peer = device.peer_id().to_string();
        device
            .change(id, |d| {
                ticket::append_note(d, &format!("{peer}:{round} ")).unwrap();
                if round % 3 == 0 {
                    let status = if (round / 3 + seed).is_multiple_of(2) {
                        Status::OnSite
                    } else {
                        Status::Paused
                    };
                    ticket::set_status(d, status).unwrap();
                } else {
                    ticket::check_in(d, &format!("{peer}-{round}"), &peer, "2026-11-25T10:00:00Z")
                        .unwrap();
                }
            })
            .unwrap();
        // Wait for the answer (or the close that says "retry later").
        let _ = device
            .wait_until(Duration::from_secs(3), "acknowledgement", |d| {
                d.acknowledged(id) || !d.is_connected()
            })
            .await;
    }
    sync_until_acknowledged(&device, &url, &ids).await;
}

/// Devices (each on two tickets, each ticket shared by two devices).
struct Fleet {
    tickets: Vec<DocumentId>,
    devices: Vec<(Device, Vec<DocumentId>)>,
}

impl Fleet {
    fn new(server: &Server) -> Self {
        let tickets: Vec<DocumentId> = (0..TICKETS).map(|n| create_ticket(server, n)).collect();
        let devices = (0..DEVICES)
            .map(|n| {
                (
                    Device::new(format!("dev{n}-peer")),
                    vec![tickets[n % TICKETS], tickets[(n + 1) % TICKETS]],
                )
            })
            .collect();
        Self { tickets, devices }
    }

    fn url(server: &Server, n: usize) -> String {
        server.sync_url_for(&server.token, &format!("dev{n}"))
    }

    /// Runs every device's work while the dispatcher API edits the same
    /// tickets; returns when all devices' changes are acknowledged.
    async fn work(&self, server: &Server, rounds: usize) {
        let tasks: Vec<_> = self
            .devices
            .iter()
            .enumerate()
            .map(|(n, (d, ids))| {
                tokio::spawn(work(
                    d.clone(),
                    Self::url(server, n),
                    ids.clone(),
                    n,
                    rounds,
                ))
            })
            .collect();
        let mut edits = 0;
        while !tasks.iter().all(|t| t.is_finished()) {
            let id = self.tickets[edits % TICKETS];
            let (status, body) = http(
                server.port,
                "PUT",
                &format!("/api/v1/tickets/{id}/appointment"),
                Some(&server.token),
                Some(
                    json!({"start": format!("2026-11-26T{:02}:00:00Z", 8 + edits % 8), "end": "2026-11-26T18:00:00Z"}),
                ),
            );
            assert!(
                status == 200 || status == 503,
                "appointment: {status} {body}"
            );
            edits += 1;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        for t in tasks {
            t.await.expect("device task");
        }
    }

    /// On the stored rows (server stopped): every head the server ever
    /// reported to a device is stored with all of its history.
    fn assert_acknowledged_changes_stored(&self, url: &str) {
        let storage_db = Db::open(url, 1).unwrap();
        for id in &self.tickets {
            let key = id.to_string();
            let doc = storage_db
                .run_blocking(|c| storage::load(c, &key))
                .unwrap()
                .materialize()
                .unwrap();
            assert!(
                doc.get_missing_deps(&[]).is_empty(),
                "{id}: stored changes depend on changes that were never stored"
            );
            for (d, ids) in &self.devices {
                if !ids.contains(id) {
                    continue;
                }
                for head in d.server_claimed_heads(*id) {
                    assert!(
                        doc.get_change_by_hash(&head).is_some(),
                        "{id}: change {head} was acknowledged to {} but is not stored",
                        d.peer_id()
                    );
                }
            }
        }
    }

    /// Every device syncs with `server`; then all of them and a fresh reader
    /// hold exactly the same heads for each ticket.
    async fn assert_converge(&self, server: &Server) {
        for (n, (d, ids)) in self.devices.iter().enumerate() {
            d.disconnect().await;
            sync_until_acknowledged(d, &Self::url(server, n), ids).await;
        }
        let reader = Device::new("reader");
        reader.connect(&server.sync_url()).await.unwrap();
        for id in &self.tickets {
            reader.want(*id);
        }
        let sorted = |mut h: Vec<automerge::ChangeHash>| {
            h.sort();
            h
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let diverging: Vec<String> = self
                .devices
                .iter()
                .flat_map(|(d, ids)| ids.iter().map(move |id| (d, *id)))
                .filter(|(d, id)| {
                    reader.status(*id) != Some(DocStatus::Local)
                        || sorted(d.heads(*id)) != sorted(reader.heads(*id))
                })
                .map(|(d, id)| format!("{} on {id}", d.peer_id()))
                .collect();
            if diverging.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replicas did not converge: {diverging:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn acknowledged_changes_survive_failing_commits(db: TestDb) {
    let seed: u64 = rand_seed();
    eprintln!("fault seed {seed} (rerun with FAULT_SEED={seed})");
    let mut server = Server::start(&db, &["--inject-commit-faults", &format!("0.3:100:{seed}")]);
    let fleet = Fleet::new(&server);
    fleet.work(&server, ROUNDS).await;
    let failures = server.metric("fieldsync_commit_failures_total");
    assert!(
        failures > 0,
        "no fault was injected; the test proves nothing"
    );
    eprintln!(
        "{failures} failed commits, {} documents evicted and reloaded",
        server.metric("fieldsync_docs_evicted_diverged_total")
    );
    // Crash, check the stored rows, restart without faults, converge.
    server.kill();
    fleet.assert_acknowledged_changes_stored(&db.url);
    let server = Server::start(&db, &[]);
    fleet.assert_converge(&server).await;
}

/// `/health` answers within about a second; returns (status, body).
fn health(server: &Server) -> (u16, serde_json::Value) {
    let started = Instant::now();
    let (status, body) = http(server.port, "GET", "/health", None, None);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "/health took {:?}",
        started.elapsed()
    );
    (status, body)
}

/// SQLite on a small tmpfs that fills up while devices write, then gets
/// space back: commits fail with "database or disk is full", `/health` says
/// so, known devices still connect, and writes resume by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_disk_full_then_space_freed() {
    let mount = tempfile::tempdir().unwrap();
    let dir = mount.path().to_string_lossy().into_owned();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs", &dir])
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)");
        return;
    }
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .args(["-l", &self.0])
                .status();
        }
    }
    let _unmount = Unmount(dir.clone());
    let mut db = TestDb::new(common::Backend::Sqlite);
    db.url = format!("{dir}/fieldsync.db");
    let mut server = Server::start(&db, &[]);
    let fleet = Fleet::new(&server);
    fleet.work(&server, 2).await;

    // Fill the disk, leaving a little room.
    let ballast = format!("{dir}/ballast");
    let free = {
        let out = std::process::Command::new("df")
            .args(["-B1", "--output=avail", &dir])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    std::fs::write(&ballast, vec![1u8; (free - 64 * 1024) as usize]).unwrap();

    // Devices keep writing until commits fail.
    let writer = &fleet.devices[0].0;
    let id = fleet.devices[0].1[0];
    let url = Fleet::url(&server, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    // Until commits fail and the health probe's small write fails too (a
    // failed commit's rollback can free room for another small write, e.g.
    // the SLA watch's row, so one failure alone does not mean full).
    while server.metric("fieldsync_commit_failures_total") == 0 || health(&server).0 != 503 {
        assert!(Instant::now() < deadline, "the disk never filled up");
        ensure_connected(writer, &url).await;
        writer
            .change(id, |d| {
                ticket::append_note(d, &"filling the disk ".repeat(200)).unwrap()
            })
            .unwrap();
        n += 1;
        let _ = writer
            .wait_until(Duration::from_secs(2), "ack", |d| {
                d.acknowledged(id) || !d.is_connected()
            })
            .await;
    }
    eprintln!("disk full after {n} changes");
    let (status, body) = health(&server);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["writable"], false, "{body}");
    assert!(
        body["problem"].as_str().unwrap().contains("disk is full"),
        "{body}"
    );
    assert!(
        !writer.acknowledged(id),
        "a change was acknowledged although its commit failed"
    );
    // A known device still connects and reads while writes fail.
    let other = &fleet.devices[2].0;
    other.disconnect().await;
    other
        .connect(&Fleet::url(&server, 2))
        .await
        .expect("connect while the disk is full");

    // Space comes back: writes resume by themselves, nothing is lost.
    std::fs::remove_file(&ballast).unwrap();
    sync_until_acknowledged(writer, &url, &fleet.devices[0].1).await;
    let (status, body) = health(&server);
    assert_eq!(status, 200, "{body}");
    server.kill();
    fleet.assert_acknowledged_changes_stored(&db.url);
    let server = Server::start(&db, &[]);
    fleet.assert_converge(&server).await;
}

/// PostgreSQL goes away for a few seconds under steady writes (the test cuts
/// the server's database connections with a proxy): `/health` reports it
/// within a second, devices get a retryable close or 503, and everything
/// resumes when the database is back, with no acknowledged change lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_under_writes() {
    let Some(mut db) = TestDb::postgres_or_skip() else {
        return;
    };
    let real = db.url.clone();
    let proxy = common::TcpProxy::start(&real);
    db.url = proxy.url(&real);
    let mut server = Server::start(&db, &[]);
    let fleet = Fleet::new(&server);
    fleet.work(&server, 2).await;

    let writers: Vec<_> = fleet
        .devices
        .iter()
        .enumerate()
        .map(|(n, (d, ids))| {
            tokio::spawn(work(d.clone(), Fleet::url(&server, n), ids.clone(), n, 25))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, body) = health(&server);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["database_reachable"], false, "{body}");
    let (status, _) = http(
        server.port,
        "GET",
        "/api/v1/tickets",
        Some(&server.token),
        None,
    );
    assert_eq!(status, 503, "API answers 503 while the database is down");
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.restore();
    for w in writers {
        w.await.expect("device task");
    }
    let (status, body) = health(&server);
    assert_eq!(status, 200, "{body}");
    server.kill();
    fleet.assert_acknowledged_changes_stored(&real);
    let server = Server::start(&db, &[]);
    fleet.assert_converge(&server).await;
}

fn rand_seed() -> u64 {
    std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64
        })
}

/// A database file that cannot be written (immutable, as a read-only mount
/// would make it) is refused at start with its name, and leaves nothing
/// behind that would block the next start.
#[test]
fn unwritable_sqlite_file_is_refused_by_name() {
    let db = TestDb::new(common::Backend::Sqlite);
    let out = common::cli(&db.url, &["migrate"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shm = format!("{}-shm", db.url);
    let _ = std::fs::remove_file(&shm);
    let chattr = |flag: &str| {
        std::process::Command::new("chattr")
            .args([flag, &db.url])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !chattr("+i") {
        eprintln!("SKIPPED: chattr +i is not possible here");
        return;
    }
    let out = common::cli(&db.url, &["migrate"], "");
    chattr("-i");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&db.url) && err.contains("not writable"),
        "{err}"
    );
    assert!(
        !std::path::Path::new(&shm).exists(),
        "a -shm file was left behind"
    );
    let out = common::cli(&db.url, &["migrate"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

on_both_backends!(a_nul_in_a_field_does_not_block_the_ticket);

/// PostgreSQL text refuses NUL: a device writing one into a projected field
/// must not make the ticket's commits fail (its later edits still land).
async fn a_nul_in_a_field_does_not_block_the_ticket(db: TestDb) {
    let server = Server::start(&db, &[]);
    let id = create_ticket(&server, 0);
    let d = Device::new("nul-device");
    let url = server.sync_url();
    d.connect(&url).await.unwrap();
    d.want(id);
    d.wait_until(Duration::from_secs(15), "ticket", |d| {
        d.status(id) == Some(DocStatus::Local)
    })
    .await
    .unwrap();
    d.change(id, |doc| {
        ticket::check_in(doc, "v\0nul", "tech\0", "2026-11-25T10:00:00Z").unwrap();
    })
    .unwrap();
    d.wait_acknowledged(id, Duration::from_secs(15))
        .await
        .unwrap();
    d.change(id, |doc| ticket::append_note(doc, "after").unwrap())
        .unwrap();
    d.wait_acknowledged(id, Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!(server.metric("fieldsync_commit_failures_total"), 0);
    let (status, body) = http(
        server.port,
        "GET",
        &format!("/api/v1/tickets/{id}"),
        Some(&server.token),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["visit_count"], 1, "{body}");
}
