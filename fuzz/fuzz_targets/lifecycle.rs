#![no_main]
//! See `annals::sim::fuzz::lifecycle`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| annals::sim::fuzz::lifecycle(data));
