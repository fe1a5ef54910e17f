//! SLA state of a ticket: for each target (respond, resolve) whether it is
//! on time, at risk, breached, or met (on time or late), computed from the
//! ticket's status history at a given instant. Pure: no I/O, no clock.
//!
//! Times: the clock starts when the server registered the ticket (its first
//! status event). Field steps (en route, on site, completed) count at the
//! device's time, since a technician offline on site did respond when she
//! says; but never earlier than the step before it nor later than when the
//! server received it, so a wrong or hostile device clock cannot move a step
//! outside what the server saw.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::clock::CountingClock;
use super::policy::{RespondOn, SlaPolicy};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Milestone {
    Respond,
    /// A complaint's handling has started (seed 000 §5.1); tickets have no
    /// such target.
    Start,
    Resolve,
}

impl Milestone {
    pub fn as_str(self) -> &'static str {
        match self {
            Milestone::Respond => "respond",
            Milestone::Start => "start",
            Milestone::Resolve => "resolve",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlaState {
    /// Met within the target.
    Met,
    /// The ticket was cancelled before the target was met.
    NotApplicable,
    OnTime,
    AtRisk,
    /// Met, but after the target.
    MetLate,
    Breached,
}

impl SlaState {
    pub fn as_str(self) -> &'static str {
        match self {
            SlaState::Met => "met",
            SlaState::NotApplicable => "not_applicable",
            SlaState::OnTime => "on_time",
            SlaState::AtRisk => "at_risk",
            SlaState::MetLate => "met_late",
            SlaState::Breached => "breached",
        }
    }

    /// Still running (the timer must look at it again).
    pub fn is_running(self) -> bool {
        matches!(
            self,
            SlaState::OnTime | SlaState::AtRisk | SlaState::Breached
        )
    }
}

/// One status step as the history holds it.
#[derive(Clone, Debug)]
pub struct Step {
    pub to: String,
    /// When the server accepted it.
    pub at: DateTime<Utc>,
    /// When the device made it, if it said.
    pub device_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TargetState {
    pub milestone: Milestone,
    pub state: SlaState,
    pub target_minutes: i64,
    /// Counted minutes so far (or until met).
    pub elapsed_minutes: i64,
    /// Counted minutes left (negative once breached).
    pub remaining_minutes: i64,
    /// When the target runs out if nothing pauses the clock.
    pub due_at: Option<DateTime<Utc>>,
    pub met_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TicketSla {
    pub priority: String,
    pub respond: TargetState,
    pub resolve: TargetState,
}

impl TicketSla {
    /// The worse of the two states, for lists and filters.
    pub fn worst(&self) -> SlaState {
        self.respond.state.max(self.resolve.state)
    }
}

/// The instant each step counts at (see the module comment): the device's
/// time, but no earlier than the step before it, nor than `grace` before
/// the server received it, nor later than that.
fn effective_times(steps: &[Step], grace: Duration) -> Vec<DateTime<Utc>> {
    let mut floor = steps
        .first()
        .map(|s| s.at)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    steps
        .iter()
        .map(|s| {
            let lowest = floor.max(s.at - grace).min(s.at);
            let t = s.device_at.unwrap_or(s.at).clamp(lowest, s.at);
            floor = t;
            t
        })
        .collect()
}

/// SLA state at `now` of a ticket of `priority` with these status steps
/// (oldest first; the first is its creation). None when the priority has no
/// target or the ticket has no history.
pub fn evaluate(
    policy: &SlaPolicy,
    priority: &str,
    steps: &[Step],
    now: DateTime<Utc>,
) -> Option<TicketSla> {
    evaluate_with_contact(policy, priority, steps, None, now)
}

/// `evaluate`, knowing the first recorded contact with the customer (server
/// time), which is the response when `respond_on` is `first_contact`.
pub fn evaluate_with_contact(
    policy: &SlaPolicy,
    priority: &str,
    steps: &[Step],
    first_contact: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<TicketSla> {
    let target = policy.target(priority)?;
    let created = steps.first()?.at;
    let times = effective_times(steps, Duration::minutes(policy.device_time_grace_minutes));
    let responded = |to: &str| match policy.respond_on {
        RespondOn::EnRoute => matches!(to, "en_route" | "on_site" | "paused" | "completed"),
        RespondOn::OnSite | RespondOn::FirstContact => {
            matches!(to, "on_site" | "paused" | "completed")
        }
    };
    let first = |pred: &dyn Fn(&str) -> bool| {
        steps
            .iter()
            .zip(&times)
            .find(|(s, _)| pred(&s.to))
            .map(|(_, t)| *t)
    };
    let respond_met = match (policy.respond_on, first_contact) {
        // A contact before the ticket existed (a clock skew) counts at its
        // creation.
        (RespondOn::FirstContact, Some(c)) => {
            let c = c.max(created);
            Some(first(&responded).map_or(c, |arrived| arrived.min(c)))
        }
        _ => first(&responded),
    };
    let resolve_met = first(&|to| to == "completed");
    // Cancelled, unless reopened since: only the last cancel counts.
    let last_cancel = steps.iter().rposition(|s| s.to == "cancelled");
    let cancelled = last_cancel
        .filter(|&i| !steps[i..].iter().any(|s| s.to == "reopened"))
        .map(|i| times[i]);

    // Spans spent waiting on the customer, at server time: a device clock
    // must not be able to stretch a pause over work already late.
    let mut pauses = Vec::new();
    if policy.pause_while_waiting {
        let mut open: Option<DateTime<Utc>> = None;
        for s in steps {
            match (s.to == "paused", open) {
                (true, None) => open = Some(s.at),
                (false, Some(start)) => {
                    if s.at > start {
                        pauses.push((start, s.at));
                    }
                    open = None;
                }
                _ => {}
            }
        }
        if let Some(start) = open {
            pauses.push((start, DateTime::<Utc>::MAX_UTC));
        }
    }
    let clock = CountingClock::new(policy.calendar.as_ref(), &pauses);

    let state = |milestone, minutes, met| {
        target_state(
            &clock,
            milestone,
            created,
            minutes,
            met,
            cancelled,
            now,
            policy.at_risk_share,
        )
    };
    Some(TicketSla {
        priority: priority.to_string(),
        respond: state(Milestone::Respond, target.respond_minutes, respond_met),
        resolve: state(Milestone::Resolve, target.resolve_minutes, resolve_met),
    })
}

/// One target's state at `now`: `minutes` of `clock`-counted time from
/// `start`, met at `met` (if it was), stopped at `stopped` (cancelled; the
/// target no longer applies). Tickets and complaints share it.
#[allow(clippy::too_many_arguments)]
pub fn target_state(
    clock: &CountingClock<'_>,
    milestone: Milestone,
    start: DateTime<Utc>,
    minutes: i64,
    met: Option<DateTime<Utc>>,
    stopped: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    at_risk_share: f64,
) -> TargetState {
    let budget = Duration::minutes(minutes);
    let until = met.or(stopped).unwrap_or(now).min(now.max(start));
    let elapsed = clock.counted(start, until);
    let remaining = budget - elapsed;
    let state = match met {
        Some(m) if m <= now => {
            if remaining >= Duration::zero() {
                SlaState::Met
            } else {
                SlaState::MetLate
            }
        }
        _ if stopped.is_some_and(|c| c <= now) => SlaState::NotApplicable,
        _ if remaining < Duration::zero() => SlaState::Breached,
        _ if remaining.num_seconds() as f64 <= at_risk_share * budget.num_seconds() as f64 => {
            SlaState::AtRisk
        }
        _ => SlaState::OnTime,
    };
    TargetState {
        milestone,
        state,
        target_minutes: minutes,
        elapsed_minutes: elapsed.num_minutes(),
        remaining_minutes: remaining.num_minutes(),
        due_at: clock.advance(start, budget),
        met_at: met.filter(|m| *m <= now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::policy::Calendar;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn step(to: &str, server: &str, device: Option<&str>) -> Step {
        Step {
            to: to.into(),
            at: at(server),
            device_at: device.map(at),
        }
    }

    /// A priority-A ticket (respond 2 h, resolve 48 h, at risk in the last
    /// 25 %: 30 min and 12 h), created 10:00, around the clock.
    #[test]
    fn priority_a_on_a_hand_worked_timeline() {
        let p = SlaPolicy::default();
        let mut steps = vec![
            step("new", "2026-11-02T10:00:00Z", None),
            step("assigned", "2026-11-02T10:05:00Z", None),
        ];
        let s = |steps: &[Step], now: &str| evaluate(&p, "A", steps, at(now)).unwrap();

        let r = s(&steps, "2026-11-02T11:00:00Z").respond;
        assert_eq!(
            (r.state, r.elapsed_minutes, r.remaining_minutes),
            (SlaState::OnTime, 60, 60)
        );
        assert_eq!(r.due_at, Some(at("2026-11-02T12:00:00Z")));
        // 29 minutes left: at risk (30 minutes is the last quarter).
        assert_eq!(
            s(&steps, "2026-11-02T11:31:00Z").respond.state,
            SlaState::AtRisk
        );
        assert_eq!(
            s(&steps, "2026-11-02T11:29:00Z").respond.state,
            SlaState::OnTime
        );
        assert_eq!(
            s(&steps, "2026-11-02T12:01:00Z").respond.state,
            SlaState::Breached
        );
        assert_eq!(
            s(&steps, "2026-11-02T12:01:00Z").worst(),
            SlaState::Breached
        );

        // The technician set off at 11:50 by her phone, offline; the server
        // heard of it at 12:40. Respond counts at 11:50: met, on time.
        steps.push(step(
            "en_route",
            "2026-11-02T12:40:00Z",
            Some("2026-11-02T11:50:00Z"),
        ));
        let sla = s(&steps, "2026-11-02T13:00:00Z");
        assert_eq!(sla.respond.state, SlaState::Met);
        assert_eq!(sla.respond.met_at, Some(at("2026-11-02T11:50:00Z")));
        assert_eq!(sla.respond.elapsed_minutes, 110);
        assert_eq!(sla.resolve.state, SlaState::OnTime);
        // Resolve: due 48 h after creation; at risk from 12 h before.
        assert_eq!(sla.resolve.due_at, Some(at("2026-11-04T10:00:00Z")));
        assert_eq!(
            s(&steps, "2026-11-03T22:01:00Z").resolve.state,
            SlaState::AtRisk
        );
        // Completed at 09:00 on the 4th (device), 47 h after creation: met.
        steps.push(step("on_site", "2026-11-02T13:00:00Z", None));
        steps.push(step(
            "completed",
            "2026-11-04T09:10:00Z",
            Some("2026-11-04T09:00:00Z"),
        ));
        let sla = s(&steps, "2026-11-06T00:00:00Z");
        assert_eq!(
            (sla.resolve.state, sla.resolve.elapsed_minutes),
            (SlaState::Met, 47 * 60)
        );
        assert_eq!(sla.worst(), SlaState::Met);
    }

    /// `respond_on: first_contact`: an A ticket created 10:00, the
    /// dispatcher calls the customer at 11:10, the technician sets off at
    /// 12:30 and arrives 13:00. Respond is met at 11:10 (70 of 120 min);
    /// with no contact recorded, arrival at 13:00 is the response (late);
    /// the default (`en_route`) would not look at the call at all.
    #[test]
    fn first_contact_is_the_response_when_the_policy_says_so() {
        let mut p = SlaPolicy {
            respond_on: RespondOn::FirstContact,
            ..SlaPolicy::default()
        };
        let steps = vec![
            step("new", "2026-11-02T10:00:00Z", None),
            step("en_route", "2026-11-02T12:30:00Z", None),
            step("on_site", "2026-11-02T13:00:00Z", None),
        ];
        let call = Some(at("2026-11-02T11:10:00Z"));
        let now = at("2026-11-02T14:00:00Z");
        let r = evaluate_with_contact(&p, "A", &steps, call, now)
            .unwrap()
            .respond;
        assert_eq!((r.state, r.elapsed_minutes), (SlaState::Met, 70));
        assert_eq!(r.met_at, call);
        let r = evaluate_with_contact(&p, "A", &steps, None, now)
            .unwrap()
            .respond;
        assert_eq!(
            (r.state, r.met_at),
            (SlaState::MetLate, Some(at("2026-11-02T13:00:00Z")))
        );
        // Before the call, nothing has answered the customer yet.
        let r = evaluate_with_contact(&p, "A", &steps[..1], call, at("2026-11-02T11:00:00Z"))
            .unwrap()
            .respond;
        assert_eq!(r.state, SlaState::OnTime);
        p.respond_on = RespondOn::EnRoute;
        let r = evaluate_with_contact(&p, "A", &steps, call, now)
            .unwrap()
            .respond;
        assert_eq!(r.met_at, Some(at("2026-11-02T12:30:00Z")));
    }

    #[test]
    fn device_clocks_cannot_move_a_step_outside_what_the_server_saw() {
        let p = SlaPolicy::default();
        let steps = vec![
            step("new", "2026-11-02T10:00:00Z", None),
            // Claims to have responded before the ticket existed.
            step(
                "en_route",
                "2026-11-02T13:00:00Z",
                Some("2026-11-01T00:00:00Z"),
            ),
            // Claims a completion in the future.
            step(
                "completed",
                "2026-11-02T14:00:00Z",
                Some("2026-12-01T00:00:00Z"),
            ),
        ];
        let sla = evaluate(&p, "A", &steps, at("2026-11-03T00:00:00Z")).unwrap();
        assert_eq!(sla.respond.met_at, Some(at("2026-11-02T10:00:00Z")));
        assert_eq!(sla.resolve.met_at, Some(at("2026-11-02T14:00:00Z")));
    }

    /// C (resolve 120 h) around the clock: created Monday 00:00, on site
    /// Monday 10:00, waiting on the customer Tuesday 10:00 → Thursday 10:00
    /// (48 h, not counted), completed Saturday 10:00: 130 h − 48 h = 82 h.
    /// Without the pause rule: 130 h, late.
    #[test]
    fn waiting_on_the_customer_stops_the_clock() {
        let steps = vec![
            step("new", "2026-11-02T00:00:00Z", None),
            step("on_site", "2026-11-02T10:00:00Z", None),
            step("paused", "2026-11-03T10:00:00Z", None),
            step("on_site", "2026-11-05T10:00:00Z", None),
            step("completed", "2026-11-07T10:00:00Z", None),
        ];
        let mut p = SlaPolicy::default();
        let sla = evaluate(&p, "C", &steps, at("2026-11-08T00:00:00Z")).unwrap();
        assert_eq!(
            (sla.resolve.state, sla.resolve.elapsed_minutes),
            (SlaState::Met, 82 * 60)
        );
        // While paused, the remaining time does not shrink.
        let during = evaluate(&p, "C", &steps[..3], at("2026-11-04T10:00:00Z")).unwrap();
        assert_eq!(during.resolve.elapsed_minutes, 34 * 60);
        p.pause_while_waiting = false;
        let sla = evaluate(&p, "C", &steps, at("2026-11-08T00:00:00Z")).unwrap();
        assert_eq!(
            (sla.resolve.state, sla.resolve.elapsed_minutes),
            (SlaState::MetLate, 130 * 60)
        );
    }

    /// B with the business calendar (Mon–Fri 09–18, UTC+8): created Friday
    /// 16:00 local, respond due Wednesday 13:00 (see clock.rs). On Tuesday
    /// 18:00 local 20 of 24 h are used: 4 h left ≤ 6 h (25 %) → at risk.
    #[test]
    fn business_hours_calendar() {
        let p = SlaPolicy {
            calendar: Some(Calendar::default()),
            ..SlaPolicy::default()
        };
        let steps = vec![step("new", "2026-11-20T16:00:00+08:00", None)];
        let sla = evaluate(&p, "B", &steps, at("2026-11-24T18:00:00+08:00")).unwrap();
        assert_eq!(sla.respond.due_at, Some(at("2026-11-25T13:00:00+08:00")));
        assert_eq!(
            (sla.respond.state, sla.respond.remaining_minutes),
            (SlaState::AtRisk, 240)
        );
        // Over the weekend nothing is used: still on time Monday 08:00.
        let sla = evaluate(&p, "B", &steps, at("2026-11-23T08:00:00+08:00")).unwrap();
        assert_eq!(
            (sla.respond.state, sla.respond.elapsed_minutes),
            (SlaState::OnTime, 120)
        );
    }

    /// Device time counts at most 4 h (the default grace) before the server
    /// heard of the step; pauses count at server time. The attack seen in
    /// review: an A ticket completed 70 h after creation, with a `paused`
    /// dated a minute after arrival and `on_site` a minute before completion
    /// in the same late message, no longer turns 70 h into 5 minutes.
    #[test]
    fn device_times_are_bounded_and_pauses_use_server_time() {
        let p = SlaPolicy::default();
        let late = vec![
            step("new", "2026-11-02T10:00:00Z", None),
            step(
                "en_route",
                "2026-11-02T20:00:00Z",
                Some("2026-11-02T10:30:00Z"),
            ),
        ];
        let sla = evaluate(&p, "A", &late, at("2026-11-03T00:00:00Z")).unwrap();
        assert_eq!(sla.respond.met_at, Some(at("2026-11-02T16:00:00Z")));
        assert_eq!(sla.respond.state, SlaState::MetLate);
        let forged = vec![
            step("new", "2026-11-02T00:00:00Z", None),
            step("on_site", "2026-11-02T00:05:00Z", None),
            step(
                "paused",
                "2026-11-04T22:00:00Z",
                Some("2026-11-02T00:06:00Z"),
            ),
            step(
                "on_site",
                "2026-11-04T22:00:00Z",
                Some("2026-11-04T21:59:00Z"),
            ),
            step("completed", "2026-11-04T22:00:00Z", None),
        ];
        let sla = evaluate(&p, "A", &forged, at("2026-11-05T00:00:00Z")).unwrap();
        assert_eq!(
            (sla.resolve.state, sla.resolve.elapsed_minutes),
            (SlaState::MetLate, 70 * 60)
        );
    }

    #[test]
    fn reopening_a_cancelled_ticket_restarts_its_targets() {
        let p = SlaPolicy::default();
        let steps = vec![
            step("new", "2026-11-02T10:00:00Z", None),
            step("cancelled", "2026-11-02T10:30:00Z", None),
            step("reopened", "2026-11-02T11:00:00Z", None),
        ];
        let sla = evaluate(&p, "A", &steps, at("2026-11-02T13:00:00Z")).unwrap();
        assert_eq!(sla.respond.state, SlaState::Breached);
    }

    #[test]
    fn cancelled_tickets_stop_counting_and_unknown_priorities_have_no_sla() {
        let p = SlaPolicy::default();
        let steps = vec![
            step("new", "2026-11-02T10:00:00Z", None),
            step("cancelled", "2026-11-02T11:00:00Z", None),
        ];
        let sla = evaluate(&p, "A", &steps, at("2026-11-09T00:00:00Z")).unwrap();
        assert_eq!(sla.respond.state, SlaState::NotApplicable);
        assert_eq!(sla.respond.elapsed_minutes, 60);
        assert!(evaluate(&p, "", &steps, at("2026-11-09T00:00:00Z")).is_none());
        assert!(evaluate(&p, "A", &[], at("2026-11-09T00:00:00Z")).is_none());
    }
}
