//! Report periods (ISO weeks, months, quarters, years) in the company's
//! time zone, and the history's time text.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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

pub(crate) fn month_start(y: i32, m: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, 1)
}

pub(crate) fn add_months(d: NaiveDate, months: i32) -> Option<NaiveDate> {
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

pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub(crate) fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The history's time text for SQL bounds (UTC, milliseconds, as status
/// events and tickets carry it).
pub(crate) fn bound(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
