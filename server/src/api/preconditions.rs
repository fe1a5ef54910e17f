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

/// The request's `If-Match`, if any. Several headers or a comma-separated
/// list are one set of tags; `W/` tags match nothing (strong comparison).
/// A header that is not `*` or a list of (quoted) version numbers is a 400:
/// it cannot name one of our ETags.
pub fn if_match(req: &HttpRequest) -> Result<Option<Expect>, ApiError> {
    let values: Vec<&HeaderValue> = req.headers().get_all(header::IF_MATCH).collect();
    if values.is_empty() {
        return Ok(None);
    }
    let bad = || ApiError::bad_request("`If-Match` must be `*` or a list of quoted ETags");
    let mut versions = Vec::new();
    let mut any_tag = false;
    for v in values {
        let text = v.to_str().map_err(|_| bad())?;
        for tag in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if tag == "*" {
                return Ok(Some(Expect::Any));
            }
            let (weak, quoted) = match tag.strip_prefix("W/") {
                Some(rest) => (true, rest),
                None => (false, tag),
            };
            // Our tags are quoted numbers; a bare number is taken too (some
            // clients drop the quotes). Anything else cannot be ours: 400.
            let inner = match quoted.strip_prefix('"') {
                Some(rest) => rest.strip_suffix('"').ok_or_else(bad)?,
                None => quoted,
            };
            let n: i64 = inner.parse().map_err(|_| bad())?;
            any_tag = true;
            if !weak {
                versions.push(n);
            }
        }
    }
    if versions.is_empty() && !any_tag {
        return Err(bad());
    }
    Ok(Some(Expect::OneOf(versions)))
}

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
        // Weak tags match nothing; a bare number is a tag; others are not ours.
        assert_eq!(parse(&["W/\"3\""]).unwrap(), Some(Expect::OneOf(vec![])));
        assert_eq!(parse(&["3"]).unwrap(), Some(Expect::OneOf(vec![3])));
        assert!(parse(&["\"abc\""]).is_err());
        assert!(parse(&["\"3"]).is_err());
        assert!(parse(&[""]).is_err(), "an empty If-Match names nothing");
        assert_eq!(etag(12), "\"12\"");
    }
}
