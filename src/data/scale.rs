//! Feature scaling, fitted on training data only and saved with the model so that the same
//! transform applies at prediction time.

use crate::error::{Result, WgradError};
use crate::train::check_finite;
use ndarray::{Array2, ArrayView1};
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
    /// Fits a standard scaler to `x`'s columns (the population standard deviation).
    ///
    /// The sums run in f64, where no finite f32 data can overflow them, so the statistics of
    /// any finite data are finite: the mean lies between the column's extremes and the
    /// standard deviation is at most half their distance (Popoviciu's inequality), both
    /// within f32's range. Errors: [`WgradError::EmptyDataset`] for no rows,
    /// [`WgradError::NonFinite`] naming the first NaN or infinity.
    pub fn fit_standard(x: &Array2<f32>) -> Result<Scaler> {
        check_fittable(x)?;
        let (mean, std) = x
            .columns()
            .into_iter()
            .map(|column| {
                let rows = column.len() as f64;
                let mean = wide(column).sum::<f64>() / rows;
                let variance = wide(column).map(|v| (v - mean).powi(2)).sum::<f64>() / rows;
                (mean as f32, variance.sqrt() as f32)
            })
            .unzip();
        Ok(Scaler::Standard { mean, std })
    }

    /// Fits a min-max scaler to `x`'s columns; errors as [`Scaler::fit_standard`].
    pub fn fit_min_max(x: &Array2<f32>) -> Result<Scaler> {
        check_fittable(x)?;
        let (min, max) = x
            .columns()
            .into_iter()
            .map(|column| {
                let min = column.iter().copied().fold(f32::INFINITY, f32::min);
                let max = column.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                (min, max)
            })
            .unzip();
        Ok(Scaler::MinMax { min, max })
    }

    /// "standardised" or "min-max scaled", as messages say it.
    pub fn described(&self) -> &'static str {
        match self {
            Scaler::Standard { .. } => "standardised",
            Scaler::MinMax { .. } => "min-max scaled",
        }
    }

    /// Number of columns the scaler was fitted on.
    pub fn width(&self) -> usize {
        match self {
            Scaler::Standard { mean, .. } => mean.len(),
            Scaler::MinMax { min, .. } => min.len(),
        }
    }

    /// Scales `x` in place. Each value is computed in f64, so that a range wider than f32's
    /// (min -3e38, max 3e38) still divides correctly. Errors ([`WgradError::InvalidData`],
    /// `x` left unchanged): `x` has other than [`Scaler::width`] columns, or the scaler's two
    /// vectors differ in length (one built by hand).
    pub fn transform(&self, x: &mut Array2<f32>) -> Result<()> {
        self.map_columns(x, |v, offset, divisor| (v - offset) / divisor)
    }

    /// Undoes [`Scaler::transform`] in place: from scaled values back to the data's units (a
    /// regression model's outputs, when its targets were scaled). Errors as `transform`.
    pub fn inverse_transform(&self, x: &mut Array2<f32>) -> Result<()> {
        self.map_columns(x, |v, offset, divisor| v * divisor + offset)
    }

    /// Replaces each value `v` of `x` by `f(v, offset, divisor)` of its column, in f64; a
    /// constant column (divisor 0) is only shifted.
    fn map_columns(&self, x: &mut Array2<f32>, f: impl Fn(f64, f64, f64) -> f64) -> Result<()> {
        let columns = self.columns()?;
        if x.ncols() != columns.len() {
            return Err(WgradError::InvalidData(format!(
                "x has {} columns but the scaler was fitted on {}",
                x.ncols(),
                columns.len()
            )));
        }
        for mut row in x.rows_mut() {
            for (v, &(offset, divisor)) in row.iter_mut().zip(&columns) {
                let divisor = if divisor > 0.0 { divisor } else { 1.0 };
                *v = f(*v as f64, offset, divisor) as f32;
            }
        }
        Ok(())
    }

    /// Each column's offset and divisor, in f64.
    fn columns(&self) -> Result<Vec<(f64, f64)>> {
        let (offsets, others) = match self {
            Scaler::Standard { mean, std } => (mean, std),
            Scaler::MinMax { min, max } => (min, max),
        };
        if offsets.len() != others.len() {
            return Err(WgradError::InvalidData(format!(
                "the scaler's two vectors have {} and {} values; it needs one of each per column",
                offsets.len(),
                others.len()
            )));
        }
        let pairs = offsets
            .iter()
            .zip(others)
            .map(|(&a, &b)| (a as f64, b as f64));
        Ok(match self {
            Scaler::Standard { .. } => pairs.collect(),
            Scaler::MinMax { .. } => pairs.map(|(min, max)| (min, max - min)).collect(),
        })
    }
}

/// The column's values in f64.
fn wide(column: ArrayView1<'_, f32>) -> impl Iterator<Item = f64> + '_ {
    column.into_iter().map(|&v| v as f64)
}

/// A scaler needs rows to fit to, all finite.
fn check_fittable(x: &Array2<f32>) -> Result<()> {
    if x.nrows() == 0 {
        return Err(WgradError::EmptyDataset(
            "x has no rows to fit the scaler to",
        ));
    }
    check_finite("x", x.view())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn inverse_transform_undoes_transform() {
        let x = array![[1e6f32, -3.0, 7.0], [3e6, 5.0, 7.0], [2.5e6, 0.5, 7.0]];
        for scaler in [Scaler::fit_standard(&x), Scaler::fit_min_max(&x)] {
            let scaler = scaler.unwrap();
            let mut y = x.clone();
            scaler.transform(&mut y).unwrap();
            assert!(y.iter().all(|v| v.abs() <= 2.0), "{y}");
            scaler.inverse_transform(&mut y).unwrap();
            for (back, original) in y.iter().zip(&x) {
                assert!(
                    (back - original).abs() <= 1e-6 * original.abs().max(1.0),
                    "{y}"
                );
            }
        }
        let narrow = Scaler::fit_standard(&array![[1.0f32], [2.0]]).unwrap();
        assert!(narrow.inverse_transform(&mut x.clone()).is_err());
    }
}
