//! `wgrad train`: load data, scale it, build the model from the options, fit with
//! validation, early stopping, schedules and checkpoints, then save the model, its history
//! (CSV, JSON, PNG) and report on the test data.

use super::checkpoints::{self, CheckpointEvery, Checkpointer};
use super::data_spec::{DataSpec, Loaded};
use super::progress::ProgressDisplay;
use super::{DeviceArgs, UnknownCategories, print_report, same_place};
use crate::data::{CsvOptions, CsvTask, Dataset, Scaler};
use crate::error::{Result, WgradError};
use crate::io::{self, ModelMeta};
use crate::model::{Activation, Loss, Optimizer, Sequential};
use crate::train::{
    EarlyStopping, EarlyStoppingResume, FitConfig, History, Model, Monitor, Schedule, Targets,
};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Clone, Debug, Serialize, Deserialize)]
pub struct TrainArgs {
    /// mnist | mnist:DIR | csv:PATH (or PATH.csv, PATH.tsv) | xor | moons | spirals | blobs | regression
    #[arg(long, default_value = "mnist")]
    pub data: String,
    /// CSV: the target column's name (default: the last column).
    #[arg(long)]
    pub target: Option<String>,
    /// CSV: classification, regression, or auto (words, or at most 20 distinct integers, are
    /// classes; other numbers a regression target).
    #[arg(long, default_value = "auto")]
    pub task: String,
    /// CSV: columns to leave out, e.g. --ignore id,name (identifiers, free text); repeat it
    /// for a name with a comma: --ignore "Name, full".
    #[arg(long, value_name = "COLUMNS")]
    #[serde(default)]
    pub ignore: Vec<String>,
    /// CSV: columns to read as categories whatever they hold, e.g. --categorical region,store
    /// for integer codes (columns of words are categories anyway).
    #[arg(long, value_name = "COLUMNS")]
    #[serde(default)]
    pub categorical: Vec<String>,
    /// CSV: what a category the model was not trained on becomes in eval, predict and
    /// validation data: error, or ignore (none of the column's categories, all its inputs 0).
    #[arg(long, value_enum)]
    #[serde(default)]
    pub unknown_categories: Option<UnknownCategories>,
    /// CSV: fill missing feature values with the column's mean or median (a column of
    /// categories: none of them); the model keeps the values for eval and predict. Default:
    /// a missing value is an error.
    #[arg(long, value_name = "mean|median")]
    #[serde(default)]
    pub fill_missing: Option<String>,
    /// Layer widths from inputs to outputs, e.g. 784,128,10 (default: inputs,128,outputs).
    #[arg(long)]
    pub layers: Option<String>,
    /// Activation of the hidden layers: relu, leaky_relu, tanh, sigmoid or linear.
    #[arg(long, default_value = "relu")]
    pub activation: String,
    /// Activation of the output layer: softmax, sigmoid, linear, or a hidden one (default:
    /// softmax for classes, sigmoid for one output unit with two classes, linear for
    /// regression).
    #[arg(long)]
    pub output_activation: Option<String>,
    /// mse | bce | ce (default: from the output activation).
    #[arg(long)]
    pub loss: Option<String>,
    /// sgd | momentum | nesterov | rmsprop | adam
    #[arg(long, default_value = "adam")]
    pub optimizer: String,
    /// Learning rate (default: 0.01 for SGD and momentum, 0.001 for RMSprop and Adam).
    #[arg(long, allow_negative_numbers = true, value_parser = float32)]
    pub lr: Option<f32>,
    /// Momentum of momentum and nesterov, and of sgd when given (as Keras's
    /// SGD(momentum=…), which is then the momentum optimizer).
    #[arg(long, allow_negative_numbers = true, value_parser = float32, default_value_t = 0.9)]
    pub momentum: f32,
    /// Train until this epoch (default 10; when resuming, the saved run's target).
    #[arg(long, allow_negative_numbers = true)]
    pub epochs: Option<usize>,
    /// Samples per training step (the last step of an epoch takes what is left).
    #[arg(long, allow_negative_numbers = true, default_value_t = 32)]
    pub batch_size: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Seed of the initial weights, the shuffling, dropout, the validation split and the
    /// built-in sets' points.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    pub seed: u64,
    /// Model directory to write (default: runs/DATA, DATA the data set's name).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run checkpointed in this directory.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// How often to checkpoint: every N epochs, or after the first epoch a time (e.g. 30s,
    /// 10m, 2h) after the last checkpoint; also at the end, on Ctrl-C and when a divergence stops
    /// the run. The default, 1s, is every epoch where epochs take a second or more.
    #[arg(long, value_name = "N|TIME", default_value = CheckpointEvery::DEFAULT)]
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: String,
    /// Print only the final figures (and warnings).
    #[arg(long)]
    pub quiet: bool,
    /// L1 penalty on the weights (not the biases), l1·Σ|w|, trained with the loss; the
    /// loss shown leaves it out.
    #[arg(long, allow_negative_numbers = true, value_parser = float32, default_value_t = 0.0)]
    pub l1: f32,
    /// L2 penalty on the weights (not the biases), l2·Σw², trained with the loss; the loss
    /// shown leaves it out.
    #[arg(long, allow_negative_numbers = true, value_parser = float32, default_value_t = 0.0)]
    pub l2: f32,
    /// Dropout rate after every hidden layer.
    #[arg(long, allow_negative_numbers = true, value_parser = float32, default_value_t = 0.0)]
    pub dropout: f32,
    /// Fraction of the training data held out for validation.
    #[arg(long, allow_negative_numbers = true, value_parser = float32)]
    pub validation_split: Option<f32>,
    /// A separate validation file (CSV with the training file's columns).
    #[arg(long)]
    pub validation_data: Option<PathBuf>,
    /// Stop after this many epochs without improvement of --monitor.
    #[arg(long, allow_negative_numbers = true)]
    pub early_stopping: Option<usize>,
    /// loss | accuracy | val_loss | val_accuracy (default: val_loss with validation data).
    #[arg(long)]
    pub monitor: Option<String>,
    /// constant | step:EVERY:FACTOR (the rate times FACTOR every EVERY epochs) | exp:RATE
    /// (times RATE every epoch) | cosine | cosine:MIN_LR (annealed to MIN_LR, default 0, over --epochs)
    #[arg(long, default_value = "constant")]
    pub schedule: String,
    /// Clip the gradient's global L2 norm to this.
    #[arg(long, allow_negative_numbers = true, value_parser = float32)]
    pub clip_norm: Option<f32>,
    /// standard | minmax | none (default: standard, none for MNIST's [0, 1] pixels).
    #[arg(long)]
    pub scale: Option<String>,
    /// Scale a regression target too: standard | minmax | none (default: none, as Keras and
    /// scikit-learn). Training's losses are then of the scaled target; predict, eval and the
    /// reports give values in the data's units.
    #[arg(long)]
    #[serde(default)]
    pub scale_target: Option<String>,
    /// Do not write the PNG plots.
    #[arg(long)]
    pub no_plots: bool,
    /// Time every GPU kernel (timestamp queries) and print a table per kernel family.
    #[arg(long)]
    #[serde(default)]
    pub profile: bool,
    /// Say what starting the device cost (pipelines built, matmul configuration chosen).
    #[arg(long)]
    #[serde(default)]
    pub verbose: bool,
    /// What the run's data was when it started (a CSV file's can change before a resume):
    /// saved with the options, never given.
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_fingerprint: Option<DataFingerprint>,
    /// The same of `--validation-data`'s file.
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_fingerprint: Option<DataFingerprint>,
    /// The options given on the command line, by field name (`Cli::from_command_line`
    /// fills it): what `--resume` takes over from them.
    #[arg(skip)]
    #[serde(skip)]
    pub given: Vec<String>,
}

/// What may change when a run is resumed: how long and where it trains, the learning rate and
/// its schedule, clipping, early stopping, and what is shown and written. The rest (the data,
/// the model, the optimizer, the batches, the output directory) is the saved run's.
const RESUMABLE: &[&str] = &[
    "resume",
    "epochs",
    "device",
    "backend",
    "adapter",
    "lr",
    "schedule",
    "clip_norm",
    "early_stopping",
    "monitor",
    "checkpoint_every",
    "quiet",
    "no_plots",
    "profile",
    "verbose",
];

/// Whether option `field`, given to `--resume dir`, says what the saved run has: the same
/// value, the same data file, or `--out` that directory.
fn unchanged(given: &TrainArgs, saved: &TrainArgs, dir: &Path, field: &str) -> bool {
    let absolute_data = |args: &TrainArgs| DataSpec::parse(&args.data).and_then(|s| s.absolute());
    match field {
        "out" => given.out.as_deref().is_some_and(|out| same_place(out, dir)),
        "data" => matches!((absolute_data(given), absolute_data(saved)), (Ok(a), Ok(b)) if a == b),
        _ => {
            let value = |args| serde_json::to_value(args).ok().map(|v| v[field].clone());
            value(given) == value(saved)
        }
    }
}

/// Runs saved before `--checkpoint-every` existed go on with the default.
fn default_checkpoint_every() -> String {
    CheckpointEvery::DEFAULT.into()
}

/// `--clip-norm` for the field `clip_norm`.
fn flag(field: &str) -> String {
    format!("--{}", field.replace('_', "-"))
}

impl TrainArgs {
    /// The main job: MNIST 784-128-10, ReLU, Adam (lr 0.002), batch 128, 5 epochs, on the best
    /// device.
    pub fn main_job() -> TrainArgs {
        TrainArgs {
            data: "mnist".into(),
            target: None,
            task: "auto".into(),
            ignore: Vec::new(),
            categorical: Vec::new(),
            unknown_categories: None,
            fill_missing: None,
            layers: Some("784,128,10".into()),
            activation: "relu".into(),
            output_activation: None,
            loss: None,
            optimizer: "adam".into(),
            lr: Some(0.002),
            momentum: 0.9,
            epochs: Some(5),
            batch_size: 128,
            device: DeviceArgs::default(),
            seed: 0,
            out: None,
            resume: None,
            checkpoint_every: CheckpointEvery::DEFAULT.into(),
            quiet: false,
            l1: 0.0,
            l2: 0.0,
            dropout: 0.0,
            validation_split: None,
            validation_data: None,
            early_stopping: None,
            monitor: None,
            schedule: "constant".into(),
            clip_norm: None,
            scale: None,
            scale_target: None,
            no_plots: false,
            profile: false,
            verbose: false,
            data_fingerprint: None,
            validation_fingerprint: None,
            given: Vec::new(),
        }
    }

    fn epochs(&self) -> usize {
        self.epochs.unwrap_or(10)
    }
}

fn invalid(option: &str, message: impl std::fmt::Display) -> WgradError {
    WgradError::InvalidConfig(format!("--{option}: {message}"))
}

/// `step:EVERY:FACTOR`, `exp:RATE`, `cosine[:MIN_LR]` or `constant`.
pub fn parse_schedule(text: &str, epochs: usize) -> Result<Schedule> {
    let parts: Vec<&str> = text.split(':').collect();
    let number = |s: &str| {
        s.parse::<f32>()
            .map_err(|_| invalid("schedule", format!("'{s}' is not a number in '{text}'")))
    };
    let schedule = match parts.as_slice() {
        ["constant"] => Schedule::Constant,
        ["step", every, factor] => Schedule::Step {
            every: every.parse().map_err(|_| {
                invalid(
                    "schedule",
                    format!("'{every}' is not a whole number of epochs"),
                )
            })?,
            factor: number(factor)?,
        },
        ["exp", rate] => Schedule::Exponential {
            rate: number(rate)?,
        },
        ["cosine"] => Schedule::Cosine {
            epochs,
            min_lr: 0.0,
        },
        ["cosine", min] => Schedule::Cosine {
            epochs,
            min_lr: number(min)?,
        },
        _ => {
            return Err(invalid(
                "schedule",
                format!("'{text}' is not constant, step:EVERY:FACTOR, exp:RATE or cosine[:MIN_LR]"),
            ));
        }
    };
    schedule.check().map_err(|e| invalid("schedule", e))?;
    Ok(schedule)
}

pub fn parse_layers(text: &str) -> Result<Vec<usize>> {
    let widths = text
        .split(',')
        .map(|w| {
            w.trim().parse::<usize>().map_err(|_| {
                invalid(
                    "layers",
                    format!(
                        "'{w}' is not a layer width in '{text}' (widths are separated by \
                             commas: 784,128,10)"
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(zero) = widths.iter().position(|&w| w == 0) {
        return Err(invalid(
            "layers",
            format!(
                "width number {} in '{text}' is 0; every layer needs at least 1 unit",
                zero + 1
            ),
        ));
    }
    if widths.len() < 2 {
        return Err(invalid(
            "layers",
            format!("'{text}' needs at least an input and an output width, e.g. 784,128,10"),
        ));
    }
    Ok(widths)
}

/// `--lr`, or the optimizer's default rate (Keras's: 0.01 for SGD, 0.001 otherwise).
fn learning_rate(args: &TrainArgs) -> f32 {
    args.lr.unwrap_or(match args.optimizer.as_str() {
        "sgd" | "momentum" | "nesterov" => 0.01,
        _ => 0.001,
    })
}

fn optimizer(args: &TrainArgs) -> Result<Optimizer> {
    let lr = learning_rate(args);
    crate::model::check_learning_rate(lr).map_err(|e| invalid("lr", e))?;
    let momentum_given = args.given.iter().any(|field| field == "momentum");
    if momentum_given && matches!(args.optimizer.as_str(), "rmsprop" | "adam") {
        return Err(invalid(
            "momentum",
            format!(
                "applies to sgd, momentum and nesterov, not {}",
                args.optimizer
            ),
        ));
    }
    let optimizer = match args.optimizer.as_str() {
        // As Keras's SGD(momentum=…): plain SGD unless a momentum is given.
        "sgd" if momentum_given => Optimizer::momentum(lr, args.momentum),
        "sgd" => Optimizer::sgd(lr),
        "momentum" => Optimizer::momentum(lr, args.momentum),
        // As PyTorch's SGD(nesterov=True): a look-ahead needs a momentum to look ahead with.
        "nesterov" if args.momentum == 0.0 => {
            return Err(invalid(
                "momentum",
                "nesterov needs a momentum > 0 (with 0 it is plain SGD: --optimizer sgd)",
            ));
        }
        "nesterov" => Optimizer::nesterov(lr, args.momentum),
        "rmsprop" => Optimizer::rmsprop(lr),
        "adam" => Optimizer::adam(lr),
        other => {
            return Err(invalid(
                "optimizer",
                format!("unknown optimizer '{other}' (sgd, momentum, nesterov, rmsprop, adam)"),
            ));
        }
    };
    // The only hyper-parameter besides the rate that the command line sets.
    optimizer.check().map_err(|e| invalid("momentum", e))?;
    Ok(optimizer)
}

/// The model the options describe, for data with `inputs` features and `classes` classes
/// (`None` for regression with `outputs` values).
pub fn build_spec(
    args: &TrainArgs,
    inputs: usize,
    classes: Option<usize>,
    outputs: usize,
) -> Result<Sequential> {
    let loss = match &args.loss {
        Some(loss) => Some(loss.parse::<Loss>().map_err(|e| invalid("loss", e))?),
        None => None,
    };
    // Two classes take one sigmoid unit where the options ask for one, or for binary
    // cross-entropy (Keras's `binary_crossentropy` on 0/1 labels) with a sigmoid or linear
    // (logit) output.
    let bce = loss == Some(Loss::BinaryCrossEntropy);
    let one_unit = match args.output_activation.as_deref() {
        Some("sigmoid") => true,
        Some("linear") => bce,
        Some(_) => false,
        None => bce,
    };
    let default_outputs = match classes {
        Some(2) if one_unit => 1,
        Some(k) => k,
        None => outputs,
    };
    let widths = match &args.layers {
        Some(text) => parse_layers(text)?,
        None => vec![inputs, 128, default_outputs],
    };
    if widths[0] != inputs {
        return Err(invalid(
            "layers",
            format!(
                "the first width is {}, but the data has {inputs} inputs",
                widths[0]
            ),
        ));
    }
    let out = *widths.last().expect("at least two widths");
    match classes {
        Some(k) if out != k && !(k == 2 && out == 1) => {
            return Err(invalid(
                "layers",
                format!("the output width is {out}, but the data has {k} classes"),
            ));
        }
        None if out != outputs => {
            return Err(invalid(
                "layers",
                format!("the output width is {out}, but the data has {outputs} target values"),
            ));
        }
        _ => {}
    }
    let hidden: Activation = args
        .activation
        .parse()
        .map_err(|e| invalid("activation", e))?;
    let output = match &args.output_activation {
        Some(a) => a.parse().map_err(|e| invalid("output-activation", e))?,
        None if classes.is_some() && (out == 1 || bce) => Activation::Sigmoid,
        None if classes.is_some() => Activation::Softmax,
        None => Activation::Linear,
    };
    // The library's rules, checked here so that the message names the flag.
    for (flag, value) in [("l1", args.l1), ("l2", args.l2)] {
        crate::model::check_penalty(value).map_err(|e| invalid(flag, e))?;
    }
    crate::model::check_dropout_rate(args.dropout)
        .map_err(|e| invalid("dropout", format!("the {e}")))?;
    if args.dropout != 0.0 && widths.len() == 2 {
        return Err(invalid(
            "dropout",
            format!(
                "dropout applies after hidden layers, and --layers {} has none",
                args.layers.as_deref().unwrap_or_default()
            ),
        ));
    }
    let mut spec = Sequential::new(inputs);
    for &width in &widths[1..widths.len() - 1] {
        spec = spec.dense(width, hidden);
        if args.dropout != 0.0 {
            spec = spec.dropout(args.dropout);
        }
    }
    spec = spec
        .dense(out, output)
        .optimizer(optimizer(args)?)
        .l1(args.l1)
        .l2(args.l2)
        .seed(args.seed);
    match (loss, classes) {
        (Some(loss), _) => spec = spec.loss(loss),
        // Values to predict: squared error whatever the output activation (the library
        // would take a sigmoid output for binary cross-entropy).
        (None, None) => spec = spec.loss(Loss::MeanSquaredError),
        (None, Some(_)) => {}
    }
    spec.param_count().map_err(|e| match e {
        WgradError::InvalidModel(message) => invalid("layers", message),
        other => other,
    })?;
    spec.validate()?;
    Ok(spec)
}

pub fn fit_config(
    args: &TrainArgs,
    has_validation: bool,
    classification: bool,
) -> Result<FitConfig> {
    let early_stopping = match args.early_stopping {
        Some(patience) => {
            let monitor = match &args.monitor {
                Some(m) => m.parse::<Monitor>().map_err(|e| invalid("monitor", e))?,
                None if has_validation => Monitor::ValLoss,
                None => Monitor::Loss,
            };
            if matches!(monitor, Monitor::ValLoss | Monitor::ValAccuracy) && !has_validation {
                return Err(invalid(
                    "monitor",
                    format!(
                        "{} needs validation data: give --validation-split F or \
                         --validation-data CSV",
                        monitor.name()
                    ),
                ));
            }
            if monitor.maximize() && !classification {
                return Err(invalid(
                    "monitor",
                    format!("{} needs classification targets", monitor.name()),
                ));
            }
            let rule = EarlyStopping::new(monitor, patience);
            rule.check().map_err(|e| invalid("early-stopping", e))?;
            Some(rule)
        }
        None if args.monitor.is_some() => {
            return Err(invalid(
                "monitor",
                "chooses what --early-stopping watches; give --early-stopping PATIENCE too",
            ));
        }
        None => None,
    };
    if args.epochs() == 0 {
        return Err(invalid("epochs", "must be at least 1, got 0"));
    }
    // Checked here as well as by `fit`, so that a bad value stops the run before it starts.
    if args.batch_size == 0 {
        return Err(invalid("batch-size", "must be at least 1, got 0"));
    }
    if let Some(clip) = args.clip_norm {
        crate::train::check_clip_norm(clip).map_err(|e| invalid("clip-norm", e))?;
    }
    let schedule = parse_schedule(&args.schedule, args.epochs())?;
    if let Some(min_lr) = schedule.floor_above(learning_rate(args)) {
        return Err(invalid(
            "schedule",
            format!(
                "cosine:{min_lr} anneals up to {min_lr} from the learning rate {}; MIN_LR must \
                 be at most --lr",
                learning_rate(args)
            ),
        ));
    }
    Ok(FitConfig {
        epochs: args.epochs(),
        batch_size: args.batch_size,
        shuffle: true,
        seed: args.seed,
        verbose: false,
        initial_epoch: 0,
        schedule,
        clip_norm: args.clip_norm,
        early_stopping,
        early_stopping_resume: None,
        // --validation-split splits the data set itself, before the scaler is fitted on the
        // training part.
        validation_split: None,
    })
}

/// Notes a CSV file that changed since the run began (training goes on with it as it is), and
/// records what the data is now in `args` (saved with the checkpoints): the training file's
/// rows, with a validation part split from them, and a separate validation file's.
fn note_changed_data(args: &mut TrainArgs, source: &DataSpec, data: &Prepared) {
    let split = match (&args.validation_data, &data.validation) {
        (None, Some(validation)) => Some(validation),
        _ => None,
    };
    let files: [Option<(PathBuf, Vec<&Dataset>)>; 2] = [
        match source {
            DataSpec::Csv(path) => Some((
                path.clone(),
                std::iter::once(&data.train).chain(split).collect(),
            )),
            _ => None,
        },
        args.validation_data
            .clone()
            .map(|path| (path, data.validation.iter().collect())),
    ];
    let saved = [&mut args.data_fingerprint, &mut args.validation_fingerprint];
    for (file, saved) in files.into_iter().zip(saved) {
        let Some((path, sets)) = file else {
            continue;
        };
        let now = DataFingerprint::of(&sets);
        if let Some(then) = saved.as_ref()
            && *then != now
        {
            note!(
                "{} has changed since this run began ({} rows then, {} now): training goes \
                 on with it as it is now, so the run will not repeat one that was never \
                 interrupted",
                path.display(),
                then.rows,
                now.rows
            );
        }
        *saved = Some(now);
    }
}

/// A data set's size and a hash of its contents as training sees them (FNV-1a over the
/// features' and targets' 32-bit words).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFingerprint {
    rows: usize,
    hash: String,
}

impl DataFingerprint {
    fn of(sets: &[&Dataset]) -> DataFingerprint {
        let mut hash = crate::fnv::Fnv1a::new();
        for set in sets {
            set.x.iter().for_each(|v| hash.word(v.to_bits()));
            match &set.y {
                Targets::Classes(labels) => labels.iter().for_each(|&c| hash.word(c as u32)),
                Targets::Values(values) => values.iter().for_each(|v| hash.word(v.to_bits())),
            }
        }
        DataFingerprint {
            rows: sets.iter().map(|set| set.len()).sum(),
            hash: hash.hex(),
        }
    }
}

/// Training, validation and test sets, scaled with statistics of the training part only.
struct Prepared {
    train: Dataset,
    validation: Option<Dataset>,
    test: Option<Dataset>,
    meta: ModelMeta,
}

/// `saved`: the resumed run's description of its data, whose columns and classes the
/// training file must still have.
fn prepare(args: &TrainArgs, source: &DataSpec, saved: Option<&ModelMeta>) -> Result<Prepared> {
    let task: CsvTask = args.task.parse().map_err(|e| invalid("task", e))?;
    // With a built-in set, --target can only be about a validation file.
    if args.target.is_some()
        && !matches!(source, DataSpec::Csv(_))
        && args.validation_data.is_none()
    {
        return Err(invalid(
            "target",
            format!(
                "picks a CSV file's target column; {} has its own labels",
                source.name()
            ),
        ));
    }
    // Options about reading a CSV file, given with a built-in set.
    let csv_only = [
        (
            "task",
            task != CsvTask::Auto,
            "says how to read a CSV file's target",
        ),
        (
            "ignore",
            !args.ignore.is_empty(),
            "leaves out a CSV file's columns",
        ),
        (
            "categorical",
            !args.categorical.is_empty(),
            "reads a CSV file's columns as categories",
        ),
        (
            "fill-missing",
            args.fill_missing.is_some(),
            "fills a CSV file's missing values",
        ),
        (
            "unknown-categories",
            args.unknown_categories.is_some(),
            "says what a CSV file's unknown categories become",
        ),
    ];
    if !matches!(source, DataSpec::Csv(_))
        && let Some((flag, _, what)) = csv_only.iter().find(|(_, given, _)| *given)
    {
        return Err(invalid(
            flag,
            format!("{what}; {} is not one", source.name()),
        ));
    }
    let fill_missing = match &args.fill_missing {
        Some(fill) => Some(fill.parse().map_err(|e| invalid("fill-missing", e))?),
        None => None,
    };
    let Loaded { mut train, test } = match (source, saved) {
        // The columns the model was trained on, by name, and its classes.
        (
            DataSpec::Csv(path),
            Some(ModelMeta {
                features: Some(features),
                targets,
                class_names,
                target_offsets,
                ..
            }),
        ) => Loaded {
            train: crate::data::load_csv_for_model(
                path,
                targets,
                features,
                class_names.as_deref(),
                target_offsets,
            )?,
            test: None,
        },
        _ => {
            let csv = CsvOptions {
                target: args.target.clone(),
                task,
                ignore: args.ignore.clone(),
                categorical: args.categorical.clone(),
                fill_missing,
            };
            source.load_with(&csv, args.seed)?
        }
    };
    if let (Some(unknown), None) = (args.unknown_categories, saved) {
        unknown.apply(&mut train.features);
    }
    // A table's columns (MNIST's border pixels are blank in every image, as expected).
    if saved.is_none() && matches!(source, DataSpec::Csv(_)) {
        note_constant_columns(&train);
    }
    let (mut train, mut validation) = match (args.validation_split, &args.validation_data) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "validation-split",
                "give either --validation-split or --validation-data, not both",
            ));
        }
        (Some(fraction), None) => {
            crate::data::check_validation_fraction(fraction)
                .map_err(|e| invalid("validation-split", e))?;
            let (train, validation) = train.split(fraction, args.seed)?;
            (train, Some(validation))
        }
        (None, Some(path)) => {
            // The training data's columns, found by name.
            let validation = crate::data::load_csv_for_model(
                path,
                &train.target_names,
                &train.features,
                train.class_names.as_deref(),
                &train.target_offsets,
            )?;
            (train, Some(validation))
        }
        (None, None) => (train, None),
    };
    let scaler = match saved.and_then(|meta| meta.scaler.clone()) {
        Some(saved) => Some(saved),
        None => match args.scale.as_deref().unwrap_or(if source.is_mnist() {
            "none"
        } else {
            "standard"
        }) {
            "standard" => Some(Scaler::fit_standard(&train.x)?),
            "minmax" => Some(Scaler::fit_min_max(&train.x)?),
            "none" => None,
            other => {
                return Err(invalid(
                    "scale",
                    format!("'{other}' is not standard, minmax or none"),
                ));
            }
        },
    };
    let mut test = test;
    let target_scaler = target_scaling(args, saved, &train)?;
    if let Some(scaler) = &target_scaler {
        for set in [Some(&mut train), validation.as_mut(), test.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Targets::Values(values) = &mut set.y {
                scaler.transform(values)?;
            }
        }
    }
    if let Some(scaler) = &scaler {
        for set in [Some(&mut train), validation.as_mut(), test.as_mut()]
            .into_iter()
            .flatten()
        {
            if set.x.ncols() != scaler.width() {
                return Err(invalid(
                    "data",
                    format!(
                        "a data set has {} columns, the training data {}",
                        set.x.ncols(),
                        scaler.width()
                    ),
                ));
            }
            scaler.transform(&mut set.x)?;
        }
    }
    // The inputs as the model sees them: a resumed run's ranges stay its first one's (a model
    // saved without them gets them now).
    let input_ranges = saved
        .and_then(|meta| meta.input_ranges.clone())
        .or_else(|| super::input_ranges(&train.x));
    let meta = ModelMeta {
        scaler,
        class_names: train.class_names.clone(),
        features: Some(train.features.clone()),
        targets: train.target_names.clone(),
        input_ranges,
        target_offsets: train.target_offsets.clone(),
        target_scaler,
    };
    if let (Some(validation), Some(path)) = (&validation, &args.validation_data) {
        super::note_inputs_out_of_range(&meta, &validation.x, &path.display().to_string());
    }
    Ok(Prepared {
        train,
        validation,
        test,
        meta,
    })
}

/// The target scaling of `--scale-target` (a resumed run's own), fitted on the training part;
/// `None` for classes. Without one, a regression target far from unit scale gets a note.
fn target_scaling(
    args: &TrainArgs,
    saved: Option<&ModelMeta>,
    train: &Dataset,
) -> Result<Option<Scaler>> {
    if let Some(meta) = saved {
        return Ok(meta.target_scaler.clone());
    }
    let kind = args.scale_target.as_deref().unwrap_or("none");
    let Targets::Values(values) = &train.y else {
        return match kind {
            "none" => Ok(None),
            _ => Err(invalid(
                "scale-target",
                "scales a regression target; this one holds classes",
            )),
        };
    };
    match kind {
        "standard" => {
            // A bounded output cannot reach a standardised target's tails.
            if let Some((activation, range)) = bounded_output(args) {
                note!(
                    "note: a {activation} output lies in {range}, and a standardised target \
                     reaches past it; --scale-target minmax scales the target into [0, 1]"
                );
            }
            Ok(Some(Scaler::fit_standard(values)?))
        }
        "minmax" => Ok(Some(Scaler::fit_min_max(values)?)),
        // Given explicitly, "none" is what the user wants.
        "none" if args.scale_target.is_some() => Ok(None),
        "none" => {
            // Shown under --quiet too: the run is likely to learn little.
            if let Some((target, mean, std)) = far_from_unit_scale(train) {
                note!(
                    "note: {target}'s mean is {mean:.3e} and its standard deviation \
                     {std:.3e}; networks learn targets near unit scale far better: \
                     --scale-target {} scales it (and predictions back)",
                    scaling_for(args)
                );
            }
            Ok(None)
        }
        other => Err(invalid(
            "scale-target",
            format!("'{other}' is not standard, minmax or none"),
        )),
    }
}

/// Cross-entropy takes classes, or values in [0, 1] (probabilities); refused before training
/// where the target holds others, naming the data and its range.
fn check_cross_entropy_targets(
    model: &Model,
    train: &Dataset,
    source: &DataSpec,
    scale_target: Option<&str>,
) -> Result<()> {
    let Targets::Values(values) = &train.y else {
        return Ok(());
    };
    if model.spec().resolved_loss() == Loss::MeanSquaredError
        || values.iter().all(|v| (0.0..=1.0).contains(v))
    {
        return Ok(());
    }
    if let Some(scaling) = scale_target {
        return Err(invalid(
            "loss",
            format!(
                "cross-entropy takes targets in [0, 1], and --scale-target {scaling} moves them \
                 out of it: leave --scale-target out"
            ),
        ));
    }
    let (low, high) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let target = match train.target_names.as_slice() {
        [] => String::from("the target"),
        names => format!("the target {}", quoted_list(names)),
    };
    let classes = match source {
        DataSpec::Csv(_) => ", or --task classification for classes",
        _ => "",
    };
    Err(invalid(
        "loss",
        format!(
            "cross-entropy takes classes or probabilities in [0, 1], and {target} of {} is a \
             regression target from {low} to {high}: use --loss mse{classes}",
            source.name()
        ),
    ))
}

/// Notes feature columns that hold one value in every training row (each of its inputs one
/// value: [`super::input_ranges`] of the least and greatest equal): the model learns nothing
/// from them, and a new value there moves its predictions in a way no data taught it.
fn note_constant_columns(train: &Dataset) {
    let Some(ranges) = super::input_ranges(&train.x).filter(|_| train.len() > 1) else {
        return;
    };
    let mut constant = Vec::new();
    let mut first_input = 0;
    for column in &train.features {
        let inputs = &ranges[first_input..first_input + column.width()];
        first_input += column.width();
        if inputs.iter().all(|(least, greatest)| least == greatest) {
            let value = match &column.categories {
                Some(categories) => inputs
                    .iter()
                    .position(|&(value, _)| value == 1.0)
                    .map_or("none of its categories".into(), |i| {
                        format!("{:?}", categories[i])
                    }),
                None => (f64::from(inputs[0].0) + column.offset.unwrap_or(0.0)).to_string(),
            };
            constant.push(format!("{:?} ({value})", column.name));
        }
    }
    if !constant.is_empty() {
        // Named up to a point: a wide file can have thousands (a note of 40 KB).
        const NAMED: usize = 20;
        let mut named = constant[..constant.len().min(NAMED)].join(", ");
        if constant.len() > NAMED {
            named += &format!(" and {} more columns", constant.len() - NAMED);
        }
        note!(
            "note: {named} hold{} one value in every training row: the model learns nothing \
             from {}, and other values there change its predictions as no data taught it \
             (--ignore leaves a column out)",
            if constant.len() == 1 { "s" } else { "" },
            if constant.len() == 1 { "it" } else { "them" },
        );
    }
}

/// The first target column far from unit scale, where the network's first steps spend
/// themselves on the scale alone (an MSE of 1e12), or the target hides under the initial
/// outputs (1e-6): its name in a note, mean and standard deviation.
/// `train`'s values are held less its offsets; the mean returned is in the data's values.
fn far_from_unit_scale(train: &Dataset) -> Option<(String, f64, f64)> {
    let Targets::Values(values) = &train.y else {
        return None;
    };
    let offset = |j: usize| train.target_offsets.get(j).copied().flatten();
    crate::data::features::column_stats(values.view())
        .into_iter()
        .map(|stats| (stats.mean, stats.variance.sqrt()))
        .enumerate()
        .find(|&(_, (m, s))| (s > 0.0 && !(0.01..=100.0).contains(&s)) || m.abs() > 100.0)
        .map(|(j, (m, s))| (target_named(train, j), m + offset(j).unwrap_or(0.0), s))
}

/// A 32-bit float option: a number whose 32-bit value is not 0 or infinite where the text's
/// is not (`--lr 1e-50` was read as 0 and reported as "got 0").
fn float32(text: &str) -> std::result::Result<f32, String> {
    let wide: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    let value = wide as f32;
    if wide.is_finite() && value.is_infinite() {
        return Err(format!(
            "{text} is beyond the range of 32-bit floats (±3.4e38)"
        ));
    }
    if wide != 0.0 && value == 0.0 {
        return Err(format!(
            "{text} is too small for a 32-bit float: it would be 0"
        ));
    }
    Ok(value)
}

/// `"a", "b"`.
fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|name| format!("{name:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "the target", or where there are several, "the target \"y2\"" for target `j`.
fn target_named(train: &Dataset, j: usize) -> String {
    match train.target_names.as_slice() {
        [_, _, ..] => format!("the target {:?}", train.target_names[j]),
        _ => "the target".into(),
    }
}

/// The output activation's range where it is bounded (or half-bounded), which a standardised
/// target's values reach past.
fn bounded_output(args: &TrainArgs) -> Option<(&str, &'static str)> {
    match args.output_activation.as_deref()? {
        activation @ "sigmoid" => Some((activation, "(0, 1)")),
        activation @ "tanh" => Some((activation, "(-1, 1)")),
        activation @ "relu" => Some((activation, "[0, ∞)")),
        _ => None,
    }
}

/// The target scaling to suggest: into [0, 1] for a bounded output, else standardised.
fn scaling_for(args: &TrainArgs) -> &'static str {
    match bounded_output(args) {
        Some(_) => "minmax",
        None => "standard",
    }
}

/// Every file a run writes into its directory (the lock file aside).
pub(super) const RUN_FILES: [&str; 9] = [
    io::MODEL_JSON,
    io::MODEL_WEIGHTS,
    io::CHECKPOINT_JSON,
    io::CHECKPOINT_WEIGHTS,
    "history.csv",
    "history.json",
    "history.png",
    "boundary.png",
    checkpoints::BEST_WEIGHTS,
];

pub fn run(args: TrainArgs) -> Result<()> {
    let started = Instant::now();
    let (args, mut model, meta, earlier, out) = match &args.resume {
        Some(dir) => {
            let (model, meta, progress) = io::load_checkpoint(dir, args.device.device()?)?;
            let mut saved: TrainArgs =
                serde_json::from_value(progress.fit.clone()).map_err(|e| {
                    WgradError::data(
                        dir.join(io::CHECKPOINT_JSON),
                        format!("training options: {e}"),
                    )
                })?;
            let fixed: Vec<String> = args
                .given
                .iter()
                .filter(|field| {
                    !RESUMABLE.contains(&field.as_str()) && !unchanged(&args, &saved, dir, field)
                })
                .map(|field| flag(field))
                .collect();
            if !fixed.is_empty() {
                return Err(WgradError::InvalidConfig(format!(
                    "--resume continues the run in {} as it was set up: {} cannot change \
                     (what can: {}); a new run takes a new --out",
                    dir.display(),
                    fixed.join(", "),
                    RESUMABLE[1..]
                        .iter()
                        .map(|field| flag(field))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let given = |field: &str| args.given.iter().any(|g| g == field);
            saved.epochs = args.epochs.or(saved.epochs);
            saved.device = args.device.clone();
            saved.quiet = args.quiet;
            saved.no_plots = args.no_plots;
            saved.profile = args.profile;
            saved.verbose = args.verbose;
            if given("lr") {
                saved.lr = args.lr;
            }
            if given("schedule") {
                saved.schedule = args.schedule.clone();
            }
            if given("clip_norm") {
                saved.clip_norm = args.clip_norm;
            }
            if given("early_stopping") {
                saved.early_stopping = args.early_stopping;
            }
            if given("monitor") {
                saved.monitor = args.monitor.clone();
            }
            if given("checkpoint_every") {
                saved.checkpoint_every = args.checkpoint_every.clone();
            }
            saved.resume = None;
            (
                saved,
                Some(model),
                Some(meta),
                progress.history,
                dir.clone(),
            )
        }
        None => {
            let out = match &args.out {
                Some(out) => out.clone(),
                None => PathBuf::from("runs").join(DataSpec::parse(&args.data)?.name()),
            };
            // The checkpoint keeps the options, paths included, as JSON text.
            if out.to_str().is_none() {
                return Err(invalid(
                    "out",
                    format!(
                        "{} is not valid UTF-8, which the checkpoint's options (JSON) cannot \
                         hold; choose a name in UTF-8",
                        out.display()
                    ),
                ));
            }
            // Saved in the checkpoint: a resume from another directory finds the same files.
            let validation_data = match &args.validation_data {
                Some(path) => {
                    // `csv:PATH`, as --data takes it.
                    let path = match path.to_str().and_then(|p| p.strip_prefix("csv:")) {
                        Some(file) => PathBuf::from(file),
                        None => path.clone(),
                    };
                    Some(std::path::absolute(&path).map_err(|e| WgradError::io(&path, e))?)
                }
                None => None,
            };
            let args = TrainArgs {
                data: DataSpec::parse(&args.data)?.absolute()?,
                validation_data,
                ..args
            };
            (args, None, None, History::default(), out)
        }
    };
    let source = DataSpec::parse(&args.data)?;
    let data = prepare(&args, &source, meta.as_ref())?;
    let mut args = args;
    note_changed_data(&mut args, &source, &data);
    let classes = data.train.n_classes();
    let outputs = match &data.train.y {
        Targets::Values(v) => v.ncols(),
        Targets::Classes(_) => classes.unwrap_or(2),
    };
    let mut model = match model.take() {
        Some(mut model) => {
            // A resumed run's learning rate: the saved one, or the one given now.
            if let Some(rate) = args.lr {
                model
                    .set_learning_rate(rate)
                    .map_err(|e| invalid("lr", e))?;
            }
            model
        }
        None => Model::new(
            build_spec(&args, data.train.n_features(), classes, outputs)?,
            args.device.device()?,
        )?,
    };
    let meta = meta.unwrap_or(data.meta.clone());
    let scale_target = args.scale_target.as_deref().filter(|kind| *kind != "none");
    check_cross_entropy_targets(&model, &data.train, &source, scale_target)?;
    let mut config = fit_config(&args, data.validation.is_some(), classes.is_some())?;
    config.initial_epoch = earlier.last().map_or(0, |r| r.epoch);
    let every = CheckpointEvery::parse(&args.checkpoint_every)
        .map_err(|e| invalid("checkpoint-every", e))?;
    // What `fit` would refuse (a schedule against the learning rate, early stopping's
    // settings), refused before anything is written or shown.
    config.check(model.spec().optimizer.learning_rate())?;
    if config.initial_epoch >= config.epochs {
        out!(
            "the run in {} has trained {}, at least the --epochs {} asked for: nothing to \
             train (a larger --epochs continues it)",
            out.display(),
            super::count(config.initial_epoch, "epoch"),
            config.epochs
        );
        return Ok(());
    }
    // A resumed run's early stopping goes on from its record: its best epoch is the last
    // checkpointed one (whose weights the model holds) or the one of the best-weights file.
    // A run that early stopping ended holds its best epoch's weights, restored: the epochs
    // after it were undone, so the watch goes on from the best epoch with the patience counted
    // afresh (going on from the record would stop a resumed run after one epoch).
    if let Some(rule) = &config.early_stopping
        && let (Some((best, _)), _) = rule.replay(&earlier)
    {
        let params = model.params()?;
        // The checkpoint's own epoch needs no file.
        let best_params = match best == config.initial_epoch {
            true => Ok(params.clone()),
            false => checkpoints::read_best_weights(&out, best, params.len()),
        };
        match best_params {
            Ok(best_params) => {
                let mut watched = earlier.clone();
                if best < config.initial_epoch && best_params == params {
                    watched.epochs.retain(|record| record.epoch <= best);
                    note!(
                        "early stopping ended this run at epoch {best}'s weights ({} had not \
                         improved after it); training goes on from them, counting the \
                         patience afresh",
                        rule.monitor.name()
                    );
                }
                config.early_stopping_resume = Some(EarlyStoppingResume {
                    history: watched,
                    best_params,
                });
            }
            Err(why) if rule.restore_best => note!(
                "early stopping watches afresh: the weights of epoch {best}, the best of the \
                 earlier epochs by its rule, were not kept ({why})"
            ),
            Err(_) => {}
        }
    }
    // The output directory exists before the first epoch, so that a path that cannot be one
    // (a file, a read-only place) stops the run now rather than at its first checkpoint.
    if out.exists() && !out.is_dir() {
        return Err(WgradError::data(
            &out,
            "--out names a file; the model is saved into a directory (give a new or existing \
             directory)",
        ));
    }
    // A directory that holds a run (this one, resumed, or one this run replaces) has plots of
    // it; another directory's files are the user's.
    let held_run = holds_a_run(&out);
    if !held_run && let Some(taken) = RUN_FILES.iter().find(|name| out.join(name).exists()) {
        return Err(WgradError::data(
            &out,
            format!(
                "holds a file {taken} that is not from a wgrad run, which training would \
                 overwrite; give --out a new directory or a run's directory"
            ),
        ));
    }
    // Declared before the lock, so dropped after it.
    let _created = (!out.exists()).then(|| CreatedDirectory(out.clone()));
    std::fs::create_dir_all(&out).map_err(|e| WgradError::io(&out, e))?;
    let _lock = lock_run_directory(&out)?;
    if config.initial_epoch == 0 && held_run {
        note!(
            "{} holds a run already; this one replaces it (--resume {} would continue it)",
            out.display(),
            out.display()
        );
    }
    if !args.quiet {
        note!(
            "training {} on {} ({}{}; {}), {}",
            model.spec().widths(),
            source.name(),
            super::count(data.train.len(), "sample"),
            data.validation
                .as_ref()
                .map_or(String::new(), |v| format!(", {} for validation", v.len())),
            task_of(&data.train, &args.task, meta.target_scaler.is_some()),
            model.device()
        );
        if config.initial_epoch > 0 {
            // A schedule's rate is of the epoch over the run's base rate and --epochs, so a
            // resume with a new --lr or more --epochs can move it: say where it goes on.
            let base = model.spec().optimizer.learning_rate();
            let rate = config.schedule.learning_rate(base, config.initial_epoch);
            let schedule = match config.schedule {
                Schedule::Constant => String::new(),
                _ => format!(
                    " ({} schedule of the base rate {base} over {} epochs)",
                    args.schedule, config.epochs
                ),
            };
            note!(
                "resuming after epoch {} from {}, at learning rate {rate:.3e}{schedule}",
                config.initial_epoch,
                out.display()
            );
        }
    }
    if (args.verbose || args.profile)
        && let Some(startup) = model.gpu_startup()
    {
        note!("{}", startup.describe());
    }
    let profiling = args.profile && model.set_profiling(true);
    if args.profile && !profiling {
        note!(
            "--profile: {} has no timestamp queries; training without kernel times",
            model.device()
        );
    }
    let mut display = ProgressDisplay::new(config.epochs, args.quiet);
    let mut checkpointer = Checkpointer::new(
        &out,
        &meta,
        &args,
        every,
        earlier,
        config.early_stopping,
        config.initial_epoch == 0 && held_run,
    );
    let validation = data.validation.as_ref().map(|v| (&v.x, &v.y));
    let fitted = model.fit_with(
        &data.train.x,
        &data.train.y,
        &config,
        validation,
        &mut [&mut display, &mut checkpointer],
    );
    let history = match fitted {
        Ok(history) => history,
        Err(error @ WgradError::Diverged { .. }) => {
            // The model is as the last good epoch left it: its checkpoint, if not written yet.
            checkpointer.save_unsaved(&mut model)?;
            // An unscaled target far from unit scale is the likelier cause than the rate.
            if meta.target_scaler.is_none()
                && let Some((target, mean, std)) = far_from_unit_scale(&data.train)
            {
                note!(
                    "{target}'s mean is {mean:.3e} and its standard deviation {std:.3e}: \
                     --scale-target {} is the likelier cure",
                    scaling_for(&args)
                );
            }
            return Err(name_checkpoint(error, &out));
        }
        Err(error) => return Err(error),
    };
    checkpointer.training_ended();
    if let Some(rule) = &config.early_stopping
        && !args.quiet
    {
        // The epochs the watch saw: the earlier ones where it resumed, then this run's.
        let mut watched = config
            .early_stopping_resume
            .as_ref()
            .map_or_else(History::default, |resume| resume.history.clone());
        watched.epochs.extend(history.epochs.iter().cloned());
        report_early_stopping(rule, &watched, config.epochs);
    }
    if profiling {
        if let Some(profile) = model.take_profile() {
            out!(
                "GPU kernel profile (timestamp queries):\n{}",
                profile.table()
            );
        }
        model.set_profiling(false);
    }
    // The final state, as a checkpoint: a model directory that can also be resumed (after
    // early stopping it holds the restored best weights).
    checkpointer.finish(&mut model)?;
    let history = checkpointer.history();
    // Plots this run does not draw are removed from a run's directory, so that none shows an
    // earlier run.
    let mut plots = vec![];
    if !args.no_plots {
        crate::plot::plot_history(history, &out.join("history.png"))?;
        plots.push("history.png");
        // Over the held-out points where there are some, else the training ones.
        let shown = data
            .test
            .as_ref()
            .or(data.validation.as_ref())
            .unwrap_or(&data.train);
        // Over two columns of numbers: one-hot inputs are not axes to draw over.
        let numeric = shown.features.iter().all(|f| f.categories.is_none());
        if let (2, Targets::Classes(labels), true) = (shown.n_features(), &shown.y, numeric) {
            // The axes are in the model's input units: scaled, if the features were.
            let unit = meta
                .scaler
                .as_ref()
                .map_or(String::new(), |s| format!(" ({})", s.described()));
            let names = crate::plot::BoundaryNames {
                inputs: [0, 1].map(|i| format!("{}{unit}", data.train.feature_names()[i])),
                classes: meta.class_names.clone().unwrap_or_default(),
            };
            crate::plot::plot_named_decision_boundary(
                &model,
                &shown.x,
                labels,
                &names,
                &out.join("boundary.png"),
            )?;
            plots.push("boundary.png");
        }
    }
    for stale in ["history.png", "boundary.png"] {
        let path = out.join(stale);
        if held_run && !plots.contains(&stale) && path.exists() {
            std::fs::remove_file(&path).map_err(|e| WgradError::io(&path, e))?;
        }
    }
    let evaluated = data.test.as_ref().or(data.validation.as_ref());
    if let Some(test) = evaluated {
        let which = if data.test.is_some() {
            "test"
        } else {
            "validation"
        };
        let evaluation = model.evaluate(&test.x, &test.y)?;
        match evaluation.accuracy {
            Some(a) => out!(
                "{which} accuracy {:.2}% (loss {:.4}) on {}",
                100.0 * a,
                evaluation.loss,
                super::count(test.len(), "sample")
            ),
            None => out!(
                "{which} loss {}{} on {}",
                crate::metrics::LossFigure(evaluation.loss),
                super::of_scaled_target(&meta),
                super::count(test.len(), "sample")
            ),
        }
        // A regression's report is one line of final figures: shown when quiet too.
        if !args.quiet || matches!(test.y, Targets::Values(_)) {
            print_report(&model, &test.x, &test.y, &meta)?;
        }
    } else {
        // Nothing held out: the last epoch's figures, which --quiet did not show.
        if args.quiet
            && let Some(last) = history.last()
        {
            out!("{}", crate::train::format_epoch(last, config.epochs));
        }
        // A regression's epochs show a loss alone: how much of the target the model explains
        // (R²) is said of the data there is.
        if let Targets::Values(_) = &data.train.y {
            out!(
                "on the training data ({}; --validation-split F holds some out):",
                super::count(data.train.len(), "sample")
            );
            print_report(&model, &data.train.x, &data.train.y, &meta)?;
        }
    }
    // This run's epochs: a resumed run's last ones.
    let epochs = history.epochs.len() - config.initial_epoch;
    let which = match history.last() {
        Some(last) if config.initial_epoch > 0 && config.initial_epoch + 1 == last.epoch => {
            format!(" (epoch {})", last.epoch)
        }
        Some(last) if config.initial_epoch > 0 => {
            format!(" ({}–{})", config.initial_epoch + 1, last.epoch)
        }
        _ => String::new(),
    };
    out!(
        "{epochs} epoch{}{which} in {:.1} s on {}; model saved in {}",
        if epochs == 1 { "" } else { "s" },
        started.elapsed().as_secs_f64(),
        model.device(),
        out.display()
    );
    Ok(())
}

/// A run directory this run created: removed again when the run ends having written nothing
/// into it but its lock (it failed before its first checkpoint).
struct CreatedDirectory(PathBuf);

impl Drop for CreatedDirectory {
    fn drop(&mut self) {
        let only_the_lock = std::fs::read_dir(&self.0).is_ok_and(|entries| {
            entries
                .map(|entry| entry.map(|e| e.file_name()))
                .all(|name| name.is_ok_and(|name| name == ".lock"))
        });
        if only_the_lock {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Whether `dir` holds a wgrad run: a model or checkpoint description that says it is one (a
/// JSON object with a `format_version`). A file of that name that is not one is the user's.
fn holds_a_run(dir: &Path) -> bool {
    [io::CHECKPOINT_JSON, io::MODEL_JSON].iter().any(|name| {
        io::read_regular_file(&dir.join(name), io::max_bytes(name))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .is_some_and(|json| json.get("format_version").is_some())
    })
}

/// An exclusive lock on `dir` for this run, held until the returned file is dropped (or the
/// process ends, however it ends): two runs writing one directory would replace each other's
/// files mid-write.
fn lock_run_directory(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join(".lock");
    // Opened for writing, a FIFO there would wait for a reader forever.
    if let Ok(metadata) = std::fs::metadata(&path)
        && !metadata.is_file()
    {
        return Err(WgradError::data(
            dir,
            "the run cannot write into this directory (its lock file .lock is not a regular \
             file); give another --out",
        ));
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path);
    // The directory is what cannot be written (read-only, a lock file that is a directory):
    // named so, with the cause.
    let unwritable = |e: std::io::Error| {
        WgradError::data(
            dir,
            format!(
                "the run cannot write into this directory (its lock file .lock: {e}); give another --out"
            ),
        )
    };
    let file = file.map_err(unwritable)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(WgradError::data(
            dir,
            "another wgrad run is writing to this directory; wait for it to finish or give \
             another --out",
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(unwritable(e)),
    }
}

/// What the run learns, as the banner says it: `--task auto` decides from the target's values,
/// and a stray value can turn classes into a regression, or scores (ratings, counts) into
/// classes, so the choice is shown with the other one's option.
fn task_of(train: &Dataset, task: &str, target_scaled: bool) -> String {
    let target = match train.target_names.as_slice() {
        [] => String::new(),
        names => format!(" of {}", quoted_list(names)),
    };
    match (&train.class_names, &train.y) {
        // --task is a CSV file's (whose targets have names).
        (Some(classes), _)
            if task == "auto"
                && !train.target_names.is_empty()
                && classes.len() > 2
                && classes.iter().all(|name| name.parse::<i64>().is_ok()) =>
        {
            format!(
                "classification{target}, {} classes; --task regression would take its \
                 integers as numbers",
                classes.len()
            )
        }
        (Some(classes), _) => format!("classification{target}, {} classes", classes.len()),
        // `--task auto` takes more than 20 distinct integers for numbers to predict; up to a
        // few hundred they may be classes.
        (None, Targets::Values(values))
            if task == "auto"
                && !train.target_names.is_empty()
                && !target_scaled
                && values.iter().all(|v| v.fract() == 0.0)
                && values
                    .iter()
                    .map(|&v| v as i64)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len()
                    <= 500 =>
        {
            format!("regression{target}; --task classification would take its integers as classes")
        }
        (None, _) => format!("regression{target}"),
    }
}

/// Says where early stopping stopped the run, and which epoch's weights it kept (the best,
/// as Keras's `restore_best_weights`), when that is not the last epoch shown.
fn report_early_stopping(rule: &EarlyStopping, history: &History, epochs: usize) {
    let (Some(last), (Some((best_epoch, best_value)), since)) =
        (history.last(), rule.replay(history))
    else {
        return;
    };
    if last.epoch < epochs {
        note!(
            "early stopping after epoch {}: {} has not improved for {since} epoch{}",
            last.epoch,
            rule.monitor.name(),
            if since == 1 { "" } else { "s" }
        );
    }
    if rule.restore_best && best_epoch != last.epoch {
        note!(
            "restored the weights of epoch {best_epoch}, the best {} ({best_value:.5})",
            rule.monitor.name()
        );
    }
}

/// A divergence stops the run before its epoch's checkpoint and the final save, so the
/// checkpoint of the last good epoch (this run's, written as the run stops if it was not yet,
/// or the resumed one's) is what `dir` holds: the error says so.
fn name_checkpoint(mut error: WgradError, dir: &Path) -> WgradError {
    if let WgradError::Diverged { checkpoint, .. } = &mut error {
        *checkpoint = Some(dir.display().to_string());
    }
    error
}
