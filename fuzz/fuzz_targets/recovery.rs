//! The recovery state machine over a sans-IO `Connection`: losses at any
//! point, reconnections with good and bad handshakes, arbitrary server
//! replies during the restore. See `puka_fuzz::check_recovery`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    puka_fuzz::check_recovery(data);
});
