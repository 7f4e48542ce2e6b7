//! The kernel families of `shaders/`: their bind-group layouts, their uniform structs (twins
//! of the WGSL structs), their pipelines (one per variant, made once and cached) and the
//! builders of [`Dispatch`]es. Every GPU launch in wgrad is made here.

use super::dense::{self, DenseTensors, LayerDropout};
use super::device::GpuContext;
use super::matmul::{MATMUL_CONFIGS, MatmulChoice};
use super::texture::{self, Texels, TextureCopy};
use crate::backend::StepParams;
use crate::cpu::ops::MatmulForm;
use crate::data::byte_of;
use crate::error::{Result, WgradError};
use crate::model::{Activation, Loss, Optimizer};
use bytemuck::{Pod, Zeroable};
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::ops::Range;
use std::time::Instant;

const COMMON: &str = include_str!("../../shaders/common.wgsl");
const MATMUL: &str = include_str!("../../shaders/matmul.wgsl");
const WORKGROUP_REDUCE: &str = include_str!("../../shaders/workgroup_reduce.wgsl");

/// Invocations per workgroup of the one-dimensional kernels.
const LINEAR_GROUP: u32 = 64;

/// Blocks of [`LINEAR_GROUP`] parameters each optimizer workgroup updates (`ROUNDS` in
/// optimizer.wgsl).
const OPTIMIZER_ROUNDS: u32 = 8;
const MAX_GROUPS: u32 = 65_535;

/// `Step` in common.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct StepUniform {
    rows: u32,
    batch_start: u32,
    step: u32,
    seed: u32,
    training: u32,
    learning_rate: f32,
    bias_correction1: f32,
    bias_correction2: f32,
    clip_norm: f32,
    _pad: [u32; 3],
}

impl From<&StepParams> for StepUniform {
    fn from(s: &StepParams) -> Self {
        StepUniform {
            rows: s.rows as u32,
            batch_start: s.batch_start as u32,
            step: s.step,
            seed: s.seed,
            training: u32::from(s.training),
            learning_rate: s.learning_rate,
            bias_correction1: s.bias_correction1,
            bias_correction2: s.bias_correction2,
            clip_norm: s.clip_norm,
            _pad: [0; 3],
        }
    }
}

/// Bytes between consecutive steps' uniforms in a step buffer: dynamic uniform offsets must
/// be multiples of `min_uniform_buffer_offset_alignment`, which is at most 256.
pub const STEP_STRIDE: u64 = 256;

/// The step uniforms of consecutive steps, laid out at [`STEP_STRIDE`] for one write.
pub fn step_buffer_bytes(steps: &[StepParams]) -> Vec<u8> {
    let mut bytes = vec![0u8; steps.len() * STEP_STRIDE as usize];
    for (chunk, step) in bytes.chunks_mut(STEP_STRIDE as usize).zip(steps) {
        let uniform = StepUniform::from(step);
        let raw = bytemuck::bytes_of(&uniform);
        chunk[..raw.len()].copy_from_slice(raw);
    }
    bytes
}

/// A texture binding: `texture`, or the stand-in where the kernel reads none.
fn texture_binding<'a>(
    texture: Option<&'a wgpu::TextureView>,
    stand_in: &'a wgpu::TextureView,
) -> wgpu::BindingResource<'a> {
    wgpu::BindingResource::TextureView(texture.unwrap_or(stand_in))
}

/// Binding 0 of every kernel: one step's uniform, chosen by the dynamic offset.
fn step_binding(step: &wgpu::Buffer) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer: step,
        offset: 0,
        size: NonZeroU64::new(std::mem::size_of::<StepUniform>() as u64),
    })
}

/// `Dims` in matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct MatmulDims {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub layer: u32,
    pub dropout_rate: f32,
    /// A as stored ([M, K], or [K, M] for `AtB`) is columns `a_col0..` of a row-major matrix
    /// of `lda` columns; 0: A is the whole matrix.
    pub lda: u32,
    pub a_col0: u32,
    /// C[M, N] is columns `c_col0..` of a row-major matrix of `ldc` columns; 0: C is the
    /// whole matrix.
    pub ldc: u32,
    pub c_col0: u32,
    /// 1: C += op(A)·op(B), the epilogue applied to the sum.
    pub accumulate: u32,
    /// `Epilogue::WithRowSums`: where the row sums start in their binding, in elements.
    pub row_sums: u32,
    /// 1: C is a whole matrix stored in the tiled layout ([`tiled_index`]); only for products
    /// without an epilogue operand.
    pub c_tiled: u32,
}

impl MatmulDims {
    /// C[m, n] with inner dimension k, whole matrices, no dropout.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        MatmulDims {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            layer: 0,
            dropout_rate: 0.0,
            lda: 0,
            a_col0: 0,
            ldc: 0,
            c_col0: 0,
            accumulate: 0,
            row_sums: 0,
            c_tiled: 0,
        }
    }

    /// The dims with the strides of whole matrices filled in where they are 0.
    fn resolved(self, form: MatmulForm) -> Self {
        let a_width = if form == MatmulForm::AtB {
            self.m
        } else {
            self.k
        };
        MatmulDims {
            lda: if self.lda == 0 { a_width } else { self.lda },
            ldc: if self.ldc == 0 { self.n } else { self.ldc },
            ..self
        }
    }

    pub fn shape(&self) -> (usize, usize, usize) {
        (self.m as usize, self.n as usize, self.k as usize)
    }
}

/// Four u32: the `Dims` of output.wgsl (n, batch), reduce.wgsl (m, n, first out) and
/// gather.wgsl (x width, y width, first row, end row).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SmallDims([u32; 4]);

/// `Hyper` in optimizer.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct OptimizerHyper {
    len: u32,
    l1: f32,
    l2: f32,
    h1: f32,
    h2: f32,
    eps: f32,
    grad_scale: f32,
    tensors: u32,
}

/// Most tensors one optimizer dispatch covers (`MAX_TENSORS` in optimizer.wgsl).
pub const MAX_TENSORS: usize = 512;

/// One parameter tensor, as the optimizer sees it (`Regions` in optimizer.wgsl).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Its elements in the vectors the dispatch updates; it starts at a multiple of 64.
    pub start: usize,
    pub end: usize,
    /// Whether the L1/L2 penalties apply (weights, not biases).
    pub regularized: bool,
    /// For a weight whose gradient is stored tiled ([`tiled_index`]), its columns (a multiple
    /// of 8); 0 where the gradient is row-major like the parameters.
    pub tiled_columns: usize,
}

/// `Regions` in optimizer.wgsl: (start, end, regularized, tiled columns) of each tensor,
/// padded to MAX_TENSORS.
fn regions_uniform(regions: &[Region]) -> Vec<u32> {
    let mut words = vec![0u32; 4 * MAX_TENSORS];
    for (slot, region) in words.chunks_mut(4).zip(regions) {
        slot[0] = region.start as u32;
        slot[1] = region.end as u32;
        slot[2] = u32::from(region.regularized);
        slot[3] = region.tiled_columns as u32;
    }
    words
}

/// Where element (row, col) of a `rows` × `cols` matrix lies in the tiled layout of weight
/// gradients on software adapters (`tiled_index` in common.wgsl, which documents it).
pub fn tiled_index(row: usize, col: usize, rows: usize, cols: usize) -> usize {
    let block = row / 8;
    let height = 8.min(rows - 8 * block);
    let tile = col / 32;
    let width = 32.min(cols - 32 * tile);
    8 * block * cols + height * 32 * tile + (row % 8) * width + col % 32
}

/// One matmul launch: C = op(A)·op(B) with an epilogue, and the buffers it works on.
#[derive(Clone, Copy)]
pub struct Product<'a> {
    pub form: MatmulForm,
    pub epilogue: Epilogue,
    pub dims: MatmulDims,
    pub a: View<'a>,
    pub b: View<'a>,
    /// The bias for `BiasActivation`, the layer input for `ActivationGrad`.
    pub aux: Option<View<'a>>,
    pub c: View<'a>,
    /// Where `WithRowSums` writes the row sums.
    pub sums: Option<View<'a>>,
}

impl<'a> Product<'a> {
    /// C[m, n] = op(A)·op(B) of whole matrices, no epilogue.
    pub fn plain(
        form: MatmulForm,
        (m, n, k): (usize, usize, usize),
        a: View<'a>,
        b: View<'a>,
        c: View<'a>,
    ) -> Self {
        Product {
            form,
            epilogue: Epilogue::None,
            dims: MatmulDims::new(m, n, k),
            a,
            b,
            aux: None,
            c,
            sums: None,
        }
    }
}

/// What the matmul kernel does with each result (`EPILOGUE` in matmul.wgsl).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Epilogue {
    None,
    /// `f(acc + bias[n])`, then dropout; aux = bias.
    BiasActivation(Activation),
    /// acc · f'(input), dropout undone; aux = the layer input.
    ActivationGrad(Activation),
    /// C as is, and the row sums of op(A) written to `Product::sums` from
    /// `MatmulDims::row_sums` on: the weight gradient dzᵀ·x with the bias gradient Σ_rows dz.
    WithRowSums,
}

impl Epilogue {
    fn code(self) -> (u32, Activation) {
        match self {
            Epilogue::None => (0, Activation::Linear),
            Epilogue::BiasActivation(a) => (1, a),
            Epilogue::ActivationGrad(a) => (2, a),
            Epilogue::WithRowSums => (3, Activation::Linear),
        }
    }
}

/// A matmul pipeline: configuration (index into [`MATMUL_CONFIGS`]), form, epilogue, and
/// whether A and B are read and C (with the epilogue's operand) written as vec4s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatmulVariant {
    pub config: usize,
    pub form: MatmulForm,
    pub epilogue: Epilogue,
    pub a_vec4: bool,
    pub b_vec4: bool,
    /// Read the vec4s of A (B) from its texture copy.
    pub a_texture: bool,
    pub b_texture: bool,
    /// Write C, and read what the epilogue adds or reads, four columns at a time.
    pub c_vec4: bool,
    /// Read the epilogue's vec4s from its operand's texture copy.
    pub aux_texture: bool,
}

impl MatmulVariant {
    /// The variant for `product` in configuration `config`: vec4 reads where the operand's
    /// contiguous dimension, its offset and (for A) its stride and first column are
    /// multiples of 4, from the operand's texture copy where it has one; vec4 writes where
    /// C's width, stride, first column and offset are (and the epilogue operand's offset),
    /// the epilogue operand then from its texture copy where it has one.
    pub fn for_product(config: usize, product: &Product) -> Self {
        let Product {
            form,
            epilogue,
            a,
            b,
            aux,
            c,
            ..
        } = *product;
        let dims = product.dims.resolved(form);
        let (m, n, k) = dims.shape();
        let a_contiguous = if form == MatmulForm::AtB { m } else { k };
        let b_contiguous = if form == MatmulForm::ABt { k } else { n };
        let fours = |values: &[usize]| values.iter().all(|v| v.is_multiple_of(4));
        let a_vec4 = fours(&[
            a_contiguous,
            a.offset,
            dims.lda as usize,
            dims.a_col0 as usize,
        ]);
        let b_vec4 = fours(&[b_contiguous, b.offset]);
        let c_vec4 = fours(&[
            n,
            dims.ldc as usize,
            dims.c_col0 as usize,
            c.offset,
            aux.map_or(0, |aux| aux.offset),
        ]);
        MatmulVariant {
            config,
            form,
            epilogue,
            a_vec4,
            b_vec4,
            a_texture: a_vec4 && a.texture.is_some(),
            b_texture: b_vec4 && b.texture.is_some(),
            c_vec4,
            aux_texture: c_vec4 && aux.is_some_and(|aux| aux.texture.is_some()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PipelineKey {
    Matmul(MatmulVariant),
    Loss(Loss, Activation),
    Probabilities(Loss, Activation),
    SumSquares,
    /// With x's rows gathered four columns at a time (`X_VEC4`), written in packs of
    /// eight where `wide` ([`packing_wgsl`]).
    Gather {
        format: DataFormat,
        x_vec4: bool,
        wide: bool,
    },
    /// `wide`: the vectors packed in 64-bit words ([`packing_wgsl`]).
    Optimizer {
        code: u32,
        clipped: bool,
        wide: bool,
    },
    ClipFactor {
        wide: bool,
    },
    Transpose,
}

impl PipelineKey {
    /// The kernel family, as the profile names it.
    fn family(self) -> &'static str {
        match self {
            PipelineKey::Matmul(_) => "matmul",
            PipelineKey::Loss(..) => "loss",
            PipelineKey::Probabilities(..) => "probabilities",
            PipelineKey::SumSquares => "sum_squares",
            PipelineKey::Gather { .. } => "gather",
            PipelineKey::Optimizer { .. } | PipelineKey::ClipFactor { .. } => "optimizer",
            PipelineKey::Transpose => "transpose",
        }
    }
}

/// How a resident data set is stored (`SOURCE_FORMAT` in gather.wgsl).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataFormat {
    F32,
    /// Bytes k standing for k / 255, four to a u32.
    Bytes,
}

impl DataFormat {
    /// The most compact format that holds every one of `values` exactly.
    pub fn of(values: &[f32]) -> DataFormat {
        if values.iter().all(|&v| byte_of(v).is_some()) {
            DataFormat::Bytes
        } else {
            DataFormat::F32
        }
    }

    /// The words to upload for `values` in this format (which must hold them).
    pub fn encode(self, values: &[f32]) -> Vec<u32> {
        match self {
            DataFormat::Bytes => values
                .chunks(4)
                .map(|chunk| {
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| {
                            u32::from(byte_of(v).expect("the format holds the values")) << (8 * i)
                        })
                        .sum()
                })
                .collect(),
            DataFormat::F32 => values.iter().map(|v| v.to_bits()).collect(),
        }
    }

    /// Bytes one row of `width` values takes.
    pub fn row_bytes(self, width: usize) -> usize {
        match self {
            DataFormat::Bytes => width,
            DataFormat::F32 => width * 4,
        }
    }
}

/// A part of a buffer, in f32/u32 elements, and its texture copy where it has one (see
/// texture.rs; only matmul operands have them).
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: usize,
    pub len: usize,
    pub texture: Option<&'a wgpu::TextureView>,
}

impl<'a> View<'a> {
    pub fn whole(buffer: &'a wgpu::Buffer) -> Self {
        View {
            buffer,
            offset: 0,
            len: (buffer.size() / 4) as usize,
            texture: None,
        }
    }

    /// Elements `offset..offset + len` of `buffer`.
    pub fn part(buffer: &'a wgpu::Buffer, offset: usize, len: usize) -> Self {
        View {
            buffer,
            offset,
            len,
            texture: None,
        }
    }

    /// The view with the texture copy `texture`; with `None`, as it was.
    pub fn with_texture(self, texture: Option<&'a TextureCopy>) -> Self {
        View {
            texture: texture.map(TextureCopy::view).or(self.texture),
            ..self
        }
    }

    fn resource(&self) -> wgpu::BindingResource<'a> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer,
            offset: (self.offset * 4) as u64,
            size: NonZeroU64::new((self.len.max(1) * 4) as u64),
        })
    }

    /// The view as vec4s: its length rounded down to a multiple of 4.
    fn vec4_resource(&self) -> wgpu::BindingResource<'a> {
        View {
            len: (self.len / 4 * 4).max(4),
            ..*self
        }
        .resource()
    }
}

/// One recorded kernel launch: replayed as is every step, nothing created on the way.
pub struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    /// The kernel family (matmul, loss, gather, optimizer, …), for the profile.
    pub family: &'static str,
}

impl Dispatch {
    /// Records the launch for the step whose uniform sits at entry `step` of the step buffer.
    pub fn record(&self, pass: &mut wgpu::ComputePass, step: usize) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[(step as u64 * STEP_STRIDE) as u32]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

#[derive(Clone, Copy)]
enum Slot {
    Uniform,
    Read,
    ReadWrite,
    /// A read-only rgba32float storage texture (texture.rs).
    Texture,
    /// A write-only one.
    TextureWrite,
}

/// The kernels written against [`packing_wgsl`]'s prelude.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PackedKernel {
    Gather,
    Optimizer,
}

/// A kernel family's bind-group layout and pipeline layout.
struct Layout {
    bind_group: wgpu::BindGroupLayout,
    pipeline: wgpu::PipelineLayout,
}

impl Layout {
    fn new(ctx: &GpuContext, name: &str, slots: &[Slot]) -> Self {
        let entries: Vec<_> = slots
            .iter()
            .enumerate()
            .map(|(i, slot)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match slot {
                    Slot::Texture | Slot::TextureWrite => wgpu::BindingType::StorageTexture {
                        access: if matches!(slot, Slot::Texture) {
                            wgpu::StorageTextureAccess::ReadOnly
                        } else {
                            wgpu::StorageTextureAccess::WriteOnly
                        },
                        format: wgpu::TextureFormat::Rgba32Float,
                        view_dimension: wgpu::TextureViewDimension::D2,
                    },
                    _ => wgpu::BindingType::Buffer {
                        ty: match slot {
                            Slot::Uniform => wgpu::BufferBindingType::Uniform,
                            Slot::Read => wgpu::BufferBindingType::Storage { read_only: true },
                            _ => wgpu::BufferBindingType::Storage { read_only: false },
                        },
                        // Binding 0 is the step uniform, one entry per step of a submission.
                        has_dynamic_offset: i == 0,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let device = &ctx.device;
        let bind_group = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(name),
            entries: &entries,
        });
        let pipeline = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(name),
            bind_group_layouts: &[Some(&bind_group)],
            immediate_size: 0,
        });
        Layout {
            bind_group,
            pipeline,
        }
    }
}

fn module(ctx: &GpuContext, name: &str, source: &str) -> wgpu::ShaderModule {
    ctx.device
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        })
}

/// What building pipelines has cost so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BuildStats {
    pub pipelines: usize,
    pub seconds: f64,
}

/// All kernel families of one device, with their pipelines made on first use.
pub struct Kernels {
    matmul: Layout,
    output: Layout,
    reduce: Layout,
    gather: Layout,
    optimizer: Layout,
    transpose: Layout,
    /// One module per matmul configuration, made on first use.
    matmul_modules: HashMap<usize, wgpu::ShaderModule>,
    output_module: wgpu::ShaderModule,
    reduce_module: wgpu::ShaderModule,
    /// gather.wgsl and optimizer.wgsl with each packing (keyed by `wide`), made on first use.
    packed_modules: HashMap<(PackedKernel, bool), wgpu::ShaderModule>,
    transpose_module: wgpu::ShaderModule,
    pipelines: HashMap<PipelineKey, wgpu::ComputePipeline>,
    /// The matmul configuration of each form; chosen on first use (see `autotune.rs`).
    matmul_choice: Option<MatmulChoice>,
    /// 16 bytes bound where a read-only binding is not used, and where a read-write one is
    /// not (a buffer may not be both in one dispatch).
    dummy: wgpu::Buffer,
    dummy_rw: wgpu::Buffer,
    /// 1×1 texture bound where a matmul reads no texture copy.
    dummy_texture: wgpu::TextureView,
    /// Whether the scheduler gives matmul operands texture copies (texture.rs).
    pub textures: bool,
    /// Whether the optimizer's vectors and the gathered batch are packed in 64-bit words
    /// (`GpuContext::wide_words`).
    pub wide_words: bool,
    build: BuildStats,
}

impl Kernels {
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        use Slot::*;
        let with_common =
            |name: &str, source: &str| module(ctx, name, &format!("{COMMON}\n{source}"));
        let with_reductions = |name: &str, source: &str| {
            module(
                ctx,
                name,
                &format!("{COMMON}\n{WORKGROUP_REDUCE}\n{source}"),
            )
        };
        let kernels = Kernels {
            matmul: Layout::new(
                ctx,
                "matmul",
                &[
                    Uniform, Uniform, Read, Read, Read, ReadWrite, Read, Read, ReadWrite, Texture,
                    Texture, ReadWrite, Read, Texture,
                ],
            ),
            output: Layout::new(
                ctx,
                "output",
                &[
                    Uniform, Uniform, Read, Read, ReadWrite, ReadWrite, ReadWrite,
                ],
            ),
            reduce: Layout::new(ctx, "reduce", &[Uniform, Uniform, Read, ReadWrite]),
            gather: Layout::new(
                ctx,
                "gather",
                &[
                    Uniform, Uniform, Read, Read, Read, ReadWrite, ReadWrite, Read, ReadWrite,
                ],
            ),
            optimizer: Layout::new(
                ctx,
                "optimizer",
                &[
                    Uniform, Uniform, Read, ReadWrite, ReadWrite, ReadWrite, Read, Uniform,
                    ReadWrite,
                ],
            ),
            transpose: Layout::new(ctx, "transpose", &[Uniform, Uniform, Texture, TextureWrite]),
            matmul_modules: HashMap::new(),
            output_module: with_common("output", include_str!("../../shaders/output.wgsl")),
            reduce_module: with_reductions("reduce", include_str!("../../shaders/reduce.wgsl")),
            transpose_module: with_common(
                "transpose",
                include_str!("../../shaders/transpose.wgsl"),
            ),
            packed_modules: HashMap::new(),
            pipelines: HashMap::new(),
            matmul_choice: None,
            dummy: ctx.storage("unused binding", 4)?,
            dummy_rw: ctx.storage("unused read-write binding", 4)?,
            dummy_texture: Texels::new(ctx, "unused texture binding", 4)?.view,
            textures: ctx.textures,
            wide_words: ctx.wide_words,
            build: BuildStats::default(),
        };
        ctx.check()?;
        Ok(kernels)
    }

    /// The matmul configuration of each form, once chosen.
    pub fn matmul_choice(&self) -> Option<MatmulChoice> {
        self.matmul_choice
    }

    /// Sets the matmul configuration of each form (the autotuner's or a forced one).
    pub fn set_matmul_choice(&mut self, choice: MatmulChoice) {
        self.matmul_choice = Some(choice);
    }

    /// The configuration of each form and size, chosen (autotuned, read from the cache or
    /// forced by `WGRAD_MATMUL`) on first use.
    pub(crate) fn matmul_choice_or_tune(&mut self, ctx: &GpuContext) -> Result<MatmulChoice> {
        if self.matmul_choice.is_none() {
            let choice = super::autotune::choose(ctx, self)?;
            self.matmul_choice = Some(choice);
        }
        Ok(self.matmul_choice.expect("chosen above"))
    }

    /// Pipelines built so far and the time spent building them.
    pub fn build_stats(&self) -> BuildStats {
        self.build
    }

    /// Builds every pipeline a model's training step and inference use at batch size
    /// `batch`, so that all shader compilation happens before the first step; `blocks[i]`
    /// are layer i's weight blocks ([`dense::weight_blocks`]).
    pub fn prepare(
        &mut self,
        ctx: &GpuContext,
        spec: &crate::model::Sequential,
        blocks: &[Vec<Range<usize>>],
        batch: usize,
    ) -> Result<()> {
        let loss = spec.resolved_loss();
        let output = spec.output_activation();
        let (x_vec4, wide) = self.gather_packing(spec.input_dim, &[0]);
        let gather = |format| PipelineKey::Gather {
            format,
            x_vec4,
            wide,
        };
        let mut keys = vec![
            gather(DataFormat::F32),
            gather(DataFormat::Bytes),
            PipelineKey::Loss(loss, output),
            PipelineKey::Probabilities(loss, output),
            PipelineKey::SumSquares,
            PipelineKey::Optimizer {
                code: spec.optimizer.gpu_code(),
                clipped: false,
                wide: self.wide_words,
            },
            PipelineKey::Optimizer {
                code: spec.optimizer.gpu_code(),
                clipped: true,
                wide: self.wide_words,
            },
        ];
        if self.textures {
            keys.push(PipelineKey::Transpose);
        }
        // The products of the scheduler's step, made on a stand-in buffer: a variant depends on
        // the buffers only through their offsets, multiples of 4 here as in the scheduler, and
        // whether they have texture copies (where one would be too large for a texture, its
        // pipeline is built when first used).
        let stand_in = self.dummy.clone();
        let stand_in_texture = self.dummy_texture.clone();
        let view = |offset: usize, len: usize| View::part(&stand_in, offset, len);
        let choice = self.matmul_choice_or_tune(ctx)?;
        let last = spec.layers.len() - 1;
        for (i, layer) in spec.layers.iter().enumerate() {
            let (units, fan_in) = (layer.units, spec.fan_in(i));
            let activation = if i == last {
                Activation::Linear
            } else {
                layer.activation
            };
            let no_dropout = LayerDropout {
                layer: i,
                rate: 0.0,
            };
            // The texture copies the scheduler gives this layer's operands at this batch size.
            let [input_copy, grad_copy] =
                texture::operand_copies(self.textures, batch, units, fan_in);
            let texture = |copied: bool| copied.then_some(&stand_in_texture);
            let operand = |len: usize, copied: bool| View {
                texture: texture(copied),
                ..view(0, len)
            };
            let tensors = DenseTensors {
                weight: operand(units * fan_in, input_copy && blocks[i].len() == 1),
                bias: view(0, units),
                fan_in,
                blocks: &blocks[i],
                tiled: false,
            };
            let (x, dz) = (
                operand(batch * fan_in, input_copy),
                operand(batch * units, grad_copy),
            );
            let mut products = dense::forward(tensors, batch, activation, no_dropout, x, dz);
            if input_copy
                && grad_copy
                && dense::transposed_weight_gradient(&choice, batch, units, fan_in, &blocks[i])
            {
                products.extend(dense::grad_params_transposed(tensors, batch, dz, x));
            } else {
                products.extend(dense::grad_params(tensors, batch, dz, x));
            }
            if i > 0 {
                let below = spec.layers[i - 1].activation;
                products.extend(dense::grad_input(
                    tensors, batch, dz, x, below, no_dropout, x,
                ));
            }
            for p in products {
                let config = choice.get(p.form, p.dims.shape());
                keys.push(PipelineKey::Matmul(MatmulVariant::for_product(config, &p)));
            }
        }
        for key in keys {
            self.pipeline(ctx, key)?;
        }
        Ok(())
    }

    fn layout(&self, key: PipelineKey) -> &Layout {
        match key {
            PipelineKey::Matmul(_) => &self.matmul,
            PipelineKey::Loss(..) | PipelineKey::Probabilities(..) => &self.output,
            PipelineKey::SumSquares => &self.reduce,
            PipelineKey::Gather { .. } => &self.gather,
            PipelineKey::Optimizer { .. } | PipelineKey::ClipFactor { .. } => &self.optimizer,
            PipelineKey::Transpose => &self.transpose,
        }
    }

    /// The module, entry point and constants of a pipeline.
    fn stage(
        &mut self,
        ctx: &GpuContext,
        key: PipelineKey,
    ) -> (wgpu::ShaderModule, &'static str, Vec<(&'static str, f64)>) {
        match key {
            PipelineKey::Matmul(v) => {
                let config = MATMUL_CONFIGS[v.config];
                let module = self
                    .matmul_modules
                    .entry(v.config)
                    .or_insert_with(|| module(ctx, config.name, &config.wgsl(COMMON, MATMUL)))
                    .clone();
                let (code, act) = v.epilogue.code();
                let constants = vec![
                    ("FORM", v.form.gpu_code() as f64),
                    ("EPILOGUE", code as f64),
                    ("ACTIVATION", act.gpu_code() as f64),
                    ("A_VEC4", f64::from(u8::from(v.a_vec4))),
                    ("B_VEC4", f64::from(u8::from(v.b_vec4))),
                    ("A_TEXTURE", f64::from(u8::from(v.a_texture))),
                    ("B_TEXTURE", f64::from(u8::from(v.b_texture))),
                    ("C_VEC4", f64::from(u8::from(v.c_vec4))),
                    ("AUX_TEXTURE", f64::from(u8::from(v.aux_texture))),
                ];
                (
                    module,
                    config.entry_point(v.form, v.a_vec4, v.b_vec4),
                    constants,
                )
            }
            PipelineKey::Loss(loss, act) | PipelineKey::Probabilities(loss, act) => {
                let entry = if matches!(key, PipelineKey::Loss(..)) {
                    "loss_and_grad"
                } else {
                    "probabilities"
                };
                let constants = vec![
                    ("LOSS", loss.gpu_code() as f64),
                    (
                        "OUTPUT_ACTIVATION",
                        loss.output_activation(act).gpu_code() as f64,
                    ),
                ];
                (self.output_module.clone(), entry, constants)
            }
            PipelineKey::SumSquares => (self.reduce_module.clone(), "sum_squares", vec![]),
            PipelineKey::Gather {
                format,
                x_vec4,
                wide,
            } => {
                let code = match format {
                    DataFormat::F32 => 0.0,
                    DataFormat::Bytes => 1.0,
                };
                (
                    self.packed_module(ctx, PackedKernel::Gather, wide),
                    "main",
                    vec![
                        ("SOURCE_FORMAT", code),
                        ("X_VEC4", f64::from(u8::from(x_vec4))),
                    ],
                )
            }
            PipelineKey::Optimizer {
                code,
                clipped,
                wide,
            } => (
                self.packed_module(ctx, PackedKernel::Optimizer, wide),
                "main",
                vec![
                    ("OPTIMIZER", code as f64),
                    ("ROUNDS", f64::from(OPTIMIZER_ROUNDS)),
                    ("CLIPPED", f64::from(u8::from(clipped))),
                ],
            ),
            PipelineKey::ClipFactor { wide } => (
                self.packed_module(ctx, PackedKernel::Optimizer, wide),
                "clip_factor",
                vec![("CLIPPED", 1.0)],
            ),
            PipelineKey::Transpose => (self.transpose_module.clone(), "main", vec![]),
        }
    }

    /// A kernel written against a packing prelude ([`packing_wgsl`]), built once per packing.
    fn packed_module(
        &mut self,
        ctx: &GpuContext,
        kernel: PackedKernel,
        wide: bool,
    ) -> wgpu::ShaderModule {
        self.packed_modules
            .entry((kernel, wide))
            .or_insert_with(|| {
                let packing = packing_wgsl(wide);
                let (name, source) = match kernel {
                    PackedKernel::Gather => (
                        "gather",
                        format!(
                            "{COMMON}\n{packing}\n{}",
                            include_str!("../../shaders/gather.wgsl")
                        ),
                    ),
                    PackedKernel::Optimizer => (
                        "optimizer",
                        format!(
                            "{COMMON}\n{WORKGROUP_REDUCE}\n{packing}\n{}",
                            include_str!("../../shaders/optimizer.wgsl")
                        ),
                    ),
                };
                module(ctx, name, &source)
            })
            .clone()
    }

    /// Whether the gather moves rows of `x_width` columns four at a time (`X_VEC4`), and
    /// whether it writes them in packs of eight (where the kernels use 64-bit words): the
    /// width and the bindings' `offsets` must be multiples of the pack.
    fn gather_packing(&self, x_width: usize, offsets: &[usize]) -> (bool, bool) {
        let fits = |n: usize| {
            x_width.is_multiple_of(n) && offsets.iter().all(|offset| offset.is_multiple_of(n))
        };
        (fits(4), self.wide_words && fits(8))
    }

    /// Elements the optimizer updates per invocation: the vectors given to it are whole
    /// multiples of this many (optimizer.wgsl, "Packing").
    pub fn optimizer_granule(&self) -> usize {
        if self.wide_words { 8 } else { 4 }
    }

    fn pipeline(&mut self, ctx: &GpuContext, key: PipelineKey) -> Result<wgpu::ComputePipeline> {
        if let Some(p) = self.pipelines.get(&key) {
            return Ok(p.clone());
        }
        let started = Instant::now();
        let (module, entry, constants) = self.stage(ctx, key);
        let pipeline = ctx
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&self.layout(key).pipeline),
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    // Every kernel writes workgroup memory before reading it.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        ctx.check()
            .map_err(|e| WgradError::Gpu(format!("building the {key:?} pipeline: {e}")))?;
        self.build.pipelines += 1;
        self.build.seconds += started.elapsed().as_secs_f64();
        self.pipelines.insert(key, pipeline.clone());
        Ok(pipeline)
    }

    fn dispatch(
        &mut self,
        ctx: &GpuContext,
        key: PipelineKey,
        bindings: &[wgpu::BindingResource],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let pipeline = self.pipeline(ctx, key)?;
        let entries: Vec<_> = bindings
            .iter()
            .enumerate()
            .map(|(i, resource)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: resource.clone(),
            })
            .collect();
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.layout(key).bind_group,
            entries: &entries,
        });
        ctx.check()?;
        Ok(Dispatch {
            pipeline,
            bind_group,
            workgroups,
            family: key.family(),
        })
    }

    /// C = op(A)·op(B) with an epilogue (matmul.wgsl), in the configuration chosen for the
    /// form and size.
    pub fn matmul(
        &mut self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        product: &Product,
    ) -> Result<Dispatch> {
        let config = self
            .matmul_choice_or_tune(ctx)?
            .get(product.form, product.dims.shape());
        self.matmul_with(ctx, config, step, product)
    }

    /// [`Kernels::matmul`] in configuration `config` (an index into [`MATMUL_CONFIGS`]).
    pub fn matmul_with(
        &mut self,
        ctx: &GpuContext,
        config: usize,
        step: &wgpu::Buffer,
        product: &Product,
    ) -> Result<Dispatch> {
        let Product {
            form,
            dims,
            a,
            b,
            aux,
            c,
            sums,
            ..
        } = *product;
        let variant = MatmulVariant::for_product(config, product);
        // The tiled layout indexes C alone: a whole matrix, with no epilogue operand at C's
        // index (dense.rs sets it for weight gradients only).
        assert!(
            dims.c_tiled == 0 || (aux.is_none() && dims.c_col0 == 0 && dims.ldc == 0),
            "a tiled C must be a whole matrix without an epilogue operand"
        );
        let uniform = ctx.uniform("matmul dims", &dims.resolved(form));
        let groups =
            MATMUL_CONFIGS[config].workgroups(form, variant.a_vec4, variant.b_vec4, dims.m, dims.n);
        let (dummy_buffer, dummy_rw_buffer) = (self.dummy.clone(), self.dummy_rw.clone());
        let dummy_texture = self.dummy_texture.clone();
        let dummy = View::whole(&dummy_buffer);
        let bindings = [
            step_binding(step),
            uniform.as_entire_binding(),
            a.resource(),
            b.resource(),
            aux.unwrap_or(dummy).resource(),
            c.resource(),
            if variant.a_vec4 { a } else { dummy }.vec4_resource(),
            if variant.b_vec4 { b } else { dummy }.vec4_resource(),
            sums.unwrap_or(View::whole(&dummy_rw_buffer)).resource(),
            texture_binding(a.texture.filter(|_| variant.a_texture), &dummy_texture),
            texture_binding(b.texture.filter(|_| variant.b_texture), &dummy_texture),
            if variant.c_vec4 {
                c
            } else {
                View::whole(&dummy_rw_buffer)
            }
            .vec4_resource(),
            if variant.c_vec4 {
                aux.unwrap_or(dummy)
            } else {
                dummy
            }
            .vec4_resource(),
            texture_binding(
                aux.and_then(|aux| aux.texture)
                    .filter(|_| variant.aux_texture),
                &dummy_texture,
            ),
        ];
        self.dispatch(ctx, PipelineKey::Matmul(variant), &bindings, groups)
    }

    /// Loss, per-row metrics and logit gradient, and the metrics' running sums
    /// (output.wgsl, `loss_and_grad`).
    #[allow(clippy::too_many_arguments)]
    pub fn loss(
        &mut self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        loss: Loss,
        output_activation: Activation,
        batch: usize,
        logits: View,
        targets: View,
        grad: View,
        row_stats: View,
        metrics: View,
    ) -> Result<Dispatch> {
        let n = logits.len / batch;
        let uniform = ctx.uniform("output dims", &SmallDims([n as u32, batch as u32, 0, 0]));
        let bindings = [
            step_binding(step),
            uniform.as_entire_binding(),
            logits.resource(),
            targets.resource(),
            grad.resource(),
            row_stats.resource(),
            metrics.resource(),
        ];
        self.dispatch(
            ctx,
            PipelineKey::Loss(loss, output_activation),
            &bindings,
            [1, 1, 1],
        )
    }

    /// Output probabilities (output.wgsl, `probabilities`). `unused1` and `unused2` are
    /// bound read-write but not touched; pass two different buffers.
    #[allow(clippy::too_many_arguments)]
    pub fn probabilities(
        &mut self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        loss: Loss,
        output_activation: Activation,
        batch: usize,
        logits: View,
        probabilities: View,
        unused1: View,
        unused2: View,
    ) -> Result<Dispatch> {
        let n = logits.len / batch;
        let uniform = ctx.uniform("output dims", &SmallDims([n as u32, batch as u32, 0, 0]));
        let bindings = [
            step_binding(step),
            uniform.as_entire_binding(),
            logits.resource(),
            logits.resource(),
            probabilities.resource(),
            unused1.resource(),
            unused2.resource(),
        ];
        let groups = [(batch as u32).div_ceil(LINEAR_GROUP), 1, 1];
        self.dispatch(
            ctx,
            PipelineKey::Probabilities(loss, output_activation),
            &bindings,
            groups,
        )
    }

    /// Number of (scale, ssq) partials [`Kernels::sum_squares`] writes for `len` elements.
    pub fn sum_squares_groups(len: usize) -> usize {
        len.div_ceil(256).clamp(1, 256)
    }

    /// Pair `first + w` of `partials` (two floats a pair) = (scale, ssq) of workgroup w's
    /// share of `input`, whose norm is scale·√ssq (reduce.wgsl, `sum_squares`), for the
    /// [`Kernels::sum_squares_groups`] workgroups of `input`.
    pub fn sum_squares(
        &mut self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        input: View,
        partials: View,
        first: usize,
    ) -> Result<Dispatch> {
        let groups = Self::sum_squares_groups(input.len);
        let uniform = ctx.uniform(
            "reduce dims",
            &SmallDims([input.len as u32, groups as u32, first as u32, 0]),
        );
        let bindings = [
            step_binding(step),
            uniform.as_entire_binding(),
            input.resource(),
            partials.resource(),
        ];
        self.dispatch(
            ctx,
            PipelineKey::SumSquares,
            &bindings,
            [groups as u32, 1, 1],
        )
    }

    /// The inputs and targets of a batch from one chunk of a data set (gather.wgsl):
    /// x_dest[i, :] = x_source[order[batch_start + i] - rows.start, :] for the batch rows whose
    /// sample lies in `rows` (the data set's rows the chunk holds), likewise y; the chunk
    /// starting at row 0 also zeroes the padding. `y` is `None` for prediction inputs;
    /// `x_format` says how x_source is stored.
    #[allow(clippy::too_many_arguments)]
    pub fn gather(
        &mut self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        batch: usize,
        x_width: usize,
        x_format: DataFormat,
        rows: Range<usize>,
        x_source: View,
        order: View,
        x_dest: View,
        y: Option<(usize, View, View)>,
    ) -> Result<Dispatch> {
        let y_width = y.map_or(0, |(w, ..)| w);
        let uniform = ctx.uniform(
            "gather dims",
            &SmallDims([
                x_width as u32,
                y_width as u32,
                rows.start as u32,
                rows.end as u32,
            ]),
        );
        let dummy_buffer = self.dummy.clone();
        let dummy = View::whole(&dummy_buffer);
        let (y_source, y_dest) = y.map_or((dummy, x_dest), |(_, s, d)| (s, d));
        let (x_vec4, wide) = self.gather_packing(x_width, &[x_source.offset, x_dest.offset]);
        let dummy_rw_buffer = self.dummy_rw.clone();
        let dummy_rw = View::whole(&dummy_rw_buffer);
        let bindings = [
            step_binding(step),
            uniform.as_entire_binding(),
            x_source.resource(),
            y_source.resource(),
            order.resource(),
            x_dest.resource(),
            y_dest.resource(),
            if x_vec4 { x_source } else { dummy }.vec4_resource(),
            if x_vec4 { x_dest } else { dummy_rw }.vec4_resource(),
        ];
        self.dispatch(
            ctx,
            PipelineKey::Gather {
                format: x_format,
                x_vec4,
                wide,
            },
            &bindings,
            [batch as u32, 1, 1],
        )
    }

    /// One optimizer step on every tensor of a flat parameter vector (optimizer.wgsl).
    /// `regions` holds each tensor ([`Region`]: where it is, whether the penalties apply,
    /// whether its gradient is tiled). The gradient is scaled by
    /// `grad_scale`, or with `clipped` by the clipping factor of the (scale, ssq) partial
    /// norms in `clip` (bound either way, at least one pair). `divergence[0]` receives the
    /// first step whose update left a parameter non-finite (kept while non-zero).
    #[allow(clippy::too_many_arguments)]
    pub fn optimizer(
        &mut self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        optimizer: &Optimizer,
        (l1, l2): (f32, f32),
        grad_scale: f32,
        clipped: bool,
        grads: View,
        params: View,
        state1: View,
        state2: View,
        clip: View,
        divergence: View,
        regions: &[Region],
    ) -> Result<Dispatch> {
        if regions.len() > MAX_TENSORS {
            return Err(WgradError::InvalidModel(format!(
                "{} parameter tensors, more than the GPU optimizer's {MAX_TENSORS}",
                regions.len()
            )));
        }
        let [h1, h2, eps] = optimizer.hyper_parameters();
        let hyper = OptimizerHyper {
            len: params.len as u32,
            l1,
            l2,
            h1,
            h2,
            eps,
            grad_scale,
            tensors: regions.len() as u32,
        };
        let uniform = ctx.uniform("optimizer hyper-parameters", &hyper);
        let table = ctx.uniform_slice("parameter regions", &regions_uniform(regions));
        let bindings = [
            step_binding(step),
            uniform.as_entire_binding(),
            grads.resource(),
            params.resource(),
            state1.resource(),
            state2.resource(),
            clip.resource(),
            table.as_entire_binding(),
            divergence.resource(),
        ];
        let key = PipelineKey::Optimizer {
            code: optimizer.gpu_code(),
            clipped,
            wide: self.wide_words,
        };
        let groups = linear_groups(params.len.div_ceil(OPTIMIZER_ROUNDS as usize));
        self.dispatch(ctx, key, &bindings, groups)
    }

    /// dst = srcᵀ for src [rows, cols] (transpose.wgsl), both laid out as texture copies
    /// (texture.rs); rows and cols multiples of 4.
    pub fn transpose(
        &mut self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        (rows, cols): (usize, usize),
        src: &wgpu::TextureView,
        dst: &wgpu::TextureView,
    ) -> Result<Dispatch> {
        let uniform = ctx.uniform(
            "transpose dims",
            &SmallDims([rows as u32, cols as u32, 0, 0]),
        );
        let bindings = [
            step_binding(step),
            uniform.as_entire_binding(),
            wgpu::BindingResource::TextureView(src),
            wgpu::BindingResource::TextureView(dst),
        ];
        let texels = (rows * cols / 4) as u32;
        let groups = [texels.div_ceil(LINEAR_GROUP).max(1), 1, 1];
        self.dispatch(ctx, PipelineKey::Transpose, &bindings, groups)
    }

    /// `out[0] = min(1, clip_norm / ‖gradient‖)` from the (scale, ssq) partial norms, by the
    /// optimizer's own function (optimizer.wgsl, `clip_factor`). `scratch` is bound to the
    /// other read-write slots (three different buffers).
    pub fn clip_factor(
        &mut self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        partials: View,
        out: View,
        scratch: [View; 3],
    ) -> Result<Dispatch> {
        let uniform = ctx.uniform("optimizer hyper-parameters", &[0u32; 8]);
        let table = ctx.uniform_slice("parameter regions", &regions_uniform(&[]));
        let dummy_buffer = self.dummy.clone();
        let dummy = View::whole(&dummy_buffer).resource();
        let bindings = [
            step_binding(step),
            uniform.as_entire_binding(),
            dummy,
            out.resource(),
            scratch[0].resource(),
            scratch[1].resource(),
            partials.resource(),
            table.as_entire_binding(),
            scratch[2].resource(),
        ];
        let key = PipelineKey::ClipFactor {
            wide: self.wide_words,
        };
        self.dispatch(ctx, key, &bindings, [1, 1, 1])
    }
}

/// The packing of optimizer.wgsl's vectors and gather.wgsl's batch rows (`Packed`, `HALVES`,
/// `unpack`, `pack`): vec4<f32>s,
/// or with `wide` vec4<u64>s of eight elements (two f32 bit patterns to a word, the lower
/// element in the lower half), which needs the device's `SHADER_INT64`.
fn packing_wgsl(wide: bool) -> &'static str {
    if !wide {
        return "alias Packed = vec4<f32>;
const HALVES: u32 = 1u;
fn unpack(p: Packed, half: u32) -> vec4<f32> {
    return p;
}
fn pack(lo: vec4<f32>, hi: vec4<f32>) -> Packed {
    return lo;
}
";
    }
    "alias Packed = vec4<u64>;
const HALVES: u32 = 2u;
fn unpack(p: Packed, half: u32) -> vec4<f32> {
    let words = select(p.xy, p.zw, half == 1u);
    let low = vec2<u32>(words & vec2<u64>(0xfffffffflu));
    let high = vec2<u32>(words >> vec2<u32>(32u));
    return bitcast<vec4<f32>>(vec4<u32>(low.x, high.x, low.y, high.y));
}
fn pack(lo: vec4<f32>, hi: vec4<f32>) -> Packed {
    let l = vec4<u64>(bitcast<vec4<u32>>(lo));
    let h = vec4<u64>(bitcast<vec4<u32>>(hi));
    return vec4<u64>(l.xz | (l.yw << vec2<u32>(32u)), h.xz | (h.yw << vec2<u32>(32u)));
}
"
}

/// Workgroups for `len` elements, 64 to a workgroup, spread over (x, y) past 65535 groups.
fn linear_groups(len: usize) -> [u32; 3] {
    let groups = (len as u32).div_ceil(LINEAR_GROUP).max(1);
    if groups <= MAX_GROUPS {
        [groups, 1, 1]
    } else {
        [MAX_GROUPS, groups.div_ceil(MAX_GROUPS), 1]
    }
}

#[cfg(test)]
mod tests {
    use super::DataFormat;

    #[test]
    fn eight_bit_data_is_packed_as_bytes_and_other_data_as_f32() {
        let bytes: Vec<f32> = [0u8, 1, 128, 254, 255]
            .iter()
            .map(|&k| k as f32 / 255.0)
            .collect();
        let format = DataFormat::of(&bytes);
        assert_eq!(format, DataFormat::Bytes);
        assert_eq!(
            format.encode(&bytes),
            vec![u32::from_le_bytes([0, 1, 128, 254]), 255]
        );
        let values = [0.0, 0.5, 1.0];
        let format = DataFormat::of(&values);
        assert_eq!(format, DataFormat::F32, "0.5 is not k/255");
        assert_eq!(
            format.encode(&values),
            vec![0, 0.5f32.to_bits(), 1.0f32.to_bits()]
        );
        assert_eq!(
            DataFormat::of(&[1.0, -0.0]),
            DataFormat::F32,
            "-0.0 is not a byte"
        );
    }
}
