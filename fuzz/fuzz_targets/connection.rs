//! The sans-IO `Connection` after a scripted handshake, with a consumer and
//! publishes pending, fed arbitrary server bytes. See
//! `puka_fuzz::check_connection`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    puka_fuzz::check_connection(data);
});
