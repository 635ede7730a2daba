//! Fuzz target `config`: the daemon config parser (phoenix_core::fuzz::config).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| phoenix_core::fuzz::config(data));
