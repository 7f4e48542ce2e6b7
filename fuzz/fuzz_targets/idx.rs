#![no_main]
//! Fuzz target `idx`: see `wgrad_fuzz::idx`.

#[global_allocator]
static ALLOC: wgrad_fuzz::LimitedAlloc = wgrad_fuzz::LimitedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| wgrad_fuzz::idx(data));
