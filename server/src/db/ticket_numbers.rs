//! The registry of ticket numbers handed out through the API: unique across
//! the server (there is one tenant). Separate from the `tickets` projection,
//! which devices feed: a device's duplicate must never make a sync commit
//! fail, so the projection keeps no unique key on the number.

use diesel::prelude::*;

use super::schema::{ticket_numbers as tn, tickets};
use super::{now_millis, on_conn, DbConn, DbError};

/// Claims `ticket_no` for `doc_id`; false if it is taken, by an earlier
/// reservation or by a ticket a device created with that number.
pub fn reserve(conn: &mut DbConn, ticket_no: &str, doc_id: &str) -> Result<bool, DbError> {
    on_conn!(conn, |c| {
        let in_use: i64 = tickets::table
            .filter(tickets::ticket_no.eq(ticket_no))
            .count()
            .get_result(c)?;
        if in_use > 0 {
            return Ok(false);
        }
        let inserted = diesel::insert_into(tn::table)
            .values((
                tn::ticket_no.eq(ticket_no),
                tn::doc_id.eq(doc_id),
                tn::created_at.eq(now_millis()),
            ))
            .on_conflict_do_nothing()
            .execute(c)?;
        Ok(inserted == 1)
    })
}

/// Gives back a number whose ticket could not be created.
pub fn release(conn: &mut DbConn, ticket_no: &str, doc_id: &str) -> Result<(), DbError> {
    on_conn!(conn, |c| diesel::delete(
        tn::table
            .filter(tn::ticket_no.eq(ticket_no))
            .filter(tn::doc_id.eq(doc_id))
    )
    .execute(c)
    .map(|_| ())
    .map_err(DbError::from))
}
