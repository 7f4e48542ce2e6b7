//! Every GPU kernel against its CPU twin (`cpu::ops`) on random inputs, at shapes that are
//! not multiples of any tile (64) or workgroup (16, 64, 256) size, and at shapes whose
//! dimensions are multiples of 4 (the matmul's vec4 reads). Every matmul configuration the
//! autotuner may choose runs every product, reading its vec4 operands from buffers and from
//! texture copies. Each comparison prints its error; all must stay
//! within 1e-4 of the reference's magnitude.

mod common;

use common::{
    cpu_dense_backward_input, cpu_dense_forward, cpu_grad_weights_and_bias, kernel_runner,
    random_matrix, random_vector, relative_error,
};
use ndarray::{Array1, Array2};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgrad::backend::StepParams;
use wgrad::cpu::ops::{self, Dropout, MatmulForm};
use wgrad::gpu::kernels::tiled_index;
use wgrad::gpu::matmul::MATMUL_CONFIGS;
use wgrad::gpu::ops::KernelRunner;
use wgrad::{Activation, Loss, Optimizer};

const TOLERANCE: f32 = 1e-4;

/// (M, N, K) of C[M,N] = op(A)·op(B) with inner dimension K: odd ones, all multiples of 4
/// (every operand read as vec4s), and mixed.
const SHAPES: [(usize, usize, usize); 9] = [
    (1, 1, 1),
    (3, 5, 7),
    (127, 129, 65),
    (257, 784, 130),
    (600, 1031, 777),
    (36, 12, 20),
    (128, 800, 784),
    (68, 10, 132),
    // M and N multiples of 4, K not: A·B, Aᵀ·B read vec4s along M and N, with a depth tail.
    (44, 36, 29),
];

const HIDDEN_ACTIVATIONS: [Activation; 5] = [
    Activation::Linear,
    Activation::Relu,
    Activation::LeakyRelu,
    Activation::Sigmoid,
    Activation::Tanh,
];

/// The activations to test an epilogue with in matmul configuration `config` at shape
/// `shape`: all of them in the default configuration; one per shape in turn in the others
/// (each still meets every activation across the shapes), which keeps the test short on a
/// software adapter.
fn activations(config: usize, shape: usize) -> Vec<Activation> {
    if config == 0 {
        HIDDEN_ACTIVATIONS.to_vec()
    } else {
        vec![HIDDEN_ACTIVATIONS[(shape + config) % HIDDEN_ACTIVATIONS.len()]]
    }
}

fn check(what: &str, error: f32) {
    println!("{what:<60} max relative error {error:.2e}");
    assert!(
        error <= TOLERANCE,
        "{what}: relative error {error:.3e} exceeds {TOLERANCE:e}"
    );
}

fn dropout(rate: f32, layer: u32) -> Dropout {
    Dropout {
        rate,
        seed: 1234,
        step: 17,
        layer,
    }
}

/// Every matmul configuration the adapter supports, reading its vec4 operands from buffers
/// (as on hardware GPUs) and from texture copies (as on software adapters): (index, textures,
/// name).
fn configurations(gpu: &KernelRunner) -> Vec<(usize, bool, String)> {
    let subgroup_size = gpu.ctx.subgroup_size;
    [false, true]
        .into_iter()
        .flat_map(|textures| {
            MATMUL_CONFIGS
                .iter()
                .enumerate()
                .filter(move |(_, config)| config.supported(subgroup_size))
                .map(move |(i, config)| {
                    let reads = if textures { "textures" } else { "buffers" };
                    (i, textures, format!("{} ({reads})", config.name))
                })
        })
        .collect()
}

#[test]
fn matmul_all_forms_every_configuration() {
    let Some(mut gpu) = kernel_runner("matmul_all_forms") else {
        return;
    };
    for (config, textures, name) in configurations(&gpu) {
        gpu.set_matmul_config(config);
        gpu.set_textures(textures);
        for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
            for form in [MatmulForm::AB, MatmulForm::ABt, MatmulForm::AtB] {
                let a = match form {
                    MatmulForm::AtB => random_matrix(k, m, 1.0, 10 + i as u64),
                    _ => random_matrix(m, k, 1.0, 10 + i as u64),
                };
                let b = match form {
                    MatmulForm::ABt => random_matrix(n, k, 1.0, 20 + i as u64),
                    _ => random_matrix(k, n, 1.0, 20 + i as u64),
                };
                let mut expected = Array2::zeros((m, n));
                ops::matmul(form, a.view(), b.view(), expected.view_mut());
                let actual = gpu.matmul(form, a.view(), b.view()).unwrap();
                check(
                    &format!("{name} matmul {form:?} {m}x{n}x{k}"),
                    relative_error(&actual, &expected),
                );
            }
        }
    }
}

#[test]
fn dense_forward_every_activation_with_and_without_dropout() {
    let Some(mut gpu) = kernel_runner("dense_forward") else {
        return;
    };
    for (config, textures, name) in configurations(&gpu) {
        gpu.set_matmul_config(config);
        gpu.set_textures(textures);
        for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
            let x = random_matrix(m, k, 1.0, 30 + i as u64);
            let w = random_matrix(n, k, 0.5, 40 + i as u64);
            let b = random_vector(n, 0.5, 50 + i as u64);
            for activation in activations(config, i) {
                for drop in [None, Some(dropout(0.3, 2))] {
                    let expected =
                        cpu_dense_forward(x.view(), w.view(), b.view(), activation, drop);
                    let actual = gpu
                        .dense_forward(x.view(), w.view(), b.view(), activation, drop)
                        .unwrap();
                    if let Some(d) = drop {
                        // The masks must match exactly, not just be close.
                        let kept =
                            |a: &Array2<f32>| a.iter().map(|v| *v != 0.0).collect::<Vec<_>>();
                        if activation != Activation::Relu {
                            assert_eq!(kept(&actual), kept(&expected), "dropout masks differ");
                        }
                        assert!(d.rate > 0.0);
                    }
                    let what = format!(
                        "{name} dense forward {activation:?} dropout={} {m}x{n}x{k}",
                        drop.is_some()
                    );
                    check(&what, relative_error(&actual, &expected));
                }
            }
        }
    }
}

#[test]
fn dense_backward_input_every_activation_with_and_without_dropout() {
    let Some(mut gpu) = kernel_runner("dense_backward_input") else {
        return;
    };
    for (config, textures, name) in configurations(&gpu) {
        gpu.set_matmul_config(config);
        gpu.set_textures(textures);
        for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
            // dz [M, K] of a layer with weights [K, N]; its input [M, N].
            let grad_output = random_matrix(m, k, 1.0, 60 + i as u64);
            let w = random_matrix(k, n, 0.5, 70 + i as u64);
            for activation in activations(config, i) {
                for drop in [None, Some(dropout(0.25, 1))] {
                    // A plausible stored input: the activation's outputs, after dropout.
                    let mut input =
                        random_matrix(m, n, 2.0, 80 + i as u64).mapv(|z| activation.apply(z));
                    if let Some(d) = drop {
                        for (index, v) in input.iter_mut().enumerate() {
                            *v *= wgrad::rng::dropout_scale(
                                d.rate,
                                d.seed,
                                d.step,
                                d.layer,
                                index as u32,
                            );
                        }
                    }
                    let expected = cpu_dense_backward_input(
                        grad_output.view(),
                        w.view(),
                        input.view(),
                        activation,
                        drop,
                    );
                    let actual = gpu
                        .dense_backward_input(
                            grad_output.view(),
                            w.view(),
                            input.view(),
                            activation,
                            drop,
                        )
                        .unwrap();
                    let what = format!(
                        "{name} dense backward {activation:?} dropout={} {m}x{n}x{k}",
                        drop.is_some()
                    );
                    check(&what, relative_error(&actual, &expected));
                }
            }
        }
    }
}

#[test]
fn weight_and_bias_gradients_in_one_pass_every_configuration() {
    let Some(mut gpu) = kernel_runner("weight_and_bias_gradients") else {
        return;
    };
    for (config, textures, name) in configurations(&gpu) {
        gpu.set_matmul_config(config);
        gpu.set_textures(textures);
        // dW [units, fan_in] = dzᵀ·x with dz [batch, units], x [batch, fan_in]; db = Σ_rows dz.
        // Also stored tiled where the shape allows (fan_in a multiple of 8: 784 with a
        // narrower last tile and 257 rows with a one-row last block, and 800), read back
        // row-major by the runner.
        for (i, &(units, fan_in, batch)) in SHAPES.iter().enumerate() {
            let dz = random_matrix(batch, units, 1.0, 90 + i as u64);
            let x = random_matrix(batch, fan_in, 1.0, 95 + i as u64);
            let (expected_w, expected_b) = cpu_grad_weights_and_bias(dz.view(), x.view());
            let layouts: &[bool] = if fan_in % 8 == 0 {
                &[false, true]
            } else {
                &[false]
            };
            for &tiled in layouts {
                gpu.set_tiled_gradients(tiled);
                let (w, b) = gpu.grad_weights_and_bias(dz.view(), x.view()).unwrap();
                let what = format!("{name} gradients {units}x{fan_in} batch {batch} tiled {tiled}");
                check(&format!("{what} weights"), relative_error(&w, &expected_w));
                check(&format!("{what} bias"), relative_error(&b, &expected_b));
            }
        }
    }
}

/// Targets a loss can train on: one-hot or soft rows for CE, 0/1 for BCE, any value for MSE.
fn targets_for(loss: Loss, rows: usize, n: usize, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    match loss {
        Loss::MeanSquaredError => random_matrix(rows, n, 1.0, seed),
        Loss::BinaryCrossEntropy => {
            Array2::from_shape_fn((rows, n), |_| f32::from(rng.random_bool(0.5)))
        }
        Loss::CategoricalCrossEntropy => {
            let mut t = Array2::zeros((rows, n));
            for r in 0..rows {
                if r % 5 == 4 && n > 1 {
                    // A soft label on some rows.
                    let raw: Vec<f32> = (0..n).map(|_| rng.random_range(0.0..1.0)).collect();
                    let sum: f32 = raw.iter().sum();
                    for (j, v) in raw.iter().enumerate() {
                        t[[r, j]] = v / sum;
                    }
                } else {
                    t[[r, rng.random_range(0..n)]] = 1.0;
                }
            }
            t
        }
    }
}

fn loss_cases() -> Vec<(Loss, Activation)> {
    let mut cases = vec![
        (Loss::BinaryCrossEntropy, Activation::Sigmoid),
        (Loss::BinaryCrossEntropy, Activation::Linear),
        (Loss::CategoricalCrossEntropy, Activation::Softmax),
        (Loss::CategoricalCrossEntropy, Activation::Linear),
        (Loss::MeanSquaredError, Activation::Softmax),
    ];
    cases.extend(HIDDEN_ACTIVATIONS.map(|a| (Loss::MeanSquaredError, a)));
    cases
}

#[test]
fn output_loss_gradient_and_metrics() {
    let Some(mut gpu) = kernel_runner("output_loss") else {
        return;
    };
    // (batch, rows holding data, outputs); logit scales include large values to check stability.
    for (i, &(batch, rows, n)) in [
        (1, 1, 1),
        (37, 30, 1),
        (70, 70, 10),
        (129, 100, 3),
        (65, 61, 257),
    ]
    .iter()
    .enumerate()
    {
        for (loss, activation) in loss_cases() {
            if n == 1
                && (loss == Loss::CategoricalCrossEntropy || activation == Activation::Softmax)
            {
                continue;
            }
            for scale in [3.0, 40.0] {
                let logits = random_matrix(batch, n, scale, 100 + i as u64);
                let targets = targets_for(loss, batch, n, 200 + i as u64);
                let (loss_cpu, correct_cpu, grad_cpu) =
                    common::cpu_output_loss(loss, activation, logits.view(), targets.view(), rows);
                let (loss_gpu, correct_gpu, grad_gpu, sums) = gpu
                    .output_loss(loss, activation, logits.view(), targets.view(), rows)
                    .unwrap();
                // The metrics the same dispatch accumulates: its own rows' sums.
                let rows_loss: f32 = loss_gpu.iter().take(rows).sum();
                let rows_correct: f32 = correct_gpu.iter().take(rows).sum();
                assert!((sums[0] - rows_loss).abs() <= 1e-4 * rows_loss.abs().max(1.0));
                assert_eq!(sums[1], rows_correct);
                assert_eq!(sums[2], rows as f32);
                let what = format!(
                    "{loss:?}+{activation:?} batch {batch} rows {rows} n {n} scale {scale}"
                );
                check(
                    &format!("loss {what}"),
                    relative_error(&loss_gpu, &loss_cpu),
                );
                check(
                    &format!("grad {what}"),
                    relative_error(&grad_gpu, &grad_cpu),
                );
                assert!(
                    loss_gpu.iter().all(|v| v.is_finite()),
                    "{what}: non-finite loss"
                );
                let mismatched = correct_gpu
                    .iter()
                    .zip(&correct_cpu)
                    .filter(|(a, b)| a != b)
                    .count();
                assert!(
                    mismatched == 0 || scale > 10.0 && mismatched <= 1,
                    "{what}: {mismatched} rows classified differently"
                );
                let probs_gpu = gpu.probabilities(loss, activation, logits.view()).unwrap();
                let mut probs_cpu = logits.clone();
                for mut row in probs_cpu.rows_mut() {
                    ops::output_probabilities_row(loss, activation, row.as_slice_mut().unwrap());
                }
                check(
                    &format!("probabilities {what}"),
                    relative_error(&probs_gpu, &probs_cpu),
                );
            }
        }
    }
}

#[test]
fn loss_metrics_over_large_batches() {
    let Some(mut gpu) = kernel_runner("loss_metrics") else {
        return;
    };
    // More rows than the kernel's 256 threads, and short batches.
    for (batch, rows) in [(1, 1), (300, 297), (1000, 1000), (2049, 1500)] {
        let logits = random_matrix(batch, 3, 3.0, batch as u64);
        let targets = targets_for(Loss::CategoricalCrossEntropy, batch, 3, rows as u64);
        let (mut loss_cpu, mut correct_cpu, mut grad_cpu) = (
            Array1::zeros(batch),
            Array1::zeros(batch),
            Array2::zeros((batch, 3)),
        );
        ops::output_loss(
            Loss::CategoricalCrossEntropy,
            Activation::Softmax,
            logits.view(),
            targets.view(),
            rows,
            loss_cpu.view_mut(),
            correct_cpu.view_mut(),
            grad_cpu.view_mut(),
        );
        let (_, _, grad, [loss, correct, count]) = gpu
            .output_loss(
                Loss::CategoricalCrossEntropy,
                Activation::Softmax,
                logits.view(),
                targets.view(),
                rows,
            )
            .unwrap();
        let expected_loss: f32 = loss_cpu.iter().take(rows).sum();
        let expected_correct: f32 = correct_cpu.iter().take(rows).sum();
        check(
            &format!("metrics loss sum, {rows} of {batch} rows"),
            relative_error(&[loss], &[expected_loss]),
        );
        check(
            &format!("gradient, {rows} of {batch} rows"),
            relative_error(&grad, &grad_cpu),
        );
        assert_eq!(correct, expected_correct);
        assert_eq!(count, rows as f32);
    }
}

/// The transpose the weight gradient takes its operands through (texture to texture), exact,
/// at sizes whose texel counts are not multiples of the 64-wide workgroups.
#[test]
fn transpose_through_textures() {
    let Some(mut gpu) = kernel_runner("transpose") else {
        return;
    };
    for (i, &(rows, cols)) in [(4, 4), (12, 20), (132, 68), (128, 784), (36, 1028)]
        .iter()
        .enumerate()
    {
        let matrix = random_matrix(rows, cols, 1.0, 300 + i as u64);
        let transposed = gpu.transpose(matrix.view()).unwrap();
        assert_eq!(transposed, matrix.t(), "transpose of [{rows}, {cols}]");
    }
    assert!(gpu.transpose(random_matrix(6, 8, 1.0, 1).view()).is_err());
}

#[test]
fn gather_batches_in_epoch_order() {
    let Some(mut gpu) = kernel_runner("gather") else {
        return;
    };
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    // Widths that are whole vec4s and 64-bit packs of eight (784) or only vec4s (12) take
    // the gather's vector paths; the others its column-at-a-time one.
    let cases = [
        (1, 1, 1, 0, false, 1),
        (100, 7, 32, 96, false, 3),
        (1000, 785, 129, 258, false, 10),
        (1000, 785, 129, 258, true, 0),
        (33, 3, 16, 17, true, 70),
        (300, 784, 129, 200, true, 10),
        (300, 784, 33, 5, false, 1),
        (50, 12, 19, 40, true, 2),
        (50, 12, 19, 3, false, 0),
    ];
    let packings = gpu.packings();
    for ((n, width, batch, start, bytes, y_width), wide) in cases
        .into_iter()
        .flat_map(|case| packings.iter().map(move |&wide| (case, wide)))
    {
        gpu.set_wide_words(wide);
        // 8-bit data (k/255) is stored as bytes on the GPU and must come back bit-identical.
        let source = if bytes {
            random_matrix(n, width, 1.0, n as u64).mapv(|v| ((v.abs() * 255.0).round()) / 255.0)
        } else {
            random_matrix(n, width, 1.0, n as u64)
        };
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.shuffle(&mut rng);
        let rows = batch.min(n - start);
        let step = StepParams {
            rows,
            batch_start: start,
            step: 1,
            seed: 0,
            training: true,
            learning_rate: 0.1,
            bias_correction1: 1.0,
            bias_correction2: 1.0,
            clip_norm: 0.0,
        };
        let targets = random_matrix(n, y_width, 1.0, n as u64 + 1);
        let y = (y_width > 0).then_some(targets.view());
        let (actual, actual_y) = gpu.gather(source.view(), y, &order, batch, &step).unwrap();
        assert_eq!(actual_y.is_some(), y_width > 0);
        for i in 0..batch {
            let pick = |m: &Array2<f32>| -> Vec<f32> {
                if i < rows {
                    m.row(order[start + i] as usize).to_vec()
                } else {
                    vec![0.0; m.ncols()]
                }
            };
            assert_eq!(
                actual.row(i).to_vec(),
                pick(&source),
                "row {i} of a batch of {batch} from {n} (width {width}, bytes {bytes}, 64-bit words {wide})"
            );
            if let Some(actual_y) = &actual_y {
                assert_eq!(
                    actual_y.row(i).to_vec(),
                    pick(&targets),
                    "target row {i} of a batch of {batch} from {n}"
                );
            }
        }
    }
}

#[test]
fn optimizer_updates() {
    let Some(mut gpu) = kernel_runner("optimizer_updates") else {
        return;
    };
    let optimizers = [
        Optimizer::sgd(0.05),
        Optimizer::momentum(0.05, 0.9),
        Optimizer::nesterov(0.05, 0.9),
        Optimizer::rmsprop(0.01),
        Optimizer::adam(0.01),
    ];
    for (wide, optimizer) in gpu
        .packings()
        .into_iter()
        .flat_map(|wide| optimizers.iter().map(move |o| (wide, o)))
    {
        gpu.set_wide_words(wide);
        // Tensors as (end, regularized), like a layout's [W0, b0, W1, b1], each starting at a
        // multiple of 64: the penalties apply to the regularized ones only.
        for (len, l1, l2, tensors) in [
            (1, 0.0, 0.0, vec![(1, true)]),
            (
                1003,
                1e-3,
                1e-2,
                vec![(640, true), (704, false), (960, true), (1003, false)],
            ),
            (70_001, 0.0, 5e-3, vec![(70_001, true)]),
            (70_001, 1e-3, 5e-3, vec![(68_992, true), (70_001, false)]),
        ] {
            let params = random_vector(len, 1.0, len as u64).to_vec();
            let grads = random_vector(len, 0.1, len as u64 + 1).to_vec();
            let state1: Vec<f32> = random_vector(len, 0.1, len as u64 + 2)
                .iter()
                .map(|v| v.abs())
                .collect();
            let state2: Vec<f32> = random_vector(len, 0.01, len as u64 + 3)
                .iter()
                .map(|v| v.abs())
                .collect();
            let (bias_correction1, bias_correction2) = optimizer.bias_corrections(7);
            let step = StepParams {
                rows: 1,
                batch_start: 0,
                step: 7,
                seed: 0,
                training: true,
                learning_rate: optimizer.learning_rate(),
                bias_correction1,
                bias_correction2,
                clip_norm: 0.0,
            };
            let grad_scale = 0.75;
            let (p, s1, s2) = common::cpu_optimizer_update(
                optimizer, &params, &grads, &state1, &state2, &tensors, l1, l2, grad_scale, &step,
            );
            let (gp, gs1, gs2) = gpu
                .optimizer_update(
                    optimizer,
                    &params,
                    &grads,
                    &state1,
                    &state2,
                    &common::regions(&tensors),
                    l1,
                    l2,
                    grad_scale,
                    &step,
                )
                .unwrap();
            let what = format!(
                "{} len {len} l1 {l1} l2 {l2} {} tensors{}",
                optimizer.name(),
                tensors.len(),
                if wide { " (64-bit words)" } else { "" }
            );
            check(&format!("params {what}"), relative_error(&gp, &p));
            check(&format!("state1 {what}"), relative_error(&gs1, &s1));
            check(&format!("state2 {what}"), relative_error(&gs2, &s2));
            assert_ne!(p, params, "{what}: the update changed nothing");
        }
        // A [37, 40] weight and its bias, the weight's gradient given tiled (a last tile 8
        // columns wide, a last block of 5 rows): the same update as from the row-major one.
        let (rows, cols) = (37, 40);
        let weight_end = rows * cols;
        let len = 1536 + 37;
        let tensors = [(weight_end, true), (len, false)];
        // The alignment padding after the weight holds zeros, as in a parameter layout.
        let padded = |values: Vec<f32>| -> Vec<f32> {
            let mut values = values;
            values[weight_end..1536].fill(0.0);
            values
        };
        let params = padded(random_vector(len, 1.0, 11).to_vec());
        let grads = padded(random_vector(len, 0.1, 12).to_vec());
        let state1 = padded(
            random_vector(len, 0.1, 13)
                .iter()
                .map(|v| v.abs())
                .collect(),
        );
        let state2 = padded(
            random_vector(len, 0.01, 14)
                .iter()
                .map(|v| v.abs())
                .collect(),
        );
        let mut tiled_grads = grads.clone();
        for row in 0..rows {
            for col in 0..cols {
                tiled_grads[tiled_index(row, col, rows, cols)] = grads[row * cols + col];
            }
        }
        let mut regions = common::regions(&tensors);
        regions[0].tiled_columns = cols;
        let step = StepParams {
            learning_rate: optimizer.learning_rate(),
            ..StepParams::inference(3)
        };
        let (p, s1, s2) = common::cpu_optimizer_update(
            optimizer, &params, &grads, &state1, &state2, &tensors, 1e-3, 1e-2, 1.0, &step,
        );
        let (gp, gs1, gs2) = gpu
            .optimizer_update(
                optimizer,
                &params,
                &tiled_grads,
                &state1,
                &state2,
                &regions,
                1e-3,
                1e-2,
                1.0,
                &step,
            )
            .unwrap();
        let what = format!("{} tiled gradient (64-bit words {wide})", optimizer.name());
        check(&format!("params {what}"), relative_error(&gp, &p));
        check(&format!("state1 {what}"), relative_error(&gs1, &s1));
        check(&format!("state2 {what}"), relative_error(&gs2, &s2));
    }
}

#[test]
fn gradient_clip_factor() {
    let Some(mut gpu) = kernel_runner("gradient_clip_factor") else {
        return;
    };
    for wide in gpu.packings() {
        gpu.set_wide_words(wide);
        for (len, scale, clip_norm) in [
            (1, 3.0, 1.0),
            (1003, 0.1, 1.0),
            (300_007, 0.05, 5.0),
            (5000, 0.001, 10.0),
        ] {
            let grads = random_vector(len, scale, len as u64 + 9).to_vec();
            let expected = ops::gradient_clip_factor(&grads, clip_norm);
            let actual = gpu.gradient_clip_factor(&grads, clip_norm).unwrap();
            check(
                &format!(
                    "clip factor len {len} norm {clip_norm} (expected {expected:.4}, 64-bit \
                     words {wide})"
                ),
                relative_error(&[actual], &[expected]),
            );
        }
    }
}

/// Exploding gradients, where clipping must act: a norm whose square overflows f32 (the
/// GPU once summed the squares in f32 and gave a factor of 0, no step), huge values mixed
/// with tiny ones over many workgroups, and an infinite gradient (factor 0 on both).
#[test]
fn gradient_clip_factor_of_huge_gradients() {
    let Some(mut gpu) = kernel_runner("gradient_clip_factor_of_huge_gradients") else {
        return;
    };
    let mixed: Vec<f32> = random_vector(300_007, 1.0, 5)
        .iter()
        .enumerate()
        .map(|(i, &v)| if i % 2 == 0 { v * 1e30 } else { v * 1e-30 })
        .collect();
    for (what, grads, clip_norm) in [
        ("1000 × 1e18", vec![1e18f32; 1000], 1.0),
        (
            "1e37 and tiny values",
            vec![-1e37, 3e36, 1e-30, 0.0, 2e-40],
            1000.0,
        ),
        ("300007 of ±1e30 and ±1e-30", mixed, 0.5),
    ] {
        let expected = ops::gradient_clip_factor(&grads, clip_norm);
        assert!(
            expected > 0.0 && expected < 1e-15,
            "{what}: CPU factor {expected:e}"
        );
        for wide in gpu.packings() {
            gpu.set_wide_words(wide);
            let actual = gpu.gradient_clip_factor(&grads, clip_norm).unwrap();
            check(
                &format!("clip factor of {what} (expected {expected:.4e}, 64-bit words {wide})"),
                relative_error(&[actual], &[expected]),
            );
        }
    }
    let infinite = [1.0, f32::INFINITY, -2.0];
    assert_eq!(ops::gradient_clip_factor(&infinite, 1.0), 0.0);
    for wide in gpu.packings() {
        gpu.set_wide_words(wide);
        assert_eq!(gpu.gradient_clip_factor(&infinite, 1.0).unwrap(), 0.0);
    }
}
