//! Data: built-in synthetic sets (seeded, so every run sees the same points) and feature
//! scaling ([`scale`]).

pub mod scale;

pub use scale::Scaler;

use ndarray::Array2;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

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
