//! `wacrm plan ...` and `wacrm billing ...`: the billing API from the command line.

use anyhow::{anyhow, bail};
use clap::Subcommand;
use serde_json::{json, Map, Value};

use super::client::{print_json, with_session};
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum PlanCommand {
    /// List plans with their prices and limits.
    List,
    /// Show one plan.
    Show { plan: String },
    /// Add a plan.
    Create {
        /// Short id used in commands and URLs, e.g. growth-plus.
        id: String,
        #[arg(long)]
        name: String,
        /// Monthly price as a decimal, e.g. 149.00.
        #[arg(long)]
        price: String,
        #[arg(long, default_value = "USD")]
        currency: String,
        /// Assistant replies per period: a number or "unlimited".
        #[arg(long)]
        messages: String,
        #[arg(long)]
        outlets: String,
        #[arg(long)]
        knowledge_bases: String,
        /// Document storage: bytes, or with a unit (50MB, 1GB), or "unlimited".
        #[arg(long)]
        storage: String,
        /// Price of each reply past the quota; without it the assistant hands off instead.
        #[arg(long)]
        overage: Option<String>,
    },
    /// Change a plan. Limits apply at once to its tenants; a new price applies to tenants who
    /// move onto the plan from now on (re-assign the plan to re-price a tenant).
    Update {
        plan: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        price: Option<String>,
        #[arg(long)]
        messages: Option<String>,
        #[arg(long)]
        outlets: Option<String>,
        #[arg(long)]
        knowledge_bases: Option<String>,
        #[arg(long)]
        storage: Option<String>,
        /// Overage price per reply, or "none" to remove it.
        #[arg(long)]
        overage: Option<String>,
        /// Archive (cannot be assigned any more) or, with --archived=false, restore.
        #[arg(long)]
        archived: Option<bool>,
    },
}

#[derive(Subcommand, Debug)]
pub enum BillingCommand {
    /// Every tenant's plan, period and usage against its limits.
    Overview,
    /// A tenant's plan, current period and usage against each limit.
    Show { tenant: String },
    /// Move a tenant onto a plan (applies at once; the period's price is prorated).
    Assign { tenant: String, plan: String },
    /// Override a tenant's limits: a number, "unlimited", or "plan" to drop the override.
    Override {
        tenant: String,
        #[arg(long)]
        messages: Option<String>,
        #[arg(long)]
        outlets: Option<String>,
        #[arg(long)]
        knowledge_bases: Option<String>,
        #[arg(long)]
        storage: Option<String>,
    },
    /// A tenant's periods, newest first, with usage and charges.
    Periods { tenant: String },
    /// A period's statement as CSV (or JSON with --json).
    Statement {
        tenant: String,
        /// "current", the period's start date (YYYY-MM-DD) or its number.
        #[arg(long, default_value = "current")]
        period: String,
        #[arg(long)]
        json: bool,
    },
    /// The tenant's quota warnings (80 % and 100 % of the period's replies).
    Warnings { tenant: String },
}

/// "unlimited", a whole number, or (for storage) a size with a unit.
fn limit(value: &str, sizes: bool) -> anyhow::Result<Value> {
    let v = value.trim();
    if v.eq_ignore_ascii_case("unlimited") {
        return Ok(json!("unlimited"));
    }
    if sizes {
        let upper = v.to_ascii_uppercase();
        for (unit, factor) in [
            ("GB", 1u64 << 30),
            ("MB", 1 << 20),
            ("KB", 1 << 10),
            ("B", 1),
        ] {
            if let Some(n) = upper.strip_suffix(unit) {
                let n: u64 = n
                    .trim()
                    .parse()
                    .map_err(|_| anyhow!("{value:?}: expected e.g. 50MB, 1GB or a byte count"))?;
                return n
                    .checked_mul(factor)
                    .map(|b| json!(b))
                    .ok_or_else(|| anyhow!("{value:?} is too large"));
            }
        }
    }
    v.parse::<u64>()
        .map(|n| json!(n))
        .map_err(|_| anyhow!("{value:?}: expected a whole number or \"unlimited\""))
}

fn money(amount: &str, currency: &str) -> Value {
    json!({"amount": amount, "currency": currency})
}

fn limits(
    messages: Option<&str>,
    outlets: Option<&str>,
    kbs: Option<&str>,
    storage: Option<&str>,
) -> anyhow::Result<Map<String, Value>> {
    let mut out = Map::new();
    for (key, value, sizes) in [
        ("assistant_messages", messages, false),
        ("outlets", outlets, false),
        ("knowledge_bases", kbs, false),
        ("storage_bytes", storage, true),
    ] {
        if let Some(v) = value {
            out.insert(key.into(), limit(v, sizes)?);
        }
    }
    Ok(out)
}

pub async fn plan(config: Config, cmd: PlanCommand) -> anyhow::Result<()> {
    with_session(config, |api| async move {
        match cmd {
            PlanCommand::List => {
                let plans = api.get("/api/v1/billing/plans").await?;
                println!("id\tname\tprice\tmessages\toutlets\tknowledge_bases\tstorage_bytes\toverage\tarchived");
                for p in plans.as_array().into_iter().flatten() {
                    let l = &p["limits"];
                    println!(
                        "{}\t{}\t{} {}\t{}\t{}\t{}\t{}\t{}\t{}",
                        p["id"].as_str().unwrap_or(""),
                        p["name"].as_str().unwrap_or(""),
                        p["price"]["amount"].as_str().unwrap_or(""),
                        p["price"]["currency"].as_str().unwrap_or(""),
                        lim(&l["assistant_messages"]),
                        lim(&l["outlets"]),
                        lim(&l["knowledge_bases"]),
                        lim(&l["storage_bytes"]),
                        p["overage"]["amount"].as_str().unwrap_or("-"),
                        p["archived"]
                    );
                }
            }
            PlanCommand::Show { plan } => {
                print_json(&api.get(&format!("/api/v1/billing/plans/{plan}")).await?)
            }
            PlanCommand::Create {
                id,
                name,
                price,
                currency,
                messages,
                outlets,
                knowledge_bases,
                storage,
                overage,
            } => {
                let limits = limits(
                    Some(&messages),
                    Some(&outlets),
                    Some(&knowledge_bases),
                    Some(&storage),
                )?;
                let body = json!({
                    "id": id, "name": name, "price": money(&price, &currency),
                    "limits": limits,
                    "overage": overage.map(|o| money(&o, &currency)),
                });
                print_json(&api.post("/api/v1/billing/plans", body).await?);
            }
            PlanCommand::Update {
                plan,
                name,
                price,
                messages,
                outlets,
                knowledge_bases,
                storage,
                overage,
                archived,
            } => {
                let current = api.get(&format!("/api/v1/billing/plans/{plan}")).await?;
                let currency = current["price"]["currency"].as_str().unwrap_or("USD");
                let mut body = Map::new();
                if let Some(n) = name {
                    body.insert("name".into(), json!(n));
                }
                if let Some(p) = price {
                    body.insert("price".into(), money(&p, currency));
                }
                let l = limits(
                    messages.as_deref(),
                    outlets.as_deref(),
                    knowledge_bases.as_deref(),
                    storage.as_deref(),
                )?;
                if !l.is_empty() {
                    body.insert("limits".into(), Value::Object(l));
                }
                match overage.as_deref() {
                    Some("none") => {
                        body.insert("overage".into(), Value::Null);
                    }
                    Some(o) => {
                        body.insert("overage".into(), money(o, currency));
                    }
                    None => {}
                }
                if let Some(a) = archived {
                    body.insert("archived".into(), json!(a));
                }
                if body.is_empty() {
                    bail!("nothing to change: give at least one option");
                }
                print_json(
                    &api.patch(&format!("/api/v1/billing/plans/{plan}"), Value::Object(body))
                        .await?,
                );
            }
        }
        Ok(())
    })
    .await
}

/// A limit as people write it: 10, unlimited.
fn lim(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn use_line(name: &str, u: &Value) -> String {
    format!("{name}\t{} of {}", u["used"], lim(&u["limit"]))
}

fn print_account(v: &Value) {
    let u = &v["usage"];
    println!(
        "{}\tplan {} ({} {}/month)",
        v["slug"].as_str().unwrap_or(""),
        v["plan"]["name"].as_str().unwrap_or(""),
        v["plan"]["price"]["amount"].as_str().unwrap_or(""),
        v["plan"]["price"]["currency"].as_str().unwrap_or("")
    );
    println!(
        "period\t{} to {} ({})",
        v["period"]["start"].as_str().unwrap_or(""),
        v["period"]["end"].as_str().unwrap_or(""),
        v["subscription"]["time_zone"].as_str().unwrap_or("")
    );
    println!(
        "{}",
        use_line("assistant messages", &u["assistant_messages"])
    );
    println!("overage messages\t{}", u["overage_messages"]);
    println!("handoffs for lack of quota\t{}", u["quota_handoffs"]);
    println!("{}", use_line("outlets", &u["outlets"]));
    println!("{}", use_line("knowledge bases", &u["knowledge_bases"]));
    println!("{}", use_line("storage bytes", &u["storage_bytes"]));
    println!(
        "tokens\tLLM {} prompt + {} completion in {} calls; embeddings {}",
        u["tokens"]["llm_prompt_tokens"],
        u["tokens"]["llm_completion_tokens"],
        u["tokens"]["llm_calls"],
        u["tokens"]["embedding_tokens"]
    );
    println!(
        "period charge\t{} {}",
        v["period_charge"]["amount"].as_str().unwrap_or(""),
        v["period_charge"]["currency"].as_str().unwrap_or("")
    );
}

pub async fn billing(config: Config, cmd: BillingCommand) -> anyhow::Result<()> {
    with_session(config, |api| async move {
        match cmd {
            BillingCommand::Overview => {
                let rows = api.get("/api/v1/billing/tenants").await?;
                println!("tenant\tstatus\tplan\tperiod\tmessages\toverage\toutlets\tknowledge_bases\tstorage_bytes\tcharge");
                for r in rows.as_array().into_iter().flatten() {
                    let of = |u: &Value| format!("{}/{}", u["used"], lim(&u["limit"]));
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{} {}",
                        r["slug"].as_str().unwrap_or(""),
                        r["status"].as_str().unwrap_or(""),
                        r["plan"].as_str().unwrap_or(""),
                        r["period"].as_str().unwrap_or(""),
                        of(&r["assistant_messages"]),
                        r["overage_messages"],
                        of(&r["outlets"]),
                        of(&r["knowledge_bases"]),
                        of(&r["storage_bytes"]),
                        r["period_charge"]["amount"].as_str().unwrap_or(""),
                        r["period_charge"]["currency"].as_str().unwrap_or("")
                    );
                }
            }
            BillingCommand::Show { tenant } => {
                print_account(&api.get(&format!("/api/v1/tenants/{tenant}/billing")).await?)
            }
            BillingCommand::Assign { tenant, plan } => print_account(
                &api.put(
                    &format!("/api/v1/tenants/{tenant}/billing/plan"),
                    json!({"plan": plan}),
                )
                .await?,
            ),
            BillingCommand::Override {
                tenant,
                messages,
                outlets,
                knowledge_bases,
                storage,
            } => {
                let path = format!("/api/v1/tenants/{tenant}/billing");
                let current = api.get(&path).await?;
                let mut overrides = current["subscription"]["overrides"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                for (key, value, sizes) in [
                    ("assistant_messages", messages, false),
                    ("outlets", outlets, false),
                    ("knowledge_bases", knowledge_bases, false),
                    ("storage_bytes", storage, true),
                ] {
                    match value.as_deref() {
                        Some("plan") => {
                            overrides.insert(key.into(), Value::Null);
                        }
                        Some(v) => {
                            overrides.insert(key.into(), limit(v, sizes)?);
                        }
                        None => {}
                    }
                }
                print_account(
                    &api.put(&format!("{path}/overrides"), Value::Object(overrides))
                        .await?,
                );
            }
            BillingCommand::Periods { tenant } => {
                let periods = api
                    .get(&format!("/api/v1/tenants/{tenant}/billing/periods"))
                    .await?;
                println!("period\tstart\tend\treplies\toverage\tquota_handoffs\ttotal");
                for p in periods.as_array().into_iter().flatten() {
                    println!(
                        "{}{}\t{}\t{}\t{}\t{}\t{}\t{} {}",
                        p["period"]["label"].as_str().unwrap_or(""),
                        if p["current"] == true { " (current)" } else { "" },
                        p["period"]["start"].as_str().unwrap_or(""),
                        p["period"]["end"].as_str().unwrap_or(""),
                        p["usage"]["assistant_replies"],
                        p["usage"]["overage_replies"],
                        p["usage"]["quota_handoffs"],
                        p["total"]["amount"].as_str().unwrap_or(""),
                        p["total"]["currency"].as_str().unwrap_or("")
                    );
                }
            }
            BillingCommand::Statement {
                tenant,
                period,
                json,
            } => {
                let path = format!("/api/v1/tenants/{tenant}/billing/periods/{period}");
                if json {
                    print_json(&api.get(&path).await?);
                } else {
                    print!("{}", api.get_text(&format!("{path}/statement.csv")).await?);
                }
            }
            BillingCommand::Warnings { tenant } => print_json(
                &api.get(&format!("/api/v1/tenants/{tenant}/billing/warnings"))
                    .await?,
            ),
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_take_numbers_sizes_and_unlimited() {
        assert_eq!(limit("10", false).unwrap(), json!(10));
        assert_eq!(limit("unlimited", false).unwrap(), json!("unlimited"));
        assert_eq!(limit("50MB", true).unwrap(), json!(50u64 << 20));
        assert_eq!(limit("1 gb", true).unwrap(), json!(1u64 << 30));
        assert_eq!(limit("2048", true).unwrap(), json!(2048));
        assert!(limit("50MB", false).is_err());
        assert!(limit("-1", false).is_err());
        assert!(limit("lots", true).is_err());
    }
}
