//! The closed loop with the customer (issue 11 §3) on a real server, both
//! backends: a survey link answered once through the public page (a second
//! use, a forged token and, after the survey window, an expired link are
//! refused; a low score calls for a callback), and complaints answered and
//! resolved against their limits, escalated when late, with a second
//! contact for a customer still unsatisfied.

mod common;

use std::time::Duration;

use common::{
    add_users, escalation_tiers as escalations_of, get_json as get, http, http_full,
    server_with_clock as server_at, wait_for, Server, TestDb,
};
use fieldsync_shared::client::{Device, DocStatus};
use fieldsync_shared::status::Status;
use fieldsync_shared::ticket;
use fieldsync_shared::DocumentId;
use serde_json::{json, Value};

fn customer(server: &Server, token: &str, name: &str) -> String {
    let (status, c) = http(
        server.port,
        "POST",
        "/api/v1/customers",
        Some(token),
        Some(json!({"name": name, "phone": "+86 10 5555 0100", "address": "1 Oven Road"})),
    );
    assert_eq!(status, 201, "{c}");
    c["id"].as_str().unwrap().to_string()
}

/// A ticket for `customer`, assigned to tom, taken to `completed` by his
/// phone (no survey on site).
async fn completed_ticket(server: &Server, dora: &str, phone: &Device, cid: &str) -> DocumentId {
    let (status, created) = http(
        server.port,
        "POST",
        "/api/v1/tickets",
        Some(dora),
        Some(
            json!({"customer_id": cid, "product": "Oven", "fault_description": "No heat",
                    "priority": "B", "technician": "tom"}),
        ),
    );
    assert_eq!(status, 201, "{created}");
    let id = DocumentId::parse_url_or_id(created["url"].as_str().unwrap()).unwrap();
    phone.want(id);
    phone
        .wait_until(common::WAIT, "the ticket", |d| {
            d.status(id) == Some(DocStatus::Local)
        })
        .await
        .unwrap();
    for s in [Status::EnRoute, Status::OnSite, Status::Completed] {
        phone
            .change(id, |d| ticket::set_status(d, s).unwrap())
            .unwrap();
    }
    phone.wait_acknowledged(id, common::WAIT).await.unwrap();
    let doc = id.to_string();
    wait_for("the completion to be projected", || {
        get(server, dora, &format!("/api/v1/tickets/{doc}"))["status"] == "completed"
    });
    id
}

fn form(server: &Server, path: &str, body: &str) -> common::Reply {
    http_full(
        server.port,
        "POST",
        path,
        None,
        "application/x-www-form-urlencoded",
        body.as_bytes(),
    )
}

fn page(server: &Server, path: &str) -> common::Reply {
    http_full(server.port, "GET", path, None, "text/plain", b"")
}

async fn a_survey_link_is_answered_once(db: TestDb) {
    add_users(
        &db,
        &[
            ("dora", "dispatcher"),
            ("tom", "technician"),
            ("ada", "admin"),
        ],
    );
    let server = server_at(&db, 0);
    let (dora, tom) = (
        server.login("dora", "dora-password"),
        server.login("tom", "tom-password"),
    );
    let cid = customer(&server, &dora, "Acme Bakery");
    let phone = Device::new("tom-phone-peer");
    phone
        .connect(&server.sync_url_for(&tom, "tom-phone"))
        .await
        .unwrap();

    // Not before the job is done.
    let (status, created) = http(
        server.port,
        "POST",
        "/api/v1/tickets",
        Some(&dora),
        Some(
            json!({"customer_id": cid, "product": "Oven", "fault_description": "No heat", "priority": "C"}),
        ),
    );
    assert_eq!(status, 201);
    let open = created["doc_id"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            DocumentId::parse_url_or_id(created["url"].as_str().unwrap())
                .unwrap()
                .to_string()
        });
    let (status, body) = http(
        server.port,
        "POST",
        &format!("/api/v1/tickets/{open}/survey-link"),
        Some(&dora),
        None,
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("completed job"),
        "{body}"
    );

    let id = completed_ticket(&server, &dora, &phone, &cid).await;
    let doc = id.to_string();
    // Technicians do not send surveys.
    let (status, _) = http(
        server.port,
        "POST",
        &format!("/api/v1/tickets/{doc}/survey-link"),
        Some(&tom),
        None,
    );
    assert_eq!(status, 403);
    let (status, link) = http(
        server.port,
        "POST",
        &format!("/api/v1/tickets/{doc}/survey-link"),
        Some(&dora),
        None,
    );
    assert_eq!(status, 201, "{link}");
    let token = link["token"].as_str().unwrap().to_string();
    let url = link["url"].as_str().unwrap();
    assert!(url.ends_with(&format!("/survey/{token}")), "{url}");
    let path = format!("/survey/{token}");

    // The page: the ticket, three dimensions on the 5-point scale.
    let p = page(&server, &path);
    assert_eq!(p.status, 200);
    let html = String::from_utf8_lossy(&p.body).to_string();
    assert!(p.header("content-type").unwrap().starts_with("text/html"));
    assert!(html.contains(link["ticket_no"].as_str().unwrap()), "{html}");
    for dim in ["efficiency", "attitude", "reasonableness"] {
        assert!(
            html.contains(&format!("name=\"{dim}\" value=\"5\"")),
            "{dim}"
        );
        assert!(
            !html.contains(&format!("name=\"{dim}\" value=\"6\"")),
            "{dim}"
        );
    }
    // A score off the scale is refused and does not use the link up.
    let bad = form(
        &server,
        &path,
        "efficiency=9&attitude=4&reasonableness=4&comment=",
    );
    assert_eq!(bad.status, 400);
    assert!(String::from_utf8_lossy(&bad.body).contains("1 to 5"));
    // A forged token (another link id under this signature) opens nothing.
    let (_, rest) = token.split_once('.').unwrap();
    let forged = format!("/survey/00000000-0000-7000-8000-000000000000.{rest}");
    assert_eq!(page(&server, &forged).status, 404);
    assert_eq!(
        form(&server, &forged, "efficiency=5&attitude=5&reasonableness=5").status,
        404
    );

    // Answered: 2 for efficiency is a low score.
    let ok = form(
        &server,
        &path,
        "efficiency=2&attitude=4&reasonableness=4&comment=took+two+weeks",
    );
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert!(String::from_utf8_lossy(&ok.body).contains("Thank you"));
    // Once only, by the page or the JSON API.
    let again = form(&server, &path, "efficiency=5&attitude=5&reasonableness=5");
    assert_eq!(again.status, 410);
    let (status, body) = http(
        server.port,
        "POST",
        "/api/v1/survey-answers",
        None,
        Some(json!({"token": token, "efficiency": 5, "attitude": 5, "reasonableness": 5})),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (410, Some("link_used")),
        "{body}"
    );
    assert_eq!(page(&server, &path).status, 410);

    // The answer is in the ticket document (the phone gets it) and in the
    // service history; the low score asks for a one-to-one callback.
    phone
        .wait_until(common::WAIT, "the survey on the phone", |d| {
            d.read(id, |doc| ticket::read(&*doc).ok().and_then(|t| t.survey))
                .flatten()
                .is_some_and(|s| s.efficiency == Some(2))
        })
        .await
        .unwrap();
    let via = phone
        .read(id, |d| {
            use automerge::ReadDoc;
            let (_, s) = d.get(automerge::ROOT, "survey").unwrap().unwrap();
            d.get(&s, "via")
                .unwrap()
                .map(|(v, _)| v.into_string().unwrap_or_default())
        })
        .unwrap();
    assert_eq!(via.as_deref(), Some("link"));
    let row = get(&server, &dora, &format!("/api/v1/tickets/{doc}"));
    assert_eq!(
        (
            row["survey_efficiency"].as_i64(),
            row["feedback_comment"].as_str()
        ),
        (Some(2), Some("took two weeks")),
        "{row}"
    );
    wait_for("the low-score callback", || {
        get(
            &server,
            &dora,
            &format!("/api/v1/callbacks?customer_id={cid}"),
        )["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["reason"] == "low_score" && c["doc_id"] == doc.as_str())
    });
    // No second link for an answered survey; the link list shows it used.
    let (status, _) = http(
        server.port,
        "POST",
        &format!("/api/v1/tickets/{doc}/survey-link"),
        Some(&dora),
        None,
    );
    assert_eq!(status, 409);
    let links = get(
        &server,
        &dora,
        &format!("/api/v1/tickets/{doc}/survey-links"),
    );
    assert_eq!(links["items"].as_array().unwrap().len(), 1);
    assert!(links["items"][0]["used_at"].is_string(), "{links}");
    assert!(links["items"][0].get("token").is_none());
    let audit = get(
        &server,
        &server.login("ada", "ada-password"),
        "/api/v1/audit?limit=200",
    );
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"survey_link_created") && actions.contains(&"survey_answered"),
        "{actions:?}"
    );

    // Tom's phone may not rewrite what the customer said: undone, quarantined.
    phone
        .change(id, |d| {
            use automerge::transaction::Transactable;
            use automerge::ReadDoc;
            let (_, s) = d.get(automerge::ROOT, "survey").unwrap().unwrap();
            d.put(&s, "efficiency", 5_i64).unwrap();
        })
        .unwrap();
    phone.wait_acknowledged(id, common::WAIT).await.unwrap();
    phone
        .wait_until(common::WAIT, "the rewrite undone", |d| {
            d.read(id, |doc| ticket::read(&*doc).ok().and_then(|t| t.survey))
                .flatten()
                .is_some_and(|s| s.efficiency == Some(2))
        })
        .await
        .unwrap();
    let q = get(
        &server,
        &dora,
        &format!("/api/v1/quarantined-edits?doc_id={doc}"),
    );
    assert!(
        q["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"].as_str().unwrap().starts_with("survey")),
        "{q}"
    );
    assert_eq!(
        get(&server, &dora, &format!("/api/v1/tickets/{doc}"))["survey_efficiency"],
        2
    );

    // Two more jobs: one whose answer meets a storage failure, one whose
    // link is opened too late. A new link ends the older unused one.
    let flaky_id = completed_ticket(&server, &dora, &phone, &cid).await;
    let flaky = flaky_id.to_string();
    // Tom's app leaves an empty survey (no score) on it: that is no answer,
    // so the customer can still be asked, and the answer replaces it.
    phone
        .change(flaky_id, |d| {
            use automerge::transaction::Transactable;
            d.put_object(automerge::ROOT, "survey", automerge::ObjType::Map)
                .unwrap();
        })
        .unwrap();
    phone
        .wait_acknowledged(flaky_id, common::WAIT)
        .await
        .unwrap();
    let late = completed_ticket(&server, &dora, &phone, &cid)
        .await
        .to_string();
    let link_for = |doc: &str| {
        let (status, link) = http(
            server.port,
            "POST",
            &format!("/api/v1/tickets/{doc}/survey-link"),
            Some(&dora),
            None,
        );
        assert_eq!(status, 201, "{link}");
        link["token"].as_str().unwrap().to_string()
    };
    let first = link_for(&flaky);
    let flaky_token = link_for(&flaky);
    assert_eq!(
        page(&server, &format!("/survey/{first}")).status,
        410,
        "ended by the newer link"
    );
    let late_token = link_for(&late);
    drop(phone);
    drop(server);

    // The first document commit after this start fails: the answer is
    // taken anyway (the customer is thanked) and reaches the ticket by the
    // repair pass.
    let server = Server::start(
        &db,
        &[
            "--sla-interval-secs",
            "0.2",
            "--inject-commit-faults",
            "1:1:7",
        ],
    );
    let dora = server.login("dora", "dora-password");
    let ok = form(
        &server,
        &format!("/survey/{flaky_token}"),
        "efficiency=4&attitude=5&reasonableness=4",
    );
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    wait_for("the repair pass to write the answer", || {
        get(&server, &dora, &format!("/api/v1/tickets/{flaky}"))["survey_attitude"] == 5
    });
    wait_for("the link to be marked applied", || {
        get(
            &server,
            &dora,
            &format!("/api/v1/tickets/{flaky}/survey-links"),
        )["items"][0]["applied_at"]
            .is_string()
    });
    assert_eq!(
        form(
            &server,
            &format!("/survey/{flaky_token}"),
            "efficiency=1&attitude=1&reasonableness=1"
        )
        .status,
        410
    );
    drop(server);

    // After its window (3 working days; 8 days later is past it whatever
    // the weekday): expired, and no new link.
    let server = server_at(&db, 8 * 86400);
    let dora = server.login("dora", "dora-password");
    assert_eq!(page(&server, &format!("/survey/{late_token}")).status, 410);
    let (status, body) = http(
        server.port,
        "POST",
        "/api/v1/survey-answers",
        None,
        Some(json!({"token": late_token, "efficiency": 5, "attitude": 5, "reasonableness": 5})),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (410, Some("link_expired")),
        "{body}"
    );
    let (status, body) = http(
        server.port,
        "POST",
        &format!("/api/v1/tickets/{late}/survey-link"),
        Some(&dora),
        None,
    );
    assert_eq!(status, 409);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("window closed"),
        "{body}"
    );
    assert!(get(&server, &dora, &format!("/api/v1/tickets/{late}"))["survey_scale"].is_null());
}

async fn complaints_are_answered_resolved_and_escalated(db: TestDb) {
    add_users(
        &db,
        &[
            ("dora", "dispatcher"),
            ("tom", "technician"),
            ("sue", "supervisor"),
            ("mia", "manager"),
        ],
    );
    let server = server_at(&db, 0);
    let (dora, tom, sue) = (
        server.login("dora", "dora-password"),
        server.login("tom", "tom-password"),
        server.login("sue", "sue-password"),
    );
    let cid = customer(&server, &dora, "Grumpy Mills");
    let post = |token: &str, path: &str, body: Value| {
        http(server.port, "POST", path, Some(token), Some(body))
    };

    // Refusals: a technician, an unknown category or customer, a future time.
    let (status, _) = post(
        &tom,
        "/api/v1/complaints",
        json!({"customer_id": cid, "category": "other", "description": "x"}),
    );
    assert_eq!(status, 403);
    let (status, body) = post(
        &dora,
        "/api/v1/complaints",
        json!({"customer_id": cid, "category": "rude", "description": "x"}),
    );
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("service_attitude"),
        "{body}"
    );
    let (status, _) = post(
        &dora,
        "/api/v1/complaints",
        json!({"customer_id": "nobody", "category": "other", "description": "x"}),
    );
    assert_eq!(
        status, 422,
        "an unknown customer breaks a rule, not the schema"
    );
    let future = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let (status, _) = post(
        &dora,
        "/api/v1/complaints",
        json!({"customer_id": cid, "category": "other", "description": "x", "received_at": future}),
    );
    assert_eq!(status, 422, "a complaint received in the future");
    // A ticket of another customer: the shape is right, the pairing is not.
    let other = customer(&server, &dora, "Happy Bakers");
    let (status, t) = post(
        &dora,
        "/api/v1/tickets",
        json!({"customer_id": other, "product": "Oven", "fault_description": "cold", "priority": "C"}),
    );
    assert_eq!(status, 201, "{t}");
    let (status, body) = post(
        &dora,
        "/api/v1/complaints",
        json!({"customer_id": cid, "doc_id": t["document_id"], "category": "other", "description": "x"}),
    );
    assert_eq!(status, 422, "{body}");

    // Entered 20 minutes after the customer called: the 10-minute response
    // is breached by 10 minutes, half its target again, so every tier is
    // told at once (dora, who recorded it; supervisors; managers). The
    // resolution (5 working days) is on time.
    let received = chrono::Utc::now() - chrono::Duration::minutes(20);
    let received_s = received.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (status, k) = post(
        &dora,
        "/api/v1/complaints",
        json!({"customer_id": cid, "category": "service_attitude", "description": "the technician was rude",
               "received_at": received_s}),
    );
    assert_eq!(status, 201, "{k}");
    assert_eq!(
        k["repair_doc_id"], "",
        "only product-quality complaints open a repair job"
    );
    let id = k["id"].as_str().unwrap().to_string();
    let subject = format!("complaint:{id}");
    assert_eq!(k["respond_state"], "breached", "{k}");
    assert_eq!(k["resolve_state"], "on_time", "{k}");
    assert_eq!(k["start_state"], "on_time", "{k}");
    let due = chrono::DateTime::parse_from_rfc3339(k["respond_due_at"].as_str().unwrap()).unwrap();
    assert_eq!(due.timestamp(), received.timestamp() + 600);
    assert_eq!(
        escalations_of(&server, &sue, &subject),
        [
            "complaint_respond:manager",
            "complaint_respond:supervisor",
            "complaint_respond:technician"
        ]
    );
    let esc = get(&server, &dora, "/api/v1/escalations?mine=true");
    assert!(
        esc["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["doc_id"] == subject.as_str()),
        "{esc}"
    );
    assert_eq!(
        get(&server, &sue, "/api/v1/complaints?state=breached")["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Answered (late), then resolved with the customer still unsatisfied:
    // a second contact is scheduled; the record cannot be resolved twice.
    let (status, k) = post(
        &dora,
        &format!("/api/v1/complaints/{id}/respond"),
        json!({"note": "called, apologised"}),
    );
    assert_eq!(status, 200, "{k}");
    assert_eq!(k["respond_state"], "met_late");
    let (status, _) = post(
        &dora,
        &format!("/api/v1/complaints/{id}/respond"),
        json!({"note": "again"}),
    );
    assert_eq!(status, 409);
    let (status, k) = post(
        &sue,
        &format!("/api/v1/complaints/{id}/resolve"),
        json!({"resolution": "another technician will visit", "customer_satisfied": false}),
    );
    assert_eq!(status, 200, "{k}");
    assert_eq!(
        (
            k["resolve_state"].as_str(),
            k["customer_satisfied"].as_bool()
        ),
        (Some("met"), Some(false))
    );
    let (status, _) = post(
        &sue,
        &format!("/api/v1/complaints/{id}/resolve"),
        json!({"resolution": "again"}),
    );
    assert_eq!(status, 409);
    let callbacks = get(
        &server,
        &dora,
        &format!("/api/v1/callbacks?customer_id={cid}"),
    );
    assert!(
        callbacks["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["doc_id"] == subject.as_str() && c["reason"] == "complaint_second_contact"),
        "{callbacks}"
    );
    assert!(get(&server, &dora, "/api/v1/complaints?open=true")["items"]
        .as_array()
        .unwrap()
        .is_empty());

    // A complaint nobody answers: two weeks on, the timer finds all three
    // limits breached (5 working days are at most 7 calendar days without
    // holidays; another 7 days is at least 5 more working days, past half
    // the target again) and escalates the resolution to every tier too.
    let (status, k) = post(
        &dora,
        "/api/v1/complaints",
        json!({"customer_id": cid, "category": "delivery_delay", "description": "parts never came"}),
    );
    assert_eq!(status, 201, "{k}");
    let quiet = format!("complaint:{}", k["id"].as_str().unwrap());
    drop(server);
    let server = server_at(&db, 14 * 86400);
    let sue = server.login("sue", "sue-password");
    wait_for("the timer to escalate the resolution", || {
        escalations_of(&server, &sue, &quiet).contains(&"complaint_resolve:supervisor".to_string())
    });
    let k = get(
        &server,
        &sue,
        &format!(
            "/api/v1/complaints/{}",
            quiet.trim_start_matches("complaint:")
        ),
    );
    assert_eq!(
        (
            k["respond_state"].as_str(),
            k["start_state"].as_str(),
            k["resolve_state"].as_str()
        ),
        (Some("breached"), Some("breached"), Some("breached")),
        "{k}"
    );
    // Once per tier and target, however many sweeps pass.
    std::thread::sleep(Duration::from_millis(800));
    let all = escalations_of(&server, &sue, &quiet);
    assert_eq!(
        all,
        [
            "complaint_resolve:manager",
            "complaint_resolve:supervisor",
            "complaint_resolve:technician",
            "complaint_respond:manager",
            "complaint_respond:supervisor",
            "complaint_respond:technician",
            "complaint_start:manager",
            "complaint_start:supervisor",
            "complaint_start:technician"
        ]
    );

    // A product-quality complaint opens a repair job (priority A, the
    // customer's asset, reported via the complaint) linked to it; with
    // `open_repair: false` it does not.
    let dora = server.login("dora", "dora-password");
    let post = |token: &str, path: &str, body: Value| {
        http(server.port, "POST", path, Some(token), Some(body))
    };
    let (status, asset) = post(
        &dora,
        &format!("/api/v1/customers/{cid}/assets"),
        json!({"product": "Grain mill", "model": "GM-7", "serial": "SN-9012"}),
    );
    assert_eq!(status, 201, "{asset}");
    let (status, k) = post(
        &dora,
        "/api/v1/complaints",
        json!({"customer_id": cid, "category": "product_quality", "description": "the new mill jams again",
               "asset_id": asset["id"]}),
    );
    assert_eq!(status, 201, "{k}");
    let repair = k["repair_doc_id"].as_str().unwrap().to_string();
    assert!(!repair.is_empty(), "{k}");
    let t = get(&server, &dora, &format!("/api/v1/tickets/{repair}"));
    assert_eq!(
        (
            t["priority"].as_str(),
            t["reported_via"].as_str(),
            t["customer_id"].as_str(),
            t["serial"].as_str()
        ),
        (
            Some("A"),
            Some("complaint"),
            Some(cid.as_str()),
            Some("SN-9012")
        ),
        "{t}"
    );
    assert!(t["fault_description"]
        .as_str()
        .unwrap()
        .contains("the new mill jams again"));
    let stored = get(
        &server,
        &dora,
        &format!("/api/v1/complaints/{}", k["id"].as_str().unwrap()),
    );
    assert_eq!(stored["repair_doc_id"], repair.as_str());
    // Starting the handling (within 24 h) also answers the customer; once.
    let start = format!("/api/v1/complaints/{}/start", k["id"].as_str().unwrap());
    let (status, started) = post(&dora, &start, json!({}));
    assert_eq!(status, 200, "{started}");
    assert_eq!(
        (
            started["start_state"].as_str(),
            started["respond_state"].as_str()
        ),
        (Some("met"), Some("met")),
        "{started}"
    );
    assert_eq!(post(&dora, &start, json!({})).0, 409);
    let (status, k) = post(
        &dora,
        "/api/v1/complaints",
        json!({"customer_id": cid, "category": "product_quality", "description": "noise", "open_repair": false}),
    );
    assert_eq!(
        (status, k["repair_doc_id"].as_str()),
        (201, Some("")),
        "{k}"
    );
}

on_both_backends!(
    a_survey_link_is_answered_once,
    complaints_are_answered_resolved_and_escalated
);
