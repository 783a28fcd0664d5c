//! WhatsApp Cloud API: webhook ingress and the sender.
pub mod payload;
