//! Fuzz target `spec`: the desired-state parser and validator (phoenix_core::fuzz::spec).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| phoenix_core::fuzz::spec(data));
