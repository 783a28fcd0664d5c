//! A deleted tenant's entries in the identity service's global indexes. Its own rows (users, keys,
//! invitations, audit entries) go with the tenant's key prefix.

use std::collections::BTreeMap;

use super::apikeys::API_KEY_INDEX;
use super::invitations::{INVITATIONS, INVITATION_INDEX};
use super::oidc::OIDC_LINKS;
use super::sessions::SESSIONS;
use super::signin::{lockout_key, LOCKOUTS};
use super::{LOGINS, USERS};
use crate::storage::{GlobalCollection, Record, StoreError, TenantId, WriteCtx};

fn remove_where<V: Record>(
    ctx: &mut WriteCtx<'_>,
    collection: &GlobalCollection<V>,
    pred: impl Fn(&V) -> bool,
) -> Result<u64, StoreError> {
    let mut op = ctx.operator();
    let doomed: Vec<Vec<u8>> = op
        .scan(collection, &[], false, usize::MAX)?
        .into_iter()
        .filter(|(_, v)| pred(v))
        .map(|(k, _)| k)
        .collect();
    for k in &doomed {
        op.delete(collection, k)?;
    }
    Ok(doomed.len() as u64)
}

/// Removes `tenant`'s global identity rows in the caller's commit; must run before the tenant's
/// own rows go (it reads its users' emails). Returns what it removed, by kind.
pub fn purge_tenant_rows(
    ctx: &mut WriteCtx<'_>,
    tenant: TenantId,
) -> Result<BTreeMap<&'static str, u64>, StoreError> {
    let mut emails: Vec<String> = ctx
        .tenant(tenant)
        .scan(&USERS, &[], false, usize::MAX)?
        .into_iter()
        .map(|(_, u)| u.email)
        .collect();
    emails.extend(
        ctx.tenant(tenant)
            .scan(&INVITATIONS, &[], false, usize::MAX)?
            .into_iter()
            .map(|(_, i)| i.email),
    );
    let mut report = BTreeMap::new();
    report.insert(
        "logins",
        remove_where(ctx, &LOGINS, |r| r.tenant() == Some(tenant))?,
    );
    report.insert(
        "sessions",
        remove_where(ctx, &SESSIONS, |s| s.subject.tenant() == Some(tenant))?,
    );
    report.insert(
        "api_keys",
        remove_where(ctx, &API_KEY_INDEX, |r| r.tenant == tenant)?,
    );
    report.insert(
        "invitation_links",
        remove_where(ctx, &INVITATION_INDEX, |r| r.tenant == tenant)?,
    );
    report.insert(
        "oidc_links",
        remove_where(ctx, &OIDC_LINKS, |l| l.tenant == tenant)?,
    );
    let mut lockouts = 0;
    let mut op = ctx.operator();
    for email in &emails {
        if op.delete(&LOCKOUTS, &lockout_key(email))? {
            lockouts += 1;
        }
    }
    report.insert("sign_in_lockouts", lockouts);
    Ok(report)
}
