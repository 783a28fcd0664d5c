//! `wacrm backup DEST`: a consistent, checked copy of the data directory, made while the service
//! runs and takes traffic.
//!
//! With a server running on the data directory, the CLI asks it for a snapshot stream (one redb read
//! transaction: every write acknowledged before the request is in it, nothing half-written) and
//! writes the rows into a fresh database. With none running, it opens the database itself. Then it
//! copies the other files of the directory (master key, operator token, uploaded documents, ...),
//! leaves out what is derived or transient (search indexes: rebuilt from the database on start;
//! `server.json`; `backups/`), writes `FORMAT` and a manifest, checks the copy as `restore` would,
//! and only then renames it into place: DEST either holds a complete, checked backup or does not
//! exist. A crash leaves only a hidden `.NAME.partial-PID` beside it.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use redb::{Database, ReadableTableMetadata, TableDefinition, TableHandle};
use serde::{Deserialize, Serialize};

use super::format::{self, BACKUPS_DIR, CURRENT_FORMAT, FORMAT_FILE};
use super::fsutil;
use super::snapshot::{self, ChunkReader, RowSink, SnapshotError, TableCounts};
use crate::app::{DATABASE_FILE, MASTER_KEY_FILE};

pub const MANIFEST_FILE: &str = "BACKUP.json";
pub const SERVER_FILE: &str = "server.json";
/// Derived from the database and rebuilt on start; never copied: the knowledge indexes.
pub const INDEX_DIR: &str = crate::knowledge::index::INDEX_DIR;
/// The same for the dashboard's inbox search. A copy taken while the service runs would hold
/// documents and a feed position newer than the snapshot of the database (the indexer would then
/// skip the restored service's next messages), so these are rebuilt instead.
pub const SEARCH_DIR: &str = crate::web::dashboard::SEARCH_DIR;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Destination(String),
    #[error("{path} is not a wacrm backup: {reason}")]
    NotABackup { path: String, reason: String },
    #[error("the backup at {path} failed its check: {reason}")]
    Check { path: String, reason: String },
    #[error("the running server refused the snapshot: {0}")]
    Server(String),
    #[error(
        "the database is in use by a wacrm that does not answer at the address in server.json; \
stop it or let it finish starting, then try again"
    )]
    InUse,
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("backup I/O: {0}")]
    Io(#[from] io::Error),
}

impl BackupError {
    pub fn code(&self) -> &'static str {
        match self {
            BackupError::Destination(_) => "backup_destination",
            BackupError::NotABackup { .. } => "not_a_backup",
            BackupError::Check { .. } => "backup_check_failed",
            BackupError::Server(_) => "backup_server",
            BackupError::InUse => "database_in_use",
            BackupError::Snapshot(e) => e.code(),
            BackupError::Io(_) => "backup_io",
        }
    }
}

fn redb_io(e: impl Into<redb::Error>) -> BackupError {
    BackupError::Io(io::Error::other(e.into().to_string()))
}

/// What a backup holds, written beside it as `BACKUP.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub kind: String,
    pub format_version: u32,
    pub created_at: String,
    pub wacrm_version: String,
    /// "server" (snapshot from the running service) or "offline" (database opened directly).
    pub source: String,
    pub tables: TableCounts,
    pub rows: u64,
    /// Files copied besides the database (keys, documents, ...).
    pub files: u64,
    pub indexes: String,
}

const MANIFEST_KIND: &str = "wacrm-backup";

#[derive(Debug, Clone)]
pub struct BackupReport {
    pub dest: PathBuf,
    pub manifest: Manifest,
    pub database_bytes: u64,
    pub elapsed: Duration,
}

/// Whether a top-level entry of the data directory stays out of backups.
pub fn excluded(name: &str) -> bool {
    name == DATABASE_FILE
        || name == SERVER_FILE
        || name == INDEX_DIR
        || name == SEARCH_DIR
        || name == BACKUPS_DIR
        || name == "lost+found"
        || name.starts_with('.')
}

fn staging_for(dest: &Path) -> Result<PathBuf, BackupError> {
    let name = dest
        .file_name()
        .ok_or_else(|| {
            BackupError::Destination(format!("{}: not a directory name", dest.display()))
        })?
        .to_string_lossy()
        .to_string();
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(BackupError::Destination(format!(
            "{}: the parent directory does not exist",
            dest.display()
        )));
    }
    Ok(parent.join(format!(".{name}.partial-{}", std::process::id())))
}

fn check_destination(dest: &Path) -> Result<(), BackupError> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::Destination(format!(
                    "{} exists and is not empty; choose a new directory (e.g. one per day)",
                    dest.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BackupError::Destination(format!("{}: {e}", dest.display()))),
    }
}

fn new_staging(dest: &Path) -> Result<PathBuf, BackupError> {
    check_destination(dest)?;
    let staging = staging_for(dest)?;
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o700))?;
    Ok(staging)
}

/// Copies the files, writes FORMAT and the manifest, checks the copy, and renames it into place.
fn complete(
    data_dir: &Path,
    staging: &Path,
    dest: &Path,
    tables: TableCounts,
    source: &str,
    started: Instant,
) -> Result<BackupReport, BackupError> {
    let files = fsutil::copy_tree(data_dir, staging, &|name| {
        excluded(name) || name == FORMAT_FILE || name == MANIFEST_FILE
    })?;
    let format_version = {
        let db = Database::open(staging.join(DATABASE_FILE)).map_err(redb_io)?;
        format::database_format(&db).map_err(|e| BackupError::Check {
            path: staging.display().to_string(),
            reason: e.to_string(),
        })?
    };
    format::write_format_file(staging, format_version).map_err(|e| BackupError::Check {
        path: staging.display().to_string(),
        reason: e.to_string(),
    })?;
    let manifest = Manifest {
        kind: MANIFEST_KIND.into(),
        format_version,
        created_at: jiff::Timestamp::now().to_string(),
        wacrm_version: env!("CARGO_PKG_VERSION").into(),
        source: source.into(),
        rows: tables.values().sum(),
        tables,
        files,
        indexes: "not included: rebuilt from the database on start".into(),
    };
    let json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Io(io::Error::other(e)))?;
    fsutil::write_atomic(&staging.join(MANIFEST_FILE), &json)?;
    verify(staging)?;
    fsutil::sync_dir(staging)?;
    std::fs::rename(staging, dest).map_err(|e| {
        BackupError::Destination(format!(
            "cannot move the finished backup to {}: {e}",
            dest.display()
        ))
    })?;
    if let Some(parent) = dest.parent() {
        let _ = fsutil::sync_dir(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        });
    }
    Ok(BackupReport {
        dest: dest.to_path_buf(),
        database_bytes: std::fs::metadata(dest.join(DATABASE_FILE))
            .map(|m| m.len())
            .unwrap_or(0),
        manifest,
        elapsed: started.elapsed(),
    })
}

/// Backs up from a database this process already has open (the pre-migration backup).
pub fn backup_open_database(
    db: &Database,
    data_dir: &Path,
    dest: &Path,
) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let staging = new_staging(dest)?;
    let result = (|| {
        let tables = {
            let copy = Database::create(staging.join(DATABASE_FILE)).map_err(redb_io)?;
            let txn = db.begin_read().map_err(redb_io)?;
            let mut sink = RowSink::new(&copy);
            snapshot::copy_snapshot(&txn, &mut sink)?;
            sink.finish()?
        };
        complete(data_dir, &staging, dest, tables, "offline", started)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

/// Backs up a data directory with no server running on it (opens the database directly).
pub fn backup_offline(data_dir: &Path, dest: &Path) -> Result<BackupReport, BackupError> {
    let db = match Database::open(data_dir.join(DATABASE_FILE)) {
        Ok(db) => db,
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(BackupError::InUse),
        Err(e) => return Err(redb_io(e)),
    };
    backup_open_database(&db, data_dir, dest)
}

/// Backs up through the running server's snapshot API.
pub async fn backup_from_server(
    url: &str,
    token: &str,
    data_dir: &Path,
    dest: &Path,
) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    let staging = new_staging(dest)?;
    let result = async {
        let response = crate::cli::client::local_http_client(url)
            .get(format!("{}/api/v1/ops/snapshot", url.trim_end_matches('/')))
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| BackupError::Server(e.to_string()))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(BackupError::Server(format!("HTTP {status}: {body}")));
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, String>>(16);
        let db_path = staging.join(DATABASE_FILE);
        let writer = tokio::task::spawn_blocking(move || -> Result<TableCounts, BackupError> {
            let copy = Database::create(&db_path).map_err(redb_io)?;
            let mut sink = RowSink::new(&copy);
            snapshot::read_snapshot(ChunkReader::new(rx), &mut sink)?;
            Ok(sink.finish()?)
        });
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let item = chunk.map_err(|e| e.to_string());
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
        drop(tx);
        let tables = writer
            .await
            .map_err(|e| BackupError::Io(io::Error::other(e.to_string())))??;
        let (data_dir, staging, dest) =
            (data_dir.to_path_buf(), staging.clone(), dest.to_path_buf());
        tokio::task::spawn_blocking(move || {
            complete(&data_dir, &staging, &dest, tables, "server", started)
        })
        .await
        .map_err(|e| BackupError::Io(io::Error::other(e.to_string())))?
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

/// The running server of a data directory, from `server.json`, if it answers.
pub async fn running_server(data_dir: &Path) -> Option<(String, String)> {
    let raw = std::fs::read_to_string(data_dir.join(SERVER_FILE)).ok()?;
    let info: serde_json::Value = serde_json::from_str(&raw).ok()?;
    let url = info["url"].as_str()?.to_string();
    let token =
        std::fs::read_to_string(data_dir.join(crate::web::auth::OPERATOR_TOKEN_FILE)).ok()?;
    crate::cli::client::local_http_client(&url)
        .get(format!("{url}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    Some((url, token.trim().to_string()))
}

/// `wacrm backup DEST`: through the running server if there is one, else offline.
pub async fn backup(data_dir: &Path, dest: &Path) -> Result<BackupReport, BackupError> {
    match running_server(data_dir).await {
        Some((url, token)) => backup_from_server(&url, &token, data_dir, dest).await,
        None => {
            let (data_dir, dest) = (data_dir.to_path_buf(), dest.to_path_buf());
            tokio::task::spawn_blocking(move || backup_offline(&data_dir, &dest))
                .await
                .map_err(|e| BackupError::Io(io::Error::other(e.to_string())))?
        }
    }
}

pub fn read_manifest(dir: &Path) -> Result<Manifest, BackupError> {
    let not = |reason: String| BackupError::NotABackup {
        path: dir.display().to_string(),
        reason,
    };
    let raw =
        std::fs::read(dir.join(MANIFEST_FILE)).map_err(|e| not(format!("{MANIFEST_FILE}: {e}")))?;
    let manifest: Manifest =
        serde_json::from_slice(&raw).map_err(|e| not(format!("{MANIFEST_FILE}: {e}")))?;
    if manifest.kind != MANIFEST_KIND {
        return Err(not(format!(
            "{MANIFEST_FILE} is of kind {:?}",
            manifest.kind
        )));
    }
    Ok(manifest)
}

/// The checks that need no write access: manifest, format, required files.
pub fn precheck(dir: &Path) -> Result<Manifest, BackupError> {
    let manifest = read_manifest(dir)?;
    let fail = |reason: String| BackupError::Check {
        path: dir.display().to_string(),
        reason,
    };
    let format = format::read_format_file(dir).map_err(|e| fail(e.to_string()))?;
    match format {
        Some(v) if v == manifest.format_version => {}
        other => {
            return Err(fail(format!(
                "FORMAT says {other:?}, the manifest {}",
                manifest.format_version
            )))
        }
    }
    if manifest.format_version > CURRENT_FORMAT {
        return Err(fail(format!(
            "format version {} is newer than this wacrm reads ({CURRENT_FORMAT}); restore it with the wacrm that made it",
            manifest.format_version
        )));
    }
    match std::fs::metadata(dir.join(MASTER_KEY_FILE)) {
        Ok(m) if m.len() == 32 => {}
        Ok(m) => {
            return Err(fail(format!(
                "{MASTER_KEY_FILE} has {} bytes, expected 32",
                m.len()
            )))
        }
        Err(e) => {
            return Err(fail(format!(
                "{MASTER_KEY_FILE}: {e} (without it no channel secret opens)"
            )))
        }
    }
    if !dir.join(DATABASE_FILE).is_file() {
        return Err(fail(format!("{DATABASE_FILE} is missing")));
    }
    Ok(manifest)
}

/// Rows per table of a database file.
pub fn count_rows(db: &Database) -> Result<TableCounts, BackupError> {
    let txn = db.begin_read().map_err(redb_io)?;
    let mut counts = TableCounts::new();
    for handle in txn.list_tables().map_err(redb_io)? {
        let name = handle.name().to_string();
        let table = txn
            .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
            .map_err(redb_io)?;
        counts.insert(name, table.len().map_err(redb_io)?);
    }
    Ok(counts)
}

/// Opens a database file that may be damaged. redb reports most damage as errors but asserts on
/// some (a truncated file): both become an error here.
pub fn open_untrusted(path: &Path) -> Result<Database, String> {
    let opened = std::panic::catch_unwind(|| Database::open(path));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(format!("{} does not open: {e}", path.display())),
        Err(_) => Err(format!(
            "{} is damaged (truncated or overwritten)",
            path.display()
        )),
    }
}

/// Every check `restore` makes: the manifest, format and files, then the database opens, passes
/// redb's integrity check, records the manifest's format and holds the manifest's rows.
pub fn verify(dir: &Path) -> Result<Manifest, BackupError> {
    let manifest = precheck(dir)?;
    let fail = |reason: String| BackupError::Check {
        path: dir.display().to_string(),
        reason,
    };
    let mut db = open_untrusted(&dir.join(DATABASE_FILE)).map_err(fail)?;
    match db.check_integrity() {
        Ok(true) => {}
        Ok(false) => return Err(fail(format!("{DATABASE_FILE} needed repairs"))),
        Err(e) => return Err(fail(format!("{DATABASE_FILE} integrity check: {e}"))),
    }
    let found = format::database_format(&db).map_err(|e| fail(e.to_string()))?;
    if found != manifest.format_version {
        return Err(fail(format!(
            "the database records format {found}, the manifest {}",
            manifest.format_version
        )));
    }
    let counts = count_rows(&db)?;
    if counts != manifest.tables {
        return Err(fail(format!(
            "row counts {counts:?} differ from the manifest's {:?}",
            manifest.tables
        )));
    }
    Ok(manifest)
}
