//! Merge integrity: what write validation and status settlement do when the
//! forbidden or the legal edit arrives as one side of a *concurrent* edit.
//! Regression tests, real server, real Rust device clients, both backends:
//!
//! - A technician's forbidden status (`reconciled`, `cancelled`) written
//!   offline, concurrently with a legal status change, lands as the *losing*
//!   value of an Automerge conflict. Validation compares visible values, so
//!   it must still be caught: it is never allowed to become the status (the
//!   settlement "furthest along the lifecycle wins" must not promote it), the
//!   status history must not credit the technician with it, and it is
//!   quarantined like any other forbidden edit.
//! - Acknowledged work is never hidden by a container replacement: neither by
//!   the compensation that undoes a back-office edit of `visits`/`notes`, nor
//!   by a device replacing the whole `visits` list (`doc.visits = [...]`)
//!   concurrently with another device's insert into the old list.
//!
//! Each test runs its sub-cases on one server and reports every sub-case that
//! went wrong (with what and why) before failing, so one run shows all of it.

mod common;

use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ObjType, ReadDoc, ROOT};
use common::{add_users, http, Server, TestDb};
use fieldsync_shared::client::{Device, DocStatus};
use fieldsync_shared::status::Status;
use fieldsync_shared::ticket::{self, Ticket};
use fieldsync_shared::DocumentId;
use serde_json::{json, Value};

/// Generous for a first fetch; every step here normally takes milliseconds.
const WAIT: Duration = Duration::from_secs(10);
/// Convergence after everything is acknowledged.
const CONVERGE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- harness --

/// A REST call that must succeed (a refusal here is a test bug, not the bug
/// under test).
fn api(server: &Server, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
    let (status, resp) = http(server.port, method, path, Some(token), body);
    assert!(
        (200..300).contains(&status),
        "{method} {path} answered {status}: {resp}"
    );
    resp
}

fn user_id(server: &Server, token: &str) -> String {
    api(server, "GET", "/api/v1/me", token, None)["id"]
        .as_str()
        .expect("id in /me")
        .to_string()
}

/// A ticket created through the dispatcher API and assigned to `technician`
/// (status `assigned`).
fn create_ticket(server: &Server, dispatcher: &str, technician: &str, label: &str) -> DocumentId {
    let resp = api(
        server,
        "POST",
        "/api/v1/tickets",
        dispatcher,
        Some(json!({
            "customer_name": "Acme Bakery", "product": "Dough mixer", "model": "DM-40",
            "fault_description": format!("Motor stops under load ({label})"),
            "priority": "B", "reported_via": "phone", "technician": technician
        })),
    );
    DocumentId::parse_url_or_id(resp["url"].as_str().expect("url")).expect("document id")
}

/// A connected device of the user signed in with `token`.
async fn device(server: &Server, token: &str, device_id: &str) -> Device {
    let d = Device::new(format!("{device_id}-peer"));
    d.connect(&server.sync_url_for(token, device_id))
        .await
        .unwrap_or_else(|e| panic!("device {device_id} could not connect: {e}"));
    d
}

/// A fresh replica on a new device of the harness admin.
async fn fresh_device(server: &Server, name: &str) -> Device {
    let d = Device::new(format!("{name}-peer"));
    d.connect(&server.sync_url())
        .await
        .unwrap_or_else(|e| panic!("device {name} could not connect: {e}"));
    d
}

/// Requests the ticket and waits until the device holds everything the
/// server has (the server acknowledged our heads: nothing missing).
async fn fetch(d: &Device, id: DocumentId, who: &str) {
    d.want(id);
    d.wait_until(WAIT, &format!("{who} fetching {id}"), |d| {
        d.status(id) == Some(DocStatus::Local) && d.acknowledged(id)
    })
    .await
    .unwrap_or_else(|e| panic!("{who} could not fetch ticket {id}: {e}"));
}

async fn reconnect(server: &Server, d: &Device, token: &str, device_id: &str) {
    d.connect(&server.sync_url_for(token, device_id))
        .await
        .unwrap_or_else(|e| panic!("{device_id} could not reconnect: {e}"));
}

fn read_ticket(d: &Device, id: DocumentId) -> Ticket {
    d.read(id, |doc| ticket::read(doc).expect("a readable ticket"))
        .expect("the device has the ticket")
}

fn sorted_heads(d: &Device, id: DocumentId) -> Vec<String> {
    let mut h: Vec<String> = d.heads(id).iter().map(|h| h.to_string()).collect();
    h.sort();
    h
}

fn quarantined(server: &Server, dispatcher: &str, id: DocumentId) -> Vec<Value> {
    api(
        server,
        "GET",
        &format!("/api/v1/quarantined-edits?doc_id={id}"),
        dispatcher,
        None,
    )["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Problems found in one sub-case (each says what went wrong and why).
struct Findings {
    case: String,
    problems: Vec<String>,
}

impl Findings {
    fn new(case: impl Into<String>) -> Self {
        Self {
            case: case.into(),
            problems: Vec::new(),
        }
    }

    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.problems.push(what());
        }
    }

    /// Waits until every device holds exactly the reader's heads (the
    /// reader fetched from the server after everything was acknowledged).
    async fn converge(&mut self, id: DocumentId, reader: &Device, others: &[(&str, &Device)]) {
        for (name, d) in others {
            let ok = d
                .wait_until(CONVERGE, "convergence", |d| {
                    sorted_heads(d, id) == sorted_heads(reader, id)
                })
                .await
                .is_ok();
            self.check(ok, || {
                format!(
                    "replicas did not converge: {name} has heads {:?}, the server (a fresh \
                     replica) has {:?}",
                    sorted_heads(d, id),
                    sorted_heads(reader, id)
                )
            });
        }
    }
}

/// Prints every sub-case's outcome; fails if any went wrong.
fn report(test: &str, cases: Vec<Findings>) {
    let mut failed = Vec::new();
    for f in &cases {
        if f.problems.is_empty() {
            eprintln!("{test}: sub-case `{}`: ok", f.case);
        } else {
            eprintln!("{test}: sub-case `{}`: FAILED", f.case);
            failed.push(format!(
                "sub-case `{}`:\n    - {}",
                f.case,
                f.problems.join("\n    - ")
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{test}: {} of {} sub-cases went wrong:\n  {}",
        failed.len(),
        cases.len(),
        failed.join("\n  ")
    );
}

// ---------------------------------------- 1. forbidden status via conflict --

/// Who makes the legal status change concurrently with the technician's
/// offline forbidden one.
#[derive(Clone, Copy, Debug)]
enum LegalStatusChange {
    /// The dispatcher, through the API: cancel, reopen and assign the ticket
    /// to tom again (assigned → cancelled → reopened → assigned).
    DispatcherCancelsReopensReassigns,
    /// Tom's own second device, online: a note, then `en_route`.
    TomsTabletGoesEnRoute,
}

impl LegalStatusChange {
    fn expected(self) -> Status {
        match self {
            Self::DispatcherCancelsReopensReassigns => Status::Assigned,
            Self::TomsTabletGoesEnRoute => Status::EnRoute,
        }
    }
    fn describe(self) -> &'static str {
        match self {
            Self::DispatcherCancelsReopensReassigns => {
                "the dispatcher's concurrent cancel → reopen → reassign (API)"
            }
            Self::TomsTabletGoesEnRoute => "tom's tablet's concurrent en_route",
        }
    }
}

/// Tom's phone, offline with a replica that has not seen the latest status
/// op, sets a status a technician may never set. Its op has a lower counter
/// than the concurrent legal status op, so it is the losing (hidden) value of
/// the conflict on `status` — validation sees only the legal visible value.
async fn forbidden_status_cannot_win_through_a_conflict(db: TestDb) {
    add_users(&db, &[("dora", "dispatcher"), ("tom", "technician")]);
    let server = Server::start(&db, &[]);
    let dora = server.login("dora", "dora-password");
    let tom = server.login("tom", "tom-password");

    // (who makes the legal change, the forbidden value, whether the
    // forbidden op is the hidden loser of the conflict). The last case is a
    // control: the forbidden op wins the tie-break (visible), which
    // validation already catches; it guards against regressions.
    let cases = [
        (
            LegalStatusChange::DispatcherCancelsReopensReassigns,
            Status::Reconciled,
            true,
        ),
        (
            LegalStatusChange::DispatcherCancelsReopensReassigns,
            Status::Cancelled,
            true,
        ),
        (
            LegalStatusChange::TomsTabletGoesEnRoute,
            Status::Reconciled,
            true,
        ),
        (
            LegalStatusChange::TomsTabletGoesEnRoute,
            Status::Cancelled,
            true,
        ),
        (
            LegalStatusChange::TomsTabletGoesEnRoute,
            Status::Reconciled,
            false,
        ),
    ];
    let mut results = Vec::new();
    for (n, (legal, forbidden, hidden)) in cases.into_iter().enumerate() {
        let expected = legal.expected();
        let mut f = Findings::new(format!(
            "technician sets `{forbidden}` offline vs {}{}",
            legal.describe(),
            if hidden {
                ""
            } else {
                " (control: the forbidden value is the visible winner of the conflict)"
            }
        ));
        let id = create_ticket(&server, &dora, "tom", &format!("status case {n}"));

        // Tom's phone fetches the ticket (status `assigned`) and goes offline.
        let phone_id = format!("tom-phone-{n}");
        let phone = device(&server, &tom, &phone_id).await;
        fetch(&phone, id, "tom's phone").await;
        let tablet = match legal {
            LegalStatusChange::TomsTabletGoesEnRoute => {
                let t = device(&server, &tom, &format!("tom-tablet-{n}")).await;
                fetch(&t, id, "tom's tablet").await;
                Some(t)
            }
            _ => None,
        };
        phone.disconnect().await;
        assert_eq!(read_ticket(&phone, id).status, "assigned", "test setup");

        // Offline, the phone's first change: the forbidden status (one op,
        // the lowest counter of anything written after the fetch, so the
        // concurrent legal status op wins the conflict and hides it). In the
        // control case a long note comes first, so the forbidden op has the
        // higher counter and is the visible value.
        phone
            .change(id, |d| {
                if !hidden {
                    ticket::append_note(d, &"Waiting for the customer. ".repeat(10)).unwrap();
                }
                ticket::set_status(d, forbidden).unwrap()
            })
            .unwrap();

        // Meanwhile, the legal concurrent status change reaches the server.
        match legal {
            LegalStatusChange::DispatcherCancelsReopensReassigns => {
                for (method, path, body) in [
                    (
                        "POST",
                        format!("/api/v1/tickets/{id}/cancel"),
                        json!({"reason": "customer called off"}),
                    ),
                    (
                        "POST",
                        format!("/api/v1/tickets/{id}/reopen"),
                        json!({"reason": "customer called back"}),
                    ),
                    (
                        "PUT",
                        format!("/api/v1/tickets/{id}/assignment"),
                        json!({"technician": "tom"}),
                    ),
                ] {
                    api(&server, method, &path, &dora, Some(body));
                }
            }
            LegalStatusChange::TomsTabletGoesEnRoute => {
                let t = tablet.as_ref().unwrap();
                t.change(id, |d| {
                    ticket::append_note(d, "Leaving the depot now. ").unwrap();
                    ticket::set_status(d, Status::EnRoute).unwrap();
                })
                .unwrap();
                t.wait_acknowledged(id, WAIT)
                    .await
                    .expect("the tablet's legal en_route is acknowledged");
            }
        }
        let (_, row) = http(
            server.port,
            "GET",
            &format!("/api/v1/tickets/{id}"),
            Some(&dora),
            None,
        );
        assert_eq!(
            row["status"],
            expected.as_str(),
            "test setup: the legal change must have landed before tom reconnects"
        );

        // Tom's phone reconnects with its offline change.
        reconnect(&server, &phone, &tom, &phone_id).await;
        phone
            .wait_acknowledged(id, WAIT)
            .await
            .expect("the server answers tom's phone");

        let reader = fresh_device(&server, &format!("status-reader-{n}")).await;
        fetch(&reader, id, "a fresh replica").await;
        let mut others: Vec<(&str, &Device)> = vec![("tom's phone", &phone)];
        if let Some(t) = &tablet {
            others.push(("tom's tablet", t));
        }
        f.converge(id, &reader, &others).await;

        let why = if hidden {
            format!(
                "tom's `{forbidden}` (a technician may never set it) arrived as the losing value \
                 of a conflict with {}; validation compared only the visible value and let it \
                 in, then the status settlement (furthest along the lifecycle wins) made it the \
                 winner",
                legal.describe()
            )
        } else {
            format!(
                "tom's `{forbidden}` was the visible value of the conflict with {} and was not \
                 undone",
                legal.describe()
            )
        };
        // The status everywhere.
        let (_, row) = http(
            server.port,
            "GET",
            &format!("/api/v1/tickets/{id}"),
            Some(&dora),
            None,
        );
        let api_status = row["status"].as_str().unwrap_or("").to_string();
        f.check(api_status == expected.as_str(), || {
            format!("GET /api/v1/tickets/{{id}} says status `{api_status}`, expected `{expected}`: {why}")
        });
        for (name, d) in [("a fresh replica", &reader), ("tom's phone", &phone)] {
            let s = read_ticket(d, id).status;
            f.check(s == expected.as_str(), || {
                format!("{name} shows status `{s}`, expected `{expected}`: {why}")
            });
        }

        // The status history must not credit tom with the forbidden step.
        let history = read_ticket(&reader, id).status_history;
        let forged: Vec<String> = history
            .iter()
            .filter(|e| e.to == forbidden.as_str() && e.role == "technician")
            .map(|e| format!("{} → {} by {} ({})", e.from, e.to, e.by, e.role))
            .collect();
        f.check(forged.is_empty(), || {
            format!(
                "the document's status_history records {forged:?}: the server wrote a step a \
                 technician may not make into its evidence"
            )
        });
        let timeline = api(
            &server,
            "GET",
            &format!("/api/v1/tickets/{id}/timeline"),
            &dora,
            None,
        );
        let events: Vec<Value> = timeline["status_events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let forged_rows = events
            .iter()
            .filter(|e| e["to_status"] == forbidden.as_str() && e["by_role"] == "technician")
            .count();
        f.check(forged_rows == 0, || {
            format!(
                "the timeline API lists {forged_rows} status event(s) `→ {forbidden}` by a \
                 technician"
            )
        });

        // The forbidden edit is quarantined like any other.
        let rows = quarantined(&server, &dora, id);
        let attempted = json!(forbidden.as_str()).to_string();
        let listed = rows.iter().any(|r| {
            r["path"] == "status"
                && r["attempted"] == attempted.as_str()
                && r["device_id"] == phone_id
        });
        f.check(listed, || {
            format!(
                "the quarantine API lists no `status = {forbidden}` edit from {phone_id} for this \
                 ticket (rows: {rows:?}): the forbidden value was taken in as a hidden conflict \
                 value instead of being undone and recorded"
            )
        });
        phone.disconnect().await;
        if let Some(t) = &tablet {
            t.disconnect().await;
        }
        reader.disconnect().await;
        results.push(f);
    }
    report("forbidden_status_cannot_win_through_a_conflict", results);
}

// ------------------------------------- 2. compensation hides no legal work --

#[derive(Clone, Copy, Debug, PartialEq)]
enum Interference {
    /// Back office (may not write visits or notes) inserts a visit into the
    /// list and appends to the notes, in place; the server compensates.
    BackOfficeEditsInPlace,
    /// Back office replaces both containers (`put_object(ROOT, "visits",
    /// List)`, a new notes Text); the server compensates.
    BackOfficeReplacesContainers,
    /// The dispatcher's device inserts a visit into `visits` (acknowledged);
    /// then tom's offline app, which had not seen it, replaces the whole list
    /// (`doc.visits = [...]`). Both are legal; no compensation involved.
    DispatcherInsertsThenTomReplacesVisits,
    /// Tom's app replaces the whole list (acknowledged); then the
    /// dispatcher's offline device, which had not seen it, inserts into the
    /// old list.
    TomReplacesVisitsThenDispatcherInserts,
}

impl Interference {
    fn describe(self) -> &'static str {
        match self {
            Self::BackOfficeEditsInPlace => "back office edits visits and notes in place",
            Self::BackOfficeReplacesContainers => {
                "back office replaces the visits list and the notes text"
            }
            Self::DispatcherInsertsThenTomReplacesVisits => {
                "dispatcher inserts a visit (acknowledged), then tom's app replaces the visits list"
            }
            Self::TomReplacesVisitsThenDispatcherInserts => {
                "tom's app replaces the visits list (acknowledged), then the dispatcher's offline \
                 insert into the old list arrives"
            }
        }
    }
    fn back_office(self) -> bool {
        matches!(
            self,
            Self::BackOfficeEditsInPlace | Self::BackOfficeReplacesContainers
        )
    }
}

const TOM_NOTE: &str = "Tom: replaced fuse F2, mixer runs quietly. ";
const BOB_NOTE: &str = "Bob: invoice adjusted. ";
const DORA_WORK: &str = "Customer reset the breaker on the phone";

fn visit_ids(t: &Ticket) -> Vec<String> {
    t.visits.iter().map(|v| v.id.clone()).collect()
}

/// A visit map inserted into the list `list` (what an app does by hand).
fn insert_visit(
    d: &mut automerge::AutoCommit,
    list: &automerge::ObjId,
    id: &str,
    technician_id: &str,
    work_done: &str,
) {
    let at = d.length(list);
    let v = d.insert_object(list, at, ObjType::Map).unwrap();
    d.put(&v, "id", id).unwrap();
    d.put(&v, "technician_id", technician_id).unwrap();
    d.put(&v, "arrived_at", now()).unwrap();
    d.put(&v, "work_done", work_done).unwrap();
}

fn visits_list(d: &automerge::AutoCommit) -> automerge::ObjId {
    match d.get(ROOT, "visits").unwrap() {
        Some((automerge::Value::Object(ObjType::List), l)) => l,
        other => panic!("the ticket has no visits list: {other:?}"),
    }
}

/// `doc.visits = [...]` as a JS app writes it: a new list at ROOT.visits.
fn replace_visits_with(d: &mut automerge::AutoCommit, id: &str, technician_id: &str) {
    let list = d.put_object(ROOT, "visits", ObjType::List).unwrap();
    insert_visit(d, &list, id, technician_id, "Replaced fuse F2");
}

async fn compensation_never_hides_acknowledged_work(db: TestDb) {
    add_users(
        &db,
        &[
            ("dora", "dispatcher"),
            ("tom", "technician"),
            ("bob", "back_office"),
        ],
    );
    let server = Server::start(&db, &[]);
    let dora = server.login("dora", "dora-password");
    let tom = server.login("tom", "tom-password");
    let bob = server.login("bob", "bob-password");
    let tom_id = user_id(&server, &tom);
    let bob_id = user_id(&server, &bob);

    let cases = [
        Interference::BackOfficeEditsInPlace,
        Interference::BackOfficeReplacesContainers,
        Interference::DispatcherInsertsThenTomReplacesVisits,
        Interference::TomReplacesVisitsThenDispatcherInserts,
    ];
    let mut results = Vec::new();
    for (n, case) in cases.into_iter().enumerate() {
        let mut f = Findings::new(case.describe());
        let id = create_ticket(&server, &dora, "tom", &format!("work case {n}"));
        let phone_id = format!("tom-phone-w{n}");
        let phone = device(&server, &tom, &phone_id).await;
        fetch(&phone, id, "tom's phone").await;

        // (replica name, device) of every writer, for convergence.
        let mut writers: Vec<(String, Device)> = Vec::new();
        // Visits that must be there in the end, and ones that must not.
        let (mut must_have, mut must_not_have) = (Vec::<&str>::new(), Vec::<&str>::new());
        let mut bob_device_id = String::new();

        match case {
            Interference::BackOfficeEditsInPlace | Interference::BackOfficeReplacesContainers => {
                // Tom works offline: a visit and a line of notes.
                phone.disconnect().await;
                phone
                    .change(id, |d| {
                        ticket::check_in(d, "v-tom", &tom_id, &now()).unwrap();
                        ticket::check_out(
                            d,
                            "v-tom",
                            &now(),
                            "Replaced fuse F2",
                            "runs quietly",
                            true,
                        )
                        .unwrap();
                    })
                    .unwrap();
                phone
                    .change(id, |d| ticket::append_note(d, TOM_NOTE).unwrap())
                    .unwrap();

                // Back office edits what it may not; the server compensates.
                bob_device_id = format!("bob-desk-{n}");
                let desk = device(&server, &bob, &bob_device_id).await;
                fetch(&desk, id, "bob's desk").await;
                desk.change(id, |d| {
                    if case == Interference::BackOfficeEditsInPlace {
                        let list = visits_list(d);
                        insert_visit(d, &list, "v-bob", &bob_id, "billing visit");
                        ticket::append_note(d, BOB_NOTE).unwrap();
                    } else {
                        let list = d.put_object(ROOT, "visits", ObjType::List).unwrap();
                        insert_visit(d, &list, "v-bob", &bob_id, "billing visit");
                        let notes = d.put_object(ROOT, "notes", ObjType::Text).unwrap();
                        d.splice_text(&notes, 0, 0, BOB_NOTE).unwrap();
                    }
                })
                .unwrap();
                desk.wait_acknowledged(id, WAIT)
                    .await
                    .expect("bob's edit is stored (and compensated)");
                let bob_now = read_ticket(&desk, id);
                assert!(
                    !visit_ids(&bob_now).contains(&"v-bob".to_string())
                        && !bob_now.notes.contains(BOB_NOTE),
                    "test setup: the server must have compensated bob's edit before tom \
                     reconnects (bob sees visits {:?}, notes {:?})",
                    visit_ids(&bob_now),
                    bob_now.notes
                );

                // Tom reconnects.
                reconnect(&server, &phone, &tom, &phone_id).await;
                phone
                    .wait_acknowledged(id, WAIT)
                    .await
                    .expect("tom's offline work is acknowledged");
                writers.push(("bob's desk".into(), desk));
                must_have.push("v-tom");
                must_not_have.push("v-bob");
            }
            Interference::DispatcherInsertsThenTomReplacesVisits => {
                phone.disconnect().await;
                let desk = device(&server, &dora, &format!("dora-desk-{n}")).await;
                fetch(&desk, id, "dora's desk").await;
                desk.change(id, |d| {
                    let list = visits_list(d);
                    insert_visit(d, &list, "v-dora", &tom_id, DORA_WORK);
                })
                .unwrap();
                desk.wait_acknowledged(id, WAIT)
                    .await
                    .expect("the dispatcher's visit is acknowledged");
                phone
                    .change(id, |d| replace_visits_with(d, "v-tom", &tom_id))
                    .unwrap();
                reconnect(&server, &phone, &tom, &phone_id).await;
                phone
                    .wait_acknowledged(id, WAIT)
                    .await
                    .expect("tom's replacement is acknowledged");
                writers.push(("dora's desk".into(), desk));
                must_have.extend(["v-tom", "v-dora"]);
            }
            Interference::TomReplacesVisitsThenDispatcherInserts => {
                let desk_id = format!("dora-desk-{n}");
                let desk = device(&server, &dora, &desk_id).await;
                fetch(&desk, id, "dora's desk").await;
                desk.disconnect().await;
                phone
                    .change(id, |d| replace_visits_with(d, "v-tom", &tom_id))
                    .unwrap();
                phone
                    .wait_acknowledged(id, WAIT)
                    .await
                    .expect("tom's replacement is acknowledged");
                desk.change(id, |d| {
                    let list = visits_list(d);
                    insert_visit(d, &list, "v-dora", &tom_id, DORA_WORK);
                })
                .unwrap();
                reconnect(&server, &desk, &dora, &desk_id).await;
                desk.wait_acknowledged(id, WAIT)
                    .await
                    .expect("the dispatcher's visit is acknowledged");
                writers.push(("dora's desk".into(), desk));
                must_have.extend(["v-tom", "v-dora"]);
            }
        }

        let reader = fresh_device(&server, &format!("work-reader-{n}")).await;
        fetch(&reader, id, "a fresh replica").await;
        let mut others: Vec<(&str, &Device)> = vec![("tom's phone", &phone)];
        others.extend(writers.iter().map(|(name, d)| (name.as_str(), d)));
        f.converge(id, &reader, &others).await;

        let why = match case {
            Interference::BackOfficeEditsInPlace | Interference::BackOfficeReplacesContainers => {
                "the compensation for back office's forbidden edit put a NEW object at the \
                 top-level key (a copy of the old content), so tom's concurrent, legal edits into \
                 the old object are stored but hidden"
            }
            _ => {
                "replacing the whole `visits` list made the other device's concurrent, legal \
                 insert into the old list object invisible"
            }
        };

        // Replicas: the fresh one (= the server) and every writer.
        let mut replicas: Vec<(&str, &Device)> =
            vec![("a fresh replica", &reader), ("tom's phone", &phone)];
        replicas.extend(writers.iter().map(|(name, d)| (name.as_str(), d)));
        for (name, d) in &replicas {
            let t = read_ticket(d, id);
            let ids = visit_ids(&t);
            for v in &must_have {
                f.check(ids.iter().any(|i| i == v), || {
                    format!("{name}: acknowledged visit `{v}` is missing (visits: {ids:?}): {why}")
                });
            }
            for v in &must_not_have {
                f.check(!ids.iter().any(|i| i == v), || {
                    format!(
                        "{name}: back office's forbidden visit `{v}` is visible (visits: {ids:?})"
                    )
                });
            }
            if case.back_office() {
                f.check(t.notes.contains(TOM_NOTE), || {
                    format!(
                        "{name}: tom's acknowledged note text {TOM_NOTE:?} is missing (notes: \
                         {:?}): {why}",
                        t.notes
                    )
                });
                f.check(!t.notes.contains(BOB_NOTE), || {
                    format!(
                        "{name}: back office's forbidden note text is visible (notes: {:?})",
                        t.notes
                    )
                });
            }
        }

        // The projection (service history) through the API.
        let timeline = api(
            &server,
            "GET",
            &format!("/api/v1/tickets/{id}/timeline"),
            &dora,
            None,
        );
        let rows: Vec<String> = timeline["visits"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|v| v["visit_id"].as_str().unwrap_or("").to_string())
            .collect();
        for v in &must_have {
            f.check(rows.iter().any(|i| i == v), || {
                format!(
                    "GET /api/v1/tickets/{{id}}/timeline: visit `{v}` is missing from the \
                     service history (visits: {rows:?}): {why}"
                )
            });
        }
        for v in &must_not_have {
            f.check(!rows.iter().any(|i| i == v), || {
                format!("GET /api/v1/tickets/{{id}}/timeline lists the forbidden visit `{v}`")
            });
        }
        let row = api(
            &server,
            "GET",
            &format!("/api/v1/tickets/{id}"),
            &dora,
            None,
        );
        let count = row["visit_count"].as_i64().unwrap_or(-1);
        f.check(count == must_have.len() as i64, || {
            format!(
                "GET /api/v1/tickets/{{id}}: visit_count is {count}, expected {} ({must_have:?})",
                must_have.len()
            )
        });
        if case == Interference::BackOfficeEditsInPlace
            || case == Interference::BackOfficeReplacesContainers
        {
            let tech = api(
                &server,
                "GET",
                "/api/v1/technicians/tom/history",
                &dora,
                None,
            );
            let listed = tech["history"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter(|r| r["doc_id"] == id.to_string())
                .flat_map(|r| r["visits"].as_array().cloned().unwrap_or_default())
                .any(|v| v["visit_id"] == "v-tom");
            f.check(listed, || {
                format!(
                    "GET /api/v1/technicians/tom/history does not show tom's visit `v-tom`: {why}"
                )
            });
        }

        // The back-office edit is quarantined (what was undone, by whom).
        if case.back_office() {
            let rows = quarantined(&server, &dora, id);
            for path in ["visits", "notes"] {
                let listed = rows
                    .iter()
                    .any(|r| r["path"] == path && r["device_id"] == bob_device_id.as_str());
                f.check(listed, || {
                    format!("the quarantine API lists no `{path}` edit from {bob_device_id} (rows: {rows:?})")
                });
            }
        }

        phone.disconnect().await;
        for (_, d) in &writers {
            d.disconnect().await;
        }
        reader.disconnect().await;
        results.push(f);
    }
    report("compensation_never_hides_acknowledged_work", results);
}

on_both_backends!(
    forbidden_status_cannot_win_through_a_conflict,
    compensation_never_hides_acknowledged_work,
);
