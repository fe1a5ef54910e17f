//! A request id for every HTTP request: taken from the client's
//! `X-Request-Id` when it is a sane token (so a proxy's id carries through),
//! otherwise a fresh UUID. Every log line of the request is inside an
//! `http_request{request_id, method, path}` span, and the answer — errors
//! included — carries the id back in `X-Request-Id`.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use tracing::Instrument;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being handled (in the request's extensions).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// A client-chosen id is kept only if it is short and plain.
fn acceptable(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

pub async fn assign(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "http_request",
        request_id = %id,
        method = %req.method(),
        path = %req.path(),
    );
    // Handlers' errors arrive here as answers already (actix turns them into
    // responses at the route); an `Err` can only come from a middleware, and
    // the request cannot be kept for it (routing needs it unshared), so that
    // one passes without the header.
    let mut res = next.call(req).instrument(span).await?.map_into_boxed_body();
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(HEADER, v);
    }
    Ok(res)
}

/// The id of `req`, if the middleware ran.
pub fn of(req: &actix_web::HttpRequest) -> Option<String> {
    req.extensions().get::<RequestId>().map(|r| r.0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{middleware, test, web, App, HttpResponse};

    #[actix_web::test]
    async fn every_answer_carries_an_id_and_a_sane_client_id_is_kept() {
        let app = test::init_service(
            App::new()
                .wrap(middleware::from_fn(assign))
                .route(
                    "/ok",
                    web::get().to(|| async { HttpResponse::Ok().finish() }),
                )
                .route(
                    "/err",
                    web::get().to(|| async {
                        Err::<HttpResponse, _>(actix_web::error::ErrorBadRequest("no"))
                    }),
                ),
        )
        .await;
        let res = test::call_service(&app, test::TestRequest::get().uri("/ok").to_request()).await;
        let id = res.headers().get(&HEADER).unwrap().to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");

        let res = test::call_service(&app, test::TestRequest::get().uri("/err").to_request()).await;
        assert_eq!(res.status(), 400);
        assert!(res.headers().get(&HEADER).is_some());

        let req = test::TestRequest::get()
            .uri("/ok")
            .insert_header(("X-Request-Id", "proxy-42.a"))
            .to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(res.headers().get(&HEADER).unwrap(), "proxy-42.a");

        let req = test::TestRequest::get()
            .uri("/ok")
            .insert_header(("X-Request-Id", "has spaces and\ttabs"))
            .to_request();
        let res = test::call_service(&app, req).await;
        assert_ne!(res.headers().get(&HEADER).unwrap(), "has spaces and\ttabs");
    }
}
