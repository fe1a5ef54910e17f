//! Limits and checks of REST input, in one place: string lengths, NUL bytes
//! (PostgreSQL cannot store them; SQLite would, so both refuse them alike),
//! and calendar dates.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::ResponseError;

use super::ApiError;

/// Identifiers: part numbers, serial numbers, ticket numbers, usernames.
pub const MAX_ID: usize = 128;
/// Names and short labels: customer, product, model, phone, e-mail, site.
pub const MAX_NAME: usize = 200;
/// Free text: fault descriptions, addresses, notes, reasons.
pub const MAX_TEXT: usize = 4000;
/// Search text (`q`).
pub const MAX_QUERY: usize = 200;

/// 400 unless `value` has at most `max` characters and no NUL.
pub fn text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::bad_request(format!(
            "`{field}` must not contain NUL characters"
        )));
    }
    if value.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "`{field}` must be at most {max} characters"
        )));
    }
    Ok(())
}

/// `text` for several fields: `(name, value, max)`.
pub fn texts(fields: &[(&str, &str, usize)]) -> Result<(), ApiError> {
    fields.iter().try_for_each(|(f, v, max)| text(f, v, *max))
}

/// `value` is empty or a real calendar date `YYYY-MM-DD`: 400 for another
/// shape, 422 for one that has the shape but is no date (2026-02-30).
pub fn date(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty()
        || (value.len() == 10 && chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok())
    {
        return Ok(());
    }
    let shaped = value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if shaped {
        return Err(ApiError::unprocessable(format!(
            "`{field}` is not a calendar date"
        )));
    }
    Err(ApiError::bad_request(format!(
        "`{field}` must be a date like 2026-03-01 (got `{}`)",
        value.chars().take(40).collect::<String>()
    )))
}

/// 400 unless `value` is a date (`YYYY-MM-DD`) or an RFC 3339 time.
pub fn date_or_time(field: &str, value: &str) -> Result<(), ApiError> {
    if chrono::DateTime::parse_from_rfc3339(value).is_ok()
        || (!value.is_empty() && date(field, value).is_ok())
    {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "`{field}` must be a date (2026-03-01) or an RFC 3339 time"
    )))
}

/// Middleware: a path or query string with an encoded NUL (`%00`) is
/// refused before any handler passes it to the database.
pub async fn refuse_nul_in_url(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    let uri = req.uri().to_string().to_ascii_lowercase();
    if uri.contains("%00") || uri.contains('\0') {
        let res =
            ApiError::bad_request("the URL must not contain NUL characters (%00)").error_response();
        return Ok(req.into_response(res).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_real_calendar_dates() {
        assert!(date("d", "").is_ok());
        assert!(date("d", "2024-02-29").is_ok());
        for bad in [
            "2026-02-30",
            "yesterday",
            "2026-2-3",
            "2026-13-01",
            "2026-01-01T00:00:00Z",
        ] {
            assert!(date("d", bad).is_err(), "{bad}");
        }
        assert!(date_or_time("f", "2026-01-01T08:00:00+02:00").is_ok());
        assert!(date_or_time("f", "2026-01-01").is_ok());
        assert!(date_or_time("f", "").is_err());
        assert!(date_or_time("f", "yesterday").is_err());
    }

    #[test]
    fn lengths_count_characters_and_nul_is_refused() {
        assert!(text("f", &"é".repeat(10), 10).is_ok());
        assert!(text("f", &"é".repeat(11), 10).is_err());
        assert!(text("f", "a\0b", 10).is_err());
    }
}

/// A JSON request body as `T`. Read like `web::Json` (same size limit and
/// error answers), then whole-valued floats are taken as integers before `T`
/// is read: JSON (and the OpenAPI schema) says `2.0` is the integer 2, while
/// serde refuses it for an `i64` field.
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(
        req: &actix_web::HttpRequest,
        payload: &mut actix_web::dev::Payload,
    ) -> Self::Future {
        let value = actix_web::web::Json::<serde_json::Value>::from_request(req, payload);
        Box::pin(async move { Ok(Json(body_from_value(value.await?.into_inner())?)) })
    }
}

/// An optional JSON body: none (empty) gives `T::default()`; one that is
/// sent must be valid — a malformed body is refused, not taken as absent.
pub fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Ok(T::default());
    }
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    body_from_value(v)
}

/// Every request body of the API is a JSON object. serde would also read a
/// struct from an array of its fields in order (`[]` for one whose fields
/// all have defaults), which the document does not allow: refused.
fn body_from_value<T: serde::de::DeserializeOwned>(
    mut v: serde_json::Value,
) -> Result<T, ApiError> {
    if !v.is_object() {
        return Err(ApiError::bad_request("the JSON body must be an object"));
    }
    integral_floats_to_integers(&mut v);
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn integral_floats_to_integers(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    *v = serde_json::Value::from(f as i64);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(integral_floats_to_integers),
        serde_json::Value::Object(o) => o.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    #[derive(serde::Deserialize, Default, Debug, PartialEq)]
    struct Body {
        #[serde(default)]
        n: i64,
        #[serde(default)]
        share: f64,
    }

    #[test]
    fn whole_floats_are_integers_and_fractions_stay() {
        let b: Body = optional_json(br#"{"n": 2.0, "share": 1.0}"#).unwrap();
        assert_eq!(b, Body { n: 2, share: 1.0 });
        assert!(optional_json::<Body>(br#"{"n": 2.5}"#).is_err());
    }

    #[test]
    fn an_optional_body_is_empty_or_valid() {
        assert_eq!(optional_json::<Body>(b"").unwrap(), Body::default());
        assert!(optional_json::<Body>(b"\n").is_err());
        let e = optional_json::<Body>(b"\x00").unwrap_err();
        assert_eq!(e.status, actix_web::http::StatusCode::BAD_REQUEST);
        assert!(optional_json::<Body>(br#""text""#).is_err());
        // serde would read `[]` as a struct of defaults; the API refuses it.
        assert!(optional_json::<Body>(b"[]").is_err());
        assert!(optional_json::<Body>(b"[2, 1.0]").is_err());
    }
}
