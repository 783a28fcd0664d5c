//! The outgoing message model and the exact Cloud API request body it becomes.
//!
//! `OutboundContent` is what the rest of wacrm stores in `whatsapp.outgoing.messages` events; it
//! is a serde-tagged enum so a stored event can only hold a shape Meta accepts (an audio message
//! cannot carry a caption, a list header cannot be an image). `to_graph_body` renders the
//! documented `POST /{Version}/{Phone-Number-ID}/messages` body.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Where Meta fetches the media from: an id returned by the media upload endpoint, or a public
/// HTTPS link. Serializes as `{"id": ..}` / `{"link": ..}`, the same keys the Graph body uses.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MediaRef {
    Id(String),
    Link(String),
}

/// Header of a reply-button or call-to-action message.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InteractiveHeader {
    Text(String),
    Image(MediaRef),
    Video(MediaRef),
    Document(MediaRef),
}

/// One quick-reply button; `id` comes back in the customer's `button_reply` webhook.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReplyButton {
    pub id: String,
    pub title: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ListSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub rows: Vec<ListRow>,
}

/// One selectable row; `id` comes back in the customer's `list_reply` webhook.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ListRow {
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Interactive messages. The typed variants cover what the assistant and agents produce;
/// `Raw` carries any other documented `interactive` object (flows, product lists) verbatim.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "interactive_type", rename_all = "snake_case")]
pub enum Interactive {
    Button {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<InteractiveHeader>,
        body: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        footer: Option<String>,
        buttons: Vec<ReplyButton>,
    },
    List {
        /// List messages only support a text header.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<String>,
        body: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        footer: Option<String>,
        /// Label of the button that opens the list.
        button: String,
        sections: Vec<ListSection>,
    },
    CtaUrl {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<InteractiveHeader>,
        body: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        footer: Option<String>,
        display_text: String,
        url: String,
    },
    Raw {
        interactive: Value,
    },
}

/// What we send. Field sets follow the Cloud API: captions exist only on image, video and
/// document; filenames only on document.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutboundContent {
    Text {
        body: String,
        #[serde(default)]
        preview_url: bool,
    },
    Image {
        media: MediaRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
    },
    Audio {
        media: MediaRef,
    },
    Video {
        media: MediaRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
    },
    Document {
        media: MediaRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filename: Option<String>,
    },
    Sticker {
        media: MediaRef,
    },
    Template {
        name: String,
        language_code: String,
        /// The documented `template.components` array, passed through unchanged; `null` or `[]`
        /// for a template without variables.
        #[serde(default)]
        components: Value,
    },
    Interactive(Interactive),
    Reaction {
        message_id: String,
        /// The emoji itself; an empty string removes an earlier reaction.
        emoji: String,
    },
    Location {
        latitude: f64,
        longitude: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
    },
}

impl OutboundContent {
    /// The Graph `type` value, which is also the key of the type object in the body.
    pub fn graph_type(&self) -> &'static str {
        match self {
            Self::Text { .. } => "text",
            Self::Image { .. } => "image",
            Self::Audio { .. } => "audio",
            Self::Video { .. } => "video",
            Self::Document { .. } => "document",
            Self::Sticker { .. } => "sticker",
            Self::Template { .. } => "template",
            Self::Interactive(_) => "interactive",
            Self::Reaction { .. } => "reaction",
            Self::Location { .. } => "location",
        }
    }

    /// Short stable name of the kind of message (same as the Graph `type`).
    pub fn kind(&self) -> &'static str {
        self.graph_type()
    }

    /// What an agent (or the model, in the history) reads for this message.
    pub fn preview_text(&self) -> String {
        fn with_caption(tag: &str, caption: &Option<String>) -> String {
            match caption {
                Some(c) if !c.is_empty() => format!("[{tag}] {c}"),
                _ => format!("[{tag}]"),
            }
        }
        match self {
            Self::Text { body, .. } => body.clone(),
            Self::Image { caption, .. } => with_caption("image", caption),
            Self::Audio { .. } => "[audio]".into(),
            Self::Video { caption, .. } => with_caption("video", caption),
            Self::Document {
                caption, filename, ..
            } => with_caption("document", &caption.clone().or_else(|| filename.clone())),
            Self::Sticker { .. } => "[sticker]".into(),
            Self::Template { name, .. } => format!("[template {name}]"),
            Self::Interactive(i) => match i {
                Interactive::Button { body, .. }
                | Interactive::List { body, .. }
                | Interactive::CtaUrl { body, .. } => body.clone(),
                Interactive::Raw { .. } => "[interactive]".into(),
            },
            Self::Reaction { emoji, .. } => format!("[reaction {emoji}]"),
            Self::Location { name, address, .. } => {
                let place = [name.as_deref(), address.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("[location] {place}")
            }
        }
    }

    /// Whether Meta only accepts this inside the 24-hour customer service window. Only approved
    /// templates may open or re-open a conversation; everything else gets error 131047 outside
    /// the window.
    pub fn is_free_form(&self) -> bool {
        !matches!(self, Self::Template { .. })
    }

    /// The documented request body of `POST /{Version}/{Phone-Number-ID}/messages`.
    ///
    /// `reply_to` quotes an earlier message (`context.message_id`); `biz_opaque_callback_data`
    /// is echoed back by Meta in every status webhook of this message, which lets the status
    /// handler find our outbox row without a lookup by wamid.
    pub fn to_graph_body(
        &self,
        to: &str,
        reply_to: Option<&str>,
        biz_opaque_callback_data: Option<&str>,
    ) -> Value {
        let mut body = Map::new();
        body.insert("messaging_product".into(), json!("whatsapp"));
        body.insert("recipient_type".into(), json!("individual"));
        body.insert("to".into(), json!(to));
        if let Some(message_id) = reply_to {
            body.insert("context".into(), json!({ "message_id": message_id }));
        }
        let kind = self.graph_type();
        body.insert("type".into(), json!(kind));
        body.insert(kind.into(), self.type_object());
        if let Some(data) = biz_opaque_callback_data {
            body.insert("biz_opaque_callback_data".into(), json!(data));
        }
        Value::Object(body)
    }

    fn type_object(&self) -> Value {
        match self {
            Self::Text { body, preview_url } => json!({ "preview_url": preview_url, "body": body }),
            Self::Image { media, caption } | Self::Video { media, caption } => {
                let mut obj = media_object(media);
                insert_opt(&mut obj, "caption", caption.as_deref());
                Value::Object(obj)
            }
            Self::Audio { media } | Self::Sticker { media } => Value::Object(media_object(media)),
            Self::Document {
                media,
                caption,
                filename,
            } => {
                let mut obj = media_object(media);
                insert_opt(&mut obj, "caption", caption.as_deref());
                insert_opt(&mut obj, "filename", filename.as_deref());
                Value::Object(obj)
            }
            Self::Template {
                name,
                language_code,
                components,
            } => {
                let mut obj = Map::new();
                obj.insert("name".into(), json!(name));
                obj.insert("language".into(), json!({ "code": language_code }));
                let empty = match components {
                    Value::Null => true,
                    Value::Array(items) => items.is_empty(),
                    _ => false,
                };
                if !empty {
                    obj.insert("components".into(), components.clone());
                }
                Value::Object(obj)
            }
            Self::Interactive(interactive) => interactive.to_graph(),
            Self::Reaction { message_id, emoji } => {
                json!({ "message_id": message_id, "emoji": emoji })
            }
            Self::Location {
                latitude,
                longitude,
                name,
                address,
            } => {
                // The reference documents latitude and longitude as decimal-degree strings.
                let mut obj = Map::new();
                obj.insert("latitude".into(), json!(latitude.to_string()));
                obj.insert("longitude".into(), json!(longitude.to_string()));
                insert_opt(&mut obj, "name", name.as_deref());
                insert_opt(&mut obj, "address", address.as_deref());
                Value::Object(obj)
            }
        }
    }
}

impl Interactive {
    fn to_graph(&self) -> Value {
        match self {
            Self::Button {
                header,
                body,
                footer,
                buttons,
            } => {
                let buttons: Vec<Value> = buttons
                    .iter()
                    .map(|b| json!({ "type": "reply", "reply": { "id": b.id, "title": b.title } }))
                    .collect();
                interactive_object(
                    "button",
                    header.as_ref().map(InteractiveHeader::to_graph),
                    body,
                    footer.as_deref(),
                    json!({ "buttons": buttons }),
                )
            }
            Self::List {
                header,
                body,
                footer,
                button,
                sections,
            } => interactive_object(
                "list",
                header
                    .as_ref()
                    .map(|t| json!({ "type": "text", "text": t })),
                body,
                footer.as_deref(),
                json!({ "button": button, "sections": sections }),
            ),
            Self::CtaUrl {
                header,
                body,
                footer,
                display_text,
                url,
            } => interactive_object(
                "cta_url",
                header.as_ref().map(InteractiveHeader::to_graph),
                body,
                footer.as_deref(),
                json!({
                    "name": "cta_url",
                    "parameters": { "display_text": display_text, "url": url }
                }),
            ),
            Self::Raw { interactive } => interactive.clone(),
        }
    }
}

impl InteractiveHeader {
    fn to_graph(&self) -> Value {
        match self {
            Self::Text(text) => json!({ "type": "text", "text": text }),
            Self::Image(media) => json!({ "type": "image", "image": media_object(media) }),
            Self::Video(media) => json!({ "type": "video", "video": media_object(media) }),
            Self::Document(media) => {
                json!({ "type": "document", "document": media_object(media) })
            }
        }
    }
}

fn interactive_object(
    kind: &str,
    header: Option<Value>,
    body: &str,
    footer: Option<&str>,
    action: Value,
) -> Value {
    let mut obj = Map::new();
    obj.insert("type".into(), json!(kind));
    if let Some(header) = header {
        obj.insert("header".into(), header);
    }
    obj.insert("body".into(), json!({ "text": body }));
    if let Some(footer) = footer {
        obj.insert("footer".into(), json!({ "text": footer }));
    }
    obj.insert("action".into(), action);
    Value::Object(obj)
}

fn media_object(media: &MediaRef) -> Map<String, Value> {
    let mut obj = Map::new();
    match media {
        MediaRef::Id(id) => obj.insert("id".into(), json!(id)),
        MediaRef::Link(link) => obj.insert("link".into(), json!(link)),
    };
    obj
}

fn insert_opt(obj: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(value) = value {
        obj.insert(key.into(), json!(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TO: &str = "+16505551234";

    #[test]
    fn text_body_matches_reference() {
        let msg = OutboundContent::Text {
            body: "Hello, how can we help?".into(),
            preview_url: false,
        };
        assert_eq!(
            msg.to_graph_body(TO, None, None),
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": TO,
                "type": "text",
                "text": { "preview_url": false, "body": "Hello, how can we help?" }
            })
        );
        assert!(msg.is_free_form());
    }

    #[test]
    fn image_by_link_with_caption() {
        let msg = OutboundContent::Image {
            media: MediaRef::Link("https://example.com/menu.jpg".into()),
            caption: Some("Today's menu".into()),
        };
        assert_eq!(
            msg.to_graph_body(TO, None, None),
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": TO,
                "type": "image",
                "image": { "link": "https://example.com/menu.jpg", "caption": "Today's menu" }
            })
        );
    }

    #[test]
    fn document_by_id_with_filename_and_audio_without_caption() {
        let doc = OutboundContent::Document {
            media: MediaRef::Id("1013859600285441".into()),
            caption: None,
            filename: Some("invoice.pdf".into()),
        };
        assert_eq!(
            doc.to_graph_body(TO, None, None)["document"],
            json!({ "id": "1013859600285441", "filename": "invoice.pdf" })
        );
        let audio = OutboundContent::Audio {
            media: MediaRef::Id("42".into()),
        };
        assert_eq!(
            audio.to_graph_body(TO, None, None)["audio"],
            json!({ "id": "42" })
        );
    }

    #[test]
    fn template_with_components() {
        let components = json!([
            { "type": "body", "parameters": [ { "type": "text", "text": "Alex" } ] }
        ]);
        let msg = OutboundContent::Template {
            name: "order_update".into(),
            language_code: "en_US".into(),
            components: components.clone(),
        };
        assert_eq!(
            msg.to_graph_body(TO, None, Some("outbox:42")),
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": TO,
                "type": "template",
                "template": {
                    "name": "order_update",
                    "language": { "code": "en_US" },
                    "components": components
                },
                "biz_opaque_callback_data": "outbox:42"
            })
        );
        assert!(!msg.is_free_form());
    }

    #[test]
    fn template_without_components_omits_the_key() {
        let msg = OutboundContent::Template {
            name: "hello_world".into(),
            language_code: "en_US".into(),
            components: Value::Null,
        };
        assert_eq!(
            msg.to_graph_body(TO, None, None)["template"],
            json!({ "name": "hello_world", "language": { "code": "en_US" } })
        );
    }

    #[test]
    fn reply_sets_context_message_id() {
        let msg = OutboundContent::Text {
            body: "Yes, we are open".into(),
            preview_url: true,
        };
        let body = msg.to_graph_body(TO, Some("wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFF"), None);
        assert_eq!(
            body["context"],
            json!({ "message_id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFF" })
        );
        assert_eq!(body["text"]["preview_url"], json!(true));
    }

    #[test]
    fn reaction_body() {
        let msg = OutboundContent::Reaction {
            message_id: "wamid.ABC".into(),
            emoji: "\u{1F600}".into(),
        };
        assert_eq!(
            msg.to_graph_body(TO, None, None),
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": TO,
                "type": "reaction",
                "reaction": { "message_id": "wamid.ABC", "emoji": "\u{1F600}" }
            })
        );
    }

    #[test]
    fn location_uses_decimal_degree_strings() {
        let msg = OutboundContent::Location {
            latitude: 37.44216251868683,
            longitude: -122.16153582049394,
            name: Some("Philz Coffee".into()),
            address: None,
        };
        assert_eq!(
            msg.to_graph_body(TO, None, None)["location"],
            json!({
                "latitude": "37.44216251868683",
                "longitude": "-122.16153582049394",
                "name": "Philz Coffee"
            })
        );
    }

    #[test]
    fn interactive_buttons_and_list() {
        let buttons = OutboundContent::Interactive(Interactive::Button {
            header: None,
            body: "Was this helpful?".into(),
            footer: Some("Acme support".into()),
            buttons: vec![
                ReplyButton {
                    id: "yes".into(),
                    title: "Yes".into(),
                },
                ReplyButton {
                    id: "agent".into(),
                    title: "Talk to a person".into(),
                },
            ],
        });
        assert_eq!(
            buttons.to_graph_body(TO, None, None)["interactive"],
            json!({
                "type": "button",
                "body": { "text": "Was this helpful?" },
                "footer": { "text": "Acme support" },
                "action": { "buttons": [
                    { "type": "reply", "reply": { "id": "yes", "title": "Yes" } },
                    { "type": "reply", "reply": { "id": "agent", "title": "Talk to a person" } }
                ] }
            })
        );
        let list = OutboundContent::Interactive(Interactive::List {
            header: Some("Branches".into()),
            body: "Pick a branch".into(),
            footer: None,
            button: "Choose".into(),
            sections: vec![ListSection {
                title: None,
                rows: vec![ListRow {
                    id: "b1".into(),
                    title: "Downtown".into(),
                    description: Some("Open till 9".into()),
                }],
            }],
        });
        assert_eq!(
            list.to_graph_body(TO, None, None)["interactive"],
            json!({
                "type": "list",
                "header": { "type": "text", "text": "Branches" },
                "body": { "text": "Pick a branch" },
                "action": {
                    "button": "Choose",
                    "sections": [ { "rows": [
                        { "id": "b1", "title": "Downtown", "description": "Open till 9" }
                    ] } ]
                }
            })
        );
    }

    #[test]
    fn serde_round_trip_of_every_variant() {
        let all = vec![
            OutboundContent::Text {
                body: "hi".into(),
                preview_url: false,
            },
            OutboundContent::Image {
                media: MediaRef::Link("https://x/y.png".into()),
                caption: None,
            },
            OutboundContent::Audio {
                media: MediaRef::Id("1".into()),
            },
            OutboundContent::Video {
                media: MediaRef::Id("2".into()),
                caption: Some("c".into()),
            },
            OutboundContent::Document {
                media: MediaRef::Id("3".into()),
                caption: None,
                filename: Some("a.pdf".into()),
            },
            OutboundContent::Sticker {
                media: MediaRef::Id("4".into()),
            },
            OutboundContent::Template {
                name: "t".into(),
                language_code: "de".into(),
                components: json!([]),
            },
            OutboundContent::Interactive(Interactive::CtaUrl {
                header: Some(InteractiveHeader::Image(MediaRef::Link(
                    "https://x/h.png".into(),
                ))),
                body: "b".into(),
                footer: None,
                display_text: "Open".into(),
                url: "https://x".into(),
            }),
            OutboundContent::Interactive(Interactive::Raw {
                interactive: json!({ "type": "flow" }),
            }),
            OutboundContent::Reaction {
                message_id: "wamid.X".into(),
                emoji: String::new(),
            },
            OutboundContent::Location {
                latitude: 1.5,
                longitude: -2.25,
                name: None,
                address: Some("Main St".into()),
            },
        ];
        for msg in all {
            let text = serde_json::to_string(&msg).unwrap();
            let back: OutboundContent = serde_json::from_str(&text).unwrap();
            assert_eq!(back, msg, "{text}");
            let body = msg.to_graph_body("1", None, None);
            assert_eq!(body["type"], json!(msg.graph_type()));
            assert!(body[msg.graph_type()].is_object());
        }
    }
}
