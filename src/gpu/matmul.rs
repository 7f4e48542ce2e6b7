//! The matmul kernel's configurations: the geometry of `shaders/matmul.wgsl`, written as the
//! constants prepended to it (one shader module per configuration; forms, epilogues and vec4
//! loads are pipeline-overridable constants of each). The autotuner (`autotune.rs`) picks one
//! configuration per matmul form and adapter among [`MATMUL_CONFIGS`]; every one of them is in
//! the parity tests.

use crate::cpu::ops::MatmulForm;

/// One geometry of the matmul kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatmulConfig {
    /// What `WGRAD_MATMUL` and the autotune cache call it.
    pub name: &'static str,
    /// Stage tiles in workgroup memory (`tiled` entry point) or read operands straight from
    /// memory (`direct`).
    pub staged: bool,
    /// Rows and columns of C per invocation (4 or 8 each).
    pub tm: u32,
    pub tn: u32,
    /// Workgroup size (x: column blocks, y: row blocks).
    pub workgroup: [u32; 2],
    /// Depth of a staged tile (multiple of 4); unused by direct configurations.
    pub bk: u32,
    /// Products whose B is read as vec4s (and A too, for A·Bᵀ) run the `subgroup` entry
    /// point, which shares A across an 8-lane subgroup with `subgroupBroadcast` (see
    /// [`subgroup_wgsl`]); everything else runs `direct`. Only on adapters whose subgroups
    /// are 8 lanes wide ([`MatmulConfig::supported`]).
    pub subgroup: bool,
}

const fn direct(name: &'static str, tm: u32, tn: u32) -> MatmulConfig {
    MatmulConfig {
        name,
        staged: false,
        tm,
        tn,
        workgroup: [8, 8],
        bk: 4,
        subgroup: false,
    }
}

const fn tiled(name: &'static str, tm: u32, tn: u32, workgroup: [u32; 2], bk: u32) -> MatmulConfig {
    MatmulConfig {
        name,
        staged: true,
        tm,
        tn,
        workgroup,
        bk,
        subgroup: false,
    }
}

/// Every configuration the autotuner may choose, the first being the default. Workgroups stay
/// within WebGPU's default limits (256 invocations, 16 KiB of workgroup memory).
///
/// On lavapipe (llvmpipe) every load from a buffer or workgroup memory is a loop over the
/// SIMD lanes, so what counts is loads per multiply-add: larger blocks per invocation win
/// there, and staging through workgroup memory saves nothing. The staged configurations are
/// for hardware GPUs. `subgroup8x32` is direct8x8 but for products from vec4s, which it runs
/// with subgroup operations ([`subgroup_wgsl`]); adapters without 8-lane subgroups never
/// see it (on lavapipe it is the fastest for every form).
pub const MATMUL_CONFIGS: [MatmulConfig; 7] = [
    direct("direct4x4", 4, 4),
    direct("direct8x4", 8, 4),
    direct("direct8x8", 8, 8),
    tiled("tiled64x64-4x4", 4, 4, [16, 16], 16),
    tiled("tiled128x64-8x4", 8, 4, [16, 16], 16),
    tiled("tiled128x128-8x8", 8, 8, [16, 16], 8),
    MatmulConfig {
        subgroup: true,
        ..direct("subgroup8x32", 8, 8)
    },
];

/// Lanes of the subgroups the `subgroup` entry point is written for, rows of C per subgroup.
pub const SUBGROUP_LANES: u32 = 8;
/// Consecutive columns of C per lane in `subgroup` (one vec4), and subgroups per workgroup
/// (stacked along the rows).
const LANE_COLUMNS: u32 = 4;
const SUBGROUPS: u32 = 4;

/// The `subgroup` entry point, appended to matmul.wgsl for subgroup configurations: any form
/// with B read as vec4s (A too, for A·Bᵀ). A workgroup of 32 is 4 subgroups of 8 lanes; subgroup s of
/// workgroup (x, y) computes rows 8·(4y + s) .. +8 and columns 32x .. +32 of C, lane l the
/// four columns 32x + 4l .. +4 of those rows, in 8 vec4 accumulators (8×8 blocks per
/// invocation spill on llvmpipe), written a row at a time by `finish4`.
///
/// Per 4 depths a lane loads one vec4 of op(A) and four of op(B) (where A is not read as
/// vec4s, in A·B and Aᵀ·B, per depth one value of A, row 8·(4y + s) + l, and one vec4 of B):
/// - A along K (A·B, A·Bᵀ): row 8·(4y + s) + l at those depths; the value at (depth d, row
///   i) is component d of lane i's vec4.
/// - A along M (Aᵀ·B): depth k + l/2, rows 4·(l % 2) .. +4 of the subgroup's; the value at
///   (d, i) is component i % 4 of lane 2d + i/4's vec4.
/// - B along K (A·Bᵀ): its four columns at the four depths, regrouped per depth.
/// - B along N (A·B, Aᵀ·B): its four columns at each depth.
///
/// The A values reach every lane by `subgroupBroadcast` with a constant lane (a register
/// permute on llvmpipe), so a lane makes 128 multiply-adds per 5 loads. Depths past K (Aᵀ·B
/// only: elsewhere K % 4 == 0 with vec4 reads) read as 0. Generated because the broadcast
/// lane must be a constant. Dispatch: (ceil(N / 32), ceil(M / 32), 1).
pub fn subgroup_wgsl() -> String {
    const XYZW: [&str; 4] = ["x", "y", "z", "w"];
    let lanes = SUBGROUP_LANES;
    // The multiply-adds of 4 depths, with the A value at (depth d, row i) from `a_value`.
    let products = |a_value: &dyn Fn(usize, u32) -> String| {
        let mut body = String::new();
        for (d, component) in XYZW.iter().enumerate() {
            for i in 0..lanes {
                body += &format!(
                    "                acc[{i}] = fma(vec4<f32>({}), b_{component}, acc[{i}]);\n",
                    a_value(d, i)
                );
            }
        }
        body
    };
    // The multiply-adds of one depth (A not read as vec4s).
    let mut one_depth = String::new();
    for i in 0..lanes {
        one_depth += &format!(
            "            acc[{i}] = fma(vec4<f32>(subgroupBroadcast(a, {i}u)), b, acc[{i}]);\n"
        );
    }
    let along_k = products(&|d, i| format!("subgroupBroadcast(a.{}, {i}u)", XYZW[d]));
    let along_m = products(&|d, i| {
        format!(
            "subgroupBroadcast(a.{}, {}u)",
            XYZW[(i % 4) as usize],
            2 * d as u32 + i / 4
        )
    });
    // Aᵀ·B's row sums: row i's from the lanes holding it, each lane keeping its own row's.
    let mut row_sums = String::new();
    for i in 0..lanes {
        let parts: Vec<String> = (0..4)
            .map(|d| {
                format!(
                    "subgroupBroadcast(a_sum.{}, {}u)",
                    XYZW[(i % 4) as usize],
                    2 * d + i / 4
                )
            })
            .collect();
        row_sums += &format!(
            "        row_sum = select(row_sum, {}, lane == {i}u);\n",
            parts.join(" + ")
        );
    }
    format!(
        r#"
// subgroup: see subgroup_wgsl in src/gpu/matmul.rs.
@compute @workgroup_size({threads})
fn subgroup(@builtin(local_invocation_index) index: u32, @builtin(workgroup_id) wid: vec3<u32>) {{
    let lane = index % {lanes}u;
    let row0 = (wid.y * {subgroups}u + index / {lanes}u) * {lanes}u;
    let col0 = wid.x * {columns}u + {lane_columns}u * lane;
    // A subgroup whose rows all lie past M has nothing to write (the output layer's 10-row
    // weight gradient leaves half of its workgroups' subgroups so).
    if (row0 >= dims.m) {{
        return;
    }}
    let last_k = dims.k - 1u;
    // A along K: this lane's row; along M: its first row and depth (rows past M repeat the
    // last vec4, and are never written).
    let a_row = min(row0 + lane, dims.m - 1u);
    let a_rows = min(row0 + 4u * (lane % 2u), dims.m - 4u);
    let a_depth = lane / 2u;
    // B along K: this lane's four columns; along N: its first column.
    let b_cols = min(vec4<u32>(col0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(dims.n - 1u));
    let b_col = min(col0, dims.n - 4u);
    var acc: array<vec4<f32>, {lanes}>;
    var row_sum = 0.0;
    var a_sum = vec4<f32>(0.0);
    if (!A_VEC4) {{
        // A one value at a time (A·B and Aᵀ·B, B along N): op(A)[row0 + lane, k].
        for (var k = 0u; k < dims.k; k++) {{
            let a = a_at(row0 + lane, k);
            let b = b_depth(k, b_col);
            row_sum += a;
{one_depth}        }}
    }} else {{
        for (var k = 0u; k < dims.k; k += 4u) {{
            var b_x: vec4<f32>;
            var b_y: vec4<f32>;
            var b_z: vec4<f32>;
            var b_w: vec4<f32>;
            if (FORM == 1u) {{
                let b0 = b_vec4_at((b_cols.x * dims.k + k) / 4u);
                let b1 = b_vec4_at((b_cols.y * dims.k + k) / 4u);
                let b2 = b_vec4_at((b_cols.z * dims.k + k) / 4u);
                let b3 = b_vec4_at((b_cols.w * dims.k + k) / 4u);
                b_x = vec4<f32>(b0.x, b1.x, b2.x, b3.x);
                b_y = vec4<f32>(b0.y, b1.y, b2.y, b3.y);
                b_z = vec4<f32>(b0.z, b1.z, b2.z, b3.z);
                b_w = vec4<f32>(b0.w, b1.w, b2.w, b3.w);
            }} else {{
                b_x = b_depth(k, b_col);
                b_y = b_depth(k + 1u, b_col);
                b_z = b_depth(k + 2u, b_col);
                b_w = b_depth(k + 3u, b_col);
            }}
            if (FORM == 2u) {{
                let depth = k + a_depth;
                let texel = (min(depth, last_k) * dims.lda + dims.a_col0 + a_rows) / 4u;
                let a = select(vec4<f32>(0.0), a_vec4_at(texel), depth < dims.k);
                a_sum += a;
{along_m}            }} else {{
                let a = a_vec4_at((a_row * dims.lda + dims.a_col0 + k) / 4u);
                row_sum += a.x + a.y + a.z + a.w;
{along_k}            }}
        }}
    }}
    if (A_VEC4 && FORM == 2u) {{
{row_sums}    }}
    // The epilogue loops over a copy of the accumulators, so that they stay in registers
    // (as finish_block does).
    var block = acc;
    for (var i = 0u; i < {lanes}u; i++) {{
        let row = row0 + i;
        if (row < dims.m && col0 < dims.n) {{
            finish4(row, col0, block[i]);
        }}
    }}
    if (EPILOGUE == 3u && wid.x == 0u && row0 + lane < dims.m) {{
        sums_out[dims.row_sums + row0 + lane] = row_sum;
    }}
}}

// op(B)[kk, col.. col+3] for B stored [K, N] (N % 4 == 0), 0 past K (where A is 0 too, but
// a non-finite value in B's last row must not make 0·∞ a NaN).
fn b_depth(kk: u32, col: u32) -> vec4<f32> {{
    let texel = (min(kk, dims.k - 1u) * dims.n + col) / 4u;
    return select(vec4<f32>(0.0), b_vec4_at(texel), kk < dims.k);
}}
"#,
        threads = lanes * SUBGROUPS,
        subgroups = SUBGROUPS,
        columns = lanes * LANE_COLUMNS,
        lane_columns = LANE_COLUMNS,
    )
}

impl MatmulConfig {
    /// The configuration called `name` in [`MATMUL_CONFIGS`].
    pub fn by_name(name: &str) -> Option<usize> {
        MATMUL_CONFIGS
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The names of all configurations, for messages.
    pub fn names() -> String {
        MATMUL_CONFIGS
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Rows of C one workgroup computes.
    pub fn tile_rows(&self) -> u32 {
        self.workgroup[1] * self.tm
    }

    /// Columns of C one workgroup computes.
    pub fn tile_cols(&self) -> u32 {
        self.workgroup[0] * self.tn
    }

    /// Whether the adapter can run this configuration (subgroups of [`SUBGROUP_LANES`]).
    pub fn supported(&self, subgroup_size: Option<u32>) -> bool {
        !self.subgroup || subgroup_size == Some(SUBGROUP_LANES)
    }

    /// Whether a product of `form` runs `subgroup`, given which operands it reads as vec4s:
    /// B always, A too or (A·B, Aᵀ·B) one value at a time.
    fn runs_subgroup(&self, form: MatmulForm, a_vec4: bool, b_vec4: bool) -> bool {
        self.subgroup && b_vec4 && (a_vec4 || form != MatmulForm::ABt)
    }

    /// The entry point for a product of `form`, with both operands read as vec4s or not.
    pub fn entry_point(&self, form: MatmulForm, a_vec4: bool, b_vec4: bool) -> &'static str {
        if self.runs_subgroup(form, a_vec4, b_vec4) {
            "subgroup"
        } else if self.staged {
            "tiled"
        } else {
            "direct"
        }
    }

    /// The text of this configuration's shader module: the constants matmul.wgsl expects,
    /// matmul.wgsl (`common` before it), and the subgroup entry point where the
    /// configuration has one.
    pub fn wgsl(&self, common: &str, matmul: &str) -> String {
        let subgroup = if self.subgroup {
            subgroup_wgsl()
        } else {
            String::new()
        };
        format!("{common}\n{}\n{matmul}{subgroup}", self.wgsl_constants())
    }

    /// The constants matmul.wgsl expects before its text.
    fn wgsl_constants(&self) -> String {
        format!(
            "// Generated for matmul configuration {}.\nconst TM: u32 = {}u;\nconst TN: u32 = {}u;\nconst WG_X: u32 = {}u;\nconst WG_Y: u32 = {}u;\nconst BK: u32 = {}u;\n",
            self.name, self.tm, self.tn, self.workgroup[0], self.workgroup[1], self.bk
        )
    }

    /// Workgroups covering C[m, n] for a product of `form` (operands read as vec4s or not).
    pub fn workgroups(
        &self,
        form: MatmulForm,
        a_vec4: bool,
        b_vec4: bool,
        m: u32,
        n: u32,
    ) -> [u32; 3] {
        if self.runs_subgroup(form, a_vec4, b_vec4) {
            let rows = SUBGROUP_LANES * SUBGROUPS;
            let cols = SUBGROUP_LANES * LANE_COLUMNS;
            return [n.div_ceil(cols), m.div_ceil(rows), 1];
        }
        [
            n.div_ceil(self.tile_cols()),
            m.div_ceil(self.tile_rows()),
            1,
        ]
    }
}

/// Products of fewer multiply-adds (M·N·K) than this are small: their time is mostly the
/// dispatch and each invocation's fixed cost, so they get a configuration of their own.
pub const SMALL_PRODUCT: usize = 1 << 18;

/// The configuration chosen for each form (indexed by [`MatmulForm::gpu_code`]), for large
/// and for small products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulChoice {
    pub large: [usize; 3],
    pub small: [usize; 3],
}

impl MatmulChoice {
    /// The same configuration for every form and size.
    pub fn all(config: usize) -> Self {
        MatmulChoice {
            large: [config; 3],
            small: [config; 3],
        }
    }

    /// The configuration for C[m, n] = op(A)·op(B) with depth k.
    pub fn get(&self, form: MatmulForm, (m, n, k): (usize, usize, usize)) -> usize {
        let form = form.gpu_code() as usize;
        if m.saturating_mul(n).saturating_mul(k) < SMALL_PRODUCT {
            self.small[form]
        } else {
            self.large[form]
        }
    }

    /// The configurations `form` may use (one, or one per size).
    pub fn configs(&self, form: MatmulForm) -> Vec<usize> {
        let form = form.gpu_code() as usize;
        let mut configs = vec![self.large[form]];
        if self.small[form] != self.large[form] {
            configs.push(self.small[form]);
        }
        configs
    }

    /// "AB direct8x8, ABt direct8x8, AtB direct8x8; small products: AB direct4x4, …".
    pub fn describe(&self) -> String {
        let list = |configs: &[usize; 3]| {
            FORMS
                .iter()
                .zip(configs)
                .map(|(f, &c)| format!("{f:?} {}", MATMUL_CONFIGS[c].name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.small == self.large {
            list(&self.large)
        } else {
            format!(
                "{}; small products: {}",
                list(&self.large),
                list(&self.small)
            )
        }
    }
}

/// The three forms in [`MatmulForm::gpu_code`] order.
pub const FORMS: [MatmulForm; 3] = [MatmulForm::AB, MatmulForm::ABt, MatmulForm::AtB];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_are_well_formed() {
        for (i, c) in MATMUL_CONFIGS.iter().enumerate() {
            assert_eq!(MatmulConfig::by_name(c.name), Some(i), "names are unique");
            assert!(c.tm == 4 || c.tm == 8, "{}: TM", c.name);
            assert!(c.tn == 4 || c.tn == 8, "{}: TN", c.name);
            assert!(
                c.workgroup[0] * c.workgroup[1] <= 256,
                "{}: invocations",
                c.name
            );
            assert!(c.bk.is_multiple_of(4) && c.bk > 0, "{}: BK", c.name);
            if c.staged {
                let bytes = 4 * c.bk * (c.tile_rows() + c.tile_cols());
                assert!(
                    bytes <= 16384,
                    "{}: {bytes} bytes of workgroup memory",
                    c.name
                );
            }
        }
        for (i, form) in FORMS.iter().enumerate() {
            assert_eq!(form.gpu_code() as usize, i);
        }
    }
}
