//! Free space on the data directory's filesystem, checked periodically, against three thresholds:
//! uploads refused, a warning, and webhooks refused (503, Meta retries) before the store could run
//! out of space mid-commit. redb never corrupts on a failed write, but after an I/O error it refuses
//! further writes until reopened, so the guard keeps writes from reaching that point.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::ResourceSettings;

const MB: u64 = 1024 * 1024;

/// How full the disk is, from fine to critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DiskState {
    Ok = 0,
    /// Uploads refused.
    Low = 1,
    /// Uploads refused, and webhooks will be refused soon: the operator must act.
    Warn = 2,
    /// Webhooks refused too.
    Critical = 3,
}

impl DiskState {
    pub fn as_str(&self) -> &'static str {
        match self {
            DiskState::Ok => "ok",
            DiskState::Low => "low",
            DiskState::Warn => "warn",
            DiskState::Critical => "critical",
        }
    }
    fn from_u8(v: u8) -> Self {
        match v {
            0 => DiskState::Ok,
            1 => DiskState::Low,
            2 => DiskState::Warn,
            _ => DiskState::Critical,
        }
    }
}

/// Reports the free bytes available to this process on the filesystem of a path.
pub type FreeSpaceProbe = Arc<dyn Fn(&Path) -> std::io::Result<u64> + Send + Sync>;

pub fn statvfs_free(path: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(path).map_err(std::io::Error::from)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

#[derive(Debug, thiserror::Error)]
#[error("the disk of the data directory is nearly full ({free_mb} MB free); {what} refused until space is freed")]
pub struct DiskFull {
    pub free_mb: u64,
    pub what: &'static str,
}

impl DiskFull {
    pub fn code(&self) -> &'static str {
        "disk_full"
    }
}

#[derive(Clone)]
pub struct DiskGuard {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    settings: ResourceSettings,
    probe: RwLock<FreeSpaceProbe>,
    state: AtomicU8,
    free: AtomicU64,
}

impl DiskGuard {
    pub fn new(dir: &Path, settings: ResourceSettings) -> Self {
        let guard = Self {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                settings,
                probe: RwLock::new(Arc::new(statvfs_free)),
                state: AtomicU8::new(0),
                free: AtomicU64::new(u64::MAX),
            }),
        };
        guard.refresh();
        guard
    }

    /// Replaces how free space is measured (tests simulate a full disk where none can be mounted).
    pub fn set_probe(&self, probe: FreeSpaceProbe) {
        if let Ok(mut p) = self.inner.probe.write() {
            *p = probe;
        }
        self.refresh();
    }

    /// Measures again; returns the new state. Logs when the state changes.
    pub fn refresh(&self) -> DiskState {
        let probe = self.inner.probe.read().map(|p| p.clone());
        let free = match probe.map(|p| p(&self.inner.dir)) {
            Ok(Ok(free)) => free,
            // Unknown: keep the last reading rather than refusing traffic on a probe failure.
            _ => self.inner.free.load(Ordering::Relaxed),
        };
        self.inner.free.store(free, Ordering::Relaxed);
        let s = &self.inner.settings;
        let state = if free < s.min_free_mb_webhooks.saturating_mul(MB) {
            DiskState::Critical
        } else if free < s.min_free_mb_warn.saturating_mul(MB) {
            DiskState::Warn
        } else if free < s.min_free_mb_uploads.saturating_mul(MB) {
            DiskState::Low
        } else {
            DiskState::Ok
        };
        let before = DiskState::from_u8(self.inner.state.swap(state as u8, Ordering::Relaxed));
        if before != state {
            let free_mb = free / MB;
            match state {
                DiskState::Ok => tracing::info!(free_mb, "disk space is fine again"),
                DiskState::Low => tracing::warn!(free_mb, "disk nearly full: uploads are refused"),
                DiskState::Warn => tracing::error!(
                    free_mb,
                    refuse_webhooks_below_mb = s.min_free_mb_webhooks,
                    "disk nearly full: webhooks will be refused soon; free space on the data directory's disk"
                ),
                DiskState::Critical => tracing::error!(
                    free_mb,
                    "disk full: webhooks are answered 503 (Meta retries them) until space is freed"
                ),
            }
        }
        state
    }

    pub fn state(&self) -> DiskState {
        DiskState::from_u8(self.inner.state.load(Ordering::Relaxed))
    }

    pub fn free_bytes(&self) -> u64 {
        self.inner.free.load(Ordering::Relaxed)
    }

    /// For the knowledge service: may an upload of `size` bytes be stored?
    pub fn allow_upload(&self, size: u64) -> Result<(), DiskFull> {
        let free = self.free_bytes();
        let floor = self.inner.settings.min_free_mb_uploads.saturating_mul(MB);
        if self.state() >= DiskState::Low || free.saturating_sub(size) < floor {
            return Err(DiskFull {
                free_mb: free / MB,
                what: "uploads are",
            });
        }
        Ok(())
    }

    pub fn allow_webhooks(&self) -> Result<(), DiskFull> {
        if self.state() >= DiskState::Critical {
            return Err(DiskFull {
                free_mb: self.free_bytes() / MB,
                what: "webhooks are",
            });
        }
        Ok(())
    }

    /// Measures every `disk_check_ms` until `stop` turns true.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let period = std::time::Duration::from_millis(self.inner.settings.disk_check_ms);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            let guard = self.clone();
            let _ = tokio::task::spawn_blocking(move || guard.refresh()).await;
        }
    }
}
