//! The training loop — `fit`, `evaluate`, `predict` — the same for every device: it checks
//! the data, encodes the targets, orders the batches and asks a [`Backend`] to run them.

mod config;

pub use config::{
    EarlyStopping, EarlyStoppingResume, FitConfig, Monitor, Schedule, check_clip_norm,
};

use crate::backend::{Backend, Device, Slot, StepParams};
use crate::cpu::CpuBackend;
use crate::cpu::ops::{nonfinite, predicted_class};
use crate::data::split_rows;
use crate::error::{Result, WgradError};
use crate::gpu::{AdapterChoice, GpuBackend};
use crate::metrics::LossFigure;
use crate::model::{Loss, ParamLayout, Sequential, TensorSlot};
use ndarray::{Array1, Array2, ArrayRef1, ArrayRef2, ArrayView2, Axis, CowArray};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// What a model learns to output for each sample.
///
/// Classification targets are class indices. One-hot rows (Keras's `to_categorical`) convert
/// with [`Targets::from_one_hot`]; given as `Values` they train the same, but count as value
/// targets: no accuracy, and early stopping cannot monitor one.
///
/// `From` tells the two apart by type: `Vec<usize>` and `&[usize]` are class labels
/// (`Classes`); `Array2<f32>` is values (`Values`), and so is a 1-D `Array1<f32>`
/// (scikit-learn's `y` for regression), as one column. Labels of another integer type (`u8`
/// from MNIST-style files, PyTorch's `i64`) convert with [`Targets::from_labels`]; they have no
/// `From`, which would leave `Targets::from(vec![0, 1])` unable to infer its integer type.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// A class index per sample: one-hot encoded for several outputs; 0 or 1 for one output.
    Classes(Vec<usize>),
    /// Values per sample, [n, outputs]: regression targets, or soft labels (probabilities).
    Values(Array2<f32>),
}

impl From<Vec<usize>> for Targets {
    fn from(v: Vec<usize>) -> Self {
        Targets::Classes(v)
    }
}

impl From<&[usize]> for Targets {
    fn from(v: &[usize]) -> Self {
        Targets::Classes(v.to_vec())
    }
}

impl From<Array2<f32>> for Targets {
    fn from(v: Array2<f32>) -> Self {
        Targets::Values(v)
    }
}

impl From<Array1<f32>> for Targets {
    fn from(v: Array1<f32>) -> Self {
        Targets::Values(v.insert_axis(Axis(1)))
    }
}

impl Targets {
    /// Class labels of any integer type (`u8`, `u32`, `i64`, ...) as [`Targets::Classes`].
    /// Errors ([`WgradError::InvalidData`]) name the first label that is not a class index
    /// (negative, or too large for `usize`).
    pub fn from_labels<L>(labels: &[L]) -> Result<Targets>
    where
        L: Copy + TryInto<usize> + std::fmt::Display,
    {
        labels
            .iter()
            .enumerate()
            .map(|(row, &label)| {
                label.try_into().map_err(|_| {
                    WgradError::InvalidData(format!(
                        "label {label} at row index {row} is not a class index (0, 1, 2, ...)"
                    ))
                })
            })
            .collect::<Result<Vec<usize>>>()
            .map(Targets::Classes)
    }

    /// The class of each one-hot row (a single 1, zeros elsewhere): its 1's column. Errors
    /// ([`WgradError::InvalidData`]) name the first row that is not one-hot.
    pub fn from_one_hot(one_hot: &ArrayRef2<f32>) -> Result<Targets> {
        one_hot
            .rows()
            .into_iter()
            .enumerate()
            .map(|(row, values)| {
                let not_one_hot = |why: String| {
                    WgradError::InvalidData(format!(
                        "one-hot row index {row} {why}; a one-hot row holds a single 1 and zeros"
                    ))
                };
                if let Some((col, value)) = values
                    .iter()
                    .enumerate()
                    .find(|(_, v)| **v != 0.0 && **v != 1.0)
                {
                    return Err(not_one_hot(format!("holds {value} at column index {col}")));
                }
                let ones: Vec<usize> = values
                    .iter()
                    .enumerate()
                    .filter_map(|(col, &v)| (v == 1.0).then_some(col))
                    .collect();
                match ones[..] {
                    [class] => Ok(class),
                    _ => Err(not_one_hot(format!("holds {} ones", ones.len()))),
                }
            })
            .collect::<Result<Vec<usize>>>()
            .map(Targets::Classes)
    }

    pub fn len(&self) -> usize {
        match self {
            Targets::Classes(c) => c.len(),
            Targets::Values(v) => v.nrows(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn is_classification(&self) -> bool {
        matches!(self, Targets::Classes(_))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    /// Mean training loss over the epoch's samples (without the L1/L2 penalty).
    pub loss: f32,
    /// Training accuracy; `None` for regression targets.
    pub accuracy: Option<f32>,
    /// Loss and accuracy on the validation data, when there is some.
    pub val_loss: Option<f32>,
    pub val_accuracy: Option<f32>,
    /// The learning rate at the epoch's last step.
    pub learning_rate: f32,
    pub seconds: f64,
    pub samples_per_second: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub epochs: Vec<EpochRecord>,
}

impl History {
    /// The training loss of each epoch (Keras's `history.history["loss"]`).
    pub fn losses(&self) -> Vec<f32> {
        self.epochs.iter().map(|e| e.loss).collect()
    }
    /// The validation loss of each epoch; empty when `fit` had no validation data.
    pub fn val_losses(&self) -> Vec<f32> {
        self.epochs.iter().filter_map(|e| e.val_loss).collect()
    }
    /// The training accuracy of each epoch; empty for regression.
    pub fn accuracies(&self) -> Vec<f32> {
        self.epochs.iter().filter_map(|e| e.accuracy).collect()
    }
    /// The validation accuracy of each epoch; empty for regression or without validation.
    pub fn val_accuracies(&self) -> Vec<f32> {
        self.epochs.iter().filter_map(|e| e.val_accuracy).collect()
    }
    pub fn last(&self) -> Option<&EpochRecord> {
        self.epochs.last()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    pub loss: f32,
    /// `None` for regression targets.
    pub accuracy: Option<f32>,
}

/// A model on a device, ready to train.
///
/// Inputs `x` are taken as `&ArrayRef2<f32>`, what every 2-D `f32` array dereferences to
/// (ndarray's way of accepting owned arrays and views alike): pass `&x` for an `Array2`, and
/// a part of one without copying it, e.g. `model.predict(&x.slice(s![..10, ..]))`.
///
/// A model is `Send` and `Sync`: it can be trained on another thread, and shared as
/// `Arc<Model>` by threads that evaluate or predict (training takes `&mut`, so a model that
/// some threads train and others use goes in an `Arc<Mutex<Model>>`).
/// Its `Debug` output names the architecture, the device and the step count, not the weights
/// (read those with [`Model::layer_weights`]).
pub struct Model {
    spec: Sequential,
    /// Behind a lock so that evaluating and predicting take `&self` (a shared model); the
    /// methods that take `&mut self` reach it without locking.
    backend: Mutex<Box<dyn Backend>>,
    /// Optimizer steps taken so far (Adam's t continues across `fit` calls, as in Keras).
    steps: u64,
    /// Unique per model made, so that `fit` notices a nested `fit` of the same model and a
    /// callback that swapped its model.
    id: u64,
    /// [`Model::stop_training`] was called during this `fit`.
    stop_requested: bool,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("spec", &self.spec.summary_line())
            .field("device", &self.device())
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Checks the description, initialises the weights from its seed and places the model.
    pub fn new(spec: Sequential, device: Device) -> Result<Model> {
        spec.validate()?;
        if !matches!(device, Device::Gpu(_)) {
            // The initial parameters, the CPU backend's copies, and a checkpoint's: the
            // parameters and optimizer state read back, then serialized (three vectors each).
            let vectors = 1 + crate::cpu::PARAMETER_VECTORS + 6;
            crate::cpu::check_host_memory(
                spec.param_layout().len as u128 * vectors as u128,
                "the model's parameters, gradients, optimizer state and checkpoints",
            )?;
        }
        let params = spec.initial_params();
        let backend: Box<dyn Backend> = match device {
            Device::Cpu => Box::new(CpuBackend::new(&spec, &params)),
            Device::Gpu(choice) => Box::new(GpuBackend::new(&spec, &params, &choice)?),
            Device::Auto => {
                let hardware = AdapterChoice {
                    hardware_only: true,
                    ..Default::default()
                };
                match GpuBackend::new(&spec, &params, &hardware) {
                    Ok(gpu) => Box::new(gpu),
                    Err(WgradError::NoAdapter { .. }) => Box::new(CpuBackend::new(&spec, &params)),
                    Err(e @ (WgradError::Gpu(_) | WgradError::DeviceLost(_))) => {
                        note!("wgrad: the GPU failed to start ({e}); training on the CPU");
                        Box::new(CpuBackend::new(&spec, &params))
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        static MODELS_MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Ok(Model {
            spec,
            backend: Mutex::new(backend),
            steps: 0,
            id: MODELS_MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            stop_requested: false,
        })
    }

    /// The backend, for a method that has the model to itself.
    fn backend_mut(&mut self) -> &mut dyn Backend {
        self.backend
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
    }

    /// The backend, locked, for the methods that take `&self`.
    fn locked_backend(&self) -> MutexGuard<'_, Box<dyn Backend>> {
        self.backend.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn spec(&self) -> &Sequential {
        &self.spec
    }

    /// What runs the model, e.g. "GPU: llvmpipe (LLVM 15.0.6, 256 bits) on Vulkan (Cpu)".
    pub fn device(&self) -> String {
        self.locked_backend().describe()
    }

    /// Starts (`true`) or stops timing every GPU kernel (timestamp queries); returns whether
    /// kernels are being timed: never on the CPU, nor where the adapter has no timestamps.
    /// Profiled runs are slower (each submission is waited for).
    pub fn set_profiling(&mut self, on: bool) -> bool {
        self.backend_mut().set_profiling(on)
    }

    /// Kernel times per family since profiling started or the last call.
    pub fn take_profile(&mut self) -> Option<crate::gpu::profile::Profile> {
        self.backend_mut().take_profile()
    }

    /// What starting the GPU backend cost: pipelines built, the matmul configuration chosen
    /// and the time its autotuning took (`None` on the CPU).
    pub fn gpu_startup(&self) -> Option<crate::gpu::scheduler::Startup> {
        self.locked_backend().gpu_startup()
    }

    /// Test hook: destroys the model's GPU device (wgpu's `Device::destroy`), as a driver
    /// reset or an unplugged GPU would lose it, so tests can check that every later call is
    /// a `DeviceLost` error. Returns `false` (and does nothing) on the CPU.
    #[doc(hidden)]
    pub fn destroy_gpu_device(&mut self) -> bool {
        self.backend_mut().destroy_device()
    }

    /// Trains on `x` and `y` as `config` says; see [`Model::fit_with`].
    pub fn fit(&mut self, x: &ArrayRef2<f32>, y: &Targets, config: &FitConfig) -> Result<History> {
        self.fit_with(x, y, config, None, &mut [])
    }

    /// `fit` with validation data, evaluated after every epoch, and callbacks. The validation
    /// data is either given here or held out of `x` by [`FitConfig::validation_split`]; both
    /// at once is an error ([`WgradError::InvalidConfig`]).
    ///
    /// The validation inputs are an owned `&Array2<f32>` (a view converts with `.to_owned()`),
    /// so that an `Option` of them built beforehand, such as
    /// `validation_set.as_ref().map(|d| (&d.x, &d.y))`, fits as it is.
    ///
    /// A run that goes non-finite stops with [`WgradError::Diverged`] at the end of the epoch,
    /// and leaves the model as that epoch began (parameters, optimizer state, step count).
    ///
    /// Callbacks may evaluate, predict, set weights or the learning rate (taken from the next
    /// epoch) and end training with [`Model::stop_training`]; a `fit` of the same model from a
    /// callback, or replacing the model, is an error.
    pub fn fit_with(
        &mut self,
        x: &ArrayRef2<f32>,
        y: &Targets,
        config: &FitConfig,
        validation: Option<(&Array2<f32>, &Targets)>,
        callbacks: &mut [&mut dyn Callback],
    ) -> Result<History> {
        let Some(_fitting) = Fitting::start(self.id) else {
            return Err(WgradError::InvalidConfig(
                "fit was called from a callback of a fit of the same model; train again once \
                 that fit returns (Model::stop_training ends it after the epoch)"
                    .into(),
            ));
        };
        self.stop_requested = false;
        let model_id = self.id;
        config.check(self.spec.optimizer.learning_rate())?;
        if config.validation_split.is_some() && validation.is_some() {
            return Err(WgradError::InvalidConfig(
                "validation_split holds out part of x as validation data, and validation data \
                 was given too: give one or the other"
                    .into(),
            ));
        }
        let has_validation = validation.is_some() || config.validation_split.is_some();
        let mut stopper = config
            .early_stopping
            .map(|rule| EarlyStopper::new(rule, has_validation, &config.early_stopping_resume));
        if let Some(stopper) = &stopper {
            stopper.check(y.is_classification())?;
        }
        // Checked and encoded whole, so that errors give row indices into `x` and `y`.
        let targets = self.encode(x.view(), y)?;
        // The training inputs with their encoded targets, and the validation ones: all of x
        // and the validation data given, or x split by `validation_split`.
        let (x, targets, validation) = match (validation, config.validation_split) {
            (Some((val_x, val_y)), _) => {
                let val_targets = self
                    .encode(val_x.view(), val_y)
                    .map_err(|e| WgradError::ValidationData(Box::new(e)))?;
                let validation = (CowArray::from(val_x.view()), val_targets);
                (CowArray::from(x.view()), targets, Some(validation))
            }
            (None, Some(fraction)) => {
                let (train_rows, validation_rows) = split_rows(x.nrows(), fraction, config.seed)
                    .map_err(|e| WgradError::InvalidConfig(format!("validation_split {e}")))?;
                let select = |rows: &[usize]| {
                    let x = CowArray::from(x.select(Axis(0), rows));
                    (x, targets.select(Axis(0), rows))
                };
                let validation = select(&validation_rows);
                let (x, targets) = select(&train_rows);
                (x, targets, Some(validation))
            }
            (None, None) => (CowArray::from(x.view()), targets, None),
        };
        let n = x.nrows();
        self.backend_mut()
            .set_batch_size(config.batch_size.min(n))?;
        self.backend_mut()
            .upload(Slot::Train, x.view(), targets.view())?;
        if let Some((val_x, val_targets)) = &validation {
            self.backend_mut()
                .upload(Slot::Validation, val_x.view(), val_targets.view())?;
        }
        let dropout_seed = (config.seed ^ (config.seed >> 32)) as u32;
        let mut order: Vec<u32> = (0..n as u32).collect();
        let mut history = History::default();
        for epoch in config.initial_epoch + 1..=config.epochs {
            let started = Instant::now();
            if config.shuffle {
                order.sort_unstable();
                order.shuffle(&mut ChaCha8Rng::seed_from_u64(
                    config.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                ));
            }
            self.backend_mut().set_order(&order)?;
            // Read every epoch: a callback may have set another (checked again: below a cosine
            // schedule's floor, the rate would climb).
            let base_rate = self.spec.optimizer.learning_rate();
            config.check(base_rate)?;
            let learning_rate = config.schedule.learning_rate(base_rate, epoch - 1);
            for callback in callbacks.iter_mut() {
                callback.on_epoch_begin(epoch, n);
            }
            // Where the model goes back to if this epoch diverges.
            self.backend_mut().snapshot()?;
            let steps_before = self.steps;
            let batch_starts: Vec<usize> = (0..n).step_by(config.batch_size).collect();
            for chunk in batch_starts.chunks(STEPS_PER_CALL) {
                let steps: Vec<StepParams> = chunk
                    .iter()
                    .map(|&batch_start| {
                        self.steps += 1;
                        let (bias_correction1, bias_correction2) =
                            self.spec.optimizer.bias_corrections(self.steps);
                        StepParams {
                            rows: config.batch_size.min(n - batch_start),
                            batch_start,
                            step: self.steps as u32,
                            seed: dropout_seed,
                            training: true,
                            learning_rate,
                            bias_correction1,
                            bias_correction2,
                            clip_norm: config.clip_norm.unwrap_or(0.0),
                        }
                    })
                    .collect();
                self.backend_mut().train_steps(&steps)?;
                for callback in callbacks.iter_mut() {
                    for step in &steps {
                        callback.on_step(step.rows);
                    }
                }
            }
            let metrics = self.backend_mut().take_train_metrics()?;
            let train_seconds = started.elapsed().as_secs_f64();
            if let Some((step, cause)) = metrics.divergence() {
                // Devices count steps in 32 bits; the run's count is `self.steps`.
                let epoch_step = u64::from(step.wrapping_sub(steps_before as u32));
                self.backend_mut().restore_snapshot()?;
                self.steps = steps_before;
                return Err(WgradError::Diverged {
                    epoch,
                    step: steps_before + epoch_step,
                    epoch_step,
                    cause,
                    last_good_epoch: epoch - 1,
                    checkpoint: None,
                });
            }
            let validation_metrics = match validation {
                Some(_) => Some(self.backend_mut().evaluate(Slot::Validation)?),
                None => None,
            };
            let record = EpochRecord {
                epoch,
                loss: metrics.mean_loss(),
                accuracy: y.is_classification().then(|| metrics.accuracy()),
                val_loss: validation_metrics.map(|m| m.mean_loss()),
                val_accuracy: validation_metrics
                    .filter(|_| y.is_classification())
                    .map(|m| m.accuracy()),
                learning_rate,
                seconds: started.elapsed().as_secs_f64(),
                samples_per_second: n as f64 / train_seconds,
            };
            if config.verbose {
                note!("{}", format_epoch(&record, config.epochs));
            }
            history.epochs.push(record);
            let stop = match &mut stopper {
                Some(stopper) => stopper.update(self, history.last().expect("just pushed"))?,
                None => false,
            };
            for callback in callbacks.iter_mut() {
                callback.on_epoch_end(self, &history)?;
            }
            if self.id != model_id {
                return Err(WgradError::InvalidConfig(
                    "a callback replaced the model that fit was training".into(),
                ));
            }
            if stop {
                if config.verbose {
                    note!("early stopping after epoch {epoch}");
                }
                break;
            }
            if self.stop_requested {
                break;
            }
        }
        if let Some(stopper) = stopper {
            stopper.restore(self)?;
        }
        Ok(history)
    }

    /// Ends the `fit` in progress after the current epoch, as Keras's `model.stop_training =
    /// True`: for a callback's `on_epoch_end`. `fit` returns the history so far, after
    /// restoring early stopping's best weights if it has any.
    pub fn stop_training(&mut self) {
        self.stop_requested = true;
    }

    /// Loss and accuracy on a data set, without dropout.
    pub fn evaluate(&self, x: &ArrayRef2<f32>, y: &Targets) -> Result<Evaluation> {
        let targets = self.encode(x.view(), y)?;
        let mut backend = self.locked_backend();
        backend.upload(Slot::Eval, x.view(), targets.view())?;
        let metrics = backend.evaluate(Slot::Eval)?;
        Ok(Evaluation {
            loss: metrics.mean_loss(),
            accuracy: y.is_classification().then(|| metrics.accuracy()),
        })
    }

    /// The model's outputs for each row of `x`: probabilities for the cross-entropies,
    /// the output activation's values for MSE.
    pub fn predict(&self, x: &ArrayRef2<f32>) -> Result<Array2<f32>> {
        self.check_inputs(x.view())?;
        self.locked_backend().predict(x.view())
    }

    /// The predicted class of each row (argmax, or output ≥ 0.5 for a single output), for a
    /// classifier; a regression model's outputs are values, which [`Model::predict`] gives.
    /// A row whose outputs are not finite (inputs far beyond the training data's, or weights
    /// too large) has no class: an error naming it, not class 0.
    pub fn predict_classes(&self, x: &ArrayRef2<f32>) -> Result<Vec<usize>> {
        let outputs = self.predict(x)?;
        let not_finite = |row: ndarray::ArrayView1<f32>| row.iter().any(|v| !v.is_finite());
        if let Some(row) = outputs.rows().into_iter().position(not_finite) {
            return Err(WgradError::InvalidData(format!(
                "row {row} of x gives outputs that are not finite (NaN or infinite): inputs far \
                 beyond the training data's, or weights too large; it has no class"
            )));
        }
        Ok(outputs
            .rows()
            .into_iter()
            .map(|row| predicted_class(row.as_slice().expect("owned rows are contiguous")))
            .collect())
    }

    /// All parameters, flat, in the layout of [`Sequential::param_layout`].
    pub fn params(&self) -> Result<Vec<f32>> {
        self.locked_backend().params()
    }

    pub fn set_params(&mut self, params: &[f32]) -> Result<()> {
        let expected = self.spec.param_layout().len;
        if params.len() != expected {
            return Err(WgradError::InvalidModel(format!(
                "{} parameter values given, the model has {expected}",
                params.len()
            )));
        }
        if let Some((i, value)) = params.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            let layout = self.spec.param_layout();
            let tensor = layout
                .tensors
                .iter()
                .find(|t| (t.offset..t.offset + t.len).contains(&i));
            let name = tensor.map_or("padding", |t| t.name.as_str());
            return Err(WgradError::InvalidModel(format!(
                "parameter {i} ({name}) is {value}"
            )));
        }
        self.backend_mut().set_params(params)
    }

    /// Layer `layer`'s weight, `[out, in]` as PyTorch's `nn.Linear` holds it (Keras's kernel is
    /// its transpose, `.t()`), and bias, `[out]`: the layer computes `f(x·Wᵀ + b)`. Unlike
    /// [`Model::params`], without the flat vector's alignment padding. An error names the
    /// layers there are when `layer` is not one of them.
    pub fn layer_weights(&self, layer: usize) -> Result<(Array2<f32>, Array1<f32>)> {
        let layout = self.layout_with_layer(layer)?;
        let params = self.params()?;
        let values = |slot: &TensorSlot| params[slot.offset..slot.offset + slot.len].to_vec();
        let weight = layout.weight(layer);
        let weight = Array2::from_shape_vec((weight.shape[0], weight.shape[1]), values(weight))
            .expect("a weight slot holds shape[0] x shape[1] values");
        Ok((weight, Array1::from(values(layout.bias(layer)))))
    }

    /// Replaces layer `layer`'s weight (`[out, in]`) and bias (`[out]`), as
    /// [`Model::layer_weights`] returns them, leaving the other layers and the optimizer state
    /// as they are (PyTorch's `layer.weight.copy_(…)`; Keras's `set_weights` on one layer, with
    /// the kernel transposed). Errors name a layer that does not exist, a shape that is not the
    /// layer's, or a non-finite value; the model is then unchanged.
    pub fn set_layer_weights(
        &mut self,
        layer: usize,
        weight: &ArrayRef2<f32>,
        bias: &ArrayRef1<f32>,
    ) -> Result<()> {
        let layout = self.layout_with_layer(layer)?;
        let (weight_slot, bias_slot) = (layout.weight(layer), layout.bias(layer));
        for (slot, shape) in [(weight_slot, weight.shape()), (bias_slot, bias.shape())] {
            if slot.shape != shape {
                return Err(WgradError::InvalidModel(format!(
                    "{} given with shape {shape:?}, the layer's is {:?} (weights are [out, in])",
                    slot.name, slot.shape
                )));
            }
        }
        let mut params = self.params()?;
        let range = |slot: &TensorSlot| slot.offset..slot.offset + slot.len;
        for (param, &value) in params[range(weight_slot)].iter_mut().zip(weight) {
            *param = value;
        }
        for (param, &value) in params[range(bias_slot)].iter_mut().zip(bias) {
            *param = value;
        }
        self.set_params(&params)
    }

    /// The parameter layout, once `layer` is known to be one of the model's layers.
    fn layout_with_layer(&self, layer: usize) -> Result<ParamLayout> {
        let layers = self.spec.layers.len();
        if layer >= layers {
            return Err(WgradError::InvalidModel(format!(
                "layer index {layer} is out of range: the model has {layers} layers (0 to {})",
                layers - 1
            )));
        }
        Ok(self.spec.param_layout())
    }

    /// The optimizer's state vectors (see [`Backend::optimizer_state`]), for checkpoints.
    pub fn optimizer_state(&mut self) -> Result<[Vec<f32>; 2]> {
        self.backend_mut().optimizer_state()
    }

    /// Restores optimizer state saved by [`Model::optimizer_state`]; each vector is either
    /// empty (state reset to zero) or as long as the parameters.
    pub fn set_optimizer_state(&mut self, state: &[Vec<f32>; 2]) -> Result<()> {
        let expected = self.spec.param_layout().len;
        let used = self.spec.optimizer.state_vectors();
        for (i, (vector, used)) in state.iter().zip(used).enumerate() {
            if !vector.is_empty() && (!used || vector.len() != expected) {
                return Err(WgradError::InvalidModel(format!(
                    "optimizer state vector {i} has {} values; the {} optimizer expects {}",
                    vector.len(),
                    self.spec.optimizer.name(),
                    if used { expected } else { 0 }
                )));
            }
        }
        self.backend_mut().set_optimizer_state(state)
    }

    /// Optimizer steps taken so far (Adam's t).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Continue counting steps from `steps` (when resuming from a checkpoint).
    pub fn set_steps(&mut self, steps: u64) {
        self.steps = steps;
    }

    /// Train on from here with another base learning rate (Keras's `optimizer.learning_rate
    /// = …`); the optimizer's state is kept. The devices take the rate with every step.
    pub fn set_learning_rate(&mut self, rate: f32) -> Result<()> {
        if crate::model::check_learning_rate(rate).is_err() {
            return Err(WgradError::InvalidLearningRate(rate));
        }
        self.spec.optimizer.set_learning_rate(rate);
        Ok(())
    }

    fn check_inputs(&self, x: ArrayView2<f32>) -> Result<()> {
        if x.nrows() == 0 {
            return Err(WgradError::EmptyDataset("x has no rows"));
        }
        if x.ncols() != self.spec.input_dim {
            return Err(WgradError::InputWidth {
                expected: self.spec.input_dim,
                got: x.ncols(),
            });
        }
        check_finite("x", x)
    }

    /// Checks x against y and the model, and turns y into the dense [n, outputs] targets the
    /// backends train on.
    fn encode(&self, x: ArrayView2<f32>, y: &Targets) -> Result<Array2<f32>> {
        self.check_inputs(x)?;
        if y.len() != x.nrows() {
            return Err(WgradError::RowMismatch {
                x_rows: x.nrows(),
                y_rows: y.len(),
            });
        }
        let outputs = self.spec.output_dim();
        match y {
            Targets::Classes(labels) => {
                let classes = outputs.max(2);
                let mut dense = Array2::zeros((labels.len(), outputs));
                for (row, &label) in labels.iter().enumerate() {
                    if label >= classes {
                        return Err(WgradError::LabelOutOfRange {
                            row,
                            label,
                            classes,
                        });
                    }
                    if outputs == 1 {
                        dense[[row, 0]] = label as f32;
                    } else {
                        dense[[row, label]] = 1.0;
                    }
                }
                Ok(dense)
            }
            Targets::Values(values) => {
                if values.ncols() != outputs {
                    return Err(WgradError::TargetWidth {
                        expected: outputs,
                        got: values.ncols(),
                    });
                }
                check_finite("y", values.view())?;
                if self.spec.resolved_loss() != Loss::MeanSquaredError
                    && let Some(((row, col), &value)) = values
                        .indexed_iter()
                        .find(|(_, v)| !(0.0..=1.0).contains(*v))
                {
                    return Err(WgradError::InvalidData(format!(
                        "cross-entropy targets must lie in [0, 1]; y has {value} at row index \
                         {row}, column index {col}"
                    )));
                }
                // Categorical cross-entropy compares distributions: a row of zeros would teach
                // nothing, one of ones every class at once.
                if self.spec.resolved_loss() == Loss::CategoricalCrossEntropy
                    && let Some((row, sum)) = values
                        .rows()
                        .into_iter()
                        .map(|r| r.iter().map(|&v| f64::from(v)).sum::<f64>())
                        .enumerate()
                        // Loose enough for labels rounded to two decimals.
                        .find(|(_, sum)| (sum - 1.0).abs() > 0.05)
                {
                    return Err(WgradError::InvalidData(format!(
                        "categorical cross-entropy targets are distributions over the classes: \
                         each row must sum to 1, and y's row index {row} sums to {sum:.4}"
                    )));
                }
                Ok(values.clone())
            }
        }
    }
}

thread_local! {
    /// The models whose `fit` is running on this thread (callbacks run on it too).
    static FITTING: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Model `id`'s `fit` in progress, until dropped: however the fit ends (an error, a callback
/// that panics and is caught, a callback that swapped the model), the mark goes with it.
struct Fitting(u64);

impl Fitting {
    /// The mark, or `None` when a `fit` of the model is already running.
    fn start(id: u64) -> Option<Fitting> {
        FITTING.with_borrow_mut(|fitting| {
            (!fitting.contains(&id)).then(|| {
                fitting.push(id);
                Fitting(id)
            })
        })
    }
}

impl Drop for Fitting {
    fn drop(&mut self) {
        FITTING.with_borrow_mut(|fitting| fitting.retain(|&id| id != self.0));
    }
}

/// [`WgradError::NonFinite`] naming the first NaN or infinity of `a` (called `what`).
pub(crate) fn check_finite(what: &'static str, a: ArrayView2<f32>) -> Result<()> {
    // First a pass without branches over the memory (an OR of `nonfinite`, which
    // vectorises): about 0.23 ns a value instead of 0.87 on an AMD Zen 1 core, 11 ms for
    // MNIST's training set. The position is searched for only when one is there.
    if let Some(values) = a.as_slice_memory_order() {
        let found = values.iter().fold(0, |found, &v| found | nonfinite(v));
        if found == 0 {
            return Ok(());
        }
    }
    match a.indexed_iter().find(|(_, v)| !v.is_finite()) {
        Some(((row, col), &value)) => Err(WgradError::NonFinite {
            what,
            row,
            col,
            value,
        }),
        None => Ok(()),
    }
}

/// Training steps handed to the backend at once: the GPU records them into one submission;
/// callbacks hear of them when the call returns.
const STEPS_PER_CALL: usize = 64;

/// Hooks into `fit_with`, like Keras callbacks: progress display, checkpoints.
pub trait Callback {
    fn on_epoch_begin(&mut self, _epoch: usize, _samples: usize) {}
    /// After each training step, with the rows it trained on (nothing is read from the device;
    /// steps are reported in groups, as the backend finishes recording them).
    fn on_step(&mut self, _rows: usize) {}
    /// After each epoch, with the model and the history so far; an error stops training.
    fn on_epoch_end(&mut self, _model: &mut Model, _history: &History) -> Result<()> {
        Ok(())
    }
}

/// Early stopping's running state: the best value seen, when, and its weights.
struct EarlyStopper {
    rule: EarlyStopping,
    has_validation: bool,
    best: Option<f32>,
    best_params: Option<Vec<f32>>,
    epochs_without_improvement: usize,
}

impl EarlyStopper {
    /// A watch from scratch, or where `resume` says an earlier run's stood.
    fn new(
        rule: EarlyStopping,
        has_validation: bool,
        resume: &Option<EarlyStoppingResume>,
    ) -> Self {
        let (best, since) = resume
            .as_ref()
            .map_or((None, 0), |resume| rule.replay(&resume.history));
        EarlyStopper {
            rule,
            has_validation,
            best: best.map(|(_, value)| value),
            best_params: resume
                .as_ref()
                .filter(|_| rule.restore_best && best.is_some())
                .map(|resume| resume.best_params.clone()),
            epochs_without_improvement: since,
        }
    }

    fn check(&self, classification: bool) -> Result<()> {
        let monitor = self.rule.monitor;
        if matches!(monitor, Monitor::ValLoss | Monitor::ValAccuracy) && !self.has_validation {
            return Err(WgradError::InvalidConfig(format!(
                "early stopping monitors {} but there is no validation data (give fit_with \
                 some, or set FitConfig::validation_split; --validation-split on the command \
                 line)",
                monitor.name()
            )));
        }
        if monitor.maximize() && !classification {
            return Err(WgradError::InvalidConfig(format!(
                "early stopping monitors {}, which value targets (Targets::Values) do not have; \
                 give class labels (one-hot rows convert with Targets::from_one_hot)",
                monitor.name()
            )));
        }
        Ok(())
    }

    /// Records an epoch; returns whether to stop.
    fn update(&mut self, model: &mut Model, record: &EpochRecord) -> Result<bool> {
        let value = self
            .rule
            .monitor
            .value(record)
            .expect("checked before training");
        if self.rule.improves(value, self.best) {
            self.best = Some(value);
            self.epochs_without_improvement = 0;
            if self.rule.restore_best {
                self.best_params = Some(model.params()?);
            }
        } else {
            self.epochs_without_improvement += 1;
        }
        Ok(self.epochs_without_improvement >= self.rule.patience)
    }

    fn restore(self, model: &mut Model) -> Result<()> {
        match self.best_params {
            Some(params) => model.set_params(&params),
            None => Ok(()),
        }
    }
}

/// One line per epoch: losses, accuracies, time and throughput.
pub fn format_epoch(record: &EpochRecord, epochs: usize) -> String {
    let validation = match (record.val_loss, record.val_accuracy) {
        (Some(l), Some(a)) => format!("  val_loss {}  val_accuracy {a:.4}", LossFigure(l)),
        (Some(l), None) => format!("  val_loss {}", LossFigure(l)),
        _ => String::new(),
    };
    let accuracy = record
        .accuracy
        .map(|a| format!("  accuracy {:.4}", a))
        .unwrap_or_default();
    format!(
        "epoch {}/{}  loss {}{}{}  ({:.2} s, {:.0} samples/s)",
        record.epoch,
        epochs,
        LossFigure(record.loss),
        accuracy,
        validation,
        record.seconds,
        record.samples_per_second
    )
}
