// gather.wgsl — builds a batch from a data set resident on the GPU.
//
//   dest[i, j] = source[order[step.batch_start + i], j]   for i < step.rows
//   dest[i, j] = 0                                         for step.rows ≤ i < B (padding)
// source is [n, width], dest [B, width], row-major; order is the epoch's sample order (u32).
// SOURCE_FORMAT 0: source holds the f32 bits; 1: source holds bytes k, four to a u32 (little
// end first), standing for k / 255 (8-bit images: a quarter of the memory, and the value is
// bit-identical to the host's `k as f32 / 255.0`).
// Dispatch: workgroups (ceil(width/64), B, 1), one invocation per element.

override SOURCE_FORMAT: u32 = 0u;

struct Dims {
    width: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
@group(0) @binding(2) var<storage, read> source: array<u32>;
@group(0) @binding(3) var<storage, read> order: array<u32>;
@group(0) @binding(4) var<storage, read_write> dest: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    let row = gid.y;
    if (col >= dims.width) {
        return;
    }
    var value = 0.0;
    if (row < step.rows) {
        let index = order[step.batch_start + row] * dims.width + col;
        if (SOURCE_FORMAT == 1u) {
            value = f32((source[index / 4u] >> (8u * (index % 4u))) & 0xffu) / 255.0;
        } else {
            value = bitcast<f32>(source[index]);
        }
    }
    dest[row * dims.width + col] = value;
}
