//! Per-tenant handoff settings.

use serde::{Deserialize, Serialize};

use crate::storage::collections as tags;
use crate::storage::{Collection, Record};

pub const DEFAULT_UNHELPFUL_LIMIT: u32 = 2;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoutingSettings {
    /// Whether a customer may send a handed-off conversation back to the assistant ("bot",
    /// "kembali ke bot"). Off by default: a person decides when the assistant may speak again.
    #[serde(default)]
    pub allow_bot_return: bool,
    /// Unhelpful turns (the customer says so, or repeats the question) before a handoff; 1-10.
    #[serde(default = "default_limit")]
    pub unhelpful_turn_limit: u32,
}

fn default_limit() -> u32 {
    DEFAULT_UNHELPFUL_LIMIT
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            allow_bot_return: false,
            unhelpful_turn_limit: DEFAULT_UNHELPFUL_LIMIT,
        }
    }
}

impl Record for RoutingSettings {
    const VERSION: u16 = 1;
    const NAME: &'static str = "routing settings";
}

pub const SETTINGS: Collection<RoutingSettings> = Collection::new(tags::ROUTING_SETTINGS);
pub const SETTINGS_KEY: &[u8] = b"routing";

impl RoutingSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10).contains(&self.unhelpful_turn_limit) {
            return Err("unhelpful_turn_limit: must be 1-10".into());
        }
        Ok(())
    }
}
