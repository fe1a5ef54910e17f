//! Which instants count towards a target: business hours (if the policy has
//! a calendar) minus the spans the ticket spent waiting on the customer.
//! `counted` measures, `advance` finds when a budget of counted time runs out.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveTime, TimeZone, Utc};

use super::policy::Calendar;

/// A far-off answer when the budget can never run out (cannot happen with a
/// validated calendar; guards the loops).
const NEVER_STEPS: usize = 200_000;

pub struct CountingClock<'a> {
    calendar: Option<(&'a Calendar, i64, i64)>,
    /// Sorted, disjoint [start, end) spans that do not count.
    pauses: &'a [(DateTime<Utc>, DateTime<Utc>)],
}

impl<'a> CountingClock<'a> {
    /// `calendar` must have passed `Policy::validate`.
    pub fn new(
        calendar: Option<&'a Calendar>,
        pauses: &'a [(DateTime<Utc>, DateTime<Utc>)],
    ) -> Self {
        let calendar = calendar.and_then(|c| c.hours().ok().map(|(o, cl)| (c, o, cl)));
        Self { calendar, pauses }
    }

    /// Whether the instant `t` counts, and the next instant after `t` at
    /// which that may change.
    fn segment(&self, t: DateTime<Utc>) -> (bool, DateTime<Utc>) {
        let (mut counts, mut until) = (true, DateTime::<Utc>::MAX_UTC);
        if let Some((cal, open, close)) = self.calendar {
            let (c, u) = business(cal, open, close, t);
            counts &= c;
            until = until.min(u);
        }
        // The first pause not over by `t` (binary search: a ticket may
        // have thousands of pauses, and this runs once per step).
        let next = self.pauses.partition_point(|&(_, end)| end <= t);
        if let Some(&(start, end)) = self.pauses.get(next) {
            if start <= t {
                counts = false;
                until = until.min(end);
            } else {
                until = until.min(start);
            }
        }
        (counts, until)
    }

    /// Counted time in [from, to).
    pub fn counted(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        let mut total = Duration::zero();
        let mut t = from;
        for _ in 0..NEVER_STEPS {
            if t >= to {
                break;
            }
            let (counts, until) = self.segment(t);
            let end = until.min(to);
            if counts {
                total += end - t;
            }
            t = end;
        }
        total
    }

    /// The instant at which `budget` of counted time has passed since `from`
    /// (assuming no pause beyond those known).
    pub fn advance(&self, from: DateTime<Utc>, budget: Duration) -> Option<DateTime<Utc>> {
        let mut left = budget;
        let mut t = from;
        for _ in 0..NEVER_STEPS {
            let (counts, until) = self.segment(t);
            if counts {
                if until - t >= left {
                    return Some(t + left);
                }
                left -= until - t;
            }
            if until == DateTime::<Utc>::MAX_UTC {
                return None;
            }
            t = until;
        }
        None
    }
}

/// `n` working days as counted business time on `cal`: n full business
/// days (so "within 3 working days" of Monday 15:00 is Thursday 15:00).
pub fn working_days(cal: &Calendar, n: i64) -> Duration {
    let (open, close) = cal.hours().unwrap_or((9 * 60, 18 * 60));
    Duration::minutes((close - open) * n)
}

/// The instant `n` working days of `cal` after `from`.
pub fn after_working_days(cal: &Calendar, from: DateTime<Utc>, n: i64) -> Option<DateTime<Utc>> {
    CountingClock::new(Some(cal), &[]).advance(from, working_days(cal, n))
}

/// Whether `t` is within business hours, and when that next changes.
fn business(cal: &Calendar, open: i64, close: i64, t: DateTime<Utc>) -> (bool, DateTime<Utc>) {
    let tz = FixedOffset::east_opt(cal.utc_offset_minutes * 60).expect("validated offset");
    let local = t.with_timezone(&tz);
    let day = local.date_naive();
    let midnight = tz
        .from_local_datetime(&day.and_time(NaiveTime::MIN))
        .single()
        .expect("fixed offsets are unambiguous")
        .with_timezone(&Utc);
    let working = cal
        .working_days
        .contains(&(day.weekday().number_from_monday() as u8))
        && !cal.holidays.contains(&day);
    let (open_at, close_at, next_day) = (
        midnight + Duration::minutes(open),
        midnight + Duration::minutes(close),
        midnight + Duration::days(1),
    );
    if !working {
        return (false, next_day);
    }
    if t < open_at {
        (false, open_at)
    } else if t < close_at {
        (true, close_at)
    } else {
        (false, next_day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn workweek(holidays: &[&str]) -> Calendar {
        Calendar {
            holidays: holidays.iter().map(|d| d.parse().unwrap()).collect(),
            ..Calendar::default() // Mon–Fri 09:00–18:00 at UTC+8
        }
    }

    #[test]
    fn around_the_clock_without_pauses_counts_everything() {
        let c = CountingClock::new(None, &[]);
        let from = at("2026-11-02T10:00:00Z");
        assert_eq!(
            c.counted(from, at("2026-11-02T12:30:00Z")),
            Duration::minutes(150)
        );
        assert_eq!(
            c.advance(from, Duration::hours(2)),
            Some(at("2026-11-02T12:00:00Z"))
        );
    }

    /// Worked by hand: a B ticket (respond 24 business hours) created Friday
    /// 2026-11-20 16:00 local (UTC+8). Friday 16–18 = 2 h, Monday 23rd 9 h
    /// (11), Tuesday 24th 9 h (20), Wednesday 25th 4 h → due Wednesday
    /// 13:00 local. With Tuesday a holiday: Thursday 26th 13:00.
    #[test]
    fn business_hours_skip_nights_weekends_and_holidays() {
        let cal = workweek(&[]);
        let c = CountingClock::new(Some(&cal), &[]);
        let created = at("2026-11-20T16:00:00+08:00");
        assert_eq!(
            c.advance(created, Duration::hours(24)),
            Some(at("2026-11-25T13:00:00+08:00"))
        );
        assert_eq!(
            c.counted(created, at("2026-11-23T10:30:00+08:00")),
            Duration::minutes(210)
        );
        // Saturday does not count at all.
        assert_eq!(
            c.counted(
                at("2026-11-21T00:00:00+08:00"),
                at("2026-11-22T23:59:00+08:00")
            ),
            Duration::zero()
        );
        let cal = workweek(&["2026-11-24"]);
        let c = CountingClock::new(Some(&cal), &[]);
        assert_eq!(
            c.advance(created, Duration::hours(24)),
            Some(at("2026-11-26T13:00:00+08:00"))
        );
        // Created out of hours (Saturday): the clock starts Monday 09:00.
        assert_eq!(
            c.advance(at("2026-11-21T11:00:00+08:00"), Duration::minutes(120)),
            Some(at("2026-11-23T11:00:00+08:00"))
        );
    }

    /// Pauses stop the clock, also inside business hours.
    #[test]
    fn pauses_are_not_counted() {
        let pauses = [(at("2026-11-03T10:00:00Z"), at("2026-11-05T10:00:00Z"))];
        let c = CountingClock::new(None, &pauses);
        let created = at("2026-11-02T00:00:00Z");
        // Monday 00:00 → Saturday 10:00 is 130 h, of which 48 h paused.
        assert_eq!(
            c.counted(created, at("2026-11-07T10:00:00Z")),
            Duration::hours(82)
        );
        assert_eq!(
            c.advance(created, Duration::hours(120)),
            Some(at("2026-11-09T00:00:00Z"))
        );
        let cal = workweek(&[]);
        let pauses = [(
            at("2026-11-23T10:00:00+08:00"),
            at("2026-11-23T12:00:00+08:00"),
        )];
        let c = CountingClock::new(Some(&cal), &pauses);
        // Monday 09–18 with two hours paused: 7 h.
        assert_eq!(
            c.counted(
                at("2026-11-23T00:00:00+08:00"),
                at("2026-11-24T00:00:00+08:00")
            ),
            Duration::hours(7)
        );
    }
}
