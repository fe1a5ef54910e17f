//! HTTP side of `versioning`: `ETag` on reads and writes of reference
//! records, `If-Match` on writes, 412 when it does not hold. Without an
//! `If-Match` a write is unconditional (the last writer wins), as before;
//! the console and any careful client send it.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};

use super::ApiError;
use crate::versioning::{Expect, Stale};

/// The strong ETag of a record at `version`.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// 200 with the record and its ETag.
pub fn ok_with_etag(version: i64, body: impl serde::Serialize) -> HttpResponse {
    with_etag(HttpResponse::Ok(), version, body)
}

pub fn with_etag(
    mut r: HttpResponseBuilder,
    version: i64,
    body: impl serde::Serialize,
) -> HttpResponse {
    r.insert_header((header::ETAG, etag(version))).json(body)
}

/// The longest version number a tag may carry (fits an i64).
const MAX_DIGITS: usize = 18;

/// The request's `If-Match`, if any: `*` alone, or a comma-separated list
/// of tags (over one or more headers), each `"<version>"`, `W/"<version>"`
/// or a bare `<version>` (some clients drop the quotes), with 1 to 18
/// ASCII digits. `W/` tags and tags with leading zeros match nothing (the
/// comparison is strong: `"03"` is not our `"3"`). Anything else is a 400:
/// it cannot name one of our ETags. The OpenAPI pattern says the same.
pub fn if_match(req: &HttpRequest) -> Result<Option<Expect>, ApiError> {
    let values: Vec<&HeaderValue> = req.headers().get_all(header::IF_MATCH).collect();
    if values.is_empty() {
        return Ok(None);
    }
    let bad = || {
        ApiError::bad_request(
            "`If-Match` must be `*` or a list of ETags such as `\"3\"` (1 to 18 digits)",
        )
    };
    let texts = values
        .iter()
        .map(|v| v.to_str().map(str::trim))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad())?;
    if texts == ["*"] {
        return Ok(Some(Expect::Any));
    }
    let mut versions = Vec::new();
    for tag in texts.iter().flat_map(|t| t.split(',')).map(str::trim) {
        let (weak, quoted) = match tag.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, tag),
        };
        let digits = match quoted.strip_prefix('"') {
            Some(rest) => rest.strip_suffix('"').ok_or_else(bad)?,
            None => quoted,
        };
        if digits.is_empty()
            || digits.len() > MAX_DIGITS
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let canonical = digits == "0" || !digits.starts_with('0');
        if !weak && canonical {
            versions.push(digits.parse().map_err(|_| bad())?);
        }
    }
    Ok(Some(Expect::OneOf(versions)))
}

/// The OpenAPI pattern of an `If-Match` header, the same rule as `if_match`.
pub const IF_MATCH_PATTERN: &str =
    r#"^(\*|(W/)?("[0-9]{1,18}"|[0-9]{1,18})(\s*,\s*(W/)?("[0-9]{1,18}"|[0-9]{1,18}))*)$"#;

impl From<Stale> for ApiError {
    fn from(e: Stale) -> Self {
        Self::new(
            actix_web::http::StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            e.to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn parse(values: &[&str]) -> Result<Option<Expect>, ApiError> {
        let mut r = TestRequest::default();
        for v in values {
            r = r.append_header((header::IF_MATCH, *v));
        }
        if_match(&r.to_http_request())
    }

    #[test]
    fn if_match_headers() {
        assert_eq!(parse(&[]).unwrap(), None);
        assert_eq!(parse(&["*"]).unwrap(), Some(Expect::Any));
        assert_eq!(parse(&["\"3\""]).unwrap(), Some(Expect::OneOf(vec![3])));
        assert_eq!(
            parse(&["\"3\", \"5\"", "\"8\""]).unwrap(),
            Some(Expect::OneOf(vec![3, 5, 8]))
        );
        // Weak tags and non-canonical numbers match nothing; a bare number
        // is a tag.
        assert_eq!(parse(&["W/\"3\""]).unwrap(), Some(Expect::OneOf(vec![])));
        assert_eq!(parse(&["\"03\""]).unwrap(), Some(Expect::OneOf(vec![])));
        assert_eq!(parse(&["3"]).unwrap(), Some(Expect::OneOf(vec![3])));
        // Not ours: 400, as the pattern says.
        for bad in [
            "",
            "\"abc\"",
            "\"3",
            "+3",
            "-1",
            "\"1\",,\"2\"",
            "*, \"1\"",
            "\"1\", *",
            "\"1234567890123456789\"",
        ] {
            assert!(parse(&[bad]).is_err(), "{bad:?}");
        }
        assert!(parse(&["*", "\"1\""]).is_err(), "`*` is only valid alone");
        assert_eq!(etag(12), "\"12\"");
    }

    /// The parser and the OpenAPI pattern agree on what is well-formed.
    #[test]
    fn the_pattern_says_what_the_parser_takes() {
        let pattern = regex_lite::Regex::new(IF_MATCH_PATTERN).unwrap();
        for value in [
            "*",
            "\"3\"",
            "3",
            "W/\"3\"",
            "\"03\"",
            "\"1\", \"2\"",
            "\"1\",W/\"2\"",
            "",
            "\"abc\"",
            "+3",
            "-1",
            "\"3",
            "\"1\",,\"2\"",
            "*, \"1\"",
            "\"1\", *",
            "\"1234567890123456789\"",
        ] {
            assert_eq!(
                pattern.is_match(value),
                parse(&[value]).is_ok(),
                "{value:?}: pattern and parser disagree"
            );
        }
    }
}
