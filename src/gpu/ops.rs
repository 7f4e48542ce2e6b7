//! Each GPU kernel on its own, on host arrays: the entry points of the parity tests, which
//! hold every kernel against its CPU twin in `cpu::ops` (same names, same arguments).
//! Each call uploads its inputs, runs one dispatch and reads the result back; the scheduler
//! never goes through here.

use super::device::{AdapterChoice, GpuContext};
use super::kernels::{DataFormat, Dispatch, Epilogue, Kernels, MatmulDims, StepUniform, View};
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
            m: m as u32,
            n: n as u32,
            k: k as u32,
            layer: dropout.map_or(0, |d| d.layer),
            dropout_rate: dropout.map_or(0.0, |d| d.rate),
            _pad: [0; 3],
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
        let step = self.step_buffer(&StepParams::inference(0));
        let a = self.ctx.storage_from("a", &vec![0.5f32; m * k])?;
        let b = self.ctx.storage_from("b", &vec![0.25f32; k * n])?;
        let c = self.ctx.storage("c", m * n)?;
        let dims = MatmulDims {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            layer: 0,
            dropout_rate: 0.0,
            _pad: [0; 3],
        };
        let d = self.kernels.matmul(
            &self.ctx,
            &step,
            MatmulForm::AB,
            Epilogue::None,
            dims,
            View::whole(&a),
            View::whole(&b),
            View::whole(&a),
            View::whole(&c),
        )?;
        self.submit(&d)?;
        self.ctx.read(&c, 0, 1)?;
        let started = std::time::Instant::now();
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for _ in 0..repeats {
                d.record(&mut pass, 0);
            }
        }
        self.ctx.queue.submit([encoder.finish()]);
        self.ctx.read(&c, 0, 1)?;
        Ok(started.elapsed().as_secs_f64() / repeats as f64)
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

    /// Twin of [`crate::cpu::ops::grad_bias`].
    pub fn grad_bias(&mut self, grad_output: ArrayView2<f32>) -> Result<Array1<f32>> {
        let (rows, cols) = grad_output.dim();
        let step = self.step_buffer(&step_for(None));
        let input = self.ctx.storage_from("dz", &flat(grad_output))?;
        let out = self.ctx.storage("db", cols)?;
        let d = self.kernels.column_sums(
            &self.ctx,
            &step,
            rows,
            cols,
            View::whole(&input),
            View::whole(&out),
        )?;
        self.submit(&d)?;
        Ok(Array1::from(self.ctx.read(&out, 0, cols)?))
    }

    /// Twin of [`crate::cpu::ops::output_loss`]: (row losses, row correctness, logit gradient).
    pub fn output_loss(
        &mut self,
        loss: Loss,
        declared: Activation,
        logits: ArrayView2<f32>,
        targets: ArrayView2<f32>,
        rows: usize,
    ) -> Result<(Array1<f32>, Array1<f32>, Array2<f32>)> {
        let (batch, n) = logits.dim();
        let step = self.step_buffer(&StepParams {
            rows,
            ..step_for(None)
        });
        let logits_buf = self.ctx.storage_from("logits", &flat(logits))?;
        let targets_buf = self.ctx.storage_from("targets", &flat(targets))?;
        let grad = self.ctx.storage("grad", batch * n)?;
        let stats = self.ctx.storage("row stats", batch * 2)?;
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
        )?;
        self.submit(&d)?;
        let stats = self.read2(&stats, batch, 2)?;
        Ok((
            stats.column(0).to_owned(),
            stats.column(1).to_owned(),
            self.read2(&grad, batch, n)?,
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
        let unused = self.ctx.storage("unused", 1)?;
        let d = self.kernels.probabilities(
            &self.ctx,
            &step,
            loss,
            declared,
            batch,
            View::whole(&logits_buf),
            View::whole(&out),
            View::whole(&unused),
        )?;
        self.submit(&d)?;
        self.read2(&out, batch, n)
    }

    /// Sums of (loss, correct, rows) over the first `rows` rows of `row_stats` [B, 2].
    pub fn metrics(&mut self, row_stats: ArrayView2<f32>, rows: usize) -> Result<[f32; 3]> {
        let step = self.step_buffer(&StepParams {
            rows,
            ..step_for(None)
        });
        let stats = self.ctx.storage_from("row stats", &flat(row_stats))?;
        let out = self.ctx.storage("metrics", 4)?;
        let d = self
            .kernels
            .metrics(&self.ctx, &step, View::whole(&stats), View::whole(&out))?;
        self.submit(&d)?;
        let v = self.ctx.read(&out, 0, 3)?;
        Ok([v[0], v[1], v[2]])
    }

    /// Rows `order[step.batch_start ..][.. step.rows]` of `source`, zero-padded to `batch` rows;
    /// `source` is stored as bytes when its values are all k/255, like 8-bit images.
    pub fn gather(
        &mut self,
        source: ArrayView2<f32>,
        order: &[u32],
        batch: usize,
        step: &StepParams,
    ) -> Result<Array2<f32>> {
        let width = source.ncols();
        let step_buf = self.step_buffer(step);
        let (format, words) = DataFormat::encode(&flat(source));
        let src = self.ctx.storage_from("source", &words)?;
        let order_buf = self.ctx.storage_from("order", order)?;
        let dest = self.ctx.storage("batch", batch * width)?;
        let d = self.kernels.gather(
            &self.ctx,
            &step_buf,
            batch,
            width,
            format,
            View::whole(&src),
            View::whole(&order_buf),
            View::whole(&dest),
        )?;
        self.submit(&d)?;
        self.read2(&dest, batch, width)
    }

    /// Twin of [`crate::cpu::ops::gradient_clip_factor`].
    pub fn gradient_clip_factor(&mut self, grads: &[f32], clip_norm: f32) -> Result<f32> {
        let step = self.step_buffer(&StepParams {
            clip_norm,
            ..step_for(None)
        });
        let g = self.ctx.storage_from("grads", grads)?;
        let partials = self
            .ctx
            .storage("partials", Kernels::sum_squares_groups(grads.len()))?;
        let factor = self.ctx.storage("factor", 1)?;
        let d =
            self.kernels
                .sum_squares(&self.ctx, &step, View::whole(&g), View::whole(&partials))?;
        self.submit(&d)?;
        let d = self.kernels.clip_factor(
            &self.ctx,
            &step,
            View::whole(&partials),
            View::whole(&factor),
        )?;
        self.submit(&d)?;
        Ok(self.ctx.read(&factor, 0, 1)?[0])
    }

    /// Twin of [`crate::cpu::ops::optimizer_update`]: returns (params, state1, state2).
    #[allow(clippy::too_many_arguments)]
    pub fn optimizer_update(
        &mut self,
        optimizer: &Optimizer,
        params: &[f32],
        grads: &[f32],
        state1: &[f32],
        state2: &[f32],
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
        let clip = self.ctx.storage_from("clip", &[grad_scale])?;
        let d = self.kernels.optimizer(
            &self.ctx,
            &step_buf,
            optimizer,
            l1,
            l2,
            View::whole(&g),
            View::whole(&p),
            View::whole(&s1),
            View::whole(&s2),
            View::whole(&clip),
        )?;
        self.submit(&d)?;
        Ok((
            self.ctx.read(&p, 0, len)?,
            self.ctx.read(&s1, 0, len)?,
            self.ctx.read(&s2, 0, len)?,
        ))
    }
}
