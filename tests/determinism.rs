//! Determinism: the same seed gives bit-identical weights. On the CPU run to run and whatever
//! the number of threads (the GEMM sums in fixed 256-deep blocks, see `src/cpu/gemm.rs`), and
//! a row's prediction does not depend on the rest of its batch; on the GPU run to run on the
//! same adapter with the same matmul configuration. README.md ("Determinism") says what is
//! and is not guaranteed.

mod common;

use ndarray::{Array2, Axis, s};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use wgrad::{Activation, Device, FitConfig, Model, Optimizer, Sequential, Targets, data};

fn bits(values: impl IntoIterator<Item = f32>) -> Vec<u32> {
    values.into_iter().map(f32::to_bits).collect()
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("determinism-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// Wide enough that the CPU GEMM splits its products across threads (over 2^20
/// multiply-adds), with dropout so that its masks are part of the result.
fn spec(seed: u64) -> Sequential {
    Sequential::new(2)
        .dense(256, Activation::Relu)
        .dropout(0.2)
        .dense(256, Activation::Tanh)
        .dense(3, Activation::Softmax)
        .optimizer(Optimizer::adam(0.005))
        .seed(seed)
}

fn spirals() -> (Array2<f32>, Targets) {
    let (x, y) = data::spirals(200, 3, 0.2, 5);
    (x, Targets::Classes(y))
}

/// A model of [`spec`] trained for 3 epochs of shuffled batches of 64 on `device`.
fn trained(device: Device, seed: u64) -> Model {
    let (x, y) = spirals();
    let mut model = Model::new(spec(seed), device).unwrap_or_else(|e| panic!("{e}"));
    let config = FitConfig {
        epochs: 3,
        batch_size: 64,
        seed,
        ..Default::default()
    };
    model.fit(&x, &y, &config).expect("training");
    model
}

fn params(model: &mut Model) -> Vec<u32> {
    bits(model.params().expect("the parameters"))
}

#[test]
fn cpu_runs_with_one_seed_are_bit_identical() {
    let mut a = trained(Device::Cpu, 11);
    let mut b = trained(Device::Cpu, 11);
    assert_eq!(params(&mut a), params(&mut b), "two runs differ");
    let mut c = trained(Device::Cpu, 12);
    assert_ne!(params(&mut a), params(&mut c), "the seed changes nothing");
}

/// Models trained at once on one rayon pool (a hyper-parameter search, say) finish, and
/// match the same models trained one at a time: each product's split across the pool's
/// threads does not change its bits, whichever thread runs which part.
#[test]
fn cpu_models_trained_side_by_side_in_one_pool_match_models_trained_alone() {
    use rayon::prelude::*;
    let seeds = [21, 22, 23, 24];
    let alone: Vec<Vec<u32>> = seeds
        .iter()
        .map(|&seed| params(&mut trained(Device::Cpu, seed)))
        .collect();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let together: Vec<Vec<u32>> = seeds
            .par_iter()
            .map(|&seed| params(&mut trained(Device::Cpu, seed)))
            .collect();
        let _ = sender.send(together);
    });
    let together = receiver
        .recv_timeout(std::time::Duration::from_secs(300))
        .expect("models trained side by side did not finish in 5 minutes (alone: seconds)");
    assert!(together == alone, "side by side, the weights differ");
}

#[test]
fn cpu_prediction_of_a_row_does_not_depend_on_its_batch() {
    let model = trained(Device::Cpu, 3);
    let (x, _) = spirals();
    let whole = model.predict(&x).expect("predict");
    for chunk in [1, 7, 64, 333] {
        for (i, rows) in x.axis_chunks_iter(Axis(0), chunk).enumerate() {
            let part = model.predict(&rows.to_owned()).expect("predict");
            let start = i * chunk;
            assert_eq!(
                bits(part.iter().copied()),
                bits(
                    whole
                        .slice(s![start..start + rows.nrows(), ..])
                        .iter()
                        .copied()
                ),
                "rows {start}.. predicted in batches of {chunk}"
            );
        }
    }
}

/// `wgrad train` on spirals with `threads` rayon threads, into `dir`: the bytes of the weights
/// and of the optimizer state.
fn train_with_threads(dir: &Path, threads: usize) -> (Vec<u8>, Vec<u8>) {
    let output = Command::new(env!("CARGO_BIN_EXE_wgrad"))
        .args([
            "train",
            "--data",
            "spirals",
            "--layers",
            "2,256,256,3",
            "--dropout",
            "0.2",
            "--batch-size",
            "64",
            "--epochs",
            "3",
            "--seed",
            "7",
            "--device",
            "cpu",
            "--quiet",
            "--no-plots",
            "--out",
        ])
        .arg(dir)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .output()
        .expect("the wgrad binary runs");
    let text = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "wgrad train failed:\n{text}");
    assert!(
        text.contains(&format!("GEMM, {threads} threads)")),
        "not on {threads} threads:\n{text}"
    );
    let read = |name: &str| fs::read(dir.join(name)).expect("a saved file");
    (read("model.safetensors"), read("checkpoint.safetensors"))
}

#[test]
fn cpu_weights_do_not_depend_on_the_thread_count() {
    let root = scratch("threads");
    let reference = train_with_threads(&root.join("2a"), 2);
    for (name, threads) in [("2b", 2), ("1", 1), ("3", 3)] {
        let run = train_with_threads(&root.join(name), threads);
        assert!(
            run.0 == reference.0,
            "weights on {threads} threads differ from those on 2"
        );
        assert!(
            run.1 == reference.1,
            "optimizer state on {threads} threads differs from that on 2"
        );
    }
    fs::remove_dir_all(root).expect("remove the scratch directory");
}

#[test]
fn gpu_runs_with_one_seed_are_bit_identical() {
    let Some(gpu) = common::gpu_device("gpu_runs_with_one_seed_are_bit_identical") else {
        return;
    };
    let mut a = trained(gpu.clone(), 11);
    let mut b = trained(gpu, 11);
    assert_eq!(params(&mut a), params(&mut b), "two runs differ");
    let (x, _) = spirals();
    let pa = a.predict(&x).expect("predict");
    let pb = b.predict(&x).expect("predict");
    assert_eq!(bits(pa), bits(pb), "predictions differ");
}

/// Two `wgrad train --device gpu` processes with the matmul configuration pinned, as the README
/// advises for reproducible GPU runs.
#[test]
fn gpu_processes_with_a_pinned_matmul_are_bit_identical() {
    if common::skip_gpu("gpu_processes_with_a_pinned_matmul_are_bit_identical") {
        return;
    }
    let root = scratch("gpu_processes");
    let weights: Vec<Vec<u8>> = ["a", "b"]
        .iter()
        .map(|name| {
            let dir = root.join(name);
            let output = Command::new(env!("CARGO_BIN_EXE_wgrad"))
                .args([
                    "train",
                    "--data",
                    "spirals",
                    "--layers",
                    "2,64,64,3",
                    "--dropout",
                    "0.2",
                    "--batch-size",
                    "32",
                    "--epochs",
                    "2",
                    "--seed",
                    "7",
                    "--device",
                    "gpu",
                    "--quiet",
                    "--no-plots",
                    "--out",
                ])
                .arg(&dir)
                .env("WGRAD_MATMUL", "direct8x8")
                .output()
                .expect("the wgrad binary runs");
            let text =
                String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success(),
                "wgrad train --device gpu failed ({}):\n{text}",
                common::NO_ADAPTER_HELP
            );
            fs::read(dir.join("model.safetensors")).expect("the saved weights")
        })
        .collect();
    assert!(weights[0] == weights[1], "two GPU processes differ");
    fs::remove_dir_all(root).expect("remove the scratch directory");
}
