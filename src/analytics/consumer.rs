//! The analytics consumer: folds each event into the aggregates in the same commit that acks it,
//! and only if the event was still queued, so a redelivered event (at-least-once) never counts
//! twice. A conversation's events are handled in order (one lane per conversation): its opening
//! is folded in before its replies, handoffs and closing.

use std::sync::Arc;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::model::*;
use crate::conversations::{
    message_key, Author, ConversationState, HandoffReason, CONVERSATIONS, MESSAGES,
};
use crate::events::{
    ack_if_queued, Consumer, Delivery, Envelope, EventPayload, Handler, HandlerError,
    HandlerFuture, LaneKey,
};
use crate::storage::{
    ChannelId, ConversationId, MessageId, OutletId, Store, StoreError, TenantWrite, WriteCtx,
};
use crate::tenants::{CHANNELS, TENANTS};
use crate::whatsapp::payload::InboundMessage;

pub struct AnalyticsHandler {
    pub store: Store,
}

pub fn handler(store: Store) -> Arc<dyn Handler> {
    Arc::new(AnalyticsHandler { store })
}

impl Handler for AnalyticsHandler {
    fn consumer(&self) -> Consumer {
        Consumer::Analytics
    }

    /// One lane per conversation, so its opening, replies, handoffs and closing fold in in
    /// order; customer messages (plain counters, order-free) by sender. Lanes of one tenant may
    /// touch the same day row concurrently: each fold reads and writes it inside its own write
    /// job, and the single writer runs jobs one after another, so no update is lost.
    fn lane(&self, envelope: &Envelope) -> LaneKey {
        match &envelope.payload {
            EventPayload::OutgoingMessage { conversation, .. }
            | EventPayload::ConversationOpened { conversation, .. }
            | EventPayload::ConversationHandedOff { conversation, .. }
            | EventPayload::ConversationCompleted { conversation } => {
                format!("{}:{conversation}", envelope.tenant)
            }
            EventPayload::InboundMessage {
                channel, message, ..
            } => format!("{}:{channel}:{}", envelope.tenant, message.from),
            _ => envelope.tenant.to_string(),
        }
    }

    fn handle<'a>(&'a self, delivery: &'a Delivery) -> HandlerFuture<'a> {
        Box::pin(async move {
            let envelope = delivery.envelope.clone();
            self.store
                .write(move |ctx| apply(ctx, &envelope))
                .await
                .map_err(HandlerError::from)?;
            delivery.mark_acked();
            Ok(())
        })
    }
}

/// Acks `envelope` and folds it into the aggregates, in the caller's write. Returns whether it
/// counted (false: it had been folded in before).
pub fn apply(ctx: &mut WriteCtx<'_>, envelope: &Envelope) -> Result<bool, StoreError> {
    if !ack_if_queued(ctx, envelope.consumer, envelope.seq)? {
        return Ok(false);
    }
    let tenant = envelope.tenant;
    let Some(registered) = ctx.operator().get(&TENANTS, tenant.as_bytes())? else {
        // The tenant was deleted after the event: never write rows under its prefix again.
        return Ok(false);
    };
    let tz = TimeZone::get(&registered.time_zone).unwrap_or(TimeZone::UTC);
    let mut t = ctx.tenant(tenant);
    let mut f = Folder { t: &mut t, tz };
    match &envelope.payload {
        EventPayload::InboundMessage {
            channel, message, ..
        } => f.customer_message(*channel, message)?,
        EventPayload::OutgoingMessage {
            conversation,
            message,
        } => f.reply(*conversation, *message)?,
        EventPayload::ConversationOpened { conversation, .. } => {
            f.tracked(*conversation)?;
        }
        EventPayload::ConversationHandedOff {
            conversation,
            outlet,
            reason,
            at_ms,
            question,
            ..
        } => f.handoff(*conversation, *outlet, reason, *at_ms, question.as_deref())?,
        EventPayload::ConversationCompleted { conversation } => f.closed(*conversation)?,
        _ => {}
    }
    Ok(true)
}

struct Folder<'a, 'b, 't> {
    t: &'a mut TenantWrite<'b, 't>,
    tz: TimeZone,
}

impl Folder<'_, '_, '_> {
    fn local(&self, at_ms: i64) -> jiff::Zoned {
        Timestamp::from_millisecond(at_ms)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_zoned(self.tz.clone())
    }

    fn day_of(&self, at_ms: i64) -> String {
        self.local(at_ms).date().to_string()
    }

    fn update_day(
        &mut self,
        day: &str,
        outlet: Option<OutletId>,
        change: impl FnOnce(&mut DayStats),
    ) -> Result<(), StoreError> {
        let key = day_key(day, outlet);
        let mut stats = self.t.get(&DAYS, &key)?.unwrap_or_default();
        change(&mut stats);
        self.t.put(&DAYS, &key, &stats)
    }

    fn customer_message(
        &mut self,
        channel: ChannelId,
        message: &InboundMessage,
    ) -> Result<(), StoreError> {
        let outlet = self
            .t
            .get(&CHANNELS, channel.as_bytes())?
            .and_then(|c| c.outlet);
        // Stored as WhatsApp timestamped it: the figures follow what the store says.
        let at_ms = message.timestamp.saturating_mul(1000);
        let local = self.local(at_ms);
        let hour = local.hour().clamp(0, 23) as usize;
        let day = local.date().to_string();
        self.update_day(&day, outlet, |d| {
            d.customer_messages += 1;
            d.customer_messages_by_hour[hour] += 1;
        })
    }

    /// The conversation's record, started on first sight: normally by its opening event; for a
    /// conversation opened before analytics existed, by whatever event comes first. Either way it
    /// is counted once, in the day it opened.
    fn tracked(&mut self, conversation: ConversationId) -> Result<Option<Tracked>, StoreError> {
        if let Some(tracked) = self.t.get(&TRACKED, conversation.as_bytes())? {
            return Ok(Some(tracked));
        }
        let Some(c) = self.t.get(&CONVERSATIONS, conversation.as_bytes())? else {
            return Ok(None);
        };
        let tracked = Tracked {
            outlet: c.outlet,
            day: self.day_of(c.opened_at_ms),
            opened_at_ms: c.opened_at_ms,
            replied: false,
            handed_off_at_ms: None,
            agent_replied: false,
            closed: false,
        };
        self.update_day(&tracked.day, tracked.outlet, |d| d.conversations += 1)?;
        self.t.put(&TRACKED, conversation.as_bytes(), &tracked)?;
        Ok(Some(tracked))
    }

    fn save(&mut self, conversation: ConversationId, tracked: &Tracked) -> Result<(), StoreError> {
        self.t.put(&TRACKED, conversation.as_bytes(), tracked)
    }

    fn reply(
        &mut self,
        conversation: ConversationId,
        message: MessageId,
    ) -> Result<(), StoreError> {
        let Some(m) = self.t.get(&MESSAGES, &message_key(conversation, message))? else {
            return Ok(());
        };
        let Some(mut tracked) = self.tracked(conversation)? else {
            return Ok(());
        };
        let at = m.created_at_ms;
        let day = self.day_of(at);
        match m.author {
            Author::Assistant => {
                self.update_day(&day, tracked.outlet, |d| d.assistant_messages += 1)?
            }
            Author::Agent => self.update_day(&day, tracked.outlet, |d| d.agent_messages += 1)?,
            Author::Customer | Author::System => return Ok(()),
        }
        // A reply that said "I don't know, want a person?" (no handoff) left its question as
        // unanswered as a no-answer handoff does.
        if let (Author::Assistant, Some(question)) = (m.author, &m.unanswered) {
            self.unanswered(conversation, tracked.outlet, question, at)?;
        }
        let first_reply = !tracked.replied;
        let first_agent_reply = m.author == Author::Agent && !tracked.agent_replied;
        if !first_reply && !first_agent_reply {
            return Ok(());
        }
        tracked.replied = true;
        let opened = tracked.opened_at_ms;
        let handed_off = tracked.handed_off_at_ms.filter(|h| *h <= at);
        if first_agent_reply {
            tracked.agent_replied = true;
        }
        let cohort = tracked.day.clone();
        self.update_day(&cohort, tracked.outlet, |d| {
            if first_reply && m.author == Author::Assistant {
                d.first_response_assistant.add(at - opened);
            }
            if first_agent_reply {
                d.first_response_human
                    .add(at - handed_off.unwrap_or(opened));
            }
        })?;
        self.save(conversation, &tracked)
    }

    fn handoff(
        &mut self,
        conversation: ConversationId,
        outlet: Option<OutletId>,
        reason: &HandoffReason,
        at_ms: i64,
        question: Option<&str>,
    ) -> Result<(), StoreError> {
        if let (HandoffReason::NoGroundedAnswer, Some(q)) = (reason, question) {
            self.unanswered(conversation, outlet, q, at_ms)?;
        }
        let Some(mut tracked) = self.tracked(conversation)? else {
            return Ok(());
        };
        if tracked.handed_off_at_ms.is_some() {
            // Only the first handoff decides how a conversation is counted.
            return Ok(());
        }
        tracked.handed_off_at_ms = Some(at_ms);
        let code = reason.code().to_string();
        let cohort = tracked.day.clone();
        self.update_day(&cohort, tracked.outlet, |d| {
            d.handed_off += 1;
            *d.handoff_reasons.entry(code).or_default() += 1;
        })?;
        self.save(conversation, &tracked)
    }

    fn unanswered(
        &mut self,
        conversation: ConversationId,
        outlet: Option<OutletId>,
        question: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let text: String = question.trim().chars().take(500).collect();
        let normalized = normalize_question(&text);
        if normalized.is_empty() {
            return Ok(());
        }
        let key = unanswered_key(&self.day_of(at_ms), outlet, &fingerprint(&normalized));
        let mut row = self.t.get(&UNANSWERED, &key)?.unwrap_or(Unanswered {
            text,
            count: 0,
            last_at_ms: at_ms,
            text_from: Some(conversation),
            asked_in: Vec::new(),
        });
        row.count += 1;
        row.asked_in.push(conversation);
        row.last_at_ms = row.last_at_ms.max(at_ms);
        self.t.put(&UNANSWERED, &key, &row)
    }

    fn closed(&mut self, conversation: ConversationId) -> Result<(), StoreError> {
        let Some(c) = self.t.get(&CONVERSATIONS, conversation.as_bytes())? else {
            return Ok(());
        };
        let (ConversationState::Closed, Some(closed_at)) = (c.state, c.closed_at_ms) else {
            return Ok(());
        };
        let Some(mut tracked) = self.tracked(conversation)? else {
            return Ok(());
        };
        if tracked.closed {
            return Ok(());
        }
        tracked.closed = true;
        let took = closed_at - tracked.opened_at_ms;
        // A person stepped in (handoff, or an agent replying unasked): not the assistant's.
        let by_human = tracked.handed_off_at_ms.is_some() || tracked.agent_replied;
        let cohort = tracked.day.clone();
        self.update_day(&cohort, tracked.outlet, |d| {
            d.closed += 1;
            if by_human {
                d.resolved_by_human += 1;
                d.resolution_human.add(took);
            } else {
                d.resolved_by_assistant += 1;
                d.resolution_assistant.add(took);
            }
        })?;
        self.save(conversation, &tracked)
    }
}
