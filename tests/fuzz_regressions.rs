//! Replays every input kept by the fuzz targets — the seed and minimised corpora in
//! `fuzz/corpus/<target>/` and the inputs that once crashed in `fuzz/regressions/<target>/` —
//! through the same code the targets run (`fuzz/src/lib.rs`), so a plain `cargo test` checks
//! that no parser panics on them again, without cargo-fuzz or a nightly toolchain.

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::{Path, PathBuf};

/// As in the fuzz targets: an allocation beyond `harness::MAX_ALLOCATION` aborts the test.
#[global_allocator]
static ALLOC: harness::LimitedAlloc = harness::LimitedAlloc;

/// The files in `fuzz/<kind>/<target>/`, sorted (none if the directory does not exist).
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `target`'s body on each of its kept inputs; fails naming every input that panics.
fn replay(name: &str) {
    let (_, target) = harness::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .expect("a known target");
    let files: Vec<PathBuf> = ["corpus", "regressions"]
        .iter()
        .flat_map(|kind| inputs(kind, name))
        .collect();
    assert!(
        !files.is_empty(),
        "fuzz/corpus/{name}/ holds no inputs: the seed corpus is missing"
    );
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("readable input");
        if std::panic::catch_unwind(|| target(&data)).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{name}: {} of {} inputs panicked: {}",
        failed.len(),
        files.len(),
        failed.join(", ")
    );
    eprintln!("{name}: {} inputs replayed", files.len());
}

#[test]
fn idx() {
    replay("idx");
}

#[test]
fn csv() {
    replay("csv");
}

#[test]
fn safetensors() {
    replay("safetensors");
}

#[test]
fn model_files() {
    replay("model_files");
}

#[test]
fn cli_specs() {
    replay("cli_specs");
}

#[test]
fn every_target_has_a_test() {
    let names: Vec<&str> = harness::TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        ["idx", "csv", "safetensors", "model_files", "cli_specs"]
    );
}

/// The fuzz corpus' file `fuzz/<kind>/<target>/<name>`.
fn kept(kind: &str, target: &str, name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_model_description_claiming_a_trillion_parameters_is_an_error_not_an_allocation() {
    // model.json says 1,000,000 inputs x 1,000,000 units; the weights file holds 1 x 2.
    let input = kept("corpus", "model_files", "huge-layer");
    let at = input
        .windows(harness::SEPARATOR.len())
        .position(|w| w == harness::SEPARATOR)
        .expect("two files");
    let (json, weights) = (&input[..at], &input[at + harness::SEPARATOR.len()..]);
    let err = wgrad::io::parse_model(Path::new("m"), json, weights).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("m/model.json: the model description is too large: "),
        "{message}"
    );
    assert!(
        message.contains("layer 0 (1000000 inputs x 1000000 units)")
            && message.contains("1073741824 parameters"),
        "{message}"
    );
}

#[test]
fn the_kept_crash_inputs_are_errors_naming_the_layer() {
    let input = kept(
        "regressions",
        "model_files",
        "unbounded-alloc-huge-output-layer",
    );
    let at = input
        .windows(harness::SEPARATOR.len())
        .position(|w| w == harness::SEPARATOR)
        .expect("two files");
    let json = &input[..at];
    let weights = harness::weights_for(json).expect("a description with layers");
    let message = wgrad::io::parse_model(Path::new("m"), json, &weights)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("layer 1 (2 inputs x 42949672961 units)"),
        "{message}"
    );

    use clap::Parser;
    #[derive(Parser)]
    struct Train {
        #[command(flatten)]
        args: wgrad::cli::TrainArgs,
    }
    let input = kept("regressions", "cli_specs", "unbounded-layer-width");
    let text = String::from_utf8(input).unwrap();
    let argv = text.lines().skip(1);
    let args = Train::try_parse_from(std::iter::once("wgrad").chain(argv))
        .unwrap()
        .args;
    let message = wgrad::cli::specs::build_spec(&args, 784, None, 22222222222222222)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("--layers: layer 2 (128 inputs x 22222222222222222 units)"),
        "{message}"
    );
}

#[test]
fn layer_widths_past_the_parameter_limit_are_an_error_naming_the_option() {
    use clap::Parser;
    #[derive(Parser)]
    struct Train {
        #[command(flatten)]
        args: wgrad::cli::TrainArgs,
    }
    for (layers, inputs, out, layer) in [
        (
            "784,1000000000000,10",
            784,
            10,
            "layer 0 (784 inputs x 1000000000000 units)",
        ),
        (
            "18446744073709551615,18446744073709551615,2",
            usize::MAX,
            2,
            "layer 0 (18446744073709551615 inputs x 18446744073709551615 units)",
        ),
        (
            "4,40000,40000,3",
            4,
            3,
            "layer 1 (40000 inputs x 40000 units)",
        ),
    ] {
        let args = Train::try_parse_from(["wgrad", "--layers", layers])
            .unwrap()
            .args;
        let err = wgrad::cli::specs::build_spec(&args, inputs, Some(out), out).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("--layers: ") && message.contains(layer),
            "{layers}: {message}"
        );
    }
    // Just under the limit is accepted (and nothing is allocated by building the spec).
    let args = Train::try_parse_from(["wgrad", "--layers", "4,32000,32000,3"])
        .unwrap()
        .args;
    let spec = wgrad::cli::specs::build_spec(&args, 4, Some(3), 3).unwrap();
    assert!(spec.param_count().unwrap() <= wgrad::model::MAX_PARAMETERS);
}
