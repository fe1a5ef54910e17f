//! Complaint records (issue 11 §3): recorded by the office, linked to a
//! customer and perhaps a ticket, answered and resolved within the policy's
//! limits (`service::complaints`). States are stored on every action and by
//! the SLA watch's timer; at risk and breached escalate through the same
//! tiers as tickets (subject `complaint:<id>`, targets `complaint_respond`,
//! `complaint_start` and `complaint_resolve`; the first tier tells whoever recorded it). A
//! complainant still unsatisfied at resolution gets a second contact (a
//! callback task, seed 000 §5.3); a product-quality complaint opens a
//! repair job (`api::complaints`, through the ticket actor).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::audit::{self, Action, Entry};
use crate::db::schema::complaints;
use crate::db::{on_conn, transaction, DbConn, DbError};
use crate::office::closed_loop;
use crate::office::sla_watch::{parse_time, send_due};
use crate::service::complaints::{self as rules, Category, Times};
use crate::service::escalation;
use crate::service::policy::Policy;

fn fmt(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[derive(Clone, Debug, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = complaints)]
pub struct Complaint {
    pub id: String,
    pub customer_id: String,
    /// The ticket it is about ('' if none).
    pub doc_id: String,
    pub ticket_no: String,
    pub category: String,
    pub description: String,
    pub received_at: String,
    pub created_by: String,
    pub created_at: String,
    pub responded_at: Option<String>,
    pub responded_by: Option<String>,
    pub response_note: String,
    /// When someone started handling it.
    pub started_at: Option<String>,
    pub started_by: Option<String>,
    pub resolved_at: Option<String>,
    pub resolved_by: Option<String>,
    pub resolution: String,
    pub customer_satisfied: Option<bool>,
    /// As last computed (`on_time`, `at_risk`, `breached`, `met`, `met_late`).
    pub respond_state: String,
    pub respond_due_at: String,
    pub resolve_state: String,
    pub resolve_due_at: String,
    pub start_state: String,
    pub start_due_at: String,
    /// The repair job it opened (a product-quality complaint), or ''.
    pub repair_doc_id: String,
}

impl Complaint {
    /// The subject its escalations and callbacks are filed under.
    pub fn subject(&self) -> String {
        format!("complaint:{}", self.id)
    }
    fn times(&self) -> Option<Times> {
        Some(Times {
            received_at: parse_time(&self.received_at)?,
            responded_at: self.responded_at.as_deref().and_then(parse_time),
            started_at: self.started_at.as_deref().and_then(parse_time),
            resolved_at: self.resolved_at.as_deref().and_then(parse_time),
        })
    }
}

pub struct NewComplaint<'a> {
    pub customer_id: &'a str,
    pub doc_id: &'a str,
    pub ticket_no: &'a str,
    pub category: Category,
    pub description: &'a str,
    pub received_at: DateTime<Utc>,
    pub created_by: &'a str,
}

fn due(t: &crate::service::sla::TargetState) -> String {
    t.due_at.map(fmt).unwrap_or_default()
}

/// Stores its states at `now` and sends the escalations they call for;
/// returns how many escalations are new.
fn evaluate_and_escalate(
    c: &mut DbConn,
    policy: &Policy,
    k: &Complaint,
    now: DateTime<Utc>,
    webhook: bool,
) -> Result<usize, DbError> {
    let Some(times) = k.times() else {
        return Ok(0);
    };
    let sla = rules::evaluate(policy, &times, now);
    let stored = [
        (sla.respond.state.as_str(), due(&sla.respond)),
        (sla.start.state.as_str(), due(&sla.start)),
        (sla.resolve.state.as_str(), due(&sla.resolve)),
    ];
    let before = [
        (k.respond_state.as_str(), k.respond_due_at.clone()),
        (k.start_state.as_str(), k.start_due_at.clone()),
        (k.resolve_state.as_str(), k.resolve_due_at.clone()),
    ];
    // Written only when something changed (the timer sees every open
    // complaint on every sweep).
    if stored != before {
        let [(r, rd), (st, sd), (s, sdue)] = &stored;
        on_conn!(c, |c| diesel::update(complaints::table.find(&k.id))
            .set((
                complaints::respond_state.eq(*r),
                complaints::respond_due_at.eq(rd),
                complaints::start_state.eq(*st),
                complaints::start_due_at.eq(sd),
                complaints::resolve_state.eq(*s),
                complaints::resolve_due_at.eq(sdue),
            ))
            .execute(c))?;
    }
    let due = escalation::due_targets(&policy.escalation, &sla.targets());
    send_due(
        c,
        &due,
        &k.subject(),
        &k.ticket_no,
        &k.created_by,
        "complaint_",
        now,
        webhook,
    )
}

pub fn get(conn: &mut DbConn, id: &str) -> Result<Option<Complaint>, DbError> {
    Ok(on_conn!(conn, |c| complaints::table
        .find(id)
        .select(Complaint::as_select())
        .first(c)
        .optional())?)
}

fn audit_it(
    c: &mut DbConn,
    action: Action,
    by: &str,
    k: &Complaint,
    detail: serde_json::Value,
) -> Result<(), DbError> {
    audit::record(
        c,
        Entry {
            action,
            actor_user_id: Some(by),
            subject: Some(&k.subject()),
            detail,
            ip: None,
        },
    )
}

/// Records a complaint, evaluated and escalated at once if it is already
/// late (one entered long after the customer called).
pub fn create(
    conn: &mut DbConn,
    policy: &Policy,
    n: &NewComplaint<'_>,
    now: DateTime<Utc>,
    webhook: bool,
) -> Result<Complaint, DbError> {
    let id = uuid::Uuid::now_v7().to_string();
    transaction(conn, |c| {
        on_conn!(c, |c| diesel::insert_into(complaints::table)
            .values((
                complaints::id.eq(&id),
                complaints::customer_id.eq(n.customer_id),
                complaints::doc_id.eq(n.doc_id),
                complaints::ticket_no.eq(n.ticket_no),
                complaints::category.eq(n.category.as_str()),
                complaints::description.eq(n.description),
                complaints::received_at.eq(fmt(n.received_at)),
                complaints::created_by.eq(n.created_by),
                complaints::created_at.eq(fmt(now)),
                complaints::response_note.eq(""),
                complaints::resolution.eq(""),
                complaints::respond_state.eq(""),
                complaints::respond_due_at.eq(""),
                complaints::resolve_state.eq(""),
                complaints::resolve_due_at.eq(""),
                complaints::start_state.eq(""),
                complaints::start_due_at.eq(""),
            ))
            .execute(c))?;
        let k = get(c, &id)?.expect("just inserted");
        evaluate_and_escalate(c, policy, &k, now, webhook)?;
        audit_it(
            c,
            Action::ComplaintRecorded,
            n.created_by,
            &k,
            serde_json::json!({
                "customer_id": k.customer_id, "doc_id": k.doc_id,
                "category": k.category, "received_at": k.received_at,
            }),
        )?;
        Ok(get(c, &id)?.expect("just inserted"))
    })
}

/// After a step was written: the complaint's states at `now` stored (and
/// escalated), and the complaint as it is now.
fn settle(
    c: &mut DbConn,
    policy: &Policy,
    id: &str,
    now: DateTime<Utc>,
    webhook: bool,
) -> Result<Complaint, DbError> {
    let k = get(c, id)?.expect("the step updated it");
    evaluate_and_escalate(c, policy, &k, now, webhook)?;
    Ok(get(c, id)?.expect("the step updated it"))
}

/// Records the first response; None if there is no such open complaint or
/// it was already answered.
pub fn respond(
    conn: &mut DbConn,
    policy: &Policy,
    id: &str,
    by: &str,
    note: &str,
    now: DateTime<Utc>,
    webhook: bool,
) -> Result<Option<Complaint>, DbError> {
    transaction(conn, |c| {
        let n = on_conn!(c, |c| diesel::update(
            complaints::table
                .find(id)
                .filter(complaints::responded_at.is_null())
                .filter(complaints::resolved_at.is_null())
        )
        .set((
            complaints::responded_at.eq(Some(fmt(now))),
            complaints::responded_by.eq(Some(by)),
            complaints::response_note.eq(note),
        ))
        .execute(c))?;
        if n == 0 {
            return Ok(None);
        }
        let k = settle(c, policy, id, now, webhook)?;
        audit_it(
            c,
            Action::ComplaintResponded,
            by,
            &k,
            serde_json::json!({ "note": note, "respond_state": k.respond_state }),
        )?;
        Ok(Some(k))
    })
}

/// Records that someone started handling it (which answers the customer
/// too, if nobody had); None if there is no such open, not yet started
/// complaint.
pub fn start(
    conn: &mut DbConn,
    policy: &Policy,
    id: &str,
    by: &str,
    now: DateTime<Utc>,
    webhook: bool,
) -> Result<Option<Complaint>, DbError> {
    transaction(conn, |c| {
        let n = on_conn!(c, |c| diesel::update(
            complaints::table
                .find(id)
                .filter(complaints::started_at.is_null())
                .filter(complaints::resolved_at.is_null())
        )
        .set((
            complaints::started_at.eq(Some(fmt(now))),
            complaints::started_by.eq(Some(by)),
        ))
        .execute(c))?;
        if n == 0 {
            return Ok(None);
        }
        let k = settle(c, policy, id, now, webhook)?;
        audit_it(
            c,
            Action::ComplaintStarted,
            by,
            &k,
            serde_json::json!({ "start_state": k.start_state }),
        )?;
        Ok(Some(k))
    })
}

/// Resolves it; a customer still unsatisfied gets a second contact (a
/// callback task due like a completion callback). None if there is no such
/// open complaint.
#[allow(clippy::too_many_arguments)]
pub fn resolve(
    conn: &mut DbConn,
    policy: &Policy,
    id: &str,
    by: &str,
    resolution: &str,
    satisfied: Option<bool>,
    now: DateTime<Utc>,
    webhook: bool,
) -> Result<Option<Complaint>, DbError> {
    transaction(conn, |c| {
        let n = on_conn!(c, |c| diesel::update(
            complaints::table
                .find(id)
                .filter(complaints::resolved_at.is_null())
        )
        .set((
            complaints::resolved_at.eq(Some(fmt(now))),
            complaints::resolved_by.eq(Some(by)),
            complaints::resolution.eq(resolution),
            complaints::customer_satisfied.eq(satisfied),
        ))
        .execute(c))?;
        if n == 0 {
            return Ok(None);
        }
        let k = settle(c, policy, id, now, webhook)?;
        let second_contact = satisfied == Some(false)
            && closed_loop::add_callback(
                c,
                &k.subject(),
                &k.ticket_no,
                &k.customer_id,
                "complaint_second_contact",
                crate::service::closed_loop::callback_due(&policy.closed_loop, now),
                now,
            )?;
        audit_it(
            c,
            Action::ComplaintResolved,
            by,
            &k,
            serde_json::json!({
                "resolution": resolution, "customer_satisfied": satisfied,
                "second_contact": second_contact,
            }),
        )?;
        Ok(Some(k))
    })
}

/// Re-evaluates every open complaint (the timer); returns (evaluated,
/// escalations sent). One complaint's failure does not stop the others.
pub fn sweep(
    conn: &mut DbConn,
    policy: &Policy,
    now: DateTime<Utc>,
    webhook: bool,
) -> Result<(usize, usize), DbError> {
    let open: Vec<Complaint> = on_conn!(conn, |c| complaints::table
        .filter(complaints::resolved_at.is_null())
        .order(complaints::received_at)
        .select(Complaint::as_select())
        .load(c))?;
    let mut sent = 0;
    for k in &open {
        match transaction(conn, |c| evaluate_and_escalate(c, policy, k, now, webhook)) {
            Ok(n) => sent += n,
            Err(e) => {
                tracing::warn!(complaint = %k.id, error = %e, "complaint evaluation failed; retried on the next sweep")
            }
        }
    }
    Ok((open.len(), sent))
}

/// Links the repair job a complaint opened.
pub fn set_repair(conn: &mut DbConn, id: &str, doc_id: &str) -> Result<(), DbError> {
    on_conn!(conn, |c| diesel::update(complaints::table.find(id))
        .set(complaints::repair_doc_id.eq(doc_id))
        .execute(c))?;
    Ok(())
}

#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct Filter {
    /// Not yet resolved.
    pub open: Option<bool>,
    /// Any target in this state (`at_risk`, `breached`, …).
    pub state: Option<String>,
    pub customer_id: Option<String>,
    pub doc_id: Option<String>,
    /// Page size, newest first (default 100, at most 1000).
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[A-Za-z0-9_-]*$", max_length = 1024)]
    pub cursor: Option<String>,
}

/// Newest received first (then by id), at most `limit` after `after` =
/// (received_at, id).
pub fn list(
    conn: &mut DbConn,
    f: &Filter,
    after: Option<(String, String)>,
    limit: i64,
) -> Result<Vec<Complaint>, DbError> {
    Ok(on_conn!(conn, |c| {
        let mut q = complaints::table.into_boxed();
        if let Some((at, id)) = &after {
            q = q.filter(
                complaints::received_at
                    .lt(at.clone())
                    .or(complaints::received_at
                        .eq(at.clone())
                        .and(complaints::id.gt(id.clone()))),
            );
        }
        if f.open == Some(true) {
            q = q.filter(complaints::resolved_at.is_null());
        }
        if let Some(s) = &f.state {
            q = q.filter(
                complaints::respond_state
                    .eq(s)
                    .or(complaints::start_state.eq(s))
                    .or(complaints::resolve_state.eq(s)),
            );
        }
        if let Some(cid) = &f.customer_id {
            q = q.filter(complaints::customer_id.eq(cid));
        }
        if let Some(d) = &f.doc_id {
            q = q.filter(complaints::doc_id.eq(d));
        }
        q.order((complaints::received_at.desc(), complaints::id))
            .limit(limit)
            .select(Complaint::as_select())
            .load(c)
    })?)
}
