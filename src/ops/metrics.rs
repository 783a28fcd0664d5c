//! Prometheus metrics, served in the text exposition format on their own listener
//! (`metrics_listen`). Counters and histograms are recorded through the functions below from
//! anywhere in the program (one process-wide registry, like a logger); gauges that describe state
//! (queues, storage, disk) are measured when scraped.
//!
//! Per-tenant series carry a `tenant` label with the tenant's slug. Label values are bounded: at
//! most `MAX_TENANT_SERIES` tenants get their own series, the rest are summed under `_other`, and
//! every other label comes from a closed set of codes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::storage::TenantId;
use crate::whatsapp::graph::SendOutcome;

const MAX_TENANT_SERIES: usize = 200;
const OTHER_TENANTS: &str = "_other";
/// Latency buckets in seconds.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Registry {
    counters: BTreeMap<(&'static str, Labels), u64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
    tenants: BTreeSet<TenantId>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

const HELP: &[(&str, &str, &str)] = &[
    ("wacrm_webhooks_received_total", "counter", "Webhook POSTs by outcome (accepted, bad_signature, malformed, too_large, shed, disk_full, rate_limited, error)."),
    ("wacrm_turns_total", "counter", "Assistant turns by tenant and outcome (reply, handoff, silent)."),
    ("wacrm_handoffs_total", "counter", "Conversations handed to a person, by tenant and reason."),
    ("wacrm_send_errors_total", "counter", "Failed Graph API sends by tenant, class and Meta error code."),
    ("wacrm_llm_request_seconds", "histogram", "Generation API latency, by outcome."),
    ("wacrm_llm_tokens_total", "counter", "Generation API tokens by tenant and kind (prompt, completion)."),
    ("wacrm_retrieval_seconds", "histogram", "Knowledge retrieval latency."),
    ("wacrm_queue_depth", "gauge", "Events waiting per consumer."),
    ("wacrm_queue_oldest_age_seconds", "gauge", "Age of the oldest waiting event per consumer."),
    ("wacrm_writer_backlog", "gauge", "Writes waiting for the storage writer."),
    ("wacrm_storage_bytes", "gauge", "Bytes on disk by part of the data directory."),
    ("wacrm_tenant_storage_bytes", "gauge", "Bytes of database rows per tenant (measured every few minutes)."),
    ("wacrm_disk_free_bytes", "gauge", "Free bytes on the data directory's filesystem."),
    ("wacrm_disk_state", "gauge", "0 ok, 1 uploads refused, 2 warning, 3 webhooks refused."),
    ("wacrm_tls_certificate_expiry_seconds", "gauge", "Seconds until the served certificate expires."),
    ("wacrm_ready", "gauge", "1 when /readyz would answer ready."),
    ("wacrm_build_info", "gauge", "Version of the running binary."),
];

fn tenant_label(reg: &mut Registry, tenant: TenantId) -> String {
    if reg.tenants.contains(&tenant) || reg.tenants.len() < MAX_TENANT_SERIES {
        reg.tenants.insert(tenant);
        tenant.to_string()
    } else {
        OTHER_TENANTS.to_string()
    }
}

fn add(name: &'static str, labels: Labels, by: u64) {
    if let Ok(mut reg) = registry().lock() {
        *reg.counters.entry((name, labels)).or_insert(0) += by;
    }
}

fn add_for_tenant(name: &'static str, tenant: TenantId, mut labels: Labels, by: u64) {
    if let Ok(mut reg) = registry().lock() {
        let t = tenant_label(&mut reg, tenant);
        labels.insert(0, ("tenant", t));
        *reg.counters.entry((name, labels)).or_insert(0) += by;
    }
}

fn observe(name: &'static str, labels: Labels, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    if let Ok(mut reg) = registry().lock() {
        let h = reg.histograms.entry((name, labels)).or_default();
        if h.counts.is_empty() {
            h.counts = vec![0; BUCKETS.len()];
        }
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }
}

pub fn webhook_received(outcome: &'static str) {
    add(
        "wacrm_webhooks_received_total",
        vec![("outcome", outcome.into())],
        1,
    );
}

pub fn turn(tenant: TenantId, outcome: &'static str) {
    add_for_tenant(
        "wacrm_turns_total",
        tenant,
        vec![("outcome", outcome.into())],
        1,
    );
}

pub fn handoff(tenant: TenantId, reason: &'static str) {
    add_for_tenant(
        "wacrm_handoffs_total",
        tenant,
        vec![("reason", reason.into())],
        1,
    );
}

/// Records the outcome of one Graph API send (only failures are counted).
pub fn send_outcome(tenant: TenantId, outcome: &SendOutcome) {
    let (class, code) = match outcome {
        SendOutcome::Accepted { .. } => return,
        SendOutcome::Retryable {
            code, http_status, ..
        } => (
            "retryable",
            code.map(|c| c.to_string())
                .unwrap_or_else(|| format!("http_{http_status}")),
        ),
        SendOutcome::Permanent {
            code, http_status, ..
        } => (
            "permanent",
            code.map(|c| c.to_string())
                .unwrap_or_else(|| format!("http_{http_status}")),
        ),
        SendOutcome::Ambiguous { .. } => ("ambiguous", "none".to_string()),
    };
    // Meta's error codes are a closed, documented set; anything odd is folded into one value.
    let code = if code.len() <= 12 && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        code
    } else {
        "other".into()
    };
    add_for_tenant(
        "wacrm_send_errors_total",
        tenant,
        vec![("class", class.into()), ("code", code)],
        1,
    );
}

/// One generation API call: its latency, outcome ("ok" or the error code) and token usage.
pub fn llm_call(
    tenant: TenantId,
    outcome: &'static str,
    elapsed: Duration,
    prompt: u32,
    completion: u32,
) {
    observe(
        "wacrm_llm_request_seconds",
        vec![("outcome", outcome.into())],
        elapsed,
    );
    if prompt > 0 {
        add_for_tenant(
            "wacrm_llm_tokens_total",
            tenant,
            vec![("kind", "prompt".into())],
            prompt as u64,
        );
    }
    if completion > 0 {
        add_for_tenant(
            "wacrm_llm_tokens_total",
            tenant,
            vec![("kind", "completion".into())],
            completion as u64,
        );
    }
}

/// Hook for the knowledge service: one retrieval's latency.
pub fn retrieval(elapsed: Duration) {
    observe("wacrm_retrieval_seconds", Vec::new(), elapsed);
}

/// A gauge value measured at scrape time.
pub struct Gauge {
    pub name: &'static str,
    pub labels: Labels,
    pub value: f64,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_text(labels: &[(&'static str, String)], extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// Renders every series. `slug` maps tenant ids to slugs (unknown ids stay ids).
pub fn render(gauges: &[Gauge], slug: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let Ok(reg) = registry().lock() else {
        return out;
    };
    let relabel = |labels: &Labels| -> Labels {
        labels
            .iter()
            .map(|(k, v)| {
                if *k == "tenant" {
                    (*k, slug(v).unwrap_or_else(|| v.clone()))
                } else {
                    (*k, v.clone())
                }
            })
            .collect()
    };
    for (name, kind, help) in HELP {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        match *kind {
            "counter" => {
                for ((n, labels), value) in reg.counters.iter().filter(|((n, _), _)| n == name) {
                    let _ = writeln!(out, "{n}{} {value}", label_text(&relabel(labels), None));
                }
            }
            "histogram" => {
                for ((n, labels), h) in reg.histograms.iter().filter(|((n, _), _)| n == name) {
                    let labels = relabel(labels);
                    for (i, bound) in BUCKETS.iter().enumerate() {
                        let _ = writeln!(
                            out,
                            "{n}_bucket{} {}",
                            label_text(&labels, Some(("le", bound.to_string()))),
                            h.counts.get(i).copied().unwrap_or(0)
                        );
                    }
                    let _ = writeln!(
                        out,
                        "{n}_bucket{} {}",
                        label_text(&labels, Some(("le", "+Inf".into()))),
                        h.count
                    );
                    let _ = writeln!(out, "{n}_sum{} {}", label_text(&labels, None), h.sum);
                    let _ = writeln!(out, "{n}_count{} {}", label_text(&labels, None), h.count);
                }
            }
            _ => {
                for g in gauges.iter().filter(|g| g.name == *name) {
                    let _ = writeln!(
                        out,
                        "{}{} {}",
                        g.name,
                        label_text(&relabel(&g.labels), None),
                        g.value
                    );
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_series_are_bounded_and_relabelled() {
        let first = TenantId::new();
        handoff(first, "customer_asked");
        for _ in 0..(MAX_TENANT_SERIES + 5) {
            handoff(TenantId::new(), "tool_call");
        }
        let first_id = first.to_string();
        let text = render(&[], &|id| (id == first_id).then(|| "acme".to_string()));
        assert!(
            text.contains("wacrm_handoffs_total{tenant=\"acme\",reason=\"customer_asked\"} 1"),
            "{text}"
        );
        assert!(text.contains("tenant=\"_other\""), "{text}");
        let series = text
            .lines()
            .filter(|l| l.starts_with("wacrm_handoffs_total{"))
            .count();
        assert!(series <= MAX_TENANT_SERIES + 2, "{series} series");
    }

    #[test]
    fn histograms_have_cumulative_buckets() {
        observe(
            "wacrm_retrieval_seconds",
            vec![("test", "h".into())],
            Duration::from_millis(30),
        );
        let text = render(&[], &|_| None);
        assert!(
            text.contains("wacrm_retrieval_seconds_bucket{test=\"h\",le=\"0.025\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("wacrm_retrieval_seconds_bucket{test=\"h\",le=\"0.05\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("wacrm_retrieval_seconds_count{test=\"h\"} 1"),
            "{text}"
        );
    }
}
