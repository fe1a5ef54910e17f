//! Writing the projection: replace one document's rows (inside the caller's
//! transaction), and rebuild everything from the stored documents.

use diesel::prelude::*;

use super::{project, TicketRows};
use crate::db::schema::{
    doc_changes, doc_snapshots, parts, parts_used, signoffs, status_events, stock_movements,
    tickets, visits,
};
use crate::db::{on_conn, transaction, DbConn, DbError};
use crate::storage;

/// Makes `doc_id`'s history rows equal to `rows` (None: the document has
/// none). Call inside the transaction that stores the document's changes.
pub fn replace(conn: &mut DbConn, doc_id: &str, rows: Option<&TicketRows>) -> Result<(), DbError> {
    on_conn!(conn, |c| {
        diesel::delete(tickets::table.filter(tickets::doc_id.eq(doc_id))).execute(c)?;
        diesel::delete(visits::table.filter(visits::doc_id.eq(doc_id))).execute(c)?;
        diesel::delete(parts_used::table.filter(parts_used::doc_id.eq(doc_id))).execute(c)?;
        diesel::delete(stock_movements::table.filter(stock_movements::doc_id.eq(doc_id)))
            .execute(c)?;
        diesel::delete(signoffs::table.filter(signoffs::doc_id.eq(doc_id))).execute(c)?;
        diesel::delete(status_events::table.filter(status_events::doc_id.eq(doc_id))).execute(c)?;
        if let Some(r) = rows {
            diesel::insert_into(tickets::table)
                .values(&r.ticket)
                .execute(c)?;
            if !r.visits.is_empty() {
                diesel::insert_into(visits::table)
                    .values(&r.visits)
                    .execute(c)?;
            }
            if !r.parts.is_empty() {
                diesel::insert_into(parts_used::table)
                    .values(&r.parts)
                    .execute(c)?;
            }
            if !r.movements.is_empty() {
                // Unknown part numbers never become stock rows.
                let named: Vec<&str> = r.movements.iter().map(|m| m.part_no.as_str()).collect();
                let known: std::collections::HashSet<String> = parts::table
                    .filter(parts::part_no.eq_any(&named))
                    .select(parts::part_no)
                    .load(c)?
                    .into_iter()
                    .collect();
                let movements: Vec<&super::MovementRow> = r
                    .movements
                    .iter()
                    .filter(|m| known.contains(&m.part_no))
                    .collect();
                if !movements.is_empty() {
                    diesel::insert_into(stock_movements::table)
                        .values(movements)
                        .execute(c)?;
                }
            }
            if let Some(s) = &r.signoff {
                diesel::insert_into(signoffs::table).values(s).execute(c)?;
            }
            if !r.events.is_empty() {
                diesel::insert_into(status_events::table)
                    .values(&r.events)
                    .execute(c)?;
            }
        }
        Ok::<_, DbError>(())
    })
}

/// Writes what changed in a document's rows (see `projection::update`).
pub fn apply(conn: &mut DbConn, doc_id: &str, delta: &super::RowsDelta) -> Result<(), DbError> {
    let super::RowsDelta::Part {
        ticket,
        visit_figures_only,
        visits: changed,
        events,
    } = delta
    else {
        let super::RowsDelta::All(rows) = delta else {
            unreachable!()
        };
        return replace(conn, doc_id, rows.as_deref());
    };
    on_conn!(conn, |c| {
        match ticket {
            Some(t) if *visit_figures_only => {
                diesel::update(tickets::table.filter(tickets::doc_id.eq(doc_id)))
                    .set((
                        tickets::visit_count.eq(t.visit_count),
                        tickets::result.eq(&t.result),
                    ))
                    .execute(c)?;
            }
            Some(t) => {
                diesel::delete(tickets::table.filter(tickets::doc_id.eq(doc_id))).execute(c)?;
                diesel::insert_into(tickets::table)
                    .values(&**t)
                    .execute(c)?;
            }
            None => {}
        }
        for (v, appended) in changed {
            if !appended {
                diesel::delete(
                    visits::table
                        .filter(visits::doc_id.eq(doc_id))
                        .filter(visits::position.eq(v.position)),
                )
                .execute(c)?;
            }
            diesel::insert_into(visits::table).values(v).execute(c)?;
        }
        if let Some(events) = events {
            diesel::delete(status_events::table.filter(status_events::doc_id.eq(doc_id)))
                .execute(c)?;
            if !events.is_empty() {
                diesel::insert_into(status_events::table)
                    .values(events)
                    .execute(c)?;
            }
        }
        Ok::<_, DbError>(())
    })
}

/// Every stored document id.
pub fn all_doc_ids(conn: &mut DbConn) -> Result<Vec<String>, DbError> {
    let mut ids: Vec<String> = on_conn!(conn, |c| {
        let mut a: Vec<String> = doc_changes::table
            .select(doc_changes::doc_id)
            .distinct()
            .load(c)?;
        let b: Vec<String> = doc_snapshots::table
            .select(doc_snapshots::doc_id)
            .distinct()
            .load(c)?;
        a.extend(b);
        Ok::<_, DbError>(a)
    })?;
    ids.sort();
    ids.dedup();
    Ok(ids)
}

#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RebuildReport {
    pub documents: usize,
    pub tickets: usize,
    /// Documents that could not be loaded (logged; their rows are untouched).
    pub failed: usize,
}

/// Recomputes the whole projection from the stored documents, one document
/// per transaction. Run it with the servers stopped (like a migration): a
/// server committing to a document while it is being rebuilt could have its
/// newer rows overwritten by older ones until that document's next change.
pub fn rebuild(
    conn: &mut DbConn,
    mut progress: impl FnMut(usize, usize),
) -> Result<RebuildReport, DbError> {
    let ids = all_doc_ids(conn)?;
    let mut report = RebuildReport {
        documents: ids.len(),
        ..Default::default()
    };
    // Rows of documents that no longer exist at all.
    on_conn!(conn, |c| {
        let projected: Vec<String> = tickets::table.select(tickets::doc_id).load(c)?;
        Ok::<_, DbError>(projected)
    })?
    .into_iter()
    .filter(|d| ids.binary_search(d).is_err())
    .try_for_each(|d| replace(conn, &d, None))?;
    for (i, id) in ids.iter().enumerate() {
        let doc = storage::load(conn, id).and_then(|s| s.materialize());
        match doc {
            Ok(doc) => {
                let rows = project(id, &doc);
                report.tickets += usize::from(rows.is_some());
                transaction(conn, |c| replace(c, id, rows.as_ref()))?;
            }
            Err(e) => {
                tracing::error!(doc = %id, error = %e, "could not load document; its rows are left as they were");
                report.failed += 1;
            }
        }
        progress(i + 1, ids.len());
    }
    Ok(report)
}

/// Every projected row, ordered by key, as JSON: what `rebuild` must
/// reproduce exactly (used by tests and for audits). Manual stock movements
/// are not projected and are left out.
pub fn dump(conn: &mut DbConn) -> Result<serde_json::Value, DbError> {
    use super::{MovementRow, PartRow, SignoffRow, StatusEventRow, TicketRow, VisitRow};
    on_conn!(conn, |c| {
        let t: Vec<TicketRow> = tickets::table
            .order(tickets::doc_id)
            .select(TicketRow::as_select())
            .load(c)?;
        let v: Vec<VisitRow> = visits::table
            .order((visits::doc_id, visits::position))
            .select(VisitRow::as_select())
            .load(c)?;
        let p: Vec<PartRow> = parts_used::table
            .order((parts_used::doc_id, parts_used::position))
            .select(PartRow::as_select())
            .load(c)?;
        let m: Vec<MovementRow> = stock_movements::table
            .filter(stock_movements::doc_id.is_not_null())
            .order(stock_movements::id)
            .select(MovementRow::as_select())
            .load(c)?;
        let s: Vec<SignoffRow> = signoffs::table
            .order(signoffs::doc_id)
            .select(SignoffRow::as_select())
            .load(c)?;
        let e: Vec<StatusEventRow> = status_events::table
            .order((status_events::doc_id, status_events::seq))
            .select(StatusEventRow::as_select())
            .load(c)?;
        Ok::<_, DbError>(serde_json::json!({
            "tickets": t, "visits": v, "parts_used": p,
            "stock_movements": m, "signoffs": s, "status_events": e,
        }))
    })
}

/// Empties the projected rows (tests use it to prove `rebuild` recomputes).
pub fn clear(conn: &mut DbConn) -> Result<(), DbError> {
    on_conn!(conn, |c| {
        diesel::delete(tickets::table).execute(c)?;
        diesel::delete(visits::table).execute(c)?;
        diesel::delete(parts_used::table).execute(c)?;
        diesel::delete(stock_movements::table.filter(stock_movements::doc_id.is_not_null()))
            .execute(c)?;
        diesel::delete(signoffs::table).execute(c)?;
        diesel::delete(status_events::table).execute(c)?;
        Ok::<_, DbError>(())
    })
}
