//! The aggregates as stored: one row per (day, outlet) of counters, one row per conversation the
//! consumer follows, and the unanswered questions per (day, outlet). Days are the tenant's local
//! days; an outlet-less conversation's rows use the all-zero outlet key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::storage::collections as tags;
use crate::storage::{Collection, ConversationId, OutletId, Record};

/// Count, sum and maximum of a set of durations (averages merge exactly across days).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Durations {
    pub count: u64,
    pub total_ms: u64,
    pub max_ms: u64,
}

impl Durations {
    pub fn add(&mut self, ms: i64) {
        // Clocks may disagree by a little (WhatsApp's seconds vs ours); never a negative time.
        let ms = ms.max(0) as u64;
        self.count += 1;
        self.total_ms += ms;
        self.max_ms = self.max_ms.max(ms);
    }

    pub fn merge(&mut self, other: &Durations) {
        self.count += other.count;
        self.total_ms += other.total_ms;
        self.max_ms = self.max_ms.max(other.max_ms);
    }

    pub fn avg_ms(&self) -> Option<u64> {
        (self.count > 0).then(|| self.total_ms / self.count)
    }
}

/// One local day of one outlet. Conversation figures belong to the day the conversation opened
/// (a cohort: of the conversations opened that day, how many were handed off, resolved, and how
/// fast); message figures belong to the day each message was written.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DayStats {
    pub conversations: u64,
    /// Conversations handed to a person at least once.
    pub handed_off: u64,
    /// Reason code of each conversation's first handoff → conversations.
    pub handoff_reasons: BTreeMap<String, u64>,
    pub closed: u64,
    /// Closed without a person ever stepping in (no handoff, no agent reply).
    pub resolved_by_assistant: u64,
    /// Closed after a handoff or an agent's reply.
    pub resolved_by_human: u64,
    /// Opening → the first reply, for conversations whose first reply was the assistant's.
    pub first_response_assistant: Durations,
    /// First handoff (or opening, if an agent stepped in unasked) → the first agent reply.
    pub first_response_human: Durations,
    /// Opening → closing, resolved by the assistant.
    pub resolution_assistant: Durations,
    /// Opening → closing, resolved by a person.
    pub resolution_human: Durations,
    pub customer_messages: u64,
    pub assistant_messages: u64,
    pub agent_messages: u64,
    /// Customer messages by local hour of day.
    pub customer_messages_by_hour: [u64; 24],
}

impl Record for DayStats {
    const VERSION: u16 = 1;
    const NAME: &'static str = "analytics day";
}

impl DayStats {
    pub fn merge(&mut self, o: &DayStats) {
        self.conversations += o.conversations;
        self.handed_off += o.handed_off;
        for (code, n) in &o.handoff_reasons {
            *self.handoff_reasons.entry(code.clone()).or_default() += n;
        }
        self.closed += o.closed;
        self.resolved_by_assistant += o.resolved_by_assistant;
        self.resolved_by_human += o.resolved_by_human;
        self.first_response_assistant
            .merge(&o.first_response_assistant);
        self.first_response_human.merge(&o.first_response_human);
        self.resolution_assistant.merge(&o.resolution_assistant);
        self.resolution_human.merge(&o.resolution_human);
        self.customer_messages += o.customer_messages;
        self.assistant_messages += o.assistant_messages;
        self.agent_messages += o.agent_messages;
        for (a, b) in self
            .customer_messages_by_hour
            .iter_mut()
            .zip(o.customer_messages_by_hour.iter())
        {
            *a += b;
        }
    }
}

/// What the consumer remembers of one conversation to time its first replies and resolution.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tracked {
    pub outlet: Option<OutletId>,
    /// The local day it opened (its cohort), `YYYY-MM-DD`.
    pub day: String,
    pub opened_at_ms: i64,
    pub replied: bool,
    pub handed_off_at_ms: Option<i64>,
    pub agent_replied: bool,
    pub closed: bool,
}

impl Record for Tracked {
    const VERSION: u16 = 1;
    const NAME: &'static str = "analytics conversation";
}

/// A question the knowledge base could not answer (handed off with `no_grounded_answer`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Unanswered {
    /// As the customer first wrote it (trimmed, at most 500 characters); once that
    /// conversation is deleted, the normalized wording every remaining asker shares.
    pub text: String,
    pub count: u64,
    pub last_at_ms: i64,
    /// The conversation whose wording `text` is.
    #[serde(default)]
    pub text_from: Option<ConversationId>,
    /// The conversation of each time it was asked, so deleting a conversation (erasure,
    /// retention) takes its askings with it.
    #[serde(default)]
    pub asked_in: Vec<ConversationId>,
}

impl Record for Unanswered {
    const VERSION: u16 = 1;
    const NAME: &'static str = "unanswered question";
}

pub const DAYS: Collection<DayStats> = Collection::new(tags::ANALYTICS_DAYS);
pub const TRACKED: Collection<Tracked> = Collection::new(tags::ANALYTICS_CONVERSATIONS);
pub const UNANSWERED: Collection<Unanswered> = Collection::new(tags::ANALYTICS_UNANSWERED);

pub fn scope_key(outlet: Option<OutletId>) -> [u8; 16] {
    outlet.map(|o| *o.as_bytes()).unwrap_or([0; 16])
}

pub fn outlet_of_scope(scope: &[u8]) -> Option<OutletId> {
    if scope.iter().all(|b| *b == 0) {
        None
    } else {
        OutletId::from_slice(scope)
    }
}

/// Day rows: `YYYY-MM-DD` | outlet. A day's rows of every outlet share the day prefix.
pub fn day_key(day: &str, outlet: Option<OutletId>) -> Vec<u8> {
    let mut key = day.as_bytes().to_vec();
    key.extend_from_slice(&scope_key(outlet));
    key
}

/// Unanswered rows: `YYYY-MM-DD` | outlet | question fingerprint.
pub fn unanswered_key(day: &str, outlet: Option<OutletId>, fingerprint: &[u8; 8]) -> Vec<u8> {
    let mut key = day_key(day, outlet);
    key.extend_from_slice(fingerprint);
    key
}

/// Questions that differ only in case, spacing or punctuation count as one.
pub fn normalize_question(text: &str) -> String {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn fingerprint(normalized: &str) -> [u8; 8] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(normalized.as_bytes());
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_merge_exactly() {
        let mut a = Durations::default();
        a.add(1_000);
        a.add(3_000);
        let mut b = Durations::default();
        b.add(-5);
        b.add(8_000);
        a.merge(&b);
        assert_eq!(a.count, 4);
        assert_eq!(a.total_ms, 12_000);
        assert_eq!(a.max_ms, 8_000);
        assert_eq!(a.avg_ms(), Some(3_000));
        assert_eq!(Durations::default().avg_ms(), None);
    }

    #[test]
    fn the_same_question_worded_alike_is_one() {
        assert_eq!(
            normalize_question("Do you sell GIFT cards?"),
            normalize_question("do you sell gift cards")
        );
        assert_eq!(
            fingerprint(&normalize_question("Apakah ada parkir?")),
            fingerprint(&normalize_question("apakah ada parkir"))
        );
    }

    #[test]
    fn scopes_round_trip() {
        let o = OutletId::new();
        assert_eq!(outlet_of_scope(&scope_key(Some(o))), Some(o));
        assert_eq!(outlet_of_scope(&scope_key(None)), None);
    }
}
