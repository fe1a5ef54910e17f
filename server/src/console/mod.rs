//! The web console for dispatchers, back office, supervisors, managers and
//! admins: a small single-page app (plain ES modules, no build step) served
//! from files embedded in the binary. It holds no rule of its own: every
//! page reads and writes through the REST API under `/api/v1`, shows only
//! what `GET /api/v1/me/capabilities` allows, and goes live on
//! `GET /api/v1/events`. Nothing is fetched from the internet at run time
//! (Chart.js is vendored under `assets/vendor/`, MIT licence beside it).

use actix_web::http::header;
use actix_web::{web, HttpResponse};

/// Every file of the console: (name under `/console/`, media type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/style.css"),
    ),
    ("app.js", JS, include_bytes!("assets/app.js")),
    ("api.js", JS, include_bytes!("assets/api.js")),
    ("ui.js", JS, include_bytes!("assets/ui.js")),
    ("board.js", JS, include_bytes!("assets/board.js")),
    ("ticket.js", JS, include_bytes!("assets/ticket.js")),
    ("customers.js", JS, include_bytes!("assets/customers.js")),
    ("office.js", JS, include_bytes!("assets/office.js")),
    ("reports.js", JS, include_bytes!("assets/reports.js")),
    ("admin.js", JS, include_bytes!("assets/admin.js")),
    (
        "vendor/chart.umd.min.js",
        JS,
        include_bytes!("assets/vendor/chart-4.6.2.umd.min.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("assets/favicon.svg"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";
const INDEX: &[u8] = include_bytes!("assets/index.html");

/// Scripts only from this server; images also from blob: URLs (attachments
/// and signatures are fetched with the access token, then shown).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' blob: data:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/", web::head().to(index))
        .route("/console/{name:.*}", web::get().to(asset))
        .route("/console/{name:.*}", web::head().to(asset));
}

async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(INDEX)
}

async fn asset(req: actix_web::HttpRequest, name: web::Path<String>) -> HttpResponse {
    let Some(i) = ASSETS.iter().position(|(n, _, _)| *n == name.as_str()) else {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("no such console file");
    };
    let (_, media, bytes) = ASSETS[i];
    // Revalidated on every load (no-cache): a new binary's console is
    // picked up at once; the ETag keeps that to a 304.
    let tag = &etags()[i];
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        // `*`, or the tag, weak or strong (a weak comparison, RFC 9110 §13.1.2).
        .is_some_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
        });
    let mut out = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    out.insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::ETAG, tag.as_str()));
    if fresh {
        out.finish()
    } else {
        out.content_type(media).body(bytes)
    }
}

/// A content hash per asset, computed once.
fn etags() -> &'static [String] {
    static TAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    TAGS.get_or_init(|| {
        use sha2::Digest;
        ASSETS
            .iter()
            .map(|(_, _, bytes)| {
                let d = sha2::Sha256::digest(bytes);
                let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}
