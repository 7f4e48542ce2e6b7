#![no_main]
//! Fuzz target `cli_specs`: see `wgrad_fuzz::cli_specs`.

#[global_allocator]
static ALLOC: wgrad_fuzz::LimitedAlloc = wgrad_fuzz::LimitedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| wgrad_fuzz::cli_specs(data));
