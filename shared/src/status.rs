//! The ticket status machine (DESIGN.md): which transitions exist, who may
//! make each, and how concurrent offline transitions resolve. Pure rules; the
//! server and the apps both ask this module.
//!
//! ```text
//! new → assigned → en_route → on_site ⇄ paused → completed → signed_off → reconciled
//!                                                        ↘ disputed ↗
//! cancelled and reopened: dispatcher decisions; reopened → assigned
//! ```

use std::fmt;
use std::str::FromStr;

use crate::roles::Role;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    New,
    Assigned,
    EnRoute,
    OnSite,
    Paused,
    Completed,
    SignedOff,
    Disputed,
    Reconciled,
    Cancelled,
    Reopened,
}

impl Status {
    pub const ALL: [Status; 11] = [
        Status::New,
        Status::Assigned,
        Status::EnRoute,
        Status::OnSite,
        Status::Paused,
        Status::Completed,
        Status::SignedOff,
        Status::Disputed,
        Status::Reconciled,
        Status::Cancelled,
        Status::Reopened,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Assigned => "assigned",
            Status::EnRoute => "en_route",
            Status::OnSite => "on_site",
            Status::Paused => "paused",
            Status::Completed => "completed",
            Status::SignedOff => "signed_off",
            Status::Disputed => "disputed",
            Status::Reconciled => "reconciled",
            Status::Cancelled => "cancelled",
            Status::Reopened => "reopened",
        }
    }

    /// Position in the lifecycle, for resolving concurrent transitions.
    /// Dispatcher decisions (cancelled, reopened) rank above field progress.
    fn rank(self) -> u8 {
        match self {
            Status::New => 0,
            Status::Assigned => 1,
            Status::EnRoute => 2,
            Status::Paused => 3,
            Status::OnSite => 4,
            Status::Completed => 5,
            Status::SignedOff => 6,
            Status::Disputed => 7,
            Status::Reconciled => 8,
            Status::Reopened => 9,
            Status::Cancelled => 10,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown status `{0}`")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

use Role::{Admin, BackOffice, Dispatcher, Technician};
use Status::*;

/// Every transition and the roles that may make it (admins may make any).
const TRANSITIONS: &[(Status, Status, &[Role])] = &[
    (New, Assigned, &[Dispatcher]),
    (New, Cancelled, &[Dispatcher]),
    (Assigned, EnRoute, &[Technician]),
    (Assigned, Cancelled, &[Dispatcher]),
    (EnRoute, OnSite, &[Technician]),
    (EnRoute, Assigned, &[Technician, Dispatcher]),
    (OnSite, Paused, &[Technician]),
    (Paused, OnSite, &[Technician]),
    (OnSite, Completed, &[Technician]),
    (Paused, Cancelled, &[Dispatcher]),
    (Completed, SignedOff, &[Technician]),
    (Completed, Reopened, &[Dispatcher]),
    (SignedOff, Reconciled, &[BackOffice]),
    (SignedOff, Disputed, &[BackOffice]),
    (SignedOff, Reopened, &[Dispatcher]),
    (Disputed, Reconciled, &[BackOffice]),
    (Disputed, Reopened, &[Dispatcher]),
    (Cancelled, Reopened, &[Dispatcher]),
    (Reopened, Assigned, &[Dispatcher]),
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransitionError {
    #[error("there is no transition from {0} to {1}")]
    NoSuchTransition(Status, Status),
    #[error("a {role} may not move a ticket from {from} to {to}")]
    NotAllowed {
        role: Role,
        from: Status,
        to: Status,
    },
}

/// Checks one transition by one role.
/// The reconciliation lock (issue 11 §1): a reconciled ticket takes no
/// more edits, from a device or the API, except an admin's.
pub fn locked_for(role: Role, status: &str) -> bool {
    status == Status::Reconciled.as_str() && role != Role::Admin
}

pub fn check_transition(role: Role, from: Status, to: Status) -> Result<(), TransitionError> {
    let Some((_, _, roles)) = TRANSITIONS.iter().find(|(f, t, _)| *f == from && *t == to) else {
        if role == Admin && from != to {
            return Ok(()); // admins repair tickets by hand
        }
        return Err(TransitionError::NoSuchTransition(from, to));
    };
    if role == Admin || roles.contains(&role) {
        Ok(())
    } else {
        Err(TransitionError::NotAllowed { role, from, to })
    }
}

/// Whether `role` may take a ticket from `from` to `to` in one or more steps
/// (an offline device may go assigned → en_route → on_site → completed before
/// it syncs; the server only sees the first and the last status). `from` is
/// `None` for a ticket being created.
pub fn may_reach(role: Role, from: Option<Status>, to: Status) -> bool {
    let Some(from) = from else {
        return to == New && matches!(role, Dispatcher | Admin);
    };
    if from == to || role == Admin {
        return true;
    }
    let mut seen = vec![from];
    let mut frontier = vec![from];
    while let Some(s) = frontier.pop() {
        for (f, t, roles) in TRANSITIONS {
            if *f == s && roles.contains(&role) && !seen.contains(t) {
                if *t == to {
                    return true;
                }
                seen.push(*t);
                frontier.push(*t);
            }
        }
    }
    false
}

/// The rule for concurrent offline transitions: when two devices set the
/// status concurrently (an Automerge conflict on `status`), the state furthest
/// along the lifecycle wins, and dispatcher decisions (`reopened`,
/// `cancelled`) win over field progress. The result depends only on the set
/// of candidates, never on which device synced first, so every replica and
/// every server instance picks the same one.
pub fn resolve_concurrent(candidates: &[Status]) -> Option<Status> {
    candidates.iter().copied().max_by_key(|s| s.rank())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_happy_path_by_the_right_roles() {
        let path = [
            (New, Assigned, Dispatcher),
            (Assigned, EnRoute, Technician),
            (EnRoute, OnSite, Technician),
            (OnSite, Paused, Technician),
            (Paused, OnSite, Technician),
            (OnSite, Completed, Technician),
            (Completed, SignedOff, Technician),
            (SignedOff, Reconciled, BackOffice),
        ];
        for (from, to, role) in path {
            assert_eq!(
                check_transition(role, from, to),
                Ok(()),
                "{role} {from}→{to}"
            );
        }
    }

    #[test]
    fn wrong_roles_and_missing_transitions_are_refused() {
        assert_eq!(
            check_transition(Technician, SignedOff, Reconciled),
            Err(TransitionError::NotAllowed {
                role: Technician,
                from: SignedOff,
                to: Reconciled
            })
        );
        assert!(
            check_transition(Dispatcher, SignedOff, Reconciled).is_err(),
            "dispatchers: all but reconciled"
        );
        assert_eq!(
            check_transition(Technician, New, Completed),
            Err(TransitionError::NoSuchTransition(New, Completed))
        );
        assert!(check_transition(Role::Manager, New, Assigned).is_err());
        assert_eq!(check_transition(Admin, Reconciled, Reopened), Ok(()));
        assert!(check_transition(Admin, New, New).is_err());
    }

    #[test]
    fn every_status_is_reachable_and_names_round_trip() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
            if s != New {
                assert!(
                    TRANSITIONS.iter().any(|(_, t, _)| *t == s),
                    "{s} unreachable"
                );
            }
        }
    }

    #[test]
    fn offline_devices_may_batch_several_transitions() {
        assert!(may_reach(Technician, Some(Assigned), Completed));
        assert!(may_reach(Technician, Some(Assigned), SignedOff));
        assert!(!may_reach(Technician, Some(Assigned), Reconciled));
        assert!(
            !may_reach(Technician, Some(New), EnRoute),
            "assigning is the dispatcher's step"
        );
        assert!(
            may_reach(Dispatcher, Some(Cancelled), Assigned),
            "reopen, then assign"
        );
        assert!(!may_reach(Dispatcher, Some(SignedOff), Reconciled));
        assert!(may_reach(BackOffice, Some(SignedOff), Reconciled));
        assert!(may_reach(Dispatcher, None, New) && !may_reach(Technician, None, New));
        assert!(
            may_reach(Role::Manager, Some(OnSite), OnSite),
            "no change is always fine"
        );
        assert!(!may_reach(Role::Manager, Some(OnSite), Completed));
    }

    #[test]
    fn concurrent_transitions_resolve_the_same_way_in_any_order() {
        assert_eq!(resolve_concurrent(&[OnSite, Completed]), Some(Completed));
        assert_eq!(resolve_concurrent(&[Completed, OnSite]), Some(Completed));
        assert_eq!(resolve_concurrent(&[Paused, OnSite]), Some(OnSite));
        assert_eq!(resolve_concurrent(&[Completed, Cancelled]), Some(Cancelled));
        assert_eq!(resolve_concurrent(&[]), None);
        // Order-independence over every pair.
        for a in Status::ALL {
            for b in Status::ALL {
                assert_eq!(resolve_concurrent(&[a, b]), resolve_concurrent(&[b, a]));
            }
        }
    }
}
