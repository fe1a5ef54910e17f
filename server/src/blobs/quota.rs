//! Per-user upload quota: bytes a user newly stored in the last 24 hours
//! (issue 10 item 13).
//!
//! Why a daily volume rather than bytes held: referenced attachments are kept
//! for years (service records), so a cap on bytes held would in time lock out
//! the busiest honest technician, while a day's volume bounds how fast anyone
//! can fill the disk; `fieldsync blobs gc` removes what no ticket references.
//! Re-sending a blob that is stored already costs nothing (it stores nothing).
//! Concurrent uploads of one user are checked independently, so the quota
//! can be exceeded by at most (parallel uploads − 1) × `--max-blob-bytes`.

use diesel::prelude::*;

use crate::db::schema::blob_uploads as bu;
use crate::db::{on_conn, DbConn, DbError};

pub const WINDOW_MS: i64 = 24 * 3600 * 1000;

/// What the user stored within the window ending `now` (milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub used: u64,
    /// When the oldest counted upload leaves the window.
    pub frees_at: Option<i64>,
}

pub fn usage(c: &mut DbConn, user_id: &str, now: i64) -> Result<Usage, DbError> {
    let rows: Vec<(i64, i64)> = on_conn!(c, |c| bu::table
        .filter(bu::user_id.eq(user_id))
        .filter(bu::uploaded_at.gt(now - WINDOW_MS))
        .filter(bu::bytes.gt(0))
        .select((bu::bytes, bu::uploaded_at))
        .load(c))?;
    Ok(Usage {
        used: rows.iter().map(|&(b, _)| b.max(0) as u64).sum(),
        frees_at: rows.iter().map(|&(_, at)| at + WINDOW_MS).min(),
    })
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "upload quota reached: you stored {used} of {quota} bytes in the last 24 hours \
     and this blob has {adding}; uploads already stored cost nothing"
)]
pub struct Exceeded {
    pub used: u64,
    pub adding: u64,
    pub quota: u64,
    /// Seconds until part of the quota frees up.
    pub retry_after_secs: u32,
}

/// Whether storing `adding` more bytes fits `quota` (0: unlimited).
pub fn check(quota: u64, usage: Usage, adding: u64, now: i64) -> Result<(), Exceeded> {
    if quota == 0 || usage.used.saturating_add(adding) <= quota {
        return Ok(());
    }
    let wait_ms = usage.frees_at.map_or(WINDOW_MS, |at| at - now);
    Err(Exceeded {
        used: usage.used,
        adding,
        quota,
        retry_after_secs: (wait_ms / 1000).clamp(1, WINDOW_MS / 1000) as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_counts_bytes_and_says_when_it_frees_up() {
        let now = 10 * WINDOW_MS;
        let used = Usage {
            used: 600,
            frees_at: Some(now + 90_000),
        };
        assert_eq!(check(0, used, u64::MAX, now), Ok(()), "0 is unlimited");
        assert_eq!(check(1000, used, 400, now), Ok(()), "exactly full fits");
        let e = check(1000, used, 401, now).unwrap_err();
        assert_eq!((e.used, e.adding, e.quota), (600, 401, 1000));
        assert_eq!(e.retry_after_secs, 90);
        let nothing = Usage {
            used: 0,
            frees_at: None,
        };
        assert_eq!(
            check(1000, nothing, 1001, now)
                .unwrap_err()
                .retry_after_secs,
            24 * 3600
        );
    }
}
