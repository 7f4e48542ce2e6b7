//! The bodies of wgrad's fuzz targets, one function per target, each taking the raw input.
//!
//! They are kept apart from `fuzz_targets/` (which only hands libFuzzer's input to them) so
//! that `tests/fuzz_regressions.rs` replays the corpus and every saved crash through exactly
//! the same code under a plain `cargo test`, without cargo-fuzz. This file uses nothing but
//! wgrad and wgrad's own dependencies (clap, serde_json), so the test can include it with
//! `#[path]`.
//!
//! Every function accepts any bytes: a parser may return an error, never panic; what it
//! returns on success is checked for the invariants callers rely on (shapes agree, values
//! finite, class indices in range).

use clap::Parser;
use std::path::Path;
use wgrad::cli::TrainArgs;
use wgrad::cli::specs::{self, DataSpec};
use wgrad::data::{self, CsvTask, Dataset, FeatureColumn, mnist};
use wgrad::io::{self, ParsedCheckpoint};
use wgrad::train::Targets;
use wgrad::{Activation, Loss, Sequential};

/// The largest single allocation a parser may make on any fuzz input: 64 MiB. An input of at
/// most a few kilobytes has no business asking for more (the largest legitimate one, an IDX
/// file's pixels as `f32`, is 4 bytes per input byte, or 1032 × 4 from gzip), so anything larger is a size taken
/// from a header or description and not checked against the bytes present.
pub const MAX_ALLOCATION: usize = 64 << 20;

/// The system allocator, but an allocation larger than [`MAX_ALLOCATION`] aborts the process
/// (which libFuzzer reports as a crash and saves the input for). Every fuzz target and
/// `tests/fuzz_regressions.rs` installs it as the global allocator: without sanitizers
/// (`-s none`) libFuzzer's `-malloc_limit_mb` sees nothing, and a huge zeroed allocation
/// (`vec![0.0; n]`) stays virtual, so neither the RSS limit nor the allocator would otherwise
/// notice it.
pub struct LimitedAlloc;

impl LimitedAlloc {
    fn check(size: usize) {
        if size > MAX_ALLOCATION {
            use std::io::Write;
            // No allocation here: stderr is unbuffered and the message static.
            let _ = std::io::stderr().write_all(
                b"wgrad-fuzz: an allocation larger than MAX_ALLOCATION (64 MiB) was requested: \
                  a size from the input is not bounded by the bytes present\n",
            );
            std::process::abort();
        }
    }
}

// SAFETY: forwards every call unchanged to `System`, after a check that only aborts.
unsafe impl std::alloc::GlobalAlloc for LimitedAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        Self::check(layout.size());
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        Self::check(layout.size());
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        Self::check(new_size);
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

/// The body of a fuzz target: any bytes in, a panic only for a bug.
pub type Target = fn(&[u8]);

/// Every target by name, as the directories under `fuzz/corpus/` and `fuzz/regressions/` are
/// named.
pub const TARGETS: &[(&str, Target)] = &[
    ("idx", idx),
    ("csv", csv),
    ("safetensors", safetensors),
    ("model_files", model_files),
    ("cli_specs", cli_specs),
];

/// IDX (MNIST) files, gzipped or not: the input as an image file and as a label file.
pub fn idx(data: &[u8]) {
    let source = Path::new("fuzz-idx");
    if let Ok(images) = mnist::parse_images(source, data) {
        assert!(images.count > 0 && images.rows > 0 && images.cols > 0);
        assert_eq!(
            images.pixels.len(),
            images.count * images.rows * images.cols
        );
        let x = images.to_features();
        assert_eq!(x.dim(), (images.count, images.rows * images.cols));
        assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
    }
    if let Ok(labels) = mnist::parse_labels(source, data) {
        assert!(!labels.is_empty());
        assert!(labels.iter().all(|&l| usize::from(l) < mnist::CLASSES));
    }
}

/// CSV files. The first byte picks the loader (training set with each task, evaluation set with
/// known classes, prediction inputs) and whether a target column is named; the rest is the
/// file.
pub fn csv(data: &[u8]) {
    let Some((&mode, text)) = data.split_first() else {
        return;
    };
    let source = Path::new("fuzz.csv");
    let target = (mode & 0x80 != 0).then_some("y");
    match mode % 5 {
        0..=2 => {
            let task = [CsvTask::Auto, CsvTask::Classification, CsvTask::Regression]
                [usize::from(mode % 5)];
            if let Ok(set) = data::load_csv_from_reader(source, text, target, task) {
                check_dataset(&set);
                match (task, &set.y) {
                    (CsvTask::Classification, Targets::Values(_)) => {
                        panic!("classification gave values")
                    }
                    (CsvTask::Regression, Targets::Classes(_)) => {
                        panic!("regression gave classes")
                    }
                    _ => {}
                }
            }
        }
        3 => {
            let classes: Vec<String> = ["0", "1", "2", "a", "b"].map(String::from).to_vec();
            if let Ok(set) = data::load_csv_with_classes_from_reader(source, text, target, &classes)
            {
                check_dataset(&set);
                assert_eq!(set.class_names.as_ref(), Some(&classes));
            }
        }
        _ => {
            // A numeric column and, with bit 0x40, a column of two categories.
            let categories = (mode & 0x40 != 0).then(|| vec!["a".to_string(), "b".to_string()]);
            let columns = vec![
                FeatureColumn::numeric("x"),
                FeatureColumn {
                    categories,
                    ..FeatureColumn::numeric("y")
                },
            ];
            let expected = (mode & 0x80 != 0).then_some(columns.as_slice());
            if let Ok((x, names)) = data::load_features_from_reader(source, text, expected) {
                assert_eq!(x.ncols(), names.len());
                assert!(x.nrows() > 0 && x.ncols() > 0);
                assert!(x.iter().all(|v| v.is_finite()));
                if let Some(expected) = expected {
                    assert_eq!(names, data::features::input_names(expected));
                    if expected[1].categories.is_some() {
                        // One category per row: its input 1, the others 0.
                        for row in x.rows() {
                            assert_eq!(row[1] + row[2], 1.0);
                        }
                    }
                }
            }
        }
    }
}

/// What every loader promises about a data set.
fn check_dataset(set: &Dataset) {
    assert!(!set.is_empty() && set.n_features() > 0);
    assert_eq!(set.feature_names().len(), set.n_features());
    assert_eq!(data::features::input_width(&set.features), set.n_features());
    assert!(set.x.iter().all(|v| v.is_finite()));
    match &set.y {
        Targets::Classes(labels) => {
            assert_eq!(labels.len(), set.len());
            let names = set.class_names.as_ref().expect("classes have names");
            assert!(labels.iter().all(|&l| l < names.len()));
        }
        Targets::Values(values) => {
            assert_eq!(values.nrows(), set.len());
            assert!(values.iter().all(|v| v.is_finite()));
        }
    }
}

/// The directory named in the model targets' error messages.
const MODEL_DIR: &str = "fuzz-model";

/// `model.json` of a 2-3-2 classifier trained with Adam, as `wgrad train` writes it (compact).
pub const MODEL_JSON: &[u8] = br#"{"format_version":1,"spec":{"input_dim":2,"layers":[{"units":3,"activation":"relu","dropout":0.0},{"units":2,"activation":"softmax","dropout":0.0}],"loss":null,"optimizer":{"kind":"adam","learning_rate":0.001,"beta1":0.9,"beta2":0.999,"epsilon":1e-08},"l1":0.0,"l2":0.0,"seed":0},"scaler":{"kind":"standard","mean":[0.5,0.5],"std":[0.49999997,0.5]},"class_names":["0","1"],"feature_names":["x0","x1"],"target":null}"#;

/// A `checkpoint.json` with no history and an empty manifest.
pub const CHECKPOINT_JSON: &[u8] = br#"{"format_version":1,"epochs_done":0,"steps":0,"history":{"epochs":[]},"fit":null,"files":{}}"#;

/// The model of [`MODEL_JSON`].
fn fixed_spec() -> Sequential {
    let file: serde_json::Value = serde_json::from_slice(MODEL_JSON).expect("valid JSON");
    serde_json::from_value(file["spec"].clone()).expect("a valid spec")
}

/// safetensors files: the input as the `model.safetensors` of [`MODEL_JSON`]'s model, and as
/// the `checkpoint.safetensors` (optimizer state) of the same model.
pub fn safetensors(data: &[u8]) {
    let dir = Path::new(MODEL_DIR);
    if let Ok((spec, _, params)) = io::parse_model(dir, MODEL_JSON, data) {
        check_params(&spec, &params);
    }
    let spec = fixed_spec();
    if let Ok(checkpoint) = io::parse_checkpoint(dir, CHECKPOINT_JSON, data, &spec) {
        check_checkpoint(&spec, &checkpoint);
    }
}

/// The separator between the files of a [`model_files`] input.
pub const SEPARATOR: &[u8] = b"\n--8<--\n";

/// A whole model directory: the input is `model.json`, `model.safetensors`, `checkpoint.json`
/// and `checkpoint.safetensors` joined by [`SEPARATOR`] (missing files are empty). The
/// description is parsed with the given weights and also with weights made to fit it
/// ([`weights_for`]), so that every mutation of the JSON reaches the weights' checks. The
/// checkpoint's files are parsed for the model parsed from the first two, or for
/// [`MODEL_JSON`]'s model when they do not parse; the training options saved in the checkpoint
/// go through the command line's parsers as `wgrad train --resume` does.
pub fn model_files(data: &[u8]) {
    let mut files = split(data, SEPARATOR);
    files.resize(4, &[]);
    let dir = Path::new(MODEL_DIR);
    if let Some(weights) = weights_for(files[0])
        && let Ok((spec, _, params)) = io::parse_model(dir, files[0], &weights)
    {
        check_params(&spec, &params);
    }
    let spec = match io::parse_model(dir, files[0], files[1]) {
        Ok((spec, meta, params)) => {
            check_params(&spec, &params);
            if let Some(names) = &meta.class_names {
                assert_eq!(names.len(), spec.output_dim().max(2));
            }
            if let Some(columns) = &meta.features {
                assert_eq!(data::features::input_width(columns), spec.input_dim);
            }
            if let Some(scaler) = &meta.scaler {
                assert_eq!(scaler.width(), spec.input_dim);
            }
            let _ = spec.summary();
            spec
        }
        Err(_) => fixed_spec(),
    };
    if let Ok(checkpoint) = io::parse_checkpoint(dir, files[2], files[3], &spec) {
        check_checkpoint(&spec, &checkpoint);
        if let Ok(args) = serde_json::from_value::<TrainArgs>(checkpoint.progress.fit) {
            train_options(&args);
        }
    }
}

/// A safetensors file holding every tensor that the model description `json` names: F32
/// `layers.{i}.weight` and `layers.{i}.bias` of the described shapes filled with 0.5 while they
/// are small, of shape `[1]` beyond that (a file claiming a huge layer must not make the parser
/// allocate for it). `None` if `json` is not an object with a `spec.layers` array.
pub fn weights_for(json: &[u8]) -> Option<Vec<u8>> {
    const SMALL: u64 = 4096;
    const TOTAL: u64 = 1 << 20;
    let file: serde_json::Value = serde_json::from_slice(json).ok()?;
    let spec = file.get("spec")?;
    let layers = spec.get("layers")?.as_array()?;
    let mut fan_in = spec.get("input_dim").and_then(|v| v.as_u64()).unwrap_or(1);
    let mut tensors: Vec<(String, Vec<u64>, u64)> = Vec::new();
    let mut offset = 0u64;
    for (i, layer) in layers.iter().enumerate() {
        let units = layer.get("units").and_then(|v| v.as_u64()).unwrap_or(1);
        let small = units.checked_mul(fan_in).is_some_and(|n| n <= SMALL) && offset <= TOTAL;
        let (weight, bias) = if small {
            (vec![units, fan_in], vec![units])
        } else {
            (vec![1], vec![1])
        };
        for (kind, shape) in [("weight", weight), ("bias", bias)] {
            let bytes = 4 * shape.iter().product::<u64>();
            tensors.push((format!("layers.{i}.{kind}"), shape, offset));
            offset += bytes;
        }
        fan_in = units;
    }
    let mut header = serde_json::Map::new();
    for (name, shape, start) in &tensors {
        let end = start + 4 * shape.iter().product::<u64>();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, end]}),
        );
    }
    let header = serde_json::to_vec(&header).ok()?;
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    for _ in 0..offset / 4 {
        out.extend_from_slice(&0.5f32.to_le_bytes());
    }
    Some(out)
}

/// The parameters of a parsed model: as long as its layout, finite, padding zero.
fn check_params(spec: &Sequential, params: &[f32]) {
    let size = spec
        .param_count()
        .expect("a parsed model is within the size limit");
    let layout = spec.param_layout();
    assert_eq!(layout.len, size);
    assert_eq!(params.len(), layout.len);
    assert!(params.iter().all(|v| v.is_finite()));
    let mut in_tensor = vec![false; params.len()];
    for t in &layout.tensors {
        in_tensor[t.offset..t.offset + t.len].fill(true);
    }
    assert!(
        params
            .iter()
            .zip(&in_tensor)
            .all(|(v, &used)| used || *v == 0.0)
    );
}

/// A parsed checkpoint: each state vector empty or as long as the layout, finite.
fn check_checkpoint(spec: &Sequential, checkpoint: &ParsedCheckpoint) {
    let layout = spec.param_layout();
    for state in &checkpoint.optimizer_state {
        assert!(state.is_empty() || state.len() == layout.len);
        assert!(state.iter().all(|v| v.is_finite()));
    }
}

/// `wgrad train`'s options alone, as clap parses them.
#[derive(Parser)]
#[command(name = "wgrad-train")]
struct TrainCommand {
    #[command(flatten)]
    args: TrainArgs,
}

/// The command line's specification parsers. The input is text: its first line goes, as it
/// is, through every parser of one value (`--data`, `--layers`, `--schedule`, activations,
/// losses, monitors, tasks, GPU APIs); every further line is one argument of `wgrad train`,
/// parsed by clap, and the options then build the model and the training settings as
/// `wgrad train` does (for data as wide as the first `--layers` width, with as many classes
/// or values as the last).
pub fn cli_specs(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or("");
    one_value(first);
    let argv: Vec<&str> = lines.collect();
    if argv.is_empty() {
        return;
    }
    let _ = wgrad::cli::Cli::try_parse_from(std::iter::once("wgrad").chain(argv.iter().copied()));
    if let Ok(command) = TrainCommand::try_parse_from(std::iter::once("wgrad").chain(argv)) {
        train_options(&command.args);
    }
}

/// Every parser of a single option value on `text`.
fn one_value(text: &str) {
    let _ = DataSpec::parse(text).map(|spec| spec.name());
    if let Ok(widths) = specs::parse_layers(text) {
        assert!(widths.len() >= 2);
    }
    for epochs in [0, 1, 10, usize::MAX] {
        if let Ok(schedule) = specs::parse_schedule(text, epochs) {
            for epoch in [0, 1, 2, 1000, usize::MAX] {
                let _ = schedule.learning_rate(0.01, epoch);
            }
        }
    }
    let _ = text.parse::<Activation>();
    let _ = text.parse::<Loss>();
    let _ = text.parse::<wgrad::train::Monitor>();
    let _ = text.parse::<CsvTask>();
    let _ = text.parse::<wgrad::gpu::GpuApi>();
}

/// What `wgrad train` derives from its options before it loads data: the data source, the
/// model (for a few data shapes consistent with `--layers`) and the fit settings.
fn train_options(args: &TrainArgs) {
    let _ = DataSpec::parse(&args.data);
    let _ = args.device.device();
    let widths = args
        .layers
        .as_deref()
        .map(specs::parse_layers)
        .and_then(Result::ok);
    let (inputs, out) = match &widths {
        Some(w) => (w[0], *w.last().expect("two widths")),
        None => (4, 3),
    };
    for (classes, outputs) in [(Some(out), out), (Some(2), out), (None, out)] {
        if let Ok(spec) = specs::build_spec(args, inputs, classes, outputs) {
            assert!(spec.validate().is_ok());
            // Counted here on its own (without the alignment padding), not trusting param_count.
            let count = (0..spec.layers.len()).try_fold(0usize, |total, i| {
                let units = spec.layers[i].units;
                spec.fan_in(i)
                    .checked_mul(units)?
                    .checked_add(units)?
                    .checked_add(total)
            });
            assert!(count.is_some_and(|n| n <= wgrad::model::MAX_PARAMETERS));
            let size = spec
                .param_count()
                .expect("a built model is within the size limit");
            assert_eq!(spec.param_layout().len, size);
        }
    }
    for (validation, classification) in [(false, false), (true, true)] {
        if let Ok(config) = specs::fit_config(args, validation, classification) {
            let _ = config.schedule.learning_rate(0.01, 3);
        }
    }
}

/// `data` cut at every `separator`.
fn split<'a>(data: &'a [u8], separator: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(separator.len()).position(|w| w == separator) {
        parts.push(&rest[..at]);
        rest = &rest[at + separator.len()..];
    }
    parts.push(rest);
    parts
}
