//! `wgrad bench`: the standard benchmark set, per device, in one table: GFLOP/s of matmul,
//! samples/s of training for the standard models, and steps/s of a tiny net (per-step
//! overhead). Figures are medians of repeated timings after a warm-up; compare devices only
//! within one run on one machine.

use crate::backend::Device;
use crate::cpu::ops::{MatmulForm, matmul};
use crate::error::Result;
use crate::gpu::AdapterChoice;
use crate::gpu::ops::KernelRunner;
use crate::model::{Activation, Optimizer, Sequential};
use crate::train::{FitConfig, Model, Targets};
use ndarray::Array2;
use std::time::Instant;

/// A training benchmark of the standard set.
pub struct TrainCase {
    pub name: &'static str,
    pub widths: &'static [usize],
    pub batch: usize,
    pub optimizer: Optimizer,
}

impl TrainCase {
    /// ReLU hidden layers; softmax output, or sigmoid for one output.
    pub fn spec(&self) -> Sequential {
        let (inputs, outputs) = (self.widths[0], *self.widths.last().expect("widths"));
        let mut spec = Sequential::new(inputs);
        for &width in &self.widths[1..self.widths.len() - 1] {
            spec = spec.dense(width, Activation::Relu);
        }
        let output = if outputs == 1 {
            Activation::Sigmoid
        } else {
            Activation::Softmax
        };
        spec.dense(outputs, output).optimizer(self.optimizer)
    }

    /// `steps` batches of deterministic, varied 8-bit-like inputs and cycling labels.
    pub fn data(&self, steps: usize) -> (Array2<f32>, Targets) {
        let (inputs, outputs) = (self.widths[0], *self.widths.last().expect("widths"));
        let rows = steps * self.batch;
        let x = Array2::from_shape_fn((rows, inputs), |(r, c)| {
            ((r * 31 + c * 17) % 255) as f32 / 255.0
        });
        (
            x,
            Targets::Classes((0..rows).map(|r| r % outputs.max(2)).collect()),
        )
    }

    /// One epoch over [`TrainCase::data`], in the case's batches.
    pub fn config(&self) -> FitConfig {
        FitConfig {
            epochs: 1,
            batch_size: self.batch,
            ..Default::default()
        }
    }
}

/// The standard set: (b) MNIST-sized, (c) wide hidden layer, (d) a large MLP, (e) a tiny net.
pub fn standard_cases() -> Vec<TrainCase> {
    vec![
        TrainCase {
            name: "(b) 784-128-10 adam",
            widths: &[784, 128, 10],
            batch: 128,
            optimizer: Optimizer::adam(1e-3),
        },
        TrainCase {
            name: "(c) 784-800-10 momentum",
            widths: &[784, 800, 10],
            batch: 128,
            optimizer: Optimizer::momentum(0.01, 0.9),
        },
        TrainCase {
            name: "(d) 1024-4096x3-10 adam",
            widths: &[1024, 4096, 4096, 4096, 10],
            batch: 1024,
            optimizer: Optimizer::adam(1e-3),
        },
        TrainCase {
            name: "(e) 2-16-1 adam",
            widths: &[2, 16, 1],
            batch: 4,
            optimizer: Optimizer::adam(1e-3),
        },
    ]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// GFLOP/s of an n×n×n product on the CPU backend's GEMM.
pub fn cpu_matmul_gflops(n: usize, repeats: usize) -> f64 {
    let a = Array2::from_elem((n, n), 0.5f32);
    let b = Array2::from_elem((n, n), 0.25f32);
    let mut c = Array2::zeros((n, n));
    matmul(MatmulForm::AB, a.view(), b.view(), c.view_mut());
    let times = (0..repeats)
        .map(|_| {
            let started = Instant::now();
            matmul(MatmulForm::AB, a.view(), b.view(), c.view_mut());
            started.elapsed().as_secs_f64()
        })
        .collect();
    2.0 * (n * n * n) as f64 / median(times) / 1e9
}

/// GFLOP/s of an n×n×n product on the GPU matmul kernel.
pub fn gpu_matmul_gflops(runner: &mut KernelRunner, n: usize, repeats: usize) -> Result<f64> {
    let seconds = (0..3)
        .map(|_| runner.time_matmul(n, n, n, repeats))
        .collect::<Result<Vec<_>>>()?;
    Ok(2.0 * (n * n * n) as f64 / median(seconds) / 1e9)
}

/// Training samples per second of `case` on `device`: `steps` steps on random data (after
/// a warm-up epoch), median of three runs. Includes the end-of-epoch metric read-back.
pub fn training_samples_per_second(case: &TrainCase, device: &Device, steps: usize) -> Result<f64> {
    let mut model = Model::new(case.spec(), device.clone())?;
    let (x, y) = case.data(steps);
    let config = case.config();
    model.fit(&x, &y, &config)?;
    let runs = (0..3)
        .map(|_| {
            model
                .fit(&x, &y, &config)
                .map(|h| h.epochs[0].samples_per_second)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(median(runs))
}

/// Runs the set on each device and prints one table. `quick` uses smaller sizes and fewer
/// steps (for software adapters, or a first look).
pub fn run(devices: &[Device], quick: bool) -> Result<()> {
    let sizes: &[usize] = if quick { &[256, 1024] } else { &[1024, 4096] };
    println!("{:<28} {:>16}  device", "benchmark", "figure");
    for device in devices {
        let name = match device {
            Device::Cpu => "CPU".to_string(),
            _ => Model::new(
                Sequential::new(1).dense(1, Activation::Linear),
                device.clone(),
            )?
            .device(),
        };
        for &n in sizes {
            let gflops = match device {
                Device::Cpu => cpu_matmul_gflops(n, if n > 2048 { 3 } else { 10 }),
                Device::Gpu(choice) => {
                    let mut runner = KernelRunner::new(choice)?;
                    gpu_matmul_gflops(&mut runner, n, if n > 2048 { 2 } else { 5 })?
                }
                Device::Auto => {
                    let mut runner = KernelRunner::new(&AdapterChoice::default())?;
                    gpu_matmul_gflops(&mut runner, n, 5)?
                }
            };
            println!(
                "{:<28} {:>10.1} GFLOP/s  {name}",
                format!("(a) matmul {n}³"),
                gflops
            );
        }
        for case in standard_cases() {
            if quick && case.widths.len() > 3 {
                continue;
            }
            let steps = match (quick, case.batch) {
                (_, 4) => 500,
                (true, _) => 20,
                (false, 1024) => 10,
                (false, _) => 100,
            };
            let samples = training_samples_per_second(&case, device, steps)?;
            let figure = if case.batch == 4 {
                format!("{:>10.0} steps/s", samples / case.batch as f64)
            } else {
                format!("{samples:>10.0} samples/s")
            };
            println!("{:<28} {figure}  {name}", case.name);
        }
    }
    Ok(())
}
