//! Checkpoints: the model directory plus `checkpoint.safetensors` (optimizer state) and
//! `checkpoint.json` (progress, step count and the manifest that makes the four files one
//! consistent whole; see the parent module's doc for the scheme).

use super::model_dir::{
    ModelFiles, build_model, check_dir, check_no_extra, check_version, parse_model,
    parse_model_json, parse_safetensors, parse_weights, read_f32, serialize_f32,
};
use super::{
    CHECKPOINT_JSON, CHECKPOINT_WEIGHTS, FORMAT_VERSION, MODEL_JSON, MODEL_WEIGHTS, ModelMeta,
    Progress, atomic, max_bytes, read_regular_file,
};
use crate::backend::Device;
use crate::error::{Result, WgradError};
use crate::model::{ParamLayout, Sequential};
use crate::train::{History, Model};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The files a checkpoint's manifest covers, in the order they are renamed into place.
const DATA_FILES: [&str; 3] = [MODEL_WEIGHTS, MODEL_JSON, CHECKPOINT_WEIGHTS];
/// Every file of a checkpoint.
const ALL_FILES: [&str; 4] = [
    MODEL_WEIGHTS,
    MODEL_JSON,
    CHECKPOINT_WEIGHTS,
    CHECKPOINT_JSON,
];
/// More optimizer steps than a run takes (2^53: 285 years at a million steps a second); a
/// larger count was edited in, and would wrap around as training went on.
const MAX_STEPS: u64 = 1 << 53;
/// The names of the optimizer's state tensors in `checkpoint.safetensors`.
const STATE_NAMES: [&str; 2] = ["optimizer.state1", "optimizer.state2"];

/// The contents of `checkpoint.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointFile {
    format_version: u32,
    epochs_done: usize,
    /// Optimizer steps taken ([`Model::steps`]).
    steps: u64,
    history: History,
    fit: serde_json::Value,
    /// Size and hash of each of [`DATA_FILES`], by name.
    files: BTreeMap<String, Digest>,
}

/// A file's size and FNV-1a 64-bit hash (as 16 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Digest {
    bytes: u64,
    fnv1a64: String,
}

impl Digest {
    fn of(bytes: &[u8]) -> Digest {
        let mut hash = crate::fnv::Fnv1a::new();
        hash.bytes(bytes);
        Digest {
            bytes: bytes.len() as u64,
            fnv1a64: hash.hex(),
        }
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes with FNV-1a {}", self.bytes, self.fnv1a64)
    }
}

pub(crate) fn save_checkpoint(
    dir: &Path,
    model: &mut Model,
    meta: &ModelMeta,
    progress: &Progress,
) -> Result<()> {
    check_progress(progress.epochs_done, model.steps(), &progress.history).map_err(|msg| {
        WgradError::InvalidData(format!(
            "cannot save a checkpoint with this progress: {msg}"
        ))
    })?;
    let ModelFiles { weights, json } = ModelFiles::new(model, meta)?;
    let optimizer = optimizer_file(model)?;
    let files = BTreeMap::from(
        [
            (MODEL_WEIGHTS, &weights),
            (MODEL_JSON, &json),
            (CHECKPOINT_WEIGHTS, &optimizer),
        ]
        .map(|(name, bytes)| (name.to_string(), Digest::of(bytes))),
    );
    let checkpoint = CheckpointFile {
        format_version: FORMAT_VERSION,
        epochs_done: progress.epochs_done,
        steps: model.steps(),
        history: progress.history.clone(),
        fit: progress.fit.clone(),
        files,
    };
    let record = serde_json::to_vec_pretty(&checkpoint).map_err(|e| {
        WgradError::InvalidModel(format!("cannot write the training progress: {e}"))
    })?;
    // JSON has no NaN or infinity: serde_json writes them as null, which would not read back.
    serde_json::from_slice::<CheckpointFile>(&record).map_err(|e| {
        WgradError::InvalidModel(format!(
            "the training progress cannot be stored in JSON (a non-finite number?): {e}"
        ))
    })?;
    fs::create_dir_all(dir).map_err(|e| WgradError::io(dir, e))?;
    atomic::remove_temp_files(dir, &ALL_FILES);
    atomic::replace_files(
        dir,
        &[
            (MODEL_WEIGHTS, &weights),
            (MODEL_JSON, &json),
            (CHECKPOINT_WEIGHTS, &optimizer),
            (CHECKPOINT_JSON, &record),
        ],
    )
}

pub(crate) fn load_checkpoint(dir: &Path, device: Device) -> Result<(Model, ModelMeta, Progress)> {
    check_dir(dir)?;
    let found = find_consistent(dir)?;
    found.complete(dir);
    let file = |name: &str| (dir.join(name), &found.contents[name]);

    let (path, bytes) = file(MODEL_JSON);
    let (spec, meta) = parse_model_json(&path, bytes)?;
    let (path, bytes) = file(MODEL_WEIGHTS);
    let params = parse_weights(&path, bytes, &spec)?;
    let (path, bytes) = file(CHECKPOINT_WEIGHTS);
    let state = parse_optimizer_state(&path, bytes, &spec)?;

    let mut model = build_model(spec, device, &params)?;
    model
        .set_optimizer_state(&state)
        .map_err(|e| WgradError::data(&path, e.to_string()))?;
    let checkpoint = found.checkpoint;
    model.set_steps(checkpoint.steps);
    let progress = Progress {
        epochs_done: checkpoint.epochs_done,
        history: checkpoint.history,
        fit: checkpoint.fit,
    };
    Ok((model, meta, progress))
}

/// The model of a checkpoint whose writing was interrupted between renames (some of its files
/// still under temporary names), read without renaming anything; `None` if there is no such
/// checkpoint, or its model does not parse.
pub(crate) fn interrupted_model(dir: &Path) -> Option<(Sequential, ModelMeta, Vec<f32>)> {
    let found = find_consistent(dir).ok()?;
    if found.renames.is_empty() {
        return None;
    }
    parse_model(
        dir,
        &found.contents[MODEL_JSON],
        &found.contents[MODEL_WEIGHTS],
    )
    .ok()
}

/// Parses a checkpoint's own two files for a `spec` model (already parsed from the checkpoint's
/// `model.json`): the record and the optimizer state.
pub(crate) fn parse_checkpoint(
    dir: &Path,
    record: &[u8],
    optimizer: &[u8],
    spec: &Sequential,
) -> Result<super::ParsedCheckpoint> {
    let checkpoint = parse_checkpoint_json(&dir.join(CHECKPOINT_JSON), record)?;
    let optimizer_state = parse_optimizer_state(&dir.join(CHECKPOINT_WEIGHTS), optimizer, spec)?;
    Ok(super::ParsedCheckpoint {
        progress: Progress {
            epochs_done: checkpoint.epochs_done,
            history: checkpoint.history,
            fit: checkpoint.fit,
        },
        steps: checkpoint.steps,
        optimizer_state,
    })
}

/// The bytes of `checkpoint.safetensors` for `model`'s optimizer state.
fn optimizer_file(model: &mut Model) -> Result<Vec<u8>> {
    let layout = model.spec().param_layout();
    let state = model.optimizer_state()?;
    let mut tensors = Vec::new();
    for (name, vector) in STATE_NAMES.iter().zip(&state) {
        if vector.is_empty() {
            continue;
        }
        let values = unpad(&layout, vector);
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(WgradError::InvalidModel(format!(
                "cannot save a checkpoint with non-finite optimizer state: {name} holds {} at [{i}]",
                values[i]
            )));
        }
        tensors.push((name.to_string(), values));
    }
    serialize_f32(
        tensors
            .iter()
            .map(|(name, values)| (name.clone(), vec![values.len()], values.as_slice())),
    )
}

/// The optimizer state vectors (in the padded flat layout, empty where unused) from the bytes
/// of `checkpoint.safetensors` for a `spec` model.
fn parse_optimizer_state(path: &Path, bytes: &[u8], spec: &Sequential) -> Result<[Vec<f32>; 2]> {
    let file = parse_safetensors(path, bytes)?;
    let layout = spec.param_layout();
    let used = spec.optimizer.state_vectors();
    let expected: Vec<&str> = STATE_NAMES
        .iter()
        .zip(used)
        .filter_map(|(name, used)| used.then_some(*name))
        .collect();
    let owner = format!("the {} optimizer", spec.optimizer.name());
    check_no_extra(path, &file, &expected, &owner)?;
    let mut state = [Vec::new(), Vec::new()];
    for (vector, name) in state.iter_mut().zip(STATE_NAMES) {
        if !expected.contains(&name) {
            continue;
        }
        let values = read_f32(
            path,
            &file,
            name,
            &[layout.count()],
            "the model description",
        )?;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(WgradError::data(
                path,
                format!("{name} holds {} at [{i}]", values[i]),
            ));
        }
        *vector = pad(&layout, &values);
    }
    Ok(state)
}

/// The values of the layout's tensors, concatenated without the padding.
fn unpad(layout: &ParamLayout, flat: &[f32]) -> Vec<f32> {
    layout
        .tensors
        .iter()
        .flat_map(|t| &flat[t.offset..t.offset + t.len])
        .copied()
        .collect()
}

/// The inverse of [`unpad`], with zero padding.
fn pad(layout: &ParamLayout, values: &[f32]) -> Vec<f32> {
    let mut flat = vec![0.0; layout.len];
    let mut start = 0;
    for t in &layout.tensors {
        flat[t.offset..t.offset + t.len].copy_from_slice(&values[start..start + t.len]);
        start += t.len;
    }
    flat
}

/// A checkpoint whose files all match its manifest, and the renames that put it in place.
struct Consistent {
    checkpoint: CheckpointFile,
    /// The contents of the data files, by name.
    contents: HashMap<String, Vec<u8>>,
    /// (temporary file, target) for the files found only under a temporary name.
    renames: Vec<(PathBuf, PathBuf)>,
}

impl Consistent {
    /// Renames the files found under temporary names into place (`checkpoint.json` last) and
    /// removes the remaining temporary files. Best effort: the checkpoint is already read, and
    /// a failure here only leaves the repair to the next load or save.
    fn complete(&self, dir: &Path) {
        let renamed = self
            .renames
            .iter()
            .all(|(temp, target)| fs::rename(temp, target).is_ok());
        if renamed && atomic::sync_dir(dir).is_ok() {
            atomic::remove_temp_files(dir, &ALL_FILES);
        }
    }
}

/// The files read so far, each with its digest, so that each is read and hashed once.
#[derive(Default)]
struct Files {
    read: HashMap<PathBuf, io::Result<(Vec<u8>, Digest)>>,
}

impl Files {
    /// The file at `path`, a file of the checkpoint named `name` or one of its temporary files.
    fn get(&mut self, path: &Path, name: &str) -> &io::Result<(Vec<u8>, Digest)> {
        self.read.entry(path.to_path_buf()).or_insert_with(|| {
            let bytes = read_regular_file(path, max_bytes(name))?;
            let digest = Digest::of(&bytes);
            Ok((bytes, digest))
        })
    }
}

/// Finds the checkpoint to load: the newest staged `checkpoint.json` whose files are all
/// present, else `checkpoint.json` itself if its files are; otherwise the error that explains
/// what is wrong with `checkpoint.json`.
fn find_consistent(dir: &Path) -> Result<Consistent> {
    let mut files = Files::default();
    let mut staged: Vec<(PathBuf, CheckpointFile)> = atomic::temp_files(dir, CHECKPOINT_JSON)
        .into_iter()
        .filter_map(|temp| {
            let (bytes, _) = files.get(&temp, CHECKPOINT_JSON).as_ref().ok()?;
            let checkpoint = parse_checkpoint_json(&temp, bytes).ok()?;
            Some((temp, checkpoint))
        })
        .collect();
    staged.sort_by_key(|(_, checkpoint)| std::cmp::Reverse(checkpoint.epochs_done));
    for (temp, checkpoint) in staged {
        if let Ok(mut found) = match_manifest(dir, checkpoint, &mut files) {
            found.renames.push((temp, dir.join(CHECKPOINT_JSON)));
            return Ok(found);
        }
    }
    let path = dir.join(CHECKPOINT_JSON);
    let bytes = match files.get(&path, CHECKPOINT_JSON) {
        Ok((bytes, _)) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(WgradError::data(
                dir,
                format!(
                    "no checkpoint here (no {CHECKPOINT_JSON}); a checkpoint is the directory \
                     `wgrad train` (--out) or `io::save_checkpoint` writes"
                ),
            ));
        }
        Err(e) => {
            return Err(WgradError::io(
                &path,
                io::Error::new(e.kind(), e.to_string()),
            ));
        }
    };
    let checkpoint = parse_checkpoint_json(&path, bytes)?;
    match_manifest(dir, checkpoint, &mut files)
}

/// Parses and checks `checkpoint.json` (read from `path`).
fn parse_checkpoint_json(path: &Path, bytes: &[u8]) -> Result<CheckpointFile> {
    check_version(path, bytes)?;
    let checkpoint: CheckpointFile = serde_json::from_slice(bytes)
        .map_err(|e| WgradError::data(path, format!("malformed checkpoint record: {e}")))?;
    if let Some(name) = checkpoint
        .files
        .keys()
        .find(|n| !DATA_FILES.contains(&n.as_str()))
    {
        return Err(WgradError::data(
            path,
            format!("the manifest lists an unknown file {name}"),
        ));
    }
    check_progress(
        checkpoint.epochs_done,
        checkpoint.steps,
        &checkpoint.history,
    )
    .map_err(|msg| WgradError::data(path, msg))?;
    Ok(checkpoint)
}

/// Fails unless a checkpoint's progress fields agree as every run writes them: the history
/// records epochs 1 to `epochs_done` in order, and `steps` counts at least one step per epoch
/// and at most [`MAX_STEPS`]. Resuming from fields that disagree would number the epochs
/// wrongly, or fail later as if training had diverged.
fn check_progress(
    epochs_done: usize,
    steps: u64,
    history: &History,
) -> std::result::Result<(), String> {
    if let Some((i, record)) = history
        .epochs
        .iter()
        .enumerate()
        .find(|(i, record)| record.epoch != i + 1)
    {
        return Err(format!(
            "history.epochs[{i}] is epoch {}, expected {}: the history records epochs 1, 2, 3, \
             … in order",
            record.epoch,
            i + 1
        ));
    }
    let recorded = history.epochs.len();
    if epochs_done != recorded {
        return Err(format!(
            "epochs_done is {epochs_done}, but the history records {recorded} epochs"
        ));
    }
    if steps < epochs_done as u64 {
        return Err(format!(
            "steps is {steps}, fewer than the {epochs_done} epochs done (each takes a step at \
             least)"
        ));
    }
    if steps > MAX_STEPS {
        return Err(format!(
            "steps is {steps}, more than any run takes (at most {MAX_STEPS})"
        ));
    }
    Ok(())
}

/// Finds each file of the manifest, under its name or a temporary one, with the recorded size
/// and hash; fails naming the first file that is missing or different.
fn match_manifest(dir: &Path, checkpoint: CheckpointFile, files: &mut Files) -> Result<Consistent> {
    let mut contents = HashMap::new();
    let mut renames = Vec::new();
    for name in DATA_FILES {
        let path = dir.join(name);
        let expected = checkpoint.files.get(name).ok_or_else(|| {
            WgradError::data(
                dir.join(CHECKPOINT_JSON),
                format!("the manifest has no entry for {name}"),
            )
        })?;
        let target = match files.get(&path, name) {
            Ok((bytes, digest)) if digest == expected => {
                contents.insert(name.to_string(), bytes.clone());
                continue;
            }
            Ok((_, digest)) => Ok(digest.clone()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        let temp = atomic::temp_files(dir, name).into_iter().find_map(|temp| {
            let (bytes, digest) = files.get(&temp, name).as_ref().ok()?;
            (digest == expected).then(|| (temp, bytes.clone()))
        });
        match (temp, target) {
            (Some((temp, bytes)), _) => {
                contents.insert(name.to_string(), bytes);
                renames.push((temp, path));
            }
            (None, Err(e)) if e.kind() == io::ErrorKind::NotFound => {
                return Err(WgradError::data(
                    &path,
                    format!(
                        "is missing: {CHECKPOINT_JSON} lists it as part of the checkpoint, \
                         which cannot be resumed without it"
                    ),
                ));
            }
            (None, Err(e)) => return Err(WgradError::io(&path, e)),
            (None, Ok(found)) => {
                return Err(WgradError::data(
                    &path,
                    format!(
                        "does not belong to this checkpoint: {CHECKPOINT_JSON} records {expected}, \
                         the file has {found} (was it changed after the checkpoint was written?)"
                    ),
                ));
            }
        }
    }
    Ok(Consistent {
        checkpoint,
        contents,
        renames,
    })
}
