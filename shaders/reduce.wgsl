// reduce.wgsl — the squared norm of the gradient, for clipping.
//
//   sum_squares  out[dims.first_out + w] = Σ input[i]² over the elements
//                i ≡ (w·256 + t) mod (G·256) of input [dims.m], for workgroup w of G = dims.n:
//                partial squared norms, which optimizer.wgsl (CLIPPED) sums into the clipping
//                factor. A vector longer than one storage binding is reduced by one dispatch
//                per part, each writing its partials after the previous part's.
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
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const THREADS: u32 = 256u;
var<workgroup> partial_sum: array<f32, THREADS>;

@compute @workgroup_size(256)
fn sum_squares(@builtin(local_invocation_index) thread: u32, @builtin(workgroup_id) group: vec3<u32>) {
    var sum = 0.0;
    let stride = dims.n * THREADS;
    for (var i = group.x * THREADS + thread; i < dims.m; i += stride) {
        sum += input[i] * input[i];
    }
    // Fixed-order tree sum over the workgroup.
    partial_sum[thread] = sum;
    workgroupBarrier();
    for (var width = THREADS / 2u; width > 0u; width /= 2u) {
        if (thread < width) {
            partial_sum[thread] += partial_sum[thread + width];
        }
        workgroupBarrier();
    }
    if (thread == 0u) {
        out[dims.first_out + group.x] = partial_sum[0];
    }
}
