//! Contacts with the customer about a ticket (a call, a message), recorded
//! by the office or the assigned technician. The first one is the response
//! when the policy counts first contact (`sla.respond_on: first_contact`,
//! seed 000 §4.2). Server time: a contact is recorded when it is made.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::ticket_contacts;
use crate::db::{on_conn, DbConn, DbError};
use crate::office::sla_watch::parse_time;

/// How the customer was reached.
pub const CHANNELS: &[&str] = &["phone", "sms", "email", "visit", "other"];

#[derive(Clone, Debug, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = ticket_contacts)]
pub struct Contact {
    pub id: String,
    pub doc_id: String,
    pub at: String,
    pub by_user: String,
    pub channel: String,
    pub note: String,
}

pub fn record(
    conn: &mut DbConn,
    doc_id: &str,
    by_user: &str,
    channel: &str,
    note: &str,
    now: DateTime<Utc>,
) -> Result<Contact, DbError> {
    let row = Contact {
        id: uuid::Uuid::now_v7().to_string(),
        doc_id: doc_id.into(),
        // Milliseconds, like status events: a call made the second the
        // ticket was created still comes after it.
        at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        by_user: by_user.into(),
        channel: channel.into(),
        note: note.into(),
    };
    on_conn!(conn, |c| diesel::insert_into(ticket_contacts::table)
        .values((
            ticket_contacts::id.eq(&row.id),
            ticket_contacts::doc_id.eq(&row.doc_id),
            ticket_contacts::at.eq(&row.at),
            ticket_contacts::by_user.eq(&row.by_user),
            ticket_contacts::channel.eq(&row.channel),
            ticket_contacts::note.eq(&row.note),
        ))
        .execute(c))?;
    Ok(row)
}

/// A ticket's contacts, oldest first (then by id), at most `limit` after
/// `after` = (at, id).
pub fn list(
    conn: &mut DbConn,
    doc_id: &str,
    after: Option<(String, String)>,
    limit: i64,
) -> Result<Vec<Contact>, DbError> {
    Ok(on_conn!(conn, |c| {
        let mut q = ticket_contacts::table
            .filter(ticket_contacts::doc_id.eq(doc_id))
            .order((ticket_contacts::at, ticket_contacts::id))
            .limit(limit)
            .select(Contact::as_select())
            .into_boxed();
        if let Some((at, id)) = &after {
            q = q.filter(
                ticket_contacts::at.gt(at.clone()).or(ticket_contacts::at
                    .eq(at.clone())
                    .and(ticket_contacts::id.gt(id.clone()))),
            );
        }
        q.load(c)
    })?)
}

/// When the customer was first contacted about the ticket.
pub fn first(conn: &mut DbConn, doc_id: &str) -> Result<Option<DateTime<Utc>>, DbError> {
    let at: Option<String> = on_conn!(conn, |c| ticket_contacts::table
        .filter(ticket_contacts::doc_id.eq(doc_id))
        .order(ticket_contacts::at)
        .select(ticket_contacts::at)
        .first(c)
        .optional())?;
    Ok(at.as_deref().and_then(parse_time))
}
