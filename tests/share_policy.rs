//! Share policy: technicians get only tickets assigned to them; reassignment
//! cuts the old technician off at once without losing their offline edits;
//! a hidden ticket looks exactly like an unknown one.

mod common;

use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ReadDoc, ROOT};
use common::{add_users, http, Server, TestDb, WAIT};
use fieldsync_shared::client::{Device, DocStatus};
use fieldsync_shared::DocumentId;
use serde_json::json;

fn get_i64(doc: &AutoCommit, key: &str) -> Option<i64> {
    doc.get(ROOT, key).unwrap().and_then(|(v, _)| v.as_i64())
}

async fn device_for(server: &Server, user: &str, password: &str, device: &str) -> Device {
    let token = server.login(user, password);
    let d = Device::new(format!("{device}-peer"));
    d.connect(&server.sync_url_for(&token, device))
        .await
        .unwrap();
    d
}

async fn status_of(d: &Device, id: DocumentId) -> DocStatus {
    d.want(id);
    d.wait_until(WAIT, "an answer", |d| {
        d.status(id) != Some(DocStatus::Requesting)
    })
    .await
    .unwrap();
    d.status(id).unwrap()
}

fn assign(server: &Server, token: &str, doc: DocumentId, tech: &str) -> u16 {
    http(
        server.port,
        "PUT",
        &format!("/api/v1/tickets/{doc}/assignment"),
        Some(token),
        Some(json!({"technician": tech})),
    )
    .0
}

async fn technicians_see_only_assigned_tickets_and_keep_offline_edits(db: TestDb) {
    add_users(
        &db,
        &[
            ("dora", "dispatcher"),
            ("tim", "technician"),
            ("tess", "technician"),
        ],
    );
    let server = Server::start(&db, &[]);
    let dora_token = server.login("dora", "dora-password");
    let tim_token = server.login("tim", "tim-password");

    // The dispatcher creates a ticket and assigns it to Tim.
    let dora = device_for(&server, "dora", "dora-password", "dora-desk").await;
    let id = dora.create(|d| d.put(ROOT, "n", 0).unwrap());
    dora.wait_acknowledged(id, WAIT).await.unwrap();
    assert_eq!(
        assign(&server, &tim_token, id, "tim"),
        403,
        "technicians cannot assign"
    );
    assert_eq!(assign(&server, &dora_token, id, "nobody"), 404);
    assert_eq!(
        assign(&server, &dora_token, id, "dora"),
        400,
        "only technicians are assigned"
    );
    assert_eq!(assign(&server, &dora_token, id, "tim"), 200);

    let tim_phone = device_for(&server, "tim", "tim-password", "tim-phone").await;
    assert_eq!(
        status_of(&tim_phone, id).await,
        DocStatus::Local,
        "Tim gets his ticket"
    );
    let tim_tablet = device_for(&server, "tim", "tim-password", "tim-tablet").await;
    assert_eq!(status_of(&tim_tablet, id).await, DocStatus::Local);

    // Tess sees it exactly like a document that does not exist.
    let tess = device_for(&server, "tess", "tess-password", "tess-phone").await;
    assert_eq!(status_of(&tess, id).await, DocStatus::Unavailable);
    assert_eq!(
        status_of(&tess, DocumentId::random()).await,
        DocStatus::Unavailable
    );
    // ...and cannot create documents through sync.
    let sneaky = tess.create(|d| d.put(ROOT, "x", 1).unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!tess.acknowledged(sneaky));
    assert_eq!(
        status_of(&dora, sneaky).await,
        DocStatus::Unavailable,
        "nothing was stored"
    );

    // Tim's phone goes offline and edits; meanwhile the ticket moves to Tess.
    tim_phone.disconnect().await;
    tim_phone
        .change(id, |d| d.put(ROOT, "checklist", 7).unwrap())
        .unwrap();
    assert_eq!(assign(&server, &dora_token, id, "tess"), 200);

    // Tim's live tablet stops receiving the ticket at once.
    dora.change(id, |d| d.put(ROOT, "n", 1).unwrap()).unwrap();
    dora.wait_acknowledged(id, WAIT).await.unwrap();
    // Tess's phone, which asked before the reassignment, receives it unasked.
    tess.wait_until(WAIT, "ticket pushed to Tess", |d| {
        d.status(id) == Some(DocStatus::Local)
    })
    .await
    .unwrap();
    let tess2 = device_for(&server, "tess", "tess-password", "tess-tablet").await;
    assert_eq!(
        status_of(&tess2, id).await,
        DocStatus::Local,
        "Tess gets it now"
    );
    tess2
        .wait_until(WAIT, "tess sees n=1", |d| {
            d.read(id, |doc| get_i64(doc, "n")).flatten() == Some(1)
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        tim_tablet.read(id, |d| get_i64(d, "n")).flatten(),
        Some(0),
        "Tim's tablet no longer receives it"
    );

    // Tim's phone reconnects: its offline edit is accepted, nothing more is sent back.
    tim_phone
        .connect(&server.sync_url_for(&tim_token, "tim-phone"))
        .await
        .unwrap();
    dora.wait_until(WAIT, "Tim's offline edit arrives", |d| {
        d.read(id, |doc| get_i64(doc, "checklist")).flatten() == Some(7)
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        tim_phone.read(id, |d| get_i64(d, "n")).flatten(),
        Some(0),
        "write-only: receives nothing"
    );
    // ...and the exchange ends: no sync loop tripping the rate limit.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(tim_phone.is_connected());
    assert_eq!(server.metric("fieldsync_limit_violations_total"), 0);

    // That sync closed the phone's write-only window: its offline work is
    // in. A later edit is taken in, undone and quarantined, never applied.
    tim_phone.disconnect().await;
    tim_phone
        .change(id, |d| d.put(ROOT, "checklist", 8).unwrap())
        .unwrap();
    tim_phone
        .connect(&server.sync_url_for(&tim_token, "tim-phone"))
        .await
        .unwrap();
    let quarantined = || {
        http(
            server.port,
            "GET",
            &format!("/api/v1/quarantined-edits?doc_id={id}"),
            Some(&dora_token),
            None,
        )
        .1
    };
    let started = std::time::Instant::now();
    while quarantined()["items"].as_array().map_or(0, Vec::len) == 0 {
        assert!(started.elapsed() < WAIT, "the late edit was quarantined");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = quarantined()["items"].clone();
    assert_eq!(rows[0]["path"], "checklist", "{rows}");
    assert_eq!(rows[0]["attempted"], "8", "{rows}");
    assert_eq!(rows[0]["restored"], "7", "{rows}");
    dora.wait_until(WAIT, "the compensation reaches Dora", |d| {
        d.read(id, |doc| get_i64(doc, "checklist")).flatten() == Some(7)
    })
    .await
    .unwrap();
    // A device Tim registers after the reassignment never had the ticket.
    let tim_new = device_for(&server, "tim", "tim-password", "tim-new-phone").await;
    assert_eq!(status_of(&tim_new, id).await, DocStatus::Unavailable);
}

/// Only roles that create tickets create documents through sync: back
/// office, supervisors and managers read, they do not create.
async fn read_only_roles_cannot_create_documents(db: TestDb) {
    add_users(
        &db,
        &[
            ("dora", "dispatcher"),
            ("bo", "back_office"),
            ("sue", "supervisor"),
            ("max", "manager"),
        ],
    );
    let server = Server::start(&db, &[]);
    let dora = device_for(&server, "dora", "dora-password", "dora-desk").await;
    for user in ["bo", "sue", "max"] {
        let dev = device_for(
            &server,
            user,
            &format!("{user}-password"),
            &format!("{user}-pc"),
        )
        .await;
        let junk = dev.create(|d| d.put(ROOT, "x", 1).unwrap());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!dev.acknowledged(junk), "{user}'s document was not stored");
        assert_eq!(
            status_of(&dora, junk).await,
            DocStatus::Unavailable,
            "{user}"
        );
    }
    // The dispatcher still creates.
    let id = dora.create(|d| d.put(ROOT, "n", 0).unwrap());
    dora.wait_acknowledged(id, WAIT).await.unwrap();
}

/// A technician's device sends, in one sync message, an edit it may make
/// (checklist) and one it may not (priority). Both are stored; the server
/// appends a compensating change restoring the priority, the device receives
/// it, and dispatchers see the quarantined edit.
async fn forbidden_edits_are_compensated_and_quarantined(db: TestDb) {
    add_users(&db, &[("dora", "dispatcher"), ("tim", "technician")]);
    let server = Server::start(&db, &[]);
    let dora_token = server.login("dora", "dora-password");
    let dora = device_for(&server, "dora", "dora-password", "dora-desk").await;
    let id = dora.create(|d| {
        d.put(ROOT, "priority", "B").unwrap();
        d.put(ROOT, "checklist", 0).unwrap();
    });
    dora.wait_acknowledged(id, WAIT).await.unwrap();
    assert_eq!(assign(&server, &dora_token, id, "tim"), 200);

    let tim = device_for(&server, "tim", "tim-password", "tim-phone").await;
    assert_eq!(status_of(&tim, id).await, DocStatus::Local);
    tim.disconnect().await;
    tim.change(id, |d| {
        d.put(ROOT, "checklist", 3).unwrap();
        d.put(ROOT, "priority", "A").unwrap();
    })
    .unwrap();
    let tim_token = server.login("tim", "tim-password");
    tim.connect(&server.sync_url_for(&tim_token, "tim-phone"))
        .await
        .unwrap();

    let is_str = |d: &AutoCommit, k: &str, v: &str| {
        d.get(ROOT, k)
            .unwrap()
            .and_then(|(x, _)| x.into_scalar().ok())
            .and_then(|s| s.into_string().ok())
            .as_deref()
            == Some(v)
    };
    // The device ends with the compensation: priority back to B, checklist kept.
    tim.wait_until(WAIT, "compensation reaches the device", |d| {
        d.read(id, |doc| {
            is_str(doc, "priority", "B") && get_i64(doc, "checklist") == Some(3)
        })
        .unwrap_or(false)
    })
    .await
    .unwrap();
    dora.wait_until(WAIT, "dispatcher converges", |d| {
        d.heads(id) == tim.heads(id)
    })
    .await
    .unwrap();
    assert!(dora
        .read(id, |doc| is_str(doc, "priority", "B")
            && get_i64(doc, "checklist") == Some(3))
        .unwrap());

    // Dispatchers see what was undone; technicians may not list it.
    let (status, rows) = http(
        server.port,
        "GET",
        &format!("/api/v1/quarantined-edits?doc_id={id}"),
        Some(&dora_token),
        None,
    );
    assert_eq!(status, 200, "{rows}");
    let rows = rows["items"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["path"], "priority");
    assert_eq!(rows[0]["attempted"], "\"A\"");
    assert_eq!(rows[0]["restored"], "\"B\"");
    assert_eq!(rows[0]["device_id"], "tim-phone");
    assert_eq!(
        http(
            server.port,
            "GET",
            "/api/v1/quarantined-edits",
            Some(&tim_token),
            None
        )
        .0,
        403
    );
    let (_, audit) = http(
        server.port,
        "GET",
        "/api/v1/audit?action=edit_quarantined",
        Some(&server.token),
        None,
    );
    assert_eq!(audit["items"].as_array().unwrap().len(), 1);
}

/// A dispatcher creates a ticket through the API (the server writes the
/// Automerge document) and assigns it; the technician's device syncs it.
async fn dispatchers_create_tickets_that_technicians_sync(db: TestDb) {
    add_users(&db, &[("dora", "dispatcher"), ("tim", "technician")]);
    let server = Server::start(&db, &[]);
    let (dora, tim) = (
        server.login("dora", "dora-password"),
        server.login("tim", "tim-password"),
    );
    let intake = json!({
        "customer_name": "Acme Bakery", "product": "Dough mixer", "model": "DM-40",
        "fault_description": "Motor stops under load", "priority": "A", "reported_via": "phone",
        "technician": "tim"
    });
    let (status, body) = http(
        server.port,
        "POST",
        "/api/v1/tickets",
        Some(&tim),
        Some(intake.clone()),
    );
    assert_eq!(status, 403, "technicians do not create tickets: {body}");
    let mut bad = intake.clone();
    bad["priority"] = json!("Z");
    assert_eq!(
        http(
            server.port,
            "POST",
            "/api/v1/tickets",
            Some(&dora),
            Some(bad)
        )
        .0,
        400
    );

    let (status, body) = http(
        server.port,
        "POST",
        "/api/v1/tickets",
        Some(&dora),
        Some(intake),
    );
    assert_eq!(status, 201, "{body}");
    let id = DocumentId::parse_url_or_id(body["url"].as_str().unwrap()).unwrap();
    assert!(body["ticket_no"].as_str().unwrap().starts_with("T-"));

    let phone = Device::new("tim-phone-peer");
    phone
        .connect(&server.sync_url_for(&tim, "tim-phone"))
        .await
        .unwrap();
    assert_eq!(status_of(&phone, id).await, DocStatus::Local);
    let ticket = phone
        .read(id, |d| fieldsync_shared::ticket::read(d).unwrap())
        .unwrap();
    assert_eq!(ticket.intake.customer_name, "Acme Bakery");
    assert_eq!(ticket.intake.priority, "A");
    // Created and assigned in one call: the status moved on, and the
    // server recorded both steps in the document's status history.
    assert_eq!(ticket.status, "assigned");
    assert_eq!(
        ticket.technician_id,
        body["technician_id"].as_str().unwrap()
    );
    let steps: Vec<(&str, &str)> = ticket
        .status_history
        .iter()
        .map(|e| (e.to.as_str(), e.role.as_str()))
        .collect();
    assert_eq!(steps, [("new", "dispatcher"), ("assigned", "dispatcher")]);
    assert_eq!(ticket.schema, fieldsync_shared::ticket::SCHEMA_VERSION);
}

/// Attachments: content-addressed, idempotent upload; download only for
/// users who may see a ticket that references the blob.
async fn attachments_follow_the_share_policy(db: TestDb) {
    add_users(
        &db,
        &[
            ("dora", "dispatcher"),
            ("tim", "technician"),
            ("tess", "technician"),
        ],
    );
    let server = Server::start(&db, &["--max-blob-bytes", "100000"]);
    let (dora, tim, tess) = (
        server.login("dora", "dora-password"),
        server.login("tim", "tim-password"),
        server.login("tess", "tess-password"),
    );
    let (_, created) = http(
        server.port,
        "POST",
        "/api/v1/tickets",
        Some(&dora),
        Some(
            json!({"customer_name": "Acme", "product": "Mixer", "fault_description": "stops", "priority": "B", "technician": "tim"}),
        ),
    );
    let id = DocumentId::parse_url_or_id(created["url"].as_str().unwrap()).unwrap();

    let photo: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let sha = fieldsync_server::blobs::sha256_hex(&photo);
    let put = |token: &str, name: &str, body: &[u8]| {
        common::http_bytes(
            server.port,
            "PUT",
            &format!("/api/v1/blobs/{name}"),
            Some(token),
            body,
        )
        .0
    };
    assert_eq!(put(&tim, &sha, &photo), 201);
    assert_eq!(
        put(&tim, &sha, &photo),
        200,
        "re-upload after a dropped connection is harmless"
    );
    assert_eq!(put(&tim, &sha, &photo[..1000]), 422, "hash mismatch");
    let big = vec![1u8; 200_000];
    assert_eq!(
        put(&tim, &fieldsync_server::blobs::sha256_hex(&big), &big),
        413
    );

    // Tim references the photo from his ticket.
    let phone = Device::new("tim-phone-peer");
    phone
        .connect(&server.sync_url_for(&tim, "tim-phone"))
        .await
        .unwrap();
    assert_eq!(status_of(&phone, id).await, DocStatus::Local);
    phone
        .change(id, |d| {
            let (_, list) = d.get(ROOT, "attachments").unwrap().unwrap();
            let item = d.insert_object(&list, 0, automerge::ObjType::Map).unwrap();
            d.put(&item, "sha256", sha.as_str()).unwrap();
            d.put(&item, "kind", "photo").unwrap();
        })
        .unwrap();
    phone.wait_acknowledged(id, WAIT).await.unwrap();

    let get = |token: &str, query: &str| {
        common::http_bytes(
            server.port,
            "GET",
            &format!("/api/v1/blobs/{sha}{query}"),
            Some(token),
            b"",
        )
    };
    let (status, body) = get(&tim, &format!("?doc={id}"));
    assert_eq!((status, body.len()), (200, photo.len()));
    assert_eq!(body, photo);
    assert_eq!(get(&dora, &format!("?doc={id}")).0, 200);
    assert_eq!(
        get(&tess, &format!("?doc={id}")).0,
        404,
        "not her ticket: looks like nothing"
    );
    assert_eq!(get(&tim, "").0, 400, "the referencing ticket is required");
    let other = fieldsync_server::blobs::sha256_hex(b"not referenced");
    assert_eq!(put(&tim, &other, b"not referenced"), 201);
    let (status, _) = common::http_bytes(
        server.port,
        "GET",
        &format!("/api/v1/blobs/{other}?doc={id}"),
        Some(&tim),
        b"",
    );
    assert_eq!(
        status, 404,
        "blobs the ticket does not reference are not served through it"
    );
}

on_both_backends!(
    read_only_roles_cannot_create_documents,
    attachments_follow_the_share_policy,
    dispatchers_create_tickets_that_technicians_sync,
    technicians_see_only_assigned_tickets_and_keep_offline_edits,
    forbidden_edits_are_compensated_and_quarantined,
);
