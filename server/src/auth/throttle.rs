//! Failed logins per (username, client address), in the database so every
//! instance sees the same counts.
//!
//! An attempt is counted *before* its password is checked, by one
//! conditional update: concurrent attempts can never get more than
//! `MAX_FAILURES` checks between them. A success forgets the row; the attempt
//! that makes the count reach the limit locks that address out of that
//! account for `lockout(n)`, doubling with each repeated lockout. Keyed by
//! address, a guesser elsewhere never locks the owner out of their own login.

use diesel::prelude::*;

use crate::db::schema::login_throttle as lt;
use crate::db::{now_millis, on_conn, DbConn, DbError};

/// Password checks allowed per (username, address) before a lockout.
pub const MAX_FAILURES: i64 = 5;
/// Failures older than this (with no lockout running) are forgotten.
pub const FAILURE_WINDOW_MS: i64 = 15 * 60 * 1000;
/// The first lockout; each further one doubles, up to `MAX_LOCKOUT_MS`.
pub const FIRST_LOCKOUT_MS: i64 = 60 * 1000;
pub const MAX_LOCKOUT_MS: i64 = 60 * 60 * 1000;
/// Rows untouched this long are deleted (`prune`): the lockout count resets.
pub const FORGET_AFTER_MS: i64 = 24 * 3600 * 1000;

/// How long the `n`-th consecutive lockout (from 0) lasts.
pub fn lockout_ms(n: i64) -> i64 {
    FIRST_LOCKOUT_MS
        .saturating_mul(1i64 << n.clamp(0, 20))
        .min(MAX_LOCKOUT_MS)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// This attempt may check the password; it is the `nth` of the window.
    Granted { nth: i64 },
    /// Refused without a check; try again after this many seconds.
    Locked { retry_after_secs: u32 },
}

fn key<'a>(
    username: &'a str,
    client: &'a str,
) -> diesel::dsl::And<diesel::dsl::Eq<lt::username, &'a str>, diesel::dsl::Eq<lt::client, &'a str>>
{
    lt::username.eq(username).and(lt::client.eq(client))
}

/// Counts an attempt up front, atomically; see the module comment.
pub fn claim(conn: &mut DbConn, username: &str, client: &str) -> Result<Claim, DbError> {
    let now = now_millis();
    on_conn!(conn, |c| {
        diesel::insert_into(lt::table)
            .values((
                lt::username.eq(username),
                lt::client.eq(client),
                lt::failures.eq(0),
                lt::lockouts.eq(0),
                lt::locked_until.eq(0),
                lt::updated_at.eq(now),
            ))
            .on_conflict_do_nothing()
            .execute(c)?;
        diesel::update(lt::table.filter(key(username, client)))
            .filter(lt::locked_until.le(now))
            .filter(lt::updated_at.lt(now - FAILURE_WINDOW_MS))
            .set(lt::failures.eq(0))
            .execute(c)?;
        let granted: Option<i64> = diesel::update(lt::table.filter(key(username, client)))
            .filter(lt::failures.lt(MAX_FAILURES))
            .filter(lt::locked_until.le(now))
            .set((lt::failures.eq(lt::failures + 1), lt::updated_at.eq(now)))
            .returning(lt::failures)
            .get_result(c)
            .optional()?;
        if let Some(nth) = granted {
            return Ok(Claim::Granted { nth });
        }
        let until: i64 = lt::table
            .filter(key(username, client))
            .select(lt::locked_until)
            .first(c)?;
        // Not locked yet means the last allowed checks are still running.
        let secs = ((until - now).max(0) + 999) / 1000;
        Ok(Claim::Locked {
            retry_after_secs: secs.clamp(1, u32::MAX as i64) as u32,
        })
    })
}

/// The password was right: forget this address's failures for the account.
pub fn succeeded(conn: &mut DbConn, username: &str, client: &str) -> Result<(), DbError> {
    on_conn!(conn, |c| diesel::delete(
        lt::table.filter(key(username, client))
    )
    .execute(c)
    .map(|_| ())
    .map_err(DbError::from))
}

/// The password was wrong on the `nth` claim. The claim that reached the
/// limit starts a lockout; returns its length in milliseconds.
pub fn failed(
    conn: &mut DbConn,
    username: &str,
    client: &str,
    nth: i64,
) -> Result<Option<i64>, DbError> {
    if nth < MAX_FAILURES {
        return Ok(None);
    }
    let now = now_millis();
    on_conn!(conn, |c| {
        let lockouts: Option<i64> = lt::table
            .filter(key(username, client))
            .select(lt::lockouts)
            .first(c)
            .optional()?;
        // Gone: a concurrent attempt from this address got the password right.
        let Some(lockouts) = lockouts else {
            return Ok(None);
        };
        let ms = lockout_ms(lockouts);
        diesel::update(lt::table.filter(key(username, client)))
            .set((
                lt::failures.eq(0),
                lt::lockouts.eq(lockouts + 1),
                lt::locked_until.eq(now + ms),
                lt::updated_at.eq(now),
            ))
            .execute(c)?;
        Ok(Some(ms))
    })
}

/// Deletes rows untouched for `FORGET_AFTER_MS` whose lockout is over, so
/// a spray of made-up usernames does not grow the table for good.
pub fn prune(conn: &mut DbConn) -> Result<usize, DbError> {
    let now = now_millis();
    on_conn!(conn, |c| diesel::delete(
        lt::table
            .filter(lt::updated_at.lt(now - FORGET_AFTER_MS))
            .filter(lt::locked_until.lt(now))
    )
    .execute(c)
    .map_err(DbError::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockouts_double_up_to_the_cap() {
        assert_eq!(lockout_ms(0), 60_000);
        assert_eq!(lockout_ms(1), 120_000);
        assert_eq!(lockout_ms(3), 480_000);
        assert_eq!(lockout_ms(6), MAX_LOCKOUT_MS);
        assert_eq!(lockout_ms(1000), MAX_LOCKOUT_MS);
    }
}
