//! Parser tests against fixtures modelled on Meta's webhook reference examples.

use super::*;
use proptest::prelude::*;
use serde_json::json;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/webhooks/", $name, ".json"))
    };
}

const FIXTURES: &[(&str, &str)] = &[
    ("text", fixture!("text")),
    ("text_reply_context", fixture!("text_reply_context")),
    ("image", fixture!("image")),
    ("audio", fixture!("audio")),
    ("video", fixture!("video")),
    ("document", fixture!("document")),
    ("sticker", fixture!("sticker")),
    ("location", fixture!("location")),
    ("contacts", fixture!("contacts")),
    (
        "interactive_button_reply",
        fixture!("interactive_button_reply"),
    ),
    ("interactive_list_reply", fixture!("interactive_list_reply")),
    ("button", fixture!("button")),
    ("reaction", fixture!("reaction")),
    ("order", fixture!("order")),
    ("system", fixture!("system")),
    (
        "system_user_changed_number",
        fixture!("system_user_changed_number"),
    ),
    ("referral", fixture!("referral")),
    ("unsupported", fixture!("unsupported")),
    ("unknown_type", fixture!("unknown_type")),
    ("status_sent", fixture!("status_sent")),
    ("status_delivered", fixture!("status_delivered")),
    ("status_read", fixture!("status_read")),
    ("status_failed", fixture!("status_failed")),
    ("multi_message", fixture!("multi_message")),
    ("multi_entry", fixture!("multi_entry")),
    ("non_messages_field", fixture!("non_messages_field")),
];

const WABA: &str = "102290129340398";
const PHONE_ID: &str = "106540352242922";
const CUSTOMER: &str = "16505551234";
const OUTBOUND: &str = "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI3RjBCMDhFQTE5QTUwMkQ2QzIA";

fn one_batch(body: &str) -> ChangeBatch {
    let mut batches = parse_webhook(body.as_bytes()).unwrap();
    assert_eq!(batches.len(), 1, "expected exactly one batch");
    batches.remove(0)
}

/// The single message of a single-message fixture, after checking the common envelope.
fn only_message(body: &str) -> InboundMessage {
    let mut batch = one_batch(body);
    assert_eq!(batch.waba_id, WABA);
    assert_eq!(batch.phone_number_id, PHONE_ID);
    assert_eq!(batch.display_phone_number, "15550783881");
    assert_eq!(batch.messages.len(), 1);
    assert!(batch.statuses.is_empty());
    let message = batch.messages.remove(0);
    assert_eq!(message.from, CUSTOMER);
    assert!(message.wamid.starts_with("wamid."));
    message
}

fn only_status(body: &str) -> StatusUpdate {
    let mut batch = one_batch(body);
    assert!(batch.messages.is_empty());
    assert_eq!(batch.statuses.len(), 1);
    batch.statuses.remove(0)
}

fn malformed(body: &[u8]) -> String {
    match parse_webhook(body) {
        Err(e) => {
            assert_eq!(e.code(), "malformed_payload");
            e.to_string()
        }
        Ok(batches) => panic!("expected an error, got {batches:?}"),
    }
}

#[test]
fn every_fixture_parses() {
    for (name, body) in FIXTURES {
        if let Err(e) = parse_webhook(body.as_bytes()) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn text_message_with_contact_profile() {
    let batch = one_batch(fixture!("text"));
    assert_eq!(
        batch.contacts,
        vec![ContactProfile {
            wa_id: CUSTOMER.into(),
            user_id: None,
            name: Some("Sheena Nelson".into()),
        }]
    );
    let m = only_message(fixture!("text"));
    assert_eq!(
        m.wamid,
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
    );
    assert_eq!(m.timestamp, 1_749_416_383);
    assert_eq!(
        m.content,
        MessageContent::Text {
            body: "Does it come in another color?".into()
        }
    );
    assert_eq!(m.context, None);
    assert_eq!(m.referral, None);
    assert_eq!(m.from_user_id, None);
}

#[test]
fn raw_is_the_original_message_object() {
    let m = only_message(fixture!("text"));
    let original: Value = serde_json::from_str(fixture!("text")).unwrap();
    assert_eq!(
        m.raw.to_value(),
        original["entry"][0]["changes"][0]["value"]["messages"][0]
    );
}

#[test]
fn reply_context_points_at_our_message() {
    let m = only_message(fixture!("text_reply_context"));
    assert_eq!(
        m.content,
        MessageContent::Text {
            body: "Yes, the blue one please".into()
        }
    );
    assert_eq!(
        m.context,
        Some(ReplyContext {
            message_id: Some(OUTBOUND.into()),
            from: Some("15550783881".into()),
            forwarded: false,
            frequently_forwarded: false,
            referred_product: None,
        })
    );
}

#[test]
fn media_messages() {
    let MessageContent::Image(image) = only_message(fixture!("image")).content else {
        panic!("not an image");
    };
    assert_eq!(image.id, "1003383421387256");
    assert_eq!(image.mime_type.as_deref(), Some("image/jpeg"));
    assert_eq!(image.caption.as_deref(), Some("This one is scratched"));
    assert!(image.sha256.is_some() && image.url.is_some());

    let MessageContent::Audio(audio) = only_message(fixture!("audio")).content else {
        panic!("not audio");
    };
    assert_eq!(audio.id, "1945612679579342");
    assert_eq!(audio.mime_type.as_deref(), Some("audio/ogg; codecs=opus"));
    assert_eq!(audio.voice, Some(true));

    let MessageContent::Video(video) = only_message(fixture!("video")).content else {
        panic!("not video");
    };
    assert_eq!(video.mime_type.as_deref(), Some("video/mp4"));
    assert_eq!(
        video.caption.as_deref(),
        Some("How it looks when switched on")
    );

    let MessageContent::Document(doc) = only_message(fixture!("document")).content else {
        panic!("not a document");
    };
    assert_eq!(doc.filename.as_deref(), Some("receipt-2025-06.pdf"));
    assert_eq!(doc.mime_type.as_deref(), Some("application/pdf"));
    assert_eq!(doc.caption.as_deref(), Some("My receipt"));

    let MessageContent::Sticker(sticker) = only_message(fixture!("sticker")).content else {
        panic!("not a sticker");
    };
    assert_eq!(sticker.mime_type.as_deref(), Some("image/webp"));
    assert_eq!(sticker.animated, Some(false));
}

#[test]
fn location_message() {
    assert_eq!(
        only_message(fixture!("location")).content,
        MessageContent::Location {
            latitude: 37.483307,
            longitude: -122.148981,
            name: Some("Meta Headquarters".into()),
            address: Some("1 Hacker Way, Menlo Park, CA 94025".into()),
            url: Some("https://meta.com".into()),
        }
    );
}

#[test]
fn shared_contacts() {
    assert_eq!(
        only_message(fixture!("contacts")).content,
        MessageContent::Contacts(vec![SharedContact {
            formatted_name: Some("Barbara J. Johnson".into()),
            first_name: Some("Barbara".into()),
            last_name: Some("Johnson".into()),
            organization: Some("Lucky Shrub".into()),
            phones: vec![SharedPhone {
                phone: Some("+1 (415) 555-0185".into()),
                wa_id: Some("14155550185".into()),
                kind: Some("WORK".into()),
            }],
            emails: vec!["bjohnson@example.com".into()],
        }])
    );
}

#[test]
fn interactive_replies_and_template_button() {
    let m = only_message(fixture!("interactive_button_reply"));
    assert_eq!(
        m.content,
        MessageContent::ButtonReply {
            id: "cancel-button".into(),
            title: "Cancel".into()
        }
    );
    assert!(m.context.is_some());
    assert_eq!(
        only_message(fixture!("interactive_list_reply")).content,
        MessageContent::ListReply {
            id: "priority_express".into(),
            title: "Priority Mail Express".into(),
            description: Some("Next Day to 2 Days".into()),
        }
    );
    assert_eq!(
        only_message(fixture!("button")).content,
        MessageContent::Button {
            payload: Some("STOP_PROMOTIONS".into()),
            text: "Stop promotions".into()
        }
    );
}

#[test]
fn reaction_and_removed_reaction() {
    assert_eq!(
        only_message(fixture!("reaction")).content,
        MessageContent::Reaction {
            message_id: OUTBOUND.into(),
            emoji: "\u{1F44D}".into()
        }
    );
    let mut body: Value = serde_json::from_str(fixture!("reaction")).unwrap();
    let reaction = &mut body["entry"][0]["changes"][0]["value"]["messages"][0]["reaction"];
    reaction.as_object_mut().unwrap().remove("emoji");
    let m = only_message(&body.to_string());
    assert_eq!(
        m.content,
        MessageContent::Reaction {
            message_id: OUTBOUND.into(),
            emoji: String::new()
        }
    );
    assert_eq!(m.content.preview_text(), "[reaction removed]");
}

#[test]
fn order_keeps_prices_as_decimal_text() {
    assert_eq!(
        only_message(fixture!("order")).content,
        MessageContent::Order {
            catalog_id: "194836987003835".into(),
            text: Some("Please deliver after 5pm".into()),
            items: vec![
                OrderItem {
                    product_retailer_id: "di9ozbzfi4".into(),
                    quantity: 2,
                    item_price: Some("30.5".into()),
                    currency: Some("USD".into()),
                },
                OrderItem {
                    product_retailer_id: "nqryix03ez".into(),
                    quantity: 1,
                    item_price: Some("25".into()),
                    currency: Some("USD".into()),
                },
            ],
        }
    );
}

#[test]
fn system_number_change_old_and_new_names() {
    let batch = one_batch(fixture!("system"));
    assert!(
        batch.contacts.is_empty(),
        "system webhooks carry no contacts"
    );
    assert_eq!(
        only_message(fixture!("system")).content,
        MessageContent::System {
            body: "User Sheena Nelson changed from 16505551234 to 12195555358".into(),
            kind: "customer_changed_number".into(),
            new_wa_id: Some("12195555358".into()),
        }
    );
    let MessageContent::System {
        kind, new_wa_id, ..
    } = only_message(fixture!("system_user_changed_number")).content
    else {
        panic!("not a system message");
    };
    assert_eq!(kind, "user_changed_number");
    assert_eq!(new_wa_id.as_deref(), Some("12195555358"));

    let legacy = json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{
        "field": "messages", "value": {"metadata": {"display_phone_number": "1", "phone_number_id": "2"},
        "messages": [{"from": CUSTOMER, "id": "wamid.X", "timestamp": "1", "type": "system",
            "system": {"body": "changed", "new_wa_id": "12195555358", "type": "customer_changed_number"}}]}}]}]});
    let batch = one_batch(&legacy.to_string());
    let MessageContent::System { new_wa_id, .. } = &batch.messages[0].content else {
        panic!("not a system message");
    };
    assert_eq!(new_wa_id.as_deref(), Some("12195555358"));
}

#[test]
fn click_to_whatsapp_referral() {
    let m = only_message(fixture!("referral"));
    assert_eq!(m.content.kind(), "text");
    let referral = m.referral.unwrap();
    assert_eq!(referral.source_type.as_deref(), Some("ad"));
    assert_eq!(referral.source_id.as_deref(), Some("120226305854810726"));
    assert_eq!(
        referral.source_url.as_deref(),
        Some("https://fb.me/3cr4Wqqkv")
    );
    assert_eq!(referral.headline.as_deref(), Some("Chat with us"));
    assert_eq!(referral.media_type.as_deref(), Some("image"));
    assert!(referral.ctwa_clid.unwrap().starts_with("Aff-"));
    assert_eq!(
        referral.welcome_message.as_deref(),
        Some("Hi there! Let us know how we can help!")
    );
}

#[test]
fn meta_unsupported_type_keeps_inner_type_and_errors() {
    let m = only_message(fixture!("unsupported"));
    assert_eq!(
        m.content,
        MessageContent::Unsupported {
            type_name: "poll_update".into(),
            errors: vec![GraphErrorInfo {
                code: 131051,
                title: Some("Message type unknown".into()),
                message: Some("Message type unknown".into()),
                details: Some("Message type is currently not supported.".into()),
            }],
        }
    );
    assert_eq!(m.raw.to_value()["type"], "unsupported");
}

#[test]
fn unknown_future_type_is_kept_as_unsupported() {
    let m = only_message(fixture!("unknown_type"));
    assert_eq!(
        m.content,
        MessageContent::Unsupported {
            type_name: "poll".into(),
            errors: vec![]
        }
    );
    assert_eq!(m.raw.to_value()["poll"]["options"][1]["name"], "Green");
    assert_eq!(m.content.preview_text(), "[unsupported message: poll]");
}

#[test]
fn known_type_with_unexpected_content_is_kept_as_unsupported() {
    let mut body: Value = serde_json::from_str(fixture!("text")).unwrap();
    body["entry"][0]["changes"][0]["value"]["messages"][0]["text"] = json!({"bodyy": 1});
    let m = only_message(&body.to_string());
    assert_eq!(
        m.content,
        MessageContent::Unsupported {
            type_name: "text".into(),
            errors: vec![]
        }
    );

    let mut body: Value = serde_json::from_str(fixture!("interactive_button_reply")).unwrap();
    body["entry"][0]["changes"][0]["value"]["messages"][0]["interactive"] =
        json!({"type": "nfm_reply", "nfm_reply": {"response_json": "{}"}});
    let MessageContent::Unsupported { type_name, .. } = only_message(&body.to_string()).content
    else {
        panic!("expected unsupported");
    };
    assert_eq!(type_name, "interactive.nfm_reply");
}

#[test]
fn statuses_sent_delivered_read() {
    let sent = only_status(fixture!("status_sent"));
    assert_eq!(
        sent,
        StatusUpdate {
            wamid: OUTBOUND.into(),
            status: DeliveryStatus::Sent,
            timestamp: 1_749_416_750,
            recipient_id: CUSTOMER.into(),
            recipient_user_id: None,
            errors: vec![],
            biz_opaque_callback_data: Some("outbox:0195f2a0-7c1e-7bd1-9a53-2f7c3c9e1d42".into()),
            conversation_id: Some("6ceb9d929c0a3d9b8d9cb5b1ab2b0b1a".into()),
            pricing_category: Some("service".into()),
        }
    );
    let delivered = only_status(fixture!("status_delivered"));
    assert_eq!(delivered.status, DeliveryStatus::Delivered);
    assert_eq!(delivered.conversation_id, sent.conversation_id);
    let read = only_status(fixture!("status_read"));
    assert_eq!(read.status, DeliveryStatus::Read);
    assert_eq!(read.conversation_id, None);
    assert_eq!(read.pricing_category, None);
    assert_eq!(read.biz_opaque_callback_data, sent.biz_opaque_callback_data);
}

#[test]
fn failed_status_carries_error_details() {
    let failed = only_status(fixture!("status_failed"));
    assert_eq!(failed.status, DeliveryStatus::Failed);
    assert_eq!(failed.errors.len(), 1);
    let error = &failed.errors[0];
    assert_eq!(error.code, 131047);
    assert_eq!(error.title.as_deref(), Some("Re-engagement message"));
    assert!(error
        .details
        .as_deref()
        .unwrap()
        .contains("more than 24 hours"));
    assert_eq!(
        failed.biz_opaque_callback_data.as_deref(),
        Some("outbox:0195f2b9-11aa-7c3e-8d2f-44b8a6e0c913")
    );
}

#[test]
fn unknown_status_is_kept_verbatim() {
    let mut body: Value = serde_json::from_str(fixture!("status_read")).unwrap();
    body["entry"][0]["changes"][0]["value"]["statuses"][0]["status"] = json!("played");
    assert_eq!(
        only_status(&body.to_string()).status,
        DeliveryStatus::Other("played".into())
    );
}

#[test]
fn multi_message_yields_every_item_in_order() {
    let batch = one_batch(fixture!("multi_message"));
    assert_eq!(batch.contacts.len(), 2);
    let kinds: Vec<(&str, &str)> = batch
        .messages
        .iter()
        .map(|m| (m.from.as_str(), m.content.kind()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (CUSTOMER, "text"),
            (CUSTOMER, "text"),
            ("919876543210", "image")
        ]
    );
    assert_eq!(batch.statuses.len(), 1);
    assert_eq!(batch.statuses[0].status, DeliveryStatus::Delivered);
}

#[test]
fn multi_entry_yields_one_batch_per_phone_number() {
    let batches = parse_webhook(fixture!("multi_entry").as_bytes()).unwrap();
    let routes: Vec<(&str, &str, usize)> = batches
        .iter()
        .map(|b| {
            (
                b.waba_id.as_str(),
                b.phone_number_id.as_str(),
                b.messages.len(),
            )
        })
        .collect();
    assert_eq!(
        routes,
        vec![
            (WABA, PHONE_ID, 1),
            ("209876543210987", "113344556677889", 1)
        ]
    );
    assert_eq!(batches[1].messages[0].from, "447700900123");
    assert_eq!(batches[1].contacts[0].name.as_deref(), Some("Oliver Smith"));
}

#[test]
fn other_fields_are_skipped_and_reported() {
    let parsed = parse_webhook_full(fixture!("non_messages_field").as_bytes()).unwrap();
    assert!(parsed.batches.is_empty());
    assert_eq!(
        parsed.skipped,
        vec![SkippedChange {
            waba_id: WABA.into(),
            field: "message_template_status_update".into()
        }]
    );
    assert!(parse_webhook(fixture!("non_messages_field").as_bytes())
        .unwrap()
        .is_empty());
}

/// Adds an unknown field to every object in the document.
fn add_unknown_fields(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for child in map.values_mut() {
                add_unknown_fields(child);
            }
            map.insert(
                "zz_added_by_meta_later".into(),
                json!({"nested": [1, "two", null]}),
            );
        }
        Value::Array(items) => items.iter_mut().for_each(add_unknown_fields),
        _ => {}
    }
}

#[test]
fn unknown_fields_everywhere_are_tolerated() {
    for (name, body) in FIXTURES {
        let plain = parse_webhook_full(body.as_bytes()).unwrap();
        let mut extended: Value = serde_json::from_str(body).unwrap();
        add_unknown_fields(&mut extended);
        let mut with_extras = parse_webhook_full(extended.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // Only `raw` may differ: it faithfully keeps the extra fields.
        for batch in &mut with_extras.batches {
            for m in &mut batch.messages {
                assert!(m.raw.to_value().get("zz_added_by_meta_later").is_some());
            }
        }
        let strip_raw = |p: &ParsedWebhook| {
            let mut p = p.clone();
            for b in &mut p.batches {
                for m in &mut b.messages {
                    m.raw = Value::Null.into();
                }
            }
            p
        };
        assert_eq!(strip_raw(&plain), strip_raw(&with_extras), "{name}");
    }
}

#[test]
fn business_scoped_user_ids_stand_in_for_withheld_phone_numbers() {
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_ID},
        "contacts": [{"profile": {"name": "Sheena"}, "user_id": "US.13491208655302741918"}],
        "messages": [{"from_user_id": "US.13491208655302741918", "id": "wamid.Y", "timestamp": "1749416383",
            "type": "text", "text": {"body": "hi"}}],
        "statuses": [{"id": "wamid.Z", "status": "read", "timestamp": "1749416384",
            "recipient_user_id": "US.13491208655302741918"}]}}]}]});
    let batch = one_batch(&body.to_string());
    assert_eq!(batch.contacts[0].wa_id, "US.13491208655302741918");
    assert_eq!(
        batch.contacts[0].user_id.as_deref(),
        Some("US.13491208655302741918")
    );
    assert_eq!(batch.messages[0].from, "US.13491208655302741918");
    assert_eq!(
        batch.messages[0].from_user_id.as_deref(),
        Some("US.13491208655302741918")
    );
    assert_eq!(batch.statuses[0].recipient_id, "US.13491208655302741918");
}

#[test]
fn numeric_ids_and_timestamps_are_accepted() {
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": 102290129340398u64, "changes": [{
        "field": "messages", "value": {
        "metadata": {"display_phone_number": 15550783881u64, "phone_number_id": 106540352242922u64},
        "messages": [{"from": 16505551234u64, "id": "wamid.N", "timestamp": 1749416383,
            "type": "text", "text": {"body": "hi"}}]}}]}]});
    let batch = one_batch(&body.to_string());
    assert_eq!(batch.waba_id, WABA);
    assert_eq!(batch.phone_number_id, PHONE_ID);
    assert_eq!(batch.messages[0].from, CUSTOMER);
    assert_eq!(batch.messages[0].timestamp, 1_749_416_383);
}

#[test]
fn malformed_bodies_are_errors_that_say_what_is_wrong() {
    assert!(malformed(b"").contains("body: not valid JSON"));
    assert!(malformed(b"not json").contains("body: not valid JSON"));
    assert!(malformed(b"{\"object\": ").contains("body: not valid JSON"));
    assert!(malformed(b"[]").contains("invalid type: sequence, expected a JSON object"));
    assert!(malformed(b"{}").contains("missing field `object`"));
    assert!(
        malformed(br#"{"object":"whatsapp_business_account"}"#).contains("missing field `entry`")
    );
    assert!(malformed(br#"{"object":"page","entry":[]}"#)
        .contains(r#"object: is "page", expected "whatsapp_business_account""#));
    assert!(
        malformed(br#"{"object":"whatsapp_business_account","entry":[{"changes":[]}]}"#)
            .contains("entry[0]: missing field `id`")
    );
    assert!(malformed(
        br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"value":{}}]}]}"#
    )
    .contains("entry[0].changes[0]: missing field `field`"));

    let without_metadata = mutate_fixture(fixture!("text"), |value| {
        value.as_object_mut().unwrap().remove("metadata");
    });
    assert!(malformed(without_metadata.as_bytes())
        .contains("entry[0].changes[0].value: missing field `metadata`"));

    let not_an_object = mutate_fixture(fixture!("text"), |value| *value = json!("oops"));
    assert!(malformed(not_an_object.as_bytes()).contains("entry[0].changes[0].value"));
}

#[test]
fn arrays_are_not_accepted_in_place_of_objects() {
    // Derived serde structs accept arrays positionally; a payload in that shape is not Meta's.
    assert!(malformed(br#"["whatsapp_business_account", []]"#).contains("expected a JSON object"));
    let positional = json!({"object": "whatsapp_business_account", "entry": [["1", []]]});
    assert!(malformed(positional.to_string().as_bytes()).contains("entry[0]"));
    let value_as_array = mutate_fixture(fixture!("text"), |v| {
        *v = json!([{"display_phone_number": "1", "phone_number_id": "2"}]);
    });
    assert!(malformed(value_as_array.as_bytes()).contains("entry[0].changes[0].value"));
    let metadata_as_array = mutate_fixture(fixture!("text"), |v| {
        v["metadata"] = json!(["15550783881", "106540352242922"]);
    });
    assert!(malformed(metadata_as_array.as_bytes()).contains("expected a JSON object"));
    let message_as_array = mutate_fixture(fixture!("text"), |v| {
        v["messages"][0] = json!(["wamid.X", CUSTOMER, "1749416383", "text"]);
    });
    assert!(malformed(message_as_array.as_bytes()).contains("messages[0]"));

    let content_as_array = mutate_fixture(fixture!("text"), |v| {
        v["messages"][0]["text"] = json!(["hello"]);
    });
    assert_eq!(
        only_message(&content_as_array).content,
        MessageContent::Unsupported {
            type_name: "text".into(),
            errors: vec![]
        }
    );
}

/// Applies `f` to `entry[0].changes[0].value` of a fixture.
fn mutate_fixture(body: &str, f: impl FnOnce(&mut Value)) -> String {
    let mut doc: Value = serde_json::from_str(body).unwrap();
    f(&mut doc["entry"][0]["changes"][0]["value"]);
    doc.to_string()
}

#[test]
fn bad_timestamps_are_malformed() {
    for bad in [
        json!("abc"),
        json!(""),
        json!("-5"),
        json!("+5"),
        json!("12.5"),
        json!(" 1749416383"),
        json!("99999999999999999999"),
        json!(-1),
        json!(1.5),
        json!(null),
        json!({}),
    ] {
        let body = mutate_fixture(fixture!("text"), |v| {
            v["messages"][0]["timestamp"] = bad.clone();
        });
        let message = malformed(body.as_bytes());
        assert!(
            message.contains("entry[0].changes[0].value.messages[0]"),
            "{bad}: {message}"
        );
        let body = mutate_fixture(fixture!("status_sent"), |v| {
            v["statuses"][0]["timestamp"] = bad.clone();
        });
        assert!(malformed(body.as_bytes()).contains("value.statuses[0]"));
    }
    let message = malformed(
        mutate_fixture(fixture!("text"), |v| {
            v["messages"][0]["timestamp"] = json!("yesterday");
        })
        .as_bytes(),
    );
    assert!(
        message.contains(r#"invalid timestamp "yesterday""#),
        "{message}"
    );
}

#[test]
fn messages_without_identity_are_malformed() {
    for field in ["id", "from", "timestamp", "type"] {
        let body = mutate_fixture(fixture!("text"), |v| {
            v["messages"][0].as_object_mut().unwrap().remove(field);
        });
        let message = malformed(body.as_bytes());
        assert!(message.contains("messages[0]"), "{field}: {message}");
    }
    let body = mutate_fixture(fixture!("status_sent"), |v| {
        v["statuses"][0]
            .as_object_mut()
            .unwrap()
            .remove("recipient_id");
    });
    assert!(malformed(body.as_bytes()).contains("recipient_user_id"));
}

#[test]
fn nulls_for_optional_lists_mean_empty() {
    let body = mutate_fixture(fixture!("status_read"), |v| {
        v["contacts"] = Value::Null;
        v["messages"] = Value::Null;
        v["errors"] = Value::Null;
        v["statuses"][0]["errors"] = Value::Null;
    });
    let batch = one_batch(&body);
    assert!(batch.contacts.is_empty() && batch.messages.is_empty() && batch.errors.is_empty());
    assert_eq!(batch.statuses.len(), 1);
}

#[test]
fn phone_number_level_errors_are_reported() {
    let body = mutate_fixture(fixture!("status_read"), |v| {
        v.as_object_mut().unwrap().remove("statuses");
        v["errors"] = json!([{"code": 130429, "title": "Rate limit hit", "message": "Rate limit hit",
            "error_data": {"details": "Message failed to send because there were too many messages"},
            "href": "/documentation/business-messaging/whatsapp/support/error-codes"}]);
    });
    let batch = one_batch(&body);
    assert_eq!(batch.errors[0].code, 130429);
    assert_eq!(batch.errors[0].title.as_deref(), Some("Rate limit hit"));
}

#[test]
fn preview_text_is_what_an_agent_reads() {
    let preview = |name: &str| {
        let body = FIXTURES.iter().find(|(n, _)| *n == name).unwrap().1;
        only_message(body).content.preview_text()
    };
    assert_eq!(preview("text"), "Does it come in another color?");
    assert_eq!(preview("image"), "[image] This one is scratched");
    assert_eq!(preview("audio"), "[voice message]");
    assert_eq!(preview("video"), "[video] How it looks when switched on");
    assert_eq!(
        preview("document"),
        "[document] receipt-2025-06.pdf, My receipt"
    );
    assert_eq!(preview("sticker"), "[sticker]");
    assert_eq!(
        preview("location"),
        "[location] Meta Headquarters, 1 Hacker Way, Menlo Park, CA 94025"
    );
    assert_eq!(
        preview("contacts"),
        "[contacts] Barbara J. Johnson (+1 (415) 555-0185)"
    );
    assert_eq!(preview("interactive_button_reply"), "Button: Cancel");
    assert_eq!(
        preview("interactive_list_reply"),
        "List choice: Priority Mail Express (Next Day to 2 Days)"
    );
    assert_eq!(preview("button"), "Button: Stop promotions");
    assert_eq!(preview("reaction"), "[reaction] \u{1F44D}");
    assert_eq!(
        preview("order"),
        "[order] 3 item(s): Please deliver after 5pm"
    );
    assert_eq!(
        preview("system"),
        "[system] User Sheena Nelson changed from 16505551234 to 12195555358"
    );
    assert_eq!(preview("unsupported"), "[unsupported message: poll_update]");
    let bare = MessageContent::Location {
        latitude: 1.5,
        longitude: -2.25,
        name: None,
        address: None,
        url: None,
    };
    assert_eq!(bare.preview_text(), "[location] 1.5, -2.25");
}

#[test]
fn kind_matches_the_serialized_tag() {
    for (name, body) in FIXTURES {
        for batch in parse_webhook(body.as_bytes()).unwrap() {
            for m in batch.messages {
                let serialized = serde_json::to_value(&m.content).unwrap();
                assert_eq!(serialized["kind"], m.content.kind(), "{name}");
            }
        }
    }
}

#[test]
fn domain_types_round_trip_through_serde() {
    for (name, body) in FIXTURES {
        let batches = parse_webhook(body.as_bytes()).unwrap();
        let json = serde_json::to_string(&batches).unwrap();
        let back: Vec<ChangeBatch> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, batches, "{name}");
    }
}

/// Not a benchmark: a typical text webhook goes through the same single-pass path many times
/// with identical results, so the hot path stays plain serde with no hidden re-parsing.
#[test]
fn typical_text_webhook_parses_repeatedly() {
    let body = fixture!("text").as_bytes();
    let first = parse_webhook(body).unwrap();
    for _ in 0..2_000 {
        assert_eq!(parse_webhook(body).unwrap(), first);
    }
}

/// Replaces (or, for object members, sometimes removes) the `target`-th node in pre-order.
fn mutate_node(v: &mut Value, target: &mut usize, replacement: &Value, remove: bool) -> bool {
    if *target == 0 {
        *v = replacement.clone();
        return true;
    }
    *target -= 1;
    match v {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if remove && *target == 0 {
                    map.remove(&key);
                    return true;
                }
                if let Some(child) = map.get_mut(&key) {
                    if mutate_node(child, target, replacement, remove) {
                        return true;
                    }
                }
            }
            false
        }
        Value::Array(items) => items
            .iter_mut()
            .any(|child| mutate_node(child, target, replacement, remove)),
        _ => false,
    }
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Object(map) => map.values().map(count_nodes).sum(),
        Value::Array(items) => items.iter().map(count_nodes).sum(),
        _ => 0,
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        "[0-9]{0,22}".prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("whatsapp_business_account"),
            Just("messages"),
            Just("text"),
            Just("interactive"),
            Just("unsupported"),
            Just("system"),
            Just("button_reply"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_webhook(&bytes);
    }

    #[test]
    fn never_panics_on_arbitrary_json(doc in arb_json()) {
        let _ = parse_webhook(doc.to_string().as_bytes());
        let wrapped = json!({"object": "whatsapp_business_account", "entry": [
            {"id": "1", "changes": [{"field": "messages", "value": doc}]}]});
        let _ = parse_webhook(wrapped.to_string().as_bytes());
    }

    #[test]
    fn never_panics_on_mutated_fixtures(
        which in 0..FIXTURES.len(),
        node in any::<usize>(),
        remove in any::<bool>(),
        replacement in arb_json(),
    ) {
        let mut doc: Value = serde_json::from_str(FIXTURES[which].1).unwrap();
        let mut target = node % count_nodes(&doc);
        mutate_node(&mut doc, &mut target, &replacement, remove);
        let _ = parse_webhook(doc.to_string().as_bytes());
    }

    #[test]
    fn never_panics_on_byte_edits_of_fixtures(
        which in 0..FIXTURES.len(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut bytes = FIXTURES[which].1.as_bytes().to_vec();
        for (at, byte) in edits {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        let _ = parse_webhook(&bytes);
        bytes.truncate(cut % (bytes.len() + 1));
        let _ = parse_webhook(&bytes);
    }
}
