//! Every bad input the public API can be given returns its own `WgradError` variant, with a
//! message that names the facts needed to fix it (row, column, value, layer, limit).
//! Everything except `buffer_too_large_names_the_tensor_and_limit` runs on the CPU.

mod common;

use ndarray::Array2;
use wgrad::train::{EarlyStopping, Monitor, Schedule};
use wgrad::{
    Activation, AdapterChoice, Device, FitConfig, Loss, Model, Optimizer, Sequential, Targets,
    WgradError,
};

/// 3 inputs -> 5 tanh -> 3 softmax (categorical cross-entropy), on the CPU.
fn softmax_model() -> Model {
    let spec = Sequential::new(3)
        .dense(5, Activation::Tanh)
        .dense(3, Activation::Softmax)
        .optimizer(Optimizer::adam(0.01))
        .seed(7);
    Model::new(spec, Device::Cpu).expect("a valid model")
}

/// 3 inputs -> 4 relu -> 1 sigmoid (binary cross-entropy), on the CPU.
fn sigmoid_model() -> Model {
    let spec = Sequential::new(3)
        .dense(4, Activation::Relu)
        .dense(1, Activation::Sigmoid)
        .optimizer(Optimizer::sgd(0.1))
        .seed(11);
    Model::new(spec, Device::Cpu).expect("a valid model")
}

/// 3 inputs -> 4 tanh -> 2 linear (mean squared error), on the CPU.
fn regression_model() -> Model {
    let spec = Sequential::new(3)
        .dense(4, Activation::Tanh)
        .dense(2, Activation::Linear)
        .optimizer(Optimizer::rmsprop(0.01))
        .seed(3);
    Model::new(spec, Device::Cpu).expect("a valid model")
}

fn x_data(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    common::random_matrix(rows, cols, 1.5, seed)
}

/// Labels 0..classes in an uneven pattern (never all equal).
fn labels(rows: usize, classes: usize) -> Targets {
    Targets::Classes((0..rows).map(|i| (i * 7 + i / 2) % classes).collect())
}

fn config() -> FitConfig {
    FitConfig {
        epochs: 2,
        batch_size: 4,
        ..Default::default()
    }
}

/// Asserts that the error's message contains every one of `parts`.
fn assert_mentions(error: &WgradError, parts: &[&str]) {
    let message = error.to_string();
    for part in parts {
        assert!(
            message.contains(part),
            "message {message:?} does not mention {part:?}"
        );
    }
}

fn new_model_error(spec: Sequential) -> WgradError {
    match Model::new(spec, Device::Cpu) {
        Ok(_) => panic!("Model::new accepted an invalid description"),
        Err(e) => e,
    }
}

/// Asserts that `spec` is rejected as `InvalidModel` with a message that mentions `parts`.
fn assert_invalid_model(spec: Sequential, parts: &[&str]) {
    let e = new_model_error(spec);
    assert!(
        matches!(e, WgradError::InvalidModel(_)),
        "expected InvalidModel, got {e:?}"
    );
    assert_mentions(&e, &["invalid model"]);
    assert_mentions(&e, parts);
}

// 1. x and y row counts differ.

#[test]
fn row_mismatch_in_fit() {
    let mut model = softmax_model();
    let e = model
        .fit(&x_data(6, 3, 1), &labels(4, 3), &config())
        .unwrap_err();
    assert!(
        matches!(
            e,
            WgradError::RowMismatch {
                x_rows: 6,
                y_rows: 4
            }
        ),
        "got {e:?}"
    );
    assert_mentions(&e, &["x has 6 rows", "y has 4"]);
}

#[test]
fn row_mismatch_in_evaluate() {
    let model = regression_model();
    let y = Targets::Values(common::random_matrix(9, 2, 1.0, 2));
    let e = model.evaluate(&x_data(7, 3, 1), &y).unwrap_err();
    assert!(
        matches!(
            e,
            WgradError::RowMismatch {
                x_rows: 7,
                y_rows: 9
            }
        ),
        "got {e:?}"
    );
    assert_mentions(&e, &["x has 7 rows", "y has 9"]);
}

// 2. x's width differs from the first layer's input width.

#[test]
fn input_width_in_fit() {
    let mut model = softmax_model();
    let e = model
        .fit(&x_data(6, 5, 1), &labels(6, 3), &config())
        .unwrap_err();
    assert!(
        matches!(
            e,
            WgradError::InputWidth {
                expected: 3,
                got: 5
            }
        ),
        "got {e:?}"
    );
    assert_mentions(&e, &["5 columns", "expects 3"]);
}

#[test]
fn input_width_in_evaluate() {
    let model = sigmoid_model();
    let e = model.evaluate(&x_data(6, 2, 1), &labels(6, 2)).unwrap_err();
    assert!(
        matches!(
            e,
            WgradError::InputWidth {
                expected: 3,
                got: 2
            }
        ),
        "got {e:?}"
    );
    assert_mentions(&e, &["2 columns", "expects 3"]);
}

#[test]
fn input_width_in_predict() {
    let model = regression_model();
    let e = model.predict(&x_data(4, 4, 1)).unwrap_err();
    assert!(
        matches!(
            e,
            WgradError::InputWidth {
                expected: 3,
                got: 4
            }
        ),
        "got {e:?}"
    );
    assert_mentions(&e, &["4 columns", "expects 3"]);
    let e = model.predict_classes(&x_data(4, 1, 2)).unwrap_err();
    assert!(
        matches!(
            e,
            WgradError::InputWidth {
                expected: 3,
                got: 1
            }
        ),
        "got {e:?}"
    );
}

// 3. A class label beyond the model's classes.

#[test]
fn label_out_of_range_softmax() {
    let mut model = softmax_model();
    let y = Targets::Classes(vec![0, 2, 1, 1, 5, 0, 7]);
    let e = model.fit(&x_data(7, 3, 1), &y, &config()).unwrap_err();
    assert!(
        matches!(
            e,
            WgradError::LabelOutOfRange {
                row: 4,
                label: 5,
                classes: 3
            }
        ),
        "got {e:?}"
    );
    assert_mentions(
        &e,
        &["label 5", "row index 4", "3 classes", "labels 0 to 2"],
    );
    let e = model.evaluate(&x_data(7, 3, 1), &y).unwrap_err();
    assert!(
        matches!(
            e,
            WgradError::LabelOutOfRange {
                row: 4,
                label: 5,
                classes: 3
            }
        ),
        "got {e:?}"
    );
}

#[test]
fn label_out_of_range_single_sigmoid_output() {
    let mut model = sigmoid_model();
    // One sigmoid output means two classes, 0 and 1: label 2 is out of range.
    let y = Targets::Classes(vec![1, 0, 0, 2, 1]);
    let e = model.fit(&x_data(5, 3, 1), &y, &config()).unwrap_err();
    assert!(
        matches!(
            e,
            WgradError::LabelOutOfRange {
                row: 3,
                label: 2,
                classes: 2
            }
        ),
        "got {e:?}"
    );
    assert_mentions(
        &e,
        &["label 2", "row index 3", "2 classes", "labels 0 to 1"],
    );
}

// 4. NaN or infinite values in x or in value targets.

#[test]
fn non_finite_nan_in_x() {
    let mut model = softmax_model();
    let mut x = x_data(6, 3, 1);
    x[[4, 2]] = f32::NAN;
    x[[5, 0]] = f32::INFINITY; // later in row-major order: the first one is reported
    let e = model.fit(&x, &labels(6, 3), &config()).unwrap_err();
    assert!(
        matches!(e, WgradError::NonFinite { what: "x", row: 4, col: 2, value } if value.is_nan()),
        "got {e:?}"
    );
    assert_mentions(&e, &["x holds", "NaN", "row index 4", "column index 2"]);
}

#[test]
fn non_finite_infinity_in_x() {
    let model = regression_model();
    let mut x = x_data(5, 3, 1);
    x[[2, 1]] = f32::NEG_INFINITY;
    let y = Targets::Values(common::random_matrix(5, 2, 1.0, 2));
    let e = model.evaluate(&x, &y).unwrap_err();
    assert!(
        matches!(e, WgradError::NonFinite { what: "x", row: 2, col: 1, value } if value == f32::NEG_INFINITY),
        "got {e:?}"
    );
    assert_mentions(&e, &["x holds", "-inf", "row index 2", "column index 1"]);

    x[[2, 1]] = 0.25;
    x[[3, 0]] = f32::INFINITY;
    let e = model.predict(&x).unwrap_err();
    assert!(
        matches!(e, WgradError::NonFinite { what: "x", row: 3, col: 0, value } if value == f32::INFINITY),
        "got {e:?}"
    );
    assert_mentions(&e, &["x holds", "inf", "row index 3", "column index 0"]);
}

#[test]
fn non_finite_in_value_targets() {
    let mut model = regression_model();
    let x = x_data(6, 3, 1);
    let mut y = common::random_matrix(6, 2, 1.0, 2);
    y[[3, 1]] = f32::NAN;
    let e = model
        .fit(&x, &Targets::Values(y.clone()), &config())
        .unwrap_err();
    assert!(
        matches!(e, WgradError::NonFinite { what: "y", row: 3, col: 1, value } if value.is_nan()),
        "got {e:?}"
    );
    assert_mentions(&e, &["y holds", "NaN", "row index 3", "column index 1"]);

    y[[3, 1]] = 0.5;
    y[[1, 0]] = f32::INFINITY;
    let e = model.evaluate(&x, &Targets::Values(y)).unwrap_err();
    assert!(
        matches!(e, WgradError::NonFinite { what: "y", row: 1, col: 0, value } if value == f32::INFINITY),
        "got {e:?}"
    );
    assert_mentions(&e, &["y holds", "inf", "row index 1", "column index 0"]);
}

// 5. No rows at all.

#[test]
fn empty_dataset() {
    let mut model = softmax_model();
    let x = Array2::<f32>::zeros((0, 3));
    let y = Targets::Classes(Vec::new());
    let e = model.fit(&x, &y, &config()).unwrap_err();
    assert!(matches!(e, WgradError::EmptyDataset(_)), "got {e:?}");
    assert_mentions(&e, &["empty", "no rows"]);
    let e = model.evaluate(&x, &y).unwrap_err();
    assert!(matches!(e, WgradError::EmptyDataset(_)), "got {e:?}");
    let e = model.predict(&x).unwrap_err();
    assert!(matches!(e, WgradError::EmptyDataset(_)), "got {e:?}");
}

// 6. Batch size 0.

#[test]
fn zero_batch_size() {
    let mut model = softmax_model();
    let config = FitConfig {
        batch_size: 0,
        ..config()
    };
    let e = model
        .fit(&x_data(6, 3, 1), &labels(6, 3), &config)
        .unwrap_err();
    assert!(matches!(e, WgradError::ZeroBatchSize), "got {e:?}");
    assert_mentions(&e, &["batch size", "got 0"]);
}

// 7. Learning rate ≤ 0 or not a number.

fn learning_rate_error(optimizer: Optimizer) -> WgradError {
    let spec = Sequential::new(3)
        .dense(4, Activation::Relu)
        .dense(2, Activation::Softmax)
        .optimizer(optimizer);
    new_model_error(spec)
}

#[test]
fn invalid_learning_rate_zero() {
    let e = learning_rate_error(Optimizer::adam(0.0));
    assert!(
        matches!(e, WgradError::InvalidLearningRate(lr) if lr == 0.0),
        "got {e:?}"
    );
    assert_mentions(&e, &["learning rate", "got 0"]);
}

#[test]
fn invalid_learning_rate_negative() {
    let e = learning_rate_error(Optimizer::sgd(-0.25));
    assert!(
        matches!(e, WgradError::InvalidLearningRate(lr) if lr == -0.25),
        "got {e:?}"
    );
    assert_mentions(&e, &["learning rate", "got -0.25"]);
}

#[test]
fn invalid_learning_rate_nan() {
    let e = learning_rate_error(Optimizer::rmsprop(f32::NAN));
    assert!(
        matches!(e, WgradError::InvalidLearningRate(lr) if lr.is_nan()),
        "got {e:?}"
    );
    assert_mentions(&e, &["learning rate", "got NaN"]);
    let e = learning_rate_error(Optimizer::momentum(f32::INFINITY, 0.9));
    assert!(
        matches!(e, WgradError::InvalidLearningRate(lr) if lr == f32::INFINITY),
        "got {e:?}"
    );
}

// 8. Descriptions that cannot be trained.

#[test]
fn invalid_model_no_layers() {
    assert_invalid_model(Sequential::new(3), &["no layers"]);
}

#[test]
fn invalid_model_zero_input_width() {
    assert_invalid_model(
        Sequential::new(0).dense(2, Activation::Linear),
        &["input width is 0"],
    );
}

#[test]
fn invalid_model_zero_units() {
    let spec = Sequential::new(3)
        .dense(4, Activation::Relu)
        .dense(0, Activation::Relu)
        .dense(1, Activation::Sigmoid);
    assert_invalid_model(spec, &["layer 1", "0 units"]);
}

#[test]
fn invalid_model_softmax_on_hidden_layer() {
    let spec = Sequential::new(3)
        .dense(4, Activation::Softmax)
        .dense(2, Activation::Softmax);
    assert_invalid_model(spec, &["layer 0", "softmax", "output layer"]);
}

#[test]
fn invalid_model_dropout_rate_one_or_more() {
    for rate in [1.0, 1.5] {
        let spec = Sequential::new(3)
            .dense(8, Activation::Relu)
            .dropout(rate)
            .dense(2, Activation::Softmax);
        assert_invalid_model(spec, &["layer 0", "dropout rate", &rate.to_string()]);
    }
    let spec = Sequential::new(3)
        .dense(8, Activation::Relu)
        .dense(6, Activation::Tanh)
        .dropout(f32::NAN)
        .dense(2, Activation::Softmax);
    assert_invalid_model(spec, &["layer 1", "dropout rate", "NaN"]);
    let spec = Sequential::new(3)
        .dense(8, Activation::Relu)
        .dropout(-0.1)
        .dense(2, Activation::Softmax);
    assert_invalid_model(spec, &["layer 0", "dropout rate", "-0.1"]);
}

#[test]
fn invalid_model_dropout_on_output_layer() {
    let spec = Sequential::new(3)
        .dense(8, Activation::Relu)
        .dense(2, Activation::Softmax)
        .dropout(0.3);
    assert_invalid_model(spec, &["dropout", "output layer"]);
}

#[test]
fn invalid_model_bce_with_relu_output() {
    let spec = Sequential::new(3)
        .dense(4, Activation::Tanh)
        .dense(1, Activation::Relu)
        .loss(Loss::BinaryCrossEntropy);
    assert_invalid_model(spec, &["bce", "sigmoid", "relu"]);
}

#[test]
fn invalid_model_ce_with_tanh_output() {
    let spec = Sequential::new(3)
        .dense(4, Activation::Relu)
        .dense(3, Activation::Tanh)
        .loss(Loss::CategoricalCrossEntropy);
    assert_invalid_model(spec, &["ce", "softmax", "tanh"]);
}

#[test]
fn invalid_model_negative_penalty() {
    let spec = Sequential::new(3)
        .dense(4, Activation::Relu)
        .dense(1, Activation::Sigmoid)
        .l2(-0.01);
    assert_invalid_model(spec, &["l2", "-0.01"]);
    let spec = Sequential::new(3)
        .dense(4, Activation::Relu)
        .dense(1, Activation::Sigmoid)
        .l1(f32::NAN);
    assert_invalid_model(spec, &["l1", "NaN"]);
}

#[test]
fn invalid_data_cross_entropy_targets_outside_unit_interval() {
    // Soft labels for a softmax output must be probabilities.
    let mut model = softmax_model();
    let x = x_data(5, 3, 1);
    let mut y = Array2::from_shape_fn((5, 3), |(r, c)| if (r + c) % 3 == 0 { 0.75 } else { 0.125 });
    y[[2, 1]] = 1.5;
    let e = model
        .fit(&x, &Targets::Values(y.clone()), &config())
        .unwrap_err();
    assert!(matches!(e, WgradError::InvalidData(_)), "got {e:?}");
    assert_mentions(
        &e,
        &[
            "invalid data",
            "[0, 1]",
            "1.5",
            "row index 2",
            "column index 1",
        ],
    );

    // The same for a sigmoid output (binary cross-entropy), with a negative target.
    let model = sigmoid_model();
    let mut y = Array2::from_shape_fn((5, 1), |(r, _)| [0.0, 1.0, 0.25, 1.0, 0.0][r]);
    y[[3, 0]] = -0.5;
    let e = model.evaluate(&x, &Targets::Values(y)).unwrap_err();
    assert!(matches!(e, WgradError::InvalidData(_)), "got {e:?}");
    assert_mentions(
        &e,
        &[
            "invalid data",
            "[0, 1]",
            "-0.5",
            "row index 3",
            "column index 0",
        ],
    );
}

#[test]
fn invalid_data_categorical_targets_that_are_not_distributions() {
    // Soft labels in [0, 1] whose rows sum to 1 train (0.75 + 0.125 + 0.125); a row of zeros
    // or of ones is a mistake in the targets.
    let x = x_data(5, 3, 1);
    let soft = Array2::from_shape_fn((5, 3), |(r, c)| if (r + c) % 3 == 0 { 0.75 } else { 0.125 });
    softmax_model()
        .fit(&x, &Targets::Values(soft.clone()), &config())
        .unwrap();
    // Rounded to two decimals (0.67 + 0.17 + 0.17), they still do.
    let rounded =
        Array2::from_shape_fn((5, 3), |(r, c)| if (r + c) % 3 == 0 { 0.67 } else { 0.17 });
    softmax_model()
        .fit(&x, &Targets::Values(rounded), &config())
        .unwrap();
    for (row, value, sum) in [(1, 0.0, "0.0000"), (4, 1.0, "3.0000")] {
        let mut y = soft.clone();
        y.row_mut(row).fill(value);
        let e = softmax_model()
            .fit(&x, &Targets::Values(y), &config())
            .unwrap_err();
        assert!(matches!(e, WgradError::InvalidData(_)), "got {e:?}");
        assert_mentions(&e, &["sum to 1", &format!("row index {row} sums to {sum}")]);
    }
}

#[test]
fn invalid_model_set_params_wrong_length() {
    let mut model = softmax_model();
    let mut params = model.params().expect("params");
    params.push(0.5);
    let e = model.set_params(&params).unwrap_err();
    assert!(matches!(e, WgradError::InvalidModel(_)), "got {e:?}");
    assert_mentions(
        &e,
        &[
            &format!("{} parameter values", params.len()),
            &format!("has {}", params.len() - 1),
        ],
    );
}

// 9. Value targets whose width differs from the output layer's.

#[test]
fn target_width() {
    let mut model = softmax_model();
    let x = x_data(5, 3, 1);
    let y = Targets::Values(Array2::from_shape_fn((5, 2), |(r, c)| {
        if (r + c) % 2 == 0 { 1.0 } else { 0.0 }
    }));
    let e = model.fit(&x, &y, &config()).unwrap_err();
    assert!(
        matches!(
            e,
            WgradError::TargetWidth {
                expected: 3,
                got: 2
            }
        ),
        "got {e:?}"
    );
    assert_mentions(&e, &["2 columns", "3 units"]);

    let model = regression_model();
    let y = Targets::Values(common::random_matrix(5, 4, 1.0, 2));
    let e = model.evaluate(&x, &y).unwrap_err();
    assert!(
        matches!(
            e,
            WgradError::TargetWidth {
                expected: 2,
                got: 4
            }
        ),
        "got {e:?}"
    );
    assert_mentions(&e, &["4 columns", "2 units"]);
}

// 10. No adapter matches: needs no GPU, passes everywhere.

#[test]
fn no_adapter_explains_how_to_fix_it() {
    let spec = Sequential::new(3)
        .dense(4, Activation::Relu)
        .dense(1, Activation::Sigmoid);
    let choice = AdapterChoice {
        name: Some("no-such-adapter-xyz".into()),
        ..Default::default()
    };
    let e = match Model::new(spec, Device::Gpu(choice)) {
        Ok(model) => panic!(
            "an adapter named like 'no-such-adapter-xyz' was found: {}",
            model.device()
        ),
        Err(e) => e,
    };
    assert!(
        matches!(e, WgradError::NoAdapter { ref detail } if detail.contains("no-such-adapter-xyz")),
        "got {e:?}"
    );
    assert_mentions(
        &e,
        &["no GPU adapter", "no-such-adapter-xyz", "Device::Cpu"],
    );
    // Where there are adapters, the way out is to pick one of them, not to install a driver.
    let message = e.to_string();
    if message.contains("adapters present") {
        assert_mentions(&e, &["Choose one of those"]);
        assert!(!message.contains("mesa-vulkan-drivers"), "{message}");
    } else {
        assert_mentions(&e, &["mesa-vulkan-drivers"]);
    }
}

// 11. A weight whose smallest block of rows is larger than one storage binding: needs a GPU
// adapter. (Weights larger than a binding are split into blocks of rows, tests/device_limits.rs;
// a block is at least 4 rows.)

#[test]
fn buffer_too_large_names_the_tensor_and_limit() {
    const TEST: &str = "buffer_too_large_names_the_tensor_and_limit";
    if common::skip_gpu(TEST) {
        return;
    }
    const LIMIT: u64 = 4 << 10;
    // layers.0.weight is [8, 3000]: a block of 4 rows is 48,000 bytes > 4 KiB.
    let spec = Sequential::new(3000)
        .dense(8, Activation::Relu)
        .dense(1, Activation::Sigmoid);
    let choice = AdapterChoice {
        max_storage_binding: Some(LIMIT),
        ..Default::default()
    };
    let e = match Model::new(spec, Device::Gpu(choice)) {
        Ok(model) => panic!(
            "{TEST}: a weight whose rows cannot fit a 4 KiB binding was accepted on {}",
            model.device()
        ),
        Err(e) => e,
    };
    if let WgradError::NoAdapter { .. } = e {
        panic!("{TEST}: {}\n  ({e})", common::NO_ADAPTER_HELP);
    }
    match &e {
        WgradError::BufferTooLarge {
            what,
            bytes,
            limit,
            limit_name,
            ..
        } => {
            assert!(
                what.contains("layers.0.weight [8, 3000]"),
                "what = {what:?}"
            );
            assert!(what.contains("blocks of"), "what = {what:?}");
            assert!(
                *bytes >= 4 * 3000 * 4 && bytes % (4 * 3000 * 4) == 0,
                "bytes = {bytes}"
            );
            assert_eq!(*limit, LIMIT);
            assert_eq!(*limit_name, "storage binding");
        }
        other => panic!("{TEST}: expected BufferTooLarge, got {other:?}"),
    }
    assert_mentions(&e, &["layers.0.weight", "4096", "storage binding"]);
}

#[test]
fn invalid_model_optimizer_hyper_parameters() {
    let base = || {
        Sequential::new(3)
            .dense(4, Activation::Tanh)
            .dense(2, Activation::Linear)
    };
    let adam = |beta1, beta2, epsilon| Optimizer::Adam {
        learning_rate: 0.01,
        beta1,
        beta2,
        epsilon,
    };
    assert_invalid_model(
        base().optimizer(adam(1.0, 0.999, 1e-8)),
        &["adam", "beta1", "1"],
    );
    assert_invalid_model(base().optimizer(adam(0.9, -0.1, 1e-8)), &["beta2", "-0.1"]);
    assert_invalid_model(
        base().optimizer(adam(0.9, 0.999, f32::NAN)),
        &["epsilon", "NaN"],
    );
    assert_invalid_model(
        base().optimizer(Optimizer::momentum(0.1, -3.0)),
        &["momentum", "-3"],
    );
    let rmsprop = Optimizer::RmsProp {
        learning_rate: 0.01,
        rho: 1.5,
        epsilon: 1e-7,
    };
    assert_invalid_model(base().optimizer(rmsprop), &["rho", "1.5"]);
}

#[test]
fn invalid_model_single_unit_softmax() {
    let softmax = Sequential::new(3)
        .dense(4, Activation::Relu)
        .dense(1, Activation::Softmax);
    assert_invalid_model(softmax, &["at least 2 units", "sigmoid"]);
    let logits_ce = Sequential::new(3)
        .dense(4, Activation::Relu)
        .dense(1, Activation::Linear)
        .loss(Loss::CategoricalCrossEntropy);
    assert_invalid_model(logits_ce, &["at least 2 units"]);
}

#[test]
fn invalid_model_dropout_before_any_layer() {
    let spec = Sequential::new(3).dropout(0.5).dense(2, Activation::Linear);
    assert_invalid_model(spec, &["dropout", "follow a dense"]);
}

#[test]
fn invalid_model_too_many_parameters_from_code() {
    // A width that would overflow the parameter count, and one that is merely too large:
    // both are refused by `Model::new` (through `validate`) before anything is allocated.
    let absurd = Sequential::new(784)
        .dense(1_000_000_000_000, Activation::Relu)
        .dense(10, Activation::Softmax);
    assert_invalid_model(absurd, &["layer 0", "1000000000000 units", "parameters"]);
    let too_large = Sequential::new(10)
        .dense(50_000, Activation::Relu)
        .dense(30_000, Activation::Relu)
        .dense(2, Activation::Softmax);
    assert_invalid_model(too_large, &["layer 1", "50000 inputs x 30000 units"]);
}

#[test]
fn set_params_rejects_non_finite_values() {
    let mut model = regression_model();
    let mut params = model.params().unwrap();
    params[5] = f32::NAN;
    let error = model.set_params(&params).unwrap_err();
    assert!(matches!(error, WgradError::InvalidModel(_)), "{error:?}");
    assert_mentions(&error, &["parameter 5", "layers.0.weight", "NaN"]);
}

#[test]
fn gpu_batch_and_layer_extent_limits() {
    if common::skip_gpu("gpu_batch_and_layer_extent_limits") {
        return;
    }
    let gpu = || Device::Gpu(AdapterChoice::default());
    let spec = Sequential::new(3)
        .dense(4, Activation::Tanh)
        .dense(2, Activation::Softmax);
    let mut model =
        Model::new(spec, gpu()).unwrap_or_else(|e| panic!("{}: {e}", common::NO_ADAPTER_HELP));
    let x = x_data(70_001, 3, 1);
    let config = FitConfig {
        epochs: 1,
        batch_size: 70_001,
        ..Default::default()
    };
    let error = model.fit(&x, &labels(70_001, 2), &config).unwrap_err();
    assert!(matches!(error, WgradError::InvalidConfig(_)), "{error:?}");
    assert_mentions(&error, &["invalid setting", "batch size 70001", "65535"]);
    let wide = Sequential::new(70_000).dense(2, Activation::Softmax);
    let error = Model::new(wide, gpu()).expect_err("a 70,000-wide layer is refused on the GPU");
    assert_mentions(&error, &["layer 0 is 70000 wide", "65535"]);
}

// 12. Fit settings that cannot work, or are likely mistakes: `InvalidConfig`, never
// "invalid model" (the model is fine).

/// The error `fit` gives `config` on the softmax model (base learning rate 0.01), after
/// checking that it is `InvalidConfig` and mentions "invalid setting" and `parts`.
fn assert_invalid_setting(config: FitConfig, parts: &[&str]) {
    let mut model = softmax_model();
    let e = model
        .fit(&x_data(12, 3, 1), &labels(12, 3), &config)
        .expect_err("fit accepted an invalid setting");
    assert!(matches!(e, WgradError::InvalidConfig(_)), "got {e:?}");
    assert_mentions(&e, &["invalid setting"]);
    assert_mentions(&e, parts);
}

fn early_stopping(patience: usize, min_delta: f32) -> FitConfig {
    FitConfig {
        early_stopping: Some(EarlyStopping {
            monitor: Monitor::Loss,
            patience,
            min_delta,
            restore_best: true,
        }),
        ..config()
    }
}

#[test]
fn invalid_setting_schedule_and_clip_norm() {
    let schedule = |schedule| FitConfig {
        schedule,
        ..config()
    };
    assert_invalid_setting(
        schedule(Schedule::Step {
            every: 0,
            factor: 0.5,
        }),
        &["step schedule", "every"],
    );
    assert_invalid_setting(
        schedule(Schedule::Exponential { rate: f32::NAN }),
        &["exponential schedule rate", "NaN"],
    );
    let clip = FitConfig {
        clip_norm: Some(0.0),
        ..config()
    };
    assert_invalid_setting(clip, &["clip_norm", "got 0"]);
}

#[test]
fn invalid_setting_cosine_schedule_rising_above_the_base_rate() {
    // The softmax model's Adam rate is 0.01: a minimum of 0.5 would make the rate rise.
    let rising = FitConfig {
        schedule: Schedule::Cosine {
            epochs: 2,
            min_lr: 0.5,
        },
        ..config()
    };
    assert_invalid_setting(rising, &["min_lr 0.5", "base learning rate 0.01"]);
    // Down to the base rate itself (a constant rate) is allowed.
    let flat = FitConfig {
        schedule: Schedule::Cosine {
            epochs: 2,
            min_lr: 0.01,
        },
        ..config()
    };
    softmax_model()
        .fit(&x_data(12, 3, 1), &labels(12, 3), &flat)
        .unwrap();
}

#[test]
fn invalid_setting_early_stopping_min_delta_and_patience() {
    assert_invalid_setting(early_stopping(2, f32::NAN), &["min_delta", "NaN"]);
    assert_invalid_setting(early_stopping(2, -0.1), &["min_delta", "-0.1"]);
    assert_invalid_setting(early_stopping(0, 0.0), &["patience", "at least 1"]);
}

#[test]
fn invalid_setting_early_stopping_monitor() {
    let val_loss = FitConfig {
        early_stopping: Some(EarlyStopping::new(Monitor::ValLoss, 2)),
        ..config()
    };
    assert_invalid_setting(val_loss, &["val_loss", "no validation data"]);
    let mut model = regression_model();
    let accuracy = FitConfig {
        early_stopping: Some(EarlyStopping::new(Monitor::Accuracy, 2)),
        ..config()
    };
    let y = Targets::Values(common::random_matrix(8, 2, 1.0, 2));
    let e = model.fit(&x_data(8, 3, 1), &y, &accuracy).unwrap_err();
    assert!(matches!(e, WgradError::InvalidConfig(_)), "got {e:?}");
    assert_mentions(
        &e,
        &["invalid setting", "accuracy", "Targets::from_one_hot"],
    );
}

// 13. Errors in `fit_with`'s validation data say so, wrapping the error the same data would
// give as training data.

/// The error `fit_with` gives for the validation set (vx, vy) next to valid training data,
/// after checking that it is `ValidationData` and says "validation data:" first.
fn validation_error(vx: &Array2<f32>, vy: &Targets) -> WgradError {
    let mut model = softmax_model();
    let e = model
        .fit_with(
            &x_data(12, 3, 1),
            &labels(12, 3),
            &config(),
            Some((vx, vy)),
            &mut [],
        )
        .expect_err("fit_with accepted invalid validation data");
    let message = e.to_string();
    assert!(message.starts_with("validation data: "), "{message}");
    match e {
        WgradError::ValidationData(inner) => *inner,
        other => panic!("expected ValidationData, got {other:?}"),
    }
}

#[test]
fn validation_data_errors_name_the_validation_set() {
    let mut vx = x_data(6, 3, 2);
    vx[[2, 1]] = f32::NAN;
    let e = validation_error(&vx, &labels(6, 3));
    assert!(
        matches!(e, WgradError::NonFinite { what: "x", row: 2, col: 1, value } if value.is_nan()),
        "got {e:?}"
    );
    let e = validation_error(&x_data(6, 3, 2), &labels(2, 3));
    assert!(
        matches!(
            e,
            WgradError::RowMismatch {
                x_rows: 6,
                y_rows: 2
            }
        ),
        "got {e:?}"
    );
    let e = validation_error(&x_data(6, 4, 2), &labels(6, 3));
    assert!(
        matches!(
            e,
            WgradError::InputWidth {
                expected: 3,
                got: 4
            }
        ),
        "got {e:?}"
    );
    let e = validation_error(&Array2::zeros((0, 3)), &labels(0, 3));
    assert!(matches!(e, WgradError::EmptyDataset(_)), "got {e:?}");
    let e = validation_error(&x_data(6, 3, 2), &Targets::Classes(vec![0, 1, 2, 3, 0, 1]));
    assert!(
        matches!(
            e,
            WgradError::LabelOutOfRange {
                row: 3,
                label: 3,
                classes: 3
            }
        ),
        "got {e:?}"
    );
}
