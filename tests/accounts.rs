//! Accounts and sessions end to end: CLI bootstrap, login, JWT-protected API,
//! refresh-token rotation with reuse detection, logout, disabling, audit log.

mod common;

use common::{cli, http, Server, TestDb};
use serde_json::{json, Value};

fn login(server: &Server, user: &str, pw: &str) -> (u16, Value) {
    http(
        server.port,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": user, "password": pw})),
    )
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no error code>")
}

async fn cli_bootstraps_the_first_admin(db: TestDb) {
    let out = cli(
        &db.url,
        &["user", "add", "boss", "--role", "admin"],
        "s3cret-pass\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created boss (admin)"));

    let dup = cli(
        &db.url,
        &["user", "add", "boss", "--role", "admin"],
        "another-pass\n",
    );
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("username `boss` is taken"));
    let weak = cli(
        &db.url,
        &["user", "add", "weak", "--role", "technician"],
        "short\n",
    );
    assert!(String::from_utf8_lossy(&weak.stderr).contains("at least 8 characters"));
    let bad_role = cli(
        &db.url,
        &["user", "add", "x", "--role", "king"],
        "long-enough\n",
    );
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("unknown role"));

    let list = cli(&db.url, &["user", "list"], "");
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("boss") && text.contains("admin") && text.contains("active"),
        "{text}"
    );
    assert!(!text.contains("weak"));

    let server = Server::start(&db, &[]);
    let (status, body) = login(&server, "boss", "s3cret-pass");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["role"], "admin");
    assert_eq!(body["token_type"], "Bearer");
}

async fn login_api_and_roles(db: TestDb) {
    assert!(cli(
        &db.url,
        &["user", "add", "root", "--role", "admin"],
        "admin-password\n"
    )
    .status
    .success());
    let server = Server::start(&db, &[]);
    let port = server.port;

    // Wrong password and unknown user look the same.
    let (s1, b1) = login(&server, "root", "nope-nope");
    let (s2, b2) = login(&server, "ghost", "nope-nope");
    assert_eq!((s1, error_code(&b1)), (401, "invalid_credentials"));
    assert_eq!((s2, error_code(&b2)), (401, "invalid_credentials"));
    assert_eq!(b1["error"]["message"], b2["error"]["message"]);

    let (_, admin) = login(&server, "root", "admin-password");
    let admin_token = admin["access_token"].as_str().unwrap().to_string();

    // Bearer token checks.
    assert_eq!(
        error_code(&http(port, "GET", "/api/v1/me", None, None).1),
        "missing_token"
    );
    assert_eq!(
        error_code(&http(port, "GET", "/api/v1/me", Some("garbage"), None).1),
        "invalid_token"
    );
    let (status, me) = http(port, "GET", "/api/v1/me", Some(&admin_token), None);
    assert_eq!((status, me["username"].as_str()), (200, Some("root")));

    // Admin creates a dispatcher; the dispatcher may not administer accounts.
    let (status, created) = http(
        port,
        "POST",
        "/api/v1/users",
        Some(&admin_token),
        Some(
            json!({"username": "dana", "display_name": "Dana D.", "role": "dispatcher", "password": "dispatch-pw"}),
        ),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["role"], "dispatcher");
    let (status, body) = http(
        port,
        "POST",
        "/api/v1/users",
        Some(&admin_token),
        Some(json!({"username": "dana", "role": "dispatcher", "password": "dispatch-pw"})),
    );
    assert_eq!((status, error_code(&body)), (409, "conflict"));
    let (status, body) = http(
        port,
        "POST",
        "/api/v1/users",
        Some(&admin_token),
        Some(json!({"username": "x", "role": "emperor", "password": "long-enough"})),
    );
    assert_eq!((status, error_code(&body)), (400, "bad_request"));
    let (status, body) = http(
        port,
        "POST",
        "/api/v1/users",
        Some(&admin_token),
        Some(json!({"nonsense": true})),
    );
    assert_eq!((status, error_code(&body)), (400, "bad_request"));

    let (_, dana) = login(&server, "dana", "dispatch-pw");
    let dana_token = dana["access_token"].as_str().unwrap().to_string();
    let (status, body) = http(port, "GET", "/api/v1/users", Some(&dana_token), None);
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    let (status, users) = http(port, "GET", "/api/v1/users", Some(&admin_token), None);
    assert_eq!(status, 200);
    let names: Vec<&str> = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"root") && names.contains(&"dana"),
        "{names:?}"
    );

    // Disabling cuts off the existing token and future logins.
    let (status, _) = http(
        port,
        "POST",
        "/api/v1/users/dana/disable",
        Some(&admin_token),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(
        error_code(&http(port, "GET", "/api/v1/me", Some(&dana_token), None).1),
        "user_disabled"
    );
    assert_eq!(login(&server, "dana", "dispatch-pw").0, 401);
    let refresh = dana["refresh_token"].as_str().unwrap();
    let (status, _) = http(
        port,
        "POST",
        "/api/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": refresh})),
    );
    assert_eq!(status, 401);
}

async fn refresh_tokens_rotate_and_reuse_revokes_the_family(db: TestDb) {
    assert!(cli(
        &db.url,
        &["user", "add", "tech", "--role", "technician"],
        "tech-password\n"
    )
    .status
    .success());
    assert!(cli(
        &db.url,
        &["user", "add", "root", "--role", "admin"],
        "admin-password\n"
    )
    .status
    .success());
    let server = Server::start(&db, &[]);
    let port = server.port;
    let refresh = |token: &str| {
        http(
            port,
            "POST",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": token})),
        )
    };

    let (_, first) = login(&server, "tech", "tech-password");
    let r1 = first["refresh_token"].as_str().unwrap().to_string();
    let (status, second) = refresh(&r1);
    assert_eq!(status, 200, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2, "rotated");
    assert_eq!(
        http(
            port,
            "GET",
            "/api/v1/me",
            Some(second["access_token"].as_str().unwrap()),
            None
        )
        .0,
        200
    );

    // r1 was used already: replaying it revokes the family, so r2 dies too.
    let (status, body) = refresh(&r1);
    assert_eq!((status, error_code(&body)), (401, "invalid_refresh_token"));
    assert_eq!(refresh(&r2).0, 401, "the whole family is revoked");

    // Logout revokes a fresh family.
    let (_, again) = login(&server, "tech", "tech-password");
    let r3 = again["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(
        http(
            port,
            "POST",
            "/api/v1/auth/logout",
            None,
            Some(json!({"refresh_token": r3}))
        )
        .0,
        204
    );
    assert_eq!(refresh(&r3).0, 401);

    // Everything is in the audit log, visible to admins only.
    let (_, admin) = login(&server, "root", "admin-password");
    let admin_token = admin["access_token"].as_str().unwrap();
    let (_, reused) = http(
        port,
        "GET",
        "/api/v1/audit?action=refresh_token_reused",
        Some(admin_token),
        None,
    );
    assert_eq!(reused["items"].as_array().unwrap().len(), 1, "{reused}");
    let (_, all) = http(port, "GET", "/api/v1/audit", Some(admin_token), None);
    let actions: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for a in [
        "login",
        "token_refreshed",
        "refresh_token_reused",
        "logout",
        "user_created",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let (_, tech) = login(&server, "tech", "tech-password");
    assert_eq!(
        http(
            port,
            "GET",
            "/api/v1/audit",
            Some(tech["access_token"].as_str().unwrap()),
            None
        )
        .0,
        403
    );
    assert_eq!(login(&server, "tech", "wrong-password").0, 401);
    let (_, failed) = http(
        port,
        "GET",
        "/api/v1/audit?action=login_failed",
        Some(admin_token),
        None,
    );
    assert_eq!(failed["items"][0]["subject"], "tech");
}

async fn repeated_failed_logins_are_throttled(db: TestDb) {
    assert!(cli(
        &db.url,
        &["user", "add", "vic", "--role", "technician"],
        "vic-password\n"
    )
    .status
    .success());
    let server = Server::start(&db, &[]);
    for _ in 0..5 {
        assert_eq!(login(&server, "vic", "guess-guess").0, 401);
    }
    // Even the right password is refused now, with a clear error.
    let (status, body) = login(&server, "vic", "vic-password");
    assert_eq!((status, error_code(&body)), (429, "too_many_attempts"));
    // Other accounts are unaffected.
    assert_eq!(
        login(&server, common::HARNESS_USER, common::HARNESS_PASSWORD).0,
        200
    );
}

async fn role_changes_are_audited_and_apply_to_live_sessions(db: TestDb) {
    assert!(cli(
        &db.url,
        &["user", "add", "rita", "--role", "technician"],
        "rita-password\n"
    )
    .status
    .success());
    let out = cli(
        &db.url,
        &["user", "set-role", "rita", "--role", "dispatcher"],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::start(&db, &[]);
    let (_, rita) = login(&server, "rita", "rita-password");
    assert_eq!(rita["user"]["role"], "dispatcher");
    let rita_token = rita["access_token"].as_str().unwrap().to_string();

    let dev = fieldsync_shared::client::Device::new("rita-peer");
    dev.connect(&server.sync_url_for(&rita_token, "rita-phone"))
        .await
        .unwrap();
    let (status, body) = http(
        server.port,
        "PUT",
        "/api/v1/users/rita/role",
        Some(&rita_token),
        Some(json!({"role": "admin"})),
    );
    assert_eq!(
        (status, error_code(&body)),
        (403, "forbidden"),
        "only admins change roles"
    );
    let (status, body) = http(
        server.port,
        "PUT",
        "/api/v1/users/rita/role",
        Some(&server.token),
        Some(json!({"role": "back_office"})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], "back_office");
    dev.wait_until(common::WAIT, "live session closed", |d| !d.is_connected())
        .await
        .unwrap();
    assert!(dev.last_close().unwrap().1.contains("role changed"));

    let (_, audit) = http(
        server.port,
        "GET",
        "/api/v1/audit?action=role_changed",
        Some(&server.token),
        None,
    );
    let roles: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        vec!["rita", "rita"],
        "CLI and API changes are both audited"
    );
}

/// Issue 10 item 4: password hashing runs on its own small pool, so a burst
/// of logins neither holds the database permits sync and REST need nor
/// multiplies argon2's 19 MiB per hash. Logins come from 50 addresses so the
/// per-address limits do not hide the effect.
async fn a_login_burst_neither_starves_requests_nor_grows_memory(db: TestDb) {
    let server = Server::start(&db, &[]);
    let port = server.port;
    let peak_before = server.memory_kib("VmHWM");
    let started = std::time::Instant::now();
    let logins: Vec<_> = (0..100)
        .map(|i| {
            tokio::spawn(async move {
                let from = format!("127.0.1.{}", 2 + i % 50);
                let body =
                    json!({"username": format!("ghost-{i}"), "password": "sprayed-password"});
                let r =
                    common::http_from(&from, port, "POST", "/api/v1/auth/login", None, Some(body))
                        .await;
                (r.status, started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let token = server.token.clone();
    let me = tokio::task::spawn_blocking(move || {
        let (status, _) = http(port, "GET", "/api/v1/me", Some(&token), None);
        (status, started.elapsed())
    })
    .await
    .unwrap();
    let mut done = Vec::new();
    for l in logins {
        let (status, at) = l.await.unwrap();
        assert!(
            status == 401 || status == 503,
            "a login for an unknown user got {status}"
        );
        // 503s (queue full) answer at once; only checked passwords count.
        if status == 401 {
            done.push(at);
        }
    }
    done.sort();
    assert_eq!(me.0, 200);
    assert!(
        me.1 < done[done.len() / 4],
        "a database-bound request waited for the login burst: answered at {:?}, \
         a quarter of the checked logins were done at {:?}",
        me.1,
        done[done.len() / 4]
    );
    let grown_mib = server.memory_kib("VmHWM").saturating_sub(peak_before) / 1024;
    assert!(
        grown_mib < 100,
        "peak memory grew by {grown_mib} MiB during 100 concurrent logins"
    );
}

/// Issue 10 item 4: the hash pool's queue is bounded; a full queue answers
/// 503 with Retry-After in the JSON error format.
async fn a_full_password_queue_answers_503_with_retry_after(db: TestDb) {
    let server = Server::start(&db, &["--password-workers", "1", "--password-queue", "1"]);
    let port = server.port;
    let logins: Vec<_> = (0..24)
        .map(|i| {
            tokio::spawn(async move {
                let from = format!("127.0.2.{}", 2 + i);
                let body = json!({"username": "nobody", "password": "sprayed-password"});
                common::http_from(&from, port, "POST", "/api/v1/auth/login", None, Some(body)).await
            })
        })
        .collect();
    let mut busy = 0;
    for l in logins {
        let r = l.await.unwrap();
        match r.status {
            401 => {}
            503 => {
                busy += 1;
                assert_eq!(error_code(&r.json()), "busy");
                assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        busy > 0,
        "24 concurrent logins never found the queue of 1 full"
    );
    // Afterwards logins work again.
    assert_eq!(
        login(&server, common::HARNESS_USER, common::HARNESS_PASSWORD).0,
        200
    );
}

/// Issue 10 item 4: too many login requests from one address get 429.
async fn login_requests_are_limited_per_address(db: TestDb) {
    let server = Server::start(&db, &["--login-rate-per-ip", "5"]);
    let mut statuses = Vec::new();
    for i in 0..8 {
        let body = json!({"username": format!("user{i}"), "password": "whatever-pw"});
        let r = common::http_from(
            "127.0.3.2",
            server.port,
            "POST",
            "/api/v1/auth/login",
            None,
            Some(body),
        )
        .await;
        if r.status == 429 {
            assert_eq!(error_code(&r.json()), "too_many_requests");
            assert!(r.header("retry-after").is_some());
        }
        statuses.push(r.status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        3,
        "{statuses:?}"
    );
    // Another address is not affected.
    assert_eq!(
        login(&server, common::HARNESS_USER, common::HARNESS_PASSWORD).0,
        200
    );
}

/// Issue 10 item 5: the failure count is atomic (40 concurrent wrong
/// passwords get at most 5 password checks), and it is kept per username and
/// client address: an attacker elsewhere cannot lock the owner out.
async fn login_throttle_is_atomic_and_per_client(db: TestDb) {
    common::add_users(&db, &[("vic", "technician")]);
    let server = Server::start(&db, &[]);
    let port = server.port;
    let attempts: Vec<_> = (0..40)
        .map(|_| {
            tokio::spawn(async move {
                let body = json!({"username": "vic", "password": "guess-guess"});
                common::http_from(
                    "127.0.4.2",
                    port,
                    "POST",
                    "/api/v1/auth/login",
                    None,
                    Some(body),
                )
                .await
            })
        })
        .collect();
    for a in attempts {
        let r = a.await.unwrap();
        assert!([401, 429].contains(&r.status), "{}", r.status);
        if r.status == 429 {
            assert!(r.header("retry-after").is_some());
        }
    }
    let (_, failed) = http(
        port,
        "GET",
        "/api/v1/audit?action=login_failed&limit=1000",
        Some(&server.token),
        None,
    );
    let checks = failed["items"].as_array().unwrap().len();
    assert!(
        checks <= 5,
        "{checks} password checks for 40 concurrent attempts"
    );

    // The attacker's address is locked out, even with the right password...
    let r = common::http_from(
        "127.0.4.2",
        port,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": "vic", "password": "vic-password"})),
    )
    .await;
    assert_eq!(
        (r.status, error_code(&r.json())),
        (429, "too_many_attempts")
    );
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(wait >= 1, "Retry-After {wait}");
    // ...but vic, elsewhere, logs in.
    let (status, body) = login(&server, "vic", "vic-password");
    assert_eq!(status, 200, "{body}");

    // The lockout is in the audit log with the address it came from.
    let (_, locked) = http(
        port,
        "GET",
        "/api/v1/audit?action=login_locked",
        Some(&server.token),
        None,
    );
    let locked = locked["items"].as_array().unwrap();
    assert_eq!(locked.len(), 1, "{locked:?}");
    assert_eq!(locked[0]["subject"], "vic");
    assert_eq!(locked[0]["ip"], "127.0.4.2");
}

/// Issue 10 item 6: a password change (by the user, an admin or the CLI)
/// revokes every refresh-token family and access token of the user and
/// closes their live sync sessions.
async fn a_password_change_revokes_tokens_and_closes_sessions(db: TestDb) {
    common::add_users(&db, &[("pat", "technician")]);
    let server = Server::start(&db, &[]);
    let port = server.port;
    let (_, first) = login(&server, "pat", "pat-password");
    let (_, second) = login(&server, "pat", "pat-password");
    let access = first["access_token"].as_str().unwrap().to_string();
    let other_access = second["access_token"].as_str().unwrap().to_string();
    let refreshes = [
        first["refresh_token"].as_str().unwrap().to_string(),
        second["refresh_token"].as_str().unwrap().to_string(),
    ];
    let dev = fieldsync_shared::client::Device::new("pat-peer");
    dev.connect(&server.sync_url_for(&other_access, "pat-phone"))
        .await
        .unwrap();

    let (status, body) = http(
        port,
        "PUT",
        "/api/v1/users/pat/password",
        Some(&access),
        Some(json!({"password": "pat-new-password"})),
    );
    assert_eq!(status, 204, "{body}");

    for token in [&access, &other_access] {
        let (status, body) = http(port, "GET", "/api/v1/me", Some(token), None);
        assert_eq!(
            (status, error_code(&body)),
            (401, "token_revoked"),
            "old access tokens stop working"
        );
    }
    for r in &refreshes {
        let (status, _) = http(
            port,
            "POST",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": r})),
        );
        assert_eq!(status, 401, "old refresh tokens stop working");
    }
    dev.wait_until(common::WAIT, "live session closed", |d| !d.is_connected())
        .await
        .unwrap();
    let (code, reason) = dev.last_close().unwrap();
    assert_eq!(code, 1008);
    assert!(reason.contains("password"), "{reason}");
    assert!(fieldsync_shared::client::Device::new("pat-peer-2")
        .connect(&server.sync_url_for(&other_access, "pat-phone"))
        .await
        .is_err());

    // The new password works; an admin reset from the CLI (another process)
    // revokes again and closes the new session too.
    let (status, fresh) = login(&server, "pat", "pat-new-password");
    assert_eq!(status, 200);
    let fresh_token = fresh["access_token"].as_str().unwrap().to_string();
    let dev = fieldsync_shared::client::Device::new("pat-peer-3");
    dev.connect(&server.sync_url_for(&fresh_token, "pat-phone"))
        .await
        .unwrap();
    assert!(cli(
        &db.url,
        &["user", "set-password", "pat"],
        "reset-password\n"
    )
    .status
    .success());
    assert_eq!(
        http(port, "GET", "/api/v1/me", Some(&fresh_token), None).0,
        401
    );
    dev.wait_until(common::WAIT, "live session closed", |d| !d.is_connected())
        .await
        .unwrap();
    assert_eq!(login(&server, "pat", "reset-password").0, 200);

    // And an admin reset over the API.
    let (_, again) = login(&server, "pat", "reset-password");
    let (status, _) = http(
        port,
        "PUT",
        "/api/v1/users/pat/password",
        Some(&server.token),
        Some(json!({"password": "admin-set-password"})),
    );
    assert_eq!(status, 204);
    let (status, _) = http(
        port,
        "POST",
        "/api/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": again["refresh_token"]})),
    );
    assert_eq!(status, 401);
}

/// Issue 10 item 7: device ids are scoped per user: registering an id that
/// another user will use later blocks nobody.
async fn device_ids_are_scoped_per_user(db: TestDb) {
    common::add_users(&db, &[("tina", "technician"), ("mallory", "technician")]);
    let server = Server::start(&db, &[]);
    let port = server.port;
    let mallory = server.login("mallory", "mallory-password");
    let tina = server.login("tina", "tina-password");
    // Mallory squats on the id Tina's phone will use.
    let (status, squatted) = http(
        port,
        "POST",
        "/api/v1/devices",
        Some(&mallory),
        Some(json!({"id": "tina-phone", "name": "not Tina's"})),
    );
    assert_eq!(status, 201, "{squatted}");
    // Tina registers and syncs with it all the same.
    let (status, mine) = http(
        port,
        "POST",
        "/api/v1/devices",
        Some(&tina),
        Some(json!({"id": "tina-phone", "name": "Tina's phone"})),
    );
    assert_eq!(status, 201, "{mine}");
    assert_eq!(mine["client_id"], "tina-phone");
    assert_ne!(mine["id"], squatted["id"], "two devices");
    let dev = fieldsync_shared::client::Device::new("tina-peer");
    dev.connect(&server.sync_url_for(&tina, "tina-phone"))
        .await
        .unwrap();
    // Revoking Mallory's device leaves Tina's alone.
    let path = format!(
        "/api/v1/devices/{}/revoke",
        squatted["id"].as_str().unwrap()
    );
    assert_eq!(http(port, "POST", &path, Some(&server.token), None).0, 200);
    let mallory_url = server.sync_url_for(&mallory, "tina-phone");
    assert!(fieldsync_shared::client::Device::new("m")
        .connect(&mallory_url)
        .await
        .is_err());
    fieldsync_shared::client::Device::new("tina-peer-2")
        .connect(&server.sync_url_for(&tina, "tina-phone"))
        .await
        .expect("Tina's device is not revoked");
    // A client id shared by two users is ambiguous for revocation.
    let (status, body) = http(
        port,
        "POST",
        "/api/v1/devices/tina-phone/revoke",
        Some(&server.token),
        None,
    );
    assert_eq!((status, error_code(&body)), (409, "ambiguous_device"));
    // Each user lists their own.
    let (_, list) = http(port, "GET", "/api/v1/devices", Some(&tina), None);
    let list = list["items"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "Tina's phone");
}

on_both_backends!(
    a_login_burst_neither_starves_requests_nor_grows_memory,
    a_full_password_queue_answers_503_with_retry_after,
    login_requests_are_limited_per_address,
    login_throttle_is_atomic_and_per_client,
    a_password_change_revokes_tokens_and_closes_sessions,
    device_ids_are_scoped_per_user,
    role_changes_are_audited_and_apply_to_live_sessions,
    repeated_failed_logins_are_throttled,
    cli_bootstraps_the_first_admin,
    login_api_and_roles,
    refresh_tokens_rotate_and_reuse_revokes_the_family,
);
