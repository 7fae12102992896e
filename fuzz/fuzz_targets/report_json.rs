#![no_main]
//! See `fuzz_targets::report_json`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_targets::report_json(data));
