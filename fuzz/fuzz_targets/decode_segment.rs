#![no_main]
//! See `annals::sim::fuzz::decode_segment`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| annals::sim::fuzz::decode_segment(data));
