//! Device limits: with the storage-binding limit lowered on purpose to 8 KiB, a data set of
//! several binding's worth is stored in chunks of whole rows and a flat parameter vector of
//! several binding's worth is updated part by part; training, evaluation and prediction must
//! then give the CPU's results (within the parity tests' 1e-4) and exactly those of the same
//! GPU with its own limits.

mod common;

use common::{gpu_device, random_matrix, relative_error};
use ndarray::Array2;
use wgrad::{
    Activation, AdapterChoice, Device, Evaluation, FitConfig, History, Model, Optimizer,
    Sequential, Targets,
};

const TOLERANCE: f32 = 1e-4;

/// Bytes per storage binding on the lowered device.
const LIMIT: u64 = 8 << 10;

fn lowered() -> Device {
    Device::Gpu(AdapterChoice {
        max_storage_binding: Some(LIMIT),
        ..Default::default()
    })
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
