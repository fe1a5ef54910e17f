//! The outgoing webhook: escalations are POSTed to the company's URL (an
//! SMS or e-mail gateway), signed, and retried with backoff.
//!
//! A delivery is written in the same transaction as the escalation it
//! announces (nothing is lost if the process dies), then sent from the
//! table. Several instances may send: an instance claims a due delivery by
//! moving its next attempt forward, and only the one whose update matched
//! sends it. Receivers verify `X-Fieldsync-Signature: sha256=<hex>`, the
//! HMAC-SHA256 of `<X-Fieldsync-Timestamp>.<body>` with the shared secret,
//! and should ignore a delivery id they have seen (a send whose answer is
//! lost is sent again).

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::webhook_deliveries;
use crate::db::{on_conn, Db, DbConn, DbError};

/// Attempts before a delivery is given up (it stays in the log).
pub const MAX_ATTEMPTS: i64 = 10;

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: String,
    /// First retry after this; doubled per attempt, at most an hour.
    pub retry_base: Duration,
}

#[derive(Clone, Debug, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = webhook_deliveries)]
pub struct Delivery {
    pub id: String,
    pub event: String,
    pub subject: String,
    #[serde(serialize_with = "as_json")]
    pub payload: String,
    pub created_at: String,
    pub attempts: i64,
    pub next_attempt_at: String,
    pub last_status: Option<i64>,
    pub last_error: String,
    pub delivered_at: Option<String>,
}

fn as_json<S: serde::Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    let parsed: serde_json::Value = serde_json::from_str(v).unwrap_or(serde_json::Value::Null);
    parsed.serialize(s)
}

fn fmt(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Queues an event for delivery (call inside the transaction that makes it).
pub fn enqueue(
    conn: &mut DbConn,
    event: &str,
    subject: &str,
    payload: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let id = uuid::Uuid::now_v7().to_string();
    let body = serde_json::json!({ "delivery": id, "event": event, "data": payload }).to_string();
    on_conn!(conn, |c| diesel::insert_into(webhook_deliveries::table)
        .values((
            webhook_deliveries::id.eq(&id),
            webhook_deliveries::event.eq(event),
            webhook_deliveries::subject.eq(subject),
            webhook_deliveries::payload.eq(&body),
            webhook_deliveries::created_at.eq(fmt(now)),
            webhook_deliveries::attempts.eq(0),
            webhook_deliveries::next_attempt_at.eq(fmt(now)),
            webhook_deliveries::last_error.eq(""),
        ))
        .execute(c))?;
    Ok(())
}

/// The delivery log, newest first (then by id, descending), at most
/// `limit` older than `before` = (created_at, id).
pub fn log(
    conn: &mut DbConn,
    before: Option<(String, String)>,
    limit: i64,
) -> Result<Vec<Delivery>, DbError> {
    Ok(on_conn!(conn, |c| {
        let mut q = webhook_deliveries::table
            .order((
                webhook_deliveries::created_at.desc(),
                webhook_deliveries::id.desc(),
            ))
            .limit(limit)
            .select(Delivery::as_select())
            .into_boxed();
        if let Some((at, id)) = &before {
            q = q.filter(
                webhook_deliveries::created_at
                    .lt(at.clone())
                    .or(webhook_deliveries::created_at
                        .eq(at.clone())
                        .and(webhook_deliveries::id.lt(id.clone()))),
            );
        }
        q.load(c)
    })?)
}

/// Delay before attempt `n + 1` after `n` failed ones.
pub fn backoff(base: Duration, failed: i64) -> Duration {
    let doublings = (failed - 1).clamp(0, 20) as u32;
    base.saturating_mul(1 << doublings)
        .min(Duration::from_secs(3600))
}

/// `sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>.<body>").
pub fn signature(secret: &str, timestamp: &str, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.as_bytes());
    ctx.update(b".");
    ctx.update(body.as_bytes());
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Claims up to 20 due deliveries: their next attempt moves a minute ahead
/// so no other instance sends them meanwhile.
fn claim_due(conn: &mut DbConn, now: DateTime<Utc>) -> Result<Vec<Delivery>, DbError> {
    let due: Vec<Delivery> = on_conn!(conn, |c| webhook_deliveries::table
        .filter(webhook_deliveries::delivered_at.is_null())
        .filter(webhook_deliveries::attempts.lt(MAX_ATTEMPTS))
        .filter(webhook_deliveries::next_attempt_at.le(fmt(now)))
        .order(webhook_deliveries::next_attempt_at)
        .limit(20)
        .select(Delivery::as_select())
        .load(c))?;
    let lease = fmt(now + chrono::Duration::seconds(60));
    let mut claimed = Vec::new();
    for d in due {
        let n = on_conn!(conn, |c| diesel::update(
            webhook_deliveries::table
                .find(&d.id)
                .filter(webhook_deliveries::next_attempt_at.eq(&d.next_attempt_at))
        )
        .set(webhook_deliveries::next_attempt_at.eq(&lease))
        .execute(c))?;
        if n == 1 {
            claimed.push(d);
        }
    }
    Ok(claimed)
}

fn record(
    conn: &mut DbConn,
    d: &Delivery,
    outcome: Result<u16, (Option<u16>, String)>,
    now: DateTime<Utc>,
    base: Duration,
) -> Result<(), DbError> {
    let attempts = d.attempts + 1;
    on_conn!(conn, |c| match &outcome {
        Ok(status) => diesel::update(webhook_deliveries::table.find(&d.id))
            .set((
                webhook_deliveries::attempts.eq(attempts),
                webhook_deliveries::last_status.eq(Some(i64::from(*status))),
                webhook_deliveries::last_error.eq(""),
                webhook_deliveries::delivered_at.eq(Some(fmt(now))),
            ))
            .execute(c),
        Err((status, error)) => {
            let next =
                now + chrono::Duration::from_std(backoff(base, attempts)).unwrap_or_default();
            diesel::update(webhook_deliveries::table.find(&d.id))
                .set((
                    webhook_deliveries::attempts.eq(attempts),
                    webhook_deliveries::last_status.eq(status.map(i64::from)),
                    webhook_deliveries::last_error.eq(error),
                    webhook_deliveries::next_attempt_at.eq(fmt(next)),
                ))
                .execute(c)
        }
    })?;
    Ok(())
}

/// One POST; Ok(status) for a 2xx answer.
fn post(cfg: &WebhookConfig, d: &Delivery) -> Result<u16, (Option<u16>, String)> {
    let timestamp = Utc::now().timestamp().to_string();
    // A non-2xx answer is `Error::StatusCode` (ureq's default); redirects
    // are not followed: a receiver that moved is a failed delivery.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .max_redirects(0)
        .build()
        .into();
    let result = agent
        .post(&cfg.url)
        .header("Content-Type", "application/json")
        .header("X-Fieldsync-Event", &d.event)
        .header("X-Fieldsync-Delivery", &d.id)
        .header("X-Fieldsync-Timestamp", &timestamp)
        .header(
            "X-Fieldsync-Signature",
            &signature(&cfg.secret, &timestamp, &d.payload),
        )
        .send(d.payload.as_str());
    match result {
        Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
        Ok(r) => {
            let code = r.status().as_u16();
            Err((Some(code), format!("HTTP {code}")))
        }
        Err(ureq::Error::StatusCode(code)) => Err((Some(code), format!("HTTP {code}"))),
        Err(e) => Err((None, e.to_string())),
    }
}

/// Sends due deliveries every second (a no-op without a configured URL).
pub async fn run(db: Db, cfg: WebhookConfig, offset: chrono::Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = Utc::now() + offset;
        let due = match db.run(move |c| claim_due(c, now)).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "could not read webhook deliveries");
                continue;
            }
        };
        for d in due {
            let cfg2 = cfg.clone();
            let d2 = d.clone();
            let outcome = tokio::task::spawn_blocking(move || post(&cfg2, &d2))
                .await
                .unwrap_or_else(|e| Err((None, e.to_string())));
            if let Err((_, e)) = &outcome {
                tracing::warn!(delivery = %d.id, error = %e, "webhook delivery failed; will retry");
            }
            let (base, now) = (cfg.retry_base, Utc::now() + offset);
            if let Err(e) = db.run(move |c| record(c, &d, outcome, now, base)).await {
                tracing::warn!(error = %e, "could not record a webhook delivery");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let b = Duration::from_secs(30);
        assert_eq!(backoff(b, 1), Duration::from_secs(30));
        assert_eq!(backoff(b, 2), Duration::from_secs(60));
        assert_eq!(backoff(b, 3), Duration::from_secs(120));
        assert_eq!(backoff(b, 9), Duration::from_secs(3600));
    }

    /// RFC 4231 test case 2: key "Jefe", message "what do ya want for
    /// nothing?" — framed as timestamp "what do ya want for nothing?"… is not
    /// possible (the dot), so: the known vector via ring, then our framing.
    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let tag = ring::hmac::sign(&key, b"what do ya want for nothing?");
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let direct = ring::hmac::sign(&key, b"1700000000.{\"a\":1}");
        let hex: String = direct.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            signature("Jefe", "1700000000", "{\"a\":1}"),
            format!("sha256={hex}")
        );
    }
}
