#![no_main]
//! See `fuzz_targets::router_messages`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_targets::router_messages(data));
