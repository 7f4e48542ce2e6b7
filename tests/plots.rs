//! The figures of `wgrad::plot`: trained on the CPU, written to a fresh folder under the system's
//! temporary directory, then checked as PNG files: signature, size from the IHDR chunk, and the
//! pixels themselves, decoded here with flate2 (already a dependency of the crate).
//!
//! Set `WGRAD_KEEP_PLOTS=1` to keep the images (the tests print where they are).

use ndarray::Array2;
use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use wgrad::plot::{
    BOUNDARY_SIZE, BoundaryNames, HISTORY_SIZE, plot_decision_boundary, plot_history,
    plot_named_decision_boundary,
};
use wgrad::{
    Activation, Device, FitConfig, History, Loss, Model, Optimizer, Sequential, Targets,
    WgradError, data,
};

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// A new, empty folder for one test's images; removed by `finish` unless `WGRAD_KEEP_PLOTS`
/// is set.
fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgrad-plots-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn finish(dir: &Path) {
    if std::env::var_os("WGRAD_KEEP_PLOTS").is_some() {
        println!("images kept in {}", dir.display());
    } else {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// An 8-bit RGB or RGBA image read back from a PNG file.
struct Image {
    width: u32,
    height: u32,
    /// RGB of every pixel, row by row.
    pixels: Vec<[u8; 3]>,
}

impl Image {
    fn colours(&self) -> HashSet<[u8; 3]> {
        self.pixels.iter().copied().collect()
    }

    fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        self.pixels[(y * self.width + x) as usize]
    }
}

/// Checks the signature and the IHDR chunk, then decodes a non-interlaced 8-bit RGB(A) PNG:
/// inflates the IDAT chunks and undoes the five row filters.
fn read_png(path: &Path) -> Image {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(PNG_SIGNATURE),
        "{} is not a PNG",
        path.display()
    );
    assert_eq!(&bytes[12..16], b"IHDR", "the first chunk must be IHDR");
    let be32 = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    let (width, height) = (be32(16), be32(20));
    let (bit_depth, colour_type, interlace) = (bytes[24], bytes[25], bytes[28]);
    assert_eq!((bit_depth, interlace), (8, 0), "8-bit, not interlaced");
    let channels = match colour_type {
        2 => 3,
        6 => 4,
        other => panic!("colour type {other}: expected RGB or RGBA"),
    };

    let mut compressed = vec![];
    let mut at = 8;
    while at + 12 <= bytes.len() {
        let length = be32(at) as usize;
        let kind = &bytes[at + 4..at + 8];
        if kind == b"IDAT" {
            compressed.extend_from_slice(&bytes[at + 8..at + 8 + length]);
        }
        if kind == b"IEND" {
            break;
        }
        at += 12 + length;
    }
    let mut raw = vec![];
    flate2::read::ZlibDecoder::new(&compressed[..])
        .read_to_end(&mut raw)
        .unwrap();
    let stride = width as usize * channels;
    assert_eq!(raw.len(), height as usize * (stride + 1), "image data size");

    let mut previous = vec![0u8; stride];
    let mut pixels = Vec::with_capacity((width * height) as usize);
    for line in raw.chunks_exact(stride + 1) {
        let (filter, line) = (line[0], &line[1..]);
        let mut row = vec![0u8; stride];
        for i in 0..stride {
            let left = if i >= channels { row[i - channels] } else { 0 };
            let up = previous[i];
            let up_left = if i >= channels {
                previous[i - channels]
            } else {
                0
            };
            let predictor = match filter {
                0 => 0,
                1 => left,
                2 => up,
                3 => ((left as u16 + up as u16) / 2) as u8,
                4 => paeth(left, up, up_left),
                other => panic!("unknown PNG filter {other}"),
            };
            row[i] = line[i].wrapping_add(predictor);
        }
        pixels.extend(row.chunks_exact(channels).map(|p| [p[0], p[1], p[2]]));
        previous = row;
    }
    Image {
        width,
        height,
        pixels,
    }
}

fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let p = a as i16 + b as i16 - c as i16;
    let (pa, pb, pc) = (
        (p - a as i16).abs(),
        (p - b as i16).abs(),
        (p - c as i16).abs(),
    );
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
}

/// A 2-16-`classes` softmax (or 2-8-1 sigmoid for `classes == 1`) model on the CPU.
fn classifier(classes: usize) -> Model {
    let spec = if classes == 1 {
        Sequential::new(2)
            .dense(8, Activation::Tanh)
            .dense(1, Activation::Sigmoid)
            .loss(Loss::BinaryCrossEntropy)
    } else {
        Sequential::new(2)
            .dense(16, Activation::Relu)
            .dense(classes, Activation::Softmax)
    };
    Model::new(spec.optimizer(Optimizer::adam(0.05)).seed(3), Device::Cpu).unwrap()
}

/// Trains on 3-class spirals one epoch at a time, recording the loss and accuracy on a second
/// draw of spirals as validation, the way a training loop with validation data would.
fn spirals_history(model: &mut Model, epochs: usize) -> History {
    let (x, y) = data::spirals(60, 3, 0.2, 1);
    let (x_val, y_val) = data::spirals(40, 3, 0.2, 2);
    let (y, y_val) = (Targets::from(y), Targets::from(y_val));
    let mut history = History::default();
    for epoch in 1..=epochs {
        let config = FitConfig {
            epochs: 1,
            batch_size: 30,
            seed: epoch as u64,
            ..Default::default()
        };
        let mut record = model.fit(&x, &y, &config).unwrap().epochs.remove(0);
        let validation = model.evaluate(&x_val, &y_val).unwrap();
        record.epoch = epoch;
        record.val_loss = Some(validation.loss);
        record.val_accuracy = validation.accuracy;
        history.epochs.push(record);
    }
    history
}

#[test]
fn history_with_validation() {
    let dir = scratch_dir("history");
    let mut model = classifier(3);
    let history = spirals_history(&mut model, 30);
    let path = dir.join("history.png");
    plot_history(&history, &path).unwrap();

    let image = read_png(&path);
    assert_eq!((image.width, image.height), HISTORY_SIZE);
    assert_eq!((image.width, image.height), (1000, 450));
    assert_eq!(image.pixel(0, 0), [255, 255, 255], "white background");
    // Two curve colours, grid, text and anti-aliased glyphs: far from a blank image.
    assert!(
        image.colours().len() > 20,
        "{} colours",
        image.colours().len()
    );
    finish(&dir);
}

#[test]
fn history_of_regression_has_no_accuracy_panel() {
    let dir = scratch_dir("regression");
    // y = x0 · x1 on a few points: MSE, no accuracy in the records.
    let x = Array2::from_shape_fn((32, 2), |(i, j)| ((i * (j + 3)) % 11) as f32 / 5.0 - 1.0);
    let y = Array2::from_shape_fn((32, 1), |(i, _)| x[[i, 0]] * x[[i, 1]]);
    let spec = Sequential::new(2)
        .dense(8, Activation::Tanh)
        .dense(1, Activation::Linear)
        .loss(Loss::MeanSquaredError)
        .optimizer(Optimizer::adam(0.02));
    let mut model = Model::new(spec, Device::Cpu).unwrap();
    let config = FitConfig {
        epochs: 25,
        batch_size: 8,
        ..Default::default()
    };
    let history = model.fit(&x, &Targets::from(y), &config).unwrap();
    assert!(history.epochs.iter().all(|r| r.accuracy.is_none()));
    let path = dir.join("regression.png");
    plot_history(&history, &path).unwrap();

    let image = read_png(&path);
    assert_eq!((image.width, image.height), HISTORY_SIZE);
    assert!(image.colours().len() > 10);

    // A single epoch, and a diverged (NaN) loss, still give a figure.
    let mut short = History {
        epochs: history.epochs[..1].to_vec(),
    };
    plot_history(&short, &dir.join("one-epoch.png")).unwrap();
    short.epochs.push(history.epochs[1].clone());
    short.epochs[1].loss = f32::NAN;
    plot_history(&short, &dir.join("nan.png")).unwrap();
    assert_eq!(read_png(&dir.join("nan.png")).width, HISTORY_SIZE.0);
    finish(&dir);
}

#[test]
fn decision_boundary_of_spirals() {
    let dir = scratch_dir("spirals");
    let mut model = classifier(3);
    spirals_history(&mut model, 60);
    let (x, y) = data::spirals(60, 3, 0.2, 1);
    let path = dir.join("spirals_boundary.png");
    plot_decision_boundary(&model, &x, &y, &path).unwrap();

    let size = std::fs::metadata(&path).unwrap().len();
    assert!(
        size > 5_000,
        "{size} bytes: suspiciously small for the figure"
    );
    let image = read_png(&path);
    assert_eq!((image.width, image.height), BOUNDARY_SIZE);
    // The three classes' regions: each tint covers a good part of the figure.
    let mut counts = std::collections::HashMap::new();
    for pixel in &image.pixels {
        *counts.entry(*pixel).or_insert(0usize) += 1;
    }
    let large = counts
        .iter()
        .filter(|&(&colour, &n)| colour != [255, 255, 255] && n > 10_000)
        .count();
    assert!(
        large >= 3,
        "{large} large single-colour regions, expected 3"
    );

    // Named axes and classes change only the text: the same regions, other letters.
    let names = BoundaryNames {
        inputs: ["sepal length (cm)".into(), "petal width".into()],
        classes: vec!["setosa".into(), "a very long class name".into()],
    };
    let named_path = dir.join("spirals_named.png");
    plot_named_decision_boundary(&model, &x, &y, &names, &named_path).unwrap();
    let named = read_png(&named_path);
    assert_eq!((named.width, named.height), BOUNDARY_SIZE);
    let differing = named
        .pixels
        .iter()
        .zip(&image.pixels)
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        (100..named.pixels.len() / 20).contains(&differing),
        "{differing} pixels differ: the labels, and only they, should"
    );
    finish(&dir);
}

#[test]
fn decision_boundary_of_xor_with_one_output() {
    let dir = scratch_dir("xor");
    let (x, y) = data::xor();
    let mut model = classifier(1);
    let config = FitConfig {
        epochs: 300,
        batch_size: 4,
        ..Default::default()
    };
    model.fit(&x, &Targets::from(y.clone()), &config).unwrap();
    let path = dir.join("xor_boundary.png");
    plot_decision_boundary(&model, &x, &y, &path).unwrap();

    assert!(std::fs::metadata(&path).unwrap().len() > 5_000);
    let image = read_png(&path);
    assert_eq!((image.width, image.height), BOUNDARY_SIZE);
    assert!(image.colours().len() > 2, "not a single colour");
    finish(&dir);
}

#[test]
fn decision_boundary_needs_two_inputs() {
    let dir = scratch_dir("three-inputs");
    let (x, y) = data::blobs(10, 2, 3, 0.5, 0);
    let spec = Sequential::new(3)
        .dense(4, Activation::Relu)
        .dense(2, Activation::Softmax);
    let model = Model::new(spec, Device::Cpu).unwrap();
    let path = dir.join("never.png");
    let error = plot_decision_boundary(&model, &x, &y, &path).unwrap_err();
    assert!(matches!(error, WgradError::InvalidModel(_)), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("2 inputs") && message.contains("has 3"),
        "{message}"
    );
    assert!(!path.exists(), "no file for a rejected model");
    finish(&dir);
}

#[test]
fn bad_inputs_are_errors() {
    let dir = scratch_dir("errors");
    let (x, y) = data::xor();
    let model = classifier(2);

    let error = plot_decision_boundary(&model, &x, &y[..3], &dir.join("a.png")).unwrap_err();
    assert!(
        matches!(
            error,
            WgradError::RowMismatch {
                x_rows: 4,
                y_rows: 3
            }
        ),
        "{error:?}"
    );

    let error = plot_history(&History::default(), &dir.join("b.png")).unwrap_err();
    assert!(matches!(error, WgradError::EmptyDataset(_)), "{error:?}");

    // A folder that does not exist: an I/O error naming the path.
    let missing = dir.join("no-such-folder").join("c.png");
    let error = plot_decision_boundary(&model, &x, &y, &missing).unwrap_err();
    assert!(matches!(error, WgradError::Io { .. }), "{error:?}");
    assert!(
        error.to_string().contains("no-such-folder"),
        "the message names the path: {error}"
    );
    // Another format's name, or a directory: the figure is a PNG file.
    std::fs::create_dir_all(dir.join("d.png")).unwrap();
    for path in [dir.join("e.svg"), dir.join("d.png")] {
        let error = plot_decision_boundary(&model, &x, &y, &path).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("give a file path ending in .png"),
            "{error}"
        );
        assert!(!dir.join("e.svg").exists());
    }
    finish(&dir);
}
