// gather.wgsl — builds a batch (inputs and targets in one dispatch) from a data set resident
// on the GPU, stored in one or more chunks of whole rows (a data set larger than one storage
// binding or buffer is split on whole rows; each chunk is a pair of buffers of its own).
//
//   x_dest[i, j] = x_source[order[step.batch_start + i] - first_row, j]   for i < step.rows
//   y_dest[i, j] = y_source[order[step.batch_start + i] - first_row, j]
//   0 for step.rows ≤ i < B (padding)
// where the bound chunk holds the data set's rows first_row .. end_row (dims): x_source is
// [end_row - first_row, x_width], x_dest [B, x_width]; y likewise with y_width (0: no
// targets, as for predictions). All row-major; order is the epoch's sample order (u32) over
// the whole data set. A dispatch writes only the batch rows whose sample lies in its chunk,
// and the chunk with first_row 0 also writes the padding, so one dispatch per chunk builds
// the batch, each row written once.
// SOURCE_FORMAT, of x_source only (targets are always f32): 0: the f32 bits; 1: bytes k, four
// to a u32 (little end first, the chunk's first row starting a word), standing for k / 255
// (8-bit images: a quarter of the memory, and the value is bit-identical to the host's
// `k as f32 / 255.0`).
// X_VEC4 (x_width % (4·HALVES) == 0, the bindings' offsets too): x is read four columns at a
// time (one u32 of bytes, or one vec4 of f32 bits) and written HALVES·4 at a time, as one
// `Packed` (the packing prelude the host prepends, as for optimizer.wgsl: a vec4<f32>, or a
// vec4<u64> of eight on software adapters with 64-bit integers): llvmpipe makes each buffer
// access a loop over the lanes with the components inside, so one wide store is one loop
// where four f32s are four.
// Dispatch (per chunk): workgroups (B, 1, 1), one workgroup of 64 per batch row, its
// invocations striding over the row's columns (or groups of four): x's, then y's. Whether a
// row is this chunk's is decided once per workgroup, so the rows of other chunks cost one
// workgroup each, not one per 64 columns.

override SOURCE_FORMAT: u32 = 0u;
override X_VEC4: bool = false;
const GROUP: u32 = 64u;

struct Dims {
    x_width: u32,
    y_width: u32,
    first_row: u32,
    end_row: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
@group(0) @binding(2) var<storage, read> x_source: array<u32>;
@group(0) @binding(3) var<storage, read> y_source: array<f32>;
@group(0) @binding(4) var<storage, read> order: array<u32>;
@group(0) @binding(5) var<storage, read_write> x_dest: array<f32>;
@group(0) @binding(6) var<storage, read_write> y_dest: array<f32>;
// The same memory as x_source and x_dest, as vec4s and packs (X_VEC4; bound to dummies
// otherwise).
@group(0) @binding(7) var<storage, read> x_source4: array<vec4<u32>>;
@group(0) @binding(8) var<storage, read_write> x_dest_packed: array<Packed>;

// Columns 4q.. 4q+3 of x_source's row-major matrix (X_VEC4).
fn source_quad(q: u32) -> vec4<f32> {
    if (SOURCE_FORMAT == 1u) {
        let bytes = x_source[q];
        let k = vec4<u32>(bytes, bytes >> 8u, bytes >> 16u, bytes >> 24u) & vec4<u32>(0xffu);
        return vec4<f32>(k) / 255.0;
    }
    return bitcast<vec4<f32>>(x_source4[q]);
}

@compute @workgroup_size(GROUP)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let row = wid.x;
    let padding = row >= step.rows;
    var source = 0u;
    if (padding) {
        if (dims.first_row != 0u) {
            return;
        }
    } else {
        source = order[step.batch_start + row];
        if (source < dims.first_row || source >= dims.end_row) {
            return; // another chunk's row
        }
        source -= dims.first_row;
    }
    if (X_VEC4) {
        let packs = dims.x_width / (4u * HALVES);
        for (var p = lane; p < packs; p += GROUP) {
            var quads: array<vec4<f32>, 2>;
            if (!padding) {
                for (var h = 0u; h < HALVES; h++) {
                    quads[h] = source_quad((source * packs + p) * HALVES + h);
                }
            }
            x_dest_packed[row * packs + p] = pack(quads[0], quads[1]);
        }
    } else {
        for (var col = lane; col < dims.x_width; col += GROUP) {
            var value = 0.0;
            if (!padding) {
                let index = source * dims.x_width + col;
                if (SOURCE_FORMAT == 1u) {
                    value = f32((x_source[index / 4u] >> (8u * (index % 4u))) & 0xffu) / 255.0;
                } else {
                    value = bitcast<f32>(x_source[index]);
                }
            }
            x_dest[row * dims.x_width + col] = value;
        }
    }
    for (var col = lane; col < dims.y_width; col += GROUP) {
        var value = 0.0;
        if (!padding) {
            value = y_source[source * dims.y_width + col];
        }
        y_dest[row * dims.y_width + col] = value;
    }
}
