// reduce.wgsl — reductions over the rows of a batch.
//
//   column_sums  out[n] = Σ_{m < M} input[m, n]: the bias gradient from dz [M, N].
//                Dispatch: one invocation per column, workgroups (ceil(N/64), 1, 1).
//   metrics      out[0] += Σ loss, out[1] += Σ correct, out[2] += rows, over the first
//                step.rows rows of input = row_stats [B, 2]: the running loss and accuracy
//                counts, accumulated on the GPU until the host reads them.
//                Dispatch: exactly one workgroup, (1, 1, 1); a fixed-order tree reduction,
//                so the sums are the same run to run.

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
