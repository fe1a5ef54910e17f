//! `fieldsync blobs gc`: deletes blob files that no stored ticket references
//! once they are older than a grace period (issue 10 item 13).
//!
//! Uploads come before the sync that references them (an app uploads a
//! photo, and its ticket edit may arrive hours later over a poor connection),
//! so a fresh unreferenced blob is normal: only files not written or
//! re-uploaded for `grace` are deleted (`BlobStore::put` refreshes the time
//! of a re-upload). References are read from every stored document first;
//! if one cannot be read nothing is deleted, since what it references is
//! unknown. Safe while servers run, provided no device takes longer than
//! `grace` between uploading a blob and syncing the edit that references it.

use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use fieldsync_shared::ticket;

use super::BlobStore;
use crate::db::Db;
use crate::projection::store::all_doc_ids;
use crate::storage;

#[derive(Clone, Copy, Debug)]
pub struct GcOptions {
    /// Files modified more recently than this are kept.
    pub grace: Duration,
    /// Report what would be deleted; delete nothing.
    pub dry_run: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub documents: usize,
    pub blobs: usize,
    pub referenced: usize,
    /// Unreferenced but within the grace period.
    pub young: usize,
    /// Unreferenced and old: deleted (or, in a dry run, would be).
    pub deleted: usize,
    pub deleted_bytes: u64,
    /// Leftover temporary files of interrupted uploads, deleted likewise.
    pub temp_files_deleted: usize,
}

/// Every blob any stored document references.
pub fn referenced_blobs(db: &Db, out: &mut impl Write) -> anyhow::Result<(usize, HashSet<String>)> {
    let ids = db.run_blocking(all_doc_ids)?;
    writeln!(out, "reading {} document(s) for blob references", ids.len())?;
    let mut refs = HashSet::new();
    for (i, id) in ids.iter().enumerate() {
        let doc = db
            .run_blocking(|c| storage::load(c, id))
            .and_then(|s| s.materialize())
            .with_context(|| format!("reading document {id}; nothing was deleted"))?;
        refs.extend(ticket::referenced_blobs(&doc));
        if (i + 1) % 500 == 0 {
            writeln!(out, "  {}/{} documents", i + 1, ids.len())?;
        }
    }
    Ok((ids.len(), refs))
}

pub fn collect(
    db: &Db,
    store: &BlobStore,
    opts: GcOptions,
    out: &mut impl Write,
) -> anyhow::Result<GcReport> {
    let (documents, refs) = referenced_blobs(db, out)?;
    let cutoff = SystemTime::now()
        .checked_sub(opts.grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let verb = if opts.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let mut report = GcReport {
        documents,
        ..Default::default()
    };
    for file in store.list().context("listing the blob directory")? {
        if file.sha256.is_some() {
            report.blobs += 1;
        }
        if file.sha256.as_ref().is_some_and(|s| refs.contains(s)) {
            report.referenced += 1;
            continue;
        }
        if file.modified > cutoff {
            report.young += usize::from(file.sha256.is_some());
            continue;
        }
        if !opts.dry_run {
            match std::fs::remove_file(&file.path) {
                Ok(()) => {}
                // Another clean-up got there first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("deleting {}", file.path.display()))
                }
            }
        }
        let age_h = SystemTime::now()
            .duration_since(file.modified)
            .unwrap_or_default()
            .as_secs()
            / 3600;
        match &file.sha256 {
            Some(sha) => {
                report.deleted += 1;
                report.deleted_bytes += file.bytes;
                writeln!(out, "  {verb} {sha} ({} bytes, {age_h} h old)", file.bytes)?;
            }
            None => {
                report.temp_files_deleted += 1;
                writeln!(out, "  {verb} {} (interrupted upload)", file.path.display())?;
            }
        }
    }
    writeln!(
        out,
        "blobs: {} stored, {} referenced, {} unreferenced but younger than {} h (kept), {} unreferenced {verb} ({} bytes), {} temporary file(s) {verb}",
        report.blobs,
        report.referenced,
        report.young,
        opts.grace.as_secs() / 3600,
        report.deleted,
        report.deleted_bytes,
        report.temp_files_deleted,
    )?;
    Ok(report)
}
