//! Matrix products, the kernel that dominates training: criterion benchmarks of
//!
//! - the CPU backend's GEMM (`wgrad::cpu::ops::matmul`) in all three [`MatmulForm`]s at the
//!   shapes of one dense layer's training step: the forward product `ABt`
//!   (`x·Wᵀ`, M = batch, N = outputs, K = inputs), the weight gradient `AtB` (`dZᵀ·x`,
//!   M = outputs, N = inputs, K = batch) and the input gradient `AB` (`dZ·W`, M = batch,
//!   N = inputs, K = outputs), for MNIST's first layer (784 → 128, batch 128) and the wide
//!   one (784 → 800, batch 128), and at 1024³;
//! - the GPU matmul kernel through [`KernelRunner::time_matmul`] (form `AB`, buffers resident,
//!   `repeats` dispatches recorded into one submission, no uploads or read-backs timed) at
//!   128×128×784 and 1024³. `iter_custom` hands it the iteration count and gets back the
//!   kernel's own time per dispatch × iterations.
//!
//! Every benchmark id reads `FORM (role)/MxNxK`, and its throughput is
//! `Throughput::Elements(2·M·N·K)`: criterion's `elem/s` are FLOP/s (`Gelem/s` = GFLOP/s).
//!
//! The GPU part follows the project's policy (see `tests/common`): with `WGRAD_SKIP_GPU=1` it
//! says it is skipped and is; otherwise a missing adapter is a panic that says what to install.
//! The adapter is the default choice, narrowed by `WGRAD_BACKEND` / `WGRAD_ADAPTER`.
//!
//! Run: `cargo bench --bench matmul` (or `-- --quick` for a first look, `-- cpu` for the CPU
//! part only). Sample sizes and times are small so that the set finishes in about a minute on
//! two cores with Mesa's software adapter (lavapipe); raise them on the command line
//! (`-- --sample-size 50 --measurement-time 10`) for tighter figures.

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use ndarray::Array2;
use std::hint::black_box;
use std::time::Duration;
use wgrad::cpu::ops::{MatmulForm, matmul};
use wgrad::gpu::ops::KernelRunner;
use wgrad::gpu::policy::{NO_ADAPTER_HELP, skip_requested};
use wgrad::{AdapterChoice, WgradError};

/// What to tell the user when no GPU adapter is found.
/// At most this many dispatches go into one GPU submission (a larger iteration count is split
/// into several `time_matmul` calls), so that one submission on a slow software adapter stays
/// in the seconds.
const MAX_DISPATCHES_PER_SUBMISSION: u64 = 32;

/// A product shape: C[M,N] = op(A)·op(B) with inner dimension K.
#[derive(Clone, Copy)]
struct Shape {
    m: usize,
    n: usize,
    k: usize,
}

impl Shape {
    const fn new(m: usize, n: usize, k: usize) -> Self {
        Shape { m, n, k }
    }

    fn flops(self) -> u64 {
        2 * (self.m * self.n * self.k) as u64
    }

    fn label(self) -> String {
        format!("{}x{}x{}", self.m, self.n, self.k)
    }
}

/// The CPU cases: (form, what the product is in a training step, shape).
fn cpu_cases() -> Vec<(MatmulForm, &'static str, Shape)> {
    let mut cases = Vec::new();
    // One dense layer `inputs → outputs` at batch 128: the three products of its step.
    for (inputs, outputs) in [(784, 128), (784, 800)] {
        let batch = 128;
        cases.push((
            MatmulForm::ABt,
            "forward",
            Shape::new(batch, outputs, inputs),
        ));
        cases.push((
            MatmulForm::AtB,
            "weight grad",
            Shape::new(outputs, inputs, batch),
        ));
        cases.push((
            MatmulForm::AB,
            "input grad",
            Shape::new(batch, inputs, outputs),
        ));
    }
    for (form, role) in [
        (MatmulForm::ABt, "forward"),
        (MatmulForm::AtB, "weight grad"),
        (MatmulForm::AB, "input grad"),
    ] {
        cases.push((form, role, Shape::new(1024, 1024, 1024)));
    }
    cases
}

/// Deterministic inputs in [0, 1), not constant (so no value-dependent shortcut can apply).
fn matrix(rows: usize, cols: usize, salt: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(r, c)| {
        ((r * 31 + c * 17 + salt) % 255) as f32 / 255.0
    })
}

/// The stored shapes of A and B for `form` at `shape` (see [`MatmulForm`]).
fn operand_shapes(form: MatmulForm, s: Shape) -> ((usize, usize), (usize, usize)) {
    match form {
        MatmulForm::AB => ((s.m, s.k), (s.k, s.n)),
        MatmulForm::ABt => ((s.m, s.k), (s.n, s.k)),
        MatmulForm::AtB => ((s.k, s.m), (s.k, s.n)),
    }
}

fn cpu_matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul_cpu (elem = FLOP)");
    for (form, role, shape) in cpu_cases() {
        let ((ar, ac), (br, bc)) = operand_shapes(form, shape);
        let a = matrix(ar, ac, 0);
        let b = matrix(br, bc, 7);
        let mut out = Array2::<f32>::zeros((shape.m, shape.n));
        group.throughput(Throughput::Elements(shape.flops()));
        group.bench_function(
            BenchmarkId::new(format!("{form:?} ({role})"), shape.label()),
            |bencher| {
                bencher.iter(|| {
                    matmul(
                        form,
                        black_box(a.view()),
                        black_box(b.view()),
                        out.view_mut(),
                    );
                    black_box(&out);
                });
            },
        );
    }
    group.finish();
}

/// A kernel runner on the default adapter; panics with [`NO_ADAPTER_HELP`] when there is none.
fn kernel_runner() -> KernelRunner {
    match KernelRunner::new(&AdapterChoice::default()) {
        Ok(runner) => {
            eprintln!("GPU matmul benchmarks on {}", runner.ctx.describe());
            runner
        }
        Err(e @ WgradError::NoAdapter { .. }) => panic!("{NO_ADAPTER_HELP}\n  ({e})"),
        Err(e) => panic!("the GPU failed to start: {e}"),
    }
}

fn gpu_matmul(c: &mut Criterion) {
    if skip_requested("the GPU matmul benchmarks") {
        return;
    }
    // Made on first use, so that a filter selecting only CPU benchmarks never opens an adapter.
    let mut runner: Option<KernelRunner> = None;
    let mut group = c.benchmark_group("matmul_gpu (elem = FLOP)");
    // One dispatch of 1024³ takes about a second on lavapipe: flat sampling keeps the
    // number of iterations per sample small.
    group.sampling_mode(SamplingMode::Flat);
    for shape in [Shape::new(128, 128, 784), Shape::new(1024, 1024, 1024)] {
        group.throughput(Throughput::Elements(shape.flops()));
        group.bench_function(BenchmarkId::new("AB (kernel)", shape.label()), |bencher| {
            let runner = runner.get_or_insert_with(kernel_runner);
            bencher.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let chunk = left.min(MAX_DISPATCHES_PER_SUBMISSION);
                    let seconds = runner
                        .time_matmul(shape.m, shape.n, shape.k, chunk as usize)
                        .unwrap_or_else(|e| panic!("GPU matmul {} failed: {e}", shape.label()));
                    total += Duration::from_secs_f64(seconds * chunk as f64);
                    left -= chunk;
                }
                total
            });
        });
    }
    group.finish();
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
    targets = cpu_matmul, gpu_matmul
}
criterion_main!(benches);
