// reduce.wgsl — the norm of the gradient, for clipping, as scaled sums of squares (as
// LAPACK's nrm2), which do not overflow or underflow where the squares themselves would.
//
//   sum_squares  out[dims.first_out + w] = (scale, ssq) for workgroup w of G = dims.n, over
//                the elements i ≡ (w·256 + t) mod (G·256) of input [dims.m]:
//                scale = max |input[i]| (compared as bit patterns, so NaN > ∞ > any finite
//                value: a non-finite gradient makes a non-finite scale), and
//                ssq = Σ (input[i] / scale)² where scale is finite and non-zero, else 0.
//                The workgroup's share has norm scale·√ssq; optimizer.wgsl (CLIPPED)
//                combines the partials into the clipping factor. A vector longer than one
//                storage binding is reduced by one dispatch per part, each writing its
//                partials after the previous part's.
//                Dispatch: (G, 1, 1).
// (The bias gradients come with the weight gradients from matmul.wgsl's EPILOGUE 3, and the
// loss metrics from output.wgsl's loss_and_grad.)

struct Dims {
    m: u32,
    n: u32,
    first_out: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
@group(0) @binding(2) var<storage, read> input: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<vec2<f32>>;

const THREADS: u32 = 256u;
// The width of workgroup_reduce.wgsl's reductions.
const REDUCE_THREADS: u32 = THREADS;

@compute @workgroup_size(256)
fn sum_squares(@builtin(local_invocation_index) thread: u32, @builtin(workgroup_id) group: vec3<u32>) {
    let first = group.x * THREADS + thread;
    let stride = dims.n * THREADS;
    // |x| as bits orders as |x| does, non-finite values above the finite ones.
    var largest = 0u;
    for (var i = first; i < dims.m; i += stride) {
        largest = max(largest, bitcast<u32>(input[i]) & 0x7fffffffu);
    }
    let scale = bitcast<f32>(workgroup_max(thread, largest));
    var sum = 0.0;
    if (is_finite(scale) && scale > 0.0) {
        for (var i = first; i < dims.m; i += stride) {
            let r = input[i] / scale;
            sum += r * r;
        }
    }
    let ssq = workgroup_sum(thread, sum);
    if (thread == 0u) {
        out[dims.first_out + group.x] = vec2(scale, ssq);
    }
}
