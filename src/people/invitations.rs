//! Invitations: an admin names an email, a role and outlets; the person gets a link with a random
//! token (shown to the admin once, kept only as a hash) that expires, and sets their own name and
//! password when accepting it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::audit::{self, Actor, AuditEntry};
use super::secret::{new_token, token_hash};
use super::users::{check_outlets, insert_user};
use super::{normalize_email, validate_name, PeopleError, PeopleState, Role, User, UserStatus};
use crate::storage::collections as tags;
use crate::storage::{
    Collection, GlobalCollection, InvitationId, OutletId, Record, Store, StoreError, TenantId,
    UserId,
};
use crate::tenants::{TenantStatus, TENANTS};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Invitation {
    pub id: InvitationId,
    pub email: String,
    pub role: Role,
    pub outlets: Vec<OutletId>,
    pub invited_by: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

impl Record for Invitation {
    const VERSION: u16 = 1;
    const NAME: &'static str = "invitation";
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct InvitationRef {
    pub tenant: TenantId,
    pub invitation: InvitationId,
}

impl Record for InvitationRef {
    const VERSION: u16 = 1;
    const NAME: &'static str = "invitation index";
}

pub const INVITATIONS: Collection<Invitation> = Collection::new(tags::INVITATIONS);
pub const INVITATION_INDEX: GlobalCollection<InvitationRef> =
    GlobalCollection::new(tags::INVITATION_INDEX);

#[derive(Debug, Clone, Deserialize)]
pub struct NewInvitation {
    pub email: String,
    pub role: Role,
    #[serde(default)]
    pub outlets: Vec<OutletId>,
}

/// The link an invited person opens (the token rides in the fragment, which browsers never send
/// to a server, so it stays out of access logs).
pub fn link(public_url: &str, token: &str) -> String {
    format!("{}/invitations#{token}", public_url.trim_end_matches('/'))
}

pub async fn create(
    store: &Store,
    people: &PeopleState,
    tenant: TenantId,
    new: NewInvitation,
    actor: Actor,
) -> Result<(String, Invitation), PeopleError> {
    let email = normalize_email(&new.email)?;
    check_outlets(store, tenant, &new.outlets)?;
    let now = people.clock.now_ms();
    let token = new_token("wiv");
    let invitation = Invitation {
        id: InvitationId::new(),
        email,
        role: new.role,
        outlets: new.outlets,
        invited_by: actor.label.clone(),
        created_at_ms: now,
        expires_at_ms: now + people.settings.invitation_hours as i64 * 3_600_000,
    };
    let hash = token_hash(&token);
    let record = invitation.clone();
    store
        .write(move |ctx| {
            if ctx
                .operator()
                .get(&super::LOGINS, record.email.as_bytes())?
                .is_some()
            {
                return Err(PeopleError::Conflict(format!(
                    "{} already has an account",
                    record.email
                ))
                .reject());
            }
            ctx.operator().put(
                &INVITATION_INDEX,
                &hash,
                &InvitationRef {
                    tenant,
                    invitation: record.id,
                },
            )?;
            ctx.tenant(tenant)
                .put(&INVITATIONS, record.id.as_bytes(), &record)?;
            audit::record(
                ctx,
                &AuditEntry::new(actor.clone(), "user.invited", format!("invitation {}", record.id))
                    .tenant(tenant)
                    .detail(serde_json::json!({"email": record.email, "role": record.role, "outlets": record.outlets})),
            )
        })
        .await
        .map_err(PeopleError::unreject)?;
    Ok((token, invitation))
}

pub fn list(store: &Store, tenant: TenantId) -> Result<Vec<Invitation>, StoreError> {
    Ok(store
        .read(|r| r.tenant(tenant).scan(&INVITATIONS, &[], false, usize::MAX))?
        .into_iter()
        .map(|(_, i)| i)
        .collect())
}

/// Removes an invitation and its index row in the caller's commit.
fn remove(
    ctx: &mut crate::storage::WriteCtx<'_>,
    tenant: TenantId,
    id: InvitationId,
) -> Result<Option<Invitation>, StoreError> {
    let found = ctx.tenant(tenant).get(&INVITATIONS, id.as_bytes())?;
    ctx.tenant(tenant).delete(&INVITATIONS, id.as_bytes())?;
    let mut op = ctx.operator();
    let doomed: Vec<Vec<u8>> = op
        .scan(&INVITATION_INDEX, &[], false, usize::MAX)?
        .into_iter()
        .filter(|(_, r)| r.tenant == tenant && r.invitation == id)
        .map(|(k, _)| k)
        .collect();
    for k in doomed {
        op.delete(&INVITATION_INDEX, &k)?;
    }
    Ok(found)
}

pub async fn revoke(
    store: &Store,
    tenant: TenantId,
    id: InvitationId,
    actor: Actor,
) -> Result<Invitation, PeopleError> {
    store
        .write(move |ctx| {
            let Some(inv) = remove(ctx, tenant, id)? else {
                return Err(PeopleError::NotFound(format!("invitation {id}")).reject());
            };
            audit::record(
                ctx,
                &AuditEntry::new(
                    actor.clone(),
                    "user.invitation_revoked",
                    format!("invitation {id}"),
                )
                .tenant(tenant)
                .detail(serde_json::json!({"email": inv.email})),
            )?;
            Ok(inv)
        })
        .await
        .map_err(PeopleError::unreject)
}

#[derive(Debug, Clone, Deserialize)]
pub struct Acceptance {
    pub token: String,
    pub name: String,
    pub password: String,
}

/// Turns a valid invitation into a user. Unknown, used and expired links all answer the same.
pub async fn accept(
    store: &Store,
    people: &PeopleState,
    acceptance: Acceptance,
    ip: Option<IpAddr>,
) -> Result<(TenantId, User), PeopleError> {
    let invalid =
        || PeopleError::Unauthenticated("this invitation link is invalid or has expired".into());
    let hash = token_hash(acceptance.token.trim());
    let found = store.read(|r| {
        let Some(index) = r.operator().get(&INVITATION_INDEX, &hash)? else {
            return Ok(None);
        };
        Ok(r.tenant(index.tenant)
            .get(&INVITATIONS, index.invitation.as_bytes())?
            .map(|i| (index.tenant, i)))
    })?;
    let Some((tenant, invitation)) = found else {
        return Err(invalid());
    };
    if people.clock.now_ms() >= invitation.expires_at_ms {
        return Err(invalid());
    }
    let name = validate_name(&acceptance.name)?;
    let password_hash = people
        .hasher
        .hash_blocking(acceptance.password, invitation.email.clone())
        .await?;
    let user = User {
        id: UserId::new(),
        email: invitation.email.clone(),
        name,
        role: invitation.role,
        outlets: invitation.outlets.clone(),
        status: UserStatus::Active,
        password_hash: Some(password_hash),
        oidc_subject: None,
        created_at_ms: people.clock.now_ms(),
    };
    let record = user.clone();
    let invitation_id = invitation.id;
    store
        .write(move |ctx| {
            match ctx.operator().get(&TENANTS, tenant.as_bytes())? {
                Some(t) if t.status == TenantStatus::Active => {}
                Some(_) => return Err(PeopleError::TenantSuspended.reject()),
                None => return Err(invalid().reject()),
            }
            // Accepting twice at once: the second finds the invitation gone.
            if remove(ctx, tenant, invitation_id)?.is_none() {
                return Err(invalid().reject());
            }
            insert_user(ctx, tenant, &record)?;
            let actor = Actor {
                kind: "user".into(),
                id: Some(record.id.to_string()),
                label: record.email.clone(),
                ip,
            };
            audit::record(
                ctx,
                &AuditEntry::new(
                    actor,
                    "user.invitation_accepted",
                    format!("user {}", record.id),
                )
                .tenant(tenant)
                .detail(serde_json::json!({"role": record.role})),
            )
        })
        .await
        .map_err(PeopleError::unreject)?;
    Ok((tenant, user))
}
