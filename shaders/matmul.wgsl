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
// Dispatch: workgroups (ceil(N/64), ceil(M/64), 1) of 16×16 invocations; each workgroup
// computes a 64×64 tile of C, each invocation a 4×4 block, stepping through K in slices of 16
// staged in workgroup memory. Out-of-range rows and columns read as 0 and are not written.

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

const TILE: u32 = 64u;
const TILE_K: u32 = 16u;
var<workgroup> tile_a: array<f32, 1024>; // [TILE_K][TILE]: op(A) rows of this tile
var<workgroup> tile_b: array<f32, 1024>; // [TILE_K][TILE]: op(B) columns of this tile

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

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let thread = lid.y * 16u + lid.x;
    var acc: array<f32, 16>;

    for (var k0 = 0u; k0 < dims.k; k0 += TILE_K) {
        // 256 invocations stage 1024 elements of each tile, walking memory contiguously:
        // along K where the operand is K-contiguous, along M or N otherwise.
        for (var i = 0u; i < 4u; i++) {
            let e = thread + i * 256u;
            if (FORM == 2u) {
                tile_a[e] = load_a(row0 + e % TILE, k0 + e / TILE);
            } else {
                tile_a[(e % TILE_K) * TILE + e / TILE_K] = load_a(row0 + e / TILE_K, k0 + e % TILE_K);
            }
            if (FORM == 1u) {
                tile_b[(e % TILE_K) * TILE + e / TILE_K] = load_b(k0 + e % TILE_K, col0 + e / TILE_K);
            } else {
                tile_b[e] = load_b(k0 + e / TILE, col0 + e % TILE);
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            var a_block: array<f32, 4>;
            var b_block: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a_block[i] = tile_a[kk * TILE + lid.y * 4u + i];
                b_block[i] = tile_b[kk * TILE + lid.x * 4u + i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(a_block[i], b_block[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let row = row0 + lid.y * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + lid.x * 4u + j;
            if (row < dims.m && col < dims.n) {
                let index = row * dims.n + col;
                var value = acc[i * 4u + j];
                if (EPILOGUE == 1u) {
                    value = activate(ACTIVATION, value + aux[col]) * dropout_scale(dims.dropout_rate, dims.layer, index);
                } else if (EPILOGUE == 2u) {
                    let scale = dropout_scale(dims.dropout_rate, dims.layer, index);
                    value = select(0.0, value * scale * activation_grad(ACTIVATION, aux[index] / scale), scale != 0.0);
                }
                c[index] = value;
            }
        }
    }
}
