//! Upgrades: a directory of the previous format keeps every record, a newer one is refused, and a
//! migration killed half-way (abort inside a batch, SIGKILL between batches) resumes to the same
//! result, with the half-done batch rolled back.

mod support;

use std::path::Path;
use std::time::Duration;

use redb::{Database, ReadableTable};
use support::ops::*;
use support::*;
use wacrm::ops::format::{self, Migration, RawTable};
use wacrm::storage::{meta_key, GLOBAL_TABLE, TENANT_TABLE};

const PHONE: &str = "106540352242922";

/// What a binary from before formats were recorded leaves: no FORMAT file, no format row.
fn make_previous_format(dir: &Path) {
    std::fs::remove_file(dir.join("FORMAT")).unwrap();
    let db = Database::open(dir.join("wacrm.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(GLOBAL_TABLE)
        .unwrap()
        .remove(meta_key(b"format_version").as_slice())
        .unwrap();
    txn.commit().unwrap();
}

fn without_meta(
    mut rows: std::collections::BTreeMap<String, std::collections::BTreeMap<Vec<u8>, Vec<u8>>>,
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<Vec<u8>, Vec<u8>>> {
    if let Some(global) = rows.get_mut("global_rows") {
        global.retain(|k, _| {
            !k.starts_with(&meta_key(b"format_")) && !k.starts_with(&[50]) && !k.starts_with(&[51])
        });
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_of_the_previous_format_is_migrated_keeping_every_record() {
    let mut app = TestApp::start(Options::default()).await;
    let tenant = app.tenant_with_channel("acme", PHONE).await;
    for i in 0..5 {
        app.post_signed(&text_webhook(
            PHONE,
            "628111",
            &format!("wamid.up{i}"),
            "halo",
        ))
        .await;
    }
    app.wait_for(WAIT, |a| {
        let c = a.conversations(tenant).pop()?;
        (a.messages(tenant, &c).len() >= 5).then_some(())
    })
    .await;
    app.stop().await;
    let dir = app.dir.path().to_path_buf();
    make_previous_format(&dir);
    let before = dump(&dir.join("wacrm.redb"));

    // What the service does first on start.
    let outcome = format::prepare(&dir).unwrap();
    assert_eq!((outcome.from, outcome.to), (0, format::CURRENT_FORMAT));
    assert_eq!(
        format::read_format_file(&dir).unwrap(),
        Some(format::CURRENT_FORMAT)
    );
    assert_eq!(
        without_meta(dump(&dir.join("wacrm.redb"))),
        without_meta(before),
        "a record changed"
    );
    // It took its own backup first, of the directory as it was.
    let backups: Vec<_> = std::fs::read_dir(dir.join("backups"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(backups.len(), 1);
    let manifest = wacrm::ops::backup::verify(&backups[0].path()).unwrap();
    assert_eq!(manifest.format_version, 0);
    // Starting the service on it is then a no-op for the format: no new backup.
    let app = app.restart(|_| {}).await;
    assert_eq!(std::fs::read_dir(dir.join("backups")).unwrap().count(), 1);
    assert_eq!(app.conversations(tenant).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_directory_is_refused_with_a_clear_message_and_left_alone() {
    let mut app = TestApp::start(Options::default()).await;
    app.create_tenant("acme").await;
    app.stop().await;
    let dir = app.dir.path().to_path_buf();
    std::fs::write(dir.join("FORMAT"), "wacrm-data-format 7\n").unwrap();
    let before = dump(&dir.join("wacrm.redb"));
    let config = test_config(&dir, &app.graph.base_url(), None, 50);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = match wacrm::app::launch(config, listener, std::future::pending()).await {
        Ok(_) => panic!("a newer data directory was opened"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("format version 7") && err.contains("newer wacrm"),
        "{err}"
    );
    assert_eq!(dump(&dir.join("wacrm.redb")), before);
    assert!(!dir.join("backups").exists());
}

// ---- a synthetic v1 → v2 migration of a record layout ----

const TAG: u8 = 59;
const ROWS: u32 = 1_000;
const BATCH: usize = 100;

fn key(i: u32) -> Vec<u8> {
    let mut k = [7u8; 16].to_vec();
    k.push(TAG);
    k.extend_from_slice(&i.to_be_bytes());
    k
}

/// v1 layout: `{"name": ...}`; v2: `{"full_name": ..., "migrated": true}`.
fn to_v2(
    table: RawTable,
    key: &[u8],
    value: &[u8],
) -> Result<Option<Vec<u8>>, wacrm::storage::StoreError> {
    if table != RawTable::Tenant || key.get(16) != Some(&TAG) || value.get(0..2) != Some(&[1, 0]) {
        return Ok(None);
    }
    crash_point();
    let old: serde_json::Value = serde_json::from_slice(&value[2..]).unwrap();
    let mut out = vec![2, 0];
    out.extend(
        serde_json::to_vec(&serde_json::json!({"full_name": old["name"], "migrated": true}))
            .unwrap(),
    );
    Ok(Some(out))
}

/// In the child process: abort in the middle of the fourth batch.
fn crash_point() {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEEN: AtomicU32 = AtomicU32::new(0);
    if std::env::var("WACRM_TEST_MIGRATION_CHILD").as_deref() == Ok("abort")
        && SEEN.fetch_add(1, Ordering::SeqCst) == (3 * BATCH + BATCH / 2) as u32
    {
        std::process::abort();
    }
}

/// The synthetic migration's format: one past this binary's.
const NEXT: u32 = format::CURRENT_FORMAT + 1;

fn migrations() -> Vec<Migration> {
    let mut list = format::migrations();
    list.push(Migration {
        to: NEXT,
        name: "synthetic: rename name to full_name",
        rewrite: to_v2,
    });
    list
}

fn seed(dir: &Path) {
    format::prepare(dir).unwrap();
    // Every started directory has its key; the pre-migration backup copies and checks it.
    std::fs::write(dir.join("master.key"), [9u8; 32]).unwrap();
    let db = Database::open(dir.join("wacrm.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(TENANT_TABLE).unwrap();
        for i in 0..ROWS {
            let mut v = vec![1, 0];
            v.extend(serde_json::to_vec(&serde_json::json!({"name": format!("n{i}")})).unwrap());
            t.insert(key(i).as_slice(), v.as_slice()).unwrap();
        }
    }
    txn.commit().unwrap();
}

fn converted(dir: &Path) -> u32 {
    let db = Database::open(dir.join("wacrm.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(TENANT_TABLE).unwrap();
    t.iter()
        .unwrap()
        .filter(|r| r.as_ref().unwrap().1.value()[0] == 2)
        .count() as u32
}

/// The child: runs the migration until it crashes (abort) or is killed (park).
#[test]
fn migration_child() {
    let Ok(mode) = std::env::var("WACRM_TEST_MIGRATION_CHILD") else {
        return;
    };
    let dir = std::path::PathBuf::from(std::env::var("WACRM_TEST_MIGRATION_DIR").unwrap());
    let mut batches = 0;
    let result = format::upgrade(&dir, NEXT, &migrations(), BATCH, &mut |_| {
        batches += 1;
        if mode == "park" && batches == 3 {
            std::fs::write(dir.join("parked"), "").unwrap();
            loop {
                std::thread::park();
            }
        }
    });
    panic!("the child was meant to crash: {:?}", result.map(|_| ()));
}

fn spawn_child(dir: &Path, mode: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "migration_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WACRM_TEST_MIGRATION_CHILD", mode)
        .env("WACRM_TEST_MIGRATION_DIR", dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn after_crash_then_resume(dir: &Path) {
    // Three whole batches are in, the interrupted one is not; the format is still the old one.
    assert_eq!(converted(dir), 3 * BATCH as u32);
    assert_eq!(
        format::read_format_file(dir).unwrap(),
        Some(format::CURRENT_FORMAT)
    );
    {
        let db = Database::open(dir.join("wacrm.redb")).unwrap();
        assert_eq!(
            format::database_format(&db).unwrap(),
            format::CURRENT_FORMAT
        );
    }
    let outcome = format::upgrade(dir, NEXT, &migrations(), BATCH, &mut |_| {}).unwrap();
    assert!(outcome.resumed);
    assert_eq!((outcome.from, outcome.to), (format::CURRENT_FORMAT, NEXT));
    assert_eq!(converted(dir), ROWS);
    assert_eq!(format::read_format_file(dir).unwrap(), Some(NEXT));
    // The backup was taken once, before the first batch, and still holds the old layout.
    let backup = outcome.backup.unwrap();
    assert_eq!(converted(&backup), 0);
    let check = wacrm::ops::check::check_database(&dir.join("wacrm.redb")).unwrap();
    assert!(check.integrity);
    // An older binary (this one reads up to CURRENT_FORMAT) now refuses the directory.
    let err = format::prepare(dir).unwrap_err();
    assert_eq!(err.code(), "format_too_new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_aborted_inside_a_batch_rolls_that_batch_back_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path());
    let status = spawn_child(dir.path(), "abort").wait().unwrap();
    assert!(!status.success());
    after_crash_then_resume(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_killed_with_sigkill_resumes() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path());
    let mut child = spawn_child(dir.path(), "park");
    let parked = dir.path().join("parked");
    let reached = poll_until(Duration::from_secs(60), || parked.exists()).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(reached, "the child never got three batches in");
    std::fs::remove_file(parked).unwrap();
    after_crash_then_resume(dir.path());
}
