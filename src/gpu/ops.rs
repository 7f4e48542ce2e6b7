//! Each GPU kernel on its own, on host arrays: the entry points of the parity tests, which
//! hold every kernel against its CPU twin in `cpu::ops` (same names, same arguments).
//! Each call uploads its inputs, runs one dispatch and reads the result back; the scheduler
//! never goes through here.

use super::autotune::time_dispatch;
use super::dense::{self, DenseTensors, LayerDropout};
use super::device::{AdapterChoice, GpuContext};
use super::kernels::{
    DataFormat, Dispatch, Kernels, Product, Region, StepUniform, View, tiled_index,
};
use super::matmul::MatmulChoice;
use super::texture::{Texels, TextureCopy};
use crate::backend::StepParams;
use crate::cpu::ops::{Dropout, MatmulForm};
use crate::error::{Result, WgradError};
use crate::model::{Activation, Loss, Optimizer};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use std::ops::Range;

pub struct KernelRunner {
    pub ctx: GpuContext,
    kernels: Kernels,
}

fn flat(a: ArrayView2<f32>) -> Vec<f32> {
    a.as_standard_layout().iter().copied().collect()
}

/// The layer and rate of `dropout` for the matmul epilogues (none: rate 0).
fn layer_dropout(dropout: Option<Dropout>) -> LayerDropout {
    LayerDropout {
        layer: dropout.map_or(0, |d| d.layer as usize),
        rate: dropout.map_or(0.0, |d| d.rate),
    }
}

/// The step whose dropout masks are `dropout`'s (no dropout: an inference step).
fn step_for(dropout: Option<Dropout>) -> StepParams {
    StepParams {
        step: dropout.map_or(0, |d| d.step),
        seed: dropout.map_or(0, |d| d.seed),
        training: dropout.is_some(),
        ..StepParams::inference(0)
    }
}

impl KernelRunner {
    pub fn new(choice: &AdapterChoice) -> Result<Self> {
        let ctx = GpuContext::new(choice)?;
        let kernels = Kernels::new(&ctx)?;
        Ok(KernelRunner { ctx, kernels })
    }

    /// Runs every matmul in configuration `config` (an index into
    /// [`MATMUL_CONFIGS`](super::matmul::MATMUL_CONFIGS)) instead of the adapter's choice.
    pub fn set_matmul_config(&mut self, config: usize) {
        self.kernels.set_matmul_choice(MatmulChoice::all(config));
    }

    /// Pipelines built so far and the time that took.
    pub fn build_stats(&self) -> super::kernels::BuildStats {
        self.kernels.build_stats()
    }

    /// The matmul configuration of each form (chosen on first use, see `autotune.rs`).
    pub fn matmul_choice(&self) -> Option<MatmulChoice> {
        self.kernels.matmul_choice()
    }

    fn step_buffer(&self, step: &StepParams) -> wgpu::Buffer {
        self.ctx.uniform("step", &StepUniform::from(step))
    }

    /// Runs `dispatches` in order, in one submission.
    fn submit(&self, dispatches: &[Dispatch]) -> Result<()> {
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for dispatch in dispatches {
                dispatch.record(&mut pass, 0);
            }
        }
        self.ctx.queue.submit([encoder.finish()]);
        self.ctx.check()
    }

    /// Whether matmul operands get texture copies (texture.rs; by default as the scheduler
    /// gives them on this adapter).
    pub fn set_textures(&mut self, on: bool) {
        self.kernels.textures = on;
    }

    /// Whether the optimizer and the gather pack their vectors in 64-bit words (by default as
    /// the scheduler does on this adapter); on only where [`KernelRunner::packings`] lists it.
    pub fn set_wide_words(&mut self, on: bool) {
        self.kernels.wide_words = on;
    }

    /// Whether weight gradients are stored tiled where they can be (by default as the
    /// scheduler does on this adapter, `GpuContext::tiled_gradients`); read back row-major
    /// either way.
    pub fn set_tiled_gradients(&mut self, on: bool) {
        self.ctx.tiled_gradients = on;
    }

    /// The packings (optimizer, gather) this device runs: 32-bit always, 64-bit words where
    /// it has `SHADER_INT64` (optimizer.wgsl, "Packing").
    pub fn packings(&self) -> Vec<bool> {
        let int64 = self
            .ctx
            .device
            .features()
            .contains(wgpu::Features::SHADER_INT64);
        [false, true]
            .into_iter()
            .filter(|&wide| !wide || int64)
            .collect()
    }

    /// Runs `products` in order, in one submission, their operands read from texture copies
    /// where the scheduler would give them one.
    fn run_products(&mut self, step: &wgpu::Buffer, products: &[Product]) -> Result<()> {
        let operands: Vec<View> = products.iter().flat_map(|p| [p.a, p.b]).collect();
        let copies = TextureCopy::filled(&self.ctx, self.kernels.textures, &operands)?;
        let aux_copies = TextureCopy::filled(
            &self.ctx,
            self.kernels.textures,
            &products.iter().filter_map(|p| p.aux).collect::<Vec<_>>(),
        )?;
        let mut aux_copies = aux_copies.iter();
        let dispatches = products
            .iter()
            .zip(copies.chunks(2))
            .map(|(product, copies)| {
                let product = Product {
                    a: product.a.with_texture(copies[0].as_ref()),
                    b: product.b.with_texture(copies[1].as_ref()),
                    aux: product
                        .aux
                        .map(|aux| aux.with_texture(aux_copies.next().and_then(Option::as_ref))),
                    ..*product
                };
                self.kernels.matmul(&self.ctx, step, &product)
            })
            .collect::<Result<Vec<_>>>()?;
        self.submit(&dispatches)
    }

    fn read2(&self, buffer: &wgpu::Buffer, rows: usize, cols: usize) -> Result<Array2<f32>> {
        let values = self.ctx.read(buffer, 0, rows * cols)?;
        Ok(Array2::from_shape_vec((rows, cols), values).expect("read-back has rows × cols values"))
    }

    /// A weight [units, fan_in] and bias on the device, with its blocks: the weight is
    /// uploaded as one buffer and split into blocks where it exceeds one storage binding, as
    /// the scheduler splits it.
    fn upload_dense(
        &self,
        weight: ArrayView2<f32>,
        bias: &[f32],
    ) -> Result<(wgpu::Buffer, wgpu::Buffer, Vec<Range<usize>>)> {
        let (units, fan_in) = weight.dim();
        let blocks = dense::weight_blocks(&self.ctx, "weight", units, fan_in)?;
        Ok((
            self.ctx.storage_in_parts_from("weight", &flat(weight))?,
            self.ctx.storage_from("bias", bias)?,
            blocks,
        ))
    }

    /// Seconds per C = A·B (M×K by K×N) on varied inputs, timed over `repeats` dispatches
    /// recorded into one submission after one warm-up dispatch: the kernel's own speed,
    /// without uploads or read-backs (operands read from texture copies where training would).
    pub fn time_matmul(&mut self, m: usize, n: usize, k: usize, repeats: usize) -> Result<f64> {
        self.time_matmul_form(MatmulForm::AB, m, n, k, repeats)
    }

    /// [`KernelRunner::time_matmul`] for any form (m, n, k are those of C = op(A)·op(B)).
    pub fn time_matmul_form(
        &mut self,
        form: MatmulForm,
        m: usize,
        n: usize,
        k: usize,
        repeats: usize,
    ) -> Result<f64> {
        let step = self.step_buffer(&StepParams::inference(0));
        // Varied inputs, as the CPU's matmul benchmark uses.
        let varied = |len: usize| -> Vec<f32> {
            (0..len)
                .map(|i| ((i * 31) % 255) as f32 / 255.0 - 0.5)
                .collect()
        };
        let a = self.ctx.storage_from("a", &varied(m * k))?;
        let b = self.ctx.storage_from("b", &varied(k * n))?;
        let c = self.ctx.storage("c", m * n)?;
        let product = Product::plain(
            form,
            (m, n, k),
            View::whole(&a),
            View::whole(&b),
            View::whole(&c),
        );
        // Operands read from texture copies where training would (filled once, untimed).
        let copies =
            TextureCopy::filled(&self.ctx, self.kernels.textures, &[product.a, product.b])?;
        let product = Product {
            a: product.a.with_texture(copies[0].as_ref()),
            b: product.b.with_texture(copies[1].as_ref()),
            ..product
        };
        let d = self.kernels.matmul(&self.ctx, &step, &product)?;
        time_dispatch(&self.ctx, &d, 1)?;
        time_dispatch(&self.ctx, &d, repeats)
    }

    /// Twin of [`crate::cpu::ops::matmul`].
    pub fn matmul(
        &mut self,
        form: MatmulForm,
        a: ArrayView2<f32>,
        b: ArrayView2<f32>,
    ) -> Result<Array2<f32>> {
        let (m, k) = match form {
            MatmulForm::AtB => (a.ncols(), a.nrows()),
            _ => (a.nrows(), a.ncols()),
        };
        let n = if form == MatmulForm::ABt {
            b.nrows()
        } else {
            b.ncols()
        };
        let step = self.step_buffer(&step_for(None));
        let a_buf = self.ctx.storage_from("a", &flat(a))?;
        let b_buf = self.ctx.storage_from("b", &flat(b))?;
        let c_buf = self.ctx.storage("c", m * n)?;
        let product = Product::plain(
            form,
            (m, n, k),
            View::whole(&a_buf),
            View::whole(&b_buf),
            View::whole(&c_buf),
        );
        self.run_products(&step, &[product])?;
        self.read2(&c_buf, m, n)
    }

    /// Twin of [`crate::cpu::ops::dense_forward`]; the weight in blocks of rows where it is
    /// larger than one storage binding.
    pub fn dense_forward(
        &mut self,
        x: ArrayView2<f32>,
        weight: ArrayView2<f32>,
        bias: ArrayView1<f32>,
        activation: Activation,
        dropout: Option<Dropout>,
    ) -> Result<Array2<f32>> {
        let (batch, units) = (x.nrows(), weight.nrows());
        let step = self.step_buffer(&step_for(dropout));
        let (weight_buf, bias_buf, blocks) = self.upload_dense(weight, &bias.to_vec())?;
        let x_buf = self.ctx.storage_from("x", &flat(x))?;
        let y_buf = self.ctx.storage("y", batch * units)?;
        let tensors = DenseTensors {
            weight: View::whole(&weight_buf),
            bias: View::whole(&bias_buf),
            fan_in: weight.ncols(),
            blocks: &blocks,
            tiled: false,
        };
        let products = dense::forward(
            tensors,
            batch,
            activation,
            layer_dropout(dropout),
            View::whole(&x_buf),
            View::whole(&y_buf),
        );
        self.run_products(&step, &products)?;
        self.read2(&y_buf, batch, units)
    }

    /// Twin of [`crate::cpu::ops::dense_backward_input`]; the weight in blocks of rows where
    /// it is larger than one storage binding.
    pub fn dense_backward_input(
        &mut self,
        grad_output: ArrayView2<f32>,
        weight: ArrayView2<f32>,
        input: ArrayView2<f32>,
        input_activation: Activation,
        input_dropout: Option<Dropout>,
    ) -> Result<Array2<f32>> {
        let (batch, units) = grad_output.dim();
        let fan_in = weight.ncols();
        let step = self.step_buffer(&step_for(input_dropout));
        let (weight_buf, bias_buf, blocks) = self.upload_dense(weight, &vec![0.0; units])?;
        let dz = self.ctx.storage_from("dz", &flat(grad_output))?;
        let input_buf = self.ctx.storage_from("input", &flat(input))?;
        let dx = self.ctx.storage("dx", batch * fan_in)?;
        let tensors = DenseTensors {
            weight: View::whole(&weight_buf),
            bias: View::whole(&bias_buf),
            fan_in,
            blocks: &blocks,
            tiled: false,
        };
        let products = dense::grad_input(
            tensors,
            batch,
            View::whole(&dz),
            View::whole(&input_buf),
            input_activation,
            layer_dropout(input_dropout),
            View::whole(&dx),
        );
        self.run_products(&step, &products)?;
        self.read2(&dx, batch, fan_in)
    }

    /// Twins of [`crate::cpu::ops::grad_weights`] and [`crate::cpu::ops::grad_bias`], in
    /// one pass as the training step computes them: (dzᵀ·x, Σ_rows dz); the weight gradient
    /// in blocks of rows where it is larger than one storage binding.
    pub fn grad_weights_and_bias(
        &mut self,
        grad_output: ArrayView2<f32>,
        input: ArrayView2<f32>,
    ) -> Result<(Array2<f32>, Array1<f32>)> {
        let (batch, units) = grad_output.dim();
        let fan_in = input.ncols();
        let step = self.step_buffer(&step_for(None));
        let dz = self.ctx.storage_from("dz", &flat(grad_output))?;
        let x = self.ctx.storage_from("x", &flat(input))?;
        let blocks = dense::weight_blocks(&self.ctx, "weight gradient", units, fan_in)?;
        let grad_weight = self.ctx.storage_in_parts("dW", units * fan_in)?;
        let tiled = self.ctx.tiled_gradients && dense::tiles_gradient(fan_in, &blocks);
        let grad_bias = self.ctx.storage("db", units)?;
        let grads = DenseTensors {
            weight: View::whole(&grad_weight),
            bias: View::whole(&grad_bias),
            fan_in,
            blocks: &blocks,
            tiled,
        };
        // As the scheduler computes it: from texture copies of dz and x where textures are on
        // (transposed where the matmul configuration and the shapes call for it).
        let copies = TextureCopy::filled(
            &self.ctx,
            self.kernels.textures,
            &[View::whole(&x), View::whole(&dz)],
        )?;
        let choice = self.kernels.matmul_choice_or_tune(&self.ctx)?;
        // The transposes, where made: they live until the products have run.
        let targets;
        let products = match &copies[..] {
            [Some(x_copy), Some(dz_copy)]
                if dense::transposed_weight_gradient(&choice, batch, units, fan_in, &blocks) =>
            {
                targets = [
                    Texels::new(&self.ctx, "x transposed", batch * fan_in)?,
                    Texels::new(&self.ctx, "dz transposed", batch * units)?,
                ];
                let (transposes, products) = dense::grad_params_from_transposes(
                    &mut self.kernels,
                    &self.ctx,
                    &step,
                    grads,
                    batch,
                    (&x, x_copy, &targets[0]),
                    (&dz, dz_copy, &targets[1]),
                )?;
                self.submit(&transposes)?;
                products
            }
            _ => dense::grad_params(
                grads,
                batch,
                View::whole(&dz).with_texture(copies[1].as_ref()),
                View::whole(&x).with_texture(copies[0].as_ref()),
            ),
        };
        self.run_products(&step, &products)?;
        let stored = self.ctx.read(&grad_weight, 0, units * fan_in)?;
        let grad_weight = Array2::from_shape_fn((units, fan_in), |(row, col)| {
            stored[if tiled {
                tiled_index(row, col, units, fan_in)
            } else {
                row * fan_in + col
            }]
        });
        Ok((
            grad_weight,
            Array1::from(self.ctx.read(&grad_bias, 0, units)?),
        ))
    }

    /// Twin of ndarray's transpose, as the weight gradient takes its operands: the matrix's
    /// texture copy transposed into a texture (transpose.wgsl), read back. Rows and columns
    /// must be multiples of 4.
    pub fn transpose(&mut self, matrix: ArrayView2<f32>) -> Result<Array2<f32>> {
        let (rows, cols) = matrix.dim();
        if !(rows.is_multiple_of(4) && cols.is_multiple_of(4)) {
            return Err(WgradError::Gpu(format!(
                "transpose of a [{rows}, {cols}] matrix: both must be multiples of 4"
            )));
        }
        let step = self.step_buffer(&step_for(None));
        let source = self.ctx.storage_from("matrix", &flat(matrix))?;
        let copies = TextureCopy::filled(&self.ctx, true, &[View::whole(&source)])?;
        let copy = copies[0].as_ref().ok_or_else(|| {
            WgradError::Gpu(format!("a [{rows}, {cols}] matrix does not fit a texture"))
        })?;
        let transposed = Texels::new(&self.ctx, "transposed", rows * cols)?;
        let d = self.kernels.transpose(
            &self.ctx,
            &step,
            (rows, cols),
            copy.view(),
            &transposed.view,
        )?;
        self.submit(&[d])?;
        let out = self
            .ctx
            .storage("read-back", (transposed.bytes() / 4) as usize)?;
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        transposed.record_read(&mut encoder, &out);
        self.ctx.queue.submit([encoder.finish()]);
        self.read2(&out, cols, rows)
    }

    /// Twin of [`crate::cpu::ops::output_loss`]: (row losses, row correctness, logit
    /// gradient), and the metrics the same dispatch accumulates: [Σ loss, Σ correct, rows].
    #[allow(clippy::type_complexity)]
    pub fn output_loss(
        &mut self,
        loss: Loss,
        declared: Activation,
        logits: ArrayView2<f32>,
        targets: ArrayView2<f32>,
        rows: usize,
    ) -> Result<(Array1<f32>, Array1<f32>, Array2<f32>, [f32; 3])> {
        let (batch, n) = logits.dim();
        let step = self.step_buffer(&StepParams {
            rows,
            ..step_for(None)
        });
        let logits_buf = self.ctx.storage_from("logits", &flat(logits))?;
        let targets_buf = self.ctx.storage_from("targets", &flat(targets))?;
        let grad = self.ctx.storage("grad", batch * n)?;
        let stats = self.ctx.storage("row stats", batch * 2)?;
        let metrics = self.ctx.storage("metrics", 5)?;
        let d = self.kernels.loss(
            &self.ctx,
            &step,
            loss,
            declared,
            batch,
            View::whole(&logits_buf),
            View::whole(&targets_buf),
            View::whole(&grad),
            View::whole(&stats),
            View::whole(&metrics),
        )?;
        self.submit(&[d])?;
        let stats = self.read2(&stats, batch, 2)?;
        let sums = self.ctx.read(&metrics, 0, 3)?;
        Ok((
            stats.column(0).to_owned(),
            stats.column(1).to_owned(),
            self.read2(&grad, batch, n)?,
            [sums[0], sums[1], sums[2]],
        ))
    }

    /// Twin of [`crate::cpu::ops::output_probabilities_row`], over every row.
    pub fn probabilities(
        &mut self,
        loss: Loss,
        declared: Activation,
        logits: ArrayView2<f32>,
    ) -> Result<Array2<f32>> {
        let (batch, n) = logits.dim();
        let step = self.step_buffer(&step_for(None));
        let logits_buf = self.ctx.storage_from("logits", &flat(logits))?;
        let out = self.ctx.storage("probabilities", batch * n)?;
        let unused1 = self.ctx.storage("unused", 1)?;
        let unused2 = self.ctx.storage("unused", 1)?;
        let d = self.kernels.probabilities(
            &self.ctx,
            &step,
            loss,
            declared,
            batch,
            View::whole(&logits_buf),
            View::whole(&out),
            View::whole(&unused1),
            View::whole(&unused2),
        )?;
        self.submit(&[d])?;
        self.read2(&out, batch, n)
    }

    /// Rows `order[step.batch_start ..][.. step.rows]` of `source` and of `targets` (if
    /// any), zero-padded to `batch` rows, in one dispatch; `source` is stored as bytes when
    /// its values are all k/255, like 8-bit images.
    pub fn gather(
        &mut self,
        source: ArrayView2<f32>,
        targets: Option<ArrayView2<f32>>,
        order: &[u32],
        batch: usize,
        step: &StepParams,
    ) -> Result<(Array2<f32>, Option<Array2<f32>>)> {
        let width = source.ncols();
        let step_buf = self.step_buffer(step);
        let values = flat(source);
        let format = DataFormat::of(&values);
        let src = self.ctx.storage_from("source", &format.encode(&values))?;
        let order_buf = self.ctx.storage_from("order", order)?;
        let dest = self.ctx.storage("batch", batch * width)?;
        let y_width = targets.map_or(0, |t| t.ncols());
        let y_src = match targets {
            Some(t) => Some(self.ctx.storage_from("targets", &flat(t))?),
            None => None,
        };
        let y_dest = self.ctx.storage("target batch", batch * y_width)?;
        let d = self.kernels.gather(
            &self.ctx,
            &step_buf,
            batch,
            width,
            format,
            0..source.nrows(),
            View::whole(&src),
            View::whole(&order_buf),
            View::whole(&dest),
            y_src
                .as_ref()
                .map(|s| (y_width, View::whole(s), View::whole(&y_dest))),
        )?;
        self.submit(&[d])?;
        let y = match y_src {
            Some(_) => Some(self.read2(&y_dest, batch, y_width)?),
            None => None,
        };
        Ok((self.read2(&dest, batch, width)?, y))
    }

    /// Twin of [`crate::cpu::ops::gradient_clip_factor`]: the (scale, ssq) partial norms
    /// (reduce.wgsl), then the factor by the optimizer's own function (optimizer.wgsl).
    pub fn gradient_clip_factor(&mut self, grads: &[f32], clip_norm: f32) -> Result<f32> {
        let step = self.step_buffer(&StepParams {
            clip_norm,
            ..step_for(None)
        });
        let g = self.ctx.storage_from("grads", grads)?;
        let partials = self
            .ctx
            .storage("partials", 2 * Kernels::sum_squares_groups(grads.len()))?;
        // The optimizer's vectors are whole packed elements.
        let factor = self
            .ctx
            .storage("factor", self.kernels.optimizer_granule())?;
        let d = self.kernels.sum_squares(
            &self.ctx,
            &step,
            View::whole(&g),
            View::whole(&partials),
            0,
        )?;
        self.submit(&[d])?;
        let scratch1 = self.ctx.storage("scratch", 4)?;
        let scratch2 = self.ctx.storage("scratch", 4)?;
        let scratch3 = self.ctx.storage("scratch", 1)?;
        let d = self.kernels.clip_factor(
            &self.ctx,
            &step,
            View::whole(&partials),
            View::whole(&factor),
            [
                View::whole(&scratch1),
                View::whole(&scratch2),
                View::whole(&scratch3),
            ],
        )?;
        self.submit(&[d])?;
        Ok(self.ctx.read(&factor, 0, 1)?[0])
    }

    /// Twin of [`crate::cpu::ops::optimizer_update`] applied to consecutive tensors in one
    /// dispatch: `regions` holds each tensor ([`Region`]), every tensor starting at a
    /// multiple of 64 elements, the penalties l1 and l2 applying to the regularized ones;
    /// `grads` is laid out as the regions say (tiled where they are). Returns (params,
    /// state1, state2).
    #[allow(clippy::too_many_arguments)]
    pub fn optimizer_update(
        &mut self,
        optimizer: &Optimizer,
        params: &[f32],
        grads: &[f32],
        state1: &[f32],
        state2: &[f32],
        regions: &[Region],
        l1: f32,
        l2: f32,
        grad_scale: f32,
        step: &StepParams,
    ) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let len = params.len();
        let step_buf = self.step_buffer(step);
        // The kernel updates whole packed elements: vectors padded with zeros to a multiple
        // of them, as the parameter layout pads its tensors (zeros stay zero).
        let granule = self.kernels.optimizer_granule();
        let padded = |values: &[f32]| {
            let mut values = values.to_vec();
            values.resize(values.len().next_multiple_of(granule).max(granule), 0.0);
            values
        };
        let p = self.ctx.storage_from("params", &padded(params))?;
        let g = self.ctx.storage_from("grads", &padded(grads))?;
        let s1 = self.ctx.storage_from("state1", &padded(state1))?;
        let s2 = self.ctx.storage_from("state2", &padded(state2))?;
        let clip = self.ctx.storage("no partial norms", 2)?;
        let divergence = self.ctx.storage("divergence step", 1)?;
        let d = self.kernels.optimizer(
            &self.ctx,
            &step_buf,
            optimizer,
            (l1, l2),
            grad_scale,
            false,
            View::whole(&g),
            View::whole(&p),
            View::whole(&s1),
            View::whole(&s2),
            View::whole(&clip),
            View::whole(&divergence),
            regions,
        )?;
        self.submit(&[d])?;
        Ok((
            self.ctx.read(&p, 0, len)?,
            self.ctx.read(&s1, 0, len)?,
            self.ctx.read(&s2, 0, len)?,
        ))
    }
}
