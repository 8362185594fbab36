//! Fuzz target: see `referee_protocol::fuzz_checks::control_message`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| referee_protocol::fuzz_checks::control_message(data));
