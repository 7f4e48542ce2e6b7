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
// adapter is the speed issue's work). Out-of-range rows and columns read as 0 and are not
// written.

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

// op(A)[row, kk], 0 outside the matrix.
fn load_a(row: u32, kk: u32) -> f32 {
    if (row >= dims.m || kk >= dims.k) {
        return 0.0;
    }
    if (FORM == 2u) {
        return a[kk * dims.m + row];
    }
    return a[row * dims.k + kk];
}

// op(B)[kk, col], 0 outside the matrix.
fn load_b(kk: u32, col: u32) -> f32 {
    if (kk >= dims.k || col >= dims.n) {
        return 0.0;
    }
    if (FORM == 1u) {
        return b[col * dims.k + kk];
    }
    return b[kk * dims.n + col];
}

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
    // Rows row .. row+4 and columns col .. col+4 of C, one vec4 per row.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k = 0u; k < dims.k; k++) {
        let b = vec4<f32>(load_b(k, col), load_b(k, col + 1u), load_b(k, col + 2u), load_b(k, col + 3u));
        acc0 = fma(vec4<f32>(load_a(row, k)), b, acc0);
        acc1 = fma(vec4<f32>(load_a(row + 1u, k)), b, acc1);
        acc2 = fma(vec4<f32>(load_a(row + 2u, k)), b, acc2);
        acc3 = fma(vec4<f32>(load_a(row + 3u, k)), b, acc3);
    }
    finish_row(row, col, acc0);
    finish_row(row + 1u, col, acc1);
    finish_row(row + 2u, col, acc2);
    finish_row(row + 3u, col, acc3);
}
