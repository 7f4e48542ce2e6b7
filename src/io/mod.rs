//! Saving and loading trained models, and checkpoints to resume training from.
//!
//! # The model directory
//!
//! [`save_model`] writes two files into a directory (created if needed), and [`load_model`]
//! reads them back into a [`Model`] whose predictions are bit-identical to the saved one's
//! ([`Model::save`] and [`Model::load`] do the same without a [`ModelMeta`]):
//!
//! - `model.safetensors`: the weights, named and shaped as in the `state_dict` of a PyTorch
//!   module holding its `nn.Linear` layers in an `nn.ModuleList` called `layers`: for each
//!   dense layer `i`, `layers.{i}.weight` (F32, `[out, in]`) and `layers.{i}.bias` (F32,
//!   `[out]`), little-endian, without the alignment padding of the flat parameter vector
//!   ([`crate::model::ParamLayout`]); the safetensors metadata is `{"format": "pt"}`.
//!   `safetensors.torch.load_file` reads it as it is.
//! - `model.json`: pretty-printed [`ModelMeta`] plus the model description, as
//!   `{"format_version": 1, "spec": <Sequential>, "scaler": …, "class_names": …,
//!   "feature_names": …, "categories": …, "offsets": …, "fills": …, "target": …,
//!   "input_ranges": …, "target_offset": …, "target_scaler": …}` (`target` and
//!   `target_offset` a name and a number for one target, lists for a regression's several),
//!   where `feature_names` are the data's feature columns, `categories`, `offsets` and
//!   `fills` (each only when some column has one) map a column to its categories (in the
//!   order of its one-hot inputs), its offset and what a missing cell of it becomes
//!   ([`crate::data::FeatureColumn`]), and `input_ranges` holds `[least, greatest]` of each
//!   input in training, as the model saw it.
//!
//! Loading checks everything against the description in `model.json`: every tensor present,
//! none extra, F32, of the layer's shape (`layers.1.weight has shape [10, 64], the model
//! description says [10, 128]`), finite; the description valid and of a known
//! `format_version`; the scaler, names and input ranges as wide as the inputs and outputs.
//!
//! # Checkpoints
//!
//! [`save_checkpoint`] (called after every epoch) writes the model directory's two files plus:
//!
//! - `checkpoint.safetensors`: the optimizer's state vectors ([`Model::optimizer_state`]) as
//!   `optimizer.state1` and `optimizer.state2` (F32, `[n]` with `n` the number of parameters,
//!   the tensors concatenated in the order of `model.safetensors`, without padding); a vector
//!   the optimizer does not use is not stored.
//! - `checkpoint.json`: `{"format_version": 1, "epochs_done", "steps", "history", "fit",
//!   "files"}` — [`Progress`], the optimizer step count ([`Model::steps`]), and the manifest
//!   `files`: for each of the three other files its size and FNV-1a 64-bit hash.
//!
//! [`load_checkpoint`] restores the parameters, the optimizer state and the step count, so that
//! training continues exactly as if it had not stopped. The checkpoint directory is also a
//! model directory: [`load_model`] reads it as the model of the last epoch.
//!
//! # Atomicity
//!
//! Every file is replaced atomically: written under a unique temporary name in the same
//! directory (`.{name}.tmp-{pid}-{n}`), flushed and fsynced, renamed over the target, and the
//! directory fsynced; on error the temporary file is removed. A checkpoint's four files are
//! consistent as a whole even if the process is killed (or the power fails) at any point:
//!
//! 1. All four files are staged (written and fsynced under temporary names), `checkpoint.json`
//!    last, and the directory is fsynced, before anything is renamed.
//! 2. The three data files are renamed over their targets, then `checkpoint.json` — whose
//!    manifest names the exact contents of the other three — and the directory is fsynced.
//!
//! `checkpoint.json` is the commit record. On load, a `checkpoint.json` is used only if each
//! file it lists is found with the recorded size and hash, under its own name or under one of
//! its temporary names. After an interruption between two renames, the new `checkpoint.json`
//! (renamed or still temporary) finds its files partly renamed and partly still temporary:
//! [`load_checkpoint`] completes the renames and loads the new epoch. An interruption while
//! staging leaves the previous checkpoint intact beside incomplete temporary files, which are
//! ignored. A staged `checkpoint.json` whose files are all present is preferred to the
//! renamed one (it is newer); then leftover temporary files are removed. A checkpoint whose
//! files do not match its manifest in any of these ways (edited, or damaged on disk) is an
//! error naming the file.
//!
//! [`save_model`] replaces its two files the same way, weights first; it has no manifest, so
//! a kill between its two renames, while a *different* model is saved over an existing one,
//! could pair new weights with the old description (loading then fails on the shapes, if they
//! differ). [`load_model`] never writes, since a training run may still be writing checkpoints
//! into the directory: it reads the two files as they are, and only when they do not form a
//! model (the first checkpoint of a directory killed between its renames leaves no
//! `model.json` yet) it reads the model of a checkpoint interrupted between renames from where
//! its files are, renamed or still temporary. Otherwise it ignores temporary files.
//!
//! One process at a time may write into a directory: [`save_model`] and [`save_checkpoint`]
//! remove temporary files left by earlier interrupted writes before they stage their own. If a
//! rename fails after an earlier one of the same set succeeded, the files not yet renamed are
//! left under their temporary names for [`load_checkpoint`] to complete.

mod atomic;
mod checkpoint;
mod model_dir;

use crate::backend::Device;
use crate::data::{FeatureColumn, Scaler};
use crate::error::{Result, WgradError};
use crate::model::Sequential;
use crate::train::{History, Model};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The `format_version` of `model.json` and `checkpoint.json` that this version writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The weights of a model directory.
pub const MODEL_WEIGHTS: &str = "model.safetensors";
/// The description and metadata of a model directory.
pub const MODEL_JSON: &str = "model.json";
/// A checkpoint's optimizer state.
pub const CHECKPOINT_WEIGHTS: &str = "checkpoint.safetensors";
/// A checkpoint's progress, step count and manifest.
pub const CHECKPOINT_JSON: &str = "checkpoint.json";

/// What is saved beside the weights: everything needed to use the model on raw data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// The feature scaling fitted on the training data, applied to inputs before the model.
    pub scaler: Option<Scaler>,
    /// A name per class (`max(2, outputs)` of them), for classifiers.
    pub class_names: Option<Vec<String>>,
    /// The data's feature columns, in order, and how each becomes inputs (a number, or one
    /// input per category).
    pub features: Option<Vec<FeatureColumn>>,
    /// The names of the target columns: one, or a regression's several (one per output);
    /// empty where the data named none.
    pub targets: Vec<String>,
    /// The least and greatest value of each input in training, as the model saw it (scaled,
    /// where it was), one pair per input: a column of new inputs far outside its own range was
    /// likely prepared otherwise (pixels 0–255 against 0–1, an income in thousands), which
    /// `wgrad predict`, `eval` and `--validation-data` point out. Per input, since one range
    /// over all inputs hides one column in other units among others of wider spread.
    pub input_ranges: Option<Vec<(f32, f32)>>,
    /// Each regression target's offset ([`crate::data::Dataset::target_offsets`]): the
    /// model's outputs (scaled back) plus them are in the data's values. One per output where
    /// one has an offset, else empty.
    pub target_offsets: Vec<Option<f64>>,
    /// A regression model's target scaling: its outputs are in scaled units, which this
    /// scaler's `inverse_transform` takes back to the data's.
    pub target_scaler: Option<Scaler>,
}

/// How far training has come: saved with each checkpoint, returned when it is loaded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Epochs completed, over all runs so far.
    pub epochs_done: usize,
    /// The records of those epochs.
    pub history: History,
    /// The caller's training settings, stored as given (opaque here).
    pub fit: serde_json::Value,
}

impl ModelMeta {
    /// `model`'s inputs from feature rows as the data has them (read with
    /// [`crate::data::load_features`] and this model's `features`, which encodes categories
    /// and subtracts offsets): scaled as the training inputs were. Errors
    /// ([`WgradError::InvalidData`]): rows of another width than the model's inputs, or a
    /// value that scales past 32-bit floats, naming its row and column.
    pub fn model_inputs(&self, model: &Model, mut x: Array2<f32>) -> Result<Array2<f32>> {
        let inputs = model.spec().fan_in(0);
        if x.ncols() != inputs {
            return Err(WgradError::InvalidData(format!(
                "has {} feature columns, the model was trained on {inputs}",
                x.ncols()
            )));
        }
        let Some(scaler) = &self.scaler else {
            return Ok(x);
        };
        scaler.transform(&mut x)?;
        // Finite values can scale past f32's range (a value of 1e35 where the training data
        // spread over 1e-3).
        if let Some(((row, col), value)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
            let column = self
                .features
                .as_deref()
                .and_then(|columns| {
                    crate::data::features::input_names(columns)
                        .get(col)
                        .cloned()
                })
                .map_or(format!("column {}", col + 1), |name| {
                    format!("column {name:?}")
                });
            return Err(WgradError::InvalidData(format!(
                "data row {}, {column}: the value is so far outside the training data's range \
                 that, scaled as the model's inputs were, it is {value}",
                row + 1
            )));
        }
        Ok(x)
    }

    /// A regression model's outputs in the data's units: its target scaling undone, and each
    /// target's offset added back in 64-bit arithmetic. Each output is taken as its shortest
    /// decimal digits (0.1, not 0.10000000149), so that 12.5 past 1700000000 is 1700000012.5
    /// and a value prints as the 32-bit output did.
    pub fn outputs_in_data_units(&self, outputs: &Array2<f32>) -> Result<Array2<f64>> {
        let mut values = outputs.clone();
        if let Some(scaler) = &self.target_scaler {
            scaler.inverse_transform(&mut values)?;
        }
        Ok(Array2::from_shape_fn(values.dim(), |(i, j)| {
            let value: f64 = values[[i, j]].to_string().parse().unwrap_or(f64::NAN);
            value + self.target_offsets.get(j).copied().flatten().unwrap_or(0.0)
        }))
    }
}

impl Model {
    /// Saves the model into the directory `dir` (created if needed), as Keras's
    /// `model.save(dir)`: [`save_model`] without metadata. It keeps the weights and the
    /// description (optimizer settings included) for [`Model::load`] or [`load_model`], not the
    /// optimizer's state or step count; [`save_checkpoint`] keeps those too, to continue training
    /// exactly. Fails without writing anything if a weight is not finite.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        save_model(dir.as_ref(), self, &ModelMeta::default())
    }

    /// Loads a model saved in `dir` by [`Model::save`] (or [`save_model`], [`save_checkpoint`],
    /// `wgrad train`) onto `device`, as Keras's `load_model(dir)`: [`load_model`] without its
    /// metadata. Its predictions are bit-identical to the saved model's on the same device.
    ///
    /// The optimizer starts afresh (zero state, step 0), so further training differs from a run
    /// that never stopped; [`load_checkpoint`] restores the state and step count. A saved
    /// [`ModelMeta`] is not applied: a model trained on scaled inputs (`wgrad train` scales by
    /// default) still needs its `meta.scaler`, which [`load_model`] returns.
    pub fn load(dir: impl AsRef<Path>, device: Device) -> Result<Model> {
        load_model(dir.as_ref(), device).map(|(model, _meta)| model)
    }
}

/// Saves `model`'s weights and description, with `meta`, into the directory `dir` (created if
/// it does not exist), replacing `model.safetensors` and `model.json` atomically. The
/// optimizer's state and step count are not saved (see [`save_checkpoint`]).
///
/// Fails without writing anything if a weight is not finite, or if `meta` does not fit the
/// model (scaler or feature names not as wide as the inputs, wrong number of class names).
pub fn save_model(dir: &Path, model: &Model, meta: &ModelMeta) -> Result<()> {
    model_dir::save_model(dir, model, meta)
}

/// Loads the model saved in `dir` by [`save_model`] (or [`save_checkpoint`]) onto `device`,
/// without writing (a checkpoint interrupted between renames is read where its files are). The
/// model's optimizer starts afresh, with zero state and step count ([`load_checkpoint`] restores
/// them); `meta.scaler`, if any, is for the caller to apply to inputs.
///
/// Errors name the directory or file and what is wrong: a missing file, a truncated or corrupt
/// safetensors file, a tensor missing, extra, not F32 or of the wrong shape, a non-finite
/// weight, malformed JSON (with line and column), an unknown `format_version`.
pub fn load_model(dir: &Path, device: Device) -> Result<(Model, ModelMeta)> {
    model_dir::load_model(dir, device)
}

/// Parses a model directory's two files from their bytes (`json` of `model.json`, `weights` of
/// `model.safetensors`) with every check of [`load_model`], without building a model: the
/// description, its metadata and the flat parameter vector (in [`Sequential::param_layout`],
/// padding zero). `dir` names the files in error messages. Any input gives a model or an
/// error: no panic, and nothing allocated beyond what the bytes hold.
pub fn parse_model(
    dir: &Path,
    json: &[u8],
    weights: &[u8],
) -> Result<(Sequential, ModelMeta, Vec<f32>)> {
    model_dir::parse_model(dir, json, weights)
}

/// A checkpoint's own files, parsed: see [`parse_checkpoint`].
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCheckpoint {
    pub progress: Progress,
    /// The optimizer step count.
    pub steps: u64,
    /// The optimizer's two state vectors in the padded flat layout (empty where unused).
    pub optimizer_state: [Vec<f32>; 2],
}

/// Parses a checkpoint's own two files from their bytes (`record` of `checkpoint.json`,
/// `optimizer` of `checkpoint.safetensors`) for the `spec` parsed from its `model.json`, with
/// the checks of [`load_checkpoint`] except the manifest's sizes and hashes. `dir` names the
/// files in error messages.
pub fn parse_checkpoint(
    dir: &Path,
    record: &[u8],
    optimizer: &[u8],
    spec: &Sequential,
) -> Result<ParsedCheckpoint> {
    checkpoint::parse_checkpoint(dir, record, optimizer, spec)
}

/// Saves a checkpoint into `dir` (created if needed): the model directory's files plus the
/// optimizer state, the step count and `progress`, consistent as a whole (see the module doc).
pub fn save_checkpoint(
    dir: &Path,
    model: &mut Model,
    meta: &ModelMeta,
    progress: &Progress,
) -> Result<()> {
    checkpoint::save_checkpoint(dir, model, meta, progress)
}

/// Loads the checkpoint in `dir` onto `device`: the model with its parameters, optimizer state
/// and step count restored, its metadata, and the training progress. Completes a checkpoint
/// whose writing was interrupted between renames, and removes leftover temporary files.
pub fn load_checkpoint(dir: &Path, device: Device) -> Result<(Model, ModelMeta, Progress)> {
    checkpoint::load_checkpoint(dir, device)
}

/// The most bytes the file `name` of a model directory or checkpoint can hold: the weights
/// (and the optimizer's two state vectors) of [`crate::model::MAX_PARAMETERS`] parameters with
/// the largest header safetensors reads; for the JSON files, more than any description or
/// history needs (a million epochs of history take about 300 MB).
pub(crate) fn max_bytes(name: &str) -> u64 {
    const SAFETENSORS_HEADER: u64 = 8 + 100_000_000;
    let vector = 4 * crate::model::MAX_PARAMETERS as u64;
    match name {
        MODEL_WEIGHTS => vector + SAFETENSORS_HEADER,
        CHECKPOINT_WEIGHTS => 2 * vector + SAFETENSORS_HEADER,
        _ => 1 << 30,
    }
}

/// Reads the file at `path` (symlinks followed), which must be a regular file of at most
/// `limit` bytes: a FIFO would block the read forever, and a device such as `/dev/zero`, or a
/// file that keeps growing, would fill the memory.
pub(crate) fn read_regular_file(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    let check = |metadata: std::fs::Metadata| {
        if !metadata.is_file() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "not a regular file but {}; wgrad reads only regular files",
                    file_kind(&metadata.file_type())
                ),
            ));
        }
        if metadata.len() > limit {
            return Err(too_large(limit));
        }
        Ok(())
    };
    // Checked before opening too: opening a FIFO waits for a writer.
    check(std::fs::metadata(path)?)?;
    let file = std::fs::File::open(path)?;
    check(file.metadata()?)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(bytes)
}

fn too_large(limit: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::FileTooLarge,
        format!("larger than {limit} bytes, the most this file can hold"),
    )
}

/// "a directory", "a FIFO", … for a file that is not a regular one.
fn file_kind(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}

/// Replaces `files` (name, contents) in `dir` atomically, each through a temporary file and a
/// rename, so a reader never sees a half-written file: for outputs beside a model, such as
/// the training history. Temporary files of these names left by earlier interrupted writes
/// are removed first, so that a run killed again and again leaves at most one per name.
pub fn write_files_atomically(dir: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| crate::error::WgradError::io(dir, e))?;
    let names: Vec<&str> = files.iter().map(|(name, _)| *name).collect();
    atomic::remove_temp_files(dir, &names);
    atomic::replace_files(dir, files)
}
