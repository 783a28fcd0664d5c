//! `wacrm bench quota`.
