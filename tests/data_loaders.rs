//! The data loaders on good and bad files: MNIST IDX files (the shipped copy and small
//! synthetic ones, gzipped and plain), CSV files, the train/validation split and the built-in
//! synthetic sets. Every bad file must give a `WgradError::Data` (or `Io`) naming the problem,
//! never a panic.

mod common;

use common::TempDir;
use flate2::Compression;
use flate2::write::GzEncoder;
use ndarray::Array2;
use std::io::Write;
use std::path::{Path, PathBuf};
use wgrad::data::{self, CsvTask, Dataset, FeatureColumn, mnist};
use wgrad::{Targets, WgradError};

fn temp_dir(test: &str) -> TempDir {
    TempDir::new("data-loaders", test)
}

/// Writes `bytes` to `dir/name` and returns the path.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write test file");
    path
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// An IDX image file: magic 0x00000803, count, rows, cols, then the pixels.
fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, 3];
    for v in [count, rows, cols] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

/// An IDX label file: magic 0x00000801, count, then the labels.
fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, 1];
    out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

/// Three 2×2 images with known pixels, and their labels.
fn small_images() -> (Vec<u8>, Vec<u8>) {
    let pixels = [0, 255, 51, 102, 255, 255, 0, 0, 1, 2, 3, 4];
    (idx_images(3, 2, 2, &pixels), idx_labels(&[7, 0, 9]))
}

/// Writes the four MNIST files into `dir` under the given file names.
fn write_mnist_dir(dir: &Path, names: [&str; 4], gzipped: [bool; 4]) {
    let (images, labels) = small_images();
    let test_images = idx_images(1, 2, 2, &[10, 20, 30, 40]);
    let test_labels = idx_labels(&[4]);
    let contents = [images, labels, test_images, test_labels];
    for ((name, gz), bytes) in names.iter().zip(gzipped).zip(contents) {
        write(dir, name, &if gz { gzip(&bytes) } else { bytes });
    }
}

/// The message of a `WgradError::Data`; panics on success or on any other error.
fn data_error<T>(result: wgrad::Result<T>) -> String {
    match result {
        Err(e @ WgradError::Data { .. }) => e.to_string(),
        Err(other) => panic!("expected WgradError::Data, got {other:?}"),
        Ok(_) => panic!("expected an error, got Ok"),
    }
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "error message {message:?} should mention {part:?}"
        );
    }
}

fn classes(y: &Targets) -> &[usize] {
    match y {
        Targets::Classes(c) => c,
        Targets::Values(_) => panic!("expected class targets"),
    }
}

fn values(y: &Targets) -> &Array2<f32> {
    match y {
        Targets::Values(v) => v,
        Targets::Classes(_) => panic!("expected value targets"),
    }
}

// ---------------------------------------------------------------------------------------------
// MNIST

#[test]
fn lines_ending_in_cr_alone_load_as_lines_ending_in_lf() {
    let dir = temp_dir("cr-lines");
    let rows = "a,b,label\n1,2.5,x\n3,\"4\",y\n\n5,-6,x\n7,8,\"y\"\n";
    let lf = write(&dir, "lf.csv", rows.as_bytes());
    let cr = write(&dir, "cr.csv", rows.replace('\n', "\r").as_bytes());
    let from_lf = data::load_csv(&lf, None, CsvTask::Auto).expect("loads");
    let from_cr = data::load_csv(&cr, None, CsvTask::Auto).expect("loads");
    assert_eq!(from_cr.len(), 4);
    assert_eq!(from_cr, from_lf);
}

#[test]
fn mnist_shipped_copy_loads() {
    let mnist = data::load_mnist().expect("the shipped MNIST loads");
    for (set, n, per_class) in [
        (&mnist.train, 60_000, 5_000..7_000),
        (&mnist.test, 10_000, 800..1_200),
    ] {
        assert_eq!(set.x.dim(), (n, 784));
        assert_eq!(set.len(), n);
        assert_eq!(set.feature_names().len(), 784);
        assert_eq!(set.feature_names()[0], "pixel0");
        assert_eq!(
            set.class_names.as_deref(),
            Some(&(0..10).map(|c| c.to_string()).collect::<Vec<_>>()[..])
        );
        let labels = classes(&set.y);
        assert_eq!(labels.len(), n);
        let mut counts = [0usize; 10];
        for &label in labels {
            counts[label] += 1; // panics if a label is > 9
        }
        for (digit, count) in counts.iter().enumerate() {
            assert!(
                per_class.contains(count),
                "{count} samples of digit {digit} out of {n}"
            );
        }
        let min = set.x.iter().copied().fold(f32::INFINITY, f32::min);
        let max = set.x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!((min, max), (0.0, 1.0));
    }
    assert_eq!(classes(&mnist.train.y)[0], 5);
    assert_eq!(classes(&mnist.test.y)[0], 7);
    assert!(mnist::shipped_dir().ends_with("data/mnist"));
}

#[test]
fn mnist_gzipped_and_plain_idx_load_alike() {
    let (images, labels) = small_images();
    let dir = temp_dir("gz-plain");
    // The gzipped copies have no .gz ending: the format is detected from the content.
    let plain = mnist::load_pair(
        &write(&dir, "images-plain", &images),
        &write(&dir, "labels-plain", &labels),
    )
    .expect("plain IDX loads");
    let gzipped = mnist::load_pair(
        &write(&dir, "images-gz", &gzip(&images)),
        &write(&dir, "labels-gz", &gzip(&labels)),
    )
    .expect("gzipped IDX loads");
    assert_eq!(plain, gzipped);
    assert_eq!(plain.x.dim(), (3, 4));
    assert_eq!(classes(&plain.y), &[7, 0, 9]);
    let row0: Vec<f32> = plain.x.row(0).to_vec();
    assert_eq!(row0, vec![0.0, 1.0, 0.2, 0.4]);
    assert_eq!(
        plain.feature_names(),
        ["pixel0", "pixel1", "pixel2", "pixel3"]
    );

    let raw = mnist::read_images(&dir.join("images-gz")).expect("images");
    assert_eq!((raw.count, raw.rows, raw.cols), (3, 2, 2));
    assert_eq!(raw.pixels[..4], [0, 255, 51, 102]);
}

#[test]
fn mnist_dir_accepts_standard_gz_and_dotted_names() {
    let standard = temp_dir("names-standard");
    write_mnist_dir(
        &standard,
        [
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte.gz",
        ],
        [true, false, false, true],
    );
    let dotted = temp_dir("names-dotted");
    write_mnist_dir(
        &dotted,
        [
            "train-images.idx3-ubyte",
            "train-labels.idx1-ubyte.gz",
            "t10k-images.idx3-ubyte.gz",
            "t10k-labels.idx1-ubyte",
        ],
        [false, true, true, false],
    );
    let a = mnist::load_dir(&standard).expect("standard names load");
    let b = data::load_mnist_dir(&dotted).expect("dotted names load");
    assert_eq!(a, b);
    // The test set alone, from a directory without the training files.
    for name in ["train-images.idx3-ubyte", "train-labels.idx1-ubyte.gz"] {
        std::fs::remove_file(dotted.join(name)).unwrap();
    }
    assert_eq!(
        mnist::load_test_dir(&dotted).expect("test files load"),
        a.test
    );
    assert_mentions(&data_error(mnist::load_dir(&dotted)), &["train images"]);
    assert_eq!(a.train.len(), 3);
    assert_eq!(a.test.len(), 1);
    assert_eq!(classes(&a.test.y), &[4]);
    assert_eq!(
        a.test.x.row(0).to_vec(),
        [10.0, 20.0, 30.0, 40.0].map(|p| p / 255.0)
    );
}

#[test]
fn mnist_missing_file_in_dir_names_dir_and_candidates() {
    let dir = temp_dir("missing");
    write_mnist_dir(
        &dir,
        [
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ],
        [false; 4],
    );
    std::fs::remove_file(dir.join("t10k-labels-idx1-ubyte")).unwrap();
    let message = data_error(mnist::load_dir(&dir));
    assert_mentions(
        &message,
        &[
            &dir.display().to_string(),
            "t10k labels",
            "t10k-labels-idx1-ubyte.gz",
            "t10k-labels.idx1-ubyte",
        ],
    );
    let message = data_error(mnist::load_dir(&dir.join("does-not-exist")));
    assert_mentions(&message, &["not a directory"]);
}

#[test]
fn mnist_truncated_files_are_rejected() {
    let (images, labels) = small_images();
    let dir = temp_dir("truncated");
    let labels = write(&dir, "labels", &labels);

    // Data cut short, plain and gzipped (the gzip stream itself intact).
    for (name, bytes) in [
        ("short", images[..images.len() - 1].to_vec()),
        ("short.gz", gzip(&images[..images.len() - 5])),
    ] {
        let message = data_error(mnist::load_pair(&write(&dir, name, &bytes), &labels));
        assert_mentions(&message, &["truncated", "12 bytes", "16-byte header"]);
    }
    // Cut inside the header.
    let message = data_error(mnist::read_images(&write(&dir, "header", &images[..10])));
    assert_mentions(&message, &["truncated header", "byte 10"]);
    let message = data_error(mnist::read_images(&write(&dir, "tiny", &images[..2])));
    assert_mentions(&message, &["truncated", "magic"]);
    let message = data_error(mnist::read_images(&write(&dir, "empty", &[])));
    assert_mentions(&message, &["truncated"]);
    // A gzip stream cut in the middle.
    let compressed = gzip(&images);
    let message = data_error(mnist::read_images(&write(
        &dir,
        "cut.gz",
        &compressed[..compressed.len() - 6],
    )));
    assert_mentions(&message, &["gzip"]);
    // Bytes past the announced data are not silently ignored.
    let mut long = images.clone();
    long.extend_from_slice(&[1, 2, 3]);
    let message = data_error(mnist::read_images(&write(&dir, "long", &long)));
    assert_mentions(&message, &["unexpected data at byte 28", "3 bytes"]);
}

#[test]
fn mnist_extra_bytes_and_folders_are_named_as_such() {
    let (images, _) = small_images();
    let dir = temp_dir("extra");
    // Junk after a whole gzip stream, short or long: not "corrupt", but extra bytes.
    let compressed = gzip(&images);
    for junk in [&b"\n"[..], b"abc", b"trailing text from a download page"] {
        let mut bytes = compressed.clone();
        bytes.extend_from_slice(junk);
        let message = data_error(mnist::read_images(&write(&dir, "junk.gz", &bytes)));
        let n = junk.len();
        let (s, are, follow) = if n == 1 {
            ("", "is", "follows")
        } else {
            ("s", "are", "follow")
        };
        assert_mentions(
            &message,
            &[&format!(
                "the gzip stream ends at byte {} of the file, but {n} more byte{s} that {are} \
                 not gzip data {follow}",
                compressed.len()
            )],
        );
    }
    // Two gzip members one after the other are one stream, as gzip reads them.
    let (head, tail) = images.split_at(10);
    let mut members = gzip(head);
    members.extend_from_slice(&gzip(tail));
    mnist::read_images(&write(&dir, "members.gz", &members)).expect("two members");
    // Extra data inside the stream or the file, one byte or more.
    let mut long = images.clone();
    long.push(0);
    let message = data_error(mnist::read_images(&write(&dir, "long", &long)));
    assert_mentions(&message, &["but 1 byte follows"]);
    let message = data_error(mnist::read_images(&write(&dir, "long.gz", &gzip(&long))));
    assert_mentions(&message, &["but at least one more byte follows"]);
    // A folder under a file's name.
    write_mnist_dir(
        &dir,
        [
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ],
        [false; 4],
    );
    std::fs::remove_file(dir.join("train-labels-idx1-ubyte")).unwrap();
    std::fs::create_dir(dir.join("train-labels-idx1-ubyte")).unwrap();
    let message = data_error(mnist::load_dir(&dir));
    assert_mentions(
        &message,
        &["train-labels-idx1-ubyte: is a directory, not the MNIST train labels file"],
    );
}

#[test]
fn mnist_foreign_files_are_rejected_by_magic() {
    let (images, labels) = small_images();
    let dir = temp_dir("magic");
    let message = data_error(mnist::read_images(&write(
        &dir,
        "zip",
        b"PK\x03\x04 this is not an IDX file at all",
    )));
    assert_mentions(&message, &["not an IDX file", "0x504b0304", "0x00000803"]);
    // A label file where images are expected, and the other way round.
    let message = data_error(mnist::read_images(&write(&dir, "labels", &labels)));
    assert_mentions(&message, &["byte 3", "label file", "0x00000803"]);
    let message = data_error(mnist::read_labels(&write(
        &dir,
        "images.gz",
        &gzip(&images),
    )));
    assert_mentions(&message, &["byte 3", "image file", "0x00000801"]);
    // IDX, but of 32-bit floats.
    let mut floats = images.clone();
    floats[2] = 0x0d;
    let message = data_error(mnist::read_images(&write(&dir, "floats", &floats)));
    assert_mentions(&message, &["byte 2", "data type 0x0d"]);
}

#[test]
fn mnist_absurd_claimed_sizes_are_rejected_before_allocating() {
    let dir = temp_dir("huge");
    let pixels = [0u8; 784];
    let huge = idx_images(u32::MAX, 28, 28, &pixels);
    for (name, bytes) in [("huge", huge.clone()), ("huge.gz", gzip(&huge))] {
        let message = data_error(mnist::read_images(&write(&dir, name, &bytes)));
        assert_mentions(
            &message,
            &["header claims", "4294967295 images of 28 x 28 pixels"],
        );
    }
    let all_max = idx_images(u32::MAX, u32::MAX, u32::MAX, &pixels);
    let message = data_error(mnist::read_images(&write(&dir, "max", &all_max)));
    assert_mentions(
        &message,
        &[
            "header claims",
            "4294967295 images of 4294967295 x 4294967295 pixels",
        ],
    );

    let mut huge_labels = idx_labels(&[1, 2, 3]);
    huge_labels[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    let message = data_error(mnist::read_labels(&write(&dir, "labels", &huge_labels)));
    assert_mentions(&message, &["truncated", "4294967295 labels", "only 3"]);

    let zero = idx_images(0, 28, 28, &[]);
    let message = data_error(mnist::read_images(&write(&dir, "zero", &zero)));
    assert_mentions(&message, &["dimension 0 has size 0"]);
}

#[test]
fn mnist_count_mismatch_and_bad_labels_are_rejected() {
    let (images, _) = small_images();
    let dir = temp_dir("mismatch");
    let images = write(&dir, "images", &images);
    let two_labels = write(&dir, "labels", &idx_labels(&[1, 2]));
    let message = data_error(mnist::load_pair(&images, &two_labels));
    assert_mentions(&message, &["2 labels", "3 images"]);

    let bad = write(&dir, "bad-labels", &idx_labels(&[1, 12, 3]));
    let message = data_error(mnist::load_pair(&images, &bad));
    assert_mentions(&message, &["label 12", "index 1", "byte offset 9"]);
}

#[test]
fn mnist_unreadable_file_is_an_io_error() {
    let dir = temp_dir("io");
    match mnist::read_images(&dir.join("nope")) {
        Err(WgradError::Io { path, .. }) => assert!(path.ends_with("nope")),
        other => panic!("expected WgradError::Io, got {:?}", other.map(|_| ())),
    }
}

// ---------------------------------------------------------------------------------------------
// CSV

#[test]
fn csv_integer_labels_map_in_numeric_order() {
    let dir = temp_dir("csv-int");
    let path = write(
        &dir,
        "int.csv",
        b"a,b,label\n1,2,10\n3,4,2\n5,6,3\n7,8,2\n9,10,03\n",
    );
    let set = data::load_csv(&path, None, CsvTask::Auto).expect("loads");
    assert_eq!(set.x.dim(), (5, 2));
    assert_eq!(set.x.row(4).to_vec(), [9.0, 10.0]);
    assert_eq!(set.feature_names(), ["a", "b"]);
    assert_eq!(
        set.class_names.as_deref(),
        Some(&["2", "3", "10"].map(String::from)[..])
    );
    assert_eq!(classes(&set.y), &[2, 0, 1, 0, 1]);
    assert_eq!(set.n_classes(), Some(3));
}

#[test]
fn csv_string_labels_and_target_by_name() {
    let dir = temp_dir("csv-str");
    let path = write(
        &dir,
        "iris.csv",
        b"sepal_length, species ,petal_width\n5.1,setosa,0.2\n\n6.3,virginica,1.8\n5.8 , versicolor, 1.2\n",
    );
    let set = data::load_csv(&path, Some("species"), CsvTask::Auto).expect("loads");
    assert_eq!(set.feature_names(), ["sepal_length", "petal_width"]);
    assert_eq!(set.target_names, ["species"]);
    assert_eq!(set.x.row(2).to_vec(), [5.8, 1.2]);
    // The header's spaces are trimmed, and so are a name's given for it.
    let spaced = data::load_csv(&path, Some(" species "), CsvTask::Auto).expect("loads");
    assert_eq!(spaced, set);
    assert_eq!(
        set.class_names.as_deref(),
        Some(&["setosa", "versicolor", "virginica"].map(String::from)[..])
    );
    assert_eq!(classes(&set.y), &[0, 2, 1]);

    // Known classes for an evaluation file: same indices, unknown labels rejected.
    let names = set.class_names.clone().unwrap();
    let again = data::load_csv_with_classes(&path, Some("species"), &names).expect("loads");
    assert_eq!(again, set);
    let reordered = ["virginica", "setosa", "versicolor"].map(String::from);
    let again = data::load_csv_with_classes(&path, Some("species"), &reordered).unwrap();
    assert_eq!(classes(&again.y), &[1, 0, 2]);
    let message = data_error(data::load_csv_with_classes(
        &path,
        Some("species"),
        &["setosa", "virginica"].map(String::from),
    ));
    assert_mentions(
        &message,
        &[
            "line 5",
            "column \"species\"",
            "\"versicolor\"",
            "\"setosa\"",
        ],
    );
}

#[test]
fn csv_tab_and_semicolon_separated_files_load_like_comma_separated_ones() {
    let dir = temp_dir("csv-separators");
    let comma = write(&dir, "comma.csv", b"a,b,label\n1.5,2,x\n3,4,y\n");
    let expected = data::load_csv(&comma, None, CsvTask::Auto).expect("loads");
    for (name, text) in [
        ("tab.tsv", &b"a\tb\tlabel\n1.5\t2\tx\n3\t4\ty\n"[..]),
        ("semicolon.csv", &b"a;b;label\n1.5;2;x\n3;4;y\n"[..]),
        (
            "quoted.csv",
            &b"\"a\",\"b\",\"label\"\n1.5,2,\"x\"\n3,4,y\n"[..],
        ),
    ] {
        let path = write(&dir, name, text);
        let set = data::load_csv(&path, None, CsvTask::Auto).expect(name);
        assert_eq!(set, expected, "{name}");
    }
    // A comma in a column name does not make commas the separator of a file whose lines
    // split evenly by tabs or semicolons.
    for (name, text) in [
        (
            "comma-in-name.tsv",
            &b"a (m, net)\tb\tlabel\n1.5\t2\tx\n3\t4\ty\n"[..],
        ),
        (
            "comma-in-name.csv",
            &b"a (m, net);b;label\n1.5;2;x\n3;4;y\n"[..],
        ),
    ] {
        let path = write(&dir, name, text);
        let set = data::load_csv(&path, None, CsvTask::Auto).expect(name);
        assert_eq!(set.x, expected.x, "{name}");
        assert_eq!(set.feature_names(), ["a (m, net)", "b"], "{name}");
    }
    // No header row: the first row of numbers is not taken for column names.
    let path = write(&dir, "no-header.csv", b"1.5,2,x\n3,4,y\n2,1,x\n");
    let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
    assert_mentions(
        &message,
        &["line 1 holds numbers (\"1.5\", \"2\", \"x\")", "header row"],
    );
    // Whole numbers can be names (years).
    let path = write(&dir, "years.csv", b"2019,2020,label\n1.5,2,x\n3,4,y\n");
    let set = data::load_csv(&path, None, CsvTask::Auto).expect("years");
    assert_eq!(set.x, expected.x);
    // Gzipped, as pandas reads it.
    let gzipped = gzip(b"a,b,label\n1.5,2,x\n3,4,y\n");
    let path = write(&dir, "comma.csv.gz", &gzipped);
    let set = data::load_csv(&path, None, CsvTask::Auto).expect("gzipped");
    assert_eq!(set, expected);
    // From any reader (predict's standard input), and cut short.
    let (x, _) = data::load_features_from_reader(&path, &gzipped[..], Some(&set.features))
        .expect("gzipped from a reader");
    assert_eq!(x, expected.x);
    let path = write(&dir, "cut.csv.gz", &gzipped[..gzipped.len() - 12]);
    let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
    assert_mentions(&message, &["gzip-compressed data is damaged or cut short"]);
    // A line that fits no separator is named with the separator the file was read with.
    let path = write(
        &dir,
        "ragged.tsv",
        b"a\tb\tlabel\n1.5\t2\tx\n3\t4\ty\n5\t6\n",
    );
    let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
    assert_mentions(
        &message,
        &["line 4", "2 fields", "3 columns", "separated by tabs"],
    );
    // Semicolons with decimal commas: the number is named, with the way out.
    let path = write(&dir, "decimal-comma.csv", b"a;b;label\n1,5;2;x\n3;4;y\n");
    let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
    assert_mentions(
        &message,
        &["line 2", "column \"a\"", "\"1,5\"", "decimals with a point"],
    );
    let path = write(
        &dir,
        "comment.csv",
        b"# measured in 2024\na,b,label\n1,2,x\n3,4,y\n",
    );
    let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
    assert_mentions(
        &message,
        &["line 2: 3 fields, but the header has 1 column", "comment"],
    );
    // Thousands separators and dates are named as such.
    for (cell, hint) in [
        ("\"1,234\"", "without thousands separators"),
        ("2024-03-01", "dates and times must be turned into numbers"),
    ] {
        let text = format!("a,b,label\n{cell},2,x\n3,4,y\n");
        let path = write(&dir, "hints.csv", text.as_bytes());
        let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
        assert_mentions(&message, &["line 2", "column \"a\"", hint]);
    }
}

#[test]
fn csv_feature_columns_of_words_are_one_hot_categories() {
    let dir = temp_dir("csv-one-hot");
    let path = write(
        &dir,
        "cars.csv",
        b"colour,doors,price\nred,2,cheap\nblue,4,dear\ngreen,4,cheap\ngreen,2,dear\nred,5,dear\n",
    );
    let set = data::load_csv(&path, None, CsvTask::Auto).expect("categories load");
    let colour =
        FeatureColumn::categorical("colour", vec!["blue".into(), "green".into(), "red".into()]);
    assert_eq!(
        set.features,
        [colour.clone(), FeatureColumn::numeric("doors")]
    );
    assert_eq!(
        set.feature_names(),
        ["colour=blue", "colour=green", "colour=red", "doors"]
    );
    assert_eq!(
        set.x,
        ndarray::array![
            [0.0, 0.0, 1.0, 2.0],
            [1.0, 0.0, 0.0, 4.0],
            [0.0, 1.0, 0.0, 4.0],
            [0.0, 1.0, 0.0, 2.0],
            [0.0, 0.0, 1.0, 5.0],
        ]
    );
    assert_eq!(classes(&set.y), &[0, 1, 0, 1, 1]);

    // A trained model's columns, by name in another order, encoded as in training.
    let path = write(
        &dir,
        "new.csv",
        b"price,doors,colour\ndear,3,green\ncheap,2,red\n",
    );
    let again =
        data::load_csv_for_model(&path, &[], &set.features, set.class_names.as_deref(), &[])
            .expect("loads for the model");
    assert_eq!(
        again.x,
        ndarray::array![[0.0, 1.0, 0.0, 3.0], [0.0, 0.0, 1.0, 2.0]]
    );
    let (x, names) = data::load_features(&path, Some(&set.features)).expect("features");
    assert_eq!((x, names), (again.x, set.feature_names()));
    // A category the model has not seen, and a missing one, are named by line.
    let path = write(&dir, "unseen.csv", b"colour,doors\nred,2\npink,4\n");
    let message = data_error(data::load_features(&path, Some(&set.features)));
    assert_mentions(
        &message,
        &[
            "line 3",
            "column \"colour\"",
            "unknown category \"pink\"",
            "\"blue\", \"green\", \"red\"",
        ],
    );
    let path = write(
        &dir,
        "missing.csv",
        b"colour,doors,price\nred,2,x\n,4,y\nblue,1,x\n",
    );
    let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
    assert_mentions(&message, &["line 3", "column \"colour\"", "missing values"]);
    // Words where the model has numbers.
    let path = write(&dir, "swapped.csv", b"colour,doors\nred,two\nblue,four\n");
    let message = data_error(data::load_features(&path, Some(&set.features)));
    assert_mentions(
        &message,
        &[
            "line 2",
            "column \"doors\"",
            "\"two\" is not a number",
            "words in every row",
        ],
    );

    // Numbers written with commas or as dates are not categories: named with what to do.
    let cases: [(&str, &[u8], &str); 10] = [
        (
            "decimal-comma.csv",
            b"a;y\n1,5;0\n2,25;1\n",
            "write decimals with a point",
        ),
        (
            "thousands.csv",
            b"income,y\n\"125,000\",0\n\"92,500\",1\n",
            "without thousands separators",
        ),
        (
            "thousands-decimals.csv",
            b"income,y\n\"1,000.50\",0\n\"2,500.25\",1\n",
            "without thousands separators",
        ),
        (
            "european.csv",
            b"a;y\n1.000,50;0\n2.500,25;1\n",
            "without thousands separators",
        ),
        (
            "spaced.csv",
            b"a,y\n1 500,0\n2 250,1\n",
            "without thousands separators",
        ),
        (
            "dollars.csv",
            b"a,y\n$12.50,0\n$7,1\n",
            "without currency symbols",
        ),
        (
            "percent.csv",
            b"a,y\n12.5%,0\n40%,1\n",
            "percentages as plain numbers",
        ),
        (
            "dates.csv",
            b"day,y\n2024-01-05,0\n2024-02-19,1\n",
            "dates and times must be",
        ),
        (
            "german-dates.csv",
            b"day,y\n01.03.2024,0\n15.04.2024,1\n",
            "dates and times",
        ),
        (
            "times.csv",
            b"at,y\n10:30,0\n2024-03,1\n",
            "dates and times",
        ),
    ];
    for (name, text, hint) in cases {
        let path = write(&dir, name, text);
        let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
        assert_mentions(&message, &["line 2", "is not a number", hint]);
    }
    // Version numbers are words, and so categories.
    let path = write(&dir, "versions.csv", b"os,y\n10.0.19041,0\n2.0.15,1\n");
    let set = data::load_csv(&path, None, CsvTask::Auto).expect("versions are categories");
    assert_eq!(set.feature_names(), ["os=10.0.19041", "os=2.0.15"]);
    // A target of numbers written with decimal commas is a regression target to rewrite,
    // not 3 classes; and filling missing cells says so too.
    let path = write(&dir, "price.csv", b"a;price\n1;10,5\n2;12,25\n3;14,0\n");
    let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
    assert_mentions(
        &message,
        &["column \"price\"", "write decimals with a point"],
    );
    let path = write(&dir, "gaps.csv", b"a;y\n1,5;0\n;1\n2,5;0\n");
    let options = data::CsvOptions {
        fill_missing: Some(data::Fill::Mean),
        ..Default::default()
    };
    let message = data_error(data::load_csv_with(&path, &options));
    assert_mentions(
        &message,
        &["line 2, column \"a\"", "write decimals with a point"],
    );
    // A column of words with a number in it is neither: the number is named.
    let mut text = String::from("size,y\n");
    for i in 0..20 {
        let size = if i == 12 {
            "10"
        } else {
            ["S", "M", "L"][i % 3]
        };
        text += &format!("{size},{}\n", i % 2);
    }
    let path = write(&dir, "mixed.csv", text.as_bytes());
    let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
    assert_mentions(
        &message,
        &[
            "line 14, column \"size\"",
            "\"10\" is a number in a column of words",
        ],
    );

    // A column of numbers with a stray word is a typo, named as such.
    let path = write(&dir, "typo.csv", b"a,b,label\n1,2,x\n3,four,y\n");
    let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
    assert_mentions(
        &message,
        &["line 3", "column \"b\"", "\"four\" is not a number"],
    );
    assert!(!message.contains("categor"), "{message}");
    // Words in a regression target are not features to encode.
    let path = write(&dir, "words.csv", b"a,b,y\n1,2,high\n3,4,low\n");
    let message = data_error(data::load_csv(&path, None, CsvTask::Regression));
    assert_mentions(
        &message,
        &["line 2", "column \"y\"", "\"high\" is not a number"],
    );
    assert!(!message.contains("categor"), "{message}");
}

#[test]
fn csv_numbers_far_from_zero_keep_their_differences() {
    let dir = temp_dir("csv-offsets");
    // Timestamps a fraction of a second to a minute apart around 1.7e9: as 32-bit floats they
    // would be rounded to steps of 128 s, the class (after 1700000050) lost.
    let mut text = String::from("stamp,noise,late\n");
    for i in 0..40 {
        let stamp = 1_700_000_000.0 + f64::from(i) * 2.5 + 0.125;
        text += &format!(
            "{stamp:.3},{},{}\n",
            i % 7,
            u8::from(stamp > 1_700_000_050.0)
        );
    }
    let path = write(&dir, "stamps.csv", text.as_bytes());
    let set = data::load_csv(&path, None, CsvTask::Auto).expect("loads");
    let offset = set.features[0].offset.expect("the stamps get an offset");
    // Near the mean (1700000048.875, judged from the 32-bit values), a whole number.
    assert!((offset - 1_700_000_048.875).abs() < 128.0 && offset.fract() == 0.0);
    assert_eq!(set.features[1], FeatureColumn::numeric("noise"));
    let stamps = set.x.column(0).to_vec();
    let expected = |stamp: f64| (stamp - offset) as f32;
    assert_eq!(
        stamps[..2],
        [expected(1_700_000_000.125), expected(1_700_000_002.625)]
    );
    assert_eq!(stamps[39], expected(1_700_000_097.625));
    assert_eq!(stamps[1] - stamps[0], 2.5);
    // A trained model's inputs get the same offset.
    let path = write(&dir, "new.csv", b"noise,stamp\n3,1700000060.5\n");
    let (x, _) = data::load_features(&path, Some(&set.features)).expect("features");
    assert_eq!(x.row(0).to_vec(), [expected(1_700_000_060.5), 3.0]);

    // Values that 32-bit floats read as one (100000.0001 to 100000.0030): judged as written.
    let mut text = String::from("reading,label\n");
    for i in 1..=30 {
        text += &format!("100000.{i:04},{}\n", ["lo", "hi"][usize::from(i > 15)]);
    }
    let path = write(&dir, "fine.csv", text.as_bytes());
    let set = data::load_csv(&path, None, CsvTask::Auto).expect("loads");
    assert!(set.features[0].offset.is_some(), "{:?}", set.features);
    let column = set.x.column(0).to_vec();
    assert!(
        column[1] > column[0] && column[29] > column[28],
        "{column:?}"
    );

    // A regression target too: its values less the offset, for training and evaluation.
    let path = write(
        &dir,
        "late.csv",
        b"x,stamp\n1,1700000000.5\n2,1700000010.25\n3,1700000020\n",
    );
    let set = data::load_csv(&path, None, CsvTask::Regression).expect("loads");
    let offset = set.target_offsets[0].expect("the target gets an offset");
    let values = |set: &Dataset| match &set.y {
        Targets::Values(values) => values.column(0).to_vec(),
        Targets::Classes(_) => panic!("values expected"),
    };
    let expected: Vec<f32> = [1_700_000_000.5, 1_700_000_010.25, 1_700_000_020.0]
        .iter()
        .map(|v| (v - offset) as f32)
        .collect();
    assert_eq!(values(&set), expected);
    assert_eq!(values(&set)[1] - values(&set)[0], 9.75);
    let again = data::load_csv_for_model(&path, &[], &set.features, None, &[Some(offset)])
        .expect("loads for the model");
    assert_eq!(
        (values(&again), again.target_offsets),
        (expected, vec![Some(offset)])
    );
}

#[test]
fn csv_missing_values_are_errors_or_filled_as_asked() {
    let dir = temp_dir("csv-missing");
    let path = write(
        &dir,
        "gaps.csv",
        b"age,port,fare,label\n20,S,10,x\n,C,NaN,y\n40,,30,x\n90,S,NA,y\n",
    );
    let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
    assert_mentions(
        &message,
        &[
            "line 3, column \"age\": empty value",
            "--fill-missing mean|median",
        ],
    );
    let options = |fill| data::CsvOptions {
        fill_missing: Some(fill),
        ..Default::default()
    };
    // Means of the values there are: age (20, 40, 90), fare (10, 30); the port's inputs 0.
    let set = data::load_csv_with(&path, &options(data::Fill::Mean)).expect("filled");
    assert_eq!(set.feature_names(), ["age", "port=C", "port=S", "fare"]);
    assert_eq!(
        set.x,
        ndarray::array![
            [20.0, 0.0, 1.0, 10.0],
            [50.0, 1.0, 0.0, 20.0],
            [40.0, 0.0, 0.0, 30.0],
            [90.0, 0.0, 1.0, 20.0],
        ]
    );
    let fills: Vec<Option<f64>> = set.features.iter().map(|f| f.fill).collect();
    assert_eq!(fills, [Some(50.0), Some(0.0), Some(20.0)]);
    // Medians; the model's fills reach new data.
    let set = data::load_csv_with(&path, &options(data::Fill::Median)).expect("filled");
    assert_eq!(set.x.column(0).to_vec(), [20.0, 40.0, 40.0, 90.0]);
    let new = write(&dir, "new.csv", b"fare,port,age\n,,\n5,C,null\n");
    let (x, _) = data::load_features(&new, Some(&set.features)).expect("filled");
    assert_eq!(
        x,
        ndarray::array![[40.0, 0.0, 0.0, 20.0], [40.0, 1.0, 0.0, 5.0]]
    );
    // Nothing to fill from, and missing targets, stay errors.
    let path = write(&dir, "empty.csv", b"a,b,label\n1,,x\n2,,y\n");
    let message = data_error(data::load_csv_with(&path, &options(data::Fill::Mean)));
    assert_mentions(
        &message,
        &["column \"b\" has no values to fill its missing ones from"],
    );
    let path = write(&dir, "no-label.csv", b"a,label\n1,x\n2,\n3,y\n");
    let message = data_error(data::load_csv_with(&path, &options(data::Fill::Mean)));
    assert_mentions(&message, &["line 3", "empty label"]);
}

/// `load_csv_with` leaving out the columns `ignore` names.
fn load_ignoring(
    path: &Path,
    target: Option<&str>,
    task: CsvTask,
    ignore: &[String],
) -> wgrad::Result<Dataset> {
    let options = data::CsvOptions {
        target: target.map(str::to_string),
        task,
        ignore: ignore.to_vec(),
        fill_missing: None,
        ..data::CsvOptions::default()
    };
    data::load_csv_with(path, &options)
}

#[test]
fn csv_several_targets_are_regression_outputs_each_with_its_offset() {
    let dir = temp_dir("csv-targets");
    let path = write(
        &dir,
        "two.csv",
        b"x,when,y\n1,1700000000.5,0.25\n2,1700000010.25,0.5\n3,1700000020,1.5\n",
    );
    let options = |target: &str| data::CsvOptions {
        target: Some(target.into()),
        ..Default::default()
    };
    let set = data::load_csv_with(&path, &options("y,when")).expect("two targets");
    assert_eq!(set.target_names, ["y", "when"]);
    assert_eq!(set.feature_names(), ["x"]);
    let offset = set.target_offsets[1].expect("the timestamps get an offset");
    assert_eq!(set.target_offsets[0], None);
    let Targets::Values(values) = &set.y else {
        panic!("values expected")
    };
    assert_eq!(values.column(0).to_vec(), [0.25, 0.5, 1.5]);
    assert_eq!(values[[1, 1]] - values[[0, 1]], 9.75);
    // Read again for the model, by name, in any order of columns.
    let again = data::load_csv_for_model(
        &path,
        &set.target_names,
        &set.features,
        None,
        &set.target_offsets,
    )
    .expect("loads for the model");
    assert_eq!((&again.y, again.target_offsets[1]), (&set.y, Some(offset)));
    for (target, expected) in [
        ("y,y", "the target column \"y\" is named twice"),
        ("y,z", "no target column \"z\""),
    ] {
        assert_mentions(
            &data_error(data::load_csv_with(&path, &options(target))),
            &[expected],
        );
    }
}

#[test]
fn csv_columns_of_codes_are_categories_when_named_so() {
    let dir = temp_dir("csv-codes");
    let path = write(
        &dir,
        "stores.csv",
        b"size,store,sales\n1.5,10,3\n2.5,2,4\n0.5,10.0,1\n1.0,7,2\n2.0,,5\n",
    );
    let options = |categorical: &[&str]| data::CsvOptions {
        categorical: categorical.iter().map(|c| c.to_string()).collect(),
        fill_missing: Some(data::Fill::Mean),
        ..Default::default()
    };
    // As numbers by default; named, one input per code (10 and 10.0 one code), in the codes'
    // order (2 before 10), a missing code none of them.
    let plain = data::load_csv_with(&path, &options(&[])).expect("numbers");
    assert_eq!(plain.feature_names(), ["size", "store"]);
    let set = data::load_csv_with(&path, &options(&["store"])).expect("codes");
    assert_eq!(
        set.features[1],
        FeatureColumn {
            fill: Some(0.0),
            ..FeatureColumn::categorical("store", vec!["2".into(), "7".into(), "10".into()])
        }
    );
    assert_eq!(
        set.x.column(3).to_vec(),
        [1.0, 0.0, 1.0, 0.0, 0.0],
        "store=10 in rows 1 and 3"
    );
    assert_eq!(
        set.x.row(4).to_vec(),
        [2.0, 0.0, 0.0, 0.0],
        "a missing code"
    );
    // A code written as another number is the same category; an unknown one is named.
    let new = write(&dir, "new.csv", b"size,store\n1,7.0\n1,3\n");
    let message = data_error(data::load_features(&new, Some(&set.features)));
    assert_mentions(
        &message,
        &["line 3", "unknown category \"3\"", "leave such rows out"],
    );
    let mut lenient = set.features.clone();
    lenient[1].ignore_unknown = true;
    let (x, _) = data::load_features(&new, Some(&lenient)).expect("unknown codes are none");
    assert_eq!(x.row(1).to_vec(), [1.0, 0.0, 0.0, 0.0]);
    let new = write(&dir, "known.csv", b"size,store\n1,7.0\n1,10\n");
    let (x, _) = data::load_features(&new, Some(&set.features)).expect("known codes");
    assert_eq!(x.row(0).to_vec(), [1.0, 0.0, 1.0, 0.0]);
    // Names as --ignore takes them; the target and an ignored column are not features.
    for (categorical, expected) in [
        (
            &["Store"][..],
            "no column \"Store\" to read as categories (names are exact: \"store\"?)",
        ),
        (&["sales"], "the column \"sales\" is the target"),
    ] {
        let message = data_error(data::load_csv_with(&path, &options(categorical)));
        assert_mentions(&message, &[expected]);
    }
    let both = data::CsvOptions {
        ignore: vec!["store".into()],
        ..options(&["size,store"])
    };
    let message = data_error(data::load_csv_with(&path, &both));
    assert_mentions(
        &message,
        &["\"store\" is both ignored and to be read as categories"],
    );
    // Numbers asked for as categories, all different: read them as numbers.
    let mut text = String::from("x,y\n");
    for i in 0..30 {
        text += &format!("{}.5,{}\n", i, i % 2);
    }
    let path = write(&dir, "floats.csv", text.as_bytes());
    let message = data_error(data::load_csv_with(&path, &options(&["x"])));
    assert_mentions(
        &message,
        &[
            "every row of column \"x\" holds a different value (30 rows)",
            "to read it as numbers, leave it out of `--categorical`",
        ],
    );
}

#[test]
fn csv_names_and_identifiers_are_refused_as_categories_and_can_be_ignored() {
    let dir = temp_dir("csv-identifiers");
    // Every row a different word: names, not categories.
    let mut text = String::from("id,name,sex,age,survived\n");
    for i in 0..30 {
        let sex = ["female", "male"][i % 2];
        text += &format!("{i},Person {i},{sex},{},{}\n", 20 + i, i % 3 % 2);
    }
    let path = write(&dir, "people.csv", text.as_bytes());
    let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
    assert_mentions(
        &message,
        &["every row of column \"name\"", "30 rows", "--ignore name"],
    );
    let ignore = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let set = load_ignoring(&path, None, CsvTask::Auto, &ignore(&["name", "id"]))
        .expect("without the names");
    assert_eq!(set.feature_names(), ["sex=female", "sex=male", "age"]);
    assert_eq!(set.x.row(1).to_vec(), [0.0, 1.0, 21.0]);
    // More words than categories can be.
    let mut text = String::from("city,label\n");
    for i in 0..250 {
        text += &format!("town {},{}\n", i % 120, i % 2);
    }
    let path = write(&dir, "cities.csv", text.as_bytes());
    let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
    assert_mentions(
        &message,
        &["column \"city\" holds 120 different words", "at most 100"],
    );
    // Ignoring what is not there, the target, or every feature.
    let path = write(&dir, "small.csv", b"a,b,label\n1,2,x\n3,4,y\n");
    let message = data_error(load_ignoring(&path, None, CsvTask::Auto, &ignore(&["c"])));
    assert_mentions(
        &message,
        &["no column \"c\" to ignore", "\"a\", \"b\", \"label\""],
    );
    let message = data_error(load_ignoring(&path, None, CsvTask::Auto, &ignore(&["A"])));
    assert_mentions(
        &message,
        &["no column \"A\" to ignore (names are exact: \"a\"?)"],
    );
    // Names joined by commas, a trailing comma, and a name that holds a comma.
    let set = load_ignoring(&path, None, CsvTask::Auto, &ignore(&["a,"])).unwrap();
    assert_eq!(set.feature_names(), ["b"]);
    let commas = write(
        &dir,
        "comma.csv",
        b"\"id, full\",b,c,label\n1,2,3,x\n4,5,6,y\n",
    );
    let set = load_ignoring(&commas, None, CsvTask::Auto, &ignore(&["id, full", "b"]))
        .expect("a name with a comma");
    assert_eq!(set.feature_names(), ["c"]);
    let message = data_error(load_ignoring(
        &path,
        None,
        CsvTask::Auto,
        &ignore(&["label"]),
    ));
    assert_mentions(&message, &["\"label\" is the target", "cannot be ignored"]);
    let message = data_error(load_ignoring(
        &path,
        None,
        CsvTask::Auto,
        &ignore(&["a", "b"]),
    ));
    assert_mentions(
        &message,
        &[
            "no feature columns",
            "every column is ignored (\"a\", \"b\")",
        ],
    );
}

#[test]
fn csv_classification_needs_two_classes() {
    let dir = temp_dir("csv-one-class");
    let path = write(&dir, "one.csv", b"a,b,label\n1,2,x\n3,4,x\n");
    let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
    assert_mentions(&message, &["one.csv", "\"label\"", "one class", "\"x\""]);
    // As regression targets the same column is fine.
    let path = write(&dir, "one-value.csv", b"a,b,y\n1,2,7\n3,4,7\n");
    assert!(data::load_csv(&path, None, CsvTask::Regression).is_ok());
}

#[test]
fn csv_regression_and_task_choice() {
    let dir = temp_dir("csv-reg");
    let path = write(&dir, "reg.csv", b"x,y\n0.5,1.25\n-1,3\n2,-0.5\n");
    let set = data::load_csv(&path, None, CsvTask::Auto).expect("loads");
    assert_eq!(set.class_names, None);
    assert_eq!(set.n_classes(), None);
    assert_eq!(set.target_names, ["y"]);
    assert_eq!(values(&set.y).column(0).to_vec(), [1.25, 3.0, -0.5]);

    // Few integers: classes under Auto, values when asked for regression.
    let ints = write(&dir, "ints.csv", b"x,y\n1,0\n2,1\n3,1\n");
    let auto = data::load_csv(&ints, None, CsvTask::Auto).unwrap();
    assert_eq!(classes(&auto.y), &[0, 1, 1]);
    let reg = data::load_csv(&ints, None, CsvTask::Regression).unwrap();
    assert_eq!(values(&reg.y).column(0).to_vec(), [0.0, 1.0, 1.0]);
    // Many distinct integers: regression under Auto.
    let mut many = String::from("x,y\n");
    for i in 0..=data::csv::AUTO_MAX_CLASSES {
        many.push_str(&format!("{i},{}\n", i * 7));
    }
    let many = write(&dir, "many.csv", many.as_bytes());
    assert!(matches!(
        data::load_csv(&many, None, CsvTask::Auto).unwrap().y,
        Targets::Values(_)
    ));
    // Integers written as floats (as pandas writes a column that had a missing value) are
    // integer labels too, and match integer class names when evaluating.
    let floats = write(&dir, "floats.csv", b"x,y\n1,1.0\n2,0.0\n3,2.0\n4,1.0\n");
    let set = data::load_csv(&floats, None, CsvTask::Auto).unwrap();
    assert_eq!(set.class_names.clone().unwrap(), ["0", "1", "2"]);
    assert_eq!(classes(&set.y), &[1, 0, 2, 1]);
    let names = ["2", "1", "0"].map(String::from);
    let again = data::load_csv_with_classes(&floats, None, &names).unwrap();
    assert_eq!(classes(&again.y), &[1, 2, 0, 1]);
    // Many distinct fractional numbers are no classes, even when asked for.
    let mut floats = String::from("x,y\n");
    for i in 0..=data::csv::AUTO_MAX_CLASSES {
        floats.push_str(&format!("{i},{}\n", i as f32 * 0.37));
    }
    let floats = write(&dir, "fractions.csv", floats.as_bytes());
    let message = data_error(data::load_csv(&floats, None, CsvTask::Classification));
    assert_mentions(
        &message,
        &["holds 21 distinct numbers, not all integers", "regression"],
    );
    // Numbers forced into classes.
    let forced = data::load_csv(&path, None, CsvTask::Classification).unwrap();
    assert_eq!(forced.class_names.unwrap(), ["-0.5", "1.25", "3"]);
    // Text can't be regressed.
    let text = write(&dir, "text.csv", b"x,y\n1,cat\n");
    let message = data_error(data::load_csv(&text, None, CsvTask::Regression));
    assert_mentions(
        &message,
        &["line 2", "column \"y\"", "\"cat\" is not a number"],
    );

    assert_eq!("Regression".parse::<CsvTask>(), Ok(CsvTask::Regression));
    assert_eq!("auto".parse::<CsvTask>(), Ok(CsvTask::Auto));
    assert!("guess".parse::<CsvTask>().is_err());
}

#[test]
fn csv_malformed_files_are_rejected_with_line_and_column() {
    let dir = temp_dir("csv-bad");
    let cases: &[(&str, &[u8], &[&str])] = &[
        (
            "number.csv",
            b"sepal,petal_width,label\n1,2,a\n3,abc,b\n",
            &[
                "line 3",
                "column \"petal_width\"",
                "\"abc\" is not a number",
            ],
        ),
        // Missing values as pandas writes them: not a class, not a word.
        (
            "na-label.csv",
            b"a,b,label\n1,2,x\n3,4,NA\n",
            &["line 3", "missing label (\"NA\")"],
        ),
        (
            "null-feature.csv",
            b"a,b,label\n1,2,x\n3,null,y\n",
            &["line 3", "column \"b\"", "missing value (\"null\")"],
        ),
        // Windows line ends: the same line numbers.
        (
            "crlf-number.csv",
            b"a,b,label\r\n1,2,x\r\n\r\n3,abc,y\r\n",
            &["line 4", "column \"b\"", "\"abc\" is not a number"],
        ),
        // Lines ended by CR alone (classic Mac OS): the same line numbers too.
        (
            "cr-number.csv",
            b"a,b,label\r1,2,x\r\r3,abc,y\r",
            &["line 4", "column \"b\"", "\"abc\" is not a number"],
        ),
        (
            "nan.csv",
            b"a,b,label\n1,NaN,a\n",
            &["line 2", "column \"b\"", "missing value (\"NaN\")"],
        ),
        (
            "inf.csv",
            b"a,b,label\n1,2,a\n1e99,2,a\n",
            &[
                "line 3",
                "column \"a\"",
                "beyond the range of 32-bit floats",
            ],
        ),
        (
            "blank.csv",
            b"a,b,label\n1,,a\n",
            &["line 2", "column \"b\"", "empty value"],
        ),
        (
            "ragged.csv",
            b"a,b,label\n1,2,x\n1,2\n",
            &["line 3", "2 fields", "3 columns"],
        ),
        ("empty.csv", b"", &["empty"]),
        ("header-only.csv", b"a,b,label\n", &["no data rows"]),
        (
            "no-header.csv",
            b"1,2,3\n4,5,6\n",
            &["header row", "required"],
        ),
        (
            "dup.csv",
            b"a,a,label\n1,2,x\n",
            &["\"a\"", "more than once"],
        ),
        ("one-column.csv", b"label\nx\n", &["no feature columns"]),
        (
            "empty-label.csv",
            b"a,label\n1,\n",
            &["line 2", "empty label"],
        ),
        (
            "latin1.csv",
            b"a,b,label\n1,2,x\n3,4,caf\xe9\n",
            &["line 3 is not UTF-8 text"],
        ),
        // A quote left open swallows the rest of the file into one field.
        (
            "open-quote-label.csv",
            b"a,b,label\n1,2,x\n3,4,\"y\n5,6,x\n7,8,y\n",
            &["line 3", "runs over 3 lines", "closing quote missing"],
        ),
        (
            "open-quote-feature.csv",
            b"a,b,label\n1,\"2,x\n3,4,y\n5,6,x\n",
            &["line 2", "runs over 3 lines", "closing quote missing"],
        ),
        (
            "pandas-index.csv",
            b",a,label\n0,1,x\n1,2,y\n",
            &[
                "line 1: column 1 of the header has no name",
                "a pandas index? write the file with `to_csv(…, index=False)`",
            ],
        ),
        (
            "open-quote-header.csv",
            b"a,\"b,label\n1,2,x\n3,4,y\n",
            &["line 1", "column name \"b,label\"", "closing quote missing"],
        ),
    ];
    for (name, content, parts) in cases {
        let path = write(&dir, name, content);
        let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
        assert_mentions(&message, parts);
        assert_mentions(&message, &[name]);
    }
    let path = write(&dir, "cols.csv", b"a,b,label\n1,2,x\n");
    let message = data_error(data::load_csv(&path, Some("species"), CsvTask::Auto));
    assert_mentions(&message, &["\"species\"", "\"a\", \"b\", \"label\""]);
    match data::load_csv(dir.join("absent.csv"), None, CsvTask::Auto) {
        Err(WgradError::Io { .. }) => {}
        other => panic!("expected WgradError::Io, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn csv_quoted_fields_may_span_lines_and_an_unclosed_quote_names_its_line() {
    let dir = temp_dir("csv-multiline");
    // As pandas' `to_csv` writes text with line breaks (RFC 4180).
    let notes = b"a,note,y\n1,\"line one\nline two\",1\n2,plain,0\n\n3,\"p\r\nq\nr\",1\n4,x,0";
    let path = write(&dir, "notes.csv", notes);
    let options = data::CsvOptions {
        ignore: vec!["note".into()],
        ..Default::default()
    };
    let set = data::load_csv_with(&path, &options).expect("multi-line notes load");
    assert_eq!(set.x.column(0).to_vec(), [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(classes(&set.y), [1, 0, 1, 0]);
    // Later lines keep the file's numbers: after line breaks in fields and blank lines.
    let path = write(
        &dir,
        "later.csv",
        b"a,note,y\n1,\"one\ntwo\",1\n\n\n2,x,abc\n",
    );
    let options = data::CsvOptions {
        task: CsvTask::Regression,
        ..options
    };
    let message = data_error(data::load_csv_with(&path, &options));
    assert_mentions(&message, &["line 6, column \"y\": \"abc\" is not a number"]);
    // A quote never closed runs to the end: the line it opens on is named, after a field
    // over two lines in the same row.
    let path = write(
        &dir,
        "open.csv",
        b"a,note,y\n1,x,1\n2,\"one\ntwo\",\"0\n3,x,1\n4,x,0\n",
    );
    let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
    assert_mentions(
        &message,
        &[
            "line 4: the quote opening a field here is never closed",
            "runs over 3 lines, to the end of the file",
            "closing quote missing",
        ],
    );
    // Two stray quotes close each other: the field they make is named as such.
    let path = write(
        &dir,
        "stray.csv",
        b"a,b,label\n1,\"2,x\n3,4,y\n5,\"6,x\n7,8,y\n",
    );
    let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
    assert_mentions(
        &message,
        &[
            "line 2, column \"b\"",
            "a quoted field over 3 lines: is a quote misplaced?",
        ],
    );
}

#[test]
fn csv_messages_shorten_long_values() {
    let dir = temp_dir("csv-long-values");
    let long = "x".repeat(1_000_000);
    let path = write(
        &dir,
        "long.csv",
        format!("a,b,label\n1,2,u\n3,{long},v\n").as_bytes(),
    );
    let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
    assert_mentions(
        &message,
        &[
            "line 3, column \"b\"",
            &format!("\"{}…\" (1000000 characters) is not a number", &long[..40]),
        ],
    );
    assert!(message.len() < 300, "{} bytes", message.len());
    // Labels, and lists of them, too.
    let path = write(
        &dir,
        "label.csv",
        format!("a,label\n1,0\n2,{long}\n").as_bytes(),
    );
    let message = data_error(data::load_csv_with_classes(&path, None, &["0".into()]));
    assert_mentions(
        &message,
        &["line 3", "unknown class \"xxxx", "(1000000 characters)"],
    );
    assert!(message.len() < 300, "{} bytes", message.len());
}

#[test]
fn csv_missing_markers_not_read_as_missing_get_a_hint() {
    let dir = temp_dir("csv-missing-markers");
    // As UCI's Adult writes a missing age; NA and friends stay missing values.
    for marker in ["?", "-", "--", ".", "n.a.", "na", "Null"] {
        let text = format!(
            "age,workclass,income\n39,State-gov,<=50K\n50,Private,>50K\n{marker},Private,>50K\n"
        );
        let path = write(&dir, "adult.csv", text.as_bytes());
        let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
        assert_mentions(
            &message,
            &[
                &format!("line 4, column \"age\": \"{marker}\" is not a number"),
                "looks like a missing value",
                "make such cells empty (or NA)",
                "--fill-missing mean|median",
            ],
        );
    }
    let path = write(&dir, "na.csv", b"age,income\n39,1.5\n,2.5\nNA,3.5\n");
    let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
    assert_mentions(&message, &["line 3, column \"age\": empty value"]);
    // A target's: such rows are to be left out.
    let path = write(&dir, "target.csv", b"a,y\n1,1.5\n2,?\n3,2.5\n");
    let message = data_error(data::load_csv(&path, None, CsvTask::Regression));
    assert_mentions(
        &message,
        &[
            "line 3, column \"y\": \"?\" is not a number",
            "missing targets are not supported",
        ],
    );
}

#[test]
fn csv_excel_trailing_separators_and_empty_rows() {
    let dir = temp_dir("csv-excel");
    // A separator ends every line, and rows of empty fields follow the data.
    let path = write(
        &dir,
        "excel.csv",
        b"a,b,y,\n1,2,0,\n3,4,1,\n,,,\n5,6,0,\n,,,\n,,,\n",
    );
    let set = data::load_csv(&path, None, CsvTask::Auto).expect("Excel export loads");
    assert_eq!(set.feature_names(), ["a", "b"]);
    assert_eq!(set.target_names, ["y"]);
    assert_eq!(set.x.column(0).to_vec(), [1.0, 3.0, 5.0]);
    assert_eq!(classes(&set.y), [0, 1, 0]);
    // Without the trailing separator: rows of empty fields are skipped too.
    let path = write(&dir, "gaps.csv", b"a,b,y\n1,2,0\n,,\n3,4,1\n");
    let set = data::load_csv(&path, None, CsvTask::Auto).expect("empty rows skipped");
    assert_eq!(classes(&set.y), [0, 1]);
    // An unnamed column that holds values is still refused, at the line of the value.
    let path = write(&dir, "values.csv", b"a,b,y,\n1,2,0,\n3,4,1,7\n");
    let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
    assert_mentions(
        &message,
        &["line 3: column 4 holds \"7\" but has no name in the header"],
    );
    let path = write(&dir, "middle.csv", b"a,,y\n1,,0\n3,,1\n");
    let message = data_error(data::load_csv(&path, None, CsvTask::Auto));
    assert_mentions(&message, &["line 1: column 2 of the header has no name"]);
    // Prediction inputs keep such a row, one prediction per row: an error says it is empty.
    let features = data::features::numeric_columns(["a", "b"]);
    let path = write(&dir, "predict.csv", b"a,b,\n1,2,\n,,\n");
    let message = data_error(data::load_features(&path, Some(&features)));
    assert_mentions(
        &message,
        &["line 3: every field is empty", "--fill-missing mean|median"],
    );
}

#[test]
fn csv_features_for_prediction() {
    let dir = temp_dir("csv-features");
    let path = write(&dir, "predict.csv", b"b,a,label\n1,2,x\n3,4,y\n");
    let message = data_error(data::load_features(&path, None));
    assert_mentions(&message, &["column \"label\"", "\"x\" is not a number"]);

    let numbers = write(&dir, "numbers.csv", b"b,a\n1,2\n3,4\n");
    let (x, names) = data::load_features(&numbers, None).expect("all columns");
    assert_eq!(names, ["b", "a"]);
    assert_eq!(x.row(1).to_vec(), [3.0, 4.0]);

    let expected = data::features::numeric_columns(["a", "b"]);
    let (x, names) = data::load_features(&path, Some(&expected)).expect("selected columns");
    assert_eq!(names, ["a", "b"]);
    assert_eq!(x.row(0).to_vec(), [2.0, 1.0]);

    let message = data_error(data::load_features(
        &path,
        Some(&data::features::numeric_columns(["a", "c", "d"])),
    ));
    assert_mentions(
        &message,
        &["missing columns \"c\", \"d\"", "\"b\", \"a\", \"label\""],
    );
}

// ---------------------------------------------------------------------------------------------
// Dataset, split, synthetic sets

/// 10 samples whose single feature is their index, labelled by parity.
fn indexed(n: usize) -> Dataset {
    Dataset {
        x: Array2::from_shape_fn((n, 1), |(i, _)| i as f32),
        y: Targets::Classes((0..n).map(|i| i % 2).collect()),
        features: data::features::numeric_columns(["i"]),
        class_names: Some(vec!["even".into(), "odd".into()]),
        target_names: vec!["parity".into()],
        target_offsets: Vec::new(),
    }
}

#[test]
fn select_keeps_rows_in_order_and_names() {
    let set = indexed(10);
    let picked = set.select(&[7, 2, 2]);
    assert_eq!(picked.x.column(0).to_vec(), [7.0, 2.0, 2.0]);
    assert_eq!(classes(&picked.y), &[1, 0, 0]);
    assert_eq!(picked.features, set.features);
    assert_eq!(picked.class_names, set.class_names);
    assert_eq!(picked.target_names, set.target_names);

    let (x, y) = data::regression_curve(5, 0.0, 1);
    let reg = Dataset {
        x,
        y: Targets::Values(y.clone()),
        features: data::features::numeric_columns(["x0"]),
        class_names: None,
        target_names: Vec::new(),
        target_offsets: Vec::new(),
    };
    assert_eq!(
        values(&reg.select(&[4, 0]).y).column(0).to_vec(),
        [y[[4, 0]], y[[0, 0]]]
    );
    assert!(!reg.is_empty());
}

#[test]
fn split_sizes_disjoint_and_seeded() {
    let set = indexed(100);
    let (train, validation) = set.split(0.2, 42).expect("splits");
    assert_eq!((train.len(), validation.len()), (80, 20));
    let mut all: Vec<usize> = train
        .x
        .iter()
        .chain(validation.x.iter())
        .map(|&v| v as usize)
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..100).collect::<Vec<_>>(), "disjoint and complete");
    for part in [&train, &validation] {
        for (x, &y) in part.x.iter().zip(classes(&part.y)) {
            assert_eq!(*x as usize % 2, y, "labels follow their rows");
        }
    }
    let ordered: Vec<f32> = validation.x.iter().copied().collect();
    assert_ne!(
        ordered,
        (0..20).map(|i| i as f32).collect::<Vec<_>>(),
        "shuffled"
    );
    assert_eq!(
        set.split(0.2, 42).unwrap(),
        (train.clone(), validation.clone())
    );
    assert_ne!(set.split(0.2, 43).unwrap().1, validation);

    for bad in [0.0, 1.0, -0.5, 1.5, f32::NAN] {
        let message = data_error(set.split(bad, 0));
        assert_mentions(&message, &["not in (0, 1)"]);
    }
    let message = data_error(indexed(3).split(0.1, 0));
    assert_mentions(&message, &["0 for validation"]);
    let message = data_error(indexed(3).split(0.9, 0));
    assert_mentions(&message, &["0 for training"]);
}

#[test]
fn synthetic_sets_have_advertised_shapes_and_are_seeded() {
    let expected: [(&str, usize, usize, Option<usize>); 5] = [
        ("xor", 4, 2, Some(2)),
        ("moons", 500, 2, Some(2)),
        ("spirals", 900, 2, Some(3)),
        ("blobs", 1000, 2, Some(4)),
        ("regression", 500, 1, None),
    ];
    assert_eq!(
        data::SYNTHETIC_NAMES,
        expected.map(|(name, ..)| name).as_slice()
    );
    for (name, n, features, n_classes) in expected {
        let set = data::synthetic(name, 7).unwrap_or_else(|| panic!("{name} is known"));
        assert_eq!(set.x.dim(), (n, features), "{name}");
        assert_eq!(set.y.len(), n, "{name}");
        assert_eq!(set.feature_names().len(), features, "{name}");
        assert_eq!(set.feature_names()[0], "x0");
        assert_eq!(set.n_classes(), n_classes, "{name}");
        if let Some(k) = n_classes {
            let names = set.class_names.as_ref().unwrap();
            assert_eq!(names, &(0..k).map(|c| c.to_string()).collect::<Vec<_>>());
            assert!(classes(&set.y).iter().all(|&c| c < k));
        }
        assert!(set.x.iter().all(|v| v.is_finite()));
        assert_eq!(
            data::synthetic(name, 7).unwrap(),
            set,
            "{name} is reproducible"
        );
        if name != "xor" {
            assert_ne!(
                data::synthetic(name, 8).unwrap(),
                set,
                "{name} depends on the seed"
            );
        }
    }
    assert!(data::synthetic("mnist", 0).is_none());
}

#[test]
fn moons_and_regression_curve_follow_their_formulas() {
    let (x, y) = data::moons(50, 0.0, 3);
    assert_eq!(x.dim(), (100, 2));
    assert_eq!(y.iter().filter(|&&c| c == 1).count(), 50);
    for (row, &class) in x.rows().into_iter().zip(&y) {
        let (cx, cy) = if class == 0 { (0.0, 0.0) } else { (1.0, 0.5) };
        let radius = ((row[0] - cx).powi(2) + (row[1] - cy).powi(2)).sqrt();
        assert!(
            (radius - 1.0).abs() < 1e-5,
            "noise-free moons lie on unit arcs"
        );
        assert!(if class == 0 {
            row[1] >= -1e-6
        } else {
            row[1] <= 0.5 + 1e-6
        });
    }
    let (noisy, _) = data::moons(50, 0.1, 3);
    assert_ne!(noisy, x);

    let (x, y) = data::regression_curve(2000, 0.1, 5);
    assert_eq!((x.dim(), y.dim()), ((2000, 1), (2000, 1)));
    assert!(x.iter().all(|v| (-3.0..=3.0).contains(v)));
    let residuals: Vec<f32> = x
        .iter()
        .zip(y.iter())
        .map(|(&x, &y)| y - (x.sin() + 0.1 * x * x))
        .collect();
    let mean = residuals.iter().sum::<f32>() / 2000.0;
    let std = (residuals.iter().map(|r| (r - mean).powi(2)).sum::<f32>() / 2000.0).sqrt();
    assert!(mean.abs() < 0.02, "noise mean {mean}");
    assert!((std - 0.1).abs() < 0.01, "noise std {std}");
}
