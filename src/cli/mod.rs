//! The `wacrm` command line. `serve` runs the appliance; the management commands talk to the
//! running server's JSON API (found through `server.json` in the data directory), or, when no
//! server runs on that directory, start one in-process for the duration of the command. Either
//! way there is one code path for every change: the API.

mod billing;
pub mod client;
mod demo;
mod kb;
mod people;
mod simulate;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, LogFormat};
pub use client::ApiClient;

#[derive(Parser, Debug)]
#[command(
    name = "wacrm",
    version,
    about = "WhatsApp customer-service appliance: webhook ingress, assistant with human handoff, agent dashboard",
    long_about = "wacrm runs as one process on one data directory. Configuration comes from built-in \
defaults, then the TOML file given with --config, then WACRM_* environment variables (nested keys \
joined by a double underscore, e.g. WACRM_LLM__API_KEY)."
)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "WACRM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (overrides the configuration's data_dir).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the appliance: webhooks, assistant, sender, API. Prints the URL.
    Serve(ServeArgs),
    /// Run the appliance with a demo tenant and a sandbox channel, ready to chat with.
    Demo(ServeArgs),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage a tenant's outlets (branches).
    #[command(subcommand)]
    Outlet(OutletCommand),
    /// Manage a tenant's WhatsApp channels.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Manage knowledge bases and their documents; test retrieval.
    #[command(subcommand)]
    Kb(kb::KbCommand),
    /// Rebuild the search indexes (BM25 and vectors) of every tenant from the database.
    Reindex,
    /// Plans and their prices and limits (operator).
    #[command(subcommand)]
    Plan(billing::PlanCommand),
    /// A tenant's plan, usage against its limits, periods and statements; the overview.
    #[command(subcommand)]
    Billing(billing::BillingCommand),
    /// Manage operator accounts (the group's administrators).
    #[command(subcommand)]
    Operator(people::OperatorCommand),
    /// Manage a tenant's people.
    #[command(subcommand)]
    User(people::UserCommand),
    /// Manage a tenant's API keys.
    #[command(subcommand, name = "api-key")]
    ApiKey(people::ApiKeyCommand),
    /// Read the audit log (all of it, or one tenant's).
    Audit(people::AuditArgs),
    /// Play a customer on a sandbox channel from this terminal.
    Simulate(simulate::SimulateArgs),
    /// Benchmarks (printed as ratios against a baseline measured in the same run).
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
    /// Copy the data directory consistently, even while the service runs and takes traffic. The
    /// copy is checked, then moved into DEST (a new or empty directory).
    Backup { dest: PathBuf },
    /// Check a backup, then put it in place of the data directory (stop the service first). The
    /// replaced directory is kept aside.
    Restore {
        src: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Check the store: redb's integrity check and every record (stop the service first).
    Check,
    /// Check configuration, permissions, disk space, models, certificate and remote APIs.
    Doctor,
    /// Per-tenant data retention.
    #[command(subcommand)]
    Retention(crate::ops::cli::RetentionCommand),
    /// Erase everything stored about one customer of a tenant (audited).
    EraseCustomer {
        tenant: String,
        /// The customer's WhatsApp number (digits, country code first).
        customer: String,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Listen address (overrides the configuration's listen).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// List tenants.
    List,
    /// Create a tenant.
    Create {
        /// Short name used in URLs and commands, e.g. acme-coffee.
        slug: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// IANA time zone, e.g. Asia/Jakarta.
        #[arg(long, default_value = "UTC")]
        time_zone: String,
    },
    /// Suspend a tenant: webhooks are still stored but not answered, its people cannot sign in.
    Suspend { tenant: String },
    /// Resume a suspended tenant.
    Resume { tenant: String },
    /// Delete a tenant and all of its data; prints what was removed.
    Delete {
        tenant: String,
        /// Confirms the deletion.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum OutletCommand {
    /// List a tenant's outlets.
    List { tenant: String },
    /// Create an outlet.
    Create {
        tenant: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ChannelCommand {
    /// List a tenant's channels (with the webhook URL and verify token for Meta's console).
    List { tenant: String },
    /// Connect a WhatsApp Business number on the Cloud API. Secrets are read from the
    /// environment so they stay out of shell history.
    AddCloud {
        tenant: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        phone_number_id: String,
        #[arg(long)]
        waba_id: String,
        #[arg(long, default_value = "")]
        display_phone_number: String,
        #[arg(long, default_value = "v21.0")]
        api_version: String,
        #[arg(long)]
        outlet: Option<String>,
        /// Permanent access token of the system user.
        #[arg(long, env = "WACRM_CHANNEL_ACCESS_TOKEN", hide_env_values = true)]
        access_token: String,
        /// The Meta app's secret (verifies webhook signatures).
        #[arg(long, env = "WACRM_CHANNEL_APP_SECRET", hide_env_values = true)]
        app_secret: String,
        /// The verify token you will paste into Meta's webhook settings.
        #[arg(long, env = "WACRM_CHANNEL_VERIFY_TOKEN", hide_env_values = true)]
        verify_token: String,
    },
    /// Add a sandbox channel (no Meta account needed; play the customer with `wacrm simulate`).
    AddSandbox {
        tenant: String,
        #[arg(long, default_value = "Sandbox")]
        name: String,
        #[arg(long)]
        outlet: Option<String>,
    },
}

/// Loads configuration and applies the command-line overrides.
pub fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    Ok(config)
}

pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("WACRM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Doctor = cli.command {
        // The doctor reports a broken configuration instead of failing on it.
        return crate::ops::doctor::run(cli.config.as_deref(), cli.data_dir.clone()).await;
    }
    let mut config = load_config(&cli)?;
    match cli.command {
        Command::Serve(args) => {
            config.listen = args.listen.unwrap_or(config.listen);
            serve(config, false).await
        }
        Command::Demo(args) => {
            config.listen = args.listen.unwrap_or(config.listen);
            serve(config, true).await
        }
        Command::Tenant(cmd) => client::tenant(config, cmd).await,
        Command::Outlet(cmd) => client::outlet(config, cmd).await,
        Command::Channel(cmd) => client::channel(config, cmd).await,
        Command::Kb(cmd) => kb::run(config, cmd).await,
        Command::Reindex => kb::reindex(config).await,
        Command::Plan(cmd) => billing::plan(config, cmd).await,
        Command::Billing(cmd) => billing::billing(config, cmd).await,
        Command::Operator(cmd) => people::operator(config, cmd).await,
        Command::User(cmd) => people::user(config, cmd).await,
        Command::ApiKey(cmd) => people::api_key(config, cmd).await,
        Command::Audit(args) => people::audit(config, args).await,
        Command::Simulate(args) => simulate::run(config, args).await,
        Command::Bench(cmd) => crate::bench::run(config, cmd).await,
        Command::Backup { dest } => crate::ops::cli::backup(config, dest).await,
        Command::Restore { src, yes } => crate::ops::cli::restore(config, src, yes).await,
        Command::Check => crate::ops::cli::check(config).await,
        Command::Doctor => Ok(()),
        Command::Retention(cmd) => crate::ops::cli::retention(config, cmd).await,
        Command::EraseCustomer { tenant, customer } => {
            crate::ops::cli::erase_customer(config, tenant, customer).await
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: finishing in-flight work");
}

async fn serve(config: Config, demo: bool) -> anyhow::Result<()> {
    init_logging(config.log_format);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let data_dir = config.data_dir.clone();
    let running = crate::app::launch(config, listener, shutdown_signal()).await?;
    let url = running.url();
    client::write_server_file(&data_dir, &url)?;
    println!("wacrm is running at {url}");
    if demo {
        let api = ApiClient::new(&url, &running.state.operator_token);
        let demo = demo::ensure_demo(&api).await?;
        println!(
            "demo tenant: {}, sandbox channel: {}",
            demo.tenant, demo.channel
        );
        println!("dashboard: {url}/dash  (sign in as {})", demo.admin_email);
        match &demo.admin_password {
            Some(p) => println!("  password (shown once): {p}"),
            None => println!(
                "  password: the one printed at the demo's first start (or `wacrm user add` another admin)"
            ),
        }
        println!(
            "chat with the assistant as a customer (or use the dashboard's simulator):\n  wacrm --data-dir {} simulate --tenant {}",
            data_dir.display(),
            demo.tenant
        );
    }
    running.wait().await;
    client::remove_server_file(&data_dir);
    Ok(())
}
