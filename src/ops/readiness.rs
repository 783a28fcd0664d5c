//! Readiness: named conditions other services set ("indexes loaded", "model loaded"), checked by
//! `/readyz` together with the probes this module runs itself (storage writable, queues sane,
//! disk). A condition registered but not yet met makes the service not ready.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Ready,
    /// Not ready, with why (shown in /readyz).
    Waiting(String),
}

#[derive(Clone, Default)]
pub struct Readiness {
    conditions: Arc<RwLock<BTreeMap<String, Condition>>>,
}

impl Readiness {
    /// Declares a condition that is not met yet (call at start-up, before the work that meets it).
    pub fn register(&self, name: &str, why: &str) {
        self.set(name, Condition::Waiting(why.to_string()));
    }

    pub fn set_ready(&self, name: &str) {
        self.set(name, Condition::Ready);
    }

    pub fn set(&self, name: &str, condition: Condition) {
        if let Ok(mut map) = self.conditions.write() {
            map.insert(name.to_string(), condition);
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, Condition> {
        self.conditions
            .read()
            .map(|m| m.clone())
            .unwrap_or_default()
    }
}
