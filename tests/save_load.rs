//! Saving and loading models and checkpoints (`wgrad::io`): exact round trips, the PyTorch
//! layout of the weights file, resuming training, every malformed-file error, and recovery
//! from writes interrupted at any point. Everything but `gpu_round_trip` runs on the CPU.

mod common;

use common::TempDir;
use ndarray::Array2;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::HashMap;
use std::fs;
use std::path::Path;
use wgrad::data::{FeatureColumn, Scaler};
use wgrad::io::{ModelMeta, Progress, load_checkpoint, load_model, save_checkpoint, save_model};
use wgrad::{
    Activation, AdapterChoice, Device, FitConfig, History, Model, Optimizer, Sequential, Targets,
    WgradError,
};

/// 4 inputs -> 16 relu (dropout 0.2) -> 8 tanh -> 3 softmax, seeded.
fn classifier_spec(optimizer: Optimizer) -> Sequential {
    Sequential::new(4)
        .dense(16, Activation::Relu)
        .dropout(0.2)
        .dense(8, Activation::Tanh)
        .dense(3, Activation::Softmax)
        .optimizer(optimizer)
        .l2(1e-4)
        .seed(5)
}

fn data() -> (Array2<f32>, Targets) {
    let x = common::random_matrix(40, 4, 2.0, 17);
    let labels = x
        .rows()
        .into_iter()
        .map(|r| usize::from(r[0] + r[1] > 0.0) + usize::from(r[2] > 0.5))
        .collect::<Vec<_>>();
    (x, Targets::Classes(labels))
}

fn config(epochs: usize) -> FitConfig {
    FitConfig {
        epochs,
        batch_size: 8,
        shuffle: false,
        seed: 3,
        ..Default::default()
    }
}

/// A CPU classifier trained for `epochs` epochs.
fn trained(optimizer: Optimizer, epochs: usize) -> Model {
    let mut model = Model::new(classifier_spec(optimizer), Device::Cpu).expect("valid model");
    let (x, y) = data();
    model.fit(&x, &y, &config(epochs)).expect("training");
    model
}

fn meta() -> ModelMeta {
    let (x, _) = data();
    ModelMeta {
        scaler: Some(Scaler::fit_standard(&x).unwrap()),
        class_names: Some(vec!["low".into(), "mid".into(), "high".into()]),
        // A column of numbers and one of three categories: four inputs.
        features: Some(vec![
            FeatureColumn {
                offset: Some(1.7e9),
                ..FeatureColumn::numeric("size")
            },
            FeatureColumn {
                ignore_unknown: true,
                ..FeatureColumn::categorical(
                    "colour",
                    vec!["blue".into(), "green".into(), "red".into()],
                )
            },
        ]),
        targets: vec!["level".into()],
        input_ranges: Some(vec![(-1.5, 2.25), (0.0, 1.0), (0.0, 1.0), (0.0, 0.0)]),
        target_offsets: vec![Some(-2.5e9), None, Some(3.0)],
        target_scaler: Some(Scaler::MinMax {
            min: vec![-1.0, 0.0, 2.5],
            max: vec![1.0, 4.0, 3.5],
        }),
    }
}

fn bits(values: impl IntoIterator<Item = f32>) -> Vec<u32> {
    values.into_iter().map(f32::to_bits).collect()
}

fn assert_same_predictions(a: &mut Model, b: &mut Model) {
    let (x, _) = data();
    let pa = a.predict(&x).expect("predict");
    let pb = b.predict(&x).expect("predict");
    assert_eq!(bits(pa.iter().copied()), bits(pb.iter().copied()));
}

fn assert_same_params(a: &mut Model, b: &mut Model) {
    let pa = a.params().expect("params");
    let pb = b.params().expect("params");
    assert_eq!(bits(pa), bits(pb), "parameters differ");
}

/// Names of the entries of `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn assert_mentions(error: &WgradError, parts: &[&str]) {
    let message = error.to_string();
    for part in parts {
        assert!(
            message.contains(part),
            "message {message:?} does not mention {part:?}"
        );
    }
}

fn load_model_error(dir: &Path) -> WgradError {
    match load_model(dir, Device::Cpu) {
        Ok(_) => panic!("load_model accepted a bad model directory"),
        Err(e) => e,
    }
}

fn load_checkpoint_error(dir: &Path) -> WgradError {
    match load_checkpoint(dir, Device::Cpu) {
        Ok(_) => panic!("load_checkpoint accepted a bad checkpoint"),
        Err(e) => e,
    }
}

/// Writes F32 tensors `(name, shape, values)` as a safetensors file.
fn write_tensors(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    write_tensors_typed(
        path,
        tensors
            .iter()
            .map(|(name, shape, values)| {
                let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                (name.to_string(), Dtype::F32, shape.clone(), bytes)
            })
            .collect(),
    );
}

fn write_tensors_typed(path: &Path, tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            let view = TensorView::new(*dtype, shape.clone(), bytes).expect("view");
            (name.clone(), view)
        })
        .collect();
    let bytes = safetensors::serialize(views, None).expect("serialize");
    fs::write(path, bytes).expect("write tensors");
}

/// The tensors of a saved model directory, as (name, shape, values), in layer order.
fn saved_tensors(dir: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = fs::read(dir.join("model.safetensors")).expect("read weights");
    let file = SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let mut tensors: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name, view.shape().to_vec(), values)
        })
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

// Round trips.

#[test]
fn model_round_trip_is_bit_identical() {
    let dir = TempDir::new("save-load", "round_trip");
    let mut model = trained(Optimizer::adam(0.01), 3);
    let meta = meta();
    save_model(&dir, &model, &meta).expect("save");
    assert_eq!(entries(&dir), ["model.json", "model.safetensors"]);

    let (mut loaded, loaded_meta) = load_model(&dir, Device::Cpu).expect("load");
    assert_eq!(loaded_meta, meta, "metadata (the scaler's floats exactly)");
    assert_eq!(loaded.spec(), model.spec());
    assert_same_params(&mut model, &mut loaded);
    assert_same_predictions(&mut model, &mut loaded);

    // Saving again over the same directory replaces the files and leaves nothing else.
    let mut other = trained(Optimizer::adam(0.01), 5);
    save_model(&dir, &other, &ModelMeta::default()).expect("save again");
    assert_eq!(entries(&dir), ["model.json", "model.safetensors"]);
    let (mut loaded, loaded_meta) = load_model(&dir, Device::Cpu).expect("load");
    assert_eq!(loaded_meta, ModelMeta::default());
    assert_same_predictions(&mut other, &mut loaded);
}

/// `Model::save` / `Model::load` round-trip the weights and description, bit for bit, and
/// not the optimizer's state or step count (a checkpoint's job); a directory saved with
/// metadata loads too.
fn keras_style_round_trip(device: Device, name: &str) {
    let dir = TempDir::new("save-load", name);
    let (x, y) = data();
    let mut model =
        Model::new(classifier_spec(Optimizer::adam(0.01)), device.clone()).expect("model");
    model.fit(&x, &y, &config(3)).expect("training");
    model.save(dir.join("model")).expect("save");
    assert_eq!(
        entries(&dir.join("model")),
        ["model.json", "model.safetensors"]
    );

    let mut loaded = Model::load(dir.join("model"), device.clone()).expect("load");
    assert_eq!(loaded.spec(), model.spec());
    assert_same_params(&mut model, &mut loaded);
    assert_same_predictions(&mut model, &mut loaded);
    assert_eq!((model.steps(), loaded.steps()), (15, 0));
    let [first_moment, _] = loaded.optimizer_state().expect("state");
    assert!(first_moment.iter().all(|&v| v == 0.0), "a fresh optimizer");
    let (_, saved_meta) = load_model(&dir.join("model"), device.clone()).expect("load_model");
    assert_eq!(saved_meta, ModelMeta::default(), "saved without metadata");

    save_model(&dir.join("with_meta"), &model, &meta()).expect("save with metadata");
    let mut loaded = Model::load(dir.join("with_meta"), device).expect("load");
    assert_same_predictions(&mut model, &mut loaded);
}

#[test]
fn keras_style_round_trip_on_the_cpu() {
    keras_style_round_trip(Device::Cpu, "keras_style_cpu");
}

#[test]
fn keras_style_round_trip_on_the_gpu() {
    if let Some(gpu) = common::gpu_device("keras_style_round_trip_on_the_gpu") {
        keras_style_round_trip(gpu, "keras_style_gpu");
    }
}

#[test]
fn save_creates_missing_directories() {
    let dir = TempDir::new("save-load", "creates");
    let nested = dir.join("runs/first");
    let mut model = trained(Optimizer::sgd(0.1), 1);
    save_model(&nested, &model, &ModelMeta::default()).expect("save");
    let (mut loaded, _) = load_model(&nested, Device::Cpu).expect("load");
    assert_same_predictions(&mut model, &mut loaded);
}

#[test]
fn weights_file_has_pytorch_names_shapes_and_dtype() {
    let dir = TempDir::new("save-load", "pytorch_layout");
    let model = trained(Optimizer::adam(0.01), 2);
    save_model(&dir, &model, &meta()).expect("save");

    let bytes = fs::read(dir.join("model.safetensors")).expect("read");
    let file = SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let mut names = file.names();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "layers.0.bias",
            "layers.0.weight",
            "layers.1.bias",
            "layers.1.weight",
            "layers.2.bias",
            "layers.2.weight"
        ]
    );
    let shapes: HashMap<&str, Vec<usize>> = HashMap::from([
        ("layers.0.weight", vec![16, 4]),
        ("layers.0.bias", vec![16]),
        ("layers.1.weight", vec![8, 16]),
        ("layers.1.bias", vec![8]),
        ("layers.2.weight", vec![3, 8]),
        ("layers.2.bias", vec![3]),
    ]);
    for (name, view) in file.tensors() {
        assert_eq!(view.dtype(), Dtype::F32, "{name}");
        assert_eq!(view.shape(), shapes[name.as_str()].as_slice(), "{name}");
    }
    let (_, metadata) = SafeTensors::read_metadata(&bytes).expect("header");
    assert_eq!(
        metadata.metadata().as_ref().and_then(|m| m.get("format")),
        Some(&"pt".to_string())
    );

    // The values are the flat parameters' tensors, without the alignment padding.
    let params = model.params().expect("params");
    let layout = model.spec().param_layout();
    for (name, _, values) in saved_tensors(&dir) {
        let slot = layout.tensors.iter().find(|t| t.name == name).unwrap();
        assert_eq!(
            bits(values),
            bits(params[slot.offset..slot.offset + slot.len].iter().copied()),
            "{name}"
        );
    }

    // model.json is pretty-printed, versioned, and holds the description and metadata.
    let json = fs::read_to_string(dir.join("model.json")).expect("read json");
    assert!(json.contains("\n  \"format_version\": 1,"), "{json}");
    let value: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(value["spec"]["input_dim"], 4);
    assert_eq!(value["class_names"][2], "high");
    assert_eq!(value["target"], "level");
    assert_eq!(value["scaler"]["kind"], "standard");
    assert_eq!(value["target_scaler"]["kind"], "min_max");
    // The data's columns by name, and the categories of the column that holds them.
    assert_eq!(
        value["feature_names"],
        serde_json::json!(["size", "colour"])
    );
    assert_eq!(
        value["categories"],
        serde_json::json!({"colour": ["blue", "green", "red"]})
    );
    assert_eq!(value["offsets"], serde_json::json!({"size": 1.7e9}));
    // One per output (a regression's several targets), null where a target has none.
    assert_eq!(
        value["target_offset"],
        serde_json::json!([-2.5e9, null, 3.0])
    );
}

#[test]
fn save_rejects_metadata_that_does_not_fit() {
    let dir = TempDir::new("save-load", "bad_meta");
    let model = trained(Optimizer::sgd(0.1), 1);
    let cases = [
        (
            ModelMeta {
                scaler: Some(Scaler::Standard {
                    mean: vec![0.0; 3],
                    std: vec![1.0; 3],
                }),
                ..Default::default()
            },
            "the scaler has 3 columns, the model has 4 inputs",
        ),
        (
            ModelMeta {
                target_scaler: Some(Scaler::Standard {
                    mean: vec![0.0; 2],
                    std: vec![1.0; 2],
                }),
                ..Default::default()
            },
            "the target scaler has 2 columns, the model has 3 outputs",
        ),
        (
            ModelMeta {
                features: Some(vec![FeatureColumn::numeric("a")]),
                ..Default::default()
            },
            "1 feature inputs for a model with 4 inputs",
        ),
        (
            ModelMeta {
                features: Some(vec![
                    FeatureColumn::numeric("a"),
                    FeatureColumn::categorical("b", vec!["x".into(), "y".into()]),
                ]),
                ..Default::default()
            },
            "3 feature inputs (from 2 columns) for a model with 4 inputs",
        ),
        (
            ModelMeta {
                features: Some(vec![FeatureColumn::categorical("b", Vec::new())]),
                ..Default::default()
            },
            "the column \"b\" has no categories",
        ),
        (
            ModelMeta {
                features: Some(vec![
                    FeatureColumn {
                        offset: Some(f64::NAN),
                        ..FeatureColumn::numeric("a")
                    },
                    FeatureColumn::categorical("b", vec!["x".into(), "y".into(), "z".into()]),
                ]),
                ..Default::default()
            },
            "the column \"a\" has the offset NaN, not a finite number",
        ),
        (
            ModelMeta {
                features: Some(vec![
                    FeatureColumn::numeric("a"),
                    FeatureColumn::numeric("a"),
                    FeatureColumn::numeric("c"),
                    FeatureColumn::numeric("d"),
                ]),
                ..Default::default()
            },
            "the column \"a\" appears twice",
        ),
        (
            ModelMeta {
                target_offsets: vec![Some(f64::INFINITY)],
                ..Default::default()
            },
            "the target offset is inf, not a finite number",
        ),
        (
            ModelMeta {
                class_names: Some(vec!["a".into(), "b".into()]),
                ..Default::default()
            },
            "2 class names for a model with 3 classes",
        ),
    ];
    for (meta, message) in cases {
        let e = save_model(&dir, &model, &meta).unwrap_err();
        assert!(matches!(e, WgradError::InvalidModel(_)), "{e:?}");
        assert_mentions(&e, &[message]);
    }
    assert!(
        entries(&dir).is_empty(),
        "nothing written: {:?}",
        entries(&dir)
    );
}

/// Rewrites `dir/model.json` with `edit` applied.
fn edit_model_json(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("model.json");
    let mut json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    edit(&mut json);
    fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
}

#[test]
fn hand_edited_numbers_and_names_in_model_json_are_refused() {
    let dir = TempDir::new("save-load", "edited_meta");
    let model = trained(Optimizer::sgd(0.1), 1);
    save_model(&dir, &model, &meta()).expect("save");
    let saved = fs::read(dir.join("model.json")).unwrap();
    type Edit = fn(&mut serde_json::Value);
    let edits: [(Edit, &str); 13] = [
        (
            |j| j["target"] = serde_json::json!(["level", "level"]),
            "target names \"level\" twice",
        ),
        (
            |j| j["unknown_categories_ignored"] = serde_json::json!(["size"]),
            "unknown_categories_ignored names \"size\", which is not a column of categories",
        ),
        (
            |j| j["offsets"]["size"] = 1e300.into(),
            "the column \"size\" has the offset 1e300, beyond the range of 32-bit floats",
        ),
        (
            |j| j["fills"] = serde_json::json!({ "size": -1e39 }),
            "the column \"size\" has the fill -1e39, beyond",
        ),
        (
            |j| j["target_offset"] = 4e38.into(),
            "the target offset is 4e38, beyond",
        ),
        (
            |j| j["scaler"]["std"][1] = (-1.0).into(),
            "the scaler's std of input 1 is -1; a standard deviation is never negative",
        ),
        (
            |j| j["scaler"]["mean"][0] = 1e39.into(),
            "the scaler holds a non-finite value (inf)",
        ),
        (
            |j| j["target_scaler"]["min"][0] = 5.0.into(),
            "the target scaler's min of input 0 (5) is above its max (1)",
        ),
        (
            |j| j["input_ranges"][1] = serde_json::json!([3.0, 1.0]),
            "input_ranges holds [3, 1] for input 1, not a least and a greatest finite value",
        ),
        (
            |j| j["class_names"][1] = "low".into(),
            "the class name \"low\" appears twice in class_names",
        ),
        (
            |j| j["categories"]["colour"][2] = "blue".into(),
            "the column \"colour\" lists the category \"blue\" twice",
        ),
        (
            |j| j["offsets"]["colour"] = 5.0.into(),
            "the column \"colour\" has categories and an offset",
        ),
        (
            |j| j["fills"] = serde_json::json!({ "colour": f64::from(f32::MAX) }),
            "",
        ),
    ];
    for (edit, message) in edits {
        fs::write(dir.join("model.json"), &saved).unwrap();
        edit_model_json(&dir, edit);
        if message.is_empty() {
            load_model(&dir, Device::Cpu).expect("the largest 32-bit float is a fill");
            continue;
        }
        let e = load_model_error(&dir);
        assert!(matches!(e, WgradError::Data { .. }), "{e:?}");
        assert_mentions(&e, &["model.json", message]);
    }
}

#[test]
fn input_ranges_are_kept_one_per_input_and_an_older_single_range_is_ignored() {
    let dir = TempDir::new("save-load", "input_ranges");
    let model = trained(Optimizer::sgd(0.1), 1);
    save_model(&dir, &model, &meta()).expect("save");
    let saved = fs::read(dir.join("model.json")).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&saved).unwrap();
    assert_eq!(
        json["input_ranges"],
        serde_json::json!([[-1.5, 2.25], [0.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    );
    assert_eq!(load_model(&dir, Device::Cpu).expect("load").1, meta());
    type Edit = fn(&mut serde_json::Value);
    let edits: [(Edit, &str); 3] = [
        (
            |j| {
                j["input_ranges"].as_array_mut().unwrap().pop();
            },
            "input_ranges has 3 ranges, the model has 4 inputs",
        ),
        (
            |j| j["input_ranges"][2][1] = 1e39.into(),
            "input_ranges holds [0, inf] for input 2",
        ),
        (
            |j| j["input_ranges"][0] = serde_json::json!([1.0]),
            "malformed model description",
        ),
    ];
    for (edit, message) in edits {
        fs::write(dir.join("model.json"), &saved).unwrap();
        edit_model_json(&dir, edit);
        let e = load_model_error(&dir);
        assert!(matches!(e, WgradError::Data { .. }), "{e:?}");
        assert_mentions(&e, &["model.json", message]);
    }
    // A file written before ranges were kept per input, with one range over all of them:
    // read without it, whatever it holds.
    fs::write(dir.join("model.json"), &saved).unwrap();
    edit_model_json(&dir, |j| {
        let file = j.as_object_mut().unwrap();
        file.remove("input_ranges");
        file.insert("input_range".into(), serde_json::json!([3.0, 1.0]));
    });
    let (_, loaded) = load_model(&dir, Device::Cpu).expect("an older model.json loads");
    assert_eq!(
        loaded,
        ModelMeta {
            input_ranges: None,
            ..meta()
        }
    );
}

#[test]
fn models_trained_on_csv_files_with_offsets_fills_and_scaling_load() {
    let dir = TempDir::new("save-load", "csv_runs");
    // Timestamps (an offset), categories with a missing cell, a missing number, a target
    // that needs an offset.
    let csv = dir.join("prices.csv");
    let mut text = String::from("ts,colour,size,price\n");
    for i in 0..12 {
        let colour = ["red", "blue", "", "green"][i % 4];
        let size = if i == 5 {
            String::new()
        } else {
            format!("{}.5", i)
        };
        let price = 1_000_000_000.25 + (i * 7 % 11) as f64;
        text += &format!("{},{colour},{size},{price}\n", 1_700_000_000 + 30 * i);
    }
    fs::write(&csv, text).unwrap();
    for scale in ["standard", "minmax"] {
        let out = dir.join(scale);
        let out = out.to_str().unwrap();
        let data = csv.to_str().unwrap();
        #[rustfmt::skip]
        train_cli(&[
            "--data", data, "--target", "price", "--epochs", "2", "--fill-missing", "mean",
            "--scale", scale, "--scale-target", scale, "--out", out,
        ]);
        let (_, meta) = load_model(Path::new(out), Device::Cpu).expect("load");
        let columns = meta.features.expect("feature columns");
        assert!(columns[0].offset.is_some(), "{columns:?}");
        assert!(columns[1].categories.is_some() && columns[1].fill.is_some());
        assert!(columns[2].fill.is_some(), "{columns:?}");
        assert!(meta.target_offsets[0].is_some() && meta.target_scaler.is_some());
    }
}

// Checkpoints.

/// Trains `before` epochs, checkpoints, loads the checkpoint and trains `after` more; the
/// result must equal `before + after` uninterrupted epochs, bit for bit.
fn assert_resume_matches(optimizer: Optimizer, name: &str) {
    let (before, after) = (2, 3);
    let (x, y) = data();
    let mut uninterrupted = trained(optimizer, before + after);

    let dir = TempDir::new("save-load", name);
    let mut first = Model::new(classifier_spec(optimizer), Device::Cpu).expect("model");
    let history = first.fit(&x, &y, &config(before)).expect("training");
    let fit = serde_json::json!({ "epochs": before + after, "batch_size": 8, "optimizer": name });
    let progress = Progress {
        epochs_done: before,
        history: history.clone(),
        fit: fit.clone(),
    };
    save_checkpoint(&dir, &mut first, &meta(), &progress).expect("checkpoint");
    assert_eq!(
        entries(&dir),
        [
            "checkpoint.json",
            "checkpoint.safetensors",
            "model.json",
            "model.safetensors"
        ]
    );

    let (mut resumed, loaded_meta, loaded) = load_checkpoint(&dir, Device::Cpu).expect("load");
    assert_eq!(loaded_meta, meta());
    assert_eq!(loaded.epochs_done, before);
    assert_eq!(loaded.fit, fit);
    assert_eq!(loaded.history.losses(), history.losses());
    assert_eq!(resumed.steps(), first.steps());
    let [a1, a2] = first.optimizer_state().expect("state");
    let [b1, b2] = resumed.optimizer_state().expect("state");
    assert_eq!(bits(a1), bits(b1), "{name}: optimizer state 1");
    assert_eq!(bits(a2), bits(b2), "{name}: optimizer state 2");
    assert_same_params(&mut first, &mut resumed);

    resumed.fit(&x, &y, &config(after)).expect("training");
    assert_eq!(resumed.steps(), uninterrupted.steps());
    assert_same_params(&mut uninterrupted, &mut resumed);

    // The checkpoint is also a model directory.
    let (mut model, _) = load_model(&dir, Device::Cpu).expect("load as a model");
    assert_same_predictions(&mut model, &mut first);
}

#[test]
fn resume_from_checkpoint_matches_uninterrupted_training() {
    assert_resume_matches(Optimizer::adam(0.01), "adam");
    assert_resume_matches(Optimizer::rmsprop(0.005), "rmsprop");
    assert_resume_matches(Optimizer::nesterov(0.05, 0.9), "nesterov");
    assert_resume_matches(Optimizer::sgd(0.1), "sgd");
}

#[test]
fn checkpoint_stores_optimizer_state_as_named_tensors() {
    let dir = TempDir::new("save-load", "optimizer_tensors");
    let mut model = trained(Optimizer::adam(0.01), 2);
    save_checkpoint(&dir, &mut model, &meta(), &Progress::default()).expect("checkpoint");
    let count = model.spec().param_layout().count();
    let bytes = fs::read(dir.join("checkpoint.safetensors")).expect("read");
    let file = SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let mut names = file.names();
    names.sort_unstable();
    assert_eq!(names, ["optimizer.state1", "optimizer.state2"]);
    for (_, view) in file.tensors() {
        assert_eq!(view.dtype(), Dtype::F32);
        assert_eq!(view.shape(), [count]);
    }
    let record: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("checkpoint.json")).unwrap()).unwrap();
    assert_eq!(record["format_version"], 1);
    assert_eq!(record["steps"], model.steps());
    for name in ["model.safetensors", "model.json", "checkpoint.safetensors"] {
        let size = fs::metadata(dir.join(name)).unwrap().len();
        assert_eq!(record["files"][name]["bytes"], size, "{name}");
    }

    // Plain SGD keeps no state: no tensors.
    let mut sgd = trained(Optimizer::sgd(0.1), 1);
    save_checkpoint(&dir, &mut sgd, &meta(), &Progress::default()).expect("checkpoint");
    let bytes = fs::read(dir.join("checkpoint.safetensors")).expect("read");
    assert!(SafeTensors::deserialize(&bytes).unwrap().is_empty());
    load_checkpoint(&dir, Device::Cpu).expect("load");
}

// Errors.

#[test]
fn missing_directory_and_files_are_named() {
    let dir = TempDir::new("save-load", "missing");
    let absent = dir.join("nowhere");
    let e = load_model_error(&absent);
    assert!(matches!(e, WgradError::Io { .. }), "{e:?}");
    assert_mentions(&e, &["nowhere"]);
    let e = load_checkpoint_error(&absent);
    assert_mentions(&e, &["nowhere"]);

    let model = trained(Optimizer::sgd(0.1), 1);
    save_model(&dir, &model, &ModelMeta::default()).expect("save");
    // A model directory with no checkpoint in it is named as such.
    let e = load_checkpoint_error(&dir);
    assert!(matches!(e, WgradError::Data { .. }), "{e:?}");
    assert_mentions(&e, &["missing", "no checkpoint here", "checkpoint.json"]);

    fs::remove_file(dir.join("model.safetensors")).unwrap();
    let e = load_model_error(&dir);
    assert!(matches!(e, WgradError::Io { .. }), "{e:?}");
    assert_mentions(&e, &["model.safetensors"]);

    fs::remove_file(dir.join("model.json")).unwrap();
    let e = load_model_error(&dir);
    assert_mentions(&e, &["model.json"]);
}

/// Runs `load` on a thread of its own and returns its result, failing the test if it has not
/// returned within 20 s: reading a FIFO waits for a writer, reading /dev/zero never ends.
fn promptly<T: Send + 'static>(what: &str, load: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || sender.send(load()));
    receiver
        .recv_timeout(std::time::Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{what} did not return"))
}

#[cfg(unix)]
#[test]
fn files_that_are_not_regular_files_are_refused_without_reading() {
    let endless = |path: &Path| std::os::unix::fs::symlink("/dev/zero", path).unwrap();
    let fifo = |path: &Path| {
        let made = std::process::Command::new("mkfifo").arg(path).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo {}", path.display());
    };
    let names = [
        "model.json",
        "model.safetensors",
        "checkpoint.json",
        "checkpoint.safetensors",
    ];
    let mut model = trained(Optimizer::adam(0.01), 1);
    for (i, name) in names.into_iter().enumerate() {
        let kinds = [("/dev/zero", &endless as &dyn Fn(&Path)), ("a FIFO", &fifo)];
        for (j, (kind, make)) in kinds.into_iter().enumerate() {
            let dir = TempDir::new("save-load", &format!("special_{i}_{j}"));
            save_checkpoint(&dir, &mut model, &meta(), &Progress::default()).expect("checkpoint");
            fs::remove_file(dir.join(name)).unwrap();
            make(&dir.join(name));
            let what = format!("load_checkpoint with {name} as {kind}");
            let path = dir.to_path_buf();
            let e = promptly(&what, move || load_checkpoint(&path, Device::Cpu).err());
            let e = e.unwrap_or_else(|| panic!("{what} succeeded"));
            assert_mentions(&e, &[name, "not a regular file"]);
            if name.starts_with("model") {
                let what = format!("load_model with {name} as {kind}");
                let path = dir.to_path_buf();
                let e = promptly(&what, move || load_model(&path, Device::Cpu).err());
                let e = e.unwrap_or_else(|| panic!("{what} succeeded"));
                assert_mentions(&e, &[name, "not a regular file"]);
            }
        }
    }
}

#[test]
fn files_too_large_to_be_a_model_or_checkpoint_are_refused_unread() {
    let dir = TempDir::new("save-load", "too_large");
    let mut model = trained(Optimizer::adam(0.01), 1);
    save_checkpoint(&dir, &mut model, &meta(), &Progress::default()).expect("checkpoint");
    // Sparse files: no disk space, and nothing to read if the size is checked first.
    let grow = |name: &str| {
        let file = fs::OpenOptions::new().write(true).open(dir.join(name));
        file.and_then(|f| f.set_len((1 << 30) + 1)).unwrap();
    };
    grow("checkpoint.json");
    assert_mentions(
        &load_checkpoint_error(&dir),
        &["checkpoint.json", "larger than 1073741824 bytes"],
    );
    grow("model.json");
    assert_mentions(
        &load_model_error(&dir),
        &["model.json", "larger than 1073741824 bytes"],
    );
}

#[test]
fn truncated_or_corrupt_weights_are_data_errors() {
    let dir = TempDir::new("save-load", "truncated");
    let model = trained(Optimizer::sgd(0.1), 1);
    save_model(&dir, &model, &ModelMeta::default()).expect("save");
    let path = dir.join("model.safetensors");
    let bytes = fs::read(&path).unwrap();
    for broken in [
        bytes[..bytes.len() - 7].to_vec(),
        bytes[..5].to_vec(),
        Vec::new(),
        b"this is not a safetensors file at all".to_vec(),
    ] {
        fs::write(&path, &broken).unwrap();
        let e = load_model_error(&dir);
        assert!(matches!(e, WgradError::Data { .. }), "{e:?}");
        assert_mentions(&e, &["model.safetensors", "not a valid safetensors file"]);
    }
}

/// The saved model's tensors with `edit` applied, written back over `model.safetensors`.
fn edit_tensors(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>)) {
    let mut tensors = saved_tensors(dir);
    edit(&mut tensors);
    let tensors: Vec<_> = tensors
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.clone(), v.clone()))
        .collect();
    write_tensors(&dir.join("model.safetensors"), &tensors);
}

#[test]
fn tensor_missing_extra_mistyped_or_non_finite_is_named() {
    let dir = TempDir::new("save-load", "tensors");
    let model = trained(Optimizer::sgd(0.1), 1);
    save_model(&dir, &model, &ModelMeta::default()).expect("save");
    let original = fs::read(dir.join("model.safetensors")).unwrap();
    let restore = || fs::write(dir.join("model.safetensors"), &original).unwrap();

    edit_tensors(&dir, |t| t.retain(|(name, _, _)| name != "layers.1.bias"));
    let e = load_model_error(&dir);
    assert!(matches!(e, WgradError::Data { .. }), "{e:?}");
    assert_mentions(
        &e,
        &["model.safetensors", "tensor layers.1.bias is missing"],
    );

    restore();
    edit_tensors(&dir, |t| {
        t.push(("layers.3.weight".into(), vec![2, 3], vec![0.0; 6]))
    });
    let e = load_model_error(&dir);
    assert_mentions(
        &e,
        &["model.safetensors", "unexpected tensor layers.3.weight"],
    );

    restore();
    edit_tensors(&dir, |t| {
        let w = t
            .iter_mut()
            .find(|(n, _, _)| n == "layers.2.weight")
            .unwrap();
        w.1 = vec![8, 3];
    });
    let e = load_model_error(&dir);
    assert_mentions(
        &e,
        &["layers.2.weight has shape [8, 3], the model description says [3, 8]"],
    );

    restore();
    edit_tensors(&dir, |t| {
        let w = t
            .iter_mut()
            .find(|(n, _, _)| n == "layers.0.weight")
            .unwrap();
        w.2[4 * 2 + 1] = f32::NAN;
    });
    let e = load_model_error(&dir);
    assert!(matches!(e, WgradError::Data { .. }), "{e:?}");
    assert_mentions(&e, &["layers.0.weight holds NaN at [2, 1]"]);

    restore();
    edit_tensors(&dir, |t| {
        let b = t.iter_mut().find(|(n, _, _)| n == "layers.1.bias").unwrap();
        b.2[5] = f32::NEG_INFINITY;
    });
    let e = load_model_error(&dir);
    assert_mentions(&e, &["layers.1.bias holds -inf at [5]"]);

    // An F64 tensor (as `model.double()` would save).
    let tensors = saved_tensors(&dir)
        .into_iter()
        .map(|(name, shape, values)| {
            let (dtype, bytes) = if name == "layers.0.bias" {
                let bytes = values.iter().flat_map(|&v| f64::from(v).to_le_bytes());
                (Dtype::F64, bytes.collect())
            } else {
                (
                    Dtype::F32,
                    values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                )
            };
            (name, dtype, shape, bytes)
        })
        .collect();
    write_tensors_typed(&dir.join("model.safetensors"), tensors);
    let e = load_model_error(&dir);
    assert_mentions(&e, &["layers.0.bias has dtype F64, expected F32"]);
}

#[test]
fn weights_of_another_architecture_name_both_shapes() {
    let dir = TempDir::new("save-load", "architecture");
    let other = TempDir::new("save-load", "architecture_other");
    let spec = |hidden| {
        Sequential::new(32)
            .dense(hidden, Activation::Relu)
            .dense(10, Activation::Softmax)
    };
    let small = Model::new(spec(64), Device::Cpu).unwrap();
    let large = Model::new(spec(128), Device::Cpu).unwrap();
    save_model(&dir, &small, &ModelMeta::default()).unwrap();
    save_model(&other, &large, &ModelMeta::default()).unwrap();
    // The description of the large model beside the weights of the small one.
    fs::copy(other.join("model.json"), dir.join("model.json")).unwrap();
    let e = load_model_error(&dir);
    assert!(matches!(e, WgradError::Data { .. }), "{e:?}");
    assert_mentions(
        &e,
        &[
            "model.safetensors",
            "layers.0.weight has shape [64, 32], the model description says [128, 32]",
        ],
    );
}

#[test]
fn malformed_model_json_gives_line_and_column() {
    let dir = TempDir::new("save-load", "bad_json");
    let model = trained(Optimizer::sgd(0.1), 1);
    save_model(&dir, &model, &ModelMeta::default()).expect("save");
    let path = dir.join("model.json");
    let json = fs::read_to_string(&path).unwrap();

    fs::write(&path, &json[..json.len() / 2]).unwrap();
    let e = load_model_error(&dir);
    assert!(matches!(e, WgradError::Data { .. }), "{e:?}");
    assert_mentions(&e, &["model.json", "line", "column"]);

    fs::write(
        &path,
        json.replace("\"input_dim\": 4", "\"input_dim\": \"four\""),
    )
    .unwrap();
    let e = load_model_error(&dir);
    assert_mentions(&e, &["model.json", "line", "column", "invalid type"]);

    fs::write(
        &path,
        json.replace("\"format_version\": 1", "\"format_version\": 7"),
    )
    .unwrap();
    let e = load_model_error(&dir);
    assert!(matches!(e, WgradError::Data { .. }), "{e:?}");
    assert_mentions(
        &e,
        &[
            "model.json",
            "unknown format_version 7",
            "reads format_version 1",
        ],
    );

    fs::write(&path, json.replace("\"format_version\": 1,", "")).unwrap();
    let e = load_model_error(&dir);
    assert_mentions(&e, &["model.json", "format_version"]);

    // A description that parses but is not a valid model.
    fs::write(&path, json.replace("\"input_dim\": 4", "\"input_dim\": 0")).unwrap();
    let e = load_model_error(&dir);
    assert!(matches!(e, WgradError::Data { .. }), "{e:?}");
    assert_mentions(&e, &["model.json", "the input width is 0"]);

    // Categories of a column the model does not have.
    save_model(&dir, &model, &meta()).expect("save");
    let json = fs::read_to_string(&path).unwrap();
    assert!(json.contains("\"colour\": ["), "{json}");
    fs::write(&path, json.replace("\"colour\": [", "\"color\": [")).unwrap();
    let e = load_model_error(&dir);
    assert_mentions(
        &e,
        &["model.json", "\"color\"", "not among the feature columns"],
    );
}

#[test]
fn damaged_checkpoints_are_named() {
    let dir = TempDir::new("save-load", "bad_checkpoint");
    let mut model = trained(Optimizer::adam(0.01), 1);
    save_checkpoint(&dir, &mut model, &meta(), &Progress::default()).expect("checkpoint");

    // A file changed after the checkpoint was written.
    let path = dir.join("model.json");
    let json = fs::read_to_string(&path).unwrap();
    fs::write(&path, json.replace("\"level\"", "\"grade\"")).unwrap();
    let e = load_checkpoint_error(&dir);
    assert!(matches!(e, WgradError::Data { .. }), "{e:?}");
    assert_mentions(&e, &["model.json", "does not belong to this checkpoint"]);
    fs::write(&path, json).unwrap();

    fs::remove_file(dir.join("checkpoint.safetensors")).unwrap();
    let e = load_checkpoint_error(&dir);
    assert!(matches!(e, WgradError::Data { .. }), "{e:?}");
    assert_mentions(
        &e,
        &["checkpoint.safetensors", "is missing", "cannot be resumed"],
    );

    let path = dir.join("checkpoint.json");
    let record = fs::read_to_string(&path).unwrap();
    fs::write(&path, &record[..record.len() - 10]).unwrap();
    let e = load_checkpoint_error(&dir);
    assert!(matches!(e, WgradError::Data { .. }), "{e:?}");
    assert_mentions(&e, &["checkpoint.json", "line", "column"]);

    fs::write(
        &path,
        record.replace("\"format_version\": 1", "\"format_version\": 2"),
    )
    .unwrap();
    let e = load_checkpoint_error(&dir);
    assert_mentions(&e, &["checkpoint.json", "unknown format_version 2"]);
}

#[test]
fn checkpoints_whose_progress_fields_disagree_are_refused() {
    let dir = TempDir::new("save-load", "progress");
    let (x, y) = data();
    let mut model = Model::new(classifier_spec(Optimizer::adam(0.01)), Device::Cpu).unwrap();
    let history = model.fit(&x, &y, &config(3)).expect("training");
    let progress = Progress {
        epochs_done: 3,
        history,
        fit: serde_json::Value::Null,
    };
    save_checkpoint(&dir, &mut model, &meta(), &progress).expect("checkpoint");
    let path = dir.join("checkpoint.json");
    let record: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit, &str); 6] = [
        (
            "history emptied",
            |r| r["history"]["epochs"] = serde_json::json!([]),
            "epochs_done is 3, but the history records 0 epochs",
        ),
        (
            "epochs_done 100",
            |r| r["epochs_done"] = 100.into(),
            "epochs_done is 100, but the history records 3 epochs",
        ),
        (
            "epochs_done 0",
            |r| r["epochs_done"] = 0.into(),
            "epochs_done is 0, but the history records 3 epochs",
        ),
        (
            "epochs out of order",
            |r| r["history"]["epochs"][1]["epoch"] = 3.into(),
            "history.epochs[1] is epoch 3, expected 2",
        ),
        (
            "steps 2^64-1",
            |r| r["steps"] = u64::MAX.into(),
            "steps is 18446744073709551615, more than any run takes",
        ),
        (
            "fewer steps than epochs",
            |r| r["steps"] = 2.into(),
            "steps is 2, fewer than the 3 epochs done",
        ),
    ];
    for (what, edit, expected) in edits {
        let mut edited = record.clone();
        edit(&mut edited);
        fs::write(&path, serde_json::to_vec_pretty(&edited).unwrap()).unwrap();
        let e = match load_checkpoint(&dir, Device::Cpu) {
            Ok(_) => panic!("a checkpoint with {what} was loaded"),
            Err(e) => e,
        };
        assert!(matches!(e, WgradError::Data { .. }), "{what}: {e:?}");
        assert_mentions(&e, &["checkpoint.json", expected]);
    }

    // Nor is such a checkpoint written.
    let wrong = Progress {
        epochs_done: 5,
        ..progress
    };
    let e = save_checkpoint(&dir, &mut model, &meta(), &wrong).unwrap_err();
    assert_mentions(&e, &["epochs_done is 5, but the history records 3 epochs"]);
}

/// `wgrad train --device cpu` with `args`; panics with its output if it fails.
fn train_cli(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wgrad"))
        .args(["train", "--device", "cpu"])
        .args(args)
        .output()
        .expect("the wgrad binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "wgrad train {args:?}: {text}");
    text
}

#[test]
fn a_saved_models_predictions_in_the_data_units_match_wgrad_predict() {
    let dir = TempDir::new("save-load", "library_predict");
    // Two targets, one of them timestamps (an offset), scaled; a column of categories.
    let mut text = String::from("size,colour,when,score\n");
    for i in 0..120 {
        let colour = ["red", "green", "blue"][i % 3];
        let size = (i * 37 % 101) as f64 / 50.0 - 1.0;
        let when = 1_700_000_000.0 + 60.0 * size + (i % 3) as f64;
        text += &format!("{size},{colour},{when},{}\n", 2.0 * size);
    }
    let csv = dir.join("train.csv");
    fs::write(&csv, text).unwrap();
    let model_dir = dir.join("model");
    #[rustfmt::skip]
    train_cli(&[
        "--data", csv.to_str().unwrap(), "--target", "when,score", "--epochs", "20",
        "--scale-target", "standard", "--no-plots", "--out", model_dir.to_str().unwrap(),
    ]);
    let new = dir.join("new.csv");
    fs::write(&new, "colour,size\nblue,0.25\nred,-0.5\n").unwrap();
    // The library's steps: read the columns as the model does, scale, predict, back to units.
    let (model, meta) = load_model(&model_dir, Device::Cpu).expect("load");
    let (x, _) = wgrad::data::load_features(&new, meta.features.as_deref()).expect("features");
    let outputs = model
        .predict(&meta.model_inputs(&model, x).unwrap())
        .unwrap();
    let values = meta.outputs_in_data_units(&outputs).unwrap();
    // In the data's units: near 1700000017 (a span of 120 s around 1.7e9).
    assert!((values[[0, 0]] - 1_700_000_017.0).abs() < 30.0, "{values}");
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_wgrad"))
        .args([
            "predict",
            "--device",
            "cpu",
            "--model",
            model_dir.to_str().unwrap(),
        ])
        .args(["--input", new.to_str().unwrap()])
        .output()
        .unwrap();
    let written = String::from_utf8(cli.stdout).unwrap();
    let mut lines = written.lines();
    assert_eq!(lines.next(), Some("when,score"));
    for (row, line) in lines.enumerate() {
        let printed: Vec<f64> = line.split(',').map(|v| v.parse().unwrap()).collect();
        assert_eq!(printed, values.row(row).to_vec(), "{written}");
    }
    // Rows of another width than the model's inputs are refused.
    let error = meta
        .model_inputs(&model, Array2::zeros((1, 2)))
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("has 2 feature columns, the model was trained on 4"),
        "{error}"
    );
}

#[test]
fn checkpoints_of_stopped_and_resumed_runs_load() {
    let dir = TempDir::new("save-load", "real_runs");
    let run = dir.join("run");
    let run = run.to_str().unwrap();
    train_cli(&["--data", "xor", "--epochs", "5", "--out", run]);
    train_cli(&["--resume", run]);
    train_cli(&["--resume", run, "--epochs", "8"]);
    let (_, _, progress) = load_checkpoint(Path::new(run), Device::Cpu).expect("resumed run");
    assert_eq!(progress.epochs_done, 8);

    // Stopped early, with the best epoch's weights restored.
    let stopped = dir.join("stopped");
    let stopped = stopped.to_str().unwrap();
    let out = train_cli(&[
        "--data",
        "xor",
        "--epochs",
        "50",
        "--early-stopping",
        "1",
        "--monitor",
        "accuracy",
        "--out",
        stopped,
    ]);
    assert!(out.contains("early stopping after epoch"), "{out}");
    let (_, _, progress) = load_checkpoint(Path::new(stopped), Device::Cpu).expect("stopped run");
    assert!(progress.epochs_done < 50, "{}", progress.epochs_done);
    train_cli(&["--resume", stopped, "--epochs", "60"]);
}

#[test]
fn optimizer_state_of_the_wrong_shape_is_named() {
    // The manifest protects against edits, so build a consistent checkpoint whose optimizer
    // state does not fit: the state of a different model, saved with this model's files.
    let dir = TempDir::new("save-load", "state_shape");
    let mut model = trained(Optimizer::adam(0.01), 1);
    save_checkpoint(&dir, &mut model, &meta(), &Progress::default()).expect("checkpoint");
    let count = model.spec().param_layout().count();
    write_tensors(
        &dir.join("checkpoint.safetensors"),
        &[
            ("optimizer.state1", vec![count - 1], vec![0.0; count - 1]),
            ("optimizer.state2", vec![count], vec![0.0; count]),
        ],
    );
    reseal_manifest(&dir);
    let e = load_checkpoint_error(&dir);
    assert!(matches!(e, WgradError::Data { .. }), "{e:?}");
    let expected = format!(
        "optimizer.state1 has shape [{}], the model description says [{count}]",
        count - 1
    );
    assert_mentions(&e, &["checkpoint.safetensors", &expected]);

    write_tensors(
        &dir.join("checkpoint.safetensors"),
        &[("optimizer.state1", vec![count], vec![0.0; count])],
    );
    reseal_manifest(&dir);
    let e = load_checkpoint_error(&dir);
    assert_mentions(
        &e,
        &[
            "checkpoint.safetensors",
            "tensor optimizer.state2 is missing",
        ],
    );

    // State for an optimizer that keeps none.
    let mut sgd = trained(Optimizer::sgd(0.1), 1);
    save_checkpoint(&dir, &mut sgd, &meta(), &Progress::default()).expect("checkpoint");
    write_tensors(
        &dir.join("checkpoint.safetensors"),
        &[("optimizer.state1", vec![count], vec![0.0; count])],
    );
    reseal_manifest(&dir);
    let e = load_checkpoint_error(&dir);
    assert_mentions(
        &e,
        &["unexpected tensor optimizer.state1: the sgd optimizer has none"],
    );
}

/// Rewrites the manifest of `dir/checkpoint.json` to match the files as they are now.
fn reseal_manifest(dir: &Path) {
    let path = dir.join("checkpoint.json");
    let mut record: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    for name in ["model.safetensors", "model.json", "checkpoint.safetensors"] {
        let bytes = fs::read(dir.join(name)).unwrap();
        let hash = bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
        record["files"][name] = serde_json::json!({
            "bytes": bytes.len(),
            "fnv1a64": format!("{hash:016x}"),
        });
    }
    fs::write(&path, serde_json::to_vec_pretty(&record).unwrap()).unwrap();
}

// Interrupted writes.

/// Two checkpoints of the same run, after epochs 2 and 3, in two directories.
fn two_checkpoints(name: &str) -> (TempDir, TempDir, Model) {
    let (x, y) = data();
    let old = TempDir::new("save-load", &format!("{name}_old"));
    let new = TempDir::new("save-load", &format!("{name}_new"));
    let mut model = Model::new(classifier_spec(Optimizer::adam(0.01)), Device::Cpu).unwrap();
    let mut history = model.fit(&x, &y, &config(2)).expect("training");
    let progress = |history: &History| Progress {
        epochs_done: history.epochs.len(),
        history: history.clone(),
        ..Default::default()
    };
    save_checkpoint(&old, &mut model, &meta(), &progress(&history)).expect("checkpoint");
    let third = FitConfig {
        initial_epoch: 2,
        ..config(3)
    };
    let more = model.fit(&x, &y, &third).expect("training");
    history.epochs.extend(more.epochs);
    save_checkpoint(&new, &mut model, &meta(), &progress(&history)).expect("checkpoint");
    (old, new, model)
}

/// Puts `src/name` into `dir` under a temporary name, as a writer staging it would have.
fn stage(src: &Path, dir: &Path, name: &str) {
    fs::copy(src.join(name), dir.join(format!(".{name}.tmp-4242-0"))).unwrap();
}

fn install(src: &Path, dir: &Path, name: &str) {
    fs::copy(src.join(name), dir.join(name)).unwrap();
}

/// Loads the checkpoint in `dir`; asserts it is the one after `epochs` epochs with `model`'s
/// parameters, and that the directory was left complete and without temporary files.
fn assert_recovers(dir: &Path, epochs: usize, model: &mut Model) {
    let (mut loaded, _, progress) = load_checkpoint(dir, Device::Cpu).expect("load");
    assert_eq!(progress.epochs_done, epochs);
    assert_same_params(&mut loaded, model);
    assert_eq!(
        entries(dir),
        [
            "checkpoint.json",
            "checkpoint.safetensors",
            "model.json",
            "model.safetensors"
        ]
    );
    // Loading again finds the same, now without anything to repair.
    let (_, _, again) = load_checkpoint(dir, Device::Cpu).expect("load again");
    assert_eq!(again.epochs_done, epochs);
}

#[test]
fn killed_between_renames_rolls_forward() {
    let (old, new, mut model) = two_checkpoints("between_renames");
    // The weights were renamed, the rest is still staged.
    install(&new, &old, "model.safetensors");
    for name in ["model.json", "checkpoint.safetensors", "checkpoint.json"] {
        stage(&new, &old, name);
    }
    assert_recovers(&old, 3, &mut model);
    for name in [
        "model.safetensors",
        "checkpoint.safetensors",
        "checkpoint.json",
    ] {
        assert_eq!(
            fs::read(old.join(name)).unwrap(),
            fs::read(new.join(name)).unwrap()
        );
    }
}

#[test]
fn first_checkpoint_killed_between_renames_loads_as_a_model() {
    let (_, new, mut model) = two_checkpoints("first_between_renames");
    let dir = TempDir::new("save-load", "first_between_renames");
    // The first checkpoint of a directory: its weights renamed, no model.json yet.
    install(&new, &dir, "model.safetensors");
    for name in ["model.json", "checkpoint.safetensors", "checkpoint.json"] {
        stage(&new, &dir, name);
    }
    let before = entries(&dir);
    let (mut loaded, _) = load_model(&dir, Device::Cpu).expect("load model");
    assert_same_params(&mut loaded, &mut model);
    assert_eq!(entries(&dir), before, "load_model wrote into the directory");
    assert_recovers(&dir, 3, &mut model);
}

#[test]
fn killed_before_the_last_rename_rolls_forward() {
    let (old, new, mut model) = two_checkpoints("last_rename");
    for name in ["model.safetensors", "model.json", "checkpoint.safetensors"] {
        install(&new, &old, name);
    }
    stage(&new, &old, "checkpoint.json");
    assert_recovers(&old, 3, &mut model);
}

#[test]
fn renames_lost_out_of_order_roll_forward() {
    // After a power loss only some renames may persist, in any order: here checkpoint.json's
    // did and the optimizer state's did not.
    let (old, new, mut model) = two_checkpoints("out_of_order");
    for name in ["model.safetensors", "model.json", "checkpoint.json"] {
        install(&new, &old, name);
    }
    stage(&new, &old, "checkpoint.safetensors");
    assert_recovers(&old, 3, &mut model);
}

#[test]
fn killed_while_staging_keeps_the_previous_checkpoint() {
    let (old, new, _) = two_checkpoints("staging");
    let (mut previous, _, _) = load_checkpoint(&old, Device::Cpu).expect("load");
    // Half-written temporary files, the last one cut short.
    for name in ["model.safetensors", "model.json", "checkpoint.safetensors"] {
        stage(&new, &old, name);
    }
    let record = fs::read(new.join("checkpoint.json")).unwrap();
    fs::write(
        old.join(".checkpoint.json.tmp-4242-0"),
        &record[..record.len() / 2],
    )
    .unwrap();
    let half = fs::read(new.join("model.safetensors")).unwrap();
    fs::write(
        old.join(".model.safetensors.tmp-4243-0"),
        &half[..half.len() / 2],
    )
    .unwrap();

    // load_model ignores the temporary files and leaves them alone.
    let (mut as_model, _) = load_model(&old, Device::Cpu).expect("load model");
    assert_same_params(&mut as_model, &mut previous);
    assert_eq!(entries(&old).len(), 4 + 5);

    assert_recovers(&old, 2, &mut previous);
}

#[test]
fn stale_temporary_files_are_ignored_and_cleaned_up() {
    let dir = TempDir::new("save-load", "stale");
    let mut model = trained(Optimizer::adam(0.01), 2);
    save_checkpoint(&dir, &mut model, &meta(), &Progress::default()).expect("checkpoint");
    for name in [
        ".model.safetensors.tmp-1-0",
        ".model.json.tmp-1-0",
        ".checkpoint.safetensors.tmp-1-0",
        ".checkpoint.json.tmp-1-0",
    ] {
        fs::write(dir.join(name), b"garbage").unwrap();
    }
    // A complete but stale checkpoint record whose files are gone.
    fs::copy(
        dir.join("checkpoint.json"),
        dir.join(".checkpoint.json.tmp-2-0"),
    )
    .unwrap();
    let (mut loaded, _) = load_model(&dir, Device::Cpu).expect("load model");
    assert_same_predictions(&mut loaded, &mut model);
    let (mut loaded, _, _) = load_checkpoint(&dir, Device::Cpu).expect("load checkpoint");
    assert_same_params(&mut loaded, &mut model);
    assert_eq!(entries(&dir).len(), 4, "{:?}", entries(&dir));

    // A save removes stale temporary files too.
    fs::write(dir.join(".model.json.tmp-1-0"), b"garbage").unwrap();
    save_checkpoint(&dir, &mut model, &meta(), &Progress::default()).expect("checkpoint");
    assert_eq!(entries(&dir).len(), 4, "{:?}", entries(&dir));
}

#[test]
fn failed_save_leaves_no_temporary_files() {
    let dir = TempDir::new("save-load", "failed_save");
    let mut model = trained(Optimizer::adam(0.01), 1);
    save_checkpoint(&dir, &mut model, &meta(), &Progress::default()).expect("checkpoint");
    // A directory where a target file should be: the rename over it fails.
    fs::remove_file(dir.join("model.safetensors")).unwrap();
    fs::create_dir(dir.join("model.safetensors")).unwrap();
    fs::write(dir.join("model.safetensors/keep"), b"x").unwrap();
    let e = save_model(&dir, &model, &meta()).unwrap_err();
    assert!(matches!(e, WgradError::Io { .. }), "{e:?}");
    assert_mentions(&e, &["model.safetensors"]);
    assert!(
        !entries(&dir).iter().any(|n| n.contains(".tmp-")),
        "{:?}",
        entries(&dir)
    );
}

// GPU.

#[test]
fn gpu_round_trip() {
    if common::skip_gpu("gpu_round_trip") {
        return;
    }
    let gpu = || Device::Gpu(AdapterChoice::default());
    let (x, y) = data();
    let mut model = match Model::new(classifier_spec(Optimizer::adam(0.01)), gpu()) {
        Ok(model) => model,
        Err(e) => panic!("gpu_round_trip: {}\n  ({e})", common::NO_ADAPTER_HELP),
    };
    eprintln!("gpu_round_trip: {}", model.device());
    model.fit(&x, &y, &config(3)).expect("training");

    let dir = TempDir::new("save-load", "gpu");
    save_model(&dir, &model, &meta()).expect("save");
    let (mut loaded, _) = load_model(&dir, gpu()).expect("load");
    assert_same_params(&mut model, &mut loaded);
    assert_same_predictions(&mut model, &mut loaded);

    // A checkpoint taken on the GPU resumes on the GPU exactly, and loads on the CPU.
    save_checkpoint(&dir, &mut model, &meta(), &Progress::default()).expect("checkpoint");
    let (mut resumed, _, _) = load_checkpoint(&dir, gpu()).expect("load checkpoint");
    model.fit(&x, &y, &config(2)).expect("training");
    resumed.fit(&x, &y, &config(2)).expect("training");
    assert_same_params(&mut model, &mut resumed);
    let (mut on_cpu, _, _) = load_checkpoint(&dir, Device::Cpu).expect("load on the CPU");
    let mut reloaded = load_model(&dir, gpu()).expect("load").0;
    assert_same_params(&mut on_cpu, &mut reloaded);
}
