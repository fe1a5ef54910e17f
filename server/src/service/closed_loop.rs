//! After the job (seed 001): a callback to the customer within 48 h of
//! completion; a survey on three dimensions whose low score calls for a
//! one-to-one callback; a customer unsatisfied three services in a row is
//! flagged and escalated. Pure rules; `office::closed_loop` applies them.

use chrono::{DateTime, Duration, Utc};

use super::policy::ClosedLoopPolicy;

/// A survey's scores: scale 5 or 7, each dimension 1..=scale (a missing
/// dimension is None).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scores {
    pub scale: i64,
    pub efficiency: Option<i64>,
    pub attitude: Option<i64>,
    pub reasonableness: Option<i64>,
}

impl Scores {
    fn given(&self) -> Vec<i64> {
        [self.efficiency, self.attitude, self.reasonableness]
            .into_iter()
            .flatten()
            .filter(|v| (1..=self.scale).contains(v))
            .collect()
    }
}

/// The thresholds for this survey's scale (None: unknown scale).
fn thresholds(p: &ClosedLoopPolicy, scale: i64) -> Option<(i64, i64)> {
    match scale {
        5 => Some((p.satisfied_at_5, p.low_at_5)),
        7 => Some((p.satisfied_at_7, p.low_at_7)),
        _ => None,
    }
}

/// Satisfied: the mean of the answered dimensions reaches the "satisfied"
/// level (4 of 5, 5 of 7). Used for CSAT and the unsatisfied streak.
pub fn is_satisfied(p: &ClosedLoopPolicy, s: &Scores) -> Option<bool> {
    let (satisfied, _) = thresholds(p, s.scale)?;
    let given = s.given();
    if given.is_empty() {
        return None;
    }
    // mean >= satisfied, in integers: sum >= satisfied * n.
    Some(given.iter().sum::<i64>() >= satisfied * given.len() as i64)
}

/// Low: any dimension at or below the "low" level (2 of 5, 3 of 7): a
/// one-to-one callback follows.
pub fn is_low(p: &ClosedLoopPolicy, s: &Scores) -> bool {
    thresholds(p, s.scale).is_some_and(|(_, low)| s.given().iter().any(|v| *v <= low))
}

/// When the completion callback is due.
pub fn callback_due(p: &ClosedLoopPolicy, completed_at: DateTime<Utc>) -> DateTime<Utc> {
    completed_at + Duration::minutes(p.callback_after_minutes)
}

/// Length of the run of unsatisfied services at the end of `history`
/// (oldest first; None = no survey, which neither extends nor breaks it).
pub fn unsatisfied_streak(history: &[Option<bool>]) -> usize {
    history
        .iter()
        .rev()
        .flatten()
        .take_while(|satisfied| !**satisfied)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(scale: i64, e: i64, a: i64, r: i64) -> Scores {
        Scores {
            scale,
            efficiency: Some(e),
            attitude: Some(a),
            reasonableness: Some(r),
        }
    }

    /// Worked by hand with the defaults (satisfied at 4/5 or 5/7, low at
    /// 2/5 or 3/7): 5,4,3 → mean 4 → satisfied, not low; 4,4,3 → mean 3.67
    /// → unsatisfied; 5,5,2 → mean 4 → satisfied but low (a 2); 7-point
    /// 5,5,4 → mean 4.67 → unsatisfied, not low; 6,6,3 → low.
    #[test]
    fn satisfied_and_low_on_both_scales() {
        let p = ClosedLoopPolicy::default();
        assert_eq!(is_satisfied(&p, &s(5, 5, 4, 3)), Some(true));
        assert!(!is_low(&p, &s(5, 5, 4, 3)));
        assert_eq!(is_satisfied(&p, &s(5, 4, 4, 3)), Some(false));
        assert_eq!(is_satisfied(&p, &s(5, 5, 5, 2)), Some(true));
        assert!(is_low(&p, &s(5, 5, 5, 2)));
        assert_eq!(is_satisfied(&p, &s(7, 5, 5, 4)), Some(false));
        assert!(!is_low(&p, &s(7, 5, 5, 4)));
        assert!(is_low(&p, &s(7, 6, 6, 3)));
        // Unknown scales and out-of-range answers are not judged.
        assert_eq!(is_satisfied(&p, &s(10, 9, 9, 9)), None);
        assert_eq!(is_satisfied(&p, &s(5, 9, 0, -1)), None);
        let partial = Scores {
            scale: 5,
            efficiency: Some(4),
            attitude: None,
            reasonableness: None,
        };
        assert_eq!(is_satisfied(&p, &partial), Some(true));
    }

    #[test]
    fn streak_counts_unsatisfied_services_at_the_end() {
        let (y, n) = (Some(true), Some(false));
        assert_eq!(unsatisfied_streak(&[n, n, n]), 3);
        assert_eq!(unsatisfied_streak(&[n, y, n, n]), 2);
        // A service without a survey does not break the run.
        assert_eq!(unsatisfied_streak(&[n, None, n, n]), 3);
        assert_eq!(unsatisfied_streak(&[n, n, n, y]), 0);
        assert_eq!(unsatisfied_streak(&[]), 0);
    }

    #[test]
    fn callback_is_due_48_hours_after_completion() {
        let done = DateTime::parse_from_rfc3339("2026-11-20T16:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let due = callback_due(&ClosedLoopPolicy::default(), done);
        assert_eq!(due.to_rfc3339(), "2026-11-22T16:00:00+00:00");
    }
}
