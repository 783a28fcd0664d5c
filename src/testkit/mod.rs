//! Local servers that speak the documented wire protocols of the remote APIs we call, used by the
//! tests, the benchmarks and the demo.

pub mod fake_graph;
pub mod fake_llm;
