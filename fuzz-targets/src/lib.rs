//! # fuzz-targets
//!
//! The body of every fuzz target, one `pub fn(&[u8])` per decoder that takes
//! bytes from the network or from storage. The cargo-fuzz crate in `fuzz/`
//! (outside the workspace: it needs libFuzzer) calls these functions, and
//! this crate's `tests/corpus.rs` replays every file of `fuzz/corpus/<target>/`
//! through the same function on every CI run, so a crasher found once stays a
//! regression input for good.
//!
//! A body never panics on any input: it decodes, validates and (where a key
//! is fixed) verifies, and drops the result. Fixed keys and sessions live in
//! [`fixed`], so the seeds written by `tests/corpus.rs` (real encodings) reach
//! past the first check.
#![forbid(unsafe_code)]

pub mod fixed;
pub mod network;
mod rest;
mod storage;

pub use network::{
    descriptor_json, envelope_frame, protocol_message, report_json, router_hello, router_messages,
};
pub use rest::{internal_json, rest_json};
pub use storage::{record_decode, sealed_record};

/// A fuzz target: its name (the `fuzz/fuzz_targets/<name>.rs` binary and the
/// `fuzz/corpus/<name>/` directory) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: &[Target] = &[
    ("envelope_frame", envelope_frame),
    ("protocol_message", protocol_message),
    ("descriptor_json", descriptor_json),
    ("router_hello", router_hello),
    ("router_messages", router_messages),
    ("report_json", report_json),
    ("rest_json", rest_json),
    ("internal_json", internal_json),
    ("sealed_record", sealed_record),
    ("record_decode", record_decode),
];

/// The target of this name.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Splits a selector byte off the input (targets that cover several types
/// choose one with it).
fn select(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(s, rest)| (*s, rest))
}
