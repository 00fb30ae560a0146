//! `cargo fuzz run sql_statement`: see `fuzz/targets.rs`.
#![no_main]

#[allow(dead_code)] // each target uses one of the shared functions
#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::sql_statement(data));
