//! Backup and restore: a consistent copy while the service takes webhooks, checked restores, and a
//! backup killed half-way that leaves the live data directory intact.

mod support;

use std::time::Duration;

use support::ops::*;
use support::*;
use wacrm::ops::backup;
use wacrm::ops::check::check_database;
use wacrm::ops::restore;

const PHONE: &str = "106540352242922";

/// Webhooks are stored and filed, but no assistant turn runs during the test (load tests measure
/// storage, not the assistant).
fn quiet() -> Options {
    Options {
        llm: Llm::Offline,
        debounce_ms: 600_000,
        status_webhooks: false,
        ..Options::default()
    }
}

const FAQ: &str = "# Kopi Nusantara FAQ

## Opening hours

Our cafe is open Monday to Saturday from 8 am to 10 pm. On Sundays we open at 9 am and close at 6 pm.

## Delivery

We deliver within Bandung city. Delivery is free for orders above 100000 rupiah.
";

/// A customer whose message is searched for before the backup and on the restored copy.
const SEARCHED: &str = "6281777000";

/// Waits (bounded) until `/readyz` answers 200: the knowledge indexes are reconciled with the
/// database and the model is loaded.
async fn wait_ready(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let resp = app
            .http
            .get(format!("{}/readyz", app.url))
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            return;
        }
        let body = resp.text().await.unwrap_or_default();
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_under_webhook_load_holds_every_acknowledged_webhook_and_restores() {
    let mut app = TestApp::start(quiet()).await;
    let tenant = app.tenant_with_channel("acme", PHONE).await;
    // Something for each search to find: a document in the knowledge base, and a customer's
    // message in the inbox (found by an agent before the backup).
    let kb = app.create_kb("acme", "faq", &[]).await;
    let docs = app
        .upload_and_wait("acme", &kb, &[("faq.md", FAQ.into())])
        .await;
    assert_eq!(docs[0]["status"], "ready", "{}", docs[0]);
    let kb_query = serde_json::json!({"query": "is delivery free?", "min_score": 0, "limit": 10});
    let kb_hits = app.search("acme", kb_query.clone()).await["hits"].clone();
    assert!(
        kb_hits[0]["text"]
            .as_str()
            .unwrap()
            .contains("Delivery is free"),
        "{kb_hits}"
    );
    app.create_user("acme", "agent@acme.test", "agent", &[])
        .await;
    let agent = app.sign_in("agent@acme.test").await;
    let (status, _) = app
        .post_signed(&text_webhook(
            PHONE,
            SEARCHED,
            "wamid.searched",
            "pesan kelengkeng",
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        inbox_search_until(&app, &agent, "kelengkeng", &[SEARCHED]).await,
        vec![SEARCHED]
    );

    let load = Load::start(&app, PHONE, 8);
    load.wait_for(200).await;

    // Everything acknowledged before this instant must be in the backup.
    let started = std::time::Instant::now();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("nightly");
    let report = backup::backup_from_server(&app.url, &app.token, app.dir.path(), &dest)
        .await
        .unwrap();
    // The load kept running during the backup.
    let during = load.count();
    load.wait_for(during + 50).await;
    let acked = load.stop().await;
    let before: Vec<&String> = acked
        .iter()
        .filter(|(at, _)| *at < started)
        .map(|(_, w)| w)
        .collect();
    assert!(before.len() >= 200);
    assert!(
        acked.len() > before.len(),
        "no webhook was acknowledged during the backup"
    );
    assert_eq!(report.manifest.source, "server");
    backup::verify(&dest).unwrap();
    app.stop().await;

    // Restore into a new directory and open it as the service would.
    let target = out.path().join("restored");
    let restored = restore::restore(&dest, &target).unwrap();
    assert!(restored.replaced.is_none());
    let check = check_database(&target.join("wacrm.redb")).unwrap();
    assert!(check.ok(), "{check:?}");
    assert!(target.join("master.key").is_file());
    assert!(!target.join("BACKUP.json").exists());

    let app2 = app.restart_on(&target).await;
    for wamid in &before {
        assert!(
            received(app2.store(), tenant, wamid),
            "{wamid} acknowledged before the backup is missing"
        );
    }
    // The search indexes are not in the backup (they are derived): the restored service rebuilds
    // them from the database, and both searches answer as they did before the backup.
    assert!(!dest.join(wacrm::ops::backup::INDEX_DIR).exists());
    assert!(!dest.join(wacrm::ops::backup::SEARCH_DIR).exists());
    wait_ready(&app2).await;
    assert_eq!(app2.search("acme", kb_query).await["hits"], kb_hits);
    let agent = app2.sign_in("agent@acme.test").await;
    assert_eq!(
        inbox_search_until(&app2, &agent, "kelengkeng", &[SEARCHED]).await,
        vec![SEARCHED]
    );

    // The restored service serves the tenant and its channel (secrets open with the copied key),
    // and what arrives now is searchable too.
    let channels = app2.get("/api/v1/tenants/acme/channels").await;
    assert_eq!(channels.as_array().unwrap().len(), 1);
    let (status, _) = app2
        .post_signed(&text_webhook(
            PHONE,
            "6281999",
            "wamid.after-restore",
            "hi rambutanmerah",
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        inbox_search_until(&app2, &agent, "rambutanmerah", &["6281999"]).await,
        vec!["6281999"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_directory_copied_by_hand_restores_everything() {
    let mut app = TestApp::start(Options::default()).await;
    let tenant = app.tenant_with_channel("acme", PHONE).await;
    app.post_signed(&text_webhook(PHONE, "628111", "wamid.copy1", "halo"))
        .await;
    app.wait_for(WAIT, |a| a.conversations(tenant).pop()).await;
    app.stop().await;
    let before = dump(&app.dir.path().join("wacrm.redb"));

    let copy = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", app.dir.path().display()))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(dump(&copy.path().join("wacrm.redb")), before);
    let app2 = app.restart_on(copy.path()).await;
    assert_eq!(app2.conversations(tenant).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_damaged_or_foreign_backups_and_changes_nothing() {
    let mut app = TestApp::start(Options::default()).await;
    app.create_tenant("acme").await;
    let out = tempfile::tempdir().unwrap();
    let good = out.path().join("good");
    backup::backup_from_server(&app.url, &app.token, app.dir.path(), &good)
        .await
        .unwrap();
    app.stop().await;
    let live = app.dir.path().to_path_buf();
    let live_before = dump(&live.join("wacrm.redb"));

    let variant = |name: &str, damage: &dyn Fn(&std::path::Path)| {
        let dir = out.path().join(name);
        std::process::Command::new("cp")
            .arg("-a")
            .arg(&good)
            .arg(&dir)
            .status()
            .unwrap();
        damage(&dir);
        dir
    };
    let no_key = variant("no-key", &|d| {
        std::fs::remove_file(d.join("master.key")).unwrap()
    });
    let newer = variant("newer", &|d| {
        std::fs::write(d.join("FORMAT"), "wacrm-data-format 99\n").unwrap()
    });
    let truncated = variant("truncated", &|d| {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("wacrm.redb"))
            .unwrap();
        f.set_len(8192).unwrap();
    });
    let no_manifest = variant("no-manifest", &|d| {
        std::fs::remove_file(d.join("BACKUP.json")).unwrap()
    });

    for (dir, expect) in [
        (&no_key, "master.key"),
        (&newer, "FORMAT"),
        (&truncated, "wacrm.redb"),
        (&no_manifest, "not a wacrm backup"),
    ] {
        let err = restore::restore(dir, &live).unwrap_err().to_string();
        assert!(err.contains(expect), "{}: {err}", dir.display());
        assert_eq!(
            dump(&live.join("wacrm.redb")),
            live_before,
            "{} changed the live data",
            dir.display()
        );
    }
    // Nothing was left beside the data directory either.
    let strays: Vec<_> = std::fs::read_dir(live.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| {
            let name = live.file_name().unwrap().to_string_lossy().to_string();
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!(".{name}.restore-"))
        })
        .collect();
    assert!(strays.is_empty());

    // And a good backup replaces the directory, keeping the old one aside.
    let report = restore::restore(&good, &live).unwrap();
    assert!(report
        .replaced
        .as_ref()
        .unwrap()
        .join("wacrm.redb")
        .is_file());
    std::fs::remove_dir_all(report.replaced.unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_backup_leaves_the_live_directory_intact() {
    let mut app = TestApp::start(quiet()).await;
    let tenant = app.tenant_with_channel("acme", PHONE).await;
    // Enough rows that the copy takes a while.
    let load = Load::start(&app, PHONE, 8);
    load.wait_for(1000).await;
    let acked = load.stop().await;
    write_server_file(&app);

    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("killed");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wacrm"))
        .arg("--data-dir")
        .arg(app.dir.path())
        .arg("backup")
        .arg(&dest)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let partial = out.path().join(format!(".killed.partial-{}", child.id()));
    // Kill it once it has started writing (or has finished: then the backup must be whole).
    poll_until(Duration::from_secs(30), || {
        partial.exists() || dest.exists()
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    if dest.exists() {
        backup::verify(&dest).unwrap();
    }

    // The live service still takes writes and has every acknowledged webhook.
    let (status, _) = app
        .post_signed(&text_webhook(PHONE, "628222", "wamid.after-kill", "hi"))
        .await;
    assert_eq!(status, 200);
    for (_, wamid) in &acked {
        assert!(received(app.store(), tenant, wamid));
    }
    app.stop().await;
    let check = check_database(&app.dir.path().join("wacrm.redb")).unwrap();
    assert!(check.ok(), "{check:?}");

    // A new backup to the same destination still works (the partial copy is not in the way).
    let again = backup::backup_offline(app.dir.path(), &out.path().join("again")).unwrap();
    assert!(again.manifest.rows > 1000);
}
