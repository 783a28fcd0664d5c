//! CSV exports of every report table (RFC 4180). Customers write the questions, so a cell that a
//! spreadsheet would run as a formula is prefixed with an apostrophe.

use super::report::{Report, TimeStat};

/// The tables a report exports.
pub const TABLES: &[&str] = &[
    "days",
    "hours",
    "handoff_reasons",
    "response_times",
    "unanswered",
];

fn cell(value: &str) -> String {
    let guarded = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

fn rows(header: &[&str], body: Vec<Vec<String>>) -> String {
    let mut out = header.join(",");
    out.push_str("\r\n");
    for row in body {
        out.push_str(&row.iter().map(|v| cell(v)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

fn secs(ms: Option<u64>) -> String {
    ms.map(|ms| format!("{:.1}", ms as f64 / 1000.0))
        .unwrap_or_default()
}

fn ratio(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.4}")).unwrap_or_default()
}

/// One table of `report` as CSV; None for an unknown table name.
pub fn table(report: &Report, name: &str) -> Option<String> {
    Some(match name {
        "days" => rows(
            &[
                "date",
                "conversations",
                "handed_off",
                "resolved_by_assistant",
                "resolved_by_human",
                "customer_messages",
                "assistant_messages",
                "agent_messages",
            ],
            report
                .days
                .iter()
                .map(|d| {
                    vec![
                        d.date.clone(),
                        d.conversations.to_string(),
                        d.handed_off.to_string(),
                        d.resolved_by_assistant.to_string(),
                        d.resolved_by_human.to_string(),
                        d.customer_messages.to_string(),
                        d.assistant_messages.to_string(),
                        d.agent_messages.to_string(),
                    ]
                })
                .collect(),
        ),
        "hours" => rows(
            &["hour", "customer_messages"],
            report
                .hours
                .iter()
                .enumerate()
                .map(|(h, n)| vec![format!("{h:02}"), n.to_string()])
                .collect(),
        ),
        "handoff_reasons" => rows(
            &["reason", "label", "conversations", "share"],
            report
                .handoff_reasons
                .iter()
                .map(|r| {
                    vec![
                        r.reason.clone(),
                        r.label.clone(),
                        r.conversations.to_string(),
                        format!("{:.4}", r.share),
                    ]
                })
                .collect(),
        ),
        "response_times" => {
            let t = &report.totals;
            let line = |name: &str, s: &TimeStat| {
                vec![
                    name.to_string(),
                    s.count.to_string(),
                    secs(s.avg_ms),
                    secs(s.max_ms),
                ]
            };
            let mut out = rows(
                &["metric", "count", "avg_seconds", "max_seconds"],
                vec![
                    line("first_response_assistant", &t.first_response_assistant),
                    line("first_response_human", &t.first_response_human),
                    line("resolution_assistant", &t.resolution_assistant),
                    line("resolution_human", &t.resolution_human),
                ],
            );
            // The shares belong with the times in a spreadsheet summary.
            out.push_str(&format!(
                "assistant_resolution_share,{},{},\r\nhandoff_share,{},{},\r\n",
                t.closed,
                ratio(t.assistant_resolution_share),
                t.conversations,
                ratio(t.handoff_share)
            ));
            out
        }
        "unanswered" => rows(
            &["question", "count", "last_seen"],
            report
                .unanswered
                .iter()
                .map(|u| {
                    vec![
                        u.question.clone(),
                        u.count.to_string(),
                        jiff::Timestamp::from_millisecond(u.last_at_ms)
                            .map(|t| t.to_string())
                            .unwrap_or_default(),
                    ]
                })
                .collect(),
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("-5"), "'-5");
    }
}
