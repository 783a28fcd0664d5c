//! The benches still run end to end (tiny sizes, debug build). No timing is asserted: the figures
//! mean nothing here; what is checked is that every message was accepted and every customer got
//! exactly one reply, so a bench that silently measures a broken pipeline fails here first.

use wacrm::bench::{ingest, pipeline};
use wacrm::config::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_bench_runs_and_accepts_every_webhook() {
    let report = ingest::run(ingest::IngestOptions {
        messages: 50,
        concurrency: vec![4, 6],
        rounds: 2,
        work_dir: None,
        config: Config::default(),
    })
    .await
    .unwrap();
    // Both connection counts ran, and the faster one is the figure.
    let tried: Vec<usize> = report.levels.iter().map(|b| b.concurrency).collect();
    assert_eq!(tried, vec![4, 6]);
    let conns = report.alone().concurrency;
    assert!(tried.contains(&conns));
    for burst in report
        .levels
        .iter()
        .chain([report.alone(), &report.beside_pipeline])
    {
        assert_eq!(burst.accepted, 50);
        assert_eq!(burst.failed, 0);
        assert_eq!(burst.latency.samples, 50);
        assert!(burst.commits > 0);
    }
    // The held pipeline filed every message (the 50 and one warm-up per connection).
    assert!(report.drain.finished);
    assert_eq!(report.drain.messages, 50 + report.rounds[1].concurrency);
    // The ceiling writes what ingress wrote for those messages.
    let batches: Vec<usize> = report.ceilings.iter().map(|c| c.batch).collect();
    assert_eq!(batches, vec![1, conns, 50 + conns]);
    assert!(report.ceilings.iter().all(|c| c.messages > 0));
    assert_eq!(report.rounds.len(), 2);
    let printed = report.table().to_string();
    assert!(printed.contains("ratio ingest / best ceiling"), "{printed}");
    assert!(printed.contains("rounds"), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_bench_runs_and_every_customer_gets_one_reply() {
    let report = pipeline::run(pipeline::PipelineOptions {
        turns: 50,
        concurrency: 8,
        latency_turns: 20,
        rate: 200.0,
        metering_turns: 20,
        work_dir: None,
        config: Config::default(),
    })
    .await
    .unwrap();
    let tp = &report.throughput;
    assert_eq!(
        (
            tp.turns,
            tp.replied,
            tp.duplicates,
            tp.off_script,
            tp.webhooks_failed
        ),
        (50, 50, 0, 0, 0)
    );
    let ol = &report.open_loop;
    assert_eq!(
        (
            ol.turns,
            ol.replied,
            ol.duplicates,
            ol.off_script,
            ol.webhooks_failed
        ),
        (20, 20, 0, 0, 0)
    );
    assert_eq!(ol.latency.samples, 20);
    assert!(report.baseline.pair.samples > 0);
    // Metering on and off: each side got its half of the load, in alternating blocks, and every
    // customer of either side exactly one reply (the metered side never ran out of quota).
    let m = &report.metering;
    for arm in [&m.off, &m.on] {
        assert_eq!(
            (
                arm.turns,
                arm.replied,
                arm.duplicates,
                arm.off_script,
                arm.webhooks_failed
            ),
            (10, 10, 0, 0, 0)
        );
        assert_eq!(arm.latency.samples, 10);
    }
    assert!(m.noise.is_some());
    assert!(m.precheck.samples > 0 && m.meter_in_txn.samples > 0);
    let printed = report.table().to_string();
    assert!(printed.contains("max throughput"), "{printed}");
    assert!(printed.contains("metering on vs off"), "{printed}");
}
