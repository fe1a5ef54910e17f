//! Escalation records: who was told that a ticket's target is at risk or
//! breached, and who acknowledged it. One per (ticket, target, tier).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::escalations;
use crate::db::{now_rfc3339, on_conn, DbConn, DbError};

pub struct NewEscalation<'a> {
    pub doc_id: &'a str,
    pub ticket_no: &'a str,
    pub milestone: &'a str,
    pub tier: &'a str,
    pub sla_state: &'a str,
    pub notified: &'a [String],
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = escalations)]
pub struct Escalation {
    pub id: String,
    pub doc_id: String,
    pub ticket_no: String,
    /// `respond` or `resolve`.
    pub milestone: String,
    /// `technician`, `supervisor` or `manager`.
    pub tier: String,
    /// The SLA state that called for it (`at_risk`, `breached`).
    pub sla_state: String,
    /// JSON array of the user ids told.
    #[serde(serialize_with = "as_json")]
    #[schema(value_type = Vec<String>)]
    pub notified: String,
    pub created_at: String,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<String>,
}

fn as_json<S: serde::Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    let parsed: serde_json::Value = serde_json::from_str(v).unwrap_or(serde_json::Value::Null);
    parsed.serialize(s)
}

/// Records the escalation unless this tier already had one for this target;
/// Some(id) when it is new.
pub fn insert_once(conn: &mut DbConn, e: &NewEscalation<'_>) -> Result<Option<String>, DbError> {
    let id = uuid::Uuid::now_v7().to_string();
    let notified = serde_json::to_string(e.notified).expect("strings serialise");
    let at = e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let n = on_conn!(conn, |c| diesel::insert_into(escalations::table)
        .values((
            escalations::id.eq(&id),
            escalations::doc_id.eq(e.doc_id),
            escalations::ticket_no.eq(e.ticket_no),
            escalations::milestone.eq(e.milestone),
            escalations::tier.eq(e.tier),
            escalations::sla_state.eq(e.sla_state),
            escalations::notified.eq(&notified),
            escalations::created_at.eq(&at),
        ))
        .on_conflict((
            escalations::doc_id,
            escalations::milestone,
            escalations::tier
        ))
        .do_nothing()
        .execute(c))?;
    Ok((n == 1).then_some(id))
}

/// Filters of `GET /api/v1/escalations`.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct Filter {
    /// Only those not yet acknowledged.
    pub open: Option<bool>,
    pub tier: Option<String>,
    pub doc_id: Option<String>,
    /// Only those that notified this user.
    #[serde(skip)]
    pub notified_user: Option<String>,
}

/// Newest first (then by id), at most `limit` after `after` = (created_at,
/// id). Rows whose `notified` only looks like the user's (the SQL filter is
/// a LIKE) are dropped after the limit, so a page may be short; `scanned`
/// is the last row read, for the next page's cursor.
pub fn list(
    conn: &mut DbConn,
    f: &Filter,
    after: Option<(String, String)>,
    limit: i64,
) -> Result<(Vec<Escalation>, Option<(String, String)>, bool), DbError> {
    let mut rows: Vec<Escalation> = on_conn!(conn, |c| {
        let mut q = escalations::table.into_boxed();
        if let Some((at, id)) = &after {
            q = q.filter(
                escalations::created_at
                    .lt(at.clone())
                    .or(escalations::created_at
                        .eq(at.clone())
                        .and(escalations::id.gt(id.clone()))),
            );
        }
        if f.open == Some(true) {
            q = q.filter(escalations::acknowledged_at.is_null());
        }
        if let Some(t) = &f.tier {
            q = q.filter(escalations::tier.eq(t));
        }
        if let Some(d) = &f.doc_id {
            q = q.filter(escalations::doc_id.eq(d));
        }
        // `notified` is a JSON array of user ids (uuids: nothing to escape);
        // filtered in SQL so the limit applies to the caller's own rows.
        if let Some(user) = &f.notified_user {
            q = q.filter(escalations::notified.like(format!("%\"{user}\"%")));
        }
        q.order((escalations::created_at.desc(), escalations::id))
            .limit(limit.saturating_add(1))
            .select(Escalation::as_select())
            .load(c)
    })?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    let scanned = rows.last().map(|e| (e.created_at.clone(), e.id.clone()));
    if let Some(user) = &f.notified_user {
        rows.retain(|e| {
            serde_json::from_str::<Vec<String>>(&e.notified).is_ok_and(|ids| ids.contains(user))
        });
    }
    Ok((rows, scanned, more))
}

pub fn get(conn: &mut DbConn, id: &str) -> Result<Option<Escalation>, DbError> {
    Ok(on_conn!(conn, |c| escalations::table
        .find(id)
        .select(Escalation::as_select())
        .first(c)
        .optional())?)
}

/// Marks it acknowledged (the first acknowledgement stands); false if
/// there is no such escalation.
pub fn acknowledge(conn: &mut DbConn, id: &str, by_user: &str) -> Result<bool, DbError> {
    let now = now_rfc3339();
    Ok(on_conn!(conn, |c| {
        let found = escalations::table.find(id).count().get_result::<i64>(c)? == 1;
        diesel::update(
            escalations::table
                .find(id)
                .filter(escalations::acknowledged_at.is_null()),
        )
        .set((
            escalations::acknowledged_by.eq(by_user),
            escalations::acknowledged_at.eq(&now),
        ))
        .execute(c)?;
        Ok::<_, diesel::result::Error>(found)
    })?)
}
