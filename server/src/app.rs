//! Builds and runs the HTTP server: `/sync` (WebSocket), `/health`, `/metrics`.

use std::io::Write;
use std::sync::Arc;

use actix_web::{middleware, web, App, HttpResponse, HttpServer};
use anyhow::Context;

use crate::api::ApiState;
use crate::auth::accounts;
use crate::auth::client_limit::LoginRateLimit;
use crate::auth::hash_pool::PasswordPool;
use crate::auth::jwt::{self, JwtKeys};
use crate::db::{Backend, Db};
use crate::metrics::METRICS;
use crate::storage::faults::FaultPlan;
use crate::storage::{self, committer::Committer};
use crate::sync::hub::{Hub, SyncConfig};
use crate::sync::ws;

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub database_url: String,
    pub bind: String,
    pub port: u16,
    pub workers: usize,
    pub commit_linger: std::time::Duration,
    /// JWT signing secret; generated and stored in the database when absent.
    pub jwt_secret: Option<String>,
    pub access_token_ttl: std::time::Duration,
    /// Where attachments are stored, and their size limit.
    pub blob_dir: std::path::PathBuf,
    pub max_blob_bytes: usize,
    /// Bytes one user may newly store per 24 hours (0: unlimited).
    pub blob_quota_bytes: u64,
    pub sync: SyncConfig,
    /// Test-only storage fault injection (`RATE:MAX[:SEED]`, see storage::faults).
    pub inject_commit_faults: Option<String>,
    pub logins: LoginLimits,
    pub service: ServiceOptions,
}

/// The office side's timer (SLA states, escalations).
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// Every open ticket is re-evaluated this often (changes at once).
    pub sla_interval: std::time::Duration,
    /// Moves the service rules' clock (demos and tests; zero in production).
    pub clock_offset: chrono::Duration,
    /// Where escalations are POSTed (none: not sent anywhere).
    pub webhook: Option<crate::office::webhooks::WebhookConfig>,
    /// The customers' address of this server, for survey links (none: the
    /// request's scheme and host).
    pub public_url: Option<String>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            sla_interval: std::time::Duration::from_secs(30),
            clock_offset: chrono::Duration::zero(),
            webhook: None,
            public_url: None,
        }
    }
}

/// Bounds on login work (see auth::hash_pool, auth::client_limit).
#[derive(Clone, Debug)]
pub struct LoginLimits {
    /// Threads that hash and check passwords.
    pub password_workers: usize,
    /// Password checks that may wait for a thread; more get 503.
    pub password_queue: usize,
    /// Login requests per minute from one client address (and the burst).
    pub per_ip_per_minute: u32,
}

pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    crate::metrics::install();
    let url = opts.database_url.clone();
    let db = tokio::task::spawn_blocking(move || Db::open(&url, 16))
        .await?
        .with_context(|| {
            format!(
                "opening database {}",
                crate::db::DbTarget::parse(&opts.database_url).display()
            )
        })?;
    let fresh_id = uuid::Uuid::new_v4().to_string();
    let storage_id = db
        .run(move |c| storage::meta_get_or_init(c, "storage_id", &fresh_id))
        .await
        .with_context(|| format!("writing to the database {}", db.target.display()))?;
    // SQLite has one writer anyway; PostgreSQL commits a few batches in parallel.
    let commit_workers = match db.backend() {
        Backend::Sqlite => 1,
        Backend::Postgres => 4,
    };
    let faults = match &opts.inject_commit_faults {
        Some(spec) => {
            Some(Arc::new(FaultPlan::parse(spec).map_err(|e| {
                anyhow::anyhow!("--inject-commit-faults: {e}")
            })?))
        }
        None => None,
    };
    let committer = Committer::start(db.clone(), commit_workers, opts.commit_linger, faults);
    let hub = Hub::new(db.clone(), committer, opts.sync.clone(), storage_id);
    let secret = match opts.jwt_secret.clone() {
        Some(s) if s.len() < 16 => {
            anyhow::bail!(
                "--jwt-secret must be at least 16 characters (got {})",
                s.len()
            )
        }
        Some(s) => s,
        None => {
            let fresh = jwt::generate_secret();
            db.run(move |c| storage::meta_get_or_init(c, "jwt_secret", &fresh))
                .await?
        }
    };
    // Survey links are signed with their own secret, shared by every
    // instance on the database (tokens are never stored).
    let fresh = jwt::generate_secret();
    let survey_key = db
        .run(move |c| storage::meta_get_or_init(c, "survey_link_secret", &fresh))
        .await?
        .into_bytes();
    let blobs = crate::blobs::BlobStore::open(&opts.blob_dir, opts.max_blob_bytes)
        .with_context(|| format!("opening blob directory {}", opts.blob_dir.display()))?
        .with_daily_quota(opts.blob_quota_bytes);
    crate::blobs::access::adopt_legacy_blobs(&db, &blobs)
        .await
        .context("recording the blobs stored before upload records")?;
    let api = Arc::new(ApiState {
        db: db.clone(),
        keys: JwtKeys::new(secret.as_bytes(), opts.access_token_ttl),
        blobs,
        passwords: PasswordPool::start(opts.logins.password_workers, opts.logins.password_queue),
        login_rate: LoginRateLimit::new(opts.logins.per_ip_per_minute),
        clock_offset: opts.service.clock_offset,
        survey_key,
        webhook: opts.service.webhook.is_some(),
        public_url: opts.service.public_url.clone(),
        sla_updates: tokio::sync::broadcast::channel(1024).0,
    });
    let no_users = db.run(accounts::count).await? == 0;
    let sla_updates = api.sla_updates.clone();

    let app_hub = hub.clone();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(middleware::from_fn(crate::api::input::refuse_nul_in_url))
            .wrap(middleware::from_fn(crate::api::errors::ensure_json))
            // Registered last, so outermost: every answer, JSON errors
            // included, carries its `X-Request-Id`.
            .wrap(middleware::from_fn(crate::request_id::assign))
            .app_data(web::Data::new(app_hub.clone()))
            .app_data(web::Data::new(api.clone()))
            .configure(crate::api::configure)
            .configure(crate::api::surveys::configure_page)
            .configure(crate::api::docs::configure)
            .route("/sync", web::get().to(ws::sync_endpoint))
            .route("/health", web::get().to(health))
            .route("/ready", web::get().to(health))
            .route("/metrics", web::get().to(metrics))
            .configure(crate::console::configure)
            .default_service(web::to(crate::api::errors::no_route))
    })
    .workers(opts.workers.max(1))
    .shutdown_timeout(5)
    // Signals are ours (see `shut_down_on_signal`): devices are told to
    // reconnect before the listener closes, not cut off after the timeout.
    .disable_signals()
    // Sync messages are small and latency-bound: no Nagle delay.
    .tcp_nodelay(true)
    .bind((opts.bind.as_str(), opts.port))
    .with_context(|| format!("binding {}:{}", opts.bind, opts.port))?;

    let addr = server.addrs()[0];
    let host = if addr.ip().is_unspecified() {
        "localhost".to_string()
    } else {
        addr.ip().to_string()
    };
    let base = format!("{host}:{}", addr.port());
    // stdout is the contract for humans and for the test harness.
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "fieldsync {} listening on http://{base}",
        env!("CARGO_PKG_VERSION")
    )?;
    writeln!(
        out,
        "  web console:    http://{base}/   (dispatch, back office, reports, admin)"
    )?;
    writeln!(
        out,
        "  sync endpoint:  ws://{base}/sync   (automerge-repo WebSocket protocol)"
    )?;
    writeln!(out, "  storage:        {}", db.target.display())?;
    writeln!(out, "  attachments:    {}", opts.blob_dir.display())?;
    writeln!(
        out,
        "  health/metrics: http://{base}/health  http://{base}/metrics"
    )?;
    if no_users {
        writeln!(
            out,
            "  no accounts yet: create an admin with `fieldsync user add <name> --role admin`"
        )?;
    }
    out.flush()?;
    drop(out);

    tokio::spawn(close_blocked_devices(hub.clone(), db.clone()));
    tokio::spawn(prune_login_throttle(db.clone()));
    tokio::spawn(crate::memory::trim_periodically());
    tokio::spawn(crate::metrics::upkeep_periodically());
    tokio::spawn(crate::office::sla_watch::run(
        db.clone(),
        hub.commits.subscribe(),
        opts.service.sla_interval,
        opts.service.clock_offset,
        opts.service.webhook.is_some(),
        sla_updates,
    ));
    tokio::spawn(crate::office::surveys::repair_loop(
        hub.clone(),
        opts.service.sla_interval,
        opts.service.clock_offset,
        opts.service.webhook.is_some(),
    ));
    if let Some(cfg) = opts.service.webhook.clone() {
        tokio::spawn(crate::office::webhooks::run(
            db.clone(),
            cfg,
            opts.service.clock_offset,
        ));
    }

    let server = server.run();
    tokio::spawn(shut_down_on_signal(hub.clone(), server.handle()));
    let result = server.await;
    hub.close_all("server shutting down");
    result.context("HTTP server failed")
}

/// SIGTERM or Ctrl-C: readiness turns 503, every sync connection is closed
/// with 1001 "going away" and a reason (stock clients reconnect, through a
/// load balancer to another instance), then the listener stops and requests
/// in flight finish (at most the 5 s shutdown timeout). Changes are
/// acknowledged only after their commit, so none is lost either way.
async fn shut_down_on_signal(hub: Arc<Hub>, server: actix_web::dev::ServerHandle) {
    let terminate = async {
        #[cfg(unix)]
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: telling devices to reconnect, finishing requests");
    hub.draining
        .store(true, std::sync::atomic::Ordering::SeqCst);
    hub.close_all("server shutting down; reconnect");
    // Close frames out before the listener goes.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    server.stop(true).await;
}

/// Liveness and readiness in one answer, within about a second: 200 when the
/// database answers and takes writes, 503 otherwise. Reads can work while
/// writes fail (disk full, read-only file), so while commits are failing a
/// small write probe decides, and recovery shows as soon as it succeeds.
async fn health(hub: web::Data<Arc<Hub>>) -> HttpResponse {
    const WITHIN: std::time::Duration = std::time::Duration::from_millis(800);
    let db_error = hub.db.ping_within(WITHIN).await.err();
    let health = &hub.committer.health;
    if db_error.is_none() && health.snapshot().failing() {
        let _ = tokio::time::timeout(WITHIN, hub.committer.probe()).await;
    }
    let commits = health.snapshot();
    let writable = !commits.failing();
    let draining = hub.draining.load(std::sync::atomic::Ordering::SeqCst);
    let ok = db_error.is_none() && writable && !draining;
    let free = match hub.db.backend() {
        Backend::Sqlite => storage::health::free_bytes(std::path::Path::new(&hub.db.target.url)),
        Backend::Postgres => None,
    };
    let problem = db_error
        .as_ref()
        .map(|e| storage::health::advice(&hub.db.target, e))
        .or_else(|| {
            (!writable).then(|| {
                let e = crate::db::DbError::Connect(commits.last_error.clone().unwrap_or_default());
                format!(
                    "commits are failing: {}",
                    storage::health::advice(&hub.db.target, &e)
                )
            })
        });
    let body = serde_json::json!({
        "status": if draining { "draining" } else if ok { "ok" } else { "degraded" },
        "database": hub.db.backend().name(),
        "database_reachable": db_error.is_none(),
        "writable": writable,
        "problem": problem,
        "commits": commits,
        "disk_free_bytes": free,
        "storage_id": hub.storage_id,
        "peer_id": hub.server_peer_id,
        "documents_loaded": hub.loaded_docs(),
        "connections": METRICS.connections_open.get(),
    });
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(body)
    }
}

async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::render())
}

/// Closes live sync sessions of devices that were revoked, whose user was
/// disabled, or whose user's password changed after the session may have
/// started — within `CHECK_EVERY`, whoever made the change (API, CLI,
/// another instance on the same database).
///
/// The hub lists connected devices, not when they connected: a device first
/// seen connected at one tick connected after the tick before, so that
/// earlier tick (less a second of clock skew between instances) is the
/// earliest its session may have started. A device that reconnects with a
/// fresh token within one tick of a password change may be closed once more.
async fn close_blocked_devices(hub: Arc<Hub>, db: Db) {
    const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
    const CLOCK_SKEW_MS: i64 = 1000;
    let mut tick = tokio::time::interval(CHECK_EVERY);
    let mut since: std::collections::HashMap<String, i64> = Default::default();
    let mut previous_tick = crate::db::now_millis();
    loop {
        tick.tick().await;
        let now = crate::db::now_millis();
        let connected = hub.connected_devices();
        since.retain(|d, _| connected.binary_search(d).is_ok());
        for d in &connected {
            since
                .entry(d.clone())
                .or_insert(previous_tick - CLOCK_SKEW_MS);
        }
        previous_tick = now;
        if connected.is_empty() {
            continue;
        }
        let check: Vec<(String, i64)> = since.iter().map(|(d, t)| (d.clone(), *t)).collect();
        match db
            .run(move |c| crate::auth::devices::blocked_among(c, &check))
            .await
        {
            Ok(blocked) => {
                for (device, why) in blocked {
                    tracing::info!(%device, reason = why.reason(), "closing sync sessions");
                    hub.close_device(&device, why.reason());
                    since.remove(&device);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not check for revoked devices"),
        }
    }
}

/// Deletes stale rows of the login throttle hourly (see auth::throttle).
async fn prune_login_throttle(db: Db) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        if let Err(e) = db.run(crate::auth::throttle::prune).await {
            tracing::warn!(error = %e, "could not prune the login throttle");
        }
    }
}
