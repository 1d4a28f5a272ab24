#![no_main]
//! See `annals::sim::fuzz::operations`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| annals::sim::fuzz::operations(data));
