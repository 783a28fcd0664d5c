//! The sender: consumer of `whatsapp.outgoing.messages`.
//!
//! Per message: refuse free-form text outside the 24-hour window; pace per recipient (one lane per
//! customer, so their messages leave in order with a minimum gap) and per business number (token
//! bucket, Meta's default 80 msg/s); record the intent to send (`sending`) durably *before* the
//! request; then apply the outcome: accepted → `sent` with its wamid; retryable (429, 5xx, 130429,
//! 131056, code 2, ...) → backoff with jitter honouring Retry-After, bounded attempts; permanent →
//! `failed` with the reason.
//!
//! Ambiguous sends. A request that timed out after it left, or a crash between recording
//! `sending` and learning the answer, leaves us not knowing whether Meta accepted the message.
//! Graph has no idempotency key, so a blind resend could reach the customer twice. Our choice:
//! mark it `unconfirmed` and wait for evidence. Every send carries `biz_opaque_callback_data`,
//! which Meta echoes in the status webhooks of that message; if a status arrives, the message is
//! confirmed (it moves to sent/delivered/read) and is never resent. Meta emits the `sent` status
//! within seconds of accepting a message, so if none has come after `reconcile_after` (two minutes
//! by default), the message is taken as never accepted and sent once more. That is not blind: it
//! is a resend only after the positive signal that would exist for an accepted message is absent.
//!
//! Claimed first sends. A bot turn stores its reply already as `sending` (attempt 1) in the turn's
//! own commit, after registering it here as a claim (`claim_first_send`): the intent is durable
//! before the request either way, but the reply path waits for one durable commit less. A claim
//! lives only in this process's memory and is taken at most once, just before the request; after
//! a crash no claim exists, so such a message is handled like any interrupted send (unconfirmed,
//! resent only if no status report arrives within `reconcile_after`). A graceful stop hands the
//! claims never taken back as `queued` (`release_claims`), since this process knows they never
//! left.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::graph::{backoff_delay, GraphClient, SendCredentials, SendOutcome};
use crate::config::GraphSettings;
use crate::conversations::feed::{put_message, FeedKind};
use crate::conversations::{
    message_key, Conversation, LiveBus, LiveUpdate, Message, MessageBody, MessageRef,
    MessageStatus, CONVERSATIONS, MESSAGES, MESSAGE_BY_WAMID,
};
use crate::events::{
    ack, Consumer, Delivery, Envelope, EventPayload, Handler, HandlerError, HandlerFuture, LaneKey,
};
use crate::storage::{ChannelId, ConversationId, MessageId, Store, StoreError, TenantId};
use crate::tenants::crypto::MasterKey;
use crate::tenants::{self, Channel};

/// A token bucket per business number.
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Clone)]
pub struct SenderHandle {
    inner: Arc<SenderInner>,
}

struct SenderInner {
    store: Store,
    key: MasterKey,
    graph: GraphClient,
    settings: GraphSettings,
    live: LiveBus,
    /// Turns true when the app stops: waits between attempts end early then.
    stopping: watch::Receiver<bool>,
    buckets: Mutex<HashMap<String, Bucket>>,
    last_to_recipient: Mutex<HashMap<String, Instant>>,
    /// First sends claimed by this process's turn commits and not yet attempted.
    claims: Mutex<HashMap<MessageId, (TenantId, ConversationId)>>,
}

enum Step {
    /// Nothing (more) to do for this message.
    Done,
    /// Try again after this delay (retryable failure, or waiting for reconciliation).
    Wait(Duration),
}

impl SenderHandle {
    pub fn new(
        store: Store,
        key: MasterKey,
        graph: GraphClient,
        settings: GraphSettings,
        live: LiveBus,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self {
            inner: Arc::new(SenderInner {
                store,
                key,
                graph,
                settings,
                live,
                stopping,
                buckets: Mutex::default(),
                last_to_recipient: Mutex::default(),
                claims: Mutex::default(),
            }),
        }
    }

    fn claims(&self) -> std::sync::MutexGuard<'_, HashMap<MessageId, (TenantId, ConversationId)>> {
        match self.inner.claims.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        }
    }

    /// Registers the first send of a message the caller is about to commit as `sending` (with
    /// `conversations::actions::queue_outbound_claimed`). Must come before that commit: its event
    /// may reach the sender before the commit's caller hears back.
    pub fn claim_first_send(&self, tenant: TenantId, at: MessageRef) {
        self.claims().insert(at.message, (tenant, at.conversation));
    }

    /// The commit did not store the claimed message (stale turn, failed write).
    pub fn forget_claim(&self, message: MessageId) {
        self.claims().remove(&message);
    }

    fn has_claim(&self, message: MessageId) -> bool {
        self.claims().contains_key(&message)
    }

    /// True once per claim: whoever gets it may send without recording the intent again.
    fn take_claim(&self, message: MessageId) -> bool {
        self.claims().remove(&message).is_some()
    }

    /// For a graceful stop, once no turn or send runs any more: claimed messages whose request
    /// was never made go back to `queued`, so the next start sends them at once instead of
    /// treating them as interrupted sends. Claims taken after this are refused (the claim is gone).
    pub async fn release_claims(&self) {
        let claims: Vec<(MessageId, (TenantId, ConversationId))> = self.claims().drain().collect();
        if claims.is_empty() {
            return;
        }
        let released = self
            .inner
            .store
            .write(move |ctx| {
                let now = crate::events::now_ms();
                for (message, (tenant, conversation)) in &claims {
                    let key = message_key(*conversation, *message);
                    let mut t = ctx.tenant(*tenant);
                    let Some(mut m) = t.get(&MESSAGES, &key)? else {
                        continue;
                    };
                    if m.status == MessageStatus::Sending && m.wamid.is_none() {
                        m.status = MessageStatus::Queued;
                        m.attempts = m.attempts.saturating_sub(1);
                        m.status_at_ms = now;
                        t.put(&MESSAGES, &key, &m)?;
                    }
                }
                Ok(())
            })
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "could not hand unsent claimed replies back; the next start treats them as interrupted sends");
        }
    }

    /// Marks a customer's message read and shows the typing indicator. Best effort.
    pub async fn mark_read(&self, tenant: TenantId, channel: ChannelId, wamid: &str) {
        let Ok(Some(channel)) = tenants::get_channel(&self.inner.store, tenant, channel) else {
            return;
        };
        let Some(creds) = self.credentials(tenant, &channel) else {
            return;
        };
        if let Err(e) = self.inner.graph.mark_read(&creds, wamid, true).await {
            tracing::debug!(tenant = %tenant, error = %e, "mark-read failed (harmless)");
        }
    }

    fn credentials(&self, tenant: TenantId, channel: &Channel) -> Option<SendCredentials> {
        let tenants::ChannelKind::CloudApi { api_version, .. } = &channel.kind else {
            return None;
        };
        let secrets = match tenants::channel_secrets(&self.inner.key, tenant, channel) {
            Ok(Some(s)) => s,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!(tenant = %tenant, channel = %channel.id, error = %e, "cannot open channel secrets");
                return None;
            }
        };
        SendCredentials::new(
            api_version.clone(),
            channel.phone_number_id.clone(),
            secrets.access_token,
        )
        .ok()
    }

    async fn take_rate_token(&self, phone_number_id: &str) {
        let rate = self.inner.settings.rate_per_second.max(1) as f64;
        loop {
            let wait = {
                let mut buckets = match self.inner.buckets.lock() {
                    Ok(b) => b,
                    Err(p) => p.into_inner(),
                };
                let bucket = buckets
                    .entry(phone_number_id.to_string())
                    .or_insert(Bucket {
                        tokens: rate,
                        last: Instant::now(),
                    });
                let now = Instant::now();
                bucket.tokens = (bucket.tokens
                    + now.duration_since(bucket.last).as_secs_f64() * rate)
                    .min(rate);
                bucket.last = now;
                if bucket.tokens >= 1.0 {
                    bucket.tokens -= 1.0;
                    None
                } else {
                    Some(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
                }
            };
            match wait {
                None => return,
                Some(d) => tokio::time::sleep(d).await,
            }
        }
    }

    async fn pace_recipient(&self, recipient: &str) {
        let gap = Duration::from_millis(self.inner.settings.recipient_gap_ms);
        if gap.is_zero() {
            return;
        }
        let wait = {
            let map = match self.inner.last_to_recipient.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            map.get(recipient)
                .map(|last| gap.saturating_sub(last.elapsed()))
                .unwrap_or_default()
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    fn note_sent_to(&self, recipient: &str) {
        if let Ok(mut map) = self.inner.last_to_recipient.lock() {
            if map.len() > 100_000 {
                map.retain(|_, t| t.elapsed() < Duration::from_secs(60));
            }
            map.insert(recipient.to_string(), Instant::now());
        }
    }

    /// Sleeps for `delay`; false if the app began stopping first. A Retry-After or a
    /// reconciliation wait can be minutes long, longer than a service manager waits for a stop.
    async fn wait_unless_stopping(&self, delay: Duration) -> bool {
        let mut stopping = self.inner.stopping.clone();
        let stopped = tokio::select! {
            _ = tokio::time::sleep(delay) => return true,
            stop = stopping.wait_for(|s| *s) => stop.is_ok(),
        };
        if !stopped {
            // Nobody can stop us any more: just wait.
            tokio::time::sleep(delay).await;
        }
        !stopped
    }

    /// Updates the message (and acks the event when `done`), in one commit.
    async fn update(
        &self,
        delivery: &Delivery,
        tenant: TenantId,
        at: MessageRef,
        done: bool,
        change: impl Fn(&mut Message) + Send + 'static,
    ) -> Result<(), StoreError> {
        let consumer = delivery.envelope.consumer;
        let seq = delivery.envelope.seq;
        self.inner
            .store
            .write(move |ctx| {
                let key = message_key(at.conversation, at.message);
                let mut t = ctx.tenant(tenant);
                if let Some(mut m) = t.get(&MESSAGES, &key)? {
                    change(&mut m);
                    if let Some(wamid) = &m.wamid {
                        t.put(&MESSAGE_BY_WAMID, wamid.as_bytes(), &at)?;
                    }
                    put_message(&mut t, &m, FeedKind::Status)?;
                }
                if done {
                    ack(ctx, consumer, seq)?;
                }
                Ok(())
            })
            .await?;
        if done {
            delivery.mark_acked();
        }
        self.inner
            .live
            .publish(LiveUpdate::status(tenant, at.conversation));
        Ok(())
    }

    async fn fail(
        &self,
        delivery: &Delivery,
        tenant: TenantId,
        at: MessageRef,
        reason: String,
    ) -> Result<Step, StoreError> {
        self.forget_claim(at.message);
        tracing::warn!(tenant = %tenant, conversation = %at.conversation, %reason, "message failed");
        self.update(delivery, tenant, at, true, move |m| {
            m.status = MessageStatus::Failed;
            m.failure = Some(reason.clone());
            m.status_at_ms = crate::events::now_ms();
        })
        .await?;
        Ok(Step::Done)
    }

    /// One step of a message's life. Called again after each `Wait`.
    async fn step(
        &self,
        delivery: &Delivery,
        tenant: TenantId,
        at: MessageRef,
    ) -> Result<Step, StoreError> {
        let loaded = self.inner.store.read(|r| {
            let t = r.tenant(tenant);
            let m = t.get(&MESSAGES, &message_key(at.conversation, at.message))?;
            let c = t.get(&CONVERSATIONS, at.conversation.as_bytes())?;
            Ok((m, c))
        })?;
        let (Some(message), Some(conversation)) = loaded else {
            self.forget_claim(at.message);
            return Ok(Step::Done);
        };
        let now = crate::events::now_ms();
        // Claimed by this process's turn commit: its `sending` is an intent no request acted on.
        let mut claimed = false;
        match message.status {
            MessageStatus::Sent
            | MessageStatus::Delivered
            | MessageStatus::Read
            | MessageStatus::Failed
            | MessageStatus::Received => {
                return Ok(Step::Done);
            }
            MessageStatus::Sending if self.has_claim(at.message) => claimed = true,
            MessageStatus::Sending => {
                // We crashed after recording the intent and before learning the outcome.
                self.update(delivery, tenant, at, false, |m| {
                    // A status webhook may have confirmed it since we read it.
                    if m.status != MessageStatus::Sending {
                        return;
                    }
                    m.status = MessageStatus::Unconfirmed;
                    m.failure = Some(
                        "interrupted while sending; waiting for WhatsApp's status report".into(),
                    );
                    m.status_at_ms = crate::events::now_ms();
                })
                .await?;
                return Ok(Step::Wait(Duration::from_millis(500)));
            }
            MessageStatus::Unconfirmed => {
                let deadline = message.status_at_ms + self.inner.settings.reconcile_after_ms as i64;
                if now < deadline {
                    return Ok(Step::Wait(Duration::from_millis(
                        ((deadline - now) as u64).min(1_000),
                    )));
                }
                tracing::warn!(tenant = %tenant, conversation = %at.conversation, "no status report for an unconfirmed send; sending again");
            }
            MessageStatus::Queued => {}
        }
        let MessageBody::Outbound { content } = &message.body else {
            return Ok(Step::Done);
        };
        if content.is_free_form() && !conversation.window_open(now) {
            return self
                .fail(delivery, tenant, at, "not sent: the 24-hour customer-service window is closed; only a template message can reach this customer now".into())
                .await;
        }
        let Some(channel) = tenants::get_channel(&self.inner.store, tenant, conversation.channel)
            .map_err(|e| StoreError::Io(e.to_string()))?
        else {
            return self
                .fail(delivery, tenant, at, "the channel no longer exists".into())
                .await;
        };
        // A claimed message's attempt was counted when it was claimed.
        let attempts = if claimed {
            message.attempts
        } else {
            message.attempts + 1
        };
        if channel.is_sandbox() {
            self.forget_claim(at.message);
            return self
                .deliver_to_sandbox(delivery, tenant, at, attempts)
                .await;
        }
        let Some(creds) = self.credentials(tenant, &channel) else {
            return self
                .fail(
                    delivery,
                    tenant,
                    at,
                    "the channel's credentials are unusable".into(),
                )
                .await;
        };
        if attempts > self.inner.settings.max_attempts {
            let last = message.failure.clone().unwrap_or_default();
            return self
                .fail(
                    delivery,
                    tenant,
                    at,
                    format!("gave up after {} attempts: {last}", message.attempts),
                )
                .await;
        }
        self.pace_recipient(&conversation.contact_wa_id).await;
        self.take_rate_token(&channel.phone_number_id).await;
        if claimed {
            // The turn's commit recorded the intent. Act on it once, and only if a graceful stop
            // has not handed it back meanwhile (then the next step finds it queued or settled).
            if !self.take_claim(at.message) {
                return Ok(Step::Wait(Duration::ZERO));
            }
        } else {
            // Durable intent before the request: after a crash we know this may have been sent.
            // Only from the state read above: a late status report (the pacing waits may take a
            // while) proves the earlier attempt arrived, and must not be overwritten and resent.
            let seen = message.status;
            self.update(delivery, tenant, at, false, move |m| {
                if m.status != seen {
                    return;
                }
                m.status = MessageStatus::Sending;
                m.attempts = attempts;
                m.status_at_ms = crate::events::now_ms();
            })
            .await?;
            let intent = self.inner.store.read(|r| {
                r.tenant(tenant)
                    .get(&MESSAGES, &message_key(at.conversation, at.message))
            })?;
            if !intent.is_some_and(|m| m.status == MessageStatus::Sending && m.attempts == attempts)
            {
                return Ok(Step::Wait(Duration::ZERO));
            }
        }
        let body =
            content.to_graph_body(&conversation.contact_wa_id, None, Some(&at.callback_tag()));
        let outcome = self.inner.graph.send(&creds, &body).await;
        crate::ops::metrics::send_outcome(tenant, &outcome);
        self.note_sent_to(&conversation.contact_wa_id);
        match outcome {
            SendOutcome::Accepted { wamid } => {
                self.update(delivery, tenant, at, true, move |m| {
                    // A status webhook may have overtaken the response; never move backwards.
                    if m.status.rank() < MessageStatus::Sent.rank()
                        || m.status == MessageStatus::Unconfirmed
                    {
                        m.status = MessageStatus::Sent;
                        m.status_at_ms = crate::events::now_ms();
                    }
                    // A `failed` webhook that overtook the answer carries the only reason we get.
                    if m.status != MessageStatus::Failed {
                        m.failure = None;
                    }
                    m.wamid = Some(wamid.clone());
                })
                .await?;
                Ok(Step::Done)
            }
            SendOutcome::Retryable {
                code,
                http_status,
                reason,
                retry_after,
            } => {
                let delay = backoff_delay(
                    attempts.saturating_sub(1),
                    retry_after,
                    Duration::from_millis(self.inner.settings.backoff_base_ms),
                    Duration::from_millis(self.inner.settings.backoff_max_ms),
                );
                tracing::info!(tenant = %tenant, http_status, code = ?code, attempt = attempts, delay_ms = delay.as_millis() as u64, "send throttled or failed; will retry");
                let note = format!("attempt {attempts}: {reason}");
                self.update(delivery, tenant, at, false, move |m| {
                    if m.status != MessageStatus::Sending {
                        return;
                    }
                    m.status = MessageStatus::Queued;
                    m.failure = Some(note.clone());
                })
                .await?;
                Ok(Step::Wait(delay))
            }
            SendOutcome::Permanent { reason, .. } => self.fail(delivery, tenant, at, reason).await,
            SendOutcome::Ambiguous { reason } => {
                tracing::warn!(tenant = %tenant, conversation = %at.conversation, %reason, "send outcome unknown; waiting for a status report before any resend");
                let note = format!("unconfirmed: {reason}");
                self.update(delivery, tenant, at, false, move |m| {
                    // Meta's status webhook (found by our callback data) often arrives before the
                    // late answer: the message is then confirmed and must not become resendable.
                    if m.status != MessageStatus::Sending {
                        return;
                    }
                    m.status = MessageStatus::Unconfirmed;
                    m.failure = Some(note.clone());
                    m.status_at_ms = crate::events::now_ms();
                })
                .await?;
                Ok(Step::Wait(Duration::from_millis(500)))
            }
        }
    }

    /// Sandbox channels have no Meta behind them: the simulator is the customer's phone, so the
    /// message is delivered as soon as it is sent.
    async fn deliver_to_sandbox(
        &self,
        delivery: &Delivery,
        tenant: TenantId,
        at: MessageRef,
        attempts: u32,
    ) -> Result<Step, StoreError> {
        self.update(delivery, tenant, at, true, move |m| {
            m.status = MessageStatus::Delivered;
            m.attempts = attempts;
            m.wamid = Some(format!("wamid.sandbox.{}", at.message));
            m.status_at_ms = crate::events::now_ms();
        })
        .await?;
        Ok(Step::Done)
    }
}

impl Handler for SenderHandle {
    fn consumer(&self) -> Consumer {
        Consumer::Sender
    }

    /// One lane per conversation: a customer's messages leave in order.
    fn lane(&self, envelope: &Envelope) -> LaneKey {
        match &envelope.payload {
            EventPayload::OutgoingMessage { conversation, .. } => {
                format!("{}:{}", envelope.tenant, conversation)
            }
            _ => envelope.tenant.to_string(),
        }
    }

    fn handle<'a>(&'a self, delivery: &'a Delivery) -> HandlerFuture<'a> {
        Box::pin(async move {
            let EventPayload::OutgoingMessage {
                conversation,
                message,
            } = &delivery.envelope.payload
            else {
                return Ok(());
            };
            let at = MessageRef {
                conversation: *conversation,
                message: *message,
            };
            let tenant = delivery.envelope.tenant;
            loop {
                match self
                    .step(delivery, tenant, at)
                    .await
                    .map_err(HandlerError::from)?
                {
                    Step::Done => return Ok(()),
                    Step::Wait(d) => {
                        if !self.wait_unless_stopping(d).await {
                            // Leave the event queued: the next start resumes the message from
                            // its stored state (queued for a retry, or unconfirmed).
                            return Err(HandlerError::Retry("stopping".into()));
                        }
                    }
                }
            }
        })
    }
}

/// For tests and the dashboard: the outbound messages of a conversation with their status.
pub fn outbound_messages(
    store: &Store,
    tenant: TenantId,
    conversation: ConversationId,
) -> Result<Vec<Message>, StoreError> {
    Ok(store
        .read(|r| {
            r.tenant(tenant)
                .scan(&MESSAGES, conversation.as_bytes(), false, usize::MAX)
        })?
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| matches!(m.body, MessageBody::Outbound { .. }))
        .collect())
}

#[allow(dead_code)]
fn _assert_types(_: &Conversation, _: MessageId) {}
