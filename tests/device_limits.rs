//! Device limits: with the storage-binding limit lowered on purpose to 8 KiB, a data set of
//! several binding's worth is stored in chunks of whole rows, a flat parameter vector of
//! several binding's worth is updated part by part, and a weight larger than one binding is
//! split by output units into blocks of rows; training, evaluation and prediction must then
//! give the CPU's results (within the parity tests' 1e-4) and those of the same GPU with its
//! own limits (bit for bit where only data and flat vectors are split).

mod common;

use common::{
    cpu_dense_backward_input, cpu_dense_forward, cpu_grad_weights_and_bias, gpu_device,
    kernel_runner_on, random_matrix, random_vector, relative_error,
};
use ndarray::Array2;
use wgrad::cpu::ops::Dropout;
use wgrad::gpu::dense::weight_blocks;
use wgrad::gpu::matmul::MATMUL_CONFIGS;
use wgrad::{
    Activation, AdapterChoice, Device, Evaluation, FitConfig, History, Model, Optimizer,
    Sequential, Targets,
};

const TOLERANCE: f32 = 1e-4;

/// Bytes per storage binding on the lowered device.
const LIMIT: u64 = 8 << 10;

fn lowered_adapter() -> AdapterChoice {
    AdapterChoice {
        max_storage_binding: Some(LIMIT),
        ..Default::default()
    }
}

fn lowered() -> Device {
    Device::Gpu(lowered_adapter())
}

/// x-W0-W1-W2-W3 softmax with dropout, L1 and L2, under Adam. The flat parameter vector
/// (tensors aligned to 64 elements) spans three 8 KiB bindings, parts that split layers.1.weight
/// and layers.3.weight between them; every tensor fits one binding on its own.
fn classifier(inputs: usize) -> Sequential {
    Sequential::new(inputs)
        .dense(48, Activation::Tanh)
        .dropout(0.2)
        .dense(40, Activation::Relu)
        .dense(30, Activation::Sigmoid)
        .dense(5, Activation::Softmax)
        .optimizer(Optimizer::adam(0.003))
        .l2(1e-3)
        .l1(1e-4)
        .seed(5)
}

fn classes(n: usize) -> Targets {
    Targets::Classes((0..n).map(|i| (i * 7 + i / 3) % 5).collect())
}

/// 8-bit data (every value k/255), stored on the GPU one byte a value.
fn bytes_matrix(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    random_matrix(rows, cols, 1.0, seed).mapv(|v| ((v + 1.0) * 127.5).floor() / 255.0)
}

/// What one device made of the same training: weights, epoch losses, validation losses,
/// an evaluation and predictions on held-out data.
struct Run {
    params: Vec<f32>,
    losses: Vec<f32>,
    val_losses: Vec<f32>,
    evaluation: Evaluation,
    predictions: Array2<f32>,
}

struct Case<'a> {
    spec: Sequential,
    x: &'a Array2<f32>,
    y: &'a Targets,
    held_out: (&'a Array2<f32>, &'a Targets),
    config: FitConfig,
}

impl Case<'_> {
    fn run(&self, device: Device) -> Run {
        let mut model = Model::new(self.spec.clone(), device).unwrap_or_else(|e| panic!("{e}"));
        let history: History = model
            .fit_with(self.x, self.y, &self.config, Some(self.held_out), &mut [])
            .unwrap_or_else(|e| panic!("training on {}: {e}", model.device()));
        Run {
            params: model.params().unwrap(),
            losses: history.losses(),
            val_losses: history.epochs.iter().filter_map(|e| e.val_loss).collect(),
            evaluation: model.evaluate(self.held_out.0, self.held_out.1).unwrap(),
            predictions: model.predict(self.held_out.0).unwrap(),
        }
    }

    /// Trains on the CPU, on the GPU with its own limits and on the GPU with the lowered
    /// limit; `exact` asks the two GPU runs to agree bit for bit.
    fn compare(&self, what: &str, exact: bool) {
        let Some(gpu) = gpu_device(what) else { return };
        let started = std::time::Instant::now();
        let cpu = self.run(Device::Cpu);
        let full = self.run(gpu);
        let split = self.run(lowered());
        let moved = relative_error(&cpu.params, &self.spec.initial_params());
        assert!(moved > 1e-3, "{what}: training barely moved the weights");
        let pairs: [(&str, &[f32], &[f32]); 4] = [
            ("weights", &split.params, &cpu.params),
            ("epoch losses", &split.losses, &cpu.losses),
            ("validation losses", &split.val_losses, &cpu.val_losses),
            (
                "predictions",
                split.predictions.as_slice().unwrap(),
                cpu.predictions.as_slice().unwrap(),
            ),
        ];
        for (name, split_values, cpu_values) in pairs {
            let error = relative_error(split_values, cpu_values);
            assert!(
                error <= TOLERANCE,
                "{what}: {name} under the lowered limit differ from the CPU's by {error:e}"
            );
        }
        let loss_error = (split.evaluation.loss - cpu.evaluation.loss).abs() / cpu.evaluation.loss;
        assert!(
            loss_error <= TOLERANCE,
            "{what}: evaluation loss {loss_error:e} off"
        );
        assert_eq!(split.evaluation.accuracy, cpu.evaluation.accuracy, "{what}");
        let error = relative_error(&split.params, &full.params);
        if exact {
            assert_eq!(
                split.params, full.params,
                "{what}: the split run's weights differ from the unsplit GPU run's ({error:e})"
            );
            assert_eq!(split.losses, full.losses, "{what}: epoch losses");
            assert_eq!(
                split.val_losses, full.val_losses,
                "{what}: validation losses"
            );
            assert_eq!(split.evaluation, full.evaluation, "{what}: evaluation");
            assert_eq!(split.predictions, full.predictions, "{what}: predictions");
        } else {
            assert!(
                error <= 1e-5,
                "{what}: the split run's weights differ from the unsplit GPU run's by {error:e}"
            );
        }
        println!(
            "{what}: split vs CPU {:.2e}, split vs unsplit GPU {error:.2e} ({:.1} s)",
            relative_error(&split.params, &cpu.params),
            started.elapsed().as_secs_f64()
        );
    }
}

/// 500 rows of 24 f32 features (96 bytes a row): chunks of 85 rows, the last of 75, six in
/// all; the 450 held-out rows make six chunks too. Batches of 40 (13 steps an epoch, the last
/// one of 20 rows), shuffled, 2 epochs.
#[test]
fn f32_data_and_parameters_split_across_bindings() {
    let (rows, inputs) = (500, 24);
    assert!((rows * inputs * 4) as u64 > 5 * LIMIT);
    let spec = classifier(inputs);
    assert!(spec.param_layout().len * 4 > 2 * LIMIT as usize);
    let (x, y) = (random_matrix(rows, inputs, 1.0, 11), classes(rows));
    let (held_x, held_y) = (random_matrix(450, inputs, 1.0, 12), classes(450));
    Case {
        spec,
        x: &x,
        y: &y,
        held_out: (&held_x, &held_y),
        config: FitConfig {
            epochs: 2,
            batch_size: 40,
            seed: 3,
            ..Default::default()
        },
    }
    .compare("f32 data in 6 chunks, parameters in 3 parts", true);
}

/// 8-bit data, one byte a value: 700 rows of 30 (the one-hot targets, 20 bytes a row, fit
/// more rows), chunks of 273 rows — 8190 bytes, not a whole number of 4-byte words — the
/// last of 154. With gradient clipping, whose norm is reduced part by part.
#[test]
fn byte_data_split_and_clipped_gradients() {
    let (rows, inputs) = (700, 30);
    assert!((rows * inputs) as u64 > 2 * LIMIT);
    let (x, y) = (bytes_matrix(rows, inputs, 21), classes(rows));
    let (held_x, held_y) = (bytes_matrix(300, inputs, 22), classes(300));
    Case {
        spec: classifier(inputs),
        x: &x,
        y: &y,
        held_out: (&held_x, &held_y),
        config: FitConfig {
            epochs: 1,
            batch_size: 32,
            seed: 4,
            clip_norm: Some(0.05),
            ..Default::default()
        },
    }
    .compare(
        "8-bit data in 3 chunks, clipped, parameters in 3 parts",
        false,
    );
}

/// x-W0-W1-W2 softmax whose first two weights are larger than one 8 KiB binding: W0
/// [100, 24] (9,600 bytes) and W1 [70, 100] (28,000 bytes) are trained in blocks of rows, the
/// last block of each shorter than the others; dropout after the first layer.
fn wide_classifier(inputs: usize) -> Sequential {
    Sequential::new(inputs)
        .dense(100, Activation::Tanh)
        .dropout(0.2)
        .dense(70, Activation::Relu)
        .dense(5, Activation::Softmax)
        .optimizer(Optimizer::adam(0.003))
        .l2(1e-3)
        .seed(6)
}

/// A dense layer's three products with its weight in blocks of rows, against their CPU twins:
/// every matmul configuration, the hidden activations in turn, with and without dropout, at
/// odd shapes (a short last block) and at shapes whose blocks are read as vec4s.
#[test]
fn dense_products_with_the_weight_in_blocks() {
    const TEST: &str = "dense_products_with_the_weight_in_blocks";
    let Some(mut gpu) = kernel_runner_on(TEST, &lowered_adapter()) else {
        return;
    };
    // (units, fan_in, batch); the weights span 2 to 3 bindings.
    let shapes = [(77, 53, 13), (136, 28, 12), (61, 97, 5)];
    let activations = [
        Activation::Tanh,
        Activation::Relu,
        Activation::Sigmoid,
        Activation::LeakyRelu,
        Activation::Linear,
    ];
    let check = |what: &str, error: f32| {
        println!("{what:<60} max relative error {error:.2e}");
        assert!(error <= TOLERANCE, "{what}: relative error {error:.3e}");
    };
    for (i, &(units, fan_in, batch)) in shapes.iter().enumerate() {
        let blocks = weight_blocks(&gpu.ctx, "w", units, fan_in).unwrap();
        assert!(blocks.len() >= 2, "{units}x{fan_in}: {blocks:?}");
        // Contiguous, covering every unit, each within a binding and starting at 4k rows.
        assert_eq!(blocks.first().unwrap().start, 0);
        assert_eq!(blocks.last().unwrap().end, units);
        for (block, next) in blocks.iter().zip(&blocks[1..]) {
            assert_eq!(block.end, next.start, "{blocks:?}");
        }
        for block in &blocks {
            assert!(block.start % 4 == 0 && !block.is_empty(), "{blocks:?}");
            assert!((block.len() * fan_in * 4) as u64 <= LIMIT, "{blocks:?}");
        }
        let seed = 100 + 10 * i as u64;
        let x = random_matrix(batch, fan_in, 1.0, seed);
        let w = random_matrix(units, fan_in, 0.5, seed + 1);
        let b = random_vector(units, 0.5, seed + 2);
        let dz = random_matrix(batch, units, 1.0, seed + 3);
        let subgroup_size = gpu.ctx.subgroup_size;
        let supported = MATMUL_CONFIGS
            .iter()
            .enumerate()
            .filter(|(_, c)| c.supported(subgroup_size));
        for (config, spec) in supported {
            gpu.set_matmul_config(config);
            let activation = activations[(i + config) % activations.len()];
            let what = format!(
                "{} {units}x{fan_in} batch {batch} in {} blocks",
                spec.name,
                blocks.len()
            );
            for drop in [
                None,
                Some(Dropout {
                    rate: 0.3,
                    seed: 99,
                    step: 5,
                    layer: 1,
                }),
            ] {
                let expected = cpu_dense_forward(x.view(), w.view(), b.view(), activation, drop);
                let actual = gpu
                    .dense_forward(x.view(), w.view(), b.view(), activation, drop)
                    .unwrap();
                if drop.is_some() && activation != Activation::Relu {
                    let kept = |a: &Array2<f32>| a.iter().map(|v| *v != 0.0).collect::<Vec<_>>();
                    assert_eq!(kept(&actual), kept(&expected), "{what}: dropout masks");
                }
                let tag = format!("{what} {activation:?} dropout={}", drop.is_some());
                check(
                    &format!("{tag} forward"),
                    relative_error(&actual, &expected),
                );
                // The input gradient of a layer whose input x came out of `activation`.
                let input = x.mapv(|v| activation.apply(v));
                let expected =
                    cpu_dense_backward_input(dz.view(), w.view(), input.view(), activation, drop);
                let actual = gpu
                    .dense_backward_input(dz.view(), w.view(), input.view(), activation, drop)
                    .unwrap();
                check(
                    &format!("{tag} input gradient"),
                    relative_error(&actual, &expected),
                );
            }
            let (expected_w, expected_b) = cpu_grad_weights_and_bias(dz.view(), x.view());
            let (grad_w, grad_b) = gpu.grad_weights_and_bias(dz.view(), x.view()).unwrap();
            check(
                &format!("{what} weight gradient"),
                relative_error(&grad_w, &expected_w),
            );
            check(
                &format!("{what} bias gradient"),
                relative_error(&grad_b, &expected_b),
            );
        }
    }
}

/// Training with two weights larger than one binding (in 2 and 4 blocks of rows), with
/// dropout, and the data in chunks: the CPU's results within 1e-4, the unsplit GPU's within
/// 1e-5 (the input gradient adds the blocks' partial sums in another order).
#[test]
fn weights_larger_than_a_binding_train_in_blocks() {
    let (rows, inputs) = (300, 24);
    let (x, y) = (random_matrix(rows, inputs, 1.0, 41), classes(rows));
    let (held_x, held_y) = (random_matrix(120, inputs, 1.0, 42), classes(120));
    let spec = wide_classifier(inputs);
    for i in 0..2 {
        let weight = &spec.param_layout().tensors[2 * i];
        assert!(
            weight.len * 4 > LIMIT as usize,
            "{} fits one binding",
            weight.name
        );
    }
    Case {
        spec,
        x: &x,
        y: &y,
        held_out: (&held_x, &held_y),
        config: FitConfig {
            epochs: 2,
            batch_size: 16,
            seed: 7,
            ..Default::default()
        },
    }
    .compare("weights in blocks of rows", false);
}

/// What stays an error under the lowered limit: a data set whose sample order (4 bytes a row)
/// needs more than one binding, named as such before any step runs.
#[test]
fn sample_order_larger_than_a_binding_is_a_clear_error() {
    const TEST: &str = "sample_order_larger_than_a_binding_is_a_clear_error";
    if common::skip_gpu(TEST) {
        return;
    }
    let rows = 2100; // 8400 bytes of order > 8 KiB; the data itself would be chunked
    let mut model = Model::new(classifier(3), lowered())
        .unwrap_or_else(|e| panic!("{TEST}: {}\n  ({e})", common::NO_ADAPTER_HELP));
    let config = FitConfig {
        epochs: 1,
        batch_size: 40,
        ..Default::default()
    };
    let error = model
        .fit(&random_matrix(rows, 3, 1.0, 31), &classes(rows), &config)
        .expect_err("an 8400-byte sample order under an 8 KiB binding limit");
    match &error {
        wgrad::WgradError::BufferTooLarge {
            what, bytes, limit, ..
        } => {
            assert!(what.contains("sample order of the training data"), "{what}");
            assert_eq!((*bytes, *limit), (4 * rows as u64, LIMIT));
        }
        other => panic!("{TEST}: expected BufferTooLarge, got {other:?}"),
    }
    let before = model.params().unwrap();
    assert_eq!(before, classifier(3).initial_params(), "no step ran");
}
