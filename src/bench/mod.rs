//! `wacrm bench ...`: throughput and latency, each printed beside a baseline measured in the same run.

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
}

pub async fn run(config: Config, cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
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
    }
}
