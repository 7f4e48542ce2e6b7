//! One error type for the whole crate: every way a user's input or the device can fail,
//! each with enough context (shape, row, value, layer) to fix the cause.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum WgradError {
    #[error("x has {x_rows} rows but y has {y_rows}: every sample needs exactly one target")]
    RowMismatch { x_rows: usize, y_rows: usize },

    #[error("input has {got} columns but the first layer expects {expected}")]
    InputWidth { expected: usize, got: usize },

    #[error("targets have {got} columns but the output layer has {expected} units")]
    TargetWidth { expected: usize, got: usize },

    #[error(
        "class label {label} at row index {row} is out of range: the model has {classes} classes \
         (labels 0 to {last})",
        last = .classes.saturating_sub(1)
    )]
    LabelOutOfRange {
        row: usize,
        label: usize,
        classes: usize,
    },

    #[error("{what} holds a non-finite value ({value}) at row index {row}, column index {col}")]
    NonFinite {
        what: &'static str,
        row: usize,
        col: usize,
        value: f32,
    },

    #[error("the data set is empty: {0}")]
    EmptyDataset(&'static str),

    #[error("batch size must be at least 1, got 0")]
    ZeroBatchSize,

    #[error("learning rate must be a finite number > 0, got {0}")]
    InvalidLearningRate(f32),

    /// The model description (layers, activations, loss, optimizer) cannot be trained.
    #[error("invalid model: {0}")]
    InvalidModel(String),

    /// A training setting cannot work or is almost certainly a mistake (`FitConfig`'s
    /// schedule, clipping, early stopping, batch size); the model description is fine.
    #[error("invalid setting: {0}")]
    InvalidConfig(String),

    /// Data that cannot be used as given: targets the loss cannot take, rows that are not
    /// one-hot, arrays or labels that do not fit each other (the metrics, the scaler).
    #[error("invalid data: {0}")]
    InvalidData(String),

    /// What is wrong with `fit_with`'s validation data: the error the same data would give as
    /// training data, said to be about the validation set.
    #[error("validation data: {0}")]
    ValidationData(Box<WgradError>),

    /// No adapter as asked for: `detail` says what was asked for, which adapters there are,
    /// and what to do.
    #[error("no GPU adapter found{detail}")]
    NoAdapter { detail: String },

    #[error(
        "{what} needs {bytes} bytes but the adapter '{adapter}' allows at most {limit} bytes per \
         {limit_name}; use a smaller batch size or layer, or train on the CPU"
    )]
    BufferTooLarge {
        what: String,
        bytes: u64,
        limit: u64,
        limit_name: &'static str,
        adapter: String,
    },

    /// Host memory the model or its batches need that the machine cannot give: asked for
    /// before the arrays are built, since an allocation that fails inside them aborts.
    #[error(
        "{what} need {gigabytes:.2} GB of memory, more than this machine can allocate; use \
         smaller layers or batches",
        gigabytes = *.bytes as f64 / 1e9
    )]
    OutOfMemory { what: String, bytes: u128 },

    #[error(
        "{what} needs {bytes} bytes that the adapter '{adapter}' could not give ({detail}); use a \
         smaller batch size, layer or data set, or train on the CPU"
    )]
    OutOfGpuMemory {
        what: String,
        bytes: u64,
        adapter: String,
        detail: String,
    },

    /// Training went non-finite: found at the read-back after the epoch, named by the first
    /// step that went bad. The model is put back as it was when that epoch began (parameters,
    /// optimizer state and step count), so it holds finite weights and the run can go on
    /// from there, e.g. with gradient clipping.
    #[error("{}", diverged_message(*epoch, *step, *epoch_step, cause, *last_good_epoch, checkpoint.as_deref()))]
    Diverged {
        epoch: usize,
        /// 1-based optimizer step over the whole run (Adam's t; `Model::steps`).
        step: u64,
        /// 1-based step within the epoch.
        epoch_step: u64,
        cause: Divergence,
        /// The epoch before `epoch`, whose weights the model holds (0: none of this run's
        /// epochs ended; the model holds the weights it started with).
        last_good_epoch: usize,
        /// The run directory, where `wgrad train` trained (it holds that epoch's checkpoint;
        /// the message then speaks of command-line options).
        checkpoint: Option<String>,
    },

    #[error("GPU error: {0}")]
    Gpu(String),

    /// The device stopped working (driver reset, unplugged, destroyed); nothing more can run
    /// on it, but what was saved before is untouched.
    #[error(
        "GPU device lost: {0}. Nothing more can run on it; files saved before are intact \
         (`wgrad train --resume DIR`, or `io::load_checkpoint` in the library, continues from \
         the last checkpoint)"
    )]
    DeviceLost(String),

    /// A data or model file that is malformed: `message` says where (line, column, tensor)
    /// and what was found.
    #[error("{path}: {message}")]
    Data { path: String, message: String },

    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl WgradError {
    /// A malformed-file error for `path`.
    pub fn data(path: impl AsRef<std::path::Path>, message: impl Into<String>) -> Self {
        WgradError::Data {
            path: path.as_ref().display().to_string(),
            message: message.into(),
        }
    }

    /// An I/O error while reading or writing `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        WgradError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// What went non-finite first in a diverging run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Divergence {
    /// The step's loss (NaN or ±inf).
    Loss(f32),
    /// The step's update made a parameter, or the optimizer's state for it, NaN or infinite
    /// while its loss was finite.
    Weights,
}

fn diverged_message(
    epoch: usize,
    step: u64,
    epoch_step: u64,
    cause: &Divergence,
    last_good_epoch: usize,
    checkpoint: Option<&str>,
) -> String {
    let what = match cause {
        Divergence::Loss(loss) => format!("loss is {loss}"),
        Divergence::Weights => {
            "its update made weights or the optimizer's state NaN or infinite".to_string()
        }
    };
    let kept = match (last_good_epoch, checkpoint) {
        (0, Some(_)) => {
            "no epoch ended with finite weights, so nothing of this run was saved".to_string()
        }
        (0, None) => {
            "no epoch ended with finite weights; the model holds the weights it started with"
                .to_string()
        }
        (good, Some(dir)) => format!("the last checkpoint (epoch {good}, in {dir}) is intact"),
        (good, None) => {
            format!("the model holds the weights of epoch {good}, the last finite ones")
        }
    };
    let remedy = match checkpoint {
        Some(_) => "Lower --lr or clip gradients with --clip-norm",
        None => "Lower the learning rate or clip gradients (`FitConfig::clip_norm`)",
    };
    format!(
        "training diverged at epoch {epoch}, step {step} (step {epoch_step} of the epoch): \
         {what}; {kept}. {remedy}"
    )
}

pub type Result<T> = std::result::Result<T, WgradError>;
