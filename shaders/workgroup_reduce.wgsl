// workgroup_reduce.wgsl — fixed-order tree reductions over a workgroup, prepended (after
// common.wgsl) to the kernels that need them: reduce.wgsl and optimizer.wgsl. The including
// file sets their width, `const REDUCE_THREADS: u32`, to its workgroup size (a power of two).
//
//   workgroup_max(thread, value)  the largest `value` of the workgroup's invocations (u32)
//   workgroup_sum(thread, value)  their sum, added pairwise in a fixed order (f32), so every
//                                 workgroup that sums the same values gets the same bits
// Every invocation must call them (they hold barriers, so in uniform control flow) with its
// `local_invocation_index`, and every one gets the result.

var<workgroup> partial_max: array<u32, REDUCE_THREADS>;
var<workgroup> partial_sum: array<f32, REDUCE_THREADS>;

fn workgroup_max(thread: u32, value: u32) -> u32 {
    partial_max[thread] = value;
    workgroupBarrier();
    for (var width = REDUCE_THREADS / 2u; width > 0u; width /= 2u) {
        if (thread < width) {
            partial_max[thread] = max(partial_max[thread], partial_max[thread + width]);
        }
        workgroupBarrier();
    }
    return partial_max[0];
}

fn workgroup_sum(thread: u32, value: f32) -> f32 {
    partial_sum[thread] = value;
    workgroupBarrier();
    for (var width = REDUCE_THREADS / 2u; width > 0u; width /= 2u) {
        if (thread < width) {
            partial_sum[thread] += partial_sum[thread + width];
        }
        workgroupBarrier();
    }
    return partial_sum[0];
}
