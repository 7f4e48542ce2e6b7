#![no_main]
//! Fuzz target `safetensors`: see `wgrad_fuzz::safetensors`.

#[global_allocator]
static ALLOC: wgrad_fuzz::LimitedAlloc = wgrad_fuzz::LimitedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| wgrad_fuzz::safetensors(data));
