#![no_main]
//! See `fuzz_targets::record_decode`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_targets::record_decode(data));
