//! The satisfaction survey (seed 001): its window (a number of working days
//! after completion), the customer's link token, and what a valid answer is.
//! Pure; `office::surveys` stores links and records answers.
//!
//! A link token is `<link id>.<expiry, unix seconds>.<HMAC-SHA256 of
//! "<id>.<expiry>", base64url>`: forged, altered or expired tokens are
//! refused before the database is asked; single use is the database's
//! (`survey_links.used_at`, set once). The token itself is never stored.

use base64::Engine;
use chrono::{DateTime, Utc};
use fieldsync_shared::ticket::Survey;

use super::clock;
use super::policy::Policy;

/// When the survey window of a job completed at `completed_at` closes.
pub fn window_closes(policy: &Policy, completed_at: DateTime<Utc>) -> DateTime<Utc> {
    let cal = policy.working_calendar();
    clock::after_working_days(&cal, completed_at, policy.survey.within_working_days)
        // A validated calendar always has working time ahead.
        .unwrap_or(completed_at)
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("this survey link is not valid")]
    Invalid,
    #[error("this survey link has expired")]
    Expired,
}

fn tag(key: &[u8], payload: &str) -> ring::hmac::Tag {
    ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
        payload.as_bytes(),
    )
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The token for link `id`, valid until `expires`.
pub fn sign(key: &[u8], id: &str, expires: DateTime<Utc>) -> String {
    let payload = format!("{id}.{}", expires.timestamp());
    let mac = B64.encode(tag(key, &payload).as_ref());
    format!("{payload}.{mac}")
}

/// The link id of a genuine token that has not expired at `now`.
pub fn verify(key: &[u8], token: &str, now: DateTime<Utc>) -> Result<String, TokenError> {
    let (payload, mac) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
    let (id, expires) = payload.split_once('.').ok_or(TokenError::Invalid)?;
    let mac = B64.decode(mac).map_err(|_| TokenError::Invalid)?;
    ring::hmac::verify(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
        payload.as_bytes(),
        &mac,
    )
    .map_err(|_| TokenError::Invalid)?;
    let expires: i64 = expires.parse().map_err(|_| TokenError::Invalid)?;
    if now.timestamp() >= expires {
        return Err(TokenError::Expired);
    }
    Ok(id.to_string())
}

/// Longest comment kept.
pub const MAX_COMMENT_CHARS: usize = 2000;

/// A customer's answer, checked: every dimension on the policy's scale.
pub fn answer(
    policy: &Policy,
    efficiency: i64,
    attitude: i64,
    reasonableness: i64,
    comment: &str,
) -> Result<Survey, String> {
    let scale = policy.survey.scale;
    for (name, v) in [
        ("efficiency", efficiency),
        ("attitude", attitude),
        ("reasonableness", reasonableness),
    ] {
        if !(1..=scale).contains(&v) {
            return Err(format!("`{name}` must be a score from 1 to {scale}"));
        }
    }
    if comment.chars().count() > MAX_COMMENT_CHARS || comment.contains('\0') {
        return Err(format!(
            "the comment is at most {MAX_COMMENT_CHARS} characters of text"
        ));
    }
    Ok(Survey {
        scale,
        efficiency: Some(efficiency),
        attitude: Some(attitude),
        reasonableness: Some(reasonableness),
        comment: comment.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Worked by hand on the default working calendar (Mon–Fri 09–18 at
    /// UTC+8, 3 working days = 27 business hours): completed Monday
    /// 2026-11-23 15:00 → Mon 3 h, Tue 9 h, Wed 9 h, 6 h on Thursday →
    /// Thursday 15:00. Completed Saturday 11:00 → counting starts Monday
    /// 09:00 → Wednesday 18:00.
    #[test]
    fn the_window_is_three_working_days() {
        let p = Policy::default();
        assert_eq!(
            window_closes(&p, at("2026-11-23T15:00:00+08:00")),
            at("2026-11-26T15:00:00+08:00")
        );
        assert_eq!(
            window_closes(&p, at("2026-11-21T11:00:00+08:00")),
            at("2026-11-25T18:00:00+08:00")
        );
        let mut p = Policy::default();
        p.sla.calendar = Some(crate::service::policy::Calendar {
            holidays: vec!["2026-11-24".parse().unwrap()],
            ..Default::default()
        });
        assert_eq!(
            window_closes(&p, at("2026-11-23T15:00:00+08:00")),
            at("2026-11-27T15:00:00+08:00")
        );
    }

    #[test]
    fn tokens_are_signed_and_expire() {
        let key = b"k1";
        let exp = at("2026-11-26T07:00:00Z");
        let t = sign(key, "0193-abc", exp);
        assert_eq!(
            verify(key, &t, at("2026-11-26T06:59:59Z")),
            Ok("0193-abc".into())
        );
        assert_eq!(verify(key, &t, exp), Err(TokenError::Expired));
        // Another key, a changed id or expiry, garbage: invalid.
        assert_eq!(verify(b"k2", &t, exp), Err(TokenError::Invalid));
        let (_, mac) = t.rsplit_once('.').unwrap();
        let later = format!("0193-abc.{}.{mac}", exp.timestamp() + 86400);
        assert_eq!(verify(key, &later, exp), Err(TokenError::Invalid));
        let other = format!("0193-abd.{}.{mac}", exp.timestamp());
        assert_eq!(verify(key, &other, exp), Err(TokenError::Invalid));
        for junk in ["", ".", "a.b", "a.b.c", "a.1.%%%"] {
            assert_eq!(verify(key, junk, exp), Err(TokenError::Invalid), "{junk}");
        }
    }

    #[test]
    fn answers_are_on_the_policy_scale() {
        let mut p = Policy::default();
        assert_eq!(answer(&p, 5, 4, 3, " ok ").unwrap().comment, "ok");
        assert!(answer(&p, 6, 4, 3, "").unwrap_err().contains("1 to 5"));
        assert!(answer(&p, 1, 0, 3, "").unwrap_err().contains("attitude"));
        p.survey.scale = 7;
        assert_eq!(answer(&p, 7, 7, 7, "").unwrap().scale, 7);
        assert!(answer(&p, 1, 1, 1, &"x".repeat(2001)).is_err());
    }
}
