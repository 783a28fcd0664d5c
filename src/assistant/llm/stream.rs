//! Server-sent-events decoding and reassembly of streamed chat-completion deltas.

use std::collections::BTreeMap;

use super::wire::{Chunk, WireUsage};
use super::{ChatResponse, FinishReason, LlmError, ToolCall, Usage};

/// Incremental SSE decoder. Works on bytes so a UTF-8 character or a line split across network reads
/// is only decoded once complete.
#[derive(Debug, Default)]
pub(super) struct SseDecoder {
    pending: Vec<u8>,
    data: Option<String>,
}

impl SseDecoder {
    /// Feeds bytes; returns the `data` of every event completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, LlmError> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(pos) = self.pending[start..].iter().position(|b| *b == b'\n') {
            let end = start + pos;
            let line = &self.pending[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = std::str::from_utf8(line)
                .map_err(|_| LlmError::malformed("stream line is not UTF-8"))?;
            if let Some(event) = field_line(&mut self.data, line) {
                events.push(event);
            }
            start = end + 1;
        }
        self.pending.drain(..start);
        Ok(events)
    }

    /// Flushes an event the server did not terminate with a blank line before closing.
    pub fn finish(&mut self) -> Result<Option<String>, LlmError> {
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            let line = std::str::from_utf8(&rest)
                .map_err(|_| LlmError::malformed("stream line is not UTF-8"))?;
            if let Some(event) = field_line(&mut self.data, line.trim_end_matches('\r')) {
                return Ok(Some(event));
            }
        }
        Ok(self.data.take())
    }
}

/// Applies one SSE line to the event being built; a blank line completes it.
fn field_line(data: &mut Option<String>, line: &str) -> Option<String> {
    if line.is_empty() {
        return data.take();
    }
    if line.starts_with(':') {
        return None;
    }
    let (field, value) = match line.split_once(':') {
        Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
        None => (line, ""),
    };
    if field == "data" {
        match data {
            Some(data) => {
                data.push('\n');
                data.push_str(value);
            }
            None => *data = Some(value.to_owned()),
        }
    }
    None
}

#[derive(Debug, Default)]
struct PartialToolCall {
    id: String,
    name: String,
    arguments: String,
}

/// Folds `chat.completion.chunk` payloads into one [`ChatResponse`].
#[derive(Debug, Default)]
pub(super) struct Accumulator {
    content: Option<String>,
    tool_calls: BTreeMap<usize, PartialToolCall>,
    finish_reason: Option<String>,
    usage: Option<WireUsage>,
    done: bool,
}

impl Accumulator {
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Applies one event's data. Text pieces are handed to `on_delta` as they arrive.
    pub fn apply(&mut self, data: &str, on_delta: &mut impl FnMut(&str)) -> Result<(), LlmError> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        if self.done {
            return Err(LlmError::malformed("data after [DONE]"));
        }
        let chunk: Chunk = serde_json::from_str(data)
            .map_err(|e| LlmError::malformed(format!("stream chunk is not valid JSON: {e}")))?;
        if let Some(error) = chunk.error {
            return Err(LlmError::ServerError {
                status: None,
                message: error
                    .message
                    .unwrap_or_else(|| "error inside stream".into()),
            });
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        // Only the first choice is used: wacrm never asks for `n > 1`.
        let Some(choice) = chunk.choices.into_iter().next() else {
            return Ok(());
        };
        if let Some(text) = choice.delta.content {
            if !text.is_empty() {
                on_delta(&text);
            }
            self.content.get_or_insert_with(String::new).push_str(&text);
        }
        for delta in choice.delta.tool_calls.unwrap_or_default() {
            let slot = self.tool_calls.entry(delta.index).or_default();
            // The id is sent once; names and arguments are concatenated like every other string
            // delta, which is how the reference SDKs accumulate them.
            if let Some(id) = delta.id.filter(|id| !id.is_empty()) {
                if slot.id.is_empty() {
                    slot.id = id;
                }
            }
            if let Some(function) = delta.function {
                if let Some(name) = function.name {
                    slot.name.push_str(&name);
                }
                if let Some(arguments) = function.arguments {
                    slot.arguments.push_str(&arguments);
                }
            }
        }
        if let Some(reason) = choice.finish_reason {
            self.finish_reason = Some(reason);
        }
        Ok(())
    }

    pub fn finish(self) -> Result<ChatResponse, LlmError> {
        if !self.done {
            return Err(LlmError::malformed("stream ended before [DONE]"));
        }
        let mut tool_calls = Vec::with_capacity(self.tool_calls.len());
        for (index, partial) in self.tool_calls {
            if partial.name.is_empty() {
                return Err(LlmError::malformed(format!(
                    "streamed tool call {index} has no function name"
                )));
            }
            tool_calls.push(ToolCall::from_wire(
                partial.id,
                partial.name,
                partial.arguments,
            ));
        }
        Ok(ChatResponse {
            content: self.content,
            tool_calls,
            finish_reason: FinishReason::from_wire(self.finish_reason.as_deref()),
            usage: self.usage.map(Usage::from).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(pieces: &[&[u8]]) -> Vec<String> {
        let mut decoder = SseDecoder::default();
        let mut events = Vec::new();
        for piece in pieces {
            events.extend(decoder.push(piece).unwrap());
        }
        events.extend(decoder.finish().unwrap());
        events
    }

    #[test]
    fn decodes_events_comments_and_crlf() {
        let text =
            b": keep-alive\r\n\r\ndata: {\"a\":1}\r\n\r\nevent: x\ndata:{\"b\":2}\n\ndata: [DONE]";
        assert_eq!(
            decode_all(&[text]),
            vec!["{\"a\":1}", "{\"b\":2}", "[DONE]"]
        );
    }

    #[test]
    fn joins_multi_line_data() {
        assert_eq!(decode_all(&[b"data: a\ndata: b\n\n"]), vec!["a\nb"]);
    }

    proptest! {
        #[test]
        fn split_points_do_not_change_events(cuts in proptest::collection::vec(0usize..200, 0..8)) {
            let text = "data: {\"x\":\"héllo wörld\"}\n\n: c\n\ndata: {\"y\":\"✓✓✓\"}\r\n\r\ndata: [DONE]\n\n";
            let bytes = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut last = 0;
            for cut in cuts {
                pieces.push(&bytes[last..cut]);
                last = cut;
            }
            pieces.push(&bytes[last..]);
            prop_assert_eq!(
                decode_all(&pieces),
                vec!["{\"x\":\"héllo wörld\"}", "{\"y\":\"✓✓✓\"}", "[DONE]"]
            );
        }
    }

    #[test]
    fn assembles_parallel_tool_calls_by_index() {
        let events = [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"lookup","arguments":""}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"handoff","arguments":"{}"}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"q\":"}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"price\"}"}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#,
            "[DONE]",
        ];
        let mut acc = Accumulator::default();
        let mut texts = Vec::new();
        for event in events {
            acc.apply(event, &mut |t: &str| texts.push(t.to_owned()))
                .unwrap();
        }
        let response = acc.finish().unwrap();
        assert!(texts.is_empty());
        assert_eq!(response.content, None);
        assert_eq!(response.finish_reason, FinishReason::ToolCalls);
        assert_eq!(response.usage.total_tokens, 12);
        assert_eq!(response.tool_calls.len(), 2);
        assert_eq!(response.tool_calls[0].id, "call_a");
        assert_eq!(
            response.tool_calls[0].arguments,
            serde_json::json!({"q": "price"})
        );
        assert_eq!(response.tool_calls[1].name, "handoff");
    }

    #[test]
    fn broken_streamed_arguments_are_kept_as_an_error() {
        let mut acc = Accumulator::default();
        let mut ignore = |_: &str| {};
        acc.apply(
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{\"a\":"}}]}}]}"#,
            &mut ignore,
        )
        .unwrap();
        acc.apply("[DONE]", &mut ignore).unwrap();
        let response = acc.finish().unwrap();
        let err = response.tool_calls[0].args().unwrap_err();
        assert_eq!(err.code(), "invalid_tool_arguments");
    }

    #[test]
    fn missing_done_is_malformed() {
        let mut acc = Accumulator::default();
        acc.apply(
            r#"{"choices":[{"delta":{"content":"hi"}}]}"#,
            &mut |_: &str| {},
        )
        .unwrap();
        assert_eq!(acc.finish().unwrap_err().code(), "malformed_response");
    }

    #[test]
    fn error_inside_stream_is_a_server_error() {
        let mut acc = Accumulator::default();
        let err = acc
            .apply(
                r#"{"error":{"message":"overloaded","type":"server_error"}}"#,
                &mut |_: &str| {},
            )
            .unwrap_err();
        assert_eq!(err.code(), "server_error");
    }
}
