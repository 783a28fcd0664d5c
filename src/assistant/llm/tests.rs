//! The real client against the local fake server.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::testkit::fake_llm::{FakeLlm, FakeLlmOptions, Reply, Responder, FAKE_LLM_API_KEY};

async fn fake() -> FakeLlm {
    FakeLlm::start(FakeLlmOptions::default()).await.unwrap()
}

fn config(fake: &FakeLlm) -> LlmConfig {
    LlmConfig {
        base_url: fake.base_url(),
        api_key: FAKE_LLM_API_KEY.to_owned(),
        timeout: Duration::from_secs(10),
        retry_base_delay: Duration::from_millis(1),
        max_retry_delay: Duration::from_millis(20),
        ..LlmConfig::default()
    }
}

fn client(fake: &FakeLlm) -> LlmClient {
    LlmClient::new(config(fake)).unwrap()
}

fn hello() -> ChatRequest {
    ChatRequest::new(vec![
        ChatMessage::system("You are a helpful shop assistant."),
        ChatMessage::user("hello there, is the shop open?"),
    ])
}

fn order_tool() -> ToolDef {
    ToolDef::new(
        "lookup_order",
        "Find an order by id",
        json!({"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}),
    )
}

#[tokio::test]
async fn plain_text_reply_with_usage() {
    let fake = fake().await;
    let response = client(&fake).chat(&hello()).await.unwrap();

    assert_eq!(
        response.content.as_deref(),
        Some("You said: hello there, is the shop open?")
    );
    assert!(response.tool_calls.is_empty());
    assert_eq!(response.finish_reason, FinishReason::Stop);
    assert!(response.usage.prompt_tokens > 0 && response.usage.completion_tokens > 0);
    assert_eq!(
        response.usage.total_tokens,
        response.usage.prompt_tokens + response.usage.completion_tokens
    );

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(sent["messages"][1]["role"], "user");
    assert!(sent.get("stream").is_none() && sent.get("tools").is_none());
    assert!(sent.get("tool_choice").is_none());
}

#[tokio::test]
async fn tool_call_arguments_are_parsed_and_the_round_trip_is_accepted() {
    let fake = fake().await;
    let client = client(&fake);
    fake.push_reply(Reply::ToolCall {
        name: "lookup_order".into(),
        arguments: json!({"order_id": "A-17"}),
    });
    let mut request = hello().with_tools(vec![order_tool()]);

    let response = client.chat(&request).await.unwrap();
    assert_eq!(response.content, None);
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(response.tool_calls.len(), 1);
    let call = &response.tool_calls[0];
    assert_eq!(call.name, "lookup_order");
    assert_eq!(call.args().unwrap(), &json!({"order_id": "A-17"}));

    let sent = &fake.requests()[0];
    assert_eq!(sent["tools"][0]["type"], "function");
    assert_eq!(sent["tools"][0]["function"]["name"], "lookup_order");
    assert_eq!(sent["tools"][0]["function"]["parameters"]["type"], "object");
    assert_eq!(sent["tool_choice"], "auto");

    // The fake checks the history the way the API does: tool calls replayed, every one answered.
    request.messages.push(response.to_assistant_message());
    request.messages.push(ChatMessage::tool_result(
        &call.id,
        r#"{"status":"shipped"}"#,
    ));
    let followup = client.chat(&request).await.unwrap();
    assert_eq!(followup.finish_reason, FinishReason::Stop);
    let replayed = &fake.requests()[1]["messages"][2];
    assert_eq!(replayed["role"], "assistant");
    assert!(replayed["content"].is_null());
    assert_eq!(
        replayed["tool_calls"][0]["function"]["arguments"],
        call.raw_arguments
    );
    assert_eq!(
        fake.requests()[1]["messages"][3]["tool_call_id"],
        call.id.as_str()
    );
}

#[tokio::test]
async fn forced_tool_choice_is_sent_in_the_documented_shape() {
    let fake = fake().await;
    let mut request = hello().with_tools(vec![order_tool()]);
    request.tool_choice = ToolChoice::Function("lookup_order".into());
    client(&fake).chat(&request).await.unwrap();
    assert_eq!(
        fake.requests()[0]["tool_choice"],
        json!({"type": "function", "function": {"name": "lookup_order"}})
    );
}

#[tokio::test]
async fn invalid_tool_arguments_are_kept_as_an_error_for_the_caller() {
    let fake = fake().await;
    let body = json!({
        "id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "lookup_order", "arguments": "{\"order_id\": "}}]}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    });
    fake.push_reply(Reply::Raw {
        status: 200,
        content_type: "application/json".into(),
        body: body.to_string(),
    });
    let response = client(&fake).chat(&hello()).await.unwrap();
    let call = &response.tool_calls[0];
    assert_eq!(call.raw_arguments, "{\"order_id\": ");
    assert_eq!(call.args().unwrap_err().code(), "invalid_tool_arguments");
}

#[tokio::test]
async fn streamed_text_assembles_to_the_non_streamed_reply() {
    let fake = fake().await;
    let client = client(&fake);
    let plain = client.chat(&hello()).await.unwrap();

    let mut deltas = Vec::new();
    let streamed = client
        .chat_stream(&hello(), |d| deltas.push(d.to_owned()))
        .await
        .unwrap();

    assert!(deltas.len() > 1, "expected several deltas, got {deltas:?}");
    assert_eq!(Some(deltas.concat()), streamed.content);
    assert_eq!(streamed, plain);

    let sent = &fake.requests()[1];
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn streamed_tool_call_is_assembled() {
    let fake = fake().await;
    let arguments = json!({"order_id": "A-17", "note": "größer ✓"});
    fake.push_reply(Reply::ToolCall {
        name: "lookup_order".into(),
        arguments: arguments.clone(),
    });
    let mut deltas = Vec::new();
    let response = client(&fake)
        .chat_stream(&hello().with_tools(vec![order_tool()]), |d| {
            deltas.push(d.to_owned())
        })
        .await
        .unwrap();
    assert!(deltas.is_empty());
    assert_eq!(response.content, None);
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(response.tool_calls.len(), 1);
    assert!(response.tool_calls[0].id.starts_with("call_"));
    assert_eq!(response.tool_calls[0].name, "lookup_order");
    assert_eq!(response.tool_calls[0].args().unwrap(), &arguments);
    assert!(response.usage.total_tokens > 0);
}

#[tokio::test]
async fn rate_limit_then_success_is_retried() {
    let fake = fake().await;
    fake.push_reply(Reply::RateLimited {
        retry_after_secs: Some(0),
    });
    let response = client(&fake).chat(&hello()).await.unwrap();
    assert_eq!(response.finish_reason, FinishReason::Stop);
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn retry_after_beyond_the_cap_fails_at_once_with_the_hint() {
    let fake = fake().await;
    fake.push_reply(Reply::RateLimited {
        retry_after_secs: Some(120),
    });
    let err = client(&fake).chat(&hello()).await.unwrap_err();
    assert_eq!(err.code(), "rate_limited");
    assert!(matches!(
        err,
        LlmError::RateLimited { retry_after: Some(wait), .. } if wait == Duration::from_secs(120)
    ));
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn server_errors_give_up_after_bounded_retries() {
    let fake = fake().await;
    fake.fail_all(Some(500));
    let client = client(&fake);

    let err = client.chat(&hello()).await.unwrap_err();
    assert_eq!(err.code(), "server_error");
    assert!(err.to_string().contains("Sorry about that"), "{err}");
    assert_eq!(fake.request_count(), 3, "one attempt plus max_retries = 2");

    let err = client.chat_stream(&hello(), |_| {}).await.unwrap_err();
    assert_eq!(err.code(), "server_error");
    assert_eq!(fake.request_count(), 6);
}

#[tokio::test]
async fn stream_is_retried_when_it_fails_before_any_text() {
    let fake = fake().await;
    fake.push_reply(Reply::error(502));
    let mut deltas = Vec::new();
    let response = client(&fake)
        .chat_stream(&hello(), |d| deltas.push(d.to_owned()))
        .await
        .unwrap();
    assert_eq!(Some(deltas.concat()), response.content);
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn overloaded_503_is_a_server_error_until_it_recovers() {
    let fake = fake().await;
    let client = client(&fake);
    fake.set_unavailable(true);
    assert_eq!(
        client.chat(&hello()).await.unwrap_err().code(),
        "server_error"
    );
    fake.set_unavailable(false);
    client.chat(&hello()).await.unwrap();
}

#[tokio::test]
async fn wrong_key_is_a_bad_request_and_is_not_retried_or_leaked() {
    let fake = fake().await;
    let secret = "sk-wrong-secret-key-987654";
    let client = LlmClient::new(LlmConfig {
        api_key: secret.into(),
        ..config(&fake)
    })
    .unwrap();

    let err = client.chat(&hello()).await.unwrap_err();
    assert_eq!(err.code(), "bad_request");
    assert!(matches!(
        &err,
        LlmError::BadRequest { status: 401, provider_code: Some(code), .. } if code == "invalid_api_key"
    ));
    assert_eq!(fake.request_count(), 1);
    assert!(!err.to_string().contains(secret));
    assert!(!format!("{err:?}").contains(secret));
    assert!(!format!("{client:?}").contains(secret));
}

#[tokio::test]
async fn missing_key_is_rejected() {
    let fake = fake().await;
    let client = LlmClient::new(LlmConfig {
        api_key: String::new(),
        ..config(&fake)
    })
    .unwrap();
    let err = client.chat(&hello()).await.unwrap_err();
    assert!(matches!(err, LlmError::BadRequest { status: 401, .. }));
}

#[tokio::test]
async fn invalid_history_is_rejected_like_the_real_api() {
    let fake = fake().await;
    let request = ChatRequest::new(vec![
        ChatMessage::user("hi"),
        ChatMessage::tool_result("call_nobody_made", "{}"),
    ]);
    let err = client(&fake).chat(&request).await.unwrap_err();
    assert!(
        matches!(err, LlmError::BadRequest { status: 400, .. }),
        "{err}"
    );
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn hang_times_out() {
    let fake = fake().await;
    let client = LlmClient::new(LlmConfig {
        timeout: Duration::from_millis(200),
        max_retries: 0,
        ..config(&fake)
    })
    .unwrap();
    fake.push_reply(Reply::Hang);
    assert_eq!(client.chat(&hello()).await.unwrap_err().code(), "timeout");
    fake.push_reply(Reply::Hang);
    assert_eq!(
        client
            .chat_stream(&hello(), |_| {})
            .await
            .unwrap_err()
            .code(),
        "timeout"
    );
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let fake = fake().await;
    let client = LlmClient::new(LlmConfig {
        timeout: Duration::from_secs(2),
        max_retries: 1,
        ..config(&fake)
    })
    .unwrap();
    fake.push_reply(Reply::Hang);
    client.chat(&hello()).await.unwrap();
    assert_eq!(fake.pending_replies(), 0);
}

#[tokio::test]
async fn server_down_is_unreachable() {
    let fake = fake().await;
    let client = client(&fake);
    fake.shutdown().await;
    assert_eq!(
        client.chat(&hello()).await.unwrap_err().code(),
        "unreachable"
    );
    assert_eq!(
        client
            .chat_stream(&hello(), |_| {})
            .await
            .unwrap_err()
            .code(),
        "unreachable"
    );
}

#[tokio::test]
async fn malformed_json_is_reported_and_not_retried() {
    let fake = fake().await;
    fake.push_reply(Reply::malformed_json());
    let err = client(&fake).chat(&hello()).await.unwrap_err();
    assert_eq!(err.code(), "malformed_response");
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn instant_responder_and_request_log() {
    let fake = FakeLlm::start(FakeLlmOptions {
        default: Responder::Instant("ok".into()),
        record_bodies: false,
        ..FakeLlmOptions::default()
    })
    .await
    .unwrap();
    assert_eq!(fake.request_count(), 0);
    let response = client(&fake).chat(&hello()).await.unwrap();
    assert_eq!(response.text(), "ok");
    assert_eq!(fake.request_count(), 1);
    assert!(fake.requests().is_empty());
}

#[test]
fn bad_base_url_is_a_config_error() {
    let err = LlmClient::new(LlmConfig {
        base_url: "not a url".into(),
        ..LlmConfig::default()
    })
    .unwrap_err();
    assert_eq!(err.code(), "config");
    assert!(!err.is_provider_failure());
}

#[test]
fn config_debug_redacts_the_key() {
    let config = LlmConfig {
        api_key: "sk-live-very-secret".into(),
        ..LlmConfig::default()
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("very-secret"));
    assert!(shown.contains("<redacted>"));
}

#[test]
fn backoff_grows_is_capped_and_stops() {
    let config = LlmConfig {
        max_retries: 5,
        retry_base_delay: Duration::from_millis(100),
        max_retry_delay: Duration::from_millis(500),
        ..LlmConfig::default()
    };
    let err = LlmError::ServerError {
        status: Some(500),
        message: String::new(),
    };
    let delays: Vec<_> = (0..5)
        .map(|attempt| retry_delay(&config, attempt, &err, 1.0).unwrap())
        .collect();
    let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [100, 200, 400, 500, 500]);
    assert_eq!(
        retry_delay(&config, 0, &err, 0.5),
        Some(Duration::from_millis(50))
    );
    assert_eq!(retry_delay(&config, 5, &err, 1.0), None);
}

#[test]
fn only_transient_errors_are_retried() {
    let config = LlmConfig::default();
    let bad = LlmError::BadRequest {
        status: 401,
        message: String::new(),
        provider_code: None,
    };
    assert_eq!(retry_delay(&config, 0, &bad, 1.0), None);
    let quota = LlmError::RateLimited {
        retry_after: None,
        message: String::new(),
        provider_code: Some("insufficient_quota".into()),
    };
    assert_eq!(retry_delay(&config, 0, &quota, 1.0), None);
    let malformed = LlmError::malformed("x");
    assert_eq!(retry_delay(&config, 0, &malformed, 1.0), None);
    for err in [
        LlmError::Timeout {
            after: Duration::from_secs(1),
        },
        LlmError::Unreachable {
            detail: String::new(),
        },
    ] {
        assert!(retry_delay(&config, 0, &err, 1.0).is_some());
    }
}

#[test]
fn retry_after_is_honoured_within_the_cap() {
    let config = LlmConfig {
        retry_base_delay: Duration::from_millis(10),
        max_retry_delay: Duration::from_secs(8),
        ..LlmConfig::default()
    };
    let limited = |secs| LlmError::RateLimited {
        retry_after: Some(Duration::from_secs(secs)),
        message: String::new(),
        provider_code: Some("rate_limit_exceeded".into()),
    };
    assert_eq!(
        retry_delay(&config, 0, &limited(3), 1.0),
        Some(Duration::from_secs(3))
    );
    assert_eq!(retry_delay(&config, 0, &limited(9), 1.0), None);
}

#[test]
fn retry_after_headers_are_read() {
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", "2".parse().unwrap());
    assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
    headers.insert("retry-after-ms", "150".parse().unwrap());
    assert_eq!(retry_after(&headers), Some(Duration::from_millis(150)));
    assert_eq!(retry_after(&HeaderMap::new()), None);
}

#[test]
fn provider_messages_are_trimmed_and_scrubbed_of_the_key() {
    let key = "sk-abcdef123456";
    let body = json!({"error": {"message": format!("bad key {key}"), "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}});
    let err = error_from_status(401, &HeaderMap::new(), body.to_string().as_bytes(), key);
    assert!(!err.to_string().contains(key));
    let html = "<html>".repeat(200);
    let err = error_from_status(502, &HeaderMap::new(), html.as_bytes(), key);
    assert!(err.to_string().len() < 400);
    assert_eq!(err.code(), "server_error");
}
