// gather.wgsl — builds a batch from a data set resident on the GPU.
//
//   dest[i, j] = source[order[step.batch_start + i], j]   for i < step.rows
//   dest[i, j] = 0                                         for step.rows ≤ i < B (padding)
// source is [n, width], dest [B, width], row-major; order is the epoch's sample order (u32).
// Dispatch: workgroups (ceil(width/64), B, 1), one invocation per element.

struct Dims {
    width: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
@group(0) @binding(2) var<storage, read> source: array<f32>;
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
        value = source[order[step.batch_start + row] * dims.width + col];
    }
    dest[row * dims.width + col] = value;
}
