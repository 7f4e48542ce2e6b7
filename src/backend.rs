//! What the training loop asks of a device, and the per-step values both devices share.
//! `cpu::CpuBackend` and `gpu::GpuBackend` implement [`Backend`]; everything above this
//! trait (`train`) is the same for both.

use crate::error::{Divergence, Result};
use ndarray::{Array2, ArrayView2};

/// Which device a model runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Device {
    /// The best hardware GPU adapter found, else the CPU backend (software adapters such as
    /// lavapipe are slower than the CPU backend on the same cores; pick them with `Gpu`).
    #[default]
    Auto,
    Cpu,
    /// A GPU adapter, chosen as [`crate::gpu::AdapterChoice`] says.
    Gpu(crate::gpu::AdapterChoice),
}

/// Values that change from one training step to the next. The GPU receives exactly these in a
/// uniform buffer, so the two devices see the same numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepParams {
    /// Rows of the current batch that hold data (the last batch of an epoch may be short).
    pub rows: usize,
    /// Position of the batch's first row in the epoch's sample order.
    pub batch_start: usize,
    /// 1-based count of optimizer steps so far, including this one (Adam's t, dropout's counter).
    pub step: u32,
    /// Seed of the dropout masks.
    pub seed: u32,
    pub training: bool,
    pub learning_rate: f32,
    /// Adam's 1-β1ᵗ and 1-β2ᵗ (1 for the other optimizers).
    pub bias_correction1: f32,
    pub bias_correction2: f32,
    /// Largest global L2 norm of the gradient; larger gradients are rescaled (0 = off).
    pub clip_norm: f32,
}

impl StepParams {
    /// A forward pass without training (no dropout, no update) over `rows` rows from row 0.
    pub fn inference(rows: usize) -> StepParams {
        StepParams {
            rows,
            batch_start: 0,
            step: 0,
            seed: 0,
            training: false,
            learning_rate: 0.0,
            bias_correction1: 1.0,
            bias_correction2: 1.0,
            clip_norm: 0.0,
        }
    }
}

/// Loss and accuracy counts accumulated on the device since the last read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics {
    pub loss_sum: f64,
    pub correct: f64,
    pub count: f64,
    /// Training only: the first step (`StepParams::step`) whose loss was NaN or infinite,
    /// with that step's summed loss. Recorded on the device, so a diverging run is named
    /// to the step without reading anything back per step.
    pub nonfinite_loss: Option<(u32, f32)>,
    /// Training only: the first step whose update left a parameter NaN or infinite.
    pub nonfinite_params: Option<u32>,
}

impl Metrics {
    pub fn mean_loss(&self) -> f32 {
        (self.loss_sum / self.count.max(1.0)) as f32
    }
    pub fn accuracy(&self) -> f32 {
        (self.correct / self.count.max(1.0)) as f32
    }

    /// The first step that went non-finite and how; a bad loss wins a tie, since its step's
    /// update then spreads it to the weights.
    pub fn divergence(&self) -> Option<(u32, Divergence)> {
        match (self.nonfinite_loss, self.nonfinite_params) {
            (Some((loss_step, _)), Some(params_step)) if params_step < loss_step => {
                Some((params_step, Divergence::Weights))
            }
            (Some((step, loss)), _) => Some((step, Divergence::Loss(loss))),
            (None, Some(step)) => Some((step, Divergence::Weights)),
            (None, None) => None,
        }
    }
}

/// A data set held by a backend, addressed by slot so training and validation data can both
/// stay resident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    Train,
    /// `fit_with`'s validation data, uploaded once per `fit_with` call; a slot of its own, so
    /// that an `evaluate` between epochs (in a callback) cannot replace it.
    Validation,
    /// The data of `Model::evaluate`.
    Eval,
}

/// `Send`, so that a [`crate::Model`] (which owns its backend, behind a lock) can move to
/// another thread and be shared: train in the background, predict from an `Arc<Model>`, run
/// in `spawn_blocking`. The GPU backend's wgpu handles are `Send` on native targets.
pub trait Backend: Send {
    /// A line saying what runs the model ("CPU (2 threads)", "GPU: llvmpipe on Vulkan").
    fn describe(&self) -> String;
    /// Prepare buffers for batches of `batch_size` rows (a no-op if already so).
    fn set_batch_size(&mut self, batch_size: usize) -> Result<()>;
    /// Store a data set (x: [n, inputs], y: [n, outputs]) in `slot`, replacing what was there.
    fn upload(&mut self, slot: Slot, x: ArrayView2<f32>, y: ArrayView2<f32>) -> Result<()>;
    /// The order in which [`Backend::train_steps`] visits the `Train` slot's rows this epoch.
    fn set_order(&mut self, order: &[u32]) -> Result<()>;
    /// For each step in order: forward, loss, backward and update on rows
    /// `order[batch_start .. batch_start + rows]`. Several steps at once let the GPU record
    /// them into one submission.
    fn train_steps(&mut self, steps: &[StepParams]) -> Result<()>;
    /// Training metrics accumulated since the last call (then reset).
    fn take_train_metrics(&mut self) -> Result<Metrics>;
    /// Loss and accuracy over a whole slot, without training.
    fn evaluate(&mut self, slot: Slot) -> Result<Metrics>;
    /// The model's outputs (probabilities for the cross-entropies) for each row of `x`.
    fn predict(&mut self, x: ArrayView2<f32>) -> Result<Array2<f32>>;
    /// All parameters in the flat layout of [`crate::model::ParamLayout`].
    fn params(&mut self) -> Result<Vec<f32>>;
    fn set_params(&mut self, params: &[f32]) -> Result<()>;
    /// The optimizer's two state vectors (flat layout, like the parameters): momentum /
    /// squared-gradient average / Adam's first moment, and Adam's second moment. Vectors an
    /// optimizer does not use are empty.
    fn optimizer_state(&mut self) -> Result<[Vec<f32>; 2]>;
    fn set_optimizer_state(&mut self, state: &[Vec<f32>; 2]) -> Result<()>;
    /// Copies the parameters and the optimizer state aside, where they are (on the GPU a
    /// device-side copy, nothing read back): `fit` takes one as each epoch begins, so that an
    /// epoch that diverges can be undone by [`Backend::restore_snapshot`].
    fn snapshot(&mut self) -> Result<()>;
    /// Puts back the parameters and optimizer state of the last [`Backend::snapshot`] (those
    /// the backend was made with, before the first).
    fn restore_snapshot(&mut self) -> Result<()>;
    /// Start (`true`) or stop timing every kernel; returns whether kernels are being timed
    /// (never on the CPU, nor on a GPU without timestamp queries).
    fn set_profiling(&mut self, _on: bool) -> bool {
        false
    }
    /// The kernel times measured since profiling started or the last call.
    fn take_profile(&mut self) -> Option<crate::gpu::profile::Profile> {
        None
    }
    /// Test hook: destroys a GPU device as a driver reset would lose it; `false` on the CPU.
    #[doc(hidden)]
    fn destroy_device(&mut self) -> bool {
        false
    }
    /// What starting a GPU backend cost (pipelines, matmul choice); `None` on the CPU.
    fn gpu_startup(&self) -> Option<crate::gpu::scheduler::Startup> {
        None
    }
}
