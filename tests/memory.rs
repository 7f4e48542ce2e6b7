//! Long runs must not grow the process's memory: a driver quirk (lavapipe leaking per
//! dispatch of a kernel with uniform-bounded loops, ~0.8 MB a step) once took a 20-epoch
//! MNIST run to 5.8 GB. Trains an MNIST-shaped model for several epochs and compares the
//! resident memory after the second epoch with that after the last: on the GPU (on lavapipe
//! the device memory is the process's), and on the CPU with a checkpoint after every epoch.

mod common;

use wgrad::io::{ModelMeta, Progress, save_checkpoint};
use wgrad::train::Callback;
use wgrad::{Activation, FitConfig, History, Model, Optimizer, Sequential, Targets};

/// Resident memory is the whole process's: the tests of this file take turns, so that one's
/// allocations do not count as the other's growth.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<f64>()
        .unwrap()
        / 1024.0
}

#[test]
#[cfg(target_os = "linux")]
fn gpu_training_memory_stays_flat() {
    let Some(gpu) = common::gpu_device("gpu_training_memory_stays_flat") else {
        return;
    };
    let _turn = one_at_a_time();
    let spec = Sequential::new(784)
        .dense(32, Activation::Relu)
        .dense(10, Activation::Softmax)
        .optimizer(Optimizer::adam(1e-3));
    let mut model = Model::new(spec, gpu).unwrap_or_else(|e| panic!("{e}"));
    let rows = 128 * 60;
    let x = ndarray::Array2::from_shape_fn((rows, 784), |(r, c)| {
        ((r * 31 + c * 17) % 255) as f32 / 255.0
    });
    let y = Targets::Classes((0..rows).map(|r| r % 10).collect());
    let config = FitConfig {
        epochs: 2,
        batch_size: 128,
        ..Default::default()
    };
    model.fit(&x, &y, &config).unwrap();
    let after_warm_up = resident_mib();
    // 6 more epochs of 60 steps; with the leak this grew by ~280 MiB, without it the growth
    // levels off at ~12 MiB (allocator and driver pools), the same after 12 epochs.
    model
        .fit(
            &x,
            &y,
            &FitConfig {
                epochs: 6,
                ..config
            },
        )
        .unwrap();
    let growth = resident_mib() - after_warm_up;
    println!("resident memory grew {growth:.1} MiB over 360 steps (from {after_warm_up:.1} MiB)");
    assert!(
        growth < 32.0,
        "memory grew {growth:.1} MiB over 360 training steps"
    );
}

/// Saves a checkpoint after every epoch, as `wgrad train` does.
struct Checkpoints(std::path::PathBuf);

impl Callback for Checkpoints {
    fn on_epoch_end(&mut self, model: &mut Model, history: &History) -> wgrad::Result<()> {
        let progress = Progress {
            epochs_done: history.epochs.len(),
            history: history.clone(),
            fit: serde_json::Value::Null,
        };
        save_checkpoint(&self.0, model, &ModelMeta::default(), &progress)
    }
}

#[test]
#[cfg(target_os = "linux")]
fn cpu_training_with_checkpoints_memory_stays_flat() {
    let _turn = one_at_a_time();
    // 784-256-10: a leaked copy of the parameters (0.8 MB) or of a batch's activations each
    // epoch would add up to more than the allowed growth over 40 epochs.
    let spec = Sequential::new(784)
        .dense(256, Activation::Relu)
        .dense(10, Activation::Softmax)
        .optimizer(Optimizer::adam(1e-3));
    let mut model = Model::new(spec, wgrad::Device::Cpu).unwrap();
    let rows = 128 * 8;
    let x = ndarray::Array2::from_shape_fn((rows, 784), |(r, c)| {
        ((r * 31 + c * 17) % 255) as f32 / 255.0
    });
    let y = Targets::Classes((0..rows).map(|r| r % 10).collect());
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("memory-checkpoints-{}", std::process::id()));
    let mut checkpoints = Checkpoints(dir.clone());
    let mut fit = |epochs| {
        let config = FitConfig {
            epochs,
            batch_size: 128,
            ..Default::default()
        };
        model
            .fit_with(&x, &y, &config, None, &mut [&mut checkpoints])
            .unwrap();
    };
    fit(2);
    let after_warm_up = resident_mib();
    fit(40);
    let growth = resident_mib() - after_warm_up;
    println!(
        "resident memory grew {growth:.1} MiB over 40 epochs and checkpoints (from {after_warm_up:.1} MiB)"
    );
    std::fs::remove_dir_all(dir).unwrap();
    assert!(
        growth < 8.0,
        "memory grew {growth:.1} MiB over 40 epochs with checkpoints"
    );
}
