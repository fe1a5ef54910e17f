//! The KPIs of the seeds (000/002/004): one pure function per KPI, its
//! definition in its doc comment (the README's "KPIs and reports" says the
//! same in plain words). No I/O: `office::reports` loads the facts below from
//! the history and calls these.
//!
//! Every KPI returns a [`Figure`], a numerator and a denominator, never a
//! bare ratio: a report shows "17 / 20", and an empty denominator is "n/a",
//! never a division by zero.
//!
//! Which period a fact belongs to (periods are half-open, `[start, end)`):
//! - *completed cohort*: a job belongs to the period its first completion
//!   (the SLA's resolve time) falls in — CSAT, first-time fix, on-site fix,
//!   MTTR, punctuality, service cost, and the complaint rate's denominator;
//! - *opened cohort*: a job belongs to the period it was registered in —
//!   response and resolution on time, completion rate;
//! - a callback belongs to the period it is due in, a complaint to the one
//!   it was received in.
//!
//! Cancelled jobs count in no KPI.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::closed_loop::{self, Scores};
use super::policy::{ClosedLoopPolicy, KpiPolicy};

/// `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Period {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }
    /// `t` is set and in the period.
    pub fn has(&self, t: Option<DateTime<Utc>>) -> bool {
        t.is_some_and(|t| self.contains(t))
    }
}

/// A target's outcome as `ticket_sla` keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlaOutcome {
    /// Reached within the target.
    Met,
    /// Reached after it.
    MetLate,
    /// Not reached, and already past the target.
    Breached,
    /// Not reached, still within the target (on time or at risk).
    Running,
    /// Cancelled before it was reached, or no target for the priority.
    NotApplicable,
}

impl SlaOutcome {
    /// From a `ticket_sla` state (`met`, `met_late`, `breached`, `on_time`,
    /// `at_risk`, `not_applicable`, or empty).
    pub fn from_state(s: &str) -> Self {
        match s {
            "met" => Self::Met,
            "met_late" => Self::MetLate,
            "breached" => Self::Breached,
            "on_time" | "at_risk" => Self::Running,
            _ => Self::NotApplicable,
        }
    }
    /// Settled or already late: counts in an on-time rate.
    fn judged(self) -> bool {
        matches!(self, Self::Met | Self::MetLate | Self::Breached)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct VisitFact {
    pub arrived_at: Option<DateTime<Utc>>,
    pub fixed: Option<bool>,
}

/// One job (ticket) as the KPIs see it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobFacts {
    pub doc_id: String,
    pub ticket_no: String,
    pub priority: String,
    /// The assigned technician (the job is theirs in per-technician KPIs).
    pub technician_id: String,
    /// When the server registered it.
    pub created_at: DateTime<Utc>,
    /// Its first completion, as the SLA counts it (None: never completed).
    pub completed_at: Option<DateTime<Utc>>,
    pub cancelled: bool,
    /// Reopened at least once after a completion.
    pub reopened: bool,
    /// The appointment window (start, end).
    pub appointment: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// In the order they were made.
    pub visits: Vec<VisitFact>,
    /// Visit time (check-in to check-out, `office::checks::labour`).
    pub labour_minutes: i64,
    /// Parts used, priced from the catalogue (lines without a price add 0).
    pub parts_cost_cents: i64,
    pub respond: SlaOutcome,
    pub resolve: SlaOutcome,
    pub survey: Option<Scores>,
}

impl JobFacts {
    fn completed_in(&self, p: &Period) -> bool {
        !self.cancelled && p.has(self.completed_at)
    }
    fn opened_in(&self, p: &Period) -> bool {
        !self.cancelled && p.contains(self.created_at)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CallbackFacts {
    /// The technician of the callback's job.
    pub technician_id: String,
    pub due_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ComplaintFacts {
    /// The technician of the complaint's job ('' without one).
    pub technician_id: String,
    pub received_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// numerator / denominator; `denominator == 0` is "n/a".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Figure {
    pub numerator: i64,
    pub denominator: i64,
}

impl Figure {
    fn count<T>(items: impl Iterator<Item = T>, hit: impl Fn(&T) -> bool) -> Self {
        items.fold(Self::default(), |f, item| Self {
            numerator: f.numerator + i64::from(hit(&item)),
            denominator: f.denominator + 1,
        })
    }
    fn sum(items: impl Iterator<Item = i64>) -> Self {
        // Saturating: sums of money or minutes from devices must not wrap.
        items.fold(Self::default(), |f, v| Self {
            numerator: f.numerator.saturating_add(v),
            denominator: f.denominator + 1,
        })
    }
    pub fn ratio(&self) -> Option<f64> {
        (self.denominator > 0).then(|| self.numerator as f64 / self.denominator as f64)
    }
}

fn minutes(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    // Whole minutes, rounded to the nearest (as labour is).
    ((to - from).num_seconds() + 30).div_euclid(60)
}

/// **CSAT**: completed jobs whose survey is *satisfied* (mean of the
/// answered dimensions at or above `closed_loop.satisfied_at_5`/`_7`,
/// `service::closed_loop::is_satisfied`) / completed jobs with a survey that
/// can be judged. Completed cohort; jobs without a survey are left out.
pub fn csat(jobs: &[JobFacts], p: &Period, cl: &ClosedLoopPolicy) -> Figure {
    Figure::count(
        jobs.iter().filter(|j| j.completed_in(p)).filter_map(|j| {
            j.survey
                .as_ref()
                .and_then(|s| closed_loop::is_satisfied(cl, s))
        }),
        |satisfied| *satisfied,
    )
}

/// **First-time fix rate**: completed jobs with exactly one visit, fixed on
/// it, and never reopened / completed jobs with at least one visit.
/// Completed cohort.
pub fn first_time_fix(jobs: &[JobFacts], p: &Period) -> Figure {
    Figure::count(
        jobs.iter()
            .filter(|j| j.completed_in(p) && !j.visits.is_empty()),
        |j| j.visits.len() == 1 && j.visits[0].fixed == Some(true) && !j.reopened,
    )
}

/// **On-site fix rate**: completed jobs with a visit marked fixed (on any
/// visit) / completed jobs with at least one visit. Completed cohort.
pub fn on_site_fix(jobs: &[JobFacts], p: &Period) -> Figure {
    Figure::count(
        jobs.iter()
            .filter(|j| j.completed_in(p) && !j.visits.is_empty()),
        |j| j.visits.iter().any(|v| v.fixed == Some(true)),
    )
}

fn on_time(jobs: &[JobFacts], p: &Period, target: fn(&JobFacts) -> SlaOutcome) -> Figure {
    Figure::count(
        jobs.iter()
            .filter(|j| j.opened_in(p))
            .map(target)
            .filter(|o| o.judged()),
        |o| *o == SlaOutcome::Met,
    )
}

/// **Response on-time rate**: jobs whose respond target was met in time /
/// jobs whose respond target is met, met late or already breached (still
/// running within the target, cancelled or without a target: left out).
/// Opened cohort; the states are `ticket_sla`'s (README "Service rules").
pub fn response_on_time(jobs: &[JobFacts], p: &Period) -> Figure {
    on_time(jobs, p, |j| j.respond)
}

/// **Resolution on-time rate**: the same for the resolve target
/// (completion). Opened cohort.
pub fn resolution_on_time(jobs: &[JobFacts], p: &Period) -> Figure {
    on_time(jobs, p, |j| j.resolve)
}

/// **MTTR** (mean time to resolve): the sum over completed jobs of the
/// minutes from registration to first completion (clock time, pauses
/// included) / the number of completed jobs. Completed cohort.
pub fn mttr(jobs: &[JobFacts], p: &Period) -> Figure {
    Figure::sum(
        jobs.iter()
            .filter(|j| j.completed_in(p))
            .filter_map(|j| Some(minutes(j.created_at, j.completed_at?))),
    )
}

/// **Work-order completion rate**: jobs opened in the period and completed
/// before its end / jobs opened in the period. Opened cohort (cancelled jobs
/// are left out of both).
pub fn completion(jobs: &[JobFacts], p: &Period) -> Figure {
    Figure::count(jobs.iter().filter(|j| j.opened_in(p)), |j| {
        j.completed_at.is_some_and(|t| t < p.end)
    })
}

/// **Appointment punctuality**: completed jobs whose first visit arrived
/// within the appointment window (start ≤ arrival ≤ end; early is not
/// punctual) / completed jobs with an appointment window and a first visit
/// with an arrival time. Completed cohort.
pub fn punctuality(jobs: &[JobFacts], p: &Period) -> Figure {
    Figure::count(
        jobs.iter().filter(|j| j.completed_in(p)).filter_map(|j| {
            let window = j.appointment?;
            let arrived = j.visits.first()?.arrived_at?;
            Some((window, arrived))
        }),
        |((start, end), arrived)| start <= arrived && arrived <= end,
    )
}

/// **Callback on-time rate**: callbacks due in the period and done by their
/// due time / callbacks due in the period that are done, or not done and
/// already past due at `as_of` (the report's end, or now for a period still
/// running; a callback not yet due is left out).
pub fn callback_on_time(callbacks: &[CallbackFacts], p: &Period, as_of: DateTime<Utc>) -> Figure {
    Figure::count(
        callbacks
            .iter()
            .filter(|c| p.contains(c.due_at))
            .filter(|c| c.done_at.is_some() || c.due_at < as_of),
        |c| c.done_at.is_some_and(|d| d <= c.due_at),
    )
}

/// **Complaint rate**: complaints received in the period / jobs completed in
/// the period (lower is better).
pub fn complaint_rate(complaints: &[ComplaintFacts], jobs: &[JobFacts], p: &Period) -> Figure {
    Figure {
        numerator: complaints
            .iter()
            .filter(|c| p.contains(c.received_at))
            .count() as i64,
        denominator: jobs.iter().filter(|j| j.completed_in(p)).count() as i64,
    }
}

/// **Complaint handling time**: the sum of the minutes from receiving to
/// resolving each complaint received in the period and resolved / their
/// number (unresolved complaints are left out; the report lists them).
pub fn complaint_handling(complaints: &[ComplaintFacts], p: &Period) -> Figure {
    Figure::sum(
        complaints
            .iter()
            .filter(|c| p.contains(c.received_at))
            .filter_map(|c| Some(minutes(c.received_at, c.resolved_at?))),
    )
}

/// Labour cost of `minutes` at `cents_per_hour`, to the nearest cent.
pub fn labour_cost_cents(minutes: i64, cents_per_hour: i64) -> i64 {
    minutes
        .saturating_mul(cents_per_hour)
        .saturating_add(30)
        .div_euclid(60)
}

/// **Service cost** per job: the sum over completed jobs of parts (quantity
/// × catalogue unit cost) plus labour (visit minutes × `kpi.labour_cents_per_hour`)
/// / the number of completed jobs, in cents. Completed cohort.
pub fn service_cost(jobs: &[JobFacts], p: &Period, labour_cents_per_hour: i64) -> Figure {
    Figure::sum(
        jobs.iter().filter(|j| j.completed_in(p)).map(|j| {
            j.parts_cost_cents + labour_cost_cents(j.labour_minutes, labour_cents_per_hour)
        }),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// numerator / denominator × 100.
    Percent,
    /// A mean: numerator / denominator minutes.
    Minutes,
    /// A mean: numerator / denominator cents.
    Cents,
}

/// The KPIs, in the order reports show them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kpi {
    Csat,
    FirstTimeFix,
    OnSiteFix,
    ResponseOnTime,
    ResolutionOnTime,
    Mttr,
    Completion,
    Punctuality,
    CallbackOnTime,
    ComplaintRate,
    ComplaintHandling,
    ServiceCost,
}

impl Kpi {
    pub const ALL: [Kpi; 12] = [
        Kpi::Csat,
        Kpi::FirstTimeFix,
        Kpi::OnSiteFix,
        Kpi::ResponseOnTime,
        Kpi::ResolutionOnTime,
        Kpi::Mttr,
        Kpi::Completion,
        Kpi::Punctuality,
        Kpi::CallbackOnTime,
        Kpi::ComplaintRate,
        Kpi::ComplaintHandling,
        Kpi::ServiceCost,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Kpi::Csat => "csat",
            Kpi::FirstTimeFix => "first_time_fix",
            Kpi::OnSiteFix => "on_site_fix",
            Kpi::ResponseOnTime => "response_on_time",
            Kpi::ResolutionOnTime => "resolution_on_time",
            Kpi::Mttr => "mttr",
            Kpi::Completion => "completion",
            Kpi::Punctuality => "punctuality",
            Kpi::CallbackOnTime => "callback_on_time",
            Kpi::ComplaintRate => "complaint_rate",
            Kpi::ComplaintHandling => "complaint_handling",
            Kpi::ServiceCost => "service_cost",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kpi::Csat => "CSAT",
            Kpi::FirstTimeFix => "First-time fix rate",
            Kpi::OnSiteFix => "On-site fix rate",
            Kpi::ResponseOnTime => "Response on time",
            Kpi::ResolutionOnTime => "Resolution on time",
            Kpi::Mttr => "MTTR",
            Kpi::Completion => "Work-order completion",
            Kpi::Punctuality => "Appointment punctuality",
            Kpi::CallbackOnTime => "Callbacks on time",
            Kpi::ComplaintRate => "Complaint rate",
            Kpi::ComplaintHandling => "Complaint handling time",
            Kpi::ServiceCost => "Service cost per job",
        }
    }

    pub fn unit(self) -> Unit {
        match self {
            Kpi::Mttr | Kpi::ComplaintHandling => Unit::Minutes,
            Kpi::ServiceCost => Unit::Cents,
            _ => Unit::Percent,
        }
    }

    /// Whether the target is a floor (true) or a ceiling.
    pub fn higher_is_better(self) -> bool {
        !matches!(
            self,
            Kpi::Mttr | Kpi::ComplaintRate | Kpi::ComplaintHandling | Kpi::ServiceCost
        )
    }

    /// The target in the KPI's unit (None: no target set).
    pub fn target(self, p: &KpiPolicy) -> Option<f64> {
        Some(match self {
            Kpi::Csat => p.csat_percent,
            Kpi::FirstTimeFix => p.first_time_fix_percent,
            Kpi::OnSiteFix => p.on_site_fix_percent,
            Kpi::ResponseOnTime => p.response_on_time_percent,
            Kpi::ResolutionOnTime => p.resolution_on_time_percent,
            Kpi::Mttr => p.mttr_max_minutes as f64,
            Kpi::Completion => p.completion_percent,
            Kpi::Punctuality => p.punctuality_percent,
            Kpi::CallbackOnTime => p.callback_on_time_percent,
            Kpi::ComplaintRate => p.complaint_rate_max_percent,
            Kpi::ComplaintHandling => p.complaint_handling_max_minutes as f64,
            Kpi::ServiceCost => p.cost_per_job_max_cents? as f64,
        })
    }

    /// The figure's value in the KPI's unit, rounded to two decimals (None:
    /// n/a).
    pub fn value(self, f: &Figure) -> Option<f64> {
        let r = f.ratio()?;
        let v = match self.unit() {
            Unit::Percent => r * 100.0,
            Unit::Minutes | Unit::Cents => r,
        };
        Some((v * 100.0).round() / 100.0)
    }

    /// Whether `value` meets `target` (at or above a floor, at or below a
    /// ceiling).
    pub fn meets(self, value: f64, target: f64) -> bool {
        if self.higher_is_better() {
            value >= target
        } else {
            value <= target
        }
    }
}

/// Everything the KPIs read, for one scope (the company, or one
/// technician's share of it).
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub jobs: &'a [JobFacts],
    pub callbacks: &'a [CallbackFacts],
    pub complaints: &'a [ComplaintFacts],
}

/// One KPI's figure for the period.
pub fn compute(
    kpi: Kpi,
    f: Facts<'_>,
    p: &Period,
    as_of: DateTime<Utc>,
    cl: &ClosedLoopPolicy,
    k: &KpiPolicy,
) -> Figure {
    match kpi {
        Kpi::Csat => csat(f.jobs, p, cl),
        Kpi::FirstTimeFix => first_time_fix(f.jobs, p),
        Kpi::OnSiteFix => on_site_fix(f.jobs, p),
        Kpi::ResponseOnTime => response_on_time(f.jobs, p),
        Kpi::ResolutionOnTime => resolution_on_time(f.jobs, p),
        Kpi::Mttr => mttr(f.jobs, p),
        Kpi::Completion => completion(f.jobs, p),
        Kpi::Punctuality => punctuality(f.jobs, p),
        Kpi::CallbackOnTime => callback_on_time(f.callbacks, p, as_of),
        Kpi::ComplaintRate => complaint_rate(f.complaints, f.jobs, p),
        Kpi::ComplaintHandling => complaint_handling(f.complaints, p),
        Kpi::ServiceCost => service_cost(f.jobs, p, k.labour_cents_per_hour),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn november() -> Period {
        Period {
            start: t("2026-11-01T00:00:00Z"),
            end: t("2026-12-01T00:00:00Z"),
        }
    }

    fn survey(e: i64, a: i64, r: i64) -> Option<Scores> {
        Some(Scores {
            scale: 5,
            efficiency: Some(e),
            attitude: Some(a),
            reasonableness: Some(r),
        })
    }

    fn visit(arrived: &str, fixed: bool) -> VisitFact {
        VisitFact {
            arrived_at: Some(t(arrived)),
            fixed: Some(fixed),
        }
    }

    fn job(no: &str, created: &str, completed: Option<&str>) -> JobFacts {
        JobFacts {
            doc_id: format!("doc-{no}"),
            ticket_no: no.into(),
            priority: "B".into(),
            technician_id: "t1".into(),
            created_at: t(created),
            completed_at: completed.map(t),
            cancelled: false,
            reopened: false,
            appointment: None,
            visits: Vec::new(),
            labour_minutes: 0,
            parts_cost_cents: 0,
            respond: SlaOutcome::Met,
            resolve: SlaOutcome::Met,
            survey: None,
        }
    }

    /// The hand-worked month (November 2026, UTC):
    ///
    /// | job | opened | completed | visits (fixed) | appointment / first arrival | respond | resolve | survey | labour | parts |
    /// |---|---|---|---|---|---|---|---|---|---|
    /// | J1 | 11-02 08:00 | 11-02 12:00 (240 min) | 1 (yes) | 09:00–11:00 / 09:30 punctual | met | met | 5,5,5 satisfied | 90 min | 320.00 |
    /// | J2 | 11-03 09:00 | 11-05 09:00 (2880) | 2 (no, yes) | 10:00–12:00 / 12:30 late | met | met late | 2,3,3 unsatisfied | 105 | 0 |
    /// | J3 | 11-10 10:00 | 11-10 11:00 (60), reopened | 1 (yes) | — | met | met | 4,4,4 satisfied | 30 | 15.00 |
    /// | J4 | 11-20 10:00 | open | — | — | breached | breached | — | 0 | 0 |
    /// | J5 | 10-30 10:00 | 11-01 10:00 (2880) | 1 (yes) | 10-31 09:00–12:00 / 08:50 early | met | met | — | 120 | 50.00 |
    /// | J6 | 11-25 | cancelled | — | — | n/a | n/a | — | | |
    /// | J7 | 11-28 10:00 | 12-02 (next month) | — | — | met | met | — | | |
    ///
    /// Completed in November: J1, J2, J3, J5 (4). Opened in November and
    /// not cancelled: J1, J2, J3, J4, J7 (5).
    fn month() -> Vec<JobFacts> {
        let mut j1 = job("J1", "2026-11-02T08:00:00Z", Some("2026-11-02T12:00:00Z"));
        j1.appointment = Some((t("2026-11-02T09:00:00Z"), t("2026-11-02T11:00:00Z")));
        j1.visits = vec![visit("2026-11-02T09:30:00Z", true)];
        j1.survey = survey(5, 5, 5);
        j1.labour_minutes = 90;
        j1.parts_cost_cents = 32000;
        let mut j2 = job("J2", "2026-11-03T09:00:00Z", Some("2026-11-05T09:00:00Z"));
        j2.appointment = Some((t("2026-11-03T10:00:00Z"), t("2026-11-03T12:00:00Z")));
        j2.visits = vec![
            visit("2026-11-03T12:30:00Z", false),
            visit("2026-11-05T08:00:00Z", true),
        ];
        j2.resolve = SlaOutcome::MetLate;
        j2.survey = survey(2, 3, 3);
        j2.labour_minutes = 105;
        let mut j3 = job("J3", "2026-11-10T10:00:00Z", Some("2026-11-10T11:00:00Z"));
        j3.technician_id = "t2".into();
        j3.reopened = true;
        j3.visits = vec![visit("2026-11-10T10:20:00Z", true)];
        j3.survey = survey(4, 4, 4);
        j3.labour_minutes = 30;
        j3.parts_cost_cents = 1500;
        let mut j4 = job("J4", "2026-11-20T10:00:00Z", None);
        j4.technician_id = "t2".into();
        j4.respond = SlaOutcome::Breached;
        j4.resolve = SlaOutcome::Breached;
        let mut j5 = job("J5", "2026-10-30T10:00:00Z", Some("2026-11-01T10:00:00Z"));
        j5.appointment = Some((t("2026-10-31T09:00:00Z"), t("2026-10-31T12:00:00Z")));
        j5.visits = vec![visit("2026-10-31T08:50:00Z", true)];
        j5.labour_minutes = 120;
        j5.parts_cost_cents = 5000;
        let mut j6 = job("J6", "2026-11-25T10:00:00Z", None);
        j6.cancelled = true;
        j6.respond = SlaOutcome::NotApplicable;
        j6.resolve = SlaOutcome::NotApplicable;
        let j7 = job("J7", "2026-11-28T10:00:00Z", Some("2026-12-02T10:00:00Z"));
        vec![j1, j2, j3, j4, j5, j6, j7]
    }

    fn fig(numerator: i64, denominator: i64) -> Figure {
        Figure {
            numerator,
            denominator,
        }
    }

    #[test]
    fn csat_counts_satisfied_surveys_of_completed_jobs() {
        // J1 5,5,5 (mean 5 ≥ 4) yes; J2 2,3,3 (mean 2.67) no; J3 4,4,4 yes;
        // J5 no survey: 2 / 3 = 66.67 %.
        let f = csat(&month(), &november(), &ClosedLoopPolicy::default());
        assert_eq!(f, fig(2, 3));
        assert_eq!(Kpi::Csat.value(&f), Some(66.67));
        assert!(!Kpi::Csat.meets(66.67, 85.0));
    }

    #[test]
    fn first_time_and_on_site_fix() {
        // With a visit, completed: J1, J2, J3, J5. First time: J1 (one
        // visit, fixed), J5; not J2 (two visits), nor J3 (reopened): 2 / 4.
        assert_eq!(first_time_fix(&month(), &november()), fig(2, 4));
        // Fixed on some visit: all four.
        assert_eq!(on_site_fix(&month(), &november()), fig(4, 4));
    }

    #[test]
    fn sla_rates_over_the_jobs_opened_in_the_period() {
        // Opened: J1 met, J2 met, J3 met, J4 breached, J7 met (J6 cancelled,
        // J5 opened in October): respond 4 / 5 = 80 %.
        assert_eq!(response_on_time(&month(), &november()), fig(4, 5));
        // Resolve: J1 met, J2 late, J3 met, J4 breached, J7 met: 3 / 5.
        assert_eq!(resolution_on_time(&month(), &november()), fig(3, 5));
        // A target still running is not judged yet.
        let mut jobs = month();
        jobs[3].respond = SlaOutcome::Running;
        assert_eq!(response_on_time(&jobs, &november()), fig(4, 4));
    }

    #[test]
    fn mttr_and_completion() {
        // J1 240 + J2 2880 + J3 60 + J5 2880 = 6060 min over 4 = 1515 min.
        let f = mttr(&month(), &november());
        assert_eq!(f, fig(6060, 4));
        assert_eq!(Kpi::Mttr.value(&f), Some(1515.0));
        assert!(Kpi::Mttr.meets(1515.0, 2880.0));
        // Opened J1, J2, J3, J4, J7; completed before December: J1, J2, J3
        // (J7 on 12-02): 3 / 5.
        assert_eq!(completion(&month(), &november()), fig(3, 5));
    }

    #[test]
    fn punctuality_is_arrival_within_the_window() {
        // J1 09:30 in 09:00–11:00 yes; J2 12:30 after 12:00 no; J5 08:50
        // before 09:00 no (J3 has no appointment): 1 / 3.
        let f = punctuality(&month(), &november());
        assert_eq!(f, fig(1, 3));
        assert_eq!(Kpi::Punctuality.value(&f), Some(33.33));
    }

    #[test]
    fn callbacks_on_time_and_those_not_due_yet() {
        let cb = |due: &str, done: Option<&str>| CallbackFacts {
            technician_id: "t1".into(),
            due_at: t(due),
            done_at: done.map(t),
        };
        let callbacks = [
            cb("2026-11-04T12:00:00Z", Some("2026-11-04T10:00:00Z")), // on time
            cb("2026-11-07T09:00:00Z", Some("2026-11-08T09:00:00Z")), // a day late
            cb("2026-11-12T11:00:00Z", None),                         // never done
            cb("2026-12-01T00:00:00Z", None),                         // December's
        ];
        let p = november();
        // At the period's end: 1 on time of 3 due in November.
        assert_eq!(callback_on_time(&callbacks, &p, p.end), fig(1, 3));
        // Asked on 11-12 at 10:00, the third is not due yet: 1 / 2.
        assert_eq!(
            callback_on_time(&callbacks, &p, t("2026-11-12T10:00:00Z")),
            fig(1, 2)
        );
    }

    #[test]
    fn complaints_rate_and_handling_time() {
        let c = |received: &str, resolved: Option<&str>| ComplaintFacts {
            technician_id: String::new(),
            received_at: t(received),
            resolved_at: resolved.map(t),
        };
        let complaints = [
            c("2026-11-06T09:00:00Z", Some("2026-11-06T15:00:00Z")), // 360 min
            c("2026-11-15T10:00:00Z", None),
            c("2026-10-31T10:00:00Z", Some("2026-11-01T10:00:00Z")), // October's
        ];
        // 2 received in November over 4 jobs completed: 50 %.
        let rate = complaint_rate(&complaints, &month(), &november());
        assert_eq!(rate, fig(2, 4));
        assert!(!Kpi::ComplaintRate.meets(50.0, 2.0));
        // Resolved: only the first, 360 min.
        assert_eq!(complaint_handling(&complaints, &november()), fig(360, 1));
    }

    #[test]
    fn service_cost_is_parts_and_labour_per_completed_job() {
        // Labour at 60.00 an hour: J1 90 min = 9000, J2 105 = 10500, J3 30
        // = 3000, J5 120 = 12000 → 34500; parts 32000 + 0 + 1500 + 5000 =
        // 38500; 73000 cents over 4 jobs = 18250.
        let f = service_cost(&month(), &november(), 6000);
        assert_eq!(f, fig(73000, 4));
        assert_eq!(Kpi::ServiceCost.value(&f), Some(18250.0));
        // 95 min at 61.00: 9658.33 → 9658 cents.
        assert_eq!(labour_cost_cents(95, 6100), 9658);
        // Minutes from a device's clock may be absurd: saturate, never wrap.
        assert_eq!(labour_cost_cents(i64::MAX / 2, 100_000_000), i64::MAX / 60);
        let f = Figure::sum([i64::MAX, 5].into_iter());
        assert_eq!((f.numerator, f.denominator), (i64::MAX, 2));
    }

    #[test]
    fn an_empty_period_is_not_available_rather_than_zero() {
        let empty = Period {
            start: t("2025-01-01T00:00:00Z"),
            end: t("2025-02-01T00:00:00Z"),
        };
        let facts = Facts {
            jobs: &month(),
            callbacks: &[],
            complaints: &[],
        };
        for kpi in Kpi::ALL {
            let f = compute(
                kpi,
                facts,
                &empty,
                empty.end,
                &ClosedLoopPolicy::default(),
                &KpiPolicy::default(),
            );
            assert_eq!(f.denominator, 0, "{kpi:?}");
            assert_eq!(kpi.value(&f), None);
        }
        assert_eq!(Kpi::Csat.target(&KpiPolicy::default()), Some(85.0));
        assert_eq!(Kpi::ServiceCost.target(&KpiPolicy::default()), None);
    }
}
