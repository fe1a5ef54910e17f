//! Interop with `samod`, the Rust automerge-repo implementation from
//! crates.io, acting as a device against the real server (issue 17 §1:
//! every stock automerge-repo client), on both backends:
//!
//! - `samod_creates_and_finds_tickets`: a ticket the dispatcher opened over
//!   REST is found by the assigned technician's samod repo with its intake; a
//!   ticket document created in the dispatcher's samod repo is stored (and
//!   projected), found by the back office's samod repo and, once assigned,
//!   by the technician's; a document created in a technician's samod repo is
//!   refused cleanly (`doc-unavailable`, nothing stored, no disconnect).
//! - `samod_offline_concurrent_edits_converge`: the technician and the
//!   dispatcher edit the ticket offline at the same time (status steps, a
//!   visit, notes / priority, appointment, notes), reconnect and end with
//!   identical heads holding both sides' edits; the server's stored
//!   document, its timeline and its quarantine agree.
//! - `samod_technicians_get_only_their_tickets`: another technician's samod
//!   `find` resolves to unavailable and receives nothing of the ticket while
//!   it is edited; once the ticket is reassigned to them their repo gets it
//!   without asking again, the previous assignee's live repo stops receiving
//!   it, and a visit the previous assignee recorded offline before the
//!   reassignment is still taken in (write-only) without anything being sent
//!   back.
//! - `samod_and_js_devices_share_a_ticket`: a samod device and the stock JS
//!   client (scripts/interop/device.mjs) see each other's edits through
//!   fieldsync and converge on the same heads, also after concurrent typing.
//!
//! Ephemeral messages between samod and JS peers: tests/presence_interop.rs.
//! Needs Node.js and `npm ci` in scripts/interop (done on first use).

mod common;

use automerge::transaction::Transactable;
use automerge::{Automerge, ChangeHash, ReadDoc, ROOT};
use common::js_device::{encode_heads, js_heads, JsDevice};
use common::samod::{change, doc_id, eventually, heads, SamodDevice};
use common::{add_users, get_json, http, Server, TestDb};
use fieldsync_shared::ticket::{self, Intake, Ticket, TicketError};
use serde_json::{json, Value};

// ---------------------------------------------------------------- users ---

/// A signed-in user.
struct User {
    name: String,
    token: String,
    id: String,
}

fn sign_in(server: &Server, name: &str) -> User {
    let token = server.login(name, &format!("{name}-password"));
    let id = get_json(server, &token, "/api/v1/me")["id"]
        .as_str()
        .unwrap()
        .to_string();
    User {
        name: name.to_string(),
        token,
        id,
    }
}

/// This user's device `device` as a samod repo, online.
async fn samod_device(server: &Server, user: &User, device: &str) -> SamodDevice {
    SamodDevice::online(&server.sync_url_for(&user.token, device), device).await
}

// -------------------------------------------------------------- tickets ---

/// The dispatcher opens a ticket over REST, assigned to `technician`;
/// returns (automerge URL, ticket number).
fn open_ticket(server: &Server, dispatcher: &User, technician: &User) -> (String, String) {
    let (status, body) = http(
        server.port,
        "POST",
        "/api/v1/tickets",
        Some(&dispatcher.token),
        Some(json!({
            "customer_name": "Acme Bakery", "product": "Dough mixer",
            "serial": "DM-7731", "fault_description": "Motor stops under load",
            "priority": "B", "technician": technician.name,
        })),
    );
    assert_eq!(status, 201, "{body}");
    (
        body["url"].as_str().unwrap().to_string(),
        body["ticket_no"].as_str().unwrap().to_string(),
    )
}

fn read(doc: &samod::DocHandle) -> Ticket {
    doc.with_document(|d| ticket::read(d)).expect("a ticket")
}

fn assign(server: &Server, dispatcher: &User, url: &str, technician: &User) {
    let (status, body) = http(
        server.port,
        "PUT",
        &format!(
            "/api/v1/tickets/{}/assignment",
            url.trim_start_matches("automerge:")
        ),
        Some(&dispatcher.token),
        Some(json!({"technician": technician.name})),
    );
    assert_eq!(status, 200, "{body}");
}

fn set_appointment(server: &Server, dispatcher: &User, url: &str, start: &str, end: &str) {
    let (status, body) = http(
        server.port,
        "PUT",
        &format!(
            "/api/v1/tickets/{}/appointment",
            url.trim_start_matches("automerge:")
        ),
        Some(&dispatcher.token),
        Some(json!({"start": start, "end": end})),
    );
    assert_eq!(status, 200, "{body}");
}

fn timeline(server: &Server, token: &str, url: &str) -> Value {
    get_json(
        server,
        token,
        &format!(
            "/api/v1/tickets/{}/timeline",
            url.trim_start_matches("automerge:")
        ),
    )
}

/// Waits until every device has the same heads; returns them.
async fn converged(devices: &[(&str, &samod::DocHandle)]) -> Vec<ChangeHash> {
    eventually(
        || {
            let all: Vec<String> = devices
                .iter()
                .map(|(name, d)| format!("{name}: {:?}", heads(d)))
                .collect();
            format!("no convergence: {}", all.join(", "))
        },
        || devices.windows(2).all(|w| heads(w[0].1) == heads(w[1].1)),
    )
    .await;
    heads(devices[0].1)
}

/// No connection was refused, dropped for an error or a limit.
fn assert_clean(server: &Server) {
    for metric in [
        "fieldsync_protocol_errors_total",
        "fieldsync_limit_violations_total",
        "fieldsync_slow_peers_dropped_total",
    ] {
        assert_eq!(server.metric(metric), 0, "{metric}");
    }
}

// ---------------------------------------------------------------- tests ---

/// Create and find, both ways: REST → samod, samod → server → samod; and
/// the share policy's refusal of a device-created document from a role that
/// may not create tickets.
async fn samod_creates_and_finds_tickets(db: TestDb) {
    add_users(
        &db,
        &[
            ("dora", "dispatcher"),
            ("tim", "technician"),
            ("bob", "back_office"),
        ],
    );
    let server = Server::start(&db, &[]);
    let [dora, tim, bob] = ["dora", "tim", "bob"].map(|u| sign_in(&server, u));

    // 1. A ticket opened over REST: the assignee's samod repo finds it with
    // its intake, asking the server with a `request`.
    let (url, ticket_no) = open_ticket(&server, &dora, &tim);
    let tim_phone = samod_device(&server, &tim, "tim-phone").await;
    let found = tim_phone
        .find(&url)
        .await
        .expect("the assignee finds the ticket");
    let t = read(&found);
    assert_eq!(t.intake.ticket_no, ticket_no);
    assert_eq!(t.intake.customer_name, "Acme Bakery");
    assert_eq!(t.intake.product, "Dough mixer");
    assert_eq!(t.intake.serial, "DM-7731");
    assert_eq!(t.intake.fault_description, "Motor stops under load");
    assert_eq!(t.intake.priority, "B");
    assert_eq!(t.status, "assigned");
    assert_eq!(t.technician_id, tim.id);
    assert_eq!(
        tim_phone.sent(&doc_id(&url)).first().map(String::as_str),
        Some("request"),
        "samod asks for a document it does not have"
    );

    // 2. A ticket document created in the dispatcher's samod repo (what a
    // dispatcher app does offline): the server stores it once acknowledged
    // and projects it …
    let mut content = Automerge::new();
    content
        .transact(|tx| {
            ticket::create(
                tx,
                &Intake {
                    ticket_no: "T-SAMOD-1".into(),
                    customer_name: "Bistro Blue".into(),
                    product: "Espresso machine".into(),
                    fault_description: "No steam".into(),
                    priority: "A".into(),
                    ..Intake::default()
                },
            )
        })
        .unwrap();
    let dora_desk = samod_device(&server, &dora, "dora-desk").await;
    let created = dora_desk.create(content).await;
    let created_url = created.url().to_string();
    dora_desk.wait_stored(&created).await;
    let row = get_json(
        &server,
        &dora.token,
        &format!("/api/v1/tickets/{}", created.document_id()),
    );
    assert_eq!(row["ticket_no"], "T-SAMOD-1", "{row}");
    assert_eq!(row["status"], "new", "{row}");
    assert_eq!(row["customer_name"], "Bistro Blue", "{row}");

    // … another peer (the back office sees every ticket) finds it through
    // the server, with the same heads …
    let bob_desk = samod_device(&server, &bob, "bob-desk").await;
    let seen = bob_desk
        .find(&created_url)
        .await
        .expect("the back office finds the dispatcher's ticket");
    assert_eq!(read(&seen).intake.ticket_no, "T-SAMOD-1");
    assert_eq!(read(&seen).intake.fault_description, "No steam");
    converged(&[("dora", &created), ("bob", &seen)]).await;

    // … and once it is assigned, so does the technician; the dispatcher's
    // live repo gets the server's assignment edit.
    assert!(
        tim_phone.find(&created_url).await.is_none(),
        "not assigned to the technician yet"
    );
    assign(&server, &dora, &created_url, &tim);
    // (The server sends it to the repo that asked before.)
    let tims = tim_phone.wait_found(&created_url).await;
    eventually(
        || "the technician's copy is assigned to them".into(),
        || {
            let t = read(&tims);
            t.status == "assigned" && t.technician_id == tim.id
        },
    )
    .await;
    assert_eq!(read(&tims).intake.ticket_no, "T-SAMOD-1");
    converged(&[("dora", &created), ("bob", &seen), ("tim", &tims)]).await;
    assert_eq!(read(&created).technician_id, tim.id);

    // 3. Technicians may not create documents through sync: the server
    // answers `doc-unavailable`, stores nothing and keeps the connection.
    let connection = tim_phone.connection();
    let mut note = Automerge::new();
    note.transact(|tx| {
        tx.put(ROOT, "ticket_no", "T-TIM-1")?;
        tx.put(ROOT, "notes", "made up on site")
    })
    .unwrap();
    let refused = tim_phone.create(note).await;
    let refused_id = refused.document_id().clone();
    eventually(
        || {
            format!(
                "the server answers the technician's new document: {:?}",
                tim_phone.received(&refused_id)
            )
        },
        || !tim_phone.received(&refused_id).is_empty(),
    )
    .await;
    let answers = tim_phone.received(&refused_id);
    assert!(
        answers.iter().all(|k| k == "doc-unavailable"),
        "only `doc-unavailable`, never the document back: {answers:?}"
    );
    assert!(tim_phone.sent(&refused_id).iter().all(|k| k == "sync"));
    let (status, body) = http(
        server.port,
        "GET",
        &format!("/api/v1/tickets/{refused_id}"),
        Some(&server.token),
        None,
    );
    assert_eq!(status, 404, "nothing stored: {body}");
    assert!(
        bob_desk.find(&refused.url().to_string()).await.is_none(),
        "no other peer can find the refused document"
    );
    assert!(tim_phone.is_connected());
    assert_eq!(tim_phone.connection(), connection, "not disconnected");
    assert_clean(&server);

    for device in [tim_phone, dora_desk, bob_desk] {
        device.stop().await;
    }
}

/// Two devices edit the ticket offline at the same time, each only what its
/// role may write, reconnect, and converge with both edits.
async fn samod_offline_concurrent_edits_converge(db: TestDb) {
    add_users(&db, &[("dora", "dispatcher"), ("tim", "technician")]);
    let server = Server::start(&db, &[]);
    let [dora, tim] = ["dora", "tim"].map(|u| sign_in(&server, u));
    let (url, _) = open_ticket(&server, &dora, &tim);

    let mut tim_phone = samod_device(&server, &tim, "tim-phone").await;
    let mut dora_desk = samod_device(&server, &dora, "dora-desk").await;
    let tims = tim_phone.find(&url).await.expect("assignee finds it");
    let doras = dora_desk.find(&url).await.expect("dispatcher finds it");
    let base = converged(&[("tim", &tims), ("dora", &doras)]).await;

    // Both go offline (the server sees both connections end) …
    tim_phone.disconnect().await;
    dora_desk.disconnect().await;
    eventually(
        || "the server closed both connections".into(),
        || server.metric("fieldsync_connections_open") == 0,
    )
    .await;

    // … and edit: the technician drives there, checks in and out, writes a
    // note; the dispatcher raises the priority, books the window, writes a
    // note into the same Text.
    change(&tims, |tx| {
        ticket::set_status(tx, fieldsync_shared::status::Status::EnRoute)
    });
    change(&tims, |tx| {
        ticket::set_status(tx, fieldsync_shared::status::Status::OnSite)?;
        ticket::check_in(tx, "v1", &tim.id, "2026-11-24T09:05:00Z")
    });
    change(&tims, |tx| {
        ticket::check_out(
            tx,
            "v1",
            "2026-11-24T10:40:00Z",
            "Replaced the motor brushes",
            "runs under load",
            true,
        )?;
        ticket::append_note(tx, "[tim] brushes worn down.")
    });
    change(&doras, |tx| -> Result<(), TicketError> {
        tx.put(ROOT, "priority", "A")?;
        ticket::set_appointment(tx, "2026-11-24T09:00:00Z", "2026-11-24T11:00:00Z")?;
        ticket::append_note(tx, "[dora] customer called: urgent.")
    });

    // Truly concurrent: neither has the other's edits, the server neither.
    let (t_heads, d_heads) = (heads(&tims), heads(&doras));
    assert!(t_heads != base && d_heads != base && t_heads != d_heads);
    let has = |doc: &samod::DocHandle, hs: &[ChangeHash]| {
        doc.with_document(|d| hs.iter().all(|h| d.get_change_by_hash(h).is_some()))
    };
    assert!(!has(&tims, &d_heads) && !has(&doras, &t_heads));
    let before = timeline(&server, &dora.token, &url);
    assert_eq!(before["ticket"]["priority"], "B", "{before}");
    assert_eq!(before["visits"], json!([]), "{before}");

    // Reconnect, one after the other; each waits for the server's
    // (durable) acknowledgement.
    tim_phone.connect().await;
    tim_phone.wait_stored(&tims).await;
    dora_desk.connect().await;
    dora_desk.wait_stored(&doras).await;
    let end = converged(&[("tim", &tims), ("dora", &doras)]).await;
    assert!(has(&tims, &d_heads) && has(&doras, &t_heads));

    for (who, doc) in [("tim", &tims), ("dora", &doras)] {
        let t = read(doc);
        assert_eq!(t.status, "on_site", "{who}");
        assert_eq!(t.intake.priority, "A", "{who}");
        assert_eq!(t.appointment_start, "2026-11-24T09:00:00Z", "{who}");
        assert_eq!(t.visits.len(), 1, "{who}: {:?}", t.visits);
        assert_eq!(t.visits[0].work_done, "Replaced the motor brushes", "{who}");
        assert_eq!(t.visits[0].fixed, Some(true), "{who}");
        assert!(
            t.notes.contains("[tim] brushes worn down."),
            "{who}: {}",
            t.notes
        );
        assert!(
            t.notes.contains("[dora] customer called: urgent."),
            "{who}: {}",
            t.notes
        );
        let steps: Vec<(&str, &str, &str)> = t
            .status_history
            .iter()
            .map(|e| (e.from.as_str(), e.to.as_str(), e.by.as_str()))
            .filter(|(_, _, by)| *by == tim.id)
            .collect();
        assert_eq!(
            steps,
            [
                ("assigned", "en_route", tim.id.as_str()),
                ("en_route", "on_site", tim.id.as_str())
            ],
            "{who}: the server recorded the technician's steps"
        );
    }

    // The server's stored document is the devices' (a fresh peer finds the
    // same heads), and its history rows show both sides' edits.
    let fresh = SamodDevice::online(&server.sync_url(), "admin-fresh").await;
    let stored = fresh.find(&url).await.expect("an admin finds it");
    assert_eq!(
        heads(&stored),
        end,
        "the server stores what the devices have"
    );
    let tl = timeline(&server, &dora.token, &url);
    assert_eq!(tl["ticket"]["priority"], "A", "{tl}");
    assert_eq!(tl["ticket"]["status"], "on_site", "{tl}");
    assert_eq!(
        tl["ticket"]["appointment_start"], "2026-11-24T09:00:00Z",
        "{tl}"
    );
    assert_eq!(tl["visits"][0]["visit_id"], "v1", "{tl}");
    assert_eq!(
        tl["visits"][0]["work_done"], "Replaced the motor brushes",
        "{tl}"
    );
    assert_eq!(tl["visits"][0]["technician_id"], tim.id.as_str(), "{tl}");
    let steps: Vec<(String, String)> = tl["status_events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["by_user"] == tim.id.as_str())
        .map(|e| {
            (
                e["from_status"].as_str().unwrap().to_string(),
                e["to_status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("assigned".to_string(), "en_route".to_string()),
            ("en_route".to_string(), "on_site".to_string())
        ],
        "{tl}"
    );
    // Every edit was legal: none was undone.
    let quarantined = get_json(
        &server,
        &dora.token,
        &format!(
            "/api/v1/quarantined-edits?doc_id={}",
            url.trim_start_matches("automerge:")
        ),
    );
    assert_eq!(quarantined["items"], json!([]), "{quarantined}");
    assert_clean(&server);

    for device in [tim_phone, dora_desk, fresh] {
        device.stop().await;
    }
}

/// The share policy seen from samod: a technician the ticket is not
/// assigned to cannot find it and is sent nothing of it, until it is
/// assigned to them; then the previous assignee only uploads.
async fn samod_technicians_get_only_their_tickets(db: TestDb) {
    add_users(
        &db,
        &[
            ("dora", "dispatcher"),
            ("tim", "technician"),
            ("ken", "technician"),
        ],
    );
    let server = Server::start(&db, &[]);
    let [dora, tim, ken] = ["dora", "tim", "ken"].map(|u| sign_in(&server, u));
    let (url, _) = open_ticket(&server, &dora, &tim);
    let id = doc_id(&url);

    let ken_phone = samod_device(&server, &ken, "ken-phone").await;
    assert!(
        ken_phone.find(&url).await.is_none(),
        "another technician's find resolves to unavailable"
    );
    assert_eq!(ken_phone.sent(&id), ["request"]);
    assert_eq!(ken_phone.received(&id), ["doc-unavailable"]);
    let (status, _) = http(
        server.port,
        "GET",
        &format!("/api/v1/tickets/{id}"),
        Some(&ken.token),
        None,
    );
    assert_eq!(status, 404);

    // The ticket is worked on: the assignee's repo gets every edit, Ken's
    // gets nothing (checked once the assignee has the edit).
    let tim_phone = samod_device(&server, &tim, "tim-phone").await;
    let tims = tim_phone.find(&url).await.expect("the assignee finds it");
    set_appointment(
        &server,
        &dora,
        &url,
        "2026-11-24T09:00:00Z",
        "2026-11-24T11:00:00Z",
    );
    eventually(
        || "the assignee gets the appointment".into(),
        || read(&tims).appointment_start == "2026-11-24T09:00:00Z",
    )
    .await;
    assert_eq!(
        ken_phone.received(&id),
        ["doc-unavailable"],
        "nothing more of the ticket reached the other technician"
    );
    let (state, _) = ken_phone.repo.search(id.clone()).unwrap();
    assert!(
        !matches!(state, samod::SearchState::Found(_)),
        "Ken's repo has no copy"
    );

    // Tim's tablet has the ticket too, and goes offline to record a visit.
    let mut tim_tablet = samod_device(&server, &tim, "tim-tablet").await;
    let tablets = tim_tablet.find(&url).await.expect("the assignee finds it");
    tim_tablet.disconnect().await;
    change(&tablets, |tx| {
        ticket::check_in(tx, "v-tim", &tim.id, "2026-11-24T09:10:00Z")?;
        ticket::append_note(tx, "[tim] belt replaced offline.")
    });

    // Reassigned to Ken: his repo, which asked before, is sent the ticket
    // without asking again; Tim's repo gets nothing after that.
    assign(&server, &dora, &url, &ken);
    let kens = ken_phone.wait_found(&url).await;
    eventually(
        || "Ken's copy is assigned to him".into(),
        || read(&kens).technician_id == ken.id,
    )
    .await;
    assert_eq!(
        read(&kens).appointment_start,
        "2026-11-24T09:00:00Z",
        "Ken got the whole ticket"
    );
    assert_eq!(
        ken_phone.sent(&id).first().map(String::as_str),
        Some("request")
    );
    assert_eq!(
        ken_phone
            .sent(&id)
            .iter()
            .filter(|k| *k == "request")
            .count(),
        1,
        "asked once: {:?}",
        ken_phone.sent(&id)
    );
    // Tim's repo hears of the reassignment itself (the server's edit goes
    // out before his access changes); from then on, nothing.
    eventually(
        || "the previous assignee's copy shows the reassignment".into(),
        || read(&tims).technician_id == ken.id,
    )
    .await;
    let tim_before = tim_phone.frames_about(&id, true).len();
    set_appointment(
        &server,
        &dora,
        &url,
        "2026-11-25T13:00:00Z",
        "2026-11-25T15:00:00Z",
    );
    eventually(
        || "the new assignee gets the new appointment".into(),
        || read(&kens).appointment_start == "2026-11-25T13:00:00Z",
    )
    .await;
    assert_eq!(read(&tims).appointment_start, "2026-11-24T09:00:00Z");
    // At most the sync protocol's bookkeeping (the server's write-only
    // exchange: an empty peer's answer to collect offline edits, then
    // `doc-unavailable`), never a change.
    let tim_after = tim_phone.frames_about(&id, true)[tim_before..].to_vec();
    assert!(
        tim_after
            .iter()
            .all(|f| matches!(f.kind.as_str(), "sync" | "doc-unavailable") && f.changes == 0),
        "the previous assignee is sent nothing of the ticket: {tim_after:?}"
    );

    // The tablet comes back: its offline visit is taken in (the previous
    // assignee's write-only window) and reaches Ken; the tablet is sent
    // nothing of the ticket.
    let tablet_before = tim_tablet.frames_about(&id, true).len();
    tim_tablet.connect().await;
    eventually(
        || format!("Ken gets Tim's offline visit: {:?}", read(&kens).visits),
        || read(&kens).visits.iter().any(|v| v.id == "v-tim"),
    )
    .await;
    eventually(
        || "the server ends the tablet's write-only exchange".into(),
        || {
            tim_tablet.received(&id).len() > tablet_before
                && tim_tablet.received(&id).last().map(String::as_str) == Some("doc-unavailable")
        },
    )
    .await;
    let tablet_after = tim_tablet.frames_about(&id, true)[tablet_before..].to_vec();
    assert!(
        tablet_after
            .iter()
            .all(|f| matches!(f.kind.as_str(), "sync" | "doc-unavailable") && f.changes == 0),
        "the tablet is sent nothing of the ticket: {tablet_after:?}"
    );
    let t = read(&tablets);
    assert_eq!(t.appointment_start, "2026-11-24T09:00:00Z");
    assert_eq!(t.technician_id, tim.id, "not even the reassignment");
    assert!(read(&kens).notes.contains("[tim] belt replaced offline."));
    let tl = timeline(&server, &dora.token, &url);
    let visit = tl["visits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["visit_id"] == "v-tim")
        .unwrap_or_else(|| panic!("the server recorded Tim's visit: {tl}"));
    assert_eq!(visit["technician_id"], tim.id.as_str(), "{tl}");
    let quarantined = get_json(
        &server,
        &dora.token,
        &format!("/api/v1/quarantined-edits?doc_id={id}"),
    );
    assert_eq!(
        quarantined["items"],
        json!([]),
        "nothing undone: {quarantined}"
    );
    assert_clean(&server);

    for device in [ken_phone, tim_phone, tim_tablet] {
        device.stop().await;
    }
}

// -------------------------------------------------------------- JS peer ---

/// Waits until the JS device and the samod document have the same heads;
/// returns the JS dump.
async fn js_converged(js: &mut JsDevice, url: &str, doc: &samod::DocHandle) -> Value {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let dump = js.dump(url);
        if js_heads(&dump) == encode_heads(&heads(doc)) {
            return dump;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no convergence: js {dump} samod {:?}",
            encode_heads(&heads(doc))
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Waits until the JS device's copy satisfies `ok`; returns it.
async fn js_eventually(
    js: &mut JsDevice,
    url: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let dump = js.dump(url);
        if ok(&dump["doc"]) {
            return dump;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: {what}: {dump}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A ticket passed between a samod device (the dispatcher) and a stock JS
/// device (the technician) through fieldsync, both ways.
async fn samod_and_js_devices_share_a_ticket(db: TestDb) {
    add_users(&db, &[("dora", "dispatcher"), ("tim", "technician")]);
    let server = Server::start(&db, &[]);
    let [dora, tim] = ["dora", "tim"].map(|u| sign_in(&server, u));
    let (url, ticket_no) = open_ticket(&server, &dora, &tim);

    let mut js = JsDevice::start(&server.sync_url_for(&tim.token, "tim-tablet"));
    js.call(json!({"cmd": "connect"}));
    let found = js.call(json!({"cmd": "find", "url": url}));
    assert_eq!(found["doc"]["ticket_no"], ticket_no.as_str(), "{found}");
    let dora_desk = samod_device(&server, &dora, "dora-desk").await;
    let doras = dora_desk.find(&url).await.expect("the dispatcher finds it");
    js_converged(&mut js, &url, &doras).await;

    // samod → JS: the dispatcher raises the priority and writes a note.
    change(&doras, |tx| -> Result<(), TicketError> {
        tx.put(ROOT, "priority", "A")?;
        ticket::append_note(tx, "Customer called: urgent.")
    });
    dora_desk.wait_stored(&doras).await;
    js_eventually(&mut js, &url, "the JS device sees samod's edit", |d| {
        d["priority"] == "A" && d["notes"] == "Customer called: urgent."
    })
    .await;

    // JS → samod: the technician sets off and records a visit.
    js.call(json!({"cmd": "set", "url": url, "path": ["status"], "value": "en_route"}));
    js.call(
        json!({"cmd": "push", "url": url, "path": ["visits"], "value": {
            "id": "v1", "technician_id": tim.id, "arrived_at": "2026-11-24T09:05:00Z",
            "departed_at": "", "work_done": "", "result": "", "fixed": null,
        }}),
    );
    js.call(json!({"cmd": "wait-synced", "url": url, "timeoutMs": 15000}));
    eventually(
        || format!("samod sees the JS edit: {:?}", read(&doras)),
        || {
            let t = read(&doras);
            t.status == "en_route"
                && t.visits.len() == 1
                && t.visits[0].arrived_at == "2026-11-24T09:05:00Z"
        },
    )
    .await;
    let dump = js_converged(&mut js, &url, &doras).await;
    assert_eq!(dump["doc"]["status"], "en_route");

    // Both type into the notes at the same moment, without waiting for each
    // other: the same heads and the same text on both, with both edits.
    js.call(json!({"cmd": "splice", "url": url, "path": ["notes"], "index": 0, "text": "[js] "}));
    change(&doras, |tx| {
        ticket::append_note(tx, " [samod] parts ordered.")
    });
    js.call(json!({"cmd": "wait-synced", "url": url, "timeoutMs": 15000}));
    dora_desk.wait_stored(&doras).await;
    let dump = js_converged(&mut js, &url, &doras).await;
    let notes = read(&doras).notes;
    assert_eq!(dump["doc"]["notes"], notes.as_str());
    assert_eq!(
        notes,
        "[js] Customer called: urgent. [samod] parts ordered."
    );
    assert_eq!(dump["doc"]["priority"], "A");

    // The server recorded the JS device's step and visit.
    let tl = timeline(&server, &dora.token, &url);
    assert_eq!(tl["ticket"]["status"], "en_route", "{tl}");
    assert_eq!(tl["ticket"]["priority"], "A", "{tl}");
    assert_eq!(tl["visits"][0]["visit_id"], "v1", "{tl}");
    assert!(
        tl["status_events"].as_array().unwrap().iter().any(|e| {
            e["from_status"] == "assigned"
                && e["to_status"] == "en_route"
                && e["by_user"] == tim.id.as_str()
        }),
        "{tl}"
    );
    assert_clean(&server);
    js.call(json!({"cmd": "exit"}));
    dora_desk.stop().await;
}

on_both_backends!(
    samod_creates_and_finds_tickets,
    samod_offline_concurrent_edits_converge,
    samod_technicians_get_only_their_tickets,
    samod_and_js_devices_share_a_ticket,
);
