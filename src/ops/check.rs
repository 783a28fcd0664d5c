//! `wacrm check`: the store's own check, on a database no server holds open. redb's integrity check
//! (page checksums and structure), then every row: its key belongs to an allocated collection, and
//! its value is a versioned record (`[u16 version][JSON]`) whose JSON parses.

use std::path::Path;

use redb::ReadableTable;
use serde::Serialize;

use crate::storage::collections::{ALL_GLOBAL_TAGS, ALL_TENANT_TAGS, GLOBAL_META_TAG};
use crate::storage::{GLOBAL_TABLE, TENANT_TABLE};

#[derive(Debug, Default, Clone, Serialize)]
pub struct CheckReport {
    pub integrity: bool,
    pub rows: u64,
    /// Problems found (empty: the store is sound). At most 100 are listed.
    pub problems: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.integrity && self.problems.is_empty()
    }
    fn problem(&mut self, p: String) {
        if self.problems.len() < 100 {
            self.problems.push(p);
        }
    }
}

fn valid_record(value: &[u8]) -> bool {
    value.len() >= 2 && serde_json::from_slice::<serde::de::IgnoredAny>(&value[2..]).is_ok()
}

pub fn check_database(path: &Path) -> Result<CheckReport, String> {
    let mut db = super::backup::open_untrusted(path)?;
    let mut report = CheckReport {
        integrity: db
            .check_integrity()
            .map_err(|e| format!("integrity check: {e}"))?,
        ..CheckReport::default()
    };
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    if let Ok(table) = txn.open_table(TENANT_TABLE) {
        for item in table.iter().map_err(|e| e.to_string())? {
            let (k, v) = item.map_err(|e| e.to_string())?;
            let (k, v) = (k.value(), v.value());
            report.rows += 1;
            if k.len() < 17 || !ALL_TENANT_TAGS.contains(&k[16]) {
                report.problem(format!("tenant row with an unknown key {}", hex::encode(k)));
            } else if !valid_record(v) {
                report.problem(format!(
                    "tenant row {} (collection {}) is not a readable record",
                    hex::encode(k),
                    k[16]
                ));
            }
        }
    }
    if let Ok(table) = txn.open_table(GLOBAL_TABLE) {
        for item in table.iter().map_err(|e| e.to_string())? {
            let (k, v) = item.map_err(|e| e.to_string())?;
            let (k, v) = (k.value(), v.value());
            report.rows += 1;
            match k.first() {
                // Storage meta rows are raw counters, not records.
                Some(&GLOBAL_META_TAG) => {}
                Some(tag) if ALL_GLOBAL_TAGS.contains(tag) => {
                    if !valid_record(v) {
                        report.problem(format!(
                            "global row {} (collection {tag}) is not a readable record",
                            hex::encode(k)
                        ));
                    }
                }
                _ => report.problem(format!("global row with an unknown key {}", hex::encode(k))),
            }
        }
    }
    Ok(report)
}
