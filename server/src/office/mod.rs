//! Office workflows that read and write the service history (DESIGN.md
//! "Where the office half goes"): back-office reconciliation and the export
//! of reconciled jobs (checks pure, in `checks`), the SLA watch with
//! escalations and their webhook, the after-the-job callbacks and customer
//! flags, complaints and the customer's survey links, the periodic KPI
//! reports. The rules come from `service`, the rows from `db`.

pub mod checks;
pub mod closed_loop;
pub mod complaints;
pub mod contacts;
pub mod escalations;
pub mod export;
pub mod policy_store;
pub mod reconciliation;
pub mod reports;
pub mod sla_watch;
pub mod surveys;
pub mod webhooks;

use fieldsync_shared::roles::Role;

/// What a user may do with reconciliation: the one place the roles are
/// decided (the API asks `may`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// The queue, a ticket's checks, exports already made.
    Read,
    /// A ticket's reconciliation state and dispute reason (the dispatcher
    /// acts on disputes).
    ReadTicket,
    /// Approve or dispute a ticket.
    Decide,
    /// Make a new export of reconciled jobs.
    Export,
    /// Say which catalogue parts need a serial number.
    Catalogue,
}

pub fn may(role: Role, act: Act) -> bool {
    use Role::*;
    match act {
        Act::Read => matches!(role, BackOffice | Admin | Supervisor | Manager),
        Act::ReadTicket => matches!(role, BackOffice | Admin | Supervisor | Manager | Dispatcher),
        Act::Decide | Act::Export | Act::Catalogue => matches!(role, BackOffice | Admin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_do_what() {
        let table = |act| {
            Role::ALL
                .into_iter()
                .filter(|r| may(*r, act))
                .collect::<Vec<_>>()
        };
        use Role::*;
        assert_eq!(table(Act::Decide), [BackOffice, Admin]);
        assert_eq!(table(Act::Export), [BackOffice, Admin]);
        assert_eq!(table(Act::Catalogue), [BackOffice, Admin]);
        assert_eq!(table(Act::Read), [BackOffice, Supervisor, Manager, Admin]);
        assert_eq!(
            table(Act::ReadTicket),
            [Dispatcher, BackOffice, Supervisor, Manager, Admin]
        );
        assert!(!may(Technician, Act::ReadTicket));
    }
}
