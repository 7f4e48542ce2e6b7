//! The host-side helpers around `Model`: the metrics reports, the feature scaler and one-hot
//! targets. Input they cannot use is an error naming what does not fit (both shapes, the row,
//! the column), never a panic or a silently wrong result; any finite data scales to finite
//! values.

mod common;

use ndarray::{Array2, Axis};
use wgrad::data::Scaler;
use wgrad::metrics::{classification_report, regression_report};
use wgrad::{Activation, Device, FitConfig, Model, Optimizer, Sequential, Targets, WgradError};

/// Asserts that `result` is an `InvalidData` error whose message mentions every one of `parts`.
fn assert_invalid_data<T: std::fmt::Debug>(result: wgrad::Result<T>, parts: &[&str]) {
    let error = result.expect_err("accepted data that does not fit");
    assert!(matches!(error, WgradError::InvalidData(_)), "{error:?}");
    let message = error.to_string();
    for part in ["invalid data"].iter().chain(parts) {
        assert!(
            message.contains(part),
            "{message:?} does not mention {part:?}"
        );
    }
}

/// `rows` class labels below `classes`, in a random order.
fn random_labels(rows: usize, classes: usize, seed: u64) -> Vec<usize> {
    common::random_vector(rows, 1.0, seed)
        .iter()
        .map(|v| ((v + 1.0) * 0.5 * classes as f32) as usize % classes)
        .collect()
}

fn one_hot(labels: &[usize], classes: usize) -> Array2<f32> {
    Array2::from_shape_fn((labels.len(), classes), |(row, class)| {
        f32::from(labels[row] == class)
    })
}

#[test]
fn regression_report_of_mismatched_shapes_is_an_error() {
    let truth = common::random_matrix(6, 1, 2.0, 1);
    // [3, 2] has as many values as [6, 1]; [5, 1] one row fewer.
    for (rows, cols) in [(3, 2), (6, 2), (5, 1)] {
        let predicted = common::random_matrix(rows, cols, 2.0, 2);
        assert_invalid_data(
            regression_report(truth.view(), predicted.view()),
            &["[6, 1]", &format!("[{rows}, {cols}]")],
        );
    }
    let predicted = common::random_matrix(6, 1, 2.0, 2);
    let report = regression_report(truth.view(), predicted.view()).unwrap();
    let errors = &predicted - &truth;
    let mse = errors.mapv(|e| e * e).mean().unwrap();
    assert!(
        (report.mse - mse).abs() <= 1e-6 * mse,
        "{report:?}, MSE {mse}"
    );
}

#[test]
fn classification_report_of_mismatched_labels_is_an_error() {
    let truth = random_labels(12, 3, 1);
    let predicted = random_labels(12, 3, 2);
    assert_invalid_data(
        classification_report(&truth, &predicted[..11], 3),
        &["truth has 12 labels", "predicted has 11"],
    );
    let mut beyond = predicted.clone();
    beyond[4] = 5;
    assert_invalid_data(
        classification_report(&truth, &beyond, 3),
        &["predicted has label 5 at index 4", "3 classes"],
    );
    let mut huge = truth.clone();
    huge[0] = usize::MAX;
    assert_invalid_data(
        classification_report(&huge, &predicted, 3),
        &["truth has label", "3 classes"],
    );
    let report = classification_report(&truth, &predicted, 3).unwrap();
    let right = truth.iter().zip(&predicted).filter(|(t, p)| t == p).count();
    assert_eq!(report.accuracy, right as f32 / 12.0);
}

#[test]
fn scaler_transform_of_another_width_is_an_error() {
    let scaler = Scaler::fit_standard(&common::random_matrix(10, 3, 4.0, 1)).unwrap();
    for cols in [4, 2] {
        let mut x = common::random_matrix(5, cols, 4.0, 2);
        let before = x.clone();
        assert_invalid_data(
            scaler.transform(&mut x),
            &[&format!("x has {cols} columns"), "fitted on 3"],
        );
        assert_eq!(x, before, "x changed by a failed transform");
    }
    let lopsided = Scaler::Standard {
        mean: vec![0.5; 3],
        std: vec![2.0; 2],
    };
    let mut x = common::random_matrix(5, 3, 4.0, 2);
    assert_invalid_data(lopsided.transform(&mut x), &["3 and 2 values"]);
}

/// A way to fit a scaler.
type Fit = fn(&Array2<f32>) -> wgrad::Result<Scaler>;

#[test]
fn scaler_fitted_to_no_rows_or_non_finite_values_is_an_error() {
    for fit in [Scaler::fit_standard as Fit, Scaler::fit_min_max] {
        let error = fit(&Array2::zeros((0, 3))).unwrap_err();
        assert!(matches!(error, WgradError::EmptyDataset(_)), "{error:?}");
        let mut x = common::random_matrix(6, 3, 4.0, 1);
        x[[4, 2]] = f32::NAN;
        let error = fit(&x).unwrap_err();
        assert!(
            matches!(error, WgradError::NonFinite { what: "x", row: 4, col: 2, value } if value.is_nan()),
            "{error:?}"
        );
    }
}

/// Columns near 1e30 and spanning ±3e38 (f32's range is ±3.4e38) next to an ordinary one.
fn huge_columns() -> Array2<f32> {
    let mut x = common::random_matrix(40, 3, 1.0, 3);
    x.column_mut(0).mapv_inplace(|v| 1e30 + 4e29 * v);
    x.column_mut(1).mapv_inplace(|v| 3e38 * v);
    x
}

/// The standard scaler fits any finite data: its statistics are those computed in f64, and
/// the scaled columns have mean 0 and standard deviation 1.
#[test]
fn standard_scaler_of_huge_finite_values_is_exact() {
    let mut x = huge_columns();
    let Scaler::Standard { mean, std } = Scaler::fit_standard(&x).unwrap() else {
        unreachable!()
    };
    for (j, column) in x.columns().into_iter().enumerate() {
        let wide = column.mapv(|v| v as f64);
        let (m, s) = (wide.mean().unwrap(), wide.std(0.0));
        assert!(
            (mean[j] as f64 - m).abs() <= 1e-6 * m.abs() && (std[j] as f64 - s).abs() <= 1e-6 * s,
            "column {j}: mean {} std {}, in f64 {m} {s}",
            mean[j],
            std[j]
        );
    }
    let scaler = Scaler::fit_standard(&x).unwrap();
    scaler.transform(&mut x).unwrap();
    let scaled = x.mapv(|v| v as f64);
    for j in 0..3 {
        let column = scaled.index_axis(Axis(1), j);
        assert!(column.mean().unwrap().abs() < 1e-6, "column {j}: {column}");
        assert!((column.std(0.0) - 1.0).abs() < 1e-6, "column {j}: {column}");
    }
}

/// The min-max scaler maps each column's extremes to 0 and 1, even where their distance is
/// beyond f32's range.
#[test]
fn min_max_scaler_of_huge_finite_values_spans_zero_to_one() {
    let mut x = huge_columns();
    Scaler::fit_min_max(&x).unwrap().transform(&mut x).unwrap();
    for (j, column) in x.columns().into_iter().enumerate() {
        let min = column.iter().copied().fold(f32::INFINITY, f32::min);
        let max = column.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert!((min, max) == (0.0, 1.0), "column {j}: {column}");
    }
}

#[test]
fn one_hot_rows_are_class_targets() {
    let labels = random_labels(30, 4, 5);
    let encoded = one_hot(&labels, 4);
    assert_eq!(
        Targets::from_one_hot(&encoded).unwrap(),
        Targets::Classes(labels.clone())
    );
    // Trained on, they are the labels: the same losses, and an accuracy.
    let x = common::random_matrix(30, 3, 1.0, 6);
    let spec = Sequential::new(3)
        .dense(8, Activation::Tanh)
        .dense(4, Activation::Softmax)
        .optimizer(Optimizer::adam(0.01))
        .seed(2);
    let config = FitConfig {
        epochs: 3,
        batch_size: 8,
        ..Default::default()
    };
    let losses_and_accuracies = |y: &Targets| -> Vec<(f32, Option<f32>)> {
        let history = Model::new(spec.clone(), Device::Cpu)
            .unwrap()
            .fit(&x, y, &config)
            .unwrap();
        history
            .epochs
            .iter()
            .map(|e| (e.loss, e.accuracy))
            .collect()
    };
    let from_one_hot = losses_and_accuracies(&Targets::from_one_hot(&encoded).unwrap());
    assert_eq!(
        from_one_hot,
        losses_and_accuracies(&Targets::Classes(labels))
    );
    assert!(from_one_hot.iter().all(|(_, accuracy)| accuracy.is_some()));
}

#[test]
fn rows_that_are_not_one_hot_are_named() {
    let mut encoded = one_hot(&random_labels(6, 3, 7), 3);
    encoded.row_mut(2).assign(&ndarray::arr1(&[0.0, 0.5, 0.5]));
    assert_invalid_data(
        Targets::from_one_hot(&encoded),
        &["row index 2", "0.5", "column index 1"],
    );
    encoded.row_mut(2).assign(&ndarray::arr1(&[1.0, 0.0, 1.0]));
    assert_invalid_data(Targets::from_one_hot(&encoded), &["row index 2", "2 ones"]);
    encoded.row_mut(2).fill(0.0);
    assert_invalid_data(Targets::from_one_hot(&encoded), &["row index 2", "0 ones"]);
    encoded[[4, 0]] = f32::NAN;
    encoded.row_mut(2).assign(&ndarray::arr1(&[0.0, 1.0, 0.0]));
    assert_invalid_data(Targets::from_one_hot(&encoded), &["row index 4", "NaN"]);
}
