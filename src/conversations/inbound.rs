//! The conversations service's consumer of `whatsapp.incoming.messages`: files each customer
//! message into the open conversation of (channel, customer), opening one if needed, queues a
//! debounced bot turn in bot mode, and applies delivery statuses to our messages.

use std::sync::Arc;

use super::actions::{add_note, queue_outbound};
use super::feed::{put_conversation, put_message, FeedKind};
use super::model::*;
use super::routing;
use super::turns::{schedule_key, ScheduledTurn, TurnScheduler, TURN_SCHEDULE};
use super::{LiveBus, LiveUpdate};
use crate::events::{
    Consumer, Delivery, Envelope, EventPayload, Handler, HandlerError, HandlerFuture, LaneKey,
};
use crate::storage::{
    ChannelId, ContactId, ConversationId, MessageId, Store, StoreError, TenantId, TenantWrite,
    WriteCtx,
};
use crate::tenants::{TenantStatus, CHANNELS, TENANTS};
use crate::whatsapp::outbound::OutboundContent;
use crate::whatsapp::payload::{DeliveryStatus, InboundMessage, MessageContent, StatusUpdate};

pub struct ConversationsHandler {
    pub store: Store,
    pub debounce_ms: i64,
    pub turns: TurnScheduler,
    pub live: LiveBus,
}

impl Handler for ConversationsHandler {
    fn consumer(&self) -> Consumer {
        Consumer::Conversations
    }

    /// One lane per customer of a channel: their messages are filed in order.
    fn lane(&self, envelope: &Envelope) -> LaneKey {
        match &envelope.payload {
            EventPayload::InboundMessage {
                channel, message, ..
            } => format!("{}:{}:{}", envelope.tenant, channel, message.from),
            EventPayload::InboundStatus { channel, status } => {
                format!("{}:{}:{}", envelope.tenant, channel, status.recipient_id)
            }
            _ => envelope.tenant.to_string(),
        }
    }

    fn handle<'a>(&'a self, delivery: &'a Delivery) -> HandlerFuture<'a> {
        Box::pin(async move {
            let envelope = &delivery.envelope;
            match &envelope.payload {
                EventPayload::InboundMessage {
                    channel,
                    profile_name,
                    message,
                } => {
                    self.file_message(
                        delivery,
                        envelope.tenant,
                        *channel,
                        profile_name.clone(),
                        (**message).clone(),
                    )
                    .await
                }
                EventPayload::InboundStatus { status, .. } => {
                    self.apply_status(delivery, envelope.tenant, status.clone())
                        .await
                }
                _ => Ok(()),
            }
        })
    }
}

/// Messages that never start an assistant turn: a reaction or a system notice is not a question.
fn starts_turn(content: &MessageContent) -> bool {
    !matches!(
        content,
        MessageContent::Reaction { .. } | MessageContent::System { .. }
    )
}

struct Filed {
    conversation: ConversationId,
    message: Option<MessageId>,
    scheduled: Option<ScheduledTurn>,
    /// Conversations whose routing changed (a bot return freed an agent's slot).
    routed: Vec<ConversationId>,
}

impl ConversationsHandler {
    async fn file_message(
        &self,
        delivery: &Delivery,
        tenant: TenantId,
        channel: ChannelId,
        profile_name: Option<String>,
        inbound: InboundMessage,
    ) -> Result<(), HandlerError> {
        let debounce_ms = self.debounce_ms;
        let consumer = delivery.envelope.consumer;
        let seq = delivery.envelope.seq;
        let filed = self
            .store
            .write(move |ctx| {
                // Checked inside the write: a tenant deleted meanwhile gets no rows back.
                let Some(tenant_row) = ctx.operator().get(&TENANTS, tenant.as_bytes())? else {
                    crate::events::ack(ctx, consumer, seq)?;
                    return Ok(None);
                };
                let active = tenant_row.status == TenantStatus::Active;
                let now = crate::events::now_ms();
                let filed = file_into_conversation(
                    &mut ctx.tenant(tenant),
                    channel,
                    profile_name.clone(),
                    &inbound,
                    now,
                )?;
                let mut scheduled = None;
                let mut routed = Vec::new();
                if let Some(fresh) = &filed.fresh {
                    let conversation = filed.conversation;
                    if let Some(opened) = &fresh.opened {
                        crate::events::publish(ctx, tenant, opened.clone())?;
                    }
                    let held = matches!(
                        fresh.state,
                        ConversationState::PendingHuman | ConversationState::Human
                    );
                    if held && active {
                        if let MessageContent::Text { body } = &inbound.content {
                            routed = bot_return(ctx, tenant, conversation, body, now)?;
                        }
                    }
                    let mut t = ctx.tenant(tenant);
                    if fresh.state == ConversationState::Bot && active && fresh.starts_turn {
                        let previous = t.get(&PENDING_TURNS, conversation.as_bytes())?;
                        let turn = ScheduledTurn {
                            due_ms: now + debounce_ms,
                            tenant,
                            conversation,
                            turn: MessageId::new(),
                        };
                        t.put(
                            &PENDING_TURNS,
                            conversation.as_bytes(),
                            &PendingTurn {
                                turn: turn.turn,
                                due_ms: turn.due_ms,
                            },
                        )?;
                        let mut global = t.global();
                        if let Some(previous) = previous {
                            global.delete(
                                &TURN_SCHEDULE,
                                &schedule_key(previous.due_ms, tenant, conversation),
                            )?;
                        }
                        global.put(
                            &TURN_SCHEDULE,
                            &schedule_key(turn.due_ms, tenant, conversation),
                            &turn,
                        )?;
                        scheduled = Some(turn);
                    }
                }
                crate::events::ack(ctx, consumer, seq)?;
                Ok(Some(Filed {
                    conversation: filed.conversation,
                    message: filed.fresh.map(|f| f.message),
                    scheduled,
                    routed,
                }))
            })
            .await?;
        delivery.mark_acked();
        let Some(filed) = filed else {
            return Ok(());
        };
        if let Some(turn) = filed.scheduled {
            self.turns.schedule(turn);
        }
        if filed.message.is_some() {
            self.live
                .publish(LiveUpdate::message(tenant, filed.conversation));
        }
        for conversation in filed.routed {
            self.live
                .publish(LiveUpdate::assignment(tenant, conversation));
        }
        Ok(())
    }

    async fn apply_status(
        &self,
        delivery: &Delivery,
        tenant: TenantId,
        status: StatusUpdate,
    ) -> Result<(), HandlerError> {
        let consumer = delivery.envelope.consumer;
        let seq = delivery.envelope.seq;
        let changed = self
            .store
            .write(move |ctx| {
                let changed = apply_status_update(&mut ctx.tenant(tenant), &status)?;
                crate::events::ack(ctx, consumer, seq)?;
                Ok(changed)
            })
            .await?;
        delivery.mark_acked();
        if let Some(conversation) = changed {
            self.live.publish(LiveUpdate::status(tenant, conversation));
        }
        Ok(())
    }
}

struct FiledParts {
    conversation: ConversationId,
    /// None when the message was filed before (a redelivery).
    fresh: Option<FreshMessage>,
}

struct FreshMessage {
    message: MessageId,
    /// The conversation's state when the message arrived.
    state: ConversationState,
    starts_turn: bool,
    /// The event announcing a conversation this message opened.
    opened: Option<EventPayload>,
}

/// A customer asking for the assistant back ("bot", "kembali ke bot") while a person holds the
/// conversation: honoured only when the tenant allows it. Returns the conversations whose
/// routing changed (this one, and queued ones the freed slot went to).
fn bot_return(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    conversation: ConversationId,
    text: &str,
    now: i64,
) -> Result<Vec<ConversationId>, StoreError> {
    if !crate::assistant::intent::wants_assistant(text) {
        return Ok(Vec::new());
    }
    let t = ctx.tenant(tenant);
    if !routing::settings_of(&t)?.allow_bot_return {
        return Ok(Vec::new());
    }
    let Some(mut c) = t.get(&CONVERSATIONS, conversation.as_bytes())? else {
        return Ok(Vec::new());
    };
    c.state = ConversationState::Bot;
    c.handoff_reason = None;
    c.unhelpful_turns = 0;
    routing::leave(&mut ctx.tenant(tenant), &mut c)?;
    add_note(
        ctx,
        tenant,
        &mut c,
        Author::System,
        "The customer asked for the assistant back".into(),
    )?;
    let lang = crate::assistant::language::detect(text);
    queue_outbound(
        ctx,
        tenant,
        &mut c,
        Author::Assistant,
        OutboundContent::Text {
            body: crate::assistant::language::assistant_back(lang).into(),
            preview_url: false,
        },
        Vec::new(),
    )?;
    // Through the feed: open dashboards see the assistant take the conversation back.
    put_conversation(&mut ctx.tenant(tenant), &c)?;
    let mut changed = vec![c.id];
    changed.extend(routing::drain(&mut ctx.tenant(tenant), now)?);
    Ok(changed)
}

/// Stores one customer message (once: a wamid seen before is a no-op) in its conversation.
fn file_into_conversation(
    t: &mut TenantWrite<'_, '_>,
    channel_id: ChannelId,
    profile_name: Option<String>,
    inbound: &InboundMessage,
    now: i64,
) -> Result<FiledParts, StoreError> {
    if let Some(existing) = t.get(&MESSAGE_BY_WAMID, inbound.wamid.as_bytes())? {
        return Ok(FiledParts {
            conversation: existing.conversation,
            fresh: None,
        });
    }
    let channel = t.get(&CHANNELS, channel_id.as_bytes())?;
    let sent_ms = inbound.timestamp.saturating_mul(1000);

    // The contact: one per tenant and WhatsApp id; the profile name follows what WhatsApp reports.
    let contact = match t.get(&CONTACTS, inbound.from.as_bytes())? {
        Some(mut c) => {
            if profile_name.is_some() {
                c.profile_name = profile_name.clone();
            }
            c.last_seen_ms = now;
            c
        }
        None => Contact {
            id: ContactId::new(),
            wa_id: inbound.from.clone(),
            profile_name: profile_name.clone(),
            first_seen_ms: now,
            last_seen_ms: now,
        },
    };
    t.put(&CONTACTS, inbound.from.as_bytes(), &contact)?;

    let open_key = open_key(channel_id, &inbound.from);
    let existing = match t.get(&OPEN_CONVERSATION, &open_key)? {
        Some(id) => t.get(&CONVERSATIONS, id.as_bytes())?,
        None => None,
    };
    let mut opened = None;
    let mut conversation = match existing {
        Some(c) if c.state != ConversationState::Closed => c,
        _ => {
            let c = Conversation {
                id: ConversationId::new(),
                channel: channel_id,
                outlet: channel.as_ref().and_then(|c| c.outlet),
                contact_wa_id: inbound.from.clone(),
                contact_name: contact.profile_name.clone(),
                state: ConversationState::Bot,
                handoff_reason: None,
                opened_at_ms: now,
                closed_at_ms: None,
                last_customer_message_ms: sent_ms,
                last_message_ms: now,
                message_count: 0,
                assigned_agent: None,
                unhelpful_turns: 0,
            };
            t.put(&OPEN_CONVERSATION, &open_key, &c.id)?;
            opened = Some(EventPayload::ConversationOpened {
                conversation: c.id,
                channel: channel_id,
                outlet: c.outlet,
                opened_at_ms: c.opened_at_ms,
            });
            c
        }
    };
    conversation.last_customer_message_ms = conversation.last_customer_message_ms.max(sent_ms);
    conversation.last_message_ms = now;
    conversation.message_count += 1;
    if contact.profile_name.is_some() {
        conversation.contact_name = contact.profile_name.clone();
    }

    let message = Message {
        id: MessageId::new(),
        conversation: conversation.id,
        direction: Direction::Inbound,
        author: Author::Customer,
        body: MessageBody::Inbound {
            content: inbound.content.clone(),
            context: inbound.context.clone(),
            referral: inbound.referral.clone().map(Box::new),
        },
        status: MessageStatus::Received,
        wamid: Some(inbound.wamid.clone()),
        created_at_ms: sent_ms,
        status_at_ms: now,
        failure: None,
        attempts: 0,
        sources: Vec::new(),
        unanswered: None,
    };
    // The message's feed entry also announces its conversation's change (same commit).
    put_message(t, &message, FeedKind::Message)?;
    t.put(
        &MESSAGE_BY_WAMID,
        inbound.wamid.as_bytes(),
        &MessageRef {
            conversation: conversation.id,
            message: message.id,
        },
    )?;
    t.put(&CONVERSATIONS, conversation.id.as_bytes(), &conversation)?;
    Ok(FiledParts {
        conversation: conversation.id,
        fresh: Some(FreshMessage {
            message: message.id,
            state: conversation.state,
            starts_turn: starts_turn(&inbound.content),
            opened,
        }),
    })
}

/// Applies a status webhook to the message it concerns. Statuses only move a message forward
/// (they can arrive out of order); a failure is recorded with its reason. Returns the conversation
/// whose message changed.
pub fn apply_status_update(
    t: &mut TenantWrite<'_, '_>,
    status: &StatusUpdate,
) -> Result<Option<ConversationId>, StoreError> {
    let by_tag = status
        .biz_opaque_callback_data
        .as_deref()
        .and_then(MessageRef::from_callback_tag);
    let found = match by_tag {
        Some(r) => Some(r),
        None => t.get(&MESSAGE_BY_WAMID, status.wamid.as_bytes())?,
    };
    let Some(found) = found else {
        // A message sent by another tool on the same number: nothing of ours to update.
        return Ok(None);
    };
    let key = message_key(found.conversation, found.message);
    let Some(mut message) = t.get(&MESSAGES, &key)? else {
        return Ok(None);
    };
    let new_status = match &status.status {
        DeliveryStatus::Sent => MessageStatus::Sent,
        DeliveryStatus::Delivered => MessageStatus::Delivered,
        DeliveryStatus::Read => MessageStatus::Read,
        DeliveryStatus::Failed => MessageStatus::Failed,
        DeliveryStatus::Other(_) => return Ok(None),
    };
    let mut changed = false;
    if message.wamid.is_none() {
        message.wamid = Some(status.wamid.clone());
        t.put(&MESSAGE_BY_WAMID, status.wamid.as_bytes(), &found)?;
        changed = true;
    }
    let moves_forward = new_status.rank() > message.status.rank()
        || matches!(
            message.status,
            MessageStatus::Sending | MessageStatus::Unconfirmed
        );
    if moves_forward && message.status != MessageStatus::Failed {
        message.status = new_status;
        message.status_at_ms = status.timestamp.saturating_mul(1000);
        if new_status == MessageStatus::Failed {
            message.failure = Some(
                status
                    .errors
                    .first()
                    .map(|e| {
                        let mut s = format!("code {}", e.code);
                        if let Some(title) = e.title.as_deref().or(e.message.as_deref()) {
                            s.push_str(": ");
                            s.push_str(title);
                        }
                        if let Some(details) = &e.details {
                            s.push_str(" (");
                            s.push_str(details);
                            s.push(')');
                        }
                        s
                    })
                    .unwrap_or_else(|| "failed without a reason from WhatsApp".into()),
            );
        }
        changed = true;
    }
    if changed {
        put_message(t, &message, FeedKind::Status)?;
        Ok(Some(found.conversation))
    } else {
        Ok(None)
    }
}

pub fn handler(
    store: Store,
    debounce_ms: i64,
    turns: TurnScheduler,
    live: LiveBus,
) -> Arc<dyn Handler> {
    Arc::new(ConversationsHandler {
        store,
        debounce_ms,
        turns,
        live,
    })
}
