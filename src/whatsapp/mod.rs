//! WhatsApp Cloud API: webhook ingress and the sender.

pub mod graph;
pub mod outbound;
