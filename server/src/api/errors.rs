//! Every error answer in the JSON error format `{"error": {"code", "message"}}`:
//! extractor errors (JSON body, query string, path), unknown routes (404),
//! wrong methods (405 with `Allow`), and — as a safety net for errors raised
//! outside our handlers (actix payload limits, a handler's own extractor) —
//! `ensure_json`, which rewrites any other non-JSON error answer.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ResourceDef, ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use super::ApiError;

/// The error code for a status when no handler chose one.
fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        409 => "conflict",
        411 => "length_required",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        429 => "too_many_requests",
        431 => "headers_too_large",
        503 => "unavailable",
        s if s >= 500 => "internal",
        _ => "bad_request",
    }
}

pub fn json_body(err: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    match &err {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "request body is larger than the limit of {} bytes",
                    super::MAX_JSON_BODY
                ),
            )
        }
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        ),
        _ => ApiError::bad_request(format!("invalid JSON body: {err}")),
    }
    .into()
}

pub fn query_string(err: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("bad query string: {err}")).into()
}

pub fn path(err: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("bad path parameter: {err}")).into()
}

/// No route matched: 405 (with `Allow`) if the path exists with other
/// methods, else 404.
pub async fn no_route(req: HttpRequest) -> HttpResponse {
    let path = req.path();
    let allowed: Vec<String> = super::ROUTES
        .iter()
        .filter(|r| ResourceDef::new(format!("/api/v1{}", r.path)).is_match(path))
        .map(|r| r.method.to_uppercase())
        .collect();
    if allowed.is_empty() {
        return ApiError::not_found(format!("no route {} {path}", req.method())).error_response();
    }
    let mut res = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {path}; use {}",
            req.method(),
            allowed.join(", ")
        ),
    )
    .error_response();
    if let Ok(v) = header::HeaderValue::from_str(&allowed.join(", ")) {
        res.headers_mut().insert(header::ALLOW, v);
    }
    res
}

fn is_json(res: &HttpResponse<impl MessageBody>) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// A page meant for people (the customer's survey page), errors included.
fn is_html(res: &HttpResponse<impl MessageBody>) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
}

/// Middleware: an error answer that is not JSON yet (nor an HTML page for
/// people) is rewritten into the JSON error format, keeping its status, its text as the message and its
/// `Retry-After`/`Allow` headers.
pub async fn ensure_json(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let res = match next.call(req).await {
        Ok(res) => res.map_into_boxed_body(),
        Err(e) => return Err(e),
    };
    if res.status().as_u16() < 400 || is_json(res.response()) || is_html(res.response()) {
        return Ok(res);
    }
    let (req, res) = res.into_parts();
    let status = res.status();
    let kept: Vec<_> = [header::RETRY_AFTER, header::ALLOW]
        .into_iter()
        .filter_map(|h| res.headers().get(&h).cloned().map(|v| (h, v)))
        .collect();
    let text = match actix_web::body::to_bytes_limited(res.into_body(), 2048).await {
        Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).trim().to_string(),
        _ => String::new(),
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut json = ApiError::new(status, code_for(status), message).error_response();
    for (h, v) in kept {
        json.headers_mut().insert(h, v);
    }
    Ok(ServiceResponse::new(req, json))
}

#[cfg(test)]
mod tests {
    use actix_web::{test, web, App};

    use super::*;

    #[actix_web::test]
    async fn text_errors_become_json_and_unknown_routes_are_404_or_405() {
        let app = test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(ensure_json))
                .route(
                    "/text",
                    web::get().to(|| async {
                        HttpResponse::BadRequest()
                            .insert_header(("Retry-After", "3"))
                            .body("plain words")
                    }),
                )
                .default_service(web::to(no_route)),
        )
        .await;
        let res =
            test::call_service(&app, test::TestRequest::get().uri("/text").to_request()).await;
        assert_eq!(res.status(), 400);
        assert_eq!(res.headers().get("retry-after").unwrap(), "3");
        let body: serde_json::Value = test::read_body_json(res).await;
        assert_eq!(body["error"]["code"], "bad_request");
        assert_eq!(body["error"]["message"], "plain words");

        let res = test::call_service(
            &app,
            test::TestRequest::patch()
                .uri("/api/v1/tickets")
                .to_request(),
        )
        .await;
        assert_eq!(res.status(), 405);
        let allow = res
            .headers()
            .get("allow")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
        let res =
            test::call_service(&app, test::TestRequest::get().uri("/nope").to_request()).await;
        assert_eq!(res.status(), 404);
        let body: serde_json::Value = test::read_body_json(res).await;
        assert_eq!(body["error"]["code"], "not_found");
    }
}
