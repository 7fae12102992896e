#![no_main]
//! See `fuzz_targets::envelope_frame`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_targets::envelope_frame(data));
