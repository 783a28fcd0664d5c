//! The CLI's way to the API: the running server of this data directory if there is one, else an
//! in-process server started for the command.

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::{ChannelCommand, OutletCommand, TenantCommand};
use crate::config::Config;

const SERVER_FILE: &str = "server.json";

#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl ApiClient {
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            http: local_http_client(base),
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = value["error"]["message"]
                .as_str()
                .unwrap_or("request failed");
            let code = value["error"]["code"].as_str().unwrap_or("error");
            bail!("{message} ({code}, HTTP {})", status.as_u16());
        }
        Ok(value)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    /// POSTs one file as a multipart/form-data `file` part.
    pub async fn upload(
        &self,
        path: &str,
        filename: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<Value> {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(filename.to_string()),
        );
        let resp = self
            .http
            .post(format!("{}{}", self.base, path))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() && value["documents"].as_array().is_none_or(|d| d.is_empty()) {
            let message = value["error"]["message"]
                .as_str()
                .or_else(|| value["rejected"][0]["reason"].as_str())
                .unwrap_or("request failed");
            bail!("{message} (HTTP {})", status.as_u16());
        }
        Ok(value)
    }

    pub async fn patch(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    /// A non-JSON resource (a CSV statement).
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let resp = self
            .http
            .get(format!("{}{}", self.base, path))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let message = value["error"]["message"]
                .as_str()
                .unwrap_or("request failed");
            let code = value["error"]["code"].as_str().unwrap_or("error");
            bail!("{message} ({code}, HTTP {})", status.as_u16());
        }
        Ok(text)
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}

/// The CLI talks to the server on this machine. Over HTTPS on the loopback address the server's
/// certificate names the public host, not 127.0.0.1, so it cannot be verified by name there; the
/// connection never leaves the machine.
pub fn local_http_client(base: &str) -> reqwest::Client {
    let host = base
        .strip_prefix("https://")
        .map(|rest| rest.split(['/', '?']).next().unwrap_or(""))
        .unwrap_or("");
    let loopback = host.starts_with("127.")
        || host.starts_with("0.0.0.0")
        || host.starts_with("[::1]")
        || host.starts_with("[::]")
        || host.starts_with("localhost");
    reqwest::Client::builder()
        .danger_accept_invalid_certs(loopback)
        .build()
        .unwrap_or_default()
}

pub fn write_server_file(data_dir: &Path, url: &str) -> anyhow::Result<()> {
    let body = json!({"url": url, "pid": std::process::id()}).to_string();
    crate::tenants::crypto::write_private(&data_dir.join(SERVER_FILE), body.as_bytes())
        .context("cannot write server.json")
}

pub fn remove_server_file(data_dir: &Path) {
    let _ = std::fs::remove_file(data_dir.join(SERVER_FILE));
}

/// A connection to the API for a management command, and what to stop afterwards.
pub struct Session {
    pub api: ApiClient,
    in_process: Option<(tokio::sync::oneshot::Sender<()>, crate::app::Running)>,
}

impl Session {
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        let token_path = config.data_dir.join(crate::web::auth::OPERATOR_TOKEN_FILE);
        if let Ok(raw) = std::fs::read_to_string(config.data_dir.join(SERVER_FILE)) {
            let info: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
            if let (Some(url), Ok(token)) =
                (info["url"].as_str(), std::fs::read_to_string(&token_path))
            {
                let api = ApiClient::new(url, token.trim());
                if api.http.get(format!("{url}/healthz")).send().await.is_ok() {
                    return Ok(Self {
                        api,
                        in_process: None,
                    });
                }
            }
        }
        // No server on this data directory: run one for this command only, on loopback and
        // without the service's other listeners (a metrics or redirect port may be taken, and a
        // command needs neither).
        let mut config = config;
        config.metrics_listen = None;
        if let Some(tls) = config.tls.as_mut() {
            tls.redirect_listen = None;
        }
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = crate::app::launch(config, listener, async {
            let _ = stopped.await;
        })
        .await?;
        let api = ApiClient::new(&running.url(), &running.state.operator_token);
        Ok(Self {
            api,
            in_process: Some((stop, running)),
        })
    }

    pub async fn close(self) {
        if let Some((stop, running)) = self.in_process {
            let _ = stop.send(());
            running.wait().await;
        }
    }
}

pub(super) fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub(super) async fn with_session<F, Fut>(config: Config, f: F) -> anyhow::Result<()>
where
    F: FnOnce(ApiClient) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let session = Session::open(config).await?;
    let result = f(session.api.clone()).await;
    session.close().await;
    result
}

pub async fn tenant(config: Config, cmd: TenantCommand) -> anyhow::Result<()> {
    with_session(config, |api| async move {
        match cmd {
            TenantCommand::List => {
                let tenants = api.get("/api/v1/tenants").await?;
                for t in tenants.as_array().into_iter().flatten() {
                    println!(
                        "{}\t{}\t{}\t{}",
                        t["slug"].as_str().unwrap_or(""),
                        t["name"].as_str().unwrap_or(""),
                        t["status"].as_str().unwrap_or(""),
                        t["time_zone"].as_str().unwrap_or("")
                    );
                }
            }
            TenantCommand::Create {
                slug,
                name,
                time_zone,
            } => {
                let t = api
                    .post(
                        "/api/v1/tenants",
                        json!({"slug": slug, "name": name, "time_zone": time_zone}),
                    )
                    .await?;
                print_json(&t);
            }
            TenantCommand::Suspend { tenant } => print_json(
                &api.post(&format!("/api/v1/tenants/{tenant}/suspend"), json!({}))
                    .await?,
            ),
            TenantCommand::Resume { tenant } => print_json(
                &api.post(&format!("/api/v1/tenants/{tenant}/resume"), json!({}))
                    .await?,
            ),
            TenantCommand::Delete { tenant, yes } => {
                if !yes {
                    bail!("deleting a tenant removes all of its data for good; add --yes to do it");
                }
                let report = api.delete(&format!("/api/v1/tenants/{tenant}")).await?;
                print_json(&report);
            }
        }
        Ok(())
    })
    .await
}

pub async fn outlet(config: Config, cmd: OutletCommand) -> anyhow::Result<()> {
    with_session(config, |api| async move {
        match cmd {
            OutletCommand::List { tenant } => print_json(
                &api.get(&format!("/api/v1/tenants/{tenant}/outlets"))
                    .await?,
            ),
            OutletCommand::Create { tenant, name } => print_json(
                &api.post(
                    &format!("/api/v1/tenants/{tenant}/outlets"),
                    json!({"name": name}),
                )
                .await?,
            ),
        }
        Ok(())
    })
    .await
}

pub async fn channel(config: Config, cmd: ChannelCommand) -> anyhow::Result<()> {
    with_session(config, |api| async move {
        match cmd {
            ChannelCommand::List { tenant } => {
                print_json(&api.get(&format!("/api/v1/tenants/{tenant}/channels")).await?)
            }
            ChannelCommand::AddCloud {
                tenant,
                name,
                phone_number_id,
                waba_id,
                display_phone_number,
                api_version,
                outlet,
                access_token,
                app_secret,
                verify_token,
            } => {
                let c = api
                    .post(
                        &format!("/api/v1/tenants/{tenant}/channels"),
                        json!({
                            "type": "cloud_api", "name": name, "outlet": outlet,
                            "phone_number_id": phone_number_id, "waba_id": waba_id,
                            "display_phone_number": display_phone_number, "api_version": api_version,
                            "access_token": access_token, "app_secret": app_secret, "verify_token": verify_token,
                        }),
                    )
                    .await?;
                print_json(&c);
                println!("Meta only calls HTTPS webhooks: set the callback URL above behind TLS.");
            }
            ChannelCommand::AddSandbox { tenant, name, outlet } => {
                let c = api
                    .post(
                        &format!("/api/v1/tenants/{tenant}/channels"),
                        json!({"type": "sandbox", "name": name, "outlet": outlet}),
                    )
                    .await?;
                print_json(&c);
            }
        }
        Ok(())
    })
    .await
}
