//! A period's statement, and the proration rule for a period in which the plan changed.
//!
//! The rule:
//! 1. A plan is charged for the time the tenant was on it within the period, proportionally to
//!    elapsed time: `price × (milliseconds on the plan in the period) / (milliseconds in the
//!    period)`. Elapsed time is real time, so a period holding a daylight-saving switch is simply
//!    an hour shorter or longer, and a day of it weighs what it lasted.
//! 2. Each plan's share is rounded half away from zero to the currency's minor unit on its own;
//!    the statement's total is the sum of the rounded lines (so it may differ by one minor unit
//!    per change from an unrounded computation, never more).
//! 3. The price of a span is the price the plan had when the tenant moved onto it. An operator's
//!    later price change applies to tenants who move onto the plan afterwards, or when the
//!    operator re-assigns the plan to a tenant (which starts a new span at the new price).
//! 4. Upgrades and downgrades follow the same rule: nothing is charged or credited at the moment
//!    of the change; the statement shows each plan's share.
//! 5. Overage replies are charged at the overage price in force when each was sent.
//! 6. Limits are not prorated: from the change on, the new plan's limits hold against the whole
//!    period's usage.
//!
//! Example: Growth ($299) for the first 15 days of a 30-day period, then Enterprise ($799) for
//! the last 15: 149.50 + 399.50 = 549.00 USD.

use serde::Serialize;

use super::meter::PeriodUsage;
use super::money::{Money, MoneyError};
use super::period::{Period, PeriodView};
use super::subscription::Subscription;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    Plan,
    Overage,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatementLine {
    pub kind: LineKind,
    pub plan: String,
    pub description: String,
    /// For plan lines: the stretch of the period on that plan (RFC 3339 with the zone's offset).
    pub from: Option<String>,
    pub to: Option<String>,
    /// Plan lines: the share of the period as a decimal with 6 places ("0.500000");
    /// overage lines: the number of replies.
    pub quantity: String,
    pub unit_price: Option<Money>,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Statement {
    pub period: PeriodView,
    pub lines: Vec<StatementLine>,
    pub total: Money,
    pub usage: PeriodUsage,
}

fn share(numerator: i64, denominator: i64) -> String {
    let micro = (i128::from(numerator) * 1_000_000 * 2 + i128::from(denominator))
        / (2 * i128::from(denominator));
    format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000)
}

/// An instant in the period's zone, as RFC 3339 with the offset ("2024-03-16T00:00:00-04:00").
fn local(ms: i64, period: &Period) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => ts
            .to_zoned(period.start.time_zone().clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
        Err(_) => ms.to_string(),
    }
}

/// The statement of `period`: one line per plan the tenant was on during it, then overage.
pub fn statement(
    subscription: &Subscription,
    period: &Period,
    usage: Option<PeriodUsage>,
) -> Result<Statement, MoneyError> {
    let currency = subscription.currency();
    let usage = usage.unwrap_or_else(|| PeriodUsage {
        period: period.number,
        start_ms: period.start_ms(),
        end_ms: period.end_ms(),
        ..PeriodUsage::default()
    });
    let (start, end) = (period.start_ms(), period.end_ms());
    let length = period.duration_ms().max(1);
    let mut lines = Vec::new();
    let mut total = Money::zero(currency);
    for (i, span) in subscription.spans.iter().enumerate() {
        let span_end = subscription
            .spans
            .get(i + 1)
            .map_or(i64::MAX, |next| next.from_ms);
        let from = span.from_ms.max(start);
        let to = span_end.min(end);
        if to <= from {
            continue;
        }
        let amount = span.price.prorate(to - from, length)?;
        total = total.checked_add(amount)?;
        lines.push(StatementLine {
            kind: LineKind::Plan,
            plan: span.plan.clone(),
            description: format!("{} plan", span.plan_name),
            from: Some(local(from, period)),
            to: Some(local(to, period)),
            quantity: share(to - from, length),
            unit_price: Some(span.price),
            amount,
        });
    }
    if usage.overage_replies > 0 {
        let amount = Money::new(usage.overage_charge_minor, currency);
        total = total.checked_add(amount)?;
        let uniform = i64::try_from(usage.overage_replies)
            .ok()
            .filter(|n| usage.overage_charge_minor % n == 0)
            .map(|n| Money::new(usage.overage_charge_minor / n, currency));
        lines.push(StatementLine {
            kind: LineKind::Overage,
            plan: subscription
                .current()
                .map(|s| s.plan.clone())
                .unwrap_or_default(),
            description: "assistant replies past the quota".into(),
            from: None,
            to: None,
            quantity: usage.overage_replies.to_string(),
            unit_price: uniform,
            amount,
        });
    }
    Ok(Statement {
        period: period.view(),
        lines,
        total,
        usage,
    })
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn csv_row(out: &mut String, fields: &[&str]) {
    let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    out.push_str(&row.join(","));
    out.push_str("\r\n");
}

/// The statement as CSV (RFC 4180): the charges, the total, then the usage figures (no amount).
pub fn to_csv(tenant_slug: &str, s: &Statement) -> String {
    let mut out = String::new();
    csv_row(
        &mut out,
        &[
            "tenant",
            "period_start",
            "period_end",
            "item",
            "plan",
            "description",
            "from",
            "to",
            "quantity",
            "unit_price",
            "amount",
            "currency",
        ],
    );
    let currency = s.total.currency.to_string();
    let row = |out: &mut String,
               item: &str,
               plan: &str,
               desc: &str,
               from: &str,
               to: &str,
               qty: &str,
               unit: &str,
               amount: &str| {
        // Usage rows carry no amount, hence no currency.
        let currency = if amount.is_empty() {
            ""
        } else {
            currency.as_str()
        };
        csv_row(
            out,
            &[
                tenant_slug,
                &s.period.start,
                &s.period.end,
                item,
                plan,
                desc,
                from,
                to,
                qty,
                unit,
                amount,
                currency,
            ],
        );
    };
    for line in &s.lines {
        let item = match line.kind {
            LineKind::Plan => "plan",
            LineKind::Overage => "overage",
        };
        row(
            &mut out,
            item,
            &line.plan,
            &line.description,
            line.from.as_deref().unwrap_or(""),
            line.to.as_deref().unwrap_or(""),
            &line.quantity,
            &line.unit_price.map(|p| p.amount()).unwrap_or_default(),
            &line.amount.amount(),
        );
    }
    row(
        &mut out,
        "total",
        "",
        "total",
        "",
        "",
        "",
        "",
        &s.total.amount(),
    );
    let u = &s.usage;
    for (item, desc, qty) in [
        (
            "usage",
            "assistant replies within the quota",
            u.assistant_replies,
        ),
        (
            "usage",
            "assistant replies past the quota",
            u.overage_replies,
        ),
        ("usage", "handoffs for lack of quota", u.quota_handoffs),
        ("usage", "LLM calls", u.llm_calls),
        ("usage", "LLM prompt tokens", u.llm_prompt_tokens),
        ("usage", "LLM completion tokens", u.llm_completion_tokens),
        ("usage", "embedding tokens", u.embedding_tokens),
    ] {
        row(&mut out, item, "", desc, "", "", &qty.to_string(), "", "");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::money::Currency;
    use crate::billing::period::Calendar;
    use crate::billing::subscription::PlanSpan;
    use jiff::civil::date;

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::USD)
    }

    fn ms(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    fn span(from: &str, plan: &str, price: i64) -> PlanSpan {
        PlanSpan {
            from_ms: ms(from),
            plan: plan.into(),
            plan_name: plan.into(),
            price: usd(price),
        }
    }

    fn sub(anchor: jiff::civil::Date, tz: &str, spans: Vec<PlanSpan>) -> Subscription {
        Subscription {
            started_at_ms: spans[0].from_ms,
            anchor,
            time_zone: tz.into(),
            spans,
            overrides: Default::default(),
        }
    }

    #[test]
    fn an_unchanged_period_costs_the_plan_price() {
        let s = sub(
            date(2024, 4, 1),
            "UTC",
            vec![span("2024-04-01T00:00:00Z", "growth", 29_900)],
        );
        let p = Calendar::new(s.anchor, &s.time_zone)
            .unwrap()
            .period(3)
            .unwrap();
        let st = statement(&s, &p, None).unwrap();
        assert_eq!(st.total, usd(29_900));
        assert_eq!(st.lines.len(), 1);
        assert_eq!(st.lines[0].quantity, "1.000000");
    }

    #[test]
    fn an_upgrade_mid_period_is_charged_by_elapsed_time() {
        // April has 30 days: 15 on Growth, 15 on Enterprise.
        let s = sub(
            date(2024, 4, 1),
            "UTC",
            vec![
                span("2024-04-01T00:00:00Z", "growth", 29_900),
                span("2024-04-16T00:00:00Z", "enterprise", 79_900),
            ],
        );
        let p = Calendar::new(s.anchor, &s.time_zone)
            .unwrap()
            .period(0)
            .unwrap();
        let st = statement(&s, &p, None).unwrap();
        let amounts: Vec<i64> = st.lines.iter().map(|l| l.amount.minor).collect();
        assert_eq!(amounts, [14_950, 39_950]);
        assert_eq!(st.total, usd(54_900));
        assert_eq!(st.lines[0].quantity, "0.500000");
        // The next period is all Enterprise.
        let next = Calendar::new(s.anchor, &s.time_zone)
            .unwrap()
            .period(1)
            .unwrap();
        assert_eq!(statement(&s, &next, None).unwrap().total, usd(79_900));
    }

    #[test]
    fn a_downgrade_is_credited_by_the_same_rule_and_each_line_rounds_on_its_own() {
        // One third of a 30-day period on Enterprise, two thirds on Starter.
        let s = sub(
            date(2024, 4, 1),
            "UTC",
            vec![
                span("2024-04-01T00:00:00Z", "enterprise", 79_900),
                span("2024-04-11T00:00:00Z", "starter", 9_900),
            ],
        );
        let p = Calendar::new(s.anchor, &s.time_zone)
            .unwrap()
            .period(0)
            .unwrap();
        let st = statement(&s, &p, None).unwrap();
        // 799 / 3 = 266.333.. -> 266.33; 99 * 2/3 = 66.00
        let amounts: Vec<i64> = st.lines.iter().map(|l| l.amount.minor).collect();
        assert_eq!(amounts, [26_633, 6_600]);
        assert_eq!(st.total, usd(33_233));
    }

    #[test]
    fn in_a_period_with_a_dst_switch_real_time_counts() {
        // New York, March 2024: 31 days minus the hour skipped on the 10th = 743 hours.
        let s = sub(
            date(2024, 3, 1),
            "America/New_York",
            vec![
                span("2024-03-01T05:00:00Z", "starter", 9_900),
                // Local midnight of March 16 (EDT): 15 days minus an hour into the period.
                span("2024-03-16T04:00:00Z", "growth", 29_900),
            ],
        );
        let p = Calendar::new(s.anchor, &s.time_zone)
            .unwrap()
            .period(0)
            .unwrap();
        assert_eq!(p.duration_ms(), 743 * 3_600_000);
        let st = statement(&s, &p, None).unwrap();
        // starter: 99.00 * 359/743 = 47.834.. -> 47.83; growth: 299.00 * 384/743 = 154.530.. -> 154.53
        let amounts: Vec<i64> = st.lines.iter().map(|l| l.amount.minor).collect();
        assert_eq!(amounts, [4_783, 15_453]);
        assert_eq!(st.lines[0].to.as_deref(), Some("2024-03-16T00:00:00-04:00"));
    }

    #[test]
    fn overage_is_its_own_line_and_the_csv_has_it() {
        let s = sub(
            date(2024, 4, 1),
            "UTC",
            vec![span("2024-04-01T00:00:00Z", "growth", 29_900)],
        );
        let p = Calendar::new(s.anchor, &s.time_zone)
            .unwrap()
            .period(0)
            .unwrap();
        let usage = PeriodUsage {
            assistant_replies: 2_000,
            overage_replies: 37,
            overage_charge_minor: 37 * 5,
            ..PeriodUsage::default()
        };
        let st = statement(&s, &p, Some(usage)).unwrap();
        assert_eq!(st.total, usd(29_900 + 185));
        assert_eq!(st.lines[1].unit_price, Some(usd(5)));
        let csv = to_csv("acme, inc", &st);
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].starts_with("tenant,period_start,period_end,item"));
        assert!(lines[1].starts_with("\"acme, inc\",2024-04-01T00:00:00+00:00[UTC]"));
        assert!(
            lines[1].ends_with(",1.000000,299.00,299.00,USD"),
            "{}",
            lines[1]
        );
        assert!(lines[2].contains(",overage,growth,"));
        assert!(lines[2].ends_with(",37,0.05,1.85,USD"), "{}", lines[2]);
        assert!(lines[3].contains(",total,") && lines[3].ends_with(",300.85,USD"));
        assert!(csv.contains(",usage,,assistant replies within the quota,,,2000,,,\r\n"));
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
