//! Plans as data. The three original tiers are built in ("seeded") and apply until the operator
//! edits one: the edit stores the plan row, which from then on shadows the seed. Plans the
//! operator adds are stored rows only. Plans are never deleted (subscriptions and past periods
//! name them); an archived plan cannot be assigned any more.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::money::{Currency, Money};
use super::{BillingError, PLANS};
use crate::storage::{OperatorRead, Record, Store, StoreError};

/// A cap, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Max(u64),
    Unlimited,
}

impl Limit {
    /// Whether holding `used + adding` stays within the cap.
    pub fn allows(&self, used: u64, adding: u64) -> bool {
        match self {
            Limit::Unlimited => true,
            Limit::Max(max) => used.saturating_add(adding) <= *max,
        }
    }

    pub fn max(&self) -> Option<u64> {
        match self {
            Limit::Max(m) => Some(*m),
            Limit::Unlimited => None,
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Max(m) => write!(f, "{m}"),
            Limit::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// JSON: a number, or the string "unlimited".
impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Limit::Max(m) => s.serialize_u64(*m),
            Limit::Unlimited => s.serialize_str("unlimited"),
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Max(u64),
            Word(String),
        }
        match Wire::deserialize(d)? {
            Wire::Max(m) => Ok(Limit::Max(m)),
            Wire::Word(w) if w == "unlimited" => Ok(Limit::Unlimited),
            Wire::Word(w) => Err(serde::de::Error::custom(format!(
                "{w:?}: a limit is a whole number or \"unlimited\""
            ))),
        }
    }
}

/// What a plan caps. Storage is in bytes (1 MB = 2^20 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Assistant replies per monthly period.
    pub assistant_messages: Limit,
    pub outlets: Limit,
    pub knowledge_bases: Limit,
    pub storage_bytes: Limit,
}

/// Per-tenant overrides set by the operator; `None` keeps the plan's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    #[serde(default)]
    pub assistant_messages: Option<Limit>,
    #[serde(default)]
    pub outlets: Option<Limit>,
    #[serde(default)]
    pub knowledge_bases: Option<Limit>,
    #[serde(default)]
    pub storage_bytes: Option<Limit>,
}

impl Limits {
    pub fn with(self, o: &LimitOverrides) -> Limits {
        Limits {
            assistant_messages: o.assistant_messages.unwrap_or(self.assistant_messages),
            outlets: o.outlets.unwrap_or(self.outlets),
            knowledge_bases: o.knowledge_bases.unwrap_or(self.knowledge_bases),
            storage_bytes: o.storage_bytes.unwrap_or(self.storage_bytes),
        }
    }
}

pub const MB: u64 = 1024 * 1024;

/// A plan's id: short, stable, used in URLs and the CLI ("starter").
pub type PlanId = String;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub id: PlanId,
    pub name: String,
    /// Per monthly period.
    pub price: Money,
    pub limits: Limits,
    /// Price of each assistant reply past the period's quota. None: past the quota the assistant
    /// stops answering and conversations go to people.
    pub overage: Option<Money>,
    pub archived: bool,
    pub updated_at_ms: i64,
}

impl Record for Plan {
    const VERSION: u16 = 1;
    const NAME: &'static str = "plan";
}

pub const DEFAULT_PLAN: &str = "starter";

/// The original tiers.
pub fn seeds() -> Vec<Plan> {
    let plan = |id: &str, name: &str, dollars: i64, messages, outlets, kbs, storage| Plan {
        id: id.into(),
        name: name.into(),
        price: Money::new(dollars * 100, Currency::USD),
        limits: Limits {
            assistant_messages: Limit::Max(messages),
            outlets: Limit::Max(outlets),
            knowledge_bases: kbs,
            storage_bytes: Limit::Max(storage),
        },
        overage: None,
        archived: false,
        updated_at_ms: 0,
    };
    vec![
        plan("starter", "Starter", 99, 500, 1, Limit::Max(1), 50 * MB),
        plan("growth", "Growth", 299, 2_000, 3, Limit::Max(3), 200 * MB),
        plan(
            "enterprise",
            "Enterprise",
            799,
            10_000,
            10,
            Limit::Unlimited,
            1024 * MB,
        ),
    ]
}

/// A plan by id: the stored row, else the seed of that id.
pub fn get_plan(op: &OperatorRead<'_>, id: &str) -> Result<Option<Plan>, StoreError> {
    if let Some(plan) = op.get(&PLANS, id.as_bytes())? {
        return Ok(Some(plan));
    }
    Ok(seeds().into_iter().find(|p| p.id == id))
}

pub fn list_plans(store: &Store) -> Result<Vec<Plan>, BillingError> {
    let stored = store.read(|r| r.operator().scan(&PLANS, &[], false, usize::MAX))?;
    let mut plans: Vec<Plan> = seeds()
        .into_iter()
        .filter(|seed| !stored.iter().any(|(_, p)| p.id == seed.id))
        .collect();
    plans.extend(stored.into_iter().map(|(_, p)| p));
    plans.sort_by(|a, b| a.price.minor.cmp(&b.price.minor).then(a.id.cmp(&b.id)));
    Ok(plans)
}

pub fn find_plan(store: &Store, id: &str) -> Result<Plan, BillingError> {
    store
        .read(|r| get_plan(&r.operator(), id))?
        .ok_or_else(|| BillingError::NotFound(format!("plan {id:?}")))
}

fn validate_id(id: &str) -> Result<(), BillingError> {
    let ok = (2..=40).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(BillingError::invalid(
            "id",
            format!("{id:?} must be 2-40 characters of a-z, 0-9 and '-'"),
        ))
    }
}

fn validate(plan: &Plan) -> Result<(), BillingError> {
    let name = plan.name.trim();
    if name.is_empty() || name.chars().count() > 80 {
        return Err(BillingError::invalid("name", "must be 1-80 characters"));
    }
    if plan.price.minor < 0 {
        return Err(BillingError::invalid("price", "must not be negative"));
    }
    if let Some(overage) = plan.overage {
        if overage.minor < 0 {
            return Err(BillingError::invalid("overage", "must not be negative"));
        }
        if overage.currency != plan.price.currency {
            return Err(BillingError::invalid(
                "overage",
                format!(
                    "is in {} but the plan's price is in {}",
                    overage.currency, plan.price.currency
                ),
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPlan {
    pub id: String,
    pub name: String,
    pub price: Money,
    pub limits: Limits,
    #[serde(default)]
    pub overage: Option<Money>,
}

pub async fn create_plan(store: &Store, new: NewPlan) -> Result<Plan, BillingError> {
    validate_id(&new.id)?;
    let plan = Plan {
        id: new.id,
        name: new.name.trim().to_string(),
        price: new.price,
        limits: new.limits,
        overage: new.overage,
        archived: false,
        updated_at_ms: crate::events::now_ms(),
    };
    validate(&plan)?;
    let record = plan.clone();
    store
        .write(move |ctx| {
            let mut op = ctx.operator();
            if get_plan_in(&op, &record.id)?.is_some() {
                return Err(StoreError::rejected(
                    "conflict",
                    format!("a plan with id {:?} already exists", record.id),
                ));
            }
            op.put(&PLANS, record.id.as_bytes(), &record)
        })
        .await?;
    Ok(plan)
}

/// Changes to a plan; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanUpdate {
    #[serde(default)]
    pub name: Option<String>,
    /// Applies to tenants who move onto the plan from now on (see `statement`).
    #[serde(default)]
    pub price: Option<Money>,
    /// Limits apply at once to every tenant on the plan.
    #[serde(default)]
    pub limits: Option<LimitOverrides>,
    /// `Some(None)` (JSON null) removes the overage.
    #[serde(default, deserialize_with = "present")]
    pub overage: Option<Option<Money>>,
    #[serde(default)]
    pub archived: Option<bool>,
}

/// Tells an absent field (None) from an explicit null (Some(None)).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Some(Option::deserialize(d)?))
}

pub async fn update_plan(
    store: &Store,
    id: &str,
    update: PlanUpdate,
) -> Result<Plan, BillingError> {
    let id = id.to_string();
    // Read, change and store in one write, so two edits never lose one another.
    let plan = store
        .write(move |ctx| {
            let mut op = ctx.operator();
            let plan = get_plan_in(&op, &id)?.ok_or_else(|| {
                StoreError::rejected("not_found", format!("plan {id:?} not found"))
            })?;
            let plan = apply_update(plan, &update).map_err(|e| e.into_rejection())?;
            op.put(&PLANS, plan.id.as_bytes(), &plan)?;
            Ok(plan)
        })
        .await?;
    Ok(plan)
}

fn apply_update(mut plan: Plan, update: &PlanUpdate) -> Result<Plan, BillingError> {
    if let Some(name) = &update.name {
        plan.name = name.trim().to_string();
    }
    if let Some(price) = update.price {
        if price.currency != plan.price.currency {
            return Err(BillingError::invalid(
                "price",
                format!(
                    "a plan keeps its currency ({}); create a new plan for {}",
                    plan.price.currency, price.currency
                ),
            ));
        }
        plan.price = price;
    }
    if let Some(limits) = &update.limits {
        plan.limits = plan.limits.with(limits);
    }
    if let Some(overage) = update.overage {
        plan.overage = overage;
    }
    if let Some(archived) = update.archived {
        plan.archived = archived;
    }
    plan.updated_at_ms = crate::events::now_ms();
    validate(&plan)?;
    Ok(plan)
}

fn get_plan_in(
    op: &crate::storage::OperatorWrite<'_, '_>,
    id: &str,
) -> Result<Option<Plan>, StoreError> {
    if let Some(plan) = op.get(&PLANS, id.as_bytes())? {
        return Ok(Some(plan));
    }
    Ok(seeds().into_iter().find(|p| p.id == id))
}

/// A plan by id inside a write (stored row, else seed).
pub(crate) fn plan_in_write(
    ctx: &mut crate::storage::WriteCtx<'_>,
    id: &str,
) -> Result<Option<Plan>, StoreError> {
    get_plan_in(&ctx.operator(), id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_match_the_published_table() {
        let s = seeds();
        let by = |id: &str| s.iter().find(|p| p.id == id).unwrap().clone();
        let starter = by("starter");
        assert_eq!(starter.price, Money::new(9_900, Currency::USD));
        assert_eq!(starter.limits.assistant_messages, Limit::Max(500));
        assert_eq!(starter.limits.outlets, Limit::Max(1));
        assert_eq!(starter.limits.knowledge_bases, Limit::Max(1));
        assert_eq!(starter.limits.storage_bytes, Limit::Max(50 * 1024 * 1024));
        let growth = by("growth");
        assert_eq!(growth.price.amount(), "299.00");
        assert_eq!(growth.limits.assistant_messages, Limit::Max(2_000));
        assert_eq!(growth.limits.outlets, Limit::Max(3));
        assert_eq!(growth.limits.knowledge_bases, Limit::Max(3));
        assert_eq!(growth.limits.storage_bytes, Limit::Max(200 * MB));
        let enterprise = by("enterprise");
        assert_eq!(enterprise.price.amount(), "799.00");
        assert_eq!(enterprise.limits.assistant_messages, Limit::Max(10_000));
        assert_eq!(enterprise.limits.outlets, Limit::Max(10));
        assert_eq!(enterprise.limits.knowledge_bases, Limit::Unlimited);
        assert_eq!(enterprise.limits.storage_bytes, Limit::Max(1024 * MB));
    }

    #[test]
    fn limits_read_numbers_or_unlimited() {
        let o: LimitOverrides =
            serde_json::from_str(r#"{"assistant_messages": 10, "knowledge_bases": "unlimited"}"#)
                .unwrap();
        assert_eq!(o.assistant_messages, Some(Limit::Max(10)));
        assert_eq!(o.knowledge_bases, Some(Limit::Unlimited));
        assert_eq!(o.outlets, None);
        assert!(serde_json::from_str::<LimitOverrides>(r#"{"outlets": "lots"}"#).is_err());
        assert!(serde_json::from_str::<LimitOverrides>(r#"{"outlets": -1}"#).is_err());
        assert!(serde_json::from_str::<LimitOverrides>(r#"{"outlet": 1}"#).is_err());
        assert!(Limit::Max(1).allows(0, 1));
        assert!(!Limit::Max(1).allows(1, 1));
        assert!(Limit::Unlimited.allows(u64::MAX, 1));
    }

    #[test]
    fn an_update_tells_null_from_absent() {
        let u: PlanUpdate = serde_json::from_str(r#"{"overage": null}"#).unwrap();
        assert_eq!(u.overage, Some(None));
        let u: PlanUpdate = serde_json::from_str(r#"{"name": "X"}"#).unwrap();
        assert_eq!(u.overage, None);
    }
}
