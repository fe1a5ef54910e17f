//! Periodic reports (issue 11 §4): the facts of a period loaded from the
//! service history (both backends, set-based queries in chunks), the KPIs of
//! `service::kpi` for the company and each technician against the policy's
//! targets, the problems of the period, the trend over the three periods
//! before it, rendered as JSON, CSV or an SVG chart.
//!
//! Periods: an ISO week (`2026-W47`), a month (`2026-11`), a quarter
//! (`2026-Q4`) or a year (`2026`), or any date in one (`2026-11-15`). Their
//! boundaries are midnights in the company's time zone: the policy
//! calendar's `utc_offset_minutes` when a calendar is set, else UTC.
//!
//! Reproducible: the content depends only on the history and the policy
//! (no "generated at"; every list has a stable order), so the same history
//! gives byte-identical output. The one input that is not history is
//! `as_of`, the end of the period or, for a period still running, now: it
//! only decides whether a callback not yet done is already late, and
//! whether the report is `final`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use diesel::prelude::*;
use fieldsync_shared::roles::Role;
use serde::Serialize;

use super::checks;
use super::export::csv_field;
use super::{policy_store, reconciliation};
use crate::db::schema::{
    callbacks, complaints, parts_used, status_events, ticket_contacts, tickets, visits,
};
use crate::db::{on_conn, DbConn, DbError};
use crate::projection::VisitRow;
use crate::service::closed_loop::Scores;
use crate::service::kpi::{
    self, CallbackFacts, ComplaintFacts, Figure, JobFacts, Kpi, Period, SlaOutcome, Unit, VisitFact,
};
use crate::service::policy::{Policy, RespondOn};
use crate::service::sla::{self, Step};

/// Who may read reports and anyone's KPIs: the office roles. A technician
/// reads only their own KPIs (`GET /kpis`), never a report.
pub fn may_read_reports(role: Role) -> bool {
    use Role::*;
    matches!(role, Dispatcher | BackOffice | Supervisor | Manager | Admin)
}

/// A bar's label in the chart (the keys are too long for ten bars).
fn short_label(kpi: &str) -> &str {
    match kpi {
        "first_time_fix" => "first-time fix",
        "on_site_fix" => "on-site fix",
        "response_on_time" => "response",
        "resolution_on_time" => "resolution",
        "callback_on_time" => "callbacks",
        "complaint_rate" => "complaints",
        other => other,
    }
}

/// Periods before the report's own in its trend.
pub const TREND_PERIODS: usize = 3;
/// Bound parameters per `IN (…)` query (under both backends' limits).
const CHUNK: usize = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodKind {
    Week,
    Month,
    Quarter,
    Year,
}

impl PeriodKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "week" => Some(Self::Week),
            "month" => Some(Self::Month),
            "quarter" => Some(Self::Quarter),
            "year" => Some(Self::Year),
            _ => None,
        }
    }
}

/// A calendar period: local dates `[start, end)` in the company's zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportPeriod {
    pub kind: PeriodKind,
    pub start: NaiveDate,
    pub end: NaiveDate,
}

fn month_start(y: i32, m: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, 1)
}

fn add_months(d: NaiveDate, months: i32) -> Option<NaiveDate> {
    let total = d.year() * 12 + d.month0() as i32 + months;
    month_start(total.div_euclid(12), total.rem_euclid(12) as u32 + 1)
}

impl ReportPeriod {
    /// The period of `kind` that contains `day`.
    pub fn containing(kind: PeriodKind, day: NaiveDate) -> Option<Self> {
        let start = match kind {
            PeriodKind::Week => day - Duration::days(day.weekday().num_days_from_monday() as i64),
            PeriodKind::Month => month_start(day.year(), day.month())?,
            PeriodKind::Quarter => month_start(day.year(), day.month0() / 3 * 3 + 1)?,
            PeriodKind::Year => month_start(day.year(), 1)?,
        };
        Self::from_start(kind, start)
    }

    fn from_start(kind: PeriodKind, start: NaiveDate) -> Option<Self> {
        let end = match kind {
            PeriodKind::Week => start + Duration::days(7),
            PeriodKind::Month => add_months(start, 1)?,
            PeriodKind::Quarter => add_months(start, 3)?,
            PeriodKind::Year => add_months(start, 12)?,
        };
        Some(Self { kind, start, end })
    }

    /// Parses `at` for `kind`: `2026-W47`, `2026-11`, `2026-Q4`, `2026`, or
    /// a date (`2026-11-15`) in the period. The error says what is expected.
    pub fn parse(kind: PeriodKind, at: &str) -> Result<Self, String> {
        let at = at.trim();
        let expected = match kind {
            PeriodKind::Week => "an ISO week like 2026-W47",
            PeriodKind::Month => "a month like 2026-11",
            PeriodKind::Quarter => "a quarter like 2026-Q4",
            PeriodKind::Year => "a year like 2026",
        };
        let bad = || format!("`at` must be {expected} (or a date like 2026-11-15), not `{at}`");
        if at.len() == 10 {
            if let Ok(day) = NaiveDate::parse_from_str(at, "%Y-%m-%d") {
                return Self::containing(kind, day).ok_or_else(bad);
            }
        }
        let year = |s: &str| -> Option<i32> {
            (s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
                .filter(|y| (1970..=9999).contains(y))
        };
        let number = |s: &str, max: u32| -> Option<u32> {
            (!s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
                .filter(|n| (1..=max).contains(n))
        };
        let start = match kind {
            PeriodKind::Week => at.split_once("-W").and_then(|(y, w)| {
                NaiveDate::from_isoywd_opt(year(y)?, number(w, 53)?, chrono::Weekday::Mon)
            }),
            PeriodKind::Month => at
                .split_once('-')
                .and_then(|(y, m)| month_start(year(y)?, number(m, 12)?)),
            PeriodKind::Quarter => at
                .split_once("-Q")
                .and_then(|(y, q)| month_start(year(y)?, (number(q, 4)? - 1) * 3 + 1)),
            PeriodKind::Year => year(at).and_then(|y| month_start(y, 1)),
        };
        start
            .and_then(|s| Self::from_start(kind, s))
            .ok_or_else(bad)
    }

    /// Its name: `2026-W47`, `2026-11`, `2026-Q4`, `2026`.
    pub fn label(&self) -> String {
        let s = self.start;
        match self.kind {
            PeriodKind::Week => {
                let w = s.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            PeriodKind::Month => format!("{}-{:02}", s.year(), s.month()),
            PeriodKind::Quarter => format!("{}-Q{}", s.year(), s.month0() / 3 + 1),
            PeriodKind::Year => format!("{}", s.year()),
        }
    }

    pub fn previous(&self) -> Option<Self> {
        Self::containing(self.kind, self.start.pred_opt()?)
    }

    /// The UTC instants of its boundaries at `offset_minutes` east of UTC.
    pub fn utc(&self, offset_minutes: i32) -> Option<Period> {
        let zone = FixedOffset::east_opt(offset_minutes * 60)?;
        let at = |d: NaiveDate| {
            zone.from_local_datetime(&d.and_hms_opt(0, 0, 0)?)
                .single()
                .map(|t| t.with_timezone(&Utc))
        };
        Some(Period {
            start: at(self.start)?,
            end: at(self.end)?,
        })
    }
}

/// The company's offset from UTC for period boundaries.
pub fn utc_offset_minutes(policy: &Policy) -> i32 {
    policy
        .sla
        .calendar
        .as_ref()
        .map_or(0, |c| c.utc_offset_minutes)
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The history's time text for SQL bounds (UTC, milliseconds, as status
/// events and tickets carry it).
fn bound(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A job with what the problems section needs besides its KPI facts.
#[derive(Clone, Debug)]
pub struct LoadedJob {
    pub facts: JobFacts,
    pub product: String,
    pub model: String,
    /// The asset record, or the serial when the ticket names none.
    pub asset: String,
    pub serial: String,
    pub fault: String,
    pub respond_state: String,
    pub resolve_state: String,
}

/// Everything a report over `range` reads.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub jobs: Vec<LoadedJob>,
    pub callbacks: Vec<CallbackFacts>,
    pub complaints: Vec<ComplaintFacts>,
    /// User id → username.
    pub usernames: HashMap<String, String>,
}

type TicketCols = (
    (String, String, String, String, String),
    (String, String, String, String, String),
    (String, String, String, String),
    (Option<i64>, Option<i64>, Option<i64>, Option<i64>),
);

/// Loads the facts of jobs opened or completed in `range`, callbacks due and
/// complaints received in it. `progress` hears a line per step.
/// Each job's SLA states are computed from its status history (and first
/// contact, if the policy counts it) as of the range's end, or now if that
/// is sooner — not read from `ticket_sla`, the watch's latest view — so a
/// report of a past period depends on the history only.
pub fn load(
    c: &mut DbConn,
    range: &Period,
    policy: &Policy,
    now: DateTime<Utc>,
    max_tickets: i64,
    progress: &mut dyn FnMut(&str),
) -> Result<Loaded, ReportError> {
    // Text bounds a day wider than the range: the exact test is on parsed
    // times below, so a row written in another format or offset is not lost.
    let (lo, hi) = (
        bound(range.start - Duration::days(1)),
        bound(range.end + Duration::days(1)),
    );
    let in_range: i64 = on_conn!(c, |c| tickets::table
        .filter(tickets::created_at.lt(&hi))
        .filter(
            tickets::created_at
                .ge(&lo)
                .or(tickets::completed_at.ge(&lo))
        )
        .count()
        .get_result(c))?;
    if in_range > max_tickets {
        return Err(ReportError::TooLarge(in_range));
    }
    let rows: Vec<TicketCols> = on_conn!(c, |c| tickets::table
        .filter(tickets::created_at.lt(&hi))
        .filter(
            tickets::created_at
                .ge(&lo)
                .or(tickets::completed_at.ge(&lo))
        )
        .order(tickets::doc_id)
        .select((
            (
                tickets::doc_id,
                tickets::ticket_no,
                tickets::status,
                tickets::priority,
                tickets::technician_id,
            ),
            (
                tickets::created_at,
                tickets::completed_at,
                tickets::appointment_start,
                tickets::appointment_end,
                tickets::product,
            ),
            (
                tickets::model,
                tickets::asset_id,
                tickets::serial,
                tickets::fault_description,
            ),
            (
                tickets::survey_scale,
                tickets::survey_efficiency,
                tickets::survey_attitude,
                tickets::survey_reasonableness,
            ),
        ))
        .load(c))?;
    progress(&format!("{} ticket(s) in range", rows.len()));
    let ids: Vec<String> = rows.iter().map(|r| r.0 .0.clone()).collect();
    let catalogue = reconciliation::catalogue(c)?;
    let mut visits_of: HashMap<String, Vec<VisitRow>> = HashMap::new();
    let mut parts_of: HashMap<String, i64> = HashMap::new();
    let mut first_contact_of: HashMap<String, DateTime<Utc>> = HashMap::new();
    let as_of = now.min(range.end);
    let mut events_of: HashMap<String, Vec<Step>> = HashMap::new();
    for (i, chunk) in ids.chunks(CHUNK).enumerate() {
        let vs: Vec<VisitRow> = on_conn!(c, |c| visits::table
            .filter(visits::doc_id.eq_any(chunk))
            .order((visits::doc_id, visits::position))
            .select(VisitRow::as_select())
            .load(c))?;
        for v in vs {
            visits_of.entry(v.doc_id.clone()).or_default().push(v);
        }
        let ps: Vec<(String, String, i64)> = on_conn!(c, |c| parts_used::table
            .filter(parts_used::doc_id.eq_any(chunk))
            .select((parts_used::doc_id, parts_used::part_no, parts_used::qty))
            .load(c))?;
        for (doc, part_no, qty) in ps {
            // Implausible quantities (reconciliation flags them) are left
            // out: a negative line must not lower a technician's cost.
            if !crate::records::is_plausible_part_qty(qty) {
                continue;
            }
            let cost = catalogue
                .get(&part_no)
                .and_then(|p| p.unit_cost_cents.checked_mul(qty))
                .unwrap_or(0);
            let sum = parts_of.entry(doc).or_default();
            *sum = sum.saturating_add(cost);
        }
        if policy.sla.respond_on == RespondOn::FirstContact {
            let cs: Vec<(String, String)> = on_conn!(c, |c| ticket_contacts::table
                .filter(ticket_contacts::doc_id.eq_any(chunk))
                .select((ticket_contacts::doc_id, ticket_contacts::at))
                .load(c))?;
            for (doc, at) in cs {
                if let Some(at) = parse_time(&at) {
                    let first = first_contact_of.entry(doc).or_insert(at);
                    *first = (*first).min(at);
                }
            }
        }
        let es: Vec<(String, String, String, String)> = on_conn!(c, |c| status_events::table
            .filter(status_events::doc_id.eq_any(chunk))
            .order((status_events::doc_id, status_events::seq))
            .select((
                status_events::doc_id,
                status_events::to_status,
                status_events::at,
                status_events::device_at
            ))
            .load(c))?;
        for (doc, to, at, device_at) in es {
            if let Some(at) = parse_time(&at) {
                events_of.entry(doc).or_default().push(Step {
                    to,
                    at,
                    device_at: parse_time(&device_at),
                });
            }
        }
        progress(&format!(
            "  {}/{} ticket(s) loaded",
            (i * CHUNK + chunk.len()),
            ids.len()
        ));
    }
    let mut technician_of: HashMap<String, String> = HashMap::new();
    let mut jobs = Vec::with_capacity(rows.len());
    for (
        (doc_id, ticket_no, status, priority, technician_id),
        (created, completed, a_start, a_end, product),
        (model, asset_id, serial, fault),
        (scale, e, a, r),
    ) in rows
    {
        technician_of.insert(doc_id.clone(), technician_id.clone());
        let Some(created_at) = parse_time(&created) else {
            continue;
        };
        let events = events_of.remove(&doc_id).unwrap_or_default();
        let first_contact = first_contact_of.remove(&doc_id);
        let (respond_state, resolve_state, met) =
            match sla::evaluate_with_contact(&policy.sla, &priority, &events, first_contact, as_of)
            {
                Some(e) => (
                    e.respond.state.as_str().to_string(),
                    e.resolve.state.as_str().to_string(),
                    e.resolve.met_at.map(bound).unwrap_or_default(),
                ),
                None => Default::default(),
            };
        let visit_rows = visits_of.remove(&doc_id).unwrap_or_default();
        let labour = checks::labour(&visit_rows);
        let reopened = events
            .iter()
            .skip_while(|e| e.to != "completed")
            .any(|e| e.to == "reopened");
        let completed_at = parse_time(&met).or_else(|| parse_time(&completed));
        let appointment = parse_time(&a_start).zip(parse_time(&a_end));
        let facts = JobFacts {
            doc_id: doc_id.clone(),
            ticket_no,
            priority,
            technician_id,
            created_at,
            completed_at,
            cancelled: status == "cancelled",
            reopened,
            appointment,
            visits: visit_rows
                .iter()
                .map(|v| VisitFact {
                    arrived_at: parse_time(&v.arrived_at),
                    fixed: v.fixed,
                })
                .collect(),
            // A visit never checked out, or longer than a day (flagged by
            // reconciliation), is left out rather than billed for days.
            labour_minutes: labour
                .visits
                .iter()
                .filter_map(|v| v.minutes)
                .filter(|m| (0..=checks::MAX_VISIT_MINUTES).contains(m))
                .sum(),
            parts_cost_cents: parts_of.remove(&doc_id).unwrap_or(0),
            respond: SlaOutcome::from_state(&respond_state),
            resolve: SlaOutcome::from_state(&resolve_state),
            survey: scale.map(|scale| Scores {
                scale,
                efficiency: e,
                attitude: a,
                reasonableness: r,
            }),
        };
        // Keep only what the range touches (the SQL bounds were wider).
        if !(range.contains(created_at) || range.has(completed_at)) {
            continue;
        }
        jobs.push(LoadedJob {
            facts,
            product,
            model,
            asset: if asset_id.is_empty() {
                serial.clone()
            } else {
                asset_id
            },
            serial,
            fault,
            respond_state,
            resolve_state,
        });
    }

    let cbs: Vec<(String, String, Option<String>)> = on_conn!(c, |c| callbacks::table
        .filter(callbacks::due_at.ge(&lo))
        .filter(callbacks::due_at.lt(&hi))
        .order(callbacks::id)
        .select((callbacks::doc_id, callbacks::due_at, callbacks::done_at))
        .load(c))?;
    let cps: Vec<(String, String, Option<String>)> = on_conn!(c, |c| complaints::table
        .filter(complaints::received_at.ge(&lo))
        .filter(complaints::received_at.lt(&hi))
        .order(complaints::id)
        .select((
            complaints::doc_id,
            complaints::received_at,
            complaints::resolved_at
        ))
        .load(c))?;
    // Technicians of callbacks' and complaints' jobs outside the range.
    let missing: Vec<String> = cbs
        .iter()
        .map(|r| &r.0)
        .chain(cps.iter().map(|r| &r.0))
        .filter(|d| !d.is_empty() && !technician_of.contains_key(*d))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for chunk in missing.chunks(CHUNK) {
        let found: Vec<(String, String)> = on_conn!(c, |c| tickets::table
            .filter(tickets::doc_id.eq_any(chunk))
            .select((tickets::doc_id, tickets::technician_id))
            .load(c))?;
        technician_of.extend(found);
    }
    let tech = |doc: &str| technician_of.get(doc).cloned().unwrap_or_default();
    let callbacks = cbs
        .iter()
        .filter_map(|(doc, due, done)| {
            let due_at = parse_time(due).filter(|t| range.contains(*t))?;
            Some(CallbackFacts {
                technician_id: tech(doc),
                due_at,
                done_at: done.as_deref().and_then(parse_time),
            })
        })
        .collect();
    let complaints = cps
        .iter()
        .filter_map(|(doc, received, resolved)| {
            let received_at = parse_time(received).filter(|t| range.contains(*t))?;
            Some(ComplaintFacts {
                technician_id: tech(doc),
                received_at,
                resolved_at: resolved.as_deref().and_then(parse_time),
            })
        })
        .collect();
    Ok(Loaded {
        jobs,
        callbacks,
        complaints,
        usernames: reconciliation::usernames(c)?,
    })
}

/// One KPI's figure with its target.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KpiLine {
    pub kpi: &'static str,
    pub name: &'static str,
    pub unit: Unit,
    pub numerator: i64,
    pub denominator: i64,
    /// In the unit (percent, minutes or cents), two decimals; null: n/a.
    pub value: Option<f64>,
    pub target: Option<f64>,
    /// `min` (at least) or `max` (at most).
    pub target_kind: &'static str,
    /// null when there is no value or no target.
    pub met: Option<bool>,
    /// "17 / 20 = 85.00 %", "n/a (0 / 0)".
    pub display: String,
}

fn format_value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Percent => format!("{v:.2} %"),
        Unit::Minutes => format!("{v:.2} min"),
        Unit::Cents => format!("{:.2}", v / 100.0),
    }
}

pub fn kpi_line(kpi: Kpi, f: Figure, policy: &Policy) -> KpiLine {
    let value = kpi.value(&f);
    let target = kpi.target(&policy.kpi);
    let unit = kpi.unit();
    let display = match value {
        Some(v) => format!(
            "{} / {} = {}",
            f.numerator,
            f.denominator,
            format_value(unit, v)
        ),
        None => format!("n/a ({} / {})", f.numerator, f.denominator),
    };
    KpiLine {
        kpi: kpi.key(),
        name: kpi.name(),
        unit,
        numerator: f.numerator,
        denominator: f.denominator,
        value,
        target,
        target_kind: if kpi.higher_is_better() { "min" } else { "max" },
        met: value.zip(target).map(|(v, t)| kpi.meets(v, t)),
        display,
    }
}

/// The KPIs of one scope over `period`.
pub fn kpi_lines(
    f: kpi::Facts<'_>,
    period: &Period,
    as_of: DateTime<Utc>,
    policy: &Policy,
) -> Vec<KpiLine> {
    Kpi::ALL
        .into_iter()
        .map(|k| {
            let fig = kpi::compute(k, f, period, as_of, &policy.closed_loop, &policy.kpi);
            kpi_line(k, fig, policy)
        })
        .collect()
}

/// A scope's facts, owned.
#[derive(Default)]
struct Scope {
    jobs: Vec<JobFacts>,
    callbacks: Vec<CallbackFacts>,
    complaints: Vec<ComplaintFacts>,
}

impl Scope {
    fn facts(&self) -> kpi::Facts<'_> {
        kpi::Facts {
            jobs: &self.jobs,
            callbacks: &self.callbacks,
            complaints: &self.complaints,
        }
    }
}

/// Per technician id (only those with something in the facts).
fn by_technician(l: &Loaded) -> BTreeMap<String, Scope> {
    let mut out: BTreeMap<String, Scope> = BTreeMap::new();
    for j in &l.jobs {
        if !j.facts.technician_id.is_empty() {
            out.entry(j.facts.technician_id.clone())
                .or_default()
                .jobs
                .push(j.facts.clone());
        }
    }
    for cb in &l.callbacks {
        if !cb.technician_id.is_empty() {
            out.entry(cb.technician_id.clone())
                .or_default()
                .callbacks
                .push(cb.clone());
        }
    }
    for cp in &l.complaints {
        if !cp.technician_id.is_empty() {
            out.entry(cp.technician_id.clone())
                .or_default()
                .complaints
                .push(cp.clone());
        }
    }
    out
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PeriodInfo {
    pub kind: PeriodKind,
    pub label: String,
    /// UTC instants, `[start, end)`.
    pub start: String,
    pub end: String,
    pub utc_offset_minutes: i32,
    /// The period is over: its figures no longer move with time alone.
    #[serde(rename = "final")]
    pub is_final: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Overview {
    pub jobs_opened: i64,
    pub jobs_completed: i64,
    /// Opened in the period and cancelled.
    pub jobs_cancelled: i64,
    /// Visits of the jobs completed in the period.
    pub visits: i64,
    pub labour_minutes: i64,
    pub labour_cost_cents: i64,
    pub parts_cost_cents: i64,
    pub surveys: i64,
    pub callbacks_due: i64,
    pub complaints_received: i64,
    /// Opened in the period with a target met late or breached.
    pub tickets_breached: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TechnicianKpis {
    pub technician_id: String,
    pub username: String,
    pub kpis: Vec<KpiLine>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Count {
    pub key: String,
    pub count: i64,
    /// The first 20 ticket numbers (`count` has them all).
    pub tickets: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BreachedTicket {
    pub ticket_no: String,
    pub doc_id: String,
    pub priority: String,
    pub technician: String,
    pub respond: String,
    pub resolve: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Problems {
    /// Fault descriptions of the jobs opened in the period (lower-cased,
    /// spaces collapsed), most frequent first; at most 10.
    pub top_faults: Vec<Count>,
    /// Assets with two or more jobs opened in the period.
    pub repeat_assets: Vec<Count>,
    /// Product models (`product / model`) with two or more jobs opened.
    pub repeat_models: Vec<Count>,
    /// Jobs opened in the period with a target met late or breached (the
    /// first 200 by ticket number) …
    pub breached: Vec<BreachedTicket>,
    /// … and how many there are.
    pub breached_total: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrendPoint {
    pub period: String,
    pub numerator: i64,
    pub denominator: i64,
    pub value: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trend {
    pub kpi: &'static str,
    pub name: &'static str,
    pub unit: Unit,
    /// Oldest first; the last is the report's own period.
    pub points: Vec<TrendPoint>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub period: PeriodInfo,
    pub overview: Overview,
    /// The company's KPIs against the targets.
    pub kpis: Vec<KpiLine>,
    /// Teams are not modelled: the company and each technician (the job's
    /// assignee), by username.
    pub technicians: Vec<TechnicianKpis>,
    pub problems: Problems,
    pub trends: Vec<Trend>,
}

fn normalise(s: &str) -> String {
    let s = s
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    if s.is_empty() {
        "(no description)".into()
    } else {
        s.chars().take(80).collect()
    }
}

/// Ticket numbers listed per problem (its `count` is the whole number), and
/// breached tickets listed (`breached_total` counts them all): a year's
/// report stays readable and bounded.
const MAX_LISTED: usize = 20;
const MAX_BREACHED_LISTED: usize = 200;

fn counts(items: impl Iterator<Item = (String, String)>, min: i64, top: usize) -> Vec<Count> {
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (key, ticket) in items {
        map.entry(key).or_default().insert(ticket);
    }
    let mut out: Vec<Count> = map
        .into_iter()
        .map(|(key, tickets)| Count {
            key,
            count: tickets.len() as i64,
            tickets: tickets.into_iter().take(MAX_LISTED).collect(),
        })
        .filter(|c| c.count >= min)
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    out.truncate(top);
    out
}

fn problems(l: &Loaded, p: &Period, names: &dyn Fn(&str) -> String) -> Problems {
    let opened: Vec<&LoadedJob> = l
        .jobs
        .iter()
        .filter(|j| !j.facts.cancelled && p.contains(j.facts.created_at))
        .collect();
    let top_faults = counts(
        opened
            .iter()
            .map(|j| (normalise(&j.fault), j.facts.ticket_no.clone())),
        1,
        10,
    );
    let repeat_assets = counts(
        opened.iter().filter(|j| !j.asset.is_empty()).map(|j| {
            let name = format!("{} {} ({})", j.product, j.model, j.serial);
            (
                format!("{} {}", j.asset, name.trim()),
                j.facts.ticket_no.clone(),
            )
        }),
        2,
        50,
    );
    let repeat_models = counts(
        opened
            .iter()
            .filter(|j| !(j.product.is_empty() && j.model.is_empty()))
            .map(|j| {
                (
                    format!("{} / {}", j.product, j.model),
                    j.facts.ticket_no.clone(),
                )
            }),
        2,
        50,
    );
    let late = |s: &str| matches!(s, "met_late" | "breached");
    let mut breached: Vec<BreachedTicket> = opened
        .iter()
        .filter(|j| late(&j.respond_state) || late(&j.resolve_state))
        .map(|j| BreachedTicket {
            ticket_no: j.facts.ticket_no.clone(),
            doc_id: j.facts.doc_id.clone(),
            priority: j.facts.priority.clone(),
            technician: names(&j.facts.technician_id),
            respond: j.respond_state.clone(),
            resolve: j.resolve_state.clone(),
        })
        .collect();
    breached.sort_by(|a, b| (&a.ticket_no, &a.doc_id).cmp(&(&b.ticket_no, &b.doc_id)));
    let breached_total = breached.len() as i64;
    breached.truncate(MAX_BREACHED_LISTED);
    Problems {
        top_faults,
        repeat_assets,
        repeat_models,
        breached,
        breached_total,
    }
}

fn overview(l: &Loaded, p: &Period, policy: &Policy, tickets_breached: i64) -> Overview {
    let mut o = Overview {
        tickets_breached,
        ..Overview::default()
    };
    for j in &l.jobs {
        let f = &j.facts;
        if p.contains(f.created_at) {
            if f.cancelled {
                o.jobs_cancelled += 1;
            } else {
                o.jobs_opened += 1;
            }
        }
        if !f.cancelled && p.has(f.completed_at) {
            o.jobs_completed += 1;
            o.visits += f.visits.len() as i64;
            o.labour_minutes += f.labour_minutes;
            o.labour_cost_cents +=
                kpi::labour_cost_cents(f.labour_minutes, policy.kpi.labour_cents_per_hour);
            o.parts_cost_cents += f.parts_cost_cents;
            o.surveys += i64::from(f.survey.is_some());
        }
    }
    o.callbacks_due = l.callbacks.iter().filter(|c| p.contains(c.due_at)).count() as i64;
    o.complaints_received = l
        .complaints
        .iter()
        .filter(|c| p.contains(c.received_at))
        .count() as i64;
    o
}

/// Assembles the report of `period` from facts loaded over it and the
/// `TREND_PERIODS` before it. Pure.
pub fn assemble(
    loaded: &Loaded,
    period: &ReportPeriod,
    policy: &Policy,
    now: DateTime<Utc>,
    progress: &mut dyn FnMut(&str),
) -> Result<Report, String> {
    let offset = utc_offset_minutes(policy);
    let utc = period
        .utc(offset)
        .ok_or("the period is out of range for the company's offset")?;
    let as_of = now.min(utc.end);
    let names = |id: &str| -> String {
        if id.is_empty() {
            return String::new();
        }
        loaded
            .usernames
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    };
    let company = Scope {
        jobs: loaded.jobs.iter().map(|j| j.facts.clone()).collect(),
        callbacks: loaded.callbacks.clone(),
        complaints: loaded.complaints.clone(),
    };
    let kpis = kpi_lines(company.facts(), &utc, as_of, policy);
    let mut technicians: Vec<TechnicianKpis> = by_technician(loaded)
        .into_iter()
        .map(|(id, scope)| TechnicianKpis {
            username: names(&id),
            kpis: kpi_lines(scope.facts(), &utc, as_of, policy),
            technician_id: id,
        })
        // Technicians with nothing in this period (only in the trend's).
        .filter(|t| t.kpis.iter().any(|k| k.denominator > 0 || k.numerator > 0))
        .collect();
    technicians
        .sort_by(|a, b| (&a.username, &a.technician_id).cmp(&(&b.username, &b.technician_id)));
    let problems = problems(loaded, &utc, &names);
    let overview = overview(loaded, &utc, policy, problems.breached_total);

    // The trend: the previous periods, oldest first, then this one.
    let mut periods = vec![period.clone()];
    for _ in 0..TREND_PERIODS {
        let prev = periods
            .last()
            .and_then(ReportPeriod::previous)
            .ok_or("the trend reaches before the calendar")?;
        periods.push(prev);
    }
    periods.reverse();
    let mut columns = Vec::new();
    for (i, rp) in periods.iter().enumerate() {
        let u = rp.utc(offset).ok_or("a trend period is out of range")?;
        columns.push((
            rp.label(),
            kpi_lines(company.facts(), &u, now.min(u.end), policy),
        ));
        progress(&format!(
            "  period {} computed ({}/{})",
            rp.label(),
            i + 1,
            periods.len()
        ));
    }
    let trends = Kpi::ALL
        .into_iter()
        .enumerate()
        .map(|(i, k)| Trend {
            kpi: k.key(),
            name: k.name(),
            unit: k.unit(),
            points: columns
                .iter()
                .map(|(label, lines)| TrendPoint {
                    period: label.clone(),
                    numerator: lines[i].numerator,
                    denominator: lines[i].denominator,
                    value: lines[i].value,
                })
                .collect(),
        })
        .collect();
    Ok(Report {
        period: PeriodInfo {
            kind: period.kind,
            label: period.label(),
            start: fmt_time(utc.start),
            end: fmt_time(utc.end),
            utc_offset_minutes: offset,
            is_final: now >= utc.end,
        },
        overview,
        kpis,
        technicians,
        problems,
        trends,
    })
}

/// Most tickets one report or KPI request may read (each costs a few KiB
/// while the report is assembled): bigger ranges are refused, not loaded.
pub const MAX_REPORT_TICKETS: i64 = 200_000;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    BadPeriod(String),
    #[error("{0} tickets in range, more than the {MAX_REPORT_TICKETS} one request reads: choose a shorter period, or use `fieldsync report`")]
    TooLarge(i64),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for ReportError {
    fn from(e: diesel::result::Error) -> Self {
        ReportError::Db(e.into())
    }
}

/// Loads and assembles the report of `period` at `now` (the service clock),
/// refusing ranges of more than `max_tickets` (the API's bound; the CLI has
/// none).
pub fn build(
    c: &mut DbConn,
    period: &ReportPeriod,
    now: DateTime<Utc>,
    max_tickets: i64,
    progress: &mut dyn FnMut(&str),
) -> Result<Report, ReportError> {
    let policy = policy_store::load(c)?;
    let offset = utc_offset_minutes(&policy);
    let mut first = period.clone();
    for _ in 0..TREND_PERIODS {
        first = first.previous().ok_or_else(|| {
            ReportError::BadPeriod("the trend reaches before the calendar".into())
        })?;
    }
    let (Some(from), Some(to)) = (first.utc(offset), period.utc(offset)) else {
        return Err(ReportError::BadPeriod(
            "the period is out of range for the company's offset".into(),
        ));
    };
    let range = Period {
        start: from.start,
        end: to.end,
    };
    progress(&format!(
        "loading {} to {} ({} and the {TREND_PERIODS} before it)",
        fmt_time(range.start),
        fmt_time(range.end),
        period.label()
    ));
    let loaded = load(c, &range, &policy, now, max_tickets, progress)?;
    assemble(&loaded, period, &policy, now, progress).map_err(ReportError::BadPeriod)
}

/// The KPIs between two instants, for the company or one technician.
pub fn kpis_between(
    c: &mut DbConn,
    range: &Period,
    technician_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<KpiLine>, ReportError> {
    let policy = policy_store::load(c)?;
    let loaded = load(c, range, &policy, now, MAX_REPORT_TICKETS, &mut |_| {})?;
    let as_of = now.min(range.end);
    let scope = match technician_id {
        Some(id) => by_technician(&loaded).remove(id).unwrap_or_default(),
        None => Scope {
            jobs: loaded.jobs.into_iter().map(|j| j.facts).collect(),
            callbacks: loaded.callbacks,
            complaints: loaded.complaints,
        },
    };
    Ok(kpi_lines(scope.facts(), range, as_of, &policy))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Svg,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "json" => Some(Self::Json),
            "csv" => Some(Self::Csv),
            "svg" => Some(Self::Svg),
            _ => None,
        }
    }
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Svg => "image/svg+xml",
        }
    }
}

pub fn render(r: &Report, format: Format) -> Result<String, String> {
    match format {
        Format::Json => serde_json::to_string_pretty(r)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
        Format::Csv => Ok(render_csv(r)),
        Format::Svg => render_svg(r),
    }
}

/// The CSV's columns: one table for every section.
pub const CSV_COLUMNS: &[&str] = &[
    "section",
    "scope",
    "period",
    "key",
    "name",
    "numerator",
    "denominator",
    "value",
    "unit",
    "target",
    "target_kind",
    "met",
    "detail",
];

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn unit_str(u: Unit) -> &'static str {
    match u {
        Unit::Percent => "percent",
        Unit::Minutes => "minutes",
        Unit::Cents => "cents",
    }
}

/// CSV (RFC 4180, a header row): the overview (`overview`, value only), the
/// KPIs (`kpi`, scope `company` or `technician:<username>`), the trend
/// (`trend`, one row per period and KPI) and the problems (`top_fault`,
/// `repeat_asset`, `repeat_model`: count in `value`, tickets in `detail`;
/// `breached`: the ticket in `key`, its states in `detail`).
pub fn render_csv(r: &Report) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    let mut row = |cells: [String; 13]| {
        let line: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    };
    let label = r.period.label.clone();
    let o = &r.overview;
    for (key, v) in [
        ("jobs_opened", o.jobs_opened),
        ("jobs_completed", o.jobs_completed),
        ("jobs_cancelled", o.jobs_cancelled),
        ("visits", o.visits),
        ("labour_minutes", o.labour_minutes),
        ("labour_cost_cents", o.labour_cost_cents),
        ("parts_cost_cents", o.parts_cost_cents),
        ("surveys", o.surveys),
        ("callbacks_due", o.callbacks_due),
        ("complaints_received", o.complaints_received),
        ("tickets_breached", o.tickets_breached),
    ] {
        row([
            "overview".into(),
            "company".into(),
            label.clone(),
            key.into(),
            String::new(),
            String::new(),
            String::new(),
            v.to_string(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    let scopes = std::iter::once(("company".to_string(), &r.kpis)).chain(
        r.technicians
            .iter()
            .map(|t| (format!("technician:{}", t.username), &t.kpis)),
    );
    for (scope, lines) in scopes {
        for k in lines {
            row([
                "kpi".into(),
                scope.clone(),
                label.clone(),
                k.kpi.into(),
                k.name.into(),
                k.numerator.to_string(),
                k.denominator.to_string(),
                opt(k.value),
                unit_str(k.unit).into(),
                opt(k.target),
                k.target_kind.into(),
                opt(k.met),
                k.display.clone(),
            ]);
        }
    }
    for t in &r.trends {
        for p in &t.points {
            row([
                "trend".into(),
                "company".into(),
                p.period.clone(),
                t.kpi.into(),
                t.name.into(),
                p.numerator.to_string(),
                p.denominator.to_string(),
                opt(p.value),
                unit_str(t.unit).into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
    }
    let pr = &r.problems;
    for (section, list) in [
        ("top_fault", &pr.top_faults),
        ("repeat_asset", &pr.repeat_assets),
        ("repeat_model", &pr.repeat_models),
    ] {
        for c in list {
            row([
                section.into(),
                "company".into(),
                label.clone(),
                c.key.clone(),
                String::new(),
                String::new(),
                String::new(),
                c.count.to_string(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                c.tickets.join(" "),
            ]);
        }
    }
    for b in &pr.breached {
        row([
            "breached".into(),
            "company".into(),
            label.clone(),
            b.ticket_no.clone(),
            b.priority.clone(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            format!(
                "respond={} resolve={} technician={}",
                b.respond, b.resolve, b.technician
            ),
        ]);
    }
    out
}

/// The SVG: the percentage KPIs against their targets (bars, the target a
/// red tick), and their trend over the periods (one line each).
pub fn render_svg(r: &Report) -> Result<String, String> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let shown: Vec<&KpiLine> = r.kpis.iter().filter(|k| k.unit == Unit::Percent).collect();
    let trends: Vec<&Trend> = r
        .trends
        .iter()
        .filter(|t| t.unit == Unit::Percent)
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 900)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (top, bottom) = root.split_vertically(450);

        let n = shown.len().max(1);
        let mut bars = ChartBuilder::on(&top)
            .caption(
                format!("KPIs against targets, {}", r.period.label),
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(70)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..n as f64, 0f64..100f64)
            .map_err(|e| err(&e))?;
        let keys: Vec<&str> = shown.iter().map(|k| k.kpi).collect();
        bars.configure_mesh()
            .disable_x_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 1e-6 && i < keys.len() {
                    short_label(keys[i]).to_string()
                } else {
                    String::new()
                }
            })
            .y_max_light_lines(1)
            .y_desc("%")
            .draw()
            .map_err(|e| err(&e))?;
        bars.draw_series(shown.iter().enumerate().map(|(i, k)| {
            let v = k.value.unwrap_or(0.0);
            let colour = match k.met {
                Some(true) => RGBColor(46, 139, 87),
                Some(false) => RGBColor(205, 92, 92),
                None => RGBColor(160, 160, 160),
            };
            Rectangle::new(
                [(i as f64 + 0.15, 0.0), (i as f64 + 0.85, v)],
                colour.filled(),
            )
        }))
        .map_err(|e| err(&e))?;
        bars.draw_series(shown.iter().enumerate().filter_map(|(i, k)| {
            let t = k.target?;
            Some(PathElement::new(
                vec![(i as f64 + 0.05, t), (i as f64 + 0.95, t)],
                RED.stroke_width(3),
            ))
        }))
        .map_err(|e| err(&e))?;
        bars.draw_series(
            shown
                .iter()
                .enumerate()
                .filter(|(_, k)| k.value.is_none())
                .map(|(i, _)| {
                    Text::new(
                        "n/a".to_string(),
                        (i as f64 + 0.4, 4.0),
                        ("sans-serif", 14).into_font(),
                    )
                }),
        )
        .map_err(|e| err(&e))?;

        let periods = trends.first().map_or(1, |t| t.points.len()).max(2);
        let labels: Vec<String> = trends
            .first()
            .map(|t| t.points.iter().map(|p| p.period.clone()).collect())
            .unwrap_or_default();
        let mut lines = ChartBuilder::on(&bottom)
            .caption("Trend over the periods", ("sans-serif", 22))
            .margin(12)
            .margin_right(40)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..(periods - 1) as f64, 0f64..100f64)
            .map_err(|e| err(&e))?;
        lines
            .configure_mesh()
            .x_labels(periods)
            .x_label_formatter(&|x| {
                let i = x.round() as usize;
                if (x - x.round()).abs() < 1e-6 {
                    labels.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_max_light_lines(1)
            .y_max_light_lines(1)
            .y_desc("%")
            .draw()
            .map_err(|e| err(&e))?;
        const COLOURS: [RGBColor; 9] = [
            RGBColor(31, 119, 180),
            RGBColor(255, 127, 14),
            RGBColor(44, 160, 44),
            RGBColor(214, 39, 40),
            RGBColor(148, 103, 189),
            RGBColor(140, 86, 75),
            RGBColor(227, 119, 194),
            RGBColor(127, 127, 127),
            RGBColor(23, 190, 207),
        ];
        for (i, t) in trends.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let points: Vec<(f64, f64)> = t
                .points
                .iter()
                .enumerate()
                .filter_map(|(x, p)| Some((x as f64, p.value?)))
                .collect();
            // Dots too: a KPI with a value in one period only has no line.
            lines
                .draw_series(points.iter().map(|p| Circle::new(*p, 4, colour.filled())))
                .map_err(|e| err(&e))?;
            lines
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(short_label(t.kpi))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
        }
        lines
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn periods_parse_label_and_step_back() {
        let w = ReportPeriod::parse(PeriodKind::Week, "2026-W47").unwrap();
        assert_eq!((w.start, w.end), (d("2026-11-16"), d("2026-11-23")));
        assert_eq!(w.label(), "2026-W47");
        assert_eq!(w.previous().unwrap().label(), "2026-W46");
        // ISO week 1 of 2027 starts on Monday 2027-01-04; the week before is
        // 2026-W53.
        let w1 = ReportPeriod::parse(PeriodKind::Week, "2027-W01").unwrap();
        assert_eq!(w1.start, d("2027-01-04"));
        assert_eq!(w1.previous().unwrap().label(), "2026-W53");
        let m = ReportPeriod::parse(PeriodKind::Month, "2026-11").unwrap();
        assert_eq!((m.start, m.end), (d("2026-11-01"), d("2026-12-01")));
        assert_eq!(m.previous().unwrap().label(), "2026-10");
        let jan = ReportPeriod::parse(PeriodKind::Month, "2026-01").unwrap();
        assert_eq!(jan.previous().unwrap().label(), "2025-12");
        let q = ReportPeriod::parse(PeriodKind::Quarter, "2026-Q4").unwrap();
        assert_eq!((q.start, q.end), (d("2026-10-01"), d("2027-01-01")));
        assert_eq!(q.previous().unwrap().label(), "2026-Q3");
        let y = ReportPeriod::parse(PeriodKind::Year, "2026").unwrap();
        assert_eq!((y.start, y.end), (d("2026-01-01"), d("2027-01-01")));
        // A date names the period around it.
        let m2 = ReportPeriod::parse(PeriodKind::Month, "2026-11-15").unwrap();
        assert_eq!(m2, m);
        assert_eq!(
            ReportPeriod::parse(PeriodKind::Quarter, "2026-08-15")
                .unwrap()
                .label(),
            "2026-Q3"
        );
        for (kind, bad) in [
            (PeriodKind::Month, "2026-13"),
            (PeriodKind::Month, "2026-W47"),
            (PeriodKind::Week, "2026-W54"),
            (PeriodKind::Quarter, "2026-Q5"),
            (PeriodKind::Year, "26"),
            (PeriodKind::Month, ""),
        ] {
            let e = ReportPeriod::parse(kind, bad).unwrap_err();
            assert!(e.contains("`at` must be"), "{e}");
        }
        assert_eq!(PeriodKind::parse("fortnight"), None);
    }

    #[test]
    fn reports_are_for_the_office_roles() {
        let who: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| may_read_reports(*r))
            .collect();
        assert_eq!(who, crate::api::OFFICE);
    }

    #[test]
    fn boundaries_are_midnights_in_the_company_zone() {
        let m = ReportPeriod::parse(PeriodKind::Month, "2026-11").unwrap();
        let utc = m.utc(0).unwrap();
        assert_eq!(fmt_time(utc.start), "2026-11-01T00:00:00Z");
        // UTC+8: November starts at 16:00 UTC on 31 October.
        let east = m.utc(480).unwrap();
        assert_eq!(fmt_time(east.start), "2026-10-31T16:00:00Z");
        assert_eq!(fmt_time(east.end), "2026-11-30T16:00:00Z");
    }

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    fn job(no: &str, created: &str, completed: Option<&str>, tech: &str) -> LoadedJob {
        LoadedJob {
            facts: JobFacts {
                doc_id: format!("doc-{no}"),
                ticket_no: no.into(),
                priority: "A".into(),
                technician_id: tech.into(),
                created_at: t(created),
                completed_at: completed.map(t),
                cancelled: false,
                reopened: false,
                appointment: None,
                visits: vec![VisitFact {
                    arrived_at: None,
                    fixed: Some(true),
                }],
                labour_minutes: 60,
                parts_cost_cents: 1000,
                respond: SlaOutcome::Met,
                resolve: SlaOutcome::Met,
                survey: None,
            },
            product: "Mixer".into(),
            model: "DM-40".into(),
            asset: "asset-1".into(),
            serial: "SN-1".into(),
            fault: "Motor  stops".into(),
            respond_state: "met".into(),
            resolve_state: "met".into(),
        }
    }

    /// Two jobs in November, one in October: the report's figures, the
    /// trend's last two points, the problems, and byte-identical renders.
    #[test]
    fn a_report_assembled_twice_is_identical_and_adds_up() {
        let mut late = job("T2", "2026-11-10T10:00:00Z", None, "u-tom");
        late.facts.respond = SlaOutcome::Breached;
        late.respond_state = "breached".into();
        late.resolve_state = "on_time".into();
        late.facts.resolve = SlaOutcome::Running;
        late.fault = "motor stops".into();
        let loaded = Loaded {
            jobs: vec![
                job(
                    "T1",
                    "2026-11-02T08:00:00Z",
                    Some("2026-11-02T10:00:00Z"),
                    "u-tom",
                ),
                late,
                job(
                    "T0",
                    "2026-10-05T08:00:00Z",
                    Some("2026-10-05T09:00:00Z"),
                    "u-ann",
                ),
            ],
            callbacks: Vec::new(),
            complaints: Vec::new(),
            usernames: HashMap::from([("u-tom".to_string(), "tom".to_string())]),
        };
        let policy = Policy::default();
        let period = ReportPeriod::parse(PeriodKind::Month, "2026-11").unwrap();
        let now = t("2026-12-05T00:00:00Z");
        let r = assemble(&loaded, &period, &policy, now, &mut |_| {}).unwrap();
        assert!(r.period.is_final);
        assert_eq!((r.overview.jobs_opened, r.overview.jobs_completed), (2, 1));
        // Labour 60 min at 60.00 = 60.00; parts 10.00.
        assert_eq!(r.overview.labour_cost_cents, 6000);
        let k = |key: &str| r.kpis.iter().find(|k| k.kpi == key).unwrap().clone();
        assert_eq!(k("response_on_time").display, "1 / 2 = 50.00 %");
        assert_eq!(k("response_on_time").met, Some(false));
        assert_eq!(k("mttr").display, "120 / 1 = 120.00 min");
        assert_eq!(k("service_cost").display, "7000 / 1 = 70.00");
        assert_eq!(k("csat").display, "n/a (0 / 0)");
        assert_eq!(k("csat").met, None);
        // Only tom has November work; ann's is October's.
        assert_eq!(r.technicians.len(), 1);
        assert_eq!(r.technicians[0].username, "tom");
        let trend = r.trends.iter().find(|t| t.kpi == "mttr").unwrap();
        let labels: Vec<&str> = trend.points.iter().map(|p| p.period.as_str()).collect();
        assert_eq!(labels, ["2026-08", "2026-09", "2026-10", "2026-11"]);
        assert_eq!(trend.points[2].value, Some(60.0));
        assert_eq!(r.problems.top_faults[0].key, "motor stops");
        assert_eq!(r.problems.top_faults[0].count, 2);
        assert_eq!(r.problems.repeat_assets[0].tickets, ["T1", "T2"]);
        assert_eq!(r.problems.breached.len(), 1);
        assert_eq!(r.problems.breached[0].technician, "tom");
        let again = assemble(&loaded, &period, &policy, now, &mut |_| {}).unwrap();
        for f in [Format::Json, Format::Csv, Format::Svg] {
            assert_eq!(render(&r, f).unwrap(), render(&again, f).unwrap());
        }
        let csv = render_csv(&r);
        assert!(csv.starts_with("section,scope,period,key,"));
        assert!(csv.contains("kpi,company,2026-11,mttr,MTTR,120,1,120,minutes,2880,max,true,"));
        let svg = render_svg(&r).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<rect") && svg.contains("<polyline"));
    }
}

/// A `/kpis` bound: a date (`2026-11-01`: that day's start in the company's
/// zone; as `to`, the next day's, so the day is included) or an RFC 3339
/// time (taken as given, `to` excluded).
pub fn range_bound(value: &str, end: bool, offset_minutes: i32) -> Option<DateTime<Utc>> {
    if let Some(t) = parse_time(value) {
        return Some(t);
    }
    let day = NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d").ok()?;
    let day = if end { day.succ_opt()? } else { day };
    let zone = FixedOffset::east_opt(offset_minutes * 60)?;
    zone.from_local_datetime(&day.and_hms_opt(0, 0, 0)?)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// The id of the account named `username` (None: no such account).
pub fn user_id(c: &mut DbConn, username: &str) -> Result<Option<String>, DbError> {
    use crate::db::schema::users;
    Ok(on_conn!(c, |c| users::table
        .filter(users::username.eq(username))
        .select(users::id)
        .first(c)
        .optional())?)
}
