//! Running the appliance: data format and migrations, backup and restore, the store check,
//! health, metrics, resource limits, retention and erasure, TLS, and `wacrm doctor`.

pub mod backup;
pub mod check;
pub mod clientip;
pub mod format;
pub mod fsutil;
pub mod restore;
pub mod snapshot;
