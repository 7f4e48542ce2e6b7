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
    /// A·Bᵀ with both operands read as vec4s runs the `subgroup_abt` entry point, which
    /// shares A across an 8-lane subgroup with `subgroupBroadcast` (see
    /// [`subgroup_abt_wgsl`]); everything else runs `direct`. Only on adapters whose
    /// subgroups are 8 lanes wide ([`MatmulConfig::supported`]).
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
/// for hardware GPUs. `subgroup8x24` is direct8x8 but for A·Bᵀ from vec4s, which it runs
/// with subgroup operations ([`subgroup_abt_wgsl`]); adapters without 8-lane subgroups never
/// see it (on lavapipe it trains MNIST's MLPs 1.15–1.25× faster than direct8x8).
pub const MATMUL_CONFIGS: [MatmulConfig; 7] = [
    direct("direct4x4", 4, 4),
    direct("direct8x4", 8, 4),
    direct("direct8x8", 8, 8),
    tiled("tiled64x64-4x4", 4, 4, [16, 16], 16),
    tiled("tiled128x64-8x4", 8, 4, [16, 16], 16),
    tiled("tiled128x128-8x8", 8, 8, [16, 16], 8),
    MatmulConfig {
        subgroup: true,
        ..direct("subgroup8x24", 8, 8)
    },
];

/// Lanes of the subgroups `subgroup_abt` is written for, rows of C per subgroup.
pub const SUBGROUP_LANES: u32 = 8;
/// Columns of C per lane in `subgroup_abt` (lane l owns columns l, l + 8, l + 16 of its
/// subgroup's 24), and subgroups per workgroup (stacked along the rows).
const SUBGROUP_COLUMNS: u32 = 3;
const SUBGROUPS: u32 = 4;

/// The `subgroup_abt` entry point, appended to matmul.wgsl for subgroup configurations:
/// C = A·Bᵀ with A and B read as vec4s along K. A workgroup of 32 is 4 subgroups of 8
/// lanes; subgroup s of workgroup (x, y) computes rows 8·(4y + s) .. +8 and columns
/// 24x .. +24. Per 4 depths a lane loads one vec4 of A (row 8·(4y + s) + lane) and three of
/// B (its three columns); the A values reach every lane by `subgroupBroadcast` with a
/// constant lane (a register permute on llvmpipe), so a lane makes 96 multiply-adds per 4
/// loads, into 24 accumulators (8×8 blocks need 64 and spill there). Generated because the
/// broadcast lane must be a constant. Dispatch: (ceil(N / 24), ceil(M / 32), 1).
pub fn subgroup_abt_wgsl() -> String {
    let lanes = SUBGROUP_LANES;
    let mut body = String::new();
    for d in ["x", "y", "z", "w"] {
        body += &format!("        let b_{d} = vec3<f32>(b0.{d}, b1.{d}, b2.{d});\n");
        for i in 0..lanes {
            body += &format!(
                "        acc[{i}] = fma(vec3<f32>(subgroupBroadcast(a.{d}, {i}u)), b_{d}, acc[{i}]);\n"
            );
        }
    }
    format!(
        r#"
// subgroup_abt: see subgroup_abt_wgsl in src/gpu/matmul.rs.
@compute @workgroup_size({threads})
fn subgroup_abt(@builtin(local_invocation_index) index: u32, @builtin(workgroup_id) wid: vec3<u32>) {{
    let lane = index % {lanes}u;
    let row0 = (wid.y * {subgroups}u + index / {lanes}u) * {lanes}u;
    let col0 = wid.x * {columns}u + lane;
    let a_row = min(row0 + lane, dims.m - 1u);
    let last = dims.n - 1u;
    let b_rows = vec3<u32>(min(col0, last), min(col0 + {lanes}u, last), min(col0 + {twice}u, last));
    var acc: array<vec3<f32>, {lanes}>;
    var row_sum = 0.0;
    for (var k = 0u; k < dims.k; k += 4u) {{
        let a = a_vec4_at((a_row * dims.lda + dims.a_col0 + k) / 4u);
        let b0 = b_vec4_at((b_rows.x * dims.k + k) / 4u);
        let b1 = b_vec4_at((b_rows.y * dims.k + k) / 4u);
        let b2 = b_vec4_at((b_rows.z * dims.k + k) / 4u);
        row_sum += a.x + a.y + a.z + a.w;
{body}    }}
    // The epilogue loops over a copy of the accumulators, so that they stay in registers
    // (as finish_block does).
    var block = acc;
    for (var i = 0u; i < {lanes}u; i++) {{
        let row = row0 + i;
        for (var j = 0u; j < {per_lane}u; j++) {{
            let col = col0 + {lanes}u * j;
            if (row < dims.m && col < dims.n) {{
                finish(row, col, block[i][j]);
            }}
        }}
    }}
    if (EPILOGUE == 3u && wid.x == 0u && row0 + lane < dims.m) {{
        sums_out[dims.row_sums + row0 + lane] = row_sum;
    }}
}}
"#,
        threads = lanes * SUBGROUPS,
        subgroups = SUBGROUPS,
        columns = lanes * SUBGROUP_COLUMNS,
        twice = 2 * lanes,
        per_lane = SUBGROUP_COLUMNS,
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

    /// Whether a product of `form`, reading A and B as vec4s or not, runs `subgroup_abt`.
    fn runs_subgroup_abt(&self, form: MatmulForm, vec4s: bool) -> bool {
        self.subgroup && form == MatmulForm::ABt && vec4s
    }

    /// The entry point for a product of `form`, with both operands read as vec4s or not.
    pub fn entry_point(&self, form: MatmulForm, vec4s: bool) -> &'static str {
        if self.runs_subgroup_abt(form, vec4s) {
            "subgroup_abt"
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
            subgroup_abt_wgsl()
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
    pub fn workgroups(&self, form: MatmulForm, vec4s: bool, m: u32, n: u32) -> [u32; 3] {
        if self.runs_subgroup_abt(form, vec4s) {
            let rows = SUBGROUP_LANES * SUBGROUPS;
            let cols = SUBGROUP_LANES * SUBGROUP_COLUMNS;
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
