//! Finite-difference check of the CPU path's gradients, the reference everything else is
//! held to: for every hidden activation × (loss, output activation) pair, each parameter's
//! analytic gradient must match the central difference (L(w+h) - L(w-h)) / 2h.

mod common;

use common::random_matrix;
use ndarray::Array2;
use wgrad::backend::StepParams;
use wgrad::cpu::CpuBackend;
use wgrad::{Activation, Loss, Sequential};

const HIDDEN: [Activation; 5] = [
    Activation::Linear,
    Activation::Relu,
    Activation::LeakyRelu,
    Activation::Sigmoid,
    Activation::Tanh,
];

fn step() -> StepParams {
    StepParams {
        rows: 0,
        batch_start: 0,
        step: 3,
        seed: 99,
        training: true,
        learning_rate: 0.1,
        bias_correction1: 1.0,
        bias_correction2: 1.0,
        clip_norm: 0.0,
    }
}

fn targets(loss: Loss, rows: usize, outputs: usize) -> Array2<f32> {
    match loss {
        Loss::MeanSquaredError => random_matrix(rows, outputs, 1.0, 7),
        // Class r % outputs as one-hot; for one output, alternating 0/1.
        _ if outputs == 1 => Array2::from_shape_fn((rows, 1), |(r, _)| (r % 2) as f32),
        _ => Array2::from_shape_fn((rows, outputs), |(r, c)| f32::from(r % outputs == c)),
    }
}

/// Returns the worst mismatch, after asserting every parameter's.
fn check_model(spec: Sequential, what: &str) {
    let rows = 6;
    let x = random_matrix(rows, spec.input_dim, 1.5, 11);
    let y = targets(spec.resolved_loss(), rows, spec.output_dim());
    let layout = spec.param_layout();
    let params = spec.initial_params();
    let mut cpu = CpuBackend::new(&spec, &params);
    let (_, analytic) = cpu.loss_and_gradients(x.view(), y.view(), &step());
    let h = 3e-3f32;
    let mut worst = 0.0f32;
    let mut nonzero = 0;
    for slot in &layout.tensors {
        for i in slot.offset..slot.offset + slot.len {
            let mut shifted = params.clone();
            shifted[i] = params[i] + h;
            let mut plus = CpuBackend::new(&spec, &shifted);
            let (loss_plus, _) = plus.loss_and_gradients(x.view(), y.view(), &step());
            shifted[i] = params[i] - h;
            let mut minus = CpuBackend::new(&spec, &shifted);
            let (loss_minus, _) = minus.loss_and_gradients(x.view(), y.view(), &step());
            let numeric = (loss_plus - loss_minus) / (2.0 * h);
            let error = (numeric - analytic[i]).abs();
            worst = worst.max(error);
            if analytic[i].abs() > 1e-6 {
                nonzero += 1;
            }
            assert!(
                error <= 5e-4 + 5e-3 * analytic[i].abs(),
                "{what}: {} element {}: analytic {} vs numeric {numeric}",
                slot.name,
                i - slot.offset,
                analytic[i]
            );
        }
    }
    assert!(
        nonzero > layout.count() / 3,
        "{what}: only {nonzero} non-zero gradients: the check says little"
    );
    println!("{what:<55} worst |analytic - numeric| {worst:.2e}");
}

fn output_activations(loss: Loss) -> Vec<Activation> {
    match loss {
        Loss::MeanSquaredError => Activation::ALL.to_vec(),
        Loss::BinaryCrossEntropy => vec![Activation::Sigmoid, Activation::Linear],
        Loss::CategoricalCrossEntropy => vec![Activation::Softmax, Activation::Linear],
    }
}

#[test]
fn every_activation_and_loss_pair() {
    for loss in Loss::ALL {
        for output in output_activations(loss) {
            for outputs in [1, 3] {
                if outputs == 1
                    && (output == Activation::Softmax || loss == Loss::CategoricalCrossEntropy)
                {
                    continue;
                }
                for hidden in HIDDEN {
                    let spec = Sequential::new(4)
                        .dense(5, hidden)
                        .dense(outputs, output)
                        .loss(loss)
                        .seed(5);
                    check_model(
                        spec,
                        &format!("{hidden:?} → {output:?}×{outputs} with {loss:?}"),
                    );
                }
            }
        }
    }
}

#[test]
fn deep_model_with_dropout() {
    for hidden in HIDDEN {
        let spec = Sequential::new(3)
            .dense(6, hidden)
            .dropout(0.3)
            .dense(5, Activation::Tanh)
            .dropout(0.2)
            .dense(4, Activation::Softmax)
            .seed(8);
        check_model(
            spec,
            &format!("3-6({hidden:?}, dropout)-5(tanh, dropout)-4 softmax CE"),
        );
    }
}
