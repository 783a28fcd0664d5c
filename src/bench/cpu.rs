//! CPU time of this process, in total and by thread, for the benchmarks' per-message figures.
//!
//! Throughput on a shared 2-core VM moves by a fifth between runs; CPU time per message moves
//! far less, and split by thread it says which side (runtime worker, storage writer, notifier,
//! load generator) a change made cheaper.

use std::collections::BTreeMap;
use std::time::Duration;

/// CPU time used so far by every thread of this process.
pub fn process() -> Duration {
    used(rustix::time::ClockId::ProcessCPUTime)
}

/// CPU time used so far by the calling thread.
pub fn this_thread() -> Duration {
    used(rustix::time::ClockId::ThreadCPUTime)
}

fn used(clock: rustix::time::ClockId) -> Duration {
    let t = rustix::time::clock_gettime(clock);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// CPU time used so far by this process's threads, summed by thread name (the runtime's
/// workers and blocking threads share one). Empty where `/proc` cannot say.
#[derive(Debug, Clone, Default)]
pub struct ByThread(BTreeMap<String, Duration>);

impl ByThread {
    pub fn now() -> Self {
        let mut by_name = BTreeMap::new();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return Self(by_name);
        };
        for task in tasks.flatten() {
            let dir = task.path();
            let (Ok(name), Ok(stat)) = (
                std::fs::read_to_string(dir.join("comm")),
                std::fs::read_to_string(dir.join("schedstat")),
            ) else {
                continue;
            };
            // schedstat: time on the CPU (ns), time waiting for one (ns), timeslices.
            let Some(ran) = stat.split_whitespace().next().and_then(|n| n.parse().ok()) else {
                continue;
            };
            *by_name.entry(name.trim().to_string()).or_default() += Duration::from_nanos(ran);
        }
        Self(by_name)
    }

    /// What each thread name used since `earlier`, largest first (threads gone since are left
    /// out, threads started since count in full).
    pub fn since(&self, earlier: &ByThread) -> Vec<(String, Duration)> {
        let mut used: Vec<(String, Duration)> = self
            .0
            .iter()
            .map(|(name, now)| {
                let before = earlier.0.get(name).copied().unwrap_or_default();
                (name.clone(), now.saturating_sub(before))
            })
            .filter(|(_, d)| !d.is_zero())
            .collect();
        used.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
        used
    }
}
