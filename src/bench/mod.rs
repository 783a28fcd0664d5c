//! `wacrm bench ...`: throughput and latency, each printed beside a baseline measured in the same run.

pub mod kb;
pub mod live;

use clap::Subcommand;

use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Backup time and throughput on a data directory of a given size, and the webhook p99
    /// during the backup against the same load without it.
    Backup(crate::ops::bench::BackupBenchArgs),
    /// What the quota check adds to an assistant turn: the turn's commit with metering on and
    /// off (alternating, same run), the pre-check, and the metering step alone.
    Quota {
        /// Turn commits to measure (half with metering, half without).
        #[arg(long, default_value_t = 4_000)]
        turns: usize,
        /// Turns committing at once (sharing group commits).
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Directory for the throwaway data directory (default: the system temp dir). Put it on
        /// the disk the real data directory lives on.
        #[arg(long)]
        work_dir: Option<std::path::PathBuf>,
    },
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
    match cmd {
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
            .await
        }
        BenchCommand::Backup(args) => crate::ops::bench::run(config, args).await,
        BenchCommand::Quota {
            turns,
            concurrency,
            work_dir,
        } => {
            let report = crate::billing::bench::run(crate::billing::bench::QuotaBenchOptions {
                turns,
                concurrency,
                work_dir,
            })
            .await?;
            print!("{}", report.render());
            Ok(())
        }
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
            .await
        }
    }
}
