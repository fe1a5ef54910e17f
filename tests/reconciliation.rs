//! Back-office reconciliation end to end (issue 11 §1), on both backends,
//! against a `--demo` server: a ticket's whole life through reconciliation
//! and export (figures worked out by hand), a dispute that goes back to the
//! dispatcher and an override, the lock on reconciled tickets (a device's
//! later offline edit is quarantined) and who may do what.

mod common;

use automerge::transaction::Transactable;
use automerge::{ObjType, ReadDoc, ROOT};
use common::{cli, get_json as get, http, http_bytes, http_full, Server, TestDb, WAIT};
use fieldsync_shared::client::{Device, DocStatus};
use fieldsync_shared::status::Status;
use fieldsync_shared::ticket::{self, PartUsed};
use fieldsync_shared::DocumentId;
use serde_json::{json, Value};
use sha2::Digest;

const PW: &str = "fieldsync-demo";

fn post(server: &Server, token: &str, path: &str, body: Value) -> (u16, Value) {
    http(server.port, "POST", path, Some(token), Some(body))
}

fn user_id(server: &Server, token: &str) -> String {
    get(server, token, "/api/v1/me")["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn device(server: &Server, token: &str, name: &str) -> Device {
    let d = Device::new(format!("{name}-peer"));
    d.connect(&server.sync_url_for(token, name)).await.unwrap();
    d
}

async fn fetch(d: &Device, id: DocumentId) {
    d.want(id);
    d.wait_until(WAIT, "the ticket", |d| {
        d.status(id) == Some(DocStatus::Local)
    })
    .await
    .unwrap();
}

/// The acme mixer from the demo archive: (customer id, name, asset id, model).
fn acme(server: &Server, dora: &str) -> (String, String, String, String) {
    let customers = get(server, dora, "/api/v1/customers?q=acme");
    let id = customers["items"][0]["id"].as_str().unwrap().to_string();
    let card = get(server, dora, &format!("/api/v1/customers/{id}"));
    (
        id,
        card["customer"]["name"].as_str().unwrap().to_string(),
        card["assets"][0]["id"].as_str().unwrap().to_string(),
        card["assets"][0]["model"].as_str().unwrap().to_string(),
    )
}

fn new_ticket(server: &Server, dora: &str, fault: &str) -> (DocumentId, String) {
    let (customer, _, asset, _) = acme(server, dora);
    let (status, resp) = post(
        server,
        dora,
        "/api/v1/tickets",
        json!({"customer_id": customer, "asset_id": asset, "fault_description": fault,
               "priority": "B", "technician": "tom"}),
    );
    assert_eq!(status, 201, "{resp}");
    (
        DocumentId::parse_url_or_id(resp["url"].as_str().unwrap()).unwrap(),
        resp["ticket_no"].as_str().unwrap().to_string(),
    )
}

fn part(id: &str, part_no: &str, qty: i64, serial: &str, source: &str) -> PartUsed {
    PartUsed {
        id: id.into(),
        part_no: part_no.into(),
        qty,
        serial: serial.into(),
        source: source.into(),
        visit_id: "v1".into(),
        technician_id: String::new(),
    }
}

/// Tom's phone fetches the ticket, goes offline, works it (visits given as
/// (id, arrived, departed)), adds the parts, gets the customer's signature
/// (uploaded) and signs off; then reconnects and waits until the server has
/// it all. `extra` runs on the document before the signature.
async fn work_and_sign_off(
    server: &Server,
    tom: &str,
    id: DocumentId,
    visits: &[(&str, &str, &str)],
    parts: &[PartUsed],
    extra: impl FnOnce(&mut automerge::AutoCommit),
) -> Device {
    let tom_id = user_id(server, tom);
    let phone = device(server, tom, "tom-phone").await;
    fetch(&phone, id).await;
    phone.disconnect().await;
    let step = |s: Status| {
        phone
            .change(id, |d| ticket::set_status(d, s).unwrap())
            .unwrap()
    };
    step(Status::EnRoute);
    step(Status::OnSite);
    for (v, arrived, departed) in visits {
        phone
            .change(id, |d| {
                ticket::check_in(d, v, &tom_id, arrived).unwrap();
                ticket::check_out(d, v, departed, "Replaced the motor", "runs quietly", true)
                    .unwrap();
            })
            .unwrap();
    }
    phone
        .change(id, |d| {
            for p in parts {
                ticket::add_part(d, p).unwrap();
            }
            extra(d);
        })
        .unwrap();
    step(Status::Completed);
    let signature = format!("signature strokes for {id}").into_bytes();
    let sig_sha = hex(&sha2::Sha256::digest(&signature));
    phone
        .change(id, |d| {
            let heads = d.get_heads();
            ticket::sign(d, "Ann Acme", "2026-11-25T09:00:00Z", &sig_sha, &heads).unwrap();
        })
        .unwrap();
    step(Status::SignedOff);
    let (status, _) = http_bytes(
        server.port,
        "PUT",
        &format!("/api/v1/blobs/{sig_sha}"),
        Some(tom),
        &signature,
    );
    assert!(status == 200 || status == 201, "{status}");
    phone
        .connect(&server.sync_url_for(tom, "tom-phone"))
        .await
        .unwrap();
    phone.wait_acknowledged(id, WAIT).await.unwrap();
    phone
}

fn queue_item(server: &Server, token: &str, id: DocumentId) -> Option<Value> {
    let q = get(server, token, "/api/v1/reconciliation/queue");
    q["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["doc_id"] == id.to_string().as_str())
        .cloned()
}

fn check<'a>(item: &'a Value, name: &str) -> &'a Value {
    item["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {item}"))
}

/// Quotes a CSV field the way RFC 4180 wants (the test's own, tiny).
fn q(v: &str) -> String {
    if v.contains([',', '"']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

async fn whole_life_through_reconciliation(db: TestDb) {
    let server = Server::start(&db, &["--demo"]);
    let (dora, tom, bob, mia) = (
        server.login("dora", PW),
        server.login("tom", PW),
        server.login("bob", PW),
        server.login("mia", PW),
    );
    let tom_id = user_id(&server, &tom);
    let (customer_id, customer_name, asset_id, model) = acme(&server, &dora);

    // The catalogue says motors carry a serial number (back office only).
    let path = "/api/v1/parts/MTR-40/serial-required";
    let body = Some(json!({"serial_required": true}));
    let (status, _) = http(server.port, "PUT", path, Some(&tom), body.clone());
    assert_eq!(status, 403);
    let (status, resp) = http(server.port, "PUT", path, Some(&bob), body);
    assert_eq!(status, 200, "{resp}");

    let (id, ticket_no) = new_ticket(&server, &dora, "Bowl grinds");
    // Two visits: 09:05–10:40 (95 min) and the next day 08:00–08:45 (45
    // min): 140 min = 2.33 h. Parts: a motor (320.00) from the van with its
    // serial, two belts (2 × 18.00) from the van, a filter (12.00) from the
    // warehouse.
    let _phone = work_and_sign_off(
        &server,
        &tom,
        id,
        &[
            ("v1", "2026-11-24T09:05:00Z", "2026-11-24T10:40:00Z"),
            ("v2", "2026-11-25T08:00:00Z", "2026-11-25T08:45:00Z"),
        ],
        &[
            part("p1", "MTR-40", 1, "M-9001", "van"),
            part("p2", "BLT-12", 2, "", "van"),
            part("p3", "FLT-3", 1, "", "warehouse"),
        ],
        |_| {},
    )
    .await;

    // The queue: the back office (and managers, reading) see it with its checks.
    let item = queue_item(&server, &bob, id).expect("the ticket waits for reconciliation");
    assert_eq!(item["level"], "ok", "{item:#}");
    assert_eq!(item["blocking"], false);
    for name in [
        "parts_catalogue",
        "parts_serials",
        "van_stock",
        "labour",
        "overlapping_visits",
        "signoff",
        "survey",
        "attachments",
    ] {
        assert_eq!(check(&item, name)["level"], "ok", "{name}: {item:#}");
    }
    assert_eq!(item["labour"]["total_minutes"], 140);
    assert_eq!(item["labour"]["total_hours"], "2.33");
    assert_eq!(item["labour"]["visits"][0]["hours"], "1.58");
    assert_eq!(item["parts_cost_cents"], 32_000 + 2 * 1_800 + 1_200);
    assert_eq!(item["technician"], "tom");
    assert_eq!(check(&item, "survey")["message"], "no survey answered yet");
    assert_eq!(item["attachments"][0]["kind"], "signature");
    assert_eq!(item["attachments"][0]["present"], true);
    assert!(
        queue_item(&server, &mia, id).is_some(),
        "managers read the queue"
    );
    // The demo's signed-off ticket is in the queue too: its signoff has no
    // signature image (a warning, not a problem).
    let demo = get(&server, &bob, "/api/v1/reconciliation/queue");
    let t3 = demo["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["ticket_no"] == "T-DEMO-3")
        .expect("demo ticket 3");
    assert_eq!(t3["level"], "warning", "{t3:#}");
    assert_eq!(check(t3, "signoff")["level"], "warning");

    // Who may not: technicians and dispatchers neither reconcile nor see the
    // queue; managers read but do not decide.
    for token in [&tom, &dora] {
        let (status, body) = http(
            server.port,
            "GET",
            "/api/v1/reconciliation/queue",
            Some(token),
            None,
        );
        assert_eq!(status, 403, "{body}");
    }
    for token in [&tom, &dora, &mia] {
        let (status, body) = post(
            &server,
            token,
            &format!("/api/v1/tickets/{id}/reconcile"),
            json!({}),
        );
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["code"], "forbidden");
        let (status, _) = post(
            &server,
            token,
            &format!("/api/v1/tickets/{id}/dispute"),
            json!({"reason": "no"}),
        );
        assert_eq!(status, 403);
    }
    let (status, _) = http(
        server.port,
        "GET",
        "/api/v1/reconciliation/export?from=2026-01-01&to=2030-01-01",
        Some(&dora),
        None,
    );
    assert_eq!(status, 403, "dispatchers do not export");

    // Approve.
    let (status, body) = post(
        &server,
        &bob,
        &format!("/api/v1/tickets/{id}/reconcile"),
        json!({}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "reconciled");
    assert_eq!(body["decision"]["override"], false);
    let (status, body) = post(
        &server,
        &bob,
        &format!("/api/v1/tickets/{id}/reconcile"),
        json!({}),
    );
    assert_eq!(status, 409, "only once: {body}");
    assert!(queue_item(&server, &bob, id).is_none());
    let tl = get(&server, &dora, &format!("/api/v1/tickets/{id}/timeline"));
    let last = tl["status_events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["to_status"].as_str(), last["by_role"].as_str()),
        (Some("reconciled"), Some("back_office"))
    );
    let reconciled_at = last["at"].as_str().unwrap().to_string();
    let audit = get(&server, &server.token, "/api/v1/audit");
    assert!(audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "ticket_reconciled" && e["subject"] == id.to_string().as_str()));

    // Export: one labour line (Tom, 140 min) and one line per part, with
    // the catalogue's unit costs.
    let today = &reconciled_at[..10];
    let reply = http_full(
        server.port,
        "GET",
        &format!("/api/v1/reconciliation/export?from={today}&to={today}&format=csv"),
        Some(&bob),
        "text/plain",
        b"",
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("text/csv"));
    let export_id = reply.header("x-export-id").unwrap().to_string();
    let csv = String::from_utf8(reply.body.clone()).unwrap();
    let job = format!("{ticket_no},{id},{reconciled_at}",);
    let who = format!(
        "tom,{tom_id},{customer_id},{},{asset_id},Dough mixer,{},SN-778",
        q(&customer_name),
        q(&model)
    );
    let expected = [
        "ticket_no,doc_id,reconciled_at,line,technician,technician_id,customer_id,customer_name,asset_id,product,model,asset_serial,labour_minutes,labour_hours,part_no,part_name,qty,part_serial,source,unit_cost_cents,line_cost_cents".to_string(),
        format!("{job},labour,{who},140,2.33,,,,,,,"),
        format!("{job},part,{who},,,MTR-40,Mixer motor 400 W,1,M-9001,van,32000,32000"),
        format!("{job},part,{who},,,BLT-12,Drive belt 12 mm,2,,van,1800,3600"),
        format!("{job},part,{who},,,FLT-3,Water filter cartridge,1,,warehouse,1200,1200"),
    ];
    // The demo's ticket 3 is not reconciled, so this job is the only one.
    assert_eq!(csv, expected.join("\r\n") + "\r\n");
    assert_eq!(
        reply.header("x-content-sha256").unwrap(),
        hex(&sha2::Sha256::digest(csv.as_bytes()))
    );

    // The command line makes the same file (and records it too).
    let out = cli(
        &db.url,
        &[
            "export",
            "reconciled",
            "--from",
            today,
            "--to",
            today,
            "--format",
            "csv",
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), csv);
    let cli_export = String::from_utf8(out.stderr).unwrap();
    let cli_id = cli_export
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':');
    let meta = get(
        &server,
        &bob,
        &format!("/api/v1/reconciliation/exports/{cli_id}"),
    );
    assert_eq!(
        (meta["created_by"].as_str(), meta["job_count"].as_i64()),
        (Some("cli"), Some(1))
    );

    // Repeatable: the record says which jobs, and the content comes back
    // byte for byte, also after the catalogue price changed.
    let (status, _) = http(
        server.port,
        "PUT",
        "/api/v1/parts/MTR-40",
        Some(&bob),
        Some(json!({"name": "Mixer motor 400 W", "unit_cost_cents": 35000, "active": true})),
    );
    assert_eq!(status, 200);
    let meta = get(
        &server,
        &mia,
        &format!("/api/v1/reconciliation/exports/{export_id}"),
    );
    assert_eq!(meta["job_count"], 1);
    assert_eq!(meta["line_count"], 4);
    assert_eq!(meta["jobs"][0]["doc_id"], id.to_string().as_str());
    assert_eq!(meta["jobs"][0]["ticket_no"], ticket_no.as_str());
    assert_eq!(meta["jobs"][0]["reconciled_at"], reconciled_at.as_str());
    let again = http_full(
        server.port,
        "GET",
        &format!("/api/v1/reconciliation/exports/{export_id}/content"),
        Some(&bob),
        "text/plain",
        b"",
    );
    assert_eq!(again.status, 200);
    assert_eq!(again.body, reply.body, "the same bytes");
    let list = get(&server, &bob, "/api/v1/reconciliation/exports");
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [cli_id, export_id.as_str()], "newest first");

    // JSON lines: the same lines as objects; a new export sees the new price.
    let reply = http_full(
        server.port,
        "GET",
        &format!("/api/v1/reconciliation/export?from={today}&to={today}&format=jsonl"),
        Some(&bob),
        "text/plain",
        b"",
    );
    assert_eq!(reply.status, 200);
    let lines: Vec<Value> = String::from_utf8(reply.body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["line"], "labour");
    assert_eq!(lines[0]["labour_minutes"], 140);
    assert_eq!(lines[0]["part_no"], Value::Null);
    assert_eq!(lines[1]["unit_cost_cents"], 35000);
    assert_eq!(lines[2]["line_cost_cents"], 3600);
    assert_eq!(lines[3]["customer_id"], customer_id.as_str());

    // Another period: nothing, still recorded. Bad periods are refused.
    let reply = http_full(
        server.port,
        "GET",
        "/api/v1/reconciliation/export?from=2020-01-01&to=2020-01-31",
        Some(&bob),
        "text/plain",
        b"",
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-export-jobs"), Some("0"));
    assert_eq!(
        String::from_utf8(reply.body).unwrap().lines().count(),
        1,
        "header only"
    );
    for bad in [
        "from=2026-11-01",
        "from=2026-11-30&to=2026-11-01",
        "from=2026-02-30&to=2026-03-01",
        "from=2026-11-01&to=2026-11-30&format=xml",
    ] {
        let (status, body) = http(
            server.port,
            "GET",
            &format!("/api/v1/reconciliation/export?{bad}"),
            Some(&bob),
            None,
        );
        // `to` before `from` has the documented shape and breaks a rule: 422.
        let want = if bad == "from=2026-11-30&to=2026-11-01" {
            422
        } else {
            400
        };
        assert_eq!(status, want, "{bad}: {body}");
    }
    let (status, body) = http(
        server.port,
        "GET",
        "/api/v1/reconciliation/exports/no-such-export",
        Some(&bob),
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

async fn dispute_goes_back_to_the_dispatcher(db: TestDb) {
    let server = Server::start(&db, &["--demo"]);
    let (dora, tom, bob) = (
        server.login("dora", PW),
        server.login("tom", PW),
        server.login("bob", PW),
    );
    let (id, _) = new_ticket(&server, &dora, "Motor hums");
    // An unknown part, a visit without check-out, and a photo that never
    // reached blob storage.
    let photo = "ee".repeat(32);
    let tom_id = user_id(&server, &tom);
    let photo2 = photo.clone();
    let _phone = work_and_sign_off(
        &server,
        &tom,
        id,
        &[("v1", "2026-11-24T13:00:00Z", "2026-11-24T14:00:00Z")],
        &[part("p1", "NOPE-1", 1, "", "van")],
        move |d| {
            ticket::check_in(d, "v2", &tom_id, "2026-11-24T15:00:00Z").unwrap();
            let (_, list) = d.get(ROOT, "attachments").unwrap().unwrap();
            let a = d.insert_object(&list, 0, ObjType::Map).unwrap();
            d.put(&a, "sha256", photo2.as_str()).unwrap();
            d.put(&a, "kind", "photo").unwrap();
        },
    )
    .await;

    let item = queue_item(&server, &bob, id).unwrap();
    assert_eq!(
        (item["level"].as_str(), item["blocking"].as_bool()),
        (Some("problem"), Some(true))
    );
    assert_eq!(check(&item, "parts_catalogue")["level"], "problem");
    assert!(check(&item, "parts_catalogue")["message"]
        .as_str()
        .unwrap()
        .contains("`NOPE-1` is not in the parts catalogue"));
    assert_eq!(check(&item, "labour")["level"], "problem");
    assert!(check(&item, "labour")["message"]
        .as_str()
        .unwrap()
        .contains("`v2` has no check-out"));
    assert_eq!(check(&item, "attachments")["level"], "problem");
    assert!(check(&item, "attachments")["message"]
        .as_str()
        .unwrap()
        .contains(&photo));
    assert_eq!(check(&item, "signoff")["level"], "ok");

    // Problems block a plain approval.
    let url = format!("/api/v1/tickets/{id}/reconcile");
    let (status, body) = post(&server, &bob, &url, json!({}));
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "checks_failed");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("NOPE-1"));
    let (status, _) = post(&server, &bob, &url, json!({"override": true}));
    assert_eq!(status, 422, "an override needs a note");

    // Dispute: a reason is required; it lands in the ticket.
    let url = format!("/api/v1/tickets/{id}/dispute");
    let (status, body) = post(&server, &bob, &url, json!({"reason": "  "}));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let reason = "NOPE-1 is not a part we stock; visit v2 was never closed";
    let (status, body) = post(&server, &bob, &url, json!({ "reason": reason }));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "disputed");
    let (status, _) = post(&server, &bob, &url, json!({ "reason": reason }));
    assert_eq!(status, 409, "already disputed");

    // The dispatcher sees it: over REST …
    let seen = get(
        &server,
        &dora,
        &format!("/api/v1/tickets/{id}/reconciliation"),
    );
    assert_eq!(seen["status"], "disputed");
    assert_eq!(seen["reconciliation"]["state"], "disputed");
    assert_eq!(seen["reconciliation"]["reason"], reason);
    assert_eq!(seen["reconciliation"]["by_username"], "bob");
    assert_eq!(seen["decisions"][0]["decision"], "disputed");
    assert_eq!(seen["decisions"][0]["checks"].as_array().unwrap().len(), 8);
    let listed = get(&server, &dora, "/api/v1/tickets?status=disputed");
    assert!(listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["doc_id"] == id.to_string().as_str()));
    // … and in the document itself, as synced to the dispatcher's app.
    let desk = device(&server, &dora, "dora-desk").await;
    fetch(&desk, id).await;
    let (state, doc_reason, notes) = desk
        .read(id, |d| {
            let (_, m) = d.get(ROOT, "reconciliation").unwrap().unwrap();
            let s = |k: &str| d.get(&m, k).unwrap().unwrap().0.to_string();
            (s("state"), s("reason"), ticket::read(d).unwrap().notes)
        })
        .unwrap();
    assert_eq!(state, "\"disputed\"");
    assert_eq!(doc_reason, format!("\"{reason}\""));
    assert!(
        notes.contains(&format!("[disputed by bob] {reason}")),
        "{notes}"
    );
    desk.disconnect().await;
    let (status, _) = http(
        server.port,
        "GET",
        &format!("/api/v1/tickets/{id}/reconciliation"),
        Some(&tom),
        None,
    );
    assert_eq!(
        status, 403,
        "technicians do not read the back office's view"
    );
    let q = get(
        &server,
        &bob,
        "/api/v1/reconciliation/queue?status=disputed",
    );
    assert!(q["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["doc_id"] == id.to_string().as_str()));

    // The office settles it: approved with an override and a note.
    let url = format!("/api/v1/tickets/{id}/reconcile");
    let note = "NOPE-1 was a loaner, no charge; v2 was travel only";
    let (status, body) = post(&server, &bob, &url, json!({"override": true, "note": note}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"]["override"], true);
    let seen = get(
        &server,
        &bob,
        &format!("/api/v1/tickets/{id}/reconciliation"),
    );
    assert_eq!(seen["reconciliation"]["state"], "reconciled");
    assert_eq!(seen["reconciliation"]["override"], true);
    assert_eq!(seen["decisions"].as_array().unwrap().len(), 2);
}

async fn device_edit_after_reconciliation_is_quarantined(db: TestDb) {
    let server = Server::start(&db, &["--demo"]);
    let (dora, tom, bob) = (
        server.login("dora", PW),
        server.login("tom", PW),
        server.login("bob", PW),
    );
    let tom_id = user_id(&server, &tom);
    let (id, _) = new_ticket(&server, &dora, "Belt slips");
    let phone = work_and_sign_off(
        &server,
        &tom,
        id,
        &[("v1", "2026-11-26T09:00:00Z", "2026-11-26T10:00:00Z")],
        &[part("p1", "BLT-12", 1, "", "van")],
        |_| {},
    )
    .await;
    // Tom's phone goes offline; meanwhile the back office reconciles.
    phone.disconnect().await;
    let (status, body) = post(
        &server,
        &bob,
        &format!("/api/v1/tickets/{id}/reconcile"),
        json!({}),
    );
    assert_eq!(status, 200, "{body}");
    let before = get(&server, &dora, &format!("/api/v1/tickets/{id}/timeline"));

    // Offline, Tom adds a part and a visit, edits the first part and notes.
    phone
        .change(id, |d| {
            ticket::add_part(d, &part("p2", "BLT-12", 3, "", "van")).unwrap();
            ticket::check_in(d, "v2", &tom_id, "2026-11-27T09:00:00Z").unwrap();
            let (_, parts) = d.get(ROOT, "parts_used").unwrap().unwrap();
            let (_, p1) = d.get(&parts, 0).unwrap().unwrap();
            d.put(&p1, "qty", 5).unwrap();
            ticket::append_note(d, "forgot a belt").unwrap();
        })
        .unwrap();
    phone
        .connect(&server.sync_url_for(&tom, "tom-phone"))
        .await
        .unwrap();
    phone.wait_acknowledged(id, WAIT).await.unwrap();
    // The device converges on the locked ticket: its edits are undone.
    phone
        .wait_until(WAIT, "the compensation", |d| {
            d.read(id, |doc| {
                let t = ticket::read(doc).unwrap();
                (
                    t.parts_used.len(),
                    t.visits.len(),
                    t.parts_used[0].qty,
                    t.status,
                )
            }) == Some((1, 1, 1, "reconciled".to_string()))
        })
        .await
        .unwrap();
    let notes = phone.read(id, |d| ticket::read(d).unwrap().notes).unwrap();
    assert!(!notes.contains("forgot a belt"), "{notes}");

    // The service history is exactly as reconciled.
    let after = get(&server, &dora, &format!("/api/v1/tickets/{id}/timeline"));
    assert_eq!(after["visits"], before["visits"]);
    assert_eq!(after["parts_used"], before["parts_used"]);
    assert_eq!(after["ticket"]["status"], "reconciled");
    assert_eq!(after["signoff"]["modified_after_signoff"], false);
    // Quarantined, listed by the existing API and shown to the back office.
    let q = get(
        &server,
        &dora,
        &format!("/api/v1/quarantined-edits?doc_id={id}"),
    );
    let q = q["items"].as_array().unwrap();
    assert!(!q.is_empty());
    assert!(
        q.iter()
            .all(|e| e["user_id"] == tom_id.as_str() && e["device_id"] == "tom-phone"),
        "{q:?}"
    );
    let paths: Vec<&str> = q.iter().map(|e| e["path"].as_str().unwrap()).collect();
    for field in ["parts_used", "visits", "notes"] {
        assert!(
            paths.iter().any(|p| p.starts_with(field)),
            "{field} in {paths:?}"
        );
    }
    let seen = get(
        &server,
        &bob,
        &format!("/api/v1/tickets/{id}/reconciliation"),
    );
    assert_eq!(seen["quarantined_edits"].as_array().unwrap().len(), q.len());
    assert_eq!(seen["status"], "reconciled");
    // Nothing left Tom's van for the rejected belts.
    let van = get(&server, &bob, "/api/v1/technicians/tom/van-stock");
    let belts = van["levels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["part_no"] == "BLT-12")
        .unwrap()
        .clone();
    assert_eq!(belts["quantity"], 4, "5 in the demo van, 1 fitted");
    // The dispatcher's REST edits are locked out too (an admin's are not).
    for (path, body) in [
        ("assignment", json!({"technician": "tina"})),
        (
            "appointment",
            json!({"start": "2026-12-01T09:00:00Z", "end": "2026-12-01T10:00:00Z"}),
        ),
    ] {
        let (status, reply) = http(
            server.port,
            "PUT",
            &format!("/api/v1/tickets/{id}/{path}"),
            Some(&dora),
            Some(body),
        );
        assert_eq!(status, 409, "{path}: {reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("locked"),
            "{reply}"
        );
    }
    phone.disconnect().await;
}

on_both_backends!(
    whole_life_through_reconciliation,
    dispute_goes_back_to_the_dispatcher,
    device_edit_after_reconciliation_is_quarantined,
);
