//! Survey links (issue 11 §3): the office makes a link for a completed job,
//! the customer answers once, before the survey window closes
//! (`service::surveys`). The answer is written into the ticket document by
//! the caller (a server edit), so devices, the projection and the closed
//! loop (low score → callback, unsatisfied streak) see it like an answer
//! recorded on site.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{survey_links, tickets};
use crate::db::{on_conn, DbConn, DbError};
use crate::office::sla_watch::parse_time;
use crate::service::policy::Policy;
use crate::service::surveys;

fn fmt(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Statuses of a job whose work is done (the survey is about it).
const DONE: &[&str] = &["completed", "signed_off", "disputed", "reconciled"];

#[derive(Clone, Debug, Serialize)]
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
    let row: Option<(String, String, String, Option<i64>)> = on_conn!(conn, |c| tickets::table
        .find(doc_id)
        .select((
            tickets::ticket_no,
            tickets::status,
            tickets::completed_at,
            tickets::survey_scale,
        ))
        .first(c)
        .optional())?;
    let Some((ticket_no, status, completed_at, scale)) = row else {
        return Ok(Err(Refusal::NoTicket));
    };
    let completed = parse_time(&completed_at);
    let Some(completed) = completed.filter(|_| DONE.contains(&status.as_str())) else {
        return Ok(Err(Refusal::NotCompleted(status)));
    };
    if scale.is_some() {
        return Ok(Err(Refusal::AlreadyAnswered));
    }
    let expires = surveys::window_closes(policy, completed);
    if expires <= now {
        return Ok(Err(Refusal::WindowClosed(
            fmt(expires),
            policy.survey.within_working_days,
        )));
    }
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

#[derive(Clone, Debug, Queryable, Selectable, Serialize)]
#[diesel(table_name = survey_links)]
pub struct Link {
    pub id: String,
    pub doc_id: String,
    pub ticket_no: String,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: String,
    pub used_at: Option<String>,
}

pub fn get(conn: &mut DbConn, id: &str) -> Result<Option<Link>, DbError> {
    Ok(on_conn!(conn, |c| survey_links::table
        .find(id)
        .select(Link::as_select())
        .first(c)
        .optional())?)
}

/// A ticket's links (never their tokens), newest first.
pub fn list_for(conn: &mut DbConn, doc_id: &str) -> Result<Vec<Link>, DbError> {
    Ok(on_conn!(conn, |c| survey_links::table
        .filter(survey_links::doc_id.eq(doc_id))
        .order(survey_links::created_at.desc())
        .limit(100)
        .select(Link::as_select())
        .load(c))?)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Ours now: record the answer, or `release` it if that fails.
    Claimed(String),
    Used,
    Expired,
    Unknown,
}

/// Takes the link for one answer: a conditional update, so two concurrent
/// answers (or instances) cannot both have it.
pub fn claim(conn: &mut DbConn, id: &str, now: DateTime<Utc>) -> Result<Claim, DbError> {
    let Some(link) = get(conn, id)? else {
        return Ok(Claim::Unknown);
    };
    if link.used_at.is_some() {
        return Ok(Claim::Used);
    }
    if parse_time(&link.expires_at).is_none_or(|e| e <= now) {
        return Ok(Claim::Expired);
    }
    let n = on_conn!(conn, |c| diesel::update(
        survey_links::table
            .find(id)
            .filter(survey_links::used_at.is_null())
    )
    .set(survey_links::used_at.eq(Some(fmt(now))))
    .execute(c))?;
    Ok(if n == 1 {
        Claim::Claimed(link.doc_id)
    } else {
        Claim::Used
    })
}

/// Gives a claimed link back (the answer could not be stored: the customer
/// may try again).
pub fn release(conn: &mut DbConn, id: &str) -> Result<(), DbError> {
    on_conn!(conn, |c| diesel::update(survey_links::table.find(id))
        .set(survey_links::used_at.eq(None::<String>))
        .execute(c))?;
    Ok(())
}
