//! The request checks the real API makes, with its messages, so code that would be rejected in
//! production is rejected by the fake too.

use std::collections::BTreeSet;

use serde_json::Value;

#[derive(Debug)]
pub(super) struct Invalid {
    pub message: String,
    pub param: Option<String>,
}

fn invalid(message: impl Into<String>, param: impl Into<String>) -> Invalid {
    Invalid {
        message: message.into(),
        param: Some(param.into()),
    }
}

pub(super) fn request(body: &Value) -> Result<(), Invalid> {
    let Some(body) = body.as_object() else {
        return Err(Invalid {
            message: "We could not parse the JSON body of your request.".into(),
            param: None,
        });
    };
    if !body.get("model").is_some_and(Value::is_string) {
        return Err(invalid("you must provide a model parameter", "model"));
    }
    let tool_names = tools(body.get("tools"))?;
    tool_choice(body.get("tool_choice"), &tool_names)?;
    messages(body.get("messages"))?;
    if let Some(t) = body.get("temperature").filter(|t| !t.is_null()) {
        match t.as_f64() {
            Some(t) if (0.0..=2.0).contains(&t) => {}
            _ => {
                return Err(invalid(
                    format!("Invalid 'temperature': {t} is not a number between 0 and 2."),
                    "temperature",
                ))
            }
        }
    }
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(invalid(
                "Invalid type for 'stream': expected a boolean.",
                "stream",
            ))
        }
    };
    if body.get("stream_options").is_some_and(|o| !o.is_null()) && !stream {
        return Err(invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        ));
    }
    Ok(())
}

fn tools(tools: Option<&Value>) -> Result<BTreeSet<String>, Invalid> {
    let mut names = BTreeSet::new();
    let Some(tools) = tools.filter(|t| !t.is_null()) else {
        return Ok(names);
    };
    let Some(tools) = tools.as_array() else {
        return Err(invalid(
            "Invalid type for 'tools': expected an array.",
            "tools",
        ));
    };
    for (i, tool) in tools.iter().enumerate() {
        if tool["type"] != "function" {
            return Err(invalid(
                format!("Invalid value for 'tools[{i}].type': expected 'function'."),
                format!("tools[{i}].type"),
            ));
        }
        let name = tool["function"]["name"].as_str().unwrap_or_default();
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(invalid(
                format!("Invalid 'tools[{i}].function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."),
                format!("tools[{i}].function.name"),
            ));
        }
        let parameters = &tool["function"]["parameters"];
        if !(parameters.is_null() || parameters.is_object()) {
            return Err(invalid(
                format!("Invalid type for 'tools[{i}].function.parameters': expected an object."),
                format!("tools[{i}].function.parameters"),
            ));
        }
        names.insert(name.to_owned());
    }
    Ok(names)
}

fn tool_choice(choice: Option<&Value>, tools: &BTreeSet<String>) -> Result<(), Invalid> {
    let Some(choice) = choice.filter(|c| !c.is_null()) else {
        return Ok(());
    };
    if tools.is_empty() {
        return Err(invalid(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
            "tool_choice",
        ));
    }
    match choice {
        Value::String(s) if ["none", "auto", "required"].contains(&s.as_str()) => Ok(()),
        Value::Object(_) if choice["type"] == "function" => {
            let name = choice["function"]["name"].as_str().unwrap_or_default();
            if tools.contains(name) {
                Ok(())
            } else {
                Err(invalid(
                    format!("Invalid value for 'tool_choice': function '{name}' is not among the tools."),
                    "tool_choice",
                ))
            }
        }
        _ => Err(invalid(
            "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or a function.",
            "tool_choice",
        )),
    }
}

fn messages(messages: Option<&Value>) -> Result<(), Invalid> {
    let Some(messages) = messages.and_then(Value::as_array) else {
        return Err(invalid(
            "Missing required parameter: 'messages'.",
            "messages",
        ));
    };
    if messages.is_empty() {
        return Err(invalid("[] is too short - 'messages'", "messages"));
    }
    // ids of the latest assistant tool calls still waiting for their `tool` answers
    let mut awaiting: BTreeSet<String> = BTreeSet::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or_default();
        if role != "tool" && !awaiting.is_empty() {
            return Err(unanswered(&awaiting));
        }
        let content = &m["content"];
        let content_ok = content.is_string() || content.is_array();
        match role {
            "system" | "developer" | "user" => {
                if !content_ok {
                    return Err(invalid(
                        format!("Invalid type for 'messages[{i}].content': expected one of a string or array of objects."),
                        format!("messages[{i}].content"),
                    ));
                }
            }
            "assistant" => {
                let calls = match &m["tool_calls"] {
                    Value::Null => &[][..],
                    Value::Array(calls) => calls.as_slice(),
                    _ => {
                        return Err(invalid(
                            format!("Invalid type for 'messages[{i}].tool_calls': expected an array."),
                            format!("messages[{i}].tool_calls"),
                        ))
                    }
                };
                if !content_ok && !content.is_null() {
                    return Err(invalid(
                        format!("Invalid type for 'messages[{i}].content': expected one of a string or array of objects."),
                        format!("messages[{i}].content"),
                    ));
                }
                if content.is_null() && calls.is_empty() {
                    return Err(invalid(
                        format!("Invalid value for 'messages[{i}].content': expected a string, got null."),
                        format!("messages[{i}].content"),
                    ));
                }
                for (j, call) in calls.iter().enumerate() {
                    let param = format!("messages[{i}].tool_calls[{j}]");
                    let well_formed = call["id"].is_string()
                        && call["type"] == "function"
                        && call["function"]["name"].is_string()
                        && call["function"]["arguments"].is_string();
                    if !well_formed {
                        return Err(invalid(
                            format!("Invalid '{param}': expected {{id, type: 'function', function: {{name, arguments: string}}}}."),
                            param,
                        ));
                    }
                    awaiting.insert(call["id"].as_str().unwrap_or_default().to_owned());
                }
            }
            "tool" => {
                let id = m["tool_call_id"].as_str();
                let Some(id) = id else {
                    return Err(invalid(
                        format!("Missing required parameter: 'messages[{i}].tool_call_id'."),
                        format!("messages[{i}].tool_call_id"),
                    ));
                };
                if !awaiting.remove(id) {
                    return Err(invalid(
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
                        format!("messages.[{i}].role"),
                    ));
                }
                if !content_ok {
                    return Err(invalid(
                        format!("Invalid type for 'messages[{i}].content': expected one of a string or array of objects."),
                        format!("messages[{i}].content"),
                    ));
                }
            }
            other => {
                return Err(invalid(
                    format!("Invalid value: '{other}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."),
                    format!("messages[{i}].role"),
                ))
            }
        }
    }
    if !awaiting.is_empty() {
        return Err(unanswered(&awaiting));
    }
    Ok(())
}

fn unanswered(ids: &BTreeSet<String>) -> Invalid {
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    invalid(
        format!("An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}", ids.join(", ")),
        "messages",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base(messages: Value) -> Value {
        json!({"model": "gpt-4o-mini", "messages": messages})
    }

    #[test]
    fn accepts_a_tool_round_trip() {
        let body = base(json!([
            {"role": "system", "content": "s"},
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "r"},
        ]));
        request(&body).unwrap();
    }

    #[test]
    fn rejects_what_the_api_rejects() {
        let cases = [
            json!({"messages": [{"role": "user", "content": "x"}]}),
            base(json!([])),
            base(json!([{"role": "robot", "content": "x"}])),
            base(json!([{"role": "user", "content": null}])),
            base(json!([{"role": "tool", "tool_call_id": "c1", "content": "r"}])),
            base(json!([
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {}}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "r"}])),
            base(json!([
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "user", "content": "x"}])),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                   "stream_options": {"include_usage": true}}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                   "tools": [{"type": "function", "function": {"name": "bad name"}}]}),
        ];
        for case in cases {
            assert!(request(&case).is_err(), "accepted {case}");
        }
    }
}
