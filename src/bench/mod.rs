//! `wacrm bench ...`: throughput and latency, each printed beside a baseline measured in the same run.

pub mod kb;

use clap::Subcommand;

use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Signed webhooks over HTTP at full speed, against raw redb commits of the same records.
    Ingest {
        /// Messages to send.
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
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
        BenchCommand::Ingest { .. } => anyhow::bail!("not yet"),
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
    }
}
