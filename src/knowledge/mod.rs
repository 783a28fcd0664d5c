//! Knowledge bases: documents parsed, chunked, embedded and indexed for retrieval.

pub mod chunk;
pub mod parse;
