//! Inbound WhatsApp Cloud API webhook payloads, parsed into domain types.
//!
//! Meta POSTs `{"object": "whatsapp_business_account", "entry": [{"id": <WABA id>, "changes":
//! [{"field": "messages", "value": {...}}]}]}`. Each `messages` change becomes one [`ChangeBatch`]
//! (one business phone number); changes for other fields are reported in
//! [`ParsedWebhook::skipped`] so the caller can count and ignore them.
//!
//! Strictness is split on purpose. The envelope (object, entry, metadata, message and status ids,
//! senders, timestamps, message `type`) must be right, or the whole body is a [`PayloadError`]:
//! without those fields nothing can be routed or deduplicated. Message *content* is tolerant: an
//! unknown type, or a known type whose content has an unexpected shape, becomes
//! [`MessageContent::Unsupported`] with the original object kept in [`InboundMessage::raw`], so a
//! customer's message is never dropped because Meta changed or added something. Unknown fields are
//! ignored everywhere.
//!
//! The envelope is parsed level by level (notification, entry, change, value), each level holding
//! its children as raw slices of the body, so errors name their place without building a
//! `serde_json::Value` tree. A message's envelope fields are typed, its content parts stay raw
//! slices read by typed views, and its whole text is kept in [`InboundMessage::raw`].

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

mod wire;
use wire::{
    from_raw, view, view_obj, Obj, WireButton, WireChange, WireContext, WireEntry, WireError,
    WireInteractive, WireLocation, WireMedia, WireMessage, WireNotification, WireOrder,
    WireReaction, WireReferral, WireSharedContact, WireStatus, WireSystem, WireText, WireTyped,
    WireValue,
};

/// The only `object` value the WhatsApp Business Account webhook sends.
pub const WHATSAPP_OBJECT: &str = "whatsapp_business_account";
/// The change `field` that carries inbound messages and delivery statuses.
pub const MESSAGES_FIELD: &str = "messages";

/// The body is not a WhatsApp `messages` webhook we can trust for routing and deduplication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The message says what is wrong and where (a JSON path such as `entry[0].changes[1].value`).
    #[error("malformed webhook payload: {0}")]
    Malformed(String),
}

impl PayloadError {
    /// Stable machine-readable code for logs and HTTP error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            PayloadError::Malformed(_) => "malformed_payload",
        }
    }

    fn at(path: impl fmt::Display, detail: impl fmt::Display) -> Self {
        PayloadError::Malformed(format!("{path}: {detail}"))
    }
}

/// Everything one `messages` change reports for one business phone number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeBatch {
    pub waba_id: String,
    pub phone_number_id: String,
    pub display_phone_number: String,
    pub contacts: Vec<ContactProfile>,
    pub messages: Vec<InboundMessage>,
    pub statuses: Vec<StatusUpdate>,
    /// Errors Meta reports for the phone number as a whole (`value.errors`), e.g. rate limits.
    pub errors: Vec<GraphErrorInfo>,
}

/// A change for a field other than `messages` (template status, account updates, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedChange {
    pub waba_id: String,
    pub field: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ParsedWebhook {
    pub batches: Vec<ChangeBatch>,
    pub skipped: Vec<SkippedChange>,
}

/// The sender's WhatsApp profile as listed in `value.contacts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactProfile {
    /// The user's WhatsApp id (phone number); the business-scoped user id when Meta withholds the
    /// phone number of a user who adopted a username.
    pub wa_id: String,
    /// Business-scoped user id (BSUID), when Meta sends one.
    pub user_id: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundMessage {
    /// Meta's message id; unique, the deduplication key.
    pub wamid: String,
    /// The sender's phone number, or their business-scoped user id when the number is withheld.
    pub from: String,
    /// The sender's business-scoped user id (BSUID), when Meta sends one.
    pub from_user_id: Option<String>,
    /// Unix seconds.
    pub timestamp: i64,
    pub content: MessageContent,
    pub context: Option<ReplyContext>,
    pub referral: Option<Referral>,
    /// The original message object, kept for audit and for types we do not model.
    pub raw: RawJson,
}

/// A JSON value kept as the text that was received: copying, storing and serializing it never
/// builds a `Value` tree (a webhook's messages are stored twice, once per event consumer).
#[derive(Clone)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The value as a tree, for inspection (tests, audits); the text is valid JSON by construction.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }
}

impl From<&RawValue> for RawJson {
    fn from(raw: &RawValue) -> Self {
        RawJson(raw.to_owned())
    }
}

impl From<Value> for RawJson {
    fn from(value: Value) -> Self {
        // A `Value` always serializes; the fallback is never taken.
        let raw = serde_json::value::to_raw_value(&value).unwrap_or_else(|_| null_raw());
        RawJson(raw)
    }
}

fn null_raw() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).unwrap_or_else(|_| unreachable!("null is JSON"))
}

/// Equal when the JSON values are equal, whatever their spacing or key order.
impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get() || self.to_value() == other.to_value()
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl Serialize for RawJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    /// Through a `Value`: a stored message sits inside an internally tagged enum
    /// (`EventPayload`), whose buffered content cannot hand over raw text.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(RawJson::from)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum MessageContent {
    Text {
        body: String,
    },
    Image(Media),
    Audio(Media),
    Video(Media),
    Document(Media),
    Sticker(Media),
    Location {
        latitude: f64,
        longitude: f64,
        name: Option<String>,
        address: Option<String>,
        url: Option<String>,
    },
    Contacts(Vec<SharedContact>),
    /// Tap on a reply button of an interactive message.
    ButtonReply {
        id: String,
        title: String,
    },
    /// Choice of a row in an interactive list message.
    ListReply {
        id: String,
        title: String,
        description: Option<String>,
    },
    /// Tap on a quick-reply button of a template message.
    Button {
        payload: Option<String>,
        text: String,
    },
    Reaction {
        message_id: String,
        /// Empty when the user removed their reaction.
        emoji: String,
    },
    Order {
        catalog_id: String,
        text: Option<String>,
        items: Vec<OrderItem>,
    },
    /// Account events such as the customer changing their number.
    System {
        body: String,
        /// Meta's `system.type`, e.g. `customer_changed_number` or `user_changed_number`.
        kind: String,
        new_wa_id: Option<String>,
    },
    /// A type we do not model (or whose content was not in the documented shape). The message is
    /// kept; `raw` holds everything Meta sent.
    Unsupported {
        type_name: String,
        errors: Vec<GraphErrorInfo>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Media {
    /// Media id for the Graph API media endpoint.
    pub id: String,
    pub mime_type: Option<String>,
    pub sha256: Option<String>,
    pub caption: Option<String>,
    /// Documents only.
    pub filename: Option<String>,
    /// Short-lived download URL, when Meta includes one.
    pub url: Option<String>,
    /// Audio only: recorded as a voice note.
    pub voice: Option<bool>,
    /// Stickers only.
    pub animated: Option<bool>,
}

/// A contact card the customer shared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedContact {
    pub formatted_name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub organization: Option<String>,
    pub phones: Vec<SharedPhone>,
    pub emails: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedPhone {
    pub phone: Option<String>,
    pub wa_id: Option<String>,
    /// Meta's label, e.g. `WORK`, `HOME`, `CELL`.
    pub kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    pub product_retailer_id: String,
    pub quantity: i64,
    /// Unit price as the decimal text Meta sent (e.g. `30.5`); kept as text so no float rounding
    /// creeps into money.
    pub item_price: Option<String>,
    pub currency: Option<String>,
}

/// Present when the customer replied to, forwarded, or asked about a specific message or product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyContext {
    /// The wamid of the message being replied to.
    pub message_id: Option<String>,
    pub from: Option<String>,
    pub forwarded: bool,
    pub frequently_forwarded: bool,
    pub referred_product: Option<ReferredProduct>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferredProduct {
    pub catalog_id: Option<String>,
    pub product_retailer_id: Option<String>,
}

/// Click-to-WhatsApp ad attribution; only on the first message after the click.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referral {
    pub source_url: Option<String>,
    pub source_id: Option<String>,
    pub source_type: Option<String>,
    pub body: Option<String>,
    pub headline: Option<String>,
    pub media_type: Option<String>,
    pub image_url: Option<String>,
    pub video_url: Option<String>,
    pub thumbnail_url: Option<String>,
    pub ctwa_clid: Option<String>,
    pub welcome_message: Option<String>,
}

/// Delivery status of a message the business sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub wamid: String,
    pub status: DeliveryStatus,
    /// Unix seconds.
    pub timestamp: i64,
    /// The recipient's phone number (or group id), or their business-scoped user id when the
    /// number is withheld.
    pub recipient_id: String,
    pub recipient_user_id: Option<String>,
    pub errors: Vec<GraphErrorInfo>,
    /// Echoed from the send request; lets the sender match a status to its outbox entry.
    pub biz_opaque_callback_data: Option<String>,
    pub conversation_id: Option<String>,
    pub pricing_category: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum DeliveryStatus {
    Sent,
    Delivered,
    Read,
    Failed,
    /// Statuses we do not act on (`deleted`, `warning`, `played`, future ones), kept verbatim.
    Other(String),
}

impl From<String> for DeliveryStatus {
    fn from(s: String) -> Self {
        match s.as_str() {
            "sent" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            "read" => DeliveryStatus::Read,
            "failed" => DeliveryStatus::Failed,
            _ => DeliveryStatus::Other(s),
        }
    }
}

impl From<DeliveryStatus> for String {
    fn from(s: DeliveryStatus) -> Self {
        match s {
            DeliveryStatus::Sent => "sent".into(),
            DeliveryStatus::Delivered => "delivered".into(),
            DeliveryStatus::Read => "read".into(),
            DeliveryStatus::Failed => "failed".into(),
            DeliveryStatus::Other(s) => s,
        }
    }
}

/// A Graph API error as it appears in webhooks (`code`, `title`, `message`, `error_data.details`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphErrorInfo {
    pub code: i64,
    pub title: Option<String>,
    pub message: Option<String>,
    pub details: Option<String>,
}

impl MessageContent {
    /// Short stable name of the variant (same as its serialized `kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            MessageContent::Text { .. } => "text",
            MessageContent::Image(_) => "image",
            MessageContent::Audio(_) => "audio",
            MessageContent::Video(_) => "video",
            MessageContent::Document(_) => "document",
            MessageContent::Sticker(_) => "sticker",
            MessageContent::Location { .. } => "location",
            MessageContent::Contacts(_) => "contacts",
            MessageContent::ButtonReply { .. } => "button_reply",
            MessageContent::ListReply { .. } => "list_reply",
            MessageContent::Button { .. } => "button",
            MessageContent::Reaction { .. } => "reaction",
            MessageContent::Order { .. } => "order",
            MessageContent::System { .. } => "system",
            MessageContent::Unsupported { .. } => "unsupported",
        }
    }

    /// One line of text for agents and the LLM: the body for text, a bracketed tag plus the
    /// human-readable parts for everything else.
    pub fn preview_text(&self) -> String {
        match self {
            MessageContent::Text { body } => body.clone(),
            MessageContent::Image(m) => tagged("[image]", [m.caption.as_deref()]),
            MessageContent::Video(m) => tagged("[video]", [m.caption.as_deref()]),
            MessageContent::Audio(m) if m.voice == Some(true) => "[voice message]".into(),
            MessageContent::Audio(_) => "[audio]".into(),
            MessageContent::Document(m) => {
                tagged("[document]", [m.filename.as_deref(), m.caption.as_deref()])
            }
            MessageContent::Sticker(_) => "[sticker]".into(),
            MessageContent::Location {
                latitude,
                longitude,
                name,
                address,
                ..
            } => {
                if name.is_none() && address.is_none() {
                    format!("[location] {latitude}, {longitude}")
                } else {
                    tagged("[location]", [name.as_deref(), address.as_deref()])
                }
            }
            MessageContent::Contacts(cards) => {
                let names: Vec<String> = cards.iter().map(contact_line).collect();
                format!("[contacts] {}", names.join("; "))
            }
            MessageContent::ButtonReply { title, .. } => format!("Button: {title}"),
            MessageContent::ListReply {
                title, description, ..
            } => match description {
                Some(d) if !d.is_empty() => format!("List choice: {title} ({d})"),
                _ => format!("List choice: {title}"),
            },
            MessageContent::Button { text, .. } => format!("Button: {text}"),
            MessageContent::Reaction { emoji, .. } if emoji.is_empty() => {
                "[reaction removed]".into()
            }
            MessageContent::Reaction { emoji, .. } => format!("[reaction] {emoji}"),
            MessageContent::Order { text, items, .. } => {
                let units: i64 = items.iter().map(|i| i.quantity).sum();
                let head = format!("[order] {units} item(s)");
                match text {
                    Some(t) if !t.is_empty() => format!("{head}: {t}"),
                    _ => head,
                }
            }
            MessageContent::System { body, .. } => tagged("[system]", [Some(body.as_str())]),
            MessageContent::Unsupported { type_name, .. } => {
                format!("[unsupported message: {type_name}]")
            }
        }
    }
}

/// `tag` followed by the non-empty parts, comma separated.
fn tagged<'a>(tag: &str, parts: impl IntoIterator<Item = Option<&'a str>>) -> String {
    let parts: Vec<&str> = parts
        .into_iter()
        .flatten()
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        tag.to_string()
    } else {
        format!("{tag} {}", parts.join(", "))
    }
}

fn contact_line(c: &SharedContact) -> String {
    let name = c
        .formatted_name
        .clone()
        .or_else(|| {
            let full: Vec<&str> = [c.first_name.as_deref(), c.last_name.as_deref()]
                .into_iter()
                .flatten()
                .collect();
            (!full.is_empty()).then(|| full.join(" "))
        })
        .unwrap_or_else(|| "unnamed contact".into());
    match c.phones.iter().find_map(|p| p.phone.as_deref()) {
        Some(phone) => format!("{name} ({phone})"),
        None => name,
    }
}

/// Parses a webhook body into one batch per `messages` change, ignoring other fields.
pub fn parse_webhook(body: &[u8]) -> Result<Vec<ChangeBatch>, PayloadError> {
    parse_webhook_full(body).map(|parsed| parsed.batches)
}

/// Like [`parse_webhook`], and also reports the changes it skipped.
pub fn parse_webhook_full(body: &[u8]) -> Result<ParsedWebhook, PayloadError> {
    let notification: WireNotification = serde_json::from_slice::<Obj<_>>(body)
        .map(|o| o.0)
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => PayloadError::at("body", e),
            _ => PayloadError::at("body", format!("not valid JSON: {e}")),
        })?;
    if notification.object != WHATSAPP_OBJECT {
        return Err(PayloadError::at(
            "object",
            format!("is {:?}, expected {WHATSAPP_OBJECT:?}", notification.object),
        ));
    }
    let mut parsed = ParsedWebhook::default();
    for (i, entry) in notification.entry.into_iter().enumerate() {
        let entry: WireEntry = from_raw(entry, Place::entry(i))?;
        for (j, change) in entry.changes.into_iter().enumerate() {
            let place = Place::entry(i).change(j);
            let change: WireChange = from_raw(change, place)?;
            if change.field != MESSAGES_FIELD {
                parsed.skipped.push(SkippedChange {
                    waba_id: entry.id.0.clone(),
                    field: change.field,
                });
                continue;
            }
            let batch = parse_change_value(entry.id.0.clone(), change.value, place.value())?;
            parsed.batches.push(batch);
        }
    }
    Ok(parsed)
}

/// Where a part of the envelope sits in the body (`entry[0].changes[1].value`), for error
/// messages only: it is spelled out when an error names it, never on the way to a 200.
#[derive(Debug, Clone, Copy)]
struct Place {
    entry: usize,
    change: Option<usize>,
    value: bool,
}

impl Place {
    fn entry(entry: usize) -> Self {
        Self {
            entry,
            change: None,
            value: false,
        }
    }

    fn change(self, change: usize) -> Self {
        Self {
            change: Some(change),
            ..self
        }
    }

    fn value(self) -> Self {
        Self {
            value: true,
            ..self
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry[{}]", self.entry)?;
        if let Some(change) = self.change {
            write!(f, ".changes[{change}]")?;
        }
        if self.value {
            f.write_str(".value")?;
        }
        Ok(())
    }
}

fn parse_change_value(
    waba_id: String,
    value: Option<&RawValue>,
    path: Place,
) -> Result<ChangeBatch, PayloadError> {
    let value: WireValue = match value {
        Some(value) => from_raw(value, path)?,
        None => {
            return Err(PayloadError::at(
                path,
                "missing or null, expected a JSON object",
            ))
        }
    };

    let mut contacts = Vec::with_capacity(value.contacts.len());
    for (k, Obj(contact)) in value.contacts.into_iter().enumerate() {
        let wa_id = contact
            .wa_id
            .map(|id| id.0)
            .or_else(|| contact.user_id.clone())
            .ok_or_else(|| {
                PayloadError::at(
                    format_args!("{path}.contacts[{k}]"),
                    "has neither `wa_id` nor `user_id`",
                )
            })?;
        contacts.push(ContactProfile {
            wa_id,
            user_id: contact.user_id,
            name: contact.profile.and_then(|p| p.0.name),
        });
    }

    let mut messages = Vec::with_capacity(value.messages.len());
    for (k, message) in value.messages.into_iter().enumerate() {
        let message = parse_message(message)
            .map_err(|e| PayloadError::at(format_args!("{path}.messages[{k}]"), e))?;
        messages.push(message);
    }

    let mut statuses = Vec::with_capacity(value.statuses.len());
    for (k, status) in value.statuses.into_iter().enumerate() {
        let status = parse_status(status)
            .map_err(|e| PayloadError::at(format_args!("{path}.statuses[{k}]"), e))?;
        statuses.push(status);
    }

    Ok(ChangeBatch {
        waba_id,
        phone_number_id: value.metadata.0.phone_number_id.0,
        display_phone_number: value.metadata.0.display_phone_number.0,
        contacts,
        messages,
        statuses,
        errors: value.errors.into_iter().map(|e| e.0.into()).collect(),
    })
}

fn parse_message(raw: &RawValue) -> Result<InboundMessage, String> {
    let message = serde_json::from_str::<Obj<WireMessage>>(raw.get())
        .map(|o| o.0)
        .map_err(|e| e.to_string())?;
    let content = parse_content(&message);
    let from = message
        .from
        .map(|f| f.0)
        .or_else(|| message.from_user_id.clone())
        .ok_or("has neither `from` nor `from_user_id`")?;
    let context = view_obj::<WireContext>(message.context).map(ReplyContext::from);
    let referral = view_obj::<WireReferral>(message.referral).map(Referral::from);
    Ok(InboundMessage {
        wamid: message.id,
        from,
        from_user_id: message.from_user_id,
        timestamp: message.timestamp.0,
        content,
        context,
        referral,
        raw: RawJson::from(raw),
    })
}

fn parse_status(raw: &RawValue) -> Result<StatusUpdate, String> {
    let status: WireStatus = serde_json::from_str::<Obj<_>>(raw.get())
        .map(|o| o.0)
        .map_err(|e| e.to_string())?;
    let recipient_id = status
        .recipient_id
        .map(|r| r.0)
        .or_else(|| status.recipient_user_id.clone())
        .ok_or("has neither `recipient_id` nor `recipient_user_id`")?;
    let nested_str = |v: &Option<Value>, key: &str| {
        v.as_ref()
            .and_then(|v| v.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Ok(StatusUpdate {
        wamid: status.id,
        status: DeliveryStatus::from(status.status),
        timestamp: status.timestamp.0,
        recipient_id,
        recipient_user_id: status.recipient_user_id,
        errors: status.errors.into_iter().map(|e| e.0.into()).collect(),
        biz_opaque_callback_data: status.biz_opaque_callback_data,
        conversation_id: nested_str(&status.conversation, "id"),
        pricing_category: nested_str(&status.pricing, "category"),
    })
}

/// Content never fails: anything not in a documented shape becomes `Unsupported`.
fn parse_content(parts: &WireMessage<'_>) -> MessageContent {
    let kind = parts.kind.as_str();
    let media = |part: Option<&RawValue>| view_obj::<WireMedia>(part).map(Media::from);
    let known = match kind {
        "text" => view_obj::<WireText>(parts.text).map(|t| MessageContent::Text { body: t.body }),
        "image" => media(parts.image).map(MessageContent::Image),
        "audio" => media(parts.audio).map(MessageContent::Audio),
        "video" => media(parts.video).map(MessageContent::Video),
        "document" => media(parts.document).map(MessageContent::Document),
        "sticker" => media(parts.sticker).map(MessageContent::Sticker),
        "location" => view_obj::<WireLocation>(parts.location).map(|l| MessageContent::Location {
            latitude: l.latitude.0,
            longitude: l.longitude.0,
            name: l.name,
            address: l.address,
            url: l.url,
        }),
        "contacts" => view::<Vec<Obj<WireSharedContact>>>(parts.contacts)
            .map(|cards| MessageContent::Contacts(cards.into_iter().map(|c| c.0.into()).collect())),
        "interactive" => view_obj::<WireInteractive>(parts.interactive).and_then(|i| {
            match (i.button_reply, i.list_reply) {
                (Some(Obj(b)), _) if i.kind == "button_reply" => {
                    Some(MessageContent::ButtonReply {
                        id: b.id,
                        title: b.title,
                    })
                }
                (_, Some(Obj(l))) if i.kind == "list_reply" => Some(MessageContent::ListReply {
                    id: l.id,
                    title: l.title,
                    description: l.description,
                }),
                _ => None,
            }
        }),
        "button" => view_obj::<WireButton>(parts.button).map(|b| MessageContent::Button {
            payload: b.payload,
            text: b.text,
        }),
        "reaction" => view_obj::<WireReaction>(parts.reaction).map(|r| MessageContent::Reaction {
            message_id: r.message_id,
            emoji: r.emoji.unwrap_or_default(),
        }),
        "order" => view_obj::<WireOrder>(parts.order).map(|o| MessageContent::Order {
            catalog_id: o.catalog_id.0,
            text: o.text,
            items: o.product_items.into_iter().map(|i| i.0.into()).collect(),
        }),
        "system" => view_obj::<WireSystem>(parts.system).map(|s| MessageContent::System {
            body: s.body,
            kind: s.kind,
            new_wa_id: s.wa_id.or(s.new_wa_id).map(|id| id.0),
        }),
        _ => None,
    };
    known.unwrap_or_else(|| MessageContent::Unsupported {
        type_name: unsupported_type_name(parts),
        errors: view::<Vec<Obj<WireError>>>(parts.errors)
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.0.into())
            .collect(),
    })
}

/// For Meta's own `unsupported` type the interesting name is `unsupported.type` (e.g.
/// `poll_update`); for unknown interactive replies it is the sub-type (e.g. `interactive.nfm_reply`).
fn unsupported_type_name(parts: &WireMessage<'_>) -> String {
    let kind = parts.kind.as_str();
    let inner_type = |part: Option<&RawValue>| {
        view_obj::<WireTyped>(part)
            .and_then(|t| t.kind)
            .filter(|t| !t.is_empty())
    };
    match kind {
        "unsupported" => inner_type(parts.unsupported).unwrap_or_else(|| kind.to_string()),
        "interactive" => match inner_type(parts.interactive) {
            Some(sub) => format!("interactive.{sub}"),
            None => kind.to_string(),
        },
        _ => kind.to_string(),
    }
}

#[cfg(test)]
mod tests;
