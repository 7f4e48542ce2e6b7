//! The CPU backend's matrix product `C = A·B` (f32, any strides), fast and reproducible.
//!
//! Reproducible means every element of C is computed by the same sequence of operations
//! whatever the shape of the product around it, the number of threads, or the CPU's vector
//! width: a row predicted alone equals the same row predicted in a batch, and a resumed run
//! repeats an uninterrupted one bit for bit. Each element is
//!
//! ```text
//!     c = s₀ + s₁ + s₂ + …      sᵢ = Σ a·b over depths [i·KC, (i+1)·KC), by fused
//!                                     multiply-adds in depth order, starting from 0
//! ```
//!
//! with `KC` fixed, so any tile, thread split or micro-kernel gives the same bits (fused
//! multiply-add is exactly rounded on every CPU). Libraries with shape-dependent blocking
//! (the `gemm` crate) are not reproducible in this sense.
//!
//! Structure (the Goto/BLIS scheme): for each block of `NC` columns and `KC` depths, B's
//! block is packed into `nr`-wide panels (it stays in L2); for each `mr`-row strip of A, the
//! strip is packed (it stays in L1) and the micro-kernel runs over every panel of B, holding
//! an `mr`×`nr` tile of C in registers. Zero padding fills partial strips and panels, and
//! partial tiles go through a small buffer. Threads split C's columns (or, for narrow
//! products, its rows) into disjoint parts.

use ndarray::{ArrayView2, ArrayViewMut2, Axis, ShapeBuilder};
use std::cell::RefCell;
use std::sync::OnceLock;

/// Depth block: fixed, because it sets the order of the sums (see the module comment).
const KC: usize = 256;
/// Column block: KC×NC floats of packed B (512 KiB) stay in a core's L2.
const NC: usize = 512;
/// Products smaller than this many multiply-adds run on one thread (a wake-up of the pool
/// costs more than they take).
const PARALLEL_MIN_WORK: usize = 1 << 20;
/// The largest tile any kernel uses, for the edge buffer.
const MAX_TILE: usize = 16 * 32;

/// A micro-kernel: `tile = (accumulate ? tile : 0) + Σ_k a[k·mr + r]·b[k·nr + j]` over
/// `depth` steps, for a full `mr`×`nr` tile of C at `c` with row stride `ldc` (unit column
/// stride). `a` and `b` are packed panels.
type KernelFn =
    unsafe fn(depth: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, acc: bool);

/// Packs one panel from an operand stored transposed (see [`pack_transposed`]).
type TransposedPackFn = unsafe fn(b: Strided, block: PanelBlock, panel: &mut [f32]);

/// A micro-kernel and the transposed pack of the same instruction set.
#[derive(Clone, Copy)]
struct Kernel {
    name: &'static str,
    mr: usize,
    nr: usize,
    run: KernelFn,
    pack_transposed: TransposedPackFn,
}

/// Every micro-kernel this CPU can run, widest first.
fn available_kernels() -> Vec<Kernel> {
    let mut kernels = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // 12 rows: 24 accumulators, and each 32-float step of B (loaded from L2) serves
            // 12 broadcasts; 8 rows reached a few per cent less on a Xeon (Emerald Rapids).
            kernels.push(Kernel {
                name: "AVX-512",
                mr: 12,
                nr: 32,
                run: x86::avx512::<12, 2>,
                pack_transposed: x86::pack_transposed_avx512,
            });
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            kernels.push(Kernel {
                name: "AVX2",
                mr: 6,
                nr: 16,
                run: x86::avx2::<6, 2>,
                pack_transposed: x86::pack_transposed_avx,
            });
        }
    }
    kernels.push(Kernel {
        name: "portable",
        mr: 4,
        nr: 16,
        run: portable::<4, 16>,
        pack_transposed,
    });
    kernels
}

/// The widest kernel this CPU runs.
fn kernel() -> Kernel {
    static BEST: OnceLock<Kernel> = OnceLock::new();
    *BEST.get_or_init(|| available_kernels()[0])
}

/// The instruction set of the micro-kernel in use ("AVX-512", "AVX2" or "portable").
pub fn kernel_name() -> &'static str {
    kernel().name
}

/// C = A·B. Shapes: A [m, k], B [k, n], C [m, n]; any strides.
pub fn gemm(a: ArrayView2<f32>, b: ArrayView2<f32>, c: ArrayViewMut2<f32>) {
    gemm_then(a, b, c, &|_, _, _| {});
}

/// C = A·B, then `finish(row0, col0, tile)` on each finished block of C while it is still in
/// cache (a fused epilogue: bias and activation, activation derivative): one strip of rows
/// (the kernel's `mr`) by one column block (up to `NC`), rather than each register tile, so
/// that the epilogue runs over rows hundreds of values long (3–4% faster steps of
/// 784-128-10 and 784-800-10 on an AMD Zen 1 core pair). `row0` and `col0` place it in C.
pub fn gemm_then<F>(a: ArrayView2<f32>, b: ArrayView2<f32>, c: ArrayViewMut2<f32>, finish: &F)
where
    F: Fn(usize, usize, ArrayViewMut2<f32>) + Sync,
{
    let (m, k) = a.dim();
    let n = b.ncols();
    assert_eq!(b.nrows(), k, "gemm: inner dimensions differ");
    assert_eq!(c.dim(), (m, n), "gemm: output shape");
    assert!(
        c.strides().iter().all(|&s| s >= 0),
        "gemm: C has a negative stride"
    );
    let parts = if m * n * k < PARALLEL_MIN_WORK {
        1
    } else {
        rayon::current_num_threads()
    };
    gemm_parts(kernel(), a, b, c, (0, 0), parts, finish);
}

/// Splits C into `parts` disjoint blocks of whole tiles (by columns, or by rows when C is
/// narrow) and computes them on as many threads.
fn gemm_parts<F>(
    kernel: Kernel,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    c: ArrayViewMut2<f32>,
    origin: (usize, usize),
    parts: usize,
    finish: &F,
) where
    F: Fn(usize, usize, ArrayViewMut2<f32>) + Sync,
{
    let (panels, strips) = (b.ncols().div_ceil(kernel.nr), a.nrows().div_ceil(kernel.mr));
    if parts <= 1 || panels.max(strips) < 2 {
        return gemm_serial(kernel, a, b, c, origin, finish);
    }
    let first = parts / 2;
    if panels >= parts || panels >= strips {
        let cut = (panels * first / parts).max(1) * kernel.nr;
        let (b_left, b_right) = b.split_at(Axis(1), cut);
        let (c_left, c_right) = c.split_at(Axis(1), cut);
        rayon::join(
            || gemm_parts(kernel, a, b_left, c_left, origin, first, finish),
            || {
                let origin = (origin.0, origin.1 + cut);
                gemm_parts(kernel, a, b_right, c_right, origin, parts - first, finish)
            },
        );
    } else {
        let cut = (strips * first / parts).max(1) * kernel.mr;
        let (a_top, a_bottom) = a.split_at(Axis(0), cut);
        let (c_top, c_bottom) = c.split_at(Axis(0), cut);
        rayon::join(
            || gemm_parts(kernel, a_top, b, c_top, origin, first, finish),
            || {
                let origin = (origin.0 + cut, origin.1);
                gemm_parts(kernel, a_bottom, b, c_bottom, origin, parts - first, finish)
            },
        );
    }
}

/// Packing buffers, one set per thread, grown on first use and then reused.
struct Buffers {
    packed_a: AlignedVec,
    packed_b: AlignedVec,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = const {
        RefCell::new(Buffers { packed_a: AlignedVec::new(), packed_b: AlignedVec::new() })
    };
}

/// A matrix as the address of its element (0, 0) and element strides; the ndarray view it
/// came from keeps the memory alive.
#[derive(Clone, Copy)]
struct Strided {
    ptr: *const f32,
    row_stride: isize,
    col_stride: isize,
}

impl Strided {
    fn of(view: &ArrayView2<f32>) -> Self {
        Strided {
            ptr: view.as_ptr(),
            row_stride: view.strides()[0],
            col_stride: view.strides()[1],
        }
    }

    /// The same memory seen as the transposed matrix.
    fn transposed(self) -> Self {
        Strided {
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// # Safety
    /// (row, col) lies inside the view this came from.
    unsafe fn at(self, row: usize, col: usize) -> *const f32 {
        // SAFETY: inside the view, by the caller's contract.
        unsafe {
            self.ptr
                .offset(row as isize * self.row_stride + col as isize * self.col_stride)
        }
    }
}

fn gemm_serial<F>(
    kernel: Kernel,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    mut c: ArrayViewMut2<f32>,
    origin: (usize, usize),
    finish: &F,
) where
    F: Fn(usize, usize, ArrayViewMut2<f32>) + Sync,
{
    let (m, k) = a.dim();
    let n = b.ncols();
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.fill(0.0);
        finish(origin.0, origin.1, c);
        return;
    }
    let (mr, nr) = (kernel.mr, kernel.nr);
    let (a, b) = (Strided::of(&a), Strided::of(&b));
    let c_strides = (c.strides()[0], c.strides()[1]);
    let c = c.as_mut_ptr();
    BUFFERS.with_borrow_mut(|buffers| {
        let packed_a = buffers.packed_a.get(KC * m.div_ceil(mr) * mr);
        let packed_b = buffers.packed_b.get(KC * NC.div_ceil(nr) * nr);
        for depth0 in (0..k).step_by(KC) {
            let depth = KC.min(k - depth0);
            // SAFETY (packing and tiles): every index stays inside the m×k, k×n and m×n views.
            // A's strips are the panels of Aᵀ: strip[k·mr + r] = Aᵀ[depth0 + k, row0 + r].
            unsafe { pack_b(kernel, a.transposed(), depth0, depth, 0, m, mr, packed_a) };
            for col0 in (0..n).step_by(NC) {
                let cols = NC.min(n - col0);
                unsafe { pack_b(kernel, b, depth0, depth, col0, cols, nr, packed_b) };
                for row0 in (0..m).step_by(mr) {
                    let strip = &packed_a[row0 * depth..(row0 + mr) * depth];
                    let rows = mr.min(m - row0);
                    let strip_c = unsafe {
                        c.offset(row0 as isize * c_strides.0 + col0 as isize * c_strides.1)
                    };
                    for panel0 in (0..cols).step_by(nr) {
                        let tile = Tile {
                            ptr: unsafe { strip_c.offset(panel0 as isize * c_strides.1) },
                            rows,
                            cols: nr.min(cols - panel0),
                            row_stride: c_strides.0,
                            col_stride: c_strides.1,
                        };
                        let panel = &packed_b[panel0 * depth..(panel0 + nr) * depth];
                        unsafe { run_tile(kernel, depth, strip, panel, tile, depth0 > 0) };
                    }
                    if depth0 + depth == k {
                        // The strip's row block of this column block is finished.
                        // SAFETY: the block is inside C, and no other view of it is live.
                        let block = unsafe {
                            ArrayViewMut2::from_shape_ptr(
                                (rows, cols).strides((c_strides.0 as usize, c_strides.1 as usize)),
                                strip_c,
                            )
                        };
                        finish(origin.0 + row0, origin.1 + col0, block);
                    }
                }
            }
        }
    });
}

/// Where one tile of C lies: its (0, 0) element, extent and strides.
struct Tile {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
}

/// One tile of C: straight from registers when it is full and its rows are contiguous,
/// through a buffer at the edges.
///
/// # Safety
/// `tile` lies inside C; `strip` and `panel` hold `depth` packed steps.
unsafe fn run_tile(
    kernel: Kernel,
    depth: usize,
    strip: &[f32],
    panel: &[f32],
    tile: Tile,
    accumulate: bool,
) {
    let (mr, nr) = (kernel.mr, kernel.nr);
    debug_assert!(strip.len() >= depth * mr && panel.len() >= depth * nr);
    let full = tile.rows == mr && tile.cols == nr;
    // SAFETY: by the caller's contract; the edge buffer is an mr×nr tile of row stride nr.
    unsafe {
        if full && tile.col_stride == 1 && tile.row_stride >= nr as isize {
            let ldc = tile.row_stride as usize;
            (kernel.run)(
                depth,
                strip.as_ptr(),
                panel.as_ptr(),
                tile.ptr,
                ldc,
                accumulate,
            );
            return;
        }
        let mut buffer = [0.0f32; MAX_TILE];
        (kernel.run)(
            depth,
            strip.as_ptr(),
            panel.as_ptr(),
            buffer.as_mut_ptr(),
            nr,
            false,
        );
        for r in 0..tile.rows {
            for j in 0..tile.cols {
                let out = tile
                    .ptr
                    .offset(r as isize * tile.row_stride + j as isize * tile.col_stride);
                let sum = buffer[r * nr + j];
                *out = if accumulate { *out + sum } else { sum };
            }
        }
    }
}

/// Packs B[depth0.., col0..] (depth × cols) into panels of `nr` columns, each laid out as
/// `panel[k·nr + j]`, zero past `cols`; a B stored transposed goes through the kernel's
/// transposed pack.
///
/// # Safety
/// The block lies inside B.
#[allow(clippy::too_many_arguments)]
unsafe fn pack_b(
    kernel: Kernel,
    b: Strided,
    depth0: usize,
    depth: usize,
    col0: usize,
    cols: usize,
    nr: usize,
    packed: &mut [f32],
) {
    for panel0 in (0..cols).step_by(nr) {
        let width = nr.min(cols - panel0);
        let panel = &mut packed[panel0 * depth..(panel0 + nr) * depth];
        if width < nr {
            panel.fill(0.0);
        }
        // SAFETY (both branches): rows depth0.. + depth and columns col0 + panel0.. + width
        // are inside B.
        if b.col_stride == 1 {
            for (k, step) in panel.chunks_exact_mut(nr).enumerate() {
                unsafe {
                    let src = b.at(depth0 + k, col0 + panel0);
                    std::ptr::copy_nonoverlapping(src, step.as_mut_ptr(), width);
                }
            }
        } else {
            // B is stored transposed (a weight [out, in] used as Wᵀ; or A, packed as Aᵀ,
            // stored row-major): each panel column is a run of memory, and the panel its
            // transpose.
            let block = PanelBlock {
                depth0,
                depth,
                col0: col0 + panel0,
                width,
                nr,
            };
            if b.row_stride == 1 {
                unsafe { (kernel.pack_transposed)(b, block, panel) };
            } else {
                unsafe { pack_transposed(b, block, panel) };
            }
        }
    }
}

/// The part of B that one packed panel holds: `depth` rows from `depth0` and `width`
/// columns from `col0`, in a panel `nr` columns wide.
#[derive(Clone, Copy)]
struct PanelBlock {
    depth0: usize,
    depth: usize,
    col0: usize,
    width: usize,
    nr: usize,
}

/// One panel of [`pack_b`] from a B stored transposed: `panel[k·nr + j] = B[depth0 + k,
/// col0 + j]` for `j < width`; the rest of the panel is left as it is. Element by element,
/// for any strides; the SIMD versions take B with row stride 1.
///
/// # Safety
/// The block lies inside B.
unsafe fn pack_transposed(b: Strided, block: PanelBlock, panel: &mut [f32]) {
    let PanelBlock {
        depth0,
        col0,
        width,
        nr,
        ..
    } = block;
    for (k, step) in panel.chunks_exact_mut(nr).enumerate() {
        for (j, value) in step[..width].iter_mut().enumerate() {
            // SAFETY: by the caller's contract.
            *value = unsafe { *b.at(depth0 + k, col0 + j) };
        }
    }
}

/// A growable f32 buffer whose slices start on a 64-byte boundary (a cache line, one
/// AVX-512 vector).
struct AlignedVec(Vec<f32>);

impl AlignedVec {
    const fn new() -> Self {
        AlignedVec(Vec::new())
    }

    fn get(&mut self, len: usize) -> &mut [f32] {
        if self.0.len() < len + 16 {
            self.0 = vec![0.0; len + 16];
        }
        let offset = self.0.as_ptr().align_offset(64).min(16);
        &mut self.0[offset..offset + len]
    }
}

/// The fallback micro-kernel in plain Rust (`mul_add` is a fused multiply-add everywhere,
/// so it gives the same bits as the vector kernels).
///
/// # Safety
/// `a` holds `depth·MR` and `b` `depth·NR` floats; `c` is an MR×NR tile of row stride `ldc`.
unsafe fn portable<const MR: usize, const NR: usize>(
    depth: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: the caller's contract covers every access.
    unsafe {
        let a = std::slice::from_raw_parts(a, depth * MR);
        let b = std::slice::from_raw_parts(b, depth * NR);
        let mut acc = [[0.0f32; NR]; MR];
        for (a_k, b_k) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
            for r in 0..MR {
                for j in 0..NR {
                    acc[r][j] = a_k[r].mul_add(b_k[j], acc[r][j]);
                }
            }
        }
        for (r, acc_row) in acc.iter().enumerate() {
            for (j, &sum) in acc_row.iter().enumerate() {
                let out = c.add(r * ldc + j);
                *out = if accumulate { *out + sum } else { sum };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// One SIMD micro-kernel per instruction set, generated from one body: MR rows × NV
    /// vectors of `$lanes` columns.
    ///
    /// # Safety (of each generated function)
    /// The CPU has the named features; `a` holds `depth·MR` and `b` `depth·$lanes·NV` floats;
    /// `c` is an MR×($lanes·NV) tile of row stride `ldc`.
    macro_rules! simd_kernel {
        ($name:ident, $features:literal, $lanes:literal, $zero:ident, $load:ident, $splat:ident,
         $fma:ident, $add:ident, $store:ident) => {
            #[target_feature(enable = $features)]
            pub unsafe fn $name<const MR: usize, const NV: usize>(
                depth: usize,
                a: *const f32,
                b: *const f32,
                c: *mut f32,
                ldc: usize,
                accumulate: bool,
            ) {
                // SAFETY: the caller's contract covers every access.
                unsafe {
                    let mut acc = [[$zero(); NV]; MR];
                    if accumulate {
                        // The tile of C is read after the depth loop: ask for its cache lines
                        // (16 floats each) now, so that a large C's misses overlap the loop.
                        for r in 0..MR {
                            for line in 0..($lanes * NV).div_ceil(16) {
                                let address = c.add(r * ldc + 16 * line) as *const i8;
                                _mm_prefetch::<_MM_HINT_T0>(address);
                            }
                        }
                    }
                    for k in 0..depth {
                        let b_k = b.add(k * $lanes * NV);
                        let mut b_vec = [$zero(); NV];
                        for (v, slot) in b_vec.iter_mut().enumerate() {
                            *slot = $load(b_k.add($lanes * v));
                        }
                        for (r, acc_row) in acc.iter_mut().enumerate() {
                            let a_r = $splat(*a.add(k * MR + r));
                            for (v, sum) in acc_row.iter_mut().enumerate() {
                                *sum = $fma(a_r, b_vec[v], *sum);
                            }
                        }
                    }
                    for (r, acc_row) in acc.iter().enumerate() {
                        for (v, &sum) in acc_row.iter().enumerate() {
                            let out = c.add(r * ldc + $lanes * v);
                            let value = if accumulate {
                                $add($load(out), sum)
                            } else {
                                sum
                            };
                            $store(out, value);
                        }
                    }
                }
            }
        };
    }

    /// [`super::pack_transposed`] for a B whose columns are runs of memory (row stride 1), one
    /// generated per instruction set, `$lanes` columns × `$lanes` depths at a time: loads of
    /// `$lanes` column runs, a square transpose in registers, stores of `$lanes` panel rows.
    /// `$load(ptr, count)` and `$store(ptr, count, vector)` touch only the first `count`
    /// floats.
    ///
    /// # Safety (of each generated function)
    /// The CPU has the named features; the block lies inside B; `panel` holds `depth·nr`
    /// floats.
    macro_rules! transposed_pack {
        ($name:ident, $features:literal, $lanes:literal, $zero:ident, $load:ident,
         $store:ident, $transpose:ident) => {
            #[target_feature(enable = $features)]
            pub unsafe fn $name(b: super::Strided, block: super::PanelBlock, panel: &mut [f32]) {
                let super::PanelBlock {
                    depth0,
                    depth,
                    col0,
                    width,
                    nr,
                } = block;
                debug_assert!(b.row_stride == 1 && panel.len() >= depth * nr && width <= nr);
                let out = panel.as_mut_ptr();
                for j0 in (0..width).step_by($lanes) {
                    let columns = $lanes.min(width - j0);
                    for k0 in (0..depth).step_by($lanes) {
                        let depths = $lanes.min(depth - k0);
                        // SAFETY: only the first `depths` floats of each column run and the
                        // first `columns` of each panel row are touched; they are inside B
                        // and the panel, by the caller's contract.
                        unsafe {
                            let mut runs = [$zero(); $lanes];
                            for (j, run) in runs.iter_mut().enumerate().take(columns) {
                                *run = $load(b.at(depth0 + k0, col0 + j0 + j), depths);
                            }
                            let rows = $transpose(runs);
                            for (k, row) in rows.iter().enumerate().take(depths) {
                                $store(out.add((k0 + k) * nr + j0), columns, *row);
                            }
                        }
                    }
                }
            }
        };
    }

    transposed_pack!(
        pack_transposed_avx512,
        "avx512f",
        16,
        _mm512_setzero_ps,
        load_first_avx512,
        store_first_avx512,
        transpose16
    );
    transposed_pack!(
        pack_transposed_avx,
        "avx",
        8,
        _mm256_setzero_ps,
        load_first_avx,
        store_first_avx,
        transpose8
    );

    /// The first `count` (at most 16) floats at `src`, zeros after them.
    #[target_feature(enable = "avx512f")]
    unsafe fn load_first_avx512(src: *const f32, count: usize) -> __m512 {
        let mask = ((1u32 << count) - 1) as __mmask16;
        // SAFETY: masked-off lanes are not read; the rest are the caller's.
        unsafe { _mm512_maskz_loadu_ps(mask, src) }
    }

    /// Stores the first `count` (at most 16) lanes of `values` at `dst`.
    #[target_feature(enable = "avx512f")]
    unsafe fn store_first_avx512(dst: *mut f32, count: usize, values: __m512) {
        let mask = ((1u32 << count) - 1) as __mmask16;
        // SAFETY: masked-off lanes are not written; the rest are the caller's.
        unsafe { _mm512_mask_storeu_ps(dst, mask, values) }
    }

    /// The first `count` (at most 8) floats at `src`, zeros after them.
    #[target_feature(enable = "avx")]
    unsafe fn load_first_avx(src: *const f32, count: usize) -> __m256 {
        // SAFETY: a masked load reads only the lanes whose mask is set.
        unsafe {
            if count == 8 {
                return _mm256_loadu_ps(src);
            }
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(count as i32), lanes);
            _mm256_maskload_ps(src, mask)
        }
    }

    /// Stores the first `count` (at most 8) lanes of `values` at `dst`: in pieces of 4, 2
    /// and 1 rather than by a masked store, which is slow on AMD's Zen cores.
    #[target_feature(enable = "avx")]
    unsafe fn store_first_avx(dst: *mut f32, count: usize, values: __m256) {
        // SAFETY: exactly `count` floats from `dst` are written, the caller's.
        unsafe {
            if count == 8 {
                return _mm256_storeu_ps(dst, values);
            }
            let (mut dst, mut left) = (dst, count);
            let mut part = _mm256_castps256_ps128(values);
            if left >= 4 {
                _mm_storeu_ps(dst, part);
                part = _mm256_extractf128_ps::<1>(values);
                (dst, left) = (dst.add(4), left - 4);
            }
            if left >= 2 {
                _mm_store_sd(dst as *mut f64, _mm_castps_pd(part));
                part = _mm_movehl_ps(part, part);
                (dst, left) = (dst.add(2), left - 2);
            }
            if left == 1 {
                _mm_store_ss(dst, part);
            }
        }
    }

    /// The 8×8 transpose of `rows`: `out[c][r] = rows[r][c]`.
    #[target_feature(enable = "avx")]
    fn transpose8(rows: [__m256; 8]) -> [__m256; 8] {
        // Within each 128-bit lane, rows interleaved by pairs then quadruples: s[4h + c]
        // holds rows 4h..4h+4 of column c in its low lane and of column 4 + c in its high.
        let mut s = [_mm256_setzero_ps(); 8];
        for h in 0..2 {
            let r = &rows[4 * h..4 * h + 4];
            let (lo01, hi01) = (
                _mm256_unpacklo_ps(r[0], r[1]),
                _mm256_unpackhi_ps(r[0], r[1]),
            );
            let (lo23, hi23) = (
                _mm256_unpacklo_ps(r[2], r[3]),
                _mm256_unpackhi_ps(r[2], r[3]),
            );
            s[4 * h] = _mm256_shuffle_ps::<0x44>(lo01, lo23);
            s[4 * h + 1] = _mm256_shuffle_ps::<0xEE>(lo01, lo23);
            s[4 * h + 2] = _mm256_shuffle_ps::<0x44>(hi01, hi23);
            s[4 * h + 3] = _mm256_shuffle_ps::<0xEE>(hi01, hi23);
        }
        // Then the lanes joined: column c from the low lanes, 4 + c from the high ones.
        let mut out = [_mm256_setzero_ps(); 8];
        for c in 0..4 {
            out[c] = _mm256_permute2f128_ps::<0x20>(s[c], s[4 + c]);
            out[4 + c] = _mm256_permute2f128_ps::<0x31>(s[c], s[4 + c]);
        }
        out
    }

    /// The 16×16 transpose of `rows`: `out[c][r] = rows[r][c]`.
    #[target_feature(enable = "avx512f")]
    fn transpose16(rows: [__m512; 16]) -> [__m512; 16] {
        // Pairs of rows interleaved, then quadruples: u[4q + c] holds, in its 128-bit lane
        // L, rows 4q..4q+4 of column 4L + c.
        let mut u = [_mm512_setzero_ps(); 16];
        for q in 0..4 {
            let r = &rows[4 * q..4 * q + 4];
            let (lo01, hi01) = (
                _mm512_unpacklo_ps(r[0], r[1]),
                _mm512_unpackhi_ps(r[0], r[1]),
            );
            let (lo23, hi23) = (
                _mm512_unpacklo_ps(r[2], r[3]),
                _mm512_unpackhi_ps(r[2], r[3]),
            );
            u[4 * q] = _mm512_shuffle_ps::<0x44>(lo01, lo23);
            u[4 * q + 1] = _mm512_shuffle_ps::<0xEE>(lo01, lo23);
            u[4 * q + 2] = _mm512_shuffle_ps::<0x44>(hi01, hi23);
            u[4 * q + 3] = _mm512_shuffle_ps::<0xEE>(hi01, hi23);
        }
        // Then the 128-bit lanes gathered: column 4L + c is lane L of u[c], u[4 + c],
        // u[8 + c], u[12 + c].
        let mut out = [_mm512_setzero_ps(); 16];
        for c in 0..4 {
            let even01 = _mm512_shuffle_f32x4::<0x88>(u[c], u[4 + c]);
            let odd01 = _mm512_shuffle_f32x4::<0xDD>(u[c], u[4 + c]);
            let even23 = _mm512_shuffle_f32x4::<0x88>(u[8 + c], u[12 + c]);
            let odd23 = _mm512_shuffle_f32x4::<0xDD>(u[8 + c], u[12 + c]);
            out[c] = _mm512_shuffle_f32x4::<0x88>(even01, even23);
            out[8 + c] = _mm512_shuffle_f32x4::<0xDD>(even01, even23);
            out[4 + c] = _mm512_shuffle_f32x4::<0x88>(odd01, odd23);
            out[12 + c] = _mm512_shuffle_f32x4::<0xDD>(odd01, odd23);
        }
        out
    }

    simd_kernel!(
        avx512,
        "avx512f",
        16,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_add_ps,
        _mm512_storeu_ps
    );
    simd_kernel!(
        avx2,
        "avx2,fma",
        8,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_add_ps,
        _mm256_storeu_ps
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
    }

    /// The product in f64, and the bound |A|·|B| that scales its rounding error.
    fn reference(a: &ArrayView2<f32>, b: &ArrayView2<f32>) -> (Array2<f64>, Array2<f64>) {
        let a64 = a.mapv(f64::from);
        let b64 = b.mapv(f64::from);
        (a64.dot(&b64), a64.mapv(f64::abs).dot(&b64.mapv(f64::abs)))
    }

    const SHAPES: [(usize, usize, usize); 7] = [
        (1, 1, 1),
        (3, 5, 7),
        (8, 256, 32),
        (9, 257, 33),
        (127, 129, 65),
        (128, 784, 130),
        (37, 600, 1031),
    ];

    #[test]
    fn matches_f64_reference_for_every_kernel_and_layout() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for (m, k, n) in SHAPES {
            let a = random(m, k, &mut rng);
            let b = random(k, n, &mut rng);
            let a_t = a.t().as_standard_layout().into_owned();
            let b_t = b.t().as_standard_layout().into_owned();
            let (expected, bound) = reference(&a.view(), &b.view());
            for kernel in available_kernels() {
                // Row-major and transposed storage of each operand.
                for (a_view, b_view) in [
                    (a.view(), b.view()),
                    (a_t.t(), b.view()),
                    (a.view(), b_t.t()),
                    (a_t.t(), b_t.t()),
                ] {
                    let mut c = Array2::from_elem((m, n), f32::NAN);
                    gemm_serial(kernel, a_view, b_view, c.view_mut(), (0, 0), &|_, _, _| {});
                    for ((index, &got), &want) in c.indexed_iter().zip(expected.iter()) {
                        let tolerance = 1e-6 * (k as f64) * bound[index] + 1e-30;
                        assert!(
                            (f64::from(got) - want).abs() <= tolerance,
                            "{m}x{k}x{n} kernel {}x{} at {index:?}: {got} vs {want}",
                            kernel.mr,
                            kernel.nr
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn packing_a_transposed_operand_copies_every_value_and_pads_with_zeros() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        // (depth, columns, panel width): partial 16×16 and 8×8 blocks in both directions included,
        // and panel rows of every length modulo 8.
        for (depth, cols, nr) in [
            (1, 1, 12),
            (17, 13, 12),
            (256, 64, 32),
            (33, 47, 32),
            (29, 31, 6),
            (8, 7, 7),
            (9, 23, 13),
            (3, 3, 3),
        ] {
            // B [depth0 + depth, col0 + cols] stored transposed, as a weight used as Wᵀ is.
            let (depth0, col0) = (3, 5);
            let stored = random(col0 + cols, depth0 + depth, &mut rng);
            let b = stored.t();
            let panels = cols.div_ceil(nr);
            for kernel in available_kernels() {
                let mut packed = vec![f32::NAN; depth * panels * nr];
                let b = Strided::of(&b);
                // SAFETY: the block lies inside b.
                unsafe { pack_b(kernel, b, depth0, depth, col0, cols, nr, &mut packed) };
                for (index, &got) in packed.iter().enumerate() {
                    let (panel, k, j) = (index / (depth * nr), index / nr % depth, index % nr);
                    let col = panel * nr + j;
                    let want = if col < cols {
                        stored[[col0 + col, depth0 + k]]
                    } else {
                        0.0
                    };
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{} pack, {depth}x{cols}/{nr} at {index}",
                        kernel.name
                    );
                }
            }
        }
    }

    #[test]
    fn bits_do_not_depend_on_kernel_threads_or_batch() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let (m, k, n) = (133, 700, 301);
        let a = random(m, k, &mut rng);
        let b = random(k, n, &mut rng);
        let mut threaded = Array2::zeros((m, n));
        gemm(a.view(), b.view(), threaded.view_mut());
        for kernel in available_kernels() {
            let mut serial = Array2::zeros((m, n));
            gemm_serial(
                kernel,
                a.view(),
                b.view(),
                serial.view_mut(),
                (0, 0),
                &|_, _, _| {},
            );
            assert_eq!(serial, threaded, "kernel {}x{}", kernel.mr, kernel.nr);
        }
        // A row computed alone, and a few columns alone, equal the same in the full product.
        for row in [0, 57, m - 1] {
            let mut alone = Array2::zeros((1, n));
            gemm(
                a.slice(ndarray::s![row..row + 1, ..]),
                b.view(),
                alone.view_mut(),
            );
            assert_eq!(alone.row(0), threaded.row(row));
        }
        let mut columns = Array2::zeros((m, 5));
        gemm(
            a.view(),
            b.slice(ndarray::s![.., 200..205]),
            columns.view_mut(),
        );
        assert_eq!(columns, threaded.slice(ndarray::s![.., 200..205]));
    }

    #[test]
    fn epilogue_sees_every_element_once_at_its_place() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        // Serial (small) and split across threads (large), with edge tiles.
        for (m, k, n) in [(5, 9, 7), (150, 300, 333), (1000, 40, 30)] {
            let a = random(m, k, &mut rng);
            let b = random(k, n, &mut rng);
            let mut plain = Array2::zeros((m, n));
            gemm(a.view(), b.view(), plain.view_mut());
            let mut finished = Array2::zeros((m, n));
            let mark = |row0: usize, col0: usize, mut tile: ArrayViewMut2<f32>| {
                for ((r, c), v) in tile.indexed_iter_mut() {
                    *v += ((row0 + r) * 1000 + col0 + c) as f32;
                }
            };
            gemm_then(a.view(), b.view(), finished.view_mut(), &mark);
            for ((row, col), &v) in finished.indexed_iter() {
                assert_eq!(
                    v,
                    plain[[row, col]] + (row * 1000 + col) as f32,
                    "{m}x{k}x{n}"
                );
            }
        }
    }

    #[test]
    fn zero_depth_gives_zeros_and_empty_shapes_do_nothing() {
        let mut c = Array2::from_elem((3, 4), 7.0f32);
        gemm(
            Array2::zeros((3, 0)).view(),
            Array2::zeros((0, 4)).view(),
            c.view_mut(),
        );
        assert!(c.iter().all(|&v| v == 0.0));
        let mut empty = Array2::<f32>::zeros((0, 4));
        gemm(
            Array2::zeros((0, 5)).view(),
            Array2::ones((5, 4)).view(),
            empty.view_mut(),
        );
    }
}
