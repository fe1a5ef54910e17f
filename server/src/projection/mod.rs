//! The service history: relational rows computed from a ticket document.
//!
//! `project` is a pure function of the document, so the rows written at
//! commit time (storage::append_changes, same transaction as the changes)
//! and the rows `fieldsync projection rebuild` recomputes are identical by
//! construction. Everything the history needs — including who changed the
//! status and when — therefore lives in the document (`status_history` is
//! appended by the server, see sync::validation::record_status_event).

pub mod store;

use automerge::ReadDoc;
use diesel::prelude::*;
use fieldsync_shared::ticket::{self, Ticket};

use crate::db::schema::{parts_used, signoffs, status_events, stock_movements, tickets, visits};

/// Everything one ticket contributes to the history tables.
#[derive(Clone, Debug, PartialEq)]
pub struct TicketRows {
    pub ticket: TicketRow,
    pub visits: Vec<VisitRow>,
    pub parts: Vec<PartRow>,
    pub movements: Vec<MovementRow>,
    pub signoff: Option<SignoffRow>,
    pub events: Vec<StatusEventRow>,
}

#[derive(
    Clone, Debug, PartialEq, Insertable, Queryable, Selectable, serde::Serialize, utoipa::ToSchema,
)]
#[diesel(table_name = tickets)]
pub struct TicketRow {
    pub doc_id: String,
    pub ticket_no: String,
    pub status: String,
    pub priority: String,
    pub customer_id: String,
    pub customer_name: String,
    pub customer_phone: String,
    pub customer_address: String,
    pub site: String,
    pub asset_id: String,
    pub product: String,
    pub model: String,
    pub serial: String,
    pub fault_description: String,
    pub occurred_at: String,
    pub reported_via: String,
    pub technician_id: String,
    pub appointment_start: String,
    pub appointment_end: String,
    /// When the server first saw the ticket (first status event).
    pub created_at: String,
    /// When it last reached `completed` (empty if it has not).
    pub completed_at: String,
    /// The latest visit's result.
    pub result: String,
    pub visit_count: i64,
    pub survey_scale: Option<i64>,
    pub survey_efficiency: Option<i64>,
    pub survey_attitude: Option<i64>,
    pub survey_reasonableness: Option<i64>,
    pub feedback_comment: String,
}

#[derive(
    Clone, Debug, PartialEq, Insertable, Queryable, Selectable, serde::Serialize, utoipa::ToSchema,
)]
#[diesel(table_name = visits)]
pub struct VisitRow {
    pub doc_id: String,
    pub position: i64,
    pub visit_id: String,
    pub technician_id: String,
    pub arrived_at: String,
    pub departed_at: String,
    pub work_done: String,
    pub result: String,
    pub fixed: Option<bool>,
}

#[derive(
    Clone, Debug, PartialEq, Insertable, Queryable, Selectable, serde::Serialize, utoipa::ToSchema,
)]
#[diesel(table_name = parts_used)]
pub struct PartRow {
    pub doc_id: String,
    pub position: i64,
    pub part_entry_id: String,
    pub part_no: String,
    pub qty: i64,
    pub serial: String,
    pub source: String,
    pub visit_id: String,
    pub technician_id: String,
}

#[derive(
    Clone, Debug, PartialEq, Insertable, Queryable, Selectable, serde::Serialize, utoipa::ToSchema,
)]
#[diesel(table_name = stock_movements)]
pub struct MovementRow {
    pub id: String,
    pub technician_id: String,
    pub part_no: String,
    pub qty_delta: i64,
    pub reason: String,
    pub doc_id: Option<String>,
    pub at: String,
}

#[derive(
    Clone, Debug, PartialEq, Insertable, Queryable, Selectable, serde::Serialize, utoipa::ToSchema,
)]
#[diesel(table_name = signoffs)]
pub struct SignoffRow {
    pub doc_id: String,
    pub signer_name: String,
    pub signed_at: String,
    pub signature_sha256: String,
    /// Hex heads, comma-separated.
    pub doc_heads: String,
    /// Every head is a change of this document.
    pub heads_valid: bool,
    /// Hash of visits + parts as of the heads (empty if the heads are invalid).
    pub signed_content_sha256: String,
    pub current_content_sha256: String,
    /// Signed visits or parts were edited after signing: the back office
    /// must look before reconciling.
    pub modified_after_signoff: bool,
}

#[derive(
    Clone, Debug, PartialEq, Insertable, Queryable, Selectable, serde::Serialize, utoipa::ToSchema,
)]
#[diesel(table_name = status_events)]
pub struct StatusEventRow {
    pub doc_id: String,
    pub seq: i64,
    pub from_status: String,
    pub to_status: String,
    pub by_user: String,
    pub by_role: String,
    /// Server time of acceptance.
    pub at: String,
    /// Device time of the change (empty if unknown).
    pub device_at: String,
}

/// Root keys the projection does not read: edits to them change no row.
const UNPROJECTED: &[&str] = &["notes", "checklist", "attachments", "_forwards"];

/// Root keys only the ticket row and status events are made of.
const HEADER: &[&str] = &[
    "schema",
    "ticket_no",
    "customer",
    "site",
    "asset",
    "fault",
    "priority",
    "status",
    "assignment",
    "appointment",
    "survey",
    "status_history",
];

/// What changed in one document's rows, for the commit to write.
#[derive(Clone, Debug, PartialEq)]
pub enum RowsDelta {
    /// Every row of the document is replaced (None: it has none).
    All(Option<Box<TicketRows>>),
    /// Only these: the ticket row, visit rows by position, and the status
    /// events (all of them; they are few).
    Part {
        ticket: Option<Box<TicketRow>>,
        /// Only the ticket row's visit figures changed (a cheaper update).
        visit_figures_only: bool,
        /// Visit rows, and whether each is new (appended).
        visits: Vec<(VisitRow, bool)>,
        events: Option<Vec<StatusEventRow>>,
    },
}

/// Brings `rows` (the document's rows before the message) up to date with
/// `doc`, reading only what `touch` says changed, so a visit added to a long
/// ticket costs the same as one added to a new ticket; returns what changed
/// (None: nothing). Falls back to `project` whenever it cannot be sure; the
/// property test checks that the result always equals `project`.
pub fn update<R: ReadDoc>(
    rows: &mut TicketRows,
    doc_id: &str,
    doc: &R,
    touch: &crate::sync::integrity::Touch,
) -> Option<RowsDelta> {
    let relevant: Vec<&String> = touch
        .fields
        .iter()
        .filter(|f| !UNPROJECTED.contains(&f.as_str()))
        .collect();
    if relevant.is_empty() {
        return None;
    }
    // Everything re-read; the cache is replaced (or, when the document is no
    // longer a ticket, the caller drops it on `All(None)`).
    let full = |rows: &mut TicketRows| {
        let new = project(doc_id, doc);
        if let Some(n) = &new {
            *rows = n.clone();
        }
        Some(RowsDelta::All(new.map(Box::new)))
    };
    // Parts, movements and the signoff's content hash depend on visits and
    // more: those (rarer) messages take the full path.
    let simple = relevant
        .iter()
        .all(|f| f.as_str() == "visits" || HEADER.contains(&f.as_str()));
    if !simple || rows.signoff.is_some() || !rows.parts.is_empty() || !ticket::is_ticket(doc) {
        return full(rows);
    }
    let mut changed_visits = Vec::new();
    let mut ticket_changed = false;
    let mut header_changed = false;
    if touch.fields.contains("visits") {
        if touch.visits_reshaped {
            return full(rows);
        }
        let Some((list, len)) = ticket::visits_list(doc) else {
            return full(rows);
        };
        let mut placed = Vec::new();
        for item in &touch.visits {
            let Some(pos) = item_position(doc, &list, item) else {
                return full(rows); // not in the live list (or not a map)
            };
            placed.push((pos, item));
        }
        placed.sort_by_key(|(pos, _)| *pos);
        // Decide before changing anything: only edits in place and appends
        // at the end, with every list element a visit map, stay incremental.
        let mut end = rows.visits.len();
        for (pos, _) in &placed {
            match pos.cmp(&end) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => end += 1,
                std::cmp::Ordering::Greater => return full(rows),
            }
        }
        if end != len {
            return full(rows); // an insert in the middle, or a non-map item
        }
        for (pos, item) in placed {
            let v = ticket::read_visit(doc, item);
            let row = VisitRow {
                doc_id: doc_id.to_string(),
                position: pos as i64,
                visit_id: v.id,
                technician_id: v.technician_id,
                arrived_at: v.arrived_at,
                departed_at: v.departed_at,
                work_done: v.work_done,
                result: v.result,
                fixed: v.fixed,
            };
            let appended = pos == rows.visits.len();
            if appended {
                rows.visits.push(row.clone());
            } else if rows.visits[pos] == row {
                continue;
            } else {
                rows.visits[pos] = row.clone();
            }
            changed_visits.push((row, appended));
        }
        let count = rows.visits.len() as i64;
        let result = rows
            .visits
            .last()
            .map(|v| v.result.clone())
            .unwrap_or_default();
        if rows.ticket.visit_count != count || rows.ticket.result != result {
            rows.ticket.visit_count = count;
            rows.ticket.result = result;
            ticket_changed = true;
        }
    }
    let mut events = None;
    if relevant.iter().any(|f| HEADER.contains(&f.as_str())) {
        let Some(header) = project_header(doc_id, doc) else {
            return full(rows);
        };
        let ticket = TicketRow {
            visit_count: rows.ticket.visit_count,
            result: rows.ticket.result.clone(),
            ..header.ticket
        };
        if ticket != rows.ticket {
            rows.ticket = ticket;
            ticket_changed = true;
            header_changed = true;
        }
        if header.events != rows.events {
            rows.events = header.events.clone();
            events = Some(header.events);
        }
    }
    if !ticket_changed && changed_visits.is_empty() && events.is_none() {
        return None;
    }
    Some(RowsDelta::Part {
        ticket: ticket_changed.then(|| Box::new(rows.ticket.clone())),
        visit_figures_only: !header_changed,
        visits: changed_visits,
        events,
    })
}

/// Index of a visit map in the visits list, if it is there now.
fn item_position<R: ReadDoc>(
    doc: &R,
    list: &automerge::ObjId,
    item: &automerge::ObjId,
) -> Option<usize> {
    let automerge::ObjId::Id(ctr, actor, _) = item else {
        return None;
    };
    let cursor = automerge::Cursor::try_from(format!("{ctr}@{actor}")).ok()?;
    let pos = doc.get_cursor_position(list, &cursor, None).ok()?;
    match doc.get(list, pos).ok().flatten() {
        Some((automerge::Value::Object(automerge::ObjType::Map), id)) if id == *item => Some(pos),
        _ => None,
    }
}

/// The ticket row (without its visit figures) and the status events.
fn project_header<R: ReadDoc>(doc_id: &str, doc: &R) -> Option<TicketRows> {
    let t: Ticket = ticket::read_header(doc).ok()?;
    Some(rows_of(doc_id, doc, &t))
}

/// The rows for one document; None when it is not a ticket.
pub fn project<R: ReadDoc>(doc_id: &str, doc: &R) -> Option<TicketRows> {
    if !ticket::is_ticket(doc) {
        return None;
    }
    // A document from newer software is left as it is until we understand it.
    let t: Ticket = ticket::read(doc).ok()?;
    Some(rows_of(doc_id, doc, &t))
}

fn rows_of<R: ReadDoc>(doc_id: &str, doc: &R, t: &Ticket) -> TicketRows {
    let id = || doc_id.to_string();
    let visits: Vec<VisitRow> = t
        .visits
        .iter()
        .enumerate()
        .map(|(i, v)| VisitRow {
            doc_id: id(),
            position: i as i64,
            visit_id: v.id.clone(),
            technician_id: v.technician_id.clone(),
            arrived_at: v.arrived_at.clone(),
            departed_at: v.departed_at.clone(),
            work_done: v.work_done.clone(),
            result: v.result.clone(),
            fixed: v.fixed,
        })
        .collect();
    // Whose van a part came from: the entry's own technician, else its
    // visit's, else the ticket's assignee.
    let technician_of = |p: &ticket::PartUsed| {
        if !p.technician_id.is_empty() {
            return p.technician_id.clone();
        }
        t.visits
            .iter()
            .find(|v| v.id == p.visit_id && !v.technician_id.is_empty())
            .map(|v| v.technician_id.clone())
            .unwrap_or_else(|| t.technician_id.clone())
    };
    let parts: Vec<PartRow> = t
        .parts_used
        .iter()
        .enumerate()
        .map(|(i, p)| PartRow {
            doc_id: id(),
            position: i as i64,
            part_entry_id: p.id.clone(),
            part_no: p.part_no.clone(),
            qty: p.qty,
            serial: p.serial.clone(),
            source: p.source.clone(),
            visit_id: p.visit_id.clone(),
            technician_id: technician_of(p),
        })
        .collect();
    let movements = parts
        .iter()
        // Only plausible quantities move stock; the catalogue check is made
        // where the rows are stored (records::stock_anomalies lists the rest).
        .filter(|p| {
            p.source == "van"
                && crate::records::is_plausible_part_qty(p.qty)
                && !p.technician_id.is_empty()
        })
        .map(|p| MovementRow {
            id: format!("{doc_id}/{}", p.position),
            technician_id: p.technician_id.clone(),
            part_no: p.part_no.clone(),
            qty_delta: -p.qty,
            reason: format!("used on {}", t.intake.ticket_no),
            doc_id: Some(id()),
            at: visit_time(t, &p.visit_id),
        })
        .collect();
    let signoff = t.signoff.as_ref().map(|s| {
        let heads = ticket::parse_heads(&s.doc_heads);
        let signed = heads
            .as_deref()
            .and_then(|h| ticket::signed_content_sha256(doc, h));
        let current = ticket::current_content_sha256(doc);
        SignoffRow {
            doc_id: id(),
            signer_name: s.signer_name.clone(),
            signed_at: s.signed_at.clone(),
            signature_sha256: s.signature_sha256.clone(),
            doc_heads: s.doc_heads.join(","),
            heads_valid: signed.is_some(),
            modified_after_signoff: signed.as_deref().is_some_and(|h| h != current),
            signed_content_sha256: signed.unwrap_or_default(),
            current_content_sha256: current,
        }
    });
    let events: Vec<StatusEventRow> = t
        .status_history
        .iter()
        .enumerate()
        .map(|(i, e)| StatusEventRow {
            doc_id: id(),
            seq: i as i64,
            from_status: e.from.clone(),
            to_status: e.to.clone(),
            by_user: e.by.clone(),
            by_role: e.role.clone(),
            at: e.at.clone(),
            device_at: e.device_at.clone(),
        })
        .collect();
    let created_at = t
        .status_history
        .first()
        .map(|e| e.at.clone())
        .unwrap_or_default();
    let completed_at = t
        .status_history
        .iter()
        .rev()
        .find(|e| e.to == "completed")
        .map(|e| e.at.clone())
        .unwrap_or_default();
    let survey = t.survey.clone().unwrap_or_default();
    let ticket = TicketRow {
        doc_id: id(),
        ticket_no: t.intake.ticket_no.clone(),
        status: t.status.clone(),
        priority: t.intake.priority.clone(),
        customer_id: t.intake.customer_id.clone(),
        customer_name: t.intake.customer_name.clone(),
        customer_phone: t.intake.customer_phone.clone(),
        customer_address: t.intake.customer_address.clone(),
        site: t.intake.site.clone(),
        asset_id: t.intake.asset_id.clone(),
        product: t.intake.product.clone(),
        model: t.intake.model.clone(),
        serial: t.intake.serial.clone(),
        fault_description: t.intake.fault_description.clone(),
        occurred_at: t.intake.occurred_at.clone(),
        reported_via: t.intake.reported_via.clone(),
        technician_id: t.technician_id.clone(),
        appointment_start: t.appointment_start.clone(),
        appointment_end: t.appointment_end.clone(),
        created_at,
        completed_at,
        result: t
            .visits
            .last()
            .map(|v| v.result.clone())
            .unwrap_or_default(),
        visit_count: t.visits.len() as i64,
        survey_scale: t.survey.as_ref().map(|s| s.scale),
        survey_efficiency: survey.efficiency,
        survey_attitude: survey.attitude,
        survey_reasonableness: survey.reasonableness,
        feedback_comment: survey.comment,
    };
    TicketRows {
        ticket,
        visits,
        parts,
        movements,
        signoff,
        events,
    }
}

/// When a part left the van: its visit's departure (or arrival) time.
fn visit_time(t: &Ticket, visit_id: &str) -> String {
    t.visits
        .iter()
        .find(|v| v.id == visit_id)
        .map(|v| {
            if v.departed_at.is_empty() {
                v.arrived_at.clone()
            } else {
                v.departed_at.clone()
            }
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::AutoCommit;
    use fieldsync_shared::ticket::{Intake, PartUsed, StatusEvent};

    fn doc() -> AutoCommit {
        let mut d = AutoCommit::new();
        ticket::create(
            &mut d,
            &Intake {
                ticket_no: "T-1".into(),
                customer_name: "Acme".into(),
                product: "Mixer".into(),
                fault_description: "stops".into(),
                priority: "A".into(),
                ..Default::default()
            },
        )
        .unwrap();
        d
    }

    fn event(to: &str, at: &str) -> StatusEvent {
        StatusEvent {
            from: String::new(),
            to: to.into(),
            by: "u".into(),
            role: "technician".into(),
            at: at.into(),
            device_at: String::new(),
        }
    }

    #[test]
    fn non_tickets_project_to_nothing() {
        assert_eq!(project("d", &AutoCommit::new()), None);
    }

    #[test]
    fn van_parts_become_stock_movements_for_the_right_technician() {
        let mut d = doc();
        ticket::set_assignment(&mut d, "assignee", "disp", "2026-11-23T08:00:00Z").unwrap();
        ticket::check_in(&mut d, "v1", "visitor", "2026-11-23T09:00:00Z").unwrap();
        let part = |id: &str, source: &str, visit: &str, tech: &str| PartUsed {
            id: id.into(),
            part_no: "P-1".into(),
            qty: 2,
            source: source.into(),
            visit_id: visit.into(),
            technician_id: tech.into(),
            ..Default::default()
        };
        ticket::add_part(&mut d, &part("a", "van", "v1", "")).unwrap();
        ticket::add_part(&mut d, &part("b", "van", "", "")).unwrap();
        ticket::add_part(&mut d, &part("c", "van", "", "explicit")).unwrap();
        ticket::add_part(&mut d, &part("d", "warehouse", "v1", "")).unwrap();
        let rows = project("doc", &d).unwrap();
        let m: Vec<(&str, i64)> = rows
            .movements
            .iter()
            .map(|m| (m.technician_id.as_str(), m.qty_delta))
            .collect();
        assert_eq!(m, [("visitor", -2), ("assignee", -2), ("explicit", -2)]);
        assert_eq!(
            rows.parts.len(),
            4,
            "warehouse parts are used, not van stock"
        );
    }

    #[test]
    fn status_history_gives_events_created_and_completed_times() {
        let mut d = doc();
        for (to, at) in [
            ("new", "t1"),
            ("completed", "t2"),
            ("reopened", "t3"),
            ("completed", "t4"),
        ] {
            ticket::append_status_event(&mut d, &event(to, at)).unwrap();
        }
        let rows = project("doc", &d).unwrap();
        assert_eq!(rows.events.len(), 4);
        assert_eq!(
            (
                rows.ticket.created_at.as_str(),
                rows.ticket.completed_at.as_str()
            ),
            ("t1", "t4")
        );
    }

    #[test]
    fn signoff_flags_later_edits_and_unknown_heads() {
        let mut d = doc();
        ticket::check_in(&mut d, "v1", "tech", "2026-11-23T09:00:00Z").unwrap();
        let heads = d.get_heads();
        ticket::sign(&mut d, "Li", "2026-11-23T10:00:00Z", "ab", &heads).unwrap();
        let s = project("doc", &d).unwrap().signoff.unwrap();
        assert!(s.heads_valid && !s.modified_after_signoff);
        ticket::check_out(&mut d, "v1", "2026-11-23T11:00:00Z", "more", "ok", true).unwrap();
        let s = project("doc", &d).unwrap().signoff.unwrap();
        assert!(s.heads_valid && s.modified_after_signoff);

        let mut forged = doc();
        ticket::sign(
            &mut forged,
            "X",
            "t",
            "ab",
            &[automerge::ChangeHash([9; 32])],
        )
        .unwrap();
        let s = project("doc", &forged).unwrap().signoff.unwrap();
        assert!(!s.heads_valid && !s.modified_after_signoff);
        assert_eq!(s.signed_content_sha256, "");
    }
}
