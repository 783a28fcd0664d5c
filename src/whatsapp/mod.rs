//! WhatsApp Cloud API: webhook ingress and the sender.

pub mod graph;
pub mod ingress;
pub mod outbound;
pub mod payload;
pub mod routes;
pub mod sender;
