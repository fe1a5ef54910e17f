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

/// The record is no longer at the version the writer expected (412).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the record changed since you read it (it is at version {current} now): read it again and redo your change")]
pub struct Stale {
    pub current: i64,
}

/// Checks `expect` (None: no precondition) against the version just read.
pub fn check(expect: Option<&Expect>, current: i64) -> Result<(), Stale> {
    match expect {
        Some(e) if !e.allows(current) => Err(Stale { current }),
        _ => Ok(()),
    }
}

/// After `UPDATE … WHERE version = read`: zero rows means another writer
/// got in between.
pub fn updated(rows: usize, read: i64) -> Result<(), Stale> {
    if rows == 0 {
        Err(Stale { current: read + 1 })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preconditions() {
        assert!(check(None, 7).is_ok());
        assert!(check(Some(&Expect::Any), 7).is_ok());
        assert!(check(Some(&Expect::OneOf(vec![6, 7])), 7).is_ok());
        assert_eq!(
            check(Some(&Expect::OneOf(vec![6])), 7),
            Err(Stale { current: 7 })
        );
        assert!(check(Some(&Expect::OneOf(vec![])), 1).is_err());
        assert!(updated(1, 3).is_ok());
        assert_eq!(updated(0, 3), Err(Stale { current: 4 }));
    }
}
