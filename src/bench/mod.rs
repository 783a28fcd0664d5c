//! `wacrm bench ...`: throughput and latency, each printed beside a baseline measured in the same run.
//!
//! Benches print figures and ratios; they never fail on a number (a slow machine is not a bug).
//! Build with `--release` before believing any of it.

pub mod baseline;
pub mod cpu;
pub mod harness;
pub mod ingest;
pub mod kb;
pub mod live;
pub mod meta_client;
pub mod metering;
pub mod pipeline;
pub mod stats;

use std::path::PathBuf;

use clap::Subcommand;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bench setup failed: {0}")]
    Setup(String),
    #[error("HTTP request failed: {0}")]
    Http(String),
    #[error("storage failed: {0}")]
    Storage(String),
    #[error("gave up waiting: {0}")]
    Timeout(String),
}

impl BenchError {
    pub fn code(&self) -> &'static str {
        match self {
            BenchError::Setup(_) => "bench_setup",
            BenchError::Http(_) => "bench_http",
            BenchError::Storage(_) => "bench_storage",
            BenchError::Timeout(_) => "bench_timeout",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Signed webhooks over HTTP at full speed, against raw redb commits of the same records:
    /// the webhook path alone (pipeline held), the pipeline catching up, and the webhook path
    /// with the pipeline running beside it.
    Ingest {
        /// Messages to send, one per webhook.
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// Keep-alive connection counts to try, comma-separated, each with one webhook in
        /// flight per connection (as Meta delivers). One commit can hold at most that many
        /// webhooks, so the count bounds the group commit; the fastest is the webhook figure.
        #[arg(long, value_delimiter = ',', default_values_t = ingest::DEFAULT_CONCURRENCY)]
        concurrency: Vec<usize>,
        /// Rounds of burst-then-ceiling, each into a fresh appliance; the median round's ratio is
        /// the result (a shared virtual disk drifts between rounds).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Directory for the throwaway data directories (default: the system temp dir). Put it
        /// on the disk the real data directory lives on.
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
    /// Webhook in, reply accepted by a fake Graph API out: max throughput, then latency at a
    /// fixed offered load, against the bare cost of the fake LLM and Graph API; then what
    /// metering and the quota check add to a turn (the same load with them on and off).
    Pipeline {
        /// Turns (distinct customers) of the throughput phase.
        #[arg(long, default_value_t = 5_000)]
        turns: usize,
        /// Concurrent webhook clients of the throughput phase.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Turns of the latency phase.
        #[arg(long, default_value_t = 2_000)]
        latency_turns: usize,
        /// Offered load of the latency phase (and of the metering phase), in turns per second.
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// Turns of the metering phase, half with metering on and half off.
        #[arg(long, default_value_t = 2_000)]
        metering_turns: usize,
        /// Directory for the throwaway data directories (default: the system temp dir).
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
    /// Backup time and throughput on a data directory of a given size, and the webhook p99
    /// during the backup against the same load without it.
    Backup(crate::ops::bench::BackupBenchArgs),
    /// Live dashboards: sockets of one tenant (and of others) receiving customer messages;
    /// fan-out latency p50/p99 from the commit to the socket, server memory per socket.
    Live {
        /// Live sockets of the main tenant.
        #[arg(long, default_value_t = 2_000)]
        clients: usize,
        /// Other tenants (their sockets must never see the main tenant's messages).
        #[arg(long, default_value_t = 3)]
        other_tenants: usize,
        /// Live sockets spread over the other tenants.
        #[arg(long, default_value_t = 200)]
        other_clients: usize,
        /// Customer messages to post (three in four to the main tenant).
        #[arg(long, default_value_t = 200)]
        messages: usize,
        /// Messages per second.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
    },
    /// Knowledge bases: parse+chunk MB/s, embedding chunks/s, hybrid retrieval p50/p99 and HNSW
    /// recall@5 at 10k and 100k chunks among other tenants' data, quality on eval/.
    Kb {
        /// Chunk counts of the measured tenant.
        #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
        sizes: Vec<usize>,
        #[arg(long, default_value_t = 1000)]
        queries: usize,
        /// Other tenants sharing the indexes.
        #[arg(long, default_value_t = 3)]
        other_tenants: usize,
        #[arg(long, default_value_t = 10_000)]
        other_tenant_chunks: usize,
        /// Skip the local-model throughput (no models/ needed).
        #[arg(long)]
        skip_embedding: bool,
    },
}

pub async fn run(config: Config, cmd: BenchCommand) -> anyhow::Result<()> {
    init_logging();
    match cmd {
        BenchCommand::Ingest {
            messages,
            concurrency,
            rounds,
            work_dir,
        } => {
            let report = ingest::run(ingest::IngestOptions {
                messages,
                concurrency,
                rounds,
                work_dir,
                config,
            })
            .await?;
            print!("{}", report.table());
        }
        BenchCommand::Pipeline {
            turns,
            concurrency,
            latency_turns,
            rate,
            metering_turns,
            work_dir,
        } => {
            let report = pipeline::run(pipeline::PipelineOptions {
                turns,
                concurrency,
                latency_turns,
                rate,
                metering_turns,
                work_dir,
                config,
            })
            .await?;
            print!("{}", report.table());
        }
        BenchCommand::Backup(args) => crate::ops::bench::run(config, args).await?,
        BenchCommand::Live {
            clients,
            other_tenants,
            other_clients,
            messages,
            rate,
        } => {
            live::run(live::LiveArgs {
                clients,
                other_tenants,
                other_clients,
                messages,
                rate,
            })
            .await?
        }
        BenchCommand::Kb {
            sizes,
            queries,
            other_tenants,
            other_tenant_chunks,
            skip_embedding,
        } => {
            kb::run(
                config,
                kb::KbBenchOptions {
                    sizes,
                    queries,
                    other_tenants,
                    other_tenant_chunks,
                    skip_embedding,
                },
            )
            .await?
        }
    }
    Ok(())
}

/// Warnings only by default (`WACRM_LOG` overrides): the table is the output.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("WACRM_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
