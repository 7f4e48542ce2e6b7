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

/// `println!` that a closed standard output (a reader that quit, as `| head` does) does not
/// stop: the report is lost, the work goes on, where `println!` would panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that a closed standard error does not stop (as [`out!`]).
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod backend;
pub mod bench;
pub mod cli;
pub mod cpu;
pub mod data;
pub mod error;
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
