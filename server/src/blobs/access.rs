//! Who may read a blob through which ticket (issue 10 item 12).
//!
//! A blob is served through a ticket only when the ticket references it *and*
//! someone allowed to see the blob made it do so: knowing a hash is not
//! enough (a technician who writes another ticket's photo hash into their own
//! ticket gets a 404).
//!
//! - Uploading a blob proves its bytes are at hand (`blob_uploads`, every
//!   uploader, also when the file existed already).
//! - When a sync message makes a ticket reference a hash it did not reference
//!   before, a link (ticket, hash, user) is recorded (`link_new_references`).
//!   It is *confirmed* when that user may see the blob: they uploaded it, or
//!   can already read it through another ticket. Otherwise it waits for their
//!   upload (`record_upload` confirms it): apps often sync the ticket edit
//!   before the photo upload finishes.
//! - Legacy: blob files stored before this rule are recorded, by the first
//!   server start after the migration, as uploads of user `""`. A ticket's
//!   reference to such a blob that no link row mentions predates the rule
//!   (every later new reference leaves a row) and is served as before.

use std::collections::BTreeSet;

use automerge::{Automerge, ChangeHash};
use diesel::prelude::*;
use fieldsync_shared::roles::Role;
use fieldsync_shared::ticket;

use super::BlobStore;
use crate::db::schema::{blob_links as bl, blob_uploads as bu, server_meta};
use crate::db::{now_millis, on_conn, transaction, Db, DbConn, DbError};
use crate::sharing::{self, DocAccess};

/// Root keys of a ticket that hold blob references (see
/// `ticket::referenced_blobs`); `"*"` is the sync layer's "anything".
const REFERENCE_FIELDS: &[&str] = &["attachments", "signoff", "*"];

/// The uploader recorded for files stored before uploads were recorded.
const LEGACY_UPLOADER: &str = "";

/// After a committed sync message of `user_id`: links the blobs the ticket
/// references now but did not at `heads_before`. Cheap unless the message
/// touched a reference field and added a hash; a failure is logged (the
/// blob is then not served through this ticket, nothing else is affected).
pub async fn link_new_references(
    db: &Db,
    doc_id: &str,
    doc: &Automerge,
    heads_before: &[ChangeHash],
    touched_fields: Option<&BTreeSet<String>>,
    user_id: &str,
    role: Role,
) {
    let Some(fields) = touched_fields else { return };
    if !fields
        .iter()
        .any(|f| REFERENCE_FIELDS.contains(&f.as_str()))
    {
        return;
    }
    let before = ticket::referenced_blobs_at(doc, heads_before);
    let added: Vec<String> = ticket::referenced_blobs(doc)
        .into_iter()
        .filter(|h| !before.contains(h))
        .collect();
    if added.is_empty() {
        return;
    }
    let (doc_key, user) = (doc_id.to_string(), user_id.to_string());
    let result = db
        .run(move |c| {
            added
                .iter()
                .map(|h| link(c, &doc_key, h, &user, role).map(|ok| (h.clone(), ok)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
    match result {
        Ok(links) => {
            for (sha256, confirmed) in links {
                tracing::debug!(doc = %doc_id, user = %user_id, %sha256, confirmed, "blob linked to ticket");
            }
        }
        Err(e) => {
            tracing::warn!(doc = %doc_id, user = %user_id, error = %e, "could not record blob links; those blobs are not served through this ticket")
        }
    }
}

/// Records that `user_id` made `doc_id` reference `sha256`; returns whether
/// the link is confirmed.
fn link(
    c: &mut DbConn,
    doc_id: &str,
    sha256: &str,
    user_id: &str,
    role: Role,
) -> Result<bool, DbError> {
    let confirmed =
        has_uploaded(c, sha256, user_id)? || readable_elsewhere(c, sha256, doc_id, user_id, role)?;
    let row = (
        bl::doc_id.eq(doc_id),
        bl::sha256.eq(sha256),
        bl::linked_by.eq(user_id),
        bl::linked_at.eq(now_millis()),
        bl::confirmed.eq(confirmed),
    );
    on_conn!(c, |c| if confirmed {
        diesel::insert_into(bl::table)
            .values(row)
            .on_conflict((bl::doc_id, bl::sha256, bl::linked_by))
            .do_update()
            .set(bl::confirmed.eq(true))
            .execute(c)
    } else {
        diesel::insert_into(bl::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(c)
    })?;
    Ok(confirmed)
}

fn has_uploaded(c: &mut DbConn, sha256: &str, user_id: &str) -> Result<bool, DbError> {
    let n: i64 = on_conn!(c, |c| bu::table
        .filter(bu::sha256.eq(sha256))
        .filter(bu::user_id.eq(user_id))
        .count()
        .get_result(c))?;
    Ok(n > 0)
}

/// Whether the user can read the blob through another ticket: one with a
/// confirmed link that the user has full access to.
fn readable_elsewhere(
    c: &mut DbConn,
    sha256: &str,
    except_doc: &str,
    user_id: &str,
    role: Role,
) -> Result<bool, DbError> {
    // Bounded: a blob attached to more tickets than this is checked on these.
    const MAX_TICKETS_CHECKED: i64 = 100;
    let docs: Vec<String> = on_conn!(c, |c| bl::table
        .filter(bl::sha256.eq(sha256))
        .filter(bl::confirmed.eq(true))
        .filter(bl::doc_id.ne(except_doc))
        .select(bl::doc_id)
        .distinct()
        .limit(MAX_TICKETS_CHECKED)
        .load(c))?;
    for doc in docs {
        let assignment = sharing::load_assignment(c, &doc)?;
        if sharing::doc_access(role, user_id, true, &assignment) == DocAccess::Full {
            return Ok(true);
        }
    }
    Ok(false)
}

/// An upload by `user_id` (`stored_bytes`: what it added to the disk, 0 if
/// the file was there already). Confirms the user's waiting links.
pub fn record_upload(
    c: &mut DbConn,
    sha256: &str,
    user_id: &str,
    stored_bytes: u64,
) -> Result<(), DbError> {
    let now = now_millis();
    let bytes = i64::try_from(stored_bytes).unwrap_or(i64::MAX);
    transaction(c, |c| {
        on_conn!(c, |c| {
            let row = (
                bu::sha256.eq(sha256),
                bu::user_id.eq(user_id),
                bu::bytes.eq(bytes),
                bu::uploaded_at.eq(now),
            );
            // A re-upload that stored nothing keeps the first record (and
            // its place in the quota window); one that stored the file anew
            // (after `gc`) counts again.
            if bytes > 0 {
                diesel::insert_into(bu::table)
                    .values(row)
                    .on_conflict((bu::sha256, bu::user_id))
                    .do_update()
                    .set((bu::bytes.eq(bytes), bu::uploaded_at.eq(now)))
                    .execute(c)?;
            } else {
                diesel::insert_into(bu::table)
                    .values(row)
                    .on_conflict_do_nothing()
                    .execute(c)?;
            }
            diesel::update(
                bl::table
                    .filter(bl::sha256.eq(sha256))
                    .filter(bl::linked_by.eq(user_id))
                    .filter(bl::confirmed.eq(false)),
            )
            .set(bl::confirmed.eq(true))
            .execute(c)?;
            Ok::<_, DbError>(())
        })
    })
}

/// Whether the ticket's reference to `sha256` may be served (the caller has
/// checked that the user has full access and the ticket references it).
pub fn may_serve(c: &mut DbConn, doc_id: &str, sha256: &str) -> Result<bool, DbError> {
    let links: Vec<bool> = on_conn!(c, |c| bl::table
        .filter(bl::doc_id.eq(doc_id))
        .filter(bl::sha256.eq(sha256))
        .select(bl::confirmed)
        .load(c))?;
    if links.iter().any(|&confirmed| confirmed) {
        return Ok(true);
    }
    Ok(links.is_empty() && has_uploaded(c, sha256, LEGACY_UPLOADER)?)
}

/// Once after the migration (and harmlessly again if several instances
/// start together): records every blob file already on disk as a legacy
/// upload. Returns how many files were recorded.
pub async fn adopt_legacy_blobs(db: &Db, store: &BlobStore) -> anyhow::Result<usize> {
    const KEY: &str = "blob_legacy_scan";
    let pending = db
        .run(|c| {
            on_conn!(c, |c| server_meta::table
                .find(KEY)
                .select(server_meta::value)
                .first::<String>(c)
                .optional())
            .map_err(DbError::from)
        })
        .await?
        .is_some_and(|v| v == "pending");
    if !pending {
        return Ok(0);
    }
    let store = store.clone();
    let files = tokio::task::spawn_blocking(move || store.list()).await??;
    let now = now_millis();
    let rows: Vec<(String, i64)> = files
        .into_iter()
        .filter_map(|f| Some((f.sha256?, i64::try_from(f.bytes).unwrap_or(i64::MAX))))
        .collect();
    let n = rows.len();
    db.run(move |c| {
        for chunk in rows.chunks(500) {
            transaction(c, |c| {
                for (sha, bytes) in chunk {
                    on_conn!(c, |c| diesel::insert_into(bu::table)
                        .values((
                            bu::sha256.eq(sha),
                            bu::user_id.eq(LEGACY_UPLOADER),
                            bu::bytes.eq(bytes),
                            bu::uploaded_at.eq(now),
                        ))
                        .on_conflict_do_nothing()
                        .execute(c))?;
                }
                Ok::<_, DbError>(())
            })?;
        }
        on_conn!(c, |c| diesel::update(server_meta::table.find(KEY))
            .set(server_meta::value.eq(format!("done {}", crate::db::now_rfc3339())))
            .execute(c))?;
        Ok(())
    })
    .await?;
    if n > 0 {
        tracing::info!(
            files = n,
            "recorded blobs stored before upload records as legacy uploads"
        );
    }
    Ok(n)
}
