//! Comma-separated files with a header row: training and evaluation sets ([`load_csv`],
//! [`load_csv_with_classes`]) and prediction inputs ([`load_features`]).
//!
//! Fields are trimmed of surrounding spaces; quoted ones may hold separators and line breaks
//! (RFC 4180, as pandas writes text); blank lines are skipped, as are rows of empty fields in a
//! labelled file, and a last column without a name that holds nothing is dropped (Excel writes
//! both); a UTF-8 byte-order mark is ignored, and lines may end in LF, CRLF or CR alone. A
//! feature column holds finite numbers in every row, or words in every row (categories,
//! one-hot encoded: [`FeatureColumn`]); missing values are errors unless
//! [`CsvOptions::fill_missing`] fills them, and infinities are errors. Every error names the
//! file, the 1-based line, the column and the offending value, e.g. `line 17, column
//! "petal_width": "abc" is not a number`.

use super::Dataset;
use super::features::{FeatureColumn, MAX_CATEGORIES};
use crate::error::{Result, WgradError};
use crate::train::Targets;
use ::csv::{ReaderBuilder, StringRecord, Terminator};
use ndarray::Array2;
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// What marks a missing value: pandas' default `na_values` (so a file pandas wrote with
/// missing values reads as having them, not as a class "NA").
const MISSING_MARKERS: &[&str] = &[
    "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
    "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
];

/// Follows the input's text, quoted as a row of its own ([`Table::read`]): no file holds it.
const END: &str = "\0wgrad: end of input\0";

/// Under [`CsvTask::Auto`], an all-integer target column with at most this many distinct values
/// is read as class labels.
pub const AUTO_MAX_CLASSES: usize = 20;

/// How to read the target column of a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CsvTask {
    /// Decide from the values: any non-numeric value → classification; only integers (`1`,
    /// `01` or `1.0`), with at most [`AUTO_MAX_CLASSES`] distinct values → classification;
    /// otherwise regression.
    #[default]
    Auto,
    /// Labels (integers or strings) mapped to class indices.
    Classification,
    /// One finite number per row, as a [n, 1] [`Targets::Values`].
    Regression,
}

impl FromStr for CsvTask {
    type Err = String;

    /// Parses `auto`, `classification` or `regression` (any case), e.g. from a command line.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(CsvTask::Auto),
            "classification" => Ok(CsvTask::Classification),
            "regression" => Ok(CsvTask::Regression),
            _ => Err(format!(
                "unknown task {s:?}: expected auto, classification or regression"
            )),
        }
    }
}

impl fmt::Display for CsvTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CsvTask::Auto => "auto",
            CsvTask::Classification => "classification",
            CsvTask::Regression => "regression",
        })
    }
}

/// Loads a labelled data set: the `target` column (by name; default the last column) is the
/// target, every other column a feature. Several names joined by commas (`"x,y"`, where no
/// column has the whole name) are the targets of a regression with one output each. A column of numbers is one feature; a column of words
/// (no number in it) holds categories, which become one 0/1 feature each (one-hot, in sorted
/// order; [`FeatureColumn`]), up to [`MAX_CATEGORIES`] of them.
///
/// Classification labels may be integers or strings: the distinct labels, sorted (numerically
/// when all are integers, else as strings), become class indices 0, 1, ... and their text the
/// `class_names`. Regression targets give `class_names: None`; one far from zero for its
/// spread is held less its [`Dataset::target_offsets`].
///
/// This reads a training set: the encoding (categories, offsets, classes) comes from the file.
/// A test file, or new rows, must be read as the training set was: with
/// [`load_csv_for_model`] or [`load_features`] and the training set's `features`.
pub fn load_csv(path: impl AsRef<Path>, target: Option<&str>, task: CsvTask) -> Result<Dataset> {
    let options = CsvOptions {
        target: target.map(str::to_string),
        task,
        ..CsvOptions::default()
    };
    load_csv_with(path, &options)
}

/// How to read a labelled CSV file ([`load_csv_with`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CsvOptions {
    /// The target column's name; `None`: the last column. Several names joined by commas
    /// (where no column has the whole name) are a regression's targets, one output each.
    pub target: Option<String>,
    /// How to read the target.
    pub task: CsvTask,
    /// Columns to leave out (identifiers, free text, columns that would leak the target), as
    /// pandas' `drop(columns=…)`: each entry a column's name, or names joined by commas
    /// (`"id,name"`) where no column has the whole entry as its name.
    pub ignore: Vec<String>,
    /// Columns to read as categories whatever they hold, as pandas' `astype("category")`:
    /// integer codes (a region 1–4, a store number) are labels, not quantities. Named as
    /// [`CsvOptions::ignore`] names them.
    pub categorical: Vec<String>,
    /// How to fill missing feature values (empty cells and pandas' markers such as `NA`):
    /// `None` makes one an error. The statistic is of the file's rows (a validation part
    /// split from them later included), and models keep it to fill missing cells of the data
    /// they are given ([`FeatureColumn::fill`]). Missing targets stay errors.
    pub fill_missing: Option<Fill>,
}

/// What a missing value in a column of numbers becomes ([`CsvOptions::fill_missing`]); in a
/// column of categories it leaves the cell's inputs all 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// The mean of the column's values.
    Mean,
    /// The median of the column's values (robust to outliers).
    Median,
}

impl FromStr for Fill {
    type Err = String;

    /// Parses `mean` or `median` (any case).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "mean" => Ok(Fill::Mean),
            "median" => Ok(Fill::Median),
            _ => Err(format!("unknown fill {s:?}: expected mean or median")),
        }
    }
}

/// [`load_csv`] with all of [`CsvOptions`]: a target and task, columns to leave out, and
/// missing values filled.
pub fn load_csv_with(path: impl AsRef<Path>, options: &CsvOptions) -> Result<Dataset> {
    let path = path.as_ref();
    labelled(Table::read(path, open(path)?, true)?, options)
}

/// [`load_csv`] on CSV text from `reader`; `source` names it in error messages.
pub fn load_csv_from_reader(
    source: &Path,
    reader: impl Read,
    target: Option<&str>,
    task: CsvTask,
) -> Result<Dataset> {
    let options = CsvOptions {
        target: target.map(str::to_string),
        task,
        ..CsvOptions::default()
    };
    labelled(Table::read(source, reader, true)?, &options)
}

/// [`load_csv_with`] on a table read.
fn labelled(table: Table, options: &CsvOptions) -> Result<Dataset> {
    let source = table.path.as_path();
    let target_cols = table.target_columns(options.target.as_deref())?;
    let mut features =
        table.features_except(&target_cols, &options.ignore, &options.categorical)?;
    if let Some(fill) = options.fill_missing {
        for (col, column) in &mut features {
            column.fill = Some(match column.categories {
                Some(_) => 0.0,
                None => table.fill_value(*col, fill)?,
            });
        }
    }
    let (features, x) = table.encode_new(features)?;
    let target_col = match target_cols.as_slice() {
        [only] => *only,
        // Several targets: values to predict, one output each.
        _ if options.task == CsvTask::Classification => {
            return Err(WgradError::data(
                source,
                format!(
                    "classification takes one target column, and {} are named; several \
                     targets are a regression with one output each",
                    list(
                        &target_cols
                            .iter()
                            .map(|&c| &table.headers[c])
                            .collect::<Vec<_>>()
                    )
                ),
            ));
        }
        _ => {
            let (values, offsets) = table.regression_targets(&target_cols)?;
            return Ok(Dataset {
                x,
                y: Targets::Values(values),
                features,
                class_names: None,
                target_names: target_cols
                    .iter()
                    .map(|&c| table.headers[c].clone())
                    .collect(),
                target_offsets: offsets,
            });
        }
    };
    let task = match options.task {
        CsvTask::Auto => table.infer_task(target_col),
        explicit => explicit,
    };
    let mut target_offsets = Vec::new();
    let (y, class_names) = match task {
        CsvTask::Regression => {
            let (values, offsets) = table.regression_targets(&target_cols)?;
            target_offsets = offsets;
            (Targets::Values(values), None)
        }
        _ => {
            let (labels, names) = table.class_labels(target_col)?;
            let numbers = table
                .rows
                .iter()
                .all(|r| r[target_col].parse::<f64>().is_ok());
            if numbers
                && names.len() > AUTO_MAX_CLASSES
                && names.iter().any(|name| integer_label(name).is_none())
            {
                return Err(WgradError::data(
                    source,
                    format!(
                        "the target column {} holds {} distinct numbers, not all integers, to \
                         classify: numbers to predict are a regression target (`--task \
                         regression`, CsvTask::Regression)",
                        quoted(&table.headers[target_col]),
                        names.len()
                    ),
                ));
            }
            if names.len() < 2 {
                return Err(WgradError::data(
                    source,
                    format!(
                        "the target column {} holds one class only ({}); a classifier \
                         needs at least two (numbers to predict are a regression target: \
                         CsvTask::Regression, `--task regression`)",
                        quoted(&table.headers[target_col]),
                        quoted(&names[0])
                    ),
                ));
            }
            (Targets::Classes(labels), Some(names))
        }
    };
    Ok(Dataset {
        x,
        y,
        features,
        class_names,
        target_names: vec![table.headers[target_col].clone()],
        target_offsets,
    })
}

/// Loads a labelled classification set whose labels must come from `class_names` (class `i`
/// is `class_names[i]`), every other column a plain number (no categories or offsets): for a
/// model that knows its classes but not its feature columns. A model that knows them (a
/// [`Dataset::features`] of its training set, or a saved model's) needs
/// [`load_csv_for_model`], which encodes a new file as the training set was. A label matches
/// a class name by its text, or by its integer value when both are integers (`"01"` is `"1"`);
/// an unknown label is an error naming its line and value.
pub fn load_csv_with_classes(
    path: impl AsRef<Path>,
    target: Option<&str>,
    class_names: &[String],
) -> Result<Dataset> {
    let path = path.as_ref();
    load_csv_with_classes_from_reader(path, open(path)?, target, class_names)
}

/// [`load_csv_with_classes`] on CSV text from `reader`; `source` names it in error messages.
pub fn load_csv_with_classes_from_reader(
    source: &Path,
    reader: impl Read,
    target: Option<&str>,
    class_names: &[String],
) -> Result<Dataset> {
    let table = Table::read(source, reader, true)?;
    let target_col = table.target_column(target)?;
    let columns: Vec<(usize, FeatureColumn)> = (0..table.headers.len())
        .filter(|&col| col != target_col)
        .map(|col| (col, FeatureColumn::numeric(&table.headers[col])))
        .collect();
    let x = table.encode(&columns)?;
    let features = columns.into_iter().map(|(_, column)| column).collect();
    Ok(Dataset {
        x,
        y: Targets::Classes(table.labels_among(target_col, class_names)?),
        features,
        class_names: Some(class_names.to_vec()),
        target_names: vec![table.headers[target_col].clone()],
        target_offsets: Vec::new(),
    })
}

/// Loads a labelled file to evaluate a trained model on: the feature columns it was trained
/// on, by name and in its order, encoded as in training (other columns are ignored; a missing
/// one, or a category the model does not know, is an error), and the target columns, as
/// labels from `class_names` for a classifier ([`load_csv_with_classes`]) or as values less
/// the model's `target_offsets` (one per target, or none) for a regression model
/// (`class_names` `None`). The targets are the columns `targets` names (a regression's
/// several, or one; an entry may join names with commas, as [`CsvOptions::target`]), or
/// without names the one column that is not a feature (a file with
/// several such columns is an error that lists them).
pub fn load_csv_for_model(
    path: impl AsRef<Path>,
    targets: &[String],
    features: &[FeatureColumn],
    class_names: Option<&[String]>,
    target_offsets: &[Option<f64>],
) -> Result<Dataset> {
    let path = path.as_ref();
    let table = Table::read(path, open(path)?, true)?;
    let feature_cols = table.columns_of(features)?;
    let is_feature = |col: usize| feature_cols.iter().any(|(c, _)| *c == col);
    let target_cols = match targets {
        [] => {
            let others: Vec<usize> = (0..table.headers.len())
                .filter(|&c| !is_feature(c))
                .collect();
            match others.as_slice() {
                [only] => vec![*only],
                [] => {
                    return Err(WgradError::data(
                        path,
                        "has only the model's feature columns: a target column is needed too",
                    ));
                }
                _ => {
                    let names: Vec<String> =
                        others.iter().map(|&c| table.headers[c].clone()).collect();
                    return Err(WgradError::data(
                        path,
                        format!(
                            "the model does not name its target column, and the file has {} \
                             columns besides the model's features ({}): name the target",
                            names.len(),
                            list(&names)
                        ),
                    ));
                }
            }
        }
        names => {
            let mut cols = Vec::new();
            for name in names {
                cols.extend(table.target_columns(Some(name))?);
            }
            if let Some(&col) = cols.iter().find(|&&col| is_feature(col)) {
                return Err(WgradError::data(
                    path,
                    format!(
                        "the target {} is one of the model's feature columns",
                        quoted(&table.headers[col])
                    ),
                ));
            }
            cols
        }
    };
    let x = table.encode(&feature_cols)?;
    let y = match (class_names, target_cols.as_slice()) {
        (Some(classes), [col]) => Targets::Classes(table.labels_among(*col, classes)?),
        (Some(_), _) => {
            return Err(WgradError::data(
                path,
                "a classifier has one target column; several are a regression's",
            ));
        }
        (None, cols) => Targets::Values(table.values_less(cols, target_offsets)?),
    };
    Ok(Dataset {
        target_offsets: match class_names {
            None => target_offsets.to_vec(),
            Some(_) => Vec::new(),
        },
        x,
        y,
        features: features.to_vec(),
        class_names: class_names.map(<[String]>::to_vec),
        target_names: target_cols
            .iter()
            .map(|&c| table.headers[c].clone())
            .collect(),
    })
}

/// Loads prediction inputs: if `expected_columns` is given (a training set's
/// [`Dataset::features`], or a saved model's), those columns by name in that order, encoded
/// as the training set was (other columns, such as a target, are ignored; a missing one, or
/// an unknown category, is an error); with `None`, every column as a plain number (no
/// categories, offsets or fills). Returns the inputs and a name per input.
pub fn load_features(
    path: impl AsRef<Path>,
    expected_columns: Option<&[FeatureColumn]>,
) -> Result<(Array2<f32>, Vec<String>)> {
    let path = path.as_ref();
    load_features_from_reader(path, open(path)?, expected_columns)
}

/// [`load_features`] on CSV text from `reader`; `source` names it in error messages.
pub fn load_features_from_reader(
    source: &Path,
    reader: impl Read,
    expected_columns: Option<&[FeatureColumn]>,
) -> Result<(Array2<f32>, Vec<String>)> {
    let table = Table::read(source, reader, false)?;
    let columns: Vec<(usize, FeatureColumn)> = match expected_columns {
        None => (0..table.headers.len())
            .map(|c| (c, FeatureColumn::numeric(&table.headers[c])))
            .collect(),
        Some(expected) => table.columns_of(expected)?,
    };
    let x = table.encode(&columns)?;
    let names = columns
        .iter()
        .flat_map(|(_, column)| column.input_names())
        .collect();
    Ok((x, names))
}

/// What a column of numbers is for, as error messages say what to do about a bad one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Feature,
    Target,
}

/// A CSV file read into memory: header names and the rows, each as long as the header.
struct Table {
    path: PathBuf,
    headers: Vec<String>,
    rows: Vec<StringRecord>,
}

impl Table {
    /// Reads CSV text from `input` (read from `path`) and checks the shape: a header naming
    /// every column uniquely, then at least one row, every row as wide as the header. The
    /// fields are separated by commas, or by the separator the header uses instead
    /// ([`separator`]). Quoted fields may hold line breaks (RFC 4180); a quote never closed
    /// is an error naming the line it opens on. A last column without a name (a trailing
    /// separator on every line, as Excel writes) is dropped if empty in every row. Rows whose
    /// every field is empty (as Excel leaves below a sheet's data) are skipped with
    /// `skip_empty_rows`, for a labelled file (they hold no target, so no sample); prediction
    /// inputs keep them, as predictions go one per row: filled where the model fills missing
    /// values, else an error saying the line is empty.
    fn read<'r>(path: &Path, input: impl Read + 'r, skip_empty_rows: bool) -> Result<Table> {
        // Gzipped text (`iris.csv.gz`, known by its first bytes) is read uncompressed, as
        // pandas' `read_csv` does.
        let mut raw = BufReader::new(input);
        let gzipped = raw
            .fill_buf()
            .map_err(|e| WgradError::io(path, e))?
            .starts_with(&[0x1f, 0x8b]);
        let input: Box<dyn Read + 'r> = if gzipped {
            Box::new(flate2::bufread::MultiGzDecoder::new(raw))
        } else {
            Box::new(raw)
        };
        let mut input = BufReader::with_capacity(1 << 16, input);
        let damaged = |io: std::io::Error| {
            if gzipped {
                let why = format!("the gzip-compressed data is damaged or cut short ({io})");
                WgradError::data(path, why)
            } else {
                WgradError::io(path, io)
            }
        };
        let head = input.fill_buf().map_err(damaged)?;
        let separator = separator(head);
        // Lines that end in CR alone (classic Mac OS, Excel's "CSV (Macintosh)") are read as
        // if they ended in LF.
        let input: Box<dyn Read + 'r> = if head.contains(&b'\r') && !head.contains(&b'\n') {
            Box::new(CrAsLf(input))
        } else {
            Box::new(input)
        };
        // A quote left open is told by the input's end: [`END`] follows the text as a row of
        // its own, which a field still open at the end takes in instead ([`unclosed`]).
        let input = input
            .chain(&b"\n\""[..])
            .chain(END.as_bytes())
            .chain(&b"\"\n"[..]);
        // Records end at '\n' (a CRLF line's '\r' is trimmed with the last field): with the
        // reader's CRLF terminator, lines after the first of a CRLF file were counted one short.
        // Fields are trimmed here, once the line breaks in them are counted.
        let mut reader = ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .terminator(Terminator::Any(b'\n'))
            .delimiter(separator)
            .from_reader(input);
        let csv_error = |e: ::csv::Error| {
            if let ::csv::ErrorKind::Utf8 { pos, .. } = e.kind() {
                let line = pos.as_ref().map_or(1, |p| p.line());
                return WgradError::data(
                    path,
                    format!(
                        "line {line} is not UTF-8 text: a CSV file (saved as UTF-8) was expected"
                    ),
                );
            }
            if e.is_io_error() {
                match e.into_kind() {
                    ::csv::ErrorKind::Io(io) => damaged(io),
                    other => WgradError::data(path, format!("{other:?}")),
                }
            } else {
                WgradError::data(path, e.to_string())
            }
        };
        // The line a record starts on: the line the reader has reached, less the record's own
        // (the reader's position of a record is that of the blank lines before it, if any).
        let mut header = StringRecord::new();
        reader.read_record(&mut header).map_err(csv_error)?;
        let header_line = reader.position().line() - 1 - line_breaks(header.as_slice());
        if header.len() == 1 && &header[0] == END {
            return Err(WgradError::data(
                path,
                "the file is empty: expected a header row naming the columns, then data rows",
            ));
        }
        if let Some(name) = unclosed(&header[header.len() - 1]) {
            return Err(WgradError::data(
                path,
                format!(
                    "line {header_line}: the quote opening column name {} is never closed, so \
                     the name runs over {} lines, to the end of the file; is its closing quote \
                     missing?",
                    quoted(name.lines().next().unwrap_or_default()),
                    name.trim_end().lines().count()
                ),
            ));
        }
        header.trim();
        let mut headers: Vec<String> = header.iter().map(str::to_string).collect();
        if headers.is_empty() || headers == [""] {
            return Err(WgradError::data(
                path,
                "the file is empty: expected a header row naming the columns, then data rows",
            ));
        }
        if let Some(name) = headers.iter().find(|h| h.contains(['\n', '\r'])) {
            return Err(WgradError::data(
                path,
                format!(
                    "line {header_line}: the quoted column name {} runs over {} lines; a column \
                     name must be one line",
                    quoted(name.lines().next().unwrap_or_default()),
                    name.lines().count()
                ),
            ));
        }
        // Excel ends every line of some sheets with a separator: a last column without a name,
        // dropped where every row leaves it empty (checked row by row below).
        let width = headers.len();
        let named = headers
            .iter()
            .rposition(|h| !h.is_empty())
            .map_or(width, |last| last + 1);
        if let Some(i) = headers[..named].iter().position(|h| h.is_empty()) {
            // pandas' `to_csv()` writes the index as a first column without a name.
            let index = if i == 0 && named > 1 {
                "; a pandas index? write the file with `to_csv(…, index=False)`"
            } else {
                ""
            };
            return Err(WgradError::data(
                path,
                format!(
                    "line {header_line}: column {} of the header has no name; every column \
                     needs one{index}",
                    i + 1
                ),
            ));
        }
        headers.truncate(named);
        // A file without a header (pandas' `header=None`): its first row of data would name
        // the columns and be lost as data. All numbers, or all but one (a label) with
        // fractional ones among them, are a row of data; whole numbers alone may be names
        // (years).
        let numbers: Vec<&String> = headers
            .iter()
            .filter(|h| h.parse::<f64>().is_ok())
            .collect();
        let fractional = numbers.iter().any(|h| h.contains(['.', 'e', 'E']));
        if numbers.len() == headers.len()
            || (numbers.len() + 1 == headers.len() && numbers.len() > 1 && fractional)
        {
            return Err(WgradError::data(
                path,
                format!(
                    "line {header_line} holds numbers ({}), which look like data rather than \
                     column names: a header row naming the columns is required",
                    list(&headers)
                ),
            ));
        }
        let mut seen = HashSet::new();
        if let Some(dup) = headers.iter().find(|h| !seen.insert(h.as_str())) {
            return Err(WgradError::data(
                path,
                format!(
                    "line {header_line}: column name {} appears more than once in the header",
                    quoted(dup)
                ),
            ));
        }
        let mut rows = Vec::new();
        loop {
            let mut record = StringRecord::new();
            if !reader.read_record(&mut record).map_err(csv_error)? {
                break;
            }
            if record.len() == 1 && &record[0] == END {
                break;
            }
            let breaks = line_breaks(record.as_slice());
            let line = reader.position().line() - 1 - breaks;
            let last = &record[record.len() - 1];
            if breaks > 0
                && let Some(text) = unclosed(last)
            {
                // It ran to the end, so it is the record's last field; it opened on the line
                // of the fields before it.
                return Err(WgradError::data(
                    path,
                    format!(
                        "line {}: the quote opening a field here is never closed, so the field \
                         runs over {} lines, to the end of the file; is its closing quote \
                         missing?",
                        line + breaks - line_breaks(last),
                        text.trim_end().lines().count()
                    ),
                ));
            }
            record.trim();
            // A blank line of a CRLF file (its '\r' alone, trimmed), and rows of empty fields.
            if record.as_slice().is_empty() && (record.len() == 1 || skip_empty_rows) {
                continue;
            }
            if record.len() != width {
                let comment = if headers[0].starts_with('#') {
                    "; line 1 looks like a comment, which CSV files cannot hold: remove it"
                } else {
                    ""
                };
                let lines = if breaks > 0 {
                    format!(
                        "; the row runs over lines {line}–{}, as a quoted field in it holds line \
                         breaks: is a quote misplaced?",
                        line + breaks
                    )
                } else {
                    String::new()
                };
                return Err(WgradError::data(
                    path,
                    format!(
                        "line {line}: {} field{}, but the header has {} column{} (fields \
                         separated by {}){comment}{lines}",
                        record.len(),
                        if record.len() == 1 { "" } else { "s" },
                        width,
                        if width == 1 { "" } else { "s" },
                        separator_name(separator)
                    ),
                ));
            }
            if let Some(col) = (named..width).find(|&col| !record[col].is_empty()) {
                return Err(WgradError::data(
                    path,
                    format!(
                        "line {line}: column {} holds {} but has no name in the header (line \
                         {header_line}); every column with values needs a name",
                        col + 1,
                        quoted(&record[col])
                    ),
                ));
            }
            let mut position = ::csv::Position::new();
            position.set_line(line);
            record.set_position(Some(position));
            rows.push(record);
        }
        if rows.is_empty() {
            return Err(WgradError::data(
                path,
                "the file has a header but no data rows",
            ));
        }
        Ok(Table {
            path: path.to_path_buf(),
            headers,
            rows,
        })
    }

    /// The column called `name`, if any (its spaces around trimmed, as the header's are).
    fn find(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name.trim())
    }

    /// The columns of `features`, found by name, in that order, each with its feature; an
    /// error lists the missing ones.
    fn columns_of(&self, features: &[FeatureColumn]) -> Result<Vec<(usize, FeatureColumn)>> {
        let names: Vec<&String> = features.iter().map(|f| &f.name).collect();
        let columns = self.columns_named(&names)?;
        Ok(columns.into_iter().zip(features.iter().cloned()).collect())
    }

    /// The columns called `names`, in that order; an error lists the missing ones.
    fn columns_named<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<usize>> {
        let missing: Vec<&str> = names
            .iter()
            .map(AsRef::as_ref)
            .filter(|n| self.find(n).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(WgradError::data(
                &self.path,
                format!(
                    "missing column{} {}; the file has {}",
                    if missing.len() == 1 { "" } else { "s" },
                    list(&missing),
                    list(&self.headers)
                ),
            ));
        }
        Ok(names
            .iter()
            .filter_map(|name| self.find(name.as_ref()))
            .collect())
    }

    /// The class index of each row's label in column `col`, among `class_names`: a label
    /// matches a name by its text, or by its integer value when both are integers; an
    /// unknown label is an error naming its line and value.
    fn labels_among(&self, col: usize, class_names: &[String]) -> Result<Vec<usize>> {
        (0..self.rows.len())
            .map(|row| {
                let label = self.label(row, col)?;
                class_names
                    .iter()
                    .position(|name| name == label)
                    .or_else(|| {
                        let value = integer_label(label)?;
                        class_names
                            .iter()
                            .position(|name| integer_label(name) == Some(value))
                    })
                    .ok_or_else(|| {
                        self.cell_error(
                            row,
                            col,
                            format!(
                                "unknown class {}; the known classes are {} (a model \
                                 predicts only those: leave rows of other classes out)",
                                quoted(label),
                                list(class_names)
                            ),
                        )
                    })
            })
            .collect()
    }

    /// The target columns: the column `entry` names, or if none has the whole name, the
    /// several its commas separate (a regression's); the last column without a name.
    fn target_columns(&self, entry: Option<&str>) -> Result<Vec<usize>> {
        let Some(entry) = entry.filter(|entry| self.find(entry).is_none() && entry.contains(','))
        else {
            return Ok(vec![self.target_column(entry)?]);
        };
        let mut cols = Vec::new();
        for name in entry.split(',').filter(|n| !n.trim().is_empty()) {
            let col = self.target_column(Some(name))?;
            if cols.contains(&col) {
                return Err(WgradError::data(
                    &self.path,
                    format!("the target column {} is named twice", quoted(name)),
                ));
            }
            cols.push(col);
        }
        match cols.is_empty() {
            true => Ok(vec![self.target_column(Some(entry))?]),
            false => Ok(cols),
        }
    }

    /// Regression targets, [rows, columns]: each column's numbers, less an offset where they
    /// lie far from zero for their spread (so they keep their differences as features do).
    fn regression_targets(&self, cols: &[usize]) -> Result<(Array2<f32>, Vec<Option<f64>>)> {
        let mut offsets = Vec::with_capacity(cols.len());
        for &col in cols {
            let values = self.column_values(col, None)?;
            let stats = super::features::column_stats(values.view());
            offsets.push(self.offset_of(col, &stats[0]));
        }
        let values = self.values_less(cols, &offsets)?;
        let offsets = match offsets.iter().any(Option::is_some) {
            true => offsets,
            false => Vec::new(),
        };
        Ok((values, offsets))
    }

    /// Columns `cols` as numbers, [rows, columns], less `offsets` (one per column, or none).
    fn values_less(&self, cols: &[usize], offsets: &[Option<f64>]) -> Result<Array2<f32>> {
        let mut values = Array2::zeros((self.rows.len(), cols.len()));
        for (j, &col) in cols.iter().enumerate() {
            let column = self.column_values(col, offsets.get(j).copied().flatten())?;
            values.column_mut(j).assign(&column.column(0));
        }
        Ok(values)
    }

    /// The target column: `name` if given (an error lists the columns when it is missing),
    /// else the last column.
    fn target_column(&self, name: Option<&str>) -> Result<usize> {
        match name {
            None => Ok(self.headers.len() - 1),
            Some(name) => self.find(name).ok_or_else(|| {
                WgradError::data(
                    &self.path,
                    format!(
                        "no target column {}; the columns are {}",
                        quoted(name),
                        list(&self.headers)
                    ),
                )
            }),
        }
    }

    /// Every column but `target` and those named in `ignore`, as feature columns: a column
    /// of words (no number in it), or one named in `categorical`, holds categories, any other
    /// numbers.
    fn features_except(
        &self,
        targets: &[usize],
        ignore: &[String],
        categorical: &[String],
    ) -> Result<Vec<(usize, FeatureColumn)>> {
        let ignored = self.columns_listed(ignore, "to ignore")?;
        let categorical = self.columns_listed(categorical, "to read as categories")?;
        // A column named for two roles that exclude each other.
        let conflicts = [
            (
                targets,
                &categorical[..],
                "is the target, not a feature to read as categories (a target of labels is \
                 read as classes: `--task classification`)",
            ),
            (
                &categorical[..],
                &ignored[..],
                "is both ignored and to be read as categories",
            ),
            (
                targets,
                &ignored[..],
                "is the target; it cannot be ignored too",
            ),
        ];
        for (named, also_named, what) in conflicts {
            if let Some(&col) = named.iter().find(|col| also_named.contains(col)) {
                return Err(WgradError::data(
                    &self.path,
                    format!("the column {} {what}", quoted(&self.headers[col])),
                ));
            }
        }
        let columns: Vec<usize> = (0..self.headers.len())
            .filter(|c| !targets.contains(c) && !ignored.contains(c))
            .collect();
        if columns.is_empty() {
            let target = list(
                &targets
                    .iter()
                    .map(|&c| &self.headers[c])
                    .collect::<Vec<_>>(),
            );
            return Err(WgradError::data(
                &self.path,
                match ignored.is_empty() {
                    true => format!("no feature columns: the only column is the target {target}"),
                    false => format!(
                        "no feature columns: besides the target {target}, every column is \
                         ignored ({})",
                        list(ignore)
                    ),
                },
            ));
        }
        columns
            .into_iter()
            .map(|col| Ok((col, self.feature_column(col, categorical.contains(&col))?)))
            .collect()
    }

    /// The columns `entries` name, each entry a column's name or, if no column has it, names
    /// joined by commas; a name no column has is an error saying what it was `for_what`.
    fn columns_listed(&self, entries: &[String], for_what: &str) -> Result<Vec<usize>> {
        let mut columns = Vec::new();
        for entry in entries {
            let names: Vec<&str> = match self.find(entry) {
                Some(_) => vec![entry.as_str()],
                None => entry.split(',').filter(|n| !n.trim().is_empty()).collect(),
            };
            for name in names {
                let col = self.find(name).ok_or_else(|| {
                    let similar = self
                        .headers
                        .iter()
                        .find(|h| h.eq_ignore_ascii_case(name.trim()))
                        .map_or(String::new(), |h| {
                            format!(" (names are exact: {}?)", quoted(h))
                        });
                    WgradError::data(
                        &self.path,
                        format!(
                            "no column {} {for_what}{similar}; the columns are {}",
                            quoted(name),
                            list(&self.headers)
                        ),
                    )
                })?;
                columns.push(col);
            }
        }
        Ok(columns)
    }

    /// Column `col` as a feature: categories when it holds words (a few, repeated) or is
    /// `categorical`, else numbers.
    fn feature_column(&self, col: usize, categorical: bool) -> Result<FeatureColumn> {
        let name = &self.headers[col];
        // A column of numbers (or of more words than numbers: then its first word fails,
        // and the error names its numbers instead, in `number`).
        let words = match categorical {
            true => self.distinct_values(col),
            false => self.words(col),
        };
        let Some(words) = words else {
            return Ok(FeatureColumn::numeric(name));
        };
        // Whole, as a command to copy: the one name not [`quoted`].
        let argument = if name.contains([' ', ',', '"', '\'']) {
            format!("{name:?}")
        } else {
            name.clone()
        };
        let leave_out = match categorical {
            // Asked for as categories: numbers, most likely, to read as such.
            true => format!(
                "to read it as numbers, leave it out of `--categorical` (`CsvOptions::categorical` \
                 in the library), or leave the column out (`--ignore {argument}`)"
            ),
            false => format!(
                "leave it out (`--ignore {argument}` on the command line, `CsvOptions::ignore` \
                 in the library)"
            ),
        };
        if words.len() == self.rows.len() && self.rows.len() >= 20 {
            return Err(WgradError::data(
                &self.path,
                format!(
                    "every row of column {} holds a different {} ({} rows): {}not categories \
                     a model could learn from; {leave_out}",
                    quoted(name),
                    if categorical { "value" } else { "word" },
                    self.rows.len(),
                    if categorical {
                        ""
                    } else {
                        "names or identifiers, "
                    }
                ),
            ));
        }
        if words.len() > MAX_CATEGORIES {
            return Err(WgradError::data(
                &self.path,
                format!(
                    "column {} holds {} different {}, too many to be categories (at most \
                     {MAX_CATEGORIES}); {}{leave_out}",
                    quoted(name),
                    words.len(),
                    if categorical { "values" } else { "words" },
                    if categorical {
                        ""
                    } else {
                        "if they are names or identifiers, "
                    }
                ),
            ));
        }
        let mut categories: Vec<String> = words.into_iter().map(str::to_string).collect();
        // Codes in their numbers' order (2 before 10), as pandas sorts them.
        if let Some(codes) = categories
            .iter()
            .map(|c| c.parse::<f64>().ok())
            .collect::<Option<Vec<f64>>>()
        {
            let mut order: Vec<usize> = (0..categories.len()).collect();
            order.sort_by(|&a, &b| codes[a].total_cmp(&codes[b]));
            // One category per code, however written (1, 1.0, 01), as new data is matched.
            order.dedup_by(|a, b| codes[*a] == codes[*b]);
            categories = order.into_iter().map(|i| categories[i].clone()).collect();
        }
        Ok(FeatureColumn::categorical(name, categories))
    }

    /// The features of the given columns, [rows, inputs]: a number per numeric column, a 0/1
    /// per category of a column of categories.
    fn encode(&self, columns: &[(usize, FeatureColumn)]) -> Result<Array2<f32>> {
        let width = columns.iter().map(|(_, column)| column.width()).sum();
        let mut x = Array2::zeros((self.rows.len(), width));
        for (row, mut out) in x.rows_mut().into_iter().enumerate() {
            let mut j = 0;
            for (col, column) in columns {
                let width = column.width();
                match (&column.categories, column.fill) {
                    (None, Some(fill)) if missing(&self.rows[row][*col]) => {
                        out[j] = (fill - column.offset.unwrap_or(0.0)) as f32;
                    }
                    (Some(_), Some(fill)) if missing(&self.rows[row][*col]) => {
                        out.slice_mut(ndarray::s![j..j + width]).fill(fill as f32);
                    }
                    (None, _) => out[j] = self.number(row, *col, Role::Feature, column.offset)?,
                    (Some(categories), _) => {
                        if let Some(i) =
                            self.category(row, *col, categories, column.ignore_unknown)?
                        {
                            out[j + i] = 1.0;
                        }
                    }
                }
                j += width;
            }
        }
        Ok(x)
    }

    /// The features of columns read for the first time (a training set): [`Table::encode`],
    /// once each column of numbers that needs one has its offset
    /// ([`features::offset_for`](super::features::offset_for)).
    fn encode_new(
        &self,
        mut columns: Vec<(usize, FeatureColumn)>,
    ) -> Result<(Vec<FeatureColumn>, Array2<f32>)> {
        let mut x = self.encode(&columns)?;
        let stats = super::features::column_stats(x.view());
        let mut j = 0;
        let mut offsets = false;
        for (col, column) in &mut columns {
            if column.categories.is_none() {
                column.offset = self.offset_of(*col, &stats[j]);
                offsets |= column.offset.is_some();
            }
            j += column.width();
        }
        if offsets {
            x = self.encode(&columns)?;
        }
        Ok((columns.into_iter().map(|(_, column)| column).collect(), x))
    }

    /// The offset column `col` of numbers needs ([`features::offset_for`](super::features::offset_for)),
    /// judged from its values as 32-bit floats, or as written where those are all one value
    /// (100000.0001 to 100000.0030 are one 32-bit float).
    fn offset_of(&self, col: usize, stats: &super::features::ColumnStats) -> Option<f64> {
        use super::features::{offset_for, offset_from};
        offset_from(stats).or_else(|| {
            if stats.variance != 0.0 {
                return None;
            }
            // One 32-bit value: a constant column, unless the cells differ as written.
            let mut written = self
                .rows
                .iter()
                .map(|row| &row[col])
                .filter(|v| !missing(v));
            let first = written.next()?;
            if written.all(|v| v == first) {
                return None;
            }
            let cells = self.rows.iter().map(move |row| &row[col]);
            offset_for(
                cells
                    .filter(|v| !missing(v))
                    .filter_map(|v| v.parse::<f64>().ok()),
            )
        })
    }

    /// The value a missing cell of column `col` (of numbers) is filled with: the mean or
    /// median of its values.
    fn fill_value(&self, col: usize, fill: Fill) -> Result<f64> {
        let mut values: Vec<f64> = self
            .rows
            .iter()
            .filter(|row| !missing(&row[col]))
            .filter_map(|row| row[col].parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .collect();
        if values.is_empty() {
            // Cells that are not numbers say so as they would unfilled (a decimal comma).
            if let Some(row) = (0..self.rows.len()).find(|&row| !missing(&self.rows[row][col])) {
                self.number(row, col, Role::Feature, None)?;
            }
            return Err(WgradError::data(
                &self.path,
                format!(
                    "column {} has no values to fill its missing ones from (every cell is \
                     missing: --ignore it)",
                    quoted(&self.headers[col])
                ),
            ));
        }
        let n = values.len();
        Ok(match fill {
            Fill::Mean => values.iter().sum::<f64>() / n as f64,
            Fill::Median => {
                values.sort_by(f64::total_cmp);
                if n % 2 == 1 {
                    values[n / 2]
                } else {
                    (values[n / 2 - 1] + values[n / 2]) / 2.0
                }
            }
        })
    }

    /// The error for a missing value in a feature cell, or in a row of empty fields.
    fn missing_error(&self, row: usize, col: usize) -> WgradError {
        let raw = &self.rows[row][col];
        let fill = "missing values are errors unless the model was trained to fill them (`wgrad \
                    train --fill-missing mean|median`, `CsvOptions::fill_missing` in the library)";
        if self.rows[row].as_slice().is_empty() {
            return WgradError::data(
                &self.path,
                format!(
                    "line {}: every field is empty, a row of missing values; {fill}",
                    self.line(row)
                ),
            );
        }
        let what = if raw.is_empty() {
            "empty value".to_string()
        } else {
            format!("missing value ({})", quoted(raw))
        };
        self.cell_error(row, col, format!("{what}; {fill}"))
    }

    /// The index among `categories` of the category in a cell; an unknown one is `None` where
    /// the column `ignore_unknown`s them, else an error.
    fn category(
        &self,
        row: usize,
        col: usize,
        categories: &[String],
        ignore_unknown: bool,
    ) -> Result<Option<usize>> {
        if missing(&self.rows[row][col]) {
            return Err(self.missing_error(row, col));
        }
        let raw = &self.rows[row][col];
        // A code written as another number (`3.0` for `3`, as pandas writes integers in a
        // column with a missing value) is the same category.
        let same_number = |category: &String| {
            matches!(
                (raw.parse::<f64>(), category.parse::<f64>()),
                (Ok(a), Ok(b)) if a == b
            )
        };
        let known = categories
            .iter()
            .position(|category| category == raw)
            .or_else(|| categories.iter().position(same_number));
        if known.is_some() || ignore_unknown {
            return Ok(known);
        }
        Err(self.cell_error(
            row,
            col,
            format!(
                "unknown category {}; the model was trained on {} (give \
                 `--unknown-categories ignore` to read it as none of them, leave such rows \
                 out, or train again with them)",
                quoted(raw),
                list(categories)
            ),
        ))
    }

    /// One column as a [rows, 1] array of numbers less `offset` (regression targets).
    fn column_values(&self, col: usize, offset: Option<f64>) -> Result<Array2<f32>> {
        let values = (0..self.rows.len())
            .map(|row| self.number(row, col, Role::Target, offset))
            .collect::<Result<Vec<f32>>>()?;
        Ok(Array2::from_shape_vec((values.len(), 1), values).expect("one value per row"))
    }

    /// The finite number in a cell of a column in `role`, less `offset` (subtracted before
    /// the value is rounded to 32 bits).
    fn number(&self, row: usize, col: usize, role: Role, offset: Option<f64>) -> Result<f32> {
        let raw = &self.rows[row][col];
        // NaN is a missing marker that parses; a feature's is missing, a target's not finite.
        if missing(raw) && (role == Role::Feature || raw.parse::<f32>().is_err()) {
            return Err(match role {
                Role::Feature => self.missing_error(row, col),
                Role::Target => self.cell_error(
                    row,
                    col,
                    format!(
                        "{}; missing targets are not supported",
                        if raw.is_empty() {
                            "empty value".to_string()
                        } else {
                            format!("missing value ({})", quoted(raw))
                        }
                    ),
                ),
            });
        }
        let parsed = match offset {
            None => raw.parse::<f32>().ok(),
            Some(offset) => raw.parse::<f64>().ok().map(|v| (v - offset) as f32),
        };
        let value = parsed.ok_or_else(|| {
            // In a column of more words than numbers, the number is what stands out.
            if role == Role::Feature
                && let Some(stray) = self.stray_number(col)
            {
                return self.cell_error(
                    stray,
                    col,
                    format!(
                        "{} is a number in a column of words; a column holds numbers or \
                         categories, not both",
                        quoted(&self.rows[stray][col])
                    ),
                );
            }
            // A number written otherwise and a column of words (categories) get a hint; other
            // text is named as it is.
            let hint = if let Some(hint) = number_written_otherwise(raw) {
                format!("; {hint}")
            } else if looks_missing(raw) {
                let what = "; it looks like a missing value, but only empty cells and markers \
                            such as NA, NaN, null and N/A are read as missing:";
                match role {
                    Role::Feature => format!(
                        "{what} make such cells empty (or NA), then have them filled (`wgrad \
                         train --fill-missing mean|median`, `CsvOptions::fill_missing` in the \
                         library)"
                    ),
                    Role::Target => {
                        format!("{what} missing targets are not supported, so leave such rows out")
                    }
                }
            } else if raw.contains('\n') {
                format!(
                    "; it is a quoted field over {} lines: is a quote misplaced?",
                    raw.lines().count()
                )
            } else if role == Role::Feature
                && let Some(words) = self.words(col)
            {
                let shown: Vec<&&str> = words.iter().take(3).collect();
                let more = if words.len() > shown.len() {
                    ", …"
                } else {
                    ""
                };
                format!(
                    "; the column holds words in every row ({}{more}), where the model \
                     expects numbers",
                    list(&shown)
                )
            } else {
                String::new()
            };
            self.cell_error(row, col, format!("{} is not a number{hint}", quoted(raw)))
        })?;
        if !value.is_finite() {
            let why = if raw.parse::<f64>().is_ok_and(f64::is_finite) {
                "is beyond the range of 32-bit floats (±3.4e38)"
            } else {
                "is not a finite number (NaN and infinities are not allowed)"
            };
            return Err(self.cell_error(row, col, format!("{} {why}", quoted(raw))));
        }
        Ok(value)
    }

    /// The distinct values of column `col`, sorted, when no cell of it holds a number, even
    /// one written with a decimal comma or as a date (a column of categories; missing values
    /// aside).
    fn words(&self, col: usize) -> Option<BTreeSet<&str>> {
        let mut distinct = BTreeSet::new();
        for row in &self.rows {
            let value = &row[col];
            if value.is_empty() || MISSING_MARKERS.contains(&value) {
                continue;
            }
            if numeric(value) {
                return None;
            }
            distinct.insert(value);
        }
        (!distinct.is_empty()).then_some(distinct)
    }

    /// The distinct values of column `col`, missing ones aside, numbers too (a column read as
    /// categories); `None` if every value is missing.
    fn distinct_values(&self, col: usize) -> Option<BTreeSet<&str>> {
        let distinct: BTreeSet<&str> = self
            .rows
            .iter()
            .map(|row| &row[col][..])
            .filter(|value| !missing(value))
            .collect();
        (!distinct.is_empty()).then_some(distinct)
    }

    /// In a column of more words than numbers, the row of its first number: the column is
    /// neither numbers nor categories.
    fn stray_number(&self, col: usize) -> Option<usize> {
        let values = || {
            (0..self.rows.len())
                .map(move |row| (row, &self.rows[row][col]))
                .filter(|(_, v)| !v.is_empty() && !MISSING_MARKERS.contains(v))
        };
        let numbers = values().filter(|(_, v)| numeric(v)).count();
        let words = values().count() - numbers;
        (numbers > 0 && words > numbers)
            .then(|| values().find(|(_, v)| numeric(v)).map(|(row, _)| row))
            .flatten()
    }

    /// The label text in a cell: neither empty nor a missing-value marker.
    fn label(&self, row: usize, col: usize) -> Result<&str> {
        let raw = &self.rows[row][col];
        if raw.is_empty() {
            return Err(self.cell_error(row, col, "empty label".into()));
        }
        if MISSING_MARKERS.contains(&raw) {
            return Err(self.cell_error(
                row,
                col,
                format!("missing label ({}); every row needs a label", quoted(raw)),
            ));
        }
        Ok(raw)
    }

    /// Classification unless the target column is all numbers and not a few integers; see
    /// [`CsvTask::Auto`].
    fn infer_task(&self, col: usize) -> CsvTask {
        let values = || self.rows.iter().map(|r| &r[col]);
        if values().any(|v| v.parse::<f64>().is_err()) {
            // Numbers written otherwise (1,5 or 1,000) are a regression target, whose reading
            // names what to change; other text is labels.
            let written_otherwise = values().any(|v| number_written_otherwise(v).is_some());
            return match values().all(|v| missing(v) || numeric(v)) && written_otherwise {
                true => CsvTask::Regression,
                false => CsvTask::Classification,
            };
        }
        let mut distinct = BTreeSet::new();
        for v in values() {
            match integer_label(v) {
                Some(i) => {
                    distinct.insert(i);
                    if distinct.len() > AUTO_MAX_CLASSES {
                        return CsvTask::Regression;
                    }
                }
                None => return CsvTask::Regression,
            }
        }
        CsvTask::Classification
    }

    /// Class indices for a label column and the class names, sorted numerically when every
    /// label is an integer, else as text.
    fn class_labels(&self, col: usize) -> Result<(Vec<usize>, Vec<String>)> {
        let labels = (0..self.rows.len())
            .map(|row| self.label(row, col))
            .collect::<Result<Vec<&str>>>()?;
        let integers: Option<Vec<i64>> = labels.iter().map(|l| integer_label(l)).collect();
        Ok(match integers {
            Some(integers) => {
                let classes: Vec<i64> = BTreeSet::from_iter(integers.iter().copied())
                    .into_iter()
                    .collect();
                let indices = integers
                    .iter()
                    .map(|i| classes.binary_search(i).expect("every label is a class"))
                    .collect();
                (indices, classes.iter().map(i64::to_string).collect())
            }
            None => {
                let classes: Vec<&str> = BTreeSet::from_iter(labels.iter().copied())
                    .into_iter()
                    .collect();
                let indices = labels
                    .iter()
                    .map(|l| classes.binary_search(l).expect("every label is a class"))
                    .collect();
                (indices, classes.iter().map(|c| c.to_string()).collect())
            }
        })
    }

    /// The line of the file row `row` starts on.
    fn line(&self, row: usize) -> u64 {
        self.rows[row].position().map_or(0, |p| p.line())
    }

    /// An error about one cell: `line L, column "name": message`.
    fn cell_error(&self, row: usize, col: usize, message: String) -> WgradError {
        WgradError::data(
            &self.path,
            format!(
                "line {}, column {}: {message}",
                self.line(row),
                quoted(&self.headers[col])
            ),
        )
    }
}

/// What to do about a number written in a way this reader does not take: with thousands
/// separators (1,234), a decimal comma (1,5), or a date; `None` for other text.
fn number_written_otherwise(raw: &str) -> Option<&'static str> {
    const SEPARATORS: &str = "write numbers with a decimal point and without thousands separators";
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    // Digit groups of three after one of one to three: 1,234 or 1.234.567 or 1 500.
    let grouped = |part: &str, separator: char| {
        let groups: Vec<&str> = part.split(separator).collect();
        groups.len() > 1
            && (1..=3).contains(&groups[0].len())
            && groups.iter().all(|g| digits(g))
            && groups[1..].iter().all(|g| g.len() == 3)
    };
    let unsigned = raw.trim_start_matches(['-', '+']);
    // The integer part before a decimal mark, and the digits after it, if any.
    let split_decimal = |mark: char| match unsigned.split_once(mark) {
        Some((whole, fraction)) if digits(fraction) => (whole, true),
        Some(_) => ("", false),
        None => (unsigned, true),
    };
    let thousands = [
        (',', '.'),
        ('.', ','),
        (' ', '.'),
        (' ', ','),
        ('\u{a0}', ','),
        ('\'', '.'),
    ]
    .iter()
    .any(|&(separator, mark)| {
        let (whole, ok) = split_decimal(mark);
        ok && grouped(whole, separator)
    });
    let numeric = |part: &str| {
        part.parse::<f64>().is_ok()
            || (!part.is_empty() && number_written_otherwise(part).is_some())
    };
    let date_or_time = {
        let allowed = |b: u8| b.is_ascii_digit() || b"-/.:T Z+".contains(&b);
        let count = |set: &[u8]| raw.bytes().filter(|b| set.contains(b)).count();
        raw.bytes().all(allowed)
            && raw.bytes().next().is_some_and(|b| b.is_ascii_digit())
            && ((raw.len() >= 8 && (count(b"-/") == 2 || dotted_date(raw)))
                // 2024-03, 10:30, 10:30:15
                || (raw.len() == 7 && count(b"-") == 1 && raw.as_bytes()[4] == b'-')
                || ((1..=2).contains(&count(b":")) && count(b"-/.") == 0))
    };
    if thousands {
        // 1,234 is a thousand or (with a decimal comma) about one.
        Some(SEPARATORS)
    } else if raw.replacen(',', ".", 1).parse::<f32>().is_ok() {
        Some("write decimals with a point")
    } else if date_or_time {
        Some(
            "dates and times must be turned into numbers first (a day count, or year, month \
             and day columns)",
        )
    } else if let Some(amount) = unsigned
        .strip_prefix(['$', '€', '£', '¥'])
        .or_else(|| unsigned.strip_suffix(['$', '€', '£', '¥']))
        && numeric(amount.trim())
    {
        Some("write amounts without currency symbols")
    } else if let Some(share) = unsigned.strip_suffix('%')
        && numeric(share.trim())
    {
        Some("write percentages as plain numbers (12.5, not 12.5%)")
    } else {
        None
    }
}

/// Whether `raw` is a date written with dots, day first (01.03.2024) or year first
/// (2024.03.01), and not, say, a version number (10.0.19041).
fn dotted_date(raw: &str) -> bool {
    let parts: Vec<&str> = raw.split('.').collect();
    let lengths: Vec<usize> = parts.iter().map(|p| p.len()).collect();
    parts
        .iter()
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && matches!(lengths[..], [1 | 2, 1 | 2, 2 | 4] | [4, 1 | 2, 1 | 2])
}

/// Whether a cell is missing: empty, or one of pandas' markers (`NA`, `NaN`, `null`, …).
fn missing(raw: &str) -> bool {
    raw.is_empty() || MISSING_MARKERS.contains(&raw)
}

/// Whether a cell that is not a number looks like a missing value written otherwise than
/// [`MISSING_MARKERS`] hold: `?` (as UCI sets such as Adult write them), dashes or dots, a marker
/// in another case (`na`, `Null`), `n.a.`, `nil` or `missing`.
fn looks_missing(raw: &str) -> bool {
    raw.bytes().all(|b| b"?-.".contains(&b))
        || MISSING_MARKERS.iter().any(|m| m.eq_ignore_ascii_case(raw))
        || ["n.a.", "n.a", "nil", "missing"]
            .iter()
            .any(|m| m.eq_ignore_ascii_case(raw))
}

/// Whether a cell holds a number, as written or in a form [`number_written_otherwise`] names.
fn numeric(raw: &str) -> bool {
    raw.parse::<f64>().is_ok() || number_written_otherwise(raw).is_some()
}

/// The integer a label writes: `1`, `01`, or `1.0` (as pandas writes an integer column that
/// had a missing value, and as scikit-learn reads `[0.0, 1.0]` as binary labels).
fn integer_label(label: &str) -> Option<i64> {
    label.parse::<i64>().ok().or_else(|| {
        let value = label.parse::<f64>().ok()?;
        (value.fract() == 0.0 && value.abs() < 2f64.powi(53)).then_some(value as i64)
    })
}

/// The field separator of CSV text starting with `start`: of comma, tab and semicolon, the
/// first that splits the header into several columns and the next lines (up to 20 read
/// here) into as many; if none does, a comma if the first line has one, else a tab or a
/// semicolon if it has one of those, else a comma. So a tab-separated file whose header
/// names a column `weight (kg, net)` is read by tabs.
fn separator(start: &[u8]) -> u8 {
    const CANDIDATES: [u8; 3] = [b',', b'\t', b';'];
    // The last line of the buffer may be cut short: only whole lines count.
    let whole = match start.iter().rposition(|&b| b == b'\n') {
        Some(end) => &start[..=end],
        None => start,
    };
    let splits_evenly = |separator: u8| {
        let mut reader = ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(separator)
            .from_reader(whole);
        let widths: Vec<usize> = reader
            .records()
            .take(21)
            .map_while(|record| record.ok())
            .filter(|record| !(record.len() == 1 && record[0].trim().is_empty()))
            .map(|record| record.len())
            .collect();
        widths.len() > 1 && widths[0] > 1 && widths.iter().all(|&w| w == widths[0])
    };
    let line = start.split(|&b| b == b'\n').next().unwrap_or_default();
    CANDIDATES
        .into_iter()
        .find(|&separator| splits_evenly(separator))
        .or_else(|| {
            CANDIDATES
                .into_iter()
                .find(|separator| line.contains(separator))
        })
        .unwrap_or(b',')
}

/// How an error names a separator.
fn separator_name(separator: u8) -> &'static str {
    match separator {
        b'\t' => "tabs",
        b';' => "semicolons",
        _ => "commas",
    }
}

/// The text of a field whose quote was never closed: it took in the [`END`] row that follows
/// the input (its quote closing the field's, so the field ends in `END"`), given without it.
fn unclosed(field: &str) -> Option<&str> {
    field.strip_suffix('"')?.strip_suffix(END)
}

/// The line breaks in `text`, counted only where there is one (rarely, in a quoted field).
fn line_breaks(text: &str) -> u64 {
    if text.contains('\n') {
        text.bytes().filter(|&b| b == b'\n').count() as u64
    } else {
        0
    }
}

/// `inner` with every CR byte read as LF.
struct CrAsLf<R>(R);

impl<R: Read> Read for CrAsLf<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.0.read(buf)?;
        for byte in &mut buf[..read] {
            if *byte == b'\r' {
                *byte = b'\n';
            }
        }
        Ok(read)
    }
}

/// Text from the file as a message quotes it: whole up to 40 characters, else its first 40,
/// `…` and its length (a 50 MB field made a 50 MB message).
fn quoted(text: &str) -> String {
    const SHOWN: usize = 40;
    match text.char_indices().nth(SHOWN) {
        None => format!("{text:?}"),
        Some((end, _)) => format!(
            "\"{}…\" ({} characters)",
            text[..end].escape_debug(),
            text.chars().count()
        ),
    }
}

/// `path` opened for buffered reading.
fn open(path: &Path) -> Result<BufReader<File>> {
    let file = File::open(path).map_err(|e| WgradError::io(path, e))?;
    Ok(BufReader::new(file))
}

/// Up to 20 names, [`quoted`] and comma-separated, then how many more.
pub(crate) fn list<S: AsRef<str>>(names: &[S]) -> String {
    const SHOWN: usize = 20;
    let mut out = names
        .iter()
        .take(SHOWN)
        .map(|n| quoted(n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        out.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    out
}
