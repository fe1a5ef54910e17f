//! KPIs and periodic reports end to end (issue 11 §4), on both backends: a
//! small month of history built through the real server (REST for the
//! office, the Rust device client for the technicians, the service clock
//! moved forward for what only time does), then the monthly report over the
//! API and from the CLI, every figure compared with the table below.
//!
//! Status events carry the server's own (wall-clock) time, and a device's
//! step counts no earlier than the step before it, so the whole ticket
//! timeline happens "now": the report is the month containing the first
//! ticket's creation (UTC; no calendar is set). Visit and appointment times
//! are what the device and the dispatcher write, so they are fixed below.
//! The callback interval is set to 60 minutes so that "late" needs only a
//! 3 h 10 min clock offset (the test assumes the month does not end within
//! those 3 hours of the run).
//!
//! The history, worked by hand (default KPI policy, labour 60.00 an hour;
//! catalogue MTR-40 320.00, BLT-12 15.00):
//!
//! | ticket | prio | tech | visits (arrived–departed, fixed) | appointment | parts | survey | after |
//! |---|---|---|---|---|---|---|---|
//! | T1 | B | tom | 09:30–11:00 yes (90 min) | 09:00–11:00: punctual | MTR-40 ×1 = 32000 | 5,5,5 satisfied | |
//! | T2 | B | tom | 12:30–13:30 no (60), next day 08:00–08:45 yes (45) | 10:00–12:00: late | BLT-12 ×2 = 3000 | 2,3,3 unsatisfied, low | |
//! | T3 | C | tina | 10:00–10:30 yes (30) | none | — | 4,4,4 satisfied | reopened |
//! | T4 | A | tina | — (never started: respond breached at +3 h 10) | | | | |
//! | T5 | B | tom | — | | | | cancelled |
//!
//! T1 and T2 are on the same asset (Dough mixer DM-40) with the same fault.
//! Callbacks (due 60 min after completion / after the low survey): T1
//! completion and T2 low-score done at once (on time); T2 and T3 completion
//! done at +3 h 10 (late). Complaints: K1 about T2 (tom) resolved after 6 h;
//! K2 without a ticket, open.
//!
//! | KPI | company | tom | tina |
//! |---|---|---|---|
//! | CSAT | T1, T3 of T1–T3: 2 / 3 | 1 / 2 | 1 / 1 |
//! | first-time fix | T1 only (T2 two visits, T3 reopened): 1 / 3 | 1 / 2 | 0 / 1 |
//! | on-site fix | 3 / 3 | 2 / 2 | 1 / 1 |
//! | response on time | T1–T3 met, T4 breached: 3 / 4 | 2 / 2 | 1 / 2 |
//! | resolution on time | T1–T3 met, T4 still running: 3 / 3 | 2 / 2 | 1 / 1 |
//! | MTTR | Σ(completion − creation) / 3 (from the tickets' own stamps) | / 2 | / 1 |
//! | completion | T1–T3 of T1–T4: 3 / 4 | 2 / 2 | 1 / 2 |
//! | punctuality | T1 of T1, T2: 1 / 2 | 1 / 2 | 0 / 0 n/a |
//! | callbacks on time | 2 / 4 | 2 / 3 | 0 / 1 |
//! | complaint rate | 2 / 3 | 1 / 2 | 0 / 1 |
//! | complaint handling | 360 / 1 | 360 / 1 | 0 / 0 n/a |
//! | service cost | (9000+32000) + (10500+3000) + 3000 = 57500 / 3 | 54500 / 2 | 3000 / 1 |
//!
//! Overview: 4 opened, 3 completed, 1 cancelled, 4 visits, 225 labour
//! minutes = 22500, parts 35000, 3 surveys, 4 callbacks due, 2 complaints,
//! 1 breached (T4).

mod common;

use common::{
    add_users, cli, get_json as get, http, http_full, server_with_clock as server_at, wait_for,
    Server, TestDb, WAIT,
};
use fieldsync_shared::client::{Device, DocStatus};
use fieldsync_shared::status::Status;
use fieldsync_shared::ticket::{self, PartUsed, Survey};
use fieldsync_shared::DocumentId;
use serde_json::{json, Value};

fn send(server: &Server, token: &str, method: &str, path: &str, body: Value) -> Value {
    let (status, resp) = http(server.port, method, path, Some(token), Some(body));
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {resp}"
    );
    resp
}

/// The service clock's offset of the second half of the test (3 h 10 min).
const OFFSET: i64 = 3 * 3600 + 600;

/// Runs SQL on the test database (either backend): the complaints are
/// written directly, so that one is resolved at a chosen time (six hours
/// after it was received, later than the test runs).
fn exec_sql(db: &TestDb, sql: &str) {
    use diesel::{Connection, RunQueryDsl};
    match db.backend {
        common::Backend::Sqlite => {
            let mut c = diesel::SqliteConnection::establish(&db.url).unwrap();
            diesel::sql_query(sql).execute(&mut c).unwrap();
        }
        common::Backend::Postgres => {
            let mut c = diesel::PgConnection::establish(&db.url).unwrap();
            diesel::sql_query(sql).execute(&mut c).unwrap();
        }
    }
}

fn time(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

struct Visit {
    id: &'static str,
    arrived: &'static str,
    departed: &'static str,
    fixed: bool,
}

/// The technician's phone works the ticket: en route, on site, the visits,
/// the parts, completed, the survey.
async fn work(
    phone: &Device,
    id: DocumentId,
    tech_id: &str,
    visits: &[Visit],
    parts: &[(&str, i64)],
    survey: (i64, i64, i64),
) {
    phone.want(id);
    phone
        .wait_until(WAIT, "the ticket", |d| {
            d.status(id) == Some(DocStatus::Local)
        })
        .await
        .unwrap();
    let step = |s: Status| {
        phone
            .change(id, |d| ticket::set_status(d, s).unwrap())
            .unwrap()
    };
    step(Status::EnRoute);
    step(Status::OnSite);
    for v in visits {
        phone
            .change(id, |d| {
                ticket::check_in(d, v.id, tech_id, v.arrived).unwrap();
                ticket::check_out(d, v.id, v.departed, "worked", "result", v.fixed).unwrap();
            })
            .unwrap();
    }
    phone
        .change(id, |d| {
            for (i, (part_no, qty)) in parts.iter().enumerate() {
                let p = PartUsed {
                    id: format!("p{i}"),
                    part_no: part_no.to_string(),
                    qty: *qty,
                    serial: String::new(),
                    source: "warehouse".into(),
                    visit_id: visits[0].id.into(),
                    technician_id: tech_id.into(),
                };
                ticket::add_part(d, &p).unwrap();
            }
        })
        .unwrap();
    step(Status::Completed);
    let (e, a, r) = survey;
    phone
        .change(id, |d| {
            let s = Survey {
                scale: 5,
                efficiency: Some(e),
                attitude: Some(a),
                reasonableness: Some(r),
                comment: String::new(),
            };
            ticket::set_survey(d, &s).unwrap()
        })
        .unwrap();
    phone.wait_acknowledged(id, WAIT).await.unwrap();
}

/// The KPI `key` of a list of KPI lines: (numerator, denominator, value).
fn figure(lines: &Value, key: &str) -> (i64, i64, Option<f64>) {
    let k = lines
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kpi"] == key)
        .unwrap_or_else(|| panic!("no KPI {key} in {lines}"));
    (
        k["numerator"].as_i64().unwrap(),
        k["denominator"].as_i64().unwrap(),
        k["value"].as_f64(),
    )
}

fn minutes(from: &str, to: &str) -> i64 {
    ((time(to) - time(from)).num_seconds() + 30).div_euclid(60)
}

async fn a_month_of_history_gives_the_hand_computed_report(db: TestDb) {
    add_users(
        &db,
        &[
            ("dora", "dispatcher"),
            ("bob", "back_office"),
            ("sue", "supervisor"),
            ("tom", "technician"),
            ("tina", "technician"),
        ],
    );
    let server = server_at(&db, 0);
    let (dora, bob, tom, tina) = (
        server.login("dora", "dora-password"),
        server.login("bob", "bob-password"),
        server.login("tom", "tom-password"),
        server.login("tina", "tina-password"),
    );
    let tom_id = get(&server, &tom, "/api/v1/me")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let tina_id = get(&server, &tina, "/api/v1/me")["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Callbacks due an hour after completion (so "late" is 3 hours away).
    send(
        &server,
        &server.token,
        "PUT",
        "/api/v1/policy",
        json!({"closed_loop": {"callback_after_minutes": 60}}),
    );
    for (no, name, cents) in [("MTR-40", "Mixer motor", 32000), ("BLT-12", "Belt", 1500)] {
        send(
            &server,
            &bob,
            "PUT",
            &format!("/api/v1/parts/{no}"),
            json!({"name": name, "unit_cost_cents": cents, "active": true}),
        );
    }
    let customer = send(
        &server,
        &dora,
        "POST",
        "/api/v1/customers",
        json!({"name": "Acme Bakery", "phone": "+86 10 5555 0100", "address": "1 Oven Road"}),
    );
    let cid = customer["id"].as_str().unwrap().to_string();
    let asset = send(
        &server,
        &dora,
        "POST",
        &format!("/api/v1/customers/{cid}/assets"),
        json!({"product": "Dough mixer", "model": "DM-40", "serial": "SN-778",
               "purchased_at": "2024-03-01", "warranty_until": "2027-03-01"}),
    );
    let asset_id = asset["id"].as_str().unwrap().to_string();
    let mut tickets = Vec::new(); // (document id, ticket number)
    for (prio, tech, fault, on_asset) in [
        ("B", "tom", "Motor stops under load", true),
        ("B", "tom", "Motor  stops under LOAD", true),
        ("C", "tina", "Display flickers", false),
        ("A", "tina", "Smoke from the motor", false),
        ("B", "tom", "Noisy belt", false),
    ] {
        let mut body = json!({"customer_id": cid, "fault_description": fault,
                              "priority": prio, "technician": tech});
        if on_asset {
            body["asset_id"] = json!(asset_id);
        } else {
            body["product"] = json!("Oven");
        }
        let t = send(&server, &dora, "POST", "/api/v1/tickets", body);
        let id = DocumentId::parse_url_or_id(t["url"].as_str().unwrap()).unwrap();
        tickets.push((id, t["ticket_no"].as_str().unwrap().to_string()));
    }
    let doc = |i: usize| tickets[i].0.to_string();
    // The problems list tickets by number.
    let mut t1_t2 = [tickets[0].1.clone(), tickets[1].1.clone()];
    t1_t2.sort();
    for (i, start, end) in [
        (0, "2026-11-20T09:00:00Z", "2026-11-20T11:00:00Z"),
        (1, "2026-11-21T10:00:00Z", "2026-11-21T12:00:00Z"),
    ] {
        send(
            &server,
            &dora,
            "PUT",
            &format!("/api/v1/tickets/{}/appointment", doc(i)),
            json!({"start": start, "end": end}),
        );
    }
    send(
        &server,
        &dora,
        "POST",
        &format!("/api/v1/tickets/{}/cancel", doc(4)),
        json!({"reason": "customer fixed it"}),
    );

    let tom_phone = Device::new("tom-phone-peer");
    tom_phone
        .connect(&server.sync_url_for(&tom, "tom-phone"))
        .await
        .unwrap();
    let tina_phone = Device::new("tina-phone-peer");
    tina_phone
        .connect(&server.sync_url_for(&tina, "tina-phone"))
        .await
        .unwrap();
    let v = |id, arrived, departed, fixed| Visit {
        id,
        arrived,
        departed,
        fixed,
    };
    work(
        &tom_phone,
        tickets[0].0,
        &tom_id,
        &[v(
            "v1",
            "2026-11-20T09:30:00Z",
            "2026-11-20T11:00:00Z",
            true,
        )],
        &[("MTR-40", 1)],
        (5, 5, 5),
    )
    .await;
    work(
        &tom_phone,
        tickets[1].0,
        &tom_id,
        &[
            v("v1", "2026-11-21T12:30:00Z", "2026-11-21T13:30:00Z", false),
            v("v2", "2026-11-22T08:00:00Z", "2026-11-22T08:45:00Z", true),
        ],
        &[("BLT-12", 2)],
        (2, 3, 3),
    )
    .await;
    work(
        &tina_phone,
        tickets[2].0,
        &tina_id,
        &[v(
            "v1",
            "2026-11-23T10:00:00Z",
            "2026-11-23T10:30:00Z",
            true,
        )],
        &[],
        (4, 4, 4),
    )
    .await;
    // Completion callbacks for T1–T3 and T2's low score.
    let callbacks = || get(&server, &dora, "/api/v1/callbacks");
    wait_for("four callbacks", || {
        callbacks()["items"].as_array().unwrap().len() == 4
    });
    send(
        &server,
        &dora,
        "POST",
        &format!("/api/v1/tickets/{}/reopen", doc(2)),
        json!({"reason": "flickers again"}),
    );
    let callback_id = |i: usize, reason: &str| -> String {
        callbacks()["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["doc_id"] == doc(i).as_str() && c["reason"] == reason)
            .unwrap_or_else(|| panic!("no {reason} callback for T{}", i + 1))["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let outcome = |server: &Server, token: &str, id: &str| {
        send(
            server,
            token,
            "POST",
            &format!("/api/v1/callbacks/{id}/outcome"),
            json!({"reached": true, "solved": true, "note": "ok"}),
        );
    };
    let late_ones = [callback_id(1, "completion"), callback_id(2, "completion")];
    outcome(&server, &dora, &callback_id(0, "completion"));
    outcome(&server, &dora, &callback_id(1, "low_score"));

    // The month: the one T1 was registered in.
    let t1 = get(&server, &dora, &format!("/api/v1/tickets/{}", doc(0)));
    let created = t1["created_at"].as_str().unwrap().to_string();
    let month = created[..7].to_string();
    // Complaints (see `exec_sql`): K1 about T2, resolved six hours after it
    // was received; K2 about no ticket, open.
    let received = time(&created);
    let fmt =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (r, solved) = (fmt(received), fmt(received + chrono::Duration::hours(6)));
    exec_sql(
        &db,
        &format!(
            "INSERT INTO complaints (id, customer_id, doc_id, ticket_no, category, description,
               received_at, created_by, created_at, responded_at, responded_by, response_note,
               resolved_at, resolved_by, resolution, customer_satisfied, respond_state,
               respond_due_at, resolve_state, resolve_due_at, start_state, start_due_at) VALUES
             ('k1', '{cid}', '{d2}', '{n2}', 'service_attitude', 'rude', '{r}', 'dora', '{r}',
              '{r}', 'dora', 'called', '{solved}', 'dora', 'apologised', TRUE, 'met', '{r}', 'met', '{solved}',
              'met', '{solved}'),
             ('k2', '{cid}', '', '', 'delivery_delay', 'late', '{r}', 'dora', '{r}',
              NULL, NULL, '', NULL, NULL, '', NULL, 'on_time', '{r}', 'on_time', '{solved}',
              'on_time', '{solved}')",
            d2 = doc(1),
            n2 = tickets[1].1,
        ),
    );
    // MTTR from the tickets' own stamps: registration to first completion.
    let mttr: Vec<i64> = (0..3)
        .map(|i| {
            let t = get(&server, &dora, &format!("/api/v1/tickets/{}", doc(i)));
            let sla = get(&server, &dora, &format!("/api/v1/tickets/{}/sla", doc(i)));
            minutes(
                t["created_at"].as_str().unwrap(),
                sla["sla"]["resolve"]["met_at"].as_str().unwrap(),
            )
        })
        .collect();
    drop(server);

    // 3 h 10 min later: T4's 2-hour response is breached; the two other
    // callbacks are done late.
    let server = server_at(&db, OFFSET);
    let (dora, sue, tom) = (
        server.login("dora", "dora-password"),
        server.login("sue", "sue-password"),
        server.login("tom", "tom-password"),
    );
    wait_for("T4 breached", || {
        get(&server, &dora, "/api/v1/tickets?sla=breached")["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["doc_id"] == doc(3).as_str())
    });
    for id in &late_ones {
        outcome(&server, &dora, id);
    }

    let path = format!("/api/v1/reports/month?at={month}");
    let fetch = |token: &str, format: &str| {
        http_full(
            server.port,
            "GET",
            &format!("{path}&format={format}"),
            Some(token),
            "text/plain",
            b"",
        )
    };
    let reply = fetch(&sue, "json");
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let report = reply.json();
    assert_eq!(report["period"]["label"], month.as_str());
    assert_eq!(report["period"]["kind"], "month");
    assert_eq!(report["period"]["final"], false);
    let o = &report["overview"];
    let overview: Vec<i64> = [
        "jobs_opened",
        "jobs_completed",
        "jobs_cancelled",
        "visits",
        "labour_minutes",
        "labour_cost_cents",
        "parts_cost_cents",
        "surveys",
        "callbacks_due",
        "complaints_received",
        "tickets_breached",
    ]
    .iter()
    .map(|k| o[k].as_i64().unwrap())
    .collect();
    assert_eq!(overview, [4, 3, 1, 4, 225, 22500, 35000, 3, 4, 2, 1], "{o}");

    // The hand-computed table (module comment): (company, tom, tina).
    let mttr_all: i64 = mttr.iter().sum();
    type Row = (&'static str, (i64, i64), (i64, i64), (i64, i64));
    let table: [Row; 12] = [
        ("csat", (2, 3), (1, 2), (1, 1)),
        ("first_time_fix", (1, 3), (1, 2), (0, 1)),
        ("on_site_fix", (3, 3), (2, 2), (1, 1)),
        ("response_on_time", (3, 4), (2, 2), (1, 2)),
        ("resolution_on_time", (3, 3), (2, 2), (1, 1)),
        ("mttr", (mttr_all, 3), (mttr[0] + mttr[1], 2), (mttr[2], 1)),
        ("completion", (3, 4), (2, 2), (1, 2)),
        ("punctuality", (1, 2), (1, 2), (0, 0)),
        ("callback_on_time", (2, 4), (2, 3), (0, 1)),
        ("complaint_rate", (2, 3), (1, 2), (0, 1)),
        ("complaint_handling", (360, 1), (360, 1), (0, 0)),
        ("service_cost", (57500, 3), (54500, 2), (3000, 1)),
    ];
    let techs = report["technicians"].as_array().unwrap();
    let names: Vec<&str> = techs
        .iter()
        .map(|t| t["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tina", "tom"], "ordered by username");
    let (tina_kpis, tom_kpis) = (&techs[0]["kpis"], &techs[1]["kpis"]);
    for (key, company, tom_f, tina_f) in table {
        let got = figure(&report["kpis"], key);
        assert_eq!((got.0, got.1), company, "company {key}");
        let got = figure(tom_kpis, key);
        assert_eq!((got.0, got.1), tom_f, "tom {key}");
        let got = figure(tina_kpis, key);
        assert_eq!((got.0, got.1), tina_f, "tina {key}");
    }
    // Values, targets, met: a few by hand.
    let line = |key: &str| {
        report["kpis"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kpi"] == key)
            .unwrap()
            .clone()
    };
    assert_eq!(line("csat")["value"], 66.67);
    assert_eq!(line("csat")["target"], 85.0);
    assert_eq!(line("csat")["met"], false);
    assert_eq!(line("csat")["display"], "2 / 3 = 66.67 %");
    assert_eq!(line("on_site_fix")["met"], true);
    assert_eq!(line("service_cost")["value"], 19166.67);
    assert_eq!(line("service_cost")["met"], Value::Null, "no cost target");
    assert_eq!(
        line("complaint_handling")["display"],
        "360 / 1 = 360.00 min"
    );
    assert_eq!(figure(tina_kpis, "punctuality").2, None, "n/a, not 0");

    // Problems: the repeated fault and asset, T4 breached.
    let p = &report["problems"];
    assert_eq!(p["top_faults"][0]["key"], "motor stops under load");
    assert_eq!(p["top_faults"][0]["tickets"], json!(t1_t2));
    assert_eq!(p["top_faults"].as_array().unwrap().len(), 3, "{p}");
    assert_eq!(p["repeat_assets"].as_array().unwrap().len(), 1, "{p}");
    assert_eq!(p["repeat_assets"][0]["tickets"], json!(t1_t2));
    assert!(p["repeat_models"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["key"] == "Dough mixer / DM-40" && m["count"] == 2));
    let breached = p["breached"].as_array().unwrap();
    assert_eq!(breached.len(), 1, "{p}");
    assert_eq!(breached[0]["ticket_no"], tickets[3].1.as_str());
    assert_eq!(
        (
            breached[0]["respond"].as_str(),
            breached[0]["technician"].as_str()
        ),
        (Some("breached"), Some("tina"))
    );
    // Trend: three earlier months with nothing in them, then this one.
    let trend = report["trends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kpi"] == "csat")
        .unwrap();
    let points = trend["points"].as_array().unwrap();
    assert_eq!(points.len(), 4);
    assert_eq!(points[3]["period"], month.as_str());
    assert_eq!(
        (
            points[3]["numerator"].as_i64(),
            points[3]["denominator"].as_i64()
        ),
        (Some(2), Some(3))
    );
    assert!(points[..3]
        .iter()
        .all(|p| p["denominator"] == 0 && p["value"].is_null()));

    // Reproducible: fetched again, the same bytes; the CLI gives them too.
    assert_eq!(fetch(&sue, "json").body, reply.body);
    let out = cli(
        &db.url,
        &[
            "report",
            "--period",
            "month",
            "--at",
            &month,
            "--format",
            "json",
            // The server's service clock (a running month is judged as of it).
            "--clock-offset-secs",
            &OFFSET.to_string(),
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&reply.body),
        "the CLI's report is the API's"
    );
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(
        progress.contains("period") && progress.contains("computed (4/4)"),
        "{progress}"
    );

    // CSV: a header, every row the same width, the figures as in JSON.
    let csv = fetch(&sue, "csv");
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let text = String::from_utf8(csv.body.clone()).unwrap();
    let mut rows = text.split("\r\n").filter(|l| !l.is_empty());
    let header = rows.next().unwrap();
    assert!(header.starts_with("section,scope,period,key,name,numerator,denominator,value"));
    let width = header.split(',').count();
    let rows: Vec<&str> = rows.collect();
    for r in &rows {
        // No field of this history holds a comma or a quote.
        assert_eq!(r.split(',').count(), width, "{r}");
    }
    assert!(
        rows.iter().any(|r| r.starts_with(&format!(
            "kpi,company,{month},csat,CSAT,2,3,66.67,percent,85,min,false,"
        ))),
        "{text}"
    );
    assert!(rows
        .iter()
        .any(|r| r.starts_with(&format!("kpi,technician:tom,{month},service_cost,"))));
    assert_eq!(fetch(&sue, "csv").body, csv.body);

    // SVG: well-formed XML with the bars and the trend lines.
    let svg = fetch(&sue, "svg");
    assert_eq!(svg.status, 200);
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    let text = String::from_utf8(svg.body.clone()).unwrap();
    let xml = roxmltree::Document::parse(&text).expect("the SVG parses as XML");
    assert_eq!(xml.root_element().tag_name().name(), "svg");
    assert!(
        xml.descendants()
            .any(|n| n.has_tag_name("text")
                && n.text().unwrap_or("").contains("KPIs against targets"))
    );
    assert!(xml.descendants().filter(|n| n.has_tag_name("rect")).count() > 9);
    assert!(xml
        .descendants()
        .any(|n| n.has_tag_name("polyline") && n.attribute("stroke-width") == Some("2")));
    assert_eq!(fetch(&sue, "svg").body, svg.body);

    // Who and what: technicians read no report, only their own KPIs; bad
    // periods and formats are refused.
    assert_eq!(fetch(&tom, "json").status, 403);
    for bad in [
        "/api/v1/reports/fortnight?at=2026-11",
        "/api/v1/reports/month?at=2026-13",
        "/api/v1/reports/week?at=2026-11",
        "/api/v1/reports/month?at=2026-11&format=pdf",
    ] {
        let (status, body) = http(server.port, "GET", bad, Some(&sue), None);
        // No such period kind is no such resource (404); a period of the
        // documented shape that does not exist (month 13, a month for a
        // week) breaks a rule (422); a format outside the enum is 400.
        let want = if bad.contains("fortnight") {
            404
        } else if bad.contains("format=pdf") {
            400
        } else {
            422
        };
        assert_eq!(status, want, "{bad}: {body}");
    }
    let day = &created[..10];
    let kpis = get(&server, &tom, &format!("/api/v1/kpis?from={day}&to={day}"));
    assert_eq!(kpis["technician"], "tom");
    assert_eq!(figure(&kpis["kpis"], "csat"), (1, 2, Some(50.0)));
    let (status, _) = http(
        server.port,
        "GET",
        &format!("/api/v1/kpis?from={day}&to={day}&technician=tina"),
        Some(&tom),
        None,
    );
    assert_eq!(status, 403);
    let kpis = get(&server, &sue, &format!("/api/v1/kpis?from={day}&to={day}"));
    assert_eq!(
        figure(&kpis["kpis"], "response_on_time"),
        (3, 4, Some(75.0))
    );
    let (status, _) = http(
        server.port,
        "GET",
        "/api/v1/kpis?from=x&to=y",
        Some(&sue),
        None,
    );
    assert_eq!(status, 400);
    // A technician's own KPIs span at most a quarter; the office's three
    // years (a bounded read either way).
    let (status, body) = http(
        server.port,
        "GET",
        "/api/v1/kpis?from=2026-01-01&to=2026-06-30",
        Some(&tom),
        None,
    );
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("93 days"),
        "{body}"
    );
    assert_eq!(
        http(
            server.port,
            "GET",
            "/api/v1/kpis?from=2026-01-01&to=2026-06-30",
            Some(&sue),
            None
        )
        .0,
        200
    );

    // Targets are policy: a CSAT target of 60 % is met by 66.67 %; nonsense
    // is refused with the field named.
    let (status, body) = http(
        server.port,
        "PUT",
        "/api/v1/policy",
        Some(&server.token),
        Some(json!({"kpi": {"csat_percent": 101}})),
    );
    assert_eq!(status, 422);
    assert!(body.to_string().contains("kpi.csat_percent"), "{body}");
    send(
        &server,
        &server.token,
        "PUT",
        "/api/v1/policy",
        json!({"closed_loop": {"callback_after_minutes": 60}, "kpi": {"csat_percent": 60}}),
    );
    assert_eq!(
        get(&server, &sue, "/api/v1/policy")["kpi"]["csat_percent"],
        60.0
    );
    let again = fetch(&sue, "json").json();
    let csat = again["kpis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kpi"] == "csat")
        .unwrap()
        .clone();
    assert_eq!(
        (csat["target"].clone(), csat["met"].clone()),
        (json!(60.0), json!(true))
    );
    // A completed job reassigned afterwards stays the technician's who did
    // it: T1 moves to tina, tom's figures (CSAT 1 / 2, callbacks 2 / 3) and
    // hers do not change.
    send(
        &server,
        &dora,
        "PUT",
        &format!("/api/v1/tickets/{}/assignment", doc(0)),
        json!({"technician": "tina"}),
    );
    let tom_kpis = get(&server, &tom, &format!("/api/v1/kpis?from={day}&to={day}"));
    assert_eq!(figure(&tom_kpis["kpis"], "csat"), (1, 2, Some(50.0)));
    assert_eq!(
        figure(&tom_kpis["kpis"], "callback_on_time"),
        (2, 3, Some(66.67))
    );
    let tina_kpis = get(
        &server,
        &sue,
        &format!("/api/v1/kpis?from={day}&to={day}&technician=tina"),
    );
    assert_eq!(figure(&tina_kpis["kpis"], "csat"), (1, 1, Some(100.0)));
}

on_both_backends!(a_month_of_history_gives_the_hand_computed_report);
