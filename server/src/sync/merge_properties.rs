//! Property test of the whole merge pipeline (receive → judge → undo →
//! forward → settle), without I/O: several devices with different roles make
//! legal and illegal edits — container replacements, concurrent status steps,
//! long offline stretches — and sync with the server in random interleavings.
//! After everyone has synced:
//! (a) every legal edit is visible in the server's document and projection;
//! (b) no illegal edit is visible, and every device that made one was
//!     quarantined for it;
//! (c) every replica has the server's heads;
//! (d) the status is one the legal steps' authors could reach.
//! Every edit writes a unique token, so "visible" is a substring search of the
//! visible document. Cases: `PROPTEST_CASES` (default 1000).

use std::collections::{BTreeMap, BTreeSet};

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, Automerge, ObjType, ReadDoc, Value, ROOT};
use fieldsync_shared::permissions::{write_rule, FieldGroup, WriteRule};
use fieldsync_shared::roles::Role;
use fieldsync_shared::status::{self, Status};
use proptest::prelude::*;

use super::doc_state::DocState;

#[derive(Clone, Debug)]
#[allow(clippy::enum_variant_names)] // the edits an app makes, named as such
enum Edit {
    AddVisit,
    AppendNote,
    /// A new key in the n-th visit the device sees (maybe an orphaned one).
    EditVisit(usize),
    AddChecklistItem,
    SetPriority,
    SetStatus(usize),
    /// `doc.visits = [{id: token}]` / `doc.notes = "token"`: replacing a
    /// protected container (forbidden for all; its content is legal for
    /// roles that may write work).
    ReplaceVisits,
    ReplaceNotes,
    /// Deleting a visit: generated only for roles that may not.
    DeleteVisit(usize),
}

#[derive(Clone, Debug)]
enum Step {
    Edit(usize, Edit),
    Sync(usize),
}

struct Device {
    name: String,
    role: Role,
    doc: AutoCommit,
    /// The server connection id of the current (or next) session.
    conn: u64,
}

#[derive(Default)]
struct Model {
    legal: BTreeSet<String>,
    illegal: BTreeSet<String>,
    /// Devices that made illegal edits (each must be quarantined).
    offenders: BTreeSet<String>,
    /// (role, status) of every status a device wrote.
    statuses: Vec<(Role, Status)>,
    priorities: BTreeSet<String>,
    next: u32,
}

impl Model {
    fn token(&mut self) -> String {
        self.next += 1;
        format!("#T{:05}#", self.next)
    }
}

fn may_write(role: Role, group: FieldGroup) -> bool {
    write_rule(role, group) == WriteRule::Allowed
}

fn server_ticket() -> Automerge {
    let mut doc = Automerge::new();
    let mut tx = doc.transaction();
    tx.put(ROOT, "ticket_no", "T-1").unwrap();
    tx.put(ROOT, "status", "assigned").unwrap();
    tx.put(ROOT, "priority", "B").unwrap();
    tx.put_object(ROOT, "visits", ObjType::List).unwrap();
    tx.put_object(ROOT, "checklist", ObjType::List).unwrap();
    tx.put_object(ROOT, "notes", ObjType::Text).unwrap();
    let c = tx.put_object(ROOT, "customer", ObjType::Map).unwrap();
    tx.put(&c, "name", "ACME").unwrap();
    tx.commit();
    doc
}

fn obj(doc: &AutoCommit, key: &str, kind: ObjType) -> Option<automerge::ObjId> {
    match doc.get(ROOT, key).ok().flatten() {
        Some((Value::Object(k), id)) if k == kind => Some(id),
        _ => None,
    }
}

fn apply(d: &mut Device, edit: &Edit, m: &mut Model) {
    let work = may_write(d.role, FieldGroup::Work);
    let token = m.token();
    let legal = work;
    match edit {
        Edit::AddVisit | Edit::EditVisit(_) | Edit::DeleteVisit(_) => {
            let Some(list) = obj(&d.doc, "visits", ObjType::List) else {
                return;
            };
            let len = d.doc.length(&list);
            match edit {
                Edit::EditVisit(n) if len > 0 => {
                    let Ok(Some((Value::Object(ObjType::Map), v))) = d.doc.get(&list, n % len)
                    else {
                        return;
                    };
                    d.doc
                        .put(&v, format!("w{}", m.next), token.as_str())
                        .unwrap();
                }
                Edit::DeleteVisit(n) if len > 0 => {
                    if work {
                        return; // legal deletes hide data by design: not generated
                    }
                    d.doc.delete(&list, n % len).unwrap();
                    m.offenders.insert(d.name.clone());
                    d.doc.commit();
                    return;
                }
                _ => {
                    let v = d.doc.insert_object(&list, len, ObjType::Map).unwrap();
                    d.doc.put(&v, "id", token.as_str()).unwrap();
                    d.doc.put(&v, "technician_id", d.name.as_str()).unwrap();
                }
            }
        }
        Edit::AppendNote => {
            let Some(notes) = obj(&d.doc, "notes", ObjType::Text) else {
                return;
            };
            let len = d.doc.length(&notes);
            d.doc.splice_text(&notes, len, 0, &token).unwrap();
        }
        Edit::AddChecklistItem => {
            let Some(list) = obj(&d.doc, "checklist", ObjType::List) else {
                return;
            };
            let len = d.doc.length(&list);
            d.doc.insert(&list, len, token.as_str()).unwrap();
        }
        Edit::SetPriority => {
            // Legal puts overwrite each other (last writer wins): only the
            // illegal ones are tracked, and the final value must be legal.
            d.doc.put(ROOT, "priority", token.as_str()).unwrap();
            d.doc.commit();
            if may_write(d.role, FieldGroup::Intake) {
                m.priorities.insert(token);
            } else {
                m.illegal.insert(token);
                m.offenders.insert(d.name.clone());
            }
            return;
        }
        Edit::SetStatus(i) => {
            let mut s = Status::ALL[i % Status::ALL.len()];
            // A legal `reconciled` (back office, admin) locks the ticket
            // (issue 11 §1): every edit of the others that reaches the
            // server after it is undone, whatever this model, which judges
            // edits when they are made, calls legal. The lock has its own
            // tests (doc_state, tests/reconciliation.rs). A technician's
            // `reconciled` stays: it is a forbidden step, judged below.
            if matches!(d.role, Role::Admin | Role::BackOffice) && s == Status::Reconciled {
                s = Status::SignedOff;
            }
            d.doc.put(ROOT, "status", s.as_str()).unwrap();
            m.statuses.push((d.role, s));
            d.doc.commit();
            return; // judged by reachability at the end
        }
        // As an app does it: `doc.visits = [...doc.visits, {id}]` and
        // `doc.notes = doc.notes + token` (new objects with the old content).
        Edit::ReplaceVisits => {
            let old =
                obj(&d.doc, "visits", ObjType::List).and_then(|l| d.doc.hydrate(&l, None).ok());
            let list = d.doc.put_object(ROOT, "visits", ObjType::List).unwrap();
            if let Some(old) = old {
                d.doc.update_object(&list, &old).unwrap();
            }
            let len = d.doc.length(&list);
            let v = d.doc.insert_object(&list, len, ObjType::Map).unwrap();
            d.doc.put(&v, "id", token.as_str()).unwrap();
            m.offenders.insert(d.name.clone()); // the replacement itself
        }
        Edit::ReplaceNotes => {
            let old = obj(&d.doc, "notes", ObjType::Text)
                .and_then(|t| d.doc.text(&t).ok())
                .unwrap_or_default();
            let notes = d.doc.put_object(ROOT, "notes", ObjType::Text).unwrap();
            d.doc
                .splice_text(&notes, 0, 0, &format!("{old}{token}"))
                .unwrap();
            m.offenders.insert(d.name.clone());
        }
    }
    d.doc.commit();
    if legal {
        m.legal.insert(token);
    } else {
        m.illegal.insert(token);
        m.offenders.insert(d.name.clone());
    }
}

/// One session: the device connects, syncs until quiet, disconnects.
/// Returns whether anything was quarantined for it.
fn sync(
    server: &mut DocState,
    d: &mut Device,
    rows: &mut Option<crate::projection::TicketRows>,
) -> Result<bool, TestCaseError> {
    d.conn += 1000;
    let mut ours = sync::State::new();
    let mut quarantined = false;
    for _ in 0..100 {
        let Some(msg) = d.doc.sync().generate_sync_message(&mut ours) else {
            break;
        };
        let r = server
            .receive(d.conn, &d.name, msg)
            .expect("server accepts the message");
        if r.heads_changed {
            let f = server.follow_up(&r.applied, &r.heads_before, d.role, false, &d.name, "t");
            quarantined |= !f.violations.is_empty();
            // The incremental projection always equals the full one.
            match rows.as_mut() {
                Some(prev) => {
                    crate::projection::update(prev, "doc", server.doc(), &f.touched);
                }
                None => *rows = crate::projection::project("doc", server.doc()),
            }
            let full = crate::projection::project("doc", server.doc());
            prop_assert_eq!(
                rows.as_ref(),
                full.as_ref(),
                "incremental projection differs after {:?}",
                f.touched
            );
        }
        for (to, _, reply) in server.after_commit(d.conn, r.heads_changed) {
            if to == d.conn {
                d.doc.sync().receive_sync_message(&mut ours, reply).unwrap();
            }
        }
    }
    server.remove_peer(d.conn);
    Ok(quarantined)
}

fn visible_json<R: ReadDoc>(doc: &R) -> String {
    serde_json::to_string(&super::validation::field_json_root(doc)).unwrap()
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => Just(Edit::AddVisit),
        4 => Just(Edit::AppendNote),
        3 => any::<usize>().prop_map(Edit::EditVisit),
        1 => Just(Edit::AddChecklistItem),
        1 => Just(Edit::SetPriority),
        3 => any::<usize>().prop_map(Edit::SetStatus),
        1 => Just(Edit::ReplaceVisits),
        1 => Just(Edit::ReplaceNotes),
        1 => any::<usize>().prop_map(Edit::DeleteVisit),
    ]
}

fn step_strategy(devices: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..devices, edit_strategy()).prop_map(|(d, e)| Step::Edit(d, e)),
        2 => (0..devices).prop_map(Step::Sync),
    ]
}

fn role_strategy() -> impl Strategy<Value = Role> {
    prop::sample::select(vec![
        Role::Technician,
        Role::Technician,
        Role::Dispatcher,
        Role::BackOffice,
        Role::Manager,
        Role::Admin,
    ])
}

fn run(roles: Vec<Role>, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let base = server_ticket();
    let mut server = DocState::new(base.clone());
    let mut model = Model::default();
    let bytes = base.save();
    let mut devices: Vec<Device> = roles
        .iter()
        .enumerate()
        .map(|(i, role)| Device {
            name: format!("dev{i}-{role}"),
            role: *role,
            doc: AutoCommit::load(&bytes)
                .unwrap()
                .with_actor(ActorId::random()),
            conn: i as u64,
        })
        .collect();
    let mut quarantined: BTreeMap<String, bool> = BTreeMap::new();
    let mut rows = None;
    for step in &steps {
        match step {
            Step::Edit(i, e) => apply(&mut devices[*i], e, &mut model),
            Step::Sync(i) => {
                let q = sync(&mut server, &mut devices[*i], &mut rows)?;
                *quarantined.entry(devices[*i].name.clone()).or_default() |= q;
            }
        }
    }
    // Everyone syncs until nothing moves (server changes travel too).
    for _ in 0..4 {
        for d in devices.iter_mut() {
            let q = sync(&mut server, d, &mut rows)?;
            *quarantined.entry(d.name.clone()).or_default() |= q;
        }
    }
    let heads = server.doc().get_heads();
    for d in devices.iter_mut() {
        prop_assert_eq!(
            d.doc.get_heads(),
            heads.clone(),
            "(c) {} did not converge",
            d.name
        );
    }
    let visible = visible_json(server.doc());
    for t in &model.legal {
        prop_assert!(
            visible.contains(t.as_str()),
            "(a) legal edit {} is not visible: {}",
            t,
            visible
        );
    }
    for t in &model.illegal {
        prop_assert!(
            !visible.contains(t.as_str()),
            "(b) illegal edit {} is visible: {}",
            t,
            visible
        );
    }
    for o in &model.offenders {
        prop_assert!(
            quarantined.get(o).copied().unwrap_or(false),
            "(b) {} was never quarantined",
            o
        );
    }
    let priority = fieldsync_shared::ticket::read(server.doc())
        .map(|t| t.intake.priority)
        .unwrap_or_default();
    prop_assert!(
        priority == "B" || model.priorities.contains(&priority),
        "priority {} was never set legally",
        priority
    );
    // (d) the status is reachable by the legal steps' authors.
    let mut reachable = vec![Status::Assigned];
    loop {
        let before = reachable.len();
        for (role, s) in &model.statuses {
            if !reachable.contains(s)
                && reachable
                    .iter()
                    .any(|from| status::may_reach(*role, Some(*from), *s))
            {
                reachable.push(*s);
            }
        }
        if reachable.len() == before {
            break;
        }
    }
    let now = fieldsync_shared::ticket::status_and_last_recorded(server.doc()).0;
    let now: Status = now
        .parse()
        .map_err(|_| TestCaseError::fail(format!("status {now}")))?;
    prop_assert!(
        reachable.contains(&now),
        "(d) status {} is not reachable: {:?}",
        now,
        model.statuses
    );
    prop_assert_eq!(
        server.doc().get_all(ROOT, "status").unwrap().len(),
        1,
        "status conflict left"
    );
    // The status history, evidence, records only reachable steps.
    for e in fieldsync_shared::ticket::read(server.doc())
        .unwrap()
        .status_history
    {
        let to: Status = e.to.parse().unwrap();
        prop_assert!(
            reachable.contains(&to),
            "(b) status history records {} → {} by {}",
            e.from,
            e.to,
            e.role
        );
    }
    // (a) in the projection too: every visible visit is a row.
    if let Some(rows) = crate::projection::project("doc", server.doc()) {
        for t in &model.legal {
            let in_visits = visible_visit_ids(server.doc()).contains(t);
            if in_visits {
                prop_assert!(
                    rows.visits.iter().any(|v| &v.visit_id == t),
                    "(a) visit {} not projected",
                    t
                );
            }
        }
    }
    Ok(())
}

fn visible_visit_ids(doc: &Automerge) -> BTreeSet<String> {
    fieldsync_shared::ticket::read(doc)
        .map(|t| t.visits.into_iter().map(|v| v.id).collect())
        .unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(1000),
        max_shrink_iters: 2000,
        .. ProptestConfig::default()
    })]

    #[test]
    fn merge_pipeline_keeps_every_legal_edit_and_no_illegal_one(
        roles in prop::collection::vec(role_strategy(), 2..4),
        steps in prop::collection::vec(step_strategy(3), 1..40),
    ) {
        let n = roles.len();
        let steps: Vec<Step> = steps
            .into_iter()
            .map(|s| match s {
                Step::Edit(d, e) => Step::Edit(d % n, e),
                Step::Sync(d) => Step::Sync(d % n),
            })
            .collect();
        run(roles, steps)?;
    }
}
