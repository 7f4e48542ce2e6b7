//! Property tests: every kernel `KernelRunner` exposes against its CPU twin in `cpu::ops`,
//! over random shapes (1, primes, anything up to 100 per dimension) and random values,
//! extreme ones included: logits up to ±1e4, saturated sigmoids and tanh, subnormal inputs
//! (~1e-40), tiny (1e-20) and huge (1e15) magnitudes, mixed signs, and exploding gradients
//! (up to 1e38) for clipping.
//!
//! Each case checks three things:
//! 1. GPU ≈ CPU, element by element, within a tolerance derived from the operation (see
//!    the bounds below): a K-term dot product may differ by about 2·K·u·Σ|a||b| (u = 2⁻²⁴,
//!    both devices' rounding), not by a fixed fraction of the result.
//! 2. Every output is finite on both devices (the inputs are chosen so that the mathematics is
//!    finite: logits of ±1e4 give finite cross-entropies and gradients; softmax is never NaN).
//! 3. Subnormal inputs give no NaN. A GPU may flush subnormals to zero (Vulkan allows it), so
//!    each bound includes what flushing can change: the terms with a subnormal factor, and
//!    `f32::MIN_POSITIVE` per operation whose result may be flushed.
//!
//! Configuration: a fixed number of cases per property (48 for the matmul-based ones, more
//! for the cheap ones; `PROPTEST_CASES` overrides all), a fixed seed (`PROPTEST_RNG_SEED`
//! overrides, to explore), no failure persistence (a failure prints its shrunk input, and
//! the fixed seed finds it again). Values come from a seed inside each case, so shrinking
//! works on the shapes, the kernels' options and the value ranges. One `KernelRunner`
//! serves every case of every property. Each property prints the largest share of its
//! tolerance that any of its comparisons used.

mod common;

use common::{
    cpu_dense_backward_input, cpu_dense_forward, cpu_grad_weights_and_bias, kernel_runner,
};
use ndarray::{Array1, Array2, ArrayView2, Zip};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::Cell;
use std::fmt::Debug;
use std::sync::{Mutex, OnceLock, PoisonError};
use wgrad::backend::StepParams;
use wgrad::cpu::ops::{self, Dropout, MatmulForm};
use wgrad::gpu::kernels::Kernels;
use wgrad::gpu::matmul::MATMUL_CONFIGS;
use wgrad::gpu::ops::KernelRunner;
use wgrad::{Activation, Loss, Optimizer};

/// Cases of each matmul-based property: each meets a few of the 6 configurations × 3 forms
/// (or 6 activations) with every value range. The cheaper properties run more, as many as
/// their option combinations call for; all of it takes seconds on lavapipe.
const MATMUL_CASES: u32 = 48;

/// The unit roundoff of f32 (2⁻²⁴): a correctly rounded operation is within u·|result|.
const U: f64 = f32::EPSILON as f64 / 2.0;

/// The smallest normal f32: a result below it may be flushed to zero by the GPU.
const TINY: f64 = f32::MIN_POSITIVE as f64;

const HIDDEN: [Activation; 5] = [
    Activation::Linear,
    Activation::Relu,
    Activation::LeakyRelu,
    Activation::Sigmoid,
    Activation::Tanh,
];

/// The configuration of a property run by default for `cases` cases.
fn config(cases: u32) -> Config {
    let mut config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    let unset = |var: &str| std::env::var_os(var).is_none();
    if unset("PROPTEST_CASES") {
        config.cases = cases;
    }
    if unset("PROPTEST_RNG_SEED") {
        config.rng_seed = RngSeed::Fixed(0x9e37_79b9_7f4a_7c15);
    }
    if unset("PROPTEST_MAX_SHRINK_ITERS") {
        // Each shrinking step runs the GPU: bound the search, not the quality of a typical one.
        config.max_shrink_iters = 400;
    }
    config
}

/// Runs property `body` over `cases` cases of `strategy` (unless `PROPTEST_CASES` says
/// otherwise) on the shared GPU runner (nothing under `WGRAD_SKIP_GPU=1`) and prints the
/// largest share of its tolerance any comparison used. `body` returns that share for its case.
/// `config`, or where the adapter cannot run it (a subgroup configuration without
/// subgroups of its width), the next configuration it can.
fn runnable(gpu: &KernelRunner, config: usize) -> usize {
    (config..config + MATMUL_CONFIGS.len())
        .map(|c| c % MATMUL_CONFIGS.len())
        .find(|&c| MATMUL_CONFIGS[c].supported(gpu.ctx.subgroup_size))
        .expect("the configurations without subgroups run everywhere")
}

fn check<S>(
    test: &str,
    cases: u32,
    strategy: S,
    body: impl Fn(&mut KernelRunner, S::Value) -> Result<f64, TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    if common::skip_gpu(test) {
        return;
    }
    static RUNNER: OnceLock<Mutex<KernelRunner>> = OnceLock::new();
    let shared = RUNNER.get_or_init(|| {
        Mutex::new(kernel_runner("proptest_parity").expect("WGRAD_SKIP_GPU is not set"))
    });
    let worst = Cell::new(0.0f64);
    let passed = Cell::new(0u32);
    let mut runner = TestRunner::new(config(cases));
    let result = runner.run(&strategy, |case| {
        // A failed case panics while holding the lock; the runner stays usable.
        let mut gpu = shared.lock().unwrap_or_else(PoisonError::into_inner);
        let used = body(&mut gpu, case)?;
        worst.set(worst.get().max(used));
        passed.set(passed.get() + 1);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{test}: {e}");
    }
    println!(
        "{test}: {} cases, the worst error used {:.1e} of its tolerance",
        passed.get(),
        worst.get()
    );
}

/// Fails unless both sides are finite and |gpu - cpu| ≤ tolerance element by element;
/// returns the largest |gpu - cpu| / tolerance.
fn compare<'a>(
    what: &str,
    gpu: impl IntoIterator<Item = &'a f32>,
    cpu: impl IntoIterator<Item = &'a f32>,
    tolerance: impl IntoIterator<Item = f64>,
) -> Result<f64, TestCaseError> {
    let gpu: Vec<f32> = gpu.into_iter().copied().collect();
    let cpu: Vec<f32> = cpu.into_iter().copied().collect();
    let tolerance: Vec<f64> = tolerance.into_iter().collect();
    prop_assert!(
        !cpu.is_empty() && gpu.len() == cpu.len() && tolerance.len() == cpu.len(),
        "{what}: {} GPU values, {} CPU values, {} tolerances",
        gpu.len(),
        cpu.len(),
        tolerance.len()
    );
    let mut worst = 0.0f64;
    for (i, ((&g, &c), &tol)) in gpu.iter().zip(&cpu).zip(&tolerance).enumerate() {
        prop_assert!(
            c.is_finite() && g.is_finite(),
            "{what}[{i}]: non-finite result: GPU {g}, CPU {c}"
        );
        let error = (f64::from(g) - f64::from(c)).abs();
        prop_assert!(
            error <= tol,
            "{what}[{i}]: GPU {g:e} vs CPU {c:e}: error {error:.3e} > tolerance {tol:.3e}"
        );
        if error > 0.0 {
            worst = worst.max(error / tol);
        }
    }
    Ok(worst)
}

fn subnormal(v: f32) -> bool {
    v != 0.0 && v.abs() < f32::MIN_POSITIVE
}

// ---------------------------------------------------------------------------------------
// Random values

/// How the magnitudes of a tensor's values are drawn (each value's sign is random).
#[derive(Debug, Clone, Copy)]
enum Magnitude {
    /// |v| uniform in [lo, hi].
    Uniform(f32, f32),
    /// |v| = 10^x, x uniform in [lo, hi]; one value in 16 exactly zero.
    Log(i32, i32),
}

const UNIT: Magnitude = Magnitude::Uniform(0.0, 1.0);
/// Subnormal f32 values (below 1.18e-38).
const SUBNORMAL: Magnitude = Magnitude::Uniform(0.0, 1e-39);
const TINY_VALUES: Magnitude = Magnitude::Log(-22, -18);
const HUGE_VALUES: Magnitude = Magnitude::Log(12, 15);
/// Every decade from subnormals to 1e15, in one tensor.
const MIXED: Magnitude = Magnitude::Log(-45, 15);
/// Exploding gradients: squares past f32's range.
const EXPLODING: Magnitude = Magnitude::Log(15, 38);
/// Every decade from subnormals to 1e38, in one tensor.
const MIXED_EXPLODING: Magnitude = Magnitude::Log(-45, 38);

/// Values of one tensor: their magnitude and the seed that draws them.
#[derive(Debug, Clone, Copy)]
struct Values {
    magnitude: Magnitude,
    seed: u64,
}

impl Values {
    fn vec(&self, len: usize) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        (0..len)
            .map(|_| {
                let size = match self.magnitude {
                    Magnitude::Uniform(lo, hi) => rng.random_range(lo..=hi),
                    Magnitude::Log(lo, hi) => {
                        if rng.random_range(0..16) == 0 {
                            0.0
                        } else {
                            10f32.powf(rng.random_range(lo as f32..hi as f32))
                        }
                    }
                };
                if rng.random_bool(0.5) { size } else { -size }
            })
            .collect()
    }

    fn matrix(&self, rows: usize, cols: usize) -> Array2<f32> {
        Array2::from_shape_vec((rows, cols), self.vec(rows * cols)).expect("rows × cols values")
    }
}

fn values(magnitudes: &[Magnitude]) -> impl Strategy<Value = Values> + use<> {
    (prop::sample::select(magnitudes.to_vec()), any::<u64>())
        .prop_map(|(magnitude, seed)| Values { magnitude, seed })
}

/// Values for matmul operands: ordinary, tiny, huge, subnormal and mixed. Any two of them
/// multiply to at most 1e30, so a 100-term dot product stays finite.
fn matmul_values() -> impl Strategy<Value = Values> {
    values(&[UNIT, UNIT, TINY_VALUES, HUGE_VALUES, SUBNORMAL, MIXED])
}

/// A dimension: 1, a prime, or anything up to 100 (mostly not a multiple of 4, 8, 16, …).
fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(1usize),
        prop::sample::select(vec![2usize, 3, 5, 7, 13, 31, 61, 67, 97]),
        1..=100usize,
    ]
}

/// No dropout, or dropout at a random rate, seed, step and layer.
fn dropout() -> impl Strategy<Value = Option<Dropout>> {
    prop::option::of(
        (0.05f32..0.7, any::<u32>(), 1..10_000u32, 0..8u32).prop_map(
            |(rate, seed, step, layer)| Dropout {
                rate,
                seed,
                step,
                layer,
            },
        ),
    )
}

// ---------------------------------------------------------------------------------------
// Dot-product bounds

/// Error bound of every element of C = A·B (A [M,K], B [K,N]) between two devices that each
/// sum the K products in their own order: each is within γ_K·Σ|a||b| of the exact value
/// (γ_K ≈ K·u, Higham's bound for any summation order, fused multiply-adds included), so
/// they differ by at most 2(K+1)·u·Σ|a||b|. A GPU that flushes subnormals may also drop
/// each term with a subnormal factor, and each product or partial sum that falls below
/// MIN_POSITIVE (< MIN_POSITIVE each, 2K of them). Returns (the bound, Σ|a||b|).
fn dot_bound(a: ArrayView2<f32>, b: ArrayView2<f32>) -> (Array2<f64>, Array2<f64>) {
    let abs = |m: ArrayView2<f32>| m.mapv(|v| f64::from(v.abs()));
    let sub = |m: ArrayView2<f32>| {
        m.mapv(|v| {
            if subnormal(v) {
                f64::from(v.abs())
            } else {
                0.0
            }
        })
    };
    let magnitude = abs(a).dot(&abs(b));
    let flushed = sub(a).dot(&abs(b)) + abs(a).dot(&sub(b));
    let k = a.ncols() as f64;
    let bound = Zip::from(&magnitude)
        .and(&flushed)
        .map_collect(|&s, &f| 2.0 * (k + 1.0) * U * s + f + 2.0 * k * TINY);
    (bound, magnitude)
}

/// The operands of `form` as plain [M,K] and [K,N] matrices.
fn plain<'a>(
    form: MatmulForm,
    a: &'a Array2<f32>,
    b: &'a Array2<f32>,
) -> (ArrayView2<'a, f32>, ArrayView2<'a, f32>) {
    match form {
        MatmulForm::AB => (a.view(), b.view()),
        MatmulForm::ABt => (a.view(), b.t()),
        MatmulForm::AtB => (a.t(), b.view()),
    }
}

#[test]
fn matmul_every_form_and_configuration() {
    let strategy = (
        prop::sample::select(vec![MatmulForm::AB, MatmulForm::ABt, MatmulForm::AtB]),
        0..MATMUL_CONFIGS.len(),
        (dim(), dim(), dim()),
        matmul_values(),
        matmul_values(),
    );
    check(
        "matmul",
        MATMUL_CASES,
        strategy,
        |gpu, (form, config, (m, n, k), va, vb)| {
            let a = match form {
                MatmulForm::AtB => va.matrix(k, m),
                _ => va.matrix(m, k),
            };
            let b = match form {
                MatmulForm::ABt => vb.matrix(n, k),
                _ => vb.matrix(k, n),
            };
            let mut expected = Array2::zeros((m, n));
            ops::matmul(form, a.view(), b.view(), expected.view_mut());
            gpu.set_matmul_config(runnable(gpu, config));
            let actual = gpu.matmul(form, a.view(), b.view()).unwrap();
            let (pa, pb) = plain(form, &a, &b);
            let (bound, _) = dot_bound(pa, pb);
            compare("C", &actual, &expected, bound.iter().copied())
        },
    );
}

/// The largest slope of each activation (its Lipschitz constant) and how far apart two
/// devices may evaluate it: Vulkan lets exp be off by 3 + 2|x| ULP and tanh inherit
/// sinh/cosh's error; sigmoid (never exp of a positive number) stays within 8 ULP of 1 and
/// tanh (clamped to |z| ≤ 10 on the GPU) within 26, so 32·u covers both devices together.
fn activation_bounds(activation: Activation) -> (f64, f64) {
    match activation {
        Activation::Sigmoid => (0.25, 32.0 * U),
        Activation::Tanh => (1.0, 32.0 * U),
        _ => (1.0, 0.0),
    }
}

#[test]
fn dense_forward_every_activation_and_dropout() {
    let strategy = (
        prop::sample::select(Activation::ALL.to_vec()),
        0..MATMUL_CONFIGS.len(),
        (dim(), dim(), dim()),
        (matmul_values(), matmul_values(), matmul_values()),
        dropout(),
    );
    check(
        "dense_forward",
        MATMUL_CASES,
        strategy,
        |gpu, (activation, config, (m, n, k), (vx, vw, vb), drop)| {
            let x = vx.matrix(m, k);
            let w = vw.matrix(n, k);
            let b = Array1::from(vb.vec(n));
            let expected = cpu_dense_forward(x.view(), w.view(), b.view(), activation, drop);
            gpu.set_matmul_config(runnable(gpu, config));
            let actual = gpu
                .dense_forward(x.view(), w.view(), b.view(), activation, drop)
                .unwrap();
            // z = x·Wᵀ + b: a (K+1)-term sum; then f (slope ≤ L, evaluation ≤ A), then the
            // dropout scale (one more rounding).
            let (bound, magnitude) = dot_bound(x.view(), w.t());
            let (slope, evaluation) = activation_bounds(activation);
            let mut tolerance = Vec::with_capacity(m * n);
            for ((r, j), y) in expected.indexed_iter() {
                let bias = f64::from(b[j].abs());
                let flushed = if subnormal(b[j]) { bias } else { 0.0 };
                let dz = bound[[r, j]] + 2.0 * U * (magnitude[[r, j]] + bias) + flushed + TINY;
                let scale = drop.map_or(1.0, |d| {
                    f64::from(wgrad::rng::dropout_scale(
                        d.rate,
                        d.seed,
                        d.step,
                        d.layer,
                        (r * n + j) as u32,
                    ))
                });
                tolerance.push(scale * (slope * dz + evaluation) + U * f64::from(y.abs()) + TINY);
            }
            if let Some(d) = drop {
                // Dropped elements are exactly zero on both devices.
                for (index, (g, c)) in actual.iter().zip(&expected).enumerate() {
                    if wgrad::rng::dropout_scale(d.rate, d.seed, d.step, d.layer, index as u32)
                        == 0.0
                    {
                        prop_assert!(*g == 0.0 && *c == 0.0, "element {index} was dropped");
                    }
                }
            }
            compare("out", &actual, &expected, tolerance)
        },
    );
}

/// Pre-activations for stored layer outputs: ordinary, saturating (sigmoid and tanh give
/// exactly 0, ±1 past |z| ≈ 17 and 9), huge, and subnormal.
fn pre_activations() -> impl Strategy<Value = Values> {
    values(&[
        Magnitude::Uniform(0.0, 3.0),
        Magnitude::Uniform(15.0, 60.0),
        HUGE_VALUES,
        SUBNORMAL,
        MIXED,
    ])
}

#[test]
fn dense_backward_input_every_activation_and_dropout() {
    let strategy = (
        prop::sample::select(HIDDEN.to_vec()),
        0..MATMUL_CONFIGS.len(),
        (dim(), dim(), dim()),
        (matmul_values(), matmul_values(), pre_activations()),
        dropout(),
    );
    check(
        "dense_backward_input",
        MATMUL_CASES,
        strategy,
        |gpu, (activation, config, (m, n, k), (vdz, vw, vz), drop)| {
            // dz [M, K] of a layer with weights [K, N]; its input [M, N]: the previous
            // layer's outputs f(z), after its dropout.
            let grad_output = vdz.matrix(m, k);
            let w = vw.matrix(k, n);
            let scale = |index: usize| {
                drop.map_or(1.0, |d| {
                    wgrad::rng::dropout_scale(d.rate, d.seed, d.step, d.layer, index as u32)
                })
            };
            let mut input = vz.matrix(m, n).mapv(|z| activation.apply(z));
            for (index, v) in input.iter_mut().enumerate() {
                *v *= scale(index);
            }
            let expected = cpu_dense_backward_input(
                grad_output.view(),
                w.view(),
                input.view(),
                activation,
                drop,
            );
            gpu.set_matmul_config(runnable(gpu, config));
            let actual = gpu
                .dense_backward_input(grad_output.view(), w.view(), input.view(), activation, drop)
                .unwrap();
            // (dz·W)·s·f'(y/s): the dot product's bound through |s·f'|, plus f' itself: it is
            // computed from y (exact inputs, so within a few roundings, 4u, of each other; f'
            // ≤ 1) unless the GPU reads a subnormal y as 0, which may change f' to f'(0).
            let (bound, magnitude) = dot_bound(grad_output.view(), w.view());
            let mut tolerance = Vec::with_capacity(m * n);
            for ((r, j), &y) in input.indexed_iter() {
                let s = f64::from(scale(r * n + j));
                let unscaled = if s == 0.0 { 0.0 } else { y / s as f32 };
                let slope = f64::from(activation.grad_from_output(unscaled));
                let flushed = if subnormal(y) || subnormal(unscaled) {
                    (slope - f64::from(activation.grad_from_output(0.0))).abs()
                } else {
                    0.0
                };
                let dot = magnitude[[r, j]];
                tolerance.push(s * (slope * bound[[r, j]] + (8.0 * U + flushed) * dot) + TINY);
            }
            compare("grad_input", &actual, &expected, tolerance)
        },
    );
}

#[test]
fn weight_and_bias_gradients() {
    let strategy = (
        0..MATMUL_CONFIGS.len(),
        (dim(), dim(), dim()),
        (matmul_values(), matmul_values()),
    );
    check(
        "grad_weights_and_bias",
        MATMUL_CASES,
        strategy,
        |gpu, (config, (units, fan_in, batch), (vdz, vx))| {
            // dW [units, fan_in] = dzᵀ·x with dz [batch, units], x [batch, fan_in];
            // db = Σ_rows dz: a sum of `batch` terms, bounded like a dot product with ones.
            let dz = vdz.matrix(batch, units);
            let x = vx.matrix(batch, fan_in);
            let (expected_w, expected_b) = cpu_grad_weights_and_bias(dz.view(), x.view());
            gpu.set_matmul_config(runnable(gpu, config));
            let (w, b) = gpu.grad_weights_and_bias(dz.view(), x.view()).unwrap();
            let (bound_w, _) = dot_bound(dz.t(), x.view());
            let ones = Array2::ones((batch, 1));
            let (bound_b, _) = dot_bound(dz.t(), ones.view());
            let used_w = compare("dW", &w, &expected_w, bound_w.iter().copied())?;
            let used_b = compare("db", &b, &expected_b, bound_b.iter().copied())?;
            Ok(used_w.max(used_b))
        },
    );
}

// ---------------------------------------------------------------------------------------
// Output stage: losses, their gradients, probabilities

/// Every (loss, declared output activation) pair a model accepts.
fn loss_pairs() -> Vec<(Loss, Activation)> {
    let mut pairs = vec![
        (Loss::BinaryCrossEntropy, Activation::Sigmoid),
        (Loss::BinaryCrossEntropy, Activation::Linear),
        (Loss::CategoricalCrossEntropy, Activation::Softmax),
        (Loss::CategoricalCrossEntropy, Activation::Linear),
    ];
    pairs.extend(Activation::ALL.map(|a| (Loss::MeanSquaredError, a)));
    pairs
}

/// Logits: ordinary, large (±50), huge (±1e4), around sigmoid's saturation (|z| ≈ 17, where
/// σ rounds to 1) and exp's underflow (|z| ≈ 88–104), subnormal, and all of those mixed.
fn logits() -> impl Strategy<Value = Values> {
    values(&[
        Magnitude::Uniform(0.0, 3.0),
        Magnitude::Uniform(0.0, 50.0),
        Magnitude::Uniform(0.0, 1e4),
        Magnitude::Uniform(15.0, 20.0),
        Magnitude::Uniform(85.0, 105.0),
        SUBNORMAL,
        Magnitude::Log(-45, 4),
    ])
}

/// Targets a loss trains on: any value for MSE; 0/1 or soft labels in [0, 1] for BCE;
/// one-hot or soft rows (weights in [0, 1)) for CE.
fn targets(loss: Loss, batch: usize, n: usize, soft: bool, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut t = Array2::zeros((batch, n));
    for mut row in t.rows_mut() {
        match loss {
            Loss::MeanSquaredError => row.mapv_inplace(|_| rng.random_range(-1.0..1.0)),
            Loss::BinaryCrossEntropy if soft => row.mapv_inplace(|_| rng.random_range(0.0..=1.0)),
            Loss::BinaryCrossEntropy => row.mapv_inplace(|_| f32::from(rng.random_bool(0.5))),
            // Soft CE rows need not sum to 1: the gradient scales p by the row's mass.
            Loss::CategoricalCrossEntropy if soft => {
                row.mapv_inplace(|_| rng.random_range(0.0..1.0))
            }
            Loss::CategoricalCrossEntropy => row[rng.random_range(0..n)] = 1.0,
        }
    }
    t
}

/// How far apart two devices may compute one probability p = f(z) of a row of n outputs.
/// Linear and ReLU are exact, leaky ReLU one rounding; sigmoid and tanh as
/// [`activation_bounds`] says. Softmax p_j = e^(x_j)/Σe^(x_i), x = z - max z: Vulkan's exp
/// is within (3 + 2|x|) ULP and x carries u·|x| from the subtraction, so each term is within
/// (3 + 3|x|)u relatively; as p_j·|x_j| ≤ 1/e and Σ ≥ 1, p_j is within about
/// (10 + 2.1n)·u absolutely on the GPU (sum, division and log included), the CPU's exp
/// being correctly rounded or nearly: (24 + 5n)·u covers both. A subnormal logit may be
/// read as 0, moving p by at most |z|.
fn probability_bound(activation: Activation, n: usize, z: f32, p: f32) -> f64 {
    let flushed = if subnormal(z) {
        f64::from(z.abs())
    } else {
        0.0
    };
    let evaluation = match activation {
        Activation::Linear | Activation::Relu => 0.0,
        Activation::LeakyRelu => U * f64::from(p.abs()),
        Activation::Sigmoid | Activation::Tanh => activation_bounds(activation).1,
        Activation::Softmax => (24.0 + 5.0 * n as f64) * U,
    };
    evaluation + flushed + TINY
}

/// Tolerances of (a row's loss, each element of its gradient), from the CPU's values of
/// that row: first-order propagation of the probability bound δp through the formulas of
/// `shaders/output.wgsl`, with a few roundings (u each) per operation and n·u per n-term sum.
#[allow(clippy::too_many_arguments)]
fn loss_bounds(
    loss: Loss,
    declared: Activation,
    z: &[f32],
    y: &[f32],
    p: &[f32],
    loss_value: f32,
    rows: usize,
) -> (f64, Vec<f64>) {
    let n = z.len();
    let nf = n as f64;
    let rows = rows as f64;
    let output = loss.output_activation(declared);
    let f = |v: f32| f64::from(v);
    let dp: Vec<f64> = (0..n)
        .map(|j| probability_bound(output, n, z[j], p[j]))
        .collect();
    let sum_error = 2.0 * nf * U * f(loss_value.abs());
    match loss {
        Loss::MeanSquaredError => {
            // loss = Σ(p - y)²/n; g_j = G·(p_j - y_j) with G = 2/(rows·n), then through f'.
            let d: Vec<f64> = (0..n).map(|j| f(p[j]) - f(y[j])).collect();
            let loss_tol = (0..n)
                .map(|j| 2.0 * d[j].abs() * dp[j] + dp[j] * dp[j] + 4.0 * U * d[j] * d[j])
                .sum::<f64>()
                / nf
                + sum_error
                + TINY;
            let big_g = 2.0 / (rows * nf);
            let g: Vec<f64> = d.iter().map(|d| big_g * d).collect();
            let dg: Vec<f64> = (0..n)
                .map(|j| big_g * dp[j] + 3.0 * U * g[j].abs())
                .collect();
            let grad_tol = if declared == Activation::Softmax {
                // out_j = p_j·(g_j - Σ g·p)
                let dot: f64 = (0..n).map(|j| g[j] * f(p[j])).sum();
                let ddot: f64 = (0..n)
                    .map(|j| g[j].abs() * dp[j] + (f(p[j]) + dp[j]) * dg[j])
                    .sum::<f64>()
                    + 2.0 * nf * U * (0..n).map(|j| (g[j] * f(p[j])).abs()).sum::<f64>();
                (0..n)
                    .map(|j| {
                        let pj = f(p[j]);
                        dp[j] * (g[j] - dot).abs()
                            + (pj + dp[j]) * (dg[j] + ddot)
                            + 3.0 * U * pj * (g[j].abs() + dot.abs())
                            + TINY
                    })
                    .collect()
            } else {
                // out_j = g_j·f'(p_j); f' moves by ≤ 2δp (+ a rounding), or to f'(0) where the
                // GPU may read a subnormal as 0.
                (0..n)
                    .map(|j| {
                        let slope = f(declared.grad_from_output(p[j]));
                        let mut dslope = 2.0 * dp[j] + U;
                        if subnormal(p[j]) || subnormal(z[j]) {
                            dslope += (slope - f(declared.grad_from_output(0.0))).abs();
                        }
                        (dg[j] * slope
                            + (g[j].abs() + dg[j]) * dslope
                            + 4.0 * U * (g[j] * slope).abs())
                            + TINY
                    })
                    .collect()
            };
            (loss_tol, grad_tol)
        }
        Loss::BinaryCrossEntropy => {
            // loss = Σ(max(z,0) - z·y + ln(1 + e^-|z|))/n: the first terms round (u each),
            // the last is within Vulkan's log allowance (2⁻²¹ = 8u absolute on [1, 2]) plus
            // exp's: 24u for both devices. g_j = (σ(z_j) - y_j)/(rows·n).
            let loss_tol = (0..n)
                .map(|j| 2.0 * U * (f(z[j].abs()) + f((z[j] * y[j]).abs())) + 24.0 * U)
                .sum::<f64>()
                / nf
                + sum_error
                + 4.0 * TINY;
            let grad_tol = (0..n)
                .map(|j| (dp[j] + 3.0 * U * (f(p[j]) - f(y[j])).abs()) / (rows * nf) + TINY)
                .collect();
            (loss_tol, grad_tol)
        }
        Loss::CategoricalCrossEntropy => {
            // loss = Σ y_j·(lse - z_j), lse = max + ln Σe^(z - max): ln's argument is in
            // [1, n], carrying the sum's error; the same budget as a probability, plus the
            // roundings of the subtractions at the logits' scale.
            let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = f(max) + z.iter().map(|&v| (f(v) - f(max)).exp()).sum::<f64>().ln();
            let dlse = 4.0 * U * f(max.abs()) + (24.0 + 5.0 * nf) * U;
            let mass: f64 = y.iter().map(|&v| f(v)).sum();
            let loss_tol = (0..n)
                .map(|j| {
                    let yj = f(y[j].abs());
                    yj * (dlse + 2.0 * U * (lse.abs() + f(z[j].abs())))
                        + 2.0 * nf * U * yj * (lse - f(z[j])).abs()
                })
                .sum::<f64>()
                + 4.0 * TINY;
            // g_j = (p_j·Σy - y_j)/rows
            let grad_tol = (0..n)
                .map(|j| {
                    let pj = f(p[j]);
                    (dp[j] * mass
                        + 2.0 * nf * U * pj * mass
                        + 3.0 * U * (pj * mass + f(y[j].abs())))
                        / rows
                        + TINY
                })
                .collect();
            (loss_tol, grad_tol)
        }
    }
}

/// Whether a row's predicted class may differ between devices: its two largest
/// probabilities (or p and 0.5, for a single output) are within their bounds of each other.
fn near_tie(p: &[f32], bound: impl Fn(usize) -> f64) -> bool {
    if p.len() == 1 {
        return (f64::from(p[0]) - 0.5).abs() <= bound(0);
    }
    let best = ops::predicted_class(p);
    (0..p.len()).any(|j| j != best && f64::from(p[best] - p[j]) <= bound(best) + bound(j))
}

#[test]
fn output_loss_gradient_metrics_and_probabilities() {
    let strategy = (
        prop::sample::select(loss_pairs()),
        (dim(), dim()),
        0.0..=1.0f64,
        logits(),
        any::<bool>(),
    );
    check(
        "output_loss",
        192,
        strategy,
        |gpu, ((loss, declared), (batch, n), filled, vz, soft)| {
            // Rows of the batch that hold data (the rest is padding).
            let rows = ((batch as f64 * filled).ceil() as usize).clamp(1, batch);
            let logits = vz.matrix(batch, n);
            let targets = targets(loss, batch, n, soft, vz.seed ^ 1);
            let (loss_cpu, correct_cpu, grad_cpu) =
                common::cpu_output_loss(loss, declared, logits.view(), targets.view(), rows);
            let (loss_gpu, correct_gpu, grad_gpu, sums) = gpu
                .output_loss(loss, declared, logits.view(), targets.view(), rows)
                .unwrap();
            let probs_gpu = gpu.probabilities(loss, declared, logits.view()).unwrap();
            let mut probs_cpu = logits.clone();
            for mut row in probs_cpu.rows_mut() {
                ops::output_probabilities_row(loss, declared, row.as_slice_mut().unwrap());
            }

            let output = loss.output_activation(declared);
            let (mut loss_tol, mut grad_tol, mut prob_tol) = (vec![], vec![], vec![]);
            for r in 0..batch {
                let (z, p) = (logits.row(r), probs_cpu.row(r));
                let (z, p) = (z.as_slice().unwrap(), p.as_slice().unwrap());
                let bound = |j: usize| probability_bound(output, n, z[j], p[j]);
                prob_tol.extend((0..n).map(bound));
                if r >= rows {
                    // Padding: exactly zero on both devices.
                    loss_tol.push(0.0);
                    grad_tol.extend(std::iter::repeat_n(0.0, n));
                    continue;
                }
                let y = targets.row(r);
                let (l, g) = loss_bounds(
                    loss,
                    declared,
                    z,
                    y.as_slice().unwrap(),
                    p,
                    loss_cpu[r],
                    rows,
                );
                loss_tol.push(l);
                grad_tol.extend(g);
                prop_assert!(
                    correct_gpu[r] == correct_cpu[r] || near_tie(p, bound),
                    "row {r}: classified differently without a near tie: {p:?}"
                );
            }
            let mut used = compare("row loss", &loss_gpu, &loss_cpu, loss_tol)?;
            used = used.max(compare("gradient", &grad_gpu, &grad_cpu, grad_tol)?);
            used = used.max(compare("probabilities", &probs_gpu, &probs_cpu, prob_tol)?);
            if output == Activation::Softmax {
                for (r, row) in probs_gpu.rows().into_iter().enumerate() {
                    let total: f32 = row.sum();
                    prop_assert!(
                        row.iter().all(|p| (0.0..=1.0).contains(p))
                            && f64::from(total - 1.0).abs()
                                <= n as f64 * (24.0 + 5.0 * n as f64) * U,
                        "row {r}: softmax {row} sums to {total}"
                    );
                }
            }
            // The metrics the same dispatch accumulates: its own rows' sums.
            let gpu_rows =
                |v: &Array1<f32>| v.iter().take(rows).map(|&x| f64::from(x)).sum::<f64>();
            let loss_sum = gpu_rows(&loss_gpu);
            let sum_tol =
                2.0 * rows as f64 * U * loss_gpu.iter().map(|v| f64::from(v.abs())).sum::<f64>()
                    + TINY;
            prop_assert!(
                (f64::from(sums[0]) - loss_sum).abs() <= sum_tol,
                "loss sum {} vs rows' losses {loss_sum}",
                sums[0]
            );
            prop_assert_eq!(f64::from(sums[1]), gpu_rows(&correct_gpu));
            prop_assert_eq!(sums[2], rows as f32);
            Ok(used)
        },
    );
}

// ---------------------------------------------------------------------------------------
// Batches, clipping, optimizers

#[test]
fn gather_copies_rows_bit_for_bit() {
    let strategy = (
        (dim(), dim(), dim()),
        0.0..1.0f64,
        0..=12usize,
        prop_oneof![Just(None), matmul_values().prop_map(Some)],
        any::<u64>(),
    );
    check(
        "gather",
        48,
        strategy,
        |gpu, ((n, width, batch), start, y_width, source_values, seed)| {
            // Extreme f32 values travel as bits; 8-bit data (k/255, when `source_values` is
            // None) as bytes, and must come back as the host's k/255.
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let source = match source_values {
                Some(v) => v.matrix(n, width),
                None => {
                    Array2::from_shape_fn((n, width), |_| f32::from(rng.random::<u8>()) / 255.0)
                }
            };
            let targets = Values {
                magnitude: MIXED,
                seed: seed ^ 1,
            }
            .matrix(n, y_width);
            let mut order: Vec<u32> = (0..n as u32).collect();
            order.shuffle(&mut rng);
            let start = (start * n as f64) as usize;
            let rows = batch.min(n - start);
            let step = StepParams {
                rows,
                batch_start: start,
                ..StepParams::inference(rows)
            };
            let y = (y_width > 0).then_some(targets.view());
            let (x_gpu, y_gpu) = gpu.gather(source.view(), y, &order, batch, &step).unwrap();
            prop_assert_eq!(y_gpu.is_some(), y_width > 0);
            let bits = |m: ArrayView2<f32>, i: usize| -> Vec<u32> {
                if i < rows {
                    m.row(order[start + i] as usize)
                        .iter()
                        .map(|v| v.to_bits())
                        .collect()
                } else {
                    vec![0; m.ncols()]
                }
            };
            for i in 0..batch {
                let row: Vec<u32> = x_gpu.row(i).iter().map(|v| v.to_bits()).collect();
                prop_assert_eq!(row, bits(source.view(), i), "input row {} of {}", i, batch);
                if let Some(y_gpu) = &y_gpu {
                    let row: Vec<u32> = y_gpu.row(i).iter().map(|v| v.to_bits()).collect();
                    prop_assert_eq!(
                        row,
                        bits(targets.view(), i),
                        "target row {} of {}",
                        i,
                        batch
                    );
                }
            }
            Ok(0.0)
        },
    );
}

/// Gradient values for the optimizers: ordinary, small, tiny (their squares are subnormal or
/// flush), subnormal, huge (squares up to 1e30), mixed.
fn gradient_values() -> impl Strategy<Value = Values> {
    values(&[
        UNIT,
        Magnitude::Uniform(0.0, 1e-3),
        TINY_VALUES,
        SUBNORMAL,
        HUGE_VALUES,
        MIXED,
    ])
}

/// Gradient values for clipping: those of the optimizers, exploding ones (up to 1e38) and
/// exploding ones mixed with every smaller decade.
fn clip_gradient_values() -> impl Strategy<Value = Values> {
    values(&[
        UNIT,
        Magnitude::Uniform(0.0, 1e-3),
        TINY_VALUES,
        SUBNORMAL,
        HUGE_VALUES,
        MIXED,
        EXPLODING,
        MIXED_EXPLODING,
    ])
}

/// A length of a flat gradient: short, or spanning up to 80 of the reduction's workgroups.
fn length() -> impl Strategy<Value = usize> {
    prop_oneof![dim(), 1..=20_000usize]
}

/// The clip factor min(1, c/(‖g‖ + 1e-6)): the CPU sums the squares in f64; the GPU sums
/// scaled squares in f32, as reduce.wgsl and optimizer.wgsl document: each of 256 threads
/// of G workgroups sums ⌈len/256G⌉ terms (g/scale)² (two roundings each), a tree of depth 8
/// sums each workgroup's, then ⌈G/64⌉ terms ssqᵢ·(scaleᵢ/M)² per thread (three more
/// roundings each) and a tree of depth 6. A sum of depth d of non-negative terms, each
/// within k·u, is within (d + k)·u relatively, so ‖g‖ = M·√Σ within (d + 5)·u/2 plus a few
/// ULP (√, the product), and the factor (relative error that of ‖g‖ + 1e-6) within
/// (d + 16)·u. Each workgroup's largest term is 1, so terms that flush to zero move its sum
/// by at most 256·MIN_POSITIVE relatively; a workgroup whose scale is subnormal may count as
/// zero, its norm (< 1e-35) far below the 1e-6. A factor below MIN_POSITIVE (‖g‖ past
/// ~1e35) may itself flush: MIN_POSITIVE more. Where ‖g‖ exceeds f32::MAX (up to
/// √20000·1e38) both devices give 0.
fn clip_factor_tolerance(len: usize, factor: f32) -> f64 {
    let groups = Kernels::sum_squares_groups(len);
    let depth = len.div_ceil(256 * groups) + 8 + groups.div_ceil(64) + 6;
    (depth as f64 + 16.0) * U * f64::from(factor) + TINY
}

#[test]
fn gradient_clip_factor() {
    let strategy = (length(), clip_gradient_values(), -3.0..3.0f32);
    check(
        "gradient_clip_factor",
        64,
        strategy,
        |gpu, (len, values, log_norm)| {
            let grads = values.vec(len);
            let clip_norm = 10f32.powf(log_norm);
            let expected = ops::gradient_clip_factor(&grads, clip_norm);
            let actual = gpu.gradient_clip_factor(&grads, clip_norm).unwrap();
            prop_assert!((0.0..=1.0).contains(&expected), "CPU factor {expected}");
            let tolerance = clip_factor_tolerance(len, expected);
            compare("clip factor", &[actual], &[expected], [tolerance])
        },
    );
}

/// An optimizer of each kind with random hyper-parameters in their valid ranges.
fn optimizer() -> impl Strategy<Value = Optimizer> {
    let lr = (-4.0..0.0f32).prop_map(|e| 10f32.powf(e));
    prop_oneof![
        lr.clone().prop_map(Optimizer::sgd),
        (lr.clone(), 0.1..0.99f32).prop_map(|(lr, mu)| Optimizer::momentum(lr, mu)),
        (lr.clone(), 0.1..0.99f32).prop_map(|(lr, mu)| Optimizer::nesterov(lr, mu)),
        (
            lr.clone(),
            0.5..0.999f32,
            prop::sample::select(vec![1e-7f32, 1e-8])
        )
            .prop_map(|(learning_rate, rho, epsilon)| Optimizer::RmsProp {
                learning_rate,
                rho,
                epsilon,
            }),
        (lr, 0.5..0.99f32, 0.9..0.9999f32).prop_map(|(learning_rate, beta1, beta2)| {
            Optimizer::Adam {
                learning_rate,
                beta1,
                beta2,
                epsilon: 1e-8,
            }
        }),
    ]
}

/// A penalty coefficient: none, or 1e-5 … 1e-1.
fn penalty() -> impl Strategy<Value = f32> {
    prop_oneof![Just(0.0f32), (-5.0..-1.0f32).prop_map(|e| 10f32.powf(e))]
}

/// One element's inputs, as the update reads them.
struct Element {
    w: f32,
    grad: f32,
    state1: f32,
    state2: f32,
}

/// Bounds on how far apart two devices may compute one element's (param, state1, state2),
/// by first-order propagation through the update of `shaders/optimizer.wgsl` (every
/// intermediate's magnitude times a few roundings, u each, doubled for the two devices;
/// Vulkan's division and √ get 8u). A subnormal input may be read as 0 on the GPU: it then
/// moves g by its own size (or l1, for sign(w)); every intermediate carries MIN_POSITIVE
/// for being flushed.
#[allow(clippy::too_many_arguments)]
fn update_bounds(
    optimizer: &Optimizer,
    e: &Element,
    l1: f32,
    l2: f32,
    grad_scale: f32,
    step: &StepParams,
) -> [f64; 3] {
    let f = f64::from;
    let flushed = |v: f32| if subnormal(v) { f(v.abs()) } else { 0.0 };
    let [h1, h2, eps] = optimizer.hyper_parameters().map(f);
    let (lr, s) = (f(step.learning_rate), f(grad_scale));
    let (w, grad) = (f(e.w), f(e.grad));
    // g = s·grad + l1·sign(w) + 2·l2·w
    let g = s * grad + f(l1) * w.signum() * f64::from(u8::from(w != 0.0)) + 2.0 * f(l2) * w;
    let g_size = (s * grad).abs() + f(l1) + 2.0 * f(l2) * w.abs();
    let mut dg = 8.0 * U * g_size + s * flushed(e.grad) + 2.0 * f(l2) * flushed(e.w) + TINY;
    if subnormal(e.w) {
        dg += f(l1);
    }
    let dw_in = flushed(e.w);
    // w' = w - lr·update: its own roundings plus lr·δupdate.
    let param = |update: f64, dupdate: f64| {
        dw_in + 4.0 * U * (w.abs() + lr * update.abs()) + lr * dupdate + TINY
    };
    match optimizer.gpu_code() {
        0 => [param(g, dg), 0.0, 0.0],
        1 | 2 => {
            let v_in = f(e.state1);
            let v = h1 * v_in + g;
            let dv = 6.0 * U * (h1 * v_in.abs() + g.abs()) + h1 * flushed(e.state1) + dg + TINY;
            let (update, dupdate) = if optimizer.gpu_code() == 1 {
                (v, dv)
            } else {
                (
                    g + h1 * v,
                    dg + h1 * dv + 6.0 * U * (g.abs() + h1 * v.abs()),
                )
            };
            [param(update, dupdate), dv, 0.0]
        }
        3 => {
            // s' = ρ·s + (1-ρ)·g²; update = g/(√s' + ε)
            let s_in = f(e.state1);
            let sq = h1 * s_in + (1.0 - h1) * g * g;
            let dsq =
                8.0 * U * sq + h1 * flushed(e.state1) + 2.0 * (1.0 - h1) * g.abs() * dg + TINY;
            let (update, dupdate) = ratio(g, dg, sq, dsq, eps);
            [param(update, dupdate), dsq, 0.0]
        }
        _ => {
            // m' = β1·m + (1-β1)·g; v' = β2·v + (1-β2)·g²; update = m̂/(√v̂ + ε)
            let (m_in, v_in) = (f(e.state1), f(e.state2));
            let m = h1 * m_in + (1.0 - h1) * g;
            let dm = 8.0 * U * (h1 * m_in.abs() + (1.0 - h1) * g.abs())
                + h1 * flushed(e.state1)
                + (1.0 - h1) * dg
                + TINY;
            let v = h2 * v_in + (1.0 - h2) * g * g;
            let dv = 8.0 * U * v + h2 * flushed(e.state2) + 2.0 * (1.0 - h2) * g.abs() * dg + TINY;
            let (c1, c2) = (f(step.bias_correction1), f(step.bias_correction2));
            let (m_hat, dm_hat) = (m / c1, dm / c1 + 8.0 * U * (m / c1).abs());
            let (v_hat, dv_hat) = (v / c2, dv / c2 + 8.0 * U * v / c2);
            let (update, dupdate) = ratio(m_hat, dm_hat, v_hat, dv_hat, eps);
            [param(update, dupdate), dm, dv]
        }
    }
}

/// (a/(√b + ε), its error) from a within δa and b ≥ 0 within δb: √ moves by at most
/// min(√δb, δb/(2√b)), and the division and √ each add 8u.
fn ratio(a: f64, da: f64, b: f64, db: f64, eps: f64) -> (f64, f64) {
    let root = b.sqrt();
    let d_root = db.sqrt().min(db / (2.0 * root)) + 8.0 * U * root;
    let denominator = root + eps;
    let value = a / denominator;
    // Lower the denominator by its own error: the largest the quotient can be.
    let low = (denominator - d_root).max(eps);
    let error = da / low + a.abs() * d_root / (denominator * low) + 16.0 * U * value.abs();
    (value, error)
}

#[test]
fn optimizer_updates_with_penalties_and_clipping() {
    let tensors = prop::collection::vec((1..=150usize, any::<bool>()), 1..=4);
    let strategy = (
        optimizer(),
        tensors,
        (penalty(), penalty()),
        prop::option::of(-2.0..2.0f32),
        1..=1000u64,
        (matmul_values(), gradient_values(), any::<u64>()),
        any::<bool>(),
    );
    check(
        "optimizer_update",
        96,
        strategy,
        |gpu, (optimizer, tensors, (l1, l2), clip, t, (vp, vg, seed), wide)| {
            // Either packing of the optimizer's vectors, where the device runs both.
            gpu.set_wide_words(wide && gpu.packings().contains(&true));
            // Tensors laid out as ParamLayout does: each starting at a multiple of 64, the
            // padding between them zero (and staying zero).
            let mut regions = vec![];
            let mut start = 0;
            for &(len, regularized) in &tensors {
                regions.push((start + len, regularized));
                start = (start + len).div_ceil(64) * 64;
            }
            let len = regions.last().unwrap().0;
            let in_tensor = |i: usize| {
                let mut begin = 0;
                regions.iter().any(|&(end, _)| {
                    let inside = (begin..end).contains(&i);
                    begin = end.div_ceil(64) * 64;
                    inside
                })
            };
            let masked = |v: Vec<f32>| -> Vec<f32> {
                v.into_iter()
                    .enumerate()
                    .map(|(i, x)| if in_tensor(i) { x } else { 0.0 })
                    .collect()
            };
            let params = masked(vp.vec(len));
            let grads = masked(vg.vec(len));
            // Momentum and Adam's m are signed; RMSprop's s and Adam's v are not, and are on
            // the scale of g².
            let state = Values {
                magnitude: vg.magnitude,
                seed,
            };
            let signed = optimizer.gpu_code() != 3;
            let state1 = masked(
                state
                    .vec(len)
                    .into_iter()
                    .map(|v| if signed { v } else { v * v })
                    .collect(),
            );
            let state2 = masked(
                Values {
                    seed: seed ^ 1,
                    ..state
                }
                .vec(len)
                .into_iter()
                .map(|v| v * v)
                .collect(),
            );
            // Clipping: the gradient scale is the CPU's clip factor for a random norm.
            let grad_scale = clip.map_or(1.0, |log_norm| {
                ops::gradient_clip_factor(&grads, 10f32.powf(log_norm))
            });
            let (bias_correction1, bias_correction2) = optimizer.bias_corrections(t);
            let step = StepParams {
                step: t as u32,
                learning_rate: optimizer.learning_rate(),
                bias_correction1,
                bias_correction2,
                ..StepParams::inference(1)
            };
            let (p, s1, s2) = common::cpu_optimizer_update(
                &optimizer, &params, &grads, &state1, &state2, &regions, l1, l2, grad_scale, &step,
            );
            let (gp, gs1, gs2) = gpu
                .optimizer_update(
                    &optimizer,
                    &params,
                    &grads,
                    &state1,
                    &state2,
                    &common::regions(&regions),
                    l1,
                    l2,
                    grad_scale,
                    &step,
                )
                .unwrap();
            let mut tolerance: [Vec<f64>; 3] = Default::default();
            let mut begin = 0;
            for &(end, regularized) in &regions {
                // Padding before this tensor: must stay exactly zero.
                for t in &mut tolerance {
                    t.resize(begin, 0.0);
                }
                let (l1, l2) = if regularized { (l1, l2) } else { (0.0, 0.0) };
                for i in begin..end {
                    let element = Element {
                        w: params[i],
                        grad: grads[i],
                        state1: state1[i],
                        state2: state2[i],
                    };
                    let bounds = update_bounds(&optimizer, &element, l1, l2, grad_scale, &step);
                    for (t, b) in tolerance.iter_mut().zip(bounds) {
                        t.push(b);
                    }
                }
                begin = end.div_ceil(64) * 64;
            }
            let [tp, ts1, ts2] = tolerance;
            let mut used = compare("params", &gp, &p, tp)?;
            used = used.max(compare("state1", &gs1, &s1, ts1)?);
            used = used.max(compare("state2", &gs2, &s2, ts2)?);
            Ok(used)
        },
    );
}
