//! JSON API of billing. Operator-only for now (plans and assignments stay operator-only; tenant
//! reads move to tenant admins with the role-aware extractor). Handlers only parse, authorize
//! and call the module's functions, so switching the extractor is a one-line change each.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jiff::Timestamp;
use serde::Deserialize;

use super::meter::{self, QuotaWarning};
use super::plans::{self, LimitOverrides, NewPlan, Plan, PlanUpdate};
use super::report::{self, AccountView, OverviewRow, PeriodSummary};
use super::statement::{self, Statement};
use super::subscription;
use super::BillingError;
use crate::people::Role;
use crate::tenants::{self, Tenant};
use crate::web::access::{Access, Api};
use crate::web::auth::Operator;
use crate::web::{ApiError, AppState};

/// Plans and assignments are the operator's; a tenant's admins read their own plan, usage,
/// statements and quota warnings.
pub fn api() -> Api {
    let admin = Access::Tenant(Role::Admin);
    Api::new()
        .get("/api/v1/billing/plans", Access::Operator, list_plans)
        .post("/api/v1/billing/plans", Access::Operator, create_plan)
        .get("/api/v1/billing/plans/{plan}", Access::Operator, get_plan)
        .patch(
            "/api/v1/billing/plans/{plan}",
            Access::Operator,
            update_plan,
        )
        .get("/api/v1/billing/tenants", Access::Operator, overview)
        .get("/api/v1/tenants/{tenant}/billing", admin, account)
        .put(
            "/api/v1/tenants/{tenant}/billing/plan",
            Access::Operator,
            change_plan,
        )
        .put(
            "/api/v1/tenants/{tenant}/billing/overrides",
            Access::Operator,
            set_overrides,
        )
        .get("/api/v1/tenants/{tenant}/billing/periods", admin, periods)
        .get(
            "/api/v1/tenants/{tenant}/billing/periods/{period}",
            admin,
            period_statement,
        )
        .get(
            "/api/v1/tenants/{tenant}/billing/periods/{period}/statement.csv",
            admin,
            period_csv,
        )
        .get("/api/v1/tenants/{tenant}/billing/warnings", admin, warnings)
}

impl From<BillingError> for ApiError {
    fn from(e: BillingError) -> Self {
        let status = match e.code() {
            "not_found" => StatusCode::NOT_FOUND,
            "invalid_input" | "invalid_amount" => StatusCode::BAD_REQUEST,
            "conflict" => StatusCode::CONFLICT,
            super::QUOTA_EXCEEDED => StatusCode::FORBIDDEN,
            _ => match e {
                BillingError::Store(s) => return s.into(),
                BillingError::Period(p) => {
                    return crate::storage::StoreError::Corrupt(p.to_string()).into()
                }
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            },
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

fn tenant(state: &AppState, slug_or_id: &str) -> Result<Tenant, ApiError> {
    Ok(tenants::find_tenant(&state.store, slug_or_id)?)
}

async fn list_plans(
    _op: Operator,
    State(state): State<AppState>,
) -> Result<Json<Vec<Plan>>, ApiError> {
    Ok(Json(plans::list_plans(&state.store)?))
}

async fn create_plan(
    _op: Operator,
    State(state): State<AppState>,
    body: Result<Json<NewPlan>, JsonRejection>,
) -> Result<(StatusCode, Json<Plan>), ApiError> {
    let Json(new) = body?;
    Ok((
        StatusCode::CREATED,
        Json(plans::create_plan(&state.store, new).await?),
    ))
}

async fn get_plan(
    _op: Operator,
    State(state): State<AppState>,
    Path(plan): Path<String>,
) -> Result<Json<Plan>, ApiError> {
    Ok(Json(plans::find_plan(&state.store, &plan)?))
}

async fn update_plan(
    _op: Operator,
    State(state): State<AppState>,
    Path(plan): Path<String>,
    body: Result<Json<PlanUpdate>, JsonRejection>,
) -> Result<Json<Plan>, ApiError> {
    let Json(update) = body?;
    Ok(Json(plans::update_plan(&state.store, &plan, update).await?))
}

async fn overview(
    _op: Operator,
    State(state): State<AppState>,
) -> Result<Json<Vec<OverviewRow>>, ApiError> {
    Ok(Json(report::overview(&state.store, Timestamp::now())?))
}

async fn account(
    State(state): State<AppState>,
    Path(t): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    let t = tenant(&state, &t)?;
    Ok(Json(report::account_view(
        &state.store,
        &t,
        Timestamp::now(),
    )?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanChoice {
    plan: String,
}

async fn change_plan(
    _op: Operator,
    State(state): State<AppState>,
    Path(t): Path<String>,
    body: Result<Json<PlanChoice>, JsonRejection>,
) -> Result<Json<AccountView>, ApiError> {
    let Json(choice) = body?;
    let t = tenant(&state, &t)?;
    subscription::change_plan(&state.store, t.id, &choice.plan, Timestamp::now()).await?;
    Ok(Json(report::account_view(
        &state.store,
        &t,
        Timestamp::now(),
    )?))
}

async fn set_overrides(
    _op: Operator,
    State(state): State<AppState>,
    Path(t): Path<String>,
    body: Result<Json<LimitOverrides>, JsonRejection>,
) -> Result<Json<AccountView>, ApiError> {
    let Json(overrides) = body?;
    let t = tenant(&state, &t)?;
    subscription::set_overrides(&state.store, t.id, overrides).await?;
    Ok(Json(report::account_view(
        &state.store,
        &t,
        Timestamp::now(),
    )?))
}

async fn periods(
    State(state): State<AppState>,
    Path(t): Path<String>,
) -> Result<Json<Vec<PeriodSummary>>, ApiError> {
    let t = tenant(&state, &t)?;
    Ok(Json(report::periods(&state.store, t.id, Timestamp::now())?))
}

async fn period_statement(
    State(state): State<AppState>,
    Path((t, period)): Path<(String, String)>,
) -> Result<Json<Statement>, ApiError> {
    let t = tenant(&state, &t)?;
    Ok(Json(report::statement_of(
        &state.store,
        t.id,
        &period,
        Timestamp::now(),
    )?))
}

async fn period_csv(
    State(state): State<AppState>,
    Path((t, period)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let t = tenant(&state, &t)?;
    let st = report::statement_of(&state.store, t.id, &period, Timestamp::now())?;
    let filename = format!("{}-{}.csv", t.slug, st.period.label);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        statement::to_csv(&t.slug, &st),
    )
        .into_response())
}

async fn warnings(
    State(state): State<AppState>,
    Path(t): Path<String>,
) -> Result<Json<Vec<QuotaWarning>>, ApiError> {
    let t = tenant(&state, &t)?;
    Ok(Json(meter::warnings(&state.store, t.id)?))
}
