//! One representation of time in the API: RFC 3339 UTC strings with
//! millisecond precision. Rows keep epoch milliseconds (cheap to compare and
//! index on both backends); these serializers turn them into strings at the
//! edge. Use with `#[serde(serialize_with = "...")]` and, for the OpenAPI
//! document, `#[schema(value_type = String, format = DateTime)]`.

use chrono::{DateTime, SecondsFormat};
use serde::Serializer;

/// Epoch milliseconds as `2026-11-23T10:00:00.000Z`.
pub fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn ms_as_rfc3339<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*ms))
}

pub fn opt_ms_as_rfc3339<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_str(&rfc3339(*ms)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn epoch_millis_become_utc_strings() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::rfc3339(1_795_428_000_123),
            "2026-11-23T10:00:00.123Z"
        );
    }
}
