//! Shared by the integration tests: GPU availability policy, random data, error measures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgrad::backend::StepParams;
use wgrad::cpu::ops::{self, Dropout};
use wgrad::gpu::kernels::Region;
use wgrad::gpu::ops::KernelRunner;
use wgrad::{Activation, AdapterChoice, Device, Loss, Optimizer};

pub use wgrad::gpu::policy::NO_ADAPTER_HELP;

/// A new, empty folder under the system's temporary directory for one test, removed when the
/// guard is dropped (also when the test fails, so runs leave nothing behind).
pub struct TempDir(PathBuf);

impl TempDir {
    /// `wgrad-{suite}-{test}-{pid}`: unique per test process and test.
    pub fn new(suite: &str, test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("wgrad-{suite}-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// True when the tests were told to run without a GPU (`WGRAD_SKIP_GPU=1`); says so.
pub fn skip_gpu(test: &str) -> bool {
    wgrad::gpu::policy::skip_requested(&format!("GPU part of {test}"))
}

/// The GPU device the tests run on, or `None` (after saying so) under `WGRAD_SKIP_GPU=1`.
/// A test that gets `Some` and then finds no adapter fails, with [`NO_ADAPTER_HELP`].
pub fn gpu_device(test: &str) -> Option<Device> {
    if skip_gpu(test) {
        return None;
    }
    Some(Device::Gpu(AdapterChoice::default()))
}

/// A single-kernel runner on the default adapter, under the same policy as [`gpu_device`].
pub fn kernel_runner(test: &str) -> Option<KernelRunner> {
    kernel_runner_on(test, &AdapterChoice::default())
}

/// [`kernel_runner`] on the adapter `choice` picks, with its limits.
pub fn kernel_runner_on(test: &str, choice: &AdapterChoice) -> Option<KernelRunner> {
    if skip_gpu(test) {
        return None;
    }
    match KernelRunner::new(choice) {
        Ok(runner) => {
            eprintln!("{test}: GPU adapter {}", runner.ctx.describe());
            Some(runner)
        }
        Err(e) => panic!("{test}: {NO_ADAPTER_HELP}\n  ({e})"),
    }
}

/// Values uniform in [-scale, scale), never all equal.
pub fn random_matrix(rows: usize, cols: usize, scale: f32, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-scale..scale))
}

pub fn random_vector(len: usize, scale: f32, seed: u64) -> Array1<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array1::from_shape_fn(len, |_| rng.random_range(-scale..scale))
}

/// max |a - b| / max |b|: the error relative to the reference's magnitude (elementwise
/// relative error is meaningless where a random sum cancels to near zero); the absolute error
/// where the reference is all zeros.
pub fn relative_error<'a>(
    actual: impl IntoIterator<Item = &'a f32>,
    reference: impl IntoIterator<Item = &'a f32>,
) -> f32 {
    let (mut diff, mut scale) = (0.0f32, 0.0f32);
    let mut count = 0;
    for (a, b) in actual.into_iter().zip(reference) {
        assert!(
            a.is_finite(),
            "non-finite value {a} where the reference has {b}"
        );
        diff = diff.max((a - b).abs());
        scale = scale.max(b.abs());
        count += 1;
    }
    assert!(count > 0, "nothing compared");
    // An all-zero reference (a saturated unit's gradient) must be matched exactly.
    if scale > 0.0 { diff / scale } else { diff }
}

/// `ops::dense_forward` into a fresh array, as the GPU's `dense_forward` returns it.
pub fn cpu_dense_forward(
    x: ArrayView2<f32>,
    weight: ArrayView2<f32>,
    bias: ArrayView1<f32>,
    activation: Activation,
    dropout: Option<Dropout>,
) -> Array2<f32> {
    let mut out = Array2::zeros((x.nrows(), weight.nrows()));
    ops::dense_forward(x, weight, bias, activation, dropout, out.view_mut());
    out
}

/// `ops::dense_backward_input` into a fresh array, as the GPU's `dense_backward_input`
/// returns it.
pub fn cpu_dense_backward_input(
    grad_output: ArrayView2<f32>,
    weight: ArrayView2<f32>,
    input: ArrayView2<f32>,
    activation: Activation,
    dropout: Option<Dropout>,
) -> Array2<f32> {
    let mut out = Array2::zeros(input.dim());
    ops::dense_backward_input(
        grad_output,
        weight,
        input,
        activation,
        dropout,
        out.view_mut(),
    );
    out
}

/// `ops::grad_weights` and `ops::grad_bias` into fresh arrays, as the GPU's
/// `grad_weights_and_bias` returns them.
pub fn cpu_grad_weights_and_bias(
    grad_output: ArrayView2<f32>,
    input: ArrayView2<f32>,
) -> (Array2<f32>, Array1<f32>) {
    let units = grad_output.ncols();
    let mut weights = Array2::zeros((units, input.ncols()));
    ops::grad_weights(grad_output, input, weights.view_mut());
    let mut bias = Array1::zeros(units);
    ops::grad_bias(grad_output, bias.view_mut());
    (weights, bias)
}

/// The CPU output stage (`ops::output_loss`) into fresh arrays: per-row loss, per-row
/// correctness, and the gradient of the batch-mean loss, as the GPU's `output_loss` returns them.
pub fn cpu_output_loss(
    loss: Loss,
    activation: Activation,
    logits: ArrayView2<f32>,
    targets: ArrayView2<f32>,
    rows: usize,
) -> (Array1<f32>, Array1<f32>, Array2<f32>) {
    let (batch, n) = logits.dim();
    let (mut row_loss, mut row_correct, mut grad) = (
        Array1::zeros(batch),
        Array1::zeros(batch),
        Array2::zeros((batch, n)),
    );
    ops::output_loss(
        loss,
        activation,
        logits,
        targets,
        rows,
        row_loss.view_mut(),
        row_correct.view_mut(),
        grad.view_mut(),
    );
    (row_loss, row_correct, grad)
}

/// The CPU twin of `KernelRunner::optimizer_update`, with its arguments: `ops::optimizer_update`
/// on each tensor of `regions` ((end, regularized); each tensor starts at the first multiple of
/// 64 at or after the previous one's end), penalties on the regularized ones only, padding
/// untouched. Returns the updated parameters and state vectors.
/// The optimizer's regions of tensors given as (end, regularized), each starting at the
/// first multiple of 64 at or after the previous one's end, gradients row-major.
pub fn regions(tensors: &[(usize, bool)]) -> Vec<Region> {
    let mut start = 0;
    tensors
        .iter()
        .map(|&(end, regularized)| {
            let region = Region {
                start,
                end,
                regularized,
                tiled_columns: 0,
            };
            start = end.div_ceil(64) * 64;
            region
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
pub fn cpu_optimizer_update(
    optimizer: &Optimizer,
    params: &[f32],
    grads: &[f32],
    state1: &[f32],
    state2: &[f32],
    regions: &[(usize, bool)],
    l1: f32,
    l2: f32,
    grad_scale: f32,
    step: &StepParams,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mut p, mut s1, mut s2) = (params.to_vec(), state1.to_vec(), state2.to_vec());
    let mut begin = 0;
    for &(end, regularized) in regions {
        let (l1, l2) = if regularized { (l1, l2) } else { (0.0, 0.0) };
        ops::optimizer_update(
            optimizer,
            &mut p[begin..end],
            &grads[begin..end],
            &mut s1[begin..end],
            &mut s2[begin..end],
            l1,
            l2,
            grad_scale,
            step,
        );
        begin = end.div_ceil(64) * 64;
    }
    (p, s1, s2)
}
