//! The bare cost of the two fakes the pipeline bench talks to: one LLM call then one Graph send,
//! made directly with the appliance's own clients, first one at a time (latency), then from many
//! clients at once (throughput). Whatever the pipeline adds on top is the appliance's own cost.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::harness;
use super::pipeline::{ANSWER_SENDS_TO, QUESTION, WARM_TURNS};
use super::stats::{per_sec, Latency};
use super::BenchError;
use crate::assistant::llm::{ChatMessage, ChatRequest, LlmClient, LlmConfig, ToolDef};
use crate::testkit::fake_graph::{FakeGraph, FakeGraphOptions};
use crate::testkit::fake_llm::{FakeLlm, FAKE_LLM_API_KEY};
use crate::whatsapp::graph::{GraphClient, GraphClientConfig, SendCredentials, SendOutcome};
use crate::whatsapp::outbound::OutboundContent;

#[derive(Debug, Clone, Default)]
pub struct Baseline {
    /// One LLM call then one Graph send, back to back, from one client.
    pub pair: Latency,
    pub llm: Latency,
    pub graph: Latency,
    /// LLM call + Graph send pairs per second from `concurrency` clients.
    pub pairs_per_sec: f64,
}

/// The fakes' bare cost, measured with the appliance's own LLM and Graph clients.
pub async fn measure(
    llm: &FakeLlm,
    concurrency: usize,
    sequential: usize,
    total: usize,
) -> Result<Baseline, BenchError> {
    let graph = FakeGraph::start(FakeGraphOptions::new(harness::ACCESS_TOKEN))
        .await
        .map_err(|e| BenchError::Setup(format!("fake graph: {e}")))?;
    let client = Arc::new(
        LlmClient::new(LlmConfig {
            base_url: llm.base_url(),
            api_key: FAKE_LLM_API_KEY.into(),
            timeout: Duration::from_secs(10),
            max_retries: 0,
            ..LlmConfig::default()
        })
        .map_err(|e| BenchError::Setup(format!("llm client: {e}")))?,
    );
    let sender = GraphClient::new(GraphClientConfig {
        base_url: graph.base_url(),
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
    })
    .map_err(|e| BenchError::Setup(format!("graph client: {e}")))?;
    let creds = Arc::new(
        SendCredentials::new(
            crate::tenants::default_api_version(),
            harness::PHONE_NUMBER_ID,
            harness::ACCESS_TOKEN,
        )
        .map_err(|e| BenchError::Setup(format!("credentials: {e}")))?,
    );
    let request = Arc::new(typical_request());

    // Sequential: the latency of one turn's remote calls with nothing else going on.
    let mut pair = Vec::new();
    let mut llm_only = Vec::new();
    let mut graph_only = Vec::new();
    for i in 0..(WARM_TURNS + sequential) {
        let (l, g) = one_pair(&client, &sender, &creds, &request, i).await?;
        if i >= WARM_TURNS {
            llm_only.push(l);
            graph_only.push(g);
            pair.push(l + g);
        }
    }

    // Concurrent: how many such pairs the fakes (and clients) sustain on this machine.
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, sender, creds, request, next) = (
            client.clone(),
            sender.clone(),
            creds.clone(),
            request.clone(),
            next.clone(),
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), BenchError>(());
                }
                one_pair(&client, &sender, &creds, &request, i).await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| BenchError::Setup(format!("baseline task: {e}")))??;
    }
    let elapsed = started.elapsed();
    graph.shutdown().await;
    Ok(Baseline {
        pair: Latency::of(pair),
        llm: Latency::of(llm_only),
        graph: Latency::of(graph_only),
        pairs_per_sec: per_sec(total, elapsed),
    })
}

/// What the assistant sends for a first question: system prompt, the question, the handoff tool.
fn typical_request() -> ChatRequest {
    ChatRequest::new(vec![
        ChatMessage::system(
            "You are the WhatsApp customer-service assistant of Bench Coffee. Be brief, friendly \
             and factual. Reply in the language the customer writes in. Answer only from the \
             numbered knowledge passages below; never invent prices, hours, policies or other \
             facts. If the passages do not answer the question, say you do not know and offer to \
             connect a person, or call handoff_to_human.\n\nKnowledge passages:\n(none found for \
             this question)\n",
        ),
        ChatMessage::user(QUESTION),
    ])
    .with_tools(vec![ToolDef::new(
        "handoff_to_human",
        "Pass the conversation to a human agent.",
        serde_json::json!({
            "type": "object",
            "properties": {"reason": {"type": "string"}},
            "required": ["reason"]
        }),
    )])
}

async fn one_pair(
    client: &LlmClient,
    sender: &GraphClient,
    creds: &SendCredentials,
    request: &ChatRequest,
    i: usize,
) -> Result<(Duration, Duration), BenchError> {
    let t0 = Instant::now();
    let answer = client
        .chat(request)
        .await
        .map_err(|e| BenchError::Http(format!("llm: {e}")))?;
    let l = t0.elapsed();
    let body = OutboundContent::Text {
        body: answer.text().to_string(),
        preview_url: false,
    }
    .to_graph_body(&harness::customer(ANSWER_SENDS_TO + i), None, None);
    let t1 = Instant::now();
    match sender.send(creds, &body).await {
        SendOutcome::Accepted { .. } => Ok((l, t1.elapsed())),
        other => Err(BenchError::Http(format!("graph: {}", other.kind()))),
    }
}
