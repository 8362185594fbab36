//! Fuzz target: see `referee_protocol::fuzz_checks::signal_file`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| referee_protocol::fuzz_checks::signal_file(data));
