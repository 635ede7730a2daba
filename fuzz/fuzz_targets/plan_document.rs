//! Fuzz target `plan_document`: the stored plan document decoder (phoenix_daemon::fuzz::plan_document).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| phoenix_daemon::fuzz::plan_document(data));
