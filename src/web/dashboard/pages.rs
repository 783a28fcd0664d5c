//! Sign-in, the inbox, the conversation view and its actions, canned replies.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::routing::{self as dash_routing, Candidate, MyPresence, Team};
use super::session::{self, MaybeViewer, Role, Viewer};
use super::views::{self, MessageView, Names, RowView};
use super::DashError;
use crate::conversations::extras::{self, CannedResponse, ConversationExtras};
use crate::conversations::routes as conversation_api;
use crate::conversations::routing::routes as routing_api;
use crate::conversations::{self, feed, Conversation, ConversationState, LiveUpdate};
use crate::storage::{ConversationId, OutletId};
use crate::tenants;
use crate::web::AppState;

/// What the page frame shows: who is signed in, where they are, and the live cursor the page
/// was rendered at (its JavaScript asks the live channel for everything after it).
pub struct Nav {
    pub page: &'static str,
    pub signed_in: bool,
    pub tenant: String,
    pub user: String,
    pub role: &'static str,
    pub is_admin: bool,
    pub is_operator: bool,
    pub csrf: String,
    pub cursor: u64,
    pub flash: Option<String>,
    /// The signed-in person's own presence (people who work conversations only).
    pub presence: Option<MyPresence>,
}

impl Nav {
    /// Reads the cursor before the page's data, so the live channel replays anything that
    /// changes while the page renders (shown once: messages are placed by id).
    pub fn new(state: &AppState, v: &Viewer, page: &'static str) -> Result<Self, DashError> {
        Ok(Self {
            page,
            signed_in: true,
            tenant: v.tenant_name.clone(),
            user: v.name.clone(),
            role: v.role.as_str(),
            is_admin: v.is_admin(),
            is_operator: v.operator,
            csrf: v.csrf.clone(),
            cursor: feed::latest_seq(&state.store, v.tenant)?,
            flash: None,
            presence: dash_routing::my_presence(state, v)?,
        })
    }

    /// The bar of a page for people who are not signed in (`page` names it).
    pub fn signed_out_on(page: &'static str) -> Self {
        Self {
            page,
            signed_in: false,
            tenant: String::new(),
            user: String::new(),
            role: "",
            is_admin: false,
            is_operator: false,
            csrf: String::new(),
            cursor: 0,
            flash: None,
            presence: None,
        }
    }
}

pub fn html(t: impl Template) -> Result<Response, DashError> {
    Ok(Html(t.render()?).into_response())
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Sign-in (TEMPORARY: operator token; see `session`).

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    nav: Nav,
    csrf: String,
    error: Option<String>,
    tenant: String,
    name: String,
}

fn signin_page(
    state: &AppState,
    error: Option<String>,
    tenant: String,
    name: String,
) -> Result<Response, DashError> {
    let csrf = session::random_token();
    let page = SignInPage {
        nav: Nav::signed_out_on("signin"),
        csrf: csrf.clone(),
        error,
        tenant,
        name,
    };
    let cookie = session::set_cookie(state, session::SIGNIN_COOKIE, &csrf, Some(3600));
    let status = if page.error.is_some() {
        axum::http::StatusCode::UNAUTHORIZED
    } else {
        axum::http::StatusCode::OK
    };
    Ok((status, [(header::SET_COOKIE, cookie)], Html(page.render()?)).into_response())
}

pub async fn signin_form(
    State(state): State<AppState>,
    viewer: MaybeViewer,
) -> Result<Response, DashError> {
    if viewer.0.is_some() {
        return Ok(Redirect::to("/dash/inbox").into_response());
    }
    signin_page(&state, None, String::new(), String::new())
}

#[derive(Deserialize)]
pub struct SignInForm {
    csrf: String,
    token: String,
    tenant: String,
    name: String,
    role: String,
    #[serde(default)]
    outlet: String,
}

pub async fn signin(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<SignInForm>,
) -> Result<Response, DashError> {
    // Double-submit check: the form's token must match the cookie set with the form.
    let cookie = session::cookie_value(&headers, session::SIGNIN_COOKIE).unwrap_or_default();
    if cookie.is_empty() || !session::constant_time_eq(cookie.as_bytes(), f.csrf.as_bytes()) {
        return Err(DashError::Forbidden(
            "the sign-in form expired; reload it and try again".into(),
        ));
    }
    let retry = |msg: &str| signin_page(&state, Some(msg.into()), f.tenant.clone(), f.name.clone());
    if !session::constant_time_eq(f.token.trim().as_bytes(), state.operator_token.as_bytes()) {
        return retry("That token is not the operator token.");
    }
    let Ok(tenant) = tenants::find_tenant(&state.store, f.tenant.trim()) else {
        return retry("No tenant has that slug.");
    };
    if tenant.status != tenants::TenantStatus::Active {
        return retry("That tenant is suspended.");
    }
    let Some(role) = Role::parse(&f.role) else {
        return retry("Choose a role: admin, agent or viewer.");
    };
    let name = f.name.trim();
    if name.is_empty() || name.chars().count() > 60 {
        return retry("Your name: 1-60 characters.");
    }
    let mut outlets = Vec::new();
    if !f.outlet.trim().is_empty() {
        let known = tenants::list_outlets(&state.store, tenant.id)?;
        match f.outlet.trim().parse::<OutletId>() {
            Ok(o) if known.iter().any(|k| k.id == o) => outlets.push(o),
            _ => return retry("That outlet is not one of this tenant's."),
        }
    }
    let secret = state.dashboard.sessions.create(Viewer {
        tenant: tenant.id,
        tenant_slug: tenant.slug,
        tenant_name: tenant.name,
        time_zone: tenant.time_zone,
        role,
        outlets,
        name: name.to_string(),
        user: None,
        operator: true,
        csrf: String::new(),
        session_id: 0,
    });
    let cookie = session::set_cookie(&state, session::SESSION_COOKIE, &secret, None);
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/dash/inbox")).into_response())
}

#[derive(Deserialize)]
pub struct PasswordForm {
    csrf: String,
    email: String,
    password: String,
}

/// A person with a user account signs in (the people service checks the password, throttles
/// and locks out, and opens the session).
pub async fn signin_password(
    State(state): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<PasswordForm>,
) -> Result<Response, DashError> {
    let cookie = session::cookie_value(&headers, session::SIGNIN_COOKIE).unwrap_or_default();
    if cookie.is_empty() || !session::constant_time_eq(cookie.as_bytes(), f.csrf.as_bytes()) {
        return Err(DashError::Forbidden(
            "the sign-in form expired; reload it and try again".into(),
        ));
    }
    let credentials = crate::people::signin::Credentials {
        email: f.email.clone(),
        password: f.password,
    };
    match crate::people::signin::sign_in(&state.store, &state.people, credentials, Some(peer.ip()))
        .await
    {
        Ok(opened) => {
            let cookie = opened.cookie(&state.people.settings);
            Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/dash/inbox")).into_response())
        }
        Err(e) => signin_page(&state, Some(e.to_string()), String::new(), f.email),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn signout(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Result<Response, DashError> {
    viewer.check_csrf(&f.csrf)?;
    dash_routing::signed_out(&state, &viewer).await;
    if let Some(secret) = session::cookie_value(&headers, session::SESSION_COOKIE) {
        state.dashboard.sessions.remove(&secret);
    }
    if let Some(token) = crate::people::sessions::token_from_cookies(&headers) {
        crate::people::sessions::delete(&state.store, &token).await?;
    }
    let cookie = session::set_cookie(&state, session::SESSION_COOKIE, "", Some(0));
    Ok((
        axum::response::AppendHeaders([
            (header::SET_COOKIE, cookie),
            (
                header::SET_COOKIE,
                crate::people::sessions::clearing_cookie(),
            ),
        ]),
        Redirect::to("/dash/signin"),
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------------
// The inbox.

#[derive(Deserialize, Default, Clone)]
pub struct ListParams {
    #[serde(default)]
    view: String,
    #[serde(default)]
    outlet: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    q: String,
}

const VIEWS: &[(&str, &str)] = &[
    ("all", "All open"),
    ("mine", "Mine"),
    ("unassigned", "Unassigned"),
    ("pending", "Waiting for a person"),
    ("closed", "Closed"),
];

impl ListParams {
    fn view(&self) -> &str {
        if VIEWS.iter().any(|(k, _)| *k == self.view) {
            &self.view
        } else {
            "all"
        }
    }

    fn query(&self, view: &str) -> String {
        let mut q = format!("view={}", enc(view));
        for (k, v) in [
            ("outlet", &self.outlet),
            ("channel", &self.channel),
            ("label", &self.label),
            ("q", &self.q),
        ] {
            if !v.is_empty() {
                q.push_str(&format!("&{k}={}", enc(v)));
            }
        }
        q
    }

    /// Assignment is routing's: "mine" is what routing gave the signed-in person (or they took
    /// over), "unassigned" is what waits for a person with nobody on it (routing's queue, and
    /// conversations taken over by no agent), "pending" is every handoff not picked up yet.
    fn matches(&self, viewer: &Viewer, c: &Conversation, x: &ConversationExtras) -> bool {
        let open = c.state != ConversationState::Closed;
        let in_view = match self.view() {
            "mine" => open && viewer.user.is_some() && c.assigned_agent == viewer.user,
            "unassigned" => open && c.state != ConversationState::Bot && c.assigned_agent.is_none(),
            "pending" => c.state == ConversationState::PendingHuman,
            "closed" => !open,
            _ => open,
        };
        in_view
            && (self.outlet.is_empty()
                || c.outlet.map(|o| o.to_string()).as_deref() == Some(self.outlet.as_str()))
            && (self.channel.is_empty() || c.channel.to_string() == self.channel)
            && (self.label.is_empty() || x.labels.contains(&self.label))
    }
}

pub struct ViewTab {
    key: &'static str,
    label: &'static str,
    href: String,
    active: bool,
}

pub struct Filters {
    view: String,
    q: String,
    views: Vec<ViewTab>,
    outlets: Vec<(String, String, bool)>,
    channels: Vec<(String, String, bool)>,
    labels: Vec<(String, String, bool)>,
    /// The list's query string, for the live refresh of the list.
    query: String,
    search_note: Option<String>,
}

struct Listing {
    rows: Vec<RowView>,
    filters: Filters,
}

const LIST_LIMIT: usize = 100;

/// [`listing`] on a blocking thread. It reads every conversation of the tenant to order them by
/// activity, and the live refresh asks for it on every update of every open inbox; on a small
/// machine the runtime's single worker also answers webhooks.
async fn listing_off_runtime(
    state: &AppState,
    viewer: &Viewer,
    params: &ListParams,
    current: Option<ConversationId>,
) -> Result<Listing, DashError> {
    let (state, viewer, params) = (state.clone(), viewer.clone(), params.clone());
    tokio::task::spawn_blocking(move || listing(&state, &viewer, &params, current))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "inbox listing task failed");
            DashError::Internal
        })?
}

fn listing(
    state: &AppState,
    viewer: &Viewer,
    params: &ListParams,
    current: Option<ConversationId>,
) -> Result<Listing, DashError> {
    let tenant = viewer.tenant;
    let outlets: Vec<_> = tenants::list_outlets(&state.store, tenant)?
        .into_iter()
        .filter(|o| viewer.covers_outlet(Some(o.id)))
        .collect();
    let channels = tenants::list_channels(&state.store, tenant)?;
    let all_extras = extras::all_extras(&state.store, tenant)?;
    let mut search_note = None;
    let hits = if params.q.trim().is_empty() {
        None
    } else {
        match state.dashboard.search.search(tenant, params.q.trim(), 500) {
            Ok(hits) => {
                search_note = Some(format!(
                    "Conversations matching \u{201c}{}\u{201d} by name, number or text.",
                    params.q.trim()
                ));
                Some(hits)
            }
            Err(e) => {
                search_note = Some(format!("Search is unavailable: {e}"));
                Some(Vec::new())
            }
        }
    };
    let mut conversations =
        conversations::list_conversations(&state.store, tenant, None, usize::MAX)?;
    if let Some(hits) = &hits {
        // Best match first.
        let rank: std::collections::HashMap<_, _> =
            hits.iter().enumerate().map(|(i, c)| (*c, i)).collect();
        conversations.retain(|c| rank.contains_key(&c.id));
        conversations.sort_by_key(|c| rank.get(&c.id).copied().unwrap_or(usize::MAX));
    }
    let empty = ConversationExtras::default();
    let names = Names {
        outlets: &outlets,
        channels: &channels,
    };
    let team = Team::load(state, tenant)?;
    let places = dash_routing::queue_places(state, tenant)?;
    let mut rows = Vec::new();
    for c in conversations {
        if rows.len() >= LIST_LIMIT {
            break;
        }
        let x = all_extras.get(&c.id).unwrap_or(&empty);
        if !viewer.covers_outlet(c.outlet) || !params.matches(viewer, &c, x) {
            continue;
        }
        let last = conversations::recent_messages(&state.store, tenant, c.id, 1)?;
        let mut row = views::row_view(&c, x, last.last(), &names, &viewer.time_zone);
        row.current = current == Some(c.id);
        row.assignee = c.assigned_agent.as_deref().map(|u| team.name_of(u));
        row.waiting = places.get(&c.id).map(|p| dash_routing::queue_text(*p));
        rows.push(row);
    }
    let view = params.view().to_string();
    let mut labels: Vec<String> = all_extras
        .values()
        .flat_map(|x| x.labels.iter().cloned())
        .collect();
    labels.sort();
    labels.dedup();
    let filters = Filters {
        views: VIEWS
            .iter()
            .map(|(k, label)| ViewTab {
                key: k,
                label,
                href: format!("/dash/inbox?{}", params.query(k)),
                active: *k == view,
            })
            .collect(),
        outlets: outlets
            .iter()
            .map(|o| {
                let id = o.id.to_string();
                let sel = id == params.outlet;
                (id, o.name.clone(), sel)
            })
            .collect(),
        channels: channels
            .iter()
            .map(|c| {
                let id = c.id.to_string();
                let sel = id == params.channel;
                (id, c.name.clone(), sel)
            })
            .collect(),
        labels: labels
            .into_iter()
            .map(|l| {
                let sel = l == params.label;
                (l.clone(), l, sel)
            })
            .collect(),
        query: params.query(&view),
        q: params.q.clone(),
        view,
        search_note,
    };
    Ok(Listing { rows, filters })
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    nav: Nav,
    rows: Vec<RowView>,
    filters: Filters,
}

pub async fn inbox(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(params): Query<ListParams>,
) -> Result<Response, DashError> {
    let nav = Nav::new(&state, &viewer, "inbox")?;
    let Listing { rows, filters } = listing_off_runtime(&state, &viewer, &params, None).await?;
    html(InboxPage { nav, rows, filters })
}

#[derive(Template)]
#[template(path = "fragments/list.html")]
struct ListFragment {
    rows: Vec<RowView>,
}

#[derive(Deserialize, Default)]
pub struct ListFragmentParams {
    #[serde(flatten)]
    list: ListParams,
    #[serde(default)]
    current: String,
}

/// The list alone, for the live refresh.
pub async fn inbox_list(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(p): Query<ListFragmentParams>,
) -> Result<Response, DashError> {
    let current = p.current.parse().ok();
    let Listing { rows, .. } = listing_off_runtime(&state, &viewer, &p.list, current).await?;
    html(ListFragment { rows })
}

// ---------------------------------------------------------------------------------------------
// The conversation.

pub struct Head {
    id: String,
    name: String,
    number: String,
    state: &'static str,
    state_label: &'static str,
    handoff_reason: Option<String>,
    assignee: Option<String>,
    /// Its place in its outlet's queue, while it waits for an agent.
    waiting: Option<String>,
    /// While it waits: the team is away (outside business hours) and until when.
    away: Option<String>,
    /// Whom it may be assigned to (handed-off conversations only).
    candidates: Vec<Candidate>,
    can_assign: bool,
    labels: Vec<String>,
    labels_text: String,
    window_open: bool,
    window_text: String,
    outlet: Option<String>,
    channel: Option<String>,
    can_act: bool,
    role: &'static str,
    csrf: String,
}

/// The conversation, if it is the viewer's tenant's and of an outlet the viewer works for.
/// Anything else is "not found": a viewer learns nothing of conversations they may not see.
pub fn visible_conversation(
    state: &AppState,
    viewer: &Viewer,
    id: &str,
) -> Result<Conversation, DashError> {
    let not_found = || DashError::NotFound("no such conversation".into());
    let id: ConversationId = id.parse().map_err(|_| not_found())?;
    let c =
        conversations::get_conversation(&state.store, viewer.tenant, id)?.ok_or_else(not_found)?;
    if !viewer.covers_outlet(c.outlet) {
        return Err(not_found());
    }
    Ok(c)
}

fn window_text(c: &Conversation, now: i64, tz: &str) -> (bool, String) {
    if c.state == ConversationState::Closed {
        return (false, "Closed.".into());
    }
    let closes = c.window_closes_at_ms();
    if c.window_open(now) {
        let left = (closes - now) / 60_000;
        (
            true,
            format!(
                "24-hour window open: free-form replies until {} ({}h {:02}m left).",
                views::clock(closes, tz),
                left / 60,
                left % 60
            ),
        )
    } else {
        (
            false,
            format!(
                "24-hour window closed at {}: only template messages reach the customer.",
                views::clock(closes, tz)
            ),
        )
    }
}

fn head(
    state: &AppState,
    viewer: &Viewer,
    c: &Conversation,
    x: &ConversationExtras,
) -> Result<Head, DashError> {
    let outlets = tenants::list_outlets(&state.store, viewer.tenant)?;
    let channel = tenants::get_channel(&state.store, viewer.tenant, c.channel)?;
    let (window_open, window_text) = window_text(c, crate::events::now_ms(), &viewer.time_zone);
    let team = Team::load(state, viewer.tenant)?;
    let handed_off = matches!(
        c.state,
        ConversationState::PendingHuman | ConversationState::Human
    );
    let waiting = dash_routing::queue_places(state, viewer.tenant)?
        .get(&c.id)
        .map(|p| dash_routing::queue_text(*p));
    let away = match c.state {
        ConversationState::PendingHuman if c.assigned_agent.is_none() => {
            dash_routing::away_text(state, viewer.tenant, &viewer.time_zone, c.outlet)?
        }
        _ => None,
    };
    Ok(Head {
        id: c.id.to_string(),
        name: c
            .contact_name
            .clone()
            .unwrap_or_else(|| format!("+{}", c.contact_wa_id)),
        number: format!("+{}", c.contact_wa_id),
        state: c.state.as_str(),
        state_label: views::state_label(c.state),
        handoff_reason: c
            .handoff_reason
            .as_ref()
            .filter(|_| c.state != ConversationState::Bot)
            .map(views::reason_text),
        assignee: c.assigned_agent.as_deref().map(|u| team.name_of(u)),
        waiting,
        away,
        candidates: if handed_off {
            team.candidates(c.outlet, c.assigned_agent.as_deref())
        } else {
            Vec::new()
        },
        can_assign: handed_off && viewer.can_act(),
        labels: x.labels.clone(),
        labels_text: x.labels.join(", "),
        window_open,
        window_text,
        outlet: c
            .outlet
            .and_then(|o| outlets.iter().find(|x| x.id == o).map(|x| x.name.clone())),
        channel: channel.map(|ch| ch.name),
        can_act: viewer.can_act(),
        role: viewer.role.as_str(),
        csrf: viewer.csrf.clone(),
    })
}

#[derive(Template)]
#[template(path = "conversation.html")]
struct ConversationPage {
    nav: Nav,
    rows: Vec<RowView>,
    filters: Filters,
    head: Head,
    messages: Vec<MessageView>,
    canned: Vec<CannedResponse>,
}

/// Messages shown per conversation (the newest).
const TRANSCRIPT_LIMIT: usize = 500;

pub async fn conversation(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Response, DashError> {
    let nav = Nav::new(&state, &viewer, "conversation")?;
    let c = visible_conversation(&state, &viewer, &id)?;
    let x = extras::extras_of(&state.store, viewer.tenant, c.id)?;
    let messages =
        conversations::recent_messages(&state.store, viewer.tenant, c.id, TRANSCRIPT_LIMIT)?
            .iter()
            .map(|m| views::message_view(m, &viewer.time_zone))
            .collect();
    let Listing { rows, filters } =
        listing_off_runtime(&state, &viewer, &params, Some(c.id)).await?;
    html(ConversationPage {
        nav,
        rows,
        filters,
        head: head(&state, &viewer, &c, &x)?,
        messages,
        canned: extras::list_canned(&state.store, viewer.tenant)?,
    })
}

#[derive(Deserialize)]
pub struct ActionForm {
    csrf: String,
    #[serde(default)]
    text: String,
    /// The user id to assign to (empty: nobody).
    #[serde(default)]
    agent: String,
    #[serde(default)]
    labels: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    language: String,
}

/// Every action on a conversation: a POST form that redirects back (works without JavaScript).
pub async fn act(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<ActionForm>,
) -> Result<Response, DashError> {
    viewer.check_csrf(&f.csrf)?;
    viewer.require_agent()?;
    let c = visible_conversation(&state, &viewer, &id)?;
    let (store, tenant, cid) = (&state.store, viewer.tenant, c.id);
    // Take over, hand back, close and assign go through the functions the JSON API uses, which
    // route, announce and audit; the rest announce here.
    let update = match action.as_str() {
        "takeover" => {
            // A person takes it for themselves (routing makes it theirs); the operator's
            // sessions are nobody's agent and leave the assignment as it is.
            if let Some(user) = &viewer.user {
                dash_routing::ensure_agent(&state, tenant, user).await?;
            }
            conversation_api::take_over_as(
                &state,
                tenant,
                cid,
                viewer.user.clone(),
                viewer.actor(),
            )
            .await?;
            None
        }
        "handback" => {
            conversation_api::hand_back_announced(&state, tenant, cid).await?;
            None
        }
        "close" => {
            conversation_api::close_announced(&state, tenant, cid).await?;
            None
        }
        "assign" => {
            let agent = Some(f.agent.trim().to_string()).filter(|a| !a.is_empty());
            if let Some(user) = &agent {
                Team::load(&state, tenant)?.check_candidate(user, c.outlet)?;
                dash_routing::ensure_agent(&state, tenant, user).await?;
            }
            routing_api::assign_audited(&state, tenant, cid, agent, viewer.actor()).await?;
            None
        }
        "reply" => {
            let text = expand_canned(&state, &viewer, &f.text)?;
            conversations::actions::agent_reply(store, tenant, cid, text).await?;
            Some(LiveUpdate::message(tenant, cid))
        }
        "labels" => {
            let labels = f.labels.split(',').map(str::to_string).collect();
            extras::set_labels(store, tenant, cid, labels).await?;
            Some(LiveUpdate::state(tenant, cid))
        }
        "note" => {
            extras::private_note(store, tenant, cid, viewer.name.clone(), f.text.clone()).await?;
            Some(LiveUpdate::message(tenant, cid))
        }
        "template" => {
            extras::send_template(store, tenant, cid, f.name.clone(), f.language.clone()).await?;
            Some(LiveUpdate::message(tenant, cid))
        }
        _ => return Err(DashError::NotFound("no such action".into())),
    };
    if let Some(update) = update {
        state.live.publish(update);
    }
    Ok(Redirect::to(&format!("/dash/c/{cid}")).into_response())
}

/// A reply that is exactly `/shortcut` sends that canned response.
fn expand_canned(state: &AppState, viewer: &Viewer, text: &str) -> Result<String, DashError> {
    let t = text.trim();
    if let Some(shortcut) = t.strip_prefix('/') {
        if !shortcut.is_empty() && !shortcut.contains(char::is_whitespace) {
            return match extras::canned(&state.store, viewer.tenant, shortcut)? {
                Some(c) => Ok(c.text),
                None => Err(DashError::BadRequest(format!(
                    "no canned reply has the shortcut /{shortcut}"
                ))),
            };
        }
    }
    Ok(text.to_string())
}

// ---------------------------------------------------------------------------------------------
// Canned replies.

#[derive(Template)]
#[template(path = "canned.html")]
struct CannedPage {
    nav: Nav,
    canned: Vec<CannedResponse>,
    can_edit: bool,
}

pub async fn canned(State(state): State<AppState>, viewer: Viewer) -> Result<Response, DashError> {
    html(CannedPage {
        nav: Nav::new(&state, &viewer, "canned")?,
        canned: extras::list_canned(&state.store, viewer.tenant)?,
        can_edit: viewer.can_act(),
    })
}

#[derive(Deserialize)]
pub struct CannedForm {
    csrf: String,
    shortcut: String,
    #[serde(default)]
    text: String,
}

pub async fn canned_save(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(f): Form<CannedForm>,
) -> Result<Response, DashError> {
    viewer.check_csrf(&f.csrf)?;
    viewer.require_agent()?;
    extras::save_canned(&state.store, viewer.tenant, &f.shortcut, &f.text).await?;
    Ok(Redirect::to("/dash/canned").into_response())
}

pub async fn canned_delete(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(f): Form<CannedForm>,
) -> Result<Response, DashError> {
    viewer.check_csrf(&f.csrf)?;
    viewer.require_agent()?;
    extras::delete_canned(&state.store, viewer.tenant, &f.shortcut).await?;
    Ok(Redirect::to("/dash/canned").into_response())
}
