//! One bot turn: decide (reply, or hand off and why), then commit the outcome together with its
//! events, but only if the turn is still current (no newer message rescheduled it, no agent took
//! the conversation meanwhile). The decision may call a remote model; the commit never does.

use std::sync::Arc;
use std::time::Duration;

use super::language::{self, Lang};
use super::llm::{ChatMessage, ChatRequest, ChatResponse, LlmClient, ToolDef};
use super::{intent, Assistant, KnowledgePassage};
use crate::billing::meter::TokenUsage;
use crate::conversations::actions::{
    clear_pending_turn, hand_off_with, mark_unanswered, queue_outbound_claimed,
};
use crate::conversations::routing::{self, Routed};
use crate::conversations::turns::{ScheduledTurn, TurnFuture, TurnResult, TurnRunner};
use crate::conversations::{
    Author, Conversation, ConversationState, HandoffReason, LiveUpdate, Message, MessageBody,
    MessageRef, Source, CONVERSATIONS, PENDING_TURNS,
};
use crate::knowledge::NoAnswerPolicy;
use crate::storage::{MessageId, StoreError, TenantId, WriteCtx};
use crate::tenants::{Tenant, TenantStatus};
use crate::whatsapp::outbound::OutboundContent;

/// What the turn decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Reply {
        text: String,
        sources: Vec<Source>,
        /// The knowledge base had nothing for the question: the reply says so (and offers a
        /// person) rather than answering, and counts as an unanswered question.
        unanswered: bool,
    },
    HandOff {
        reason: HandoffReason,
        notice: String,
    },
    /// Nothing to say (tenant suspended, conversation no longer in bot mode).
    Silent,
}

const HANDOFF_TOOL: &str = "handoff_to_human";

fn handoff_tool() -> ToolDef {
    ToolDef::new(
        HANDOFF_TOOL,
        "Pass the conversation to a human agent. Use it when the customer asks for a person, when \
         the knowledge passages do not answer the question, for complaints, refunds, or anything \
         that needs a person's judgement.",
        serde_json::json!({
            "type": "object",
            "properties": {
                "reason": {"type": "string", "description": "Short reason for the agent."}
            },
            "required": ["reason"]
        }),
    )
}

impl TurnRunner for Assistant {
    fn run_turn(&self, turn: ScheduledTurn) -> TurnFuture {
        let this = self.clone();
        Box::pin(async move {
            match this.turn(turn).await {
                Ok(()) => TurnResult::Done,
                Err(e) => {
                    tracing::warn!(tenant = %turn.tenant, conversation = %turn.conversation, error = %e, "assistant turn failed; retrying");
                    TurnResult::RetryAfter(Duration::from_secs(2))
                }
            }
        })
    }
}

struct TurnInput {
    tenant: Tenant,
    conversation: Conversation,
    history: Vec<Message>,
    /// The customer's messages since the last reply, joined.
    question: String,
    last_customer_wamid: Option<String>,
    /// The customer says the last answer did not help, or asks again what was answered.
    unhelpful: bool,
    /// Unhelpful turns the tenant tolerates before handing off.
    unhelpful_limit: u32,
    /// Tokens the model reported for this turn (recorded in the commit, for cost visibility).
    tokens: std::sync::Mutex<TokenUsage>,
}

impl TurnInput {
    fn count_tokens(&self, usage: &super::llm::Usage) {
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        t.llm_calls += 1;
        t.llm_prompt_tokens += u64::from(usage.prompt_tokens);
        t.llm_completion_tokens += u64::from(usage.completion_tokens);
    }

    fn tokens(&self) -> TokenUsage {
        *self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the commit needs to know about the turn besides its decision.
#[derive(Debug, Clone)]
pub(crate) struct TurnFacts {
    pub(crate) lang: Lang,
    /// The customer's question, kept with a handoff for the agent (and unanswered-question
    /// analytics).
    pub(crate) question: String,
    pub(crate) unhelpful: bool,
}

impl Assistant {
    async fn turn(&self, turn: ScheduledTurn) -> Result<(), StoreError> {
        let Some(input) = self.load_turn(turn)? else {
            return Ok(());
        };
        self.live.publish(LiveUpdate {
            tenant: turn.tenant,
            conversation: turn.conversation,
            what: "assistant_working",
        });
        if let Some(wamid) = &input.last_customer_wamid {
            self.mark_read_and_typing(turn.tenant, &input.conversation, wamid.clone());
        }
        let lang = language::detect(&input.question);
        let decision = match self.quota_precheck(&input, lang) {
            Some(handoff) => handoff,
            None => self.decide(&input).await,
        };
        let facts = TurnFacts {
            lang,
            question: input.question.clone(),
            unhelpful: input.unhelpful,
        };
        self.commit(turn, decision, facts, input.tokens()).await
    }

    /// The cheap read before calling the model: with the period's quota used up (and no
    /// overage), hand off at once instead of generating a reply the commit would refuse.
    fn quota_precheck(&self, input: &TurnInput, lang: Lang) -> Option<Decision> {
        if !self.metering
            || input.tenant.status != TenantStatus::Active
            || input.conversation.state != ConversationState::Bot
        {
            return None;
        }
        match crate::billing::reply_allowed(&self.store, input.tenant.id, jiff::Timestamp::now()) {
            Ok(true) => None,
            Ok(false) => Some(Decision::HandOff {
                reason: HandoffReason::QuotaExhausted,
                notice: language::handoff_notice(lang).into(),
            }),
            Err(e) => {
                // The commit checks again and decides; the pre-check only saves a model call.
                tracing::warn!(tenant = %input.tenant.id, error = %e, "quota pre-check failed");
                None
            }
        }
    }

    /// Reads what the turn needs; None when the turn is stale or already done.
    fn load_turn(&self, turn: ScheduledTurn) -> Result<Option<TurnInput>, StoreError> {
        let history_len = self.history_messages;
        self.store.read(|r| {
            let t = r.tenant(turn.tenant);
            match t.get(&PENDING_TURNS, turn.conversation.as_bytes())? {
                Some(p) if p.turn == turn.turn => {}
                _ => return Ok(None),
            }
            let Some(conversation) = t.get(&CONVERSATIONS, turn.conversation.as_bytes())? else {
                return Ok(None);
            };
            let Some(tenant) = r
                .operator()
                .get(&crate::tenants::TENANTS, turn.tenant.as_bytes())?
            else {
                return Ok(None);
            };
            let mut history: Vec<Message> = t
                .scan(
                    &crate::conversations::MESSAGES,
                    turn.conversation.as_bytes(),
                    true,
                    history_len,
                )?
                .into_iter()
                .map(|(_, m)| m)
                .collect();
            history.reverse();
            let mut pending_questions = Vec::new();
            let mut answered = Vec::new();
            let mut last_customer_wamid = None;
            let mut replied = false;
            for m in history.iter().rev() {
                match m.author {
                    Author::Customer if replied => answered.push(m.body.preview_text()),
                    Author::Customer => {
                        if last_customer_wamid.is_none() {
                            last_customer_wamid = m.wamid.clone();
                        }
                        pending_questions.push(m.body.preview_text());
                    }
                    Author::Assistant | Author::Agent => replied = true,
                    Author::System => {}
                }
            }
            pending_questions.reverse();
            let question = pending_questions.join("\n");
            let unhelpful =
                intent::says_unhelpful(&question) || intent::is_repeat(&question, &answered);
            let unhelpful_limit = routing::settings_in(&t)?.unhelpful_turn_limit;
            Ok(Some(TurnInput {
                tenant,
                conversation,
                history,
                question,
                last_customer_wamid,
                unhelpful,
                unhelpful_limit,
                tokens: Default::default(),
            }))
        })
    }

    async fn decide(&self, input: &TurnInput) -> Decision {
        if input.tenant.status != TenantStatus::Active
            || input.conversation.state != ConversationState::Bot
        {
            return Decision::Silent;
        }
        let lang = language::detect(&input.question);
        if intent::wants_human(&input.question) {
            return Decision::HandOff {
                reason: HandoffReason::CustomerAsked,
                notice: language::handoff_notice(lang).into(),
            };
        }
        if let Some(keyword) = intent::complaint_keyword(&input.question) {
            return Decision::HandOff {
                reason: HandoffReason::Complaint {
                    keyword: keyword.to_string(),
                },
                notice: language::handoff_notice(lang).into(),
            };
        }
        if input.unhelpful && input.conversation.unhelpful_turns + 1 >= input.unhelpful_limit {
            return Decision::HandOff {
                reason: HandoffReason::RepeatedUnhelpful,
                notice: language::handoff_notice(lang).into(),
            };
        }
        let (passages, policy) = match &self.knowledge {
            Some(kb) => (
                kb.retrieve(input.tenant.id, input.conversation.outlet, &input.question)
                    .await,
                kb.no_answer_policy(input.tenant.id),
            ),
            None => (Vec::new(), NoAnswerPolicy::default()),
        };
        if passages.is_empty() && policy == NoAnswerPolicy::HandOff {
            return Decision::HandOff {
                reason: HandoffReason::NoGroundedAnswer,
                notice: language::handoff_notice(lang).into(),
            };
        }
        match &self.llm {
            Some(llm) => self.generate(llm, input, &passages, lang).await,
            None => offline_answer(&passages, lang, policy),
        }
    }

    async fn generate(
        &self,
        llm: &Arc<LlmClient>,
        input: &TurnInput,
        passages: &[KnowledgePassage],
        lang: Lang,
    ) -> Decision {
        let mut messages = vec![ChatMessage::system(system_prompt(&input.tenant, passages))];
        for m in &input.history {
            match (&m.author, &m.body) {
                (Author::Customer, body) => messages.push(ChatMessage::user(body.preview_text())),
                (Author::Assistant, MessageBody::Outbound { content }) => {
                    messages.push(ChatMessage::assistant(content.preview_text()))
                }
                (Author::Agent, MessageBody::Outbound { content }) => {
                    messages.push(ChatMessage::assistant(format!(
                        "(a human agent wrote) {}",
                        content.preview_text()
                    )))
                }
                _ => {}
            }
        }
        let sources: Vec<Source> = passages.iter().map(KnowledgePassage::to_source).collect();
        for _round in 0..self.max_tool_rounds {
            let request = ChatRequest::new(messages.clone()).with_tools(vec![handoff_tool()]);
            let started = std::time::Instant::now();
            let answer = llm.chat(&request).await;
            match &answer {
                Ok(r) => crate::ops::metrics::llm_call(
                    input.tenant.id,
                    "ok",
                    started.elapsed(),
                    r.usage.prompt_tokens,
                    r.usage.completion_tokens,
                ),
                Err(e) => crate::ops::metrics::llm_call(
                    input.tenant.id,
                    e.code(),
                    started.elapsed(),
                    0,
                    0,
                ),
            }
            let response: ChatResponse = match answer {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(tenant = %input.tenant.id, conversation = %input.conversation.id, code = e.code(), "generation failed; handing off");
                    return Decision::HandOff {
                        reason: HandoffReason::ProviderFailure {
                            detail: e.code().to_string(),
                        },
                        notice: language::holding_message(lang).into(),
                    };
                }
            };
            input.count_tokens(&response.usage);
            if let Some(call) = response.tool_calls.first() {
                if call.name == HANDOFF_TOOL {
                    let detail = call
                        .args()
                        .ok()
                        .and_then(|a| a.get("reason"))
                        .and_then(|r| r.as_str())
                        .unwrap_or("no reason given")
                        .chars()
                        .take(200)
                        .collect();
                    return Decision::HandOff {
                        reason: HandoffReason::ToolCall { detail },
                        notice: language::handoff_notice(lang).into(),
                    };
                }
                // An unknown tool: tell the model and let it try again, within the round bound.
                messages.push(response.to_assistant_message());
                for call in &response.tool_calls {
                    messages.push(ChatMessage::tool_result(
                        call.id.clone(),
                        format!(
                            "error: no tool named {:?}; answer the customer or call {HANDOFF_TOOL}",
                            call.name
                        ),
                    ));
                }
                continue;
            }
            let text = response.text().trim().to_string();
            if text.is_empty() {
                return Decision::HandOff {
                    reason: HandoffReason::ProviderFailure {
                        detail: "empty answer".into(),
                    },
                    notice: language::holding_message(lang).into(),
                };
            }
            // With no passage to stand on, the model can only say it does not know.
            return Decision::Reply {
                text: truncate_for_whatsapp(&text),
                sources: sources.clone(),
                unanswered: passages.is_empty(),
            };
        }
        Decision::HandOff {
            reason: HandoffReason::ToolLoop,
            notice: language::handoff_notice(lang).into(),
        }
    }

    pub(crate) async fn commit(
        &self,
        turn: ScheduledTurn,
        decision: Decision,
        facts: TurnFacts,
        tokens: TokenUsage,
    ) -> Result<(), StoreError> {
        let tenant = turn.tenant;
        let metering = self.metering;
        let (outcome, handoff) = match &decision {
            Decision::Reply { .. } => ("reply", None),
            Decision::HandOff { reason, .. } => ("handoff", Some(reason.code())),
            Decision::Silent => ("silent", None),
        };
        // The reply (or notice) is stored already claimed by the sender, so the intent to send is
        // durable in this commit and the sender needs no commit of its own before the request.
        // The id is fixed before the write: the write may run more than once (batch retries),
        // and its event may reach the sender before this call returns.
        let reply = MessageRef {
            conversation: turn.conversation,
            message: MessageId::new(),
        };
        self.sender.claim_first_send(tenant, reply);
        let written = self
            .store
            .write(move |ctx| {
                let now = jiff::Timestamp::now();
                if metering {
                    // Spent whether or not the turn is still current.
                    crate::billing::meter::record_tokens_in(ctx, tenant, tokens, now)?;
                }
                let current = ctx
                    .tenant(tenant)
                    .get(&PENDING_TURNS, turn.conversation.as_bytes())?;
                if current.map(|p| p.turn) != Some(turn.turn) {
                    // A newer message rescheduled the turn (it will answer everything), or this
                    // turn already committed before a crash: either way, say nothing now.
                    return Ok((false, false));
                }
                let Some(mut c) = ctx
                    .tenant(tenant)
                    .get(&CONVERSATIONS, turn.conversation.as_bytes())?
                else {
                    return Ok((false, false));
                };
                clear_pending_turn(ctx, tenant, c.id)?;
                if c.state != ConversationState::Bot {
                    return Ok((true, false));
                }
                let decision = if metering {
                    metered(ctx, tenant, &decision, facts.lang, now)?
                } else {
                    decision.clone()
                };
                let queued = match &decision {
                    Decision::Silent => false,
                    Decision::Reply {
                        text,
                        sources,
                        unanswered,
                    } => {
                        if facts.unhelpful {
                            c.unhelpful_turns += 1;
                        }
                        let mut m = queue_outbound_claimed(
                            ctx,
                            tenant,
                            &mut c,
                            Author::Assistant,
                            OutboundContent::Text {
                                body: text.clone(),
                                preview_url: false,
                            },
                            sources.clone(),
                            reply.message,
                        )?;
                        if *unanswered {
                            mark_unanswered(ctx, tenant, &mut m, facts.question.clone())?;
                        }
                        true
                    }
                    Decision::HandOff { reason, notice } => {
                        let routed = hand_off_with(
                            ctx,
                            tenant,
                            &mut c,
                            reason.clone(),
                            Some(facts.question.clone()),
                        )?;
                        // Nobody to take it now: outside business hours, say when.
                        let away = match routed {
                            Routed::Queued => routing::away_notice(ctx, tenant, &c, facts.lang)?,
                            Routed::Assigned { .. } => None,
                        };
                        queue_outbound_claimed(
                            ctx,
                            tenant,
                            &mut c,
                            Author::Assistant,
                            OutboundContent::Text {
                                body: away.unwrap_or_else(|| notice.clone()),
                                preview_url: false,
                            },
                            Vec::new(),
                            reply.message,
                        )?;
                        true
                    }
                };
                ctx.tenant(tenant)
                    .put(&CONVERSATIONS, c.id.as_bytes(), &c)?;
                Ok((true, queued))
            })
            .await;
        let changed = match written {
            Ok((changed, queued)) => {
                if !queued {
                    self.sender.forget_claim(reply.message);
                }
                changed
            }
            Err(e) => {
                self.sender.forget_claim(reply.message);
                return Err(e);
            }
        };
        if changed {
            crate::ops::metrics::turn(tenant, outcome);
            if let Some(reason) = handoff {
                crate::ops::metrics::handoff(tenant, reason);
            }
            self.live
                .publish(LiveUpdate::message(tenant, turn.conversation));
        }
        Ok(())
    }

    /// Best effort and off the turn's path: a failed read receipt must not delay the answer.
    fn mark_read_and_typing(&self, tenant: TenantId, conversation: &Conversation, wamid: String) {
        let sender = self.sender.clone();
        let channel = conversation.channel;
        tokio::spawn(async move {
            sender.mark_read(tenant, channel, &wamid).await;
        });
    }
}

/// Meters the turn's outcome in its commit: a reply takes one unit of the period's quota, or,
/// with none left, becomes a handoff (its notice is not metered). Checking and counting in the
/// one write transaction is what keeps concurrent turns from ever exceeding the quota.
fn metered(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    decision: &Decision,
    lang: Lang,
    now: jiff::Timestamp,
) -> Result<Decision, StoreError> {
    match decision {
        Decision::Reply { .. } => {
            if crate::billing::meter_reply(ctx, tenant, now)?.may_reply() {
                Ok(decision.clone())
            } else {
                Ok(Decision::HandOff {
                    reason: HandoffReason::QuotaExhausted,
                    notice: language::handoff_notice(lang).into(),
                })
            }
        }
        Decision::HandOff {
            reason: HandoffReason::QuotaExhausted,
            ..
        } => {
            crate::billing::record_quota_handoff(ctx, tenant, now)?;
            Ok(decision.clone())
        }
        _ => Ok(decision.clone()),
    }
}

/// Without a model: answer with a sentence or two of the best passage when the match is strong
/// enough; otherwise say so and offer a person, or hand off, as the tenant chose. Never invents
/// anything.
fn offline_answer(passages: &[KnowledgePassage], lang: Lang, policy: NoAnswerPolicy) -> Decision {
    match passages.first() {
        Some(best) if best.confident => {
            let answer = if best.excerpt.trim().is_empty() {
                &best.text
            } else {
                &best.excerpt
            };
            Decision::Reply {
                text: truncate_for_whatsapp(answer),
                sources: vec![best.to_source()],
                unanswered: false,
            }
        }
        _ => match policy {
            NoAnswerPolicy::HandOff => Decision::HandOff {
                reason: HandoffReason::NoGroundedAnswer,
                notice: language::handoff_notice(lang).into(),
            },
            NoAnswerPolicy::OfferHuman => Decision::Reply {
                text: language::dont_know_offer_human(lang).into(),
                sources: Vec::new(),
                unanswered: true,
            },
        },
    }
}

fn system_prompt(tenant: &Tenant, passages: &[KnowledgePassage]) -> String {
    let mut prompt = format!(
        "You are the WhatsApp customer-service assistant of {name}. Be brief, friendly and \
         factual. Reply in the language the customer writes in. Answer only from the numbered \
         knowledge passages below; never invent prices, hours, policies or other facts. If the \
         passages do not answer the question, say you do not know and offer to connect a person, \
         or call {HANDOFF_TOOL}. Call {HANDOFF_TOOL} at once for complaints, refunds, or when the \
         customer asks for a person.\n\nKnowledge passages:\n",
        name = tenant.name
    );
    if passages.is_empty() {
        prompt.push_str("(none found for this question)\n");
    }
    for (i, p) in passages.iter().enumerate() {
        prompt.push_str(&format!("[{}] ({}) {}\n", i + 1, p.document, p.text));
    }
    prompt
}

/// WhatsApp text messages hold at most 4096 characters.
fn truncate_for_whatsapp(text: &str) -> String {
    if text.chars().count() <= 4096 {
        return text.to_string();
    }
    let mut out: String = text.chars().take(4093).collect();
    out.push_str("...");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_without_knowledge_hands_off_in_the_customers_language() {
        match offline_answer(&[], Lang::Indonesian, NoAnswerPolicy::HandOff) {
            Decision::HandOff { reason, notice } => {
                assert_eq!(reason, HandoffReason::NoGroundedAnswer);
                assert!(notice.contains("tim kami"));
            }
            other => panic!("unexpected {other:?}"),
        }
        match offline_answer(&[], Lang::English, NoAnswerPolicy::OfferHuman) {
            Decision::Reply {
                text,
                sources,
                unanswered,
            } => {
                assert!(text.contains("don't know"), "{text}");
                assert!(sources.is_empty() && unanswered);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn offline_answers_briefly_from_a_confident_passage_only() {
        let passage = KnowledgePassage {
            document: "menu.md".into(),
            chunk: "d#0".into(),
            text: "A long chunk. With many sentences. Latte costs 35000.".into(),
            excerpt: "Latte costs 35000.".into(),
            score: 0.9,
            confident: true,
        };
        match offline_answer(
            std::slice::from_ref(&passage),
            Lang::English,
            NoAnswerPolicy::HandOff,
        ) {
            Decision::Reply {
                text,
                sources,
                unanswered,
            } => {
                assert_eq!(text, "Latte costs 35000.");
                assert_eq!(sources, vec![passage.to_source()]);
                assert!(!unanswered);
            }
            other => panic!("unexpected {other:?}"),
        }
        let weak = KnowledgePassage {
            confident: false,
            ..passage
        };
        assert!(matches!(
            offline_answer(&[weak], Lang::English, NoAnswerPolicy::HandOff),
            Decision::HandOff { .. }
        ));
    }

    #[test]
    fn long_replies_fit_whatsapp() {
        let long = "a".repeat(5000);
        assert_eq!(truncate_for_whatsapp(&long).chars().count(), 4096);
    }
}
