//! Reports over a period: sums of the stored day rows (never a scan of the messages).

use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Serialize;

use super::model::*;
use super::AnalyticsError;
use crate::conversations::HandoffReason;
use crate::storage::{OutletId, Store, TenantId};

/// The longest period one report covers.
pub const MAX_DAYS: i32 = 366;
pub const DEFAULT_DAYS: i32 = 30;
pub const MAX_TOP: usize = 100;

/// Local days `from..=to` in the tenant's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: Date,
    pub to: Date,
}

impl Period {
    pub fn new(from: Date, to: Date) -> Result<Self, AnalyticsError> {
        if from > to {
            return Err(AnalyticsError::invalid("from", "must not be after to"));
        }
        if days_between(from, to) >= MAX_DAYS {
            return Err(AnalyticsError::invalid(
                "to",
                format!("a period covers at most {MAX_DAYS} days"),
            ));
        }
        Ok(Self { from, to })
    }

    /// The `days` local days ending today in `tz`.
    pub fn last_days(days: i32, tz: &TimeZone) -> Self {
        let today = jiff::Timestamp::now().to_zoned(tz.clone()).date();
        let from = today
            .checked_sub(jiff::Span::new().days(i64::from(days.max(1) - 1)))
            .unwrap_or(today);
        Self { from, to: today }
    }

    pub fn dates(&self) -> Vec<Date> {
        let mut out = Vec::new();
        let mut d = self.from;
        while d <= self.to {
            out.push(d);
            match d.tomorrow() {
                Ok(next) => d = next,
                Err(_) => break,
            }
        }
        out
    }
}

fn days_between(from: Date, to: Date) -> i32 {
    (to - from).get_days()
}

/// Which conversations a report covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The whole tenant.
    All,
    /// One outlet; `None` means conversations of channels without an outlet.
    Outlet(Option<OutletId>),
    /// Several outlets (everything an outlet-limited person works for).
    Outlets(Vec<OutletId>),
}

impl Scope {
    /// This scope narrowed to what someone working for `outlets` may see (empty: every outlet,
    /// unchanged). Their "all" is their own outlets; another outlet, or the channels without an
    /// outlet, are refused (None).
    pub fn limited_to(self, outlets: &[OutletId]) -> Option<Scope> {
        if outlets.is_empty() {
            return Some(self);
        }
        match self {
            Scope::All => Some(Scope::Outlets(outlets.to_vec())),
            Scope::Outlet(Some(o)) if outlets.contains(&o) => Some(Scope::Outlet(Some(o))),
            Scope::Outlets(list) if list.iter().all(|o| outlets.contains(o)) => {
                Some(Scope::Outlets(list))
            }
            _ => None,
        }
    }

    fn admits(&self, key_scope: &[u8]) -> bool {
        match self {
            Scope::All => true,
            Scope::Outlet(o) => key_scope == scope_key(*o).as_slice(),
            Scope::Outlets(list) => list.iter().any(|o| key_scope == o.as_bytes().as_slice()),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Scope::All => "all".into(),
            Scope::Outlet(None) => "none".into(),
            Scope::Outlet(Some(o)) => o.to_string(),
            Scope::Outlets(list) => list
                .iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TimeStat {
    pub count: u64,
    pub avg_ms: Option<u64>,
    pub max_ms: Option<u64>,
}

impl From<Durations> for TimeStat {
    fn from(d: Durations) -> Self {
        Self {
            count: d.count,
            avg_ms: d.avg_ms(),
            max_ms: (d.count > 0).then_some(d.max_ms),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Totals {
    /// Conversations opened in the period.
    pub conversations: u64,
    /// Of those, handed to a person at least once.
    pub handed_off: u64,
    /// Of those, closed.
    pub closed: u64,
    /// Closed without a person stepping in (no handoff, no agent reply).
    pub resolved_by_assistant: u64,
    /// Closed after a handoff or an agent's reply.
    pub resolved_by_human: u64,
    /// resolved_by_assistant / closed (None with nothing closed).
    pub assistant_resolution_share: Option<f64>,
    /// handed_off / conversations (None with no conversations).
    pub handoff_share: Option<f64>,
    pub customer_messages: u64,
    pub assistant_messages: u64,
    pub agent_messages: u64,
    pub first_response_assistant: TimeStat,
    pub first_response_human: TimeStat,
    pub resolution_assistant: TimeStat,
    pub resolution_human: TimeStat,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DayRow {
    pub date: String,
    pub conversations: u64,
    pub handed_off: u64,
    pub resolved_by_assistant: u64,
    pub resolved_by_human: u64,
    pub customer_messages: u64,
    pub assistant_messages: u64,
    pub agent_messages: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReasonRow {
    pub reason: String,
    pub label: String,
    pub conversations: u64,
    /// Share of the handed-off conversations.
    pub share: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UnansweredRow {
    pub question: String,
    pub count: u64,
    pub last_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub tenant: TenantId,
    pub time_zone: String,
    pub from: String,
    pub to: String,
    /// "all", "none" (channels without an outlet) or an outlet id.
    pub outlet: String,
    pub totals: Totals,
    /// Every day of the period, oldest first (days without activity too).
    pub days: Vec<DayRow>,
    /// Customer messages by local hour of day, 0-23.
    pub hours: [u64; 24],
    /// Every reason with at least one conversation, most frequent first.
    pub handoff_reasons: Vec<ReasonRow>,
    /// Most frequent first.
    pub unanswered: Vec<UnansweredRow>,
}

fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// [`report`] on a blocking thread, for request handlers: a year is hundreds of prefix reads,
/// and on a small machine the runtime has a single worker, which also answers webhooks.
pub async fn report_off_runtime(
    store: &Store,
    tenant: TenantId,
    time_zone: &str,
    period: Period,
    scope: Scope,
    top: usize,
) -> Result<Report, AnalyticsError> {
    let (store, time_zone) = (store.clone(), time_zone.to_string());
    tokio::task::spawn_blocking(move || report(&store, tenant, &time_zone, period, scope, top))
        .await
        .map_err(|e| crate::storage::StoreError::Io(format!("analytics report task: {e}")))?
}

/// Sums the period's day rows of `scope`. Cost: one prefix read per day, whatever the traffic.
pub fn report(
    store: &Store,
    tenant: TenantId,
    time_zone: &str,
    period: Period,
    scope: Scope,
    top: usize,
) -> Result<Report, AnalyticsError> {
    let dates = period.dates();
    let (per_day, unanswered) = store.read(|r| {
        let t = r.tenant(tenant);
        let mut per_day = Vec::with_capacity(dates.len());
        let mut unanswered: BTreeMap<Vec<u8>, Unanswered> = BTreeMap::new();
        for date in &dates {
            let day = date.to_string();
            let mut sum = DayStats::default();
            for (key, stats) in t.scan(&DAYS, day.as_bytes(), false, usize::MAX)? {
                if scope.admits(key.get(10..26).unwrap_or_default()) {
                    sum.merge(&stats);
                }
            }
            per_day.push((day.clone(), sum));
            for (key, row) in t.scan(&UNANSWERED, day.as_bytes(), false, usize::MAX)? {
                if !scope.admits(key.get(10..26).unwrap_or_default()) {
                    continue;
                }
                let fingerprint = key.get(26..).unwrap_or_default().to_vec();
                match unanswered.get_mut(&fingerprint) {
                    Some(seen) => {
                        seen.count += row.count;
                        if row.last_at_ms > seen.last_at_ms {
                            seen.last_at_ms = row.last_at_ms;
                        }
                    }
                    None => {
                        unanswered.insert(fingerprint, row);
                    }
                }
            }
        }
        Ok((per_day, unanswered))
    })?;

    let mut all = DayStats::default();
    let mut days = Vec::with_capacity(per_day.len());
    for (date, d) in &per_day {
        all.merge(d);
        days.push(DayRow {
            date: date.clone(),
            conversations: d.conversations,
            handed_off: d.handed_off,
            resolved_by_assistant: d.resolved_by_assistant,
            resolved_by_human: d.resolved_by_human,
            customer_messages: d.customer_messages,
            assistant_messages: d.assistant_messages,
            agent_messages: d.agent_messages,
        });
    }
    let mut handoff_reasons: Vec<ReasonRow> = all
        .handoff_reasons
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(code, n)| ReasonRow {
            reason: code.clone(),
            label: HandoffReason::label(code).to_string(),
            conversations: *n,
            share: share(*n, all.handed_off).unwrap_or(0.0),
        })
        .collect();
    handoff_reasons.sort_by(|a, b| {
        b.conversations
            .cmp(&a.conversations)
            .then_with(|| a.reason.cmp(&b.reason))
    });
    let mut unanswered: Vec<UnansweredRow> = unanswered
        .into_values()
        .map(|u| UnansweredRow {
            question: u.text,
            count: u.count,
            last_at_ms: u.last_at_ms,
        })
        .collect();
    unanswered.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| b.last_at_ms.cmp(&a.last_at_ms))
            .then_with(|| a.question.cmp(&b.question))
    });
    unanswered.truncate(top.min(MAX_TOP));

    Ok(Report {
        tenant,
        time_zone: time_zone.to_string(),
        from: period.from.to_string(),
        to: period.to.to_string(),
        outlet: scope.label(),
        totals: Totals {
            conversations: all.conversations,
            handed_off: all.handed_off,
            closed: all.closed,
            resolved_by_assistant: all.resolved_by_assistant,
            resolved_by_human: all.resolved_by_human,
            assistant_resolution_share: share(all.resolved_by_assistant, all.closed),
            handoff_share: share(all.handed_off, all.conversations),
            customer_messages: all.customer_messages,
            assistant_messages: all.assistant_messages,
            agent_messages: all.agent_messages,
            first_response_assistant: all.first_response_assistant.into(),
            first_response_human: all.first_response_human.into(),
            resolution_assistant: all.resolution_assistant.into(),
            resolution_human: all.resolution_human.into(),
        },
        days,
        hours: all.customer_messages_by_hour,
        handoff_reasons,
        unanswered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_bounded_and_ordered() {
        let d = |s: &str| s.parse::<Date>().unwrap();
        assert!(Period::new(d("2024-05-02"), d("2024-05-01")).is_err());
        assert!(Period::new(d("2024-01-01"), d("2025-01-01")).is_err());
        let p = Period::new(d("2024-02-27"), d("2024-03-01")).unwrap();
        let dates: Vec<String> = p.dates().iter().map(|d| d.to_string()).collect();
        assert_eq!(
            dates,
            ["2024-02-27", "2024-02-28", "2024-02-29", "2024-03-01"]
        );
        let last = Period::last_days(30, &TimeZone::UTC);
        assert_eq!(last.dates().len(), 30);
    }
}
