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
    /// Backup time and throughput on a data directory of a given size, and the webhook p99
    /// during the backup against the same load without it.
    Backup(crate::ops::bench::BackupBenchArgs),
}

pub async fn run(config: Config, cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Backup(args) => crate::ops::bench::run(config, args).await,
        BenchCommand::Ingest { .. } => anyhow::bail!("not yet"),
    }
}
