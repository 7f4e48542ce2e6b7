//! The model directory: `model.safetensors` (the weights, as PyTorch's `nn.Linear` layers
//! save them) and `model.json` (the description and what is needed to use it on raw data).

use super::{
    FORMAT_VERSION, MODEL_JSON, MODEL_WEIGHTS, ModelMeta, atomic, checkpoint, max_bytes,
    read_regular_file,
};
use crate::backend::Device;
use crate::data::{FeatureColumn, Scaler, features};
use crate::error::{Result, WgradError};
use crate::model::{ParamLayout, Sequential};
use crate::train::Model;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

/// The contents of `model.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ModelFile {
    pub format_version: u32,
    pub spec: Sequential,
    pub scaler: Option<Scaler>,
    pub class_names: Option<Vec<String>>,
    pub feature_names: Option<Vec<String>>,
    /// The categories of each column of categories, by column name; absent when there are
    /// none (and from files written before columns of categories were read).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub categories: BTreeMap<String, Vec<String>>,
    /// The offset of each column of numbers that has one ([`FeatureColumn::offset`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub offsets: BTreeMap<String, f64>,
    /// What a missing cell of each column becomes, where the model fills them
    /// ([`FeatureColumn::fill`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fills: BTreeMap<String, f64>,
    /// The columns of categories where an unknown one is none of them
    /// ([`FeatureColumn::ignore_unknown`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_categories_ignored: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<PerTarget<String>>,
    /// `[least, greatest]` of each input in training; absent from files written before it was
    /// kept. Older files hold one `input_range` over all inputs instead, which is not read:
    /// taken as each column's range it would show training ranges no column had, and still
    /// miss a column in other units within the others' spread. Such a model gets ranges when
    /// it is trained (or resumed) again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_ranges: Option<Vec<(f32, f32)>>,
    /// Absent where the target needs none, and from files written before targets had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_offset: Option<PerTarget<Option<f64>>>,
    /// Absent from files written before targets could be scaled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_scaler: Option<Scaler>,
}

/// A value per target: itself for one (as files have it from before a regression could have
/// several), a list for several.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum PerTarget<T> {
    One(T),
    Several(Vec<T>),
}

impl<T: Clone> PerTarget<T> {
    /// `None` for no values.
    fn of(values: &[T]) -> Option<Self> {
        match values {
            [] => None,
            [one] => Some(PerTarget::One(one.clone())),
            several => Some(PerTarget::Several(several.to_vec())),
        }
    }

    fn into_vec(this: Option<Self>) -> Vec<T> {
        match this {
            None => Vec::new(),
            Some(PerTarget::One(one)) => vec![one],
            Some(PerTarget::Several(several)) => several,
        }
    }
}

/// Just the version, read first so that a newer file gets a clear message rather than a
/// complaint about some field this version does not know.
#[derive(Deserialize)]
pub(crate) struct Versioned {
    pub format_version: u32,
}

/// One per-column value of `features` (categories, an offset, a fill) by column name, for the
/// columns that have one.
fn by_column<T>(
    features: &Option<Vec<FeatureColumn>>,
    value: impl Fn(&FeatureColumn) -> Option<T>,
) -> BTreeMap<String, T> {
    features
        .iter()
        .flatten()
        .filter_map(|column| Some((column.name.clone(), value(column)?)))
        .collect()
}

impl ModelFile {
    fn new(spec: &Sequential, meta: &ModelMeta) -> Self {
        ModelFile {
            format_version: FORMAT_VERSION,
            spec: spec.clone(),
            scaler: meta.scaler.clone(),
            class_names: meta.class_names.clone(),
            feature_names: meta
                .features
                .as_ref()
                .map(|columns| columns.iter().map(|c| c.name.clone()).collect()),
            categories: by_column(&meta.features, |c| c.categories.clone()),
            offsets: by_column(&meta.features, |c| c.offset),
            fills: by_column(&meta.features, |c| c.fill),
            unknown_categories_ignored: by_column(&meta.features, |c| {
                c.ignore_unknown.then_some(())
            })
            .into_keys()
            .collect(),
            target: PerTarget::of(&meta.targets),
            input_ranges: meta.input_ranges.clone(),
            // One target without an offset: no key, as before several could have them.
            target_offset: match meta.target_offsets.as_slice() {
                [None] => None,
                offsets => PerTarget::of(offsets),
            },
            target_scaler: meta.target_scaler.clone(),
        }
    }

    /// The description and its metadata; `Err` names a column given categories that is not
    /// a feature column.
    fn into_parts(mut self) -> std::result::Result<(Sequential, ModelMeta), String> {
        let features = self.feature_names.map(|names| {
            names
                .into_iter()
                .map(|name| FeatureColumn {
                    categories: self.categories.remove(&name),
                    offset: self.offsets.remove(&name),
                    fill: self.fills.remove(&name),
                    ignore_unknown: self.unknown_categories_ignored.contains(&name),
                    name,
                })
                .collect::<Vec<_>>()
        });
        // What is left names no feature column.
        let strays = [
            ("categories are", self.categories.keys().next()),
            ("an offset is", self.offsets.keys().next()),
            ("a fill is", self.fills.keys().next()),
        ];
        if let Some((what, Some(name))) = strays.into_iter().find(|(_, name)| name.is_some()) {
            return Err(format!(
                "{what} given for {name:?}, which is not among the feature columns"
            ));
        }
        let categorical = |name: &String| {
            features
                .iter()
                .flatten()
                .any(|c| &c.name == name && c.categories.is_some())
        };
        if let Some(name) = self
            .unknown_categories_ignored
            .iter()
            .find(|name| !categorical(name))
        {
            return Err(format!(
                "unknown_categories_ignored names {name:?}, which is not a column of categories"
            ));
        }
        let meta = ModelMeta {
            scaler: self.scaler,
            class_names: self.class_names,
            features,
            targets: PerTarget::into_vec(self.target),
            input_ranges: self.input_ranges,
            target_offsets: PerTarget::into_vec(self.target_offset),
            target_scaler: self.target_scaler,
        };
        Ok((self.spec, meta))
    }
}

pub fn save_model(dir: &Path, model: &Model, meta: &ModelMeta) -> Result<()> {
    let files = ModelFiles::new(model, meta)?;
    fs::create_dir_all(dir).map_err(|e| WgradError::io(dir, e))?;
    atomic::remove_temp_files(dir, &[MODEL_WEIGHTS, MODEL_JSON]);
    atomic::replace_files(
        dir,
        &[(MODEL_WEIGHTS, &files.weights), (MODEL_JSON, &files.json)],
    )
}

pub fn load_model(dir: &Path, device: Device) -> Result<(Model, ModelMeta)> {
    check_dir(dir)?;
    let (spec, meta, params) = match read_model(dir) {
        Ok(parsed) => parsed,
        // A first checkpoint killed between its renames has no model.json yet, but the
        // checkpoint, complete under temporary names, holds the model.
        Err(e) => match checkpoint::interrupted_model(dir) {
            Some(parsed) => parsed,
            None if !dir.join(MODEL_JSON).exists() => {
                return Err(WgradError::data(
                    dir,
                    format!(
                        "no saved model here (no {MODEL_JSON}); a model is the directory \
                         `wgrad train` (--out) or `io::save_model` writes"
                    ),
                ));
            }
            None => return Err(e),
        },
    };
    let model = build_model(spec, device, &params)?;
    Ok((model, meta))
}

/// Reads and parses the directory's two model files as they are.
fn read_model(dir: &Path) -> Result<(Sequential, ModelMeta, Vec<f32>)> {
    let read = |name: &str| {
        let path = dir.join(name);
        read_regular_file(&path, max_bytes(name)).map_err(|e| WgradError::io(&path, e))
    };
    parse_model(dir, &read(MODEL_JSON)?, &read(MODEL_WEIGHTS)?)
}

pub fn parse_model(
    dir: &Path,
    json: &[u8],
    weights: &[u8],
) -> Result<(Sequential, ModelMeta, Vec<f32>)> {
    let (spec, meta) = parse_model_json(&dir.join(MODEL_JSON), json)?;
    let params = parse_weights(&dir.join(MODEL_WEIGHTS), weights, &spec)?;
    Ok((spec, meta, params))
}

/// The bytes of a model directory's two files.
pub(crate) struct ModelFiles {
    pub weights: Vec<u8>,
    pub json: Vec<u8>,
}

impl ModelFiles {
    /// Reads the model's weights (refusing non-finite ones, which could not be loaded back) and
    /// checks `meta` against the model.
    pub(crate) fn new(model: &Model, meta: &ModelMeta) -> Result<Self> {
        let spec = model.spec().clone();
        check_meta(&spec, meta).map_err(WgradError::InvalidModel)?;
        let layout = spec.param_layout();
        let params = model.params()?;
        if let Some(msg) = find_non_finite(&layout, &params) {
            return Err(WgradError::InvalidModel(format!(
                "cannot save a model with non-finite weights: {msg}"
            )));
        }
        let tensors = layout.tensors.iter().map(|t| {
            (
                t.name.clone(),
                t.shape.clone(),
                &params[t.offset..t.offset + t.len],
            )
        });
        let weights = serialize_f32(tensors)?;
        let json = serde_json::to_vec_pretty(&ModelFile::new(&spec, meta))
            .map_err(|e| WgradError::InvalidModel(format!("cannot describe the model: {e}")))?;
        Ok(ModelFiles { weights, json })
    }
}

/// Fails with an I/O error naming `dir` when it does not exist or is not a directory.
pub(crate) fn check_dir(dir: &Path) -> Result<()> {
    let metadata = fs::metadata(dir).map_err(|e| WgradError::io(dir, e))?;
    if !metadata.is_dir() {
        return Err(WgradError::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    Ok(())
}

/// A model on `device` holding `params` (in the flat layout of `spec`).
pub(crate) fn build_model(spec: Sequential, device: Device, params: &[f32]) -> Result<Model> {
    let mut model = Model::new(spec, device)?;
    model.set_params(params)?;
    Ok(model)
}

/// Serializes `(name, shape, values)` tensors as F32 (little-endian) to safetensors bytes, with
/// the metadata `{"format": "pt"}` that Hugging Face's loaders look for.
pub(crate) fn serialize_f32<'a>(
    tensors: impl IntoIterator<Item = (String, Vec<usize>, &'a [f32])>,
) -> Result<Vec<u8>> {
    let owned: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, values)| {
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, shape, bytes)
        })
        .collect();
    let views = owned
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes).map(|view| (name.as_str(), view))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| WgradError::InvalidModel(format!("cannot build a safetensors view: {e}")))?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| WgradError::InvalidModel(format!("cannot serialize tensors: {e}")))
}

/// Parses safetensors bytes read from `path`.
pub(crate) fn parse_safetensors<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| {
        WgradError::data(
            path,
            format!("not a valid safetensors file (truncated or corrupt?): {e}"),
        )
    })
}

/// The values of an F32 tensor of exactly `shape`, or an error naming the tensor.
pub(crate) fn read_f32(
    path: &Path,
    file: &SafeTensors,
    name: &str,
    shape: &[usize],
    what: &str,
) -> Result<Vec<f32>> {
    let view = file
        .tensor(name)
        .map_err(|_| WgradError::data(path, format!("tensor {name} is missing")))?;
    if view.dtype() != Dtype::F32 {
        return Err(WgradError::data(
            path,
            format!("{name} has dtype {}, expected F32", view.dtype()),
        ));
    }
    if view.shape() != shape {
        return Err(WgradError::data(
            path,
            format!("{name} has shape {:?}, {what} says {shape:?}", view.shape()),
        ));
    }
    Ok(view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Fails naming the first tensor in `file` that is not one of `expected` (which `owner`, e.g.
/// "the model", has).
pub(crate) fn check_no_extra(
    path: &Path,
    file: &SafeTensors,
    expected: &[&str],
    owner: &str,
) -> Result<()> {
    let mut extra: Vec<&str> = file
        .names()
        .into_iter()
        .filter(|name| !expected.contains(name))
        .collect();
    extra.sort_unstable();
    let Some(name) = extra.first() else {
        return Ok(());
    };
    let has = if expected.is_empty() {
        "none".to_string()
    } else {
        expected.join(", ")
    };
    Err(WgradError::data(
        path,
        format!("unexpected tensor {name}: {owner} has {has}"),
    ))
}

/// The flat parameter vector (padding zero) from the weights file of a `spec` model.
///
/// `spec` must have passed [`Sequential::param_count`]; nothing is allocated for the parameters before
/// every tensor is found with its expected dtype and shape, so the file's own size bounds the
/// allocation, whatever the description claims.
pub(crate) fn parse_weights(path: &Path, bytes: &[u8], spec: &Sequential) -> Result<Vec<f32>> {
    let file = parse_safetensors(path, bytes)?;
    let layout = spec.param_layout();
    let names: Vec<&str> = layout.tensors.iter().map(|t| t.name.as_str()).collect();
    // Missing tensors first: they explain most mismatches (e.g. a model with fewer layers).
    if let Some(missing) = names.iter().find(|name| file.tensor(name).is_err()) {
        return Err(WgradError::data(
            path,
            format!(
                "tensor {missing} is missing: the model description has {} layers ({})",
                spec.layers.len(),
                names.join(", ")
            ),
        ));
    }
    check_no_extra(path, &file, &names, "the model")?;
    let values = layout
        .tensors
        .iter()
        .map(|t| read_f32(path, &file, &t.name, &t.shape, "the model description"))
        .collect::<Result<Vec<_>>>()?;
    let mut params = vec![0.0; layout.len];
    for (t, values) in layout.tensors.iter().zip(values) {
        params[t.offset..t.offset + t.len].copy_from_slice(&values);
    }
    if let Some(msg) = find_non_finite(&layout, &params) {
        return Err(WgradError::data(path, msg));
    }
    Ok(params)
}

/// "layers.0.weight holds NaN at [2, 1]" for the first non-finite value in the tensors.
pub(crate) fn find_non_finite(layout: &ParamLayout, params: &[f32]) -> Option<String> {
    layout.tensors.iter().find_map(|t| {
        let values = &params[t.offset..t.offset + t.len];
        let i = values.iter().position(|v| !v.is_finite())?;
        let index = match t.shape[..] {
            [_, cols] => format!("[{}, {}]", i / cols, i % cols),
            _ => format!("[{i}]"),
        };
        Some(format!("{} holds {} at {index}", t.name, values[i]))
    })
}

/// Parses `model.json` (read from `path`) into the description and its metadata, and checks
/// them against each other.
pub(crate) fn parse_model_json(path: &Path, bytes: &[u8]) -> Result<(Sequential, ModelMeta)> {
    check_version(path, bytes)?;
    let file: ModelFile = serde_json::from_slice(bytes)
        .map_err(|e| WgradError::data(path, format!("malformed model description: {e}")))?;
    let (spec, meta) = file
        .into_parts()
        .map_err(|msg| WgradError::data(path, msg))?;
    // The size first: its message says the description is too large rather than invalid.
    spec.param_count().map_err(|e| {
        let message = match e {
            WgradError::InvalidModel(message) => message,
            other => other.to_string(),
        };
        WgradError::data(
            path,
            format!("the model description is too large: {message}"),
        )
    })?;
    spec.validate()
        .map_err(|e| WgradError::data(path, format!("the model description is invalid: {e}")))?;
    check_meta(&spec, &meta).map_err(|msg| WgradError::data(path, msg))?;
    Ok((spec, meta))
}

/// Fails unless `bytes` is a JSON object whose `format_version` this code reads.
pub(crate) fn check_version(path: &Path, bytes: &[u8]) -> Result<()> {
    let versioned: Versioned = serde_json::from_slice(bytes)
        .map_err(|e| WgradError::data(path, format!("malformed JSON: {e}")))?;
    if versioned.format_version != FORMAT_VERSION {
        return Err(WgradError::data(
            path,
            format!(
                "unknown format_version {}: this version of wgrad reads format_version {FORMAT_VERSION}",
                versioned.format_version
            ),
        ));
    }
    Ok(())
}

/// Checks that the metadata fits the model and could have come from training data: one scaler
/// column and one feature name per input, one class name per class, each name once, finite
/// scaler values with no negative spread, offsets and fills within 32-bit floats' range
/// (offsets only on columns of numbers), an ordered finite range per input.
fn check_meta(spec: &Sequential, meta: &ModelMeta) -> std::result::Result<(), String> {
    let scalers = [
        (&meta.scaler, "scaler", spec.input_dim, "inputs"),
        (
            &meta.target_scaler,
            "target scaler",
            spec.output_dim(),
            "outputs",
        ),
    ];
    for (scaler, name, width, of) in scalers {
        let Some(scaler) = scaler else { continue };
        if scaler.width() != width {
            return Err(format!(
                "the {name} has {} columns, the model has {width} {of}",
                scaler.width()
            ));
        }
        let (a, b) = match scaler {
            Scaler::Standard { mean, std } => (mean, std),
            Scaler::MinMax { min, max } => (min, max),
        };
        if a.len() != b.len() {
            return Err(format!(
                "the {name}'s two vectors have {} and {} values",
                a.len(),
                b.len()
            ));
        }
        if let Some(v) = a.iter().chain(b).find(|v| !v.is_finite()) {
            return Err(format!("the {name} holds a non-finite value ({v})"));
        }
        // A negative divisor would be taken as 1 (as a constant column's 0 is) without a word.
        let inverted = match scaler {
            Scaler::Standard { std, .. } => std.iter().position(|&s| s < 0.0).map(|i| {
                format!(
                    "std of input {i} is {}; a standard deviation is never negative",
                    std[i]
                )
            }),
            Scaler::MinMax { min, max } => (0..min.len()).find(|&i| min[i] > max[i]).map(|i| {
                format!(
                    "min of input {i} ({}) is above its max ({})",
                    min[i], max[i]
                )
            }),
        };
        if let Some(what) = inverted {
            return Err(format!("the {name}'s {what}"));
        }
    }
    for offset in meta.target_offsets.iter().flatten() {
        check_number("the target offset is", *offset)?;
    }
    if let Some(twice) = meta
        .targets
        .iter()
        .enumerate()
        .find_map(|(i, name)| meta.targets[..i].contains(name).then_some(name))
    {
        return Err(format!("target names {twice:?} twice"));
    }
    // A regression's several targets are its outputs, and their offsets one per target.
    if meta.targets.len() > 1 && meta.targets.len() != spec.output_dim() {
        return Err(format!(
            "target names {} targets, but the model has {} outputs",
            meta.targets.len(),
            spec.output_dim()
        ));
    }
    if !meta.target_offsets.is_empty() && meta.target_offsets.len() != spec.output_dim() {
        return Err(format!(
            "target_offset gives {} offsets, but the model has {} outputs",
            meta.target_offsets.len(),
            spec.output_dim()
        ));
    }
    if let Some(ranges) = &meta.input_ranges {
        if ranges.len() != spec.input_dim {
            return Err(format!(
                "input_ranges has {} ranges, the model has {} inputs",
                ranges.len(),
                spec.input_dim
            ));
        }
        if let Some((i, (least, greatest))) = ranges
            .iter()
            .enumerate()
            .find(|(_, (a, b))| !(a <= b && a.is_finite() && b.is_finite()))
        {
            return Err(format!(
                "input_ranges holds [{least}, {greatest}] for input {i}, not a least and a \
                 greatest finite value"
            ));
        }
    }
    if let Some(columns) = &meta.features {
        if let Some(column) = columns
            .iter()
            .find(|c| c.categories.as_ref().is_some_and(Vec::is_empty))
        {
            return Err(format!("the column {:?} has no categories", column.name));
        }
        for column in columns {
            let named = |what| format!("the column {:?} has the {what}", column.name);
            for (what, value) in [("offset", column.offset), ("fill", column.fill)] {
                if let Some(value) = value {
                    check_number(&named(what), value)?;
                }
            }
            if let Some(categories) = &column.categories {
                if column.offset.is_some() {
                    return Err(format!(
                        "the column {:?} has categories and an offset; only a column of numbers \
                         has an offset",
                        column.name
                    ));
                }
                if let Some(twice) = find_twice(categories) {
                    return Err(format!(
                        "the column {:?} lists the category {twice:?} twice",
                        column.name
                    ));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(column) = columns.iter().find(|c| !seen.insert(&c.name)) {
            return Err(format!("the column {:?} appears twice", column.name));
        }
        let width = features::input_width(columns);
        if width != spec.input_dim {
            let of = if width == columns.len() {
                String::new()
            } else {
                format!(" (from {} columns)", columns.len())
            };
            return Err(format!(
                "{width} feature inputs{of} for a model with {} inputs",
                spec.input_dim
            ));
        }
    }
    let classes = spec.output_dim().max(2);
    if let Some(names) = &meta.class_names {
        if names.len() != classes {
            return Err(format!(
                "{} class names for a model with {classes} classes ({} outputs)",
                names.len(),
                spec.output_dim()
            ));
        }
        if let Some(twice) = find_twice(names) {
            return Err(format!(
                "the class name {twice:?} appears twice in class_names"
            ));
        }
    }
    Ok(())
}

/// Fails unless `value` (an offset or a fill, `what` says whose) is a number a 32-bit float
/// holds: those are taken from training values read as 32-bit floats, and the data's values
/// less a larger offset could not be inputs. JSON has no NaN or infinity: a non-finite value
/// would be saved as nothing.
fn check_number(what: &str, value: f64) -> std::result::Result<(), String> {
    if !value.is_finite() {
        return Err(format!("{what} {value}, not a finite number"));
    }
    if !(value as f32).is_finite() {
        return Err(format!(
            "{what} {value:e}, beyond the range of 32-bit floats (±{:e}) that training \
             values are read in",
            f32::MAX
        ));
    }
    Ok(())
}

/// The first value of `values` that appeared before it.
fn find_twice(values: &[String]) -> Option<&String> {
    let mut seen = std::collections::HashSet::new();
    values.iter().find(|v| !seen.insert(*v))
}
