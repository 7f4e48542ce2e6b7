//! GPU start-up and profiling: per-kernel times through timestamp queries (library and
//! `wgrad train --profile`), the start-up report, and the matmul autotune cache as the binary
//! uses it (a corrupt file is ignored with a warning and replaced; `WGRAD_MATMUL` forces a
//! configuration or is refused with the list of names).

mod common;

use common::{TempDir, gpu_device, random_matrix, skip_gpu};
use std::process::{Command, Output};
use wgrad::gpu::autotune::{CacheFile, load_cache};
use wgrad::{Activation, FitConfig, Model, Optimizer, Sequential, Targets};

#[test]
fn profile_times_every_kernel_family() {
    let Some(device) = gpu_device("profile_times_every_kernel_family") else {
        return;
    };
    let spec = Sequential::new(13)
        .dense(17, Activation::Relu)
        .dense(5, Activation::Softmax)
        .optimizer(Optimizer::adam(0.01));
    let mut model = Model::new(spec, device).unwrap();
    let startup = model
        .gpu_startup()
        .expect("a GPU model reports its start-up");
    assert!(startup.pipelines.pipelines > 0, "{startup:?}");
    if !model.set_profiling(true) {
        // Only adapters without timestamp queries may decline; lavapipe has them.
        assert!(
            !model.device().contains("llvmpipe"),
            "lavapipe has timestamp queries"
        );
        eprintln!(
            "SKIPPED profile: {} has no timestamp queries",
            model.device()
        );
        return;
    }
    let x = random_matrix(40, 13, 1.0, 1);
    let y = Targets::Classes((0..40).map(|i| i % 5).collect());
    let config = FitConfig {
        epochs: 2,
        batch_size: 8,
        ..Default::default()
    };
    model.fit(&x, &y, &config).unwrap();
    let profile = model.take_profile().expect("a profile");
    assert_eq!(profile.train_steps, 10);
    // Per step: 2 forward products, 2 weight(+bias) gradients, 1 input gradient.
    let matmul = profile.families["matmul"];
    assert_eq!(matmul.calls, 5 * 10);
    assert!(matmul.seconds > 0.0, "{profile:?}");
    for family in ["gather", "loss", "optimizer"] {
        assert_eq!(profile.families[family].calls, 10, "{family}");
    }
    let table = profile.table();
    println!("{table}");
    assert!(table.lines().any(|l| l.starts_with("matmul")), "{table}");
    // Taken: the next profile starts from zero; stopped: nothing more is timed.
    assert_eq!(model.take_profile().unwrap().train_steps, 0);
    assert!(!model.set_profiling(false));
    model.fit(&x, &y, &config).unwrap();
    assert_eq!(model.take_profile(), None);
}

fn wgrad(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wgrad"));
    command.args(args).env_remove("WGRAD_MATMUL");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the wgrad binary runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn temp_dir(name: &str) -> TempDir {
    TempDir::new("profile", name)
}

fn train_xor(out: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec![
        "train",
        "--data",
        "xor",
        "--epochs",
        "3",
        "--device",
        "gpu",
        "--no-plots",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    wgrad(&args, env)
}

#[test]
fn train_profile_prints_the_kernel_table_and_survives_a_corrupt_autotune_cache() {
    if skip_gpu("train --profile") {
        return;
    }
    let dir = temp_dir("cli");
    let cache = dir.join("cache");
    let cache_file = cache.join("wgrad").join("autotune.json");
    std::fs::create_dir_all(cache_file.parent().unwrap()).unwrap();
    std::fs::write(&cache_file, "{ not json").unwrap();
    let output = train_xor(
        &dir.join("run"),
        &["--profile"],
        &[("XDG_CACHE_HOME", cache.to_str().unwrap())],
    );
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("autotune cache") && out.contains("not valid"),
        "the corrupt cache is reported: {out}"
    );
    assert!(out.contains("GPU start-up"), "{out}");
    assert!(out.contains("autotuned in"), "{out}");
    let matmul = out
        .lines()
        .find(|l| l.starts_with("matmul "))
        .unwrap_or_else(|| panic!("no matmul row in {out}"));
    let total_ms: f64 = matmul.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(total_ms > 0.0, "{matmul}");
    // The cache was replaced by a valid one, which the next run uses.
    let (loaded, warning) = load_cache(&cache_file);
    assert_eq!(warning, None);
    assert_ne!(loaded, CacheFile::default());
    let output = train_xor(
        &dir.join("run2"),
        &["--verbose"],
        &[("XDG_CACHE_HOME", cache.to_str().unwrap())],
    );
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("from the autotune cache"), "{out}");
}

#[test]
fn wgrad_matmul_forces_a_configuration_or_names_the_valid_ones() {
    if skip_gpu("WGRAD_MATMUL") {
        return;
    }
    let dir = temp_dir("forced");
    let output = train_xor(
        &dir.join("run"),
        &["--verbose"],
        &[("WGRAD_MATMUL", "direct8x4")],
    );
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("AB direct8x4, ABt direct8x4, AtB direct8x4 (forced by WGRAD_MATMUL)"),
        "{out}"
    );
    let output = train_xor(&dir.join("run"), &[], &[("WGRAD_MATMUL", "fastest")]);
    let out = text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(
        out.contains("WGRAD_MATMUL=fastest") && out.contains("direct4x4"),
        "{out}"
    );
}
