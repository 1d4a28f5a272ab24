#![no_main]
//! See `annals::sim::fuzz::open_directory`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| annals::sim::fuzz::open_directory(data));
