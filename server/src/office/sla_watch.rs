//! Keeps every open ticket's SLA state current and sends escalations.
//!
//! A ticket is re-evaluated when its document commits (the hub's commit
//! notices) and on a timer (time alone moves a ticket to at risk or
//! breached). Evaluation is `service::sla` over the ticket's status history;
//! the result goes to `ticket_sla` (list filters, on-time flags once met) and
//! due tiers to `escalations`. Idempotent and safe with several instances:
//! the same history gives the same row, and an escalation's (ticket, target,
//! tier) is unique, so whichever instance inserts it first is the one that
//! notifies.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use tokio::sync::broadcast;

use crate::audit::{self, Action, Entry};
use crate::db::schema::{escalations as escalations_t, status_events, ticket_sla, tickets, users};
use crate::db::{on_conn, transaction, Db, DbConn, DbError};
use crate::office::escalations::{self, NewEscalation};
use crate::office::{closed_loop, complaints, contacts, policy_store, webhooks};
use crate::service::escalation;
use crate::service::policy::{Policy, TierRole};
use crate::service::sla::{self, SlaState, Step, TicketSla};

/// `ticket_sla.worst` of a ticket whose targets are all settled (met, met
/// late or cancelled): the timer leaves it alone.
pub const SETTLED: &str = "settled";
/// … and of a ticket whose priority has no target.
pub const NO_TARGET: &str = "none";

pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn fmt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// A ticket's SLA with what escalation needs to know about it.
pub struct Evaluated {
    pub doc_id: String,
    pub ticket_no: String,
    pub technician_id: String,
    pub sla: Option<TicketSla>,
}

/// The ticket's SLA at `now`; None if there is no such ticket.
pub fn evaluate_ticket(
    conn: &mut DbConn,
    policy: &Policy,
    doc_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<Evaluated>, DbError> {
    let ticket: Option<(String, String, String)> = on_conn!(conn, |c| tickets::table
        .find(doc_id)
        .select((
            tickets::ticket_no,
            tickets::priority,
            tickets::technician_id
        ))
        .first(c)
        .optional())?;
    let Some((ticket_no, priority, technician_id)) = ticket else {
        return Ok(None);
    };
    let rows: Vec<(String, String, String)> = on_conn!(conn, |c| status_events::table
        .filter(status_events::doc_id.eq(doc_id))
        .order(status_events::seq)
        .select((
            status_events::to_status,
            status_events::at,
            status_events::device_at,
        ))
        .load(c))?;
    // Only looked up when the policy counts it.
    let first_contact = match policy.sla.respond_on {
        crate::service::policy::RespondOn::FirstContact => contacts::first(conn, doc_id)?,
        _ => None,
    };
    let steps: Vec<Step> = rows
        .into_iter()
        .filter_map(|(to, at, device_at)| {
            Some(Step {
                to,
                at: parse_time(&at)?,
                device_at: parse_time(&device_at),
            })
        })
        .collect();
    Ok(Some(Evaluated {
        doc_id: doc_id.to_string(),
        ticket_no,
        technician_id,
        sla: sla::evaluate_with_contact(&policy.sla, &priority, &steps, first_contact, now),
    }))
}

/// The value of `ticket_sla.worst`: the worst running state, or settled.
pub fn summary(sla: &Option<TicketSla>) -> &'static str {
    let Some(s) = sla else { return NO_TARGET };
    [s.respond.state, s.resolve.state]
        .into_iter()
        .filter(|st| st.is_running())
        .max()
        .map_or(SETTLED, SlaState::as_str)
}

fn store(conn: &mut DbConn, e: &Evaluated, now: DateTime<Utc>) -> Result<(), DbError> {
    let (priority, r, s) = match &e.sla {
        Some(sla) => (sla.priority.clone(), Some(&sla.respond), Some(&sla.resolve)),
        None => (String::new(), None, None),
    };
    let state = |t: Option<&sla::TargetState>| t.map_or("", |t| t.state.as_str());
    let row = (
        ticket_sla::doc_id.eq(&e.doc_id),
        ticket_sla::priority.eq(priority),
        ticket_sla::worst.eq(summary(&e.sla)),
        ticket_sla::respond_state.eq(state(r)),
        ticket_sla::respond_due_at.eq(fmt_time(r.and_then(|t| t.due_at))),
        ticket_sla::respond_met_at.eq(fmt_time(r.and_then(|t| t.met_at))),
        ticket_sla::resolve_state.eq(state(s)),
        ticket_sla::resolve_due_at.eq(fmt_time(s.and_then(|t| t.due_at))),
        ticket_sla::resolve_met_at.eq(fmt_time(s.and_then(|t| t.met_at))),
        ticket_sla::evaluated_at.eq(fmt_time(Some(now))),
    );
    // An upsert: two instances evaluating the same ticket must not abort
    // each other (a delete-then-insert did, on PostgreSQL).
    on_conn!(conn, |c| diesel::insert_into(ticket_sla::table)
        .values(row.clone())
        .on_conflict(ticket_sla::doc_id)
        .do_update()
        .set(row.clone())
        .execute(c))?;
    Ok(())
}

/// Records the escalations `due` for `subject` (a ticket's doc id, or
/// `complaint:<id>`) once per target and tier, each with its audit entry and
/// (with `webhook`) a delivery; returns how many are new. `first_tier` is
/// who the technician tier tells (a ticket's technician, a complaint's
/// handler); `prefix` goes before the target's name (`complaint_`).
#[allow(clippy::too_many_arguments)]
pub fn send_due(
    c: &mut DbConn,
    due: &[escalation::Due],
    subject: &str,
    ticket_no: &str,
    first_tier: &str,
    prefix: &str,
    now: DateTime<Utc>,
    webhook: bool,
) -> Result<usize, DbError> {
    if due.is_empty() {
        return Ok(0);
    }
    // A target breached long ago stays due on every sweep: one read finds
    // the tiers already told, so only new ones are written.
    let told: Vec<(String, String)> = on_conn!(c, |c| escalations_t::table
        .filter(escalations_t::doc_id.eq(subject))
        .select((escalations_t::milestone, escalations_t::tier))
        .load(c))?;
    let mut sent = 0;
    for d in due {
        let milestone = format!("{prefix}{}", d.milestone.as_str());
        if told
            .iter()
            .any(|(m, t)| *m == milestone && t == d.tier.as_str())
        {
            continue;
        }
        let notified = recipients(c, d.tier, first_tier)?;
        // Nobody to tell yet (no technician assigned, no manager account):
        // the tier is not used up; the next sweep retries.
        if notified.is_empty() {
            continue;
        }
        let new = NewEscalation {
            doc_id: subject,
            ticket_no,
            milestone: &milestone,
            tier: d.tier.as_str(),
            sla_state: d.state.as_str(),
            notified: &notified,
            at: now,
        };
        if let Some(id) = escalations::insert_once(c, &new)? {
            sent += 1;
            let detail = serde_json::json!({
                "escalation": id, "doc_id": subject, "ticket_no": ticket_no,
                "target": milestone, "tier": d.tier.as_str(),
                "state": d.state.as_str(), "notified": notified,
            });
            if webhook {
                webhooks::enqueue(c, "escalation", subject, &detail, now)?;
            }
            audit::record(
                c,
                Entry {
                    action: Action::TicketEscalated,
                    actor_user_id: None,
                    subject: Some(subject),
                    detail,
                    ip: None,
                },
            )?;
        }
    }
    Ok(sent)
}

/// Users a tier notifies.
fn recipients(
    conn: &mut DbConn,
    tier: TierRole,
    technician_id: &str,
) -> Result<Vec<String>, DbError> {
    let role = match tier {
        // The one person of the first tier, if the account is active.
        TierRole::Technician => {
            return Ok(on_conn!(conn, |c| users::table
                .filter(users::id.eq(technician_id))
                .filter(users::disabled.eq(false))
                .select(users::id)
                .load(c))?)
        }
        TierRole::Supervisor => "supervisor",
        TierRole::Manager => "manager",
    };
    Ok(on_conn!(conn, |c| users::table
        .filter(users::role.eq(role))
        .filter(users::disabled.eq(false))
        .order(users::id)
        .select(users::id)
        .load(c))?)
}

#[derive(Debug, Default, PartialEq)]
pub struct SweepReport {
    pub evaluated: usize,
    pub escalated: usize,
}

/// Evaluates `docs` (or, with None, every ticket not settled and every open
/// complaint), stores the states and records due escalations.
/// With `webhook`, each new escalation is also queued for the webhook.
pub fn sweep(
    conn: &mut DbConn,
    docs: Option<Vec<String>>,
    now: DateTime<Utc>,
    webhook: bool,
) -> Result<SweepReport, DbError> {
    let policy = policy_store::load(conn)?;
    let timer = docs.is_none();
    let docs = match docs {
        Some(d) => d,
        None => on_conn!(conn, |c| tickets::table
            .filter(diesel::dsl::not(
                tickets::doc_id.eq_any(
                    ticket_sla::table
                        .filter(ticket_sla::worst.eq_any([SETTLED, NO_TARGET]))
                        .select(ticket_sla::doc_id)
                )
            ))
            .select(tickets::doc_id)
            .load::<String>(c))?,
    };
    let mut report = SweepReport::default();
    for doc in docs {
        let Some(e) = evaluate_ticket(conn, &policy, &doc, now)? else {
            continue;
        };
        report.evaluated += 1;
        let due = e
            .sla
            .as_ref()
            .map(|s| escalation::due(&policy.escalation, s))
            .unwrap_or_default();
        let result = transaction(conn, |c| {
            store(c, &e, now)?;
            let mut sent = send_due(
                c,
                &due,
                &e.doc_id,
                &e.ticket_no,
                &e.technician_id,
                "",
                now,
                webhook,
            )?;
            let completed = e.sla.as_ref().and_then(|s| s.resolve.met_at);
            sent += closed_loop::apply(c, &policy, &e.doc_id, completed, now, webhook)?;
            Ok::<_, DbError>(sent)
        });
        // One ticket's failure (a conflict with another instance, a bad
        // row) must not stop the others'.
        match result {
            Ok(n) => report.escalated += n,
            Err(err) => {
                tracing::warn!(doc = %doc, error = %err, "SLA evaluation failed; retried on the next sweep")
            }
        }
    }
    // Time alone moves complaints too; their own actions evaluate them.
    if timer {
        let (n, e) = complaints::sweep(conn, &policy, now, webhook)?;
        report.evaluated += n;
        report.escalated += e;
    }
    Ok(report)
}

/// The loop: commit notices (batched for up to 200 ms) and a full sweep
/// every `every`. `offset` moves this clock (demos and tests of the timer;
/// zero in production). After each sweep, `updated` hears which tickets'
/// stored states were rewritten (None: all of them).
pub async fn run(
    db: Db,
    commits: broadcast::Receiver<String>,
    every: Duration,
    offset: chrono::Duration,
    webhook: bool,
    updated: broadcast::Sender<Option<String>>,
) {
    let now = move || Utc::now() + offset;
    let mut tick = tokio::time::interval(every);
    let mut commits = Some(commits);
    loop {
        let notice = async {
            match commits.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let docs = tokio::select! {
            _ = tick.tick() => None,
            got = notice => match got {
                Ok(doc) => {
                    let mut set = HashSet::from([doc]);
                    let until = tokio::time::Instant::now() + Duration::from_millis(200);
                    if let Some(rx) = commits.as_mut() {
                        while let Ok(Ok(doc)) = tokio::time::timeout_at(until, rx.recv()).await {
                            set.insert(doc);
                        }
                    }
                    Some(set.into_iter().collect())
                }
                // Missed some: look at everything.
                Err(broadcast::error::RecvError::Lagged(_)) => None,
                Err(broadcast::error::RecvError::Closed) => {
                    commits = None;
                    continue;
                }
            },
        };
        let at = now();
        let swept = docs.clone();
        match db.run(move |c| sweep(c, docs, at, webhook)).await {
            Ok(r) => {
                if r.escalated > 0 {
                    tracing::info!(
                        evaluated = r.evaluated,
                        escalated = r.escalated,
                        "SLA sweep"
                    );
                }
                // Nobody listening (no console open) is not an error.
                match swept {
                    Some(docs) => docs.into_iter().for_each(|d| {
                        let _ = updated.send(Some(d));
                    }),
                    None => {
                        let _ = updated.send(None);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "SLA sweep failed; retrying on the next tick"),
        }
    }
}

/// A ticket's SLA state as last stored (kept current on every commit and
/// by the timer): what the dispatch board shows beside each ticket.
#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize, utoipa::ToSchema)]
#[diesel(table_name = ticket_sla)]
pub struct StoredSla {
    pub doc_id: String,
    pub priority: String,
    /// on_time, at_risk, breached, settled or none.
    pub worst: String,
    pub respond_state: String,
    pub respond_due_at: String,
    pub respond_met_at: String,
    pub resolve_state: String,
    pub resolve_due_at: String,
    pub resolve_met_at: String,
    pub evaluated_at: String,
}

/// The stored states of `doc_ids` (those that have one).
pub fn stored(conn: &mut DbConn, doc_ids: &[String]) -> Result<Vec<StoredSla>, DbError> {
    on_conn!(conn, |c| ticket_sla::table
        .filter(ticket_sla::doc_id.eq_any(doc_ids))
        .order(ticket_sla::doc_id)
        .select(StoredSla::as_select())
        .load(c)
        .map_err(DbError::from))
}
