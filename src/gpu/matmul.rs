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
}

const fn direct(name: &'static str, tm: u32, tn: u32) -> MatmulConfig {
    MatmulConfig {
        name,
        staged: false,
        tm,
        tn,
        workgroup: [8, 8],
        bk: 4,
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
    }
}

/// Every configuration the autotuner may choose, the first being the default. Workgroups stay
/// within WebGPU's default limits (256 invocations, 16 KiB of workgroup memory).
///
/// On lavapipe (llvmpipe) every load from a buffer or workgroup memory is a loop over the
/// SIMD lanes, so what counts is loads per multiply-add: larger blocks per invocation win
/// there, and staging through workgroup memory saves nothing. The staged configurations are
/// for hardware GPUs.
pub const MATMUL_CONFIGS: [MatmulConfig; 6] = [
    direct("direct4x4", 4, 4),
    direct("direct8x4", 8, 4),
    direct("direct8x8", 8, 8),
    tiled("tiled64x64-4x4", 4, 4, [16, 16], 16),
    tiled("tiled128x64-8x4", 8, 4, [16, 16], 16),
    tiled("tiled128x128-8x8", 8, 8, [16, 16], 8),
];

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

    pub fn entry_point(&self) -> &'static str {
        if self.staged { "tiled" } else { "direct" }
    }

    /// The constants matmul.wgsl expects before its text.
    pub fn wgsl_constants(&self) -> String {
        format!(
            "// Generated for matmul configuration {}.\nconst TM: u32 = {}u;\nconst TN: u32 = {}u;\nconst WG_X: u32 = {}u;\nconst WG_Y: u32 = {}u;\nconst BK: u32 = {}u;\n",
            self.name, self.tm, self.tn, self.workgroup[0], self.workgroup[1], self.bk
        )
    }

    /// Workgroups covering C[m, n].
    pub fn workgroups(&self, m: u32, n: u32) -> [u32; 3] {
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
