//! `fieldsync backup <file>` and `fieldsync restore <file>`: a consistent
//! copy of the whole database taken while the server keeps serving, and its
//! restore into an empty database.
//!
//! - SQLite: the online backup API (`sqlite3_backup_*`), page by page with
//!   progress. A write by the running server restarts an incremental backup
//!   (SQLite's rule); after a few restarts the rest is copied in one step,
//!   which holds a read snapshot (WAL: writers go on) and cannot be
//!   restarted. The copy is checked (`PRAGMA quick_check`) before it is
//!   renamed into place, so a failed backup never leaves a file that looks
//!   complete.
//! - PostgreSQL: `pg_dump --format=custom`, which reads one repeatable-read
//!   snapshot; `pg_restore --single-transaction` restores it. Both must be
//!   on PATH (the PostgreSQL client package). Progress is pg_dump's own
//!   per-table lines.
//!
//! A restore refuses a database that already has tables: it never merges
//! into or overwrites live data. Afterwards the migrations of this version
//! run, so a backup from an older version comes back up to date.

use std::ffi::{CStr, CString};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use libsqlite3_sys as ffi;

use crate::db::{Backend, Db, DbTarget};
use crate::progress::Progress;

/// Pages copied per incremental step (4 KiB pages: 4 MiB).
const STEP_PAGES: i32 = 1024;
/// Restarts (the server wrote meanwhile) before the rest goes in one step.
const MAX_RESTARTS: u32 = 3;

/// What a backup or restore did, for the closing line.
#[derive(Debug)]
pub struct Summary {
    pub bytes: u64,
    pub detail: String,
}

pub fn backup(database: &str, out: &Path) -> anyhow::Result<Summary> {
    if out.exists() {
        bail!(
            "{} exists already; choose a new file (a backup never overwrites)",
            out.display()
        );
    }
    let target = DbTarget::parse(database);
    match target.backend {
        Backend::Sqlite => sqlite_backup(Path::new(&target.url), out),
        Backend::Postgres => pg_dump(&target.url, out),
    }
}

pub fn restore(database: &str, input: &Path) -> anyhow::Result<Summary> {
    anyhow::ensure!(input.is_file(), "no backup file at {}", input.display());
    let target = DbTarget::parse(database);
    let summary = match target.backend {
        Backend::Sqlite => sqlite_restore(input, Path::new(&target.url))?,
        Backend::Postgres => pg_restore(input, &target.url)?,
    };
    // This version's migrations (a backup from an older one catches up).
    Db::open(database, 1).context("opening the restored database")?;
    Ok(summary)
}

// ------------------------------------------------------------------ SQLite

/// A raw SQLite connection, closed on drop.
struct Raw(*mut ffi::sqlite3);

impl Raw {
    fn open(path: &Path, flags: i32) -> anyhow::Result<Self> {
        let c = CString::new(path.to_string_lossy().as_bytes())?;
        let mut db = std::ptr::null_mut();
        // SAFETY: `c` is a valid NUL-terminated path; `db` receives a handle
        // that `Drop` closes (also when opening failed).
        let rc = unsafe { ffi::sqlite3_open_v2(c.as_ptr(), &mut db, flags, std::ptr::null()) };
        let raw = Raw(db);
        if rc != ffi::SQLITE_OK {
            bail!("opening {}: {}", path.display(), raw.error());
        }
        // A busy server holds locks for milliseconds: wait, do not fail.
        // SAFETY: a valid handle.
        unsafe { ffi::sqlite3_busy_timeout(raw.0, 5_000) };
        Ok(raw)
    }

    fn error(&self) -> String {
        if self.0.is_null() {
            return "out of memory".into();
        }
        // SAFETY: a valid handle; the message is copied before any other call.
        unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.0)) }
            .to_string_lossy()
            .into_owned()
    }

    /// Runs statements that return nothing.
    #[cfg(test)]
    fn exec(&self, sql: &str) -> anyhow::Result<()> {
        let c = CString::new(sql)?;
        // SAFETY: valid handle and statement text; no callback.
        let rc = unsafe {
            ffi::sqlite3_exec(
                self.0,
                c.as_ptr(),
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        anyhow::ensure!(rc == ffi::SQLITE_OK, "{sql}: {}", self.error());
        Ok(())
    }

    /// Runs `sql` and returns the first column of the first row.
    fn query_text(&self, sql: &str) -> anyhow::Result<String> {
        let c = CString::new(sql)?;
        let mut stmt = std::ptr::null_mut();
        // SAFETY: valid handle and statement text; the statement is finalized below.
        unsafe {
            if ffi::sqlite3_prepare_v2(self.0, c.as_ptr(), -1, &mut stmt, std::ptr::null_mut())
                != ffi::SQLITE_OK
            {
                bail!("{sql}: {}", self.error());
            }
            let out = match ffi::sqlite3_step(stmt) {
                ffi::SQLITE_ROW => {
                    let p = ffi::sqlite3_column_text(stmt, 0);
                    if p.is_null() {
                        String::new()
                    } else {
                        CStr::from_ptr(p as *const _).to_string_lossy().into_owned()
                    }
                }
                ffi::SQLITE_DONE => String::new(),
                _ => {
                    let e = self.error();
                    ffi::sqlite3_finalize(stmt);
                    bail!("{sql}: {e}");
                }
            };
            ffi::sqlite3_finalize(stmt);
            Ok(out)
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: closes the handle once; null is a no-op.
        unsafe { ffi::sqlite3_close(self.0) };
    }
}

/// Copies `from` into `to` with the backup API; `label` names the
/// progress. Returns the pages copied and how often a write restarted it.
fn copy_pages(from: &Raw, to: &Raw, label: &str) -> anyhow::Result<(u64, u32)> {
    let main = CString::new("main")?;
    // SAFETY: both handles are valid and outlive the backup object, which
    // is finished on every path below.
    let b = unsafe { ffi::sqlite3_backup_init(to.0, main.as_ptr(), from.0, main.as_ptr()) };
    if b.is_null() {
        bail!("starting the {label}: {}", to.error());
    }
    let mut progress: Option<Progress> = None;
    let (mut restarts, mut best, mut whole) = (0u32, i32::MAX, false);
    let result = loop {
        let step = if whole { -1 } else { STEP_PAGES };
        // SAFETY: `b` is a live backup object.
        let (rc, remaining, total) = unsafe {
            let rc = ffi::sqlite3_backup_step(b, step);
            (
                rc,
                ffi::sqlite3_backup_remaining(b),
                ffi::sqlite3_backup_pagecount(b),
            )
        };
        // Created once the page count is known (after the first step); its
        // first figure comes with the next step, so the rate is a real one.
        let first = progress.is_none();
        let p = progress.get_or_insert_with(|| Progress::new(label, "pages", total.max(0) as u64));
        if remaining > best {
            // The source changed under us: SQLite started over.
            restarts += 1;
            if restarts >= MAX_RESTARTS && !whole {
                whole = true;
                p.note("the database is being written: copying the rest in one step");
            }
        }
        best = best.min(remaining);
        if !first || rc == ffi::SQLITE_DONE {
            p.set((total - remaining).max(0) as u64);
        }
        match rc {
            ffi::SQLITE_DONE => break Ok((total.max(0) as u64, restarts)),
            ffi::SQLITE_OK => {}
            ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED => std::thread::sleep(Duration::from_millis(20)),
            _ => break Err(anyhow::anyhow!("{label}: {}", to.error())),
        }
    };
    // SAFETY: finishes the live backup object exactly once.
    let rc = unsafe { ffi::sqlite3_backup_finish(b) };
    let pages = result?;
    if rc != ffi::SQLITE_OK {
        bail!("{label}: {}", to.error());
    }
    Ok(pages)
}

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

fn sqlite_backup(source: &Path, out: &Path) -> anyhow::Result<Summary> {
    anyhow::ensure!(source.is_file(), "no database file at {}", source.display());
    let tmp = partial_path(out);
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let from = Raw::open(source, ffi::SQLITE_OPEN_READWRITE)?;
        let to = Raw::open(&tmp, ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE)?;
        let (pages, restarts) = copy_pages(&from, &to, "backup")?;
        // A self-contained file: no WAL beside it, checked before use.
        to.query_text("PRAGMA journal_mode=DELETE")?;
        let check = to.query_text("PRAGMA quick_check")?;
        anyhow::ensure!(check == "ok", "the copy does not check out: {check}");
        let changes = to.query_text("SELECT count(*) FROM doc_changes")?;
        let tickets = to.query_text("SELECT count(*) FROM tickets")?;
        let again = if restarts > 0 {
            format!(" (restarted {restarts}× by the server's writes)")
        } else {
            String::new()
        };
        Ok::<_, anyhow::Error>(format!(
            "{pages} pages, {changes} stored changes, {tickets} tickets{again}"
        ))
    })();
    match result {
        Ok(detail) => {
            sync_file(&tmp)?;
            std::fs::rename(&tmp, out)
                .with_context(|| format!("moving the backup into place at {}", out.display()))?;
            Ok(Summary {
                bytes: std::fs::metadata(out)?.len(),
                detail,
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn sync_file(path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", path.display()))
}

fn sqlite_restore(input: &Path, target: &Path) -> anyhow::Result<Summary> {
    if target.exists() {
        let existing = Raw::open(target, ffi::SQLITE_OPEN_READONLY)?;
        let tables = existing.query_text(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )?;
        anyhow::ensure!(
            tables == "0",
            "{} already holds a database ({tables} tables): restore only into a new or empty one",
            target.display()
        );
    }
    let from = Raw::open(input, ffi::SQLITE_OPEN_READONLY)?;
    let check = from.query_text("PRAGMA quick_check")?;
    anyhow::ensure!(
        check == "ok",
        "{} does not check out: {check}",
        input.display()
    );
    let to = Raw::open(target, ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE)?;
    let (pages, _) = copy_pages(&from, &to, "restore")?;
    let changes = to.query_text("SELECT count(*) FROM doc_changes")?;
    drop(to);
    Ok(Summary {
        bytes: std::fs::metadata(target)?.len(),
        detail: format!("{pages} pages, {changes} stored changes"),
    })
}

// -------------------------------------------------------------- PostgreSQL

/// Runs a PostgreSQL client tool; its `--verbose` per-table lines are the
/// progress (on stderr, like every long job's).
fn run_pg_tool(tool: &str, args: &[&str], label: &str) -> anyhow::Result<u64> {
    let mut child = Command::new(tool)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {tool} (install the PostgreSQL client tools)"))?;
    let started = std::time::Instant::now();
    let mut tables = 0u64;
    let mut errors = Vec::new();
    for line in BufReader::new(child.stderr.take().expect("piped")).lines() {
        let line = line.unwrap_or_default();
        if line.contains("error") {
            errors.push(line.clone());
        }
        if line.contains("dumping contents of table") || line.contains("processing data for table")
        {
            tables += 1;
            let what = line.trim_start_matches(&format!("{tool}: "));
            eprintln!(
                "{label}: table {tables}: {what} ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{tool} failed ({status}): {}", errors.join("; "));
    }
    eprintln!(
        "{label}: done, {tables} tables in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(tables)
}

fn pg_dump(url: &str, out: &Path) -> anyhow::Result<Summary> {
    let tmp = partial_path(out);
    let _ = std::fs::remove_file(&tmp);
    let file = tmp.to_string_lossy().into_owned();
    let result = run_pg_tool(
        "pg_dump",
        &[
            "--format=custom",
            "--no-owner",
            "--no-privileges",
            "--verbose",
            "--file",
            &file,
            "--dbname",
            url,
        ],
        "backup",
    );
    match result {
        Ok(tables) => {
            sync_file(&tmp)?;
            std::fs::rename(&tmp, out)?;
            Ok(Summary {
                bytes: std::fs::metadata(out)?.len(),
                detail: format!("{tables} tables (pg_dump, one snapshot)"),
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn pg_restore(input: &Path, url: &str) -> anyhow::Result<Summary> {
    let mut conn = crate::db::DbTarget::parse(url).establish()?;
    let tables: i64 = {
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let q = "SELECT count(*) AS n FROM information_schema.tables \
                 WHERE table_schema = current_schema()";
        match &mut conn {
            crate::db::DbConn::Postgres(c) => diesel::sql_query(q).get_result::<N>(c)?.n,
            crate::db::DbConn::Sqlite(_) => unreachable!("a PostgreSQL URL"),
        }
    };
    drop(conn);
    anyhow::ensure!(
        tables == 0,
        "the database already holds {tables} tables: restore only into a new or empty one"
    );
    let file = input.to_string_lossy().into_owned();
    let steps = run_pg_tool(
        "pg_restore",
        &[
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            "--verbose",
            "--dbname",
            url,
            &file,
        ],
        "restore",
    )?;
    Ok(Summary {
        bytes: std::fs::metadata(input)?.len(),
        detail: format!("{steps} tables restored (pg_restore, one transaction)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database larger than one step, written to all along: the backup
    /// restarts, then finishes in one step, and the copy checks out with
    /// every row committed before it began.
    #[test]
    fn a_database_written_during_the_backup_is_copied_whole() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.db");
        let db = Raw::open(&src, ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE).unwrap();
        db.exec(
            "PRAGMA journal_mode=WAL; CREATE TABLE doc_changes(x BLOB); CREATE TABLE tickets(y)",
        )
        .unwrap();
        db.exec(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
             INSERT INTO doc_changes SELECT randomblob(4000) FROM n",
        )
        .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = std::thread::spawn({
            let (src, stop) = (src.clone(), stop.clone());
            move || {
                let w = Raw::open(&src, ffi::SQLITE_OPEN_READWRITE).unwrap();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    w.exec("INSERT INTO doc_changes VALUES (randomblob(100))")
                        .unwrap();
                    n += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                n
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        let out = dir.path().join("copy.backup");
        let summary = sqlite_backup(&src, &out).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let written = writer.join().unwrap();
        eprintln!("{} ({written} rows written meanwhile)", summary.detail);
        let copy = Raw::open(&out, ffi::SQLITE_OPEN_READONLY).unwrap();
        assert_eq!(copy.query_text("PRAGMA quick_check").unwrap(), "ok");
        let rows: i64 = copy
            .query_text("SELECT count(*) FROM doc_changes")
            .unwrap()
            .parse()
            .unwrap();
        assert!(rows >= 3000, "{rows}");
        assert!(!partial_path(&out).exists());
        let err = backup(&src.to_string_lossy(), &out).unwrap_err();
        assert!(
            err.to_string().contains("exists"),
            "never overwrites: {err}"
        );
    }
}
