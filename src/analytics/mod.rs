//! Analytics: per tenant and outlet, conversations and messages per day, the share resolved by
//! the assistant vs handed off (with reasons), first-response and resolution times (assistant
//! and human), busiest hours and the questions the knowledge base could not answer.
//!
//! The consumer keeps the aggregates up to date from the events (`whatsapp.incoming.messages`,
//! `whatsapp.outgoing.messages`, `conversation.updated`, `conversation.completed`); a report sums
//! day rows and never scans messages. Each event is folded in with its ack in one commit, and
//! only while still queued, so redelivery never counts twice.

pub mod consumer;
pub mod csv;
pub mod forget;
pub mod model;
pub mod report;
pub mod routes;
pub mod svg;

pub use consumer::handler;
pub use forget::AnalyticsForgets;
pub use report::{report, report_off_runtime, Period, Report, Scope};

use crate::storage::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AnalyticsError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        AnalyticsError::Invalid {
            field,
            reason: reason.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AnalyticsError::Invalid { .. } => "invalid_input",
            AnalyticsError::NotFound(_) => "not_found",
            AnalyticsError::Store(e) => e.code(),
        }
    }
}

#[cfg(test)]
mod tests;
