//! The live channel: one WebSocket per signed-in tab.
//!
//! The `LiveHub` wakes on the in-process `LiveBus` (and on a short tick, in case a notice was
//! dropped), reads each watched tenant's live feed from the store after the last entry it
//! relayed, renders each entry once (message bubble HTML, state) and broadcasts it to that
//! tenant's sockets only. Each socket filters by its viewer's outlets. A socket opened with a
//! cursor (`?after=N`, the last sequence number the tab saw) first replays everything after it
//! from the store, then streams; a socket that falls behind replays from the store again. So a
//! tab that was disconnected shows every missed message exactly once: the replay starts after
//! the cursor, and the stream skips what the replay already sent.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, watch};

use super::session::Viewer;
use super::views;
use super::DashError;
use crate::conversations::feed::{self, FeedEntry, FeedRead};
use crate::conversations::{LiveBus, CONVERSATIONS, MESSAGES};
use crate::storage::{ConversationId, OutletId, Store, StoreError, TenantId};
use crate::web::AppState;

/// Events a tenant's sockets may fall behind by before they replay from the store instead.
const TENANT_BUFFER: usize = 1024;
/// How often watched tenants are checked even without a notice (the bus may drop notices).
const TICK: Duration = Duration::from_millis(500);
/// Entries read from the store per replay step.
const REPLAY_STEP: usize = 500;

/// One relayed change, rendered once for all of a tenant's sockets.
#[derive(Debug)]
pub struct HubEvent {
    /// Feed sequence number; None for passing signals (assistant writing, presence).
    pub seq: Option<u64>,
    pub conversation: ConversationId,
    /// The conversation's outlet: sockets of viewers limited to other outlets skip the event.
    pub outlet: Option<OutletId>,
    /// Shared by every socket that sends it (a reference count, not a copy per socket).
    pub json: Utf8Bytes,
}

struct TenantFeed {
    tx: broadcast::Sender<Arc<HubEvent>>,
    last_seq: u64,
    time_zone: String,
}

pub struct LiveHub {
    store: Store,
    tenants: Mutex<HashMap<TenantId, TenantFeed>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

pub fn tenant_time_zone(store: &Store, tenant: TenantId) -> String {
    crate::tenants::get_tenant(store, tenant)
        .ok()
        .flatten()
        .map(|t| t.time_zone)
        .unwrap_or_else(|| "UTC".into())
}

/// Renders one feed entry as the event sockets send. None when what it names is gone.
pub fn build_event(
    store: &Store,
    tenant: TenantId,
    time_zone: &str,
    entry: &FeedEntry,
) -> Result<Option<HubEvent>, StoreError> {
    let (conversation, message) = store.read(|r| {
        let t = r.tenant(tenant);
        let c = t.get(&CONVERSATIONS, entry.conversation.as_bytes())?;
        let m = match entry.message {
            Some(m) => t.get(
                &MESSAGES,
                &crate::conversations::message_key(entry.conversation, m),
            )?,
            None => None,
        };
        Ok((c, m))
    })?;
    let Some(conversation) = conversation else {
        return Ok(None);
    };
    let html = match &message {
        Some(m) => Some(
            views::render_message(m, time_zone)
                .map_err(|e| StoreError::Corrupt(format!("render: {e}")))?,
        ),
        None => None,
    };
    let value = json!({
        "t": "feed",
        "seq": entry.seq,
        "kind": entry.kind.as_str(),
        "c": entry.conversation.to_string(),
        "m": entry.message.map(|m| m.to_string()),
        "at_us": entry.at_us,
        "state": conversation.state.as_str(),
        "author": message.as_ref().map(|m| m.author),
        "html": html,
    });
    Ok(Some(HubEvent {
        seq: Some(entry.seq),
        conversation: entry.conversation,
        outlet: conversation.outlet,
        json: value.to_string().into(),
    }))
}

impl LiveHub {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            tenants: Mutex::default(),
        }
    }

    /// A receiver of `tenant`'s events from now on.
    pub fn subscribe(&self, tenant: TenantId) -> broadcast::Receiver<Arc<HubEvent>> {
        let mut tenants = lock(&self.tenants);
        if let Some(feed) = tenants.get(&tenant) {
            return feed.tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(TENANT_BUFFER);
        // Sockets replay from the store up to where they subscribed; the hub relays from here.
        let last_seq = feed::latest_seq(&self.store, tenant).unwrap_or(0);
        let time_zone = tenant_time_zone(&self.store, tenant);
        tenants.insert(
            tenant,
            TenantFeed {
                tx,
                last_seq,
                time_zone,
            },
        );
        rx
    }

    /// Sends a passing signal (not in the feed) to a tenant's sockets.
    pub fn signal(&self, tenant: TenantId, event: HubEvent) {
        if let Some(feed) = lock(&self.tenants).get(&tenant) {
            let _ = feed.tx.send(Arc::new(event));
        }
    }

    pub fn watched_tenants(&self) -> usize {
        lock(&self.tenants).len()
    }

    /// Relays the tenant's new feed entries. Only the hub's task calls this, so `last_seq`
    /// has one writer.
    fn pump(&self, tenant: TenantId) {
        let (after, time_zone) = match lock(&self.tenants).get(&tenant) {
            Some(f) => (f.last_seq, f.time_zone.clone()),
            None => return,
        };
        let mut after = after;
        loop {
            let entries = match feed::read_after(&self.store, tenant, after, REPLAY_STEP) {
                Ok(FeedRead::Entries(e)) => e,
                Ok(FeedRead::Gap { latest }) => {
                    // Cannot happen for a hub that keeps up; sockets find the gap themselves.
                    after = latest;
                    Vec::new()
                }
                Err(e) => {
                    tracing::warn!(tenant = %tenant, error = %e, "live feed unreadable");
                    return;
                }
            };
            let mut events = Vec::with_capacity(entries.len());
            for entry in &entries {
                match build_event(&self.store, tenant, &time_zone, entry) {
                    Ok(Some(ev)) => events.push(Arc::new(ev)),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(tenant = %tenant, error = %e, "live event skipped"),
                }
                after = entry.seq;
            }
            let mut tenants = lock(&self.tenants);
            let Some(feed) = tenants.get_mut(&tenant) else {
                return;
            };
            feed.last_seq = after;
            for ev in events {
                let _ = feed.tx.send(ev);
            }
            if entries.len() < REPLAY_STEP {
                return;
            }
        }
    }

    pub async fn run(self: Arc<Self>, bus: LiveBus, mut stop: watch::Receiver<bool>) {
        let mut updates = bus.subscribe();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut dirty: HashSet<TenantId> = HashSet::new();
            let mut all = false;
            tokio::select! {
                _ = stop.changed() => {
                    if *stop.borrow() { break; }
                }
                _ = tick.tick() => all = true,
                got = updates.recv() => match got {
                    Ok(u) => {
                        self.note(&u, &mut dirty);
                        // Drain what queued meanwhile: one store read serves a burst.
                        loop {
                            match updates.try_recv() {
                                Ok(u) => self.note(&u, &mut dirty),
                                Err(broadcast::error::TryRecvError::Lagged(_)) => all = true,
                                Err(_) => break,
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => all = true,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
            if all {
                let mut tenants = lock(&self.tenants);
                tenants.retain(|_, f| f.tx.receiver_count() > 0);
                dirty.extend(tenants.keys().copied());
            }
            for tenant in dirty {
                self.pump(tenant);
            }
        }
    }

    fn note(&self, u: &crate::conversations::LiveUpdate, dirty: &mut HashSet<TenantId>) {
        if !lock(&self.tenants).contains_key(&u.tenant) {
            return;
        }
        if u.what == "assistant_working" {
            let outlet = self
                .store
                .read(|r| {
                    r.tenant(u.tenant)
                        .get(&CONVERSATIONS, u.conversation.as_bytes())
                })
                .ok()
                .flatten()
                .and_then(|c| c.outlet);
            self.signal(
                u.tenant,
                HubEvent {
                    seq: None,
                    conversation: u.conversation,
                    outlet,
                    json: json!({"t": "working", "c": u.conversation.to_string()})
                        .to_string()
                        .into(),
                },
            );
        } else {
            dirty.insert(u.tenant);
        }
    }
}

/// Who has which conversation open, for the collision warning.
#[derive(Default)]
pub struct Presence {
    map: Mutex<HashMap<(TenantId, ConversationId), Vec<Present>>>,
}

#[derive(Debug, Clone, PartialEq)]
struct Present {
    socket: u64,
    /// The signed-in session: its other tabs are not someone else.
    session: u64,
    name: String,
    typing: bool,
}

impl Presence {
    /// Records that `socket` now looks at `conversation` (or none); returns the conversations
    /// whose company changed, with who is there now.
    fn set(
        &self,
        tenant: TenantId,
        (socket, session): (u64, u64),
        name: &str,
        conversation: Option<ConversationId>,
        typing: bool,
    ) -> Vec<(ConversationId, Vec<Present>)> {
        let mut map = lock(&self.map);
        let mut changed = Vec::new();
        let mut emptied = Vec::new();
        for ((t, c), people) in map.iter_mut() {
            if *t != tenant || Some(*c) == conversation {
                continue;
            }
            let before = people.len();
            people.retain(|p| p.socket != socket);
            if people.len() != before {
                changed.push((*c, people.clone()));
                if people.is_empty() {
                    emptied.push((*t, *c));
                }
            }
        }
        for key in emptied {
            map.remove(&key);
        }
        if let Some(c) = conversation {
            let people = map.entry((tenant, c)).or_default();
            let me = Present {
                socket,
                session,
                name: name.to_string(),
                typing,
            };
            match people.iter_mut().find(|p| p.socket == socket) {
                Some(p) if *p == me => {}
                Some(p) => {
                    *p = me;
                    changed.push((c, people.clone()));
                }
                None => {
                    people.push(me);
                    changed.push((c, people.clone()));
                }
            }
        }
        changed
    }
}

fn presence_event(
    conversation: ConversationId,
    outlet: Option<OutletId>,
    people: &[Present],
) -> HubEvent {
    let who: Vec<_> = people
        .iter()
        .map(|p| json!({"socket": p.socket, "session": p.session, "name": p.name, "typing": p.typing}))
        .collect();
    HubEvent {
        seq: None,
        conversation,
        outlet,
        json: json!({"t": "presence", "c": conversation.to_string(), "who": who})
            .to_string()
            .into(),
    }
}

#[derive(Deserialize)]
pub struct LiveQuery {
    /// The last feed sequence number the tab has seen.
    after: Option<u64>,
}

static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);

/// A browser sends Origin on WebSocket requests; a page of another site must not ride the
/// viewer's cookie (SameSite=Strict already stops it; this is the second lock).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true; // not a browser: the session cookie is its only credential
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host)
}

pub async fn socket(
    viewer: Viewer,
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LiveQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    if !same_origin(&headers) {
        return DashError::Forbidden("cross-origin live connection".into()).into_response();
    }
    // Small buffers: a dashboard sends a few short messages, and thousands of idle tabs must
    // not each hold the 128 KiB tungstenite reserves by default.
    ws.max_message_size(16 * 1024)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(8 * 1024)
        .on_upgrade(move |socket| serve_socket(state, viewer, q.after, socket))
}

struct Conn {
    state: AppState,
    viewer: Viewer,
    id: u64,
    time_zone: String,
    /// Every feed entry up to here has been sent (or skipped as not visible).
    sent: u64,
}

impl Conn {
    fn visible(&self, outlet: Option<OutletId>) -> bool {
        self.viewer.covers_outlet(outlet)
    }

    /// Sends every entry after `self.sent` from the store.
    async fn replay(&mut self, socket: &mut WebSocket) -> Result<(), ()> {
        loop {
            let tenant = self.viewer.tenant;
            let read = feed::read_after(&self.state.store, tenant, self.sent, REPLAY_STEP)
                .map_err(|_| ())?;
            let entries = match read {
                FeedRead::Gap { latest } => {
                    self.sent = latest;
                    let msg = json!({"t": "reset", "seq": latest}).to_string();
                    return socket
                        .send(WsMessage::Text(msg.into()))
                        .await
                        .map_err(|_| ());
                }
                FeedRead::Entries(e) => e,
            };
            let n = entries.len();
            for entry in entries {
                if let Ok(Some(ev)) =
                    build_event(&self.state.store, tenant, &self.time_zone, &entry)
                {
                    if self.visible(ev.outlet) {
                        socket
                            .send(WsMessage::Text(ev.json))
                            .await
                            .map_err(|_| ())?;
                    }
                }
                self.sent = entry.seq;
            }
            if n < REPLAY_STEP {
                return Ok(());
            }
        }
    }

    async fn relay(&mut self, socket: &mut WebSocket, ev: &HubEvent) -> Result<(), ()> {
        match ev.seq {
            Some(seq) if seq <= self.sent => Ok(()),
            Some(seq) if seq > self.sent + 1 => self.replay(socket).await,
            Some(seq) => {
                self.sent = seq;
                if self.visible(ev.outlet) {
                    socket
                        .send(WsMessage::Text(ev.json.clone()))
                        .await
                        .map_err(|_| ())?;
                }
                Ok(())
            }
            None => {
                if self.visible(ev.outlet) {
                    socket
                        .send(WsMessage::Text(ev.json.clone()))
                        .await
                        .map_err(|_| ())?;
                }
                Ok(())
            }
        }
    }

    /// The tab reports what it looks at; everyone else there hears of it.
    fn viewing(&self, conversation: Option<ConversationId>, typing: bool) {
        let tenant = self.viewer.tenant;
        let conversation = conversation.and_then(|c| {
            let conv = crate::conversations::get_conversation(&self.state.store, tenant, c)
                .ok()
                .flatten()?;
            self.visible(conv.outlet).then_some(c)
        });
        let changed = self.state.dashboard.presence.set(
            tenant,
            (self.id, self.viewer.session_id),
            &self.viewer.name,
            conversation,
            typing,
        );
        for (c, people) in changed {
            let outlet = crate::conversations::get_conversation(&self.state.store, tenant, c)
                .ok()
                .flatten()
                .and_then(|conv| conv.outlet);
            self.state
                .dashboard
                .hub
                .signal(tenant, presence_event(c, outlet, &people));
        }
    }
}

#[derive(Deserialize)]
struct ClientMessage {
    t: String,
    c: Option<String>,
    #[serde(default)]
    typing: bool,
}

async fn serve_socket(state: AppState, viewer: Viewer, after: Option<u64>, mut socket: WebSocket) {
    let tenant = viewer.tenant;
    let mut rx = state.dashboard.hub.subscribe(tenant);
    let latest = feed::latest_seq(&state.store, tenant).unwrap_or(0);
    let time_zone = tenant_time_zone(&state.store, tenant);
    let mut conn = Conn {
        state,
        viewer,
        id: NEXT_SOCKET.fetch_add(1, Ordering::Relaxed),
        time_zone,
        sent: after.unwrap_or(latest),
    };
    let hello = json!({
        "t": "hello", "seq": latest, "socket": conn.id, "session": conn.viewer.session_id,
    })
    .to_string();
    if socket.send(WsMessage::Text(hello.into())).await.is_err() {
        return;
    }
    if conn.replay(&mut socket).await.is_err() {
        return;
    }
    let ready = json!({"t": "ready", "seq": conn.sent}).to_string();
    if socket.send(WsMessage::Text(ready.into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    if conn.relay(&mut socket, &ev).await.is_err() { break; }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if conn.replay(&mut socket).await.is_err() { break; }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            msg = socket.recv() => match msg {
                Some(Ok(WsMessage::Text(text))) => {
                    if let Ok(m) = serde_json::from_str::<ClientMessage>(&text) {
                        if m.t == "viewing" {
                            let c = m.c.as_deref().and_then(|c| c.parse().ok());
                            conn.viewing(c, m.typing);
                        }
                    }
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    conn.viewing(None, false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_tracks_who_is_where() {
        let p = Presence::default();
        let t = TenantId::new();
        let (c1, c2) = (ConversationId::new(), ConversationId::new());
        let changed = p.set(t, (1, 1), "Ana", Some(c1), false);
        assert_eq!(changed.len(), 1);
        let changed = p.set(t, (2, 2), "Budi", Some(c1), false);
        assert_eq!(changed[0].1.len(), 2);
        // Same again: nobody needs telling.
        assert!(p.set(t, (2, 2), "Budi", Some(c1), false).is_empty());
        let changed = p.set(t, (2, 2), "Budi", Some(c1), true);
        assert!(changed[0].1.iter().any(|x| x.typing));
        let changed = p.set(t, (1, 1), "Ana", Some(c2), false);
        let left: Vec<_> = changed.iter().find(|(c, _)| *c == c1).unwrap().1.clone();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].name, "Budi");
        let changed = p.set(t, (2, 2), "Budi", None, false);
        assert!(changed
            .iter()
            .any(|(c, people)| *c == c1 && people.is_empty()));
    }

    #[test]
    fn only_same_origin_browsers_may_open_the_socket() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h));
        h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        h.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&h));
    }
}
