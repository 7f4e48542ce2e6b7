//! The GPU backend on wgpu: the device ([`device`]), the kernel families ([`kernels`]), the
//! scheduler that lays out a model's buffers and records its training step ([`scheduler`]),
//! and single-kernel entry points for tests ([`ops`]).

pub mod device;
pub mod kernels;
pub mod ops;
pub mod policy;
pub mod scheduler;

pub use device::{AdapterChoice, GpuApi, GpuContext, list_adapters};
pub use scheduler::GpuBackend;
