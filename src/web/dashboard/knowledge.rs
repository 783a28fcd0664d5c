//! The knowledge page: bases (with the outlets they serve) and their documents with status,
//! progress and failure reason, kept current while they ingest (`/static/knowledge.js` polls
//! the progress endpoint, which waits briefly on the service's change signal); creating and
//! deleting bases, uploading files and adding pages, deleting documents; and the search tester,
//! which runs the assistant's own search. Everyone of the tenant may read it; admins change it,
//! through `knowledge::actions` as the JSON API does.

use std::collections::HashMap;
use std::time::Duration;

use askama::Template;
use axum::extract::{DefaultBodyLimit, Multipart, Query, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Form, Json};
use serde::{Deserialize, Serialize};

use super::audit::{stamp, Acting};
use super::forms::{id_field, refusal, AdminForm};
use super::pages::{html, Nav};
use super::session::Viewer;
use super::DashError;
use crate::billing::quota::bytes_label;
use crate::knowledge::actions;
use crate::knowledge::retrieve::SearchRequest;
use crate::knowledge::{Document, DocumentSource, DocumentStatus};
use crate::storage::{DocumentId, KnowledgeBaseId, OutletId};
use crate::web::{Access, Api, AppState};

/// Longest the progress endpoint waits for a change before answering with what it has: short,
/// so a stopping server never waits long on it.
const PROGRESS_HOLD: Duration = Duration::from_secs(1);

pub fn api() -> Api {
    use Access::{Page, Public};
    Api::new()
        .get("/dash/admin/knowledge", Page, page)
        .get("/dash/admin/knowledge/progress", Page, progress)
        .post("/dash/admin/knowledge/bases", Page, create_base)
        .post("/dash/admin/knowledge/bases/delete", Page, delete_base)
        // The upload reader bounds the body itself (`knowledge::actions::upload_body_limit`).
        .on(
            Method::POST,
            "/dash/admin/knowledge/upload",
            Page,
            post(upload).layer(DefaultBodyLimit::disable()),
        )
        .post("/dash/admin/knowledge/url", Page, add_url)
        .post(
            "/dash/admin/knowledge/documents/delete",
            Page,
            delete_document,
        )
        .get("/static/knowledge.js", Public, script)
}

/// A document as the page (and the progress endpoint) shows it.
#[derive(Serialize)]
pub struct DocView {
    pub id: String,
    /// File name, or the page's address.
    pub name: String,
    /// The title found in it, when it says more than the name.
    pub title: Option<String>,
    /// The page's address, for documents added by URL.
    pub url: Option<String>,
    pub size: String,
    pub status: &'static str,
    pub label: &'static str,
    /// Of the whole ingestion, 0-100.
    pub percent: u8,
    pub failure: Option<String>,
    pub chunks: u32,
    pub updated: String,
    /// Ready or failed: nothing more will change by itself.
    pub settled: bool,
}

/// The whole ingestion's progress from a status and the progress within it: parsing is quick,
/// embedding is the long part.
pub fn overall_percent(status: DocumentStatus, progress: u8) -> u8 {
    let p = u32::from(progress.min(100));
    match status {
        DocumentStatus::Queued => 0,
        DocumentStatus::Parsing => (5 + p / 20) as u8,
        DocumentStatus::Embedding => (10 + p * 89 / 100) as u8,
        DocumentStatus::Ready | DocumentStatus::Failed => 100,
    }
}

fn status_names(s: DocumentStatus) -> (&'static str, &'static str) {
    match s {
        DocumentStatus::Queued => ("queued", "Queued"),
        DocumentStatus::Parsing => ("parsing", "Parsing"),
        DocumentStatus::Embedding => ("embedding", "Embedding"),
        DocumentStatus::Ready => ("ready", "Ready"),
        DocumentStatus::Failed => ("failed", "Failed"),
    }
}

fn doc_view(d: Document, tz: &str) -> DocView {
    let (status, label) = status_names(d.status);
    DocView {
        id: d.id.to_string(),
        url: match &d.source {
            DocumentSource::Url { url } => Some(url.clone()),
            DocumentSource::Upload => None,
        },
        title: d
            .title
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty() && *t != d.name)
            .map(str::to_string),
        name: d.name.clone(),
        size: bytes_label(d.size_bytes),
        status,
        label,
        percent: overall_percent(d.status, d.progress),
        failure: d.failure.map(|f| f.reason),
        chunks: d.chunk_count,
        updated: stamp(d.updated_at_ms, tz),
        settled: d.status.is_final(),
    }
}

pub struct BaseView {
    pub id: String,
    pub name: String,
    pub scope: String,
    pub documents: Vec<DocView>,
    pub ready: usize,
    pub failed: usize,
    pub chunks: u64,
}

pub struct HitView {
    pub rank: usize,
    pub document: String,
    pub heading: String,
    pub page: Option<u32>,
    pub text: String,
    pub score: String,
    pub detail: String,
    pub below: bool,
    pub confident: bool,
}

#[derive(Default)]
pub struct SearchView {
    pub searched: bool,
    pub query: String,
    pub hits: Vec<HitView>,
    pub min_score: String,
    pub confident_score: String,
    pub dense_unavailable: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/knowledge.html")]
struct KnowledgePage {
    nav: Nav,
    can_change: bool,
    version: u64,
    bases: Vec<BaseView>,
    outlets: Vec<(String, String)>,
    max_size: String,
    search: SearchView,
    /// (value, label, selected) of the search tester's selects.
    outlet_options: Vec<(String, String, bool)>,
    kb_options: Vec<(String, String, bool)>,
    show_all: bool,
}

#[derive(Deserialize, Default)]
struct Params {
    #[serde(default)]
    q: String,
    #[serde(default)]
    kb: String,
    #[serde(default)]
    outlet: String,
    #[serde(default)]
    all: String,
}

async fn search_view(
    state: &AppState,
    viewer: &Viewer,
    p: &Params,
    names: &HashMap<KnowledgeBaseId, String>,
) -> Result<SearchView, DashError> {
    let config = state.knowledge.config();
    let mut view = SearchView {
        min_score: format!("{:.2}", config.min_score),
        confident_score: format!("{:.2}", config.confident_score),
        ..SearchView::default()
    };
    let query = p.q.trim();
    if query.is_empty() {
        return Ok(view);
    }
    let outlet = match p.outlet.trim() {
        "" => None,
        o => Some(id_field::<OutletId>("outlet", o)?),
    };
    let kb = match p.kb.trim() {
        "" => None,
        k => Some(id_field::<KnowledgeBaseId>("kb", k)?),
    };
    if let Some(k) = kb {
        // Another tenant's base is simply not found here.
        state
            .knowledge
            .get_kb(viewer.tenant, k)
            .map_err(crate::web::ApiError::from)?;
    }
    let show_all = !p.all.is_empty();
    let req = SearchRequest {
        tenant: viewer.tenant,
        outlet,
        kb,
        query: query.to_string(),
        limit: if show_all {
            20
        } else {
            config.top_k.clamp(1, 50)
        },
        min_score: Some(if show_all { 0.0 } else { config.min_score }),
    };
    let outcome = state
        .knowledge
        .search(&req)
        .await
        .map_err(crate::web::ApiError::from)?;
    let fmt = |v: Option<f32>| v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "—".into());
    let rank = |v: Option<usize>| {
        v.map(|x| format!("#{}", x + 1))
            .unwrap_or_else(|| "—".into())
    };
    view.searched = true;
    view.query = query.to_string();
    view.dense_unavailable = outcome.dense_unavailable;
    view.hits = outcome
        .hits
        .into_iter()
        .enumerate()
        .map(|(i, h)| HitView {
            rank: i + 1,
            document: {
                let base = names.get(&h.kb).cloned().unwrap_or_default();
                match &h.document_title {
                    Some(t) if t != &h.document_name => {
                        format!("{} ({t}) · {base}", h.document_name)
                    }
                    _ => format!("{} · {base}", h.document_name),
                }
            },
            heading: h.heading_path.join(" › "),
            page: h.page,
            score: format!("{:.3}", h.score),
            detail: format!(
                "cosine {} ({}), BM25 {} ({}), fused {:.4}",
                fmt(h.cosine),
                rank(h.dense_rank),
                fmt(h.bm25),
                rank(h.bm25_rank),
                h.fused
            ),
            below: h.score < config.min_score,
            confident: h.score >= config.confident_score,
            text: h.text,
        })
        .collect();
    Ok(view)
}

async fn render(
    state: &AppState,
    viewer: &Viewer,
    p: &Params,
    flash: Option<(StatusCode, String)>,
) -> Result<Response, DashError> {
    let tenant = viewer.tenant;
    let tz = viewer.time_zone.as_str();
    // Read before the documents: a change after this shows on the first poll.
    let version = *state.knowledge.changes().borrow();
    let mut nav = Nav::new(state, viewer, "knowledge")?;
    let outlets = crate::tenants::list_outlets(&state.store, tenant)?;
    let outlet_name: HashMap<OutletId, String> =
        outlets.iter().map(|o| (o.id, o.name.clone())).collect();
    let kbs = state
        .knowledge
        .list_kbs(tenant)
        .map_err(crate::web::ApiError::from)?;
    let mut docs = state
        .knowledge
        .list_documents(tenant, None)
        .map_err(crate::web::ApiError::from)?;
    docs.sort_by_key(|d| d.created_at_ms);
    let mut bases: Vec<BaseView> = kbs
        .iter()
        .map(|kb| {
            let mine: Vec<&Document> = docs.iter().filter(|d| d.kb == kb.id).collect();
            BaseView {
                id: kb.id.to_string(),
                name: kb.name.clone(),
                scope: if kb.outlets.is_empty() {
                    "every conversation of the tenant".into()
                } else {
                    let names: Vec<String> = kb
                        .outlets
                        .iter()
                        .map(|o| outlet_name.get(o).cloned().unwrap_or_else(|| o.to_string()))
                        .collect();
                    format!("conversations of {}", names.join(", "))
                },
                ready: mine
                    .iter()
                    .filter(|d| d.status == DocumentStatus::Ready)
                    .count(),
                failed: mine
                    .iter()
                    .filter(|d| d.status == DocumentStatus::Failed)
                    .count(),
                chunks: mine.iter().map(|d| u64::from(d.chunk_count)).sum(),
                documents: mine.into_iter().map(|d| doc_view(d.clone(), tz)).collect(),
            }
        })
        .collect();
    bases.sort_by(|a, b| a.name.cmp(&b.name));
    let names: HashMap<KnowledgeBaseId, String> =
        kbs.iter().map(|k| (k.id, k.name.clone())).collect();
    let search = search_view(state, viewer, p, &names).await?;
    let mut outlet_options = vec![(
        String::new(),
        "None (tenant-wide bases only)".to_string(),
        p.outlet.is_empty(),
    )];
    outlet_options.extend(outlets.iter().map(|o| {
        let id = o.id.to_string();
        let selected = id == p.outlet;
        (id, o.name.clone(), selected)
    }));
    let mut kb_options = vec![(
        String::new(),
        "Every base that outlet uses".to_string(),
        p.kb.is_empty(),
    )];
    kb_options.extend(
        bases
            .iter()
            .map(|b| (b.id.clone(), b.name.clone(), b.id == p.kb)),
    );
    let status = match flash {
        Some((status, message)) => {
            nav.flash = Some(message);
            status
        }
        None => StatusCode::OK,
    };
    let page = html(KnowledgePage {
        nav,
        can_change: viewer.is_admin(),
        version,
        bases,
        outlets: outlets
            .iter()
            .map(|o| (o.id.to_string(), o.name.clone()))
            .collect(),
        max_size: bytes_label(state.knowledge.config().max_document_bytes as u64),
        search,
        outlet_options,
        kb_options,
        show_all: !p.all.is_empty(),
    })?;
    Ok((status, page).into_response())
}

async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(p): Query<Params>,
) -> Result<Response, DashError> {
    render(&state, &viewer, &p, None).await
}

#[derive(Deserialize)]
struct ProgressParams {
    #[serde(default)]
    after: Option<u64>,
}

#[derive(Serialize)]
struct Progress {
    version: u64,
    documents: Vec<DocView>,
}

/// Every document of the tenant with its status. Given the version the caller has seen, waits
/// (briefly) for a change first, so a polling page updates as soon as something moves.
async fn progress(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ProgressParams>,
) -> Result<Response, DashError> {
    let mut changes = state.knowledge.changes();
    if let Some(after) = q.after {
        if *changes.borrow_and_update() <= after {
            let _ = tokio::time::timeout(PROGRESS_HOLD, changes.changed()).await;
        }
    }
    let version = *changes.borrow();
    let documents = state
        .knowledge
        .list_documents(viewer.tenant, None)
        .map_err(crate::web::ApiError::from)?
        .into_iter()
        .map(|d| doc_view(d, &viewer.time_zone))
        .collect();
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(Progress { version, documents }),
    )
        .into_response())
}

/// What a change came to: back to the page, or the page with what was refused (and its status).
async fn after<T>(
    state: &AppState,
    viewer: &Viewer,
    done: Result<T, crate::knowledge::KnowledgeError>,
    anchor: &str,
) -> Result<Response, DashError> {
    match done {
        Ok(_) => Ok(Redirect::to(&format!("/dash/admin/knowledge{anchor}")).into_response()),
        Err(e) => {
            let flash = refusal(e)?;
            render(state, viewer, &Params::default(), Some(flash)).await
        }
    }
}

async fn create_base(
    State(state): State<AppState>,
    Acting(actor): Acting,
    AdminForm { viewer, fields: f }: AdminForm,
) -> Result<Response, DashError> {
    let outlets = f.outlets(&state, viewer.tenant)?;
    let done = actions::create_base(
        &state.knowledge,
        viewer.tenant,
        f.get("name"),
        outlets,
        actor,
    )
    .await;
    let anchor = match &done {
        Ok(kb) => format!("#kb-{}", kb.id),
        Err(_) => String::new(),
    };
    after(&state, &viewer, done, &anchor).await
}

async fn delete_base(
    State(state): State<AppState>,
    Acting(actor): Acting,
    AdminForm { viewer, fields: f }: AdminForm,
) -> Result<Response, DashError> {
    let kb: KnowledgeBaseId = id_field("kb", f.get("kb"))?;
    let done = actions::delete_base(&state.knowledge, viewer.tenant, kb, actor).await;
    after(&state, &viewer, done, "").await
}

async fn delete_document(
    State(state): State<AppState>,
    Acting(actor): Acting,
    AdminForm { viewer, fields: f }: AdminForm,
) -> Result<Response, DashError> {
    let doc: DocumentId = id_field("doc", f.get("doc"))?;
    let done = actions::delete_document(&state.knowledge, viewer.tenant, doc, actor).await;
    after(&state, &viewer, done, "").await
}

/// The page with a message about files, and the status the request deserves.
async fn upload_refused(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    message: String,
) -> Result<Response, DashError> {
    render(state, viewer, &Params::default(), Some((status, message))).await
}

async fn upload(
    State(state): State<AppState>,
    viewer: Viewer,
    multipart: Multipart,
) -> Result<Response, DashError> {
    let limit = actions::upload_body_limit(state.knowledge.config());
    let form = actions::read_form(multipart, limit).await?;
    viewer.check_csrf(form.field("csrf").unwrap_or(""))?;
    viewer.require_admin()?;
    let kb: KnowledgeBaseId = id_field("kb", form.field("kb").unwrap_or(""))?;
    // An empty file input still sends a part: nameless and empty.
    let files: Vec<actions::Upload> = form
        .files
        .into_iter()
        .filter(|f| !(f.filename.is_empty() && f.bytes.is_empty()))
        .collect();
    if files.is_empty() {
        return upload_refused(
            &state,
            &viewer,
            StatusCode::BAD_REQUEST,
            "Choose one or more files to upload.".into(),
        )
        .await;
    }
    let total: u64 = files.iter().map(|f| f.bytes.len() as u64).sum();
    if let Err(e) = state.ops.disk.allow_upload(total) {
        return upload_refused(
            &state,
            &viewer,
            StatusCode::INSUFFICIENT_STORAGE,
            e.to_string(),
        )
        .await;
    }
    let outcome = match actions::add_files(&state.knowledge, viewer.tenant, kb, files).await {
        Ok(o) => o,
        Err(e) => {
            let (status, message) = refusal(e)?;
            return upload_refused(&state, &viewer, status, message).await;
        }
    };
    if outcome.rejected.is_empty() {
        return Ok(Redirect::to(&format!("/dash/admin/knowledge#kb-{kb}")).into_response());
    }
    let refused: Vec<String> = outcome
        .rejected
        .iter()
        .map(|r| format!("{}: {}", r.filename, r.reason))
        .collect();
    let mut message = format!("Not uploaded: {}.", refused.join("; "));
    if !outcome.documents.is_empty() {
        let added: Vec<&str> = outcome
            .documents
            .iter()
            .map(|a| a.document.name.as_str())
            .collect();
        message = format!("Uploaded: {}. {message}", added.join(", "));
    }
    let status = if !outcome.documents.is_empty() {
        StatusCode::OK
    } else if outcome
        .rejected
        .iter()
        .all(|r| r.code == crate::billing::QUOTA_EXCEEDED)
    {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    upload_refused(&state, &viewer, status, message).await
}

#[derive(Deserialize)]
struct UrlForm {
    csrf: String,
    kb: String,
    url: String,
}

async fn add_url(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(f): Form<UrlForm>,
) -> Result<Response, DashError> {
    viewer.check_csrf(&f.csrf)?;
    viewer.require_admin()?;
    let kb: KnowledgeBaseId = id_field("kb", &f.kb)?;
    if let Err(e) = state.ops.disk.allow_upload(0) {
        return upload_refused(
            &state,
            &viewer,
            StatusCode::INSUFFICIENT_STORAGE,
            e.to_string(),
        )
        .await;
    }
    let done = state
        .knowledge
        .add_url(viewer.tenant, kb, f.url.trim())
        .await;
    after(&state, &viewer, done, &format!("#kb-{kb}")).await
}

const KNOWLEDGE_JS: &str = include_str!("../../../static/knowledge.js");

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        KNOWLEDGE_JS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overall_progress_only_moves_forward_through_the_stages() {
        use DocumentStatus::*;
        let steps = [
            (Queued, 0),
            (Parsing, 0),
            (Parsing, 100),
            (Embedding, 0),
            (Embedding, 50),
            (Embedding, 99),
            (Ready, 100),
        ];
        let percents: Vec<u8> = steps.iter().map(|(s, p)| overall_percent(*s, *p)).collect();
        assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
        assert_eq!(percents[0], 0);
        assert!(percents[5] < 100, "not done until ready: {percents:?}");
        assert_eq!(*percents.last().unwrap(), 100);
        assert_eq!(
            overall_percent(Embedding, 255),
            overall_percent(Embedding, 100)
        );
    }
}
