//! Webhook ingress: `/webhooks/whatsapp`, the one callback URL for all channels.
//!
//! POST: parse (400 if malformed) → route each change by `metadata.phone_number_id` (unknown
//! numbers are logged and skipped) → verify `X-Hub-Signature-256` against the app secret of the
//! channel it routes to (401, nothing stored, if it matches none) → store each message once by
//! wamid, with its event, in one durable commit → 200. Meta retries anything that is not 2xx, so a
//! storage failure answers 500 and nothing is lost.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::payload::{ChangeBatch, InboundMessage};
use crate::events::{publish, publish_prepared, EventPayload, PreparedEvent};
use crate::storage::collections as tags;
use crate::storage::record::Encoded;
use crate::storage::{ChannelId, Collection, Record, Store, StoreError, TenantId};
use crate::tenants::crypto::MasterKey;
use crate::tenants::{self, TenantError};

/// A wamid (or status) we have already accepted: redeliveries are no-ops.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Received {
    pub at_ms: i64,
    pub channel: ChannelId,
}

impl Record for Received {
    const VERSION: u16 = 1;
    const NAME: &'static str = "received webhook item";
}

pub const RECEIVED: Collection<Received> = Collection::new(tags::INBOUND_RECEIVED);

/// Verification material of a routed channel, cached: routing happens on every webhook and the
/// app secret would otherwise be decrypted each time.
#[derive(Clone)]
pub struct RouteEntry {
    pub tenant: TenantId,
    pub channel: ChannelId,
    /// None for sandbox channels: they never accept public webhooks.
    pub app_secret: Option<Arc<[u8]>>,
}

#[derive(Clone, Default)]
pub struct RouteCache {
    entries: Arc<RwLock<HashMap<String, Option<RouteEntry>>>>,
    /// Bumped by every invalidation. A lookup that started before an invalidation must not cache
    /// its (possibly stale) answer afterwards: otherwise a number connected while its webhook was
    /// being routed could stay "unknown" until the next channel change.
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl RouteCache {
    /// Must be called whenever a channel is added, changed or removed.
    pub fn invalidate(&self) {
        use std::sync::atomic::Ordering;
        if let Ok(mut map) = self.entries.write() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            map.clear();
        }
    }

    pub fn resolve(
        &self,
        store: &Store,
        key: &MasterKey,
        phone_number_id: &str,
    ) -> Result<Option<RouteEntry>, TenantError> {
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        if let Ok(map) = self.entries.read() {
            if let Some(hit) = map.get(phone_number_id) {
                return Ok(hit.clone());
            }
        }
        let entry = match tenants::route_phone_number(store, phone_number_id)? {
            Some(routed) => {
                let secrets = tenants::channel_secrets(key, routed.tenant.id, &routed.channel)?;
                Some(RouteEntry {
                    tenant: routed.tenant.id,
                    channel: routed.channel.id,
                    app_secret: secrets.map(|s| Arc::from(s.app_secret.into_bytes())),
                })
            }
            None => None,
        };
        if let Ok(mut map) = self.entries.write() {
            if self.generation.load(std::sync::atomic::Ordering::SeqCst) == generation {
                // Bounded: junk phone_number_ids from forged requests must not grow memory forever.
                if map.len() > 10_000 {
                    map.clear();
                }
                map.insert(phone_number_id.to_string(), entry.clone());
            }
        }
        Ok(entry)
    }
}

/// Checks `sha256=<hex>` against HMAC-SHA256(secret, body) in constant time.
pub fn signature_valid(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(header) = header else { return false };
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected).is_ok()
}

/// Signs a body the way Meta does (tests, the simulator, benchmarks).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What a webhook delivery amounted to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestReport {
    pub messages_stored: usize,
    pub duplicates: usize,
    pub statuses: usize,
    pub unknown_numbers: Vec<String>,
    pub bad_signature: usize,
}

/// A batch that passed routing and verification.
pub struct VerifiedBatch {
    pub tenant: TenantId,
    pub channel: ChannelId,
    pub batch: ChangeBatch,
}

/// Routes and verifies parsed batches. Batches for unknown numbers and batches whose signature
/// does not match their channel's app secret are dropped and reported.
pub fn route_and_verify(
    store: &Store,
    key: &MasterKey,
    routes: &RouteCache,
    batches: Vec<ChangeBatch>,
    body: &[u8],
    signature: Option<&str>,
    report: &mut IngestReport,
) -> Result<Vec<VerifiedBatch>, TenantError> {
    let mut verified = Vec::new();
    for batch in batches {
        match routes.resolve(store, key, &batch.phone_number_id)? {
            None => {
                tracing::warn!(phone_number_id = %batch.phone_number_id, "webhook for an unknown phone_number_id; ignored");
                report.unknown_numbers.push(batch.phone_number_id.clone());
            }
            Some(RouteEntry {
                app_secret: None, ..
            }) => {
                tracing::warn!(phone_number_id = %batch.phone_number_id, "public webhook for a sandbox channel; ignored");
                report.bad_signature += 1;
            }
            Some(RouteEntry {
                tenant,
                channel,
                app_secret: Some(secret),
            }) => {
                if signature_valid(&secret, body, signature) {
                    verified.push(VerifiedBatch {
                        tenant,
                        channel,
                        batch,
                    });
                } else {
                    tracing::warn!(tenant = %tenant, phone_number_id = %batch.phone_number_id, "webhook signature does not match the channel's app secret");
                    report.bad_signature += 1;
                }
            }
        }
    }
    Ok(verified)
}

/// Stores every message of the verified batches once (by wamid) together with its event, and every
/// status event, in one durable commit. Returns after the commit.
///
/// Every row is encoded here, on the request's task, before the write: the writer thread commits
/// for all requests, and at full speed its time per message is what bounds ingress.
pub async fn store_batches(
    store: &Store,
    batches: Vec<VerifiedBatch>,
    report: &mut IngestReport,
) -> Result<(), StoreError> {
    if batches.is_empty() {
        return Ok(());
    }
    let mut items = Vec::new();
    for vb in batches {
        let ChangeBatch {
            contacts,
            messages,
            statuses,
            ..
        } = vb.batch;
        let marker = Encoded::new(&Received {
            at_ms: crate::events::now_ms(),
            channel: vb.channel,
        })?;
        let marker = Arc::new(marker);
        for message in messages {
            let profile_name = contacts
                .iter()
                .find(|c| c.wa_id == message.from)
                .and_then(|c| c.name.clone());
            items.push(Item {
                tenant: vb.tenant,
                key: message.wamid.clone().into_bytes(),
                marker: marker.clone(),
                is_message: true,
                event: PreparedEvent::new(
                    vb.tenant,
                    EventPayload::InboundMessage {
                        channel: vb.channel,
                        profile_name,
                        message: Box::new(message),
                    },
                )?,
            });
        }
        for status in statuses {
            items.push(Item {
                tenant: vb.tenant,
                key: format!(
                    "status:{}:{}",
                    status.wamid,
                    String::from(status.status.clone())
                )
                .into_bytes(),
                marker: marker.clone(),
                is_message: false,
                event: PreparedEvent::new(
                    vb.tenant,
                    EventPayload::InboundStatus {
                        channel: vb.channel,
                        status,
                    },
                )?,
            });
        }
    }
    let (stored, duplicates, statuses) = store
        .write(move |ctx| {
            let mut stored = 0;
            let mut duplicates = 0;
            let mut statuses = 0;
            let mut live: Option<(TenantId, bool)> = None;
            for item in items.iter_mut() {
                // A tenant deleted since routing gets nothing stored (its rows are gone for good).
                let tenant_exists = match live {
                    Some((tenant, exists)) if tenant == item.tenant => exists,
                    _ => {
                        let exists = ctx
                            .operator()
                            .contains(&crate::tenants::TENANTS, item.tenant.as_bytes())?;
                        live = Some((item.tenant, exists));
                        exists
                    }
                };
                if !tenant_exists {
                    continue;
                }
                let fresh = ctx.tenant(item.tenant).insert_new_encoded(
                    &RECEIVED,
                    &item.key,
                    &item.marker,
                )?;
                if fresh {
                    publish_prepared(ctx, &mut item.event)?;
                }
                match (item.is_message, fresh) {
                    (true, true) => stored += 1,
                    (true, false) => duplicates += 1,
                    (false, true) => statuses += 1,
                    (false, false) => {}
                }
            }
            Ok((stored, duplicates, statuses))
        })
        .await?;
    report.messages_stored += stored;
    report.duplicates += duplicates;
    report.statuses += statuses;
    Ok(())
}

/// One message or status of a webhook, ready for the writer.
struct Item {
    tenant: TenantId,
    /// Its received-marker key: the wamid, or `status:{wamid}:{status}`.
    key: Vec<u8>,
    marker: Arc<Encoded<Received>>,
    is_message: bool,
    event: PreparedEvent,
}

/// Stores one inbound message and its event unless its wamid was seen before.
pub fn store_message(
    ctx: &mut crate::storage::WriteCtx<'_>,
    tenant: TenantId,
    channel: ChannelId,
    profile_name: Option<String>,
    message: &InboundMessage,
) -> Result<bool, StoreError> {
    let fresh = ctx.tenant(tenant).insert_new(
        &RECEIVED,
        message.wamid.as_bytes(),
        &Received {
            at_ms: crate::events::now_ms(),
            channel,
        },
    )?;
    if fresh {
        publish(
            ctx,
            tenant,
            EventPayload::InboundMessage {
                channel,
                profile_name,
                message: Box::new(message.clone()),
            },
        )?;
    }
    Ok(fresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_forgeries_do_not() {
        let body = br#"{"object":"whatsapp_business_account"}"#;
        let good = sign(b"app-secret", body);
        assert!(signature_valid(b"app-secret", body, Some(&good)));
        assert!(!signature_valid(b"other-secret", body, Some(&good)));
        assert!(!signature_valid(b"app-secret", b"tampered", Some(&good)));
        assert!(!signature_valid(b"app-secret", body, None));
        assert!(!signature_valid(b"app-secret", body, Some("sha1=abc")));
        assert!(!signature_valid(b"app-secret", body, Some("sha256=zz")));
    }
}
