//! The `fieldsync` command line.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::app::{self, ServeOptions};
use crate::audit::Action;
use crate::auth::{accounts, password, sessions};
use crate::db::Db;
use crate::progress::Progress;
use crate::storage;
use crate::sync::hub::SyncConfig;
use fieldsync_shared::roles::Role;

#[derive(Parser)]
#[command(
    name = "fieldsync",
    version,
    about = "Offline-first Automerge sync server for field-service tickets"
)]
struct Cli {
    /// SQLite file path, or a postgres:// URL.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        default_value = "fieldsync.db"
    )]
    database: String,

    /// Export traces to this OpenTelemetry collector (OTLP over HTTP, e.g.
    /// http://localhost:4318; `/v1/traces` is added to a bare address).
    #[cfg(feature = "otel")]
    #[arg(long, global = true, env = "FIELDSYNC_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sync server.
    Serve {
        /// Address to listen on (use 0.0.0.0 to accept devices on the network).
        #[arg(long, env = "FIELDSYNC_BIND", default_value = "127.0.0.1")]
        bind: String,
        /// Port (0 picks a free one; the chosen port is printed).
        #[arg(long, env = "FIELDSYNC_PORT", default_value_t = 3030)]
        port: u16,
        /// HTTP/WebSocket worker threads.
        #[arg(long, env = "FIELDSYNC_WORKERS", default_value_t = 2)]
        workers: usize,
        /// Largest WebSocket message accepted, in bytes.
        #[arg(long, env = "FIELDSYNC_MAX_MESSAGE_BYTES", default_value_t = 8 * 1024 * 1024)]
        max_message_bytes: usize,
        /// Seconds a document with no connected peer stays in memory.
        #[arg(long, env = "FIELDSYNC_IDLE_EVICT_SECS", default_value_t = 30)]
        idle_evict_secs: u64,
        /// Sustained WebSocket messages per second per connection (bursts of
        /// twice that pass); more closes the connection with a reason.
        #[arg(long, env = "FIELDSYNC_MAX_MESSAGES_PER_SEC", default_value_t = 500)]
        max_messages_per_sec: u32,
        /// Distinct documents one sync connection may use.
        #[arg(long, env = "FIELDSYNC_MAX_DOCS_PER_SESSION", default_value_t = 5000)]
        max_docs_per_session: usize,
        /// Sustained sync bytes per second per user, all connections together
        /// (bursts hold twice that, or one largest message).
        #[arg(long, env = "FIELDSYNC_MAX_BYTES_PER_SEC", default_value_t = 4 * 1024 * 1024)]
        max_bytes_per_sec: u64,
        /// Sustained Automerge operations per second per user.
        #[arg(long, env = "FIELDSYNC_MAX_OPS_PER_SEC", default_value_t = 200_000)]
        max_ops_per_sec: u64,
        /// Largest size one sync message may inflate to (compressed changes
        /// and document columns), in bytes.
        #[arg(long, env = "FIELDSYNC_MAX_INFLATED_BYTES", default_value_t = 32 * 1024 * 1024)]
        max_inflated_bytes: usize,
        /// Most Automerge operations (column rows) in one sync message.
        #[arg(
            long,
            env = "FIELDSYNC_MAX_OPS_PER_MESSAGE",
            default_value_t = 1_000_000
        )]
        max_ops_per_message: u64,
        /// Bytes queued for one connection that is not reading fast enough
        /// before it is closed (it reconnects and resyncs); relayed presence
        /// stops at 256 KiB of it.
        #[arg(long, env = "FIELDSYNC_PEER_QUEUE_BYTES", default_value_t = 32 * 1024 * 1024)]
        peer_queue_bytes: usize,
        /// Presence (ephemeral) messages relayed per user per second, and
        /// their bytes; more is dropped, not relayed.
        #[arg(long, env = "FIELDSYNC_MAX_EPHEMERAL_PER_SEC", default_value_t = 50)]
        max_ephemeral_per_sec: u32,
        #[arg(long, env = "FIELDSYNC_MAX_EPHEMERAL_BYTES_PER_SEC", default_value_t = 64 * 1024)]
        max_ephemeral_bytes_per_sec: u64,
        /// Seconds between re-evaluations of every open ticket's SLA state
        /// (a ticket that changes is re-evaluated at once).
        #[arg(long, env = "FIELDSYNC_SLA_INTERVAL_SECS", default_value_t = 30.0)]
        sla_interval_secs: f64,
        /// Testing and demos: run the service rules' clock this many seconds
        /// ahead.
        #[arg(
            long,
            env = "FIELDSYNC_CLOCK_OFFSET_SECS",
            default_value_t = 0,
            hide = true,
            allow_hyphen_values = true
        )]
        clock_offset_secs: i64,
        /// POST every escalation here (JSON, signed with --webhook-secret:
        /// see the README), retried with backoff.
        #[arg(long, env = "FIELDSYNC_WEBHOOK_URL", requires = "webhook_secret")]
        webhook_url: Option<String>,
        /// Shared secret for the webhook's HMAC-SHA256 signature.
        #[arg(long, env = "FIELDSYNC_WEBHOOK_SECRET", hide_env_values = true)]
        webhook_secret: Option<String>,
        /// Where customers reach this server (e.g. https://service.example.com),
        /// for the survey links sent to them; default: the request's host.
        #[arg(long, env = "FIELDSYNC_PUBLIC_URL")]
        public_url: Option<String>,
        /// Seconds before the first retry of a failed webhook delivery
        /// (doubled per attempt, at most an hour; 10 attempts).
        #[arg(long, env = "FIELDSYNC_WEBHOOK_RETRY_SECS", default_value_t = 30.0)]
        webhook_retry_secs: f64,
        /// Under concurrent load, wait this long to gather more messages into
        /// one commit (0 disables).
        #[arg(long, env = "FIELDSYNC_COMMIT_LINGER_US", default_value_t = 500)]
        commit_linger_us: u64,
        /// Testing only: make commits fail at random (`RATE:MAX[:SEED]`).
        #[arg(long, env = "FIELDSYNC_INJECT_COMMIT_FAULTS", hide = true)]
        inject_commit_faults: Option<String>,
        /// Secret for signing access tokens, at least 16 characters (default:
        /// generated once and kept in the database, shared by all instances on it).
        #[arg(long, env = "FIELDSYNC_JWT_SECRET", hide_env_values = true)]
        jwt_secret: Option<String>,
        /// Directory for attachments (photos, signatures), content-addressed.
        #[arg(long, env = "FIELDSYNC_BLOB_DIR", default_value = "fieldsync-blobs")]
        blob_dir: std::path::PathBuf,
        /// Largest attachment accepted, in bytes.
        #[arg(long, env = "FIELDSYNC_MAX_BLOB_BYTES", default_value_t = 25 * 1024 * 1024)]
        max_blob_bytes: usize,
        /// Bytes one user may newly store as attachments per 24 hours (re-sending
        /// a stored blob is free); more is answered 429. 0: unlimited.
        #[arg(long, env = "FIELDSYNC_BLOB_QUOTA_BYTES", default_value_t = 2 * 1024 * 1024 * 1024)]
        blob_quota_bytes: u64,
        /// Lifetime of access tokens, in seconds.
        #[arg(long, env = "FIELDSYNC_ACCESS_TOKEN_TTL_SECS", default_value_t = 900)]
        access_token_ttl_secs: u64,
        /// Write a snapshot after this many loose changes of one document.
        #[arg(long, env = "FIELDSYNC_COMPACT_AFTER", default_value_t = 1000)]
        compact_after: usize,
        /// Load demo users, customers, parts and tickets first (idempotent)
        /// and print the logins.
        #[arg(long)]
        demo: bool,
        /// Threads that hash and check passwords (argon2, 19 MiB each);
        /// default: one per CPU core.
        #[arg(long, env = "FIELDSYNC_PASSWORD_WORKERS")]
        password_workers: Option<usize>,
        /// Password checks that may wait for a thread; more are answered
        /// 503 with Retry-After.
        #[arg(long, env = "FIELDSYNC_PASSWORD_QUEUE", default_value_t = 64)]
        password_queue: usize,
        /// Login requests per minute from one client address (also the
        /// burst); more are answered 429 with Retry-After.
        #[arg(long, env = "FIELDSYNC_LOGIN_RATE_PER_IP", default_value_t = 60)]
        login_rate_per_ip: u32,
    },
    /// Load demo users, customers, parts and tickets, print the logins, exit.
    Demo,
    /// The service-history tables.
    #[command(subcommand)]
    Projection(ProjectionCommand),
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// A consistent copy of the whole database while the server keeps
    /// serving (SQLite: the online backup API; PostgreSQL: pg_dump), with
    /// progress on stderr. Never overwrites a file.
    Backup {
        /// The backup file to write.
        file: std::path::PathBuf,
    },
    /// Restore a backup into a new or empty database (never over data),
    /// then bring it to this version's schema.
    Restore {
        /// A file written by `fieldsync backup`.
        file: std::path::PathBuf,
    },
    /// Manage accounts. Passwords are read from the first line of stdin.
    #[command(subcommand)]
    User(UserCommand),
    /// Fold loose changes into snapshots (safe while the server runs).
    Compact {
        /// Only documents with at least this many loose changes.
        #[arg(long, default_value_t = 2)]
        min_changes: i64,
    },
    /// Attachment storage.
    #[command(subcommand)]
    Blobs(BlobsCommand),
    /// Exports for billing/ERP (recorded like the API's, see README).
    #[command(subcommand)]
    Export(ExportCommand),
    /// A periodic KPI report (the same as `GET /api/v1/reports/{period}`):
    /// the content to stdout (or --output), progress to stderr.
    Report {
        /// week, month, quarter or year
        #[arg(long)]
        period: String,
        /// 2026-W47, 2026-11, 2026-Q4, 2026, or a date in the period.
        #[arg(long)]
        at: String,
        /// json, csv or svg
        #[arg(long, default_value = "json")]
        format: String,
        #[arg(long)]
        output: Option<std::path::PathBuf>,
        /// Testing and demos: the service rules' clock runs this many
        /// seconds ahead (as `serve --clock-offset-secs`): a period still
        /// running is judged as of that moment.
        #[arg(
            long,
            env = "FIELDSYNC_CLOCK_OFFSET_SECS",
            default_value_t = 0,
            hide = true,
            allow_hyphen_values = true
        )]
        clock_offset_secs: i64,
    },
}

#[derive(Subcommand)]
enum ExportCommand {
    /// Jobs reconciled in a period, one line per labour/part billing line;
    /// the file goes to stdout (or --output), its record id to stderr.
    Reconciled {
        /// First day (2026-11-01) or RFC 3339 time.
        #[arg(long)]
        from: String,
        /// Last day, included (2026-11-30), or an RFC 3339 time (excluded).
        #[arg(long)]
        to: String,
        /// csv or jsonl
        #[arg(long, default_value = "csv")]
        format: String,
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum BlobsCommand {
    /// Delete blob files no stored ticket references, once older than the
    /// grace period (safe while the server runs).
    Gc {
        /// The server's attachment directory.
        #[arg(long, env = "FIELDSYNC_BLOB_DIR", default_value = "fieldsync-blobs")]
        blob_dir: std::path::PathBuf,
        /// Keep unreferenced blobs uploaded (or re-uploaded) more recently than
        /// this: devices upload before they sync the edit that references them.
        #[arg(long, default_value_t = 72)]
        older_than_hours: u64,
        /// Print what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum ProjectionCommand {
    /// Recompute every history row from the stored documents (gives the
    /// same rows the server wrote). Stop the servers first, as for a migration.
    Rebuild,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account (`echo "$PW" | fieldsync user add alice --role dispatcher`).
    Add {
        username: String,
        /// technician, dispatcher, back_office, supervisor, manager or admin
        #[arg(long)]
        role: Role,
        #[arg(long, default_value = "")]
        display_name: String,
    },
    /// List accounts.
    List,
    /// Disable an account (it can no longer log in or refresh tokens).
    Disable { username: String },
    /// Re-enable a disabled account.
    Enable { username: String },
    /// Set a new password (read from stdin).
    SetPassword { username: String },
    /// Change an account's role (live sync sessions pick it up on reconnect).
    SetRole {
        username: String,
        #[arg(long)]
        role: Role,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(feature = "otel")]
    let otlp_endpoint = cli.otlp_endpoint.clone();
    #[cfg(not(feature = "otel"))]
    let otlp_endpoint: Option<String> = None;
    // Held to the end: exported spans still queued are sent on exit.
    let _flush_on_exit = match crate::telemetry::init(otlp_endpoint.as_deref()) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: --otlp-endpoint: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve {
            bind,
            port,
            workers,
            max_message_bytes,
            idle_evict_secs,
            max_messages_per_sec,
            max_docs_per_session,
            max_bytes_per_sec,
            max_ops_per_sec,
            max_inflated_bytes,
            max_ops_per_message,
            peer_queue_bytes,
            max_ephemeral_per_sec,
            max_ephemeral_bytes_per_sec,
            sla_interval_secs,
            clock_offset_secs,
            webhook_url,
            webhook_secret,
            public_url,
            webhook_retry_secs,
            commit_linger_us,
            inject_commit_faults,
            jwt_secret,
            access_token_ttl_secs,
            blob_dir,
            max_blob_bytes,
            blob_quota_bytes,
            compact_after,
            demo,
            password_workers,
            password_queue,
            login_rate_per_ip,
        } => {
            if demo {
                if let Err(e) = print_demo(&cli.database) {
                    eprintln!("error: {e:#}");
                    return ExitCode::FAILURE;
                }
            }
            let opts = ServeOptions {
                database_url: cli.database,
                bind,
                port,
                workers,
                commit_linger: Duration::from_micros(commit_linger_us),
                jwt_secret,
                access_token_ttl: Duration::from_secs(access_token_ttl_secs.max(1)),
                blob_dir,
                max_blob_bytes,
                blob_quota_bytes,
                sync: SyncConfig {
                    max_message_bytes,
                    idle_evict: Duration::from_secs(idle_evict_secs),
                    max_messages_per_sec,
                    max_docs_per_session,
                    max_bytes_per_sec,
                    max_ops_per_sec,
                    max_inflated_bytes,
                    max_ops_per_message,
                    peer_queue_bytes,
                    max_ephemeral_per_sec,
                    max_ephemeral_bytes_per_sec,
                    compact_after: compact_after.max(1),
                    ..SyncConfig::default()
                },
                inject_commit_faults,
                logins: app::LoginLimits {
                    password_workers: password_workers.unwrap_or_else(|| {
                        std::thread::available_parallelism().map_or(2, |n| n.get())
                    }),
                    password_queue,
                    per_ip_per_minute: login_rate_per_ip,
                },
                service: app::ServiceOptions {
                    sla_interval: Duration::from_secs_f64(sla_interval_secs.clamp(0.05, 86_400.0)),
                    clock_offset: chrono::Duration::seconds(clock_offset_secs),
                    public_url: public_url.map(|u| u.trim_end_matches('/').to_string()),
                    webhook: webhook_url.map(|url| crate::office::webhooks::WebhookConfig {
                        url,
                        secret: webhook_secret.unwrap_or_default(),
                        retry_base: Duration::from_secs_f64(webhook_retry_secs.clamp(0.05, 3600.0)),
                    }),
                },
            };
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")
                .and_then(|rt| rt.block_on(app::serve(opts)))
        }
        Command::Migrate => Db::open(&cli.database, 1)
            .map(|db| {
                println!("database is up to date ({})", db.target.display());
            })
            .map_err(Into::into),
        Command::Compact { min_changes } => compact(&cli.database, min_changes),
        Command::Demo => print_demo(&cli.database),
        Command::Backup { file } => crate::backup::backup(&cli.database, &file).map(|s| {
            println!(
                "backup written: {} ({} bytes): {}",
                file.display(),
                s.bytes,
                s.detail
            );
        }),
        Command::Restore { file } => crate::backup::restore(&cli.database, &file).map(|s| {
            println!(
                "restored {} ({} bytes): {}",
                file.display(),
                s.bytes,
                s.detail
            );
        }),
        Command::Blobs(BlobsCommand::Gc {
            blob_dir,
            older_than_hours,
            dry_run,
        }) => blobs_gc(&cli.database, &blob_dir, older_than_hours, dry_run),
        Command::Projection(ProjectionCommand::Rebuild) => rebuild_projection(&cli.database),
        Command::User(cmd) => user_command(&cli.database, cmd),
        Command::Export(ExportCommand::Reconciled {
            from,
            to,
            format,
            output,
        }) => export_reconciled(&cli.database, &from, &to, &format, output.as_deref()),
        Command::Report {
            period,
            at,
            format,
            output,
            clock_offset_secs,
        } => report(
            &cli.database,
            &period,
            &at,
            &format,
            output.as_deref(),
            chrono::Utc::now() + chrono::Duration::seconds(clock_offset_secs),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn compact(database: &str, min_changes: i64) -> anyhow::Result<()> {
    let db = Db::open(database, 2)?;
    let docs = db.run_blocking(|c| storage::docs_needing_compaction(c, min_changes.max(1)))?;
    let total = docs.len();
    println!("{total} document(s) to compact");
    let mut progress = Progress::new("compact", "documents", total as u64);
    let mut removed = 0;
    for (i, doc_id) in docs.iter().enumerate() {
        let stored = db.run_blocking(|c| storage::load(c, doc_id))?;
        let doc = stored
            .materialize()
            .with_context(|| format!("loading {doc_id}"))?;
        let known = doc
            .get_changes_meta(&[])
            .into_iter()
            .map(|m| m.hash)
            .collect();
        let r = db.run_blocking(|c| {
            storage::write_snapshot(c, doc_id, &doc.save(), &doc.get_heads(), &known)
        })?;
        removed += r.changes_removed;
        progress.inc(1);
        if (i + 1) % 100 == 0 || i + 1 == total {
            println!(
                "  {}/{total} documents compacted, {removed} change rows folded",
                i + 1
            );
        }
    }
    Ok(())
}

fn blobs_gc(
    database: &str,
    blob_dir: &std::path::Path,
    older_than_hours: u64,
    dry_run: bool,
) -> anyhow::Result<()> {
    use crate::blobs::{gc, BlobStore};
    anyhow::ensure!(
        blob_dir.is_dir(),
        "no blob directory at {} (pass --blob-dir)",
        blob_dir.display()
    );
    let db = Db::open(database, 1)?;
    let store = BlobStore::open(blob_dir, 0)?;
    let opts = gc::GcOptions {
        grace: Duration::from_secs(older_than_hours.saturating_mul(3600)),
        dry_run,
    };
    gc::collect(&db, &store, opts, &mut std::io::stdout().lock())?;
    Ok(())
}

fn print_demo(database: &str) -> anyhow::Result<()> {
    let db = Db::open(database, 1)?;
    for line in crate::demo::load(&db)? {
        println!("{line}");
    }
    Ok(())
}

fn export_reconciled(
    database: &str,
    from: &str,
    to: &str,
    format: &str,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use crate::office::export;
    let bad =
        |name: &str| anyhow::anyhow!("--{name} must be a date like 2026-11-01 or an RFC 3339 time");
    let from = export::bound(from, false).ok_or_else(|| bad("from"))?;
    let to = export::bound(to, true).ok_or_else(|| bad("to"))?;
    anyhow::ensure!(from < to, "--to must be after --from");
    let format = export::Format::parse(format)
        .ok_or_else(|| anyhow::anyhow!("--format must be csv or jsonl"))?;
    let db = Db::open(database, 1)?;
    let row = db.run_blocking(|c| {
        let row = export::create(c, &from, &to, format, "cli")?;
        crate::audit::record(
            c,
            crate::audit::Entry {
                action: Action::ReconciliationExported,
                actor_user_id: None,
                subject: Some(&row.id),
                detail: serde_json::json!({ "from": from, "to": to, "format": row.format,
                    "jobs": row.job_count, "content_sha256": row.content_sha256, "via": "cli" }),
                ip: None,
            },
        )?;
        Ok(row)
    })?;
    match output {
        Some(path) => std::fs::write(path, &row.content)
            .with_context(|| format!("writing {}", path.display()))?,
        None => {
            use std::io::Write;
            std::io::stdout().write_all(row.content.as_bytes())?;
        }
    }
    eprintln!(
        "export {}: {} job(s), {} line(s), sha256 {} (again: GET /api/v1/reconciliation/exports/{}/content)",
        row.id, row.job_count, row.line_count, row.content_sha256, row.id
    );
    Ok(())
}

fn report(
    database: &str,
    period: &str,
    at: &str,
    format: &str,
    output: Option<&std::path::Path>,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    use crate::office::reports::{self, Format, PeriodKind, ReportPeriod};
    let kind = PeriodKind::parse(period)
        .ok_or_else(|| anyhow::anyhow!("--period must be week, month, quarter or year"))?;
    let period = ReportPeriod::parse(kind, at).map_err(|e| anyhow::anyhow!("--at: {e}"))?;
    let format = Format::parse(format)
        .ok_or_else(|| anyhow::anyhow!("--format must be json, csv or svg"))?;
    let db = Db::open(database, 1)?;
    let started = std::time::Instant::now();
    // Step lines as they come; a bar (or plain lines) while tickets load.
    let mut loading: Option<Progress> = None;
    let mut progress = |step: reports::BuildStep<'_>| match step {
        reports::BuildStep::Note(line) => match loading.as_mut() {
            Some(p) => p.note(line),
            None => eprintln!("{line}"),
        },
        reports::BuildStep::Loaded { done, total } => {
            loading
                .get_or_insert_with(|| Progress::new("loading", "tickets", total as u64))
                .set(done as u64);
            if done >= total {
                if let Some(p) = loading.take() {
                    p.finish();
                }
            }
        }
    };
    let report =
        db.run_blocking(
            |c| match reports::build(c, &period, now, i64::MAX, &mut progress) {
                Ok(r) => Ok(Ok(r)),
                Err(reports::ReportError::Db(e)) => Err(e),
                Err(e) => Ok(Err(anyhow::anyhow!(e))),
            },
        )??;
    drop(loading);
    let body = reports::render(&report, format).map_err(|e| anyhow::anyhow!(e))?;
    match output {
        Some(path) => {
            std::fs::write(path, &body).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            use std::io::Write;
            std::io::stdout().write_all(body.as_bytes())?;
        }
    }
    eprintln!(
        "report {} ({} to {}): {} job(s) opened, {} completed, in {:.1} s",
        report.period.label,
        report.period.start,
        report.period.end,
        report.overview.jobs_opened,
        report.overview.jobs_completed,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn rebuild_projection(database: &str) -> anyhow::Result<()> {
    let db = Db::open(database, 1)?;
    let started = std::time::Instant::now();
    let mut progress: Option<Progress> = None;
    let report = db.run_blocking(|c| {
        crate::projection::store::rebuild(c, |done, total| {
            progress
                .get_or_insert_with(|| {
                    Progress::new("projection rebuild", "documents", total as u64)
                })
                .set(done as u64);
            if done % 500 == 0 || done == total {
                println!("  {done}/{total} documents");
            }
        })
    })?;
    drop(progress);
    println!(
        "projection rebuilt: {} documents, {} tickets, {} failed, in {:.1} s",
        report.documents,
        report.tickets,
        report.failed,
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        report.failed == 0,
        "{} document(s) could not be loaded (see the log)",
        report.failed
    );
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let pw = line.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(
        !pw.is_empty(),
        "no password on stdin (pipe it in: echo \"$PW\" | fieldsync user ...)"
    );
    Ok(pw)
}

fn user_command(database: &str, cmd: UserCommand) -> anyhow::Result<()> {
    let db = Db::open(database, 1)?;
    let via_cli = || serde_json::json!({ "via": "cli" });
    match cmd {
        UserCommand::Add {
            username,
            role,
            display_name,
        } => {
            let hash = password::hash(&read_password()?)?;
            let user = db.run_blocking(|c| {
                Ok(accounts::audited(
                    c,
                    Action::UserCreated,
                    None,
                    &username,
                    via_cli(),
                    |c| accounts::create(c, &username, &display_name, role, &hash),
                ))
            })??;
            println!("created {} ({}) id {}", user.username, user.role, user.id);
        }
        UserCommand::List => {
            let users = db.run_blocking(accounts::list)?;
            println!("{:<24} {:<12} {:<9} NAME", "USERNAME", "ROLE", "STATUS");
            for u in users {
                let status = if u.disabled { "disabled" } else { "active" };
                println!(
                    "{:<24} {:<12} {:<9} {}",
                    u.username,
                    u.role.as_str(),
                    status,
                    u.display_name
                );
            }
        }
        UserCommand::Disable { username } => {
            db.run_blocking(|c| {
                Ok(accounts::audited(
                    c,
                    Action::UserDisabled,
                    None,
                    &username,
                    via_cli(),
                    |c| accounts::set_disabled(c, &username, true, None),
                ))
            })??;
            println!("disabled {username}");
        }
        UserCommand::Enable { username } => {
            db.run_blocking(|c| {
                Ok(accounts::audited(
                    c,
                    Action::UserEnabled,
                    None,
                    &username,
                    via_cli(),
                    |c| accounts::set_disabled(c, &username, false, None),
                ))
            })??;
            println!("enabled {username}");
        }
        UserCommand::SetRole { username, role } => {
            let detail = serde_json::json!({ "via": "cli", "role": role });
            db.run_blocking(|c| {
                Ok(accounts::audited(
                    c,
                    Action::RoleChanged,
                    None,
                    &username,
                    detail,
                    |c| accounts::set_role(c, &username, role, None),
                ))
            })??;
            println!("{username} is now {role}");
        }
        UserCommand::SetPassword { username } => {
            let hash = password::hash(&read_password()?)?;
            db.run_blocking(|c| {
                Ok(accounts::audited(
                    c,
                    Action::PasswordChanged,
                    None,
                    &username,
                    via_cli(),
                    |c| sessions::change_password(c, &username, &hash, None),
                ))
            })??;
            println!("password changed for {username}");
        }
    }
    Ok(())
}
