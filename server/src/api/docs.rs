//! The browsable API reference at `/api/docs`: Swagger UI (vendored from
//! npm under `server/assets/swagger-ui/`, see VERSION there) embedded in the
//! binary and pointed at `/api/v1/openapi.json`. Nothing is fetched from the
//! internet: the online validator badge is switched off.

use actix_web::{web, HttpResponse};

const BUNDLE: &str = include_str!("../../assets/swagger-ui/swagger-ui-bundle.js");
const CSS: &str = include_str!("../../assets/swagger-ui/swagger-ui.css");

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fieldsync REST API</title>
<link rel="stylesheet" href="/api/docs/swagger-ui.css">
</head>
<body>
<div id="api"></div>
<script src="/api/docs/swagger-ui-bundle.js"></script>
<script src="/api/docs/init.js"></script>
</body>
</html>
"#;

/// Kept out of the page so a strict Content-Security-Policy (no inline
/// script) can hold.
const INIT: &str = r##"window.ui = SwaggerUIBundle({
  url: "/api/v1/openapi.json",
  dom_id: "#api",
  validatorUrl: null,
  persistAuthorization: false,
  tryItOutEnabled: false
});
"##;

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .body(body)
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/api/docs",
        web::get().to(|| async { asset("text/html; charset=utf-8", PAGE) }),
    )
    .route(
        "/api/docs/swagger-ui-bundle.js",
        web::get().to(|| async { asset("text/javascript; charset=utf-8", BUNDLE) }),
    )
    .route(
        "/api/docs/swagger-ui.css",
        web::get().to(|| async { asset("text/css; charset=utf-8", CSS) }),
    )
    .route(
        "/api/docs/init.js",
        web::get().to(|| async { asset("text/javascript; charset=utf-8", INIT) }),
    );
}
