//! `wacrm simulate`: the customer's phone in a terminal, on a sandbox channel.

use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::Args;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::client::Session;
use crate::config::Config;

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Tenant slug.
    #[arg(long, default_value = "demo")]
    pub tenant: String,
    /// Sandbox channel id (default: the tenant's first sandbox channel).
    #[arg(long)]
    pub channel: Option<String>,
    /// The customer's number.
    #[arg(long, default_value = "6281200000001")]
    pub from: String,
    /// The customer's WhatsApp profile name.
    #[arg(long, default_value = "Sandbox Customer")]
    pub name: String,
    /// Send this one message, print the replies, and exit (instead of an interactive session).
    #[arg(long)]
    pub message: Option<String>,
    /// How long to wait for replies to each message, in seconds.
    #[arg(long, default_value_t = 20)]
    pub wait: u64,
}

pub async fn run(config: Config, args: SimulateArgs) -> anyhow::Result<()> {
    let session = Session::open(config).await?;
    let result = chat(&session, &args).await;
    session.close().await;
    result
}

async fn chat(session: &Session, args: &SimulateArgs) -> anyhow::Result<()> {
    let api = &session.api;
    let channel = match &args.channel {
        Some(c) => c.clone(),
        None => {
            let channels = api
                .get(&format!("/api/v1/tenants/{}/channels", args.tenant))
                .await?;
            channels
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "sandbox")
                .and_then(|c| c["id"].as_str().map(str::to_string))
                .ok_or_else(|| anyhow!("tenant {} has no sandbox channel (add one with `wacrm channel add-sandbox`)", args.tenant))?
        }
    };
    let path = format!("/api/v1/tenants/{}/sandbox/{channel}/messages", args.tenant);
    if let Some(text) = &args.message {
        return exchange(api, &path, args, text).await;
    }
    println!(
        "You are {} (+{}). Type a message and press Enter; Ctrl-D to quit.",
        args.name, args.from
    );
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        exchange(api, &path, args, text).await?;
    }
    Ok(())
}

/// Sends one message and prints what comes back until the replies stop for a moment.
async fn exchange(
    api: &super::ApiClient,
    path: &str,
    args: &SimulateArgs,
    text: &str,
) -> anyhow::Result<()> {
    let sent_at = jiff::Timestamp::now().as_millisecond() - 1;
    api.post(
        path,
        json!({"from": args.from, "name": args.name, "text": text}),
    )
    .await?;
    let mut after = sent_at;
    let mut first_wait = args.wait * 1000;
    let mut got_any = false;
    loop {
        let view: Value = api
            .get(&format!(
                "{path}?from={}&after_ms={after}&wait_ms={first_wait}",
                args.from
            ))
            .await?;
        let messages = view["messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for m in &messages {
            println!("< {}", m["text"].as_str().unwrap_or(""));
            after = after.max(m["at_ms"].as_i64().unwrap_or(after));
        }
        got_any = true;
        // A handoff sends a notice and then an agent may write: keep listening briefly.
        first_wait = 1500;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !got_any {
        bail!("no reply within {} s", args.wait);
    }
    Ok(())
}
