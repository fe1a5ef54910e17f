//! Survey links (issue 11 §3): the office makes a link for a completed job
//! (the newest is the only live one), the customer answers once, before the
//! survey window closes (`service::surveys`). The answer is stored with the
//! claim of the link, then written into the ticket document (a server
//! edit), so devices, the projection and the closed loop (low score →
//! callback, unsatisfied streak) see it like an answer recorded on site; a
//! repair pass writes answers whose document write failed.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use fieldsync_shared::roles::Role;
use fieldsync_shared::ticket::{self, Survey};
use fieldsync_shared::DocumentId;
use serde::Serialize;

use crate::db::schema::{survey_links, tickets};
use crate::db::{on_conn, DbConn, DbError};
use crate::office::sla_watch::parse_time;
use crate::service::policy::Policy;
use crate::service::surveys;
use crate::sync::hub::{EditError, Hub, ServerEditFn};

fn fmt(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Statuses of a job whose work is done (the survey is about it).
const DONE: &[&str] = &["completed", "signed_off", "disputed", "reconciled"];

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct NewLink {
    pub link_id: String,
    pub doc_id: String,
    pub ticket_no: String,
    /// Give this to the customer; it is not stored.
    pub token: String,
    pub expires_at: String,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no such ticket")]
    NoTicket,
    #[error("the ticket is {0}: a survey follows a completed job")]
    NotCompleted(String),
    #[error("the customer's survey is already recorded on this ticket")]
    AlreadyAnswered,
    #[error("the survey window closed at {0} ({1} working days after completion)")]
    WindowClosed(String, i64),
}

/// Makes a link for ticket `doc_id`, valid until its survey window closes.
pub fn create_link(
    conn: &mut DbConn,
    policy: &Policy,
    key: &[u8],
    doc_id: &str,
    by_user: &str,
    now: DateTime<Utc>,
) -> Result<Result<NewLink, Refusal>, DbError> {
    type Row = (
        String,
        String,
        String,
        (Option<i64>, Option<i64>, Option<i64>),
    );
    let row: Option<Row> = on_conn!(conn, |c| tickets::table
        .find(doc_id)
        .select((
            tickets::ticket_no,
            tickets::status,
            tickets::completed_at,
            (
                tickets::survey_efficiency,
                tickets::survey_attitude,
                tickets::survey_reasonableness,
            ),
        ))
        .first(c)
        .optional())?;
    let Some((ticket_no, status, completed_at, (e, a, r))) = row else {
        return Ok(Err(Refusal::NoTicket));
    };
    let completed = parse_time(&completed_at);
    let Some(completed) = completed.filter(|_| DONE.contains(&status.as_str())) else {
        return Ok(Err(Refusal::NotCompleted(status)));
    };
    // An empty survey map (a device's, without a score) is no answer.
    if e.or(a).or(r).is_some() {
        return Ok(Err(Refusal::AlreadyAnswered));
    }
    let expires = surveys::window_closes(policy, completed);
    if expires <= now {
        return Ok(Err(Refusal::WindowClosed(
            fmt(expires),
            policy.survey.within_working_days,
        )));
    }
    end_older_links(conn, doc_id, now)?;
    let id = uuid::Uuid::now_v7().to_string();
    on_conn!(conn, |c| diesel::insert_into(survey_links::table)
        .values((
            survey_links::id.eq(&id),
            survey_links::doc_id.eq(doc_id),
            survey_links::ticket_no.eq(&ticket_no),
            survey_links::created_by.eq(by_user),
            survey_links::created_at.eq(fmt(now)),
            survey_links::expires_at.eq(fmt(expires)),
        ))
        .execute(c))?;
    Ok(Ok(NewLink {
        token: surveys::sign(key, &id, expires),
        link_id: id,
        doc_id: doc_id.to_string(),
        ticket_no,
        expires_at: fmt(expires),
    }))
}

#[derive(Clone, Debug, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = survey_links)]
pub struct Link {
    pub id: String,
    pub doc_id: String,
    pub ticket_no: String,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: String,
    pub used_at: Option<String>,
    /// The customer's answer (JSON), kept the moment the link was used.
    #[serde(skip)]
    pub answer: Option<String>,
    /// When it was written into the ticket document.
    pub applied_at: Option<String>,
}

pub fn get(conn: &mut DbConn, id: &str) -> Result<Option<Link>, DbError> {
    Ok(on_conn!(conn, |c| survey_links::table
        .find(id)
        .select(Link::as_select())
        .first(c)
        .optional())?)
}

/// A ticket's links (never their tokens), newest first (then by id,
/// descending), at most `limit` older than `before` = (created_at, id).
pub fn list_for(
    conn: &mut DbConn,
    doc_id: &str,
    before: Option<(String, String)>,
    limit: i64,
) -> Result<Vec<Link>, DbError> {
    Ok(on_conn!(conn, |c| {
        let mut q = survey_links::table
            .filter(survey_links::doc_id.eq(doc_id))
            // Ids are UUID v7: time-ordered within a second too.
            .order((survey_links::created_at.desc(), survey_links::id.desc()))
            .limit(limit)
            .select(Link::as_select())
            .into_boxed();
        if let Some((at, id)) = &before {
            q = q.filter(
                survey_links::created_at
                    .lt(at.clone())
                    .or(survey_links::created_at
                        .eq(at.clone())
                        .and(survey_links::id.lt(id.clone()))),
            );
        }
        q.load(c)
    })?)
}

#[derive(Debug)]
pub enum Claim {
    /// Ours now, with the answer stored: apply it to the document.
    Claimed(Link),
    Used,
    Expired,
    Unknown,
    /// The job is no longer completed (cancelled, reopened): no survey.
    NotDone(String),
}

/// Takes the link and stores the answer in one conditional update, so two
/// concurrent answers (or instances) cannot both have it, and an answer
/// that was accepted is never lost, whatever happens to the document write.
pub fn claim(
    conn: &mut DbConn,
    id: &str,
    answer: &Survey,
    now: DateTime<Utc>,
) -> Result<Claim, DbError> {
    let Some(link) = get(conn, id)? else {
        return Ok(Claim::Unknown);
    };
    if link.used_at.is_some() {
        return Ok(Claim::Used);
    }
    if parse_time(&link.expires_at).is_none_or(|e| e <= now) {
        return Ok(Claim::Expired);
    }
    let status: Option<String> = on_conn!(conn, |c| tickets::table
        .find(&link.doc_id)
        .select(tickets::status)
        .first(c)
        .optional())?;
    match status {
        Some(s) if DONE.contains(&s.as_str()) => {}
        Some(s) => return Ok(Claim::NotDone(s)),
        None => return Ok(Claim::Unknown),
    }
    let json = serde_json::to_string(answer).expect("a survey serialises");
    let n = on_conn!(conn, |c| diesel::update(
        survey_links::table
            .find(id)
            .filter(survey_links::used_at.is_null())
            // Not ended meanwhile by a newer link (same text format: the
            // comparison is the times').
            .filter(survey_links::expires_at.gt(fmt(now)))
    )
    .set((
        survey_links::used_at.eq(Some(fmt(now))),
        survey_links::answer.eq(Some(&json)),
    ))
    .execute(c))?;
    if n == 0 {
        return Ok(Claim::Used);
    }
    Ok(Claim::Claimed(get(conn, id)?.expect("just updated")))
}

/// Only the newest link of a ticket is live: making one ends the older
/// unused ones, so a job has at most one answer through links.
fn end_older_links(conn: &mut DbConn, doc_id: &str, now: DateTime<Utc>) -> Result<(), DbError> {
    on_conn!(conn, |c| diesel::update(
        survey_links::table
            .filter(survey_links::doc_id.eq(doc_id))
            .filter(survey_links::used_at.is_null())
            .filter(survey_links::expires_at.gt(fmt(now)))
    )
    .set(survey_links::expires_at.eq(fmt(now)))
    .execute(c))?;
    Ok(())
}

pub fn mark_applied(conn: &mut DbConn, id: &str, now: DateTime<Utc>) -> Result<(), DbError> {
    on_conn!(conn, |c| diesel::update(survey_links::table.find(id))
        .set(survey_links::applied_at.eq(Some(fmt(now))))
        .execute(c))?;
    Ok(())
}

/// Answers taken but not yet in their document, used before `before`.
pub fn unapplied(conn: &mut DbConn, before: DateTime<Utc>) -> Result<Vec<Link>, DbError> {
    Ok(on_conn!(conn, |c| survey_links::table
        .filter(survey_links::applied_at.is_null())
        .filter(survey_links::used_at.lt(fmt(before)))
        .filter(survey_links::answer.is_not_null())
        .order(survey_links::used_at)
        .limit(100)
        .select(Link::as_select())
        .load(c))?)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Written into the document.
    Written,
    /// The document already had a survey (given on site meanwhile); the
    /// link's answer stays on record in `survey_links.answer`.
    AlreadyAnswered,
}

/// Writes a claimed link's answer into the ticket document (a server edit,
/// so devices, the projection and the closed loop see it like an answer
/// given on site), then marks it applied and runs the ticket's rules at
/// once (a low score's callback does not wait for the next sweep).
pub async fn apply(
    hub: &Arc<Hub>,
    link: &Link,
    now: DateTime<Utc>,
    webhook: bool,
) -> Result<Applied, EditError> {
    let Some(survey) = link
        .answer
        .as_deref()
        .and_then(|a| serde_json::from_str::<Survey>(a).ok())
    else {
        return Err(EditError::Invalid("no answer stored".into()));
    };
    let doc = DocumentId::from_str(&link.doc_id).map_err(|_| EditError::NotFound)?;
    let answered_at = link.used_at.clone().unwrap_or_default();
    let edit: ServerEditFn = Box::new(move |tx| {
        // A survey with a score is an answer; an empty one (a device's,
        // without scores) is replaced.
        let answered = ticket::read(&*tx)
            .ok()
            .and_then(|t| t.survey)
            .is_some_and(|s| s.efficiency.or(s.attitude).or(s.reasonableness).is_some());
        if answered {
            return Err(ALREADY.into());
        }
        ticket::set_survey(tx, &survey).map_err(|e| e.to_string())?;
        ticket::mark_survey_source(tx, "link", &answered_at).map_err(|e| e.to_string())
    });
    let by = format!("survey-link:{}", link.id);
    let outcome = match hub
        .server_edit(doc, &by, Role::BackOffice, false, edit)
        .await
    {
        Ok(()) => Applied::Written,
        Err(EditError::Invalid(m)) if m == ALREADY => Applied::AlreadyAnswered,
        Err(e) => return Err(e),
    };
    let (id, key) = (link.id.clone(), link.doc_id.clone());
    let done = hub
        .db
        .run(move |c| {
            mark_applied(c, &id, now)?;
            crate::office::sla_watch::sweep(c, Some(vec![key]), now, webhook)?;
            Ok(())
        })
        .await;
    if let Err(e) = done {
        // Written, but not marked: the repair pass finds the survey there
        // and only marks it.
        tracing::warn!(link = %link.id, error = %e, "survey answer written but not marked applied");
    }
    Ok(outcome)
}

const ALREADY: &str = "the ticket already has a survey";

/// Applies answers that were taken but never reached their document
/// (storage failed, or the process stopped between the two), every `every`
/// (the SLA watch's interval). Answers younger than that, and than 2 s, are
/// left to the request that took them.
pub async fn repair_loop(
    hub: Arc<Hub>,
    every: std::time::Duration,
    offset: chrono::Duration,
    webhook: bool,
) {
    let mut tick = tokio::time::interval(every);
    let grace = chrono::Duration::from_std(every.max(std::time::Duration::from_secs(2)))
        .unwrap_or(chrono::Duration::seconds(30));
    loop {
        tick.tick().await;
        let now = Utc::now() + offset;
        let Ok(links) = hub.db.run(move |c| unapplied(c, now - grace)).await else {
            continue;
        };
        for link in links {
            match apply(&hub, &link, now, webhook).await {
                Ok(_) => {
                    tracing::info!(link = %link.id, "survey answer applied by the repair pass")
                }
                Err(EditError::NotFound) => {
                    let id = link.id.clone();
                    let _ = hub.db.run(move |c| mark_applied(c, &id, now)).await;
                }
                Err(e) => {
                    tracing::warn!(link = %link.id, error = %e, "survey answer still not applied")
                }
            }
        }
    }
}
