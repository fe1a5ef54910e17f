//! Complaints (seed 000 §5.3, seed 004): what a complaint is about, and its
//! three limits: a first response within minutes, handling started within a
//! day, a resolution within working days. Their states (on time, at risk,
//! breached, met, met late) are the ticket SLA's (`sla::target_state`), so
//! the same escalation tiers apply.
//! Pure; `office::complaints` stores and escalates.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::clock::{self, CountingClock};
use super::policy::Policy;
use super::sla::{target_state, Milestone, TargetState};

/// Seed 000 §5.3's three categories, and anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    ProductQuality,
    ServiceAttitude,
    DeliveryDelay,
    Other,
}

impl Category {
    pub const ALL: [Category; 4] = [
        Category::ProductQuality,
        Category::ServiceAttitude,
        Category::DeliveryDelay,
        Category::Other,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Category::ProductQuality => "product_quality",
            Category::ServiceAttitude => "service_attitude",
            Category::DeliveryDelay => "delivery_delay",
            Category::Other => "other",
        }
    }
}

impl FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "category `{s}` is not one of {}",
                    Category::ALL.map(|c| c.as_str()).join(", ")
                )
            })
    }
}

/// What happened to a complaint, and when.
#[derive(Clone, Copy, Debug)]
pub struct Times {
    pub received_at: DateTime<Utc>,
    pub responded_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A complaint's three targets.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ComplaintSla {
    pub respond: TargetState,
    pub start: TargetState,
    pub resolve: TargetState,
}

impl ComplaintSla {
    pub fn targets(&self) -> [&TargetState; 3] {
        [&self.respond, &self.start, &self.resolve]
    }
}

/// The complaint's three targets at `now`:
///
/// - respond: `complaints.respond_minutes` counted like ticket SLAs
///   (business hours if `sla.calendar` is set, else around the clock);
/// - start (handling started): `complaints.start_minutes`, counted the same;
/// - resolve: `complaints.resolve_working_days` full business days of the
///   working-day calendar (`Policy::working_calendar`).
///
/// A later step answers the earlier ones: starting the handling is also the
/// response, a resolution is both.
pub fn evaluate(policy: &Policy, t: &Times, now: DateTime<Utc>) -> ComplaintSla {
    let share = policy.sla.at_risk_share;
    let earliest = |a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let started = earliest(t.started_at, t.resolved_at);
    let responded = earliest(t.responded_at, started);
    let sla_clock = CountingClock::new(policy.sla.calendar.as_ref(), &[]);
    let k = &policy.complaints;
    let on_sla_clock = |m, minutes, met| {
        target_state(&sla_clock, m, t.received_at, minutes, met, None, now, share)
    };
    let respond = on_sla_clock(Milestone::Respond, k.respond_minutes, responded);
    let start = on_sla_clock(Milestone::Start, k.start_minutes, started);
    let cal = policy.working_calendar();
    let work_clock = CountingClock::new(Some(&cal), &[]);
    let resolve = target_state(
        &work_clock,
        Milestone::Resolve,
        t.received_at,
        clock::working_days(&cal, k.resolve_working_days).num_minutes(),
        t.resolved_at,
        None,
        now,
        share,
    );
    ComplaintSla {
        respond,
        start,
        resolve,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::sla::SlaState;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Worked by hand with the defaults (respond 10 min around the clock;
    /// resolve 5 working days of Mon–Fri 09:00–18:00 at UTC+8 = 45 business
    /// hours; at risk in the last 25 % = 2.5 min and 11 h 15 min).
    /// Received Friday 2026-11-20 17:55 local. Respond due 18:05. Resolve:
    /// Fri 5 min, Mon–Thu 4 × 9 h = 36 h 5 min, 8 h 55 min left on Friday
    /// 27th from 09:00 → due Fri 27th 17:55. At risk once 11 h 15 min are
    /// left: Fri 27th gives 8 h 55 min, 2 h 20 min more on Thu 26th before
    /// 18:00 → from Thu 26th 15:40.
    #[test]
    fn a_friday_evening_complaint_on_a_hand_worked_timeline() {
        let p = Policy::default();
        let mut t = Times {
            received_at: at("2026-11-20T17:55:00+08:00"),
            responded_at: None,
            started_at: None,
            resolved_at: None,
        };
        let s = evaluate(&p, &t, at("2026-11-20T18:00:00+08:00"));
        assert_eq!(s.respond.due_at, Some(at("2026-11-20T18:05:00+08:00")));
        assert_eq!(s.respond.state, SlaState::OnTime);
        assert_eq!(
            evaluate(&p, &t, at("2026-11-20T18:03:00+08:00"))
                .respond
                .state,
            SlaState::AtRisk
        );
        assert_eq!(
            evaluate(&p, &t, at("2026-11-20T18:06:00+08:00"))
                .respond
                .state,
            SlaState::Breached
        );
        assert_eq!(s.resolve.due_at, Some(at("2026-11-27T17:55:00+08:00")));
        assert_eq!(s.resolve.target_minutes, 45 * 60);
        // Handling must start within 24 h, around the clock: Saturday 17:55.
        assert_eq!(s.start.due_at, Some(at("2026-11-21T17:55:00+08:00")));
        // Answered at 18:04: met; the resolve target keeps running.
        t.responded_at = Some(at("2026-11-20T18:04:00+08:00"));
        let s = evaluate(&p, &t, at("2026-11-26T15:39:00+08:00"));
        assert_eq!(s.respond.state, SlaState::Met);
        // Answered, but nobody started on it: breached since Saturday.
        assert_eq!(s.start.state, SlaState::Breached);
        assert_eq!(s.resolve.state, SlaState::OnTime);
        assert_eq!(
            evaluate(&p, &t, at("2026-11-26T15:41:00+08:00"))
                .resolve
                .state,
            SlaState::AtRisk
        );
        // Saturday 28th, not resolved: breached; resolved Monday: met late.
        assert_eq!(
            evaluate(&p, &t, at("2026-11-28T10:00:00+08:00"))
                .resolve
                .state,
            SlaState::Breached
        );
        t.resolved_at = Some(at("2026-11-30T10:00:00+08:00"));
        let s = evaluate(&p, &t, at("2026-12-01T00:00:00+08:00"));
        assert_eq!(s.resolve.state, SlaState::MetLate);
        // The resolution started the handling too, late.
        assert_eq!(s.start.state, SlaState::MetLate);
        // 45 h to the due time, 5 min to Friday's close, Monday 09:00–10:00.
        assert_eq!(s.resolve.elapsed_minutes, 46 * 60 + 5);
    }

    /// A resolution without a recorded response answers the customer too.
    #[test]
    fn a_resolution_is_also_the_response() {
        let p = Policy::default();
        let t = Times {
            received_at: at("2026-11-23T10:00:00+08:00"),
            responded_at: None,
            started_at: None,
            resolved_at: Some(at("2026-11-23T10:08:00+08:00")),
        };
        let s = evaluate(&p, &t, at("2026-11-24T00:00:00+08:00"));
        assert_eq!(
            (s.respond.state, s.start.state, s.resolve.state),
            (SlaState::Met, SlaState::Met, SlaState::Met)
        );
        assert_eq!(s.respond.met_at, Some(at("2026-11-23T10:08:00+08:00")));
    }

    #[test]
    fn categories_parse_and_name_the_choices() {
        assert_eq!("service_attitude".parse(), Ok(Category::ServiceAttitude));
        let e = "rude".parse::<Category>().unwrap_err();
        assert!(e.contains("product_quality, service_attitude, delivery_delay, other"));
    }
}
