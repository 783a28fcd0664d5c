//! `wacrm demo`: the appliance with a demo tenant to try at once: a sandbox channel to play the
//! customer on, a knowledge base the assistant answers from, and an admin to sign in to the
//! dashboard with. Everything goes through the API, and a second start reuses what exists.

use anyhow::anyhow;
use serde_json::{json, Value};

use super::client::ApiClient;

const SLUG: &str = "demo";
const ADMIN_EMAIL: &str = "admin@demo.local";
const KB_NAME: &str = "faq";
const FAQ: &str = include_str!("../../demo/faq.md");

/// What the demo prints.
pub struct Demo {
    pub tenant: String,
    pub channel: String,
    pub admin_email: &'static str,
    /// Only on the start that created the admin (shown once).
    pub admin_password: Option<String>,
}

fn listed(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// Makes sure the demo tenant, its sandbox channel, its knowledge base and its admin exist.
pub async fn ensure_demo(api: &ApiClient) -> anyhow::Result<Demo> {
    let tenants = api.get("/api/v1/tenants").await?;
    if !listed(&tenants).any(|t| t["slug"] == SLUG) {
        api.post(
            "/api/v1/tenants",
            json!({"slug": SLUG, "name": "Demo Coffee", "time_zone": "Asia/Jakarta"}),
        )
        .await?;
    }
    let channels = api.get(&format!("/api/v1/tenants/{SLUG}/channels")).await?;
    let channel = match listed(&channels).find(|c| c["type"] == "sandbox").cloned() {
        Some(c) => c,
        None => {
            api.post(
                &format!("/api/v1/tenants/{SLUG}/channels"),
                json!({"type": "sandbox", "name": "Demo sandbox"}),
            )
            .await?
        }
    };
    let channel = channel["id"]
        .as_str()
        .ok_or_else(|| anyhow!("sandbox channel without id"))?
        .to_string();

    let bases = api
        .get(&format!("/api/v1/tenants/{SLUG}/knowledge-bases"))
        .await?;
    if !listed(&bases).any(|b| b["name"] == KB_NAME) {
        api.post(
            &format!("/api/v1/tenants/{SLUG}/knowledge-bases"),
            json!({"name": KB_NAME}),
        )
        .await?;
        // Ingested in the background; the assistant answers from it once it is ready.
        api.upload(
            &format!("/api/v1/tenants/{SLUG}/knowledge-bases/{KB_NAME}/documents"),
            "faq.md",
            FAQ.as_bytes().to_vec(),
        )
        .await?;
    }

    let users = api.get(&format!("/api/v1/tenants/{SLUG}/users")).await?;
    let admin_password = if listed(&users).any(|u| u["email"] == ADMIN_EMAIL) {
        None
    } else {
        let created = api
            .post(
                &format!("/api/v1/tenants/{SLUG}/users"),
                json!({"email": ADMIN_EMAIL, "name": "Demo admin", "role": "admin"}),
            )
            .await?;
        created["generated_password"].as_str().map(str::to_string)
    };
    Ok(Demo {
        tenant: SLUG.to_string(),
        channel,
        admin_email: ADMIN_EMAIL,
        admin_password,
    })
}
