//! A worker with a task of its own: `word_count` counts the words of a text.
//!
//! ```text
//! cargo run -p custom-task -- --queue default
//! jobfleet submit word_count '{"text": "to be or not to be"}' --wait --json
//! ```
//!
//! It takes every `jobfleet-worker` flag, and runs the built-in tasks too.

use std::collections::BTreeMap;

use jobfleet_worker::{Registry, TaskError};
use serde::{Deserialize, Serialize};

/// The payload: a payload that does not fit this shape ends the job dead
/// with a clear error, without running the handler.
#[derive(Deserialize)]
struct Text {
    text: String,
}

#[derive(Serialize)]
struct Counts {
    words: usize,
    by_word: BTreeMap<String, usize>,
}

fn main() {
    let mut registry = Registry::with_builtins();
    // CPU-bound work goes on the blocking pool, so heartbeats keep ticking.
    registry.register_blocking("word_count", |_ctx, p: Text| {
        if p.text.trim().is_empty() {
            // Permanent: retrying the same empty text cannot help.
            return Err(TaskError::permanent("text is empty"));
        }
        let mut by_word = BTreeMap::new();
        for word in p.text.split_whitespace() {
            *by_word.entry(word.to_lowercase()).or_insert(0) += 1;
        }
        Ok(Counts {
            words: by_word.values().sum(),
            by_word,
        })
    });
    jobfleet_worker::cli::main(registry)
}
