//! What people do to knowledge bases and documents, for the JSON API and the dashboard alike:
//! each change together with its audit entry, the multipart upload reader, and the per-file
//! upload outcome. One implementation, so both ways in record and refuse the same things.

use axum::extract::Multipart;
use axum::http::StatusCode;

use super::model::{Document, DocumentSource, KnowledgeBase};
use super::service::KnowledgeService;
use super::store::Added;
use super::KnowledgeError;
use crate::config::KnowledgeConfig;
use crate::people::audit::{self, Actor, AuditEntry};
use crate::storage::{DocumentId, KnowledgeBaseId, OutletId, TenantId};
use crate::web::ApiError;

/// The largest upload request: several files, each up to the document limit, plus the form.
pub fn upload_body_limit(config: &KnowledgeConfig) -> usize {
    config
        .max_document_bytes
        .saturating_mul(4)
        .saturating_add(1 << 20)
}

async fn record(
    svc: &KnowledgeService,
    tenant: TenantId,
    actor: Actor,
    action: &'static str,
    object: String,
) -> Result<(), KnowledgeError> {
    audit::record_now(
        svc.store(),
        AuditEntry::new(actor, action, object).tenant(tenant),
    )
    .await?;
    Ok(())
}

/// Creates a base; its name must be new in the tenant (and the plan must allow one more).
pub async fn create_base(
    svc: &KnowledgeService,
    tenant: TenantId,
    name: &str,
    outlets: Vec<OutletId>,
    actor: Actor,
) -> Result<KnowledgeBase, KnowledgeError> {
    if svc.list_kbs(tenant)?.iter().any(|b| b.name == name.trim()) {
        return Err(KnowledgeError::Conflict(format!(
            "a knowledge base named {:?} already exists",
            name.trim()
        )));
    }
    let kb = svc.create_kb(tenant, name, outlets).await?;
    record(
        svc,
        tenant,
        actor,
        "knowledge_base.created",
        format!("knowledge base {:?} ({})", kb.name, kb.id),
    )
    .await?;
    Ok(kb)
}

/// Deletes a base with all its documents; from the moment this returns none of it is in an answer.
pub async fn delete_base(
    svc: &KnowledgeService,
    tenant: TenantId,
    kb: KnowledgeBaseId,
    actor: Actor,
) -> Result<KnowledgeBase, KnowledgeError> {
    let kb = svc.get_kb(tenant, kb)?;
    svc.delete_kb(tenant, kb.id).await?;
    record(
        svc,
        tenant,
        actor,
        "knowledge_base.deleted",
        format!("knowledge base {:?} ({})", kb.name, kb.id),
    )
    .await?;
    Ok(kb)
}

pub async fn delete_document(
    svc: &KnowledgeService,
    tenant: TenantId,
    doc: DocumentId,
    actor: Actor,
) -> Result<Document, KnowledgeError> {
    let document = svc.delete_document(tenant, doc).await?;
    record(
        svc,
        tenant,
        actor,
        "document.deleted",
        format!("document {:?} ({})", document.name, document.id),
    )
    .await?;
    Ok(document)
}

pub async fn replace_document(
    svc: &KnowledgeService,
    tenant: TenantId,
    doc: DocumentId,
    file: Upload,
    actor: Actor,
) -> Result<Document, KnowledgeError> {
    let document = svc
        .replace_document(tenant, doc, Some(&file.filename), file.mime, &file.bytes)
        .await?;
    record(
        svc,
        tenant,
        actor,
        "document.replaced",
        format!("document {:?} ({})", document.name, document.id),
    )
    .await?;
    Ok(document)
}

/// One file part of a multipart body.
pub struct Upload {
    pub filename: String,
    pub mime: Option<String>,
    pub bytes: bytes::Bytes,
}

/// A multipart form: its files and its text fields (the dashboard's CSRF token and base).
#[derive(Default)]
pub struct UploadForm {
    pub files: Vec<Upload>,
    pub fields: Vec<(String, String)>,
}

impl UploadForm {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a multipart body, refusing it once it passes `limit` bytes in all (whatever layer in
/// front did or did not bound it). Parts with a file name (even an empty one) are files.
pub async fn read_form(mut multipart: Multipart, limit: usize) -> Result<UploadForm, ApiError> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::new(e.status(), "invalid_input", e.body_text())
    };
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the upload is larger than the limit of {limit} bytes"),
        )
    };
    let mut form = UploadForm::default();
    let mut total = 0usize;
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_string();
        let filename = field.file_name().map(str::to_string);
        let mime = field.content_type().map(str::to_string);
        let mut bytes = bytes::BytesMut::new();
        while let Some(chunk) = field.chunk().await.map_err(bad)? {
            total = total.saturating_add(chunk.len());
            if total > limit {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        match filename {
            Some(filename) => form.files.push(Upload {
                filename,
                mime,
                bytes: bytes.freeze(),
            }),
            None => form
                .fields
                .push((name, String::from_utf8_lossy(&bytes).into_owned())),
        }
    }
    Ok(form)
}

/// A file refused before it was stored, with the reason.
#[derive(Debug, serde::Serialize)]
pub struct Rejected {
    pub filename: String,
    pub code: &'static str,
    pub reason: String,
}

#[derive(Default)]
pub struct UploadOutcome {
    pub documents: Vec<Added>,
    pub rejected: Vec<Rejected>,
}

/// Stores and queues each file on its own, so one bad file does not stop the others. Files too
/// large, empty, unnamed or over the plan's storage are refused (nothing of them kept); any
/// other failure stops the upload.
pub async fn add_files(
    svc: &KnowledgeService,
    tenant: TenantId,
    kb: KnowledgeBaseId,
    files: Vec<Upload>,
) -> Result<UploadOutcome, KnowledgeError> {
    svc.get_kb(tenant, kb)?;
    let mut outcome = UploadOutcome::default();
    for f in files {
        match svc
            .add_document(
                tenant,
                kb,
                &f.filename,
                f.mime,
                &f.bytes,
                DocumentSource::Upload,
            )
            .await
        {
            Ok(added) => outcome.documents.push(added),
            Err(e)
                if matches!(
                    e,
                    KnowledgeError::TooLarge { .. } | KnowledgeError::Invalid { .. }
                ) || e.code() == crate::billing::QUOTA_EXCEEDED =>
            {
                outcome.rejected.push(Rejected {
                    filename: f.filename,
                    code: e.code(),
                    reason: e.to_string(),
                })
            }
            Err(e) => return Err(e),
        }
    }
    Ok(outcome)
}
