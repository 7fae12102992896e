#![no_main]
//! See `fuzz_targets::descriptor_json`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_targets::descriptor_json(data));
