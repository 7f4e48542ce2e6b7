//! Metrics computed on the host from predictions: per-class precision, recall and F1 with
//! the confusion matrix for classification (scikit-learn's `classification_report`), and
//! MSE, MAE and R² for regression.

use crate::error::{Result, WgradError};
use ndarray::{Array2, ArrayView2};
use std::fmt;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

#[derive(Debug, Clone, PartialEq)]
pub struct ClassScores {
    pub precision: f32,
    pub recall: f32,
    pub f1: f32,
    /// Samples of this class in the truth.
    pub support: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationReport {
    /// confusion[[t, p]]: samples of true class t predicted as p.
    pub confusion: Array2<usize>,
    pub per_class: Vec<ClassScores>,
    pub accuracy: f32,
    /// Unweighted means over the classes present in the truth or the predictions, as
    /// scikit-learn's "macro avg".
    pub macro_precision: f32,
    pub macro_recall: f32,
    pub macro_f1: f32,
    /// Names to print for the classes (defaults to their indices).
    pub class_names: Vec<String>,
}

fn ratio(num: usize, den: usize) -> f32 {
    if den == 0 {
        0.0
    } else {
        num as f32 / den as f32
    }
}

/// Scores `predicted` against `truth`, both class indices below `classes`, one per sample.
/// Errors ([`WgradError::InvalidData`]): the two differ in length, or a label is not below
/// `classes`.
pub fn classification_report(
    truth: &[usize],
    predicted: &[usize],
    classes: usize,
) -> Result<ClassificationReport> {
    if truth.len() != predicted.len() {
        return Err(WgradError::InvalidData(format!(
            "truth has {} labels but predicted has {}: one prediction per sample",
            truth.len(),
            predicted.len()
        )));
    }
    for (what, labels) in [("truth", truth), ("predicted", predicted)] {
        if let Some((i, label)) = labels.iter().enumerate().find(|(_, l)| **l >= classes) {
            return Err(WgradError::InvalidData(format!(
                "{what} has label {label} at index {i}, but there are {classes} classes \
                 (labels 0 to {})",
                classes.saturating_sub(1)
            )));
        }
    }
    let mut confusion = Array2::zeros((classes, classes));
    for (&t, &p) in truth.iter().zip(predicted) {
        confusion[[t, p]] += 1;
    }
    let per_class: Vec<ClassScores> = (0..classes)
        .map(|c| {
            let true_positive = confusion[[c, c]];
            let predicted_c = confusion.column(c).sum();
            let support = confusion.row(c).sum();
            let precision = ratio(true_positive, predicted_c);
            let recall = ratio(true_positive, support);
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            ClassScores {
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    // Over the classes that occur in the truth or the predictions, as scikit-learn's report
    // (a class absent from both would count as 0 and pull the average down for nothing).
    let present: Vec<&ClassScores> = per_class
        .iter()
        .enumerate()
        .filter(|&(c, s)| s.support > 0 || confusion.column(c).sum() > 0)
        .map(|(_, s)| s)
        .collect();
    let mean = |f: fn(&ClassScores) -> f32| {
        present.iter().map(|s| f(s)).sum::<f32>() / present.len().max(1) as f32
    };
    Ok(ClassificationReport {
        accuracy: ratio(confusion.diag().sum(), truth.len()),
        macro_precision: mean(|s| s.precision),
        macro_recall: mean(|s| s.recall),
        macro_f1: mean(|s| s.f1),
        class_names: (0..classes).map(|c| c.to_string()).collect(),
        confusion,
        per_class,
    })
}

impl fmt::Display for ClassificationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class_names: Vec<String> = self.class_names.iter().map(|n| printable(n)).collect();
        let width = class_names
            .iter()
            .map(|n| n.width())
            .max()
            .unwrap_or(5)
            .max(9);
        writeln!(
            f,
            "{:>width$}  precision  recall  f1-score  support",
            "class"
        )?;
        // The classes the averages count: those in the truth or the predictions.
        let present = class_names
            .iter()
            .zip(&self.per_class)
            .zip(self.confusion.columns())
            .filter(|((_, s), predicted)| s.support > 0 || predicted.sum() > 0)
            .map(|(row, _)| row);
        for (name, s) in present {
            writeln!(
                f,
                "{}  {:>9.4}  {:>6.4}  {:>8.4}  {:>7}",
                Right(name, width),
                s.precision,
                s.recall,
                s.f1,
                s.support
            )?;
        }
        let total: usize = self.per_class.iter().map(|s| s.support).sum();
        writeln!(
            f,
            "{:>width$}  {:>9.4}  {:>6.4}  {:>8.4}  {:>7}",
            "macro avg", self.macro_precision, self.macro_recall, self.macro_f1, total
        )?;
        writeln!(
            f,
            "{:>width$}  {:>27.4}  {:>7}",
            "accuracy", self.accuracy, total
        )?;
        writeln!(
            f,
            "\nconfusion matrix (rows: true class, columns: predicted)"
        )?;
        // As wide as the widest count or class name, up to 12 columns of a name.
        let cell = self
            .confusion
            .iter()
            .map(|v| v.to_string().len())
            .chain(class_names.iter().map(|n| n.width().min(12)))
            .max()
            .unwrap_or(1)
            .max(3);
        write!(f, "{:>width$} ", "")?;
        for name in &class_names {
            write!(f, " {}", Right(truncate(name, cell), cell))?;
        }
        writeln!(f)?;
        for (name, row) in class_names.iter().zip(self.confusion.rows()) {
            write!(f, "{} ", Right(name, width))?;
            for v in row {
                write!(f, " {v:>cell$}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// `text` right-aligned in `columns` terminal columns: counts display width (a CJK character
/// takes two columns, a combining accent none), where `{:>n}` counts characters.
struct Right<'a>(&'a str, usize);

impl fmt::Display for Right<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Right(text, columns) = *self;
        write!(
            f,
            "{:pad$}{text}",
            "",
            pad = columns.saturating_sub(text.width())
        )
    }
}

/// `name` as one line of a table: control characters (a line break in a CSV label) written
/// as escapes (`\n`), so that the table keeps its rows.
fn printable(name: &str) -> String {
    match name.contains(char::is_control) {
        true => name.escape_debug().to_string(),
        false => name.to_string(),
    }
}

/// The longest start of `s` that fits in `max` terminal columns.
fn truncate(s: &str, max: usize) -> &str {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        used += c.width().unwrap_or(0);
        if used > max {
            return &s[..i];
        }
    }
    s
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegressionReport {
    pub mse: f32,
    pub mae: f32,
    /// Coefficient of determination, 1 - SS_res / SS_tot, averaged over the outputs
    /// (scikit-learn's `r2_score` with uniform averaging).
    pub r2: f32,
    /// Each output's R² (`multioutput="raw_values"`), of which `r2` is the mean.
    pub r2_per_output: Vec<f32>,
}

/// Scores `predicted` against `truth`, both [samples, outputs]. Errors
/// ([`WgradError::InvalidData`]): the two shapes differ.
pub fn regression_report(
    truth: ArrayView2<f32>,
    predicted: ArrayView2<f32>,
) -> Result<RegressionReport> {
    if truth.shape() != predicted.shape() {
        return Err(WgradError::InvalidData(format!(
            "truth has shape {:?} but predicted has shape {:?}; they must match",
            truth.shape(),
            predicted.shape()
        )));
    }
    let n = truth.len().max(1) as f64;
    let diff = &predicted - &truth;
    let mse = diff.iter().map(|&d| (d as f64) * (d as f64)).sum::<f64>() / n;
    let mae = diff.iter().map(|&d| (d as f64).abs()).sum::<f64>() / n;
    let r2_per_output: Vec<f64> = (0..truth.ncols())
        .map(|j| {
            let t = truth.column(j);
            let mean = t.iter().map(|&v| v as f64).sum::<f64>() / t.len().max(1) as f64;
            let total: f64 = t.iter().map(|&v| (v as f64 - mean).powi(2)).sum();
            let residual: f64 = diff.column(j).iter().map(|&d| (d as f64).powi(2)).sum();
            match (total > 0.0, residual > 0.0) {
                (true, _) => 1.0 - residual / total,
                // A constant target: 1 if predicted exactly, else 0 (scikit-learn's choice).
                (false, false) => 1.0,
                (false, true) => 0.0,
            }
        })
        .collect();
    let r2 = r2_per_output.iter().sum::<f64>() / truth.ncols().max(1) as f64;
    Ok(RegressionReport {
        mse: mse as f32,
        mae: mae as f32,
        r2: r2 as f32,
        r2_per_output: r2_per_output.into_iter().map(|r| r as f32).collect(),
    })
}

impl fmt::Display for RegressionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MSE {}  MAE {}  R² {}",
            Figure(self.mse),
            Figure(self.mae),
            R2(self.r2)
        )
    }
}

/// An error figure with six significant digits: fixed point from 1e-4 to 1e6, else in
/// exponent form (a target in millions has an MSE in trillions).
struct Figure(f32);

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v == 0.0 {
            write!(f, "{v:.6}")
        } else if (1e-4..1e6).contains(&v.abs()) {
            let decimals = (5 - v.abs().log10().floor() as i32).clamp(0, 9) as usize;
            write!(f, "{v:.decimals$}")
        } else {
            write!(f, "{v:.5e}")
        }
    }
}

/// R² to four decimals, or in exponent form below -1e6 (a model far off: -5.1e14, not 15
/// digits).
struct R2(f32);

impl fmt::Display for R2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fixed_below_a_million(f, self.0, 4)
    }
}

/// `v` with `decimals` decimals, or in exponent form from ±1e6 on, where fixed point would
/// print every digit.
fn fixed_below_a_million(f: &mut fmt::Formatter<'_>, v: f32, decimals: usize) -> fmt::Result {
    if v.abs() >= 1e6 && v.is_finite() {
        write!(f, "{v:.decimals$e}")
    } else {
        write!(f, "{v:.decimals$}")
    }
}

/// A loss as training shows it: five decimals, or from 1e6 on in exponent form (a loss of
/// 1e30 in fixed point is 31 digits).
pub(crate) struct LossFigure(pub f32);

impl fmt::Display for LossFigure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fixed_below_a_million(f, self.0, 5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn classification_matches_hand_counts() {
        // truth 0,0,1,1,2,2 ; predicted 0,1,1,1,2,0
        let r = classification_report(&[0, 0, 1, 1, 2, 2], &[0, 1, 1, 1, 2, 0], 3).unwrap();
        assert_eq!(r.confusion, array![[1, 1, 0], [0, 2, 0], [1, 0, 1]]);
        assert_eq!(r.accuracy, 4.0 / 6.0);
        assert_eq!(r.per_class[0].precision, 0.5);
        assert_eq!(r.per_class[1].precision, 2.0 / 3.0);
        assert_eq!(r.per_class[2].recall, 0.5);
        assert!((r.per_class[1].f1 - 0.8).abs() < 1e-6);
        assert!(r.to_string().contains("macro avg"));
    }

    #[test]
    fn regression_matches_hand_values() {
        let truth = array![[1.0f32], [2.0], [3.0], [4.0]];
        let predicted = array![[1.5f32], [2.0], [2.0], [4.0]];
        let r = regression_report(truth.view(), predicted.view()).unwrap();
        assert!((r.mse - 1.25 / 4.0).abs() < 1e-6);
        assert!((r.mae - 1.5 / 4.0).abs() < 1e-6);
        assert!((r.r2 - (1.0 - 1.25 / 5.0)).abs() < 1e-6);
    }

    #[test]
    fn constant_targets_score_one_when_predicted_exactly() {
        let truth = array![[2.5f32], [2.5], [2.5]];
        let exact = regression_report(truth.view(), truth.view()).unwrap();
        assert_eq!(exact.r2, 1.0);
        let off = regression_report(truth.view(), array![[2.5f32], [2.0], [2.5]].view());
        assert_eq!(off.unwrap().r2, 0.0);
    }

    #[test]
    fn macro_averages_leave_out_classes_absent_from_truth_and_predictions() {
        // Class 2 occurs nowhere; class 1 is predicted once but never true.
        let r = classification_report(&[0, 0, 0, 3], &[0, 0, 1, 3], 4).unwrap();
        let precision = (1.0 + 0.0 + 1.0) / 3.0;
        let recall = (2.0 / 3.0 + 0.0 + 1.0) / 3.0;
        assert!((r.macro_precision - precision).abs() < 1e-6, "{r:?}");
        assert!((r.macro_recall - recall).abs() < 1e-6, "{r:?}");
    }

    #[test]
    fn confusion_matrix_columns_show_class_names() {
        let mut r = classification_report(&[0, 1, 2], &[0, 1, 1], 3).unwrap();
        r.class_names = ["class_a", "class_b", "class_c"].map(String::from).to_vec();
        let text = r.to_string();
        let header = text
            .lines()
            .find(|l| l.contains("class_a") && l.contains("class_c"));
        assert!(header.is_some(), "{text}");
    }

    /// Every line of each table of a report ends in the same terminal column.
    fn assert_columns_aligned(text: &str) {
        for table in text.split("\n\n") {
            let ends: Vec<usize> = table
                .lines()
                .filter(|l| !l.starts_with("confusion"))
                .map(|l| l.width())
                .collect();
            assert!(ends.windows(2).all(|w| w[0] == w[1]), "{ends:?}\n{text}");
        }
    }

    #[test]
    fn wide_characters_keep_the_columns_aligned() {
        let mut r = classification_report(&[0, 1, 2, 2], &[0, 1, 1, 2], 3).unwrap();
        r.class_names = ["猫", "犬", "cafe\u{301}"].map(String::from).to_vec();
        let text = r.to_string();
        assert_columns_aligned(&text);
        assert_eq!(truncate("猫猫猫", 5), "猫猫");
        assert_eq!(truncate("abc", 5), "abc");
    }

    #[test]
    fn class_names_with_line_breaks_keep_one_row_each() {
        let mut r = classification_report(&[0, 1, 2, 2], &[0, 1, 1, 2], 3).unwrap();
        r.class_names = ["north\nside", "a\tb", "c"].map(String::from).to_vec();
        let text = r.to_string();
        assert!(
            text.contains("north\\nside") && text.contains("a\\tb"),
            "{text}"
        );
        // A header, three classes, two averages; a title, a header, three rows.
        assert_eq!(text.lines().filter(|l| !l.is_empty()).count(), 11, "{text}");
        assert_columns_aligned(&text);
    }

    #[test]
    fn classes_absent_from_truth_and_predictions_have_no_row() {
        let mut r = classification_report(&[0, 0, 2], &[0, 2, 2], 3).unwrap();
        r.class_names = ["cat", "dog", "eel"].map(String::from).to_vec();
        let text = r.to_string();
        let rows: Vec<&str> = text.lines().take_while(|l| !l.is_empty()).collect();
        assert_eq!(
            rows.len(),
            5,
            "header, cat, eel, macro avg, accuracy:\n{text}"
        );
        assert!(!rows.iter().any(|l| l.contains("dog")), "{text}");
        // The confusion matrix keeps every class.
        assert!(
            text.lines().any(|l| l.trim_start().starts_with("dog")),
            "{text}"
        );
    }

    #[test]
    fn losses_past_a_million_are_in_exponent_form() {
        let shown = |v: f32| LossFigure(v).to_string();
        assert_eq!(shown(0.123456), "0.12346");
        assert_eq!(shown(999999.0), "999999.00000");
        assert_eq!(shown(1.2697597e12), "1.26976e12");
        assert_eq!(shown(-3.5e30), "-3.50000e30");
        assert_eq!(shown(f32::NAN), "NaN");
        assert_eq!(R2(-5.098963e14).to_string(), "-5.0990e14");
        assert_eq!(R2(0.96531).to_string(), "0.9653");
    }

    #[test]
    fn error_figures_keep_six_significant_digits() {
        let shown = |v: f32| Figure(v).to_string();
        assert_eq!(shown(0.0), "0.000000");
        assert_eq!(shown(0.123456), "0.123456");
        assert_eq!(shown(12.5), "12.5000");
        assert_eq!(shown(113289.14), "113289");
        assert_eq!(shown(4.7627313e12), "4.76273e12");
        assert_eq!(shown(3.2e-7), "3.20000e-7");
    }
}
