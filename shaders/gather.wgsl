// gather.wgsl — builds a batch (inputs and targets in one dispatch) from a data set resident
// on the GPU.
//
//   x_dest[i, j] = x_source[order[step.batch_start + i], j]   for i < step.rows
//   y_dest[i, j] = y_source[order[step.batch_start + i], j]
//   0 for step.rows ≤ i < B (padding)
// x_source is [n, x_width], x_dest [B, x_width]; y likewise with y_width (0: no targets, as
// for predictions). All row-major; order is the epoch's sample order (u32).
// SOURCE_FORMAT, of x_source only (targets are always f32): 0: the f32 bits; 1: bytes k, four
// to a u32 (little end first), standing for k / 255 (8-bit images: a quarter of the memory,
// and the value is bit-identical to the host's `k as f32 / 255.0`).
// Dispatch: workgroups (ceil((x_width + y_width)/64), B, 1), one invocation per element:
// columns below x_width are inputs, the rest targets.

override SOURCE_FORMAT: u32 = 0u;

struct Dims {
    x_width: u32,
    y_width: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
@group(0) @binding(2) var<storage, read> x_source: array<u32>;
@group(0) @binding(3) var<storage, read> y_source: array<f32>;
@group(0) @binding(4) var<storage, read> order: array<u32>;
@group(0) @binding(5) var<storage, read_write> x_dest: array<f32>;
@group(0) @binding(6) var<storage, read_write> y_dest: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.y;
    if (gid.x < dims.x_width) {
        let col = gid.x;
        var value = 0.0;
        if (row < step.rows) {
            let index = order[step.batch_start + row] * dims.x_width + col;
            if (SOURCE_FORMAT == 1u) {
                value = f32((x_source[index / 4u] >> (8u * (index % 4u))) & 0xffu) / 255.0;
            } else {
                value = bitcast<f32>(x_source[index]);
            }
        }
        x_dest[row * dims.x_width + col] = value;
    } else if (gid.x < dims.x_width + dims.y_width) {
        let col = gid.x - dims.x_width;
        var value = 0.0;
        if (row < step.rows) {
            value = y_source[order[step.batch_start + row] * dims.y_width + col];
        }
        y_dest[row * dims.y_width + col] = value;
    }
}
