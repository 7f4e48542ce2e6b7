//! Feature scaling, fitted on training data only and saved with the model so that the same
//! transform applies at prediction time.

use ndarray::{Array1, Array2, Axis};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Scaler {
    /// (x - mean) / std per column; a constant column is only centred.
    Standard { mean: Vec<f32>, std: Vec<f32> },
    /// (x - min) / (max - min) per column, into [0, 1]; a constant column maps to 0.
    MinMax { min: Vec<f32>, max: Vec<f32> },
}

impl Scaler {
    pub fn fit_standard(x: &Array2<f32>) -> Scaler {
        let mean = x
            .mean_axis(Axis(0))
            .unwrap_or_else(|| Array1::zeros(x.ncols()));
        let std = x.std_axis(Axis(0), 0.0);
        Scaler::Standard {
            mean: mean.to_vec(),
            std: std.to_vec(),
        }
    }

    pub fn fit_min_max(x: &Array2<f32>) -> Scaler {
        let min = x.fold_axis(Axis(0), f32::INFINITY, |a, &b| a.min(b));
        let max = x.fold_axis(Axis(0), f32::NEG_INFINITY, |a, &b| a.max(b));
        Scaler::MinMax {
            min: min.to_vec(),
            max: max.to_vec(),
        }
    }

    /// Number of columns the scaler was fitted on.
    pub fn width(&self) -> usize {
        match self {
            Scaler::Standard { mean, .. } => mean.len(),
            Scaler::MinMax { min, .. } => min.len(),
        }
    }

    /// Scales `x` in place; `x` must have [`Scaler::width`] columns.
    pub fn transform(&self, x: &mut Array2<f32>) {
        let (offset, divisor): (&[f32], Vec<f32>) = match self {
            Scaler::Standard { mean, std } => (mean, std.clone()),
            Scaler::MinMax { min, max } => {
                (min, min.iter().zip(max).map(|(lo, hi)| hi - lo).collect())
            }
        };
        for mut row in x.rows_mut() {
            for (j, v) in row.iter_mut().enumerate() {
                let d = divisor[j];
                *v = if d > 0.0 {
                    (*v - offset[j]) / d
                } else {
                    *v - offset[j]
                };
            }
        }
    }
}
