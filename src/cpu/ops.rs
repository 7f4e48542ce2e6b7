//! The CPU reference of every GPU kernel, one function per kernel family, each the twin of a
//! file in `shaders/` and checked against it in `tests/kernel_parity.rs`. Outputs are written
//! into caller-owned arrays so a training step allocates nothing.

use super::gemm::gemm_then;
use crate::backend::StepParams;
use crate::model::{Activation, Loss, Optimizer, sigmoid, softmax_in_place};
use crate::rng::dropout_scale;
use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, s};

/// Which operands of `C = op(A)·op(B)` are transposed (`shaders/matmul.wgsl`'s `FORM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatmulForm {
    /// `C[M,N] = A[M,K]·B[K,N]`
    AB,
    /// `C[M,N] = A[M,K]·B[N,K]ᵀ`
    ABt,
    /// `C[M,N] = A[K,M]ᵀ·B[K,N]`
    AtB,
}

impl MatmulForm {
    pub fn gpu_code(self) -> u32 {
        match self {
            MatmulForm::AB => 0,
            MatmulForm::ABt => 1,
            MatmulForm::AtB => 2,
        }
    }
}

/// Dropout applied to one layer's output in one training step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    pub rate: f32,
    pub seed: u32,
    pub step: u32,
    pub layer: u32,
}

impl Dropout {
    /// The dropout of `layer` for this step, or `None` outside training or at rate 0.
    pub fn for_step(rate: f32, layer: usize, step: &StepParams) -> Option<Dropout> {
        (step.training && rate > 0.0).then_some(Dropout {
            rate,
            seed: step.seed,
            step: step.step,
            layer: layer as u32,
        })
    }

    fn scale(&self, index: usize) -> f32 {
        dropout_scale(self.rate, self.seed, self.step, self.layer, index as u32)
    }
}

/// C = op(A)·op(B), shapes as [`MatmulForm`] says.
pub fn matmul(form: MatmulForm, a: ArrayView2<f32>, b: ArrayView2<f32>, c: ArrayViewMut2<f32>) {
    matmul_then(form, a, b, c, &|_, _, _| {});
}

/// [`matmul`], then `finish(row0, col0, tile)` on each finished block of C (the kernel's
/// fused epilogue; see [`gemm_then`]).
fn matmul_then<F>(
    form: MatmulForm,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    c: ArrayViewMut2<f32>,
    finish: &F,
) where
    F: Fn(usize, usize, ArrayViewMut2<f32>) + Sync,
{
    match form {
        MatmulForm::AB => gemm_then(a, b, c, finish),
        MatmulForm::ABt => gemm_then(a, b.t(), c, finish),
        MatmulForm::AtB => gemm_then(a.t(), b, c, finish),
    }
}

/// Forward of a dense layer: `out = f(x·Wᵀ + b)`, then inverted dropout
/// (matmul form `ABt` with the bias-activation epilogue).
pub fn dense_forward(
    x: ArrayView2<f32>,
    weight: ArrayView2<f32>,
    bias: ArrayView1<f32>,
    activation: Activation,
    dropout: Option<Dropout>,
    out: ArrayViewMut2<f32>,
) {
    let width = out.ncols();
    let bias = bias.as_standard_layout();
    let bias = bias
        .as_slice()
        .expect("a standard-layout vector is a slice");
    let finish = |row0: usize, col0: usize, mut tile: ArrayViewMut2<f32>| {
        let bias = &bias[col0..col0 + tile.ncols()];
        for (r, row) in tile.rows_mut().into_iter().enumerate() {
            with_slice(row, |values| {
                activation.apply_with_bias(values, bias);
                if let Some(d) = dropout {
                    let start = (row0 + r) * width + col0;
                    for (i, v) in values.iter_mut().enumerate() {
                        *v *= d.scale(start + i);
                    }
                }
            });
        }
    };
    matmul_then(MatmulForm::ABt, x, weight, out, &finish);
}

/// Backward through a dense layer to its input: `grad_input = (dz·W) ⊙ f'(input)`, where
/// `input` is the previous layer's stored output (after its dropout, which is undone here)
/// (matmul form `AB` with the activation-gradient epilogue).
pub fn dense_backward_input(
    grad_output: ArrayView2<f32>,
    weight: ArrayView2<f32>,
    input: ArrayView2<f32>,
    input_activation: Activation,
    input_dropout: Option<Dropout>,
    grad_input: ArrayViewMut2<f32>,
) {
    let width = grad_input.ncols();
    let finish = |row0: usize, col0: usize, mut tile: ArrayViewMut2<f32>| {
        let cols = tile.ncols();
        for (r, row) in tile.rows_mut().into_iter().enumerate() {
            let row_index = row0 + r;
            let outputs = input.slice(s![row_index, col0..col0 + cols]);
            let outputs = outputs.as_standard_layout();
            let outputs = outputs
                .as_slice()
                .expect("a standard-layout vector is a slice");
            with_slice(row, |grads| match input_dropout {
                None => input_activation.scale_by_grad(grads, outputs),
                Some(d) => {
                    let start = row_index * width + col0;
                    for (i, (g, &y)) in grads.iter_mut().zip(outputs).enumerate() {
                        let scale = d.scale(start + i);
                        *g = if scale == 0.0 {
                            0.0
                        } else {
                            *g * scale * input_activation.grad_from_output(y / scale)
                        };
                    }
                }
            });
        }
    };
    matmul_then(MatmulForm::AB, grad_output, weight, grad_input, &finish);
}

/// `f(values)` on a row of a tile: in place when the row is contiguous (always, for the
/// backend's own arrays), through a copy otherwise.
fn with_slice(mut row: ArrayViewMut1<f32>, f: impl FnOnce(&mut [f32])) {
    match row.as_slice_mut() {
        Some(values) => f(values),
        None => {
            let mut values = row.to_vec();
            f(&mut values);
            row.assign(&ArrayView1::from(&values));
        }
    }
}

/// dW = dzᵀ·x (matmul form `AtB`).
pub fn grad_weights(
    grad_output: ArrayView2<f32>,
    input: ArrayView2<f32>,
    grad_weight: ArrayViewMut2<f32>,
) {
    matmul(MatmulForm::AtB, grad_output, input, grad_weight);
}

/// db = column sums of dz (`shaders/reduce.wgsl`).
pub fn grad_bias(grad_output: ArrayView2<f32>, mut grad_bias: ArrayViewMut1<f32>) {
    grad_bias.fill(0.0);
    for row in grad_output.rows() {
        grad_bias += &row;
    }
}

fn log1p_exp_neg_abs(z: f32) -> f32 {
    // ln(1 + e^-|z|), written as the shader writes it.
    let e = (-z.abs()).exp();
    if e < 1e-4 {
        e - 0.5 * e * e
    } else {
        (1.0 + e).ln()
    }
}

/// Index of the largest value (first on ties); a single output counts as class (v ≥ 0.5).
pub fn predicted_class(row: &[f32]) -> usize {
    if row.len() == 1 {
        return usize::from(row[0] >= 0.5);
    }
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// The loss's output activation applied to one row of logits, in place.
pub fn output_probabilities_row(loss: Loss, declared: Activation, row: &mut [f32]) {
    match loss.output_activation(declared) {
        Activation::Softmax => softmax_in_place(row),
        Activation::Sigmoid => row.iter_mut().for_each(|v| *v = sigmoid(*v)),
        other => row.iter_mut().for_each(|v| *v = other.apply(*v)),
    }
}

/// The output stage (`shaders/output.wgsl`): for each of the first `rows` rows of `logits`,
/// the row's loss, whether its predicted class matches the target's, and the gradient of the
/// batch-mean loss with respect to the logits. Rows past `rows` (padding) get zeros.
/// The arguments mirror the kernel's bindings.
#[allow(clippy::too_many_arguments)]
pub fn output_loss(
    loss: Loss,
    declared: Activation,
    logits: ArrayView2<f32>,
    targets: ArrayView2<f32>,
    rows: usize,
    mut row_loss: ArrayViewMut1<f32>,
    mut row_correct: ArrayViewMut1<f32>,
    mut grad_logits: ArrayViewMut2<f32>,
) {
    let n = logits.ncols();
    let mut probs = vec![0.0; n];
    for r in 0..logits.nrows() {
        let mut grad = grad_logits.row_mut(r);
        if r >= rows {
            grad.fill(0.0);
            row_loss[r] = 0.0;
            row_correct[r] = 0.0;
            continue;
        }
        let z = logits.row(r);
        let y = targets.row(r);
        probs.iter_mut().zip(z.iter()).for_each(|(p, &v)| *p = v);
        output_probabilities_row(loss, declared, &mut probs);
        let target_class = match y.as_slice() {
            Some(row) => predicted_class(row),
            None => predicted_class(&y.to_vec()),
        };
        row_correct[r] = f32::from(predicted_class(&probs) == target_class);
        let batch = rows as f32;
        row_loss[r] = match loss {
            Loss::MeanSquaredError => {
                let scale = 2.0 / (batch * n as f32);
                let mut sum = 0.0;
                for j in 0..n {
                    let diff = probs[j] - y[j];
                    sum += diff * diff;
                    grad[j] = scale * diff;
                }
                if declared == Activation::Softmax {
                    // Softmax Jacobian-vector product: dz = p ⊙ (g - Σ g·p).
                    let dot: f32 = (0..n).map(|j| grad[j] * probs[j]).sum();
                    for j in 0..n {
                        grad[j] = probs[j] * (grad[j] - dot);
                    }
                } else {
                    for j in 0..n {
                        grad[j] *= declared.grad_from_output(probs[j]);
                    }
                }
                sum / n as f32
            }
            Loss::BinaryCrossEntropy => {
                let mut sum = 0.0;
                for j in 0..n {
                    sum += z[j].max(0.0) - z[j] * y[j] + log1p_exp_neg_abs(z[j]);
                    grad[j] = (probs[j] - y[j]) / (batch * n as f32);
                }
                sum / n as f32
            }
            Loss::CategoricalCrossEntropy => {
                let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let log_sum_exp = max + z.iter().map(|&v| (v - max).exp()).sum::<f32>().ln();
                let target_mass: f32 = y.sum();
                let mut sum = 0.0;
                for j in 0..n {
                    sum += y[j] * (log_sum_exp - z[j]);
                    grad[j] = (probs[j] * target_mass - y[j]) / batch;
                }
                sum
            }
        };
    }
}

/// min(1, clip_norm / ‖grads‖₂): the factor that rescales the gradient to the clip norm
/// (`shaders/reduce.wgsl`, `sum_squares`, and `shaders/optimizer.wgsl`, `clip_factor`).
/// The squares, summed in f64, cannot overflow for finite gradients (at most ~1.2e77 each).
pub fn gradient_clip_factor(grads: &[f32], clip_norm: f32) -> f32 {
    let norm = grads
        .iter()
        .map(|&g| (g as f64) * (g as f64))
        .sum::<f64>()
        .sqrt() as f32;
    (clip_norm / (norm + 1e-6)).min(1.0)
}

/// 1 for NaN and ±∞ (all-ones exponent), else 0: OR-ed over many values, an integer
/// reduction that vectorises, where `all` would exit early and a float sum would not.
#[inline(always)]
pub fn nonfinite(v: f32) -> u32 {
    u32::from(v.to_bits() & 0x7f80_0000 == 0x7f80_0000)
}

/// The gradient below which (1-ρ)·g² is subnormal ([`optimizer_update`] zeroes it first).
fn square_floor(rho: f32) -> f32 {
    (f32::MIN_POSITIVE / (1.0 - rho)).sqrt()
}

/// `value`, or zero where its magnitude is below `floor` (NaN passes through).
#[inline(always)]
fn zero_below(value: f32, floor: f32) -> f32 {
    if value.abs() < floor { 0.0 } else { value }
}

/// One optimizer step on one tensor (`shaders/optimizer.wgsl`): the gradient is scaled by
/// `grad_scale` (the clipping factor, or 1), then the penalties are added. Returns whether
/// every updated weight and the state the rule keeps is finite (Adam's v can overflow while
/// the weights stay finite), checked in the same pass.
///
/// It reads and writes no subnormal float (magnitude below `f32::MIN_POSITIVE`, 1.2e-38): a
/// subnormal gradient is read as zero, a subnormal result of the state is stored as zero, and
/// a gradient is zeroed before it is squared where its share of the state, (1-ρ)·g², would be
/// subnormal. x86 cores handle an operation that reads or produces a subnormal in microcode:
/// tiny gradients' squares and state decaying toward zero made Adam's update in (b) about 4×
/// as long. With the floors it runs as fast as with the CPU's flush-to-zero mode set, which
/// Rust has no sound way to set, and its values are what a GPU that flushes subnormals
/// computes (the parity tests allow either).
#[allow(clippy::too_many_arguments)]
#[inline(always)] // into `vector::widest`, to be compiled for its vector width
pub fn optimizer_update(
    optimizer: &Optimizer,
    params: &mut [f32],
    grads: &[f32],
    state1: &mut [f32],
    state2: &mut [f32],
    l1: f32,
    l2: f32,
    grad_scale: f32,
    step: &StepParams,
) -> bool {
    let lr = step.learning_rate;
    let [h1, h2, eps] = optimizer.hyper_parameters();
    // Zero for a subnormal value: a gradient as read, a state value as stored.
    let flush = |v: f32| zero_below(v, f32::MIN_POSITIVE);
    // The gradient with the clip factor and the penalties, as the shader forms it.
    let g = |w: f32, grad: f32| {
        let sign = if w > 0.0 {
            1.0
        } else if w < 0.0 {
            -1.0
        } else {
            0.0
        };
        grad_scale * flush(grad) + l1 * sign + 2.0 * l2 * w
    };
    // One loop per rule, so that each compiles to a tight, vectorisable loop. Non-finite
    // values are found by an OR of [`nonfinite`].
    // Index loops, not iterator folds: the folds are functions of their own, which the
    // compiler stopped inlining into `vector::widest` once the floors were added, and which
    // then ran at the baseline vector width.
    let n = params.len();
    let grads = &grads[..n];
    let mut found = 0;
    match optimizer.gpu_code() {
        0 => {
            for (w, &grad) in params.iter_mut().zip(grads) {
                *w -= lr * g(*w, grad);
                found |= nonfinite(*w);
            }
        }
        1 => {
            let v = &mut state1[..n];
            for i in 0..n {
                v[i] = flush(h1 * v[i] + g(params[i], grads[i]));
                params[i] -= lr * v[i];
                found |= nonfinite(params[i]) | nonfinite(v[i]);
            }
        }
        2 => {
            let v = &mut state1[..n];
            for i in 0..n {
                let gradient = g(params[i], grads[i]);
                v[i] = flush(h1 * v[i] + gradient);
                params[i] -= lr * (gradient + h1 * v[i]);
                found |= nonfinite(params[i]) | nonfinite(v[i]);
            }
        }
        3 => {
            let (s, floor) = (&mut state1[..n], square_floor(h1));
            for i in 0..n {
                let gradient = g(params[i], grads[i]);
                let root = zero_below(gradient, floor);
                s[i] = flush(h1 * s[i] + (1.0 - h1) * root * root);
                params[i] -= lr * gradient / (s[i].sqrt() + eps);
                found |= nonfinite(params[i]) | nonfinite(s[i]);
            }
        }
        _ => {
            let (m, v, floor) = (&mut state1[..n], &mut state2[..n], square_floor(h2));
            // The bias corrections folded into two scalars: one division per element, not
            // three (the update of 784-128-10 took 8% less time on an AMD Zen 1 core).
            let (step_size, v_scale) = (lr / step.bias_correction1, 1.0 / step.bias_correction2);
            for i in 0..n {
                let gradient = g(params[i], grads[i]);
                let root = zero_below(gradient, floor);
                m[i] = flush(h1 * m[i] + (1.0 - h1) * gradient);
                v[i] = flush(h2 * v[i] + (1.0 - h2) * root * root);
                params[i] -= step_size * m[i] / ((v[i] * v_scale).sqrt() + eps);
                found |= nonfinite(params[i]) | nonfinite(m[i]) | nonfinite(v[i]);
            }
        }
    }
    found == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn subnormal(value: f32) -> bool {
        value != 0.0 && value.abs() < f32::MIN_POSITIVE
    }

    /// One step of each rule for one element, as the shader writes it, with no floors:
    /// (weight, state1, state2) after the step.
    fn unfloored(rule: u32, hyper: [f32; 3], lr: f32, w: f32, grad: f32, s: [f32; 2]) -> [f32; 3] {
        let [h1, h2, eps] = hyper;
        match rule {
            0 => [w - lr * grad, s[0], s[1]],
            1 => {
                let v = h1 * s[0] + grad;
                [w - lr * v, v, s[1]]
            }
            2 => {
                let v = h1 * s[0] + grad;
                [w - lr * (grad + h1 * v), v, s[1]]
            }
            3 => {
                let r = h1 * s[0] + (1.0 - h1) * grad * grad;
                [w - lr * grad / (r.sqrt() + eps), r, s[1]]
            }
            _ => {
                let m = h1 * s[0] + (1.0 - h1) * grad;
                let v = h2 * s[1] + (1.0 - h2) * grad * grad;
                [w - lr * m / (v.sqrt() + eps), m, v]
            }
        }
    }

    #[test]
    fn tiny_gradients_and_state_leave_no_subnormals_and_normal_values_keep_their_bits() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let step = StepParams {
            learning_rate: 0.01,
            ..StepParams::inference(1)
        };
        let n = 999;
        for optimizer in [
            Optimizer::sgd(0.01),
            Optimizer::momentum(0.01, 0.9),
            Optimizer::nesterov(0.01, 0.9),
            Optimizer::rmsprop(0.01),
            Optimizer::adam(0.01),
        ] {
            let rule = optimizer.gpu_code();
            // Every third element has a gradient and state from 1e-31 down to 1e-45 (the
            // smallest subnormal); the rest are in the normal range.
            let tiny = |i: usize| i.is_multiple_of(3);
            let magnitude = |i: usize, rng: &mut ChaCha8Rng| {
                if tiny(i) {
                    10f32.powf(rng.random_range(-45.0..-31.0))
                } else {
                    rng.random_range(0.01..1.0)
                }
            };
            let mut params: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let grads: Vec<f32> = (0..n)
                .map(|i| magnitude(i, &mut rng) * if i.is_multiple_of(2) { 1.0 } else { -1.0 })
                .collect();
            let mut state1: Vec<f32> = (0..n).map(|i| magnitude(i, &mut rng)).collect();
            let mut state2: Vec<f32> = (0..n).map(|i| magnitude(i, &mut rng)).collect();
            assert!(grads.iter().chain(&state1).any(|&v| subnormal(v)));
            let expected: Vec<[f32; 3]> = (0..n)
                .map(|i| {
                    let s = [state1[i], state2[i]];
                    let hyper = optimizer.hyper_parameters();
                    unfloored(rule, hyper, 0.01, params[i], grads[i], s)
                })
                .collect();
            let finite = optimizer_update(
                &optimizer,
                &mut params,
                &grads,
                &mut state1,
                &mut state2,
                0.0,
                0.0,
                1.0,
                &step,
            );
            assert!(finite);
            let [used1, used2] = optimizer.state_vectors();
            for i in 0..n {
                let got = [params[i], state1[i], state2[i]];
                let kept = [true, used1, used2];
                assert!(
                    !got.iter().zip(kept).any(|(&v, kept)| kept && subnormal(v)),
                    "rule {rule}, element {i}: {got:?}"
                );
                if !tiny(i) {
                    assert_eq!(got, expected[i], "rule {rule}, element {i}");
                }
            }
        }
    }
}
