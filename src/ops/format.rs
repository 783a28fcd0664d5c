//! The data directory's format version, and forward migrations that survive a crash.
//!
//! The version lives in two places: a meta row in the database (the truth, committed atomically
//! with the migration's last batch) and a `FORMAT` file beside it (readable without opening the
//! database, so an older binary refuses a newer directory before it touches anything).
//! A migration rewrites rows in batches; each batch commits together with its progress cursor, so
//! a crash resumes from the last committed batch and never sees a half-rewritten batch. Before the
//! first batch, a full backup is taken into `backups/` (the way back if a migration is wrong).

use std::ops::Bound;
use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::app::DATABASE_FILE;
use crate::storage::{meta_key, StoreError, GLOBAL_TABLE, TENANT_TABLE};

pub const FORMAT_FILE: &str = "FORMAT";
/// The format this binary writes. 0 is a directory written before formats were recorded.
pub const CURRENT_FORMAT: u32 = 2;
/// Where the pre-migration backups go, inside the data directory.
pub const BACKUPS_DIR: &str = "backups";

const FORMAT_MAGIC: &str = "wacrm-data-format";
const META_FORMAT: &[u8] = b"format_version";
const META_MIGRATION: &[u8] = b"migration_progress";
const BATCH_ROWS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "the data directory {dir} has format version {found}, but this wacrm ({binary}) reads only \
up to {supported}: it was written by a newer wacrm. Install that newer version again, or restore \
a backup made with this one. Nothing was changed."
    )]
    TooNew {
        dir: String,
        found: u32,
        supported: u32,
        binary: &'static str,
    },
    #[error("format file {path}: {reason}")]
    BadFile { path: String, reason: String },
    #[error("the backup before migrating failed, nothing was migrated: {0}")]
    Backup(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FormatError {
    pub fn code(&self) -> &'static str {
        match self {
            FormatError::TooNew { .. } => "format_too_new",
            FormatError::BadFile { .. } => "format_file",
            FormatError::Backup(_) => "migration_backup_failed",
            FormatError::Store(e) => e.code(),
        }
    }
}

fn store_err(e: impl Into<redb::Error>) -> FormatError {
    FormatError::Store(StoreError::Io(e.into().to_string()))
}

/// Which raw table a row lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RawTable {
    Tenant,
    Global,
}

impl RawTable {
    fn definition(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        match self {
            RawTable::Tenant => TENANT_TABLE,
            RawTable::Global => GLOBAL_TABLE,
        }
    }
}

/// Rewrites one row for a migration: `Some(new value)` replaces it, `None` leaves it.
pub type RowRewrite = fn(RawTable, &[u8], &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

/// One step forward, from `to - 1` to `to`.
pub struct Migration {
    pub to: u32,
    pub name: &'static str,
    pub rewrite: RowRewrite,
}

/// The migrations of this binary, oldest first.
pub fn migrations() -> Vec<Migration> {
    vec![
        Migration {
            to: 1,
            // Layouts are unchanged; v1 starts recording the version itself.
            name: "record the data format version",
            rewrite: |_, _, _| Ok(None),
        },
        Migration {
            to: 2,
            // Rows are read as they are (messages v1 still decode); from here on messages may be
            // written as v2 (the unanswered-question mark), which a format-1 binary cannot read:
            // the bump makes such a binary refuse the directory instead of failing on a row.
            name: "messages may carry the unanswered-question mark",
            rewrite: |_, _, _| Ok(None),
        },
    ]
}

/// Where a migration got to; committed with each batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Progress {
    to: u32,
    table: RawTable,
    /// Last key rewritten in `table` (None: start of the table).
    after: Option<Vec<u8>>,
    backup: Option<PathBuf>,
}

/// What `prepare` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub from: u32,
    pub to: u32,
    /// The backup taken before migrating, if a migration ran.
    pub backup: Option<PathBuf>,
    /// A migration interrupted earlier was finished.
    pub resumed: bool,
}

pub fn read_format_file(dir: &Path) -> Result<Option<u32>, FormatError> {
    let path = dir.join(FORMAT_FILE);
    let bad = |reason: String| FormatError::BadFile {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut words = text.split_whitespace();
            match (words.next(), words.next().map(str::parse::<u32>)) {
                (Some(FORMAT_MAGIC), Some(Ok(v))) => Ok(Some(v)),
                _ => Err(bad(format!(
                    "expected \"{FORMAT_MAGIC} <number>\", found {:?}",
                    text.trim()
                ))),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(bad(format!("cannot read: {e}"))),
    }
}

/// Writes the `FORMAT` file atomically (temporary file, fsync, rename).
pub fn write_format_file(dir: &Path, version: u32) -> Result<(), FormatError> {
    let path = dir.join(FORMAT_FILE);
    super::fsutil::write_atomic(&path, format!("{FORMAT_MAGIC} {version}\n").as_bytes()).map_err(
        |e| FormatError::BadFile {
            path: path.display().to_string(),
            reason: format!("cannot write: {e}"),
        },
    )
}

/// The format recorded in a database (0 if none: written before formats were recorded).
pub fn database_format(db: &Database) -> Result<u32, FormatError> {
    let txn = db.begin_read().map_err(store_err)?;
    let table = match txn.open_table(GLOBAL_TABLE) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(store_err(e)),
    };
    let value = table
        .get(meta_key(META_FORMAT).as_slice())
        .map_err(store_err)?;
    Ok(match value {
        Some(v) => decode_u32(v.value())?,
        None => 0,
    })
}

fn decode_u32(bytes: &[u8]) -> Result<u32, FormatError> {
    let arr: [u8; 4] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("format version row".into()))?;
    Ok(u32::from_be_bytes(arr))
}

fn read_progress(db: &Database) -> Result<Option<Progress>, FormatError> {
    let txn = db.begin_read().map_err(store_err)?;
    let table = match txn.open_table(GLOBAL_TABLE) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(store_err(e)),
    };
    let value = table
        .get(meta_key(META_MIGRATION).as_slice())
        .map_err(store_err)?;
    match value {
        Some(v) => serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("migration progress row: {e}")).into()),
        None => Ok(None),
    }
}

/// Refuses a directory written by a newer binary, and migrates an older one forward (after a
/// backup). Runs before the store opens.
pub fn prepare(dir: &Path) -> Result<Outcome, FormatError> {
    upgrade(dir, CURRENT_FORMAT, &migrations(), BATCH_ROWS, &mut |_| {})
}

/// `prepare` with the target, the migrations and the batch size given (tests use synthetic
/// migrations). `after_batch` is called after each committed batch with the rows done so far.
pub fn upgrade(
    dir: &Path,
    target: u32,
    migrations: &[Migration],
    batch_rows: usize,
    after_batch: &mut dyn FnMut(u64),
) -> Result<Outcome, FormatError> {
    let too_new = |found: u32| FormatError::TooNew {
        dir: dir.display().to_string(),
        found,
        supported: target,
        binary: env!("CARGO_PKG_VERSION"),
    };
    if let Some(found) = read_format_file(dir)? {
        if found > target {
            return Err(too_new(found));
        }
    }
    let db_path = dir.join(DATABASE_FILE);
    let fresh = !db_path.exists();
    let db = Database::create(&db_path).map_err(store_err)?;
    if fresh {
        set_format(&db, target)?;
        write_format_file(dir, target)?;
        return Ok(Outcome {
            from: target,
            to: target,
            backup: None,
            resumed: false,
        });
    }
    let found = database_format(&db)?;
    if found > target {
        return Err(too_new(found));
    }
    let mut progress = read_progress(&db)?;
    let resumed = progress.is_some();
    if found == target && progress.is_none() {
        if read_format_file(dir)? != Some(target) {
            write_format_file(dir, target)?;
        }
        return Ok(Outcome {
            from: found,
            to: target,
            backup: None,
            resumed: false,
        });
    }
    let backup = match &progress {
        Some(p) => p.backup.clone(),
        None => {
            let stamp = jiff::Timestamp::now()
                .strftime("%Y%m%dT%H%M%SZ")
                .to_string();
            let dest = dir
                .join(BACKUPS_DIR)
                .join(format!("before-format-{target}-{stamp}"));
            tracing::info!(from = found, to = target, backup = %dest.display(), "data format upgrade: taking a backup first");
            super::backup::backup_open_database(&db, dir, &dest)
                .map_err(|e| FormatError::Backup(e.to_string()))?;
            Some(dest)
        }
    };
    let mut done_rows = 0u64;
    for migration in migrations.iter().filter(|m| m.to > found && m.to <= target) {
        let start = match progress.take() {
            Some(p) if p.to == migration.to => p,
            _ => Progress {
                to: migration.to,
                table: RawTable::Tenant,
                after: None,
                backup: backup.clone(),
            },
        };
        tracing::info!(
            to = migration.to,
            name = migration.name,
            resumed,
            "migrating the data directory"
        );
        run_migration(
            &db,
            migration,
            start,
            batch_rows,
            &mut done_rows,
            after_batch,
        )?;
    }
    // A resumed run whose progress named a later step than the list has: still record the target.
    if database_format(&db)? != target {
        set_format(&db, target)?;
    }
    write_format_file(dir, target)?;
    Ok(Outcome {
        from: found,
        to: target,
        backup,
        resumed,
    })
}

fn set_format(db: &Database, version: u32) -> Result<(), FormatError> {
    let mut txn = db.begin_write().map_err(store_err)?;
    txn.set_durability(Durability::Immediate);
    {
        txn.open_table(TENANT_TABLE).map_err(store_err)?;
        let mut global = txn.open_table(GLOBAL_TABLE).map_err(store_err)?;
        global
            .insert(
                meta_key(META_FORMAT).as_slice(),
                version.to_be_bytes().as_slice(),
            )
            .map_err(store_err)?;
        global
            .remove(meta_key(META_MIGRATION).as_slice())
            .map_err(store_err)?;
    }
    txn.commit().map_err(store_err)?;
    Ok(())
}

fn run_migration(
    db: &Database,
    migration: &Migration,
    mut progress: Progress,
    batch_rows: usize,
    done_rows: &mut u64,
    after_batch: &mut dyn FnMut(u64),
) -> Result<(), FormatError> {
    let meta_prefix = meta_key(b"");
    loop {
        let mut txn = db.begin_write().map_err(store_err)?;
        txn.set_durability(Durability::Immediate);
        let finished;
        {
            let mut table = txn
                .open_table(progress.table.definition())
                .map_err(store_err)?;
            let lower = match &progress.after {
                Some(k) => Bound::Excluded(k.as_slice()),
                None => Bound::Unbounded,
            };
            let mut rows = Vec::with_capacity(batch_rows);
            for item in table
                .range::<&[u8]>((lower, Bound::Unbounded))
                .map_err(store_err)?
            {
                let (k, v) = item.map_err(store_err)?;
                rows.push((k.value().to_vec(), v.value().to_vec()));
                if rows.len() >= batch_rows {
                    break;
                }
            }
            for (key, value) in &rows {
                // Storage meta rows (format, progress, counters) are not records.
                if progress.table == RawTable::Global && key.starts_with(&meta_prefix) {
                    continue;
                }
                if let Some(new) = (migration.rewrite)(progress.table, key, value)? {
                    table
                        .insert(key.as_slice(), new.as_slice())
                        .map_err(store_err)?;
                }
            }
            *done_rows += rows.len() as u64;
            let table_done = rows.len() < batch_rows;
            finished = table_done && progress.table == RawTable::Global;
            if table_done {
                progress.table = RawTable::Global;
                progress.after = None;
            } else {
                progress.after = rows.last().map(|(k, _)| k.clone());
            }
        }
        {
            let mut global = txn.open_table(GLOBAL_TABLE).map_err(store_err)?;
            if finished {
                global
                    .insert(
                        meta_key(META_FORMAT).as_slice(),
                        migration.to.to_be_bytes().as_slice(),
                    )
                    .map_err(store_err)?;
                global
                    .remove(meta_key(META_MIGRATION).as_slice())
                    .map_err(store_err)?;
            } else {
                let encoded = serde_json::to_vec(&progress)
                    .map_err(|e| StoreError::Corrupt(format!("migration progress: {e}")))?;
                global
                    .insert(meta_key(META_MIGRATION).as_slice(), encoded.as_slice())
                    .map_err(store_err)?;
            }
        }
        txn.commit().map_err(store_err)?;
        after_batch(*done_rows);
        if finished {
            return Ok(());
        }
    }
}
