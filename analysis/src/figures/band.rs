//! Line-with-band panels: (b) dead fraction, (e) survival, (f) learning curves and (i) gradient
//! flow, each a mean over seeds with its 95 % t interval per epoch.

use std::collections::BTreeMap;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::*;
use statrs::distribution::{ContinuousCDF, StudentsT};

use super::*;

/// (x, mean, low, high) of one curve.
pub(super) type BandPoints = Vec<(f64, f64, f64, f64)>;

/// One curve over seeds: mean and 95 % t interval at each x.
#[derive(Debug, Clone)]
pub(super) struct BandSeries {
    pub(super) label: String,
    pub(super) colour: RGBColor,
    /// Dash length and gap in pixels for the series' setting; `None`: solid. Colour tells the
    /// activations apart and the dash the settings (learning rate, optimiser, ...).
    pub(super) dash: Option<(u32, u32)>,
    /// (x, mean, low, high)
    pub(super) points: BandPoints,
}

/// The line styles of a dataset's settings, in the order of `settings`: solid, dashed, dotted,
/// long dashes, then again.
pub(super) fn dash_of(settings: &[&str], setting: &str) -> Option<(u32, u32)> {
    const DASHES: [Option<(u32, u32)>; 4] = [None, Some((10, 6)), Some((3, 4)), Some((18, 6))];
    let index = settings.iter().position(|s| *s == setting).unwrap_or(0);
    DASHES[index % DASHES.len()]
}

#[derive(Debug, Clone)]
pub(super) struct BandPanel {
    pub(super) title: String,
    pub(super) y_label: String,
    pub(super) series: Vec<BandSeries>,
    /// Values are log10 of the quantity; the axis shows 10^y.
    pub(super) log_y: bool,
}

pub(super) struct BandFigure {
    pub(super) title: String,
    pub(super) x_label: String,
    pub(super) panels: Vec<BandPanel>,
    /// Fixed y range, e.g. [0, 1] for fractions.
    pub(super) y_range: Option<(f64, f64)>,
}

impl Figure for BandFigure {
    fn size(&self) -> (u32, u32) {
        let (rows, cols) = grid(self.panels.len(), 3);
        (
            460 * cols as u32 + 40 + legend_width(&self.legend_entries()),
            380 * rows as u32 + 60,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let root = root
            .titled(&self.title, font(24.0))
            .map_err(drawing_error)?;
        // The legend gets a strip of its own on the right, so that it never covers a curve.
        let entries = self.legend_entries();
        let (body, legend) =
            root.split_horizontally(root.dim_in_pixel().0 - legend_width(&entries));
        draw_legend(&legend, &entries, 30)?;
        let areas = body.split_evenly(grid(self.panels.len(), 3));
        for (area, panel) in areas.iter().zip(&self.panels) {
            let all = || panel.series.iter().flat_map(|s| s.points.iter());
            let x_range = padded_range(all().map(|p| p.0), false);
            let (x_lo, x_hi) = (
                x_range
                    .0
                    .max(all().map(|p| p.0).fold(f64::INFINITY, f64::min)),
                x_range.1,
            );
            let y_range = self
                .y_range
                .unwrap_or_else(|| padded_range(all().flat_map(|p| [p.1, p.2, p.3]), !panel.log_y));
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, font(18.0))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(62)
                .build_cartesian_2d(x_lo..x_hi.max(x_lo + 1.0), y_range.0..y_range.1)
                .map_err(drawing_error)?;
            let log_y = panel.log_y;
            let y_format = move |v: &f64| {
                if log_y {
                    format!("{:.1e}", 10f64.powf(*v))
                } else {
                    format!("{v:.3}")
                        .trim_end_matches('0')
                        .trim_end_matches('.')
                        .to_string()
                }
            };
            chart
                .configure_mesh()
                .x_desc(&self.x_label)
                .x_label_formatter(&epoch_label)
                .y_desc(&panel.y_label)
                .label_style(font(13.0))
                .axis_desc_style(font(15.0))
                .light_line_style(WHITE.mix(0.0))
                .y_label_formatter(&y_format)
                .draw()
                .map_err(drawing_error)?;
            for s in &panel.series {
                let band: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .map(|p| (p.0, p.3))
                    .chain(s.points.iter().rev().map(|p| (p.0, p.2)))
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .collect();
                if band.len() >= 3 {
                    chart
                        .draw_series(std::iter::once(Polygon::new(
                            band,
                            s.colour.mix(0.18).filled(),
                        )))
                        .map_err(drawing_error)?;
                }
            }
            for s in &panel.series {
                let colour = s.colour;
                let points: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .map(|p| (p.0, p.1))
                    .filter(|(_, y)| y.is_finite())
                    .collect();
                match s.dash {
                    None => {
                        chart
                            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                            .map_err(drawing_error)?;
                    }
                    Some((dash, gap)) => {
                        chart
                            .draw_series(DashedLineSeries::new(
                                points,
                                dash,
                                gap,
                                colour.stroke_width(2),
                            ))
                            .map_err(drawing_error)?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl BandFigure {
    /// One legend entry per distinct series (label, colour, line style) over all panels, in
    /// the order they first appear.
    pub(super) fn legend_entries(&self) -> Vec<LegendEntry> {
        let mut entries: Vec<LegendEntry> = Vec::new();
        for s in self.panels.iter().flat_map(|p| &p.series) {
            let entry = LegendEntry {
                label: s.label.clone(),
                colour: s.colour,
                dash: s.dash,
            };
            if !entries.contains(&entry) {
                entries.push(entry);
            }
        }
        entries
    }
}

/// A series of curves: the runs of one activation in one setting within a dataset.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct SeriesKey {
    pub(super) activation: String,
    /// The learning rate and the other settings that vary (`load::Run::setting`).
    pub(super) setting: String,
}

/// `df` with `value` replaced by its log10, rows where it is not positive left out. In Rust: the
/// polars build here has no `log` feature, and the frames are small (a row per run and epoch, or
/// per run, layer and epoch).
pub(super) fn log10_of(df: LazyFrame, value: &str) -> Result<LazyFrame> {
    let mut positive = df.filter(col(value).gt(lit(0.0))).collect()?;
    let logged: Float64Chunked = positive
        .column(value)?
        .cast(&DataType::Float64)?
        .f64()?
        .apply_values(f64::log10);
    positive.with_column(logged.with_name(value.into()).into_column())?;
    Ok(positive.lazy())
}

/// Mean and t interval of `value` per (activation, setting, x) of `df`.
pub(super) fn band_stats(
    df: LazyFrame,
    x: &str,
    value: &str,
) -> Result<BTreeMap<SeriesKey, BandPoints>> {
    let stats = df
        .filter(col(value).is_not_null().and(col(value).is_not_nan()))
        .group_by([col("activation"), col("setting"), col(x)])
        .agg([
            col(value).mean().alias("mean"),
            col(value).std(1).alias("std"),
            len().alias("n"),
        ])
        .sort(["activation", "setting", x], Default::default())
        .collect()?;
    let activation = stats.column("activation")?.str()?.clone();
    let setting = stats.column("setting")?.str()?.clone();
    let xs = stats.column(x)?.cast(&DataType::Float64)?.f64()?.clone();
    let mean = stats.column("mean")?.f64()?.clone();
    let std = stats.column("std")?.f64()?.clone();
    let n = stats.column("n")?.cast(&DataType::Float64)?.f64()?.clone();
    let mut out: BTreeMap<SeriesKey, BandPoints> = BTreeMap::new();
    for i in 0..stats.height() {
        let key = SeriesKey {
            activation: activation.get(i).unwrap_or_default().to_string(),
            setting: setting.get(i).unwrap_or_default().to_string(),
        };
        let (m, s, n) = (
            mean.get(i).unwrap_or(f64::NAN),
            std.get(i).unwrap_or(f64::NAN),
            n.get(i).unwrap_or(0.0),
        );
        let half = if n >= 2.0 && s.is_finite() {
            let t = StudentsT::new(0.0, 1.0, n - 1.0)
                .map(|d| d.inverse_cdf(0.975))
                .unwrap_or(f64::NAN);
            t * s / n.sqrt()
        } else {
            0.0
        };
        out.entry(key)
            .or_default()
            .push((xs.get(i).unwrap_or(f64::NAN), m, m - half, m + half));
    }
    Ok(out)
}

// (f) learning curves
pub(super) fn learning_curves(ctx: &FigureContext, dataset: &str) -> Result<FigureFile> {
    let epochs = || ctx.of_dataset(&ctx.runs.epochs, dataset);
    // On a log axis: a run whose loss explodes (1e15 before it is declared collapsed) would
    // flatten every other curve on a linear one.
    let loss = band_stats(
        log10_of(epochs().filter(col("epoch").gt(lit(0u32))), "train_loss")?,
        "epoch",
        "train_loss",
    )?;
    let mut acc = band_stats(epochs(), "epoch", "test_acc")?;
    // An accuracy lies in [0, 1]; so does the band drawn around its mean.
    for points in acc.values_mut() {
        for p in points.iter_mut() {
            (p.2, p.3) = (p.2.max(0.0), p.3.min(1.0));
        }
    }
    let title = format!("Learning curves — {dataset}");
    let figure = BandFigure {
        title: title.clone(),
        x_label: "epoch".into(),
        panels: vec![
            BandPanel {
                title: "train loss (epochs 1..E, log scale)".into(),
                y_label: "mean cross-entropy".into(),
                series: ctx.series(dataset, loss),
                log_y: true,
            },
            BandPanel {
                title: "test accuracy".into(),
                y_label: "accuracy".into(),
                series: ctx.series(dataset, acc),
                log_y: false,
            },
        ],
        y_range: None,
    };
    let stem = ctx.stem("learning_curves", dataset);
    let paths = save(&figure, &ctx.out_dir, &stem)?;
    Ok(ctx.file(
        stem,
        title,
        "Train loss (mean over the epoch's minibatches; none at epoch 0; log scale: mean over seeds of log10, i.e. the geometric mean) and test accuracy; mean over seeds with 95 % t interval (for accuracy clipped to [0, 1]).".into(),
        paths,
    ))
}
