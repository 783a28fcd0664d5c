//! Retrieval, prompt, generation, tools and guardrails: the bot turn.

pub mod llm;
