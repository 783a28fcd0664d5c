//! Durable events (transactional outbox) and their in-process dispatch.
//!
//! `publish` writes one queue row per subscribed consumer in the same commit as the state change it
//! announces. After the commit the writer hands the envelopes to the dispatcher, which runs each
//! consumer's handler; a handler removes its queue row ("ack") in the same commit as its effect.
//! A crash at any point leaves the row in place and the event is delivered again on restart:
//! delivery is at-least-once and every handler is idempotent.

mod dispatch;

use serde::{Deserialize, Serialize};

use crate::conversations::HandoffReason;
use crate::storage::collections as tags;
use crate::storage::record::Encoded;
use crate::storage::{
    ChannelId, ConversationId, GlobalCollection, MessageId, OutletId, Record, StoreError, TenantId,
    WriteCtx,
};
use crate::whatsapp::payload::{InboundMessage, StatusUpdate};

pub use dispatch::{Delivery, Dispatcher, Handler, HandlerError, HandlerFuture, LaneKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Topic {
    #[serde(rename = "whatsapp.incoming.messages")]
    WhatsappIncoming,
    #[serde(rename = "whatsapp.outgoing.messages")]
    WhatsappOutgoing,
    #[serde(rename = "knowledge.document.uploaded")]
    KnowledgeDocumentUploaded,
    #[serde(rename = "billing.quota.warning")]
    BillingQuotaWarning,
    #[serde(rename = "conversation.completed")]
    ConversationCompleted,
    /// A conversation opened or went to a person (analytics; later the audit trail).
    #[serde(rename = "conversation.updated")]
    ConversationUpdated,
}

impl Topic {
    pub fn name(&self) -> &'static str {
        match self {
            Topic::WhatsappIncoming => "whatsapp.incoming.messages",
            Topic::WhatsappOutgoing => "whatsapp.outgoing.messages",
            Topic::KnowledgeDocumentUploaded => "knowledge.document.uploaded",
            Topic::BillingQuotaWarning => "billing.quota.warning",
            Topic::ConversationCompleted => "conversation.completed",
            Topic::ConversationUpdated => "conversation.updated",
        }
    }
}

/// What happened. Each variant belongs to exactly one topic (`EventPayload::topic`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventPayload {
    /// A customer's message, stored once by webhook ingress.
    InboundMessage {
        channel: ChannelId,
        profile_name: Option<String>,
        message: Box<InboundMessage>,
    },
    /// A delivery status of one of our messages (sent, delivered, read, failed).
    InboundStatus {
        channel: ChannelId,
        status: StatusUpdate,
    },
    /// A message of ours is ready to be sent.
    OutgoingMessage {
        conversation: ConversationId,
        message: MessageId,
    },
    DocumentUploaded {
        document: String,
    },
    QuotaWarning {
        threshold_percent: u32,
        period: String,
    },
    ConversationCompleted {
        conversation: ConversationId,
    },
    /// A customer's first message opened a conversation (`opened_at_ms` as stored on it).
    ConversationOpened {
        conversation: ConversationId,
        channel: ChannelId,
        outlet: Option<OutletId>,
        opened_at_ms: i64,
    },
    /// The conversation went to a person. `at_ms` is the time of the handoff note; `question` is
    /// what the customer asked in the turn that handed off (the unanswered question when the
    /// reason is `no_grounded_answer`); `agent` is who it was routed to (None: queued).
    ConversationHandedOff {
        conversation: ConversationId,
        outlet: Option<OutletId>,
        reason: HandoffReason,
        at_ms: i64,
        question: Option<String>,
        agent: Option<String>,
    },
}

impl EventPayload {
    pub fn topic(&self) -> Topic {
        match self {
            EventPayload::InboundMessage { .. } | EventPayload::InboundStatus { .. } => {
                Topic::WhatsappIncoming
            }
            EventPayload::OutgoingMessage { .. } => Topic::WhatsappOutgoing,
            EventPayload::DocumentUploaded { .. } => Topic::KnowledgeDocumentUploaded,
            EventPayload::QuotaWarning { .. } => Topic::BillingQuotaWarning,
            EventPayload::ConversationCompleted { .. } => Topic::ConversationCompleted,
            EventPayload::ConversationOpened { .. }
            | EventPayload::ConversationHandedOff { .. } => Topic::ConversationUpdated,
        }
    }
}

/// An event as stored in a consumer's queue and handed to its handler.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    pub seq: u64,
    pub consumer: Consumer,
    pub tenant: TenantId,
    pub at_ms: i64,
    pub payload: EventPayload,
}

impl Envelope {
    pub fn topic(&self) -> Topic {
        self.payload.topic()
    }
}

impl Record for Envelope {
    const VERSION: u16 = 1;
    const NAME: &'static str = "event";
}

/// The in-process services that consume events. Each has its own durable queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consumer {
    Conversations,
    Sender,
    /// The knowledge service ingesting its own uploads.
    Knowledge,
    /// Keeps the analytics aggregates (tag 4: 3 is taken by the knowledge consumer).
    Analytics,
}

impl Consumer {
    pub const ALL: &'static [Consumer] = &[
        Consumer::Conversations,
        Consumer::Sender,
        Consumer::Knowledge,
        Consumer::Analytics,
    ];

    pub(crate) fn tag(&self) -> u8 {
        match self {
            Consumer::Conversations => 1,
            Consumer::Sender => 2,
            Consumer::Knowledge => 3,
            Consumer::Analytics => 4,
        }
    }

    /// Which topics this consumer subscribes to.
    pub fn subscribes_to(&self, topic: Topic) -> bool {
        match self {
            Consumer::Conversations => matches!(topic, Topic::WhatsappIncoming),
            Consumer::Sender => matches!(topic, Topic::WhatsappOutgoing),
            Consumer::Knowledge => matches!(topic, Topic::KnowledgeDocumentUploaded),
            Consumer::Analytics => matches!(
                topic,
                Topic::WhatsappIncoming
                    | Topic::WhatsappOutgoing
                    | Topic::ConversationCompleted
                    | Topic::ConversationUpdated
            ),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Consumer::Conversations => "conversations",
            Consumer::Sender => "whatsapp_sender",
            Consumer::Knowledge => "knowledge",
            Consumer::Analytics => "analytics",
        }
    }
}

pub(crate) const EVENT_QUEUE: GlobalCollection<Envelope> = GlobalCollection::new(tags::EVENT_QUEUE);

/// A delivery that failed too often, kept for the operator instead of blocking its lane forever.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub envelope: Envelope,
    pub error: String,
    pub attempts: u32,
    pub at_ms: i64,
}

impl Record for DeadLetter {
    const VERSION: u16 = 1;
    const NAME: &'static str = "dead letter";
}

pub(crate) const DEAD_LETTERS: GlobalCollection<DeadLetter> =
    GlobalCollection::new(tags::DEAD_LETTERS);

pub(crate) fn queue_key(consumer: Consumer, seq: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = consumer.tag();
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Publishes `payload` for `tenant` in the current write: one queue row per subscribed consumer.
/// The event exists if and only if the surrounding commit succeeds.
pub fn publish(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    payload: EventPayload,
) -> Result<(), StoreError> {
    let topic = payload.topic();
    let at_ms = now_ms();
    for consumer in Consumer::ALL {
        if !consumer.subscribes_to(topic) {
            continue;
        }
        let seq = ctx.take_seq();
        let envelope = Envelope {
            seq,
            consumer: *consumer,
            tenant,
            at_ms,
            payload: payload.clone(),
        };
        ctx.operator()
            .put(&EVENT_QUEUE, &queue_key(*consumer, seq), &envelope)?;
        ctx.record_published(envelope);
    }
    Ok(())
}

/// An event serialized before it enters a write, for hot paths (webhook ingress): the writer
/// thread commits for everyone, so what it does per event is what limits throughput. With a
/// prepared event it only numbers the queue rows and inserts bytes built on the caller's task.
pub struct PreparedEvent {
    tenant: TenantId,
    at_ms: i64,
    json: Box<serde_json::value::RawValue>,
    /// The payload each subscribed consumer is handed after the commit, made up front (the last
    /// consumer gets the original). A write job may run again when another job of its batch
    /// fails: the copies are then gone, and are decoded from `json` in the writer after all.
    copies: Vec<(Consumer, Option<EventPayload>)>,
}

/// The stored JSON of an [`Envelope`], with the payload already serialized: same fields, same
/// order (checked by `prepared_events_store_what_publish_stores`).
#[derive(Serialize)]
struct EnvelopeRow<'a> {
    seq: u64,
    consumer: Consumer,
    tenant: TenantId,
    at_ms: i64,
    payload: &'a serde_json::value::RawValue,
}

impl PreparedEvent {
    pub fn new(tenant: TenantId, payload: EventPayload) -> Result<Self, StoreError> {
        let json = serde_json::value::to_raw_value(&payload)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode event: {e}")))?;
        let topic = payload.topic();
        let consumers: Vec<Consumer> = Consumer::ALL
            .iter()
            .copied()
            .filter(|c| c.subscribes_to(topic))
            .collect();
        let mut copies = Vec::with_capacity(consumers.len());
        let mut original = Some(payload);
        for (i, consumer) in consumers.iter().enumerate() {
            let copy = if i + 1 == consumers.len() {
                original.take()
            } else {
                original.clone()
            };
            copies.push((*consumer, copy));
        }
        Ok(Self {
            tenant,
            at_ms: now_ms(),
            json,
            copies,
        })
    }
}

/// [`publish`] of a prepared event.
pub fn publish_prepared(
    ctx: &mut WriteCtx<'_>,
    event: &mut PreparedEvent,
) -> Result<(), StoreError> {
    for (consumer, copy) in event.copies.iter_mut() {
        let seq = ctx.take_seq();
        let row = Encoded::<Envelope>::from_mirror(&EnvelopeRow {
            seq,
            consumer: *consumer,
            tenant: event.tenant,
            at_ms: event.at_ms,
            payload: &event.json,
        })?;
        ctx.operator()
            .put_encoded(&EVENT_QUEUE, &queue_key(*consumer, seq), &row)?;
        let payload = match copy.take() {
            Some(payload) => payload,
            None => serde_json::from_str(event.json.get())
                .map_err(|e| StoreError::Corrupt(format!("prepared event unreadable: {e}")))?,
        };
        ctx.record_published(Envelope {
            seq,
            consumer: *consumer,
            tenant: event.tenant,
            at_ms: event.at_ms,
            payload,
        });
    }
    Ok(())
}

/// Removes a delivered event from its consumer's queue, in the caller's write.
pub fn ack(ctx: &mut WriteCtx<'_>, consumer: Consumer, seq: u64) -> Result<(), StoreError> {
    ctx.operator()
        .delete(&EVENT_QUEUE, &queue_key(consumer, seq))?;
    Ok(())
}

/// Acks a delivery in the caller's write if it is still queued, and says whether it was. A
/// consumer whose effect is not naturally idempotent (adding to counters) applies the effect only
/// when this returns true: the queue row is then its per-event marker, and a redelivered event
/// (already acked in an earlier commit) changes nothing.
pub fn ack_if_queued(
    ctx: &mut WriteCtx<'_>,
    consumer: Consumer,
    seq: u64,
) -> Result<bool, StoreError> {
    ctx.operator()
        .delete(&EVENT_QUEUE, &queue_key(consumer, seq))
}

/// Queue depth per consumer (metrics, readiness, tests).
pub fn queue_depth(store: &crate::storage::Store, consumer: Consumer) -> Result<usize, StoreError> {
    store.read(|r| r.operator().count(&EVENT_QUEUE, &[consumer.tag()]))
}

#[cfg(test)]
mod tests;
