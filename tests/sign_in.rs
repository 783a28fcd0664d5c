//! Signing in and the credentials it yields: brute force is slowed, then locked out, logged and
//! audited; session cookies are Secure, HttpOnly, SameSite and expire; API keys are shown once,
//! stored hashed, scoped to a role, revocable and record their last use; invitations expire.

mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use support::people::{session_of, Cred, PASSWORD};
use support::*;
use wacrm::people::SignInSettings;

fn with_sign_in(settings: SignInSettings) -> Options {
    Options {
        tweak: Box::new(move |c| c.auth.sign_in = settings),
        ..Options::default()
    }
}

fn strict() -> SignInSettings {
    SignInSettings {
        free_failures: 3,
        base_delay_ms: 60_000,
        max_delay_ms: 600_000,
        lock_after_failures: 6,
        lock_minutes: 15,
        ip_failures_per_window: 1_000,
        ip_window_seconds: 900,
    }
}

fn retry_after(a: &support::people::Answer) -> u64 {
    a.headers["retry-after"].to_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_is_slowed_then_locked_out_logged_and_audited() {
    let mut app = TestApp::start(with_sign_in(strict())).await;
    app.create_tenant("acme").await;
    app.create_user("acme", "admin@acme.test", "admin", &[])
        .await;
    let clock = app.people().clock.clone();
    let wrong = "not the password at all";

    // Three free failures.
    for _ in 0..3 {
        let a = app.sign_in_raw("admin@acme.test", wrong).await;
        assert_eq!((a.status, a.code()), (401, "invalid_credentials"));
    }
    // Slowed: the next attempt must wait, even with the right password (which is not even checked).
    let a = app.sign_in_raw("admin@acme.test", PASSWORD).await;
    assert_eq!((a.status, a.code()), (429, "sign_in_throttled"));
    assert!((59..=60).contains(&retry_after(&a)), "{:?}", a.headers);
    assert!(a.headers.get("set-cookie").is_none());
    // Each further failure doubles the wait.
    clock.advance(Duration::from_secs(61));
    assert_eq!(app.sign_in_raw("admin@acme.test", wrong).await.status, 401);
    let a = app.sign_in_raw("admin@acme.test", wrong).await;
    assert_eq!(a.status, 429);
    assert!((119..=120).contains(&retry_after(&a)));
    clock.advance(Duration::from_secs(121));
    assert_eq!(app.sign_in_raw("admin@acme.test", wrong).await.status, 401);
    clock.advance(Duration::from_secs(241));
    // The sixth failure locks the account for 15 minutes.
    assert_eq!(app.sign_in_raw("admin@acme.test", wrong).await.status, 401);
    clock.advance(Duration::from_secs(600));
    let a = app.sign_in_raw("admin@acme.test", PASSWORD).await;
    assert_eq!((a.status, a.code()), (423, "account_locked"));
    assert!((299..=300).contains(&retry_after(&a)), "{:?}", a.headers);
    clock.advance(Duration::from_secs(301));
    let a = app.sign_in_raw("admin@acme.test", PASSWORD).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    // The success starts the count afresh.
    assert_eq!(app.sign_in_raw("admin@acme.test", wrong).await.status, 401);
    assert_eq!(
        app.sign_in_raw("admin@acme.test", PASSWORD).await.status,
        200
    );

    // A name without an account is treated exactly alike: no way to tell accounts apart.
    for _ in 0..3 {
        let a = app.sign_in_raw("nobody@acme.test", wrong).await;
        assert_eq!((a.status, a.code()), (401, "invalid_credentials"));
    }
    assert_eq!(app.sign_in_raw("nobody@acme.test", wrong).await.status, 429);

    // Audited in the tenant's log (which its admins read): every failure, the lock, the sign-ins.
    let admin = app.sign_in("admin@acme.test").await;
    let log = app
        .call(
            &admin,
            Method::GET,
            "/api/v1/tenants/acme/audit?action=auth.",
            None,
        )
        .await
        .body;
    let count = |action: &str| {
        log.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == action)
            .count()
    };
    assert_eq!(count("auth.sign_in_failed"), 7);
    assert_eq!(count("auth.locked"), 1);
    assert_eq!(count("auth.sign_in"), 3);
    let locked = log
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "auth.locked")
        .unwrap();
    assert_eq!(locked["actor"]["ip"], "127.0.0.1");
    assert_eq!(locked["actor"]["label"], "admin@acme.test");
    // Failures under unknown names go to the operator's log.
    let global = app.audit("action=auth.sign_in_failed").await;
    assert!(global
        .iter()
        .any(|e| e["actor"]["label"] == "nobody@acme.test" && e["tenant"].is_null()));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_failing_on_many_names_is_limited() {
    let mut app = TestApp::start(with_sign_in(SignInSettings {
        ip_failures_per_window: 5,
        ..strict()
    }))
    .await;
    app.create_tenant("acme").await;
    app.create_user("acme", "admin@acme.test", "admin", &[])
        .await;
    for i in 0..5 {
        let a = app
            .sign_in_raw(&format!("guess{i}@acme.test"), "whatever password")
            .await;
        assert_eq!(a.status, 401);
    }
    let a = app.sign_in_raw("admin@acme.test", PASSWORD).await;
    assert_eq!((a.status, a.code()), (429, "sign_in_throttled"));
    app.people().clock.advance(Duration::from_secs(901));
    assert_eq!(
        app.sign_in_raw("admin@acme.test", PASSWORD).await.status,
        200
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_live_in_hardened_cookies_and_end() {
    let mut app = TestApp::start(Options::default()).await;
    app.create_tenant("acme").await;
    app.create_user("acme", "agent@acme.test", "agent", &[])
        .await;
    let a = app.sign_in_raw("Agent@ACME.test ", PASSWORD).await;
    assert_eq!(
        a.status, 200,
        "sign-in names are case-insensitive: {:?}",
        a.body
    );
    let cookie = a.headers["set-cookie"].to_str().unwrap().to_string();
    for flag in [
        "__Host-wacrm_session=",
        "; Path=/",
        "; HttpOnly",
        "; Secure",
        "; SameSite=Strict",
    ] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    assert_eq!(a.body["principal"]["role"], "agent");
    assert_eq!(a.body["principal"]["tenant_slug"], "acme");
    let session = session_of(&a);
    let Cred::Session { token, csrf } = &session else {
        unreachable!()
    };
    // The store keeps a hash of the session token, never the token.
    let me = app
        .call(&session, Method::GET, "/api/v1/auth/me", None)
        .await;
    assert_eq!(me.body["csrf_token"].as_str(), Some(csrf.as_str()));
    assert_eq!(me.body["label"], "agent@acme.test");

    // Signing out ends the session on the server, not just in the browser.
    let out = app
        .call(&session, Method::POST, "/api/v1/auth/sign-out", None)
        .await;
    assert_eq!(out.status, 204);
    assert!(out.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let again = Cred::Session {
        token: token.clone(),
        csrf: csrf.clone(),
    };
    assert_eq!(
        app.call(&again, Method::GET, "/api/v1/auth/me", None)
            .await
            .status,
        401
    );

    // Idle sessions expire.
    let session = app.sign_in("agent@acme.test").await;
    app.people().clock.advance(Duration::from_secs(11 * 3600));
    assert_eq!(
        app.call(&session, Method::GET, "/api/v1/auth/me", None)
            .await
            .status,
        200
    );
    app.people().clock.advance(Duration::from_secs(13 * 3600));
    assert_eq!(
        app.call(&session, Method::GET, "/api/v1/auth/me", None)
            .await
            .status,
        401
    );

    // Disabling a person ends their sessions at once.
    let session = app.sign_in("agent@acme.test").await;
    let users = app.get("/api/v1/tenants/acme/users").await;
    let id = users[0]["id"].as_str().unwrap();
    let a = app
        .call(
            &app.operator(),
            Method::PATCH,
            &format!("/api/v1/tenants/acme/users/{id}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        app.call(&session, Method::GET, "/api/v1/auth/me", None)
            .await
            .status,
        401
    );
    assert_eq!(
        app.sign_in_raw("agent@acme.test", PASSWORD).await.status,
        403
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_shown_once_role_scoped_revocable_and_record_last_use() {
    let mut app = TestApp::start(Options::default()).await;
    app.create_tenant("acme").await;
    let (id, secret) = app.create_api_key("acme", "viewer", &[]).await;
    assert!(secret.starts_with("wak_") && secret.len() > 60);
    let key = Cred::Bearer(secret.clone());
    let list = app.get("/api/v1/tenants/acme/api-keys").await;
    assert!(
        !list.to_string().contains(&secret),
        "listed keys never show the secret"
    );
    assert!(list[0]["last_used_ms"].is_null());

    // Scoped to its role: a viewer key reads, and may not change anything.
    assert_eq!(
        app.call(&key, Method::GET, "/api/v1/tenants/acme/outlets", None)
            .await
            .status,
        200
    );
    let a = app
        .call(
            &key,
            Method::POST,
            "/api/v1/tenants/acme/outlets",
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!((a.status, a.code()), (403, "forbidden"));
    // Last use is recorded.
    app.wait_for(WAIT, |app| {
        let keys = wacrm::people::apikeys::list(
            app.store(),
            wacrm::tenants::find_tenant(app.store(), "acme").unwrap().id,
        )
        .unwrap();
        keys[0].last_used_ms
    })
    .await;

    // Revoked: refused at once, and listed as revoked.
    let a = app
        .call(
            &app.operator(),
            Method::DELETE,
            &format!("/api/v1/tenants/acme/api-keys/{id}"),
            None,
        )
        .await;
    assert_eq!(a.status, 200);
    assert!(a.body["revoked_at_ms"].is_i64());
    assert_eq!(
        app.call(&key, Method::GET, "/api/v1/tenants/acme/outlets", None)
            .await
            .status,
        401
    );
    let log = app.audit("action=api_key.").await;
    let actions: Vec<_> = log.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["api_key.revoked", "api_key.created"]);

    // The secret is nowhere in the database.
    app.stop().await;
    let raw = std::fs::read(app.dir.path().join(wacrm::app::DATABASE_FILE)).unwrap();
    assert!(!raw.windows(secret.len()).any(|w| w == secret.as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_make_people_with_their_role_and_expire() {
    let mut app = TestApp::start(Options::default()).await;
    app.create_tenant("acme").await;
    let outlet = app.create_outlet("acme", "Main street").await;
    app.create_user("acme", "admin@acme.test", "admin", &[])
        .await;
    let admin = app.sign_in("admin@acme.test").await;
    let a = app
        .call(
            &admin,
            Method::POST,
            "/api/v1/tenants/acme/invitations",
            Some(json!({"email": "ana@acme.test", "role": "agent", "outlets": [outlet]})),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let token = a.body["token"].as_str().unwrap().to_string();
    assert!(a.body["link"].as_str().unwrap().contains(&token));

    let accept = |token: String, password: &'static str| {
        let app = &app;
        async move {
            app.call(
                &Cred::None,
                Method::POST,
                "/api/v1/auth/invitations/accept",
                Some(json!({"token": token, "name": "Ana", "password": password})),
            )
            .await
        }
    };
    let a = accept(token.clone(), "short").await;
    assert_eq!((a.status, a.code()), (400, "invalid_input"));
    let a = accept(token.clone(), PASSWORD).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["principal"]["role"], "agent");
    assert_eq!(a.body["principal"]["outlets"], json!([outlet]));
    assert_eq!(
        accept(token, PASSWORD).await.status,
        401,
        "a link works once"
    );
    assert_eq!(app.sign_in_raw("ana@acme.test", PASSWORD).await.status, 200);

    // Links expire.
    let a = app
        .call(
            &admin,
            Method::POST,
            "/api/v1/tenants/acme/invitations",
            Some(json!({"email": "late@acme.test", "role": "viewer"})),
        )
        .await;
    let late = a.body["token"].as_str().unwrap().to_string();
    app.people().clock.advance(Duration::from_secs(73 * 3600));
    assert_eq!(accept(late, PASSWORD).await.status, 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_changes_are_audited_and_the_last_admin_stays() {
    let mut app = TestApp::start(Options::default()).await;
    app.create_tenant("acme").await;
    let admin_id = app
        .create_user("acme", "admin@acme.test", "admin", &[])
        .await;
    let viewer_id = app
        .create_user("acme", "viewer@acme.test", "viewer", &[])
        .await;
    let admin = app.sign_in("admin@acme.test").await;
    let viewer = app.sign_in("viewer@acme.test").await;
    assert_eq!(
        app.call(&viewer, Method::GET, "/api/v1/tenants/acme/users", None)
            .await
            .status,
        403
    );

    let a = app
        .call(
            &admin,
            Method::PATCH,
            &format!("/api/v1/tenants/acme/users/{admin_id}"),
            Some(json!({"role": "agent"})),
        )
        .await;
    assert_eq!(
        (a.status, a.code()),
        (409, "conflict"),
        "the last admin cannot step down"
    );
    let a = app
        .call(
            &admin,
            Method::PATCH,
            &format!("/api/v1/tenants/acme/users/{viewer_id}"),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(a.status, 200);
    // The new role applies to the live session at once.
    assert_eq!(
        app.call(&viewer, Method::GET, "/api/v1/tenants/acme/users", None)
            .await
            .status,
        200
    );
    let log = app
        .call(
            &admin,
            Method::GET,
            "/api/v1/tenants/acme/audit?action=user.role_changed",
            None,
        )
        .await
        .body;
    assert_eq!(log[0]["detail"]["from"], "viewer");
    assert_eq!(log[0]["detail"]["to"], "admin");
    assert_eq!(log[0]["actor"]["label"], "admin@acme.test");
    assert_eq!(log[0]["target"], format!("user {viewer_id}"));
    app.stop().await;
}
