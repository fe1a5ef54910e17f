//! Applies the after-the-job rules (`service::closed_loop`) when a ticket
//! changes: the completion callback, a callback after a low survey score,
//! and the customer's unsatisfied streak (flag + supervisor escalation).
//! Idempotent: each callback is unique per (ticket, reason), each flag per
//! the ticket that completed the streak.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::audit::{self, Action, Entry};
use crate::db::schema::{callbacks, customer_flags, tickets};
use crate::db::{on_conn, DbConn, DbError};
use crate::office::escalations::{self, NewEscalation};
use crate::office::webhooks;
use crate::service::closed_loop::{self, Scores};
use crate::service::policy::Policy;

fn fmt(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

type SurveyCols = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);

fn scores((scale, e, a, r): SurveyCols) -> Option<Scores> {
    Some(Scores {
        scale: scale?,
        efficiency: e,
        attitude: a,
        reasonableness: r,
    })
}

/// Adds a callback task unless this ticket (or `complaint:<id>`) already
/// has one for this reason; true when it is new.
pub fn add_callback(
    conn: &mut DbConn,
    doc_id: &str,
    ticket_no: &str,
    customer_id: &str,
    reason: &str,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let n = on_conn!(conn, |c| diesel::insert_into(callbacks::table)
        .values((
            callbacks::id.eq(uuid::Uuid::now_v7().to_string()),
            callbacks::doc_id.eq(doc_id),
            callbacks::ticket_no.eq(ticket_no),
            callbacks::customer_id.eq(customer_id),
            callbacks::reason.eq(reason),
            callbacks::due_at.eq(fmt(due)),
            callbacks::created_at.eq(fmt(now)),
            callbacks::note.eq(""),
        ))
        .on_conflict((callbacks::doc_id, callbacks::reason))
        .do_nothing()
        .execute(c))?;
    Ok(n == 1)
}

/// Runs the rules for one ticket, completed at `completed_at` (if it is);
/// returns how many tasks, flags or escalations it created.
pub fn apply(
    conn: &mut DbConn,
    policy: &Policy,
    doc_id: &str,
    completed_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    webhook: bool,
) -> Result<usize, DbError> {
    let p = &policy.closed_loop;
    let row: Option<(String, String, SurveyCols)> = on_conn!(conn, |c| tickets::table
        .find(doc_id)
        .select((
            tickets::ticket_no,
            tickets::customer_id,
            (
                tickets::survey_scale,
                tickets::survey_efficiency,
                tickets::survey_attitude,
                tickets::survey_reasonableness,
            ),
        ))
        .first(c)
        .optional())?;
    let Some((ticket_no, customer_id, survey)) = row else {
        return Ok(0);
    };
    let Some(done) = completed_at else {
        return Ok(0);
    };
    let mut created = 0;
    if add_callback(
        conn,
        doc_id,
        &ticket_no,
        &customer_id,
        "completion",
        closed_loop::callback_due(p, done),
        now,
    )? {
        created += 1;
    }
    let Some(s) = scores(survey) else {
        return Ok(created);
    };
    if closed_loop::is_low(p, &s)
        && add_callback(
            conn,
            doc_id,
            &ticket_no,
            &customer_id,
            "low_score",
            closed_loop::callback_due(p, now),
            now,
        )?
    {
        created += 1;
    }
    if customer_id.is_empty() || closed_loop::is_satisfied(p, &s) != Some(false) {
        return Ok(created);
    }
    // The customer's completed services, oldest first.
    let history: Vec<(String, SurveyCols)> = on_conn!(conn, |c| tickets::table
        .filter(tickets::customer_id.eq(&customer_id))
        .filter(tickets::completed_at.ne(""))
        .order((tickets::completed_at, tickets::doc_id))
        .select((
            tickets::doc_id,
            (
                tickets::survey_scale,
                tickets::survey_efficiency,
                tickets::survey_attitude,
                tickets::survey_reasonableness,
            ),
        ))
        .load(c))?;
    // Judged up to this ticket: a flag names the service that completed
    // the streak.
    let Some(end) = history.iter().position(|(d, _)| d == doc_id) else {
        return Ok(created);
    };
    let judged: Vec<Option<bool>> = history[..=end]
        .iter()
        .map(|(_, cols)| scores(*cols).and_then(|s| closed_loop::is_satisfied(p, &s)))
        .collect();
    let streak = closed_loop::unsatisfied_streak(&judged);
    if streak < p.unsatisfied_in_a_row {
        return Ok(created);
    }
    let id = uuid::Uuid::now_v7().to_string();
    let n = on_conn!(conn, |c| diesel::insert_into(customer_flags::table)
        .values((
            customer_flags::id.eq(&id),
            customer_flags::customer_id.eq(&customer_id),
            customer_flags::trigger_doc_id.eq(doc_id),
            customer_flags::streak.eq(streak as i64),
            customer_flags::flagged_at.eq(fmt(now)),
            customer_flags::cleared_note.eq(""),
        ))
        .on_conflict(customer_flags::trigger_doc_id)
        .do_nothing()
        .execute(c))?;
    if n == 0 {
        return Ok(created);
    }
    created += 1;
    let notified: Vec<String> = on_conn!(conn, |c| crate::db::schema::users::table
        .filter(crate::db::schema::users::role.eq("supervisor"))
        .filter(crate::db::schema::users::disabled.eq(false))
        .select(crate::db::schema::users::id)
        .load(c))?;
    let detail = serde_json::json!({
        "flag": id, "customer_id": customer_id, "doc_id": doc_id, "ticket_no": ticket_no,
        "unsatisfied_in_a_row": streak, "notified": notified,
    });
    escalations::insert_once(
        conn,
        &NewEscalation {
            doc_id,
            ticket_no: &ticket_no,
            milestone: "customer_unsatisfied",
            tier: "supervisor",
            sla_state: "flagged",
            notified: &notified,
            at: now,
        },
    )?;
    if webhook {
        webhooks::enqueue(conn, "customer_flagged", &customer_id, &detail, now)?;
    }
    audit::record(
        conn,
        Entry {
            action: Action::TicketEscalated,
            actor_user_id: None,
            subject: Some(&customer_id),
            detail,
            ip: None,
        },
    )?;
    Ok(created)
}

#[derive(Clone, Debug, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = callbacks)]
pub struct Callback {
    pub id: String,
    pub doc_id: String,
    pub ticket_no: String,
    pub customer_id: String,
    /// `completion`, `low_score`, or `complaint_second_contact` (then
    /// `doc_id` is `complaint:<id>`).
    pub reason: String,
    pub due_at: String,
    pub created_at: String,
    pub reached: Option<bool>,
    pub solved: Option<bool>,
    pub note: String,
    pub done_by: Option<String>,
    pub done_at: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct CallbackFilter {
    pub open: Option<bool>,
    /// Open and past due (at `now`).
    pub overdue: Option<bool>,
    pub customer_id: Option<String>,
    /// Page size, by due time (default 100, at most 1000).
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[A-Za-z0-9_-]*$", max_length = 1024)]
    pub cursor: Option<String>,
}

/// By due time then id, at most `limit` after `after` = (due_at, id).
pub fn list_callbacks(
    conn: &mut DbConn,
    f: &CallbackFilter,
    now: DateTime<Utc>,
    after: Option<(String, String)>,
    limit: i64,
) -> Result<Vec<Callback>, DbError> {
    Ok(on_conn!(conn, |c| {
        let mut q = callbacks::table.into_boxed();
        if let Some((due, id)) = &after {
            q = q.filter(
                callbacks::due_at.gt(due.clone()).or(callbacks::due_at
                    .eq(due.clone())
                    .and(callbacks::id.gt(id.clone()))),
            );
        }
        if f.open == Some(true) || f.overdue == Some(true) {
            q = q.filter(callbacks::done_at.is_null());
        }
        if f.overdue == Some(true) {
            q = q.filter(callbacks::due_at.lt(fmt(now)));
        }
        if let Some(cid) = &f.customer_id {
            q = q.filter(callbacks::customer_id.eq(cid));
        }
        q.order((callbacks::due_at, callbacks::id))
            .limit(limit)
            .select(Callback::as_select())
            .load(c)
    })?)
}

/// Records a callback's outcome; None if there is no such open callback.
pub fn record_outcome(
    conn: &mut DbConn,
    id: &str,
    reached: bool,
    solved: Option<bool>,
    note: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Option<Callback>, DbError> {
    let n = on_conn!(conn, |c| diesel::update(
        callbacks::table
            .find(id)
            .filter(callbacks::done_at.is_null())
    )
    .set((
        callbacks::reached.eq(Some(reached)),
        callbacks::solved.eq(solved),
        callbacks::note.eq(note),
        callbacks::done_by.eq(Some(by)),
        callbacks::done_at.eq(Some(fmt(now))),
    ))
    .execute(c))?;
    if n == 0 {
        return Ok(None);
    }
    Ok(on_conn!(conn, |c| callbacks::table
        .find(id)
        .select(Callback::as_select())
        .first(c)
        .optional())?)
}

#[derive(Clone, Debug, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = customer_flags)]
pub struct CustomerFlag {
    pub id: String,
    pub customer_id: String,
    pub trigger_doc_id: String,
    pub streak: i64,
    pub flagged_at: String,
    pub cleared_by: Option<String>,
    pub cleared_at: Option<String>,
    pub cleared_note: String,
}

/// Newest first (then by id, descending), at most `limit` older than
/// `before` = (flagged_at, id).
pub fn list_flags(
    conn: &mut DbConn,
    open_only: bool,
    before: Option<(String, String)>,
    limit: i64,
) -> Result<Vec<CustomerFlag>, DbError> {
    Ok(on_conn!(conn, |c| {
        let mut q = customer_flags::table.into_boxed();
        if open_only {
            q = q.filter(customer_flags::cleared_at.is_null());
        }
        if let Some((at, id)) = &before {
            q = q.filter(
                customer_flags::flagged_at
                    .lt(at.clone())
                    .or(customer_flags::flagged_at
                        .eq(at.clone())
                        .and(customer_flags::id.lt(id.clone()))),
            );
        }
        q.order((customer_flags::flagged_at.desc(), customer_flags::id.desc()))
            .limit(limit)
            .select(CustomerFlag::as_select())
            .load(c)
    })?)
}

/// Clears a flag (an explicit decision, with a note); false if no such
/// open flag.
pub fn clear_flag(
    conn: &mut DbConn,
    id: &str,
    by: &str,
    note: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let n = on_conn!(conn, |c| diesel::update(
        customer_flags::table
            .find(id)
            .filter(customer_flags::cleared_at.is_null())
    )
    .set((
        customer_flags::cleared_by.eq(Some(by)),
        customer_flags::cleared_at.eq(Some(fmt(now))),
        customer_flags::cleared_note.eq(note),
    ))
    .execute(c))?;
    Ok(n == 1)
}
