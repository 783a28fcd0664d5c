//! Tenant users: created by an admin (or the operator) or by accepting an invitation; their role
//! and outlets changed; disabled; deleted. Every change is audited in its own commit.

use serde::Deserialize;

use super::audit::{self, Actor, AuditEntry};
use super::sessions::{self, Subject};
use super::{
    normalize_email, validate_name, LoginRef, PeopleError, Role, User, UserStatus, LOGINS, USERS,
};
use crate::storage::{OutletId, Store, StoreError, TenantId, TenantWrite, UserId, WriteCtx};

#[derive(Debug, Clone, Deserialize)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub outlets: Vec<OutletId>,
    /// Absent: one is generated and returned once.
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub outlets: Option<Vec<OutletId>>,
    pub disabled: Option<bool>,
}

/// Every outlet named must be the tenant's.
pub fn check_outlets(
    store: &Store,
    tenant: TenantId,
    outlets: &[OutletId],
) -> Result<(), PeopleError> {
    if outlets.len() > 100 {
        return Err(PeopleError::invalid("outlets", "at most 100"));
    }
    let missing = store.read(|r| {
        let t = r.tenant(tenant);
        for o in outlets {
            if !t.contains(&crate::tenants::OUTLETS, o.as_bytes())? {
                return Ok(Some(*o));
            }
        }
        Ok(None)
    })?;
    match missing {
        Some(o) => Err(PeopleError::NotFound(format!("outlet {o}"))),
        None => Ok(()),
    }
}

/// Inserts a user and their sign-in name in the caller's commit (refused if the name is taken).
pub(crate) fn insert_user(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
    user: &User,
) -> Result<(), StoreError> {
    let mut op = ctx.operator();
    if op.get(&LOGINS, user.email.as_bytes())?.is_some() {
        return Err(
            PeopleError::Conflict(format!("{} already has an account", user.email)).reject(),
        );
    }
    op.put(
        &LOGINS,
        user.email.as_bytes(),
        &LoginRef::User {
            tenant,
            user: user.id,
        },
    )?;
    ctx.tenant(tenant).put(&USERS, user.id.as_bytes(), user)
}

/// Creates a user; returns it and the generated password, if one was generated.
pub async fn create(
    store: &Store,
    people: &super::PeopleState,
    tenant: TenantId,
    new: NewUser,
    actor: Actor,
) -> Result<(User, Option<String>), PeopleError> {
    let email = normalize_email(&new.email)?;
    let name = validate_name(&new.name)?;
    check_outlets(store, tenant, &new.outlets)?;
    let (password, generated) = match new.password {
        Some(p) => (p, None),
        None => {
            let p = super::password::generate();
            (p.clone(), Some(p))
        }
    };
    let hash = people.hasher.hash_blocking(password, email.clone()).await?;
    let user = User {
        id: UserId::new(),
        email,
        name,
        role: new.role,
        outlets: new.outlets,
        status: UserStatus::Active,
        password_hash: Some(hash),
        oidc_subject: None,
        created_at_ms: people.clock.now_ms(),
    };
    let record = user.clone();
    store
        .write(move |ctx| {
            insert_user(ctx, tenant, &record)?;
            audit::record(
                ctx,
                &AuditEntry::new(actor.clone(), "user.created", format!("user {}", record.id))
                    .tenant(tenant)
                    .detail(serde_json::json!({"email": record.email, "role": record.role, "outlets": record.outlets})),
            )
        })
        .await
        .map_err(PeopleError::unreject)?;
    Ok((user, generated))
}

pub fn list(store: &Store, tenant: TenantId) -> Result<Vec<User>, StoreError> {
    Ok(store
        .read(|r| r.tenant(tenant).scan(&USERS, &[], false, usize::MAX))?
        .into_iter()
        .map(|(_, u)| u)
        .collect())
}

pub fn get(store: &Store, tenant: TenantId, id: UserId) -> Result<Option<User>, StoreError> {
    store.read(|r| r.tenant(tenant).get(&USERS, id.as_bytes()))
}

/// Whether, without `except`, the tenant still has an active admin.
fn another_active_admin(t: &TenantWrite<'_, '_>, except: UserId) -> Result<bool, StoreError> {
    Ok(t.scan(&USERS, &[], false, usize::MAX)?
        .into_iter()
        .any(|(_, u)| u.id != except && u.role == Role::Admin && u.status == UserStatus::Active))
}

fn last_admin_error() -> StoreError {
    PeopleError::Conflict(
        "this is the tenant's last active admin; make someone else admin first".into(),
    )
    .reject()
}

pub async fn update(
    store: &Store,
    tenant: TenantId,
    id: UserId,
    change: UserChange,
    actor: Actor,
) -> Result<User, PeopleError> {
    let name = change.name.as_deref().map(validate_name).transpose()?;
    if let Some(outlets) = &change.outlets {
        check_outlets(store, tenant, outlets)?;
    }
    store
        .write(move |ctx| {
            let mut t = ctx.tenant(tenant);
            let Some(before) = t.get(&USERS, id.as_bytes())? else {
                return Err(PeopleError::NotFound(format!("user {id}")).reject());
            };
            let mut after = before.clone();
            if let Some(n) = &name {
                after.name = n.clone();
            }
            if let Some(role) = change.role {
                after.role = role;
            }
            if let Some(outlets) = &change.outlets {
                after.outlets = outlets.clone();
            }
            if let Some(disabled) = change.disabled {
                after.status = if disabled {
                    UserStatus::Disabled
                } else {
                    UserStatus::Active
                };
            }
            let was_admin = before.role == Role::Admin && before.status == UserStatus::Active;
            let is_admin = after.role == Role::Admin && after.status == UserStatus::Active;
            if was_admin && !is_admin && !another_active_admin(&t, id)? {
                return Err(last_admin_error());
            }
            t.put(&USERS, id.as_bytes(), &after)?;
            let target = format!("user {id}");
            let mut entries = Vec::new();
            if before.role != after.role {
                entries.push(
                    AuditEntry::new(actor.clone(), "user.role_changed", &target)
                        .detail(serde_json::json!({"email": after.email, "from": before.role, "to": after.role})),
                );
            }
            if before.outlets != after.outlets {
                entries.push(
                    AuditEntry::new(actor.clone(), "user.outlets_changed", &target)
                        .detail(serde_json::json!({"email": after.email, "from": before.outlets, "to": after.outlets})),
                );
            }
            if before.status != after.status {
                let action = match after.status {
                    UserStatus::Disabled => "user.disabled",
                    UserStatus::Active => "user.enabled",
                };
                entries.push(
                    AuditEntry::new(actor.clone(), action, &target)
                        .detail(serde_json::json!({"email": after.email})),
                );
            }
            if before.name != after.name {
                entries.push(
                    AuditEntry::new(actor.clone(), "user.renamed", &target)
                        .detail(serde_json::json!({"from": before.name, "to": after.name})),
                );
            }
            for e in entries {
                audit::record(ctx, &e.tenant(tenant))?;
            }
            if after.status == UserStatus::Disabled {
                sessions::delete_where(ctx, |s| {
                    s.subject == Subject::User { tenant, user: id }
                })?;
            }
            Ok(after)
        })
        .await
        .map_err(PeopleError::unreject)
}

pub async fn delete(
    store: &Store,
    tenant: TenantId,
    id: UserId,
    actor: Actor,
) -> Result<User, PeopleError> {
    store
        .write(move |ctx| {
            let mut t = ctx.tenant(tenant);
            let Some(user) = t.get(&USERS, id.as_bytes())? else {
                return Err(PeopleError::NotFound(format!("user {id}")).reject());
            };
            if user.role == Role::Admin
                && user.status == UserStatus::Active
                && !another_active_admin(&t, id)?
            {
                return Err(last_admin_error());
            }
            t.delete(&USERS, id.as_bytes())?;
            let mut op = ctx.operator();
            op.delete(&LOGINS, user.email.as_bytes())?;
            if let Some(subject) = &user.oidc_subject {
                op.delete(&super::oidc::OIDC_LINKS, subject.as_bytes())?;
            }
            sessions::delete_where(ctx, |s| s.subject == Subject::User { tenant, user: id })?;
            audit::record(
                ctx,
                &AuditEntry::new(actor.clone(), "user.deleted", format!("user {id}"))
                    .tenant(tenant)
                    .detail(serde_json::json!({"email": user.email, "role": user.role})),
            )?;
            Ok(user)
        })
        .await
        .map_err(PeopleError::unreject)
}
