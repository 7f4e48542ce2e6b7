//! Feature columns: how a table's columns become a model's inputs. A column of numbers is one
//! input; a column of words (categories) is one 0/1 input per category (one-hot encoding, as
//! pandas' `get_dummies` and scikit-learn's `OneHotEncoder` do), so that a file with a `sex`
//! column of `female` and `male` trains without being encoded by hand.
//!
//! A column of numbers far from zero for their spread (timestamps such as 1.7e9 ± 30, prices
//! in cents) would lose its information as 32-bit inputs, which resolve about 7 digits: 1.7e9
//! and 1.7e9 + 100 are the same `f32`. Such a column gets an offset near its mean, subtracted
//! in 64-bit arithmetic before the value becomes an input ([`offset_for`]).

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

/// At most this many categories in a column of words: more are likely names, identifiers or
/// free text, whose one-hot inputs would not generalise to new rows.
pub const MAX_CATEGORIES: usize = 100;

/// One feature column of a data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureColumn {
    /// The column's name (its header in a CSV file).
    pub name: String,
    /// For a column of categories, the categories in the order of their inputs (sorted as
    /// text); `None` for a column of numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
    /// For a column of numbers, a value subtracted (in 64-bit arithmetic) from each before it
    /// becomes a 32-bit input, so that values far from zero keep their differences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<f64>,
    /// What a missing cell becomes: for a column of numbers, this value (the training rows'
    /// mean or median, as scikit-learn's `SimpleImputer`); for a column of categories, the
    /// value of each of its inputs (0: none of the categories, as pandas' `get_dummies`).
    /// `None`: a missing cell is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill: Option<f64>,
    /// For a column of categories, whether a category not among them leaves its inputs all 0
    /// (scikit-learn's `OneHotEncoder(handle_unknown="ignore")`), as a category the model
    /// knows nothing of; `false`: it is an error naming its line.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_unknown: bool,
}

impl FeatureColumn {
    /// A column of numbers: one input.
    pub fn numeric(name: impl Into<String>) -> FeatureColumn {
        FeatureColumn {
            name: name.into(),
            categories: None,
            offset: None,
            fill: None,
            ignore_unknown: false,
        }
    }

    /// A column of `categories`: one input each, in this order.
    pub fn categorical(name: impl Into<String>, categories: Vec<String>) -> FeatureColumn {
        FeatureColumn {
            name: name.into(),
            categories: Some(categories),
            offset: None,
            fill: None,
            ignore_unknown: false,
        }
    }

    /// How many model inputs the column becomes.
    pub fn width(&self) -> usize {
        self.categories.as_ref().map_or(1, Vec::len)
    }

    /// The names of its inputs: the column's own, or `name=category` for each category.
    pub fn input_names(&self) -> Vec<String> {
        match &self.categories {
            None => vec![self.name.clone()],
            Some(categories) => categories
                .iter()
                .map(|category| format!("{}={category}", self.name))
                .collect(),
        }
    }
}

/// The inputs of `columns`, one name per model input in their order.
pub fn input_names(columns: &[FeatureColumn]) -> Vec<String> {
    columns
        .iter()
        .flat_map(FeatureColumn::input_names)
        .collect()
}

/// The column each model input comes from, in the inputs' order (a column of categories
/// once per category).
pub fn column_of_each_input(columns: &[FeatureColumn]) -> impl Iterator<Item = &FeatureColumn> {
    columns
        .iter()
        .flat_map(|c| std::iter::repeat_n(c, c.width()))
}

/// How many model inputs `columns` become.
pub fn input_width(columns: &[FeatureColumn]) -> usize {
    columns.iter().map(FeatureColumn::width).sum()
}

/// Values whose spread is below this fraction of their magnitude get an offset: 32-bit floats
/// resolve about 6e-8 of the magnitude, so the rounding would reach 0.06% of the spread.
const SPREAD_PER_MAGNITUDE: f64 = 1e-4;

/// The offset a column of numbers needs, judged from its values as 32-bit floats: its mean,
/// rounded to the power of ten below the spread (a readable number: 1700000050 for
/// timestamps 1.7e9 ± 30), when the values lie so far from zero for their spread that the
/// 32-bit rounding blurs them (above), or all read as one value at or beyond 2^24, where
/// consecutive integers are no longer 32-bit floats. `None` for other columns.
pub fn offset_for(values: impl Iterator<Item = f64> + Clone) -> Option<f64> {
    let n = values.clone().count() as f64;
    if n == 0.0 {
        return None;
    }
    let mean = values.clone().sum::<f64>() / n;
    let stats = ColumnStats {
        mean,
        variance: values.clone().map(|v| (v - mean).powi(2)).sum::<f64>() / n,
        magnitude: values.map(f64::abs).fold(0.0, f64::max),
    };
    offset_from(&stats)
}

/// A column's mean, variance and largest magnitude, in 64-bit arithmetic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ColumnStats {
    pub mean: f64,
    pub variance: f64,
    pub magnitude: f64,
}

/// The [`ColumnStats`] of every column of `x`, from two passes along its rows (a row-major
/// array's columns would be read with a stride, a cache line a value).
pub(crate) fn column_stats(x: ArrayView2<f32>) -> Vec<ColumnStats> {
    let n = x.nrows().max(1) as f64;
    let mut stats = vec![
        ColumnStats {
            mean: 0.0,
            variance: 0.0,
            magnitude: 0.0,
        };
        x.ncols()
    ];
    for row in x.rows() {
        for (s, &v) in stats.iter_mut().zip(row) {
            s.mean += f64::from(v);
            s.magnitude = s.magnitude.max(f64::from(v).abs());
        }
    }
    stats.iter_mut().for_each(|s| s.mean /= n);
    for row in x.rows() {
        for (s, &v) in stats.iter_mut().zip(row) {
            s.variance += (f64::from(v) - s.mean).powi(2);
        }
    }
    stats.iter_mut().for_each(|s| s.variance /= n);
    stats
}

/// [`offset_for`] a column of these statistics.
pub(crate) fn offset_from(stats: &ColumnStats) -> Option<f64> {
    let ColumnStats {
        mean,
        variance,
        magnitude,
    } = *stats;
    let blurred = if variance > 0.0 {
        variance.sqrt() < magnitude * SPREAD_PER_MAGNITUDE
    } else {
        magnitude >= f64::from(1u32 << 24)
    };
    let spread = if variance > 0.0 {
        variance.sqrt()
    } else {
        magnitude * SPREAD_PER_MAGNITUDE
    };
    let unit = 10f64.powf(spread.log10().floor());
    // An offset of 0 would change nothing.
    blurred
        .then(|| (mean / unit).round() * unit)
        .filter(|&offset| offset != 0.0)
}

/// Numeric columns named `names`: the feature columns of a data set without categories.
pub fn numeric_columns<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Vec<FeatureColumn> {
    names.into_iter().map(FeatureColumn::numeric).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offset of `values` as 32-bit floats read them.
    fn offset(values: &[f64]) -> Option<f64> {
        offset_for(values.iter().map(|&v| f64::from(v as f32)))
    }

    #[test]
    fn columns_that_32_bit_floats_blur_get_an_offset() {
        // Timestamps 30 s apart around 1.7e9: an offset near their mean.
        let stamps: Vec<f64> = (0..50).map(|i| 1.7e9 + f64::from(i) * 0.6).collect();
        let found = offset(&stamps).expect("timestamps need an offset");
        assert!(
            (found - 1.7e9).abs() < 100.0 && found.fract() == 0.0,
            "{found}"
        );
        // Values that all round to one 32-bit float beyond 2^24.
        assert!(offset(&[1.7e9 + 1.0, 1.7e9 + 2.0, 1.7e9 + 3.0]).is_some());
        // Years, prices, small or constant columns keep their values.
        let years: Vec<f64> = (1990..2021).map(f64::from).collect();
        assert_eq!(offset(&years), None);
        assert_eq!(offset(&[12.5, 99.0, 3.25, 40.0]), None);
        assert_eq!(offset(&[5.0, 5.0, 5.0]), None);
        assert_eq!(offset(&[0.0, 0.0]), None);
        assert_eq!(offset(&[-3.0e6, 3.0e6]), None);
        // Near zero, a fraction: the mean to the spread's power of ten.
        let found = offset(&[0.5, 0.500002, 0.500004]).expect("blurred");
        assert!((found - 0.500002).abs() < 1e-9, "{found}");
    }
}
