//! The web console (issue 12): what each role may do as the console is
//! told (`GET /api/v1/me/capabilities`) is what the API allows, and the
//! console end to end in a real browser (Debian's chromium, driven by
//! `scripts/browser/console.mjs` through playwright-core) against a
//! `--demo` server while a technician's Rust device works the ticket.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ObjType, ReadDoc, ROOT};
use common::{get_json as get, http, http_bytes, Server, TestDb, WAIT};
use fieldsync_shared::client::{Device, DocStatus};
use fieldsync_shared::status::Status;
use fieldsync_shared::ticket::{self, PartUsed};
use fieldsync_shared::DocumentId;
use serde_json::{json, Value};
use sha2::Digest;

const PW: &str = "fieldsync-demo";

/// One probe per capability: a request that the API refuses with 403
/// exactly when the role lacks it (otherwise it succeeds, or fails for a
/// reason that comes after the role check, such as an unknown id).
const PROBES: &[(&str, &str, &str, Option<&str>)] = &[
    ("read_office", "GET", "/api/v1/customers?limit=1", None),
    (
        "dispatch",
        "PUT",
        "/api/v1/tickets/no-such-ticket/appointment",
        Some(r#"{"start":"2026-01-01T09:00:00Z","end":"2026-01-01T10:00:00Z"}"#),
    ),
    (
        "read_reconciliation",
        "GET",
        "/api/v1/reconciliation/queue?limit=1",
        None,
    ),
    (
        "reconcile",
        "POST",
        "/api/v1/tickets/no-such-ticket/reconcile",
        None,
    ),
    (
        "export",
        "GET",
        "/api/v1/reconciliation/export?from=2020-01-01&to=2020-01-01",
        None,
    ),
    ("reports", "GET", "/api/v1/reports/month", None),
    (
        "catalogue",
        "POST",
        "/api/v1/stock-movements",
        Some(r#"{"technician":"nobody-at-all","part_no":"MTR-40","qty_delta":1}"#),
    ),
    ("admin_users", "GET", "/api/v1/users?limit=1", None),
    (
        "admin_devices",
        "POST",
        "/api/v1/devices/no-such-device/revoke",
        None,
    ),
    (
        "read_quarantine",
        "GET",
        "/api/v1/quarantined-edits?limit=1",
        None,
    ),
];

#[test]
fn capabilities_are_what_the_api_allows() {
    let db = TestDb::new(common::Backend::Sqlite);
    let server = Server::start(&db, &["--demo"]);
    // One demo account per role.
    for user in ["tom", "dora", "bob", "sue", "mia", "ada"] {
        let token = server.login(user, PW);
        let caps = get(&server, &token, "/api/v1/me/capabilities");
        let names: Vec<&str> = caps
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "role")
            .map(String::as_str)
            .collect();
        assert_eq!(
            names.len(),
            PROBES.len(),
            "a probe for every capability: {caps}"
        );
        for (cap, method, path, body) in PROBES {
            let may = caps[cap]
                .as_bool()
                .unwrap_or_else(|| panic!("{cap} in {caps}"));
            let body: Option<Value> = body.map(|b| serde_json::from_str(b).unwrap());
            let (status, answer) = http(server.port, method, path, Some(&token), body);
            assert!(status < 500, "{user} {method} {path}: {status} {answer}");
            assert_eq!(
                status != 403,
                may,
                "{user} ({}): capability {cap} is {may} but {method} {path} answered {status} {answer}",
                caps["role"]
            );
        }
    }
}

/// What the console reads beside the rest of the API: live events, stored
/// SLA states for a board, the whole document with the caller's actions,
/// and the people behind user ids. Office roles only, except a ticket's
/// document for its assigned technician.
#[test]
fn live_events_and_board_reads() {
    use std::io::Read;
    let db = TestDb::new(common::Backend::Sqlite);
    let server = Server::start(&db, &["--demo"]);
    let (dora, tom, tina, bob) = (
        server.login("dora", PW),
        server.login("tom", PW),
        server.login("tina", PW),
        server.login("bob", PW),
    );
    for path in [
        "/api/v1/events",
        "/api/v1/people",
        "/api/v1/sla/states?ids=",
    ] {
        let (status, body) = http(server.port, "GET", path, Some(&tom), None);
        assert_eq!(status, 403, "technician: {path} {body}");
    }

    // The dispatcher's event stream, read raw off the socket.
    let mut sse = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(
        sse,
        "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {dora}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    sse.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut seen = String::new();
    let read_until = |sse: &mut std::net::TcpStream, seen: &mut String, what: &str| {
        let mut buf = [0u8; 4096];
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !seen.contains(what) {
            assert!(
                std::time::Instant::now() < deadline,
                "no `{what}` in the stream: {seen}"
            );
            let n = sse.read(&mut buf).expect("the stream stays open");
            assert!(n > 0, "stream closed: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    read_until(&mut sse, &mut seen, "event: ready");
    assert!(seen.contains("text/event-stream"), "{seen}");

    let customers = get(&server, &dora, "/api/v1/customers?q=acme");
    let customer = customers["items"][0]["id"].as_str().unwrap();
    let (status, made) = http(
        server.port,
        "POST",
        "/api/v1/tickets",
        Some(&dora),
        Some(
            json!({"customer_id": customer, "product": "Dough mixer", "fault_description": "Noisy",
                    "priority": "B", "technician": "tom"}),
        ),
    );
    assert_eq!(status, 201, "{made}");
    let id = made["document_id"].as_str().unwrap().to_string();
    // Committed → announced: the event names the ticket, and nothing of it.
    read_until(
        &mut sse,
        &mut seen,
        &format!("event: ticket\ndata: {{\"doc_id\":\"{id}\"}}"),
    );

    // The SLA watch follows the same commits, stores the state, says so.
    read_until(
        &mut sse,
        &mut seen,
        &format!("event: sla\ndata: {{\"doc_id\":\"{id}\"}}"),
    );
    let states_path = format!("/api/v1/sla/states?ids={id}");
    common::wait_for("the stored SLA state", || {
        !get(&server, &dora, &states_path)["items"]
            .as_array()
            .unwrap()
            .is_empty()
    });
    let states = get(&server, &dora, &states_path);
    assert_eq!(states["items"][0]["doc_id"], id.as_str(), "{states}");
    assert_eq!(states["items"][0]["priority"], "B", "{states}");
    let many = vec![id.as_str(); 201].join(",");
    let (status, _) = http(
        server.port,
        "GET",
        &format!("/api/v1/sla/states?ids={many}"),
        Some(&dora),
        None,
    );
    assert_eq!(status, 422);
    // Text that is no ticket id names none; text outside the pattern is refused.
    let none = get(&server, &dora, "/api/v1/sla/states?ids=notaticket,,");
    assert_eq!(none["items"], json!([]), "{none}");
    let (status, _) = http(
        server.port,
        "GET",
        "/api/v1/sla/states?ids=not-an-id",
        Some(&dora),
        None,
    );
    assert_eq!(status, 422);

    let doc = |token: &str| {
        http(
            server.port,
            "GET",
            &format!("/api/v1/tickets/{id}/document"),
            Some(token),
            None,
        )
    };
    let (status, d) = doc(&dora);
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["document"]["status"], "assigned", "{d}");
    assert_eq!(d["document"]["fault"]["description"], "Noisy", "{d}");
    assert_eq!(
        d["actions"],
        json!({"assign": true, "cancel": true, "reopen": false}),
        "{d}"
    );
    let (status, d) = doc(&bob);
    assert_eq!(status, 200);
    assert_eq!(
        d["actions"],
        json!({"assign": false, "cancel": false, "reopen": false}),
        "{d}"
    );
    let (status, d) = doc(&tom);
    assert_eq!(status, 200, "the assigned technician reads it: {d}");
    let (status, _) = doc(&tina);
    assert_eq!(status, 404, "another technician does not");
    let nowhere = DocumentId::random();
    let (status, _) = http(
        server.port,
        "GET",
        &format!("/api/v1/tickets/{nowhere}/document"),
        Some(&dora),
        None,
    );
    assert_eq!(status, 404, "an id that names no ticket");

    // One account holds a bounded number of streams (this one is open).
    let open = |token: &str| {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        write!(
            c,
            "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf).unwrap();
        (String::from_utf8_lossy(&buf[..n]).to_string(), c)
    };
    let mut held = Vec::new();
    for _ in 1..8 {
        let (head, c) = open(&dora);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        held.push(c);
    }
    let (head, _) = open(&dora);
    assert!(head.starts_with("HTTP/1.1 429"), "the ninth stream: {head}");
    let (head, _c) = open(&bob);
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "another account is not affected: {head}"
    );
    drop(held);

    let people = get(&server, &dora, "/api/v1/people");
    let tom_row = people["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["username"] == "tom")
        .unwrap();
    assert_eq!(tom_row["role"], "technician");
    assert!(
        tom_row.get("version").is_none() && tom_row.get("token_generation").is_none(),
        "{tom_row}"
    );
}

/// An event stream ends when the token that opened it expires, and when
/// its account is disabled (looked at with every keepalive, 15 s).
#[test]
fn event_streams_end_with_the_token_and_the_account() {
    use std::io::Read;
    let db = TestDb::new(common::Backend::Sqlite);
    let server = Server::start(&db, &["--demo", "--access-token-ttl-secs", "3"]);
    let port = std::cell::Cell::new(server.port);
    let open = |token: &str| {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port.get())).unwrap();
        write!(
            c,
            "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(25))).unwrap();
        c
    };
    // Read until the server closes the stream; what it sent, and when.
    let drain = |mut c: std::net::TcpStream| {
        let started = std::time::Instant::now();
        let mut seen = Vec::new();
        let _ = c.read_to_end(&mut seen);
        (
            String::from_utf8_lossy(&seen).to_string(),
            started.elapsed(),
        )
    };
    let (text, took) = drain(open(&server.login("dora", PW)));
    assert!(text.contains("event: expired"), "{text}");
    assert!(
        took < Duration::from_secs(6),
        "ended {took:?} after opening"
    );

    // A token with a moment left: the stream ends with it, not 3 s later.
    let sue = server.login("sue", PW);
    std::thread::sleep(Duration::from_millis(2000));
    let (_, took) = drain(open(&sue));
    assert!(
        took < Duration::from_millis(2500),
        "ended {took:?} after opening"
    );

    // Disabled while streaming: ends at the next keepalive.
    drop(server);
    let server = Server::start(&db, &["--access-token-ttl-secs", "60"]);
    port.set(server.port);
    let mia = server.login("mia", PW);
    let stream = open(&mia);
    let disabler = std::thread::spawn({
        let (port, admin) = (server.port, server.token.clone());
        move || {
            std::thread::sleep(Duration::from_millis(500));
            let (status, body) = http(
                port,
                "POST",
                "/api/v1/users/mia/disable",
                Some(&admin),
                None,
            );
            assert_eq!(status, 200, "{body}");
        }
    });
    let (text, took) = drain(stream);
    disabler.join().unwrap();
    assert!(text.contains("event: expired"), "{text}");
    assert!(
        took < Duration::from_secs(20),
        "ended {took:?} after opening"
    );
}

/// A 1×1 PNG; `tag` after its end makes a different blob that still shows.
fn png(tag: &str) -> Vec<u8> {
    let mut b = vec![
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f,
        0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x64,
        0x60, 0xf8, 0x5f, 0x0f, 0x00, 0x02, 0x87, 0x01, 0x80, 0xeb, 0x47, 0xba, 0x92, 0x00, 0x00,
        0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];
    b.extend_from_slice(tag.as_bytes());
    b
}

fn upload(server: &Server, token: &str, bytes: &[u8]) -> String {
    let sha: String = sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (status, _) = http_bytes(
        server.port,
        "PUT",
        &format!("/api/v1/blobs/{sha}"),
        Some(token),
        bytes,
    );
    assert!(status == 200 || status == 201, "upload: {status}");
    sha
}

/// The browser driver's `@@` lines, read on a thread.
struct Driver {
    child: std::process::Child,
    /// Commands to the driver; None once closed.
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<Value>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // A failed assertion must not leave node and chromium running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn next(&self) -> Value {
        let v = self
            .lines
            .recv_timeout(Duration::from_secs(120))
            .expect("the browser driver answers");
        assert!(v.get("error").is_none(), "browser test failed: {}", v);
        eprintln!("console: {v}");
        v
    }

    /// Closes the driver's stdin and waits for it to exit.
    fn finish(&mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        self.child.wait().unwrap()
    }

    fn send(&mut self, v: Value) {
        let stdin = self.stdin.as_mut().expect("driver stdin open");
        writeln!(stdin, "{v}").expect("driver stdin");
        stdin.flush().unwrap();
    }
}

fn chromium() -> Option<String> {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    std::path::Path::new(&path).exists().then_some(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser() {
    let Some(chromium) = chromium() else {
        // CI installs it (.ci/run); elsewhere say how, loudly.
        assert!(
            std::env::var("CI").is_err(),
            "chromium is missing: apt-get install -y chromium"
        );
        eprintln!("SKIPPED: no chromium (apt-get install -y chromium)");
        return;
    };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/browser");
    install_playwright(dir);
    let db = TestDb::new(common::Backend::Sqlite);
    // Short-lived access tokens: the pages refresh them silently throughout.
    let server = Server::start(&db, &["--demo", "--access-token-ttl-secs", "20"]);
    let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/console-screenshots");
    let mut child = Command::new("node")
        .arg("console.mjs")
        .current_dir(dir)
        .env("CONSOLE_URL", format!("http://127.0.0.1:{}", server.port))
        .env("CHROMIUM", &chromium)
        .env("SHOTS", shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let (tx, lines) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(json) = line.strip_prefix("@@ ") {
                let _ = tx.send(serde_json::from_str(json).expect("driver JSON"));
            } else {
                eprintln!("console.mjs: {line}");
            }
        }
    });
    let stdin = child.stdin.take().unwrap();
    let mut driver = Driver {
        child,
        stdin: Some(stdin),
        lines,
    };
    let wait = |d: &Driver| tokio::task::block_in_place(|| d.next());

    assert_eq!(wait(&driver)["step"], "technician sees no office pages");
    let created = wait(&driver);
    let id = DocumentId::parse_url_or_id(created["doc_id"].as_str().unwrap()).unwrap();

    // Tom's tablet works the ticket while the dispatcher's pages are open.
    let tom = server.login("tom", PW);
    let tom_id = get(&server, &tom, "/api/v1/me")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let tablet = Device::new("tom-tablet-peer");
    tablet
        .connect(&server.sync_url_for(&tom, "tom-tablet"))
        .await
        .unwrap();
    tablet.want(id);
    tablet
        .wait_until(WAIT, "the ticket", |d| {
            d.status(id) == Some(DocStatus::Local)
        })
        .await
        .unwrap();
    let photo = upload(&server, &tom, &png("photo of the motor"));
    let signature = upload(&server, &tom, &png("signature strokes"));

    type Edit = Box<dyn FnOnce(&mut automerge::AutoCommit)>;
    let steps: Vec<(Edit, Value)> = vec![
        (
            Box::new(|d| ticket::set_status(d, Status::EnRoute).unwrap()),
            json!({"what": "en route", "status": "en_route"}),
        ),
        (
            Box::new(|d| ticket::set_status(d, Status::OnSite).unwrap()),
            json!({"what": "on site", "status": "on_site"}),
        ),
        (
            Box::new({
                let tom_id = tom_id.clone();
                move |d| {
                    ticket::check_in(d, "v1", &tom_id, "2026-12-01T09:05:00Z").unwrap();
                    ticket::check_out(
                        d,
                        "v1",
                        "2026-12-01T10:20:00Z",
                        "Replaced the gear motor",
                        "runs quietly",
                        true,
                    )
                    .unwrap();
                }
            }),
            json!({"what": "visit", "text": "Replaced the gear motor"}),
        ),
        (
            Box::new(|d| {
                ticket::add_part(
                    d,
                    &PartUsed {
                        id: "p1".into(),
                        part_no: "MTR-40".into(),
                        qty: 1,
                        serial: "SN-BROWSER-1".into(),
                        source: "van".into(),
                        visit_id: "v1".into(),
                        technician_id: String::new(),
                    },
                )
                .unwrap()
            }),
            json!({"what": "part", "text": "SN-BROWSER-1"}),
        ),
        (
            Box::new(move |d| {
                let (_, list) = d.get(ROOT, "checklist").unwrap().unwrap();
                let item = d.insert_object(&list, 0, ObjType::Map).unwrap();
                d.put(&item, "item", "Belt tension checked").unwrap();
                d.put(&item, "done", true).unwrap();
                let (_, list) = d.get(ROOT, "attachments").unwrap().unwrap();
                let a = d.insert_object(&list, 0, ObjType::Map).unwrap();
                d.put(&a, "sha256", photo.as_str()).unwrap();
                d.put(&a, "kind", "photo").unwrap();
                ticket::append_note(d, "Customer asked for the old motor back.").unwrap();
            }),
            json!({"what": "checklist, photo, note", "text": "Belt tension checked", "image": "photo"}),
        ),
        (
            Box::new(|d| ticket::set_status(d, Status::Completed).unwrap()),
            json!({"what": "completed", "status": "completed"}),
        ),
        (
            Box::new(move |d| {
                let heads = d.get_heads();
                ticket::sign(d, "Ann Acme", "2026-12-01T10:25:00Z", &signature, &heads).unwrap();
            }),
            json!({"what": "signature", "text": "Ann Acme", "image": "Signature of Ann Acme"}),
        ),
        (
            Box::new(|d| ticket::set_status(d, Status::SignedOff).unwrap()),
            json!({"what": "signed off", "status": "signed_off"}),
        ),
    ];
    for (edit, expect) in steps {
        tablet.change(id, edit).unwrap();
        tablet.wait_acknowledged(id, WAIT).await.unwrap();
        driver.send(expect.clone());
        let got = wait(&driver);
        assert!(
            got["step"]
                .as_str()
                .unwrap()
                .ends_with(expect["what"].as_str().unwrap()),
            "{got}"
        );
    }
    driver.send(json!({"done": true}));

    assert!(wait(&driver)["step"]
        .as_str()
        .unwrap()
        .starts_with("session ended mid-work"));
    assert_eq!(wait(&driver)["step"], "cancel, reopen, customer filter");
    assert_eq!(wait(&driver)["step"], "reconciled and exported");
    assert_eq!(wait(&driver)["step"], "manager report");
    let done = wait(&driver);
    assert_eq!(done["done"], true, "{done}");
    let status = driver.finish();
    assert!(status.success(), "browser driver: {status}");
    // The ticket ended where the pages said: reconciled.
    let dora = server.login("dora", "dora-new-password");
    let row = get(&server, &dora, &format!("/api/v1/tickets/{id}"));
    assert_eq!(row["status"], "reconciled", "{row}");
    for shot in [
        "console-board.png",
        "console-ticket.png",
        "console-back-office.png",
        "console-reports.png",
    ] {
        assert!(std::path::Path::new(shots).join(shot).exists(), "{shot}");
    }
}

fn install_playwright(dir: &str) {
    if std::path::Path::new(dir)
        .join("node_modules/playwright-core")
        .exists()
    {
        return;
    }
    let ok = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("npm is installed")
        .success();
    assert!(ok, "npm ci in {dir}");
}
