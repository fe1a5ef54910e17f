//! Test harness: a real `fieldsync` process on its own port and its own
//! database (a temp SQLite file, or a fresh PostgreSQL database created from
//! `TEST_DATABASE_URL`), plus small helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use diesel::{Connection, RunQueryDsl};

pub mod js_device;
pub mod raw;
pub mod samod;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Defines `mod $name { sqlite, postgres }` running `$name(Backend)` on each.
// Used within each test crate only (the harness is `mod common;` in each).
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(crate::common::TestDb::new(crate::common::Backend::Sqlite)).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = crate::common::TestDb::postgres_or_skip() else { return };
                super::$name(db).await
            }
        }
    )*};
}

/// A database only this test uses; removed on drop.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    /// Attachments of the servers started on this database.
    pub blob_dir: tempfile::TempDir,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>, // (admin url, database name)
}

impl TestDb {
    pub fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = dir
                    .path()
                    .join("fieldsync.db")
                    .to_string_lossy()
                    .into_owned();
                Self {
                    blob_dir: tempfile::tempdir().expect("tempdir"),
                    backend,
                    url,
                    _dir: Some(dir),
                    pg: None,
                }
            }
            Backend::Postgres => Self::postgres_or_skip().expect("TEST_DATABASE_URL is not set"),
        }
    }

    /// PostgreSQL from `TEST_DATABASE_URL`. Without it the test is skipped
    /// locally, but fails under CI so PostgreSQL coverage cannot silently vanish.
    pub fn postgres_or_skip() -> Option<Self> {
        let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
            if std::env::var("CI").is_ok() {
                panic!("CI is set but TEST_DATABASE_URL is not: PostgreSQL tests must run");
            }
            eprintln!("TEST_DATABASE_URL not set; skipping the PostgreSQL variant");
            return None;
        };
        let name = format!("fieldsync_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn =
            diesel::PgConnection::establish(&admin).expect("connect to TEST_DATABASE_URL");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .expect("create test database");
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        Some(Self {
            blob_dir: tempfile::tempdir().expect("tempdir"),
            backend: Backend::Postgres,
            url: format!("{base}/{name}"),
            _dir: None,
            pg: Some((admin, name)),
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.pg {
            if let Ok(mut conn) = diesel::PgConnection::establish(admin) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn);
            }
        }
    }
}

/// The account the harness signs its devices in with.
pub const HARNESS_USER: &str = "harness-admin";
pub const HARNESS_PASSWORD: &str = "harness-password";

/// A running `fieldsync serve`.
pub struct Server {
    child: Child,
    pub port: u16,
    pub database_url: String,
    args: Vec<String>,
    /// Access token of `HARNESS_USER`.
    pub token: String,
}

impl Server {
    pub fn start(db: &TestDb, extra: &[&str]) -> Self {
        let mut args: Vec<String> = vec![
            "--blob-dir".into(),
            db.blob_dir.path().to_string_lossy().into_owned(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start_url(&db.url, args)
    }

    fn start_url(database_url: &str, args: Vec<String>) -> Self {
        // Idempotent: on a restart the account exists already.
        cli(
            database_url,
            &["user", "add", HARNESS_USER, "--role", "admin"],
            &format!("{HARNESS_PASSWORD}\n"),
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_fieldsync"))
            .args(["--database", database_url, "serve", "--port", "0"])
            .args(&args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn fieldsync");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("server exited before listening")
                .expect("read stdout");
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .trim()
                    .parse()
                    .expect("port");
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let mut server = Self {
            child,
            port,
            database_url: database_url.to_string(),
            args,
            token: String::new(),
        };
        server.token = server.login(HARNESS_USER, HARNESS_PASSWORD);
        server
    }

    /// Logs in and returns the access token.
    pub fn login(&self, user: &str, password: &str) -> String {
        let (status, body) = http(
            self.port,
            "POST",
            "/api/v1/auth/login",
            None,
            Some(serde_json::json!({"username": user, "password": password})),
        );
        assert_eq!(status, 200, "login of {user} failed: {body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    /// An authenticated sync URL for a new device of the harness user.
    pub fn sync_url(&self) -> String {
        self.sync_url_for(&self.token, &uuid::Uuid::new_v4().to_string())
    }

    /// The sync URL for `device` signed in with `token`.
    pub fn sync_url_for(&self, token: &str, device: &str) -> String {
        format!(
            "ws://127.0.0.1:{}/sync?token={token}&device={device}",
            self.port
        )
    }

    /// The sync URL without credentials.
    pub fn bare_sync_url(&self) -> String {
        format!("ws://127.0.0.1:{}/sync", self.port)
    }

    /// SIGKILL: no shutdown hooks, like a crash or power cut of the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as a service manager or a rolling upgrade stops it; waits
    /// for the process to exit and returns how.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait for the server")
    }

    /// Starts a new server on the same database (after `terminate`/`kill`).
    pub fn restart(&self) -> Self {
        Self::start_url(&self.database_url.clone(), self.args.clone())
    }

    /// Kills the server and starts a new one on the same database.
    pub fn crash_and_restart(mut self) -> Self {
        self.kill();
        Self::start_url(&self.database_url.clone(), self.args.clone())
    }

    pub fn get(&self, path: &str) -> String {
        http_get(self.port, path)
    }

    /// The server process's resident memory now and at its peak, in KiB.
    pub fn memory_kb(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("server process status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// A Prometheus counter or gauge without labels from `/metrics`.
    pub fn metric(&self, name: &str) -> u64 {
        let v = self
            .series(name)
            .unwrap_or_else(|| panic!("metric {name} missing"));
        assert!(v >= 0.0 && v.fract() == 0.0, "{name} = {v}");
        v as u64
    }

    /// One series from `/metrics`, written as in the exposition, labels
    /// included (`fieldsync_logins_total{outcome="ok"}`,
    /// `fieldsync_ack_latency_seconds_count`); None if absent.
    pub fn series(&self, series: &str) -> Option<f64> {
        metric_series(&self.get("/metrics"), series)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP/1.1 request on a fresh connection: returns (status, body).
fn request(
    port: u16,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let reply = http_full(port, method, path, bearer, content_type, body);
    (reply.status, reply.body)
}

/// A JSON request: returns (status, body as JSON or null).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let (status, raw) = request(
        port,
        method,
        path,
        bearer,
        "application/json",
        body.as_bytes(),
    );
    (
        status,
        serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null),
    )
}

/// A request with a binary body: returns (status, body bytes).
pub fn http_bytes(
    port: u16,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &[u8],
) -> (u16, Vec<u8>) {
    request(port, method, path, bearer, "application/octet-stream", body)
}

/// Runs `fieldsync --database <db> <args>` with `stdin` piped in.
pub fn cli(database_url: &str, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fieldsync"))
        .args(["--database", database_url])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fieldsync");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `series` (name and labels, as written) in a Prometheus text exposition.
pub fn metric_series(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| match v.trim() {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|e| panic!("{series} = {v}: {e}")),
        })
}

pub fn http_get(port: u16, path: &str) -> String {
    String::from_utf8_lossy(&request(port, "GET", path, None, "text/plain", b"").1).into_owned()
}

pub const WAIT: Duration = Duration::from_secs(15);

/// A TCP forwarder between the server and PostgreSQL that a test can cut
/// (every connection dropped, new ones closed at once) and restore: a
/// database outage without touching the shared PostgreSQL server.
pub struct TcpProxy {
    pub port: u16,
    state: std::sync::Arc<std::sync::Mutex<ProxyState>>,
}

struct ProxyState {
    up: bool,
    open: Vec<TcpStream>,
}

impl TcpProxy {
    /// Forwards to the host:port of the `postgres://…` URL `target`.
    pub fn start(target: &str) -> Self {
        let addr = target
            .split('@')
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("host:port in the database URL")
            .to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(std::sync::Mutex::new(ProxyState {
            up: true,
            open: Vec::new(),
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let mut st = shared.lock().unwrap();
                if !st.up {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect(&addr) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                    (upstream.try_clone().unwrap(), client.try_clone().unwrap()),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                st.open.push(client);
                st.open.push(upstream);
            }
        });
        Self { port, state }
    }

    /// `url` with its host:port replaced by the proxy's.
    pub fn url(&self, url: &str) -> String {
        let (head, rest) = url.split_once('@').expect("user@host in the URL");
        let path = rest.split_once('/').map(|(_, p)| p).unwrap_or("");
        format!("{head}@127.0.0.1:{}/{path}", self.port)
    }

    /// The database "goes away": open connections break, new ones fail.
    pub fn cut(&self) {
        let mut st = self.state.lock().unwrap();
        st.up = false;
        for s in st.open.drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.state.lock().unwrap().up = true;
    }
}

/// Creates accounts; each user's password is `<name>-password`.
pub fn add_users(db: &TestDb, users: &[(&str, &str)]) {
    for (u, r) in users {
        let out = cli(
            &db.url,
            &["user", "add", u, "--role", r],
            &format!("{u}-password\n"),
        );
        assert!(
            out.status.success(),
            "could not create user {u}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A response with its headers (names lower-cased).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

fn parse_reply(raw: &[u8]) -> Reply {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[head_end..].to_vec(),
    }
}

fn request_text(method: &str, path: &str, bearer: Option<&str>, ct: &str, len: usize) -> String {
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}Content-Type: {ct}\r\nContent-Length: {len}\r\n\r\n"
    )
}

/// One request with any method, content type and body: the full reply.
/// (Responses are not chunked-decoded; the server answers errors with a length.)
pub fn http_full(
    port: u16,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request_text(method, path, bearer, content_type, body.len()).as_bytes())
        .unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse_reply(&out)
}

/// A JSON request with extra headers (e.g. `If-Match`): the full reply.
pub fn http_with(
    port: u16,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<serde_json::Value>,
) -> Reply {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = request_text(method, path, bearer, "application/json", body.len());
    head.truncate(head.len() - 2);
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse_reply(&out)
}

/// The `items` of one page of a list answer (`{"items": [...], "next_cursor"}`).
pub fn items(page: &serde_json::Value) -> &Vec<serde_json::Value> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page of a list: {page}"))
}

/// A JSON request sent from the loopback address `from` (any 127.x.y.z on
/// Linux), so tests can play clients at different addresses.
pub async fn http_from(
    from: &str,
    port: u16,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<serde_json::Value>,
) -> Reply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{from}:0").parse().unwrap())
        .expect("bind the client address");
    let mut s = socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .expect("connect");
    let head = request_text(method, path, bearer, "application/json", body.len());
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut out)).await;
    parse_reply(&out)
}

impl Server {
    /// A `/proc/<pid>/status` field in KiB (e.g. `VmRSS`, `VmHWM` = peak RSS).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} missing"))
    }
}

/// `cargo test` alone must work on a fresh checkout: install the pinned npm
/// packages (package-lock.json) once if they are missing.
pub fn install_node_packages(dir: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::path::Path::new(dir)
            .join("node_modules/@automerge/automerge-repo")
            .exists()
        {
            return;
        }
        eprintln!("installing the JS interop client (npm in scripts/interop)...");
        let npm = |cmd: &str| {
            std::process::Command::new("npm")
                .args([cmd, "--no-audit", "--no-fund"])
                .current_dir(dir)
                .status()
                .expect("npm is installed")
                .success()
        };
        // Same fallback as .ci/run: `npm ci` refuses the lockfile when the
        // registry lacks cbor-x's optional native add-ons.
        assert!(npm("ci") || npm("install"), "npm could not install {dir}");
    });
}

/// GET `path` with `token`: the JSON body, asserting 200.
pub fn get_json(server: &Server, token: &str, path: &str) -> serde_json::Value {
    let (status, body) = http(server.port, "GET", path, Some(token), None);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// A server whose service rules' clock runs `offset_secs` ahead (hidden
/// `--clock-offset-secs`), sweeping every 0.2 s.
pub fn server_with_clock(db: &TestDb, offset_secs: i64) -> Server {
    Server::start(
        db,
        &[
            "--sla-interval-secs",
            "0.2",
            "--clock-offset-secs",
            &offset_secs.to_string(),
        ],
    )
}

/// Polls `ok` every 100 ms for up to 15 s.
pub fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The escalations filed under `subject` (a ticket's doc id, or
/// `complaint:<id>`) as sorted `target:tier` strings.
pub fn escalation_tiers(server: &Server, token: &str, subject: &str) -> Vec<String> {
    let list = get_json(
        server,
        token,
        &format!("/api/v1/escalations?doc_id={subject}"),
    );
    let mut got: Vec<String> = list["items"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["milestone"].as_str().unwrap_or(""),
                e["tier"].as_str().unwrap_or("")
            )
        })
        .collect();
    got.sort();
    got
}
