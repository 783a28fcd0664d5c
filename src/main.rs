use clap::Parser;

// glibc's malloc spent a sixth of the webhook path's CPU in locking and chunk consolidation
// across the writer, notifier and runtime threads (perf, `wacrm bench ingest`); mimalloc's
// per-thread heaps do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = wacrm::cli::Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = runtime_workers() {
        builder.worker_threads(workers);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(wacrm::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One core is left to the storage writer: it is the one serial step of every write (group
/// commit), and on a small machine it otherwise queues for a core behind the runtime's workers.
/// Measured on 2 cores (`wacrm bench ingest`, three runs each): one worker took 35.6k-41.2k
/// webhooks/s, two took 28.3k-36.9k, three 25.5k-31.9k; `bench pipeline` was unchanged. Heavy
/// work (embeddings, password hashing, search, backups) runs on blocking threads either way.
/// `TOKIO_WORKER_THREADS` overrides.
fn runtime_workers() -> Option<usize> {
    if std::env::var_os("TOKIO_WORKER_THREADS").is_some() {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some(cores.saturating_sub(1).max(1))
}
