//! wacrm: a WhatsApp customer-service appliance in one binary.
//!
//! Layout follows `DESIGN.md`: one module per service (`tenants`, `conversations`, `assistant`,
//! `whatsapp`; `knowledge`, `billing` and `analytics` arrive with their issues) plus the platform
//! they share (`storage`, `events`, `web`, `config`). `testkit` holds the local stand-ins for
//! remote APIs (Graph API, OpenAI-compatible LLM) used by tests, benchmarks and the demo.

pub mod app;
pub mod assistant;
pub mod bench;
pub mod billing;
pub mod cli;
pub mod config;
pub mod conversations;
pub mod events;
pub mod knowledge;
pub mod ops;
pub mod people;
pub mod storage;
pub mod tenants;
pub mod testkit;
pub mod web;
pub mod whatsapp;
