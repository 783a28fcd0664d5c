//! wacrm: a WhatsApp customer-service appliance in one binary.
//!
//! Layout follows `DESIGN.md`: one module per service (`tenants`, `billing`, `knowledge`,
//! `conversations`, `assistant`, `whatsapp`, `analytics`) plus the platform they share
//! (`storage`, `events`, `web`, `config`). `testkit` holds the local stand-ins for remote
//! APIs (Graph API, OpenAI-compatible LLM) used by tests, benchmarks and the demo.

pub mod assistant;
pub mod testkit;
pub mod whatsapp;
