#![no_main]
//! See `fuzz_targets::router_hello`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_targets::router_hello(data));
