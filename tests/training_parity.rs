//! Training-step parity: the same seeded model and data, trained for 10 steps on the GPU and
//! on the CPU, must end with the same weights (within 1e-4 of their magnitude), for every
//! optimizer, with L1/L2 penalties, dropout, shuffling and a short last batch all on.

mod common;

use common::{gpu_device, random_matrix, relative_error};
use wgrad::train::Schedule;
use wgrad::{Activation, Device, FitConfig, Loss, Model, Optimizer, Sequential, Targets};

const TOLERANCE: f32 = 1e-4;

/// Trains on 37 rows of inputs uniform in ±`x_scale`.
fn train(
    spec: &Sequential,
    device: Device,
    x_scale: f32,
    y: &Targets,
    config: &FitConfig,
) -> (Vec<f32>, Vec<f32>) {
    let x = random_matrix(37, spec.input_dim, x_scale, 3);
    let mut model = Model::new(spec.clone(), device).unwrap_or_else(|e| panic!("{e}"));
    let history = model.fit(&x, y, config).unwrap();
    (model.params().unwrap(), history.losses())
}

/// 37 rows in batches of 8: 5 steps an epoch (the last one 5 rows), 2 epochs = 10 steps.
fn ten_steps() -> FitConfig {
    FitConfig {
        epochs: 2,
        batch_size: 8,
        shuffle: true,
        seed: 21,
        ..Default::default()
    }
}

fn compare(spec: Sequential, y: Targets, what: &str) {
    compare_with(spec, 1.0, y, &ten_steps(), what)
}

fn compare_with(spec: Sequential, x_scale: f32, y: Targets, config: &FitConfig, what: &str) {
    let Some(gpu) = gpu_device(what) else { return };
    let initial = spec.initial_params();
    let (cpu_params, cpu_losses) = train(&spec, Device::Cpu, x_scale, &y, config);
    let (gpu_params, gpu_losses) = train(&spec, gpu, x_scale, &y, config);
    let moved = relative_error(&cpu_params, &initial);
    assert!(
        moved > 1e-3,
        "{what}: training barely moved the weights ({moved:e})"
    );
    let error = relative_error(&gpu_params, &cpu_params);
    println!("{what:<50} weights after 10 steps: max relative error {error:.2e}");
    assert!(
        error <= TOLERANCE,
        "{what}: GPU weights differ from the CPU's by {error:e}"
    );
    let loss_error = relative_error(&gpu_losses, &cpu_losses);
    assert!(
        loss_error <= TOLERANCE,
        "{what}: epoch losses differ by {loss_error:e}: {gpu_losses:?} vs {cpu_losses:?}"
    );
}

fn classifier(optimizer: Optimizer) -> Sequential {
    Sequential::new(13)
        .dense(17, Activation::Tanh)
        .dropout(0.2)
        .dense(9, Activation::Relu)
        .dense(5, Activation::Softmax)
        .optimizer(optimizer)
        .l2(1e-3)
        .l1(1e-4)
        .seed(42)
}

fn classes(n: usize, k: usize) -> Targets {
    Targets::Classes((0..n).map(|i| (i * 7 + i / 3) % k).collect())
}

#[test]
fn every_optimizer_gives_the_cpu_weights() {
    let optimizers = [
        Optimizer::sgd(0.1),
        Optimizer::momentum(0.05, 0.9),
        Optimizer::nesterov(0.05, 0.9),
        Optimizer::rmsprop(0.003),
        Optimizer::adam(0.003),
    ];
    for optimizer in optimizers {
        compare(
            classifier(optimizer),
            classes(37, 5),
            &format!("13-17-9-5 softmax CE, {}", optimizer.name()),
        );
    }
}

#[test]
fn binary_and_regression_models() {
    let binary = Sequential::new(13)
        .dense(11, Activation::LeakyRelu)
        .dense(1, Activation::Sigmoid)
        .loss(Loss::BinaryCrossEntropy)
        .optimizer(Optimizer::adam(0.01))
        .l2(1e-3)
        .seed(1);
    compare(binary, classes(37, 2), "13-11-1 sigmoid BCE, adam");
    let regression = Sequential::new(13)
        .dense(19, Activation::Sigmoid)
        .dense(3, Activation::Linear)
        .optimizer(Optimizer::momentum(0.05, 0.8))
        .l2(1e-3)
        .seed(2);
    compare(
        regression,
        Targets::Values(random_matrix(37, 3, 1.0, 4)),
        "13-19-3 linear MSE, momentum",
    );
}

#[test]
fn gradient_clipping_and_schedule() {
    // A clip norm well below the gradient's norm, so every step is rescaled.
    let config = FitConfig {
        clip_norm: Some(0.05),
        schedule: Schedule::Exponential { rate: 0.5 },
        ..ten_steps()
    };
    compare_with(
        classifier(Optimizer::momentum(0.1, 0.9)),
        1.0,
        classes(37, 5),
        &config,
        "13-17-9-5 clipped, exponential schedule",
    );
}

#[test]
fn gradient_clipping_of_exploding_gradients() {
    // Inputs of ~1e10 make weight gradients of ~1e20 (x times the error, itself ~1e10),
    // whose squares overflow f32: every step must still be clipped to the clip norm, not
    // skipped.
    let spec = Sequential::new(13)
        .dense(3, Activation::Linear)
        .optimizer(Optimizer::sgd(0.1))
        .seed(3);
    let config = FitConfig {
        clip_norm: Some(1.0),
        ..ten_steps()
    };
    compare_with(
        spec,
        1e10,
        Targets::Values(random_matrix(37, 3, 1.0, 4)),
        &config,
        "13-3 linear MSE, inputs ~1e10, clipped",
    );
}

/// The matmul operands read from texture copies (gpu/texture.rs; the weight gradient from
/// the transposes of its operands) and from the buffers themselves give the CPU's weights:
/// layers large enough for copies (batch × units × fan-in ≥ 2^18) with widths that are
/// multiples of 4, dropout after the first, a short last batch, Adam.
#[test]
fn texture_copies_train_like_buffers() {
    const TEST: &str = "texture_copies_train_like_buffers";
    let Some(Device::Gpu(choice)) = gpu_device(TEST) else {
        return;
    };
    let spec = Sequential::new(64)
        .dense(96, Activation::Tanh)
        .dropout(0.2)
        .dense(64, Activation::Relu)
        .dense(8, Activation::Softmax)
        .optimizer(Optimizer::adam(0.003))
        .seed(9);
    let x = random_matrix(150, 64, 1.0, 5);
    let y = classes(150, 8);
    let config = FitConfig {
        epochs: 2,
        batch_size: 64,
        seed: 4,
        ..Default::default()
    };
    let run = |device: Device| {
        let mut model = Model::new(spec.clone(), device).unwrap_or_else(|e| panic!("{e}"));
        let history = model.fit(&x, &y, &config).unwrap();
        (model.params().unwrap(), history.losses())
    };
    let with = |textures: bool| {
        Device::Gpu(wgrad::AdapterChoice {
            matmul_textures: Some(textures),
            ..choice.clone()
        })
    };
    let (cpu, cpu_losses) = run(Device::Cpu);
    let (textures, texture_losses) = run(with(true));
    let (buffers, buffer_losses) = run(with(false));
    assert!(
        relative_error(&cpu, &spec.initial_params()) > 1e-3,
        "{TEST}: barely moved"
    );
    let error = relative_error(&textures, &cpu);
    println!("{TEST}: weights against the CPU's: max relative error {error:.2e}");
    assert!(
        error <= TOLERANCE,
        "{TEST}: {error:e} from the CPU's weights"
    );
    assert!(relative_error(&texture_losses, &cpu_losses) <= TOLERANCE);
    // Not bit for bit: with the copies the weight gradient runs as (dzᵀ)·(xᵀ)ᵀ, whose bias
    // gradient adds the batch four rows at a time.
    let error = relative_error(&textures, &buffers);
    println!("{TEST}: against the buffers' weights: max relative error {error:.2e}");
    assert!(
        error <= 1e-5,
        "{TEST}: texture copies moved the weights by {error:e}"
    );
    assert!(relative_error(&texture_losses, &buffer_losses) <= 1e-5);
}

/// A weight of 1 MiB or more gets a tiled gradient on software adapters (gpu/dense.rs,
/// `TILED_GRADIENT_ELEMENTS`): written tile by tile by the weight-gradient product, read back
/// into row order by the optimizer. 515 × 520 has a last row block of 3 rows and a last tile
/// 8 columns wide; momentum and the L2 penalty read the gradient, the bias keeps row order.
#[test]
fn large_weights_with_tiled_gradients_give_the_cpu_weights() {
    let spec = Sequential::new(520)
        .dense(515, Activation::Relu)
        .dense(10, Activation::Softmax)
        .optimizer(Optimizer::momentum(0.05, 0.9))
        .l2(1e-3)
        .seed(13);
    compare(spec, classes(37, 10), "515x520 weight, tiled gradient");
}
