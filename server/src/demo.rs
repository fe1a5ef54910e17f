//! Demo data (`fieldsync demo`, `fieldsync serve --demo`): the accounts of a
//! small service team, customers with sites and assets, a parts catalogue,
//! van stock, and three tickets — one new, one assigned with an
//! appointment, one completed and signed off with a visit, a part and
//! feedback — so every screen has something to show. Idempotent: a second
//! run only prints the logins.

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
    ("bob", "Bob Back-office", Role::BackOffice),
    ("mia", "Mia Manager", Role::Manager),
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
        "demo data loaded: 5 users, 3 customers, 4 parts, 3 tickets".to_string()
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
            },
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
