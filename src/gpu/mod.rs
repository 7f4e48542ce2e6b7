//! The GPU backend on wgpu: the device ([`device`]), the kernel families ([`kernels`]), the
//! scheduler that lays out a model's buffers and records its training step ([`scheduler`]),
//! a dense layer's products, its weight split where it exceeds a binding ([`dense`]),
//! single-kernel entry points for tests ([`ops`]), the matmul kernel's configurations
//! ([`matmul`]), the choice among them per adapter ([`autotune`]) and per-kernel timing
//! ([`profile`]).

pub mod autotune;
pub mod dense;
pub mod device;
pub mod kernels;
pub mod matmul;
pub mod ops;
pub mod policy;
pub mod profile;
pub mod scheduler;
pub mod texture;

pub use device::{AdapterChoice, GpuApi, GpuContext, list_adapters};
pub use scheduler::GpuBackend;
