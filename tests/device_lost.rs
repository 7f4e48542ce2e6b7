//! A GPU device lost in the middle of a run (here destroyed through the test hook, as a
//! driver reset would lose it): every later call is a `DeviceLost` error, returned in
//! bounded time, never a panic or a hang, and the checkpoint saved before is untouched.

mod common;

use std::time::{Duration, Instant};
use wgrad::io::{ModelMeta, Progress};
use wgrad::{
    Activation, Device, FitConfig, Model, Optimizer, Sequential, Targets, WgradError, data,
};

const TEST: &str = "a_lost_device_is_an_error_and_the_saved_checkpoint_loads";

/// How long any call on a lost device may take: lavapipe answers at once; this leaves room
/// for a loaded machine.
const BOUND: Duration = Duration::from_secs(20);

fn assert_device_lost<T: std::fmt::Debug>(what: &str, call: impl FnOnce() -> wgrad::Result<T>) {
    let started = Instant::now();
    let result = call();
    let took = started.elapsed();
    match result {
        Err(error @ WgradError::DeviceLost(_)) => {
            let message = error.to_string();
            assert!(message.contains("device lost"), "{what}: {message}");
            assert!(message.contains("destroyed"), "{what}: {message}");
        }
        other => panic!("{what} on a lost device gave {other:?}"),
    }
    assert!(took < BOUND, "{what} took {took:?} on a lost device");
}

#[test]
fn a_lost_device_is_an_error_and_the_saved_checkpoint_loads() {
    let Some(device) = common::gpu_device(TEST) else {
        return;
    };
    let (x, y) = data::spirals(50, 3, 0.2, 0);
    let y = Targets::from(y);
    let spec = Sequential::new(2)
        .dense(16, Activation::Tanh)
        .dense(3, Activation::Softmax)
        .optimizer(Optimizer::adam(0.02))
        .seed(2);
    let mut model = Model::new(spec, device).unwrap();
    let config = FitConfig {
        epochs: 2,
        batch_size: 32,
        ..Default::default()
    };
    let history = model.fit(&x, &y, &config).unwrap();
    let dir = common::TempDir::new("device-lost", "checkpoint");
    let progress = Progress {
        epochs_done: 2,
        history,
        fit: serde_json::Value::Null,
    };
    wgrad::io::save_checkpoint(&dir, &mut model, &ModelMeta::default(), &progress).unwrap();
    let saved_params = model.params().unwrap();
    let saved_outputs = model.predict(&x).unwrap();

    assert!(model.destroy_gpu_device(), "the hook destroys a GPU device");
    let more = FitConfig {
        initial_epoch: 2,
        epochs: 4,
        ..config.clone()
    };
    assert_device_lost("fit", || model.fit(&x, &y, &more));
    assert_device_lost("predict", || model.predict(&x));
    assert_device_lost("evaluate", || model.evaluate(&x, &y));
    assert_device_lost("params", || model.params());
    assert_device_lost("set_params", || model.set_params(&saved_params));
    assert_device_lost("saving", || {
        wgrad::io::save_checkpoint(&dir, &mut model, &ModelMeta::default(), &progress)
    });

    // The checkpoint written before the loss is intact, on the CPU and on a new device.
    let (on_cpu, _, loaded) = wgrad::io::load_checkpoint(&dir, Device::Cpu).unwrap();
    assert_eq!(loaded.epochs_done, 2);
    assert_eq!(on_cpu.params().unwrap(), saved_params);
    let cpu_outputs = on_cpu.predict(&x).unwrap();
    assert!(common::relative_error(&cpu_outputs, &saved_outputs) < 1e-4);
    let (mut again, _, _) =
        wgrad::io::load_checkpoint(&dir, common::gpu_device(TEST).unwrap()).unwrap();
    assert_eq!(again.params().unwrap(), saved_params);
    again.fit(&x, &y, &more).unwrap();
}

#[test]
fn the_hook_does_nothing_on_the_cpu() {
    let spec = Sequential::new(2).dense(2, Activation::Softmax);
    let mut model = Model::new(spec, Device::Cpu).unwrap();
    assert!(!model.destroy_gpu_device());
    model.predict(&ndarray::Array2::zeros((1, 2))).unwrap();
}
