//! wgrad trains multilayer perceptrons on the GPU through wgpu (Vulkan, Metal, DX12, GL),
//! and on the CPU through a reference path that every GPU kernel is tested against.
//!
//! ```no_run
//! use wgrad::{Activation, Device, FitConfig, Model, Optimizer, Sequential, data};
//!
//! let (x, y) = data::xor();
//! let spec = Sequential::new(2)
//!     .dense(4, Activation::Sigmoid)
//!     .dense(1, Activation::Sigmoid)
//!     .optimizer(Optimizer::adam(0.05));
//! let mut model = Model::new(spec, Device::Auto)?;
//! let history = model.fit(&x, &y.into(), &FitConfig { epochs: 500, batch_size: 4, ..Default::default() })?;
//! println!("final loss {}", history.last().unwrap().loss);
//! # Ok::<(), wgrad::WgradError>(())
//! ```
//!
//! The module tree follows the architecture: [`model`] describes a network without devices;
//! [`cpu`] and [`gpu`] are the two backends behind [`backend::Backend`]; [`train`] is the
//! training loop both share; [`data`] holds built-in data sets.

/// `println!` that a failed write to standard output does not stop, where `println!` would
/// panic: the report is lost, the work goes on. A closed pipe (a reader that quit, as
/// `| head` does) is no failure; any other is kept for [`output_error`] (a full disk).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        $crate::keep_output_error(writeln!(std::io::stdout(), $($arg)*));
    }};
}

/// `eprintln!` that a failed write to standard error does not stop (as [`out!`]).
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        $crate::keep_output_error(writeln!(std::io::stderr(), $($arg)*));
    }};
}

static OUTPUT_ERROR: std::sync::OnceLock<String> = std::sync::OnceLock::new();

#[doc(hidden)]
pub fn keep_output_error(written: std::io::Result<()>) {
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        let _ = OUTPUT_ERROR.set(e.to_string());
    }
}

/// The first failure to write the program's output other than a closed pipe, if any: the
/// binary exits with an error naming it once the work is done.
pub fn output_error() -> Option<&'static str> {
    OUTPUT_ERROR.get().map(String::as_str)
}

pub mod backend;
pub mod bench;
pub mod cli;
pub mod cpu;
pub mod data;
pub mod error;
mod fnv;
pub mod gpu;
pub mod io;
pub mod metrics;
pub mod model;
pub mod plot;
pub mod rng;
pub mod train;

pub use backend::Device;
pub use error::{Divergence, Result, WgradError};
pub use gpu::AdapterChoice;
pub use model::{Activation, Dense, Loss, Optimizer, Sequential};
pub use train::{EpochRecord, Evaluation, FitConfig, History, Model, Targets};
