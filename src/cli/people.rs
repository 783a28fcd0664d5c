//! `wacrm operator`, `wacrm user`, `wacrm api-key`, `wacrm audit`: people and keys from the
//! command line, through the API with the operator token. Passwords come from the environment
//! (never the command line, which other users of the machine can see) or are generated and printed
//! once.

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::{print_json, with_session};
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum OperatorCommand {
    /// Create an operator account. The password is read from WACRM_OPERATOR_PASSWORD, or
    /// generated and printed once.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "Operator")]
        name: String,
        #[arg(long, env = "WACRM_OPERATOR_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// List operator accounts.
    List,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// List a tenant's people.
    List { tenant: String },
    /// Add a person. The password is read from WACRM_USER_PASSWORD, or generated and printed once.
    Add {
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// admin, agent or viewer.
        #[arg(long)]
        role: String,
        /// Limit the person to these outlets (repeat; default: all outlets).
        #[arg(long = "outlet")]
        outlets: Vec<String>,
        #[arg(long, env = "WACRM_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Invite a person by email: prints the link (valid for auth.invitation_hours).
    Invite {
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
        #[arg(long = "outlet")]
        outlets: Vec<String>,
    },
    /// Change a person's role (by email or id).
    SetRole {
        tenant: String,
        user: String,
        #[arg(long)]
        role: String,
    },
    /// Disable a person (sessions end at once) or enable them again.
    Disable {
        tenant: String,
        user: String,
        #[arg(long)]
        enable: bool,
    },
    /// Remove a person.
    Remove { tenant: String, user: String },
}

#[derive(Subcommand, Debug)]
pub enum ApiKeyCommand {
    /// List a tenant's API keys (never their secrets).
    List { tenant: String },
    /// Create a key; its secret is printed this once.
    Create {
        tenant: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: String,
        #[arg(long = "outlet")]
        outlets: Vec<String>,
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Revoke a key at once.
    Revoke { tenant: String, id: String },
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// One tenant's log (default: everything).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only actions starting with this, e.g. `auth.` or `user.role_changed`.
    #[arg(long)]
    pub action: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

pub async fn operator(config: Config, cmd: OperatorCommand) -> anyhow::Result<()> {
    with_session(config, |api| async move {
        match cmd {
            OperatorCommand::Create {
                email,
                name,
                password,
            } => {
                let v = api
                    .post(
                        "/api/v1/operators",
                        json!({"email": email, "name": name, "password": password}),
                    )
                    .await?;
                print_json(&v["operator"]);
                if let Some(p) = v["generated_password"].as_str() {
                    println!("password (shown once): {p}");
                }
            }
            OperatorCommand::List => print_json(&api.get("/api/v1/operators").await?),
        }
        Ok(())
    })
    .await
}

async fn user_id(api: &super::ApiClient, tenant: &str, user: &str) -> anyhow::Result<String> {
    if user.parse::<uuid::Uuid>().is_ok() {
        return Ok(user.to_string());
    }
    let users = api.get(&format!("/api/v1/tenants/{tenant}/users")).await?;
    users
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| u["email"].as_str() == Some(user.trim().to_lowercase().as_str()))
        .and_then(|u| u["id"].as_str().map(str::to_string))
        .ok_or_else(|| anyhow!("no user {user:?} in tenant {tenant}"))
}

pub async fn user(config: Config, cmd: UserCommand) -> anyhow::Result<()> {
    with_session(config, |api| async move {
        match cmd {
            UserCommand::List { tenant } => {
                let users = api.get(&format!("/api/v1/tenants/{tenant}/users")).await?;
                for u in users.as_array().into_iter().flatten() {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        u["id"].as_str().unwrap_or(""),
                        u["email"].as_str().unwrap_or(""),
                        u["role"].as_str().unwrap_or(""),
                        u["status"].as_str().unwrap_or(""),
                        u["name"].as_str().unwrap_or("")
                    );
                }
            }
            UserCommand::Add { tenant, email, name, role, outlets, password } => {
                let v = api
                    .post(
                        &format!("/api/v1/tenants/{tenant}/users"),
                        json!({"email": email, "name": name, "role": role, "outlets": outlets, "password": password}),
                    )
                    .await?;
                print_json(&v["user"]);
                if let Some(p) = v["generated_password"].as_str() {
                    println!("password (shown once): {p}");
                }
            }
            UserCommand::Invite { tenant, email, role, outlets } => {
                let v = api
                    .post(
                        &format!("/api/v1/tenants/{tenant}/invitations"),
                        json!({"email": email, "role": role, "outlets": outlets}),
                    )
                    .await?;
                println!("invitation link (shown once): {}", v["link"].as_str().unwrap_or(""));
            }
            UserCommand::SetRole { tenant, user, role } => {
                let id = user_id(&api, &tenant, &user).await?;
                print_json(
                    &api.patch(&format!("/api/v1/tenants/{tenant}/users/{id}"), json!({"role": role}))
                        .await?,
                );
            }
            UserCommand::Disable { tenant, user, enable } => {
                let id = user_id(&api, &tenant, &user).await?;
                print_json(
                    &api.patch(
                        &format!("/api/v1/tenants/{tenant}/users/{id}"),
                        json!({"disabled": !enable}),
                    )
                    .await?,
                );
            }
            UserCommand::Remove { tenant, user } => {
                let id = user_id(&api, &tenant, &user).await?;
                print_json(&api.delete(&format!("/api/v1/tenants/{tenant}/users/{id}")).await?);
            }
        }
        Ok(())
    })
    .await
}

pub async fn api_key(config: Config, cmd: ApiKeyCommand) -> anyhow::Result<()> {
    with_session(config, |api| async move {
        match cmd {
            ApiKeyCommand::List { tenant } => {
                print_json(&api.get(&format!("/api/v1/tenants/{tenant}/api-keys")).await?)
            }
            ApiKeyCommand::Create { tenant, name, role, outlets, expires_in_days } => {
                let v = api
                    .post(
                        &format!("/api/v1/tenants/{tenant}/api-keys"),
                        json!({"name": name, "role": role, "outlets": outlets, "expires_in_days": expires_in_days}),
                    )
                    .await?;
                print_json(&v["api_key"]);
                println!("secret (shown once): {}", v["secret"].as_str().unwrap_or(""));
            }
            ApiKeyCommand::Revoke { tenant, id } => {
                print_json(&api.delete(&format!("/api/v1/tenants/{tenant}/api-keys/{id}")).await?)
            }
        }
        Ok(())
    })
    .await
}

pub async fn audit(config: Config, args: AuditArgs) -> anyhow::Result<()> {
    with_session(config, |api| async move {
        let mut query = format!("limit={}", args.limit);
        if let Some(a) = &args.action {
            query.push_str(&format!("&action={a}"));
        }
        let path = match &args.tenant {
            Some(t) => format!("/api/v1/tenants/{t}/audit?{query}"),
            None => format!("/api/v1/audit?{query}"),
        };
        let entries: Value = api.get(&path).await.context("reading the audit log")?;
        for e in entries.as_array().into_iter().flatten() {
            let at = jiff::Timestamp::from_millisecond(e["at_ms"].as_i64().unwrap_or(0))
                .map(|t| t.to_string())
                .unwrap_or_default();
            println!(
                "{at}\t{}\t{} {}\t{}\t{}",
                e["action"].as_str().unwrap_or(""),
                e["actor"]["kind"].as_str().unwrap_or(""),
                e["actor"]["label"].as_str().unwrap_or(""),
                e["target"].as_str().unwrap_or(""),
                e["detail"]
            );
        }
        Ok(())
    })
    .await
}
