//! The kernel families of `shaders/`: their bind-group layouts, their uniform structs (twins
//! of the WGSL structs), their pipelines (one per variant, made once and cached) and the
//! builders of [`Dispatch`]es. Every GPU launch in wgrad is made here.

use super::device::GpuContext;
use crate::backend::StepParams;
use crate::cpu::ops::MatmulForm;
use crate::error::Result;
use crate::model::{Activation, Loss, Optimizer};
use bytemuck::{Pod, Zeroable};
use std::collections::HashMap;
use std::num::NonZeroU64;

const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// Columns and rows of C one matmul workgroup computes (matmul.wgsl's dispatch geometry).
const MATMUL_COLUMNS: u32 = 32;
const MATMUL_ROWS: u32 = 32;
/// Invocations per workgroup of the one-dimensional kernels.
const LINEAR_GROUP: u32 = 64;
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
    pub _pad: [u32; 3],
}

/// Four u32: the `Dims` of output.wgsl (n, batch), reduce.wgsl (m, n) and gather.wgsl (width).
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
    _pad: [u32; 2],
}

/// What the matmul kernel does with each result (`EPILOGUE` in matmul.wgsl).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Epilogue {
    None,
    /// f(acc + bias[n]), then dropout; aux = bias.
    BiasActivation(Activation),
    /// acc · f'(input), dropout undone; aux = the layer input.
    ActivationGrad(Activation),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PipelineKey {
    Matmul(MatmulForm, Epilogue),
    Loss(Loss, Activation),
    Probabilities(Loss, Activation),
    ColumnSums,
    Metrics,
    SumSquares,
    ClipFactor,
    Gather(DataFormat),
    Optimizer(u32),
}

/// How a resident data set is stored (`SOURCE_FORMAT` in gather.wgsl).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataFormat {
    F32,
    /// Bytes k standing for k / 255, four to a u32.
    Bytes,
}

impl DataFormat {
    /// The most compact format that holds `values` exactly, and the words to upload.
    pub fn encode(values: &[f32]) -> (DataFormat, Vec<u32>) {
        let as_byte = |v: f32| {
            let k = (v * 255.0).round();
            ((0.0..=255.0).contains(&k) && k / 255.0 == v).then_some(k as u32)
        };
        if values.iter().all(|&v| as_byte(v).is_some()) {
            let words = values
                .chunks(4)
                .map(|chunk| {
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| as_byte(v).expect("checked") << (8 * i))
                        .sum()
                })
                .collect();
            (DataFormat::Bytes, words)
        } else {
            (
                DataFormat::F32,
                values.iter().map(|v| v.to_bits()).collect(),
            )
        }
    }
}

/// A part of a buffer, in f32/u32 elements.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: usize,
    pub len: usize,
}

impl<'a> View<'a> {
    pub fn whole(buffer: &'a wgpu::Buffer) -> Self {
        View {
            buffer,
            offset: 0,
            len: (buffer.size() / 4) as usize,
        }
    }

    fn resource(&self) -> wgpu::BindingResource<'a> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer,
            offset: (self.offset * 4) as u64,
            size: NonZeroU64::new((self.len.max(1) * 4) as u64),
        })
    }
}

/// One recorded kernel launch: replayed as is every step, nothing created on the way.
pub struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
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
}

struct Family {
    layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    module: wgpu::ShaderModule,
}

impl Family {
    fn new(ctx: &GpuContext, name: &str, source: &str, slots: &[Slot]) -> Self {
        let entries: Vec<_> = slots
            .iter()
            .enumerate()
            .map(|(i, slot)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match slot {
                        Slot::Uniform => wgpu::BufferBindingType::Uniform,
                        Slot::Read => wgpu::BufferBindingType::Storage { read_only: true },
                        Slot::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                    },
                    // Binding 0 is the step uniform, one entry per step of a submission.
                    has_dynamic_offset: i == 0,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let device = &ctx.device;
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(name),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let descriptor = wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(format!("{COMMON}\n{source}").into()),
        };
        let module = device.create_shader_module(descriptor);
        Family {
            layout,
            pipeline_layout,
            module,
        }
    }
}

/// All kernel families of one device, with their pipelines made on first use.
pub struct Kernels {
    matmul: Family,
    output: Family,
    reduce: Family,
    gather: Family,
    optimizer: Family,
    pipelines: HashMap<PipelineKey, wgpu::ComputePipeline>,
}

impl Kernels {
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        use Slot::*;
        let kernels = Kernels {
            matmul: Family::new(
                ctx,
                "matmul",
                include_str!("../../shaders/matmul.wgsl"),
                &[Uniform, Uniform, Read, Read, Read, ReadWrite],
            ),
            output: Family::new(
                ctx,
                "output",
                include_str!("../../shaders/output.wgsl"),
                &[Uniform, Uniform, Read, Read, ReadWrite, ReadWrite],
            ),
            reduce: Family::new(
                ctx,
                "reduce",
                include_str!("../../shaders/reduce.wgsl"),
                &[Uniform, Uniform, Read, ReadWrite],
            ),
            gather: Family::new(
                ctx,
                "gather",
                include_str!("../../shaders/gather.wgsl"),
                &[Uniform, Uniform, Read, Read, ReadWrite],
            ),
            optimizer: Family::new(
                ctx,
                "optimizer",
                include_str!("../../shaders/optimizer.wgsl"),
                &[
                    Uniform, Uniform, Read, ReadWrite, ReadWrite, ReadWrite, Read,
                ],
            ),
            pipelines: HashMap::new(),
        };
        ctx.check()?;
        Ok(kernels)
    }

    /// Builds every pipeline a model's training step and inference use, so that all shader
    /// compilation happens before the first step.
    pub fn prepare(&mut self, ctx: &GpuContext, spec: &crate::model::Sequential) -> Result<()> {
        let loss = spec.resolved_loss();
        let output = spec.output_activation();
        let mut keys = vec![
            PipelineKey::Gather(DataFormat::F32),
            PipelineKey::Gather(DataFormat::Bytes),
            PipelineKey::Matmul(MatmulForm::AtB, Epilogue::None),
            PipelineKey::ColumnSums,
            PipelineKey::Loss(loss, output),
            PipelineKey::Probabilities(loss, output),
            PipelineKey::Metrics,
            PipelineKey::SumSquares,
            PipelineKey::ClipFactor,
            PipelineKey::Optimizer(spec.optimizer.gpu_code()),
        ];
        let last = spec.layers.len() - 1;
        for (i, layer) in spec.layers.iter().enumerate() {
            let activation = if i == last {
                Activation::Linear
            } else {
                layer.activation
            };
            keys.push(PipelineKey::Matmul(
                MatmulForm::ABt,
                Epilogue::BiasActivation(activation),
            ));
            if i < last {
                keys.push(PipelineKey::Matmul(
                    MatmulForm::AB,
                    Epilogue::ActivationGrad(layer.activation),
                ));
            }
        }
        for key in keys {
            self.pipeline(ctx, key)?;
        }
        Ok(())
    }

    fn family(&self, key: PipelineKey) -> (&Family, &'static str, Vec<(&'static str, f64)>) {
        match key {
            PipelineKey::Matmul(form, epilogue) => {
                let (code, act) = match epilogue {
                    Epilogue::None => (0, Activation::Linear),
                    Epilogue::BiasActivation(a) => (1, a),
                    Epilogue::ActivationGrad(a) => (2, a),
                };
                let constants = vec![
                    ("FORM", form.gpu_code() as f64),
                    ("EPILOGUE", code as f64),
                    ("ACTIVATION", act.gpu_code() as f64),
                ];
                (&self.matmul, "main", constants)
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
                (&self.output, entry, constants)
            }
            PipelineKey::ColumnSums => (&self.reduce, "column_sums", vec![]),
            PipelineKey::Metrics => (&self.reduce, "metrics", vec![]),
            PipelineKey::SumSquares => (&self.reduce, "sum_squares", vec![]),
            PipelineKey::ClipFactor => (&self.reduce, "clip_factor", vec![]),
            PipelineKey::Gather(format) => {
                let code = match format {
                    DataFormat::F32 => 0.0,
                    DataFormat::Bytes => 1.0,
                };
                (&self.gather, "main", vec![("SOURCE_FORMAT", code)])
            }
            PipelineKey::Optimizer(code) => {
                (&self.optimizer, "main", vec![("OPTIMIZER", code as f64)])
            }
        }
    }

    fn pipeline(&mut self, ctx: &GpuContext, key: PipelineKey) -> Result<wgpu::ComputePipeline> {
        if let Some(p) = self.pipelines.get(&key) {
            return Ok(p.clone());
        }
        let (family, entry, constants) = self.family(key);
        let pipeline = ctx
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&family.pipeline_layout),
                module: &family.module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    // Every kernel writes workgroup memory before reading it.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        ctx.check()?;
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
        let (family, ..) = self.family(key);
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
            layout: &family.layout,
            entries: &entries,
        });
        ctx.check()?;
        Ok(Dispatch {
            pipeline,
            bind_group,
            workgroups,
        })
    }

    /// C = op(A)·op(B) with an epilogue (matmul.wgsl). `aux` is the bias for
    /// `BiasActivation`, the layer input for `ActivationGrad`, and ignored for `None`.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &mut self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        form: MatmulForm,
        epilogue: Epilogue,
        dims: MatmulDims,
        a: View,
        b: View,
        aux: View,
        c: View,
    ) -> Result<Dispatch> {
        let uniform = ctx.uniform("matmul dims", &dims);
        let groups = [
            dims.n.div_ceil(MATMUL_COLUMNS),
            dims.m.div_ceil(MATMUL_ROWS),
            1,
        ];
        let bindings = [
            step_binding(step),
            uniform.as_entire_binding(),
            a.resource(),
            b.resource(),
            aux.resource(),
            c.resource(),
        ];
        self.dispatch(ctx, PipelineKey::Matmul(form, epilogue), &bindings, groups)
    }

    /// Loss, per-row metrics and logit gradient (output.wgsl, `loss_and_grad`).
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
        ];
        let groups = [(batch as u32).div_ceil(LINEAR_GROUP), 1, 1];
        self.dispatch(
            ctx,
            PipelineKey::Loss(loss, output_activation),
            &bindings,
            groups,
        )
    }

    /// Output probabilities (output.wgsl, `probabilities`). `targets` and `row_stats` are
    /// bound but not read; pass any buffers.
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
        unused: View,
    ) -> Result<Dispatch> {
        let n = logits.len / batch;
        let uniform = ctx.uniform("output dims", &SmallDims([n as u32, batch as u32, 0, 0]));
        let bindings = [
            step_binding(step),
            uniform.as_entire_binding(),
            logits.resource(),
            logits.resource(),
            probabilities.resource(),
            unused.resource(),
        ];
        let groups = [(batch as u32).div_ceil(LINEAR_GROUP), 1, 1];
        self.dispatch(
            ctx,
            PipelineKey::Probabilities(loss, output_activation),
            &bindings,
            groups,
        )
    }

    /// out[n] = Σ_m input[m, n] for input [rows, cols] (reduce.wgsl, `column_sums`).
    pub fn column_sums(
        &mut self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        rows: usize,
        cols: usize,
        input: View,
        out: View,
    ) -> Result<Dispatch> {
        let uniform = ctx.uniform("reduce dims", &SmallDims([rows as u32, cols as u32, 0, 0]));
        let bindings = [
            step_binding(step),
            uniform.as_entire_binding(),
            input.resource(),
            out.resource(),
        ];
        let groups = [(cols as u32).div_ceil(LINEAR_GROUP), 1, 1];
        self.dispatch(ctx, PipelineKey::ColumnSums, &bindings, groups)
    }

    /// metrics += (Σ loss, Σ correct, rows) over row_stats (reduce.wgsl, `metrics`).
    pub fn metrics(
        &mut self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        row_stats: View,
        metrics: View,
    ) -> Result<Dispatch> {
        let uniform = ctx.uniform("reduce dims", &SmallDims([0; 4]));
        let bindings = [
            step_binding(step),
            uniform.as_entire_binding(),
            row_stats.resource(),
            metrics.resource(),
        ];
        self.dispatch(ctx, PipelineKey::Metrics, &bindings, [1, 1, 1])
    }

    /// Number of partial sums [`Kernels::sum_squares`] writes for `len` elements.
    pub fn sum_squares_groups(len: usize) -> usize {
        len.div_ceil(256).clamp(1, 1024)
    }

    /// partials[w] = squared norm of workgroup w's share of `input` (reduce.wgsl,
    /// `sum_squares`); `partials` holds [`Kernels::sum_squares_groups`] values.
    pub fn sum_squares(
        &mut self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        input: View,
        partials: View,
    ) -> Result<Dispatch> {
        let groups = Self::sum_squares_groups(input.len);
        let uniform = ctx.uniform(
            "reduce dims",
            &SmallDims([input.len as u32, groups as u32, 0, 0]),
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

    /// factor[0] = min(1, clip_norm / ‖gradient‖) from the partial squared norms
    /// (reduce.wgsl, `clip_factor`).
    pub fn clip_factor(
        &mut self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        partials: View,
        factor: View,
    ) -> Result<Dispatch> {
        let uniform = ctx.uniform("reduce dims", &SmallDims([partials.len as u32, 0, 0, 0]));
        let bindings = [
            step_binding(step),
            uniform.as_entire_binding(),
            partials.resource(),
            factor.resource(),
        ];
        self.dispatch(ctx, PipelineKey::ClipFactor, &bindings, [1, 1, 1])
    }

    /// dest[i, :] = source[order[batch_start + i], :] (gather.wgsl), `source` stored as
    /// `format` says.
    #[allow(clippy::too_many_arguments)]
    pub fn gather(
        &mut self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        batch: usize,
        width: usize,
        format: DataFormat,
        source: View,
        order: View,
        dest: View,
    ) -> Result<Dispatch> {
        let uniform = ctx.uniform("gather dims", &SmallDims([width as u32, 0, 0, 0]));
        let bindings = [
            step_binding(step),
            uniform.as_entire_binding(),
            source.resource(),
            order.resource(),
            dest.resource(),
        ];
        let groups = [(width as u32).div_ceil(LINEAR_GROUP), batch as u32, 1];
        self.dispatch(ctx, PipelineKey::Gather(format), &bindings, groups)
    }

    /// One optimizer step on one tensor (optimizer.wgsl); the gradient is scaled by `clip[0]`.
    #[allow(clippy::too_many_arguments)]
    pub fn optimizer(
        &mut self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        optimizer: &Optimizer,
        l1: f32,
        l2: f32,
        grads: View,
        params: View,
        state1: View,
        state2: View,
        clip: View,
    ) -> Result<Dispatch> {
        let [h1, h2, eps] = optimizer.hyper_parameters();
        let hyper = OptimizerHyper {
            len: params.len as u32,
            l1,
            l2,
            h1,
            h2,
            eps,
            _pad: [0; 2],
        };
        let uniform = ctx.uniform("optimizer hyper-parameters", &hyper);
        let bindings = [
            step_binding(step),
            uniform.as_entire_binding(),
            grads.resource(),
            params.resource(),
            state1.resource(),
            state2.resource(),
            clip.resource(),
        ];
        self.dispatch(
            ctx,
            PipelineKey::Optimizer(optimizer.gpu_code()),
            &bindings,
            linear_groups(params.len),
        )
    }
}

/// Workgroups for one invocation per element, spread over (x, y) past 65535 groups
/// (`flat_index` in common.wgsl).
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
        let (format, words) = DataFormat::encode(&bytes);
        assert_eq!(format, DataFormat::Bytes);
        assert_eq!(words, vec![u32::from_le_bytes([0, 1, 128, 254]), 255]);
        let (format, words) = DataFormat::encode(&[0.0, 0.5, 1.0]);
        assert_eq!(format, DataFormat::F32, "0.5 is not k/255");
        assert_eq!(words, vec![0, 0.5f32.to_bits(), 1.0f32.to_bits()]);
    }
}
