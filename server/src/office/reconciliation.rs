//! Back-office reconciliation (issue 11 §1): the queue of signed-off tickets
//! with their automatic checks, and the decisions (approve → `reconciled`,
//! dispute → `disputed`). Reads the projection tables; the decision itself is
//! a server edit of the ticket document (see `api::reconciliation`), recorded
//! here afterwards with the checks it was made on.
//!
//! Once `reconciled`, a ticket is locked: every later device edit is undone
//! and quarantined (`sync::doc_state::follow_up`).

use std::collections::{BTreeSet, HashMap};

use automerge::transaction::Transactable;
use automerge::{ObjType, ReadDoc, ROOT};
use diesel::prelude::*;
use fieldsync_shared::ticket;
use serde::Serialize;

use super::checks::{self, BlobFact, CataloguePart, Check, Labour, Level};
use crate::blobs::BlobStore;
use crate::db::schema::{
    parts, parts_used, reconciliation_decisions as rd, signoffs, status_events, stock_movements,
    tickets, users, visits,
};
use crate::db::{on_conn, DbConn, DbError};
use crate::projection::{MovementRow, PartRow, SignoffRow, TicketRow, VisitRow};

/// The document key of the back office's latest decision:
/// `{state, reason, by, by_username, at, override}`.
pub const DOC_KEY: &str = "reconciliation";

/// Statuses that wait for the back office.
pub const WAITING: &[&str] = &["signed_off"];

/// The parts catalogue as the checks and the export read it.
pub fn catalogue(c: &mut DbConn) -> Result<HashMap<String, CataloguePart>, DbError> {
    let rows: Vec<(String, String, i64, bool, bool)> = on_conn!(c, |c| parts::table
        .select((
            parts::part_no,
            parts::name,
            parts::unit_cost_cents,
            parts::active,
            parts::serial_required,
        ))
        .load(c))?;
    Ok(rows
        .into_iter()
        .map(|(no, name, unit_cost_cents, active, serial_required)| {
            (
                no,
                CataloguePart {
                    name,
                    unit_cost_cents,
                    active,
                    serial_required,
                },
            )
        })
        .collect())
}

/// Marks a catalogue part as needing (or not) a serial number when fitted
/// (a change of the part: its version moves on); the new version, or
/// NotFound (no such part; with If-Match too: this call never creates one)
/// or Stale.
pub fn set_serial_required(
    c: &mut DbConn,
    part_no: &str,
    required: bool,
    expect: Option<&crate::versioning::Expect>,
) -> Result<i64, crate::records::RecordError> {
    let read = crate::records::get_part(c, part_no)?
        .ok_or_else(|| {
            crate::records::RecordError::NotFound(format!("no part `{part_no}` in the catalogue"))
        })?
        .version;
    let guard = crate::versioning::guard(expect, read)?;
    let n = on_conn!(c, |c| {
        let mut q = diesel::update(parts::table.find(part_no))
            .set((
                parts::serial_required.eq(required),
                parts::version.eq(parts::version + 1),
            ))
            .into_boxed();
        if let Some(v) = guard {
            q = q.filter(parts::version.eq(v));
        }
        q.execute(c)
    })
    .map_err(DbError::from)?;
    crate::versioning::updated(n, guard)?;
    let now = crate::records::get_part(c, part_no)?;
    Ok(now.map_or(read + 1, |p| p.version))
}

/// One part line with its catalogue price.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PricedPart {
    pub part_entry_id: String,
    pub part_no: String,
    /// The catalogue's name (empty: not in the catalogue).
    pub name: String,
    pub qty: i64,
    pub serial: String,
    pub source: String,
    pub technician_id: String,
    pub unit_cost_cents: Option<i64>,
    /// qty × unit cost (None without a catalogue price).
    pub line_cost_cents: Option<i64>,
}

pub fn priced(parts: &[PartRow], catalogue: &HashMap<String, CataloguePart>) -> Vec<PricedPart> {
    parts
        .iter()
        .map(|p| {
            let cat = catalogue.get(&p.part_no);
            let unit = cat.map(|c| c.unit_cost_cents);
            PricedPart {
                part_entry_id: p.part_entry_id.clone(),
                part_no: p.part_no.clone(),
                name: cat.map(|c| c.name.clone()).unwrap_or_default(),
                qty: p.qty,
                serial: p.serial.clone(),
                source: p.source.clone(),
                technician_id: p.technician_id.clone(),
                unit_cost_cents: unit,
                line_cost_cents: unit.and_then(|u| u.checked_mul(p.qty)),
            }
        })
        .collect()
}

/// A ticket's history rows, as the checks and the export read them.
pub struct TicketFacts {
    pub ticket: TicketRow,
    pub visits: Vec<VisitRow>,
    pub parts: Vec<PartRow>,
    pub movements: Vec<MovementRow>,
    pub van_levels: HashMap<(String, String), i64>,
    pub other_visits: Vec<VisitRow>,
    pub signoff: Option<SignoffRow>,
    pub blobs: Vec<BlobFact>,
}

/// Loads what the checks need about `doc_id` (None: no such ticket).
/// `blobs`: where to look for the referenced files (None: skip the
/// attachment facts, e.g. for the export).
pub fn load_facts(
    c: &mut DbConn,
    doc_id: &str,
    blobs: Option<&BlobStore>,
) -> Result<Option<TicketFacts>, DbError> {
    let Some(ticket) = crate::history::get_ticket(c, doc_id)? else {
        return Ok(None);
    };
    let (visits, parts, movements, signoff) = on_conn!(c, |c| {
        let v: Vec<VisitRow> = visits::table
            .filter(visits::doc_id.eq(doc_id))
            .order(visits::position)
            .select(VisitRow::as_select())
            .load(c)?;
        let p: Vec<PartRow> = parts_used::table
            .filter(parts_used::doc_id.eq(doc_id))
            .order(parts_used::position)
            .select(PartRow::as_select())
            .load(c)?;
        let m: Vec<MovementRow> = stock_movements::table
            .filter(stock_movements::doc_id.eq(doc_id))
            .select(MovementRow::as_select())
            .load(c)?;
        let s: Option<SignoffRow> = signoffs::table
            .find(doc_id)
            .select(SignoffRow::as_select())
            .first(c)
            .optional()?;
        Ok::<_, DbError>((v, p, m, s))
    })?;
    let van_levels = van_levels(c, &parts)?;
    let other_visits = other_visits(c, doc_id, &visits)?;
    let blobs = match blobs {
        Some(store) => blob_facts(c, doc_id, signoff.as_ref(), store)?,
        None => Vec::new(),
    };
    Ok(Some(TicketFacts {
        ticket,
        visits,
        parts,
        movements,
        van_levels,
        other_visits,
        signoff,
        blobs,
    }))
}

/// Current van levels of the (technician, part) pairs of these van lines.
fn van_levels(
    c: &mut DbConn,
    parts: &[PartRow],
) -> Result<HashMap<(String, String), i64>, DbError> {
    let techs: BTreeSet<&str> = parts
        .iter()
        .filter(|p| p.source == "van")
        .map(|p| p.technician_id.as_str())
        .collect();
    if techs.is_empty() {
        return Ok(HashMap::new());
    }
    let nos: BTreeSet<&str> = parts.iter().map(|p| p.part_no.as_str()).collect();
    let rows: Vec<(String, String, i64)> = on_conn!(c, |c| stock_movements::table
        .filter(stock_movements::technician_id.eq_any(&techs))
        .filter(stock_movements::part_no.eq_any(&nos))
        .select((
            stock_movements::technician_id,
            stock_movements::part_no,
            stock_movements::qty_delta,
        ))
        .load(c))?;
    let mut levels: HashMap<(String, String), i64> = HashMap::new();
    for (t, p, q) in rows {
        let l = levels.entry((t, p)).or_default();
        *l = l.saturating_add(q);
    }
    Ok(levels)
}

/// The same technicians' visits on other tickets around these visits' days
/// (two days either side, compared as text: history times are RFC 3339).
fn other_visits(c: &mut DbConn, doc_id: &str, mine: &[VisitRow]) -> Result<Vec<VisitRow>, DbError> {
    let techs: BTreeSet<&str> = mine
        .iter()
        .map(|v| v.technician_id.as_str())
        .filter(|t| !t.is_empty())
        .collect();
    let days: Vec<chrono::NaiveDate> = mine
        .iter()
        .flat_map(|v| [&v.arrived_at, &v.departed_at])
        .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc).date_naive())
        .collect();
    let (Some(first), Some(last)) = (days.iter().min(), days.iter().max()) else {
        return Ok(Vec::new());
    };
    if techs.is_empty() {
        return Ok(Vec::new());
    }
    let from = (*first - chrono::Days::new(2)).to_string();
    let to = (*last + chrono::Days::new(3)).to_string();
    on_conn!(c, |c| visits::table
        .filter(visits::technician_id.eq_any(&techs))
        .filter(visits::doc_id.ne(doc_id))
        .filter(visits::arrived_at.ge(&from))
        .filter(visits::arrived_at.lt(&to))
        .select(VisitRow::as_select())
        .load(c)
        .map_err(DbError::from))
}

/// The files the stored ticket references now (attachments and the
/// signature image) and whether blob storage has each.
fn blob_facts(
    c: &mut DbConn,
    doc_id: &str,
    signoff: Option<&SignoffRow>,
    store: &BlobStore,
) -> Result<Vec<BlobFact>, DbError> {
    let doc = crate::storage::load(c, doc_id)?.materialize()?;
    let signature = signoff.map(|s| s.signature_sha256.as_str()).unwrap_or("");
    Ok(ticket::referenced_blobs(&doc)
        .into_iter()
        .map(|sha256| BlobFact {
            kind: if sha256 == signature {
                "signature"
            } else {
                "attachment"
            },
            present: store.exists(&sha256),
            sha256,
        })
        .collect())
}

impl TicketFacts {
    pub fn checks(&self, catalogue: &HashMap<String, CataloguePart>) -> Vec<Check> {
        checks::run_all(&checks::Facts {
            ticket: &self.ticket,
            visits: &self.visits,
            parts: &self.parts,
            catalogue,
            movements: &self.movements,
            van_levels: &self.van_levels,
            other_visits: &self.other_visits,
            signoff: self.signoff.as_ref(),
            blobs: &self.blobs,
        })
    }
}

/// One ticket as the back office reviews it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Review {
    pub doc_id: String,
    pub ticket_no: String,
    pub status: String,
    pub priority: String,
    pub customer_id: String,
    pub customer_name: String,
    pub asset_id: String,
    pub product: String,
    pub model: String,
    pub serial: String,
    pub technician_id: String,
    pub technician: String,
    pub completed_at: String,
    /// When the server accepted the latest `signed_off` (empty: never).
    pub signed_off_at: String,
    /// The worst check level, and whether approving needs an override.
    pub level: Level,
    pub blocking: bool,
    pub checks: Vec<Check>,
    pub labour: Labour,
    pub parts: Vec<PricedPart>,
    /// Sum of the priced lines (lines without a price are not counted; the
    /// `parts_catalogue` check says which).
    pub parts_cost_cents: i64,
    pub survey: Option<serde_json::Value>,
    pub attachments: Vec<BlobFact>,
    /// The signed content hash the checks were made on (approval is refused
    /// if the visits or parts change before it lands).
    pub content_sha256: Option<String>,
}

pub fn review(
    c: &mut DbConn,
    facts: &TicketFacts,
    catalogue: &HashMap<String, CataloguePart>,
    usernames: &HashMap<String, String>,
) -> Result<Review, DbError> {
    let checks = facts.checks(catalogue);
    let level = checks::worst(&checks);
    let parts = priced(&facts.parts, catalogue);
    let t = &facts.ticket;
    let signed_off_at = last_event_at(c, &t.doc_id, "signed_off")?.unwrap_or_default();
    Ok(Review {
        doc_id: t.doc_id.clone(),
        ticket_no: t.ticket_no.clone(),
        status: t.status.clone(),
        priority: t.priority.clone(),
        customer_id: t.customer_id.clone(),
        customer_name: t.customer_name.clone(),
        asset_id: t.asset_id.clone(),
        product: t.product.clone(),
        model: t.model.clone(),
        serial: t.serial.clone(),
        technician_id: t.technician_id.clone(),
        technician: usernames.get(&t.technician_id).cloned().unwrap_or_default(),
        completed_at: t.completed_at.clone(),
        signed_off_at,
        level,
        blocking: level == Level::Problem,
        labour: checks::labour(&facts.visits),
        parts_cost_cents: parts.iter().filter_map(|p| p.line_cost_cents).sum(),
        parts,
        checks,
        survey: t.survey_scale.map(|scale| {
            serde_json::json!({
                "scale": scale,
                "efficiency": t.survey_efficiency,
                "attitude": t.survey_attitude,
                "reasonableness": t.survey_reasonableness,
                "comment": t.feedback_comment,
            })
        }),
        attachments: facts.blobs.clone(),
        content_sha256: facts
            .signoff
            .as_ref()
            .map(|s| s.current_content_sha256.clone()),
    })
}

/// User id → username, for every account (small: staff of one company).
pub fn usernames(c: &mut DbConn) -> Result<HashMap<String, String>, DbError> {
    let rows: Vec<(String, String)> = on_conn!(c, |c| users::table
        .select((users::id, users::username))
        .load(c))?;
    Ok(rows.into_iter().collect())
}

/// When the server accepted the latest change to `status` (None: never).
pub fn last_event_at(
    c: &mut DbConn,
    doc_id: &str,
    status: &str,
) -> Result<Option<String>, DbError> {
    on_conn!(c, |c| status_events::table
        .filter(status_events::doc_id.eq(doc_id))
        .filter(status_events::to_status.eq(status))
        .order(status_events::seq.desc())
        .select(status_events::at)
        .first(c)
        .optional()
        .map_err(DbError::from))
}

/// One page of the queue: the tickets in `status` (signed_off by default),
/// oldest completion first (then by id), after `after` = (completed_at,
/// doc_id), each with its checks; and the key of its last ticket if more
/// follow.
pub fn queue(
    c: &mut DbConn,
    store: &BlobStore,
    status: &str,
    after: Option<(String, String)>,
    limit: i64,
) -> Result<(Vec<Review>, Option<(String, String)>), DbError> {
    let mut keys: Vec<(String, String)> = on_conn!(c, |c| {
        let mut q = tickets::table
            .filter(tickets::status.eq(status))
            .order(tickets::completed_at)
            .then_order_by(tickets::doc_id)
            .select((tickets::completed_at, tickets::doc_id))
            .limit(limit.saturating_add(1))
            .into_boxed();
        if let Some((at, id)) = &after {
            q = q.filter(
                tickets::completed_at
                    .gt(at.clone())
                    .or(tickets::completed_at
                        .eq(at.clone())
                        .and(tickets::doc_id.gt(id.clone()))),
            );
        }
        q.load(c)
    })?;
    let more = keys.len() as i64 > limit;
    keys.truncate(limit.max(0) as usize);
    let next = if more { keys.last().cloned() } else { None };
    let catalogue = catalogue(c)?;
    let names = usernames(c)?;
    let mut out = Vec::with_capacity(keys.len());
    for (_, id) in keys {
        if let Some(f) = load_facts(c, &id, Some(store))? {
            out.push(review(c, &f, &catalogue, &names)?);
        }
    }
    // Kept in the key order (completion, then id): pages that follow each
    // other never overlap and read as one ordered list.
    Ok((out, next))
}

/// A decision as stored.
#[derive(Clone, Debug, Serialize, Queryable, Selectable, Insertable, utoipa::ToSchema)]
#[diesel(table_name = rd)]
pub struct DecisionRow {
    pub id: String,
    pub doc_id: String,
    pub ticket_no: String,
    /// `reconciled` or `disputed`.
    pub decision: String,
    /// The dispute reason, or the approval (override) note.
    pub reason: String,
    /// Approved although a check was a problem.
    pub override_problems: bool,
    /// The checks as they were (JSON array).
    pub checks: String,
    pub by_user: String,
    pub at: String,
}

pub fn record_decision(c: &mut DbConn, row: &DecisionRow) -> Result<(), DbError> {
    on_conn!(c, |c| diesel::insert_into(rd::table)
        .values(row)
        .execute(c)
        .map(|_| ())
        .map_err(DbError::from))
}

/// Every decision on a ticket, oldest first.
pub fn decisions(c: &mut DbConn, doc_id: &str) -> Result<Vec<DecisionRow>, DbError> {
    on_conn!(c, |c| rd::table
        .filter(rd::doc_id.eq(doc_id))
        .order((rd::at, rd::id))
        .select(DecisionRow::as_select())
        .load(c)
        .map_err(DbError::from))
}

/// What the decision writes into the ticket document.
pub struct DocDecision {
    pub state: &'static str,
    pub reason: String,
    pub by: String,
    pub by_username: String,
    pub at: String,
    pub override_problems: bool,
}

/// Writes the `reconciliation` map (a fresh one: the latest decision).
pub fn write_to_doc<T: Transactable>(tx: &mut T, d: &DocDecision) -> Result<(), String> {
    let e = |e: automerge::AutomergeError| e.to_string();
    let m = tx.put_object(ROOT, DOC_KEY, ObjType::Map).map_err(e)?;
    tx.put(&m, "state", d.state).map_err(e)?;
    tx.put(&m, "reason", d.reason.as_str()).map_err(e)?;
    tx.put(&m, "by", d.by.as_str()).map_err(e)?;
    tx.put(&m, "by_username", d.by_username.as_str())
        .map_err(e)?;
    tx.put(&m, "at", d.at.as_str()).map_err(e)?;
    tx.put(&m, "override", d.override_problems).map_err(e)?;
    Ok(())
}

/// Reads the `reconciliation` map back (None: no decision yet).
pub fn read_from_doc<R: ReadDoc>(doc: &R) -> Option<serde_json::Value> {
    let (_, map) = doc.get(ROOT, DOC_KEY).ok().flatten()?;
    let s = |k: &str| -> serde_json::Value {
        match doc.get(&map, k).ok().flatten() {
            Some((automerge::Value::Scalar(v), _)) => match v.as_ref() {
                automerge::ScalarValue::Str(s) => serde_json::json!(s.as_str()),
                automerge::ScalarValue::Boolean(b) => serde_json::json!(b),
                other => serde_json::json!(other.to_string()),
            },
            Some((automerge::Value::Object(ObjType::Text), id)) => {
                serde_json::json!(doc.text(&id).unwrap_or_default())
            }
            _ => serde_json::Value::Null,
        }
    };
    Some(serde_json::json!({
        "state": s("state"),
        "reason": s("reason"),
        "by": s("by"),
        "by_username": s("by_username"),
        "at": s("at"),
        "override": s("override"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::AutoCommit;

    #[test]
    fn the_decision_round_trips_through_the_document() {
        let mut doc = AutoCommit::new();
        assert_eq!(read_from_doc(&doc), None);
        let d = DocDecision {
            state: "disputed",
            reason: "two motors billed, one fitted".into(),
            by: "u-1".into(),
            by_username: "bob".into(),
            at: "2026-11-25T10:00:00.000Z".into(),
            override_problems: false,
        };
        write_to_doc(&mut doc, &d).unwrap();
        let v = read_from_doc(&doc).unwrap();
        assert_eq!(v["state"], "disputed");
        assert_eq!(v["reason"], "two motors billed, one fitted");
        assert_eq!(v["by_username"], "bob");
        assert_eq!(v["override"], false);
    }

    #[test]
    fn parts_are_priced_from_the_catalogue() {
        let mut cat = HashMap::new();
        cat.insert(
            "MTR-40".to_string(),
            CataloguePart {
                name: "Motor".into(),
                unit_cost_cents: 32000,
                active: true,
                serial_required: false,
            },
        );
        let row = |no: &str, qty| PartRow {
            doc_id: "d".into(),
            position: 0,
            part_entry_id: "p1".into(),
            part_no: no.into(),
            qty,
            serial: String::new(),
            source: "van".into(),
            visit_id: String::new(),
            technician_id: String::new(),
        };
        let p = priced(
            &[row("MTR-40", 2), row("NOPE", 1), row("MTR-40", i64::MAX)],
            &cat,
        );
        assert_eq!(p[0].line_cost_cents, Some(64000));
        assert_eq!((p[1].unit_cost_cents, p[1].line_cost_cents), (None, None));
        assert_eq!(
            p[2].line_cost_cents, None,
            "overflow is no price, not a panic"
        );
    }
}
