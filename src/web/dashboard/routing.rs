//! Routing in the dashboard: the tenant's team as routing sees it (whom a conversation may be
//! assigned to, their presence and load), a person's own presence in the header, where a waiting
//! conversation stands in its outlet's queue and whether its outlet is in hours, and the admins'
//! routing page (business hours, agents, settings). Every change goes through the functions the
//! routing API uses (`conversations::routing`), so capacity, the audit log and the live feed
//! behave the same from both.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use jiff::tz::TimeZone;
use serde::Deserialize;

use super::pages::{html, Nav};
use super::session::Viewer;
use super::DashError;
use crate::conversations::routing::hours::{ClockTime, Span};
use crate::conversations::routing::{
    self, routes as api, AgentUpdate, AgentView, Availability, BusinessHours, RoutingError,
    RoutingSettings,
};
use crate::people::{Role as PersonRole, User, UserStatus};
use crate::storage::{ConversationId, OutletId, TenantId};
use crate::tenants;
use crate::web::{Access, Api, ApiError, AppState};

pub fn api() -> Api {
    use Access::Page;
    Api::new()
        .post("/dash/presence", Page, presence)
        .get("/dash/admin/routing", Page, page)
        .post("/dash/admin/routing/settings", Page, settings_save)
        .post("/dash/admin/routing/hours", Page, hours_save)
        .post("/dash/admin/routing/agents", Page, agent_save)
}

impl From<RoutingError> for DashError {
    fn from(e: RoutingError) -> Self {
        ApiError::from(e).into()
    }
}

// ---------------------------------------------------------------------------------------------
// The team.

/// The tenant's people and their agent rows, read once per page.
pub struct Team {
    people: Vec<User>,
    agents: HashMap<String, AgentView>,
}

/// Someone a conversation may be assigned to, as the picker lists them.
pub struct Candidate {
    pub id: String,
    pub label: String,
    pub selected: bool,
}

impl Team {
    pub fn load(state: &AppState, tenant: TenantId) -> Result<Self, DashError> {
        Ok(Self {
            people: crate::people::users::list(&state.store, tenant)?,
            agents: routing::list_agents(&state.store, tenant)?
                .into_iter()
                .map(|a| (a.user.clone(), a))
                .collect(),
        })
    }

    /// How the dashboard names a user id: their name; a user since removed, by id.
    pub fn name_of(&self, user: &str) -> String {
        self.people
            .iter()
            .find(|p| p.id.to_string() == user)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| format!("user {user}"))
    }

    /// Whether `p` may be given a conversation of `outlet`: active, working conversations,
    /// working for that outlet, and (once an agent) serving it.
    fn may_take(&self, p: &User, outlet: Option<OutletId>) -> bool {
        let works_there = p.outlets.is_empty() || outlet.is_some_and(|o| p.outlets.contains(&o));
        let serves = match (self.agents.get(&p.id.to_string()), outlet) {
            (Some(a), Some(o)) => a.outlets.is_empty() || a.outlets.contains(&o),
            _ => true,
        };
        p.status == UserStatus::Active && p.role >= PersonRole::Agent && works_there && serves
    }

    /// The people a conversation of `outlet` may be assigned to, online first, with their load.
    pub fn candidates(&self, outlet: Option<OutletId>, current: Option<&str>) -> Vec<Candidate> {
        let mut list: Vec<(bool, Candidate)> = self
            .people
            .iter()
            .filter(|p| self.may_take(p, outlet))
            .map(|p| {
                let id = p.id.to_string();
                let agent = self.agents.get(&id);
                let online = agent.is_some_and(|a| a.online);
                let (load, capacity) = agent
                    .map(|a| (a.load, a.capacity))
                    .unwrap_or((0, routing::agents::DEFAULT_CAPACITY));
                let mut label = format!(
                    "{} · {} · {load}/{capacity}",
                    p.name,
                    if online { "online" } else { "away" }
                );
                if load >= capacity {
                    label.push_str(" (full)");
                }
                let selected = current == Some(id.as_str());
                (
                    online,
                    Candidate {
                        id,
                        label,
                        selected,
                    },
                )
            })
            .collect();
        list.sort_by(|(a_on, a), (b_on, b)| b_on.cmp(a_on).then_with(|| a.label.cmp(&b.label)));
        list.into_iter().map(|(_, c)| c).collect()
    }

    /// Checks that `user` may be given a conversation of `outlet`.
    pub fn check_candidate(&self, user: &str, outlet: Option<OutletId>) -> Result<(), DashError> {
        match self.people.iter().find(|p| p.id.to_string() == user) {
            Some(p) if self.may_take(p, outlet) => Ok(()),
            Some(p) => Err(DashError::BadRequest(format!(
                "{} cannot take this conversation: they need the agent or admin role, an \
                 active account and to work for its outlet",
                p.name
            ))),
            None => Err(DashError::BadRequest(
                "no such person in this tenant".into(),
            )),
        }
    }
}

/// Makes the person `user` a routing agent (offline, of their own outlets) if they are not one
/// yet, so that routing can hand them what they take over or are assigned.
pub async fn ensure_agent(state: &AppState, tenant: TenantId, user: &str) -> Result<(), DashError> {
    match routing::get_agent(&state.store, tenant, user) {
        Ok(_) => Ok(()),
        Err(RoutingError::NotFound(_)) => {
            api::update_person(state, tenant, user, AgentUpdate::default()).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// A signed-in person's own presence, for the header: None for whoever does not work
/// conversations (viewers, the operator's sessions).
pub struct MyPresence {
    pub online: bool,
    pub load: u32,
    pub capacity: u32,
}

pub fn my_presence(state: &AppState, viewer: &Viewer) -> Result<Option<MyPresence>, DashError> {
    let Some(user) = viewer.user.as_deref().filter(|_| viewer.can_act()) else {
        return Ok(None);
    };
    Ok(Some(
        match routing::get_agent(&state.store, viewer.tenant, user) {
            Ok(a) => MyPresence {
                online: a.online,
                load: a.load,
                capacity: a.capacity,
            },
            Err(RoutingError::NotFound(_)) => MyPresence {
                online: false,
                load: 0,
                capacity: routing::agents::DEFAULT_CAPACITY,
            },
            Err(e) => return Err(e.into()),
        },
    ))
}

#[derive(Deserialize)]
pub struct PresenceForm {
    csrf: String,
    online: String,
}

/// Where a form posted from a dashboard page goes back to: that page (a path of ours only).
fn back_to(headers: &HeaderMap) -> String {
    headers
        .get(header::REFERER)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| r.split_once("://"))
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
        .filter(|p| p.starts_with("/dash/") && !p.starts_with("//") && !p.contains('\\'))
        .unwrap_or_else(|| "/dash/inbox".into())
}

/// The header's Online / Away switch: routing's presence, so going online takes waiting
/// conversations (round robin, within capacity) and going away passes on those not yet
/// picked up.
async fn presence(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(f): Form<PresenceForm>,
) -> Result<Response, DashError> {
    viewer.check_csrf(&f.csrf)?;
    viewer.require_agent()?;
    let Some(user) = viewer.user.as_deref() else {
        return Err(DashError::Forbidden(
            "the operator's sessions are nobody's agent: sign in with your own account to take conversations".into(),
        ));
    };
    api::set_presence(&state, viewer.tenant, user, f.online == "1").await?;
    Ok(Redirect::to(&back_to(&headers)).into_response())
}

/// Signing out of the dashboard takes a person off the rota.
pub async fn signed_out(state: &AppState, viewer: &Viewer) {
    let Some(user) = viewer.user.as_deref() else {
        return;
    };
    if matches!(routing::get_agent(&state.store, viewer.tenant, user), Ok(a) if a.online) {
        if let Err(e) = api::set_presence(state, viewer.tenant, user, false).await {
            tracing::warn!(tenant = %viewer.tenant, error = %e.message, "could not set a signed-out agent away");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Waiting conversations.

/// Where each queued conversation stands in its outlet's queue: (place, how many wait there).
pub fn queue_places(
    state: &AppState,
    tenant: TenantId,
) -> Result<HashMap<ConversationId, (usize, usize)>, DashError> {
    let entries = routing::queue(&state.store, tenant, None)?;
    let mut per_outlet: HashMap<Option<OutletId>, Vec<ConversationId>> = HashMap::new();
    for e in entries {
        per_outlet.entry(e.outlet).or_default().push(e.conversation);
    }
    let mut places = HashMap::new();
    for waiting in per_outlet.values() {
        for (i, c) in waiting.iter().enumerate() {
            places.insert(*c, (i + 1, waiting.len()));
        }
    }
    Ok(places)
}

pub fn queue_text((place, of): (usize, usize)) -> String {
    format!("In the queue: {place} of {of} waiting")
}

/// The hours that apply to `outlet`: its own, else the tenant's default.
fn hours_for(
    state: &AppState,
    tenant: TenantId,
    outlet: Option<OutletId>,
) -> Result<Option<BusinessHours>, DashError> {
    if outlet.is_some() {
        if let Some(h) = routing::business_hours(&state.store, tenant, outlet)? {
            return Ok(Some(h));
        }
    }
    Ok(routing::business_hours(&state.store, tenant, None)?)
}

fn availability_text(availability: Availability) -> Option<String> {
    match availability {
        Availability::Open => None,
        Availability::ClosedUntil(at) => Some(format!(
            "Outside business hours: the team is back {}. A customer handed off now is told when.",
            at.strftime("%a %d %b at %H:%M")
        )),
        Availability::Closed => Some(
            "Outside business hours (none are open this week): a customer handed off now is told the team answers as soon as it can."
                .into(),
        ),
    }
}

/// Whether the team of `outlet` is away now, and until when (None: in hours).
pub fn away_text(
    state: &AppState,
    tenant: TenantId,
    time_zone: &str,
    outlet: Option<OutletId>,
) -> Result<Option<String>, DashError> {
    let tz = TimeZone::get(time_zone).unwrap_or(TimeZone::UTC);
    let hours = hours_for(state, tenant, outlet)?;
    Ok(availability_text(routing::availability(
        hours.as_ref(),
        jiff::Timestamp::now(),
        &tz,
    )))
}

// ---------------------------------------------------------------------------------------------
// The routing page (admins).

const DAYS: [(&str, &str); 7] = [
    ("monday", "Monday"),
    ("tuesday", "Tuesday"),
    ("wednesday", "Wednesday"),
    ("thursday", "Thursday"),
    ("friday", "Friday"),
    ("saturday", "Saturday"),
    ("sunday", "Sunday"),
];

fn day_spans<'a>(h: &'a BusinessHours, day: &str) -> &'a [Span] {
    match day {
        "monday" => &h.monday,
        "tuesday" => &h.tuesday,
        "wednesday" => &h.wednesday,
        "thursday" => &h.thursday,
        "friday" => &h.friday,
        "saturday" => &h.saturday,
        _ => &h.sunday,
    }
}

fn spans_text(spans: &[Span]) -> String {
    spans
        .iter()
        .map(|s| format!("{}-{}", s.open, s.close))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "08:00-12:00, 13:00-17:00" (empty or "closed": closed all day).
fn parse_spans(day: &str, text: &str) -> Result<Vec<Span>, DashError> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("closed") {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|part| {
            let bad = |why: String| DashError::BadRequest(format!("{day}: {why}"));
            let (open, close) = part
                .trim()
                .split_once('-')
                .ok_or_else(|| bad(format!("{:?} is not a span like 08:00-17:00", part.trim())))?;
            Ok(Span {
                open: open.trim().parse::<ClockTime>().map_err(bad)?,
                close: close.trim().parse::<ClockTime>().map_err(bad)?,
            })
        })
        .collect()
}

pub struct HoursRow {
    key: String,
    name: String,
    /// Whether these are the hours in force (an outlet without its own follows the default).
    own: bool,
    days: Vec<(&'static str, &'static str, String)>,
    /// What an empty day means here: closed once hours are set; nothing is set yet otherwise.
    placeholder: &'static str,
    now: String,
}

pub struct AgentRow {
    id: String,
    name: String,
    email: String,
    role: &'static str,
    online: bool,
    capacity: u32,
    load: u32,
    /// The outlets the person works for: (id, name, served now).
    outlets: Vec<(String, String, bool)>,
    serves: String,
}

#[derive(Template)]
#[template(path = "admin/routing.html")]
struct RoutingPage {
    nav: Nav,
    settings: RoutingSettings,
    hours: Vec<HoursRow>,
    agents: Vec<AgentRow>,
    queue: usize,
    time_zone: String,
}

async fn page(State(state): State<AppState>, viewer: Viewer) -> Result<Response, DashError> {
    viewer.require_admin()?;
    let tenant = viewer.tenant;
    let tz = TimeZone::get(&viewer.time_zone).unwrap_or(TimeZone::UTC);
    let now = jiff::Timestamp::now();
    let outlets = tenants::list_outlets(&state.store, tenant)?;
    let default = routing::business_hours(&state.store, tenant, None)?;
    let mut hours = Vec::new();
    let mut places: Vec<(Option<OutletId>, String)> = Vec::new();
    if viewer.outlets.is_empty() {
        places.push((
            None,
            "Default (outlets without hours of their own, numbers without an outlet)".into(),
        ));
    }
    places.extend(
        outlets
            .iter()
            .filter(|o| viewer.covers_outlet(Some(o.id)))
            .map(|o| (Some(o.id), o.name.clone())),
    );
    for (outlet, name) in places {
        let own = match outlet {
            Some(_) => routing::business_hours(&state.store, tenant, outlet)?,
            None => default.clone(),
        };
        let in_force = own.clone().or_else(|| default.clone());
        let now_text = availability_text(routing::availability(in_force.as_ref(), now, &tz))
            .unwrap_or_else(|| match &in_force {
                Some(_) => "Open now.".into(),
                None => "No hours set: always open.".into(),
            });
        hours.push(HoursRow {
            key: outlet
                .map(|o| o.to_string())
                .unwrap_or_else(|| "default".into()),
            name,
            own: own.is_some(),
            days: DAYS
                .iter()
                .map(|(key, label)| {
                    let text = in_force
                        .as_ref()
                        .map(|h| spans_text(day_spans(h, key)))
                        .unwrap_or_default();
                    (*key, *label, text)
                })
                .collect(),
            placeholder: if in_force.is_some() {
                "closed"
            } else {
                "not set"
            },
            now: now_text,
        });
    }
    let team = Team::load(&state, tenant)?;
    let outlet_name = |o: &OutletId| {
        outlets
            .iter()
            .find(|x| x.id == *o)
            .map(|x| x.name.clone())
            .unwrap_or_else(|| o.to_string())
    };
    let agents = team
        .people
        .iter()
        .filter(|p| p.status == UserStatus::Active && p.role >= PersonRole::Agent)
        .map(|p| {
            let id = p.id.to_string();
            let agent = team.agents.get(&id);
            let served: Vec<OutletId> = agent.map(|a| a.outlets.clone()).unwrap_or_default();
            let may: Vec<&tenants::Outlet> = outlets
                .iter()
                .filter(|o| p.outlets.is_empty() || p.outlets.contains(&o.id))
                .collect();
            AgentRow {
                name: p.name.clone(),
                email: p.email.clone(),
                role: match p.role {
                    PersonRole::Admin => "admin",
                    PersonRole::Agent => "agent",
                    PersonRole::Viewer => "viewer",
                },
                online: agent.is_some_and(|a| a.online),
                capacity: agent
                    .map(|a| a.capacity)
                    .unwrap_or(routing::agents::DEFAULT_CAPACITY),
                load: agent.map(|a| a.load).unwrap_or(0),
                outlets: may
                    .iter()
                    .map(|o| (o.id.to_string(), o.name.clone(), served.contains(&o.id)))
                    .collect(),
                serves: if served.is_empty() {
                    "every outlet they work for".into()
                } else {
                    served
                        .iter()
                        .map(outlet_name)
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                id,
            }
        })
        .collect();
    let queue = routing::queue(&state.store, tenant, None)?
        .into_iter()
        .filter(|e| viewer.covers_outlet(e.outlet))
        .count();
    html(RoutingPage {
        nav: Nav::new(&state, &viewer, "routing")?,
        settings: routing::settings(&state.store, tenant)?,
        hours,
        agents,
        queue,
        time_zone: viewer.time_zone.clone(),
    })
}

#[derive(Deserialize)]
struct SettingsForm {
    csrf: String,
    #[serde(default)]
    allow_bot_return: String,
    unhelpful_turn_limit: String,
}

async fn settings_save(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(f): Form<SettingsForm>,
) -> Result<Response, DashError> {
    viewer.check_csrf(&f.csrf)?;
    viewer.require_admin()?;
    let limit = f.unhelpful_turn_limit.trim().parse().map_err(|_| {
        DashError::BadRequest("unhelpful answers before a handoff: a number from 1 to 10".into())
    })?;
    routing::set_settings(
        &state.store,
        viewer.tenant,
        RoutingSettings {
            allow_bot_return: f.allow_bot_return == "1",
            unhelpful_turn_limit: limit,
        },
    )
    .await?;
    Ok(Redirect::to("/dash/admin/routing").into_response())
}

#[derive(Deserialize)]
struct HoursForm {
    csrf: String,
    outlet: String,
    #[serde(default)]
    always_open: String,
    #[serde(default)]
    monday: String,
    #[serde(default)]
    tuesday: String,
    #[serde(default)]
    wednesday: String,
    #[serde(default)]
    thursday: String,
    #[serde(default)]
    friday: String,
    #[serde(default)]
    saturday: String,
    #[serde(default)]
    sunday: String,
}

async fn hours_save(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(f): Form<HoursForm>,
) -> Result<Response, DashError> {
    viewer.check_csrf(&f.csrf)?;
    viewer.require_admin()?;
    let outlet = match f.outlet.as_str() {
        "default" => None,
        id => Some(
            id.parse::<OutletId>()
                .map_err(|_| DashError::BadRequest("outlet: not an outlet id".into()))?,
        ),
    };
    // As the API: an outlet's hours by an admin who works for it, the default by an admin of
    // every outlet.
    if !viewer.covers_outlet(outlet) {
        return Err(DashError::Forbidden(
            "this outlet is not one you work for".into(),
        ));
    }
    let days = [
        &f.monday,
        &f.tuesday,
        &f.wednesday,
        &f.thursday,
        &f.friday,
        &f.saturday,
        &f.sunday,
    ];
    let hours = if f.always_open == "1" {
        None
    } else if days.iter().all(|d| d.trim().is_empty()) {
        // Saving the blank form would close the outlet all week: say so instead.
        return Err(DashError::BadRequest(
            "enter the hours of at least one day (write \"closed\" on every day to close all week), \
             or choose always open"
                .into(),
        ));
    } else {
        Some(BusinessHours {
            monday: parse_spans("Monday", &f.monday)?,
            tuesday: parse_spans("Tuesday", &f.tuesday)?,
            wednesday: parse_spans("Wednesday", &f.wednesday)?,
            thursday: parse_spans("Thursday", &f.thursday)?,
            friday: parse_spans("Friday", &f.friday)?,
            saturday: parse_spans("Saturday", &f.saturday)?,
            sunday: parse_spans("Sunday", &f.sunday)?,
        })
    };
    routing::set_business_hours(&state.store, viewer.tenant, outlet, hours).await?;
    Ok(Redirect::to("/dash/admin/routing").into_response())
}

/// The agent form: `user`, `capacity`, `online` (present when ticked) and one `outlet` per
/// outlet served (none: every outlet the person works for).
async fn agent_save(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, DashError> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    viewer.check_csrf(field("csrf").unwrap_or_default())?;
    viewer.require_admin()?;
    let user = field("user").unwrap_or_default().to_string();
    let capacity = field("capacity")
        .unwrap_or_default()
        .trim()
        .parse::<u32>()
        .map_err(|_| {
            DashError::BadRequest(format!(
                "capacity: a number from 0 to {}",
                routing::agents::MAX_CAPACITY
            ))
        })?;
    let outlets = fields
        .iter()
        .filter(|(k, _)| k == "outlet")
        .map(|(_, v)| {
            v.parse::<OutletId>()
                .map_err(|_| DashError::BadRequest("outlet: not an outlet id".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    api::update_person(
        &state,
        viewer.tenant,
        &user,
        AgentUpdate {
            outlets: Some(outlets),
            capacity: Some(capacity),
            online: Some(field("online") == Some("1")),
        },
    )
    .await?;
    Ok(Redirect::to("/dash/admin/routing").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_are_written_and_read_as_spans() {
        let spans = parse_spans("Monday", " 08:00-12:00 , 13:00 - 17:30").unwrap();
        assert_eq!(spans_text(&spans), "08:00-12:00, 13:00-17:30");
        assert!(parse_spans("Monday", "closed").unwrap().is_empty());
        assert!(parse_spans("Monday", "").unwrap().is_empty());
        for bad in ["8", "08:00", "08:00-25:00", "nine-five"] {
            assert!(parse_spans("Monday", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forms_go_back_to_a_dashboard_page_only() {
        let mut h = HeaderMap::new();
        assert_eq!(back_to(&h), "/dash/inbox");
        h.insert(
            header::REFERER,
            "http://127.0.0.1:8080/dash/c/abc?view=mine"
                .parse()
                .unwrap(),
        );
        assert_eq!(back_to(&h), "/dash/c/abc?view=mine");
        h.insert(
            header::REFERER,
            "https://evil.example/phish".parse().unwrap(),
        );
        assert_eq!(back_to(&h), "/dash/inbox");
        h.insert(
            header::REFERER,
            "https://x//evil.example/dash/".parse().unwrap(),
        );
        assert_eq!(back_to(&h), "/dash/inbox");
    }
}
