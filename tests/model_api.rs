//! What a user coming from Keras, PyTorch or scikit-learn reaches for on a `Model`: `Debug`
//! (for `unwrap_err`), `Send` (training on another thread), array views as inputs, 1-D and
//! integer targets, and per-layer weights. Each device-dependent check runs on the CPU and GPU.

mod common;

use ndarray::{Array2, s};
use wgrad::{Activation, Device, FitConfig, Model, Optimizer, Sequential, Targets, WgradError};

/// A `cpu` and a `gpu` test of `check(device)`; the GPU one follows `common::gpu_device`.
macro_rules! on_both_devices {
    ($check:ident) => {
        mod $check {
            #[test]
            fn cpu() {
                super::$check(wgrad::Device::Cpu);
            }

            #[test]
            fn gpu() {
                if let Some(gpu) = crate::common::gpu_device(concat!(stringify!($check), "::gpu")) {
                    super::$check(gpu);
                }
            }
        }
    };
}

/// 4 inputs -> 16 relu -> 3 softmax, seeded.
fn classifier_spec() -> Sequential {
    Sequential::new(4)
        .dense(16, Activation::Relu)
        .dense(3, Activation::Softmax)
        .optimizer(Optimizer::adam(0.01))
        .seed(9)
}

fn classifier(device: Device) -> Model {
    Model::new(classifier_spec(), device).expect("a valid model on an available device")
}

/// 40 random samples in [-2, 2)⁴ with a class from where they lie.
fn data() -> (Array2<f32>, Targets) {
    let x = common::random_matrix(40, 4, 2.0, 21);
    let labels = x
        .rows()
        .into_iter()
        .map(|r| usize::from(r[0] - r[3] > 0.0) + usize::from(r[1] > 0.7))
        .collect::<Vec<_>>();
    (x, Targets::Classes(labels))
}

/// 2 epochs of 5 batches of 8, unshuffled: 10 steps.
fn config() -> FitConfig {
    FitConfig {
        epochs: 2,
        batch_size: 8,
        shuffle: false,
        ..Default::default()
    }
}

fn bits(values: &Array2<f32>) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

// Debug and Send.

/// `Model` is `Send` and `Sync`: checked when this file compiles.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Model>();
};

#[test]
fn construction_errors_unwrap_as_errors() {
    let error = Model::new(
        Sequential::new(0).dense(2, Activation::Softmax),
        Device::Cpu,
    )
    .expect_err("an input width of 0 is refused");
    assert!(matches!(error, WgradError::InvalidModel(_)), "{error}");
}

fn debug_names_architecture_device_and_steps(device: Device) {
    let mut model = classifier(device);
    let (x, y) = data();
    model.fit(&x, &y, &config()).expect("training");
    let text = format!("{model:?}");
    for part in [
        "Model {",
        "4-16-3 (relu, softmax)",
        "adam (lr 0.01, beta1 0.9, beta2 0.999, epsilon 1e-8)",
        &model.device(),
        "steps: 10",
    ] {
        assert!(text.contains(part), "{text:?} does not mention {part:?}");
    }
    assert!(text.len() < 200, "no weights in Debug: {text:?}");
}
on_both_devices!(debug_names_architecture_device_and_steps);

/// A model moved to another thread trains there as it would have here.
fn trains_on_another_thread(device: Device) {
    let (x, y) = data();
    let mut here = classifier(device.clone());
    here.fit(&x, &y, &config()).expect("training");

    let moved = classifier(device);
    let (thread_x, thread_y) = (x.clone(), y.clone());
    let there = std::thread::spawn(move || {
        let mut model = moved;
        model
            .fit(&thread_x, &thread_y, &config())
            .expect("training");
        model
    })
    .join()
    .expect("the training thread");
    assert_eq!(
        bits(&there.predict(&x).unwrap()),
        bits(&here.predict(&x).unwrap())
    );
}
on_both_devices!(trains_on_another_thread);

/// A trained model shared by threads (`Arc<Model>`, no lock of the caller's) evaluates and
/// predicts in each as it does alone.
fn predicts_from_shared_references(device: Device) {
    let (x, y) = data();
    let mut model = classifier(device);
    model.fit(&x, &y, &config()).expect("training");
    let alone = (
        bits(&model.predict(&x).unwrap()),
        model.evaluate(&x, &y).unwrap(),
    );
    let model = std::sync::Arc::new(model);
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (model, x, y) = (model.clone(), x.clone(), y.clone());
            std::thread::spawn(move || {
                (0..4)
                    .map(|_| {
                        (
                            bits(&model.predict(&x).unwrap()),
                            model.evaluate(&x, &y).unwrap(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for thread in threads {
        for result in thread.join().expect("a predicting thread") {
            assert_eq!(result, alone);
        }
    }
}
on_both_devices!(predicts_from_shared_references);

// Views as inputs.

/// Views (a slice of rows, every other row, a column-major copy) are taken without copying
/// and give what their owned copies give.
fn views_are_inputs(device: Device) {
    let (x, y) = data();
    let Targets::Classes(labels) = &y else {
        unreachable!("data() gives class labels")
    };
    let every_other = x.slice(s![..;2, ..]);
    let every_other_y = Targets::from(labels.iter().step_by(2).copied().collect::<Vec<_>>());
    let mut on_view = classifier(device.clone());
    let mut on_copy = classifier(device);
    on_view
        .fit(&every_other, &every_other_y, &config())
        .unwrap();
    on_copy
        .fit(&every_other.to_owned(), &every_other_y, &config())
        .unwrap();
    assert_eq!(on_view.params().unwrap(), on_copy.params().unwrap());

    let first = x.slice(s![..10, ..]);
    let all = on_view.predict(&x).unwrap();
    assert_eq!(
        bits(&on_view.predict(&first).unwrap()),
        bits(&all.slice(s![..10, ..]).to_owned())
    );
    let column_major = x.t().to_owned();
    assert_eq!(
        bits(&on_view.predict(&column_major.t()).unwrap()),
        bits(&all)
    );
    assert_eq!(
        on_view.predict_classes(&first).unwrap(),
        on_view.predict_classes(&first.to_owned()).unwrap()
    );
    assert_eq!(
        on_view.evaluate(&every_other, &every_other_y).unwrap(),
        on_view
            .evaluate(&every_other.to_owned(), &every_other_y)
            .unwrap()
    );
}
on_both_devices!(views_are_inputs);

// Targets.

/// Labels of any integer type are classes; a 1-D float array is one column of values.
#[test]
fn targets_from_labels_and_one_dimensional_values() {
    let labels = vec![2usize, 0, 1, 1, 0];
    let bytes: Vec<u8> = labels.iter().map(|&l| l as u8).collect();
    let longs: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    // Integer literals still infer `usize`: no other `From<Vec<_>>` competes.
    assert_eq!(
        Targets::from(vec![2, 0, 1, 1, 0]),
        Targets::from(labels.clone())
    );
    assert_eq!(
        Targets::from_labels(&bytes).unwrap(),
        Targets::from(labels.clone())
    );
    assert_eq!(
        Targets::from_labels(&longs).unwrap(),
        Targets::Classes(labels)
    );
    let error = Targets::from_labels(&[0i64, 1, -1]).unwrap_err();
    assert!(matches!(error, WgradError::InvalidData(_)), "{error}");
    assert!(
        error.to_string().contains("label -1 at row index 2"),
        "{error}"
    );

    let values = common::random_vector(5, 3.0, 4);
    let column = values.clone().insert_axis(ndarray::Axis(1));
    assert_eq!(Targets::from(values), Targets::Values(column));
}

/// A regression model trains on 1-D targets as on their one-column array.
#[test]
fn one_dimensional_regression_targets() {
    let x = common::random_matrix(40, 4, 1.0, 8);
    let y = x.map_axis(ndarray::Axis(1), |r| r[0] * r[1] - 0.5 * r[2] + r[3]);
    let spec = Sequential::new(4)
        .dense(8, Activation::Tanh)
        .dense(1, Activation::Linear)
        .seed(2);
    let mut from_1d = Model::new(spec.clone(), Device::Cpu).unwrap();
    let mut from_2d = Model::new(spec, Device::Cpu).unwrap();
    let history = from_1d.fit(&x, &y.clone().into(), &config()).unwrap();
    from_2d
        .fit(&x, &y.insert_axis(ndarray::Axis(1)).into(), &config())
        .unwrap();
    assert_eq!(history.last().unwrap().accuracy, None, "value targets");
    assert_eq!(from_1d.params().unwrap(), from_2d.params().unwrap());
}

// Per-layer weights.

/// The classifier's outputs computed on the host from its layer weights, as PyTorch's
/// `softmax(relu(x @ W0.T + b0) @ W1.T + b1)`.
fn host_forward(model: &mut Model, x: &Array2<f32>) -> Array2<f32> {
    let (w0, b0) = model.layer_weights(0).unwrap();
    let (w1, b1) = model.layer_weights(1).unwrap();
    let hidden = (x.dot(&w0.t()) + &b0).mapv(|v| v.max(0.0));
    let mut out = hidden.dot(&w1.t()) + &b1;
    for mut row in out.rows_mut() {
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row /= sum;
    }
    out
}

fn max_difference(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    (a - b).iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// `layer_weights` gives each layer's `[out, in]` weight and `[out]` bias without padding;
/// `set_layer_weights` (from views, one transposed) replaces one layer and nothing else.
fn layer_weights_round_trip(device: Device) {
    let (x, y) = data();
    let mut model = classifier(device);
    model.fit(&x, &y, &config()).unwrap();
    let (w0, b0) = model.layer_weights(0).unwrap();
    let (w1, b1) = model.layer_weights(1).unwrap();
    assert_eq!(
        (w0.dim(), b0.len(), w1.dim(), b1.len()),
        ((16, 4), 16, (3, 16), 3)
    );
    let layout = model.spec().param_layout();
    let params = model.params().unwrap();
    let unpadded: Vec<f32> = w0
        .iter()
        .chain(&b0)
        .chain(&w1)
        .chain(&b1)
        .copied()
        .collect();
    let from_params: Vec<f32> = layout
        .tensors
        .iter()
        .flat_map(|t| &params[t.offset..t.offset + t.len])
        .copied()
        .collect();
    assert_eq!(unpadded, from_params);
    let difference = max_difference(&host_forward(&mut model, &x), &model.predict(&x).unwrap());
    assert!(difference < 1e-5, "host forward differs by {difference}");

    let new_weight = common::random_matrix(16, 3, 0.5, 31); // given as its [3, 16] transpose
    let new_bias = common::random_vector(3, 0.5, 32);
    model
        .set_layer_weights(1, &new_weight.t(), &new_bias.view())
        .unwrap();
    let (w1_now, b1_now) = model.layer_weights(1).unwrap();
    assert_eq!((w1_now, b1_now), (new_weight.t().to_owned(), new_bias));
    assert_eq!(
        model.layer_weights(0).unwrap(),
        (w0, b0),
        "layer 0 untouched"
    );
    let difference = max_difference(&host_forward(&mut model, &x), &model.predict(&x).unwrap());
    assert!(difference < 1e-5, "host forward differs by {difference}");
}
on_both_devices!(layer_weights_round_trip);

#[test]
fn layer_weight_errors_leave_the_model_unchanged() {
    let mut model = classifier(Device::Cpu);
    let before = model.params().unwrap();
    let assert_refused = |result: wgrad::Result<()>, parts: &[&str]| {
        let error = result.expect_err("refused");
        assert!(matches!(error, WgradError::InvalidModel(_)), "{error}");
        for part in parts {
            assert!(error.to_string().contains(part), "{error} lacks {part:?}");
        }
    };
    let error = model.layer_weights(2).unwrap_err();
    assert!(
        error.to_string().contains("layer index 2") && error.to_string().contains("2 layers"),
        "{error}"
    );
    let (weight, bias) = model.layer_weights(1).unwrap();
    assert_refused(
        model.set_layer_weights(2, &weight, &bias),
        &["layer index 2", "0 to 1"],
    );
    assert_refused(
        model.set_layer_weights(1, &weight.t(), &bias),
        &["layers.1.weight", "[16, 3]", "[3, 16]"],
    );
    assert_refused(
        model.set_layer_weights(1, &weight, &bias.slice(ndarray::s![..2])),
        &["layers.1.bias", "[2]", "[3]"],
    );
    let mut bad = weight.clone();
    bad[[2, 5]] = f32::NAN;
    assert_refused(
        model.set_layer_weights(1, &bad, &bias),
        &["layers.1.weight", "NaN"],
    );
    assert_eq!(model.params().unwrap(), before);
}

#[test]
fn a_row_without_finite_outputs_has_no_class() {
    let mut model = classifier(Device::Cpu);
    let (x, y) = data();
    model.fit(&x, &y, &config()).unwrap();
    let mut huge = x.slice(s![..3, ..]).to_owned();
    huge.row_mut(1).fill(3e38);
    huge.row_mut(2).fill(-3e38);
    assert!(
        model
            .predict(&huge)
            .unwrap()
            .row(1)
            .iter()
            .any(|v| v.is_nan())
    );
    match model.predict_classes(&huge) {
        Err(WgradError::InvalidData(message)) => {
            assert!(
                message.contains("row 1 of x gives outputs that are not finite"),
                "{message}"
            )
        }
        other => panic!("expected an error naming row 1, got {other:?}"),
    }
}
