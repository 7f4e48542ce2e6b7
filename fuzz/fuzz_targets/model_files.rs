#![no_main]
//! Fuzz target `model_files`: see `wgrad_fuzz::model_files`.

#[global_allocator]
static ALLOC: wgrad_fuzz::LimitedAlloc = wgrad_fuzz::LimitedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| wgrad_fuzz::model_files(data));
