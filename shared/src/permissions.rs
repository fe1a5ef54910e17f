//! Who may write which part of a ticket document: the role × field-group
//! table of DESIGN.md, in one place (status changes defer to `crate::status`). The server enforces it on every incoming
//! change (server/src/sync/validation.rs); apps may use it to grey out fields.

use crate::roles::Role;

/// Top-level keys of the ticket document, grouped as in DESIGN.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldGroup {
    /// schema, ticket_no, customer, site, asset, fault, priority
    Intake,
    /// assignment, appointment
    Dispatch,
    Status,
    /// visits, parts_used, checklist, notes, attachments
    Work,
    Signoff,
    /// The customer's feedback: evidence, given once (on site, or by the
    /// customer through the survey link, which the server writes).
    Survey,
    Reconciliation,
    /// status_history: written only by the server (who changed the status
    /// and when is evidence; a device must not be able to forge it).
    ServerRecord,
    /// Any key the schema does not define.
    Unknown,
}

pub fn group_of(key: &str) -> FieldGroup {
    match key {
        "schema" | "ticket_no" | "customer" | "site" | "asset" | "fault" | "priority" => {
            FieldGroup::Intake
        }
        "assignment" | "appointment" => FieldGroup::Dispatch,
        "status" => FieldGroup::Status,
        "visits" | "parts_used" | "checklist" | "notes" | "attachments" => FieldGroup::Work,
        "signoff" => FieldGroup::Signoff,
        "survey" => FieldGroup::Survey,
        "reconciliation" => FieldGroup::Reconciliation,
        // `_forwards`: where the server carried restored objects (sync::integrity).
        "status_history" | "_forwards" => FieldGroup::ServerRecord,
        _ => FieldGroup::Unknown,
    }
}

/// Roles that create tickets (over REST, or as new documents through sync).
pub fn may_create_tickets(role: Role) -> bool {
    matches!(role, Role::Dispatcher | Role::Admin)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteRule {
    Allowed,
    Denied,
    /// Allowed if the status machine lets this role get from the old status
    /// to the new one (`status::may_reach`).
    StatusMachine,
    /// Allowed only while the field does not exist yet.
    Once,
}

pub fn write_rule(role: Role, group: FieldGroup) -> WriteRule {
    use FieldGroup::*;
    use WriteRule::*;
    match (role, group) {
        (_, ServerRecord) => Denied,
        (Role::Admin, _) => Allowed,
        (Role::Technician, Work) => Allowed,
        (_, Status) => StatusMachine,
        (Role::Technician, Signoff) => Once,
        // Recorded on site (or by phone in the office) when there is none
        // yet; never changed or removed afterwards.
        (Role::Technician | Role::Dispatcher, Survey) => Once,
        (Role::Technician, _) => Denied,
        (Role::Dispatcher, Intake | Dispatch | Work | Unknown) => Allowed,
        (Role::Dispatcher, Signoff | Reconciliation) => Denied,
        (Role::BackOffice, Reconciliation) => Allowed,
        (Role::BackOffice, _) => Denied,
        // Supervisors and managers read and report; they do not edit tickets.
        (Role::Supervisor | Role::Manager, _) => Denied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_design_table() {
        use FieldGroup::*;
        use WriteRule::*;
        let t = |r, g| write_rule(r, g);
        // customer, site, asset, fault, priority | assignment, appointment
        for g in [Intake, Dispatch] {
            assert_eq!(
                [
                    t(Role::Technician, g),
                    t(Role::Dispatcher, g),
                    t(Role::BackOffice, g),
                    t(Role::Admin, g)
                ],
                [Denied, Allowed, Denied, Allowed]
            );
        }
        // status: field transitions / all but reconciled / reconciled, disputed
        // — who may make which transition lives in the status machine.
        for r in [
            Role::Technician,
            Role::Dispatcher,
            Role::BackOffice,
            Role::Supervisor,
            Role::Manager,
        ] {
            assert_eq!(t(r, Status), StatusMachine);
        }
        assert_eq!(t(Role::Admin, Status), Allowed);
        // visits, parts_used, checklist, notes, attachments
        assert_eq!(
            [
                t(Role::Technician, Work),
                t(Role::Dispatcher, Work),
                t(Role::BackOffice, Work),
                t(Role::Admin, Work)
            ],
            [Allowed, Allowed, Denied, Allowed]
        );
        // signoff
        assert_eq!(
            [
                t(Role::Technician, Signoff),
                t(Role::Dispatcher, Signoff),
                t(Role::BackOffice, Signoff),
                t(Role::Admin, Signoff)
            ],
            [Once, Denied, Denied, Allowed]
        );
        // reconciliation
        assert_eq!(
            [
                t(Role::Technician, Reconciliation),
                t(Role::Dispatcher, Reconciliation),
                t(Role::BackOffice, Reconciliation),
                t(Role::Admin, Reconciliation)
            ],
            [Denied, Denied, Allowed, Allowed]
        );
        // survey: once, on site or in the office; never rewritten
        assert_eq!(
            [
                t(Role::Technician, Survey),
                t(Role::Dispatcher, Survey),
                t(Role::BackOffice, Survey),
                t(Role::Admin, Survey)
            ],
            [Once, Once, Denied, Allowed]
        );
        assert_eq!(group_of("survey"), Survey);
        assert_eq!(group_of("parts_used"), Work);
        for r in [
            Role::Technician,
            Role::Dispatcher,
            Role::BackOffice,
            Role::Admin,
        ] {
            assert_eq!(t(r, ServerRecord), Denied, "{r:?}");
        }
        assert_eq!(group_of("whatever"), Unknown);
    }
}
