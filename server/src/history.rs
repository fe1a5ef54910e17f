//! Reading the service history (the projection tables): ticket lists with
//! filters, a ticket's timeline, and history per customer, asset or
//! technician. Read-only; the rows are written by `projection`.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::db::schema::{parts, parts_used, signoffs, status_events, tickets, visits};
use crate::db::{lower, on_conn, DbConn, DbError};
use crate::projection::{PartRow, SignoffRow, StatusEventRow, TicketRow, VisitRow};

/// Filters of `GET /api/v1/tickets` (all optional, combined with AND).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TicketFilter {
    pub status: Option<String>,
    pub priority: Option<String>,
    /// Technician user id.
    pub technician_id: Option<String>,
    pub customer_id: Option<String>,
    pub asset_id: Option<String>,
    pub serial: Option<String>,
    /// Created at or after (RFC 3339 or a date, compared as text).
    pub from: Option<String>,
    /// Created before.
    pub to: Option<String>,
    /// Free text: ticket number, customer, product, model, serial, fault.
    pub q: Option<String>,
    /// SLA summary as last computed: on_time, at_risk, breached (the worst
    /// running target), settled or none.
    pub sla: Option<String>,
    pub limit: Option<i64>,
    /// Keyset paging: only tickets after this (created_at, doc_id) in the
    /// list's order (newest first, then by id).
    pub after: Option<(String, String)>,
}

pub const MAX_LIMIT: i64 = 500;

pub fn list_tickets(conn: &mut DbConn, f: &TicketFilter) -> Result<Vec<TicketRow>, DbError> {
    let limit = f.limit.unwrap_or(100).clamp(1, MAX_LIMIT + 1);
    on_conn!(conn, |c| {
        let mut q = tickets::table.into_boxed();
        if let Some(v) = &f.status {
            q = q.filter(tickets::status.eq(v));
        }
        if let Some(v) = &f.priority {
            q = q.filter(tickets::priority.eq(v));
        }
        if let Some(v) = &f.technician_id {
            q = q.filter(tickets::technician_id.eq(v));
        }
        if let Some(v) = &f.customer_id {
            q = q.filter(tickets::customer_id.eq(v));
        }
        if let Some(v) = &f.asset_id {
            q = q.filter(tickets::asset_id.eq(v));
        }
        if let Some(v) = &f.serial {
            q = q.filter(tickets::serial.eq(v));
        }
        if let Some(v) = &f.from {
            q = q.filter(tickets::created_at.ge(v));
        }
        if let Some(v) = &f.to {
            q = q.filter(tickets::created_at.lt(v));
        }
        if let Some(v) = &f.sla {
            q = q.filter(
                tickets::doc_id.eq_any(
                    crate::db::schema::ticket_sla::table
                        .filter(crate::db::schema::ticket_sla::worst.eq(v.clone()))
                        .select(crate::db::schema::ticket_sla::doc_id),
                ),
            );
        }
        if let Some(text) = f.q.as_deref().filter(|t| !t.trim().is_empty()) {
            let p = crate::db::contains_pattern(&text.trim().to_lowercase());
            q = q.filter(
                lower(tickets::ticket_no)
                    .like(p.clone())
                    .escape('\\')
                    .or(lower(tickets::customer_name).like(p.clone()).escape('\\'))
                    .or(lower(tickets::product).like(p.clone()).escape('\\'))
                    .or(lower(tickets::model).like(p.clone()).escape('\\'))
                    .or(lower(tickets::serial).like(p.clone()).escape('\\'))
                    .or(lower(tickets::fault_description)
                        .like(p.clone())
                        .escape('\\')),
            );
        }
        if let Some((at, id)) = &f.after {
            q = q.filter(
                tickets::created_at.lt(at.clone()).or(tickets::created_at
                    .eq(at.clone())
                    .and(tickets::doc_id.gt(id.clone()))),
            );
        }
        q.order((tickets::created_at.desc(), tickets::doc_id))
            .limit(limit)
            .select(TicketRow::as_select())
            .load(c)
            .map_err(DbError::from)
    })
}

/// A part used, with its catalogue entry (None: not in the catalogue —
/// recorded offline against an unknown part number; the back office checks).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PartUsedView {
    #[serde(flatten)]
    pub part: PartRow,
    pub catalogue_name: Option<String>,
    pub unit_cost_cents: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Timeline {
    pub ticket: TicketRow,
    pub status_events: Vec<StatusEventRow>,
    pub visits: Vec<VisitRow>,
    pub parts_used: Vec<PartUsedView>,
    pub signoff: Option<SignoffRow>,
}

pub fn get_ticket(conn: &mut DbConn, doc_id: &str) -> Result<Option<TicketRow>, DbError> {
    on_conn!(conn, |c| tickets::table
        .find(doc_id)
        .select(TicketRow::as_select())
        .first(c)
        .optional()
        .map_err(DbError::from))
}

pub fn timeline(conn: &mut DbConn, doc_id: &str) -> Result<Option<Timeline>, DbError> {
    let Some(ticket) = get_ticket(conn, doc_id)? else {
        return Ok(None);
    };
    on_conn!(conn, |c| {
        let status_events = status_events::table
            .filter(status_events::doc_id.eq(doc_id))
            .order(status_events::seq)
            .select(StatusEventRow::as_select())
            .load(c)?;
        let visits = visits::table
            .filter(visits::doc_id.eq(doc_id))
            .order(visits::position)
            .select(VisitRow::as_select())
            .load(c)?;
        let parts_used: Vec<(PartRow, Option<(String, i64)>)> = parts_used::table
            .left_join(parts::table.on(parts::part_no.eq(parts_used::part_no)))
            .filter(parts_used::doc_id.eq(doc_id))
            .order(parts_used::position)
            .select((
                PartRow::as_select(),
                (parts::name, parts::unit_cost_cents).nullable(),
            ))
            .load(c)?;
        let signoff = signoffs::table
            .find(doc_id)
            .select(SignoffRow::as_select())
            .first(c)
            .optional()?;
        Ok::<_, DbError>(Some(Timeline {
            ticket,
            status_events,
            visits,
            parts_used: parts_used
                .into_iter()
                .map(|(part, cat)| PartUsedView {
                    part,
                    catalogue_name: cat.as_ref().map(|c| c.0.clone()),
                    unit_cost_cents: cat.map(|c| c.1),
                })
                .collect(),
            signoff,
        }))
    })
}

/// One line of a service history: what happened on one ticket (seed 000:
/// time, technician, problem, result, customer feedback).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceRecord {
    pub doc_id: String,
    pub ticket_no: String,
    pub status: String,
    pub priority: String,
    pub customer_id: String,
    pub customer_name: String,
    pub asset_id: String,
    pub product: String,
    pub serial: String,
    /// The problem as reported.
    pub problem: String,
    pub created_at: String,
    pub completed_at: String,
    pub technician_id: String,
    pub result: String,
    pub visits: Vec<VisitRow>,
    /// Customer feedback (survey), when given.
    pub feedback: Option<serde_json::Value>,
    pub signed_by: Option<String>,
}

fn records_for(conn: &mut DbConn, rows: Vec<TicketRow>) -> Result<Vec<ServiceRecord>, DbError> {
    let mut out = Vec::with_capacity(rows.len());
    for t in rows {
        let (v, s): (Vec<VisitRow>, Option<String>) = on_conn!(conn, |c| {
            let v = visits::table
                .filter(visits::doc_id.eq(&t.doc_id))
                .order(visits::position)
                .select(VisitRow::as_select())
                .load(c)?;
            let s = signoffs::table
                .find(&t.doc_id)
                .select(signoffs::signer_name)
                .first(c)
                .optional()?;
            Ok::<_, DbError>((v, s))
        })?;
        let feedback = t.survey_scale.map(|scale| {
            serde_json::json!({
                "scale": scale,
                "efficiency": t.survey_efficiency,
                "attitude": t.survey_attitude,
                "reasonableness": t.survey_reasonableness,
                "comment": t.feedback_comment,
            })
        });
        out.push(ServiceRecord {
            doc_id: t.doc_id,
            ticket_no: t.ticket_no,
            status: t.status,
            priority: t.priority,
            customer_id: t.customer_id,
            customer_name: t.customer_name,
            asset_id: t.asset_id,
            product: t.product,
            serial: t.serial,
            problem: t.fault_description,
            created_at: t.created_at,
            completed_at: t.completed_at,
            technician_id: t.technician_id,
            result: t.result,
            visits: v,
            feedback,
            signed_by: s,
        });
    }
    Ok(out)
}

/// Every ticket of a customer, newest first.
pub fn for_customer(conn: &mut DbConn, customer_id: &str) -> Result<Vec<ServiceRecord>, DbError> {
    let f = TicketFilter {
        customer_id: Some(customer_id.to_string()),
        limit: Some(MAX_LIMIT),
        ..Default::default()
    };
    let rows = list_tickets(conn, &f)?;
    records_for(conn, rows)
}

/// Every ticket about one asset: by asset record, or by serial number for
/// tickets taken without one.
pub fn for_asset(
    conn: &mut DbConn,
    asset_id: &str,
    serial: &str,
) -> Result<Vec<ServiceRecord>, DbError> {
    let rows: Vec<TicketRow> = on_conn!(conn, |c| {
        let mut q = tickets::table
            .filter(tickets::asset_id.eq(asset_id))
            .into_boxed();
        if !serial.is_empty() {
            q = q.or_filter(tickets::serial.eq(serial));
        }
        q.order((tickets::created_at.desc(), tickets::doc_id))
            .limit(MAX_LIMIT)
            .select(TicketRow::as_select())
            .load(c)
            .map_err(DbError::from)
    })?;
    records_for(conn, rows)
}

/// Tickets a technician visited or is assigned to, newest first.
pub fn for_technician(
    conn: &mut DbConn,
    technician_id: &str,
) -> Result<Vec<ServiceRecord>, DbError> {
    let rows: Vec<TicketRow> = on_conn!(conn, |c| {
        let visited = visits::table
            .filter(visits::technician_id.eq(technician_id))
            .select(visits::doc_id);
        tickets::table
            .filter(
                tickets::technician_id
                    .eq(technician_id)
                    .or(tickets::doc_id.eq_any(visited)),
            )
            .order((tickets::created_at.desc(), tickets::doc_id))
            .limit(MAX_LIMIT)
            .select(TicketRow::as_select())
            .load(c)
            .map_err(DbError::from)
    })?;
    let mut records = records_for(conn, rows)?;
    // Only this technician's visits.
    for r in &mut records {
        r.visits.retain(|v| v.technician_id == technician_id);
    }
    Ok(records)
}
