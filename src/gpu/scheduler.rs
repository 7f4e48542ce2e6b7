//! The GPU scheduler. Parameters, gradients, optimizer state, activations and data sets live
//! in GPU buffers made once per model, batch size and data set; every kernel launch of a
//! training step is prepared once as a [`Dispatch`] (pipeline + bind group) and the whole step
//! — gather, forward, loss, backward, update — is replayed as one compute pass, up to 64 steps
//! to a submission. Per step only a 48-byte uniform changes (all steps of a submission are
//! written at once, read at dynamic offsets); nothing is read back until metrics,
//! predictions or parameters are asked for.
//!
//! A step of an L-layer model is 3L + 2 dispatches: one gather (inputs and targets), L
//! forward products, the loss (with the metrics), per layer the weight gradient with the
//! bias gradient in its epilogue and (but for the first layer) the input gradient, and one
//! optimizer update over the whole flat parameter vector; clipping adds one (the partial
//! norms; the update itself turns them into the factor). On software adapters the larger
//! products read their operands from texture copies (texture.rs), refreshed by copies
//! recorded between the dispatches: the weights' at the start of a step, each layer input's
//! and output gradient's right after the dispatch that writes it.
//!
//! Device limits: a data set larger than one storage binding or buffer is stored in chunks
//! of whole rows, with one gather per chunk; flat vectors larger than one storage binding are
//! updated (and their norm reduced) by one dispatch per part; a weight larger than one binding
//! is split by output units into blocks of rows, one product per block (see `dense.rs`). Each
//! bias, each block of rows and each workspace buffer must fit one binding (else
//! `BufferTooLarge`, before anything is allocated).

use super::autotune::Source;
use super::dense::{self, DenseTensors, LayerDropout};
use super::device::{AdapterChoice, GpuContext};
use super::kernels::{
    BuildStats, DataFormat, Dispatch, Kernels, Product, Region, STEP_STRIDE, View,
    step_buffer_bytes,
};
use super::matmul::MatmulChoice;
use super::profile::{Profile, Profiler};
use super::texture::{self, Texels, TextureCopy};
use crate::backend::{Backend, Metrics, Slot, StepParams};
use crate::error::{Result, WgradError};
use crate::model::{Activation, Loss, ParamLayout, Sequential};
use ndarray::{Array2, ArrayView2};
use std::collections::HashMap;
use std::ops::Range;

/// Where a resident data set sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DataKey {
    User(Slot),
    /// Inputs to `predict`, without targets.
    Predict,
}

/// The sequences of kernel launches the backend replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Program {
    /// A training step; `clipped` adds gradient-norm clipping before the update.
    Train {
        clipped: bool,
    },
    Evaluate(Slot),
    Predict,
}

/// Rows `rows` of a resident data set, in buffers of their own.
struct DataChunk {
    rows: Range<usize>,
    x: wgpu::Buffer,
    /// Targets; `None` for prediction inputs.
    y: Option<wgpu::Buffer>,
}

/// A data set on the GPU: one chunk, or several of whole rows where it is larger than one
/// storage binding or buffer.
struct GpuData {
    chunks: Vec<DataChunk>,
    x_format: DataFormat,
    /// Sample order over all chunks; identity except for the training set, reshuffled each
    /// epoch.
    order: wgpu::Buffer,
    rows: usize,
}

/// Dispatches recorded in one compute pass, after the buffer-to-texture copies that refresh
/// the texture copies they read.
#[derive(Default)]
struct Segment {
    copies: Vec<TextureCopy>,
    dispatches: Vec<Dispatch>,
}

/// Buffers sized by the model alone.
struct ModelBuffers {
    step: wgpu::Buffer,
    /// The parts of the flat vectors (parameters, gradients, optimizer state) that the
    /// whole-vector kernels (update, gradient norm) take one dispatch each for: one part
    /// unless the vector is larger than one storage binding.
    parts: Vec<Range<usize>>,
    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    state1: wgpu::Buffer,
    state2: wgpu::Buffer,
    /// (scale, ssq) partial norms of the gradient; the update turns them into the clipping
    /// factor.
    grad_norm_partials: wgpu::Buffer,
    /// One zero pair, bound where unclipped steps read no partial norms.
    no_partials: wgpu::Buffer,
    /// Texture copies of the weights (unsplit ones that fit), refreshed at the start of each
    /// step, where the scheduler uses textures.
    weight_textures: Vec<Option<TextureCopy>>,
    /// Copies of `params`, `state1` and `state2` at the last [`Backend::snapshot`].
    snapshot: [wgpu::Buffer; 3],
}

impl ModelBuffers {
    /// The buffers a snapshot copies: the parameters and the optimizer state.
    fn trained_state(&self) -> [&wgpu::Buffer; 3] {
        [&self.params, &self.state1, &self.state2]
    }
}

/// Buffers sized by the model and the batch size.
struct Workspace {
    batch: usize,
    /// activations[0] is the input batch; activations[i + 1] is layer i's output (logits last).
    activations: Vec<wgpu::Buffer>,
    /// grad_outputs[i]: gradient of the loss with respect to layer i's pre-activation.
    grad_outputs: Vec<wgpu::Buffer>,
    targets: wgpu::Buffer,
    /// [batch, 2]: each row's loss and correctness.
    row_stats: wgpu::Buffer,
    probabilities: wgpu::Buffer,
    /// [`METRICS_WORDS`]: the loss kernel's sums and the optimizer's divergence step.
    train_metrics: wgpu::Buffer,
    eval_metrics: wgpu::Buffer,
    /// Texture copies (texture.rs) of the layer inputs (activations[..L]) and output
    /// gradients, where the layer's products read them (`texture::operand_copies`) and they
    /// fit one. A layer whose input has one reads its weight's copy too.
    activation_textures: Vec<Option<TextureCopy>>,
    grad_output_textures: Vec<Option<TextureCopy>>,
    /// [xᵀ, dzᵀ] per layer whose weight gradient runs as A·Bᵀ from the transposes of its
    /// input and output gradient (`dense::transposed_weight_gradient`).
    transposed: Vec<Option<[Texels; 2]>>,
}

/// A metrics buffer, read back once per epoch: words 0-4 are output.wgsl's loss sum,
/// correct count, row count (f32 bits), first step with a non-finite loss (0: none) and
/// that step's loss; word [`PARAMS_STEP_WORD`] is optimizer.wgsl's first step that left a
/// parameter non-finite. It sits 256 bytes in, the most any adapter may require a storage
/// binding's offset to be aligned to.
const PARAMS_STEP_WORD: usize = 64;
const METRICS_WORDS: usize = PARAMS_STEP_WORD + 1;

impl Workspace {
    fn new(
        ctx: &GpuContext,
        spec: &Sequential,
        blocks: &[Vec<Range<usize>>],
        batch: usize,
        textures: bool,
        choice: &MatmulChoice,
    ) -> Result<Self> {
        let widths: Vec<usize> = std::iter::once(spec.input_dim)
            .chain(spec.layers.iter().map(|l| l.units))
            .collect();
        let activations = widths
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let what = if i == 0 {
                    "the input batch".to_string()
                } else {
                    format!("layer {}'s outputs", i - 1)
                };
                ctx.storage(&format!("{what} [{batch}, {w}]"), batch * w)
            })
            .collect::<Result<Vec<_>>>()?;
        let grad_outputs = spec
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                ctx.storage(
                    &format!("layer {i}'s gradients [{batch}, {}]", l.units),
                    batch * l.units,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let out = spec.output_dim();
        let mut activation_textures = Vec::new();
        let mut grad_output_textures = Vec::new();
        let mut transposed = Vec::new();
        for (i, layer) in spec.layers.iter().enumerate() {
            let (input, grad) = (View::whole(&activations[i]), View::whole(&grad_outputs[i]));
            let (units, fan_in) = (layer.units, spec.fan_in(i));
            let [input_wanted, grad_wanted] =
                texture::operand_copies(textures, batch, units, fan_in);
            let input_copy =
                TextureCopy::of(ctx, input_wanted, &format!("layer {i}'s inputs"), input)?;
            let grad_copy =
                TextureCopy::of(ctx, grad_wanted, &format!("layer {i}'s gradients"), grad)?;
            let both = input_copy.is_some()
                && grad_copy.is_some()
                && dense::transposed_weight_gradient(choice, batch, units, fan_in, &blocks[i]);
            transposed.push(if both {
                Some([
                    Texels::new(ctx, &format!("layer {i}'s inputs, transposed"), input.len)?,
                    Texels::new(ctx, &format!("layer {i}'s gradients, transposed"), grad.len)?,
                ])
            } else {
                None
            });
            activation_textures.push(input_copy);
            grad_output_textures.push(grad_copy);
        }
        Ok(Workspace {
            batch,
            activation_textures,
            grad_output_textures,
            transposed,
            activations,
            grad_outputs,
            targets: ctx.storage(&format!("the target batch [{batch}, {out}]"), batch * out)?,
            row_stats: ctx.storage("per-row metrics", batch * 2)?,
            probabilities: ctx.storage("output probabilities", batch * out)?,
            train_metrics: ctx.storage("training metrics", METRICS_WORDS)?,
            eval_metrics: ctx.storage("evaluation metrics", METRICS_WORDS)?,
        })
    }
}

pub struct GpuBackend {
    ctx: GpuContext,
    kernels: Kernels,
    spec: Sequential,
    layout: ParamLayout,
    /// Each layer's weight blocks (rows), one block where the weight fits one binding.
    blocks: Vec<Vec<Range<usize>>>,
    loss: Loss,
    model: ModelBuffers,
    work: Workspace,
    data: HashMap<DataKey, GpuData>,
    programs: HashMap<Program, Vec<Segment>>,
    startup: Startup,
    /// Set while kernels are being timed (`--profile`).
    profiler: Option<Profiler>,
}

/// What making the backend cost, for `--verbose` and the profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Startup {
    /// The matmul configuration of each form, where it came from, and the time choosing it
    /// took (the autotuning, when it ran).
    pub matmul: MatmulChoice,
    pub matmul_source: Source,
    pub tuned_seconds: f64,
    /// Building every pipeline of the model (shader compilation), the autotuner's aside.
    pub pipelines: BuildStats,
    /// From opening the device to the backend being ready.
    pub seconds: f64,
    /// Whether the products read their operands from texture copies (texture.rs).
    pub textures: bool,
}

impl Startup {
    /// "GPU start-up 0.29 s: 12 pipelines built in 0.18 s; matmul AB direct8x4, … (from the
    /// autotune cache), operands read from texture copies".
    pub fn describe(&self) -> String {
        let source = match self.matmul_source {
            Source::Forced => "forced by WGRAD_MATMUL".to_string(),
            Source::Cached => "from the autotune cache".to_string(),
            Source::Tuned => format!("autotuned in {:.2} s", self.tuned_seconds),
            Source::Default => {
                "the default: the storage-binding limit is below the autotuner's probes".to_string()
            }
        };
        format!(
            "GPU start-up {:.2} s: {} pipelines built in {:.2} s (some drivers, lavapipe among \
             them, compile a kernel on its first dispatch); matmul {} ({source}){}",
            self.seconds,
            self.pipelines.pipelines,
            self.pipelines.seconds,
            self.matmul.describe(),
            if self.textures {
                ", operands of the larger products read from texture copies"
            } else {
                ""
            }
        )
    }
}

/// The batch the workspace is first made for (`set_batch_size` makes it anew), or fewer
/// rows where a layer that wide would not fit one storage binding.
const DEFAULT_BATCH: usize = 256;

/// Most rows per step and most units per layer: the matmul and reduction kernels loop over
/// them, and llvmpipe (lavapipe) silently ends any shader loop after 65535 iterations
/// (measured: a 70,001-row weight gradient came out 37% wrong).
const MAX_EXTENT: usize = 65_535;

/// Steps recorded into one command buffer and submitted together (the step buffer holds
/// this many uniforms).
const STEPS_PER_SUBMISSION: usize = 64;

/// [`DEFAULT_BATCH`], or as many rows as the widest layer fits into one storage binding.
fn initial_batch(ctx: &GpuContext, spec: &Sequential) -> usize {
    let widest = spec
        .layers
        .iter()
        .map(|l| l.units)
        .fold(spec.input_dim, usize::max);
    let fitting = ctx.binding_limit() as usize / (4 * widest.max(2));
    DEFAULT_BATCH.min(fitting).max(1)
}

/// Inference steps covering `rows` rows in batches of `batch`.
fn batch_steps(rows: usize, batch: usize) -> Vec<StepParams> {
    (0..rows)
        .step_by(batch)
        .map(|start| StepParams {
            batch_start: start,
            ..StepParams::inference(batch.min(rows - start))
        })
        .collect()
}

impl GpuBackend {
    pub fn new(spec: &Sequential, params: &[f32], choice: &AdapterChoice) -> Result<Self> {
        let started = std::time::Instant::now();
        let ctx = GpuContext::new(choice)?;
        for (i, layer) in spec.layers.iter().enumerate() {
            let widest = layer.units.max(spec.fan_in(i));
            if widest > MAX_EXTENT {
                return Err(WgradError::InvalidModel(format!(
                    "layer {i} is {widest} wide, more than the GPU backend's {MAX_EXTENT}; use the CPU"
                )));
            }
        }
        let layout = spec.param_layout();
        if layout.tensors.len() > super::kernels::MAX_TENSORS {
            return Err(WgradError::InvalidModel(format!(
                "{} layers, more than the GPU backend's {}; use the CPU",
                spec.layers.len(),
                super::kernels::MAX_TENSORS / 2
            )));
        }
        // Each bias is bound on its own, each weight in blocks of rows that fit a binding.
        let mut blocks = Vec::with_capacity(spec.layers.len());
        for (i, layer) in spec.layers.iter().enumerate() {
            let bias = layout.bias(i);
            ctx.check_size(
                &format!("{} {:?}", bias.name, bias.shape),
                (bias.len * 4) as u64,
            )?;
            let weight = &layout.weight(i).name;
            blocks.push(dense::weight_blocks(
                &ctx,
                weight,
                layer.units,
                spec.fan_in(i),
            )?);
        }
        let mut kernels = Kernels::new(&ctx)?;
        // Unused state is bound all the same: one packed element of the optimizer's.
        let granule = kernels.optimizer_granule();
        let state_len = |needed: bool| if needed { layout.len } else { granule };
        let [used1, used2] = spec.optimizer.state_vectors();
        let parts = vector_parts(&ctx, layout.len);
        let partials: usize = parts
            .iter()
            .map(|part| Kernels::sum_squares_groups(part.len()))
            .sum();
        let textures = ctx.textures;
        let param_buffer = ctx.storage_in_parts("parameters", layout.len)?;
        let weight_textures = (0..spec.layers.len())
            .map(|i| {
                let weight = layout.weight(i);
                let view = View::part(&param_buffer, weight.offset, weight.len);
                let wanted = textures && blocks[i].len() == 1 && spec.fan_in(i).is_multiple_of(4);
                TextureCopy::of(&ctx, wanted, &weight.name, view)
            })
            .collect::<Result<Vec<_>>>()?;
        let state1 = ctx.storage_in_parts("optimizer state", state_len(used1))?;
        let state2 = ctx.storage_in_parts("optimizer second moment", state_len(used2))?;
        let snapshot = [
            ctx.storage_in_parts_from("the parameters' snapshot", params)?,
            ctx.storage_in_parts("the optimizer state's snapshot", state_len(used1))?,
            ctx.storage_in_parts("the optimizer second moment's snapshot", state_len(used2))?,
        ];
        let model = ModelBuffers {
            step: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("step uniforms"),
                size: STEPS_PER_SUBMISSION as u64 * STEP_STRIDE,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            parts,
            params: param_buffer,
            grads: ctx.storage_in_parts("gradients", layout.len)?,
            state1,
            state2,
            grad_norm_partials: ctx.storage("gradient norm partials", 2 * partials)?,
            no_partials: ctx.storage("no gradient norm partials", 2)?,
            weight_textures,
            snapshot,
        };
        ctx.queue
            .write_buffer(&model.params, 0, bytemuck::cast_slice(params));
        let tuning = std::time::Instant::now();
        let (matmul, matmul_source) = super::autotune::choose_with_source(&ctx, &mut kernels)?;
        kernels.set_matmul_choice(matmul);
        let tuned_seconds = tuning.elapsed().as_secs_f64();
        let before = kernels.build_stats();
        let batch = initial_batch(&ctx, spec);
        kernels.prepare(&ctx, spec, &blocks, batch)?;
        let after = kernels.build_stats();
        let startup = Startup {
            matmul,
            matmul_source,
            tuned_seconds,
            pipelines: BuildStats {
                pipelines: after.pipelines - before.pipelines,
                seconds: after.seconds - before.seconds,
            },
            seconds: started.elapsed().as_secs_f64(),
            textures,
        };
        Ok(GpuBackend {
            work: Workspace::new(&ctx, spec, &blocks, batch, textures, &matmul)?,
            loss: spec.resolved_loss(),
            spec: spec.clone(),
            layout,
            blocks,
            model,
            kernels,
            ctx,
            data: HashMap::new(),
            programs: HashMap::new(),
            startup,
            profiler: None,
        })
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// What making the backend cost.
    pub fn startup(&self) -> Startup {
        self.startup
    }

    fn upload_data(
        &mut self,
        key: DataKey,
        x: ArrayView2<f32>,
        y: Option<ArrayView2<f32>>,
    ) -> Result<()> {
        let name = match key {
            DataKey::User(Slot::Train) => "the training data",
            DataKey::User(Slot::Validation) => "the validation data",
            DataKey::User(Slot::Eval) => "the evaluation data",
            DataKey::Predict => "the prediction inputs",
        };
        let (x_std, y_std) = (
            x.as_standard_layout(),
            y.as_ref().map(|y| y.as_standard_layout()),
        );
        let x_values = x_std.as_slice().expect("standard layout is contiguous");
        let y_values = y_std
            .as_ref()
            .map(|y| y.as_slice().expect("standard layout is contiguous"));
        let (rows, x_width) = x.dim();
        let y_width = y.map_or(0, |y| y.ncols());
        let x_format = DataFormat::of(x_values);
        // Chunks of whole rows, each within one storage binding and one buffer (a multiple of
        // 4 bytes, so that 8-bit rows end within their chunk's last word).
        let row_bytes = x_format.row_bytes(x_width).max(y_width * 4).max(1) as u64;
        self.ctx
            .check_size(&format!("one row of {name}"), row_bytes)?;
        let chunk_rows = (self.ctx.binding_limit() / 4 * 4 / row_bytes) as usize;
        let chunk_count = rows.div_ceil(chunk_rows).max(1);
        let mut chunks = Vec::with_capacity(chunk_count);
        for c in 0..chunk_count {
            let part = c * chunk_rows..rows.min((c + 1) * chunk_rows);
            let what = |tensor: &str, width: usize| {
                let mut what = format!("{name} {tensor} [{rows}, {width}]");
                if chunk_count > 1 {
                    what += &format!(" rows {}..{}", part.start, part.end);
                }
                what
            };
            let x_part = &x_values[part.start * x_width..part.end * x_width];
            let x = self
                .ctx
                .storage_from(&what("x", x_width), &x_format.encode(x_part))?;
            let y = match y_values {
                Some(y) => Some(self.ctx.storage_from(
                    &what("y", y_width),
                    &y[part.start * y_width..part.end * y_width],
                )?),
                None => None,
            };
            chunks.push(DataChunk { rows: part, x, y });
        }
        let identity: Vec<u32> = (0..rows as u32).collect();
        let order = self
            .ctx
            .storage_from(&format!("the sample order of {name}"), &identity)?;
        self.data.insert(
            key,
            GpuData {
                chunks,
                x_format,
                order,
                rows,
            },
        );
        self.programs.retain(|p, _| match (p, key) {
            (Program::Train { .. }, DataKey::User(Slot::Train)) => false,
            (Program::Evaluate(s), DataKey::User(slot)) => *s != slot,
            (Program::Predict, DataKey::Predict) => false,
            _ => true,
        });
        Ok(())
    }

    /// Builds a program's dispatches once; later calls replay them.
    fn ensure_program(&mut self, program: Program) -> Result<()> {
        if self.programs.contains_key(&program) {
            return Ok(());
        }
        let key = match program {
            Program::Train { .. } => DataKey::User(Slot::Train),
            Program::Evaluate(slot) => DataKey::User(slot),
            Program::Predict => DataKey::Predict,
        };
        let data = self
            .data
            .get(&key)
            .ok_or_else(|| WgradError::Gpu(format!("no data uploaded for {key:?}")))?;
        let mut builder = ProgramBuilder {
            ctx: &self.ctx,
            kernels: &mut self.kernels,
            spec: &self.spec,
            layout: &self.layout,
            blocks: &self.blocks,
            loss: self.loss,
            model: &self.model,
            work: &self.work,
            segments: Vec::new(),
        };
        builder.gather(data)?;
        builder.forward()?;
        match program {
            Program::Train { clipped } => {
                builder.loss(&self.work.train_metrics)?;
                builder.backward()?;
                if clipped {
                    builder.clip()?;
                }
                builder.update(clipped)?;
            }
            Program::Evaluate(_) => builder.loss(&self.work.eval_metrics)?,
            Program::Predict => builder.probabilities()?,
        }
        let segments = builder.segments;
        self.programs.insert(program, segments);
        Ok(())
    }

    /// Runs `program` once per step: the steps' uniforms are written in one go, then each
    /// step is recorded as a compute pass (plus whatever `after` adds for it, given the step's
    /// index), [`STEPS_PER_SUBMISSION`] steps to a command buffer and a submission.
    fn run(
        &mut self,
        program: Program,
        steps: &[StepParams],
        mut after: impl FnMut(usize, &mut wgpu::CommandEncoder),
    ) -> Result<()> {
        // Nothing is recorded for a lost device; what the submissions run into is reported
        // by wgpu's callbacks, and returned here or at the next read-back.
        self.ctx.check()?;
        self.ensure_program(program)?;
        if self.profiler.is_some() {
            self.run_profiled(program, steps, after)?;
            return self.ctx.check();
        }
        for (chunk_index, chunk) in steps.chunks(STEPS_PER_SUBMISSION).enumerate() {
            self.ctx
                .queue
                .write_buffer(&self.model.step, 0, &step_buffer_bytes(chunk));
            let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
            for i in 0..chunk.len() {
                for segment in &self.programs[&program] {
                    for copy in &segment.copies {
                        copy.record(&mut encoder);
                    }
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    for dispatch in &segment.dispatches {
                        dispatch.record(&mut pass, i);
                    }
                }
                after(chunk_index * STEPS_PER_SUBMISSION + i, &mut encoder);
            }
            self.ctx.queue.submit([encoder.finish()]);
        }
        self.ctx.check()
    }

    /// [`GpuBackend::run`] with every dispatch timed (see `profile.rs`).
    fn run_profiled(
        &mut self,
        program: Program,
        steps: &[StepParams],
        mut after: impl FnMut(usize, &mut wgpu::CommandEncoder),
    ) -> Result<()> {
        let segments = &self.programs[&program];
        let profiler = self.profiler.as_mut().expect("profiling");
        let dispatches: usize = segments.iter().map(|s| s.dispatches.len()).sum();
        let chunk_len = STEPS_PER_SUBMISSION.min(Profiler::steps_per_submission(dispatches));
        for (chunk_index, chunk) in steps.chunks(chunk_len).enumerate() {
            self.ctx
                .queue
                .write_buffer(&self.model.step, 0, &step_buffer_bytes(chunk));
            let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
            let mut families = Vec::new();
            for i in 0..chunk.len() {
                for segment in segments {
                    for copy in &segment.copies {
                        copy.record(&mut encoder);
                    }
                    for dispatch in &segment.dispatches {
                        profiler.record(&mut encoder, dispatch, i, families.len() as u32);
                        families.push(dispatch.family);
                    }
                }
                after(chunk_index * chunk_len + i, &mut encoder);
            }
            profiler.submit(&self.ctx, encoder, &families)?;
            if matches!(program, Program::Train { .. }) {
                profiler.profile.train_steps += chunk.len() as u64;
            }
        }
        Ok(())
    }

    /// Copies each buffer of `from` into the same-sized one of `to`, on the device.
    fn copy_buffers(&self, from: [&wgpu::Buffer; 3], to: [&wgpu::Buffer; 3]) -> Result<()> {
        self.ctx.check()?;
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        for (from, to) in from.into_iter().zip(to) {
            encoder.copy_buffer_to_buffer(from, 0, to, 0, from.size());
        }
        self.ctx.queue.submit([encoder.finish()]);
        self.ctx.check()
    }

    /// Reads a metrics buffer (see [`METRICS_WORDS`]) and zeroes it.
    fn read_metrics(&self, buffer: &wgpu::Buffer) -> Result<Metrics> {
        let values = self.ctx.read(buffer, 0, METRICS_WORDS)?;
        self.ctx
            .queue
            .write_buffer(buffer, 0, bytemuck::cast_slice(&[0u32; METRICS_WORDS]));
        let step = |word: usize| Some(values[word].to_bits()).filter(|&s| s != 0);
        Ok(Metrics {
            loss_sum: values[0] as f64,
            correct: values[1] as f64,
            count: values[2] as f64,
            nonfinite_loss: step(3).map(|s| (s, values[4])),
            nonfinite_params: step(PARAMS_STEP_WORD),
        })
    }
}

/// Assembles the dispatches of one program in execution order, with the copies that refresh
/// texture copies after the dispatches that write their buffers.
struct ProgramBuilder<'a> {
    ctx: &'a GpuContext,
    kernels: &'a mut Kernels,
    spec: &'a Sequential,
    layout: &'a ParamLayout,
    blocks: &'a [Vec<Range<usize>>],
    loss: Loss,
    model: &'a ModelBuffers,
    work: &'a Workspace,
    segments: Vec<Segment>,
}

impl<'a> ProgramBuilder<'a> {
    /// Tensor `tensor` of the layout, inside a parameter-shaped buffer.
    fn tensor<'b>(&self, buffer: &'b wgpu::Buffer, tensor: usize) -> View<'b> {
        let slot = &self.layout.tensors[tensor];
        View::part(buffer, slot.offset, slot.len)
    }

    fn push(&mut self, dispatch: Dispatch) {
        if self.segments.is_empty() {
            self.segments.push(Segment::default());
        }
        let last = self.segments.len() - 1;
        self.segments[last].dispatches.push(dispatch);
    }

    /// Refreshes `copy` (where there is one) before the dispatches that follow.
    fn refresh(&mut self, copy: &Option<TextureCopy>) {
        let Some(copy) = copy else { return };
        if self
            .segments
            .last()
            .is_none_or(|s| !s.dispatches.is_empty())
        {
            self.segments.push(Segment::default());
        }
        let last = self.segments.len() - 1;
        self.segments[last].copies.push(copy.clone());
    }

    /// Layer `i`'s output gradient in the workspace, with its texture copy.
    fn grad_output(&self, i: usize) -> View<'a> {
        View::whole(&self.work.grad_outputs[i])
            .with_texture(self.work.grad_output_textures[i].as_ref())
    }

    /// activations[i] (layer i's input; the logits for i = L), with its texture copy.
    fn activation(&self, i: usize) -> View<'a> {
        let texture = self
            .work
            .activation_textures
            .get(i)
            .and_then(Option::as_ref);
        View::whole(&self.work.activations[i]).with_texture(texture)
    }

    /// One gather per chunk of the data set; before it, the weights' texture copies are
    /// refreshed (the previous step's update changed the weights), after it the batch's.
    fn gather(&mut self, data: &GpuData) -> Result<()> {
        let (model, work) = (self.model, self.work);
        for (copy, input) in model.weight_textures.iter().zip(&work.activation_textures) {
            if input.is_some() {
                self.refresh(copy);
            }
        }
        for chunk in &data.chunks {
            let targets = chunk.y.as_ref().map(|y| {
                (
                    self.spec.output_dim(),
                    View::whole(y),
                    View::whole(&self.work.targets),
                )
            });
            let d = self.kernels.gather(
                self.ctx,
                &self.model.step,
                self.work.batch,
                self.spec.input_dim,
                data.x_format,
                chunk.rows.clone(),
                View::whole(&chunk.x),
                View::whole(&data.order),
                View::whole(&self.work.activations[0]),
                targets,
            )?;
            self.push(d);
        }
        self.refresh(&work.activation_textures[0]);
        Ok(())
    }

    /// Layer `i`'s weight and bias inside a parameter-shaped buffer, the weight with
    /// `texture`.
    fn dense(
        &self,
        buffer: &'a wgpu::Buffer,
        texture: Option<&'a TextureCopy>,
        i: usize,
    ) -> DenseTensors<'a> {
        DenseTensors {
            weight: self.tensor(buffer, 2 * i).with_texture(texture),
            bias: self.tensor(buffer, 2 * i + 1),
            fan_in: self.spec.fan_in(i),
            blocks: &self.blocks[i],
            tiled: false,
        }
    }

    /// Layer `i`'s parameters, the weight with its texture copy where the layer reads
    /// copies (its input has one).
    fn params(&self, i: usize) -> DenseTensors<'a> {
        let model = self.model;
        let texture = model.weight_textures[i]
            .as_ref()
            .filter(|_| self.work.activation_textures[i].is_some());
        self.dense(&model.params, texture, i)
    }

    fn push_products(&mut self, products: Vec<Product>) -> Result<()> {
        for product in &products {
            let d = self.kernels.matmul(self.ctx, &self.model.step, product)?;
            self.push(d);
        }
        Ok(())
    }

    fn forward(&mut self) -> Result<()> {
        let last = self.spec.layers.len() - 1;
        for (i, layer) in self.spec.layers.iter().enumerate() {
            // The output layer emits logits; its activation is fused with the loss.
            let activation = if i == last {
                Activation::Linear
            } else {
                layer.activation
            };
            let dropout = LayerDropout {
                layer: i,
                rate: layer.dropout,
            };
            let products = dense::forward(
                self.params(i),
                self.work.batch,
                activation,
                dropout,
                self.activation(i),
                self.activation(i + 1),
            );
            self.push_products(products)?;
            let work = self.work;
            if let Some(copy) = work.activation_textures.get(i + 1) {
                self.refresh(copy);
            }
        }
        Ok(())
    }

    fn loss(&mut self, metrics: &wgpu::Buffer) -> Result<()> {
        let last = self.spec.layers.len() - 1;
        let d = self.kernels.loss(
            self.ctx,
            &self.model.step,
            self.loss,
            self.spec.output_activation(),
            self.work.batch,
            View::whole(&self.work.activations[last + 1]),
            View::whole(&self.work.targets),
            self.grad_output(last),
            View::whole(&self.work.row_stats),
            View::whole(metrics),
        )?;
        self.push(d);
        let work = self.work;
        self.refresh(&work.grad_output_textures[last]);
        Ok(())
    }

    fn probabilities(&mut self) -> Result<()> {
        let last = self.spec.layers.len() - 1;
        let d = self.kernels.probabilities(
            self.ctx,
            &self.model.step,
            self.loss,
            self.spec.output_activation(),
            self.work.batch,
            View::whole(&self.work.activations[last + 1]),
            View::whole(&self.work.probabilities),
            View::whole(&self.work.row_stats),
            View::whole(&self.work.eval_metrics),
        )?;
        self.push(d);
        Ok(())
    }

    fn backward(&mut self) -> Result<()> {
        let batch = self.work.batch;
        for i in (0..self.spec.layers.len()).rev() {
            let grad_output = self.grad_output(i);
            let input = self.activation(i);
            // dW = dzᵀ·x, and db = Σ_rows dz in the same pass; as (dzᵀ)·(xᵀ)ᵀ from texture
            // copies of the transposes where the layer has them.
            let grads = DenseTensors {
                tiled: self.tiled_gradient(i),
                ..self.dense(&self.model.grads, None, i)
            };
            let work = self.work;
            let transposed = match (
                &work.transposed[i],
                &work.activation_textures[i],
                &work.grad_output_textures[i],
            ) {
                (Some([x_t, dz_t]), Some(x_copy), Some(dz_copy)) => {
                    Some(dense::grad_params_from_transposes(
                        self.kernels,
                        self.ctx,
                        &self.model.step,
                        grads,
                        batch,
                        (&work.activations[i], x_copy, x_t),
                        (&work.grad_outputs[i], dz_copy, dz_t),
                    )?)
                }
                _ => None,
            };
            let products = match transposed {
                Some((transposes, products)) => {
                    for d in transposes {
                        self.push(d);
                    }
                    products
                }
                None => dense::grad_params(grads, batch, grad_output, input),
            };
            self.push_products(products)?;
            // dz of the layer below = (dz·W) ⊙ f'(its output)
            if i > 0 {
                let below = &self.spec.layers[i - 1];
                let dropout = LayerDropout {
                    layer: i - 1,
                    rate: below.dropout,
                };
                let products = dense::grad_input(
                    self.params(i),
                    batch,
                    grad_output,
                    input,
                    below.activation,
                    dropout,
                    self.grad_output(i - 1),
                );
                self.push_products(products)?;
                let work = self.work;
                self.refresh(&work.grad_output_textures[i - 1]);
            }
        }
        Ok(())
    }

    /// Whether layer `i`'s weight gradient is stored tiled (`dense::tiles_gradient`): on
    /// adapters that gain from it (`GpuContext::tiled_gradients`), for weights large enough
    /// (`dense::TILED_GRADIENT_ELEMENTS`), where the flat vectors are one part, so that the
    /// optimizer's one dispatch sees the whole gradient.
    fn tiled_gradient(&self, i: usize) -> bool {
        let fan_in = self.spec.fan_in(i);
        self.ctx.tiled_gradients
            && self.model.parts.len() == 1
            && self.spec.layers[i].units * fan_in >= dense::TILED_GRADIENT_ELEMENTS
            && dense::tiles_gradient(fan_in, &self.blocks[i])
    }

    /// Part `part` of one of the flat vectors.
    fn part<'b>(buffer: &'b wgpu::Buffer, part: &Range<usize>) -> View<'b> {
        View::part(buffer, part.start, part.len())
    }

    /// The (scale, ssq) partial norms of the gradient (the update makes the clipping
    /// factor), one dispatch per part, each writing its partials after the previous part's.
    fn clip(&mut self) -> Result<()> {
        let mut first = 0;
        for part in &self.model.parts {
            let d = self.kernels.sum_squares(
                self.ctx,
                &self.model.step,
                Self::part(&self.model.grads, part),
                View::whole(&self.model.grad_norm_partials),
                first,
            )?;
            self.push(d);
            first += Kernels::sum_squares_groups(part.len());
        }
        Ok(())
    }

    /// One update of every tensor, one dispatch per part; the penalties apply to the weights.
    fn update(&mut self, clipped: bool) -> Result<()> {
        let [used1, used2] = self.spec.optimizer.state_vectors();
        let state = |buffer, used: bool, part| {
            if used {
                Self::part(buffer, part)
            } else {
                View::whole(buffer)
            }
        };
        let clip = if clipped {
            &self.model.grad_norm_partials
        } else {
            &self.model.no_partials
        };
        for part in &self.model.parts {
            let d = self.kernels.optimizer(
                self.ctx,
                &self.model.step,
                &self.spec.optimizer,
                (self.spec.l1, self.spec.l2),
                1.0,
                clipped,
                Self::part(&self.model.grads, part),
                Self::part(&self.model.params, part),
                state(&self.model.state1, used1, part),
                state(&self.model.state2, used2, part),
                View::whole(clip),
                View::part(&self.work.train_metrics, PARAMS_STEP_WORD, 1),
                &regions(self.layout, part, |tensor| {
                    // Tensor 2i is layer i's weight.
                    if tensor % 2 == 0 && self.tiled_gradient(tensor / 2) {
                        self.spec.fan_in(tensor / 2)
                    } else {
                        0
                    }
                }),
            )?;
            self.push(d);
        }
        Ok(())
    }
}

/// Each tensor of `layout` that reaches into `part`, counted from the part's start, for
/// optimizer.wgsl; `tiled_columns(t)` gives tensor t's if its gradient is tiled, else 0.
fn regions(
    layout: &ParamLayout,
    part: &Range<usize>,
    tiled_columns: impl Fn(usize) -> usize,
) -> Vec<Region> {
    layout
        .tensors
        .iter()
        .enumerate()
        .filter(|(_, t)| t.offset + t.len > part.start && t.offset < part.end)
        .map(|(i, t)| Region {
            start: t.offset.saturating_sub(part.start),
            end: t.offset + t.len - part.start,
            regularized: t.regularized,
            tiled_columns: tiled_columns(i),
        })
        .collect()
}

/// Splits a flat vector of `len` elements into parts of at most one storage binding, each
/// starting at a multiple of [`ParamLayout::ALIGN`] elements (so that every workgroup of the
/// optimizer still lies in one tensor) and of the adapter's storage offset alignment.
fn vector_parts(ctx: &GpuContext, len: usize) -> Vec<Range<usize>> {
    let align = ParamLayout::ALIGN.max(ctx.limits.min_storage_buffer_offset_alignment as usize / 4);
    let most =
        ((ctx.limits.max_storage_buffer_binding_size / 4) as usize / align * align).max(align);
    (0..len)
        .step_by(most)
        .map(|start| start..len.min(start + most))
        .collect()
}

impl Backend for GpuBackend {
    fn describe(&self) -> String {
        format!("GPU: {}", self.ctx.describe())
    }

    fn set_profiling(&mut self, on: bool) -> bool {
        if !on {
            self.profiler = None;
        } else if self.profiler.is_none() {
            self.profiler = Profiler::new(&self.ctx);
        }
        self.profiler.is_some()
    }

    fn take_profile(&mut self) -> Option<Profile> {
        self.profiler
            .as_mut()
            .map(|p| std::mem::take(&mut p.profile))
    }

    fn gpu_startup(&self) -> Option<Startup> {
        Some(self.startup)
    }

    fn set_batch_size(&mut self, batch_size: usize) -> Result<()> {
        if batch_size > MAX_EXTENT {
            return Err(WgradError::InvalidConfig(format!(
                "batch size {batch_size} is more than the GPU backend's {MAX_EXTENT} rows per step; \
                 use a smaller batch (or the CPU)"
            )));
        }
        if self.work.batch != batch_size {
            let choice = self.kernels.matmul_choice_or_tune(&self.ctx)?;
            self.work = Workspace::new(
                &self.ctx,
                &self.spec,
                &self.blocks,
                batch_size,
                self.kernels.textures,
                &choice,
            )?;
            self.kernels
                .prepare(&self.ctx, &self.spec, &self.blocks, batch_size)?;
            self.programs.clear();
        }
        Ok(())
    }

    fn upload(&mut self, slot: Slot, x: ArrayView2<f32>, y: ArrayView2<f32>) -> Result<()> {
        self.upload_data(DataKey::User(slot), x, Some(y))
    }

    fn set_order(&mut self, order: &[u32]) -> Result<()> {
        let data = self.data.get(&DataKey::User(Slot::Train)).ok_or_else(|| {
            WgradError::Gpu("set_order before the training data was uploaded".into())
        })?;
        self.ctx.check()?;
        self.ctx
            .queue
            .write_buffer(&data.order, 0, bytemuck::cast_slice(order));
        Ok(())
    }

    fn train_steps(&mut self, steps: &[StepParams]) -> Result<()> {
        let clipped = steps.iter().any(|s| s.clip_norm > 0.0);
        self.run(Program::Train { clipped }, steps, |_, _| {})
    }

    fn take_train_metrics(&mut self) -> Result<Metrics> {
        self.read_metrics(&self.work.train_metrics)
    }

    fn evaluate(&mut self, slot: Slot) -> Result<Metrics> {
        let rows = self.data.get(&DataKey::User(slot)).map_or(0, |d| d.rows);
        let steps = batch_steps(rows, self.work.batch);
        self.run(Program::Evaluate(slot), &steps, |_, _| {})?;
        self.read_metrics(&self.work.eval_metrics)
    }

    fn predict(&mut self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        let n = x.nrows();
        let out = self.spec.output_dim();
        self.upload_data(DataKey::Predict, x, None)?;
        // Only copied into, never bound.
        let results = self
            .ctx
            .storage_in_parts(&format!("predictions [{n}, {out}]"), n * out)?;
        let steps = batch_steps(n, self.work.batch);
        let probabilities = self.work.probabilities.clone();
        self.run(Program::Predict, &steps, |i, encoder| {
            let (start, rows) = (steps[i].batch_start, steps[i].rows);
            let (offset, bytes) = ((start * out * 4) as u64, (rows * out * 4) as u64);
            encoder.copy_buffer_to_buffer(&probabilities, 0, &results, offset, bytes);
        })?;
        let values = self.ctx.read(&results, 0, n * out)?;
        Ok(Array2::from_shape_vec((n, out), values).expect("read-back has n × outputs values"))
    }

    fn params(&mut self) -> Result<Vec<f32>> {
        self.ctx.read(&self.model.params, 0, self.layout.len)
    }

    fn set_params(&mut self, params: &[f32]) -> Result<()> {
        self.ctx.check()?;
        self.ctx
            .queue
            .write_buffer(&self.model.params, 0, bytemuck::cast_slice(params));
        Ok(())
    }

    fn destroy_device(&mut self) -> bool {
        self.ctx.destroy_device();
        true
    }

    fn optimizer_state(&mut self) -> Result<[Vec<f32>; 2]> {
        let [used1, used2] = self.spec.optimizer.state_vectors();
        let read = |buffer, used: bool| {
            if used {
                self.ctx.read(buffer, 0, self.layout.len)
            } else {
                Ok(Vec::new())
            }
        };
        Ok([
            read(&self.model.state1, used1)?,
            read(&self.model.state2, used2)?,
        ])
    }

    fn set_optimizer_state(&mut self, state: &[Vec<f32>; 2]) -> Result<()> {
        self.ctx.check()?;
        for (buffer, values) in [&self.model.state1, &self.model.state2]
            .into_iter()
            .zip(state)
        {
            let zeros = vec![0.0f32; (buffer.size() / 4) as usize];
            let values = if values.is_empty() { &zeros } else { values };
            self.ctx
                .queue
                .write_buffer(buffer, 0, bytemuck::cast_slice(values));
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<()> {
        self.copy_buffers(self.model.trained_state(), self.model.snapshot.each_ref())
    }

    fn restore_snapshot(&mut self) -> Result<()> {
        self.copy_buffers(self.model.snapshot.each_ref(), self.model.trained_state())
    }
}
