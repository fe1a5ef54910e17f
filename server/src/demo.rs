//! Demo data (`fieldsync demo`, `fieldsync serve --demo`): the accounts of a
//! small service team, customers with sites and assets, a parts catalogue,
//! van stock, three tickets — one new, one assigned with an appointment,
//! one completed and signed off with a visit, a part and feedback — and six
//! weeks of history behind them (jobs on time and breached, surveys with
//! low scores, a customer unsatisfied three times running, callbacks, two
//! complaints), so every queue and report has something to show.
//! Idempotent: a second run only prints the logins.

use automerge::AutoCommit;
use fieldsync_shared::roles::Role;
use fieldsync_shared::status::Status;
use fieldsync_shared::ticket::{self, Intake, PartUsed, StatusEvent, Survey};
use fieldsync_shared::DocumentId;

use crate::auth::accounts;
use crate::db::{Db, DbConn, DbError};
use crate::projection;
use crate::records::{self, NewAsset, NewCustomer, NewSite, Part};
use crate::sharing;
use crate::storage::{self, DocWrite, NewChange};

/// Every demo account uses this password (printed; change it for real use).
pub const PASSWORD: &str = "fieldsync-demo";

pub const USERS: &[(&str, &str, Role)] = &[
    ("dora", "Dora Dispatcher", Role::Dispatcher),
    ("tom", "Tom Technician", Role::Technician),
    ("tina", "Tina Technician", Role::Technician),
    ("ken", "Ken Technician", Role::Technician),
    ("lea", "Lea Technician", Role::Technician),
    ("bob", "Bob Back-office", Role::BackOffice),
    ("sue", "Sue Supervisor", Role::Supervisor),
    ("mia", "Mia Manager", Role::Manager),
    ("ada", "Ada Admin", Role::Admin),
];

/// Loads the demo data unless it is there already; returns the lines to print.
pub fn load(db: &Db) -> anyhow::Result<Vec<String>> {
    let fresh = db.run_blocking(|c| Ok(accounts::find_for_login(c, "dora")?.is_none()))?;
    if fresh {
        db.run_blocking(|c| {
            seed(c).map_err(|e| DbError::Task(format!("loading demo data: {e:#}")))
        })?;
    }
    let mut out = vec![if fresh {
        format!("demo data loaded: {} users, 4 customers, 4 parts, {} tickets (six weeks of history), 2 complaints", USERS.len(), 3 + HISTORY)
    } else {
        "demo data already present".to_string()
    }];
    out.push(format!("demo logins (password `{PASSWORD}` for all):"));
    for (name, display, role) in USERS {
        out.push(format!("  {name:<5} {role:<12} {display}"));
    }
    Ok(out)
}

fn at(days_ago: i64, hour: u32) -> String {
    let day = chrono::Utc::now().date_naive() - chrono::Duration::days(days_ago);
    day.and_hms_opt(hour, 0, 0)
        .expect("valid hour")
        .and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn seed(c: &mut DbConn) -> anyhow::Result<()> {
    let mut ids = std::collections::HashMap::new();
    for (name, display, role) in USERS {
        let hash = crate::auth::password::hash(PASSWORD)?;
        let u = accounts::create(c, name, display, *role, &hash)?;
        ids.insert(*name, u.id);
    }
    let (dora, tom, tina) = (&ids["dora"], &ids["tom"], &ids["tina"]);

    for (no, name, cost) in [
        ("MTR-40", "Mixer motor 400 W", 32_000),
        ("BLT-12", "Drive belt 12 mm", 1_800),
        ("GSK-9", "Door gasket, display fridge", 2_500),
        ("FLT-3", "Water filter cartridge", 1_200),
    ] {
        records::upsert_part(
            c,
            Part {
                part_no: no.into(),
                name: name.into(),
                unit_cost_cents: cost,
                active: true,
                created_at: 0,
                version: 1,
            },
            None,
        )?;
    }
    for (tech, part, qty) in [
        (tom, "MTR-40", 2),
        (tom, "BLT-12", 5),
        (tina, "GSK-9", 4),
        (tina, "FLT-3", 6),
    ] {
        records::record_movement(c, tech, part, qty, "initial van stock")?;
    }

    let customer = |c: &mut DbConn, name: &str, phone: &str, address: &str| {
        records::create_customer(
            c,
            NewCustomer {
                name: name.into(),
                phone: phone.into(),
                address: address.into(),
                ..Default::default()
            },
        )
    };
    let acme = customer(c, "Acme Bakery", "+86 10 5555 0100", "1 Oven Road")?;
    let clinic = customer(c, "Harbor Clinic", "+86 10 5555 0200", "8 Quay Street")?;
    let grocer = customer(c, "Green Grocer", "+86 10 5555 0300", "22 Market Lane")?;
    let site = records::create_site(
        c,
        &acme.id,
        NewSite {
            name: "Main bakery".into(),
            address: "1 Oven Road, back entrance".into(),
        },
    )?;
    let asset = |c: &mut DbConn,
                 cust: &str,
                 site: Option<String>,
                 product: &str,
                 model: &str,
                 serial: &str| {
        records::create_asset(
            c,
            cust,
            NewAsset {
                product: product.into(),
                model: model.into(),
                serial: serial.into(),
                site_id: site,
                purchased_at: "2024-03-01".into(),
                warranty_until: "2027-03-01".into(),
            },
        )
    };
    let mixer = asset(
        c,
        &acme.id,
        Some(site.id.clone()),
        "Dough mixer",
        "DM-40",
        "SN-778",
    )?;
    let autoclave = asset(c, &clinic.id, None, "Autoclave", "AC-9", "SN-5521")?;
    let fridge = asset(
        c,
        &grocer.id,
        None,
        "Refrigerated display",
        "RD-2",
        "SN-3310",
    )?;

    let intake = |no: &str,
                  cust: &records::Customer,
                  a: &records::Asset,
                  fault: &str,
                  prio: &str,
                  days: i64| Intake {
        ticket_no: no.into(),
        customer_id: cust.id.clone(),
        customer_name: cust.name.clone(),
        customer_phone: cust.phone.clone(),
        customer_address: cust.address.clone(),
        site: String::new(),
        asset_id: a.id.clone(),
        product: a.product.clone(),
        model: a.model.clone(),
        serial: a.serial.clone(),
        fault_description: fault.into(),
        occurred_at: at(days, 7),
        reported_via: "phone".into(),
        priority: prio.into(),
    };
    let event = |from: &str, to: Status, by: &str, role: Role, when: String| StatusEvent {
        from: from.into(),
        to: to.as_str().into(),
        by: by.into(),
        role: role.to_string(),
        at: when,
        device_at: String::new(),
    };

    // 1. New, unassigned: the dispatcher's to-do.
    let mut d = AutoCommit::new();
    ticket::create(
        &mut d,
        &intake("T-DEMO-1", &acme, &mixer, "Motor stops under load", "A", 0),
    )?;
    ticket::append_status_event(
        &mut d,
        &event("", Status::New, dora, Role::Dispatcher, at(0, 8)),
    )?;
    store(c, d, None)?;

    // 2. Assigned to Tom with an appointment tomorrow morning.
    let mut d = AutoCommit::new();
    ticket::create(
        &mut d,
        &intake(
            "T-DEMO-2",
            &clinic,
            &autoclave,
            "Door seal leaks steam",
            "B",
            1,
        ),
    )?;
    ticket::append_status_event(
        &mut d,
        &event("", Status::New, dora, Role::Dispatcher, at(1, 8)),
    )?;
    ticket::set_assignment(&mut d, tom, dora, &at(1, 9))?;
    ticket::set_status(&mut d, Status::Assigned)?;
    ticket::append_status_event(
        &mut d,
        &event("new", Status::Assigned, dora, Role::Dispatcher, at(1, 9)),
    )?;
    ticket::set_appointment(&mut d, &at(-1, 9), &at(-1, 11))?;
    store(c, d, Some((tom, dora)))?;

    // 3. Done last week by Tina: visit, a part from her van, signoff, feedback.
    let mut d = AutoCommit::new();
    ticket::create(
        &mut d,
        &intake(
            "T-DEMO-3",
            &grocer,
            &fridge,
            "Display does not hold 4 °C",
            "B",
            8,
        ),
    )?;
    let steps = [
        ("", Status::New, dora, Role::Dispatcher, at(8, 8)),
        ("new", Status::Assigned, dora, Role::Dispatcher, at(8, 9)),
        (
            "assigned",
            Status::EnRoute,
            tina,
            Role::Technician,
            at(7, 8),
        ),
        ("en_route", Status::OnSite, tina, Role::Technician, at(7, 9)),
        (
            "on_site",
            Status::Completed,
            tina,
            Role::Technician,
            at(7, 11),
        ),
        (
            "completed",
            Status::SignedOff,
            tina,
            Role::Technician,
            at(7, 11),
        ),
    ];
    ticket::set_assignment(&mut d, tina, dora, &at(8, 9))?;
    ticket::check_in(&mut d, "visit-1", tina, &at(7, 9))?;
    ticket::add_part(
        &mut d,
        &PartUsed {
            id: "part-1".into(),
            part_no: "GSK-9".into(),
            qty: 1,
            serial: String::new(),
            source: "van".into(),
            visit_id: "visit-1".into(),
            technician_id: tina.clone(),
        },
    )?;
    ticket::check_out(
        &mut d,
        "visit-1",
        &at(7, 11),
        "Replaced the door gasket; 3.8 °C after 40 min",
        "holds temperature",
        true,
    )?;
    let heads = d.get_heads();
    ticket::sign(&mut d, "Grace Green", &at(7, 11), "", &heads)?;
    ticket::set_survey(
        &mut d,
        &Survey {
            scale: 5,
            efficiency: Some(5),
            attitude: Some(5),
            reasonableness: Some(4),
            comment: "Quick and tidy".into(),
        },
    )?;
    ticket::set_status(&mut d, Status::SignedOff)?;
    for (from, to, by, role, when) in steps {
        ticket::append_status_event(&mut d, &event(from, to, by, role, when))?;
    }
    store(c, d, Some((tina, dora)))?;

    let grumpy = customer(c, "Grumpy Mills", "+86 10 5555 0400", "9 Mill Lane")?;
    let mill = asset(c, &grumpy.id, None, "Grain mill", "GM-7", "SN-9012")?;
    let fleet = [(&acme, &mixer), (&clinic, &autoclave), (&grocer, &fridge)];
    // The past jobs are Ken's and Lea's: Tom's and Tina's vans and diaries
    // stay as the three tickets above leave them.
    history(c, &fleet, (&grumpy, &mill), dora, &ids["ken"], &ids["lea"])?;
    after_the_jobs(c, &grumpy, &clinic, &ids["bob"], dora)?;
    Ok(())
}

/// Six weeks of past jobs (`HISTORY` tickets, about one a day): every
/// priority, on time and breached, one and two visits, parts, signoffs,
/// surveys (some low, some missing), appointments kept and missed, a few
/// still open; Grumpy Mills' last three services unsatisfied. Built like
/// the tickets above (documents with their status history at past times),
/// so reports, the SLA states and the closed loop are computed from it.
const HISTORY: usize = 30;

fn history(
    c: &mut DbConn,
    fleet: &[(&records::Customer, &records::Asset)],
    grumpy: (&records::Customer, &records::Asset),
    dora: &String,
    ken: &String,
    lea: &String,
) -> anyhow::Result<()> {
    use chrono::{Duration, Utc};
    let fmt = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mins = |h: f64| Duration::minutes((h * 60.0) as i64);
    let faults = [
        "Motor stops under load",
        "Door seal leaks",
        "Does not hold temperature",
        "Error E4 on the display",
        "Loud noise when starting",
    ];
    let midnight = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    for i in 0..HISTORY {
        // Grumpy Mills gets services 20, 23 and 26; the others rotate.
        let grumpy_job = matches!(i, 20 | 23 | 26);
        let (cust, asset) = if grumpy_job {
            grumpy
        } else {
            fleet[i % fleet.len()]
        };
        let prio = ["B", "A", "C", "B", "B", "A", "C", "B"][i % 8];
        let tech = if i % 2 == 0 { ken } else { lea };
        let days_ago = 42 - (i as i64 * 42 / HISTORY as i64);
        // 01:00–04:00 UTC: 09:00–12:00 at the seeds' UTC+8.
        let created = midnight - Duration::days(days_ago) + Duration::hours(1 + (i % 4) as i64);
        // Hours to set off, and to complete; every few jobs late.
        let respond_h = match prio {
            "A" if i % 5 == 1 => 3.0,
            "A" => 1.5,
            "B" if i % 7 == 3 => 30.0,
            "B" => 6.0,
            _ => 20.0,
        };
        // Some jobs need a second visit (a part to order): the next day, or
        // days later, past the resolve target.
        let late_resolve = match prio {
            "A" if i % 6 == 5 => Some(60.0),
            "B" if i % 9 == 4 => Some(90.0),
            _ => None,
        };
        let two_visits = i % 4 == 2 || late_resolve.is_some();
        let en_route = created + mins(respond_h);
        let late_arrival = i % 5 == 2;
        let on_site = en_route + mins(if late_arrival { 3.0 } else { 1.0 });
        // A visit takes an hour and a half; the job is done when the last
        // one ends.
        let done = match (two_visits, late_resolve) {
            (true, Some(h)) => created + mins(h),
            (true, None) => created + mins(respond_h + 26.0),
            (false, _) => on_site + mins(1.5),
        };
        // Jobs of the last three days are still under way.
        let open = done > Utc::now() - Duration::days(1) || i >= HISTORY - 3;

        let mut d = AutoCommit::new();
        let mut intake = Intake {
            ticket_no: format!("T-HIST-{:02}", i + 1),
            customer_id: cust.id.clone(),
            customer_name: cust.name.clone(),
            customer_phone: cust.phone.clone(),
            customer_address: cust.address.clone(),
            site: String::new(),
            asset_id: asset.id.clone(),
            product: asset.product.clone(),
            model: asset.model.clone(),
            serial: asset.serial.clone(),
            fault_description: faults[(i * 3) % faults.len()].into(),
            occurred_at: fmt(created - Duration::hours(2)),
            reported_via: "phone".into(),
            priority: prio.into(),
        };
        if grumpy_job {
            intake.fault_description = "Mill jams with wet grain".into();
        }
        ticket::create(&mut d, &intake)?;
        ticket::set_assignment(&mut d, tech, dora, &fmt(created + Duration::minutes(10)))?;
        ticket::set_appointment(&mut d, &fmt(en_route), &fmt(en_route + Duration::hours(2)))?;
        let mut steps: Vec<(Status, &String, Role, chrono::DateTime<Utc>)> = vec![
            (Status::New, dora, Role::Dispatcher, created),
            (
                Status::Assigned,
                dora,
                Role::Dispatcher,
                created + Duration::minutes(10),
            ),
        ];
        let now = Utc::now();
        let field = |steps: &mut Vec<_>, s: Status, t: chrono::DateTime<Utc>| {
            if t < now {
                steps.push((s, tech, Role::Technician, t));
            }
        };
        field(&mut steps, Status::EnRoute, en_route);
        field(&mut steps, Status::OnSite, on_site);
        if on_site < now {
            ticket::check_in(&mut d, "visit-1", tech, &fmt(on_site))?;
        }
        let mut last = on_site;
        if two_visits && on_site < now {
            // The first visit finds a part missing; back the next day.
            let leave = on_site + Duration::hours(2);
            ticket::check_out(
                &mut d,
                "visit-1",
                &fmt(leave),
                "Diagnosed; part ordered",
                "part on order",
                false,
            )?;
            field(&mut steps, Status::Paused, leave);
            let back = done - mins(1.5);
            field(&mut steps, Status::OnSite, back);
            if back < now {
                ticket::check_in(&mut d, "visit-2", tech, &fmt(back))?;
            }
            last = back;
        }
        let visit = if two_visits { "visit-2" } else { "visit-1" };
        if i % 3 == 0 && on_site < now {
            // From the warehouse: the demo vans keep their stock.
            let part = if i % 6 == 0 { "BLT-12" } else { "MTR-40" };
            ticket::add_part(
                &mut d,
                &PartUsed {
                    id: format!("part-{i}"),
                    part_no: part.into(),
                    qty: 1,
                    serial: String::new(),
                    source: "warehouse".into(),
                    visit_id: visit.into(),
                    technician_id: tech.clone(),
                },
            )?;
        }
        let mut status = steps.last().map(|s| s.0).unwrap_or(Status::New);
        if !open && done < now {
            let leave = done.max(last + Duration::minutes(30));
            ticket::check_out(
                &mut d,
                visit,
                &fmt(leave),
                "Repaired and tested",
                "fixed",
                true,
            )?;
            field(&mut steps, Status::Completed, leave);
            let heads = d.get_heads();
            ticket::sign(
                &mut d,
                &format!("{} staff", cust.name),
                &fmt(leave),
                "",
                &heads,
            )?;
            field(&mut steps, Status::SignedOff, leave + Duration::minutes(2));
            status = Status::SignedOff;
            let scores = match i {
                20 => Some((3, 3, 2)),
                23 => Some((2, 3, 3)),
                26 => Some((3, 2, 3)),
                _ if i % 6 == 3 => None,
                _ if i % 7 == 5 => Some((2, 3, 3)),
                _ if i % 2 == 0 => Some((5, 4, 5)),
                _ => Some((4, 4, 4)),
            };
            if let Some((e, a, r)) = scores {
                ticket::set_survey(
                    &mut d,
                    &Survey {
                        scale: 5,
                        efficiency: Some(e),
                        attitude: Some(a),
                        reasonableness: Some(r),
                        comment: if e <= 3 {
                            "Took too long".into()
                        } else {
                            String::new()
                        },
                    },
                )?;
            }
        }
        ticket::set_status(&mut d, status)?;
        let mut from = String::new();
        for (to, by, role, t) in steps {
            let mut e = StatusEvent {
                from: from.clone(),
                to: to.as_str().into(),
                by: by.clone(),
                role: role.to_string(),
                at: fmt(t),
                device_at: String::new(),
            };
            if role == Role::Technician {
                // Synced a few minutes after the fact, as phones do.
                e.at = fmt(t + Duration::minutes(4));
                e.device_at = fmt(t);
            }
            ticket::append_status_event(&mut d, &e)?;
            from = to.as_str().into();
        }
        store(c, d, Some((tech, dora)))?;
    }
    Ok(())
}

/// What the office did after those jobs: the SLA watch's first sweep
/// (states, escalations, callbacks, Grumpy Mills flagged), most callbacks
/// made (a few late, the recent ones still open), and two complaints — one
/// answered quickly and settled, one answered late with the customer still
/// unsatisfied (a second contact follows).
fn after_the_jobs(
    c: &mut DbConn,
    grumpy: &records::Customer,
    clinic: &records::Customer,
    bob: &str,
    dora: &str,
) -> anyhow::Result<()> {
    use crate::office::{closed_loop, complaints, policy_store, sla_watch};
    use crate::service::complaints::Category;
    use chrono::{Duration, Utc};
    let now = Utc::now();
    sla_watch::sweep(c, None, now, false)?;
    let due: Vec<closed_loop::Callback> = closed_loop::list_callbacks(
        c,
        &closed_loop::CallbackFilter::default(),
        now,
        None,
        i64::MAX,
    )?;
    for (n, cb) in due.iter().enumerate() {
        let Some(due_at) = sla_watch::parse_time(&cb.due_at) else {
            continue;
        };
        if due_at > now - Duration::days(3) {
            continue;
        }
        // One in five made a day late.
        let at = if n % 5 == 4 {
            due_at + Duration::days(1)
        } else {
            due_at - Duration::hours(20)
        };
        closed_loop::record_outcome(
            c,
            &cb.id,
            true,
            Some(n % 7 != 3),
            "Called; all working",
            bob,
            at,
        )?;
    }
    let policy = policy_store::load(c)?;
    for (cust, category, text, received, answer_min, resolve_h, satisfied) in [
        (
            clinic,
            Category::DeliveryDelay,
            "Replacement seal took a week to arrive",
            12,
            6,
            26,
            true,
        ),
        (
            grumpy,
            Category::ServiceAttitude,
            "Nobody listens; the mill jams again",
            4,
            25,
            50,
            false,
        ),
    ] {
        let at = now - Duration::days(received);
        let k = complaints::create(
            c,
            &policy,
            &complaints::NewComplaint {
                customer_id: &cust.id,
                doc_id: "",
                ticket_no: "",
                category,
                description: text,
                received_at: at,
                created_by: dora,
            },
            at,
            false,
        )?;
        complaints::respond(
            c,
            &policy,
            &k.id,
            dora,
            "Called back, apologised",
            at + Duration::minutes(answer_min),
            false,
        )?;
        complaints::resolve(
            c,
            &policy,
            &k.id,
            bob,
            "Explained the delay; discount on the next service",
            Some(satisfied),
            at + Duration::hours(resolve_h),
            false,
        )?;
    }
    Ok(())
}

/// Stores a demo ticket with its history rows, and its assignment.
fn store(
    c: &mut DbConn,
    mut doc: AutoCommit,
    assigned: Option<(&String, &String)>,
) -> anyhow::Result<()> {
    let id = DocumentId::random().to_string();
    let changes = doc
        .get_changes(&[])
        .into_iter()
        .map(|ch| NewChange {
            hash: ch.hash(),
            bytes: ch.raw_bytes().to_vec(),
        })
        .collect();
    let rows = projection::project(&id, doc.document()).map(Box::new);
    let rows = Some(projection::RowsDelta::All(rows));
    storage::append_changes(
        c,
        &[DocWrite {
            doc_id: id.clone(),
            changes,
            quarantined: Vec::new(),
            projection: rows,
        }],
    )?;
    if let Some((tech, by)) = assigned {
        sharing::assign(c, &id, tech, by)?;
    }
    Ok(())
}
