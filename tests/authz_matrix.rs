//! The authorization matrix: every route of the router, called by every kind of principal (each
//! role of the route's tenant as a user and as an API key, the operator by token and by account,
//! another tenant's admin, no credentials, expired and revoked credentials), must be allowed for
//! exactly the principals its row names. The routes come from the router's own table, so a route
//! added without a row here fails this test.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use support::people::{Answer, Cred};
use support::*;

const OPS: &[&str] = &["operator_token", "operator_session"];
const A_PEOPLE_ADMINS: &[&str] = &["a_admin"];
const A_ADMIN_KEYS: &[&str] = &["a_admin_key"];
const A_AGENTS: &[&str] = &["a_agent", "a_agent_key"];
/// An agent limited to another outlet than the test conversation's.
const A_OTHER_OUTLET_AGENT: &[&str] = &["a_agent_o2"];
/// The person the routing agent routes name (`{agent}`), signed in as themself.
const THE_AGENT: &[&str] = &["a_agent"];
const A_VIEWERS: &[&str] = &["a_viewer", "a_viewer_key"];
const B: &[&str] = &["b_admin", "b_admin_key"];
const INVALID: &[&str] = &[
    "none",
    "expired_session",
    "expired_key",
    "revoked_key",
    "unknown_key",
];

/// Who may call a route, named by groups.
#[derive(Clone, Copy)]
enum Who {
    Everyone,
    SignedIn,
    Operator,
    /// Admins of the tenant signed in as people (and the operator): no API keys.
    AdminPeople,
    Admin,
    /// Agents of the conversation's outlet and up.
    AgentOfOutlet,
    /// Viewers of the conversation's outlet and up.
    ViewerOfOutlet,
    /// Every viewer and up (tenant-wide reads; outlet-limited callers get a filtered answer).
    Viewer,
    /// A dashboard page or form (`Access::Page`): it signs its person in from the dashboard
    /// session and checks role and outlets itself (tests/dashboard.rs walks those by role). Here:
    /// without a dashboard session, nobody is served it, whatever else they hold.
    Page,
    /// Admins, and the person the path's `{agent}` names (signed in, not by an API key).
    AdminOrSelf,
}

fn allowed(who: Who) -> BTreeSet<&'static str> {
    let mut s: BTreeSet<&str> = OPS.iter().copied().collect();
    let add = |s: &mut BTreeSet<&'static str>, g: &[&'static str]| s.extend(g.iter().copied());
    match who {
        Who::Everyone => {
            for g in [
                A_PEOPLE_ADMINS,
                A_ADMIN_KEYS,
                A_AGENTS,
                A_OTHER_OUTLET_AGENT,
                A_VIEWERS,
                B,
                INVALID,
            ] {
                add(&mut s, g);
            }
        }
        Who::SignedIn => {
            for g in [
                A_PEOPLE_ADMINS,
                A_ADMIN_KEYS,
                A_AGENTS,
                A_OTHER_OUTLET_AGENT,
                A_VIEWERS,
                B,
            ] {
                add(&mut s, g);
            }
        }
        Who::Operator | Who::Page => {}
        Who::AdminPeople => add(&mut s, A_PEOPLE_ADMINS),
        Who::Admin => {
            add(&mut s, A_PEOPLE_ADMINS);
            add(&mut s, A_ADMIN_KEYS);
        }
        Who::AdminOrSelf => {
            add(&mut s, A_PEOPLE_ADMINS);
            add(&mut s, A_ADMIN_KEYS);
            add(&mut s, THE_AGENT);
        }
        Who::AgentOfOutlet | Who::ViewerOfOutlet | Who::Viewer => {
            add(&mut s, A_PEOPLE_ADMINS);
            add(&mut s, A_ADMIN_KEYS);
            add(&mut s, A_AGENTS);
            if matches!(who, Who::Viewer) {
                add(&mut s, A_OTHER_OUTLET_AGENT);
            }
            if !matches!(who, Who::AgentOfOutlet) {
                add(&mut s, A_VIEWERS);
            }
        }
    }
    s
}

/// The matrix. Paths exactly as the router declares them.
fn matrix() -> Vec<(&'static str, &'static str, Who)> {
    use Who::*;
    vec![
        ("GET", "/healthz", Everyone),
        ("GET", "/readyz", Everyone),
        ("GET", "/webhooks/whatsapp", Everyone),
        ("POST", "/webhooks/whatsapp", Everyone),
        (
            "POST",
            "/api/v1/tenants/{tenant}/sandbox/{channel}/messages",
            Admin,
        ),
        (
            "GET",
            "/api/v1/tenants/{tenant}/sandbox/{channel}/messages",
            Admin,
        ),
        ("GET", "/api/v1/tenants", Operator),
        ("POST", "/api/v1/tenants", Operator),
        ("GET", "/api/v1/tenants/{tenant}", Viewer),
        ("DELETE", "/api/v1/tenants/{tenant}", Operator),
        ("POST", "/api/v1/tenants/{tenant}/suspend", Operator),
        ("POST", "/api/v1/tenants/{tenant}/resume", Operator),
        ("GET", "/api/v1/tenants/{tenant}/outlets", Viewer),
        ("POST", "/api/v1/tenants/{tenant}/outlets", Admin),
        ("GET", "/api/v1/tenants/{tenant}/channels", Viewer),
        ("POST", "/api/v1/tenants/{tenant}/channels", Admin),
        ("GET", "/api/v1/tenants/{tenant}/conversations", Viewer),
        (
            "GET",
            "/api/v1/tenants/{tenant}/conversations/{id}",
            ViewerOfOutlet,
        ),
        (
            "POST",
            "/api/v1/tenants/{tenant}/conversations/{id}/takeover",
            AgentOfOutlet,
        ),
        (
            "POST",
            "/api/v1/tenants/{tenant}/conversations/{id}/reply",
            AgentOfOutlet,
        ),
        (
            "POST",
            "/api/v1/tenants/{tenant}/conversations/{id}/handback",
            AgentOfOutlet,
        ),
        (
            "POST",
            "/api/v1/tenants/{tenant}/conversations/{id}/close",
            AgentOfOutlet,
        ),
        ("POST", "/api/v1/auth/sign-in", Everyone),
        ("POST", "/api/v1/auth/sign-out", Everyone),
        ("POST", "/api/v1/auth/oidc", Everyone),
        ("POST", "/api/v1/auth/invitations/accept", Everyone),
        ("GET", "/api/v1/auth/me", SignedIn),
        ("GET", "/api/v1/operators", Operator),
        ("POST", "/api/v1/operators", Operator),
        ("GET", "/api/v1/audit", Operator),
        ("GET", "/api/v1/tenants/{tenant}/audit", Admin),
        ("GET", "/api/v1/tenants/{tenant}/users", Admin),
        ("POST", "/api/v1/tenants/{tenant}/users", AdminPeople),
        (
            "PATCH",
            "/api/v1/tenants/{tenant}/users/{user}",
            AdminPeople,
        ),
        (
            "DELETE",
            "/api/v1/tenants/{tenant}/users/{user}",
            AdminPeople,
        ),
        ("GET", "/api/v1/tenants/{tenant}/invitations", Admin),
        ("POST", "/api/v1/tenants/{tenant}/invitations", AdminPeople),
        (
            "DELETE",
            "/api/v1/tenants/{tenant}/invitations/{invitation}",
            AdminPeople,
        ),
        ("GET", "/api/v1/ops/snapshot", Operator),
        ("GET", "/api/v1/ops/audit", Operator),
        ("POST", "/api/v1/ops/retention/sweep", Operator),
        ("GET", "/api/v1/tenants/{tenant}/retention", Operator),
        ("PUT", "/api/v1/tenants/{tenant}/retention", Operator),
        (
            "POST",
            "/api/v1/tenants/{tenant}/customers/{customer}/erase",
            Operator,
        ),
        ("GET", "/api/v1/billing/plans", Operator),
        ("POST", "/api/v1/billing/plans", Operator),
        ("GET", "/api/v1/billing/plans/{plan}", Operator),
        ("PATCH", "/api/v1/billing/plans/{plan}", Operator),
        ("GET", "/api/v1/billing/tenants", Operator),
        ("GET", "/api/v1/tenants/{tenant}/billing", Admin),
        ("PUT", "/api/v1/tenants/{tenant}/billing/plan", Operator),
        (
            "PUT",
            "/api/v1/tenants/{tenant}/billing/overrides",
            Operator,
        ),
        ("GET", "/api/v1/tenants/{tenant}/billing/periods", Admin),
        (
            "GET",
            "/api/v1/tenants/{tenant}/billing/periods/{period}",
            Admin,
        ),
        (
            "GET",
            "/api/v1/tenants/{tenant}/billing/periods/{period}/statement.csv",
            Admin,
        ),
        ("GET", "/api/v1/tenants/{tenant}/billing/warnings", Admin),
        ("GET", "/api/v1/tenants/{tenant}/api-keys", Admin),
        ("POST", "/api/v1/tenants/{tenant}/api-keys", AdminPeople),
        (
            "DELETE",
            "/api/v1/tenants/{tenant}/api-keys/{key}",
            AdminPeople,
        ),
        ("GET", "/api/v1/tenants/{tenant}/knowledge-bases", Viewer),
        ("POST", "/api/v1/tenants/{tenant}/knowledge-bases", Admin),
        (
            "GET",
            "/api/v1/tenants/{tenant}/knowledge-bases/{kb}",
            Viewer,
        ),
        (
            "DELETE",
            "/api/v1/tenants/{tenant}/knowledge-bases/{kb}",
            Admin,
        ),
        (
            "GET",
            "/api/v1/tenants/{tenant}/knowledge-bases/{kb}/documents",
            Viewer,
        ),
        (
            "POST",
            "/api/v1/tenants/{tenant}/knowledge-bases/{kb}/documents",
            Admin,
        ),
        (
            "POST",
            "/api/v1/tenants/{tenant}/knowledge-bases/{kb}/documents/url",
            Admin,
        ),
        ("GET", "/api/v1/tenants/{tenant}/documents/{doc}", Viewer),
        ("PUT", "/api/v1/tenants/{tenant}/documents/{doc}", Admin),
        ("DELETE", "/api/v1/tenants/{tenant}/documents/{doc}", Admin),
        ("POST", "/api/v1/tenants/{tenant}/knowledge/search", Viewer),
        ("GET", "/api/v1/tenants/{tenant}/knowledge/settings", Viewer),
        ("PUT", "/api/v1/tenants/{tenant}/knowledge/settings", Admin),
        ("POST", "/api/v1/knowledge/reindex", Operator),
        // The dashboard: sign-in, static assets and redirects are public; the rest are pages.
        ("GET", "/", Everyone),
        ("GET", "/dash", Everyone),
        ("GET", "/dash/signin", Everyone),
        ("POST", "/dash/signin", Everyone),
        ("POST", "/dash/signin/password", Everyone),
        ("GET", "/static/app.css", Everyone),
        ("GET", "/static/live.js", Everyone),
        ("GET", "/static/knowledge.js", Everyone),
        // Accepting an invitation: the link's token is the credential.
        ("GET", "/invitations", Everyone),
        ("POST", "/invitations", Everyone),
        ("POST", "/dash/signout", Page),
        ("GET", "/dash/inbox", Page),
        ("GET", "/dash/inbox/list", Page),
        ("GET", "/dash/c/{id}", Page),
        ("POST", "/dash/c/{id}/{action}", Page),
        ("GET", "/dash/canned", Page),
        ("POST", "/dash/canned", Page),
        ("POST", "/dash/canned/delete", Page),
        ("GET", "/dash/live", Page),
        ("GET", "/dash/admin/outlets", Page),
        ("POST", "/dash/admin/outlets", Page),
        ("GET", "/dash/admin/channels", Page),
        ("POST", "/dash/admin/channels", Page),
        ("GET", "/dash/admin/simulator", Page),
        ("POST", "/dash/admin/simulator", Page),
        ("GET", "/dash/admin/knowledge", Page),
        ("GET", "/dash/admin/knowledge/progress", Page),
        ("POST", "/dash/admin/knowledge/bases", Page),
        ("POST", "/dash/admin/knowledge/bases/delete", Page),
        ("POST", "/dash/admin/knowledge/upload", Page),
        ("POST", "/dash/admin/knowledge/url", Page),
        ("POST", "/dash/admin/knowledge/documents/delete", Page),
        ("GET", "/dash/admin/users", Page),
        ("POST", "/dash/admin/users/invite", Page),
        ("POST", "/dash/admin/users/change", Page),
        ("POST", "/dash/admin/users/status", Page),
        ("POST", "/dash/admin/users/revoke", Page),
        ("GET", "/dash/admin/plan", Page),
        ("GET", "/dash/admin/audit", Page),
        ("GET", "/dash/operator", Page),
        ("POST", "/dash/presence", Page),
        ("GET", "/dash/admin/routing", Page),
        ("POST", "/dash/admin/routing/settings", Page),
        ("POST", "/dash/admin/routing/hours", Page),
        ("POST", "/dash/admin/routing/agents", Page),
        ("GET", "/dash/analytics", Page),
        ("GET", "/dash/analytics/export/{table}", Page),
        ("GET", "/api/v1/tenants/{tenant}/agents", Admin),
        (
            "GET",
            "/api/v1/tenants/{tenant}/agents/{agent}",
            AdminOrSelf,
        ),
        ("PUT", "/api/v1/tenants/{tenant}/agents/{agent}", Admin),
        ("DELETE", "/api/v1/tenants/{tenant}/agents/{agent}", Admin),
        (
            "POST",
            "/api/v1/tenants/{tenant}/agents/{agent}/presence",
            AdminOrSelf,
        ),
        ("GET", "/api/v1/tenants/{tenant}/routing/queue", Viewer),
        ("GET", "/api/v1/tenants/{tenant}/routing/settings", Admin),
        ("PUT", "/api/v1/tenants/{tenant}/routing/settings", Admin),
        (
            "GET",
            "/api/v1/tenants/{tenant}/outlets/{outlet}/hours",
            Viewer,
        ),
        (
            "PUT",
            "/api/v1/tenants/{tenant}/outlets/{outlet}/hours",
            Admin,
        ),
        (
            "DELETE",
            "/api/v1/tenants/{tenant}/outlets/{outlet}/hours",
            Admin,
        ),
        (
            "POST",
            "/api/v1/tenants/{tenant}/conversations/{id}/assign",
            Admin,
        ),
        ("GET", "/api/v1/tenants/{tenant}/analytics", Viewer),
        (
            "GET",
            "/api/v1/tenants/{tenant}/analytics/export/{table}",
            Viewer,
        ),
        (
            "GET",
            "/api/v1/tenants/{tenant}/analytics/charts/{chart}",
            Viewer,
        ),
    ]
}

/// Operator-only routes that change a tenant's life act on a scratch tenant, not the fixture's.
const LIFECYCLE: &[&str] = &[
    "/api/v1/tenants/{tenant}/suspend",
    "/api/v1/tenants/{tenant}/resume",
];

struct Fixture {
    creds: BTreeMap<&'static str, Cred>,
    params: BTreeMap<&'static str, String>,
}

async fn fixture(app: &TestApp) -> Fixture {
    app.create_tenant("alpha").await;
    app.create_tenant("beta").await;
    app.create_tenant("gamma").await;
    app.create_tenant("delta").await;
    // Room for the outlets the matrix creates (Starter allows one).
    app.put(
        "/api/v1/tenants/alpha/billing/plan",
        json!({"plan": "enterprise"}),
    )
    .await;
    let o1 = app.create_outlet("alpha", "Outlet one").await;
    let o2 = app.create_outlet("alpha", "Outlet two").await;
    let channel = app
        .post(
            "/api/v1/tenants/alpha/channels",
            json!({"type": "sandbox", "name": "Sandbox", "outlet": o1}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A customer writes on the outlet-one channel: the conversation the matrix acts on.
    app.post(
        &format!("/api/v1/tenants/alpha/sandbox/{channel}/messages"),
        json!({"from": "6281200000001", "text": "hello"}),
    )
    .await;
    let conversation = app
        .wait_for(WAIT, |app| {
            let t = wacrm::tenants::find_tenant(app.store(), "alpha").unwrap();
            app.conversations(t.id).pop().map(|c| c.id.to_string())
        })
        .await;

    let mut creds = BTreeMap::new();
    // Expired credentials first: the clock then jumps past their lifetimes.
    app.create_user("alpha", "expired@alpha.test", "admin", &[])
        .await;
    creds.insert("expired_session", app.sign_in("expired@alpha.test").await);
    let a = app
        .call(
            &app.operator(),
            Method::POST,
            "/api/v1/tenants/alpha/api-keys",
            Some(json!({"name": "short-lived", "role": "admin", "expires_in_days": 1})),
        )
        .await;
    creds.insert(
        "expired_key",
        Cred::Bearer(a.body["secret"].as_str().unwrap().into()),
    );
    app.people().clock.advance(Duration::from_secs(2 * 86_400));

    app.create_user("alpha", "admin@alpha.test", "admin", &[])
        .await;
    let agent = app
        .create_user("alpha", "agent@alpha.test", "agent", &[&o1])
        .await;
    app.create_user("alpha", "agent2@alpha.test", "agent", &[&o2])
        .await;
    app.create_user("alpha", "viewer@alpha.test", "viewer", &[])
        .await;
    app.create_user("beta", "admin@beta.test", "admin", &[])
        .await;
    let op = app
        .call(
            &app.operator(),
            Method::POST,
            "/api/v1/operators",
            Some(json!({"email": "ops@group.test", "name": "Ops", "password": support::people::PASSWORD})),
        )
        .await;
    assert_eq!(op.status, 201, "{:?}", op.body);

    creds.insert("none", Cred::None);
    creds.insert("operator_token", app.operator());
    creds.insert("operator_session", app.sign_in("ops@group.test").await);
    creds.insert("a_admin", app.sign_in("admin@alpha.test").await);
    creds.insert("a_agent", app.sign_in("agent@alpha.test").await);
    creds.insert("a_agent_o2", app.sign_in("agent2@alpha.test").await);
    creds.insert("a_viewer", app.sign_in("viewer@alpha.test").await);
    creds.insert("b_admin", app.sign_in("admin@beta.test").await);
    for (name, tenant, role) in [
        ("a_admin_key", "alpha", "admin"),
        ("a_agent_key", "alpha", "agent"),
        ("a_viewer_key", "alpha", "viewer"),
        ("b_admin_key", "beta", "admin"),
    ] {
        creds.insert(
            name,
            Cred::Bearer(app.create_api_key(tenant, role, &[]).await.1),
        );
    }
    let (revoked, secret) = app.create_api_key("alpha", "admin", &[]).await;
    app.call(
        &app.operator(),
        Method::DELETE,
        &format!("/api/v1/tenants/alpha/api-keys/{revoked}"),
        None,
    )
    .await;
    creds.insert("revoked_key", Cred::Bearer(secret));
    creds.insert(
        "unknown_key",
        Cred::Bearer(format!("wak_{}", "0".repeat(64))),
    );

    // Objects the destructive routes act on.
    let scratch_user = app
        .create_user("alpha", "scratch@alpha.test", "viewer", &[])
        .await;
    let inv = app
        .post(
            "/api/v1/tenants/alpha/invitations",
            json!({"email": "invitee@alpha.test", "role": "viewer"}),
        )
        .await;
    let (scratch_key, _) = app.create_api_key("alpha", "viewer", &[]).await;

    let params = BTreeMap::from([
        ("tenant", "alpha".to_string()),
        ("channel", channel),
        ("id", conversation),
        ("user", scratch_user),
        (
            "invitation",
            inv["invitation"]["id"].as_str().unwrap().to_string(),
        ),
        ("key", scratch_key),
        ("plan", "growth".to_string()),
        ("customer", "6281299999999".to_string()),
        ("period", "current".to_string()),
        // A base that does not exist: the handlers answer 404 not_found, never a gate refusal.
        ("kb", "no-such-base".to_string()),
        ("doc", "0190a0a0-0000-7000-8000-000000000000".to_string()),
        ("action", "takeover".to_string()),
        ("agent", agent),
        ("outlet", o1),
        ("table", "days".to_string()),
        ("chart", "daily".to_string()),
    ]);
    Fixture { creds, params }
}

fn concrete(path: &str, params: &BTreeMap<&str, String>) -> String {
    let mut out = path.to_string();
    for (name, value) in params {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

fn body_for(method: &str, path: &str, n: usize) -> Option<Value> {
    if method == "GET" || method == "DELETE" {
        return None;
    }
    Some(match path {
        "/api/v1/tenants" => json!({"slug": format!("new-{n}"), "name": "New"}),
        "/api/v1/tenants/{tenant}/outlets" => json!({"name": format!("Outlet {n}")}),
        "/api/v1/billing/plans" => json!({
            "id": format!("plan-{n}"), "name": "Plan",
            "price": {"amount": "10.00", "currency": "USD"},
            "limits": {"assistant_messages": 100, "outlets": 1, "knowledge_bases": 1, "storage_bytes": 1048576}
        }),
        "/api/v1/billing/plans/{plan}" => json!({"name": "Growth"}),
        "/api/v1/tenants/{tenant}/billing/plan" => json!({"plan": "enterprise"}),
        "/api/v1/tenants/{tenant}/billing/overrides" => json!({}),
        "/api/v1/tenants/{tenant}/retention" => json!({"conversation_days": 365}),
        "/api/v1/tenants/{tenant}/channels" => {
            json!({"type": "sandbox", "name": format!("Sandbox {n}")})
        }
        "/api/v1/tenants/{tenant}/sandbox/{channel}/messages" => {
            json!({"from": "6281200000002", "text": "hi"})
        }
        "/api/v1/tenants/{tenant}/conversations/{id}/reply" => {
            json!({"text": "Hello from a person"})
        }
        "/api/v1/operators" => {
            json!({"email": format!("op{n}@group.test"), "name": "Op", "password": support::people::PASSWORD})
        }
        "/api/v1/tenants/{tenant}/users" => {
            json!({"email": format!("u{n}@alpha.test"), "name": "U", "role": "viewer", "password": support::people::PASSWORD})
        }
        "/api/v1/tenants/{tenant}/users/{user}" => json!({"name": format!("Renamed {n}")}),
        "/api/v1/tenants/{tenant}/invitations" => {
            json!({"email": format!("i{n}@alpha.test"), "role": "agent"})
        }
        "/api/v1/tenants/{tenant}/api-keys" => json!({"name": format!("k{n}"), "role": "viewer"}),
        "/api/v1/tenants/{tenant}/agents/{agent}" => json!({"capacity": 3}),
        "/api/v1/tenants/{tenant}/agents/{agent}/presence" => json!({"online": true}),
        "/api/v1/tenants/{tenant}/routing/settings" => {
            json!({"allow_bot_return": false, "unhelpful_turn_limit": 2})
        }
        "/api/v1/tenants/{tenant}/outlets/{outlet}/hours" => {
            json!({"monday": [{"open": "09:00", "close": "17:00"}]})
        }
        "/api/v1/tenants/{tenant}/conversations/{id}/assign" => json!({"agent": null}),
        "/webhooks/whatsapp" => json!({"object": "whatsapp_business_account", "entry": []}),
        "/api/v1/tenants/{tenant}/knowledge-bases" => json!({"name": format!("Base {n}")}),
        "/api/v1/tenants/{tenant}/knowledge/search" => json!({"query": "opening hours"}),
        "/api/v1/tenants/{tenant}/knowledge/settings" => json!({"no_answer": "offer_human"}),
        // Sign-in, OIDC, invitations: an empty body is refused by the handler, not the gate.
        _ => json!({}),
    })
}

/// Whether the gate (or the outlet check) refused the request.
fn denied(a: &Answer) -> bool {
    matches!(
        (a.status, a.code()),
        (401, "unauthorized")
            | (403, "forbidden")
            | (403, "csrf_failed")
            | (403, "tenant_suspended")
            | (404, "tenant_not_found")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_allows_exactly_its_principals() {
    let mut app = TestApp::start(Options::default()).await;
    let fx = fixture(&app).await;

    // The matrix covers the router's table exactly.
    let state = app.running.as_ref().unwrap().state.clone();
    let table: BTreeSet<(String, String)> = wacrm::web::api(&state)
        .specs()
        .iter()
        .map(|s| (s.method.to_string(), s.path.to_string()))
        .collect();
    let rows: BTreeSet<(String, String)> = matrix()
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = table.difference(&rows).collect();
    let stale: Vec<_> = rows.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "routes without a row in the matrix: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "rows for routes that do not exist: {stale:?}"
    );

    // Signing out ends sessions: walk it last.
    let mut rows = matrix();
    rows.sort_by_key(|(_, p, _)| *p == "/api/v1/auth/sign-out");
    let mut failures = Vec::new();
    let mut n = 0;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (method, path, who) in rows {
        if matches!(who, Who::Page) {
            let url = format!("{}{}", app.url, concrete(path, &fx.params));
            for bearer in [None, Some(app.token.clone())] {
                let mut req =
                    no_redirects.request(Method::from_bytes(method.as_bytes()).unwrap(), &url);
                if let Some(token) = &bearer {
                    req = req.bearer_auth(token);
                }
                let resp = req.send().await.unwrap();
                let location = resp
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                if !(resp.status().is_redirection() && location == "/dash/signin") {
                    failures.push(format!(
                        "{method} {path} without a dashboard session (bearer: {}): {} {location}",
                        bearer.is_some(),
                        resp.status()
                    ));
                }
            }
            continue;
        }
        let expected = allowed(who);
        let mut params = fx.params.clone();
        if LIFECYCLE.contains(&path) || (method == "DELETE" && path == "/api/v1/tenants/{tenant}") {
            params.insert(
                "tenant",
                if method == "DELETE" { "delta" } else { "gamma" }.into(),
            );
        }
        let mut url = concrete(path, &params);
        if path.ends_with("/sandbox/{channel}/messages") && method == "GET" {
            url.push_str("?from=6281200000001&wait_ms=0");
        }
        for (name, cred) in &fx.creds {
            n += 1;
            let a = app
                .call(
                    cred,
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    &url,
                    body_for(method, path, n),
                )
                .await;
            let is_allowed = !denied(&a);
            if is_allowed != expected.contains(name) {
                failures.push(format!(
                    "{method} {path} as {name}: expected {}, got {} {}",
                    if expected.contains(name) {
                        "allowed"
                    } else {
                        "denied"
                    },
                    a.status,
                    a.body
                ));
                continue;
            }
            if !is_allowed {
                // Refusals say the right thing: who you are (401), not yours (404), not allowed (403).
                let want = if INVALID.contains(name) {
                    (401, "unauthorized")
                } else if B.contains(name)
                    && path.contains("{tenant}")
                    && !matches!(who, Who::Operator)
                {
                    (404, "tenant_not_found")
                } else {
                    (403, "forbidden")
                };
                if (a.status, a.code()) != want {
                    failures.push(format!(
                        "{method} {path} as {name}: refused with {} {}, expected {want:?}",
                        a.status,
                        a.code()
                    ));
                }
                // A refusal never carries data.
                let keys: Vec<_> = a
                    .body
                    .as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default();
                if keys != ["error"] {
                    failures.push(format!(
                        "{method} {path} as {name}: refusal body {}",
                        a.body
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_requests_without_the_csrf_token_are_refused() {
    let mut app = TestApp::start(Options::default()).await;
    app.create_tenant("alpha").await;
    app.create_user("alpha", "admin@alpha.test", "admin", &[])
        .await;
    let session = app.sign_in("admin@alpha.test").await;
    // Reading needs no token; changing does.
    let a = app
        .call_with(
            &session,
            Method::GET,
            "/api/v1/tenants/alpha/outlets",
            None,
            false,
        )
        .await;
    assert_eq!(a.status, 200);
    let a = app
        .call_with(
            &session,
            Method::POST,
            "/api/v1/tenants/alpha/outlets",
            Some(json!({"name": "Forged"})),
            false,
        )
        .await;
    assert_eq!((a.status, a.code()), (403, "csrf_failed"));
    let wrong = match &session {
        Cred::Session { token, .. } => Cred::Session {
            token: token.clone(),
            csrf: "0".repeat(64),
        },
        _ => unreachable!(),
    };
    let a = app
        .call(
            &wrong,
            Method::POST,
            "/api/v1/tenants/alpha/outlets",
            Some(json!({"name": "Forged"})),
        )
        .await;
    assert_eq!((a.status, a.code()), (403, "csrf_failed"));
    let outlets = app.get("/api/v1/tenants/alpha/outlets").await;
    assert_eq!(outlets.as_array().unwrap().len(), 0, "nothing was created");
    let a = app
        .call(
            &session,
            Method::POST,
            "/api/v1/tenants/alpha/outlets",
            Some(json!({"name": "Real"})),
        )
        .await;
    assert_eq!(a.status, 201);
    app.stop().await;
}
