//! `wacrm bench ...`: throughput and latency, each printed beside a baseline measured in the same run.

pub mod live;

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
}

pub async fn run(_config: Config, cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
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
        BenchCommand::Ingest { .. } => anyhow::bail!("not yet"),
    }
}
