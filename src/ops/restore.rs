//! `wacrm restore SRC`: checks a backup, then puts it in place of the data directory.
//!
//! Order: refuse while a server uses the directory; check SRC (manifest, format, files); copy it
//! beside the data directory (same filesystem); check the copy fully (redb opens, integrity check,
//! rows as in the manifest); then swap the two directories in one atomic `renameat2(EXCHANGE)`.
//! The replaced directory is kept as `DATA_DIR.replaced-TIMESTAMP`. Nothing is touched before the
//! copy passed every check; a crash before the swap leaves the data directory as it was.

use std::io;
use std::path::{Path, PathBuf};

use redb::Database;

use super::backup::{self, BackupError, Manifest, MANIFEST_FILE};
use super::fsutil;
use crate::app::DATABASE_FILE;

#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub manifest: Manifest,
    /// Where the directory that was replaced now is (None: there was none).
    pub replaced: Option<PathBuf>,
}

fn io_err(e: impl std::fmt::Display) -> BackupError {
    BackupError::Io(io::Error::other(e.to_string()))
}

/// Fails if a process holds the data directory's database open.
pub fn ensure_not_in_use(data_dir: &Path) -> Result<(), BackupError> {
    let path = data_dir.join(DATABASE_FILE);
    if !path.exists() {
        return Ok(());
    }
    match Database::open(&path) {
        Ok(_) => Ok(()),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(BackupError::Destination(format!(
            "{} is in use by a running wacrm: stop it first (systemctl stop wacrm)",
            data_dir.display()
        ))),
        // A damaged live database is exactly what a restore is for.
        Err(_) => Ok(()),
    }
}

pub fn restore(src: &Path, data_dir: &Path) -> Result<RestoreReport, BackupError> {
    backup::precheck(src)?;
    ensure_not_in_use(data_dir)?;
    let name = data_dir
        .file_name()
        .ok_or_else(|| {
            BackupError::Destination(format!("{}: not a directory name", data_dir.display()))
        })?
        .to_string_lossy()
        .to_string();
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)?;
    let staging = parent.join(format!(".{name}.restore-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let result = (|| {
        fsutil::copy_tree(src, &staging, &|n| n == MANIFEST_FILE || n.starts_with('.'))?;
        // Keep the manifest out of the live directory but check the copy against it.
        std::fs::copy(src.join(MANIFEST_FILE), staging.join(MANIFEST_FILE))?;
        let manifest = backup::verify(&staging)?;
        std::fs::remove_file(staging.join(MANIFEST_FILE))?;
        // Restores run as root for a service user: the copy gets the owner of what it replaces.
        if let Ok(meta) = std::fs::metadata(data_dir) {
            use std::os::unix::fs::MetadataExt;
            if rustix::process::geteuid().is_root() {
                fsutil::chown_tree(&staging, meta.uid(), meta.gid())?;
            }
        }
        fsutil::sync_dir(&staging)?;
        Ok::<_, BackupError>(manifest)
    })();
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let replaced = if data_dir.exists() {
        let stamp = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string();
        let kept = parent.join(format!("{name}.replaced-{stamp}"));
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &staging,
            rustix::fs::CWD,
            data_dir,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(io_err)?;
        // `staging` now holds the replaced directory.
        std::fs::rename(&staging, &kept)?;
        Some(kept)
    } else {
        std::fs::rename(&staging, data_dir)?;
        None
    };
    fsutil::sync_dir(&parent)?;
    Ok(RestoreReport { manifest, replaced })
}
