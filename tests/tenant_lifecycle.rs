//! Suspending and deleting tenants. A suspended tenant's webhooks are stored but not answered and
//! its people cannot sign in or use keys; deleting a tenant removes its data everywhere (checked by
//! reading every row of the database and every other file of the data directory afterwards) and
//! reports what it removed, while other tenants keep theirs.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use support::people::Cred;
use support::*;
use wacrm::conversations::Author;
use wacrm::tenants::lifecycle::{PurgeReport, TenantDataOwner};
use wacrm::tenants::Tenant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_tenant_stores_webhooks_unanswered_and_its_people_are_refused() {
    let mut app = TestApp::start(Options::default()).await;
    let tenant = app.tenant_with_channel("acme", "106540352242922").await;
    app.create_user("acme", "admin@acme.test", "admin", &[])
        .await;
    let session = app.sign_in("admin@acme.test").await;
    let (_, key) = app.create_api_key("acme", "admin", &[]).await;
    let key = Cred::Bearer(key);

    let a = app
        .call(
            &app.operator(),
            Method::POST,
            "/api/v1/tenants/acme/suspend",
            None,
        )
        .await;
    assert_eq!(
        (a.status, a.body["status"].as_str()),
        (200, Some("suspended"))
    );

    // The customer's message is stored and filed, and no assistant turn is scheduled for it.
    let body = text_webhook(
        "106540352242922",
        "6281234567890",
        "wamid.SUSP1",
        "Open on Sunday?",
    );
    assert_eq!(app.post_signed(&body).await.0, 200);
    let conversation = app
        .wait_for(WAIT, |app| {
            let c = app.conversations(tenant).pop()?;
            (!app.messages(tenant, &c).is_empty()).then_some(c)
        })
        .await;
    let pending = app
        .store()
        .read(|r| {
            r.tenant(tenant).get(
                &wacrm::conversations::PENDING_TURNS,
                conversation.id.as_bytes(),
            )
        })
        .unwrap();
    assert!(
        pending.is_none(),
        "no turn is scheduled for a suspended tenant"
    );
    assert!(app.graph.sent().is_empty(), "nothing was sent");

    // Its people are refused: sign-in, existing sessions, API keys. The operator is not.
    let a = app
        .sign_in_raw("admin@acme.test", support::people::PASSWORD)
        .await;
    assert_eq!((a.status, a.code()), (403, "tenant_suspended"));
    for cred in [&session, &key] {
        let a = app
            .call(
                cred,
                Method::GET,
                "/api/v1/tenants/acme/conversations",
                None,
            )
            .await;
        assert_eq!((a.status, a.code()), (403, "tenant_suspended"));
    }
    let convs = app.get("/api/v1/tenants/acme/conversations").await;
    assert_eq!(convs.as_array().unwrap().len(), 1);

    // Resumed: people are back, and the next message is answered.
    app.post("/api/v1/tenants/acme/resume", json!({})).await;
    let session = app.sign_in("admin@acme.test").await;
    let a = app
        .call(&session, Method::GET, "/api/v1/tenants/acme", None)
        .await;
    assert_eq!((a.status, a.body["status"].as_str()), (200, Some("active")));
    let body = text_webhook(
        "106540352242922",
        "6281234567890",
        "wamid.SUSP2",
        "Hello again",
    );
    assert_eq!(app.post_signed(&body).await.0, 200);
    let sent = app.graph.wait_for_sent(1, WAIT).await;
    assert_eq!(sent.len(), 1);

    let actions: Vec<String> = app
        .audit("action=tenant.")
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert!(
        actions.contains(&"tenant.suspended".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"tenant.resumed".to_string()),
        "{actions:?}"
    );
    let refused = app.audit("action=auth.sign_in_refused").await;
    assert_eq!(refused[0]["detail"]["reason"], "tenant_suspended");
    app.stop().await;
}

/// Stands in for the knowledge service: keeps a tenant's documents as files in the data directory.
struct FakeDocuments {
    root: std::path::PathBuf,
}

impl TenantDataOwner for FakeDocuments {
    fn name(&self) -> &'static str {
        "documents"
    }
    fn purge_tenant(&self, tenant: &Tenant) -> Result<PurgeReport, String> {
        let dir = self.root.join(tenant.id.to_string());
        let mut report = PurgeReport::default();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                report.files += 1;
                report.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(report),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(report),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Every file under `dir` (except the database, read row by row instead) holding any of `needles`.
fn files_containing(dir: &Path, needles: &[Vec<u8>], skip: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p == skip {
                continue;
            }
            let bytes = std::fs::read(&p).unwrap();
            if needles
                .iter()
                .any(|n| bytes.windows(n.len()).any(|w| w == n.as_slice()))
            {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

/// Every row of every table of the database holding any of `needles`.
fn rows_containing(db: &Path, needles: &[Vec<u8>]) -> Vec<String> {
    use redb::{ReadableTable, TableDefinition, TableHandle};
    // The writer thread lets go of the file once the last handle is dropped.
    let mut opened = Err(None);
    for _ in 0..200 {
        match redb::Database::open(db) {
            Ok(d) => {
                opened = Ok(d);
                break;
            }
            Err(e) => {
                opened = Err(Some(e));
                std::thread::sleep(Duration::from_millis(25));
            }
        }
    }
    let db = opened.expect("the database reopens");
    let txn = db.begin_read().unwrap();
    let mut found = Vec::new();
    for handle in txn.list_tables().unwrap() {
        let name = handle.name().to_string();
        let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&name);
        let table = txn.open_table(def).unwrap();
        for row in table.iter().unwrap() {
            let (k, v) = row.unwrap();
            let (k, v) = (k.value(), v.value());
            let hit = |hay: &[u8]| {
                needles
                    .iter()
                    .any(|n| hay.windows(n.len()).any(|w| w == n.as_slice()))
            };
            if hit(k) || hit(v) {
                found.push(format!(
                    "{name}: {}",
                    String::from_utf8_lossy(&[k, b" => ", v].concat())
                ));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_tenant_removes_its_data_everywhere_and_reports_it() {
    let mut app = TestApp::start(Options::default()).await;
    let doomed = app.tenant_with_channel("doomed", "111000111").await;
    let keeper = app.tenant_with_channel("keeper", "222000222").await;
    let docs = app.dir.path().join("documents");
    let state = app.running.as_ref().unwrap().state.clone();
    state
        .tenant_data
        .register(Arc::new(FakeDocuments { root: docs.clone() }));
    drop(state);
    for (tenant, slug) in [(doomed, "doomed"), (keeper, "keeper")] {
        let dir = docs.join(tenant.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("menu.txt"), format!("{slug}'s menu")).unwrap();
    }

    // Both tenants get the works: people, sessions, keys, invitations, outlets, conversations,
    // a failed sign-in (lockout counter), audit entries.
    let mut sessions = Vec::new();
    for slug in ["doomed", "keeper"] {
        app.create_outlet(slug, "Main street").await;
        app.create_user(slug, &format!("admin@{slug}.test"), "admin", &[])
            .await;
        sessions.push(app.sign_in(&format!("admin@{slug}.test")).await);
        assert_eq!(
            app.sign_in_raw(&format!("admin@{slug}.test"), "wrong password!!")
                .await
                .status,
            401
        );
        app.create_api_key(slug, "agent", &[]).await;
        app.post(
            &format!("/api/v1/tenants/{slug}/invitations"),
            json!({"email": format!("new@{slug}.test"), "role": "viewer"}),
        )
        .await;
    }
    let doomed_session = sessions.remove(0);
    for (phone, wamid) in [("111000111", "wamid.D1"), ("222000222", "wamid.K1")] {
        let body = text_webhook(phone, "6281234567890", wamid, "Do you deliver?");
        assert_eq!(app.post_signed(&body).await.0, 200);
    }
    app.wait_for(WAIT, |app| {
        [doomed, keeper]
            .iter()
            .all(|t| {
                app.conversations(*t).iter().any(|c| {
                    app.messages(*t, c)
                        .iter()
                        .any(|m| m.author == Author::Assistant)
                })
            })
            .then_some(())
    })
    .await;

    let a = app
        .call(
            &app.operator(),
            Method::DELETE,
            "/api/v1/tenants/doomed",
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let report = a.body;
    assert_eq!(report["slug"], "doomed");
    assert!(report["tenant_rows"].as_u64().unwrap() > 10, "{report}");
    assert_eq!(report["global_rows"]["webhook_routes"], 1);
    assert_eq!(report["global_rows"]["verify_tokens"], 1);
    assert_eq!(report["global_rows"]["logins"], 1);
    assert_eq!(report["global_rows"]["sessions"], 1);
    assert_eq!(report["global_rows"]["api_keys"], 1);
    assert_eq!(report["global_rows"]["invitation_links"], 1);
    assert_eq!(report["global_rows"]["sign_in_lockouts"], 1);
    assert_eq!(report["owners"]["documents"]["files"], 1);

    // Gone for its people and for the operator; a late webhook for its number stores nothing.
    let a = app
        .call(&doomed_session, Method::GET, "/api/v1/auth/me", None)
        .await;
    assert_eq!(a.status, 401);
    let (status, _) = app.api(Method::GET, "/api/v1/tenants/doomed", None).await;
    assert_eq!(status, 404);
    let body = text_webhook("111000111", "6281234567890", "wamid.D2", "Anyone there?");
    assert_eq!(app.post_signed(&body).await.0, 200);

    // The other tenant keeps everything.
    app.sign_in("admin@keeper.test").await;
    assert_eq!(app.conversations(keeper).len(), 1);
    assert!(docs.join(keeper.to_string()).join("menu.txt").exists());
    let deleted = app.audit("action=tenant.deleted").await;
    assert_eq!(deleted.len(), 1);

    // Nothing of it is left in any row or any file of the data directory.
    app.stop().await;
    let id = doomed.to_string();
    let needles = vec![
        doomed.as_bytes().to_vec(),
        id.as_bytes().to_vec(),
        id.replace('-', "").into_bytes(),
        b"doomed".to_vec(),
        b"111000111".to_vec(),
    ];
    let db = app.dir.path().join(wacrm::app::DATABASE_FILE);
    let rows = rows_containing(&db, &needles);
    assert!(rows.is_empty(), "rows left behind:\n{}", rows.join("\n"));
    let files = files_containing(app.dir.path(), &needles, &db);
    assert!(files.is_empty(), "files left behind: {files:?}");
    // The scan does find what is there: the keeper's rows and files.
    assert!(!rows_containing(&db, &[b"keeper".to_vec()]).is_empty());
    assert!(!files_containing(app.dir.path(), &[b"keeper".to_vec()], &db).is_empty());
}
