// common.wgsl — prepended to every kernel family.
//
// Holds what all kernels share: the per-step uniform (`Step`, the twin of Rust's
// `backend::StepParams`), the activation functions and their derivatives (expressed through
// the activation's output y = f(z), so the backward pass needs no pre-activations), and the
// counter-based random numbers behind dropout (the twin of `src/rng.rs`).

struct Step {
    rows: u32,             // rows of the batch that hold data; the rest is padding
    batch_start: u32,      // first position of the batch in the epoch's order
    step: u32,             // 1-based optimizer step
    seed: u32,             // dropout seed
    training: u32,         // 1 in training (dropout on), 0 in inference
    learning_rate: f32,
    bias_correction1: f32, // Adam's 1 - beta1^t
    bias_correction2: f32, // Adam's 1 - beta2^t
    clip_norm: f32,        // largest global gradient norm; 0 = no clipping
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const ACT_LINEAR: u32 = 0u;
const ACT_RELU: u32 = 1u;
const ACT_LEAKY_RELU: u32 = 2u;
const ACT_SIGMOID: u32 = 3u;
const ACT_TANH: u32 = 4u;
const ACT_SOFTMAX: u32 = 5u;
const LEAKY_RELU_SLOPE: f32 = 0.01;

fn sigmoid(z: f32) -> f32 {
    // Never exponentiates a large positive number.
    if (z >= 0.0) {
        return 1.0 / (1.0 + exp(-z));
    }
    let e = exp(z);
    return e / (1.0 + e);
}

// Element-wise activation; softmax is row-wise and handled by the output kernels.
fn activate(kind: u32, z: f32) -> f32 {
    switch kind {
        case 1u: { return max(z, 0.0); }
        case 2u: { return select(LEAKY_RELU_SLOPE * z, z, z > 0.0); }
        case 3u: { return sigmoid(z); }
        // tanh(±10) is ±1 in f32; clamping keeps exp-based tanh implementations finite.
        case 4u: { return tanh(clamp(z, -10.0, 10.0)); }
        default: { return z; }
    }
}

// f'(z) written through y = f(z).
fn activation_grad(kind: u32, y: f32) -> f32 {
    switch kind {
        case 1u: { return select(0.0, 1.0, y > 0.0); }
        case 2u: { return select(LEAKY_RELU_SLOPE, 1.0, y > 0.0); }
        case 3u: { return y * (1.0 - y); }
        case 4u: { return 1.0 - y * y; }
        default: { return 1.0; }
    }
}

// Whether x is neither NaN nor infinite, from its exponent bits: shader compilers may fold
// comparisons that involve NaN away, an integer test they may not.
fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

fn pcg_hash(x: u32) -> u32 {
    let state = x * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// Inverted dropout's multiplier for one element: 0 (dropped) or 1/(1-rate) (kept).
fn dropout_scale(rate: f32, layer: u32, index: u32) -> f32 {
    if (step.training == 0u || rate <= 0.0) {
        return 1.0;
    }
    let h = pcg_hash(index ^ pcg_hash(layer ^ pcg_hash(step.step ^ pcg_hash(step.seed))));
    let u = f32(h >> 8u) * (1.0 / 16777216.0);
    return select(0.0, 1.0 / (1.0 - rate), u >= rate);
}

// The tiled layout of a weight gradient on software adapters (src/gpu/dense.rs,
// `tiles_gradient`; Rust twin `kernels::tiled_index`): an [m, n] matrix stored by blocks of 8
// rows, in the block's place as in row-major order, each block as its 32-column tiles one
// after another, each tile row-major (the last tile of a block n % 32 columns wide, the last
// block m % 8 rows high). The subgroup matmul then writes each of its 8×32 tiles of C as one
// run of memory, which llvmpipe stores markedly faster than 8 rows of 128 bytes.
fn tiled_index(row: u32, col: u32, m: u32, n: u32) -> u32 {
    let block = row / 8u;
    let height = min(8u, m - 8u * block);
    let tile = col / 32u;
    let width = min(32u, n - 32u * tile);
    return 8u * block * n + height * 32u * tile + (row % 8u) * width + col % 32u;
}

// Texture copies (src/gpu/texture.rs): elements 4i..4i+3 of a flat vector in texel i, at
// these coordinates of an rgba32float texture TEXTURE_WIDTH texels wide.
const TEXTURE_WIDTH: u32 = 256u;

fn texel(i: u32) -> vec2<u32> {
    return vec2<u32>(i % TEXTURE_WIDTH, i / TEXTURE_WIDTH);
}
