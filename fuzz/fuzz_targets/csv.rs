#![no_main]
//! Fuzz target `csv`: see `wgrad_fuzz::csv`.

#[global_allocator]
static ALLOC: wgrad_fuzz::LimitedAlloc = wgrad_fuzz::LimitedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| wgrad_fuzz::csv(data));
