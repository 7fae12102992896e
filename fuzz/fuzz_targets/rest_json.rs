#![no_main]
//! See `fuzz_targets::rest_json`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_targets::rest_json(data));
