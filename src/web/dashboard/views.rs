//! What the pages show, prepared from stored records, and the fragments the live channel sends
//! (one message, one inbox row) so the server renders every bubble the same way.

use askama::Template;

use crate::conversations::extras::ConversationExtras;
use crate::conversations::{
    Author, Conversation, ConversationState, HandoffReason, Message, MessageBody, MessageStatus,
};
use crate::tenants::{Channel, Outlet};

/// A time in the tenant's zone: "14:05" today-ish, with the date when it matters.
pub fn clock(ms: i64, tz: &str) -> String {
    let Ok(ts) = jiff::Timestamp::from_millisecond(ms) else {
        return String::new();
    };
    let zone = jiff::tz::TimeZone::get(tz).unwrap_or(jiff::tz::TimeZone::UTC);
    let at = ts.to_zoned(zone.clone());
    let now = jiff::Timestamp::now().to_zoned(zone);
    if at.date() == now.date() {
        at.strftime("%H:%M").to_string()
    } else {
        at.strftime("%d %b %H:%M").to_string()
    }
}

pub struct SourceView {
    pub document: String,
    pub chunk: String,
    pub score: String,
}

pub struct MessageView {
    pub id: String,
    /// CSS class: customer, assistant, agent, system, note.
    pub css: &'static str,
    pub who: &'static str,
    pub text: String,
    /// The kind of media (image, audio, ...) shown as a placeholder: media is not downloaded.
    pub media: Option<&'static str>,
    pub time: String,
    /// Delivery status of our messages (None for the customer's and notes).
    pub status: Option<&'static str>,
    pub failure: Option<String>,
    pub sources: Vec<SourceView>,
}

const MEDIA_KINDS: &[&str] = &["image", "audio", "video", "document", "sticker"];

pub fn message_view(m: &Message, tz: &str) -> MessageView {
    let (css, who) = match (&m.body, m.author) {
        (MessageBody::Note { .. }, Author::System) => ("system", "System"),
        (MessageBody::Note { .. }, _) => ("note", "Private note"),
        (_, Author::Customer) => ("customer", "Customer"),
        (_, Author::Assistant) => ("assistant", "Assistant"),
        (_, Author::Agent) => ("agent", "Agent"),
        (_, Author::System) => ("system", "System"),
    };
    let kind = m.body.kind();
    let media = MEDIA_KINDS.iter().find(|k| **k == kind).copied();
    let status = match (&m.body, m.status) {
        (MessageBody::Outbound { .. }, s) => Some(s.as_str()),
        _ => None,
    };
    MessageView {
        id: m.id.to_string(),
        css,
        who,
        text: m.body.preview_text(),
        media,
        time: clock(m.created_at_ms, tz),
        status,
        failure: m
            .failure
            .clone()
            .filter(|_| m.status == MessageStatus::Failed || m.status == MessageStatus::Queued),
        sources: m
            .sources
            .iter()
            .map(|s| SourceView {
                document: s.document.clone(),
                chunk: s.chunk.chars().take(280).collect(),
                score: format!("{:.2}", s.score),
            })
            .collect(),
    }
}

#[derive(Template)]
#[template(path = "fragments/message.html")]
pub struct MessageFragment<'a> {
    pub m: &'a MessageView,
}

pub fn render_message(m: &Message, tz: &str) -> Result<String, askama::Error> {
    let view = message_view(m, tz);
    MessageFragment { m: &view }.render()
}

pub fn state_label(s: ConversationState) -> &'static str {
    match s {
        ConversationState::Bot => "Assistant",
        ConversationState::PendingHuman => "Waiting for a person",
        ConversationState::Human => "Agent",
        ConversationState::Closed => "Closed",
    }
}

/// Why a conversation was handed to a person, in a sentence for the conversation view.
pub fn reason_text(reason: &HandoffReason) -> String {
    match reason {
        HandoffReason::CustomerAsked => "the customer asked for a person.".into(),
        HandoffReason::NoGroundedAnswer => {
            "the knowledge base has no answer to the customer's question.".into()
        }
        HandoffReason::ToolCall { detail } => {
            format!("the assistant decided a person should answer (\u{201c}{detail}\u{201d}).")
        }
        HandoffReason::ProviderFailure { detail } => format!(
            "the assistant could not reach its language model ({}).",
            detail.replace('_', " ")
        ),
        HandoffReason::ToolLoop => "the assistant kept calling tools without answering.".into(),
        HandoffReason::NonTextMessage => {
            "the customer sent something the assistant cannot read.".into()
        }
        HandoffReason::RepeatedUnhelpful => {
            "the customer kept finding the assistant's answers unhelpful.".into()
        }
        HandoffReason::QuotaExhausted => {
            "the plan's assistant replies for this period are used up.".into()
        }
        HandoffReason::Complaint { keyword } => format!(
            "the customer seems upset or is complaining (they wrote \u{201c}{keyword}\u{201d})."
        ),
    }
}

/// The same, in a few words for an inbox row.
pub fn reason_short(reason: &HandoffReason) -> String {
    match reason {
        HandoffReason::Complaint { keyword } => format!(
            "{} (\u{201c}{keyword}\u{201d})",
            HandoffReason::label(reason.code())
        ),
        other => HandoffReason::label(other.code()).to_string(),
    }
}

pub struct RowView {
    pub id: String,
    pub name: String,
    pub number: String,
    pub state: &'static str,
    pub state_label: &'static str,
    pub preview: String,
    pub when: String,
    pub outlet: Option<String>,
    pub channel: Option<String>,
    /// Who routing gave it to (or took it over), by name.
    pub assignee: Option<String>,
    /// Why it was handed off, while a person has it or it waits for one.
    pub reason: Option<String>,
    /// Its place in its outlet's queue.
    pub waiting: Option<String>,
    pub labels: Vec<String>,
    pub current: bool,
}

pub struct Names<'a> {
    pub outlets: &'a [Outlet],
    pub channels: &'a [Channel],
}

pub fn row_view(
    c: &Conversation,
    extras: &ConversationExtras,
    last: Option<&Message>,
    names: &Names<'_>,
    tz: &str,
) -> RowView {
    RowView {
        id: c.id.to_string(),
        name: c
            .contact_name
            .clone()
            .unwrap_or_else(|| format!("+{}", c.contact_wa_id)),
        number: format!("+{}", c.contact_wa_id),
        state: c.state.as_str(),
        state_label: state_label(c.state),
        preview: last
            .map(|m| m.body.preview_text().chars().take(90).collect())
            .unwrap_or_default(),
        when: clock(c.last_message_ms, tz),
        outlet: c.outlet.and_then(|o| {
            names
                .outlets
                .iter()
                .find(|x| x.id == o)
                .map(|x| x.name.clone())
        }),
        channel: names
            .channels
            .iter()
            .find(|x| x.id == c.channel)
            .map(|x| x.name.clone()),
        assignee: None,
        reason: c
            .handoff_reason
            .as_ref()
            .filter(|_| {
                matches!(
                    c.state,
                    ConversationState::PendingHuman | ConversationState::Human
                )
            })
            .map(reason_short),
        waiting: None,
        labels: extras.labels.clone(),
        current: false,
    }
}

#[derive(Template)]
#[template(path = "fragments/row.html")]
pub struct RowFragment<'a> {
    pub r: &'a RowView,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{ConversationId, MessageId};
    use crate::whatsapp::payload::MessageContent;

    fn inbound(text: &str) -> Message {
        Message {
            id: MessageId::new(),
            conversation: ConversationId::new(),
            direction: crate::conversations::Direction::Inbound,
            author: Author::Customer,
            body: MessageBody::Inbound {
                content: MessageContent::Text { body: text.into() },
                context: None,
                referral: None,
            },
            status: MessageStatus::Received,
            wamid: None,
            created_at_ms: 0,
            status_at_ms: 0,
            failure: None,
            attempts: 0,
            sources: vec![],
            unanswered: None,
        }
    }

    #[test]
    fn handoff_reasons_read_as_plain_words() {
        let upset = HandoffReason::Complaint {
            keyword: "kecewa".into(),
        };
        assert!(reason_text(&upset).contains("\u{201c}kecewa\u{201d}"));
        assert!(reason_short(&upset).starts_with("Anger or complaint"));
        let down = HandoffReason::ProviderFailure {
            detail: "upstream_timeout".into(),
        };
        assert!(reason_text(&down).contains("(upstream timeout)"));
        for r in [
            HandoffReason::CustomerAsked,
            HandoffReason::NoGroundedAnswer,
            HandoffReason::RepeatedUnhelpful,
            HandoffReason::QuotaExhausted,
        ] {
            assert_ne!(reason_short(&r), "Other");
            assert!(reason_text(&r).ends_with('.'));
        }
    }

    #[test]
    fn message_text_is_escaped() {
        let html = render_message(&inbound("<script>alert(1)</script>"), "UTC").unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&#60;script&#62;"), "{html}");
    }

    #[test]
    fn assistant_answers_show_their_sources() {
        let mut m = inbound("");
        m.author = Author::Assistant;
        m.body = MessageBody::Outbound {
            content: crate::whatsapp::outbound::OutboundContent::Text {
                body: "We open at 8".into(),
                preview_url: false,
            },
        };
        m.sources = vec![crate::conversations::Source {
            document: "hours.md".into(),
            chunk: "Open daily 08:00-22:00".into(),
            score: 0.87,
        }];
        let html = render_message(&m, "UTC").unwrap();
        assert!(html.contains("hours.md") && html.contains("0.87"), "{html}");
        assert!(html.contains("class=\"msg assistant"), "{html}");
    }
}
