// transpose.wgsl — the transpose of a matrix, from one texture copy (texture.rs) into another:
//
//   dst[c, r] = src[r, c]     src [R, C] and dst [C, R], row-major, R and C multiples of 4
//
// where both are laid out as texture.rs lays out copies of buffers: elements 4i..4i+3 in
// texel i, at texel(i) (common.wgsl). On llvmpipe both the texel loads and
// the texel stores are branch-free per lane, so this costs about what copying does; it gives
// the weight gradient dzᵀ·x its operands as dzᵀ and xᵀ, so that it runs as the faster A·Bᵀ
// form (its A and B then read along the batch, in vec4s).
// Dispatch: one invocation per texel of dst, workgroups of 64: (ceil(R·C / 4 / 64), 1, 1).

struct Dims {
    rows: u32,  // R
    cols: u32,  // C
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
@group(0) @binding(2) var src: texture_storage_2d<rgba32float, read>;
@group(0) @binding(3) var dst: texture_storage_2d<rgba32float, write>;

// src[r, c]
fn element(r: u32, c: u32) -> f32 {
    let index = r * dims.cols + c;
    return textureLoad(src, texel(index / 4u))[index % 4u];
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (4u * t >= dims.rows * dims.cols) {
        return;
    }
    // dst texel t holds dst[c, r..r+4] = src[r..r+4, c].
    let c = 4u * t / dims.rows;
    let r = 4u * t % dims.rows;
    let value = vec4<f32>(element(r, c), element(r + 1u, c), element(r + 2u, c), element(r + 3u, c));
    textureStore(dst, texel(t), value);
}
