//! Operator accounts: the group's administrators, who sign in to the dashboard with an email and a
//! password. The first is created at install (`wacrm operator create`, through the API with the
//! operator token that install and the CLI use on the machine itself).

use serde::Serialize;

use super::audit::{self, Actor, AuditEntry};
use super::{normalize_email, validate_name, LoginRef, OperatorAccount, PeopleError, PeopleState};
use super::{LOGINS, OPERATORS};
use crate::storage::{OperatorId, Store, StoreError};

/// An operator account as shown (never the hash).
#[derive(Debug, Clone, Serialize)]
pub struct OperatorView {
    pub id: OperatorId,
    pub email: String,
    pub name: String,
    pub created_at_ms: i64,
}

impl From<&OperatorAccount> for OperatorView {
    fn from(o: &OperatorAccount) -> Self {
        Self {
            id: o.id,
            email: o.email.clone(),
            name: o.name.clone(),
            created_at_ms: o.created_at_ms,
        }
    }
}

pub async fn create(
    store: &Store,
    people: &PeopleState,
    email: &str,
    name: &str,
    password: String,
    actor: Actor,
) -> Result<OperatorAccount, PeopleError> {
    let email = normalize_email(email)?;
    let name = validate_name(name)?;
    let password_hash = people.hasher.hash_blocking(password, email.clone()).await?;
    let account = OperatorAccount {
        id: OperatorId::new(),
        email,
        name,
        password_hash,
        created_at_ms: people.clock.now_ms(),
    };
    let record = account.clone();
    store
        .write(move |ctx| {
            let mut op = ctx.operator();
            if op.get(&LOGINS, record.email.as_bytes())?.is_some() {
                return Err(PeopleError::Conflict(format!(
                    "{} already has an account",
                    record.email
                ))
                .reject());
            }
            op.put(
                &LOGINS,
                record.email.as_bytes(),
                &LoginRef::Operator {
                    operator: record.id,
                },
            )?;
            op.put(&OPERATORS, record.id.as_bytes(), &record)?;
            audit::record(
                ctx,
                &AuditEntry::new(
                    actor.clone(),
                    "operator.created",
                    format!("operator {}", record.id),
                )
                .detail(serde_json::json!({"email": record.email})),
            )
        })
        .await
        .map_err(PeopleError::unreject)?;
    Ok(account)
}

pub fn list(store: &Store) -> Result<Vec<OperatorAccount>, StoreError> {
    Ok(store
        .read(|r| r.operator().scan(&OPERATORS, &[], false, usize::MAX))?
        .into_iter()
        .map(|(_, o)| o)
        .collect())
}
