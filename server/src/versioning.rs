//! Optimistic concurrency for reference records (customers, sites, assets,
//! parts, users): each row has a `version` that every update bumps. The API
//! sends it as a strong ETag (`"3"`) and takes `If-Match` on writes; an
//! update whose precondition names an older version is refused, so two
//! clerks editing the same customer cannot silently overwrite each other.
//!
//! Updates check and write in one step: the row's version is read, the
//! precondition checked against it, and the UPDATE is conditional on that
//! version (`WHERE version = v`), so a concurrent writer between the read
//! and the write also ends in `Stale`, on both backends, without locks.
//! Without a precondition the UPDATE is not conditional (`version =
//! version + 1` only): a client that sent no If-Match never gets a 412.

/// What an `If-Match` header asks of the current version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// `If-Match: *`: any current version (the record must exist).
    Any,
    /// One of these versions. Weak or foreign tags match none (RFC 9110
    /// compares If-Match strongly), so the list can be empty.
    OneOf(Vec<i64>),
}

impl Expect {
    pub fn allows(&self, current: i64) -> bool {
        match self {
            Expect::Any => true,
            Expect::OneOf(v) => v.contains(&current),
        }
    }
}

/// Why a conditional write was refused (412).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    /// The record is at another version than the one named.
    #[error("the record changed since you read it (it is at version {current} now): read it again and redo your change")]
    Moved { current: i64 },
    /// Another writer changed it between our read and our write.
    #[error(
        "the record changed while this change was being made: read it again and redo your change"
    )]
    Raced,
    /// `If-Match` on a record that does not exist (a `PUT` that would
    /// create it): there is no version it could match.
    #[error("there is no such record, so `If-Match` cannot hold; send the request without it to create one")]
    Missing,
}

/// Checks `expect` (None: no precondition) against the version just read,
/// and returns the version the UPDATE must still find (`WHERE version =`),
/// or None for an unconditional write (the last writer wins).
pub fn guard(expect: Option<&Expect>, current: i64) -> Result<Option<i64>, Stale> {
    match expect {
        None => Ok(None),
        Some(e) if e.allows(current) => Ok(Some(current)),
        Some(_) => Err(Stale::Moved { current }),
    }
}

/// After the UPDATE: a guarded one that touched no row lost a race.
pub fn updated(rows: usize, guard: Option<i64>) -> Result<(), Stale> {
    if rows == 0 && guard.is_some() {
        Err(Stale::Raced)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preconditions() {
        assert_eq!(guard(None, 7), Ok(None), "no If-Match: unconditional");
        assert_eq!(guard(Some(&Expect::Any), 7), Ok(Some(7)));
        assert_eq!(guard(Some(&Expect::OneOf(vec![6, 7])), 7), Ok(Some(7)));
        assert_eq!(
            guard(Some(&Expect::OneOf(vec![6])), 7),
            Err(Stale::Moved { current: 7 })
        );
        assert!(guard(Some(&Expect::OneOf(vec![])), 1).is_err());
        assert!(updated(1, Some(3)).is_ok());
        assert!(updated(0, None).is_ok(), "unconditional: not a race");
        assert_eq!(updated(0, Some(3)), Err(Stale::Raced));
    }
}
