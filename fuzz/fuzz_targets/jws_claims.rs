#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dcr_server_fuzz::checks::jws_claims(data));
