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
//! `as_of`, the end of the range or, for one still running, now: the SLA
//! states are judged at it, it decides whether a callback not yet done is
//! already late, and whether the report is `final`.
//!
//! `load` reads the facts, `assemble` makes the report, `render` and
//! `chart` write it; `period` knows the calendar.

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

mod assemble;
mod chart;
mod load;
mod period;
mod render;

pub use self::assemble::*;
pub use self::chart::*;
pub use self::load::*;
pub use self::period::*;
pub use self::render::*;

/// Who may read reports and anyone's KPIs: the office roles. A technician
/// reads only their own KPIs (`GET /kpis`), never a report.
pub fn may_read_reports(role: Role) -> bool {
    use Role::*;
    matches!(role, Dispatcher | BackOffice | Supervisor | Manager | Admin)
}

/// Periods before the report's own in its trend.
pub const TREND_PERIODS: usize = 3;
/// Bound parameters per `IN (…)` query (under both backends' limits).
const CHUNK: usize = 500;

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

/// What a report tells its caller while it is made (the CLI shows it on
/// stderr; the API ignores it).
#[derive(Debug, Clone, Copy)]
pub enum BuildStep<'a> {
    /// A step of its own ("12 ticket(s) in range", "period … computed").
    Note(&'a str),
    /// Tickets whose history is loaded so far, of those in range.
    Loaded { done: usize, total: usize },
}

/// Loads and assembles the report of `period` at `now` (the service clock),
/// refusing ranges of more than `max_tickets` (the API's bound; the CLI has
/// none).
pub fn build(
    c: &mut DbConn,
    period: &ReportPeriod,
    now: DateTime<Utc>,
    max_tickets: i64,
    progress: &mut dyn FnMut(BuildStep<'_>),
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
    progress(BuildStep::Note(&format!(
        "loading {} to {} ({} and the {TREND_PERIODS} before it)",
        fmt_time(range.start),
        fmt_time(range.end),
        period.label()
    )));
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
