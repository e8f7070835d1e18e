//! W3C trace context (`traceparent`) carried from a producer to the worker
//! that runs the job: the producer stores it on the job, the worker's span
//! for the job becomes its child, and the job's own context (same trace, the
//! worker's span id) is what the task passes on to jobs it submits.

use std::fmt;

use crate::{Error, Result};

/// One `traceparent`: `00-<trace id>-<span id>-<flags>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace, 16 bytes (not all zero).
    pub trace_id: u128,
    /// The span this context names, 8 bytes (not all zero).
    pub span_id: u64,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceContext {
    /// Reads `traceparent` text (version 00 layout, lower-case hex).
    pub fn parse(text: &str) -> Result<TraceContext> {
        let bad = || Error::InvalidTraceparent(text.to_string());
        let hex =
            |s: &str, n: usize| s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let parts: Vec<&str> = text.split('-').collect();
        let [version, trace, span, flags] = parts[..] else {
            return Err(bad());
        };
        if !(hex(version, 2) && version != "ff" && hex(trace, 32) && hex(span, 16) && hex(flags, 2)) {
            return Err(bad());
        }
        let context = TraceContext {
            trace_id: u128::from_str_radix(trace, 16).map_err(|_| bad())?,
            span_id: u64::from_str_radix(span, 16).map_err(|_| bad())?,
            flags: u8::from_str_radix(flags, 16).map_err(|_| bad())?,
        };
        if context.trace_id == 0 || context.span_id == 0 {
            return Err(bad());
        }
        Ok(context)
    }

    /// A new span in the same trace, whose parent is this one.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            span_id: rand::random::<u64>().max(1),
            ..*self
        }
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writes_and_derives_a_child_in_the_same_trace() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parent = TraceContext::parse(text).unwrap();
        assert_eq!(parent.to_string(), text);
        let child = parent.child();
        assert_eq!((child.trace_id, child.flags), (parent.trace_id, 1));
        assert_ne!(child.span_id, parent.span_id);
    }

    #[test]
    fn refuses_what_is_not_a_traceparent() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(TraceContext::parse(bad).is_err(), "{bad:?}");
        }
    }
}
