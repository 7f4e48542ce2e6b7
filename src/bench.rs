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
use crate::train::{Callback, FitConfig, History, Model, Targets};
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
    // Varied inputs (never constant: a benchmark should see what training sees).
    let a = Array2::from_shape_fn((n, n), |(i, j)| {
        ((i * 31 + j * 17) % 255) as f32 / 255.0 - 0.5
    });
    let b = Array2::from_shape_fn((n, n), |(i, j)| {
        ((i * 7 + j * 13) % 101) as f32 / 101.0 - 0.5
    });
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

/// The device's name as the tables print it.
fn device_name(device: &Device) -> Result<String> {
    Ok(match device {
        Device::Cpu => "CPU".to_string(),
        _ => Model::new(
            Sequential::new(1).dense(1, Activation::Linear),
            device.clone(),
        )?
        .device(),
    })
}

/// The resident set size of this process in MiB (Linux; `None` elsewhere).
fn resident_mib() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / (1024.0 * 1024.0))
}

fn format_mib(mib: Option<f64>) -> String {
    mib.map_or("n/a".to_string(), |m| format!("{m:.0} MiB"))
}

/// Records the resident memory after each epoch.
struct MemoryPerEpoch(Vec<Option<f64>>);

impl Callback for MemoryPerEpoch {
    fn on_epoch_end(&mut self, _model: &mut Model, _history: &History) -> Result<()> {
        self.0.push(resident_mib());
        Ok(())
    }
}

/// How cost grows with the work, per device: case (b) trained for 3 epochs on 1×, 2× and 4×
/// a base number of batches (samples/s should stay flat: epoch time linear in the data),
/// then one fit of 20 epochs on the base data with the resident memory after the 1st epoch and
/// the last (it should stay flat across epochs).
pub fn scaling(devices: &[Device], quick: bool) -> Result<()> {
    let case = &standard_cases()[0];
    let base_steps = if quick { 25 } else { 100 };
    out!(
        "{:<34} {:>14} {:>16} {:>10}  device",
        "run",
        "s/epoch",
        "samples/s",
        "memory"
    );
    for device in devices {
        let name = device_name(device)?;
        let mut model = Model::new(case.spec(), device.clone())?;
        let config = FitConfig {
            epochs: 3,
            ..case.config()
        };
        for factor in [1, 2, 4] {
            let (x, y) = case.data(base_steps * factor);
            let history = model.fit(&x, &y, &config)?;
            // The first epoch of a fit includes uploading the data; report the median.
            let samples = median(
                history
                    .epochs
                    .iter()
                    .map(|e| e.samples_per_second)
                    .collect(),
            );
            out!(
                "{:<34} {:>14.3} {:>16.0} {:>10}  {name}",
                format!("(b) {} samples x 3 epochs", x.nrows()),
                x.nrows() as f64 / samples,
                samples,
                format_mib(resident_mib()),
            );
        }
        let (x, y) = case.data(base_steps);
        let mut memory = MemoryPerEpoch(Vec::new());
        let epochs = FitConfig {
            epochs: 20,
            ..case.config()
        };
        model.fit_with(&x, &y, &epochs, None, &mut [&mut memory])?;
        for (epoch, mib) in [(1, memory.0[0]), (20, memory.0[19])] {
            out!(
                "{:<34} {:>14} {:>16} {:>10}  {name}",
                format!("memory after epoch {epoch} of 20"),
                "",
                "",
                format_mib(mib)
            );
        }
    }
    Ok(())
}

/// Runs the set on each device and prints one table. `quick` uses smaller sizes and fewer
/// steps (for software adapters, or a first look).
pub fn run(devices: &[Device], quick: bool) -> Result<()> {
    let sizes: &[usize] = if quick { &[256, 1024] } else { &[1024, 4096] };
    out!("{:<28} {:>16}  device", "benchmark", "figure");
    for device in devices {
        let name = device_name(device)?;
        // The description ends with the adapter's type: `(Cpu)` for a software one.
        if !quick && name.ends_with("(Cpu)") {
            note!(
                "{name} is a software adapter: the full set takes minutes on it (--quick runs \
                 a smaller one in about a minute)"
            );
        }
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
            out!(
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
            out!("{:<28} {figure}  {name}", case.name);
        }
    }
    Ok(())
}
