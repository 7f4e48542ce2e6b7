//! One training step, end to end through `Model::fit`: criterion benchmarks of two models of
//! `wgrad bench`'s standard set (`wgrad::bench::standard_cases`), on the CPU backend and on
//! the GPU:
//!
//! - (b) 784-128-10, ReLU then softmax/cross-entropy, Adam, batch 128 (MNIST-sized: the
//!   matrix products dominate);
//! - (e) 2-16-1, ReLU then sigmoid/binary cross-entropy, Adam, batch 4 (tiny: the per-step
//!   overhead dominates).
//!
//! How: each model is built once and warmed up with one epoch (shader compilation, buffer
//! allocation). One criterion iteration is one epoch of `steps` steps on deterministic
//! non-constant data (`((r·31 + c·17) % 255) / 255`, classes `r % outputs`); `iter_custom`
//! adds up the epochs' own times (`EpochRecord::seconds`: the steps and the end-of-epoch
//! metrics read-back, not the upload of the data that `fit` does before the epoch) and divides
//! by `steps`, so criterion's time per iteration is the time of one step, and its throughput
//! (`Throughput::Elements(batch)`, `elem/s`) is training samples per second. Whole epochs keep
//! the per-epoch costs (shuffle, metrics read-back) in the figure, spread over `steps` steps
//! as they are over an epoch's steps in real training, though an epoch of MNIST has 469.
//!
//! The GPU part follows the project's policy (see `tests/common`): with `WGRAD_SKIP_GPU=1` it
//! says it is skipped and is; otherwise a missing adapter is a panic that says what to install.
//! The adapter is the default choice (a software one included), narrowed by `WGRAD_BACKEND` /
//! `WGRAD_ADAPTER`.
//!
//! Run: `cargo bench --bench train_step` (or `-- --quick` for a first look, `-- cpu` for the
//! CPU part only). Sample sizes and times are small so that the set finishes in about a minute
//! on two cores with Mesa's software adapter (lavapipe).

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use ndarray::Array2;
use std::time::Duration;
use wgrad::bench::{TrainCase, standard_cases};
use wgrad::gpu::policy::{NO_ADAPTER_HELP, skip_requested};
use wgrad::{AdapterChoice, Device, FitConfig, Model, Targets, WgradError};

/// What to tell the user when no GPU adapter is found.
/// The benchmarked cases of the standard set, by their prefix, with the steps of one epoch
/// (one criterion iteration): a few dozen for the MNIST-sized model (half a GPU submission;
/// about a second on lavapipe), a few hundred for the tiny one.
const CASES: [(&str, usize); 2] = [("(b)", 32), ("(e)", 256)];

/// The cases of [`CASES`] as `wgrad bench` defines them, with their epoch lengths.
fn cases() -> Vec<(TrainCase, usize)> {
    let picked: Vec<(TrainCase, usize)> = standard_cases()
        .into_iter()
        .filter_map(|case| {
            CASES
                .iter()
                .find(|(prefix, _)| case.name.starts_with(prefix))
                .map(|&(_, steps)| (case, steps))
        })
        .collect();
    assert_eq!(
        picked.len(),
        CASES.len(),
        "wgrad::bench::standard_cases() no longer has cases named {:?}",
        CASES.map(|(prefix, _)| prefix)
    );
    picked
}

/// A short id for a case: its name from "(b) 784-128-10 adam" on, plus the batch size.
fn case_id(case: &TrainCase) -> String {
    format!("{} batch {}", case.name, case.batch)
}

/// A model that trains `case` on `device`, with `steps` batches of data, warmed up by one
/// epoch. Hidden layers are ReLU; the output is softmax (cross-entropy) for several outputs,
/// sigmoid (binary cross-entropy) for one, as in `wgrad bench`.
struct Bench {
    model: Model,
    x: Array2<f32>,
    y: Targets,
    config: FitConfig,
    steps: usize,
}

impl Bench {
    fn new(case: &TrainCase, steps: usize, device: Device) -> Bench {
        let model = match Model::new(case.spec(), device) {
            Ok(model) => model,
            Err(e @ WgradError::NoAdapter { .. }) => panic!("{NO_ADAPTER_HELP}\n  ({e})"),
            Err(e) => panic!("cannot build {}: {e}", case.name),
        };
        let (x, y) = case.data(steps);
        let config = case.config();
        let mut bench = Bench {
            model,
            x,
            y,
            config,
            steps,
        };
        bench.epoch();
        bench
    }

    /// Trains one epoch; returns its own time.
    fn epoch(&mut self) -> Duration {
        let history = self
            .model
            .fit(&self.x, &self.y, &self.config)
            .unwrap_or_else(|e| panic!("training on {} failed: {e}", self.model.device()));
        Duration::from_secs_f64(history.epochs[0].seconds)
    }

    /// `iters` steps' worth of time: `iters` epochs, divided by the steps of one.
    fn time_steps(&mut self, iters: u64) -> Duration {
        let total: Duration = (0..iters).map(|_| self.epoch()).sum();
        total.div_f64(self.steps as f64)
    }
}

/// One group per device: each case's step time, and samples/s as throughput.
fn bench_device(c: &mut Criterion, group_name: &str, device: &Device) {
    let mut group = c.benchmark_group(group_name);
    // An iteration is a whole epoch (up to a second on lavapipe): few per sample.
    group.sampling_mode(SamplingMode::Flat);
    for (case, steps) in cases() {
        group.throughput(Throughput::Elements(case.batch as u64));
        // Built on first use, so that a filter that excludes this case builds nothing.
        let mut bench: Option<Bench> = None;
        group.bench_function(case_id(&case), |bencher| {
            let bench = bench.get_or_insert_with(|| {
                let bench = Bench::new(&case, steps, device.clone());
                eprintln!("{}: {}", case.name, bench.model.device());
                bench
            });
            bencher.iter_custom(|iters| bench.time_steps(iters));
        });
    }
    group.finish();
}

fn cpu_train_step(c: &mut Criterion) {
    bench_device(c, "train_step_cpu (elem = sample)", &Device::Cpu);
}

fn gpu_train_step(c: &mut Criterion) {
    if skip_requested("the GPU training-step benchmarks") {
        return;
    }
    bench_device(
        c,
        "train_step_gpu (elem = sample)",
        &Device::Gpu(AdapterChoice::default()),
    );
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = cpu_train_step, gpu_train_step
}
criterion_main!(benches);
