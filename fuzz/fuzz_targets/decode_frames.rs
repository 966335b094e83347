//! Frame, method, content header, properties and field table decoding, with
//! the round-trip property. See `puka_fuzz::check_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    puka_fuzz::check_decode(data);
});
