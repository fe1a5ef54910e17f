//! Which escalation tiers a ticket's SLA state calls for. Each tier is told
//! at most once per target (the store enforces it); this only says which
//! tiers are due now.

use super::policy::{EscalationPolicy, TierRole, Trigger};
use super::sla::{Milestone, SlaState, TargetState, TicketSla};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    pub milestone: Milestone,
    pub tier: TierRole,
    pub state: SlaState,
}

pub fn due(policy: &EscalationPolicy, sla: &TicketSla) -> Vec<Due> {
    due_targets(policy, &[&sla.respond, &sla.resolve])
}

/// The tiers due for any set of targets (a complaint has three).
pub fn due_targets(policy: &EscalationPolicy, targets: &[&TargetState]) -> Vec<Due> {
    let mut out = Vec::new();
    for t in targets.iter().copied() {
        for tier in &policy.tiers {
            if is_due(tier.when, tier.overdue_share, t) {
                out.push(Due {
                    milestone: t.milestone,
                    tier: tier.notify,
                    state: t.state,
                });
            }
        }
    }
    out
}

fn is_due(when: Trigger, overdue_share: f64, t: &TargetState) -> bool {
    match (when, t.state) {
        (Trigger::AtRisk, SlaState::AtRisk | SlaState::Breached) => true,
        (Trigger::Breached, SlaState::Breached) => {
            -t.remaining_minutes as f64 >= overdue_share * t.target_minutes as f64
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::policy::Policy;

    fn target(milestone: Milestone, state: SlaState, remaining: i64) -> TargetState {
        TargetState {
            milestone,
            state,
            target_minutes: 120,
            elapsed_minutes: 120 - remaining,
            remaining_minutes: remaining,
            due_at: None,
            met_at: None,
        }
    }

    /// Default tiers: technician when at risk, supervisor at the breach,
    /// manager once half the target again has passed (2 h target: 60 min).
    #[test]
    fn default_tiers_on_a_respond_target_of_two_hours() {
        let p = Policy::default().escalation;
        let sla = |state, remaining| TicketSla {
            priority: "A".into(),
            respond: target(Milestone::Respond, state, remaining),
            resolve: target(Milestone::Resolve, SlaState::OnTime, 2000),
        };
        let tiers = |state, remaining| -> Vec<TierRole> {
            due(&p, &sla(state, remaining))
                .iter()
                .map(|d| d.tier)
                .collect()
        };
        assert_eq!(tiers(SlaState::OnTime, 31), vec![]);
        assert_eq!(tiers(SlaState::AtRisk, 29), vec![TierRole::Technician]);
        assert_eq!(
            tiers(SlaState::Breached, -1),
            vec![TierRole::Technician, TierRole::Supervisor]
        );
        assert_eq!(
            tiers(SlaState::Breached, -59),
            vec![TierRole::Technician, TierRole::Supervisor]
        );
        assert_eq!(
            tiers(SlaState::Breached, -60),
            vec![
                TierRole::Technician,
                TierRole::Supervisor,
                TierRole::Manager
            ]
        );
        // Met (even late) no longer escalates.
        assert_eq!(tiers(SlaState::MetLate, -100), vec![]);
        assert!(due(&p, &sla(SlaState::Breached, -60))
            .iter()
            .all(|d| d.milestone == Milestone::Respond));
    }
}
