//! Meta's wire shapes for the `messages` webhook, and the lenient scalars they need.
//!
//! Private to the payload parser: everything here mirrors Meta's field names and is converted
//! into the domain types of the parent module.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::{
    GraphErrorInfo, Media, OrderItem, PayloadError, Referral, ReferredProduct, ReplyContext,
    SharedContact, SharedPhone,
};

/// A typed view of an optional part, or `None` if it is absent or not in the expected shape.
pub(super) fn view<'a, T: Deserialize<'a>>(part: Option<&'a RawValue>) -> Option<T> {
    part.and_then(|v| serde_json::from_str(v.get()).ok())
}

/// A typed view of an optional part that must be a JSON object.
pub(super) fn view_obj<'a, T: Deserialize<'a>>(part: Option<&'a RawValue>) -> Option<T> {
    view::<Obj<T>>(part).map(|o| o.0)
}

/// Parses one level of the envelope from its raw text, with `path` in front of any error.
pub(super) fn from_raw<'a, T: Deserialize<'a>>(
    raw: &'a RawValue,
    path: impl fmt::Display,
) -> Result<T, PayloadError> {
    serde_json::from_str::<Obj<T>>(raw.get())
        .map(|o| o.0)
        .map_err(|e| PayloadError::at(path, e))
}

/// Accepts only a JSON object for `T`. Derived struct impls also accept arrays positionally,
/// which would let a wrong-shaped payload through.
pub(super) struct Obj<T>(pub(super) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Obj)
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

// ---- Wire shapes (Meta's field names). Unknown fields are ignored by default. ----
//
// The envelope levels hold their children as raw slices of the body (`&RawValue`): each level is
// parsed on its own, so an error names its place (`entry[0].changes[1].value`), yet no level is
// built into a `Value` tree only to be converted again. Only a message becomes a `Value`, because
// it is kept whole (`InboundMessage::raw`).

#[derive(Deserialize)]
pub(super) struct WireNotification<'a> {
    pub(super) object: String,
    #[serde(borrow)]
    pub(super) entry: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
pub(super) struct WireEntry<'a> {
    pub(super) id: IdText,
    #[serde(default, deserialize_with = "nullable", borrow)]
    pub(super) changes: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
pub(super) struct WireChange<'a> {
    pub(super) field: String,
    /// `None` when absent or null.
    #[serde(default, borrow)]
    pub(super) value: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub(super) struct WireValue<'a> {
    pub(super) metadata: Obj<WireMetadata>,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) contacts: Vec<Obj<WireContact>>,
    #[serde(default, deserialize_with = "nullable", borrow)]
    pub(super) messages: Vec<&'a RawValue>,
    #[serde(default, deserialize_with = "nullable", borrow)]
    pub(super) statuses: Vec<&'a RawValue>,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) errors: Vec<Obj<WireError>>,
}

#[derive(Deserialize)]
pub(super) struct WireMetadata {
    pub(super) display_phone_number: IdText,
    pub(super) phone_number_id: IdText,
}

#[derive(Deserialize)]
pub(super) struct WireContact {
    #[serde(default)]
    pub(super) profile: Option<Obj<WireProfile>>,
    #[serde(default)]
    pub(super) wa_id: Option<IdText>,
    #[serde(default)]
    pub(super) user_id: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WireProfile {
    #[serde(default)]
    pub(super) name: Option<String>,
}

/// A message: its envelope fields typed and strict (routing and deduplication need them), its
/// content parts raw, each read leniently by the view for its `type`.
#[derive(Deserialize)]
pub(super) struct WireMessage<'a> {
    pub(super) id: String,
    #[serde(default)]
    pub(super) from: Option<IdText>,
    #[serde(default)]
    pub(super) from_user_id: Option<String>,
    pub(super) timestamp: UnixSeconds,
    #[serde(rename = "type")]
    pub(super) kind: String,
    #[serde(default, borrow)]
    pub(super) context: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) referral: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) errors: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) text: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) image: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) audio: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) video: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) document: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) sticker: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) location: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) contacts: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) interactive: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) button: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) reaction: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) order: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) system: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) unsupported: Option<&'a RawValue>,
}

/// The `type` inside a part (`unsupported.type`, `interactive.type`).
#[derive(Deserialize)]
pub(super) struct WireTyped {
    #[serde(default, rename = "type")]
    pub(super) kind: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WireStatus {
    pub(super) id: String,
    pub(super) status: String,
    pub(super) timestamp: UnixSeconds,
    #[serde(default)]
    pub(super) recipient_id: Option<IdText>,
    #[serde(default)]
    pub(super) recipient_user_id: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) errors: Vec<Obj<WireError>>,
    #[serde(default)]
    pub(super) biz_opaque_callback_data: Option<String>,
    #[serde(default)]
    pub(super) conversation: Option<Value>,
    #[serde(default)]
    pub(super) pricing: Option<Value>,
}

#[derive(Deserialize)]
pub(super) struct WireError {
    pub(super) code: LenientI64,
    #[serde(default)]
    pub(super) title: Option<String>,
    #[serde(default)]
    pub(super) message: Option<String>,
    #[serde(default)]
    pub(super) error_data: Option<Value>,
}

impl From<WireError> for GraphErrorInfo {
    fn from(e: WireError) -> Self {
        GraphErrorInfo {
            code: e.code.0,
            title: e.title,
            message: e.message,
            details: e
                .error_data
                .as_ref()
                .and_then(|d| d.get("details"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }
}

#[derive(Deserialize)]
pub(super) struct WireText {
    pub(super) body: String,
}

#[derive(Deserialize)]
pub(super) struct WireMedia {
    pub(super) id: IdText,
    #[serde(default)]
    pub(super) mime_type: Option<String>,
    #[serde(default)]
    pub(super) sha256: Option<String>,
    #[serde(default)]
    pub(super) caption: Option<String>,
    #[serde(default)]
    pub(super) filename: Option<String>,
    #[serde(default)]
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) voice: Option<bool>,
    #[serde(default)]
    pub(super) animated: Option<bool>,
}

impl From<WireMedia> for Media {
    fn from(m: WireMedia) -> Self {
        Media {
            id: m.id.0,
            mime_type: m.mime_type,
            sha256: m.sha256,
            caption: m.caption,
            filename: m.filename,
            url: m.url,
            voice: m.voice,
            animated: m.animated,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct WireLocation {
    pub(super) latitude: LenientF64,
    pub(super) longitude: LenientF64,
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) address: Option<String>,
    #[serde(default)]
    pub(super) url: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WireSharedContact {
    #[serde(default)]
    pub(super) name: Option<Obj<WireContactName>>,
    #[serde(default)]
    pub(super) org: Option<Obj<WireContactOrg>>,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) phones: Vec<Obj<WireContactPhone>>,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) emails: Vec<Obj<WireContactEmail>>,
}

#[derive(Deserialize)]
pub(super) struct WireContactName {
    #[serde(default)]
    pub(super) formatted_name: Option<String>,
    #[serde(default)]
    pub(super) first_name: Option<String>,
    #[serde(default)]
    pub(super) last_name: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WireContactOrg {
    #[serde(default)]
    pub(super) company: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WireContactPhone {
    #[serde(default)]
    pub(super) phone: Option<String>,
    #[serde(default)]
    pub(super) wa_id: Option<IdText>,
    #[serde(default, rename = "type")]
    pub(super) kind: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WireContactEmail {
    #[serde(default)]
    pub(super) email: Option<String>,
}

impl From<WireSharedContact> for SharedContact {
    fn from(c: WireSharedContact) -> Self {
        let (formatted_name, first_name, last_name) = match c.name {
            Some(Obj(n)) => (n.formatted_name, n.first_name, n.last_name),
            None => (None, None, None),
        };
        SharedContact {
            formatted_name,
            first_name,
            last_name,
            organization: c.org.and_then(|o| o.0.company),
            phones: c
                .phones
                .into_iter()
                .map(|Obj(p)| SharedPhone {
                    phone: p.phone,
                    wa_id: p.wa_id.map(|id| id.0),
                    kind: p.kind,
                })
                .collect(),
            emails: c.emails.into_iter().filter_map(|e| e.0.email).collect(),
        }
    }
}

#[derive(Deserialize)]
pub(super) struct WireInteractive {
    #[serde(rename = "type")]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) button_reply: Option<Obj<WireButtonReply>>,
    #[serde(default)]
    pub(super) list_reply: Option<Obj<WireListReply>>,
}

#[derive(Deserialize)]
pub(super) struct WireButtonReply {
    pub(super) id: String,
    pub(super) title: String,
}

#[derive(Deserialize)]
pub(super) struct WireListReply {
    pub(super) id: String,
    pub(super) title: String,
    #[serde(default)]
    pub(super) description: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WireButton {
    #[serde(default)]
    pub(super) payload: Option<String>,
    pub(super) text: String,
}

#[derive(Deserialize)]
pub(super) struct WireReaction {
    pub(super) message_id: String,
    #[serde(default)]
    pub(super) emoji: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WireOrder {
    pub(super) catalog_id: IdText,
    #[serde(default)]
    pub(super) text: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) product_items: Vec<Obj<WireOrderItem>>,
}

#[derive(Deserialize)]
pub(super) struct WireOrderItem {
    pub(super) product_retailer_id: IdText,
    pub(super) quantity: LenientI64,
    #[serde(default)]
    pub(super) item_price: Option<DecimalText>,
    #[serde(default)]
    pub(super) currency: Option<String>,
}

impl From<WireOrderItem> for OrderItem {
    fn from(i: WireOrderItem) -> Self {
        OrderItem {
            product_retailer_id: i.product_retailer_id.0,
            quantity: i.quantity.0,
            item_price: i.item_price.map(|p| p.0),
            currency: i.currency,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct WireSystem {
    #[serde(default)]
    pub(super) body: String,
    #[serde(default, rename = "type")]
    pub(super) kind: String,
    /// Current docs name the new id `wa_id`; API versions before v12 used `new_wa_id`.
    #[serde(default)]
    pub(super) wa_id: Option<IdText>,
    #[serde(default)]
    pub(super) new_wa_id: Option<IdText>,
}

#[derive(Deserialize)]
pub(super) struct WireContext {
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) from: Option<IdText>,
    #[serde(default)]
    pub(super) forwarded: Option<bool>,
    #[serde(default)]
    pub(super) frequently_forwarded: Option<bool>,
    #[serde(default)]
    pub(super) referred_product: Option<Obj<WireReferredProduct>>,
}

#[derive(Deserialize)]
pub(super) struct WireReferredProduct {
    #[serde(default)]
    pub(super) catalog_id: Option<IdText>,
    #[serde(default)]
    pub(super) product_retailer_id: Option<IdText>,
}

impl From<WireContext> for ReplyContext {
    fn from(c: WireContext) -> Self {
        ReplyContext {
            message_id: c.id,
            from: c.from.map(|f| f.0),
            forwarded: c.forwarded.unwrap_or(false),
            frequently_forwarded: c.frequently_forwarded.unwrap_or(false),
            referred_product: c.referred_product.map(|Obj(p)| ReferredProduct {
                catalog_id: p.catalog_id.map(|id| id.0),
                product_retailer_id: p.product_retailer_id.map(|id| id.0),
            }),
        }
    }
}

#[derive(Deserialize)]
pub(super) struct WireReferral {
    #[serde(default)]
    pub(super) source_url: Option<String>,
    #[serde(default)]
    pub(super) source_id: Option<IdText>,
    #[serde(default)]
    pub(super) source_type: Option<String>,
    #[serde(default)]
    pub(super) body: Option<String>,
    #[serde(default)]
    pub(super) headline: Option<String>,
    #[serde(default)]
    pub(super) media_type: Option<String>,
    #[serde(default)]
    pub(super) image_url: Option<String>,
    #[serde(default)]
    pub(super) video_url: Option<String>,
    #[serde(default)]
    pub(super) thumbnail_url: Option<String>,
    #[serde(default)]
    pub(super) ctwa_clid: Option<String>,
    #[serde(default)]
    pub(super) welcome_message: Option<Obj<WireWelcome>>,
}

#[derive(Deserialize)]
pub(super) struct WireWelcome {
    #[serde(default)]
    pub(super) text: Option<String>,
}

impl From<WireReferral> for Referral {
    fn from(r: WireReferral) -> Self {
        Referral {
            source_url: r.source_url,
            source_id: r.source_id.map(|id| id.0),
            source_type: r.source_type,
            body: r.body,
            headline: r.headline,
            media_type: r.media_type,
            image_url: r.image_url,
            video_url: r.video_url,
            thumbnail_url: r.thumbnail_url,
            ctwa_clid: r.ctwa_clid,
            welcome_message: r.welcome_message.and_then(|w| w.0.text),
        }
    }
}

// ---- Lenient scalars. Meta documents these as strings, but hand-written test payloads and some
// relays send bare numbers; accepting both costs nothing and loses nothing. ----

/// Treats an explicit `null` like an absent field.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An identifier sent as a string (documented) or a bare integer.
pub(super) struct IdText(pub(super) String);

impl<'de> Deserialize<'de> for IdText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IdText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an id string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IdText, E> {
                Ok(IdText(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<IdText, E> {
                Ok(IdText(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IdText, E> {
                Ok(IdText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IdText, E> {
                Ok(IdText(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Unix seconds, documented as a string of digits. Anything else (signs, decimals, overflow,
/// empty) is rejected: a timestamp we cannot trust would misorder the conversation.
pub(super) struct UnixSeconds(pub(super) i64);

fn parse_unix_seconds(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl<'de> Deserialize<'de> for UnixSeconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = UnixSeconds;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a timestamp in unix seconds as a string of digits")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<UnixSeconds, E> {
                parse_unix_seconds(v).map(UnixSeconds).ok_or_else(|| {
                    E::custom(format!(
                        "invalid timestamp {v:?}: expected unix seconds as a string of digits"
                    ))
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<UnixSeconds, E> {
                i64::try_from(v)
                    .map(UnixSeconds)
                    .map_err(|_| E::custom(format!("invalid timestamp {v}: out of range")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<UnixSeconds, E> {
                if v < 0 {
                    return Err(E::custom(format!("invalid timestamp {v}: negative")));
                }
                Ok(UnixSeconds(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// An integer sent as a number or a string of digits (error codes, quantities).
pub(super) struct LenientI64(pub(super) i64);

impl<'de> Deserialize<'de> for LenientI64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LenientI64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LenientI64, E> {
                Ok(LenientI64(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientI64, E> {
                i64::try_from(v)
                    .map(LenientI64)
                    .map_err(|_| E::custom("integer out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientI64, E> {
                v.trim()
                    .parse()
                    .map(LenientI64)
                    .map_err(|_| E::custom(format!("expected an integer, got {v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A coordinate sent as a number (documented) or numeric string.
pub(super) struct LenientF64(pub(super) f64);

impl<'de> Deserialize<'de> for LenientF64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LenientF64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a finite number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<LenientF64, E> {
                if v.is_finite() {
                    Ok(LenientF64(v))
                } else {
                    Err(E::custom("expected a finite number"))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LenientF64, E> {
                Ok(LenientF64(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientF64, E> {
                Ok(LenientF64(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientF64, E> {
                match v.trim().parse::<f64>() {
                    Ok(f) => self.visit_f64(f),
                    Err(_) => Err(E::custom(format!("expected a number, got {v:?}"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A decimal amount kept as text: numbers are rendered with their shortest exact representation.
pub(super) struct DecimalText(pub(super) String);

impl<'de> Deserialize<'de> for DecimalText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DecimalText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a decimal number or string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DecimalText, E> {
                Ok(DecimalText(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DecimalText, E> {
                Ok(DecimalText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DecimalText, E> {
                Ok(DecimalText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DecimalText, E> {
                Ok(DecimalText(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}
