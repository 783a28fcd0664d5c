//! State changes of a conversation, each committed together with the events it causes: queueing a
//! reply, handing off, an agent taking over, handing back, closing.

use super::feed::{put_conversation, put_message, FeedKind};
use super::model::*;
use super::routing::{self, Routed};
use super::turns::{schedule_key, TURN_SCHEDULE};
use crate::events::{publish, EventPayload};
use crate::storage::{ConversationId, MessageId, Store, StoreError, TenantId, WriteCtx};
use crate::whatsapp::outbound::OutboundContent;

fn load(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    conversation: ConversationId,
) -> Result<Conversation, StoreError> {
    ctx.tenant(tenant)
        .get(&CONVERSATIONS, conversation.as_bytes())?
        .ok_or_else(|| {
            StoreError::rejected(
                "not_found",
                format!("conversation {conversation} not found"),
            )
        })
}

/// Loads a conversation that is still open: agents can no longer act on a closed one.
fn load_open(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    conversation: ConversationId,
) -> Result<Conversation, StoreError> {
    let c = load(ctx, tenant, conversation)?;
    if c.state == ConversationState::Closed {
        return Err(StoreError::rejected(
            "conflict",
            "the conversation is closed",
        ));
    }
    Ok(c)
}

/// Stores an outbound message as queued and publishes it for the sender, in the caller's commit.
pub fn queue_outbound(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    conversation: &mut Conversation,
    author: Author,
    content: OutboundContent,
    sources: Vec<Source>,
) -> Result<Message, StoreError> {
    store_outbound(
        ctx,
        tenant,
        conversation,
        author,
        content,
        sources,
        MessageId::new(),
        MessageStatus::Queued,
    )
}

/// Like [`queue_outbound`], but the message is stored as `sending` (attempt 1): the durable
/// intent to send, recorded in the caller's commit instead of a commit of the sender's own. The
/// caller must have registered `id` with [`crate::whatsapp::sender::SenderHandle::claim_first_send`]
/// before this commit, so this process's sender makes that first attempt without another commit.
/// After a crash no claim exists, and the sender treats the message like any interrupted send.
pub fn queue_outbound_claimed(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    conversation: &mut Conversation,
    author: Author,
    content: OutboundContent,
    sources: Vec<Source>,
    id: MessageId,
) -> Result<Message, StoreError> {
    store_outbound(
        ctx,
        tenant,
        conversation,
        author,
        content,
        sources,
        id,
        MessageStatus::Sending,
    )
}

#[allow(clippy::too_many_arguments)]
fn store_outbound(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    conversation: &mut Conversation,
    author: Author,
    content: OutboundContent,
    sources: Vec<Source>,
    id: MessageId,
    status: MessageStatus,
) -> Result<Message, StoreError> {
    let now = crate::events::now_ms();
    let message = Message {
        id,
        conversation: conversation.id,
        direction: Direction::Outbound,
        author,
        body: MessageBody::Outbound { content },
        status,
        wamid: None,
        created_at_ms: now,
        status_at_ms: now,
        failure: None,
        attempts: u32::from(status == MessageStatus::Sending),
        sources,
        unanswered: None,
    };
    conversation.last_message_ms = now;
    conversation.message_count += 1;
    put_message(&mut ctx.tenant(tenant), &message, FeedKind::Message)?;
    publish(
        ctx,
        tenant,
        EventPayload::OutgoingMessage {
            conversation: conversation.id,
            message: message.id,
        },
    )?;
    Ok(message)
}

/// Marks an assistant reply queued in this same commit as one that had no grounded answer for
/// `question` (see [`Message::unanswered`]). It rewrites the row before the commit, so the feed
/// and the reply's event, read after the commit, only ever see the marked reply.
pub fn mark_unanswered(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    message: &mut Message,
    question: String,
) -> Result<(), StoreError> {
    message.unanswered = Some(question);
    ctx.tenant(tenant).put(
        &MESSAGES,
        &message_key(message.conversation, message.id),
        message,
    )
}

/// Stores an internal note (never sent to the customer).
pub fn add_note(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    conversation: &mut Conversation,
    author: Author,
    text: String,
) -> Result<Message, StoreError> {
    let now = crate::events::now_ms();
    let message = Message {
        id: MessageId::new(),
        conversation: conversation.id,
        direction: Direction::Outbound,
        author,
        body: MessageBody::Note { text },
        status: MessageStatus::Received,
        wamid: None,
        created_at_ms: now,
        status_at_ms: now,
        failure: None,
        attempts: 0,
        sources: Vec::new(),
        unanswered: None,
    };
    conversation.last_message_ms = now;
    conversation.message_count += 1;
    put_message(&mut ctx.tenant(tenant), &message, FeedKind::Message)?;
    Ok(message)
}

/// Removes a conversation's pending bot turn (both the per-conversation row and the schedule).
pub fn clear_pending_turn(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    conversation: ConversationId,
) -> Result<(), StoreError> {
    let mut t = ctx.tenant(tenant);
    if let Some(pending) = t.get(&PENDING_TURNS, conversation.as_bytes())? {
        t.delete(&PENDING_TURNS, conversation.as_bytes())?;
        t.global().delete(
            &TURN_SCHEDULE,
            &schedule_key(pending.due_ms, tenant, conversation),
        )?;
    }
    Ok(())
}

/// Moves a conversation to `pending_human` with its reason, recorded as a note for agents.
pub fn hand_off(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    conversation: &mut Conversation,
    reason: HandoffReason,
) -> Result<(), StoreError> {
    hand_off_with(ctx, tenant, conversation, reason, None).map(|_| ())
}

/// Hands off (as [`hand_off`]) and routes the conversation to the next agent in line or its
/// outlet's queue, announcing `conversation.updated` in the same commit. `question` is what the
/// customer asked in the turn that handed off. The caller saves the conversation.
pub fn hand_off_with(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    conversation: &mut Conversation,
    reason: HandoffReason,
    question: Option<String>,
) -> Result<Routed, StoreError> {
    conversation.state = ConversationState::PendingHuman;
    conversation.unhelpful_turns = 0;
    let note = add_note(
        ctx,
        tenant,
        conversation,
        Author::System,
        format!("Handed to a person: {}", reason.describe()),
    )?;
    conversation.handoff_reason = Some(reason.clone());
    clear_pending_turn(ctx, tenant, conversation.id)?;
    let routed = routing::route(&mut ctx.tenant(tenant), conversation, note.created_at_ms)?;
    publish(
        ctx,
        tenant,
        EventPayload::ConversationHandedOff {
            conversation: conversation.id,
            outlet: conversation.outlet,
            reason,
            at_ms: note.created_at_ms,
            question,
            agent: conversation.assigned_agent.clone(),
        },
    )?;
    Ok(routed)
}

fn save(ctx: &mut WriteCtx<'_>, tenant: TenantId, c: &Conversation) -> Result<(), StoreError> {
    put_conversation(&mut ctx.tenant(tenant), c)
}

/// An agent takes the conversation: the assistant goes silent in it.
pub async fn take_over(
    store: &Store,
    tenant: TenantId,
    conversation: ConversationId,
) -> Result<Conversation, StoreError> {
    take_over_by(store, tenant, conversation, None)
        .await
        .map(|(c, _)| c)
}

/// [`take_over`] by the person `taker` (a user id): when they are an agent, the conversation is
/// theirs from now on (the slot of whoever it was routed to goes to the next in the queue).
/// Also returns the other conversations whose assignment changed (for live updates).
pub async fn take_over_by(
    store: &Store,
    tenant: TenantId,
    conversation: ConversationId,
    taker: Option<String>,
) -> Result<(Conversation, Vec<ConversationId>), StoreError> {
    store
        .write(move |ctx| {
            let mut c = load_open(ctx, tenant, conversation)?;
            c.state = ConversationState::Human;
            // Someone has it now: it no longer waits in the queue. Without a taker who is an
            // agent, whoever it was routed to keeps the slot.
            routing::dequeue(&mut ctx.tenant(tenant), &c)?;
            let reassigned = match &taker {
                Some(user) => routing::taken_by(
                    &mut ctx.tenant(tenant),
                    &mut c,
                    user,
                    crate::events::now_ms(),
                )?,
                None => Vec::new(),
            };
            add_note(
                ctx,
                tenant,
                &mut c,
                Author::System,
                "An agent took over".into(),
            )?;
            clear_pending_turn(ctx, tenant, conversation)?;
            save(ctx, tenant, &c)?;
            Ok((c, reassigned))
        })
        .await
}

/// An agent's reply. Taking over is implied: an agent speaking means the assistant must not.
pub async fn agent_reply(
    store: &Store,
    tenant: TenantId,
    conversation: ConversationId,
    text: String,
) -> Result<Message, StoreError> {
    let text = text.trim().to_string();
    if text.is_empty() || text.chars().count() > 4096 {
        return Err(StoreError::rejected(
            "invalid_input",
            "text: must be 1-4096 characters (WhatsApp's limit)",
        ));
    }
    store
        .write(move |ctx| {
            let mut c = load_open(ctx, tenant, conversation)?;
            if !c.window_open(crate::events::now_ms()) {
                return Err(StoreError::rejected(
                    "window_closed",
                    "the 24-hour customer-service window is closed: only a template message can be sent",
                ));
            }
            if c.state != ConversationState::Human {
                c.state = ConversationState::Human;
                clear_pending_turn(ctx, tenant, conversation)?;
                routing::dequeue(&mut ctx.tenant(tenant), &c)?;
            }
            let message = queue_outbound(
                ctx,
                tenant,
                &mut c,
                Author::Agent,
                OutboundContent::Text {
                    body: text.clone(),
                    preview_url: false,
                },
                Vec::new(),
            )?;
            save(ctx, tenant, &c)?;
            Ok(message)
        })
        .await
}

/// Hands the conversation back to the assistant. Also returns the queued conversations the
/// freed agent slot went to (for live updates).
pub async fn hand_back_routed(
    store: &Store,
    tenant: TenantId,
    conversation: ConversationId,
) -> Result<(Conversation, Vec<ConversationId>), StoreError> {
    store
        .write(move |ctx| {
            let mut c = load_open(ctx, tenant, conversation)?;
            c.state = ConversationState::Bot;
            c.handoff_reason = None;
            c.unhelpful_turns = 0;
            routing::leave(&mut ctx.tenant(tenant), &mut c)?;
            add_note(
                ctx,
                tenant,
                &mut c,
                Author::System,
                "Handed back to the assistant".into(),
            )?;
            save(ctx, tenant, &c)?;
            let drained = routing::drain(&mut ctx.tenant(tenant), crate::events::now_ms())?;
            Ok((c, drained))
        })
        .await
}

/// Closes the conversation and announces `conversation.completed`. The customer's next message
/// opens a new conversation (in bot mode), so closing never reopens a handoff loop. Also returns
/// the queued conversations the freed agent slot went to (for live updates).
pub async fn close_routed(
    store: &Store,
    tenant: TenantId,
    conversation: ConversationId,
) -> Result<(Conversation, Vec<ConversationId>), StoreError> {
    store
        .write(move |ctx| {
            let mut c = load(ctx, tenant, conversation)?;
            if c.state == ConversationState::Closed {
                return Ok((c, Vec::new()));
            }
            c.state = ConversationState::Closed;
            c.closed_at_ms = Some(crate::events::now_ms());
            clear_pending_turn(ctx, tenant, conversation)?;
            // The agent's slot and the queue place go with it; the assignment stays on the
            // closed record (who handled it).
            let held_by = c.assigned_agent.clone();
            routing::leave(&mut ctx.tenant(tenant), &mut c)?;
            c.assigned_agent = held_by;
            ctx.tenant(tenant)
                .delete(&OPEN_CONVERSATION, &open_key(c.channel, &c.contact_wa_id))?;
            save(ctx, tenant, &c)?;
            publish(
                ctx,
                tenant,
                EventPayload::ConversationCompleted { conversation },
            )?;
            let drained = routing::drain(&mut ctx.tenant(tenant), crate::events::now_ms())?;
            Ok((c, drained))
        })
        .await
}
