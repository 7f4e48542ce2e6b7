//! The counter-based random generator behind dropout. A mask element is a pure function of
//! (seed, step, layer, index), so the GPU regenerates the forward pass's mask in the backward
//! pass instead of storing it, and the CPU computes bit-identical masks. The WGSL twin is
//! `dropout_uniform` in `shaders/common.wgsl`.

/// PCG-style 32-bit hash (one LCG step, then an output permutation).
pub fn pcg_hash(x: u32) -> u32 {
    let state = x.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// A uniform number in [0, 1) with 24 random bits.
pub fn dropout_uniform(seed: u32, step: u32, layer: u32, index: u32) -> f32 {
    let h = pcg_hash(index ^ pcg_hash(layer ^ pcg_hash(step ^ pcg_hash(seed))));
    (h >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Inverted dropout's multiplier for one element: 0 (dropped) or 1/(1-rate) (kept).
pub fn dropout_scale(rate: f32, seed: u32, step: u32, layer: u32, index: u32) -> f32 {
    if rate <= 0.0 {
        1.0
    } else if dropout_uniform(seed, step, layer, index) >= rate {
        1.0 / (1.0 - rate)
    } else {
        0.0
    }
}
