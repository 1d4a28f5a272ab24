#![no_main]
//! See `annals::sim::fuzz::round_trip`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| annals::sim::fuzz::round_trip(data));
