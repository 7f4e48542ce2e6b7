// reduce.wgsl — reductions over the rows of a batch.
//
//   column_sums  out[n] = Σ_{m < M} input[m, n]: the bias gradient from dz [M, N].
//                Dispatch: one invocation per column, workgroups (ceil(N/64), 1, 1).
//   metrics      out[0] += Σ loss, out[1] += Σ correct, out[2] += rows, over the first
//                step.rows rows of input = row_stats [B, 2]: the running loss and accuracy
//                counts, accumulated on the GPU until the host reads them.
//                Dispatch: exactly one workgroup, (1, 1, 1); a fixed-order tree reduction,
//                so the sums are the same run to run.
//   sum_squares  out[w] = Σ input[i]² over the elements i ≡ (w·256 + t) mod (G·256) of
//                input [dims.m], for workgroup w of G = dims.n: partial squared norms.
//                Dispatch: (G, 1, 1).
//   clip_factor  out[0] = min(1, step.clip_norm / (√Σ input[0..dims.m] + 1e-6)): the factor
//                that rescales the gradient to the clip norm, from sum_squares' partials.
//                Dispatch: exactly one workgroup, (1, 1, 1).

struct Dims {
    m: u32,
    n: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
@group(0) @binding(2) var<storage, read> input: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn column_sums(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    if (col >= dims.n) {
        return;
    }
    var sum = 0.0;
    for (var row = 0u; row < dims.m; row++) {
        sum += input[row * dims.n + col];
    }
    out[col] = sum;
}

const METRICS_THREADS: u32 = 256u;
var<workgroup> partial: array<vec2<f32>, METRICS_THREADS>;
var<workgroup> partial_sum: array<f32, METRICS_THREADS>;

// Fixed-order tree sum of partial_sum over the workgroup; the result is in partial_sum[0].
fn sum_workgroup(thread: u32, value: f32) {
    partial_sum[thread] = value;
    workgroupBarrier();
    for (var width = METRICS_THREADS / 2u; width > 0u; width /= 2u) {
        if (thread < width) {
            partial_sum[thread] += partial_sum[thread + width];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn sum_squares(@builtin(local_invocation_index) thread: u32, @builtin(workgroup_id) group: vec3<u32>) {
    var sum = 0.0;
    let stride = dims.n * METRICS_THREADS;
    for (var i = group.x * METRICS_THREADS + thread; i < dims.m; i += stride) {
        sum += input[i] * input[i];
    }
    sum_workgroup(thread, sum);
    if (thread == 0u) {
        out[group.x] = partial_sum[0];
    }
}

@compute @workgroup_size(256)
fn clip_factor(@builtin(local_invocation_index) thread: u32) {
    var sum = 0.0;
    for (var i = thread; i < dims.m; i += METRICS_THREADS) {
        sum += input[i];
    }
    sum_workgroup(thread, sum);
    if (thread == 0u) {
        out[0] = min(1.0, step.clip_norm / (sqrt(partial_sum[0]) + 1e-6));
    }
}

@compute @workgroup_size(256)
fn metrics(@builtin(local_invocation_index) thread: u32) {
    var sum = vec2<f32>(0.0, 0.0);
    for (var row = thread; row < step.rows; row += METRICS_THREADS) {
        sum += vec2<f32>(input[2u * row], input[2u * row + 1u]);
    }
    partial[thread] = sum;
    workgroupBarrier();
    for (var width = METRICS_THREADS / 2u; width > 0u; width /= 2u) {
        if (thread < width) {
            partial[thread] += partial[thread + width];
        }
        workgroupBarrier();
    }
    if (thread == 0u) {
        out[0] += partial[0].x;
        out[1] += partial[0].y;
        out[2] += f32(step.rows);
    }
}
