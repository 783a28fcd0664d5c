//! Contacts, conversations and messages as stored.

use serde::{Deserialize, Serialize};

use crate::storage::collections as tags;
use crate::storage::{
    ChannelId, Collection, ContactId, ConversationId, MessageId, OutletId, Record,
};
use crate::whatsapp::outbound::OutboundContent;
use crate::whatsapp::payload::{MessageContent, Referral, ReplyContext};

/// WhatsApp's customer-service window: free-form messages are allowed for 24 hours after the
/// customer's last message.
pub const SERVICE_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Contact {
    pub id: ContactId,
    /// The customer's WhatsApp id (their number in international form, digits only).
    pub wa_id: String,
    pub profile_name: Option<String>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

impl Record for Contact {
    const VERSION: u16 = 1;
    const NAME: &'static str = "contact";
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ConversationState {
    /// The assistant answers.
    Bot,
    /// Handed off; waiting for an agent to pick it up. The assistant stays silent.
    PendingHuman,
    /// An agent holds it. The assistant stays silent.
    Human,
    Closed,
}

impl ConversationState {
    pub fn as_str(&self) -> &'static str {
        match self {
            ConversationState::Bot => "bot",
            ConversationState::PendingHuman => "pending_human",
            ConversationState::Human => "human",
            ConversationState::Closed => "closed",
        }
    }
}

/// Why a conversation went to a human. Recorded and shown to agents.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum HandoffReason {
    CustomerAsked,
    NoGroundedAnswer,
    ToolCall {
        detail: String,
    },
    ProviderFailure {
        detail: String,
    },
    ToolLoop,
    NonTextMessage,
    /// The customer said the answers did not help, or asked the same again, too many times.
    RepeatedUnhelpful,
    /// The plan's assistant replies for the period are used up (and it allows no overage).
    QuotaExhausted,
    /// The customer is angry or complaining (the keyword that showed it).
    Complaint {
        keyword: String,
    },
}

impl HandoffReason {
    pub fn describe(&self) -> String {
        match self {
            HandoffReason::CustomerAsked => "customer asked for a person".into(),
            HandoffReason::NoGroundedAnswer => "no answer in the knowledge base".into(),
            HandoffReason::ToolCall { detail } => format!("assistant handed off: {detail}"),
            HandoffReason::ProviderFailure { detail } => {
                format!("assistant unavailable: {detail}")
            }
            HandoffReason::ToolLoop => "assistant kept calling tools without answering".into(),
            HandoffReason::NonTextMessage => {
                "customer sent something the assistant cannot read".into()
            }
            HandoffReason::RepeatedUnhelpful => {
                "the assistant's answers did not help the customer".into()
            }
            HandoffReason::QuotaExhausted => {
                "quota exhausted: the plan's assistant replies for this period are used up".into()
            }
            HandoffReason::Complaint { keyword } => {
                format!("customer is upset or complaining (\"{keyword}\")")
            }
        }
    }

    /// Stable machine-readable code (analytics, filters, exports).
    pub fn code(&self) -> &'static str {
        match self {
            HandoffReason::CustomerAsked => "customer_asked",
            HandoffReason::NoGroundedAnswer => "no_grounded_answer",
            HandoffReason::ToolCall { .. } => "tool_call",
            HandoffReason::ProviderFailure { .. } => "provider_failure",
            HandoffReason::ToolLoop => "tool_loop",
            HandoffReason::NonTextMessage => "non_text_message",
            HandoffReason::RepeatedUnhelpful => "repeated_unhelpful",
            HandoffReason::QuotaExhausted => "quota_exhausted",
            HandoffReason::Complaint { .. } => "complaint",
        }
    }

    /// Every reason code, in the order reports list them.
    pub const CODES: &'static [&'static str] = &[
        "customer_asked",
        "no_grounded_answer",
        "tool_call",
        "provider_failure",
        "tool_loop",
        "non_text_message",
        "repeated_unhelpful",
        "quota_exhausted",
        "complaint",
    ];

    /// A short human label for a reason code (reports, CSV).
    pub fn label(code: &str) -> &'static str {
        match code {
            "customer_asked" => "Customer asked for a person",
            "no_grounded_answer" => "No answer in the knowledge base",
            "tool_call" => "Assistant chose to hand off",
            "provider_failure" => "Assistant unavailable",
            "tool_loop" => "Assistant looped on tools",
            "non_text_message" => "Message the assistant cannot read",
            "repeated_unhelpful" => "Repeated unhelpful answers",
            "quota_exhausted" => "Quota exhausted",
            "complaint" => "Anger or complaint",
            _ => "Other",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Conversation {
    pub id: ConversationId,
    pub channel: ChannelId,
    pub outlet: Option<OutletId>,
    pub contact_wa_id: String,
    pub contact_name: Option<String>,
    pub state: ConversationState,
    pub handoff_reason: Option<HandoffReason>,
    pub opened_at_ms: i64,
    pub closed_at_ms: Option<i64>,
    /// When the customer last wrote (per WhatsApp's timestamp): the 24-hour window starts here.
    pub last_customer_message_ms: i64,
    pub last_message_ms: i64,
    pub message_count: u32,
    /// The agent (user id) the conversation is routed to or held by; None while queued or bot.
    #[serde(default)]
    pub assigned_agent: Option<String>,
    /// Assistant turns the customer found unhelpful (said so, or asked the same again) since the
    /// assistant last took the conversation; reaching the tenant's limit hands it off.
    #[serde(default)]
    pub unhelpful_turns: u32,
}

impl Record for Conversation {
    const VERSION: u16 = 1;
    const NAME: &'static str = "conversation";
}

impl Conversation {
    /// Whether a free-form (non-template) message may be sent at `now_ms`.
    pub fn window_open(&self, now_ms: i64) -> bool {
        now_ms < self.last_customer_message_ms + SERVICE_WINDOW_MS
    }
    pub fn window_closes_at_ms(&self) -> i64 {
        self.last_customer_message_ms + SERVICE_WINDOW_MS
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Author {
    Customer,
    Assistant,
    Agent,
    System,
}

/// Delivery state. Outbound messages move queued → sending → sent → delivered → read, or to
/// failed; `unconfirmed` means a send may or may not have reached Meta (see `whatsapp::sender`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Received,
    Queued,
    Sending,
    Unconfirmed,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl MessageStatus {
    /// Order of progress; a status webhook never moves a message backwards.
    pub fn rank(&self) -> u8 {
        match self {
            MessageStatus::Received => 0,
            MessageStatus::Queued => 1,
            MessageStatus::Sending => 2,
            MessageStatus::Unconfirmed => 3,
            MessageStatus::Sent => 4,
            MessageStatus::Delivered => 5,
            MessageStatus::Read => 6,
            MessageStatus::Failed => 7,
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            MessageStatus::Received => "received",
            MessageStatus::Queued => "queued",
            MessageStatus::Sending => "sending",
            MessageStatus::Unconfirmed => "unconfirmed",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
            MessageStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "body", rename_all = "snake_case")]
pub enum MessageBody {
    Inbound {
        content: MessageContent,
        /// The message the customer replied to (quoted), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<ReplyContext>,
        /// Click-to-WhatsApp ad attribution, if the customer came from an ad.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        referral: Option<Box<Referral>>,
    },
    Outbound {
        content: OutboundContent,
    },
    /// Internal note (handoff record, agent note): never sent to the customer.
    Note {
        text: String,
    },
}

impl MessageBody {
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::Inbound { content, .. } => content.kind(),
            MessageBody::Outbound { content } => content.kind(),
            MessageBody::Note { .. } => "note",
        }
    }

    pub fn preview_text(&self) -> String {
        match self {
            MessageBody::Inbound { content, .. } => content.preview_text(),
            MessageBody::Outbound { content } => content.preview_text(),
            MessageBody::Note { text } => text.clone(),
        }
    }
}

/// A knowledge-base passage an assistant reply was grounded in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Source {
    pub document: String,
    pub chunk: String,
    pub score: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Message {
    pub id: MessageId,
    pub conversation: ConversationId,
    pub direction: Direction,
    pub author: Author,
    pub body: MessageBody,
    pub status: MessageStatus,
    pub wamid: Option<String>,
    pub created_at_ms: i64,
    pub status_at_ms: i64,
    /// Why a message failed (e.g. "code 131047: Re-engagement message").
    pub failure: Option<String>,
    pub attempts: u32,
    pub sources: Vec<Source>,
    /// On an assistant reply that had no grounded answer to give (it said it does not know and
    /// offered a person, as the `offer_human` no-answer policy does, instead of handing off):
    /// the customer's question. Analytics lists it among the unanswered questions, as it does
    /// the question of a no-answer handoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unanswered: Option<String>,
}

impl Record for Message {
    const VERSION: u16 = 2;
    const NAME: &'static str = "message";

    /// Version 1 had no `unanswered` mark: such replies read as unmarked.
    fn upgrade(version: u16, json: &[u8]) -> Result<Self, crate::storage::StoreError> {
        match version {
            1 => serde_json::from_slice(json).map_err(|e| {
                crate::storage::StoreError::Corrupt(format!("{} value unreadable: {e}", Self::NAME))
            }),
            v => Err(crate::storage::StoreError::Corrupt(format!(
                "{} has layout version {v}, this binary reads only {}",
                Self::NAME,
                Self::VERSION
            ))),
        }
    }
}

/// Where a message lives, found from its wamid.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct MessageRef {
    pub conversation: ConversationId,
    pub message: MessageId,
}

impl Record for MessageRef {
    const VERSION: u16 = 1;
    const NAME: &'static str = "message ref";
}

impl MessageRef {
    /// The opaque tag we attach to sends; Meta echoes it in status webhooks, which lets a status
    /// find its message even before (or without) our recording the wamid.
    pub fn callback_tag(&self) -> String {
        format!("wacrm:{}:{}", self.conversation, self.message)
    }

    pub fn from_callback_tag(tag: &str) -> Option<Self> {
        let rest = tag.strip_prefix("wacrm:")?;
        let (c, m) = rest.split_once(':')?;
        Some(Self {
            conversation: c.parse().ok()?,
            message: m.parse().ok()?,
        })
    }
}

/// A bot turn waiting for its debounce to expire.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct PendingTurn {
    pub turn: MessageId,
    pub due_ms: i64,
}

impl Record for PendingTurn {
    const VERSION: u16 = 1;
    const NAME: &'static str = "pending turn";
}

impl Record for ConversationId {
    const VERSION: u16 = 1;
    const NAME: &'static str = "conversation id";
}

pub const CONTACTS: Collection<Contact> = Collection::new(tags::CONTACTS);
pub const CONVERSATIONS: Collection<Conversation> = Collection::new(tags::CONVERSATIONS);
/// (channel, customer) → the open conversation.
pub const OPEN_CONVERSATION: Collection<ConversationId> =
    Collection::new(tags::OPEN_CONVERSATION_BY_CUSTOMER);
/// (conversation, message) → message; message ids are time-ordered.
pub const MESSAGES: Collection<Message> = Collection::new(tags::MESSAGES);
pub const MESSAGE_BY_WAMID: Collection<MessageRef> = Collection::new(tags::MESSAGE_BY_WAMID);
/// conversation → its pending bot turn.
pub const PENDING_TURNS: Collection<PendingTurn> = Collection::new(tags::PENDING_TURNS);

pub fn open_key(channel: ChannelId, wa_id: &str) -> Vec<u8> {
    let mut key = channel.as_bytes().to_vec();
    key.extend_from_slice(wa_id.as_bytes());
    key
}

pub fn message_key(conversation: ConversationId, message: MessageId) -> Vec<u8> {
    let mut key = conversation.as_bytes().to_vec();
    key.extend_from_slice(message.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_tag_round_trips() {
        let r = MessageRef {
            conversation: ConversationId::new(),
            message: MessageId::new(),
        };
        assert_eq!(MessageRef::from_callback_tag(&r.callback_tag()), Some(r));
        assert_eq!(MessageRef::from_callback_tag("someone-else"), None);
        assert_eq!(MessageRef::from_callback_tag("wacrm:x:y"), None);
    }

    #[test]
    fn conversations_stored_before_routing_read_as_unassigned() {
        let c = Conversation {
            id: ConversationId::new(),
            channel: ChannelId::new(),
            outlet: None,
            contact_wa_id: "6281".into(),
            contact_name: None,
            state: ConversationState::PendingHuman,
            handoff_reason: Some(HandoffReason::CustomerAsked),
            opened_at_ms: 0,
            closed_at_ms: None,
            last_customer_message_ms: 0,
            last_message_ms: 0,
            message_count: 1,
            assigned_agent: Some("ana".into()),
            unhelpful_turns: 1,
        };
        let mut old = serde_json::to_value(&c).unwrap();
        let fields = old.as_object_mut().unwrap();
        fields.remove("assigned_agent");
        fields.remove("unhelpful_turns");
        let read: Conversation = serde_json::from_value(old).unwrap();
        assert_eq!(read.assigned_agent, None);
        assert_eq!(read.unhelpful_turns, 0);
        assert_eq!(read.handoff_reason, c.handoff_reason);
    }

    #[test]
    fn handoff_reason_codes_are_listed() {
        for reason in [
            HandoffReason::CustomerAsked,
            HandoffReason::RepeatedUnhelpful,
            HandoffReason::QuotaExhausted,
            HandoffReason::Complaint {
                keyword: "kecewa".into(),
            },
        ] {
            assert!(HandoffReason::CODES.contains(&reason.code()));
            assert_ne!(HandoffReason::label(reason.code()), "Other");
        }
    }

    #[test]
    fn window_is_24_hours_from_the_customer() {
        let c = Conversation {
            id: ConversationId::new(),
            channel: ChannelId::new(),
            outlet: None,
            contact_wa_id: "6281".into(),
            contact_name: None,
            state: ConversationState::Bot,
            handoff_reason: None,
            opened_at_ms: 0,
            closed_at_ms: None,
            last_customer_message_ms: 1_000,
            last_message_ms: 1_000,
            message_count: 1,
            assigned_agent: None,
            unhelpful_turns: 0,
        };
        assert!(c.window_open(1_000 + SERVICE_WINDOW_MS - 1));
        assert!(!c.window_open(1_000 + SERVICE_WINDOW_MS));
    }
}
