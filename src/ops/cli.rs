//! The operations commands of the CLI: backup, restore, check, doctor, retention, erase-customer.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::json;

use crate::cli::client::Session;
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum RetentionCommand {
    /// Show a tenant's retention policy.
    Show { tenant: String },
    /// Set a tenant's retention policy (leave a setting out to keep that data forever).
    Set {
        tenant: String,
        /// Delete conversations whose last message is older than this many days.
        #[arg(long)]
        conversation_days: Option<u32>,
        /// Delete documents older than this many days.
        #[arg(long)]
        document_days: Option<u32>,
    },
    /// Apply every tenant's policy now (it also runs every retention.sweep_interval_s).
    Sweep,
}

pub async fn backup(config: Config, dest: PathBuf) -> anyhow::Result<()> {
    let report = super::backup::backup(&config.data_dir, &dest).await?;
    let m = &report.manifest;
    println!(
        "backup written to {} ({} rows, {} files, format {}, from the {}) in {:.1} s",
        report.dest.display(),
        m.rows,
        m.files,
        m.format_version,
        if m.source == "server" {
            "running server"
        } else {
            "data directory"
        },
        report.elapsed.as_secs_f64()
    );
    println!("search indexes are not in the backup: they are rebuilt from the database on start");
    Ok(())
}

pub async fn restore(config: Config, src: PathBuf, yes: bool) -> anyhow::Result<()> {
    let manifest = super::backup::precheck(&src)?;
    println!(
        "{}: backup of {} with {} rows (format {})",
        src.display(),
        manifest.created_at,
        manifest.rows,
        manifest.format_version
    );
    if !yes {
        print!(
            "replace {} with it? the current directory is kept aside [y/N] ",
            config.data_dir.display()
        );
        std::io::stdout().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).ok();
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("not restored");
        }
    }
    let data_dir = config.data_dir.clone();
    let report = tokio::task::spawn_blocking(move || super::restore::restore(&src, &data_dir))
        .await
        .context("restore task")??;
    println!("restored into {}", config.data_dir.display());
    if let Some(old) = report.replaced {
        println!(
            "the replaced directory is kept at {} (delete it once the service runs well)",
            old.display()
        );
    }
    Ok(())
}

pub async fn check(config: Config) -> anyhow::Result<()> {
    let path = config.data_dir.join(crate::app::DATABASE_FILE);
    let report = tokio::task::spawn_blocking(move || super::check::check_database(&path))
        .await
        .context("check task")?
        .map_err(|e| {
            anyhow::anyhow!("{e} (stop the service first: the check needs the database to itself)")
        })?;
    println!(
        "{} rows; redb integrity: {}",
        report.rows,
        if report.integrity { "ok" } else { "FAILED" }
    );
    for p in &report.problems {
        println!("  problem: {p}");
    }
    if !report.ok() {
        bail!("the store check failed; restore the latest backup (wacrm restore)");
    }
    println!("the store is sound");
    Ok(())
}

pub async fn retention(config: Config, cmd: RetentionCommand) -> anyhow::Result<()> {
    let session = Session::open(config).await?;
    let api = session.api.clone();
    let result = async {
        let v = match cmd {
            RetentionCommand::Show { tenant } => {
                api.get(&format!("/api/v1/tenants/{tenant}/retention"))
                    .await?
            }
            RetentionCommand::Set {
                tenant,
                conversation_days,
                document_days,
            } => {
                api.put(
                    &format!("/api/v1/tenants/{tenant}/retention"),
                    json!({"conversation_days": conversation_days, "document_days": document_days}),
                )
                .await?
            }
            RetentionCommand::Sweep => api.post("/api/v1/ops/retention/sweep", json!({})).await?,
        };
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        Ok(())
    }
    .await;
    session.close().await;
    result
}

pub async fn erase_customer(
    config: Config,
    tenant: String,
    customer: String,
) -> anyhow::Result<()> {
    let session = Session::open(config).await?;
    let result = session
        .api
        .post(
            &format!("/api/v1/tenants/{tenant}/customers/{customer}/erase"),
            json!({}),
        )
        .await;
    session.close().await;
    let v = result?;
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    println!("search indexes and analytics were told to forget this customer; the erasure is in the audit trail");
    Ok(())
}
