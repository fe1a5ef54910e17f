//! Every configurable number of the service rules, with its default and the
//! seed document it comes from (`../shared/seeds/`, summarised in DESIGN.md
//! "Service rules"). One JSON document, stored in the database so every
//! instance applies the same rules (`GET`/`PUT /api/v1/policy`); a field left
//! out takes its default.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    pub sla: SlaPolicy,
    pub escalation: EscalationPolicy,
    pub closed_loop: ClosedLoopPolicy,
    pub survey: SurveyPolicy,
    pub complaints: ComplaintPolicy,
    pub kpi: KpiPolicy,
}

/// The satisfaction survey (seed 001): within 3 working days of completion,
/// three dimensions on a 5- or 7-point scale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SurveyPolicy {
    /// Scale of the customer's survey page: 5 or 7.
    pub scale: i64,
    /// The survey window closes this many working days after completion
    /// (the working-day calendar, see `Policy::working_calendar`); a survey
    /// link expires then.
    pub within_working_days: i64,
}

impl Default for SurveyPolicy {
    fn default() -> Self {
        Self {
            scale: 5,
            within_working_days: 3,
        }
    }
}

/// Complaints (seed 000 §5.3: product quality, service attitude, delivery
/// delay; seed 004: acknowledged within 5–10 minutes, resolved within 3–5
/// working days).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ComplaintPolicy {
    /// First response to the customer, in minutes counted like the ticket
    /// SLA (business hours if `sla.calendar` is set, else around the clock).
    pub respond_minutes: i64,
    /// Handling started (seed 000 §5.1: within 24 hours), counted like the
    /// response.
    pub start_minutes: i64,
    /// Resolution, in working days (each a full business day of the
    /// working-day calendar).
    pub resolve_working_days: i64,
}

impl Default for ComplaintPolicy {
    fn default() -> Self {
        Self {
            respond_minutes: 10,
            start_minutes: 24 * 60,
            resolve_working_days: 5,
        }
    }
}

/// After completion (seed 001): callback, survey thresholds, the
/// unsatisfied streak.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClosedLoopPolicy {
    /// The office calls the customer back this long after completion (48 h).
    pub callback_after_minutes: i64,
    /// A survey is satisfied when its mean score reaches this (per scale).
    pub satisfied_at_5: i64,
    pub satisfied_at_7: i64,
    /// Any dimension at or below this is a low score: a one-to-one callback.
    pub low_at_5: i64,
    pub low_at_7: i64,
    /// Unsatisfied services in a row that flag the customer and escalate.
    pub unsatisfied_in_a_row: usize,
}

impl Default for ClosedLoopPolicy {
    fn default() -> Self {
        Self {
            callback_after_minutes: 48 * 60,
            satisfied_at_5: 4,
            satisfied_at_7: 5,
            low_at_5: 2,
            low_at_7: 3,
            unsatisfied_in_a_row: 3,
        }
    }
}

/// KPI targets for the periodic reports (`service::kpi`, README "KPIs and
/// reports") and the labour rate that prices service cost. Only CSAT's
/// target is from the seeds (000/002/004: at least 85 %); the others are
/// sane starting points for the office to tune with `PUT /api/v1/policy`.
/// Shares are percentages (0–100); `*_max_*` are ceilings, the rest floors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct KpiPolicy {
    /// Surveys at or above "satisfied" (seeds: ≥ 85 %).
    pub csat_percent: f64,
    /// Completed jobs fixed on the first visit, never reopened (80 %).
    pub first_time_fix_percent: f64,
    /// Completed jobs fixed by a visit on site (90 %).
    pub on_site_fix_percent: f64,
    /// Responses within the SLA target (95 %).
    pub response_on_time_percent: f64,
    /// Resolutions within the SLA target (90 %).
    pub resolution_on_time_percent: f64,
    /// Mean time from registration to completion, at most (48 h: the
    /// priority-A resolve target).
    pub mttr_max_minutes: i64,
    /// Jobs opened in the period and completed (95 %).
    pub completion_percent: f64,
    /// First arrival within the appointment window (90 %).
    pub punctuality_percent: f64,
    /// Callbacks done by their due time (95 %).
    pub callback_on_time_percent: f64,
    /// Complaints per completed job, at most (2 %).
    pub complaint_rate_max_percent: f64,
    /// Mean time from receiving a complaint to resolving it, at most (48 h).
    pub complaint_handling_max_minutes: i64,
    /// Service cost (parts + labour) per completed job, at most; None: no
    /// target.
    pub cost_per_job_max_cents: Option<i64>,
    /// Labour price per hour of visit time, in the catalogue's currency
    /// cents (60.00 an hour; set your own).
    pub labour_cents_per_hour: i64,
}

impl Default for KpiPolicy {
    fn default() -> Self {
        Self {
            csat_percent: 85.0,
            first_time_fix_percent: 80.0,
            on_site_fix_percent: 90.0,
            response_on_time_percent: 95.0,
            resolution_on_time_percent: 90.0,
            mttr_max_minutes: 48 * 60,
            completion_percent: 95.0,
            punctuality_percent: 90.0,
            callback_on_time_percent: 95.0,
            complaint_rate_max_percent: 2.0,
            complaint_handling_max_minutes: 48 * 60,
            cost_per_job_max_cents: None,
            labour_cents_per_hour: 6000,
        }
    }
}

/// Response and resolution targets (seed 000 §2.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SlaPolicy {
    /// Per priority: A product failure or safety, B usage problem or parts
    /// replacement, C general inquiry.
    #[serde(rename = "A")]
    pub a: Target,
    #[serde(rename = "B")]
    pub b: Target,
    #[serde(rename = "C")]
    pub c: Target,
    /// Which status step counts as the response.
    pub respond_on: RespondOn,
    /// A running target is "at risk" once no more than this share of it is
    /// left (0.25: the last quarter).
    pub at_risk_share: f64,
    /// The clock stops while the ticket is `paused` (waiting on the
    /// customer, with a reason).
    pub pause_while_waiting: bool,
    /// Count only business hours; absent: around the clock.
    pub calendar: Option<Calendar>,
    /// A field step counts at the device's time, but no earlier than this
    /// before the server received it (a device offline longer is treated as
    /// if it had been this late).
    pub device_time_grace_minutes: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub respond_minutes: i64,
    pub resolve_minutes: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RespondOn {
    /// The technician sets off (`en_route`) or arrives (`on_site`), whichever
    /// comes first.
    EnRoute,
    /// Only arrival on site counts.
    OnSite,
    /// The first recorded contact with the customer (a call, a message:
    /// `POST /tickets/{id}/contacts`, seed 000 §4.2), or arrival on site if
    /// that comes first.
    FirstContact,
}

/// Business hours of the company, in its own time zone (a fixed offset from
/// UTC: the seeds' companies have no daylight saving).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Calendar {
    pub utc_offset_minutes: i32,
    /// ISO weekdays, 1 = Monday … 7 = Sunday.
    #[schema(value_type = Vec<IsoWeekday>)]
    pub working_days: Vec<u8>,
    /// "HH:MM", local time; `close` after `open`.
    pub open: String,
    pub close: String,
    pub holidays: Vec<NaiveDate>,
}

/// Who is told, and when (seed 000: technician → supervisor → manager).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EscalationPolicy {
    pub tiers: Vec<Tier>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub notify: TierRole,
    pub when: Trigger,
    /// With `breached`: how far past the target, as a share of it (0.5: half
    /// the target again). Ignored for `at_risk`.
    #[serde(default)]
    pub overdue_share: f64,
}

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TierRole {
    /// The technician assigned to the ticket.
    Technician,
    /// Every supervisor.
    Supervisor,
    /// Every manager.
    Manager,
}

impl TierRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TierRole::Technician => "technician",
            TierRole::Supervisor => "supervisor",
            TierRole::Manager => "manager",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    AtRisk,
    Breached,
}

impl Default for SlaPolicy {
    fn default() -> Self {
        const H: i64 = 60;
        Self {
            a: Target {
                respond_minutes: 2 * H,
                resolve_minutes: 48 * H,
            },
            b: Target {
                respond_minutes: 24 * H,
                resolve_minutes: 72 * H,
            },
            c: Target {
                respond_minutes: 48 * H,
                resolve_minutes: 120 * H,
            },
            respond_on: RespondOn::EnRoute,
            at_risk_share: 0.25,
            pause_while_waiting: true,
            calendar: None,
            device_time_grace_minutes: 240,
        }
    }
}

impl Default for Calendar {
    /// Monday to Friday, 09:00–18:00 at UTC+8 (the seeds' companies).
    fn default() -> Self {
        Self {
            utc_offset_minutes: 8 * 60,
            working_days: vec![1, 2, 3, 4, 5],
            open: "09:00".into(),
            close: "18:00".into(),
            holidays: Vec::new(),
        }
    }
}

impl Default for EscalationPolicy {
    fn default() -> Self {
        Self {
            tiers: vec![
                Tier {
                    notify: TierRole::Technician,
                    when: Trigger::AtRisk,
                    overdue_share: 0.0,
                },
                Tier {
                    notify: TierRole::Supervisor,
                    when: Trigger::Breached,
                    overdue_share: 0.0,
                },
                Tier {
                    notify: TierRole::Manager,
                    when: Trigger::Breached,
                    overdue_share: 0.5,
                },
            ],
        }
    }
}

impl SlaPolicy {
    pub fn target(&self, priority: &str) -> Option<Target> {
        match priority {
            "A" => Some(self.a),
            "B" => Some(self.b),
            "C" => Some(self.c),
            _ => None,
        }
    }
}

impl Calendar {
    /// (open, close) in minutes after local midnight.
    pub fn hours(&self) -> Result<(i64, i64), String> {
        let parse = |s: &str| -> Result<i64, String> {
            let (h, m) = s
                .split_once(':')
                .ok_or_else(|| format!("time `{s}` is not HH:MM"))?;
            let (h, m): (i64, i64) = (
                h.parse().map_err(|_| format!("time `{s}` is not HH:MM"))?,
                m.parse().map_err(|_| format!("time `{s}` is not HH:MM"))?,
            );
            if !(0..=24).contains(&h) || !(0..60).contains(&m) || h * 60 + m > 24 * 60 {
                return Err(format!("time `{s}` is out of range"));
            }
            Ok(h * 60 + m)
        };
        Ok((parse(&self.open)?, parse(&self.close)?))
    }
}

impl Policy {
    /// The calendar that rules given in working days are counted on: the
    /// company's business calendar, or Monday–Friday 09:00–18:00 at UTC+8
    /// (the seeds' companies) when it has none (ticket SLAs then run around
    /// the clock, but a "working day" still needs a calendar).
    pub fn working_calendar(&self) -> Calendar {
        self.sla.calendar.clone().unwrap_or_default()
    }

    /// Refuses numbers no rule can work with; the message says which.
    pub fn validate(&self) -> Result<(), String> {
        let s = &self.sla;
        for (p, t) in [("A", s.a), ("B", s.b), ("C", s.c)] {
            if t.respond_minutes <= 0 || t.resolve_minutes <= 0 {
                return Err(format!("sla.{p}: targets must be positive minutes"));
            }
            if t.respond_minutes > t.resolve_minutes {
                return Err(format!(
                    "sla.{p}: respond target is longer than resolve target"
                ));
            }
            if t.resolve_minutes > 366 * 24 * 60 {
                return Err(format!("sla.{p}: targets are at most a year"));
            }
        }
        if !(s.at_risk_share > 0.0 && s.at_risk_share < 1.0) {
            return Err("sla.at_risk_share must be between 0 and 1".into());
        }
        if !(0..=7 * 24 * 60).contains(&s.device_time_grace_minutes) {
            return Err("sla.device_time_grace_minutes: 0 to 7 days".into());
        }
        if let Some(c) = &s.calendar {
            let (open, close) = c.hours().map_err(|e| format!("sla.calendar: {e}"))?;
            // At least an hour a day keeps the clock's walk over business
            // days short (a year's target is then at most ~12,000 days).
            if close < open + 60 {
                return Err("sla.calendar: close must be at least an hour after open".into());
            }
            if c.working_days.is_empty() || c.working_days.iter().any(|d| !(1..=7).contains(d)) {
                return Err("sla.calendar.working_days: ISO weekdays 1 (Monday) to 7".into());
            }
            // unsigned_abs: `abs()` of i32::MIN overflows (a panic in debug
            // builds, and in release the check let it through).
            if c.utc_offset_minutes.unsigned_abs() > 14 * 60 {
                return Err("sla.calendar.utc_offset_minutes: at most ±14 h".into());
            }
            if c.holidays.len() > 1000 {
                return Err("sla.calendar.holidays: at most 1000".into());
            }
        }
        let c = &self.closed_loop;
        if !(1..=30 * 24 * 60).contains(&c.callback_after_minutes) {
            return Err("closed_loop.callback_after_minutes: 1 minute to 30 days".into());
        }
        if !(1..=5).contains(&c.satisfied_at_5) || !(1..=7).contains(&c.satisfied_at_7) {
            return Err("closed_loop.satisfied_at_5/7: a score on that scale".into());
        }
        if !(0..=5).contains(&c.low_at_5) || !(0..=7).contains(&c.low_at_7) {
            return Err("closed_loop.low_at_5/7: a score on that scale (0: never low)".into());
        }
        if !(1..=20).contains(&c.unsatisfied_in_a_row) {
            return Err("closed_loop.unsatisfied_in_a_row: 1 to 20".into());
        }
        if !matches!(self.survey.scale, 5 | 7) {
            return Err("survey.scale: 5 or 7".into());
        }
        if !(1..=30).contains(&self.survey.within_working_days) {
            return Err("survey.within_working_days: 1 to 30".into());
        }
        let k = &self.complaints;
        if !(1..=7 * 24 * 60).contains(&k.respond_minutes) {
            return Err("complaints.respond_minutes: 1 minute to 7 days".into());
        }
        if !(k.respond_minutes..=30 * 24 * 60).contains(&k.start_minutes) {
            return Err("complaints.start_minutes: from respond_minutes to 30 days".into());
        }
        if !(1..=60).contains(&k.resolve_working_days) {
            return Err("complaints.resolve_working_days: 1 to 60".into());
        }
        let k = &self.kpi;
        for (name, v) in [
            ("csat_percent", k.csat_percent),
            ("first_time_fix_percent", k.first_time_fix_percent),
            ("on_site_fix_percent", k.on_site_fix_percent),
            ("response_on_time_percent", k.response_on_time_percent),
            ("resolution_on_time_percent", k.resolution_on_time_percent),
            ("completion_percent", k.completion_percent),
            ("punctuality_percent", k.punctuality_percent),
            ("callback_on_time_percent", k.callback_on_time_percent),
            ("complaint_rate_max_percent", k.complaint_rate_max_percent),
        ] {
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("kpi.{name}: a percentage, 0 to 100"));
            }
        }
        for (name, v) in [
            ("mttr_max_minutes", k.mttr_max_minutes),
            (
                "complaint_handling_max_minutes",
                k.complaint_handling_max_minutes,
            ),
        ] {
            if !(1..=366 * 24 * 60).contains(&v) {
                return Err(format!("kpi.{name}: 1 minute to a year"));
            }
        }
        if k.cost_per_job_max_cents.is_some_and(|c| c < 0) {
            return Err("kpi.cost_per_job_max_cents: not negative".into());
        }
        if !(0..=100_000_000).contains(&k.labour_cents_per_hour) {
            return Err("kpi.labour_cents_per_hour: 0 to 100,000,000".into());
        }
        if self.escalation.tiers.len() > 10 {
            return Err("escalation.tiers: at most 10".into());
        }
        let mut roles: Vec<TierRole> = self.escalation.tiers.iter().map(|t| t.notify).collect();
        roles.sort();
        roles.dedup();
        if roles.len() != self.escalation.tiers.len() {
            return Err(
                "escalation.tiers: one tier per role (each is told once per target)".into(),
            );
        }
        for t in &self.escalation.tiers {
            if !(0.0..=10.0).contains(&t.overdue_share) {
                return Err("escalation.tiers[].overdue_share must be between 0 and 10".into());
            }
        }
        Ok(())
    }
}

/// The schema of an ISO weekday in `Calendar::working_days`: 1 (Monday)
/// to 7 (Sunday).
pub struct IsoWeekday;

impl utoipa::PartialSchema for IsoWeekday {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .minimum(Some(1))
            .maximum(Some(7))
            .into()
    }
}

impl utoipa::ToSchema for IsoWeekday {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seed_matrix_and_partial_documents_fill_in() {
        let p = Policy::default();
        assert_eq!(
            p.sla.target("A"),
            Some(Target {
                respond_minutes: 120,
                resolve_minutes: 2880
            })
        );
        assert_eq!(
            p.sla.target("B"),
            Some(Target {
                respond_minutes: 1440,
                resolve_minutes: 4320
            })
        );
        assert_eq!(
            p.sla.target("C"),
            Some(Target {
                respond_minutes: 2880,
                resolve_minutes: 7200
            })
        );
        assert_eq!(p.sla.target("D"), None);
        p.validate().unwrap();
        let partial: Policy = serde_json::from_str(
            r#"{"sla": {"A": {"respond_minutes": 60, "resolve_minutes": 600}, "calendar": {}}}"#,
        )
        .unwrap();
        assert_eq!(partial.sla.a.respond_minutes, 60);
        assert_eq!(partial.sla.b, p.sla.b);
        assert_eq!(partial.sla.calendar, Some(Calendar::default()));
        assert_eq!(partial.escalation, p.escalation);
        partial.validate().unwrap();
    }

    #[test]
    fn the_most_negative_utc_offset_is_refused_not_a_panic() {
        // Found by Schemathesis: `abs()` of i32::MIN overflowed.
        let p: Policy =
            serde_json::from_str(r#"{"sla": {"calendar": {"utc_offset_minutes": -2147483648}}}"#)
                .unwrap();
        assert!(p.validate().unwrap_err().contains("utc_offset_minutes"));
    }

    #[test]
    fn nonsense_is_refused_with_the_field_named() {
        let bad = |json: &str| {
            let p: Policy = serde_json::from_str(json).unwrap();
            p.validate().unwrap_err()
        };
        assert!(
            bad(r#"{"sla": {"A": {"respond_minutes": 0, "resolve_minutes": 10}}}"#)
                .contains("sla.A")
        );
        assert!(
            bad(r#"{"sla": {"B": {"respond_minutes": 100, "resolve_minutes": 10}}}"#)
                .contains("sla.B")
        );
        assert!(bad(r#"{"sla": {"at_risk_share": 1.5}}"#).contains("at_risk_share"));
        assert!(
            bad(r#"{"sla": {"calendar": {"open": "18:00", "close": "09:00"}}}"#).contains("close")
        );
        assert!(bad(r#"{"sla": {"calendar": {"working_days": [0]}}}"#).contains("working_days"));
        assert!(serde_json::from_str::<Policy>(r#"{"sla": {"typo": 1}}"#).is_err());
        assert!(bad(r#"{"kpi": {"csat_percent": 120}}"#).contains("kpi.csat_percent"));
        assert!(bad(r#"{"kpi": {"mttr_max_minutes": 0}}"#).contains("kpi.mttr_max_minutes"));
        assert!(
            bad(r#"{"kpi": {"labour_cents_per_hour": -1}}"#).contains("kpi.labour_cents_per_hour")
        );
    }
}
