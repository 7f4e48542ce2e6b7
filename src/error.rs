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
        "class label {label} at row {row} is out of range: the model has {classes} classes (labels 0..{classes})"
    )]
    LabelOutOfRange {
        row: usize,
        label: usize,
        classes: usize,
    },

    #[error("{what} holds a non-finite value ({value}) at row {row}, column {col}")]
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

    #[error("invalid model: {0}")]
    InvalidModel(String),

    #[error(
        "no GPU adapter found{detail}. Install a Vulkan driver (on Debian/Ubuntu the software \
         adapter comes with `apt-get install mesa-vulkan-drivers libvulkan1`), or train on the CPU \
         with `Device::Cpu` (`--device cpu`)"
    )]
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

    #[error(
        "training diverged in epoch {epoch}: the mean loss is {loss}; lower the learning rate \
         or clip gradients (--clip-norm)"
    )]
    Diverged { epoch: usize, loss: f32 },

    #[error("GPU error: {0}")]
    Gpu(String),

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

pub type Result<T> = std::result::Result<T, WgradError>;
