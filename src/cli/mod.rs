//! The `wgrad` command line: `train`, `eval`, `predict`, `devices` and `summary`, and, with
//! no arguments, the main job (MNIST 784-128-10 on the best device found).

mod checkpoints;
mod data_spec;
mod progress;
mod train;

use crate::backend::Device;
use crate::data::{CsvTask, Dataset, Scaler};
use crate::error::{Result, WgradError};
use crate::gpu::{AdapterChoice, GpuApi};
use crate::io::{self, ModelMeta};
use crate::metrics::{LossFigure, classification_report, regression_report};
use crate::model::{Activation, Loss};
use crate::train::{Model, Targets};
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use train::TrainArgs;

/// The parsers of the command line's specifications, each usable on its own (by the fuzz
/// targets in `fuzz/` and the tests): `--data`, `--layers`, `--schedule`, and the model and
/// training settings built from [`TrainArgs`]. Every one returns an error naming the option
/// for any text it does not accept, and never panics.
pub mod specs {
    pub use super::data_spec::DataSpec;
    pub use super::train::{build_spec, fit_config, parse_layers, parse_schedule};
}

#[derive(Parser)]
#[command(
    name = "wgrad",
    version,
    about = "Train multilayer perceptrons on the GPU (wgpu: Vulkan, Metal, DX12, GL) or the CPU",
    after_help = "With no command, runs the main job: MNIST 784-128-10 for a few epochs on the best device found."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Where the main job runs (without a command), or the command's device when given
    /// before it (`wgrad --device gpu train …`).
    #[command(flatten)]
    device: DeviceArgs,
}

impl Cli {
    /// The process's command line, parsed (clap's message and exit on a bad one), with the
    /// options given on it noted where a command needs to know which were (`--resume`).
    pub fn from_command_line() -> Cli {
        let command = Cli::command();
        let matches = command.clone().get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        if let (Some(Command::Train(args)), Some(("train", train)), Some(options)) = (
            &mut cli.command,
            matches.subcommand(),
            command.find_subcommand("train"),
        ) {
            // The options' ids (the field names), not those of their groups.
            args.given = options
                .get_arguments()
                .map(|option| option.get_id().as_str())
                .filter(|id| train.value_source(id) == Some(ValueSource::CommandLine))
                .map(String::from)
                .collect();
        }
        cli
    }

    /// The device options of the command: its own, or those given before it.
    fn device_for(&self, own: &DeviceArgs) -> Result<DeviceArgs> {
        match (
            self.device == DeviceArgs::default(),
            own == &DeviceArgs::default(),
        ) {
            (true, _) => Ok(own.clone()),
            (false, true) => Ok(self.device.clone()),
            (false, false) => Err(WgradError::InvalidConfig(
                "device options given both before and after the command; give them once".into(),
            )),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Train a model and save it (weights, description, history, plots, checkpoints).
    Train(Box<TrainArgs>),
    /// Loss, accuracy and a per-class report (or MSE/MAE/R²) of a saved model on a data set.
    Eval(EvalArgs),
    /// Write the predicted class and the probabilities (or values) for each row of a CSV.
    Predict(PredictArgs),
    /// List every GPU adapter wgpu finds, best first.
    Devices,
    /// Time the standard benchmark set (matmul GFLOP/s, training samples/s) per device.
    ///
    /// The set: (a) matmul 1024³ and 4096³; (b) MNIST 784-128-10, batch 128, Adam; (c)
    /// 784-800-10, batch 128, SGD with momentum; (d) 1024-4096-4096-4096-10, batch 1024, Adam;
    /// (e) 2-16-1, batch 4, in steps/s (the cost of a step itself). Data are random, the
    /// shapes are MNIST's.
    Bench(BenchArgs),
    /// Print a saved model's layers, shapes and parameter counts.
    Summary {
        /// A model directory written by `wgrad train`.
        #[arg(long)]
        model: PathBuf,
    },
}

/// Where to run; shared by the commands that run a model.
#[derive(Args, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceArgs {
    /// auto: the best hardware GPU adapter, else the CPU (software adapters need `gpu`).
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceKind,
    /// GPU API: vulkan, metal, dx12 or gl (also WGRAD_BACKEND).
    #[arg(long)]
    pub backend: Option<String>,
    /// Part of the GPU adapter's name, or "software" (also WGRAD_ADAPTER).
    #[arg(long)]
    pub adapter: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    #[default]
    Auto,
    Gpu,
    Cpu,
}

impl DeviceArgs {
    pub fn device(&self) -> Result<Device> {
        // The GPU's settings do not concern a run on the CPU.
        if self.device == DeviceKind::Cpu {
            return Ok(Device::Cpu);
        }
        // The environment fills in what the flags leave open, and then counts as they would:
        // `auto` with a backend or adapter named uses it.
        let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let backend = match &self.backend {
            Some(api) => Some((api.clone(), "--backend")),
            None => from_env("WGRAD_BACKEND").map(|api| (api, "WGRAD_BACKEND")),
        };
        let adapter = self.adapter.clone().or_else(|| from_env("WGRAD_ADAPTER"));
        let mut choice = AdapterChoice::default();
        if let Some((api, source)) = &backend {
            choice.api = Some(
                api.parse::<GpuApi>()
                    .map_err(|e| WgradError::InvalidConfig(format!("{source}: {e}")))?,
            );
        }
        match adapter.as_deref() {
            Some(a) if a.eq_ignore_ascii_case("software") => choice.software = true,
            Some(a) => choice.name = Some(a.to_string()),
            None => {}
        }
        Ok(match self.device {
            DeviceKind::Cpu => Device::Cpu,
            DeviceKind::Gpu => Device::Gpu(choice),
            DeviceKind::Auto if choice != AdapterChoice::default() => Device::Gpu(choice),
            DeviceKind::Auto => Device::Auto,
        })
    }
}

/// What a category a model was not trained on becomes (`--unknown-categories`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum UnknownCategories {
    /// An error naming its line.
    Error,
    /// None of the column's categories: all its inputs 0 (scikit-learn's
    /// `handle_unknown="ignore"`).
    Ignore,
}

impl UnknownCategories {
    /// Sets what the columns of categories among `features` do with unknown ones.
    pub fn apply(self, features: &mut [crate::data::FeatureColumn]) {
        for column in features.iter_mut().filter(|c| c.categories.is_some()) {
            column.ignore_unknown = self == UnknownCategories::Ignore;
        }
    }
}

#[derive(Args)]
struct EvalArgs {
    /// A model directory written by `wgrad train`.
    #[arg(long)]
    model: PathBuf,
    /// mnist | mnist:DIR | csv:PATH (or PATH.csv, PATH.tsv) | xor | moons | spirals | blobs | regression
    #[arg(long)]
    data: String,
    /// The CSV file's target column (default: the one the model was trained on; for a model
    /// trained on a built-in set, the one column besides its features).
    #[arg(long)]
    target: Option<String>,
    /// The seed that draws a built-in synthetic set (default: the model's, which gives the
    /// test part `wgrad train` scored).
    #[arg(long)]
    seed: Option<u64>,
    /// What a category the model was not trained on becomes (default: what training set,
    /// else an error).
    #[arg(long, value_enum)]
    unknown_categories: Option<UnknownCategories>,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Args)]
struct BenchArgs {
    /// Devices to time: cpu, gpu or both [default: both, or the one --device names].
    #[arg(long)]
    devices: Option<String>,
    /// Smaller sizes and fewer steps, and no (d) (the large MLP); for software adapters or a
    /// first look.
    #[arg(long)]
    quick: bool,
    /// Instead of the standard set: epoch time of (b) at 1×, 2× and 4× the data, and the
    /// process's memory across epochs.
    #[arg(long)]
    scaling: bool,
    #[command(flatten)]
    gpu: DeviceArgs,
}

#[derive(Args)]
struct PredictArgs {
    /// A model directory written by `wgrad train`.
    #[arg(long)]
    model: PathBuf,
    /// A CSV file with a header row holding the model's feature columns (`-`: standard
    /// input).
    #[arg(long)]
    input: PathBuf,
    /// Where to write the predictions (CSV); without it, or with `-`, they go to standard
    /// output.
    #[arg(long)]
    output: Option<PathBuf>,
    /// What a category the model was not trained on becomes (default: what training set,
    /// else an error).
    #[arg(long, value_enum)]
    unknown_categories: Option<UnknownCategories>,
    #[command(flatten)]
    device: DeviceArgs,
}

/// Runs the command line; the binary only reports the error.
pub fn run(mut cli: Cli) -> Result<()> {
    match cli.command.take() {
        None => train::run(TrainArgs {
            device: cli.device,
            ..TrainArgs::main_job()
        }),
        Some(Command::Train(mut args)) => {
            args.device = cli.device_for(&args.device)?;
            train::run(*args)
        }
        Some(Command::Eval(mut args)) => {
            args.device = cli.device_for(&args.device)?;
            eval(args)
        }
        Some(Command::Predict(mut args)) => {
            args.device = cli.device_for(&args.device)?;
            predict(args)
        }
        Some(Command::Devices) => {
            devices();
            Ok(())
        }
        Some(Command::Summary { model }) => summary(&model),
        Some(Command::Bench(mut args)) => {
            args.gpu = cli.device_for(&args.gpu)?;
            bench(args)
        }
    }
}

fn bench(args: BenchArgs) -> Result<()> {
    let gpu = match args.gpu.device()? {
        Device::Gpu(choice) => Device::Gpu(choice),
        _ => Device::Gpu(AdapterChoice::default()),
    };
    let named = match args.gpu.device {
        DeviceKind::Auto => None,
        DeviceKind::Cpu => Some("cpu"),
        DeviceKind::Gpu => Some("gpu"),
    };
    let devices = match (args.devices.as_deref(), named) {
        (Some(devices), Some(device)) if devices != device => {
            return Err(WgradError::InvalidConfig(format!(
                "--device {device} and --devices {devices} disagree: bench times the --devices \
                 (cpu, gpu or both)"
            )));
        }
        (Some(devices), _) => devices,
        (None, Some(device)) => device,
        (None, None) => "both",
    };
    if devices == "cpu" && (args.gpu.backend.is_some() || args.gpu.adapter.is_some()) {
        return Err(WgradError::InvalidConfig(
            "--backend and --adapter pick the GPU, and --devices cpu times only the CPU".into(),
        ));
    }
    let devices = match devices {
        "cpu" => vec![Device::Cpu],
        "gpu" => vec![gpu],
        "both" => vec![Device::Cpu, gpu],
        other => {
            return Err(WgradError::InvalidConfig(format!(
                "--devices: '{other}' is not cpu, gpu or both"
            )));
        }
    };
    if args.scaling {
        crate::bench::scaling(&devices, args.quick)
    } else {
        crate::bench::run(&devices, args.quick)
    }
}

fn devices() {
    let adapters = crate::gpu::list_adapters();
    if adapters.is_empty() {
        out!(
            "no GPU adapter found; install a Vulkan driver (Debian/Ubuntu: apt-get install mesa-vulkan-drivers libvulkan1) or use --device cpu"
        );
    }
    for adapter in adapters {
        let info = adapter.get_info();
        let limits = adapter.limits();
        out!(
            "{} | {:?} | {:?} | driver: {} {} | max buffer {} MiB, max storage binding {} MiB, max workgroup invocations {}",
            info.name,
            info.backend,
            info.device_type,
            info.driver,
            info.driver_info,
            limits.max_buffer_size >> 20,
            limits.max_storage_buffer_binding_size >> 20,
            limits.max_compute_invocations_per_workgroup,
        );
    }
}

fn summary(dir: &Path) -> Result<()> {
    let (model, meta) = io::load_model(dir, Device::Cpu)?;
    out!("{}", model.spec().summary().trim_end());
    if let Some(columns) = &meta.features {
        // The columns predict and eval look for, with the categories a column of them may
        // hold; a long list by its ends.
        let features: Vec<String> = columns
            .iter()
            .map(|column| {
                let mut notes = Vec::new();
                match (&column.categories, column.offset) {
                    (Some(categories), _) => notes.push(shown_names(categories, " | ")),
                    (None, Some(offset)) => notes.push(offset_note(offset)),
                    (None, None) => {}
                }
                match (&column.categories, column.fill) {
                    (Some(_), Some(_)) => notes.push("missing: no category".into()),
                    // Shortest digits of the 32-bit value, not the f64's 17.
                    (None, Some(fill)) => notes.push(format!("missing: {}", fill as f32)),
                    (_, None) => {}
                }
                if column.ignore_unknown {
                    notes.push("unknown: no category".into());
                }
                let name = shown_name(&column.name);
                match notes.is_empty() {
                    true => name.into_owned(),
                    false => format!("{name} ({})", notes.join("; ")),
                }
            })
            .collect();
        let shown = match features.as_slice() {
            [first, second, .., last] if features.len() > 12 => {
                format!("{first}, {second}, …, {last} ({} columns)", features.len())
            }
            _ => features.join(", "),
        };
        out!("Feature columns: {shown}");
    }
    let targets: Vec<String> = meta
        .targets
        .iter()
        .enumerate()
        .map(
            |(j, target)| match meta.target_offsets.get(j).copied().flatten() {
                Some(offset) => format!("{} ({})", shown_name(target), offset_note(offset)),
                None => shown_name(target).into_owned(),
            },
        )
        .collect();
    match targets.as_slice() {
        [] => {}
        [one] => out!("Target column: {one}"),
        several => out!("Target columns: {}", several.join(", ")),
    }
    if let Some(classes) = &meta.class_names {
        out!("Classes: {}", shown_names(classes, ", "));
    }
    if let Some(scaler) = &meta.scaler {
        let kind = scaler.described();
        out!("Inputs are {kind} with statistics of the training data");
    }
    if let Some(scaler) = &meta.target_scaler {
        let kind = scaler.described();
        out!("The target is {kind} for training; predictions are scaled back to its units");
    }
    Ok(())
}

/// A name as summary and eval list it: in double quotes, CSV-style (inner quotes doubled),
/// where it holds what the lists separate with (`,`, `|`, `;`, parentheses) or quotes, is
/// empty, or starts or ends with a space; as it is otherwise.
fn shown_name(name: &str) -> std::borrow::Cow<'_, str> {
    let separator = |c: char| matches!(c, ',' | '|' | ';' | '(' | ')' | '"');
    if name.is_empty() || name.contains(separator) || name.trim() != name {
        format!("\"{}\"", name.replace('"', "\"\"")).into()
    } else {
        name.into()
    }
}

/// `names`, each as [`shown_name`] shows it, joined by `separator`.
fn shown_names(names: &[String], separator: &str) -> String {
    let shown: Vec<_> = names.iter().map(|name| shown_name(name)).collect();
    shown.join(separator)
}

/// How summary shows a column's offset: what the model's values are less, or plus.
fn offset_note(offset: f64) -> String {
    match offset < 0.0 {
        true => format!("plus {}", -offset),
        false => format!("less {offset}"),
    }
}

/// Loads evaluation data for a saved model: the held-out part of a built-in set, or a CSV
/// read with the model's feature columns (by name), target column and label mapping.
fn evaluation_data(
    spec: &str,
    meta: &ModelMeta,
    target: Option<&str>,
    seed: u64,
) -> Result<Dataset> {
    let source = data_spec::DataSpec::parse(spec)?;
    if target.is_some() && !matches!(source, data_spec::DataSpec::Csv(_)) {
        return Err(WgradError::InvalidConfig(format!(
            "--target: picks a CSV file's target column; {spec} has its own labels"
        )));
    }
    let targets = match target {
        Some(given) => vec![given.to_string()],
        None => meta.targets.clone(),
    };
    check_target_order(target, &meta.targets)?;
    let target = targets.first().map(String::as_str);
    let set = match (&source, &meta.features, &meta.class_names) {
        (data_spec::DataSpec::Csv(path), Some(features), classes) => {
            return crate::data::load_csv_for_model(
                path,
                &targets,
                features,
                classes.as_deref(),
                &meta.target_offsets,
            );
        }
        // Models saved without their feature names: the columns in the file's order.
        (data_spec::DataSpec::Csv(path), None, Some(classes)) => {
            return crate::data::load_csv_with_classes(path, target, classes);
        }
        (data_spec::DataSpec::Csv(path), None, None) => {
            return crate::data::load_csv(path, target, CsvTask::Regression);
        }
        // The test files alone: a directory need not hold the training set to evaluate on.
        (data_spec::DataSpec::Mnist(Some(dir)), _, _) => crate::data::mnist::load_test_dir(dir)?,
        _ => source
            .load(seed)?
            .test
            .unwrap_or_else(|| unreachable!("built-in sets have a test part")),
    };
    check_set_fits_model(spec, meta, &set)?;
    Ok(set)
}

/// A built-in set (or MNIST's files) is read by position, so it must be what the model was
/// trained on: the same task, the same inputs by name and the same classes. A model trained
/// on a CSV file's columns "a", "b" is not scored on xor's "x0", "x1", nor a regression
/// model on a set of classes.
fn check_set_fits_model(spec: &str, meta: &ModelMeta, set: &Dataset) -> Result<()> {
    let mismatch = |what: String| {
        Err(WgradError::InvalidConfig(format!(
            "--data {spec}: {what}; evaluate the model on data like its training data"
        )))
    };
    match (&meta.class_names, &set.y) {
        (Some(_), Targets::Values(_)) => {
            return mismatch(format!(
                "the model is a classifier, and {spec} has values to regress, not classes"
            ));
        }
        (None, Targets::Classes(_)) => {
            return mismatch(format!("the model is a regression, and {spec} has classes"));
        }
        _ => {}
    }
    if let Some(features) = &meta.features {
        let names = |columns: &[crate::data::FeatureColumn]| {
            columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>()
        };
        let (trained, given) = (names(features), names(&set.features));
        if trained != given {
            return mismatch(format!(
                "the model was trained on the inputs {}, and {spec} has {}",
                crate::data::csv::list(&trained),
                crate::data::csv::list(&given)
            ));
        }
    }
    if let (Some(trained), Some(given)) = (&meta.class_names, &set.class_names)
        && trained != given
    {
        return mismatch(format!(
            "the model's classes are {}, and {spec} has the classes {}",
            crate::data::csv::list(trained),
            crate::data::csv::list(given)
        ));
    }
    Ok(())
}

/// The model's inputs from the data at `path`: as many columns as the model takes, scaled as
/// its training inputs were.
fn scaled(model: &Model, meta: &ModelMeta, x: Array2<f32>, path: &str) -> Result<Array2<f32>> {
    let x = meta.model_inputs(model, x).map_err(|e| match e {
        WgradError::InvalidData(message) => WgradError::data(path, message),
        other => other,
    })?;
    note_inputs_out_of_range(meta, &x, path);
    Ok(x)
}

/// The least and greatest value of each column of `x` (the inputs as the model sees them), for
/// [`ModelMeta::input_ranges`]; `None` without rows.
pub(crate) fn input_ranges(x: &Array2<f32>) -> Option<Vec<(f32, f32)>> {
    let mut rows = x.rows().into_iter();
    let mut ranges: Vec<(f32, f32)> = rows.next()?.iter().map(|&v| (v, v)).collect();
    for row in rows {
        for ((least, greatest), &v) in ranges.iter_mut().zip(row) {
            *least = least.min(v);
            *greatest = greatest.max(v);
        }
    }
    Some(ranges)
}

/// From this many rows on, a column most of whose values lie outside its training range is
/// named: a fresh sample of the training data's kind has few values beyond the training
/// extremes (about 2 in n + 1 for n training rows), a column in other units (an income in
/// thousands) all of them, even where they stay within one training span of it.
const ROWS_FOR_A_SHIFT: usize = 3;

/// At most this many inputs are named in the note; the rest are counted.
const INPUTS_NAMED: usize = 3;

/// Notes the columns of new inputs `x` (as the model takes them) that lie outside their
/// training range ([`ModelMeta::input_ranges`]): likely prepared otherwise than the training
/// data (pixels 0–255 for a model trained on 0–1, an income in thousands). A column is named
/// when more than 1% of its values lie beyond its training range by more than its span (a
/// tenth of it for fewer than [`ROWS_FOR_A_SHIFT`] rows; for a constant training column,
/// differ from it), or, from [`ROWS_FOR_A_SHIFT`] rows on, most of them lie outside the range
/// at all. One-hot inputs of categories, read by name, are not
/// judged. Ranges are shown in the data's units.
pub(crate) fn note_inputs_out_of_range(meta: &ModelMeta, x: &Array2<f32>, path: &str) {
    let Some(ranges) = meta.input_ranges.as_deref() else {
        return;
    };
    if ranges.len() != x.ncols() || x.nrows() == 0 {
        return;
    }
    // One pass along the rows: each column's least and greatest value, how many lie outside
    // its range, and how many far outside.
    let mut seen: Vec<(f32, f32, usize, usize)> = x.row(0).iter().map(|&v| (v, v, 0, 0)).collect();
    // Too few rows for a shift to show (one customer to predict): a tenth of the span out
    // counts as far (126 where training incomes ran from 20,000 to 150,000).
    let beyond = if x.nrows() < ROWS_FOR_A_SHIFT {
        0.1
    } else {
        1.0
    };
    for row in x.rows() {
        for ((least, greatest, outside, far), (&v, &(low, high))) in
            seen.iter_mut().zip(row.iter().zip(ranges))
        {
            *least = least.min(v);
            *greatest = greatest.max(v);
            if v < low || v > high {
                *outside += 1;
                let span = beyond * (high - low);
                if span == 0.0 || v < low - span || v > high + span {
                    *far += 1;
                }
            }
        }
    }
    let rows = x.nrows();
    let categories: Vec<bool> = match &meta.features {
        Some(columns) if crate::data::features::input_width(columns) == ranges.len() => {
            crate::data::features::column_of_each_input(columns)
                .map(|c| c.categories.is_some())
                .collect()
        }
        _ => vec![false; ranges.len()],
    };
    let off: Vec<usize> = (0..ranges.len())
        .filter(|&i| {
            let (_, _, outside, far) = seen[i];
            !categories[i] && (far * 100 > rows || (rows >= ROWS_FOR_A_SHIFT && outside * 2 > rows))
        })
        .collect();
    if off.is_empty() {
        return;
    }
    let named: Vec<String> = off
        .iter()
        .take(INPUTS_NAMED)
        .map(|&i| {
            let (least, greatest, ..) = seen[i];
            described_range(meta, i, ranges[i], (least, greatest))
        })
        .collect();
    let hint = "(the same units; pixels in [0, 1], not 0–255)";
    if off.len() == 1 {
        note!(
            "note: {path}: {} lies outside its training range: was it prepared as the training \
             data was {hint}?",
            named[0]
        );
        return;
    }
    let list = match off.len() - named.len() {
        0 => {
            let (last, others) = named.split_last().expect("two or more named");
            format!("{} and {last}", others.join(", "))
        }
        more => format!("{} and {more} more", named.join(", ")),
    };
    note!(
        "note: {path}: {} of the model's {} inputs lie outside their training ranges, {list}: \
         were they prepared as the training data was {hint}?",
        off.len(),
        ranges.len()
    );
}

/// "income (here 20 to 200; in training 20000 to 200000)": input `i`'s name, the range of its
/// new values `here` and its training range `trained` (both as the model takes them), in the
/// data's units (the scaling undone, the column's offset added back).
fn described_range(meta: &ModelMeta, i: usize, trained: (f32, f32), here: (f32, f32)) -> String {
    let features = meta.features.as_deref();
    let name = features
        .and_then(|columns| crate::data::features::input_names(columns).get(i).cloned())
        .unwrap_or_else(|| format!("column {}", i + 1));
    let offset = features
        .and_then(|columns| crate::data::features::column_of_each_input(columns).nth(i))
        .and_then(|column| column.offset)
        .unwrap_or(0.0);
    // The four values, then 0 and 1 for the scaler's divisor, through the scaler's inverse,
    // a row each.
    let scaled = [trained.0, trained.1, here.0, here.1, 0.0, 1.0];
    let column = if meta.scaler.is_some() { i } else { 0 };
    let width = meta.scaler.as_ref().map_or(1, Scaler::width);
    let mut values = Array2::<f32>::zeros((scaled.len(), width));
    for (row, &v) in scaled.iter().enumerate() {
        values[[row, column]] = v;
    }
    if let Some(scaler) = &meta.scaler {
        // As wide as the inputs: checked on load and when fitted.
        let _ = scaler.inverse_transform(&mut values);
    }
    let value = |row: usize| f64::from(values[[row, column]]);
    let divisor = value(5) - value(4);
    // What the 32-bit floats resolve: the scaled value's rounding, scaled back, and the
    // value's own.
    let noise = |row: usize| {
        (f64::from(scaled[row]).abs() * divisor).max(value(row).abs()) * f64::from(f32::EPSILON)
    };
    let shown = |row: usize, other: usize| shown(value(row), value(other), noise(row), offset);
    let range = |a: usize, b: usize| {
        let (a_text, b_text) = (shown(a, b), shown(b, a));
        if a_text == b_text {
            a_text
        } else {
            format!("{a_text} to {b_text}")
        }
    };
    let trained_text = if trained.0 == trained.1 {
        format!("held only {} in training", shown(0, 1))
    } else {
        format!("in training {}", range(0, 1))
    };
    format!("{name} (here {}; {trained_text})", range(2, 3))
}

/// `v + offset` to six significant digits of `v`, or four of the range from `v` to `other`
/// where that is finer (so that 1700000000 and 1700001470 differ), but no finer than `noise`,
/// the error of `v` from the 32-bit floats it was computed from.
fn shown(v: f64, other: f64, noise: f64, offset: f64) -> String {
    if v == 0.0 {
        // The offset as it was saved: the shortest decimal that reads back as it.
        return shown_exactly(offset, usize::MAX);
    }
    let mut exponent = v.abs().log10().floor() - 5.0;
    let spread = (v - other).abs();
    if spread > 0.0 {
        exponent = exponent.min(spread.log10().floor() - 3.0);
    }
    if noise > 0.0 {
        exponent = exponent.max(noise.log10().ceil());
    }
    let exponent = exponent as i32;
    let unit = 10f64.powi(exponent);
    let rounded = (v / unit).round() * unit + offset;
    shown_exactly(rounded, (-exponent).max(0) as usize)
}

/// `v` with at most `decimals` decimals (`usize::MAX`: as many as it takes), trailing zeros
/// dropped; in exponent form from 1e15.
fn shown_exactly(v: f64, decimals: usize) -> String {
    if v.abs() >= 1e15 {
        return format!("{v:.4e}");
    }
    let text = match decimals {
        usize::MAX => format!("{v}"),
        decimals => format!("{v:.decimals$}"),
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    match text {
        "-0" => "0".to_string(),
        text => text.to_string(),
    }
}

fn eval(args: EvalArgs) -> Result<()> {
    let (model, meta) = load_model_for_data(&args.model, &args.device, args.unknown_categories)?;
    if args.seed.is_some()
        && !matches!(
            data_spec::DataSpec::parse(&args.data)?,
            data_spec::DataSpec::Synthetic(_)
        )
    {
        return Err(WgradError::InvalidConfig(format!(
            "--seed: draws a built-in synthetic set; {} is read as it is",
            args.data
        )));
    }
    let seed = args.seed.unwrap_or(model.spec().seed);
    let data = evaluation_data(&args.data, &meta, args.target.as_deref(), seed)?;
    let x = scaled(&model, &meta, data.x, &args.data)?;
    // The loss is of what the model was trained on: a scaled target, if it was scaled.
    let mut y = data.y;
    if let (Some(scaler), Targets::Values(values)) = (&meta.target_scaler, &mut y) {
        scaler.transform(values)?;
    }
    let evaluation = model.evaluate(&x, &y)?;
    if !evaluation.loss.is_finite() {
        // Rows the model gives no finite outputs for would be counted as class 0.
        check_finite_outputs(&model.predict(&x)?, &args.data, "no figures are given")?;
    }
    out!("{} on {}", count(x.nrows(), "sample"), model.device());
    match evaluation.accuracy {
        Some(accuracy) => out!(
            "loss {}  accuracy {:.2}%",
            LossFigure(evaluation.loss),
            100.0 * accuracy
        ),
        None => out!(
            "loss {}{}",
            LossFigure(evaluation.loss),
            of_scaled_target(&meta)
        ),
    }
    print_report(&model, &x, &y, &meta)
}

/// Fails if a row of `outputs` (the model's, on the data at `source`) is not finite, naming
/// the first such data row and how many there are; `consequence` says what is not done.
fn check_finite_outputs(outputs: &Array2<f32>, source: &str, consequence: &str) -> Result<()> {
    check_finite_rows(
        outputs
            .rows()
            .into_iter()
            .map(|row| row.iter().all(|v| v.is_finite())),
        source,
        &format!(
            "gave the model outputs that are not finite (NaN or infinite): values far beyond \
             the training data's, or a model whose weights are too large; {consequence}"
        ),
    )
}

/// Fails naming the first data row (1-based) whose entry of `finite` is false, how many such
/// rows there are, and what they `did`.
fn check_finite_rows(finite: impl Iterator<Item = bool>, source: &str, did: &str) -> Result<()> {
    let bad: Vec<usize> = finite
        .enumerate()
        .filter(|&(_, finite)| !finite)
        .map(|(i, _)| i)
        .collect();
    let Some(first) = bad.first() else {
        return Ok(());
    };
    let others = match bad.len() - 1 {
        0 => String::new(),
        1 => " and 1 other".to_string(),
        n => format!(" and {n} others"),
    };
    Err(WgradError::data(
        source,
        format!("data row {}{others} {did}", first + 1),
    ))
}

/// Said after a loss of a model whose target was scaled.
fn of_scaled_target(meta: &ModelMeta) -> &'static str {
    match meta.target_scaler {
        Some(_) => " (of the scaled target)",
        None => "",
    }
}

/// Precision/recall/F1 and the confusion matrix, or MSE/MAE/R².
/// Regression figures are in the data's units: a scaled target and the predictions are
/// scaled back.
fn print_report(
    model: &crate::Model,
    x: &Array2<f32>,
    y: &Targets,
    meta: &ModelMeta,
) -> Result<()> {
    let class_names = meta.class_names.as_deref();
    match y {
        Targets::Classes(truth) => {
            let predicted = model.predict_classes(x)?;
            let classes = class_names.map_or(model.spec().output_dim().max(2), |c| c.len());
            let mut report = classification_report(truth, &predicted, classes)?;
            if let Some(names) = class_names {
                report.class_names = names.to_vec();
            }
            out!("{report}");
        }
        Targets::Values(truth) => {
            let mut predicted = model.predict(x)?;
            let mut truth = truth.clone();
            if let Some(scaler) = &meta.target_scaler {
                scaler.inverse_transform(&mut predicted)?;
                scaler.inverse_transform(&mut truth)?;
            }
            let report = regression_report(truth.view(), predicted.view())?;
            out!("{report}");
            // Several targets: R² is their mean (scikit-learn's uniform average); each's too.
            if report.r2_per_output.len() > 1 {
                let each: Vec<String> = report
                    .r2_per_output
                    .iter()
                    .enumerate()
                    .map(|(j, r2)| {
                        let name = meta
                            .targets
                            .get(j)
                            .map(|name| shown_name(name).into_owned());
                        format!("{} {r2:.4}", name.unwrap_or(format!("output {}", j + 1)))
                    })
                    .collect();
                out!("R² per target: {}", each.join(", "));
            }
        }
    }
    Ok(())
}

fn predict(args: PredictArgs) -> Result<()> {
    let file = args.output.filter(|path| path.as_os_str() != "-");
    if let Some(path) = &file {
        check_output_place(path, &args.input, &args.model)?;
    }
    let (model, meta) = load_model_for_data(&args.model, &args.device, args.unknown_categories)?;
    let features = meta.features.as_deref();
    let stdin = args.input.as_os_str() == "-";
    let input = match stdin {
        true => "standard input".to_string(),
        false => args.input.display().to_string(),
    };
    let (x, _) = match stdin {
        true => crate::data::load_features_from_reader(
            Path::new(&input),
            std::io::stdin().lock(),
            features,
        )?,
        false => crate::data::load_features(&args.input, features)?,
    };
    let x = scaled(&model, &meta, x, &input)?;
    let outputs = model.predict(&x)?;
    check_finite_outputs(&outputs, &input, "no predictions were written")?;
    // A regression's values in the data's units, computed once for the check and the
    // writing: scaled back, they may pass the 32-bit range.
    let data_units = match meta.class_names {
        Some(_) => None,
        None => Some(meta.outputs_in_data_units(&outputs)?),
    };
    if let Some(values) = &data_units {
        check_finite_rows(
            values
                .rows()
                .into_iter()
                .map(|row| row.iter().all(|v| v.is_finite())),
            &input,
            "gave predictions beyond the range of 32-bit floats once scaled back to the \
             target's units; no predictions were written",
        )?;
    }
    // A cross-entropy model's outputs are probabilities (`predict` turns logits into them),
    // as are softmax outputs and a single sigmoid unit; other outputs are scores.
    let output = model.spec().output_activation();
    let probabilities = model.spec().resolved_loss() != Loss::MeanSquaredError
        || output == Activation::Softmax
        || (output == Activation::Sigmoid && outputs.ncols() == 1);
    let prefix = if probabilities { "p_" } else { "score_" };
    let Some(path) = file else {
        let stdout = csv::Writer::from_writer(std::io::stdout().lock());
        return match write_predictions(stdout, &outputs, data_units.as_ref(), &meta, prefix) {
            // A reader of standard output that quit early (`| head`) wanted no more.
            Err(e) if !is_broken_pipe(&e) => {
                Err(WgradError::data("standard output", e.to_string()))
            }
            _ => Ok(()),
        };
    };
    // Written whole, then renamed over the file: an interrupted predict leaves the old file.
    let mut bytes = Vec::new();
    write_predictions(
        csv::Writer::from_writer(&mut bytes),
        &outputs,
        data_units.as_ref(),
        &meta,
        prefix,
    )
    .map_err(|e| WgradError::data(&path, e.to_string()))?;
    // Not over a device or a FIFO (/dev/stdout, a pipe to another program): into it.
    match std::fs::metadata(&path) {
        Ok(metadata) if !metadata.is_file() && !metadata.is_dir() => {
            std::fs::write(&path, &bytes).map_err(|e| WgradError::io(&path, e))?
        }
        _ => {
            let (dir, name) = split_file_path(&path)?;
            io::write_files_atomically(dir, &[(name, &bytes)])?;
        }
    }
    out!(
        "wrote {} to {}",
        count(outputs.nrows(), "prediction"),
        path.display()
    );
    Ok(())
}

/// Refuses an `--output` that would overwrite predict's input (by any name: a link too) or
/// a file of the model's directory.
fn check_output_place(output: &Path, input: &Path, model: &Path) -> Result<()> {
    if same_place(output, input) {
        return Err(WgradError::data(
            output,
            "--output is the input file: the predictions would overwrite the data; choose \
             another",
        ));
    }
    if let Some(name) = output.file_name().and_then(|n| n.to_str())
        && (train::RUN_FILES.contains(&name) || name == ".lock")
        && same_place(parent_dir(output), model)
    {
        return Err(WgradError::data(
            output,
            format!(
                "--output is the model's own {name}: the predictions would overwrite the \
                 model; choose another name"
            ),
        ));
    }
    Ok(())
}

/// The directory and the file name of `path`, a file to write.
fn split_file_path(path: &Path) -> Result<(&Path, &str)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| WgradError::data(path, "--output must name a file, with a name in UTF-8"))?;
    Ok((parent_dir(path), name))
}

/// The directory holding the file `path` (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// The model in `dir` for eval or predict, its columns of categories reading unknown ones as
/// `unknown` says where given (else as training set).
fn load_model_for_data(
    dir: &Path,
    device: &DeviceArgs,
    unknown: Option<UnknownCategories>,
) -> Result<(Model, ModelMeta)> {
    let (model, mut meta) = io::load_model(dir, device.device()?)?;
    if let (Some(unknown), Some(features)) = (unknown, &mut meta.features) {
        unknown.apply(features);
    }
    Ok((model, meta))
}

/// Refuses `--target` naming a model's several targets in another order, or another number
/// of them: the file's columns are taken as its outputs in order, and reported under the
/// model's names.
fn check_target_order(given: Option<&str>, targets: &[String]) -> Result<()> {
    let Some(given) = given.filter(|_| targets.len() > 1) else {
        return Ok(());
    };
    let names: Vec<&str> = given.split(',').map(str::trim).collect();
    let reordered = names.len() == targets.len()
        && names.iter().all(|name| targets.iter().any(|t| t == name))
        && names
            .iter()
            .zip(targets)
            .any(|(name, target)| name != target);
    if names.len() != targets.len() || reordered {
        return Err(WgradError::InvalidConfig(format!(
            "--target: the model predicts {} targets, {}, in this order; --target names the \
             file's columns for them in that order, and {given:?} does not",
            targets.len(),
            targets.join(", ")
        )));
    }
    Ok(())
}

/// "1 sample", "2 samples".
fn count(n: usize, thing: &str) -> String {
    format!("{n} {thing}{}", if n == 1 { "" } else { "s" })
}

/// Whether `a` and `b` name one existing file or directory (on Unix, by device and inode, so
/// that a hard link is the file it links).
fn same_place(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        matches!(
            (std::fs::metadata(a), std::fs::metadata(b)),
            (Ok(a), Ok(b)) if (a.dev(), a.ino()) == (b.dev(), b.ino())
        )
    }
    #[cfg(not(unix))]
    matches!(
        (std::fs::canonicalize(a), std::fs::canonicalize(b)),
        (Ok(a), Ok(b)) if a == b
    )
}

fn is_broken_pipe(e: &csv::Error) -> bool {
    matches!(e.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// One row per sample: the class and each class's output (columns `{prefix}{class}`), or a
/// regression's values in the data's units (`data_units`, from
/// [`ModelMeta::outputs_in_data_units`]).
fn write_predictions(
    mut writer: csv::Writer<impl std::io::Write>,
    outputs: &Array2<f32>,
    data_units: Option<&Array2<f64>>,
    meta: &ModelMeta,
    prefix: &str,
) -> csv::Result<()> {
    match &meta.class_names {
        Some(classes) => {
            let mut header = vec!["class".to_string()];
            if outputs.ncols() == 1 {
                header.push(format!("{prefix}{}", classes[1]));
            } else {
                header.extend(classes.iter().map(|c| format!("{prefix}{c}")));
            }
            writer.write_record(&header)?;
            for row in outputs.rows() {
                let class = crate::cpu::ops::predicted_class(
                    row.as_slice().expect("owned rows are contiguous"),
                );
                let mut record = vec![classes[class].clone()];
                record.extend(row.iter().map(|p| p.to_string()));
                writer.write_record(&record)?;
            }
        }
        None => {
            // The targets' names; else value, or value_0, value_1, … for several outputs.
            let header: Vec<String> = match meta.targets.len() == outputs.ncols() {
                true => meta.targets.clone(),
                false if outputs.ncols() == 1 => vec!["value".into()],
                false => (0..outputs.ncols()).map(|j| format!("value_{j}")).collect(),
            };
            writer.write_record(&header)?;
            let values = data_units.expect("a regression's predictions come in data units");
            for row in values.rows() {
                writer.write_record(row.iter().map(f64::to_string))?;
            }
        }
    }
    writer.flush()?;
    Ok(())
}
