//! `POST /v1/embeddings` as OpenAI documents it, with deterministic vectors: each word of the
//! input is hashed to a signed position (a bag of words), so texts sharing words are close and
//! unrelated texts are nearly orthogonal. Good enough to test retrieval end to end; not a model.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{check_auth, error_body, error_response, openai_error, Shared};

/// text-embedding-3-small's native size.
pub const DEFAULT_DIMENSIONS: usize = 1536;

pub(super) async fn handle(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.embedding_requests.fetch_add(1, Ordering::SeqCst);
    {
        let settings = shared.settings();
        if let Some(expected) = &settings.api_key {
            if let Err(body) = check_auth(&headers, expected) {
                return error_response(401, body);
            }
        }
        if settings.unavailable {
            return error_response(503, error_body(503));
        }
        if let Some(status) = settings.fail_all {
            return error_response(status, error_body(status));
        }
    }
    let invalid = |message: &str, param: &str| {
        error_response(
            400,
            openai_error(message, "invalid_request_error", Some(param), None),
        )
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return invalid("We could not parse the JSON body of your request.", "body");
    };
    let Some(model) = request["model"].as_str().filter(|m| !m.is_empty()) else {
        return invalid("you must provide a model parameter", "model");
    };
    let inputs: Vec<String> = match &request["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if !items.is_empty() && items.len() <= 2048 => {
            match items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect()
            {
                Some(v) => v,
                None => return invalid("'$.input' is invalid.", "input"),
            }
        }
        _ => return invalid("'$.input' is invalid.", "input"),
    };
    if inputs.iter().any(|s| s.is_empty()) {
        return invalid("'$.input' is invalid.", "input");
    }
    let dimensions = match &request["dimensions"] {
        Value::Null => DEFAULT_DIMENSIONS,
        v => match v.as_u64() {
            Some(d) if (1..=DEFAULT_DIMENSIONS as u64).contains(&d) => d as usize,
            _ => return invalid("Invalid value for 'dimensions'.", "dimensions"),
        },
    };
    if request["encoding_format"]
        .as_str()
        .is_some_and(|f| f != "float")
    {
        return invalid(
            "only encoding_format \"float\" is supported here",
            "encoding_format",
        );
    }
    let tokens: usize = inputs.iter().map(|s| s.chars().count().div_ceil(4)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| json!({"object": "embedding", "index": i, "embedding": vector(text, dimensions)}))
        .collect();
    Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response()
}

/// The fake's embedding of `text`: unit-length bag of hashed lowercase words.
pub fn vector(text: &str, dimensions: usize) -> Vec<f32> {
    let mut v = vec![0f32; dimensions];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let h = Sha256::digest(word.to_lowercase().as_bytes());
        let slot = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize % dimensions;
        v[slot] += if h[4] & 1 == 0 { 1.0 } else { -1.0 };
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    } else {
        v[0] = 1.0;
    }
    v
}
