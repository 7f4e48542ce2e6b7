//! Data: labelled data sets in memory ([`Dataset`]), loaders for real data ([`mnist`] IDX
//! files, [`csv`] files), built-in synthetic sets (seeded, so every run sees the same points)
//! and feature scaling ([`scale`]).

pub mod csv;
pub mod features;
pub mod mnist;
pub mod scale;

pub use self::csv::{
    CsvOptions, CsvTask, Fill, load_csv, load_csv_for_model, load_csv_from_reader, load_csv_with,
    load_csv_with_classes, load_csv_with_classes_from_reader, load_features,
    load_features_from_reader,
};
pub use features::FeatureColumn;
pub use mnist::{load_dir as load_mnist_dir, load_shipped as load_mnist};
pub use scale::Scaler;

use crate::error::{Result, WgradError};
use crate::train::Targets;
use ndarray::{Array2, Axis};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `k` where `value` is exactly `k as f32 / 255.0` for a byte `k`, bit for bit, as the pixels
/// of 8-bit images scaled to [0, 1] are. Such data is kept as its bytes where it is stored
/// for training (a quarter of the memory, and of the reads that gather a batch) and turned
/// back into the same f32 bits. -0.0 is not one: it would come back as +0.0.
pub fn byte_of(value: f32) -> Option<u8> {
    // The nearest k (saturating: a negative or NaN value gives 0, a large one u32::MAX); the
    // table then says whether the value is k / 255 exactly. No rounding call, no division:
    // a data set's every value is checked where it is stored.
    let k = (value * 255.0 + 0.5) as u32;
    let byte = u8::try_from(k).ok()?;
    (BYTE_VALUES[usize::from(byte)].to_bits() == value.to_bits()).then_some(byte)
}

/// `k as f32 / 255.0` for every byte k.
const BYTE_VALUES: [f32; 256] = {
    let mut values = [0.0; 256];
    let mut k = 0;
    while k < 256 {
        values[k] = k as f32 / 255.0;
        k += 1;
    }
    values
};

/// A labelled data set in memory: one row of `x` and one target of `y` per sample, with the
/// names needed to report on it and to check prediction inputs against it.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Features, [samples, features].
    pub x: Array2<f32>,
    /// One target per sample: class indices or values.
    pub y: Targets,
    /// The feature columns `x` was made from, in order: a column of numbers is one column of
    /// `x`, a column of categories one per category ([`FeatureColumn`]).
    pub features: Vec<FeatureColumn>,
    /// The name of each class index, for classification; `None` for regression.
    pub class_names: Option<Vec<String>>,
    /// The names of the targets, where the data names them (a CSV's target column, or
    /// columns for a regression with several outputs); empty where it does not.
    pub target_names: Vec<String>,
    /// Each regression target's offset, as [`FeatureColumn::offset`]: subtracted (in 64-bit
    /// arithmetic) from values far from zero for their spread before they became the 32-bit
    /// `y`; a model's outputs plus them are in the data's values. One per column of `y`
    /// where one has an offset, else empty.
    pub target_offsets: Vec<Option<f64>>,
}

/// A training set and the held-out set it is evaluated on.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainTest {
    pub train: Dataset,
    pub test: Dataset,
}

impl Dataset {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.x.nrows()
    }

    /// Whether the set holds no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of model inputs (columns of `x`).
    pub fn n_features(&self) -> usize {
        self.x.ncols()
    }

    /// One name per column of `x`: a numeric feature's name, or `name=category` for each
    /// category of a column of categories.
    pub fn feature_names(&self) -> Vec<String> {
        features::input_names(&self.features)
    }

    /// Number of classes: the class names if known, else one more than the largest label;
    /// `None` for regression targets.
    pub fn n_classes(&self) -> Option<usize> {
        match (&self.y, &self.class_names) {
            (_, Some(names)) => Some(names.len()),
            (Targets::Classes(labels), None) => Some(labels.iter().max().map_or(0, |m| m + 1)),
            (Targets::Values(_), None) => None,
        }
    }

    /// The samples at `rows`, in that order (repeats allowed), with the same names.
    ///
    /// # Panics
    /// If a row index is out of range.
    pub fn select(&self, rows: &[usize]) -> Dataset {
        let y = match &self.y {
            Targets::Classes(labels) => Targets::Classes(rows.iter().map(|&r| labels[r]).collect()),
            Targets::Values(values) => Targets::Values(values.select(Axis(0), rows)),
        };
        Dataset {
            x: self.x.select(Axis(0), rows),
            y,
            features: self.features.clone(),
            class_names: self.class_names.clone(),
            target_names: self.target_names.clone(),
            target_offsets: self.target_offsets.clone(),
        }
    }

    /// Splits the samples, shuffled from `seed`, into (training, validation), the validation
    /// part holding `validation_fraction` of them (rounded). Errors if the fraction is not in
    /// (0, 1) or leaves either part empty.
    pub fn split(&self, validation_fraction: f32, seed: u64) -> Result<(Dataset, Dataset)> {
        let (train, validation) = split_rows(self.len(), validation_fraction, seed)
            .map_err(|msg| WgradError::data("validation split", msg))?;
        Ok((self.select(&train), self.select(&validation)))
    }
}

/// A fraction of the samples to hold out for validation: strictly between 0 and 1 (`Err` says
/// what is wrong, for [`Dataset::split`], `FitConfig::validation_split` and the command line's
/// `--validation-split`).
pub fn check_validation_fraction(fraction: f32) -> std::result::Result<(), String> {
    if fraction > 0.0 && fraction < 1.0 {
        Ok(())
    } else {
        Err(format!("fraction {fraction} is not in (0, 1)"))
    }
}

/// The row indices of [`Dataset::split`] (and of `FitConfig::validation_split`, which splits
/// the same way): `n` samples shuffled from `seed`, the first `validation_fraction` of them
/// (rounded) for validation, the rest for training, returned as (training, validation). `Err`
/// says why the fraction cannot split them: not in (0, 1), or a part left empty.
pub(crate) fn split_rows(
    n: usize,
    validation_fraction: f32,
    seed: u64,
) -> std::result::Result<(Vec<usize>, Vec<usize>), String> {
    check_validation_fraction(validation_fraction)?;
    let n_validation = (n as f64 * f64::from(validation_fraction)).round() as usize;
    if n_validation == 0 || n_validation == n {
        return Err(format!(
            "fraction {validation_fraction} of {n} samples leaves {} for training and \
             {n_validation} for validation; both parts need at least one",
            n - n_validation
        ));
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let train = order.split_off(n_validation);
    let validation = order;
    Ok((train, validation))
}

/// Names of the built-in synthetic sets that [`synthetic`] knows.
pub const SYNTHETIC_NAMES: &[&str] = &["xor", "moons", "spirals", "blobs", "regression"];

/// A built-in synthetic set by name (one of [`SYNTHETIC_NAMES`]) at a default size, drawn from
/// `seed` (`xor` has four fixed points): `moons` 2 × 250 points, `spirals` 3 × 300, `blobs`
/// 4 × 250 in 2 dimensions, `regression` 500 points of [`regression_curve`]. Features are
/// named `x0`, `x1`, ...; classes `"0"`, `"1"`, ....
pub fn synthetic(name: &str, seed: u64) -> Option<Dataset> {
    let classes = |(x, y): (Array2<f32>, Vec<usize>), n_classes: usize| Dataset {
        features: numbered_features(x.ncols()),
        class_names: Some((0..n_classes).map(|c| c.to_string()).collect()),
        target_names: Vec::new(),
        target_offsets: Vec::new(),
        x,
        y: Targets::Classes(y),
    };
    Some(match name {
        "xor" => classes(xor(), 2),
        "moons" => classes(moons(250, 0.1, seed), 2),
        "spirals" => classes(spirals(300, 3, 0.2, seed), 3),
        "blobs" => classes(blobs(250, 4, 2, 1.0, seed), 4),
        "regression" => {
            let (x, y) = regression_curve(500, 0.1, seed);
            Dataset {
                features: numbered_features(x.ncols()),
                class_names: None,
                target_names: Vec::new(),
                target_offsets: Vec::new(),
                x,
                y: Targets::Values(y),
            }
        }
        _ => return None,
    })
}

/// Numeric columns `x0`, `x1`, ... for `n` inputs.
fn numbered_features(n: usize) -> Vec<FeatureColumn> {
    features::numeric_columns((0..n).map(|i| format!("x{i}")))
}

/// A standard normal draw (Box-Muller), for the newer synthetic sets.
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f32 = 1.0 - rng.random_range(0.0f32..1.0); // in (0, 1], so ln is finite
    let u2: f32 = rng.random_range(0.0f32..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// The four XOR points and their classes (0, 1, 1, 0).
pub fn xor() -> (Array2<f32>, Vec<usize>) {
    let x = Array2::from_shape_vec((4, 2), vec![0., 0., 0., 1., 1., 0., 1., 1.]).expect("4 × 2");
    (x, vec![0, 1, 1, 0])
}

/// `classes` interleaved spiral arms of `per_class` points each, in about [-1, 1]²,
/// with Gaussian-like noise of scale `noise` on the angle.
pub fn spirals(
    per_class: usize,
    classes: usize,
    noise: f32,
    seed: u64,
) -> (Array2<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Array2::zeros((per_class * classes, 2));
    let mut y = Vec::with_capacity(per_class * classes);
    for class in 0..classes {
        for i in 0..per_class {
            let row = class * per_class + i;
            let radius = i as f32 / per_class as f32;
            let jitter: f32 = (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum::<f32>() * 0.5;
            let angle = class as f32 * std::f32::consts::TAU / classes as f32
                + radius * 4.0
                + jitter * noise;
            x[[row, 0]] = radius * angle.sin();
            x[[row, 1]] = radius * angle.cos();
            y.push(class);
        }
    }
    (x, y)
}

/// `classes` Gaussian-like blobs of `per_class` points in `dims` dimensions, centres drawn in
/// [-5, 5]^dims, spread `spread` around them.
pub fn blobs(
    per_class: usize,
    classes: usize,
    dims: usize,
    spread: f32,
    seed: u64,
) -> (Array2<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..classes)
        .map(|_| (0..dims).map(|_| rng.random_range(-5.0f32..5.0)).collect())
        .collect();
    let mut x = Array2::zeros((per_class * classes, dims));
    let mut y = Vec::with_capacity(per_class * classes);
    for (class, centre) in centres.iter().enumerate() {
        for i in 0..per_class {
            for (d, c) in centre.iter().enumerate() {
                let noise: f32 = (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum::<f32>() * 0.5;
                x[[class * per_class + i, d]] = c + spread * noise;
            }
            y.push(class);
        }
    }
    (x, y)
}

/// Two interleaving half circles of `per_class` points each (class 0 the upper arc of radius 1
/// around the origin, class 1 the lower arc around (1, 0.5)), in about [-1, 2] × [-0.5, 1], with
/// Gaussian noise of standard deviation `noise` on both coordinates. Not linearly separable.
pub fn moons(per_class: usize, noise: f32, seed: u64) -> (Array2<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Array2::zeros((2 * per_class, 2));
    let mut y = Vec::with_capacity(2 * per_class);
    for class in 0..2 {
        for i in 0..per_class {
            let t = std::f32::consts::PI * i as f32 / (per_class.max(2) - 1) as f32;
            let (px, py) = if class == 0 {
                (t.cos(), t.sin())
            } else {
                (1.0 - t.cos(), 0.5 - t.sin())
            };
            let row = class * per_class + i;
            x[[row, 0]] = px + noise * normal(&mut rng);
            x[[row, 1]] = py + noise * normal(&mut rng);
            y.push(class);
        }
    }
    (x, y)
}

/// `n` points of a 1-D regression problem: x uniform in [-3, 3], y = sin(x) + 0.1 x² plus
/// Gaussian noise of standard deviation `noise`. Returns x as [n, 1] and y as [n, 1].
pub fn regression_curve(n: usize, noise: f32, seed: u64) -> (Array2<f32>, Array2<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Array2::zeros((n, 1));
    let mut y = Array2::zeros((n, 1));
    for i in 0..n {
        let v = rng.random_range(-3.0f32..=3.0);
        x[[i, 0]] = v;
        y[[i, 0]] = v.sin() + 0.1 * v * v + noise * normal(&mut rng);
    }
    (x, y)
}

#[cfg(test)]
mod tests {
    use super::byte_of;

    #[test]
    fn byte_of_finds_every_byte_and_nothing_next_to_one() {
        for k in 0..=255u8 {
            let value = f32::from(k) / 255.0;
            assert_eq!(byte_of(value), Some(k), "{k} / 255");
            for near in [value.next_down(), value.next_up()] {
                assert_eq!(byte_of(near), None, "{near} is next to {k} / 255");
            }
        }
        for other in [-0.0, -1.0 / 255.0, 256.0 / 255.0, 0.5, 1e9, -1e9] {
            assert_eq!(byte_of(other), None, "{other}");
        }
        for other in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            assert_eq!(byte_of(other), None, "{other}");
        }
    }
}
