#![no_main]
//! See `fuzz_targets::protocol_message`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_targets::protocol_message(data));
