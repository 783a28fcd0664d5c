//! Local servers that speak the documented wire protocols of the remote APIs we call.

pub mod fake_graph;
