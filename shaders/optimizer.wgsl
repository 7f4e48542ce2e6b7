// optimizer.wgsl — one optimizer step on every parameter tensor at once, in place, over the
// flat parameter vector [W0, b0, W1, b1, …] (one dispatch per step).
//
// g = s·grad + l1·sign(w) + 2·l2·w, where s is the gradient scale (hyper.grad_scale, or the
// clipping factor) and the penalties apply only where `regions` says the tensor is
// regularized (weights, not biases). Then by OPTIMIZER:
//   0 SGD:       w -= lr·g
//   1 momentum:  v = μ·v + g;  w -= lr·v
//   2 Nesterov:  v = μ·v + g;  w -= lr·(g + μ·v)
//   3 RMSprop:   s = ρ·s + (1-ρ)·g²;  w -= lr·g / (√s + ε)
//   4 Adam:      m = β1·m + (1-β1)·g;  v = β2·v + (1-β2)·g²;
//                w -= lr·(m / (1-β1ᵗ)) / (√(v / (1-β2ᵗ)) + ε)
// The Rust twin is `cpu::ops::optimizer_update`. state1 holds v, s or m; state2 Adam's v.
// regions holds, per tensor in order, (start, end, regularized, tiled columns); every tensor
// starts at a multiple of 64 (as ParamLayout aligns them), so each block of 64 lies in
// one tensor and its padding: the first tensor whose end is past the block's first
// element. It is a uniform read at workgroup-uniform indices (lavapipe reads those once, not
// per invocation). Alignment padding between tensors holds zeros and stays zero. A tensor
// with tiled columns n > 0 is an [(end - start) / n, n] weight whose gradient is stored in
// common.wgsl's tiled layout (n a multiple of 8, so a Packed never straddles its rows): its
// gradient is read from there, the parameters and state stay row-major.
//
// The gradient scale: with CLIPPED, every workgroup combines `clip` = the (scale, ssq)
// partials of reduce.wgsl's sum_squares (fixed-order trees, so all workgroups agree) into
// ‖g‖ = M·√(Σ ssqᵢ·(scaleᵢ/M)²), M = max scaleᵢ (as bit patterns: NaN > ∞ > finite), or
// ‖g‖ = M where M is not finite, and takes s = min(1, step.clip_norm / (‖g‖ + 1e-6));
// otherwise s = hyper.grad_scale.
//
// Non-finite parameters: an update that leaves a parameter or its state NaN or infinite (Adam's
// v can overflow while the weights it scales stay finite) stores its step in divergence[0]
// unless an earlier step is there (0: none yet); the host reads it with the
// metrics once per epoch, so the run stops naming the step, and no NaN reaches a checkpoint.
//
// Packing: the vectors are arrays of `Packed`, HALVES vec4s of elements each, with
// `unpack(p, half)` and `pack(lo, hi)` (prepended by the host: kernels.rs `packing_wgsl`):
// vec4<f32> (HALVES 1), or where the kernels use 64-bit words vec4<u64>, eight elements
// (HALVES 2). llvmpipe loops over the lanes and the components of every buffer access, so
// four 64-bit components move twice the elements for the same loop.
//
// Entry points:
//   main         the update, 4·HALVES consecutive elements per invocation; the vectors'
//                lengths are multiples of 4·HALVES. Dispatch: workgroups of GROUP
//                invocations (64 elements), each updating ROUNDS blocks of 64 elements in turn
//                (fewer, longer workgroups: about 10% faster on llvmpipe), spread over (x, y)
//                when the vector needs more than 65535 workgroups.
//   clip_factor  params[0] = s, from the same function (the parity tests' view of it).
//                Dispatch: (1, 1, 1).

override OPTIMIZER: u32 = 0u;
override CLIPPED: bool = false;

struct Hyper {
    len: u32,
    l1: f32,
    l2: f32,
    h1: f32,  // μ, ρ or β1
    h2: f32,  // β2
    eps: f32,
    grad_scale: f32,
    tensors: u32,  // entries of regions
}

// Up to MAX_TENSORS tensors: (start, end, regularized, tiled columns) per vec4.
const MAX_TENSORS: u32 = 512u;
struct Regions {
    tensors: array<vec4<u32>, MAX_TENSORS>,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> hyper: Hyper;
@group(0) @binding(2) var<storage, read> grads: array<Packed>;
@group(0) @binding(3) var<storage, read_write> params: array<Packed>;
@group(0) @binding(4) var<storage, read_write> state1: array<Packed>;
@group(0) @binding(5) var<storage, read_write> state2: array<Packed>;
@group(0) @binding(6) var<storage, read> clip: array<vec2<f32>>;
@group(0) @binding(7) var<uniform> regions: Regions;
@group(0) @binding(8) var<storage, read_write> divergence: array<atomic<u32>>;

// Invocations per workgroup, and the elements they update in a round (4·HALVES each); each
// workgroup makes ROUNDS rounds over consecutive blocks of ELEMENTS (set by the host).
const GROUP: u32 = 16u / HALVES;
const ELEMENTS: u32 = 64u;
override ROUNDS: u32 = 1u;
// The width of workgroup_reduce.wgsl's reductions.
const REDUCE_THREADS: u32 = GROUP;

fn gradient_scale(thread: u32) -> f32 {
    if (!CLIPPED) {
        return hyper.grad_scale;
    }
    // The scales are non-negative: their bits order as they do.
    var largest = 0u;
    for (var i = thread; i < arrayLength(&clip); i += GROUP) {
        largest = max(largest, bitcast<u32>(clip[i].x));
    }
    let scale = bitcast<f32>(workgroup_max(thread, largest));
    var sum = 0.0;
    for (var i = thread; i < arrayLength(&clip); i += GROUP) {
        let part = clip[i];
        // A zero part adds nothing, and M may be zero (or a subnormal the device flushes:
        // then so is every scale). A non-finite M makes the sum unused.
        if (part.x > 0.0) {
            let r = part.x / scale;
            sum += part.y * r * r;
        }
    }
    let total = workgroup_sum(thread, sum);
    let norm = select(scale, scale * sqrt(total), is_finite(scale));
    return min(1.0, step.clip_norm / (norm + 1e-6));
}

// The region of the tensor holding element `first` (a block's first); past the last
// tensor, an untiled, unregularized one.
fn region_of(first: u32) -> vec4<u32> {
    for (var t = 0u; t < hyper.tensors; t++) {
        let region = regions.tensors[t];
        if (first < region.y) {
            return region;
        }
    }
    return vec4<u32>(0u);
}

// (x / d, x % d) for the tensor sizes here (quotients far below 2^23): a float quotient
// corrected to the exact one: llvmpipe has no vector integer division (it divides lane by
// lane), while a float division is one vector instruction.
fn div_mod(x: u32, d: u32) -> vec2<u32> {
    var q = u32(f32(x) / f32(d));
    if (q * d > x) {
        q -= 1u;
    }
    if ((q + 1u) * d <= x) {
        q += 1u;
    }
    return vec2<u32>(q, x - q * d);
}

// Where the gradient of packed element i (in tensor `region`) lies: at i, or where the
// tensor's gradient is tiled, at its first element's place in the tiled layout.
fn grad_at(i: u32, region: vec4<u32>) -> u32 {
    let first = 4u * HALVES * i;
    let columns = region.w;
    if (columns == 0u || first >= region.y) {
        return i;
    }
    let at = div_mod(first - region.x, columns);
    let rows = div_mod(region.y - region.x, columns).x;
    return (region.x + tiled_index(at.x, at.y, rows, columns)) / (4u * HALVES);
}

@compute @workgroup_size(GROUP)
fn main(
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) thread: u32,
) {
    let scale = gradient_scale(thread);
    let group = wid.x + wid.y * groups.x;
    for (var r = 0u; r < ROUNDS; r++) {
        let block = group * ROUNDS + r;
        if (block * ELEMENTS >= hyper.len) {
            break;
        }
        update(scale, region_of(block * ELEMENTS), block * GROUP + thread);
    }
}

// Elements 4·HALVES·i onwards (one Packed), in tensor `region`.
fn update(scale: f32, region: vec4<u32>, i: u32) {
    if (4u * HALVES * i >= hyper.len) {
        return;
    }
    let penalized = region.z != 0u;
    let w = params[i];
    let grad = grads[grad_at(i, region)];
    var s1 = Packed();
    var s2 = Packed();
    if (OPTIMIZER != 0u) {
        s1 = state1[i];
    }
    if (OPTIMIZER == 4u) {
        s2 = state2[i];
    }
    let lo = update4(scale, penalized, unpack(w, 0u), unpack(grad, 0u), unpack(s1, 0u), unpack(s2, 0u));
    var hi = lo;
    if (HALVES == 2u) {
        hi = update4(scale, penalized, unpack(w, 1u), unpack(grad, 1u), unpack(s1, 1u), unpack(s2, 1u));
    }
    params[i] = pack(lo.w, hi.w);
    if (OPTIMIZER != 0u) {
        state1[i] = pack(lo.s1, hi.s1);
    }
    if (OPTIMIZER == 4u) {
        state2[i] = pack(lo.s2, hi.s2);
    }
    // `&`, not `&&`: no short circuit, which llvmpipe would run as masked branches.
    var finite = all_finite(lo.w) & all_finite(hi.w);
    if (OPTIMIZER != 0u) {
        finite = finite & all_finite(lo.s1) & all_finite(hi.s1);
    }
    if (OPTIMIZER == 4u) {
        finite = finite & all_finite(lo.s2) & all_finite(hi.s2);
    }
    // Every invocation that finds one in this step stores the same step: a benign race.
    if (!finite && atomicLoad(&divergence[0]) == 0u) {
        atomicStore(&divergence[0], step.step);
    }
}

// Four elements after the update, and the optimizer's state for them.
struct Updated {
    w: vec4<f32>,
    s1: vec4<f32>,
    s2: vec4<f32>,
}

// The update of four elements: parameters w, gradient grad, state s1 and s2 (where the
// optimizer keeps them).
fn update4(scale: f32, penalized: bool, w: vec4<f32>, grad: vec4<f32>, s1: vec4<f32>, s2: vec4<f32>) -> Updated {
    let l1 = select(0.0, hyper.l1, penalized);
    let l2 = select(0.0, hyper.l2, penalized);
    let g = scale * grad + l1 * sign(w) + 2.0 * l2 * w;
    let lr = step.learning_rate;
    var out = Updated(w, s1, s2);
    switch OPTIMIZER {
        case 0u: {
            out.w = w - lr * g;
        }
        case 1u: {
            out.s1 = hyper.h1 * s1 + g;
            out.w = w - lr * out.s1;
        }
        case 2u: {
            out.s1 = hyper.h1 * s1 + g;
            out.w = w - lr * (g + hyper.h1 * out.s1);
        }
        case 3u: {
            out.s1 = hyper.h1 * s1 + (1.0 - hyper.h1) * g * g;
            out.w = w - lr * g / (sqrt(out.s1) + hyper.eps);
        }
        default: {
            out.s1 = hyper.h1 * s1 + (1.0 - hyper.h1) * g;
            out.s2 = hyper.h2 * s2 + (1.0 - hyper.h2) * g * g;
            // The bias corrections folded into two scalars, as the CPU backend does.
            let step_size = lr / step.bias_correction1;
            let v_scale = 1.0 / step.bias_correction2;
            out.w = w - step_size * out.s1 / (sqrt(out.s2 * v_scale) + hyper.eps);
        }
    }
    return out;
}

// Whether no component has the all-ones exponent of NaN and infinities: one vector test.
fn all_finite(v: vec4<f32>) -> bool {
    let exponents = bitcast<vec4<u32>>(v) & vec4<u32>(0x7f800000u);
    return all(exponents != vec4<u32>(0x7f800000u));
}

@compute @workgroup_size(GROUP)
fn clip_factor(@builtin(local_invocation_index) thread: u32) {
    let scale = gradient_scale(thread);
    if (thread == 0u) {
        params[0] = pack(vec4<f32>(scale, 0.0, 0.0, 0.0), vec4<f32>(0.0));
    }
}
