//! `wacrm bench ...`: throughput and latency, each printed beside a baseline measured in the same run.

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
}

pub async fn run(_config: Config, _cmd: BenchCommand) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
