//! Each GPU kernel on its own, on host arrays: the entry points of the parity tests, which
//! hold every kernel against its CPU twin in `cpu::ops` (same names, same arguments).
//! Each call uploads its inputs, runs one dispatch and reads the result back; the scheduler
//! never goes through here.

use super::autotune::time_dispatch;
use super::device::{AdapterChoice, GpuContext};
use super::kernels::{DataFormat, Dispatch, Epilogue, Kernels, MatmulDims, StepUniform, View};
use super::matmul::MatmulChoice;
use crate::backend::StepParams;
use crate::cpu::ops::{Dropout, MatmulForm};
use crate::error::Result;
use crate::model::{Activation, Loss, Optimizer};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

pub struct KernelRunner {
    pub ctx: GpuContext,
    kernels: Kernels,
}

fn flat(a: ArrayView2<f32>) -> Vec<f32> {
    a.as_standard_layout().iter().copied().collect()
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

    fn submit(&self, dispatch: &Dispatch) -> Result<()> {
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            dispatch.record(&mut pass, 0);
        }
        self.ctx.queue.submit([encoder.finish()]);
        self.ctx.check()
    }

    fn read2(&self, buffer: &wgpu::Buffer, rows: usize, cols: usize) -> Result<Array2<f32>> {
        let values = self.ctx.read(buffer, 0, rows * cols)?;
        Ok(Array2::from_shape_vec((rows, cols), values).expect("read-back has rows × cols values"))
    }

    #[allow(clippy::too_many_arguments)]
    fn run_matmul(
        &mut self,
        form: MatmulForm,
        epilogue: Epilogue,
        a: ArrayView2<f32>,
        b: ArrayView2<f32>,
        aux: &[f32],
        dropout: Option<Dropout>,
        (m, n, k): (usize, usize, usize),
    ) -> Result<Array2<f32>> {
        let step = self.step_buffer(&step_for(dropout));
        let a_buf = self.ctx.storage_from("a", &flat(a))?;
        let b_buf = self.ctx.storage_from("b", &flat(b))?;
        let aux_buf = self.ctx.storage_from("aux", aux)?;
        let c_buf = self.ctx.storage("c", m * n)?;
        let dims = MatmulDims {
            layer: dropout.map_or(0, |d| d.layer),
            dropout_rate: dropout.map_or(0.0, |d| d.rate),
            ..MatmulDims::new(m, n, k)
        };
        let d = self.kernels.matmul(
            &self.ctx,
            &step,
            form,
            epilogue,
            dims,
            View::whole(&a_buf),
            View::whole(&b_buf),
            View::whole(&aux_buf),
            View::whole(&c_buf),
        )?;
        self.submit(&d)?;
        self.read2(&c_buf, m, n)
    }

    /// Seconds per C[M,N] = A·B on random-free constant inputs, timed over `repeats`
    /// dispatches recorded into one submission after one warm-up dispatch: the kernel's own
    /// speed, without uploads or read-backs.
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
        let d = self.kernels.matmul(
            &self.ctx,
            &step,
            form,
            Epilogue::None,
            MatmulDims::new(m, n, k),
            View::whole(&a),
            View::whole(&b),
            View::whole(&a),
            View::whole(&c),
        )?;
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
        self.run_matmul(form, Epilogue::None, a, b, &[0.0], None, (m, n, k))
    }

    /// Twin of [`crate::cpu::ops::dense_forward`].
    pub fn dense_forward(
        &mut self,
        x: ArrayView2<f32>,
        weight: ArrayView2<f32>,
        bias: ArrayView1<f32>,
        activation: Activation,
        dropout: Option<Dropout>,
    ) -> Result<Array2<f32>> {
        let dims = (x.nrows(), weight.nrows(), x.ncols());
        let bias: Vec<f32> = bias.to_vec();
        self.run_matmul(
            MatmulForm::ABt,
            Epilogue::BiasActivation(activation),
            x,
            weight,
            &bias,
            dropout,
            dims,
        )
    }

    /// Twin of [`crate::cpu::ops::dense_backward_input`].
    pub fn dense_backward_input(
        &mut self,
        grad_output: ArrayView2<f32>,
        weight: ArrayView2<f32>,
        input: ArrayView2<f32>,
        input_activation: Activation,
        input_dropout: Option<Dropout>,
    ) -> Result<Array2<f32>> {
        let dims = (grad_output.nrows(), weight.ncols(), grad_output.ncols());
        let epilogue = Epilogue::ActivationGrad(input_activation);
        self.run_matmul(
            MatmulForm::AB,
            epilogue,
            grad_output,
            weight,
            &flat(input),
            input_dropout,
            dims,
        )
    }

    /// Twins of [`crate::cpu::ops::grad_weights`] and [`crate::cpu::ops::grad_bias`], in
    /// one dispatch as the training step computes them: (dzᵀ·x, Σ_rows dz).
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
        // dW then db, at an aligned offset after it, as in the parameter layout.
        let bias_at = (units * fan_in).div_ceil(64) * 64;
        let grads = self.ctx.storage("dW and db", bias_at + units)?;
        let dims = MatmulDims {
            row_sums: bias_at as u32,
            ..MatmulDims::new(units, fan_in, batch)
        };
        let d = self.kernels.matmul(
            &self.ctx,
            &step,
            MatmulForm::AtB,
            Epilogue::WithRowSums,
            dims,
            View::whole(&dz),
            View::whole(&x),
            View::whole(&dz),
            View::whole(&grads),
        )?;
        self.submit(&d)?;
        let values = self.ctx.read(&grads, 0, bias_at + units)?;
        let weights = Array2::from_shape_vec((units, fan_in), values[..units * fan_in].to_vec())
            .expect("units × fan_in values");
        Ok((weights, Array1::from(values[bias_at..].to_vec())))
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
        self.submit(&d)?;
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
        self.submit(&d)?;
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
        self.submit(&d)?;
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
        let factor = self.ctx.storage("factor", 1)?;
        let d = self.kernels.sum_squares(
            &self.ctx,
            &step,
            View::whole(&g),
            View::whole(&partials),
            0,
        )?;
        self.submit(&d)?;
        let scratch1 = self.ctx.storage("scratch", 1)?;
        let scratch2 = self.ctx.storage("scratch", 1)?;
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
        self.submit(&d)?;
        Ok(self.ctx.read(&factor, 0, 1)?[0])
    }

    /// Twin of [`crate::cpu::ops::optimizer_update`] applied to consecutive tensors in one
    /// dispatch: `regions` holds each tensor's (end, regularized), every tensor starting at a
    /// multiple of 64 elements, the penalties l1 and l2 applying to the regularized ones.
    /// Returns (params, state1, state2).
    #[allow(clippy::too_many_arguments)]
    pub fn optimizer_update(
        &mut self,
        optimizer: &Optimizer,
        params: &[f32],
        grads: &[f32],
        state1: &[f32],
        state2: &[f32],
        regions: &[(usize, bool)],
        l1: f32,
        l2: f32,
        grad_scale: f32,
        step: &StepParams,
    ) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let len = params.len();
        let step_buf = self.step_buffer(step);
        let p = self.ctx.storage_from("params", params)?;
        let g = self.ctx.storage_from("grads", grads)?;
        let s1 = self.ctx.storage_from("state1", state1)?;
        let s2 = self.ctx.storage_from("state2", state2)?;
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
        self.submit(&d)?;
        Ok((
            self.ctx.read(&p, 0, len)?,
            self.ctx.read(&s1, 0, len)?,
            self.ctx.read(&s2, 0, len)?,
        ))
    }
}
