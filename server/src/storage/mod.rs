//! Durable storage of Automerge documents: append-only changes, idempotent by
//! change hash, plus compaction snapshots. Everything here is blocking diesel
//! code, called through `Db::run` (or the group committer).

pub mod committer;
pub mod faults;
pub mod health;

use std::collections::HashSet;

use automerge::{Automerge, ChangeHash};
use diesel::prelude::*;

use crate::audit;
use crate::db::schema::{doc_changes, doc_snapshots, quarantined_edits, server_meta};
use crate::db::{now_millis, on_conn, transaction, DbConn, DbError};
use crate::projection::{self, RowsDelta};

/// One change to append: its hash (the idempotency key) and encoded bytes.
#[derive(Clone, Debug)]
pub struct NewChange {
    pub hash: ChangeHash,
    pub bytes: Vec<u8>,
}

/// The changes one sync message added to one document.
#[derive(Clone, Debug)]
pub struct DocWrite {
    pub doc_id: String,
    pub changes: Vec<NewChange>,
    /// Edits undone by write validation, recorded in the same transaction.
    pub quarantined: Vec<Quarantined>,
    /// What changed in this document's service-history rows (None:
    /// nothing), written in the same transaction so history never disagrees
    /// with the document.
    pub projection: Option<RowsDelta>,
}

/// One edit the server undid (see sync::validation).
#[derive(Clone, Debug)]
pub struct Quarantined {
    pub user_id: String,
    pub device_id: String,
    pub path: String,
    pub attempted: serde_json::Value,
    pub restored: serde_json::Value,
    pub compensation: ChangeHash,
}

#[derive(Insertable)]
#[diesel(table_name = doc_changes)]
struct ChangeInsert<'a> {
    doc_id: &'a str,
    hash: &'a [u8],
    bytes: &'a [u8],
    created_at: i64,
}

/// Appends the changes of many documents in ONE transaction (one fsync).
/// Changes already stored are ignored, so replays and concurrent writers (other
/// server instances) are harmless. Returns how many rows were new.
pub fn append_changes(conn: &mut DbConn, writes: &[DocWrite]) -> Result<usize, DbError> {
    append_changes_then(conn, writes, || Ok(()))
}

/// `append_changes`, running `before_commit` as the last step inside the
/// transaction (an error there rolls everything back; fault tests use it).
pub fn append_changes_then(
    conn: &mut DbConn,
    writes: &[DocWrite],
    before_commit: impl FnOnce() -> Result<(), DbError>,
) -> Result<usize, DbError> {
    let now = now_millis();
    let rows: Vec<ChangeInsert<'_>> = writes
        .iter()
        .flat_map(|w| {
            w.changes.iter().map(move |c| ChangeInsert {
                doc_id: &w.doc_id,
                hash: &c.hash.0,
                bytes: &c.bytes,
                created_at: now,
            })
        })
        .collect();
    if rows.is_empty() {
        return Ok(0);
    }
    transaction(conn, |conn| {
        let inserted = insert_changes(conn, &rows)?;
        for w in writes {
            for q in &w.quarantined {
                record_quarantine(conn, &w.doc_id, q, now)?;
            }
            if let Some(p) = &w.projection {
                projection::store::apply(conn, &w.doc_id, p)?;
            }
        }
        before_commit()?;
        Ok(inserted)
    })
}

fn record_quarantine(
    conn: &mut DbConn,
    doc_id: &str,
    q: &Quarantined,
    now: i64,
) -> Result<(), DbError> {
    let (attempted, restored) = (q.attempted.to_string(), q.restored.to_string());
    on_conn!(conn, |c| diesel::insert_into(quarantined_edits::table)
        .values((
            quarantined_edits::id.eq(uuid::Uuid::now_v7().to_string()),
            quarantined_edits::doc_id.eq(doc_id),
            quarantined_edits::user_id.eq(&q.user_id),
            quarantined_edits::device_id.eq(&q.device_id),
            quarantined_edits::at.eq(now),
            // A key may hold NUL, which PostgreSQL text refuses.
            quarantined_edits::path.eq(q.path.replace('\0', "\u{FFFD}")),
            quarantined_edits::attempted.eq(&attempted),
            quarantined_edits::restored.eq(&restored),
            quarantined_edits::compensation_hash.eq(&q.compensation.0[..]),
        ))
        .execute(c)
        .map_err(DbError::from))?;
    audit::record(
        conn,
        audit::Entry {
            action: audit::Action::EditQuarantined,
            actor_user_id: Some(&q.user_id),
            subject: Some(doc_id),
            detail: serde_json::json!({ "device": q.device_id, "path": q.path, "attempted": q.attempted }),
            ip: None,
        },
    )
}

fn insert_changes(conn: &mut DbConn, rows: &[ChangeInsert<'_>]) -> Result<usize, DbError> {
    match conn {
        // SQLite has no multi-row INSERT … ON CONFLICT in diesel; per-row
        // inserts inside one transaction are cheap in-process.
        DbConn::Sqlite(c) => {
            let mut inserted = 0;
            for row in rows {
                inserted += diesel::insert_into(doc_changes::table)
                    .values(row)
                    .on_conflict_do_nothing()
                    .execute(c)?;
            }
            Ok(inserted)
        }
        // One round trip per 500 rows.
        DbConn::Postgres(c) => {
            let mut inserted = 0;
            for chunk in rows.chunks(500) {
                inserted += diesel::insert_into(doc_changes::table)
                    .values(chunk)
                    .on_conflict_do_nothing()
                    .execute(c)?;
            }
            Ok(inserted)
        }
    }
}

pub struct SnapshotRow {
    pub id: i64,
    pub heads: Vec<ChangeHash>,
    pub bytes: Vec<u8>,
}

pub struct ChangeRow {
    pub id: i64,
    pub hash: ChangeHash,
    pub bytes: Vec<u8>,
}

/// Everything stored for one document.
pub struct StoredDoc {
    pub snapshots: Vec<SnapshotRow>,
    pub changes: Vec<ChangeRow>,
}

impl StoredDoc {
    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty() && self.changes.is_empty()
    }

    /// Rebuilds the document: snapshots first, then the loose changes (in
    /// insertion order; Automerge queues any whose dependencies come later).
    pub fn materialize(&self) -> Result<Automerge, DbError> {
        let mut doc = Automerge::new();
        for s in &self.snapshots {
            doc.load_incremental(&s.bytes)
                .map_err(|e| DbError::Corrupt(format!("snapshot {}: {e}", s.id)))?;
        }
        let mut all = Vec::with_capacity(self.changes.iter().map(|c| c.bytes.len()).sum());
        for c in &self.changes {
            all.extend_from_slice(&c.bytes);
        }
        if !all.is_empty() {
            doc.load_incremental(&all)
                .map_err(|e| DbError::Corrupt(format!("stored changes: {e}")))?;
        }
        Ok(doc)
    }
}

pub fn load(conn: &mut DbConn, doc_id: &str) -> Result<StoredDoc, DbError> {
    type Rows = Vec<(i64, Vec<u8>, Vec<u8>)>;
    let (snaps, changes): (Rows, Rows) = on_conn!(conn, |c| {
        let snaps = doc_snapshots::table
            .filter(doc_snapshots::doc_id.eq(doc_id))
            .order(doc_snapshots::id)
            .select((
                doc_snapshots::id,
                doc_snapshots::heads,
                doc_snapshots::bytes,
            ))
            .load(c)?;
        let changes = doc_changes::table
            .filter(doc_changes::doc_id.eq(doc_id))
            .order(doc_changes::id)
            .select((doc_changes::id, doc_changes::hash, doc_changes::bytes))
            .load(c)?;
        (snaps, changes)
    });
    let snapshots = snaps
        .into_iter()
        .map(|(id, heads, bytes)| {
            Ok(SnapshotRow {
                id,
                heads: decode_heads(&heads)?,
                bytes,
            })
        })
        .collect::<Result<_, DbError>>()?;
    let changes = changes
        .into_iter()
        .map(|(id, hash, bytes)| {
            Ok(ChangeRow {
                id,
                hash: decode_hash(&hash)?,
                bytes,
            })
        })
        .collect::<Result<_, DbError>>()?;
    Ok(StoredDoc { snapshots, changes })
}

/// Compaction: stores `saved` (a full save of the document) as a new snapshot
/// and deletes the loose changes and older snapshots it covers. "Covers" is
/// decided inside the transaction against what is stored *now*, with `known`
/// (every change hash in the saved document), so a change another instance wrote
/// meanwhile is never deleted.
pub fn write_snapshot(
    conn: &mut DbConn,
    doc_id: &str,
    saved: &[u8],
    heads: &[ChangeHash],
    known: &HashSet<ChangeHash>,
) -> Result<CompactionResult, DbError> {
    let heads_bytes = encode_heads(heads);
    let change_count = known.len() as i64;
    transaction(conn, |conn| {
        on_conn!(conn, |c| {
            let stored_changes: Vec<(i64, Vec<u8>)> = doc_changes::table
                .filter(doc_changes::doc_id.eq(doc_id))
                .select((doc_changes::id, doc_changes::hash))
                .load(c)?;
            let covered_changes: Vec<i64> = stored_changes
                .into_iter()
                .filter(|(_, h)| decode_hash(h).map(|h| known.contains(&h)).unwrap_or(false))
                .map(|(id, _)| id)
                .collect();
            let stored_snaps: Vec<(i64, Vec<u8>)> = doc_snapshots::table
                .filter(doc_snapshots::doc_id.eq(doc_id))
                .select((doc_snapshots::id, doc_snapshots::heads))
                .load(c)?;
            let covered_snaps: Vec<i64> = stored_snaps
                .into_iter()
                .filter(|(_, h)| {
                    decode_heads(h)
                        .map(|hs| hs.iter().all(|h| known.contains(h)))
                        .unwrap_or(false)
                })
                .map(|(id, _)| id)
                .collect();
            diesel::insert_into(doc_snapshots::table)
                .values((
                    doc_snapshots::doc_id.eq(doc_id),
                    doc_snapshots::heads.eq(&heads_bytes),
                    doc_snapshots::bytes.eq(saved),
                    doc_snapshots::change_count.eq(change_count),
                    doc_snapshots::created_at.eq(now_millis()),
                ))
                .execute(c)?;
            for ids in covered_changes.chunks(500) {
                diesel::delete(doc_changes::table.filter(doc_changes::id.eq_any(ids)))
                    .execute(c)?;
            }
            if !covered_snaps.is_empty() {
                diesel::delete(
                    doc_snapshots::table.filter(doc_snapshots::id.eq_any(&covered_snaps)),
                )
                .execute(c)?;
            }
            Ok::<_, DbError>(CompactionResult {
                changes_removed: covered_changes.len(),
                snapshots_removed: covered_snaps.len(),
            })
        })
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionResult {
    pub changes_removed: usize,
    pub snapshots_removed: usize,
}

/// Documents with at least `min` loose changes, for `fieldsync compact`.
pub fn docs_needing_compaction(conn: &mut DbConn, min: i64) -> Result<Vec<String>, DbError> {
    use diesel::dsl::count_star;
    on_conn!(conn, |c| doc_changes::table
        .group_by(doc_changes::doc_id)
        .having(count_star().ge(min))
        .select(doc_changes::doc_id)
        .load(c)
        .map_err(DbError::from))
}

/// A tiny write transaction: proves that the database takes writes again
/// (`/health` runs it while commits are failing).
pub fn write_probe(conn: &mut DbConn) -> Result<(), DbError> {
    let now = now_millis().to_string();
    transaction(conn, |conn| {
        on_conn!(conn, |c| diesel::insert_into(server_meta::table)
            .values((
                server_meta::key.eq("write_probe"),
                server_meta::value.eq(&now)
            ))
            .on_conflict(server_meta::key)
            .do_update()
            .set(server_meta::value.eq(&now))
            .execute(c)
            .map(|_| ())
            .map_err(DbError::from))
    })
}

/// Reads a server setting, writing `init` first if it is absent. Safe when
/// several instances start at once: the first insert wins, all read it back.
pub fn meta_get_or_init(conn: &mut DbConn, key: &str, init: &str) -> Result<String, DbError> {
    on_conn!(conn, |c| {
        diesel::insert_into(server_meta::table)
            .values((server_meta::key.eq(key), server_meta::value.eq(init)))
            .on_conflict_do_nothing()
            .execute(c)?;
        server_meta::table
            .find(key)
            .select(server_meta::value)
            .first::<String>(c)
            .map_err(DbError::from)
    })
}

fn decode_hash(bytes: &[u8]) -> Result<ChangeHash, DbError> {
    ChangeHash::try_from(bytes)
        .map_err(|_| DbError::Corrupt(format!("change hash of {} bytes", bytes.len())))
}

fn encode_heads(heads: &[ChangeHash]) -> Vec<u8> {
    heads.iter().flat_map(|h| h.0).collect()
}

fn decode_heads(bytes: &[u8]) -> Result<Vec<ChangeHash>, DbError> {
    if !bytes.len().is_multiple_of(32) {
        return Err(DbError::Corrupt(format!(
            "snapshot heads of {} bytes",
            bytes.len()
        )));
    }
    bytes.chunks(32).map(decode_hash).collect()
}

#[derive(Debug, serde::Serialize, Queryable, utoipa::ToSchema)]
pub struct QuarantineRow {
    pub id: String,
    pub doc_id: String,
    pub user_id: String,
    pub device_id: String,
    #[serde(serialize_with = "crate::timestamps::ms_as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
    pub path: String,
    pub attempted: String,
    pub restored: String,
}

/// Newest first (`at`, then `id`, descending), after the row `before` =
/// (at, id) if given; optionally for one document.
pub fn list_quarantined(
    conn: &mut DbConn,
    doc_id: Option<&str>,
    before: Option<(i64, String)>,
    limit: i64,
) -> Result<Vec<QuarantineRow>, DbError> {
    on_conn!(conn, |c| {
        let mut q = quarantined_edits::table
            .select((
                quarantined_edits::id,
                quarantined_edits::doc_id,
                quarantined_edits::user_id,
                quarantined_edits::device_id,
                quarantined_edits::at,
                quarantined_edits::path,
                quarantined_edits::attempted,
                quarantined_edits::restored,
            ))
            .order((quarantined_edits::at.desc(), quarantined_edits::id.desc()))
            .limit(limit)
            .into_boxed();
        if let Some(d) = doc_id {
            q = q.filter(quarantined_edits::doc_id.eq(d));
        }
        if let Some((at, id)) = &before {
            q = q.filter(
                quarantined_edits::at.lt(*at).or(quarantined_edits::at
                    .eq(*at)
                    .and(quarantined_edits::id.lt(id.clone()))),
            );
        }
        q.load::<QuarantineRow>(c).map_err(DbError::from)
    })
}
