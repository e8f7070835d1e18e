//! One module per command (or family of commands).

pub mod batch;
pub mod batches;
pub mod dashboard;
pub mod dead;
pub mod events;
pub mod inspect;
pub mod jobs;
pub mod protocol;
pub mod queue;
pub mod schedule;
pub mod stats;
pub mod submit;
pub mod thumbnail;
pub mod track;
