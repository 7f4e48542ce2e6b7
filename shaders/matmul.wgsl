// matmul.wgsl — C = op(A)·op(B) with a fused epilogue; every dense-layer product of a
// training step is one of its variants.
//
// Variants are pipeline-overridable constants, so one source serves all of them:
//   FORM      0: C[M,N] = A[M,K]·B[K,N]      backward to the layer input (dz·W)
//             1: C[M,N] = A[M,K]·B[N,K]ᵀ     forward (x·Wᵀ, W stored [out, in])
//             2: C[M,N] = A[K,M]ᵀ·B[K,N]     weight gradient (dzᵀ·x)
//   EPILOGUE  0: C = acc
//             1: C = f(acc + aux[n]) · dropout             (aux = bias [N])
//             2: C = acc · s · f'(aux[m,n] / s), s = dropout (aux = layer input [M,N]);
//                0 where the element was dropped
//   ACTIVATION  the f of the epilogue (codes in common.wgsl)
// All matrices are row-major f32.
//
// Dispatch: workgroups (ceil(N/32), ceil(M/32), 1) of 8×8 invocations; invocation (x, y)
// computes the 4×4 block of C at rows 4y.., columns 4x.., straight from memory (on lavapipe
// this measured twice as fast as staging 64×64 tiles through workgroup memory; tiling per
// adapter is the speed issue's work). Rows and columns past the edge are computed from
// clamped indices and not written.

override FORM: u32 = 0u;
override EPILOGUE: u32 = 0u;
override ACTIVATION: u32 = 0u;

struct Dims {
    m: u32,
    n: u32,
    k: u32,
    layer: u32,        // dropout counter's layer index
    dropout_rate: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read> aux: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;

// The epilogue for one output element.
fn finish(row: u32, col: u32, acc: f32) {
    if (row >= dims.m || col >= dims.n) {
        return;
    }
    let index = row * dims.n + col;
    var value = acc;
    if (EPILOGUE == 1u) {
        value = activate(ACTIVATION, value + aux[col]) * dropout_scale(dims.dropout_rate, dims.layer, index);
    } else if (EPILOGUE == 2u) {
        let scale = dropout_scale(dims.dropout_rate, dims.layer, index);
        value = select(0.0, value * scale * activation_grad(ACTIVATION, aux[index] / scale), scale != 0.0);
    }
    c[index] = value;
}

fn finish_row(row: u32, col: u32, acc: vec4<f32>) {
    finish(row, col, acc.x);
    finish(row, col + 1u, acc.y);
    finish(row, col + 2u, acc.z);
    finish(row, col + 3u, acc.w);
}

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.y * 4u;
    let col = gid.x * 4u;
    if (row >= dims.m || col >= dims.n) {
        return;
    }
    // Element strides of op(A) along rows and K, and of op(B) along K and columns.
    var a_row_stride = dims.k;
    var a_k_stride = 1u;
    if (FORM == 2u) {
        a_row_stride = 1u;
        a_k_stride = dims.m;
    }
    var b_k_stride = dims.n;
    var b_col_stride = 1u;
    if (FORM == 1u) {
        b_k_stride = 1u;
        b_col_stride = dims.k;
    }
    // Rows and columns past the edge repeat the last one: their results are never written,
    // and the loop needs no bounds checks.
    let last_row = dims.m - 1u;
    let last_col = dims.n - 1u;
    let a0 = min(row, last_row) * a_row_stride;
    let a1 = min(row + 1u, last_row) * a_row_stride;
    let a2 = min(row + 2u, last_row) * a_row_stride;
    let a3 = min(row + 3u, last_row) * a_row_stride;
    let b0 = min(col, last_col) * b_col_stride;
    let b1 = min(col + 1u, last_col) * b_col_stride;
    let b2 = min(col + 2u, last_col) * b_col_stride;
    let b3 = min(col + 3u, last_col) * b_col_stride;
    // Rows row .. row+4 and columns col .. col+4 of C, one vec4 per row.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k = 0u; k < dims.k; k++) {
        let ak = k * a_k_stride;
        let bk = k * b_k_stride;
        let b = vec4<f32>(b[bk + b0], b[bk + b1], b[bk + b2], b[bk + b3]);
        acc0 = fma(vec4<f32>(a[ak + a0]), b, acc0);
        acc1 = fma(vec4<f32>(a[ak + a1]), b, acc1);
        acc2 = fma(vec4<f32>(a[ak + a2]), b, acc2);
        acc3 = fma(vec4<f32>(a[ak + a3]), b, acc3);
    }
    finish_row(row, col, acc0);
    finish_row(row + 1u, col, acc1);
    finish_row(row + 2u, col, acc2);
    finish_row(row + 3u, col, acc3);
}
