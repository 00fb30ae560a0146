//! `cargo fuzz run runtime_config`: see `fuzz/targets.rs`.
#![no_main]

#[allow(dead_code)] // each target uses one of the shared functions
#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::runtime_config(data));
