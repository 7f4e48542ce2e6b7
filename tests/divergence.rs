//! Divergence: a run whose loss or weights go NaN or infinite stops at the next read-back
//! (the end of the epoch) with an error naming the epoch and the first bad step, on both
//! devices, and the model is put back as it was when that epoch began.

mod common;

use ndarray::{Array2, Axis, s};
use wgrad::{
    Activation, Device, Divergence, FitConfig, Model, Optimizer, Sequential, Targets, WgradError,
    data,
};

const BATCH: usize = 16;
/// 120 samples in batches of 16: 8 steps per epoch, the last one short.
const STEPS_PER_EPOCH: u64 = 8;

/// y = x0 on 120 points, fitted by 2-16-1 (tanh) with SGD at a learning rate six times
/// past stability: the error grows geometrically and the loss overflows in epoch 2.
fn data() -> (Array2<f32>, Targets) {
    let (x, _) = data::spirals(40, 3, 0.2, 0);
    let y = x.column(0).to_owned().insert_axis(Axis(1));
    (x, Targets::Values(y))
}

fn model(device: Device, learning_rate: f32) -> Model {
    Model::new(spec(Optimizer::sgd(learning_rate)), device).unwrap()
}

fn spec(optimizer: Optimizer) -> Sequential {
    Sequential::new(2)
        .dense(16, Activation::Tanh)
        .dense(1, Activation::Linear)
        .optimizer(optimizer)
        .seed(1)
}

fn config(epochs: usize) -> FitConfig {
    FitConfig {
        epochs,
        batch_size: BATCH,
        shuffle: false,
        ..Default::default()
    }
}

/// (epoch, step, step of the epoch, cause) of a divergence error, after checking that the
/// three numbers agree with each other and with the message.
fn named_step(error: &WgradError) -> (usize, u64, u64, Divergence) {
    let WgradError::Diverged {
        epoch,
        step,
        epoch_step,
        cause,
        last_good_epoch,
        ref checkpoint,
    } = *error
    else {
        panic!("expected a divergence, got {error:?}");
    };
    assert!(checkpoint.is_none(), "the library saves no checkpoint");
    assert!(
        epoch >= 1 && (1..=STEPS_PER_EPOCH).contains(&epoch_step),
        "{error}"
    );
    assert_eq!(
        step,
        (epoch as u64 - 1) * STEPS_PER_EPOCH + epoch_step,
        "{error}"
    );
    assert_eq!(last_good_epoch, epoch - 1, "{error}");
    let message = error.to_string();
    let expected = format!("epoch {epoch}, step {step} (step {epoch_step} of the epoch)");
    assert!(message.contains(&expected), "{message}");
    (epoch, step, epoch_step, cause)
}

fn all_finite(model: &mut Model) -> bool {
    model.params().unwrap().iter().all(|v| v.is_finite())
}

/// Trains `epochs` full epochs, then the first `batches` batches of the next one.
fn train_into_next_epoch(
    device: Device,
    epochs: usize,
    batches: usize,
) -> (Model, wgrad::Result<()>) {
    let (x, y) = data();
    let mut model = model(device, 3.0);
    if epochs > 0 {
        model.fit(&x, &y, &config(epochs)).unwrap();
    }
    let rows = (batches * BATCH).min(x.nrows());
    let Targets::Values(y) = y else {
        unreachable!()
    };
    let part = FitConfig {
        initial_epoch: epochs,
        ..config(epochs + 1)
    };
    let result = model
        .fit(
            &x.slice(s![..rows, ..]).to_owned(),
            &Targets::Values(y.slice(s![..rows, ..]).to_owned()),
            &part,
        )
        .map(|_| ());
    (model, result)
}

#[test]
fn cpu_names_the_first_step_whose_loss_is_not_finite() {
    let (x, y) = data();
    let mut model = model(Device::Cpu, 3.0);
    let error = model.fit(&x, &y, &config(20)).unwrap_err();
    let (epoch, step, epoch_step, cause) = named_step(&error);
    assert!(
        matches!(cause, Divergence::Loss(loss) if !loss.is_finite()),
        "{error}"
    );
    assert!(epoch < 20, "{error}");
    // The model is back where the diverging epoch began.
    assert_eq!(model.steps(), (epoch as u64 - 1) * STEPS_PER_EPOCH);
    assert!(all_finite(&mut model));

    // The same run cut short: the epochs before and the steps before the named one are
    // finite, and the named step is where it breaks.
    let (mut before, result) =
        train_into_next_epoch(Device::Cpu, epoch - 1, epoch_step as usize - 1);
    if epoch_step > 1 {
        result.unwrap();
    }
    assert!(all_finite(&mut before));
    assert_eq!(before.steps(), step - 1);
    let (_, result) = train_into_next_epoch(Device::Cpu, epoch - 1, epoch_step as usize);
    let again = result.unwrap_err();
    assert_eq!(named_step(&again).1, step, "{again}");
}

#[test]
fn gpu_names_the_step_the_cpu_names() {
    const TEST: &str = "gpu_names_the_step_the_cpu_names";
    let Some(device) = common::gpu_device(TEST) else {
        return;
    };
    let (x, y) = data();
    let cpu = model(Device::Cpu, 3.0)
        .fit(&x, &y, &config(20))
        .unwrap_err();
    let mut gpu_model = model(device, 3.0);
    let gpu = gpu_model.fit(&x, &y, &config(20)).unwrap_err();
    let (cpu_epoch, cpu_step, _, _) = named_step(&cpu);
    let (gpu_epoch, gpu_step, _, cause) = named_step(&gpu);
    assert!(
        matches!(cause, Divergence::Loss(loss) if !loss.is_finite()),
        "{gpu}"
    );
    assert_eq!(gpu_model.steps(), (gpu_epoch as u64 - 1) * STEPS_PER_EPOCH);
    // The devices sum in different orders, so the overflow may come a step apart.
    assert!(cpu_step.abs_diff(gpu_step) <= 1, "CPU: {cpu}\nGPU: {gpu}");
    assert!(cpu_epoch.abs_diff(gpu_epoch) <= 1);
}

/// One step whose update overflows the weights while its own loss is finite: only the
/// weight check can see it before the epoch ends (and a checkpoint is written).
fn weights_overflow(device: Device) {
    let (x, _) = data();
    let y = Targets::Values(Array2::from_elem((x.nrows(), 1), 1e3));
    let mut model = model(device, f32::MAX);
    let initial = model.params().unwrap();
    let config = FitConfig {
        epochs: 3,
        batch_size: x.nrows(),
        ..Default::default()
    };
    let error = model.fit(&x, &y, &config).unwrap_err();
    assert!(
        matches!(
            error,
            WgradError::Diverged {
                epoch: 1,
                step: 1,
                epoch_step: 1,
                cause: Divergence::Weights,
                last_good_epoch: 0,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("weights or the optimizer's state NaN or infinite"),
        "{message}"
    );
    assert!(
        message.contains(
            "no epoch ended with finite weights; the model holds the weights it started with"
        ),
        "{message}"
    );
    assert_eq!(model.params().unwrap(), initial);
    assert_eq!(model.steps(), 0);
}

/// Adam's squared-gradient average overflowing while the loss and the weights stay finite:
/// inputs near 1e23 give a cross-entropy near 1e22 and gradients whose squares pass f32's
/// range, so the update is 0 and only the state check sees the run is lost.
fn optimizer_state_overflow(device: Device) {
    let (x, classes) = data::spirals(20, 2, 0.2, 0);
    let x = x * 1e23;
    let mut model = Model::new(
        Sequential::new(2)
            .dense(16, Activation::Relu)
            .dense(2, Activation::Softmax)
            .optimizer(Optimizer::adam(1e-3))
            .seed(1),
        device,
    )
    .unwrap();
    let config = FitConfig {
        epochs: 2,
        batch_size: 8,
        ..Default::default()
    };
    let error = model.fit(&x, &Targets::from(classes), &config).unwrap_err();
    assert!(
        matches!(
            error,
            WgradError::Diverged {
                epoch: 1,
                step: 1,
                cause: Divergence::Weights,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(all_finite(&mut model));
    let state = model.optimizer_state().unwrap();
    assert!(state.iter().flatten().all(|v| v.is_finite()));
}

#[test]
fn cpu_optimizer_state_that_overflows_is_a_divergence() {
    optimizer_state_overflow(Device::Cpu);
}

#[test]
fn gpu_optimizer_state_that_overflows_is_a_divergence() {
    if let Some(device) = common::gpu_device("gpu_optimizer_state_that_overflows_is_a_divergence") {
        optimizer_state_overflow(device);
    }
}

#[test]
fn cpu_weights_that_overflow_are_a_divergence() {
    weights_overflow(Device::Cpu);
}

#[test]
fn gpu_weights_that_overflow_are_a_divergence() {
    if let Some(device) = common::gpu_device("gpu_weights_that_overflow_are_a_divergence") {
        weights_overflow(device);
    }
}

/// After a divergence the model is back where the diverging epoch began: the parameters,
/// optimizer state and step count of the same run stopped after the epoch before, bit for
/// bit, so it predicts finite values and can be saved.
fn diverged_model_holds_the_last_finite_epoch(device: Device) {
    let (x, y) = data();
    // Momentum keeps state, so that restoring it is checked too.
    let spec = spec(Optimizer::momentum(0.5, 0.9));
    let mut model = Model::new(spec.clone(), device.clone()).unwrap();
    let error = model.fit(&x, &y, &config(20)).unwrap_err();
    let (epoch, ..) = named_step(&error);
    assert!(epoch >= 2, "diverged in the first epoch: {error}");
    let mut stopped_before = Model::new(spec, device).unwrap();
    stopped_before.fit(&x, &y, &config(epoch - 1)).unwrap();
    assert_eq!(model.steps(), stopped_before.steps());
    assert_eq!(model.params().unwrap(), stopped_before.params().unwrap());
    assert_eq!(
        model.optimizer_state().unwrap(),
        stopped_before.optimizer_state().unwrap()
    );
    let predictions = model.predict(&x).unwrap();
    assert!(predictions.iter().all(|v| v.is_finite()));
    assert_eq!(predictions, stopped_before.predict(&x).unwrap());
    let message = error.to_string();
    let kept = format!("the model holds the weights of epoch {}", epoch - 1);
    assert!(message.contains(&kept), "{message}");
}

#[test]
fn cpu_diverged_model_holds_the_last_finite_epoch() {
    diverged_model_holds_the_last_finite_epoch(Device::Cpu);
}

#[test]
fn gpu_diverged_model_holds_the_last_finite_epoch() {
    if let Some(device) = common::gpu_device("gpu_diverged_model_holds_the_last_finite_epoch") {
        diverged_model_holds_the_last_finite_epoch(device);
    }
}
