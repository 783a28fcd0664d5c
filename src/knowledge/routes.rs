//! JSON API of the knowledge service. Access rules are declared in [`api`] (the route table).

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{Method, StatusCode};
use axum::routing::{post, put, MethodRouter};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::actions::{self, Rejected};
use super::index::SyncReport;
use super::model::{Document, KnowledgeBase, KnowledgeSettings, NoAnswerPolicy};
use super::retrieve::{Hit, SearchRequest};
use super::KnowledgeError;
use crate::people::Role;
use crate::storage::{DocumentId, KnowledgeBaseId, OutletId, TenantId};
use crate::web::auth::TenantCtx;
use crate::web::{Access, Api, ApiError, AppState};

impl From<KnowledgeError> for ApiError {
    fn from(e: KnowledgeError) -> Self {
        let status = match &e {
            KnowledgeError::Store(_) => return ApiError::from_store(e),
            KnowledgeError::Io(_) | KnowledgeError::Index(_) => return ApiError::from_internal(e),
            KnowledgeError::NotFound(_) => StatusCode::NOT_FOUND,
            KnowledgeError::Invalid { .. } => StatusCode::BAD_REQUEST,
            KnowledgeError::Conflict(_) => StatusCode::CONFLICT,
            KnowledgeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            KnowledgeError::UrlRefused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            KnowledgeError::Fetch(_) => StatusCode::BAD_GATEWAY,
            KnowledgeError::Embedding(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl ApiError {
    fn from_store(e: KnowledgeError) -> Self {
        match e {
            KnowledgeError::Store(s) => s.into(),
            other => ApiError::from_internal(other),
        }
    }

    fn from_internal(e: KnowledgeError) -> Self {
        tracing::error!(error = %e, "knowledge: internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

/// The knowledge routes. Reading is for every member; changing bases, documents and settings is
/// for admins; rebuilding every tenant's indexes is the operator's.
pub fn api(config: &crate::config::KnowledgeConfig) -> Api {
    use Access::*;
    let upload_limit = actions::upload_body_limit(config);
    let uploads =
        |endpoint: MethodRouter<AppState>| endpoint.layer(DefaultBodyLimit::max(upload_limit));
    Api::new()
        .get(
            "/api/v1/tenants/{tenant}/knowledge-bases",
            Tenant(Role::Viewer),
            list_kbs,
        )
        .post(
            "/api/v1/tenants/{tenant}/knowledge-bases",
            Tenant(Role::Admin),
            create_kb,
        )
        .get(
            "/api/v1/tenants/{tenant}/knowledge-bases/{kb}",
            Tenant(Role::Viewer),
            get_kb,
        )
        .delete(
            "/api/v1/tenants/{tenant}/knowledge-bases/{kb}",
            Tenant(Role::Admin),
            delete_kb,
        )
        .get(
            "/api/v1/tenants/{tenant}/knowledge-bases/{kb}/documents",
            Tenant(Role::Viewer),
            list_documents,
        )
        .on(
            Method::POST,
            "/api/v1/tenants/{tenant}/knowledge-bases/{kb}/documents",
            Tenant(Role::Admin),
            uploads(post(upload_documents)),
        )
        .post(
            "/api/v1/tenants/{tenant}/knowledge-bases/{kb}/documents/url",
            Tenant(Role::Admin),
            add_url,
        )
        .get(
            "/api/v1/tenants/{tenant}/documents/{doc}",
            Tenant(Role::Viewer),
            get_document,
        )
        .on(
            Method::PUT,
            "/api/v1/tenants/{tenant}/documents/{doc}",
            Tenant(Role::Admin),
            uploads(put(replace_document)),
        )
        .delete(
            "/api/v1/tenants/{tenant}/documents/{doc}",
            Tenant(Role::Admin),
            delete_document,
        )
        .post(
            "/api/v1/tenants/{tenant}/knowledge/search",
            Tenant(Role::Viewer),
            search,
        )
        .get(
            "/api/v1/tenants/{tenant}/knowledge/settings",
            Tenant(Role::Viewer),
            get_settings,
        )
        .put(
            "/api/v1/tenants/{tenant}/knowledge/settings",
            Tenant(Role::Admin),
            put_settings,
        )
        .post("/api/v1/knowledge/reindex", Operator, reindex)
}

/// Refuses uploads while the data directory's disk is nearly full (webhooks keep the space).
fn disk_allows(state: &AppState, bytes: u64) -> Result<(), ApiError> {
    state
        .ops
        .disk
        .allow_upload(bytes)
        .map_err(|e| ApiError::new(StatusCode::INSUFFICIENT_STORAGE, e.code(), e.to_string()))
}

/// A base by id or by name.
fn kb_id(state: &AppState, tenant: TenantId, kb: &str) -> Result<KnowledgeBaseId, ApiError> {
    if let Ok(id) = kb.parse::<KnowledgeBaseId>() {
        // Looked up under this tenant: another tenant's base id is simply not found here.
        return Ok(state.knowledge.get_kb(tenant, id)?.id);
    }
    state
        .knowledge
        .list_kbs(tenant)?
        .into_iter()
        .find(|b| b.name == kb)
        .map(|b| b.id)
        .ok_or_else(|| ApiError::not_found(format!("knowledge base {kb:?} not found")))
}

fn doc_id(doc: &str) -> Result<DocumentId, ApiError> {
    doc.parse()
        .map_err(|_| ApiError::not_found(format!("document {doc:?} not found")))
}

#[derive(Deserialize)]
struct NewKb {
    name: String,
    #[serde(default)]
    outlets: Vec<OutletId>,
}

async fn create_kb(
    ctx: TenantCtx,
    State(state): State<AppState>,
    body: Result<Json<NewKb>, JsonRejection>,
) -> Result<(StatusCode, Json<KnowledgeBase>), ApiError> {
    let Json(new) = body?;
    let kb = actions::create_base(
        &state.knowledge,
        ctx.id(),
        &new.name,
        new.outlets,
        ctx.actor(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(kb)))
}

/// A base with its documents' counts by status.
#[derive(Serialize)]
struct KbView {
    #[serde(flatten)]
    kb: KnowledgeBase,
    documents: usize,
    ready: usize,
    failed: usize,
    chunks: u64,
}

fn kb_view(state: &AppState, tenant: TenantId, kb: KnowledgeBase) -> Result<KbView, ApiError> {
    let docs = state.knowledge.list_documents(tenant, Some(kb.id))?;
    use super::model::DocumentStatus as S;
    Ok(KbView {
        documents: docs.len(),
        ready: docs.iter().filter(|d| d.status == S::Ready).count(),
        failed: docs.iter().filter(|d| d.status == S::Failed).count(),
        chunks: docs.iter().map(|d| d.chunk_count as u64).sum(),
        kb,
    })
}

async fn list_kbs(
    ctx: TenantCtx,
    State(state): State<AppState>,
) -> Result<Json<Vec<KbView>>, ApiError> {
    let tenant = ctx.id();
    let kbs = state.knowledge.list_kbs(tenant)?;
    Ok(Json(
        kbs.into_iter()
            .map(|kb| kb_view(&state, tenant, kb))
            .collect::<Result<_, _>>()?,
    ))
}

async fn get_kb(
    ctx: TenantCtx,
    State(state): State<AppState>,
    Path((_, kb)): Path<(String, String)>,
) -> Result<Json<KbView>, ApiError> {
    let tenant = ctx.id();
    let kb = kb_id(&state, tenant, &kb)?;
    let kb = state.knowledge.get_kb(tenant, kb)?;
    Ok(Json(kb_view(&state, tenant, kb)?))
}

async fn delete_kb(
    ctx: TenantCtx,
    State(state): State<AppState>,
    Path((_, kb)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = ctx.id();
    let kb = kb_id(&state, tenant, &kb)?;
    actions::delete_base(&state.knowledge, tenant, kb, ctx.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_documents(
    ctx: TenantCtx,
    State(state): State<AppState>,
    Path((_, kb)): Path<(String, String)>,
) -> Result<Json<Vec<Document>>, ApiError> {
    let tenant = ctx.id();
    let kb = kb_id(&state, tenant, &kb)?;
    state.knowledge.get_kb(tenant, kb)?;
    Ok(Json(state.knowledge.list_documents(tenant, Some(kb))?))
}

#[derive(Serialize)]
struct AddedView {
    #[serde(flatten)]
    document: Document,
    /// False when the same content was already in this base (nothing was added).
    created: bool,
}

#[derive(Serialize)]
struct UploadResult {
    documents: Vec<AddedView>,
    /// Files refused before they were stored (too large, empty, unnamed), with the reason.
    rejected: Vec<Rejected>,
}

/// Accepts one or more files; each is stored and queued on its own, so one bad file does not
/// stop the others.
async fn upload_documents(
    ctx: TenantCtx,
    State(state): State<AppState>,
    Path((_, kb)): Path<(String, String)>,
    multipart: Multipart,
) -> Result<(StatusCode, Json<UploadResult>), ApiError> {
    let tenant = ctx.id();
    let kb = kb_id(&state, tenant, &kb)?;
    state.knowledge.get_kb(tenant, kb)?;
    let files = read_files(&state, multipart).await?;
    let total: u64 = files.iter().map(|f| f.bytes.len() as u64).sum();
    disk_allows(&state, total)?;
    let only_file = files.len() == 1;
    let outcome = actions::add_files(&state.knowledge, tenant, kb, files).await?;
    // A single file over the plan's storage is the request's refusal; among several, files
    // that fit were stored and the others are listed as refused.
    if only_file {
        if let Some(r) = outcome
            .rejected
            .iter()
            .find(|r| r.code == crate::billing::QUOTA_EXCEEDED)
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                crate::billing::QUOTA_EXCEEDED,
                r.reason.clone(),
            ));
        }
    }
    let result = UploadResult {
        documents: outcome
            .documents
            .into_iter()
            .map(|added| AddedView {
                document: added.document,
                created: added.created,
            })
            .collect(),
        rejected: outcome.rejected,
    };
    let status = if result.documents.is_empty() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(result)))
}

/// The file parts of an upload (at least one).
async fn read_files(
    state: &AppState,
    multipart: Multipart,
) -> Result<Vec<actions::Upload>, ApiError> {
    let limit = actions::upload_body_limit(state.knowledge.config());
    let files = actions::read_form(multipart, limit).await?.files;
    if files.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_input",
            "send the documents as multipart/form-data file parts",
        ));
    }
    Ok(files)
}

#[derive(Deserialize)]
struct NewUrl {
    url: String,
}

async fn add_url(
    ctx: TenantCtx,
    State(state): State<AppState>,
    Path((_, kb)): Path<(String, String)>,
    body: Result<Json<NewUrl>, JsonRejection>,
) -> Result<(StatusCode, Json<AddedView>), ApiError> {
    let Json(new) = body?;
    let tenant = ctx.id();
    let kb = kb_id(&state, tenant, &kb)?;
    disk_allows(&state, 0)?;
    let added = state.knowledge.add_url(tenant, kb, &new.url).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(AddedView {
            document: added.document,
            created: added.created,
        }),
    ))
}

async fn get_document(
    ctx: TenantCtx,
    State(state): State<AppState>,
    Path((_, doc)): Path<(String, String)>,
) -> Result<Json<Document>, ApiError> {
    let tenant = ctx.id();
    Ok(Json(state.knowledge.get_document(tenant, doc_id(&doc)?)?))
}

async fn replace_document(
    ctx: TenantCtx,
    State(state): State<AppState>,
    Path((_, doc)): Path<(String, String)>,
    multipart: Multipart,
) -> Result<(StatusCode, Json<Document>), ApiError> {
    let tenant = ctx.id();
    let doc = doc_id(&doc)?;
    let mut files = read_files(&state, multipart).await?;
    if files.len() != 1 {
        return Err(ApiError::bad_request(
            "invalid_input",
            "a replacement is exactly one file",
        ));
    }
    let f = files.remove(0);
    disk_allows(&state, f.bytes.len() as u64)?;
    let document = actions::replace_document(&state.knowledge, tenant, doc, f, ctx.actor()).await?;
    Ok((StatusCode::ACCEPTED, Json(document)))
}

async fn delete_document(
    ctx: TenantCtx,
    State(state): State<AppState>,
    Path((_, doc)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = ctx.id();
    actions::delete_document(&state.knowledge, tenant, doc_id(&doc)?, ctx.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct SearchBody {
    query: String,
    #[serde(default)]
    outlet: Option<OutletId>,
    #[serde(default)]
    kb: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    /// Defaults to the configured minimum; 0 shows everything found.
    #[serde(default)]
    min_score: Option<f32>,
}

#[derive(Serialize)]
struct SearchView {
    hits: Vec<Hit>,
    min_score: f32,
    confident_score: f32,
    dense_unavailable: Option<String>,
}

/// The search tester: what the assistant would see for a question, with every score.
async fn search(
    ctx: TenantCtx,
    State(state): State<AppState>,
    body: Result<Json<SearchBody>, JsonRejection>,
) -> Result<Json<SearchView>, ApiError> {
    let Json(body) = body?;
    let tenant = ctx.id();
    let kb = match &body.kb {
        Some(k) => Some(kb_id(&state, tenant, k)?),
        None => None,
    };
    let config = state.knowledge.config();
    let min_score = body.min_score.unwrap_or(config.min_score);
    let req = SearchRequest {
        tenant,
        outlet: body.outlet,
        kb,
        query: body.query,
        limit: body.limit.unwrap_or(config.top_k).clamp(1, 50),
        min_score: Some(min_score),
    };
    let outcome = state.knowledge.search(&req).await?;
    Ok(Json(SearchView {
        hits: outcome.hits,
        min_score,
        confident_score: config.confident_score,
        dense_unavailable: outcome.dense_unavailable,
    }))
}

async fn get_settings(
    ctx: TenantCtx,
    State(state): State<AppState>,
) -> Result<Json<KnowledgeSettings>, ApiError> {
    let tenant = ctx.id();
    Ok(Json(state.knowledge.settings(tenant)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    no_answer: NoAnswerPolicy,
}

async fn put_settings(
    ctx: TenantCtx,
    State(state): State<AppState>,
    body: Result<Json<SettingsBody>, JsonRejection>,
) -> Result<Json<KnowledgeSettings>, ApiError> {
    let Json(body) = body?;
    let tenant = ctx.id();
    let settings = KnowledgeSettings {
        no_answer: body.no_answer,
    };
    state.knowledge.put_settings(tenant, settings).await?;
    Ok(Json(settings))
}

/// Rebuilds both search indexes of every tenant from the database.
async fn reindex(State(state): State<AppState>) -> Result<Json<SyncReport>, ApiError> {
    Ok(Json(state.knowledge.reconcile_all(true).await?))
}
