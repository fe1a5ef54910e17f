//! The server's own changes around a peer's message: settling concurrent
//! status values, recording status events, API edits. Judging and undoing a
//! peer's operations lives in `integrity`. No I/O here.

use automerge::hydrate;
use automerge::transaction::Transactable;
use automerge::{Automerge, ChangeHash, ReadDoc, ScalarValue, Value, ROOT};
use fieldsync_shared::roles::Role;
use fieldsync_shared::status::{self, Status};
use fieldsync_shared::ticket;

use crate::storage::NewChange;

/// The status machine's rule for concurrent offline transitions, applied:
/// when `status` holds conflicting values (set concurrently on two devices),
/// the server writes the winner (`status::resolve_concurrent`), so every
/// replica shows the same status whatever order it merged in.
pub fn resolve_status_conflict(doc: &mut Automerge) -> Option<NewChange> {
    let values = doc.get_all(ROOT, "status").ok()?;
    if values.len() < 2 {
        return None;
    }
    let candidates: Vec<Status> = values
        .into_iter()
        .filter_map(|(v, id)| match v {
            Value::Scalar(s) => s.as_str().map(str::to_string),
            Value::Object(_) => doc.text(&id).ok(),
        })
        .filter_map(|s| s.parse().ok())
        .collect();
    let winner = status::resolve_concurrent(&candidates)?;
    let mut tx = doc.transaction();
    tx.put(ROOT, "status", winner.as_str()).ok()?;
    let (hash, _) = tx.commit();
    let hash = hash?;
    let change = doc.get_change_by_hash(&hash)?;
    Some(NewChange {
        hash,
        bytes: change.raw_bytes().to_vec(),
    })
}

/// A change the server makes itself (dispatcher API edits, status events):
/// `edit` runs in one transaction; nothing is applied if it fails. None when
/// the edit changed nothing.
pub fn server_change(
    doc: &mut Automerge,
    edit: impl FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<(), String>,
) -> Result<Option<NewChange>, String> {
    let mut tx = doc.transaction();
    if let Err(e) = edit(&mut tx) {
        tx.rollback();
        return Err(e);
    }
    let (hash, _) = tx.commit();
    let Some(hash) = hash else { return Ok(None) };
    let change = doc
        .get_change_by_hash(&hash)
        .ok_or("committed change not found")?;
    Ok(Some(NewChange {
        hash,
        bytes: change.raw_bytes().to_vec(),
    }))
}

/// Appends `status_history` entries for the status changes the changes
/// since `before` made: who (the user whose message or API call brought
/// them), in which role, when the server accepted them (`at`) and when the
/// device made them (`device_at`, its clock). Several offline steps sent in
/// one message (en_route → on_site → completed) are recorded one by one, in
/// the order the device made them. Living in the document, the history
/// replicates to devices and the projection can be rebuilt from it exactly.
/// `steps`: the status values the message's *accepted* ops wrote, in order,
/// with their change times (from `integrity::judge`); None for the server's
/// own edits, whose changes are read instead. Rejected values never appear:
/// the history is evidence.
pub fn record_status_event(
    doc: &mut Automerge,
    before: &[ChangeHash],
    by: &str,
    role: Role,
    at: &str,
    accepted: Option<&[(String, i64)]>,
) -> Option<NewChange> {
    if !ticket::is_ticket(doc) {
        return None;
    }
    // Cheap check first (runs for every accepted message on a ticket).
    let (status, mut prev) = ticket::status_and_last_recorded(doc);
    if status.is_empty() || status == prev {
        return None;
    }
    let status_at = |heads: &[ChangeHash]| field_json(doc, "status", Some(heads));
    let written: Vec<(String, i64)> = match accepted {
        Some(steps) => steps.to_vec(),
        None if !before.is_empty() && status_at(before).as_str() != Some(status.as_str()) => doc
            .get_changes(before)
            .iter()
            .filter_map(|c| {
                let s = status_at(&[c.hash()]);
                s.as_str().map(|s| (s.to_string(), c.timestamp()))
            })
            .collect(),
        None => Vec::new(),
    };
    let mut steps: Vec<(String, String)> = Vec::new(); // (status, device time)
    for (s, time) in written {
        if s.parse::<Status>().is_err() || steps.last().map(|(l, _)| l.as_str()) == Some(s.as_str())
        {
            continue;
        }
        // Change times are seconds since the epoch (automerge JS and our client).
        let device_at = chrono::DateTime::from_timestamp(time, 0)
            .filter(|_| time > 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        steps.push((s, device_at));
    }
    // The settled value is what counts (a concurrent step may have lost).
    if steps.last().map(|(s, _)| s.as_str()) != Some(status.as_str()) {
        steps.push((status.clone(), String::new()));
    }
    let events: Vec<ticket::StatusEvent> = steps
        .into_iter()
        .filter_map(|(to, device_at)| {
            let e = (to != prev).then(|| ticket::StatusEvent {
                from: prev.clone(),
                to: to.clone(),
                by: by.to_string(),
                role: role.to_string(),
                at: at.to_string(),
                device_at,
            });
            prev = to;
            e
        })
        .collect();
    server_change(doc, |tx| {
        events
            .iter()
            .try_for_each(|e| ticket::append_status_event(tx, e))
            .map_err(|e| e.to_string())
    })
    .unwrap_or_else(|e| {
        tracing::error!(error = %e, "could not record a status event");
        None
    })
}

/// A field's value as JSON, now or at `heads`.
pub(crate) fn field_json(
    doc: &Automerge,
    key: &str,
    heads: Option<&[ChangeHash]>,
) -> serde_json::Value {
    let got = match heads {
        Some(h) => doc.get_at(ROOT, key, h),
        None => doc.get(ROOT, key),
    };
    match got.ok().flatten() {
        None => serde_json::Value::Null,
        Some((Value::Scalar(s), _)) => scalar_json(&s),
        Some((Value::Object(_), id)) => ReadDoc::hydrate(doc, &id, heads)
            .map(|v| hydrated_json(&v))
            .unwrap_or(serde_json::Value::Null),
    }
}

/// The whole visible document as JSON (bytes as their length).
pub fn field_json_root<R: ReadDoc>(doc: &R) -> serde_json::Value {
    ReadDoc::hydrate(doc, &ROOT, None)
        .map(|v| hydrated_json(&v))
        .unwrap_or(serde_json::Value::Null)
}

pub(crate) fn scalar_json(s: &ScalarValue) -> serde_json::Value {
    use serde_json::json;
    match s {
        ScalarValue::Str(v) => json!(v.as_str()),
        ScalarValue::Int(v) => json!(v),
        ScalarValue::Uint(v) => json!(v),
        ScalarValue::F64(v) => json!(v),
        ScalarValue::Counter(c) => json!(i64::from(c)),
        ScalarValue::Timestamp(v) => json!(v),
        ScalarValue::Boolean(v) => json!(v),
        ScalarValue::Null => serde_json::Value::Null,
        ScalarValue::Bytes(b) => json!({ "bytes": b.len() }),
        other => json!(other.to_string()),
    }
}

fn hydrated_json(v: &hydrate::Value) -> serde_json::Value {
    match v {
        hydrate::Value::Scalar(s) => scalar_json(s),
        hydrate::Value::Text(t) => serde_json::Value::String(t.to_string()),
        hydrate::Value::List(l) => {
            serde_json::Value::Array(l.iter().map(|item| hydrated_json(&item.value)).collect())
        }
        hydrate::Value::Map(m) => serde_json::Value::Object(
            m.iter()
                .map(|(k, item)| (k.to_string(), hydrated_json(&item.value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::ObjType;
    use fieldsync_shared::permissions::{write_rule, FieldGroup, WriteRule};

    /// The integrity pipeline as the doc actor runs it; the compensation.
    fn enforce(
        doc: &mut Automerge,
        before: &[ChangeHash],
        role: Role,
    ) -> Option<crate::sync::integrity::Violations> {
        let applied = doc.get_changes(before);
        crate::sync::integrity::enforce(doc, &mut Default::default(), &applied, role.into())
            .compensation
            .map(|(_, v)| v)
    }

    /// A ticket with one field of every group.
    fn base() -> Automerge {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, "ticket_no", "T-1").unwrap();
        tx.put_object(ROOT, "survey", ObjType::Map).unwrap();
        tx.put(ROOT, "priority", "B").unwrap();
        tx.put(ROOT, "appointment", "09:00").unwrap();
        tx.put(ROOT, "status", "assigned").unwrap();
        let checklist = tx.put_object(ROOT, "checklist", ObjType::List).unwrap();
        tx.insert(&checklist, 0, "check pump").unwrap();
        tx.put(ROOT, "reconciliation", "open").unwrap();
        tx.commit();
        doc
    }

    /// Applies `edit` as a device would, then enforces `role`; returns the
    /// value of `key` afterwards and whether anything was quarantined.
    fn attempt(
        role: Role,
        key: &str,
        edit: impl FnOnce(&mut automerge::transaction::Transaction<'_>),
    ) -> (serde_json::Value, bool) {
        let mut server = base();
        let mut device = server.fork();
        let mut tx = device.transaction();
        edit(&mut tx);
        tx.commit();
        let before = server.get_heads();
        server.merge(&mut device).unwrap();
        let comp = enforce(&mut server, &before, role);
        (field_json(&server, key, None), comp.is_some())
    }

    fn put(
        key: &'static str,
        value: &'static str,
    ) -> impl FnOnce(&mut automerge::transaction::Transaction<'_>) {
        move |tx| {
            tx.put(ROOT, key, value).unwrap();
        }
    }

    #[test]
    fn offline_status_steps_are_recorded_one_by_one_with_who_and_when() {
        let mut server = base(); // status "assigned", no history yet
        let before = server.get_heads();
        assert!(
            record_status_event(&mut server, &before, "disp", Role::Dispatcher, "t0", None)
                .is_some()
        );
        let mut device = server.fork();
        for s in ["en_route", "on_site", "completed"] {
            let mut tx = device.transaction();
            tx.put(ROOT, "status", s).unwrap();
            tx.put(ROOT, "unrelated", 1).unwrap();
            tx.commit();
        }
        let before = server.get_heads();
        server.merge(&mut device).unwrap();
        let change =
            record_status_event(&mut server, &before, "tech", Role::Technician, "t1", None);
        assert!(change.is_some());
        let t = ticket::read(&server).unwrap();
        let steps: Vec<(&str, &str, &str, &str)> = t
            .status_history
            .iter()
            .map(|e| (e.from.as_str(), e.to.as_str(), e.by.as_str(), e.at.as_str()))
            .collect();
        assert_eq!(
            steps,
            [
                ("", "assigned", "disp", "t0"),
                ("assigned", "en_route", "tech", "t1"),
                ("en_route", "on_site", "tech", "t1"),
                ("on_site", "completed", "tech", "t1"),
            ]
        );
        // Nothing new: nothing recorded.
        let heads = server.get_heads();
        assert!(record_status_event(&mut server, &heads, "x", Role::Admin, "t2", None).is_none());
    }

    #[test]
    fn every_role_against_every_field_group() {
        let roles = Role::ALL;
        let cases: [(&str, FieldGroup, &str); 6] = [
            ("status_history", FieldGroup::ServerRecord, "forged"),
            ("priority", FieldGroup::Intake, "A"),
            ("appointment", FieldGroup::Dispatch, "14:00"),
            ("reconciliation", FieldGroup::Reconciliation, "settled"),
            ("mystery", FieldGroup::Unknown, "x"),
            ("survey", FieldGroup::Survey, "done"),
        ];
        for role in roles {
            for (key, group, new) in cases {
                let before = field_json(&base(), key, None);
                let (after, quarantined) = attempt(role, key, put(key, new));
                let allowed = match write_rule(role, group) {
                    WriteRule::Allowed => true,
                    WriteRule::Denied => false,
                    // Only where there is none yet (the base has a survey).
                    WriteRule::Once => before.is_null(),
                    other => panic!("unexpected rule {other:?} for {key}"),
                };
                if allowed {
                    assert_eq!(after, serde_json::json!(new), "{role} writing {key}");
                    assert!(!quarantined);
                } else {
                    assert_eq!(after, before, "{role} writing {key} must be undone");
                    assert!(quarantined);
                }
            }
        }
    }

    #[test]
    fn status_values_depend_on_the_role() {
        for (role, value, allowed) in [
            (Role::Technician, "on_site", true),
            (Role::Technician, "reconciled", false),
            (Role::Technician, "cancelled", false),
            (Role::Dispatcher, "cancelled", true),
            (Role::Dispatcher, "reconciled", false),
            (Role::BackOffice, "reconciled", false), // only from signed_off
            (Role::Technician, "completed", true),   // several offline steps at once
            (Role::BackOffice, "on_site", false),
            (Role::Manager, "on_site", false),
            (Role::Admin, "reconciled", true),
        ] {
            let (after, quarantined) = attempt(role, "status", put("status", value));
            let expected = if allowed { value } else { "assigned" };
            assert_eq!(
                after,
                serde_json::json!(expected),
                "{role} setting status {value}"
            );
            assert_eq!(quarantined, !allowed);
        }
    }

    #[test]
    fn concurrent_status_changes_resolve_by_the_status_machine_rule() {
        for order in [0, 1] {
            let mut server = base();
            let mut a = server.fork();
            let mut b = server.fork();
            let mut tx = a.transaction();
            tx.put(ROOT, "status", "completed").unwrap();
            tx.commit();
            let mut tx = b.transaction();
            tx.put(ROOT, "status", "en_route").unwrap();
            tx.commit();
            if order == 0 {
                server.merge(&mut a).unwrap();
                server.merge(&mut b).unwrap();
            } else {
                server.merge(&mut b).unwrap();
                server.merge(&mut a).unwrap();
            }
            assert!(resolve_status_conflict(&mut server).is_some());
            assert_eq!(
                field_json(&server, "status", None),
                serde_json::json!("completed")
            );
            assert_eq!(
                server.get_all(ROOT, "status").unwrap().len(),
                1,
                "conflict settled"
            );
            assert!(resolve_status_conflict(&mut server).is_none());
        }
    }

    #[test]
    fn back_office_reconciles_signed_off_tickets() {
        let mut server = base();
        let mut tx = server.transaction();
        tx.put(ROOT, "status", "signed_off").unwrap();
        tx.commit();
        let mut device = server.fork();
        let mut tx = device.transaction();
        tx.put(ROOT, "status", "reconciled").unwrap();
        tx.commit();
        let before = server.get_heads();
        server.merge(&mut device).unwrap();
        assert!(enforce(&mut server, &before, Role::BackOffice).is_none());
        assert_eq!(
            field_json(&server, "status", None),
            serde_json::json!("reconciled")
        );
    }

    #[test]
    fn signoff_is_write_once_for_technicians() {
        let (after, q) = attempt(Role::Technician, "signoff", put("signoff", "signed by Ann"));
        assert_eq!((after, q), (serde_json::json!("signed by Ann"), false));
        // Changing an existing signoff is undone.
        let mut server = base();
        let mut tx = server.transaction();
        tx.put(ROOT, "signoff", "signed by Ann").unwrap();
        tx.commit();
        let mut device = server.fork();
        let mut tx = device.transaction();
        tx.put(ROOT, "signoff", "forged").unwrap();
        tx.commit();
        let before = server.get_heads();
        server.merge(&mut device).unwrap();
        assert!(enforce(&mut server, &before, Role::Technician).is_some());
        assert_eq!(
            field_json(&server, "signoff", None),
            serde_json::json!("signed by Ann")
        );
    }

    #[test]
    fn nested_edits_are_restored_and_legal_ones_in_the_same_message_kept() {
        let (after, q) = attempt(Role::BackOffice, "checklist", |tx| {
            let (_, list) = tx.get(ROOT, "checklist").unwrap().unwrap();
            tx.insert(&list, 1, "sneaky item").unwrap();
            tx.put(ROOT, "reconciliation", "settled").unwrap(); // allowed for back office
        });
        assert!(q);
        assert_eq!(after, serde_json::json!(["check pump"]));

        // The allowed half of that same change survives.
        let mut server = base();
        let mut device = server.fork();
        let mut tx = device.transaction();
        let (_, list) = tx.get(ROOT, "checklist").unwrap().unwrap();
        tx.insert(&list, 1, "sneaky item").unwrap();
        tx.put(ROOT, "reconciliation", "settled").unwrap();
        tx.commit();
        let before = server.get_heads();
        server.merge(&mut device).unwrap();
        let violations = enforce(&mut server, &before, Role::BackOffice).unwrap();
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].path, "checklist");
        assert_eq!(violations[0].attempted[0]["op"], "insert");
        assert_eq!(violations[0].attempted[0]["value"], "sneaky item");
        assert_eq!(
            field_json(&server, "reconciliation", None),
            serde_json::json!("settled")
        );
        // The device gets the compensation and ends where the server is.
        device.merge(&mut server).unwrap();
        assert_eq!(
            field_json(&device, "checklist", None),
            serde_json::json!(["check pump"])
        );
    }
}
