//! PNG figures of a training run: [`plot_history`] draws the loss and accuracy of every epoch
//! of a [`History`]; [`plot_decision_boundary`] draws the region a two-input classifier gives
//! to each class, with the data on top.
//!
//! ```no_run
//! use std::path::Path;
//! use wgrad::{Activation, Device, FitConfig, Model, Sequential, data, plot};
//!
//! let (x, y) = data::spirals(100, 3, 0.2, 0);
//! let spec = Sequential::new(2).dense(32, Activation::Relu).dense(3, Activation::Softmax);
//! let mut model = Model::new(spec, Device::Auto)?;
//! let history = model.fit(&x, &y.clone().into(), &FitConfig { epochs: 200, ..Default::default() })?;
//! plot::plot_history(&history, Path::new("history.png"))?;
//! plot::plot_decision_boundary(&model, &x, &y, Path::new("boundary.png"))?;
//! # Ok::<(), wgrad::WgradError>(())
//! ```
//!
//! Text is set in DejaVu Sans, which the library embeds (`assets/DejaVuSans.ttf`, licence in
//! `assets/FONT-LICENSE.md`), so the figures look the same on machines without any fonts.
//! The figures are drawn in memory and written as 8-bit RGB PNG files, whatever the path's
//! extension.

use crate::cpu::ops::predicted_class;
use crate::error::{Result, WgradError};
use crate::train::{History, Model};
use flate2::Compression;
use flate2::write::ZlibEncoder;
use ndarray::Array2;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::register_font;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::io::Write;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

/// Size of the training-history figure, in pixels.
pub const HISTORY_SIZE: (u32, u32) = (1000, 450);
/// Size of the decision-boundary figure, in pixels.
pub const BOUNDARY_SIZE: (u32, u32) = (800, 660);
/// The decision boundary is evaluated on a `GRID` × `GRID` grid of points.
pub const GRID: usize = 200;

/// DejaVu Sans, registered with plotters under the family every style here uses.
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FONT_FAMILY: &str = "sans-serif";

/// Matplotlib's "tab10" palette: one colour per class, cycled beyond ten classes.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const TRAINING_COLOR: RGBColor = PALETTE[0];
const VALIDATION_COLOR: RGBColor = PALETTE[1];
const TEXT_COLOR: RGBColor = RGBColor(30, 30, 30);
const GRID_COLOR: RGBColor = RGBColor(225, 225, 225);
/// How much of the class colour a decision region's tint keeps (the rest is white).
const TINT_STRENGTH: f64 = 0.28;

/// Font sizes, in pixels.
const TITLE_SIZE: u32 = 24;
const CAPTION_SIZE: u32 = 18;
const AXIS_DESC_SIZE: u32 = 16;
const TICK_SIZE: u32 = 14;
const LEGEND_SIZE: u32 = 15;

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Draws the loss (left) and accuracy (right) of every epoch of `history` into a PNG file at
/// `path`, about 1000 × 450 pixels ([`HISTORY_SIZE`]).
///
/// Each panel shows the training curve and, where the records have them, the validation
/// curve, with a legend and the final values in its caption. A history without any accuracy
/// (regression) gets one loss panel across the whole width. The x axis counts epochs by each
/// record's `epoch` number, or by position when those numbers do not increase (histories of
/// several `fit` calls put together). Non-finite losses leave a gap in their line.
///
/// Errors: [`WgradError::EmptyDataset`] for a history without epochs; [`WgradError::Io`]
/// naming `path` when the file cannot be written or the figure cannot be drawn.
pub fn plot_history(history: &History, path: &Path) -> Result<()> {
    let records = &history.epochs;
    if records.is_empty() {
        return Err(WgradError::EmptyDataset(
            "the history has no epochs to plot",
        ));
    }
    let epochs = epoch_numbers(history);

    let loss_curves = [
        Curve::new(
            "training",
            TRAINING_COLOR,
            records.iter().map(|r| Some(r.loss)),
        ),
        Curve::new(
            "validation",
            VALIDATION_COLOR,
            records.iter().map(|r| r.val_loss),
        ),
    ];
    let accuracy_curves = [
        Curve::new(
            "training",
            TRAINING_COLOR,
            records.iter().map(|r| r.accuracy),
        ),
        Curve::new(
            "validation",
            VALIDATION_COLOR,
            records.iter().map(|r| r.val_accuracy),
        ),
    ];
    let loss = Panel::new(
        "Loss",
        "loss",
        loss_curves.into_iter().flatten().collect(),
        ValueKind::Loss,
        SeriesLabelPosition::UpperRight,
    );
    let accuracy_curves: Vec<Curve> = accuracy_curves.into_iter().flatten().collect();
    let accuracy = (!accuracy_curves.is_empty()).then(|| {
        Panel::new(
            "Accuracy",
            "accuracy",
            accuracy_curves,
            ValueKind::Accuracy,
            SeriesLabelPosition::LowerRight,
        )
    });

    let count = records.len();
    let title = format!(
        "Training history: {count} epoch{}",
        if count == 1 { "" } else { "s" }
    );
    render(path, HISTORY_SIZE, |root| {
        let body = root.titled(&title, text_style(TITLE_SIZE))?;
        match &accuracy {
            Some(accuracy) => {
                let (left, right) = body.split_horizontally(body.dim_in_pixel().0 / 2);
                loss.draw(&left, &epochs)?;
                accuracy.draw(&right, &epochs)?;
            }
            None => loss.draw(&body, &epochs)?,
        }
        Ok(())
    })
}

/// Draws the decision regions of a classifier with two inputs into a PNG file at `path`,
/// about 800 × 660 pixels ([`BOUNDARY_SIZE`]), like the classic matplotlib figure.
///
/// The model is evaluated, in one [`Model::predict`] call, on a [`GRID`] × [`GRID`] grid
/// covering the points of `x` plus a 10% margin, together with the points themselves. Each
/// grid cell is tinted with the colour of its predicted class (the arg-max of the outputs, or
/// output ≥ 0.5 for a single output); the points of `x` are drawn on top in the colour of
/// their true class from `labels`, with dark outlines. The title gives the model's accuracy
/// on these points, a legend the colour of each class.
///
/// Errors: [`WgradError::InvalidModel`] unless the model has exactly two inputs;
/// [`WgradError::InputWidth`], [`WgradError::EmptyDataset`], [`WgradError::RowMismatch`] or
/// [`WgradError::NonFinite`] for `x` and `labels` that do not fit the model or each other; the
/// model's errors from `predict`; [`WgradError::Io`] naming `path` when the file cannot be
/// written or the figure cannot be drawn.
pub fn plot_decision_boundary(
    model: &Model,
    x: &Array2<f32>,
    labels: &[usize],
    path: &Path,
) -> Result<()> {
    plot_named_decision_boundary(model, x, labels, &BoundaryNames::default(), path)
}

/// What a decision-boundary plot calls its axes and classes.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundaryNames {
    /// The two inputs, as the x and y axes are labelled ("input 0", "input 1").
    pub inputs: [String; 2],
    /// A name per class for the legend ("class k" where there is none).
    pub classes: Vec<String>,
}

impl Default for BoundaryNames {
    fn default() -> Self {
        BoundaryNames {
            inputs: ["input 0".into(), "input 1".into()],
            classes: Vec::new(),
        }
    }
}

/// [`plot_decision_boundary`] with the data's names on the axes and in the legend.
pub fn plot_named_decision_boundary(
    model: &Model,
    x: &Array2<f32>,
    labels: &[usize],
    names: &BoundaryNames,
    path: &Path,
) -> Result<()> {
    let inputs = model.spec().input_dim;
    if inputs != 2 {
        return Err(WgradError::InvalidModel(format!(
            "a decision boundary can only be drawn for a model with 2 inputs; this model has \
             {inputs}"
        )));
    }
    if x.ncols() != 2 {
        return Err(WgradError::InputWidth {
            expected: 2,
            got: x.ncols(),
        });
    }
    if x.nrows() == 0 {
        return Err(WgradError::EmptyDataset("x has no points to plot"));
    }
    if labels.len() != x.nrows() {
        return Err(WgradError::RowMismatch {
            x_rows: x.nrows(),
            y_rows: labels.len(),
        });
    }
    if let Some(((row, col), &value)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(WgradError::NonFinite {
            what: "x",
            row,
            col,
            value,
        });
    }

    let x_range = data_range(x.column(0).iter());
    let y_range = data_range(x.column(1).iter());
    let cell_width = (x_range.end - x_range.start) / GRID as f64;
    let cell_height = (y_range.end - y_range.start) / GRID as f64;

    // One batch: the centres of the grid's cells, row by row from the bottom, then the data.
    let cells = GRID * GRID;
    let mut batch = Array2::<f32>::zeros((cells + x.nrows(), 2));
    for (k, mut row) in batch.rows_mut().into_iter().take(cells).enumerate() {
        let (i, j) = (k % GRID, k / GRID);
        row[0] = (x_range.start + (i as f64 + 0.5) * cell_width) as f32;
        row[1] = (y_range.start + (j as f64 + 0.5) * cell_height) as f32;
    }
    batch.slice_mut(ndarray::s![cells.., ..]).assign(x);
    let predicted: Vec<usize> = model
        .predict(&batch)?
        .rows()
        .into_iter()
        .map(|row| {
            row.as_slice()
                .map_or_else(|| predicted_class(&row.to_vec()), predicted_class)
        })
        .collect();
    let (regions, on_points) = predicted.split_at(cells);

    let correct = on_points.iter().zip(labels).filter(|(p, l)| p == l).count();
    let accuracy = 100.0 * correct as f64 / labels.len() as f64;
    let classes = labels
        .iter()
        .max()
        .map_or(0, |&m| m + 1)
        .max(model.spec().output_dim().max(2));
    let title = format!(
        "Decision boundary (accuracy {accuracy:.1}% on these {} points)",
        labels.len()
    );
    let radius = match x.nrows() {
        0..=50 => 7,
        51..=500 => 4,
        501..=2000 => 3,
        _ => 2,
    };

    render(path, BOUNDARY_SIZE, |root| {
        let body = root.titled(&title, text_style(TITLE_SIZE))?;
        let legend_width = 130;
        let (plot_area, legend_area) =
            body.split_horizontally(body.dim_in_pixel().0 - legend_width);
        let x_axis = Axis::new(x_range.clone(), 8, 0.0);
        let y_axis = Axis::new(y_range.clone(), 8, 0.0);
        let (x_decimals, y_decimals) = (decimals(x_axis.step), decimals(y_axis.step));
        let mut chart = ChartBuilder::on(&plot_area)
            .margin(15)
            .x_label_area_size(50)
            .y_label_area_size(65)
            .build_cartesian_2d(x_axis, y_axis)?;

        chart.draw_series(regions.iter().enumerate().map(|(k, &class)| {
            let (i, j) = ((k % GRID) as f64, (k / GRID) as f64);
            let corner = (
                x_range.start + i * cell_width,
                y_range.start + j * cell_height,
            );
            let opposite = (corner.0 + cell_width, corner.1 + cell_height);
            Rectangle::new([corner, opposite], tint(class_color(class)).filled())
        }))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(&names.inputs[0])
            .y_desc(&names.inputs[1])
            .axis_desc_style(text_style(AXIS_DESC_SIZE))
            .label_style(text_style(TICK_SIZE))
            .x_label_formatter(&|v| fixed(*v, x_decimals))
            .y_label_formatter(&|v| fixed(*v, y_decimals))
            .draw()?;
        chart.draw_series(x.rows().into_iter().zip(labels).map(|(point, &label)| {
            // A disc in the colour of the point's class, with a dark outline.
            EmptyElement::at((point[0] as f64, point[1] as f64))
                + Circle::new((0, 0), radius, class_color(label).filled())
                + Circle::new((0, 0), radius, TEXT_COLOR.stroke_width(1))
        }))?;
        // The plotting area's outline, over the tints and points at its edges.
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x_range.start, y_range.start), (x_range.end, y_range.end)],
            TEXT_COLOR.stroke_width(1),
        )))?;

        draw_class_legend(
            &legend_area,
            classes,
            &names.classes,
            chart.plotting_area().get_pixel_range().1,
        )
    })
}

/// One line of a history panel: its legend label, colour, and value per epoch (`None` where
/// the epoch has none or it is not finite; the line has a gap there).
struct Curve {
    label: &'static str,
    color: RGBColor,
    values: Vec<Option<f64>>,
}

impl Curve {
    /// The curve of `values`, or `None` when not one of them is a finite number.
    fn new(
        label: &'static str,
        color: RGBColor,
        values: impl Iterator<Item = Option<f32>>,
    ) -> Option<Curve> {
        let values: Vec<Option<f64>> = values
            .map(|v| v.map(f64::from).filter(|v| v.is_finite()))
            .collect();
        values.iter().any(Option::is_some).then_some(Curve {
            label,
            color,
            values,
        })
    }

    /// The runs of consecutive epochs that have a value, as (epoch, value) points.
    fn segments(&self, epochs: &[f64]) -> Vec<Vec<(f64, f64)>> {
        let mut segments = vec![];
        let mut current = vec![];
        for (&epoch, value) in epochs.iter().zip(&self.values) {
            match value {
                Some(v) => current.push((epoch, *v)),
                None if !current.is_empty() => segments.push(std::mem::take(&mut current)),
                None => {}
            }
        }
        if !current.is_empty() {
            segments.push(current);
        }
        segments
    }

    /// The last finite value, for the panel's caption.
    fn last(&self) -> Option<f64> {
        self.values.iter().rev().find_map(|v| *v)
    }
}

/// What a panel's values are: losses are open-ended, accuracies lie in [0, 1] and are shown
/// as percentages.
#[derive(Clone, Copy)]
enum ValueKind {
    Loss,
    Accuracy,
}

impl ValueKind {
    /// The label of the tick at `value` on an axis with ticks `step` apart.
    fn tick_label(self, value: f64, step: f64) -> String {
        match self {
            // Past 1e5 in exponent form, with the digits that tell the ticks apart: fixed
            // point would not fit the label area (166050000000).
            ValueKind::Loss if value.abs() >= 1e5 => {
                let digits = (value.abs().log10().floor() - step.log10().floor()).clamp(0.0, 8.0);
                format!("{value:.*e}", digits as usize)
            }
            ValueKind::Loss => fixed(value, decimals(step)),
            ValueKind::Accuracy => format!("{}%", fixed(100.0 * value, decimals(100.0 * step))),
        }
    }

    /// `value` in a caption: four significant digits for a loss, a percentage with one
    /// decimal for an accuracy.
    fn caption_value(self, value: f64) -> String {
        match self {
            ValueKind::Loss if value.abs() >= 1e6 => format!("{value:.3e}"),
            ValueKind::Loss => {
                let magnitude = value.abs().log10().floor();
                let digits = if magnitude.is_finite() {
                    (3.0 - magnitude).clamp(0.0, 8.0) as usize
                } else {
                    0
                };
                fixed(value, digits)
            }
            ValueKind::Accuracy => format!("{:.1}%", 100.0 * value),
        }
    }
}

/// One panel of the history figure.
struct Panel {
    caption: String,
    y_desc: &'static str,
    curves: Vec<Curve>,
    kind: ValueKind,
    y_range: Range<f64>,
    legend: SeriesLabelPosition,
}

impl Panel {
    fn new(
        name: &str,
        y_desc: &'static str,
        curves: Vec<Curve>,
        kind: ValueKind,
        legend: SeriesLabelPosition,
    ) -> Panel {
        let finite = curves
            .iter()
            .flat_map(|c| c.values.iter().flatten().copied());
        let (low, high) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let y_range = match kind {
            _ if low > high => 0.0..1.0,
            ValueKind::Loss => padded(low, high, 0.0..f64::INFINITY),
            ValueKind::Accuracy => padded(low, high, 0.0..1.02),
        };
        let finals: Vec<String> = curves
            .iter()
            .filter_map(|c| Some(format!("{} {}", c.label, kind.caption_value(c.last()?))))
            .collect();
        let caption = if finals.is_empty() {
            format!("{name} (no finite values)")
        } else {
            format!("{name} (last: {})", finals.join(", "))
        };
        Panel {
            caption,
            y_desc,
            curves,
            kind,
            y_range,
            legend,
        }
    }

    fn draw(&self, area: &Area, epochs: &[f64]) -> DrawResult {
        let first = epochs.first().copied().unwrap_or(1.0);
        let last = epochs.last().copied().unwrap_or(1.0);
        let pad = ((last - first) * 0.02).max(0.5);
        let x_axis = Axis::new(first - pad..last + pad, 10, 1.0);
        let y_axis = Axis::new(self.y_range.clone(), 8, 0.0);
        let y_step = y_axis.step;

        let mut chart = ChartBuilder::on(area)
            .caption(&self.caption, text_style(CAPTION_SIZE))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(88)
            .build_cartesian_2d(x_axis, y_axis)?;
        chart
            .configure_mesh()
            .bold_line_style(GRID_COLOR)
            .light_line_style(TRANSPARENT)
            .axis_style(TEXT_COLOR)
            .x_desc("epoch")
            .y_desc(self.y_desc)
            .axis_desc_style(text_style(AXIS_DESC_SIZE))
            .label_style(text_style(TICK_SIZE))
            .x_label_formatter(&|v| fixed(*v, 0))
            .y_label_formatter(&|v| self.kind.tick_label(*v, y_step))
            .draw()?;

        let markers = epochs.len() <= 40;
        for curve in &self.curves {
            let style = curve.color.stroke_width(2);
            let mut labelled = false;
            for segment in curve.segments(epochs) {
                let drawn = if segment.len() > 1 {
                    chart.draw_series(LineSeries::new(segment.iter().copied(), style))?
                } else {
                    chart.draw_series(dots(&segment, curve.color))?
                };
                if !labelled {
                    let color = curve.color;
                    drawn.label(curve.label).legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 24, y)], color.stroke_width(2))
                    });
                    labelled = true;
                }
                if markers && segment.len() > 1 {
                    chart.draw_series(dots(&segment, curve.color))?;
                }
            }
        }
        if self.curves.is_empty() {
            return Ok(());
        }
        chart
            .configure_series_labels()
            .position(self.legend.clone())
            .margin(12)
            .legend_area_size(30)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(190, 190, 190))
            .label_font(text_style(LEGEND_SIZE))
            .draw()?;
        Ok(())
    }
}

/// Small filled circles on the points of a curve.
fn dots(
    points: &[(f64, f64)],
    color: RGBColor,
) -> impl Iterator<Item = Circle<(f64, f64), u32>> + '_ {
    points
        .iter()
        .map(move |&p| Circle::new(p, 3, color.filled()))
}

/// The x coordinate of each record: its `epoch` number when those increase from record to
/// record, else its position (1, 2, ...).
fn epoch_numbers(history: &History) -> Vec<f64> {
    let numbers: Vec<f64> = history.epochs.iter().map(|r| r.epoch as f64).collect();
    if numbers.windows(2).all(|w| w[0] < w[1]) {
        numbers
    } else {
        (1..=numbers.len()).map(|i| i as f64).collect()
    }
}

/// `low..high` with 5% room on each side (more when the values are all the same); the room,
/// not the values, is cut to `limits`.
fn padded(low: f64, high: f64, limits: Range<f64>) -> Range<f64> {
    let pad = if high > low {
        0.05 * (high - low)
    } else {
        (0.1 * high.abs()).max(0.05)
    };
    (low - pad).max(limits.start.min(low))..(high + pad).min(limits.end.max(high))
}

/// The range of one input column plus a margin of 10% of its span on either side (±0.5 when
/// all its values are equal, or 10% of their size).
fn data_range<'a>(values: impl Iterator<Item = &'a f32>) -> Range<f64> {
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
        (lo.min(v as f64), hi.max(v as f64))
    });
    let margin = if high > low {
        0.1 * (high - low)
    } else {
        (0.1 * high.abs()).max(0.5)
    };
    low - margin..high + margin
}

/// A linear axis over `range` with its tick marks at the multiples of a round `step` (1, 2
/// or 5 × 10^k), rather than where plotters would put them, so that every label can have the
/// same number of decimals.
struct Axis {
    range: Range<f64>,
    ticks: Vec<f64>,
    step: f64,
}

impl Axis {
    /// The axis with the smallest round step, at least `min_step`, that gives at most `max`
    /// ticks in `range`.
    fn new(range: Range<f64>, max: usize, min_step: f64) -> Axis {
        let span = range.end - range.start;
        let first_index = |step: f64| (range.start / step).ceil() as i64;
        let last_index = |step: f64| (range.end / step).floor() as i64;
        let mut magnitude = 10f64.powf((span / max as f64).log10().floor());
        // The bound on the search only matters for degenerate ranges, which get no ticks.
        for _ in 0..40 {
            for mantissa in [1.0, 2.0, 5.0] {
                let step = mantissa * magnitude;
                let (first, last) = (first_index(step), last_index(step));
                if step >= min_step && last - first < max as i64 {
                    let ticks = (first..=last).map(|i| i as f64 * step).collect();
                    return Axis { range, ticks, step };
                }
            }
            magnitude *= 10.0;
        }
        Axis {
            range,
            ticks: vec![],
            step: 1.0,
        }
    }
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        RangedCoordf64::from(self.range.clone()).map(value, limit)
    }

    /// The ticks for the axis labels and the bold grid lines; no light grid lines.
    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            vec![]
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// The decimals that labels of ticks `step` apart need: 1 for 0.5, 2 for 0.05, 0 for 5.
fn decimals(step: f64) -> usize {
    (-(step.log10() + 1e-9).floor()).clamp(0.0, 12.0) as usize
}

/// `value` with `decimals` decimals, "0" rather than "-0".
fn fixed(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    match text.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => text,
    }
}

fn text_style(size: u32) -> TextStyle<'static> {
    TextStyle::from((FONT_FAMILY, size).into_font()).color(&TEXT_COLOR)
}

fn class_color(class: usize) -> RGBColor {
    PALETTE[class % PALETTE.len()]
}

/// A light version of `color`: `TINT_STRENGTH` of it, the rest white.
fn tint(color: RGBColor) -> RGBColor {
    let mix = |c: u8| (255.0 - TINT_STRENGTH * (255.0 - c as f64)).round() as u8;
    RGBColor(mix(color.0), mix(color.1), mix(color.2))
}

/// The class legend beside the decision-boundary chart: a marker and the class's name (up to
/// 12 characters) or "class k" per class, from the top of the plotting area (`plot_rows`, in
/// figure pixels) down, as many as fit.
fn draw_class_legend(
    area: &Area,
    classes: usize,
    names: &[String],
    plot_rows: Range<i32>,
) -> DrawResult {
    let top = area.get_base_pixel().1;
    let row_height = 28;
    let first_row = plot_rows.start - top + 14;
    let rows = ((plot_rows.end - top - first_row) / row_height).max(1) as usize;
    let shown = if classes > rows { rows - 1 } else { classes };
    let label_style = text_style(LEGEND_SIZE).pos(Pos::new(HPos::Left, VPos::Center));
    let x = 18;
    for class in 0..shown {
        let y = first_row + (class as i32) * row_height;
        area.draw(
            &(EmptyElement::at((x, y))
                + Circle::new((0, 0), 6, class_color(class).filled())
                + Circle::new((0, 0), 6, TEXT_COLOR.stroke_width(1))
                + Text::new(legend_name(names, class), (14, 0), label_style.clone())),
        )?;
    }
    if shown < classes {
        let y = first_row + (shown as i32) * row_height;
        area.draw(&Text::new(
            format!("+ {} more", classes - shown),
            (x - 6, y),
            label_style,
        ))?;
    }
    Ok(())
}

/// Class `class`'s legend entry: its name, cut to 12 characters, or "class k".
fn legend_name(names: &[String], class: usize) -> String {
    match names.get(class) {
        Some(name) if name.chars().count() > 12 => {
            format!("{}…", name.chars().take(11).collect::<String>())
        }
        Some(name) => name.clone(),
        None => format!("class {class}"),
    }
}

/// Registers the embedded font with plotters, once per process.
fn register_embedded_font() -> std::result::Result<(), &'static str> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok =
        *REGISTERED.get_or_init(|| register_font(FONT_FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err("the embedded font DejaVu Sans could not be loaded")
    }
}

/// Draws a white `size` figure with `draw` in memory and writes it to `path` as a PNG.
fn render(path: &Path, size: (u32, u32), draw: impl FnOnce(&Area) -> DrawResult) -> Result<()> {
    // The figure is a PNG: another name would mislead whatever opens it, and a directory
    // cannot be replaced by one.
    let is_png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !is_png || path.is_dir() {
        let why = "a figure is written as a PNG file: give a file path ending in .png";
        return Err(WgradError::io(path, std::io::Error::other(why)));
    }
    let failed = |e: &dyn std::fmt::Display| {
        WgradError::io(
            path,
            std::io::Error::other(format!("cannot draw the figure: {e}")),
        )
    };
    register_embedded_font().map_err(|e| failed(&e))?;
    let mut pixels = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        draw(&root).map_err(|e| failed(&e))?;
        root.present().map_err(|e| failed(&e))?;
    }
    let png = encode_png(size, &pixels).map_err(|e| WgradError::io(path, e))?;
    // Through a temporary file and a rename, so that a run killed while writing never leaves
    // a truncated picture.
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder");
        return Err(WgradError::io(path, missing));
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| WgradError::io(path, std::io::Error::other("not a file name")))?;
    crate::io::write_files_atomically(dir, &[(name, &png)])
}

/// An 8-bit RGB, non-interlaced PNG file of `rgb` (rows top to bottom, 3 bytes a pixel).
fn encode_png((width, height): (u32, u32), rgb: &[u8]) -> std::io::Result<Vec<u8>> {
    let stride = width as usize * 3;
    let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
    for row in rgb.chunks_exact(stride) {
        // Filter type 0 (none): flat colours compress well without a predictor.
        zlib.write_all(&[0])?;
        zlib.write_all(row)?;
    }
    let image_data = zlib.finish()?;

    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    // Bit depth 8, colour type 2 (RGB), deflate compression, adaptive filtering, no interlace.
    header.extend_from_slice(&[8, 2, 0, 0, 0]);

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [
        (b"IHDR", &header[..]),
        (b"IDAT", &image_data[..]),
        (b"IEND", &[][..]),
    ] {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        png.extend_from_slice(&crc.sum().to_be_bytes());
    }
    Ok(png)
}
