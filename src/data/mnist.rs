//! MNIST from its IDX files, gzipped or not.
//!
//! An IDX file is a big-endian `u32` magic number (`0x00 0x00`, a data-type byte, the number of
//! dimensions), one big-endian `u32` size per dimension, then the data in row-major order. MNIST
//! uses unsigned bytes (type `0x08`): labels are 1-dimensional (magic `0x00000801`), images
//! 3-dimensional (count, rows, columns; magic `0x00000803`).
//!
//! Every size in a header is checked against the bytes actually present before anything is
//! allocated for it, so a truncated, foreign or hostile file gives a [`WgradError::Data`] naming
//! the byte offset and what was expected, never a panic or an absurd allocation.

use super::{Dataset, TrainTest};
use crate::error::{Result, WgradError};
use crate::train::Targets;
use flate2::read::MultiGzDecoder;
use ndarray::Array2;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Number of MNIST classes: the digits 0 to 9.
pub const CLASSES: usize = 10;

/// The two bytes every gzip stream starts with; the format is detected by these, not by name.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// IDX data-type byte for unsigned bytes, the only type MNIST uses.
const TYPE_U8: u8 = 0x08;
/// Deflate expands its input at most about 1032 times, so a gzip file of `n` bytes cannot hold
/// more than `n * 1032` bytes: a header claiming more is rejected before decompressing.
const MAX_DEFLATE_RATIO: u64 = 1032;
/// Largest buffer reserved ahead of decompression; beyond it the buffer grows with the data.
const MAX_RESERVE: u64 = 64 << 20;

/// The images of an IDX image file, as stored: `count` images of `rows` × `cols` bytes each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    /// `count * rows * cols` pixels, image after image, each image row-major.
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// One row per image, each pixel divided by 255 into [0, 1].
    pub fn to_features(&self) -> Array2<f32> {
        let values = self.pixels.iter().map(|&p| p as f32 / 255.0).collect();
        Array2::from_shape_vec((self.count, self.rows * self.cols), values)
            .expect("pixels hold count * rows * cols bytes")
    }
}

/// Reads an IDX image file (magic `0x00000803`), gzipped or not.
pub fn read_images(path: &Path) -> Result<IdxImages> {
    parse_images(path, &read_file(path)?)
}

/// Parses the bytes of an IDX image file (magic `0x00000803`), gzipped or not; `source` names
/// the file in error messages.
pub fn parse_images(source: &Path, bytes: &[u8]) -> Result<IdxImages> {
    let (dims, pixels) = parse_idx(source, bytes, 3, "image")?;
    Ok(IdxImages {
        count: dims[0],
        rows: dims[1],
        cols: dims[2],
        pixels,
    })
}

/// Reads an IDX label file (magic `0x00000801`), gzipped or not; every label must be a digit
/// 0–9.
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    parse_labels(path, &read_file(path)?)
}

/// Parses the bytes of an IDX label file (magic `0x00000801`), gzipped or not; every label
/// must be a digit 0–9. `source` names the file in error messages.
pub fn parse_labels(source: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    let path = source;
    let (_, labels) = parse_idx(path, bytes, 1, "label")?;
    let header_len = header_len(1);
    if let Some((i, &label)) = labels
        .iter()
        .enumerate()
        .find(|(_, l)| usize::from(**l) >= CLASSES)
    {
        return Err(WgradError::data(
            path,
            format!(
                "label {label} at index {i} (byte offset {}) is not a digit 0-9",
                header_len + i
            ),
        ));
    }
    Ok(labels)
}

/// Loads one split from an image file and its label file: pixels in [0, 1], one feature per
/// pixel (`pixel0`, `pixel1`, ...), classes `"0"` to `"9"`.
pub fn load_pair(images: &Path, labels: &Path) -> Result<Dataset> {
    let idx_images = read_images(images)?;
    let idx_labels = read_labels(labels)?;
    if idx_labels.len() != idx_images.count {
        return Err(WgradError::data(
            labels,
            format!(
                "holds {} labels but {} holds {} images: every image needs exactly one label",
                idx_labels.len(),
                images.display(),
                idx_images.count
            ),
        ));
    }
    Ok(Dataset {
        x: idx_images.to_features(),
        y: Targets::Classes(idx_labels.into_iter().map(usize::from).collect()),
        features: super::features::numeric_columns(
            (0..idx_images.rows * idx_images.cols).map(|i| format!("pixel{i}")),
        ),
        class_names: Some((0..CLASSES).map(|c| c.to_string()).collect()),
        target_names: Vec::new(),
        target_offsets: Vec::new(),
    })
}

/// Loads the training and test sets from a directory holding the four standard files
/// (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
/// `t10k-labels-idx1-ubyte`), each optionally ending in `.gz`, with `.idx` in place of `-idx`
/// also accepted (`train-images.idx3-ubyte`).
pub fn load_dir(dir: &Path) -> Result<TrainTest> {
    if !dir.is_dir() {
        return Err(WgradError::data(
            dir,
            "is not a directory; expected one holding the four MNIST IDX files",
        ));
    }
    let train_images = find_file(dir, "train", "images", 3)?;
    let train_labels = find_file(dir, "train", "labels", 1)?;
    let test_images = find_file(dir, "t10k", "images", 3)?;
    let test_labels = find_file(dir, "t10k", "labels", 1)?;
    let train = load_pair(&train_images, &train_labels)?;
    let test = load_pair(&test_images, &test_labels)?;
    if test.x.ncols() != train.x.ncols() {
        return Err(WgradError::data(
            &test_images,
            format!(
                "images have {} pixels each but the training images in {} have {}",
                test.x.ncols(),
                train_images.display(),
                train.x.ncols()
            ),
        ));
    }
    Ok(TrainTest { train, test })
}

/// Loads the test set alone (`t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, as
/// [`load_dir`] finds them) from a directory, as evaluating a trained model needs.
pub fn load_test_dir(dir: &Path) -> Result<Dataset> {
    if !dir.is_dir() {
        return Err(WgradError::data(
            dir,
            "is not a directory; expected one holding the MNIST test IDX files",
        ));
    }
    load_pair(
        &find_file(dir, "t10k", "images", 3)?,
        &find_file(dir, "t10k", "labels", 1)?,
    )
}

/// The copy of MNIST shipped with the crate's sources, `data/mnist` beside `Cargo.toml`.
pub fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
}

/// Loads the shipped copy of MNIST: 60,000 training and 10,000 test images of 784 pixels.
pub fn load_shipped() -> Result<TrainTest> {
    let dir = shipped_dir();
    if !dir.is_dir() {
        return Err(WgradError::data(
            &dir,
            "the shipped MNIST directory is missing: it is part of the wgrad source tree \
             (data/mnist), not of builds installed without it; load a directory holding the \
             four IDX files with `data::mnist::load_dir` instead",
        ));
    }
    load_dir(&dir)
}

/// The first file in `dir` under one of the accepted names for `split` (`train`, `t10k`) and
/// `kind` (`images`, `labels`) with `dims` dimensions.
fn find_file(dir: &Path, split: &str, kind: &str, dims: u8) -> Result<PathBuf> {
    let names: Vec<String> = [
        format!("{split}-{kind}-idx{dims}-ubyte"),
        format!("{split}-{kind}.idx{dims}-ubyte"),
    ]
    .into_iter()
    .flat_map(|base| [format!("{base}.gz"), base])
    .collect();
    let paths: Vec<PathBuf> = names.iter().map(|name| dir.join(name)).collect();
    if let Some(path) = paths.iter().find(|path| path.is_file()) {
        return Ok(path.clone());
    }
    // A folder under a file's name (an archive unpacked into one) is named as such.
    if let Some(folder) = paths.iter().find(|path| path.is_dir()) {
        return Err(WgradError::data(
            folder,
            format!(
                "is a directory, not the MNIST {split} {kind} file: put the IDX file itself \
                 in {} under this name",
                dir.display()
            ),
        ));
    }
    Err(WgradError::data(
        dir,
        format!("no MNIST {split} {kind} file; tried {}", names.join(", ")),
    ))
}

/// Length in bytes of the header of an IDX file with `dims` dimensions.
fn header_len(dims: u8) -> usize {
    4 + 4 * usize::from(dims)
}

/// The whole contents of `path`.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| WgradError::io(path, e))
}

/// Parses the bytes `raw` of an IDX file of unsigned bytes with `expected_dims` dimensions,
/// read from `path`; returns the sizes of the dimensions and the data. `kind` ("image",
/// "label") goes into the error messages.
fn parse_idx(
    path: &Path,
    raw: &[u8],
    expected_dims: u8,
    kind: &str,
) -> Result<(Vec<usize>, Vec<u8>)> {
    let gzipped = raw.starts_with(&GZIP_MAGIC);
    let mut reader: Box<dyn Read + '_> = if gzipped {
        Box::new(MultiGzDecoder::new(raw))
    } else {
        Box::new(raw)
    };
    // In a gzipped file, offsets count decompressed bytes.
    let where_ = if gzipped { " (decompressed)" } else { "" };
    let corrupt = |e: io::Error, at: usize| {
        let message = match junk_after_gzip(raw) {
            Some(end) => {
                let n = raw.len() - end;
                format!(
                    "the gzip stream ends at byte {end} of the file, but {n} more byte{} \
                     that {} not gzip data follow{}; was something appended to the file?",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "is" } else { "are" },
                    if n == 1 { "s" } else { "" },
                )
            }
            None => format!("gzip data is corrupt after {at} decompressed bytes: {e}"),
        };
        WgradError::data(path, message)
    };
    let expected_magic = 0x0800 | u32::from(expected_dims);

    let mut magic = [0u8; 4];
    let got = read_up_to(&mut reader, &mut magic).map_err(|e| corrupt(e, 0))?;
    if got < magic.len() {
        return Err(WgradError::data(
            path,
            format!(
                "truncated: the file{where_} has {got} bytes, too few for the 4-byte IDX magic \
                 number (expected 0x{expected_magic:08x}, an IDX {kind} file)"
            ),
        ));
    }
    let found_magic = u32::from_be_bytes(magic);
    if magic[0] != 0 || magic[1] != 0 {
        return Err(WgradError::data(
            path,
            format!(
                "not an IDX file: bytes 0..4 hold 0x{found_magic:08x}, expected the magic number \
                 0x{expected_magic:08x} of an IDX {kind} file"
            ),
        ));
    }
    if magic[2] != TYPE_U8 {
        return Err(WgradError::data(
            path,
            format!(
                "byte 2: IDX data type 0x{:02x} is not supported, expected 0x{TYPE_U8:02x} \
                 (unsigned bytes; magic 0x{expected_magic:08x})",
                magic[2]
            ),
        ));
    }
    if magic[3] != expected_dims {
        let hint = match magic[3] {
            1 => " (this looks like an IDX label file)",
            3 => " (this looks like an IDX image file)",
            _ => "",
        };
        return Err(WgradError::data(
            path,
            format!(
                "byte 3: {} dimension{}{hint}, expected {expected_dims} for an IDX {kind} file \
                 (magic 0x{found_magic:08x}, expected 0x{expected_magic:08x})",
                magic[3],
                if magic[3] == 1 { "" } else { "s" }
            ),
        ));
    }

    let header_len = header_len(expected_dims);
    let mut size_bytes = vec![0u8; header_len - 4];
    let got = read_up_to(&mut reader, &mut size_bytes).map_err(|e| corrupt(e, 4))?;
    if got < size_bytes.len() {
        return Err(WgradError::data(
            path,
            format!(
                "truncated header: an IDX {kind} file has a {header_len}-byte header but the \
                 file{where_} ends at byte {}",
                4 + got
            ),
        ));
    }
    let mut dims = Vec::with_capacity(usize::from(expected_dims));
    for (d, chunk) in size_bytes.chunks_exact(4).enumerate() {
        let size = u32::from_be_bytes(chunk.try_into().expect("4-byte chunk"));
        if size == 0 {
            return Err(WgradError::data(
                path,
                format!(
                    "bytes {}..{}: dimension {d} has size 0; an IDX {kind} file needs at least \
                     one element in every dimension",
                    4 + 4 * d,
                    8 + 4 * d
                ),
            ));
        }
        dims.push(size as usize);
    }

    let claimed = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&n| usize::try_from(n).is_ok());
    // What the header claims, for the messages: "3 images of 28 x 28 pixels", "3 labels".
    let sizes = match dims.as_slice() {
        [count, rows, cols] => format!("{count} images of {rows} x {cols} pixels"),
        [count] => format!("{count} labels"),
        other => format!("{other:?} elements"),
    };
    let Some(claimed) = claimed else {
        return Err(WgradError::data(
            path,
            format!("header claims {sizes}, more bytes than this machine can address"),
        ));
    };
    if gzipped {
        let limit = raw.len() as u64 * MAX_DEFLATE_RATIO;
        if claimed > limit {
            return Err(WgradError::data(
                path,
                format!(
                    "header claims {sizes} = {claimed} bytes of data, more than the {}-byte \
                     gzip file can hold (at most {limit} bytes at deflate's best ratio): \
                     truncated or corrupt",
                    raw.len()
                ),
            ));
        }
    } else {
        let available = (raw.len() - header_len) as u64;
        if claimed > available {
            return Err(WgradError::data(
                path,
                format!(
                    "truncated: header claims {sizes} = {claimed} bytes of data after the \
                     {header_len}-byte header, but the file has only {available} (it ends at \
                     byte {})",
                    raw.len()
                ),
            ));
        }
    }

    let mut data = Vec::with_capacity(claimed.min(MAX_RESERVE) as usize);
    reader
        .by_ref()
        .take(claimed)
        .read_to_end(&mut data)
        .map_err(|e| corrupt(e, header_len + data.len()))?;
    if (data.len() as u64) < claimed {
        return Err(WgradError::data(
            path,
            format!(
                "truncated: header claims {sizes} = {claimed} bytes of data after the \
                 {header_len}-byte header, but the file{where_} ends after {} (at byte {})",
                data.len(),
                header_len + data.len()
            ),
        ));
    }
    let mut probe = [0u8; 1];
    let end = header_len + data.len();
    if read_up_to(&mut reader, &mut probe).map_err(|e| corrupt(e, end))? > 0 {
        let extra = match raw.len() - end {
            _ if gzipped => String::from("at least one more byte follows"),
            1 => String::from("1 byte follows"),
            n => format!("{n} bytes follow"),
        };
        return Err(WgradError::data(
            path,
            format!(
                "unexpected data at byte {end}{where_}: the header claims {sizes} = {claimed} \
                 bytes after the {header_len}-byte header, but {extra}"
            ),
        ));
    }
    Ok((dims, data))
}

/// Where the gzip members at the start of `raw` end, when bytes that are not gzip data follow
/// them (a gzip reader fails on those as on damaged data); `None` if the members run to the end
/// of `raw` or one is itself damaged.
fn junk_after_gzip(raw: &[u8]) -> Option<usize> {
    let mut rest = raw;
    while rest.starts_with(&GZIP_MAGIC) {
        let mut member = flate2::bufread::GzDecoder::new(rest);
        io::copy(&mut member, &mut io::sink()).ok()?;
        rest = member.into_inner();
    }
    (!rest.is_empty() && rest.len() < raw.len()).then_some(raw.len() - rest.len())
}

/// Fills `buf` from `reader` until it is full or the input ends; returns the bytes read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
