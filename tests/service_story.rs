//! The service story end to end, on both backends, against a `--demo`
//! server: a dispatcher takes an intake for an archived customer and assigns
//! it; the technician's device records the visit, parts and the customer's
//! signoff offline; on reconnect the service history (timeline, van stock,
//! customer/asset/technician history) shows it, a later edit to signed work
//! is flagged, and `fieldsync projection rebuild` reproduces every row.
//! Also: two technicians editing offline across a reassignment, HTTP batch
//! sync, and the OpenAPI document.

mod common;

use automerge::ReadDoc;
use common::{cli, http, http_bytes, Server, TestDb, WAIT};
use fieldsync_server::db::Db;
use fieldsync_server::projection::store;
use fieldsync_shared::client::{Device, DocStatus};
use fieldsync_shared::status::Status;
use fieldsync_shared::ticket::{self, PartUsed, Survey};
use fieldsync_shared::DocumentId;
use serde_json::{json, Value};
use sha2::Digest;

const PW: &str = "fieldsync-demo";

fn get(server: &Server, token: &str, path: &str) -> Value {
    let (status, body) = http(server.port, "GET", path, Some(token), None);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

fn user_id(server: &Server, token: &str) -> String {
    get(server, token, "/api/v1/me")["id"]
        .as_str()
        .unwrap()
        .to_string()
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

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn create_ticket(server: &Server, token: &str, body: Value) -> DocumentId {
    let (status, resp) = http(
        server.port,
        "POST",
        "/api/v1/tickets",
        Some(token),
        Some(body),
    );
    assert_eq!(status, 201, "{resp}");
    DocumentId::parse_url_or_id(resp["url"].as_str().unwrap()).unwrap()
}

/// Stops the server, empties the projection, rebuilds it from the documents
/// and checks every row came back identical.
fn assert_rebuild_is_identical(db: &TestDb, server: &mut Server) {
    server.kill();
    let conn = Db::open(&db.url, 1).unwrap();
    let before = conn.run_blocking(store::dump).unwrap();
    assert!(!before["tickets"].as_array().unwrap().is_empty());
    conn.run_blocking(store::clear).unwrap();
    assert_eq!(
        conn.run_blocking(store::dump).unwrap()["tickets"],
        json!([])
    );
    let out = cli(&db.url, &["projection", "rebuild"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("projection rebuilt"));
    // Progress goes to stderr, as plain lines when stderr is not a terminal
    // (here a pipe): a first line, and a closing one with the count.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let n = stdout
        .split("projection rebuilt: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap();
    assert!(
        stderr.contains(&format!("projection rebuild: 0/{n} documents\n")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("projection rebuild: done, {n}/{n} documents in ")),
        "{stderr}"
    );
    assert!(!stdout.contains("projection rebuild:"), "{stdout}");
    let after = conn.run_blocking(store::dump).unwrap();
    assert_eq!(before, after, "rebuild must reproduce the rows exactly");
}

async fn the_whole_story(db: TestDb) {
    let mut server = Server::start(&db, &["--demo"]);
    let dora = server.login("dora", PW);
    let tom = server.login("tom", PW);
    let tom_id = user_id(&server, &tom);

    // Intake for a customer from the archive: the asset fills the product.
    let customers = get(&server, &dora, "/api/v1/customers?q=acme");
    let acme = customers["items"][0]["id"].as_str().unwrap().to_string();
    let card = get(&server, &dora, &format!("/api/v1/customers/{acme}"));
    let mixer = card["assets"][0]["id"].as_str().unwrap().to_string();
    let id = create_ticket(
        &server,
        &dora,
        json!({"customer_id": acme, "asset_id": mixer, "fault_description": "Bowl wobbles and grinds",
               "occurred_at": "2026-11-22T08:30:00Z", "reported_via": "phone", "priority": "A", "technician": "tom"}),
    );
    let (status, _) = http(
        server.port,
        "PUT",
        &format!("/api/v1/tickets/{id}/appointment"),
        Some(&dora),
        Some(json!({"start": "2026-11-24T09:00:00Z", "end": "2026-11-24T11:00:00Z"})),
    );
    assert_eq!(status, 200);
    let (status, _) = http(
        server.port,
        "PUT",
        &format!("/api/v1/tickets/{id}/appointment"),
        Some(&dora),
        Some(json!({"start": "2026-11-24T11:00:00Z", "end": "2026-11-24T09:00:00Z"})),
    );
    assert_eq!(status, 422, "an appointment must end after it starts");

    // The dispatcher's list: filters and search.
    let found = get(
        &server,
        &dora,
        "/api/v1/tickets?technician=tom&status=assigned&priority=A&q=GRINDS",
    );
    let found: Vec<&str> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["doc_id"].as_str().unwrap())
        .collect();
    assert_eq!(found, [id.to_string()]);
    assert_eq!(
        get(&server, &dora, "/api/v1/tickets?priority=C&q=grinds")["items"],
        json!([])
    );
    assert_eq!(
        get(&server, &dora, "/api/v1/tickets?technician=tina&q=grinds")["items"],
        json!([])
    );
    // Technicians only ever list their own tickets.
    let tina = server.login("tina", PW);
    assert!(get(&server, &tina, "/api/v1/tickets?q=grinds")["items"]
        .as_array()
        .unwrap()
        .is_empty());

    // Tom syncs the ticket, then works offline on site.
    let phone = device(&server, &tom, "tom-phone").await;
    fetch(&phone, id).await;
    let t = phone.read(id, |d| ticket::read(d).unwrap()).unwrap();
    assert_eq!(
        (t.intake.product.as_str(), t.intake.serial.as_str()),
        ("Dough mixer", "SN-778")
    );
    assert_eq!(t.appointment_start, "2026-11-24T09:00:00Z");
    assert_eq!(t.technician_id, tom_id);
    phone.disconnect().await;

    let signature = b"\x89PNG fake signature strokes".to_vec();
    let sig_sha = hex(&sha2::Sha256::digest(&signature));
    let step = |s: Status| {
        phone
            .change(id, |d| ticket::set_status(d, s).unwrap())
            .unwrap()
    };
    step(Status::EnRoute);
    step(Status::OnSite);
    phone
        .change(id, |d| ticket::check_in(d, "v1", &tom_id, &now()).unwrap())
        .unwrap();
    phone
        .change(id, |d| {
            ticket::add_part(
                d,
                &PartUsed {
                    id: "p1".into(),
                    part_no: "MTR-40".into(),
                    qty: 1,
                    serial: "M-9001".into(),
                    source: "van".into(),
                    visit_id: "v1".into(),
                    technician_id: String::new(),
                },
            )
            .unwrap()
        })
        .unwrap();
    phone
        .change(id, |d| {
            ticket::check_out(d, "v1", &now(), "Replaced the motor", "runs quietly", true).unwrap()
        })
        .unwrap();
    step(Status::Completed);
    phone
        .change(id, |d| {
            let heads = d.get_heads();
            ticket::sign(d, "Ann Acme", &now(), &sig_sha, &heads).unwrap();
            ticket::set_survey(
                d,
                &Survey {
                    scale: 5,
                    efficiency: Some(5),
                    attitude: Some(5),
                    reasonableness: Some(4),
                    comment: "Fast".into(),
                },
            )
            .unwrap();
        })
        .unwrap();
    step(Status::SignedOff);
    // The signature image is an attachment (upload is idempotent).
    for _ in 0..2 {
        let (status, _) = http_bytes(
            server.port,
            "PUT",
            &format!("/api/v1/blobs/{sig_sha}"),
            Some(&tom),
            &signature,
        );
        assert!(status == 200 || status == 201, "{status}");
    }

    // Back online: everything is acknowledged (committed) by the server.
    phone
        .connect(&server.sync_url_for(&tom, "tom-phone"))
        .await
        .unwrap();
    phone
        .wait_until(WAIT, "acknowledgement", |d| d.acknowledged(id))
        .await
        .unwrap();

    let tl = get(&server, &dora, &format!("/api/v1/tickets/{id}/timeline"));
    let steps: Vec<(&str, &str)> = tl["status_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["to_status"].as_str().unwrap(),
                e["by_role"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("new", "dispatcher"),
            ("assigned", "dispatcher"),
            ("en_route", "technician"),
            ("on_site", "technician"),
            ("completed", "technician"),
            ("signed_off", "technician"),
        ]
    );
    let device_at = tl["status_events"][2]["device_at"].as_str().unwrap();
    assert!(device_at.starts_with("20"), "device time kept: {device_at}");
    assert_eq!(tl["ticket"]["status"], "signed_off");
    assert_eq!(tl["ticket"]["customer_id"], acme.as_str());
    assert_eq!(tl["visits"][0]["technician_id"], tom_id.as_str());
    assert_eq!(tl["visits"][0]["fixed"], true);
    assert_eq!(tl["parts_used"][0]["catalogue_name"], "Mixer motor 400 W");
    assert_eq!(tl["parts_used"][0]["technician_id"], tom_id.as_str());
    assert_eq!(tl["signoff"]["heads_valid"], true);
    assert_eq!(tl["signoff"]["modified_after_signoff"], false);
    assert_eq!(tl["signoff"]["signature_sha256"], sig_sha.as_str());
    assert_eq!(tl["ticket"]["survey_reasonableness"], 4);

    // The part left Tom's van (demo stock: 2 motors).
    let van = get(&server, &tom, "/api/v1/technicians/tom/van-stock");
    let motors = van["levels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["part_no"] == "MTR-40")
        .unwrap();
    assert_eq!(motors["quantity"], 1);
    let (status, _) = http(
        server.port,
        "GET",
        "/api/v1/technicians/tina/van-stock",
        Some(&tom),
        None,
    );
    assert_eq!(status, 403, "a technician sees only their own van");

    // History per customer, asset and technician.
    let h = get(&server, &dora, &format!("/api/v1/customers/{acme}/history"));
    let rec = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["doc_id"] == id.to_string().as_str())
        .unwrap();
    assert_eq!(rec["problem"], "Bowl wobbles and grinds");
    assert_eq!(rec["result"], "runs quietly");
    assert_eq!(rec["technician_id"], tom_id.as_str());
    assert_eq!(rec["feedback"]["comment"], "Fast");
    assert_eq!(rec["signed_by"], "Ann Acme");
    let h = get(&server, &dora, &format!("/api/v1/assets/{mixer}/history"));
    assert!(h["history"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["doc_id"] == id.to_string().as_str()));
    let h = get(&server, &tom, "/api/v1/technicians/tom/history");
    assert!(h["history"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["doc_id"] == id.to_string().as_str()));

    // A later edit to signed work is flagged for the back office.
    phone
        .change(id, |d| {
            let (_, parts) = d.get(automerge::ROOT, "parts_used").unwrap().unwrap();
            let (_, p) = d.get(&parts, 0).unwrap().unwrap();
            automerge::transaction::Transactable::put(d, &p, "qty", 2).unwrap();
        })
        .unwrap();
    phone
        .wait_until(WAIT, "acknowledgement", |d| d.acknowledged(id))
        .await
        .unwrap();
    let tl = get(&server, &dora, &format!("/api/v1/tickets/{id}/timeline"));
    assert_eq!(tl["signoff"]["modified_after_signoff"], true);
    assert_ne!(
        tl["signoff"]["signed_content_sha256"],
        tl["signoff"]["current_content_sha256"]
    );
    phone.disconnect().await;

    assert_rebuild_is_identical(&db, &mut server);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Tom starts the job offline; meanwhile the dispatcher reassigns it to
/// Tina, who also works on it offline. Nothing is lost: both visits and both
/// notes end up in the ticket and its history, Tom (write-only now) gets
/// nothing of Tina's work, and Tina's device converges with the server.
async fn two_technicians_offline_during_reassignment(db: TestDb) {
    let mut server = Server::start(&db, &["--demo"]);
    let dora = server.login("dora", PW);
    let (tom, tina) = (server.login("tom", PW), server.login("tina", PW));
    let (tom_id, tina_id) = (user_id(&server, &tom), user_id(&server, &tina));
    let id = create_ticket(
        &server,
        &dora,
        json!({"customer_name": "Walk-in", "product": "Espresso machine", "fault_description": "No pressure",
               "priority": "B", "technician": "tom"}),
    );
    let tom_phone = device(&server, &tom, "tom-phone").await;
    fetch(&tom_phone, id).await;
    tom_phone.disconnect().await;
    tom_phone
        .change(id, |d| ticket::set_status(d, Status::EnRoute).unwrap())
        .unwrap();
    tom_phone
        .change(id, |d| {
            ticket::check_in(d, "v-tom", &tom_id, &now()).unwrap()
        })
        .unwrap();
    tom_phone
        .change(id, |d| {
            ticket::append_note(d, "Tom: pump primed. ").unwrap()
        })
        .unwrap();

    let (status, _) = http(
        server.port,
        "PUT",
        &format!("/api/v1/tickets/{id}/assignment"),
        Some(&dora),
        Some(json!({"technician": "tina"})),
    );
    assert_eq!(status, 200);
    let tina_phone = device(&server, &tina, "tina-phone").await;
    fetch(&tina_phone, id).await;
    tina_phone.disconnect().await;
    tina_phone
        .change(id, |d| {
            ticket::check_in(d, "v-tina", &tina_id, &now()).unwrap()
        })
        .unwrap();
    tina_phone
        .change(id, |d| {
            ticket::append_note(d, "Tina: replaced gasket. ").unwrap()
        })
        .unwrap();

    // Tom reconnects first: his offline work is accepted, he gets nothing back.
    tom_phone
        .connect(&server.sync_url_for(&tom, "tom-phone"))
        .await
        .unwrap();
    let tl_has_tom = |server: &Server| {
        let tl = get(server, &dora, &format!("/api/v1/tickets/{id}/timeline"));
        tl["visits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["visit_id"] == "v-tom")
    };
    let deadline = std::time::Instant::now() + WAIT;
    while !tl_has_tom(&server) {
        assert!(
            std::time::Instant::now() < deadline,
            "Tom's offline visit never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Then Tina.
    tina_phone
        .connect(&server.sync_url_for(&tina, "tina-phone"))
        .await
        .unwrap();
    tina_phone
        .wait_until(WAIT, "Tina's device has Tom's visit too", |d| {
            d.acknowledged(id)
                && d.read(id, |doc| ticket::read(doc).unwrap().visits.len()) == Some(2)
        })
        .await
        .unwrap();

    let tl = get(&server, &dora, &format!("/api/v1/tickets/{id}/timeline"));
    let mut who: Vec<(&str, &str)> = tl["visits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["visit_id"].as_str().unwrap(),
                v["technician_id"].as_str().unwrap(),
            )
        })
        .collect();
    who.sort();
    assert_eq!(
        who,
        [("v-tina", tina_id.as_str()), ("v-tom", tom_id.as_str())]
    );
    assert_eq!(tl["ticket"]["technician_id"], tina_id.as_str());
    let notes = tina_phone
        .read(id, |d| ticket::read(d).unwrap().notes)
        .unwrap();
    assert!(
        notes.contains("Tom: pump primed.") && notes.contains("Tina: replaced gasket."),
        "{notes}"
    );
    let tom_visits = tom_phone
        .read(id, |d| ticket::read(d).unwrap().visits.len())
        .unwrap();
    assert_eq!(
        tom_visits, 1,
        "the old technician receives nothing after reassignment"
    );
    tom_phone.disconnect().await;
    tina_phone.disconnect().await;

    assert_rebuild_is_identical(&db, &mut server);
}

/// One HTTP round of batch sync for every document on the device.
fn batch_round(server: &Server, token: &str, device: &Device, name: &str) -> usize {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let out = device.batch_outgoing();
    if out.is_empty() {
        return 0;
    }
    let messages: Vec<Value> = out
        .iter()
        .map(|(id, data)| json!({"document_id": id.to_string(), "data": b64.encode(data)}))
        .collect();
    let (status, body) = http(
        server.port,
        "POST",
        "/api/v1/sync/batch",
        Some(token),
        Some(json!({"device": name, "messages": messages})),
    );
    assert_eq!(status, 200, "{body}");
    for r in body["replies"].as_array().unwrap() {
        let id = DocumentId::parse_url_or_id(r["document_id"].as_str().unwrap()).unwrap();
        match r["status"].as_str().unwrap() {
            "ok" => device.batch_incoming(id, r["data"].as_str().map(|d| b64.decode(d).unwrap())),
            "unavailable" => device.batch_incoming(id, None),
            other => panic!("batch reply {other}: {r}"),
        }
    }
    out.len()
}

fn batch_sync(server: &Server, token: &str, device: &Device, name: &str) {
    device.start_batch_sync();
    for _ in 0..10 {
        if batch_round(server, token, device, name) == 0 {
            return;
        }
    }
    panic!("batch sync did not settle in 10 rounds");
}

/// A device that can only make HTTP requests: fetch, edit offline, upload;
/// the same share policy and write validation as the WebSocket.
async fn http_batch_sync(db: TestDb) {
    let server = Server::start(&db, &["--demo"]);
    let dora = server.login("dora", PW);
    let tina = server.login("tina", PW);
    let tina_id = user_id(&server, &tina);
    let mine = create_ticket(
        &server,
        &dora,
        json!({"customer_name": "Harbor Clinic", "product": "Autoclave", "fault_description": "Error E4",
               "priority": "A", "technician": "tina"}),
    );
    let not_mine = create_ticket(
        &server,
        &dora,
        json!({"customer_name": "Other", "product": "Fridge", "fault_description": "Warm", "priority": "C", "technician": "tom"}),
    );
    let phone = Device::new("tina-batch-peer");
    phone.want(mine);
    phone.want(not_mine);
    batch_sync(&server, &tina, &phone, "tina-batch");
    assert_eq!(phone.status(mine), Some(DocStatus::Local));
    assert_eq!(
        phone.status(not_mine),
        Some(DocStatus::Unavailable),
        "share policy"
    );
    let t = phone.read(mine, |d| ticket::read(d).unwrap()).unwrap();
    assert_eq!(t.intake.product, "Autoclave");

    // Offline work plus one forbidden edit (technicians may not change the priority).
    phone
        .change(mine, |d| {
            ticket::check_in(d, "v1", &tina_id, &now()).unwrap()
        })
        .unwrap();
    phone
        .change(mine, |d| {
            automerge::transaction::Transactable::put(d, automerge::ROOT, "priority", "C").unwrap()
        })
        .unwrap();
    batch_sync(&server, &tina, &phone, "tina-batch");
    assert!(phone.acknowledged(mine));
    let t = phone.read(mine, |d| ticket::read(d).unwrap()).unwrap();
    assert_eq!(t.intake.priority, "A", "the forbidden edit was compensated");
    let tl = get(&server, &dora, &format!("/api/v1/tickets/{mine}/timeline"));
    assert_eq!(tl["visits"][0]["visit_id"], "v1");
    assert_eq!(tl["ticket"]["priority"], "A");

    // Bad input in one message: a clear error for it, the others processed.
    let (status, body) = http(
        server.port,
        "POST",
        "/api/v1/sync/batch",
        Some(&tina),
        Some(json!({"device": "tina-batch", "messages": [
            {"document_id": mine.to_string(), "data": "bm90IGEgc3luYyBtZXNzYWdl"},
            {"document_id": "nonsense", "data": "AA=="},
        ]})),
    );
    assert_eq!(status, 200);
    assert_eq!(body["replies"][0]["status"], "error");
    assert!(body["replies"][0]["error"]
        .as_str()
        .unwrap()
        .contains("sync message"));
    assert_eq!(body["replies"][1]["status"], "error");
    let (status, _) = http(
        server.port,
        "POST",
        "/api/v1/sync/batch",
        None,
        Some(json!({"device": "x", "messages": []})),
    );
    assert_eq!(status, 401);
}

/// Every route of the REST API is in the OpenAPI document, and every path
/// in the document is really routed (a missing route would be the router's
/// bare 404; our handlers answer 404 with a JSON error).
async fn openapi_describes_every_route(db: TestDb) {
    let server = Server::start(&db, &["--demo"]);
    let (status, doc) = http(server.port, "GET", "/api/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let documented: std::collections::BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), p.clone()))
        })
        .collect();
    let table: std::collections::BTreeSet<(String, String)> = fieldsync_server::api::ROUTES
        .iter()
        .map(|r| (r.method.to_uppercase(), format!("/api/v1{}", r.path)))
        .collect();
    assert_eq!(documented, table);
    for required in [
        "/api/v1/tickets",
        "/api/v1/sync/batch",
        "/api/v1/tickets/{doc_id}/timeline",
        "/api/v1/customers/{id}/history",
    ] {
        assert!(paths.contains_key(required), "{required}");
    }
    let admin = server.login("harness-admin", "harness-password");
    for (method, path) in &documented {
        let concrete = path
            .replace("{doc_id}", "2ESVTjYaoboTzgCsDkt4yEEFFaaK")
            .replace("{sha256}", &"ab".repeat(32))
            .replace(['{', '}'], "");
        let body = (method != "GET").then(|| json!({}));
        // An event stream never ends with a token: ask without one (a 401
        // from the route, not a 404).
        let stream = paths[path][method.to_lowercase()]
            .pointer("/responses/200/content/text~1event-stream")
            .is_some();
        let token = (!stream).then_some(admin.as_str());
        let (status, resp) = http(server.port, method, &concrete, token, body);
        assert!(!stream || status == 401, "{method} {path}: {status}");
        assert!(
            status != 404 && status != 405 || resp.get("error").is_some(),
            "{method} {path} is documented but not routed ({status})"
        );
    }
}

/// The API reference at /api/docs is served by the binary itself: the page,
/// Swagger UI's script and style, pointed at this server's document, with
/// the online validator off (nothing is fetched from the internet).
async fn api_reference_is_served_from_the_binary(db: TestDb) {
    let server = Server::start(&db, &[]);
    let page = common::http_full(server.port, "GET", "/api/docs", None, "text/plain", b"");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let html = String::from_utf8(page.body).unwrap();
    for asset in [
        "/api/docs/swagger-ui-bundle.js",
        "/api/docs/swagger-ui.css",
        "/api/docs/init.js",
    ] {
        assert!(html.contains(asset), "{asset}");
        let r = common::http_full(server.port, "GET", asset, None, "text/plain", b"");
        assert_eq!(r.status, 200, "{asset}");
        assert!(!r.body.is_empty());
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    let init = common::http_full(
        server.port,
        "GET",
        "/api/docs/init.js",
        None,
        "text/plain",
        b"",
    );
    let init = String::from_utf8(init.body).unwrap();
    assert!(
        init.contains("/api/v1/openapi.json") && init.contains("validatorUrl: null"),
        "{init}"
    );
}

/// Issue 10 item 9: a technician cannot raise their own van stock, create
/// stock rows for unknown parts or overflow a level; what did not move stock
/// is listed for the back office.
async fn van_stock_cannot_be_forged(db: TestDb) {
    let server = Server::start(&db, &["--demo"]);
    let dora = server.login("dora", PW);
    let tom = server.login("tom", PW);
    let bob = server.login("bob", PW);
    let motors = |server: &Server| {
        let van = get(server, &bob, "/api/v1/technicians/tom/van-stock");
        let levels = van["levels"].as_array().unwrap().clone();
        (
            levels
                .iter()
                .find(|l| l["part_no"] == "MTR-40")
                .map(|l| l["quantity"].clone()),
            levels.iter().any(|l| l["part_no"] == "NOPE-1"),
        )
    };
    let before = motors(&server);
    assert_eq!(before, (Some(json!(2)), false), "demo stock");

    let customers = get(&server, &dora, "/api/v1/customers?q=acme");
    let acme = customers["items"][0]["id"].as_str().unwrap().to_string();
    let card = get(&server, &dora, &format!("/api/v1/customers/{acme}"));
    let mixer = card["assets"][0]["id"].as_str().unwrap().to_string();
    let id = create_ticket(
        &server,
        &dora,
        json!({"customer_id": acme, "asset_id": mixer, "fault_description": "Forgery",
               "occurred_at": "2026-11-22T08:30:00Z", "reported_via": "phone", "priority": "B", "technician": "tom"}),
    );
    let phone = device(&server, &tom, "tom-phone").await;
    fetch(&phone, id).await;
    let part = |id: &str, part_no: &str, qty: i64| PartUsed {
        id: id.into(),
        part_no: part_no.into(),
        qty,
        serial: String::new(),
        source: "van".into(),
        visit_id: String::new(),
        technician_id: String::new(),
    };
    phone
        .change(id, |d| {
            ticket::add_part(d, &part("p1", "MTR-40", -1000)).unwrap();
            ticket::add_part(d, &part("p2", "NOPE-1", 1)).unwrap();
            ticket::add_part(d, &part("p3", "MTR-40", i64::MAX)).unwrap();
            ticket::add_part(d, &part("p4", "MTR-40", i64::MAX)).unwrap();
            ticket::add_part(d, &part("p5", "MTR-40", 1)).unwrap();
        })
        .unwrap();
    phone.wait_acknowledged(id, WAIT).await.unwrap();

    // Only the plausible catalogue part left the van.
    assert_eq!(motors(&server), (Some(json!(1)), false));
    let anomalies = get(&server, &bob, "/api/v1/stock/anomalies")["anomalies"].clone();
    let flagged: Vec<(&str, &str)> = anomalies
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["part_entry_id"].as_str().unwrap(),
                a["problem"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(flagged.len(), 4, "{flagged:?}");
    assert!(flagged[0].1.contains("quantity -1000"), "{flagged:?}");
    assert!(
        flagged[1].1.contains("not in the parts catalogue"),
        "{flagged:?}"
    );
    let (status, _) = http(
        server.port,
        "GET",
        "/api/v1/stock/anomalies",
        Some(&tom),
        None,
    );
    assert_eq!(status, 403, "technicians do not list anomalies");
    // Manual movements are bounded too.
    let (status, body) = http(
        server.port,
        "POST",
        "/api/v1/stock-movements",
        Some(&bob),
        Some(json!({"technician": "tom", "part_no": "MTR-40", "qty_delta": i64::MAX})),
    );
    assert_eq!(status, 422, "{body}");
}

on_both_backends!(
    van_stock_cannot_be_forged,
    the_whole_story,
    two_technicians_offline_during_reassignment,
    http_batch_sync,
    openapi_describes_every_route,
    api_reference_is_served_from_the_binary,
);
