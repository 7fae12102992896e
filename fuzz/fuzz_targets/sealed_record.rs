#![no_main]
//! See `fuzz_targets::sealed_record`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_targets::sealed_record(data));
