//! Figures of the study, each written as PNG and SVG with plotters: activation functions and
//! derivatives, dead fraction per layer, irreversibly dead fraction, neuron status rasters,
//! survival, learning curves, epochs to target, firing-rate histograms and gradient flow.
//!
//! Figures only draw: every number comes from [`Measures`], [`RunSet`] or the caller. One colour
//! per activation holds across all figures ([`Palette`]). Bands are 95 % Student t intervals of
//! the mean over seeds (no band with a single seed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{anyhow, Context, Result};
use necrosis_records::tables::neuron_columns as nc;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use polars::prelude::*;
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::load::RunSet;
use crate::measures::{neuron_states, MeasureOptions, Measures, NETWORK_LAYER};
use crate::write_atomic;

/// DejaVu Sans (see `assets/DejaVuSans-LICENSE.txt`), embedded so that text renders on machines
/// without fonts: plotters' ab_glyph backend draws only registered fonts.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER_FONT: Once = Once::new();

const FAMILY: &str = "sans-serif";

fn register_font() {
    REGISTER_FONT.call_once(|| {
        // The embedded file is a valid TrueType font; failure here is a build defect.
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .map_err(|_| ())
            .expect("embedded DejaVu Sans is a valid font");
    });
}

fn drawing_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing figure: {e:?}")
}

/// Sampled activation function f and its derivative f′ (from the trainer, which this crate does
/// not import).
#[derive(Debug, Clone, PartialEq)]
pub struct ActivationCurve {
    pub name: String,
    pub x: Vec<f64>,
    pub f: Vec<f64>,
    pub df: Vec<f64>,
}

/// Fixed colours of the activations of SPEC §1; others get a fallback colour by sorted name.
const KNOWN_COLOURS: [(&str, RGBColor); 11] = [
    ("relu", RGBColor(31, 119, 180)),
    ("softplus", RGBColor(255, 127, 14)),
    ("softsign", RGBColor(44, 160, 44)),
    ("relu-softplus", RGBColor(214, 39, 40)),
    ("relu-softsign", RGBColor(148, 103, 189)),
    ("leaky-relu", RGBColor(140, 86, 75)),
    ("elu", RGBColor(227, 119, 194)),
    ("tanh", RGBColor(127, 127, 127)),
    ("sigmoid", RGBColor(188, 189, 34)),
    ("gelu", RGBColor(23, 190, 207)),
    ("swish", RGBColor(0, 0, 128)),
];

const FALLBACK_COLOURS: [RGBColor; 8] = [
    RGBColor(0, 0, 0),
    RGBColor(255, 187, 120),
    RGBColor(152, 223, 138),
    RGBColor(255, 152, 150),
    RGBColor(197, 176, 213),
    RGBColor(196, 156, 148),
    RGBColor(158, 218, 229),
    RGBColor(128, 0, 0),
];

/// Colour of each activation, the same in every figure of a report.
#[derive(Debug, Clone, Default)]
pub struct Palette {
    unknown: Vec<String>,
}

impl Palette {
    /// A palette for the given activation names: unknown names get fallback colours in sorted order.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Palette {
        let unknown: BTreeSet<String> = names
            .into_iter()
            .filter(|n| !KNOWN_COLOURS.iter().any(|(k, _)| k == n))
            .map(str::to_string)
            .collect();
        Palette {
            unknown: unknown.into_iter().collect(),
        }
    }

    pub fn colour(&self, activation: &str) -> RGBColor {
        if let Some((_, c)) = KNOWN_COLOURS.iter().find(|(k, _)| *k == activation) {
            return *c;
        }
        let i = self
            .unknown
            .iter()
            .position(|n| n == activation)
            .unwrap_or(self.unknown.len());
        FALLBACK_COLOURS[i % FALLBACK_COLOURS.len()]
    }
}

/// Something drawable on any plotters backend, so that PNG and SVG come from the same code.
trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// Writes `<out_dir>/<stem>.svg` and `<stem>.png` atomically; returns both paths (SVG first).
fn save<F: Figure>(figure: &F, out_dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    register_font();
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let size = figure.size();
    let svg_path = out_dir.join(format!("{stem}.svg"));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(drawing_error)?;
        figure
            .draw(&root)
            .with_context(|| format!("drawing {}", svg_path.display()))?;
        root.present().map_err(drawing_error)?;
    }
    write_atomic(&svg_path, svg.as_bytes())?;

    let png_path = out_dir.join(format!("{stem}.png"));
    // The bitmap backend picks the encoder from the extension, so the temporary name ends in .png.
    let tmp = out_dir.join(format!(".{stem}.tmp-{}.png", std::process::id()));
    {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(drawing_error)?;
        figure
            .draw(&root)
            .with_context(|| format!("drawing {}", png_path.display()))?;
        root.present().map_err(drawing_error)?;
    }
    std::fs::rename(&tmp, &png_path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), png_path.display()))?;
    Ok(vec![svg_path, png_path])
}

fn font(size: f64) -> TextStyle<'static> {
    (FAMILY, size).into_font().into()
}

/// Near-square grid for `n` panels, at most `max_cols` wide.
fn grid(n: usize, max_cols: usize) -> (usize, usize) {
    let cols = n.clamp(1, max_cols);
    (n.div_ceil(cols).max(1), cols)
}

/// Epoch axes show whole epochs only.
fn epoch_label(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round() as i64)
    } else {
        String::new()
    }
}

fn padded_range(values: impl Iterator<Item = f64>, floor_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if floor_zero {
        lo = lo.min(0.0);
    }
    if hi - lo < 1e-12 {
        hi = lo + 1.0;
    }
    let pad = 0.05 * (hi - lo);
    (
        if floor_zero && lo >= 0.0 {
            lo
        } else {
            lo - pad
        },
        hi + pad,
    )
}

// ---------------------------------------------------------------------------------------------
// (a) activation functions
// ---------------------------------------------------------------------------------------------

struct ActivationFigure<'a> {
    curves: &'a [ActivationCurve],
    palette: Palette,
}

impl Figure for ActivationFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (1200, 520)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let root = root
            .titled("Activation functions f and derivatives f′", font(24.0))
            .map_err(drawing_error)?;
        let panels = root.split_evenly((1, 2));
        for (panel, (title, pick)) in panels.iter().zip([
            (
                "f(x)",
                (|c: &ActivationCurve| c.f.clone()) as fn(&ActivationCurve) -> Vec<f64>,
            ),
            ("f′(x)", |c: &ActivationCurve| c.df.clone()),
        ]) {
            let x_range = padded_range(self.curves.iter().flat_map(|c| c.x.iter().copied()), false);
            let y_range = padded_range(self.curves.iter().flat_map(pick), false);
            let mut chart = ChartBuilder::on(panel)
                .caption(title, font(20.0))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(55)
                .build_cartesian_2d(x_range.0..x_range.1, y_range.0..y_range.1)
                .map_err(drawing_error)?;
            chart
                .configure_mesh()
                .x_desc("x")
                .y_desc(title)
                .label_style(font(14.0))
                .axis_desc_style(font(16.0))
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(drawing_error)?;
            for curve in self.curves {
                let colour = self.palette.colour(&curve.name);
                let ys = pick(curve);
                chart
                    .draw_series(LineSeries::new(
                        curve
                            .x
                            .iter()
                            .copied()
                            .zip(ys)
                            .filter(|(x, y)| x.is_finite() && y.is_finite()),
                        colour.stroke_width(2),
                    ))
                    .map_err(drawing_error)?
                    .label(curve.name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3))
                    });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(font(14.0))
                .draw()
                .map_err(drawing_error)?;
        }
        Ok(())
    }
}

/// Draws f and f′ of each activation side by side; writes `activation_functions.{svg,png}`.
pub fn plot_activation_functions(
    curves: &[ActivationCurve],
    out_dir: &Path,
) -> Result<Vec<PathBuf>> {
    let palette = Palette::new(curves.iter().map(|c| c.name.as_str()));
    save(
        &ActivationFigure { curves, palette },
        out_dir,
        "activation_functions",
    )
}

// ---------------------------------------------------------------------------------------------
// Line-with-band panels: (b) dead fraction, (e) survival, (f) learning curves, (i) gradient flow
// ---------------------------------------------------------------------------------------------

/// (x, mean, low, high) of one curve.
type BandPoints = Vec<(f64, f64, f64, f64)>;

/// One curve over seeds: mean and 95 % t interval at each x.
#[derive(Debug, Clone)]
struct BandSeries {
    label: String,
    colour: RGBColor,
    /// Dash length and gap in pixels for the series' setting; `None`: solid. Colour tells the
    /// activations apart and the dash the settings (learning rate, optimiser, ...).
    dash: Option<(u32, u32)>,
    /// (x, mean, low, high)
    points: BandPoints,
}

/// The line styles of a dataset's settings, in the order of `settings`: solid, dashed, dotted,
/// long dashes, then again.
fn dash_of(settings: &[&str], setting: &str) -> Option<(u32, u32)> {
    const DASHES: [Option<(u32, u32)>; 4] = [None, Some((10, 6)), Some((3, 4)), Some((18, 6))];
    let index = settings.iter().position(|s| *s == setting).unwrap_or(0);
    DASHES[index % DASHES.len()]
}

#[derive(Debug, Clone)]
struct BandPanel {
    title: String,
    y_label: String,
    series: Vec<BandSeries>,
    /// Values are log10 of the quantity; the axis shows 10^y.
    log_y: bool,
}

struct BandFigure {
    title: String,
    x_label: String,
    panels: Vec<BandPanel>,
    /// Fixed y range, e.g. [0, 1] for fractions.
    y_range: Option<(f64, f64)>,
}

impl Figure for BandFigure {
    fn size(&self) -> (u32, u32) {
        let (rows, cols) = grid(self.panels.len(), 3);
        (460 * cols as u32 + 40, 380 * rows as u32 + 60)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let root = root
            .titled(&self.title, font(24.0))
            .map_err(drawing_error)?;
        let areas = root.split_evenly(grid(self.panels.len(), 3));
        for (i, (area, panel)) in areas.iter().zip(&self.panels).enumerate() {
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
                            .map_err(drawing_error)?
                            .label(s.label.clone())
                            .legend(move |(x, y)| {
                                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3))
                            });
                    }
                    Some((dash, gap)) => {
                        chart
                            .draw_series(DashedLineSeries::new(
                                points,
                                dash,
                                gap,
                                colour.stroke_width(2),
                            ))
                            .map_err(drawing_error)?
                            .label(s.label.clone())
                            .legend(move |(x, y)| {
                                plotters::element::DashedPathElement::new(
                                    vec![(x, y), (x + 24, y)],
                                    dash,
                                    gap,
                                    colour.stroke_width(3),
                                )
                            });
                    }
                }
            }
            if i == 0 {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font(font(13.0))
                    .draw()
                    .map_err(drawing_error)?;
            }
        }
        Ok(())
    }
}

/// A series of curves: the runs of one activation in one setting within a dataset.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SeriesKey {
    activation: String,
    /// The learning rate and the other settings that vary (`load::Run::setting`).
    setting: String,
}

/// `df` with `value` replaced by its log10, rows where it is not positive left out. In Rust: the
/// polars build here has no `log` feature, and the frames are small (a row per run and epoch, or
/// per run, layer and epoch).
fn log10_of(df: LazyFrame, value: &str) -> Result<LazyFrame> {
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
fn band_stats(df: LazyFrame, x: &str, value: &str) -> Result<BTreeMap<SeriesKey, BandPoints>> {
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

/// Everything the figures of one report share.
pub struct FigureContext<'a> {
    pub runs: &'a RunSet,
    pub measures: &'a Measures,
    pub options: &'a MeasureOptions,
    pub palette: Palette,
    pub out_dir: PathBuf,
}

/// One written figure.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FigureFile {
    /// File stem, e.g. `dead_fraction_digits`.
    pub stem: String,
    pub title: String,
    pub caption: String,
    pub svg: PathBuf,
    pub png: PathBuf,
}

impl FigureContext<'_> {
    fn datasets(&self) -> Vec<String> {
        self.runs
            .runs
            .iter()
            .map(|r| r.dataset.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Whether the series of `dataset` need their setting in the label (several settings per
    /// activation).
    fn label_setting(&self, dataset: &str) -> bool {
        let mut seen: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for r in self.runs.runs.iter().filter(|r| r.dataset == dataset) {
            seen.entry(&r.activation).or_default().insert(&r.setting);
        }
        seen.values().any(|settings| settings.len() > 1)
    }

    fn series(
        &self,
        dataset: &str,
        stats: BTreeMap<SeriesKey, Vec<(f64, f64, f64, f64)>>,
    ) -> Vec<BandSeries> {
        let with_setting = self.label_setting(dataset);
        let mut settings: Vec<&str> = self
            .runs
            .runs
            .iter()
            .filter(|r| r.dataset == dataset)
            .map(|r| r.setting.as_str())
            .collect();
        settings.sort();
        settings.dedup();
        stats
            .into_iter()
            .map(|(key, points)| BandSeries {
                label: if with_setting {
                    format!("{} ({})", key.activation, key.setting)
                } else {
                    key.activation.clone()
                },
                colour: self.palette.colour(&key.activation),
                dash: dash_of(&settings, &key.setting),
                points,
            })
            .collect()
    }

    fn stem(&self, base: &str, dataset: &str) -> String {
        let safe: String = dataset
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{base}_{safe}")
    }

    fn file(
        &self,
        stem: String,
        title: String,
        caption: String,
        paths: Vec<PathBuf>,
    ) -> FigureFile {
        FigureFile {
            stem,
            title,
            caption,
            svg: paths[0].clone(),
            png: paths[1].clone(),
        }
    }

    /// `layer_epoch` with the run-level columns, for one dataset.
    fn layer_epoch(&self, dataset: &str) -> LazyFrame {
        self.measures
            .layer_epoch
            .clone()
            .lazy()
            .join(
                self.runs.run_table().lazy().select([
                    col("run"),
                    col("activation"),
                    col("dataset"),
                    col("setting"),
                ]),
                [col("run")],
                [col("run")],
                JoinArgs::new(JoinType::Inner),
            )
            .filter(col("dataset").eq(lit(dataset.to_string())))
    }

    /// Layers of `dataset` in site order, then the network: (layer, panel title).
    fn layers(&self, dataset: &str) -> Result<Vec<(i64, String)>> {
        let df = self
            .layer_epoch(dataset)
            .group_by([col("layer")])
            .agg([col(nc::LAYER_NAME).first()])
            .sort(["layer"], Default::default())
            .collect()?;
        let layer = df.column("layer")?.i64()?.clone();
        let name = df.column("layer_name")?.str()?.clone();
        let mut out: Vec<(i64, String)> = (0..df.height())
            .filter_map(|i| Some((layer.get(i)?, name.get(i)?.to_string())))
            .filter(|(l, _)| *l != NETWORK_LAYER)
            .map(|(l, n)| (l, format!("layer {l}: {n}")))
            .collect();
        out.push((NETWORK_LAYER, "whole network".into()));
        Ok(out)
    }

    /// One panel per layer (and the network) of a `layer_epoch` column against epoch.
    #[allow(clippy::too_many_arguments)]
    fn layer_band_figure(
        &self,
        dataset: &str,
        value: &str,
        base: &str,
        title: &str,
        y_label: &str,
        caption: &str,
        y_range: Option<(f64, f64)>,
        log_y: bool,
    ) -> Result<FigureFile> {
        let mut panels = Vec::new();
        for (layer, panel_title) in self.layers(dataset)? {
            let mut df = self
                .layer_epoch(dataset)
                .filter(col("layer").eq(lit(layer)));
            if log_y {
                df = log10_of(df, value)?;
            }
            let stats = band_stats(df, "epoch", value)?;
            panels.push(BandPanel {
                title: panel_title,
                y_label: y_label.into(),
                series: self.series(dataset, stats),
                log_y,
            });
        }
        let title = format!("{title} — {dataset}");
        let figure = BandFigure {
            title: title.clone(),
            x_label: "epoch".into(),
            panels,
            y_range,
        };
        let stem = self.stem(base, dataset);
        let paths = save(&figure, &self.out_dir, &stem)?;
        Ok(self.file(stem, title, caption.into(), paths))
    }
}

/// Draws every figure of a report (except the activation functions, which need the trainer's
/// curves) into `ctx.out_dir`.
pub fn draw_report_figures(ctx: &FigureContext) -> Result<Vec<FigureFile>> {
    let mut files = Vec::new();
    if ctx.runs.runs.is_empty() {
        return Ok(files);
    }
    for dataset in ctx.datasets() {
        let d = dataset.as_str();
        files.push(ctx.layer_band_figure(
            d,
            "dead_frac",
            "dead_fraction",
            "Dead fraction per layer",
            "dead fraction (max_pre ≤ 0)",
            "Share of dead neurons (max_pre ≤ 0 on the probe set) per epoch; line: mean over seeds, band: 95 % t interval.",
            Some((0.0, 1.0)),
            false,
        )?);
        files.push(ctx.layer_band_figure(
            d,
            "survival",
            "survival",
            "Survival S(e)",
            "share never dead up to e",
            "Survival S(e): share of neurons not dead at any epoch up to e; mean over seeds with 95 % t interval.",
            Some((0.0, 1.0)),
            false,
        )?);
        files.push(ctx.layer_band_figure(
            d,
            "grad_pre_abs_mean",
            "gradient_flow",
            "Gradient flow: mean |∂L/∂z|",
            "mean |∂L/∂z| (log10)",
            "Mean over neurons of the per-neuron mean |∂L/∂z| during training (epochs 1..E), log scale; mean over seeds of the log10 value with 95 % t interval. Layers or epochs with zero gradient everywhere are not drawn.",
            None,
            true,
        )?);
        files.push(learning_curves(ctx, d)?);
        files.push(irreversibly_dead(ctx, d)?);
        files.push(epochs_to_target(ctx, d)?);
        files.push(status_raster(ctx, d)?);
        files.push(firing_rate_histograms(ctx, d)?);
    }
    Ok(files)
}

// (f) learning curves
fn learning_curves(ctx: &FigureContext, dataset: &str) -> Result<FigureFile> {
    let epochs = || {
        ctx.runs
            .epochs
            .clone()
            .lazy()
            .join(
                ctx.runs.run_table().lazy().select([
                    col("run"),
                    col("activation"),
                    col("dataset"),
                    col("setting"),
                ]),
                [col("run")],
                [col("run")],
                JoinArgs::new(JoinType::Inner),
            )
            .filter(col("dataset").eq(lit(dataset.to_string())))
    };
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

// ---------------------------------------------------------------------------------------------
// Strip plots: (c) irreversibly dead fraction, (g) epochs to target
// ---------------------------------------------------------------------------------------------

struct StripFigure {
    title: String,
    y_label: String,
    /// (label, colour, values); +∞ values are drawn in a "never" row above the axis maximum.
    groups: Vec<(String, RGBColor, Vec<f64>)>,
    box_plot: bool,
    y_floor_zero: bool,
}

fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = q * (v.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    if i + 1 < v.len() {
        v[i] + frac * (v[i + 1] - v[i])
    } else {
        v[i]
    }
}

impl Figure for StripFigure {
    fn size(&self) -> (u32, u32) {
        ((170 * self.groups.len() as u32).max(500) + 120, 520)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let finite: Vec<f64> = self
            .groups
            .iter()
            .flat_map(|g| g.2.iter().copied())
            .filter(|v| v.is_finite())
            .collect();
        let has_never = self.groups.iter().any(|g| g.2.contains(&f64::INFINITY));
        let (lo, hi) = padded_range(finite.iter().copied(), self.y_floor_zero);
        // The "never" row sits one step above the finite values.
        let never_y = hi + 0.12 * (hi - lo);
        let top = if has_never {
            never_y + 0.08 * (hi - lo)
        } else {
            hi
        };
        let n = self.groups.len();
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, font(22.0))
            .margin(14)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), lo..top)
            .map_err(drawing_error)?;
        let names: Vec<String> = self.groups.iter().map(|g| g.0.clone()).collect();
        let x_format = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                names[i as usize].clone()
            } else {
                String::new()
            }
        };
        let y_format = |y: &f64| {
            if *y > hi {
                String::new()
            } else {
                format!("{y:.3}")
                    .trim_end_matches('0')
                    .trim_end_matches('.')
                    .to_string()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n + 1)
            .x_label_formatter(&x_format)
            .y_label_formatter(&y_format)
            .y_desc(&self.y_label)
            .label_style(font(14.0))
            .axis_desc_style(font(16.0))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(drawing_error)?;
        if has_never {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![
                        (-0.5, (hi + never_y) / 2.0),
                        (n as f64 - 0.5, (hi + never_y) / 2.0),
                    ],
                    BLACK.mix(0.3).stroke_width(1),
                )))
                .map_err(drawing_error)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    "never",
                    (-0.48, never_y),
                    font(14.0).color(&BLACK),
                )))
                .map_err(drawing_error)?;
        }
        for (i, (_, colour, values)) in self.groups.iter().enumerate() {
            let x = i as f64;
            let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
            sorted.sort_by(f64::total_cmp);
            if self.box_plot && sorted.len() >= 2 {
                let (q1, q2, q3) = (
                    quantile_sorted(&sorted, 0.25),
                    quantile_sorted(&sorted, 0.5),
                    quantile_sorted(&sorted, 0.75),
                );
                let style = colour.stroke_width(2);
                chart
                    .draw_series([
                        PathElement::new(
                            vec![
                                (x - 0.25, q1),
                                (x + 0.25, q1),
                                (x + 0.25, q3),
                                (x - 0.25, q3),
                                (x - 0.25, q1),
                            ],
                            style,
                        ),
                        PathElement::new(
                            vec![(x - 0.25, q2), (x + 0.25, q2)],
                            colour.stroke_width(3),
                        ),
                        PathElement::new(vec![(x, sorted[0]), (x, q1)], style),
                        PathElement::new(vec![(x, q3), (x, sorted[sorted.len() - 1])], style),
                    ])
                    .map_err(drawing_error)?;
            }
            // Deterministic jitter so that equal values stay visible without a random source.
            let points = values.iter().enumerate().filter_map(|(k, v)| {
                let y = if *v == f64::INFINITY { never_y } else { *v };
                y.is_finite().then(|| {
                    let jitter = ((k as f64 * 0.618_033_988_7).fract() - 0.5) * 0.3;
                    Circle::new((x + jitter, y), 4, colour.mix(0.75).filled())
                })
            });
            chart.draw_series(points).map_err(drawing_error)?;
        }
        Ok(())
    }
}

/// Per-run values of a `per_run` column for each activation (and setting) of `dataset`.
fn per_run_groups(
    ctx: &FigureContext,
    dataset: &str,
    column: &str,
) -> Result<Vec<(String, RGBColor, Vec<f64>)>> {
    let df = ctx
        .measures
        .per_run
        .clone()
        .lazy()
        .filter(col("dataset").eq(lit(dataset.to_string())))
        .select([
            col("activation"),
            col("setting"),
            col(column).cast(DataType::Float64).alias("value"),
        ])
        .sort(["activation", "setting"], Default::default())
        .collect()?;
    let activation = df.column("activation")?.str()?.clone();
    let setting = df.column("setting")?.str()?.clone();
    let value = df.column("value")?.f64()?.clone();
    let with_setting = ctx.label_setting(dataset);
    let mut groups: Vec<(String, RGBColor, Vec<f64>)> = Vec::new();
    for i in 0..df.height() {
        let a = activation.get(i).unwrap_or_default();
        let label = if with_setting {
            // One line: the embedded font has no glyph for a line break.
            format!("{a}, {}", setting.get(i).unwrap_or_default())
        } else {
            a.to_string()
        };
        let v = value.get(i).unwrap_or(f64::NAN);
        match groups.last_mut() {
            Some(g) if g.0 == label => g.2.push(v),
            _ => groups.push((label, ctx.palette.colour(a), vec![v])),
        }
    }
    Ok(groups)
}

// (c)
fn irreversibly_dead(ctx: &FigureContext, dataset: &str) -> Result<FigureFile> {
    let title = format!("Irreversibly dead fraction — {dataset}");
    let figure = StripFigure {
        title: title.clone(),
        y_label: "irreversibly dead fraction of neurons".into(),
        groups: per_run_groups(ctx, dataset, "irreversibly_dead_frac")?,
        box_plot: true,
        y_floor_zero: true,
    };
    let stem = ctx.stem("irreversibly_dead", dataset);
    let paths = save(&figure, &ctx.out_dir, &stem)?;
    Ok(ctx.file(
        stem,
        title,
        format!(
            "Share of neurons dead at E whose time of death is at most E − {} (w = {}); one point per seed, box: quartiles and median.",
            ctx.options.dead_window, ctx.options.dead_window
        ),
        paths,
    ))
}

// (g)
fn epochs_to_target(ctx: &FigureContext, dataset: &str) -> Result<FigureFile> {
    let (column, what) = match ctx.options.target_acc {
        Some(t) => ("epochs_to_target", format!("test accuracy ≥ {t}")),
        None => (
            "epochs_to_99",
            "99 % of the run's best test accuracy".to_string(),
        ),
    };
    let title = format!("Epochs to target — {dataset}");
    let figure = StripFigure {
        title: title.clone(),
        y_label: format!("epochs until {what}"),
        groups: per_run_groups(ctx, dataset, column)?,
        box_plot: false,
        y_floor_zero: true,
    };
    let stem = ctx.stem("epochs_to_target", dataset);
    let paths = save(&figure, &ctx.out_dir, &stem)?;
    Ok(ctx.file(
        stem,
        title,
        format!("Epochs until {what}, one point per seed; runs that never reached it are drawn in the \"never\" row."),
        paths,
    ))
}

// ---------------------------------------------------------------------------------------------
// (d) neuron status raster
// ---------------------------------------------------------------------------------------------

const ALIVE: RGBColor = RGBColor(222, 232, 245);
const DEAD: RGBColor = RGBColor(30, 30, 30);
const REVIVED: RGBColor = RGBColor(255, 160, 0);

/// Status of every neuron of one run: rows in layer order (within a layer, by time of first
/// death so that the pattern is readable), each a list of (first epoch, last epoch, status) runs.
struct RasterPanel {
    title: String,
    epochs: u32,
    /// Per row: runs of equal status; status 0 alive, 1 dead, 2 alive after having died.
    rows: Vec<Vec<(u32, u32, u8)>>,
    /// Row indices where a new layer starts, with the layer's name.
    layer_starts: Vec<(usize, String)>,
}

struct RasterFigure {
    title: String,
    panels: Vec<RasterPanel>,
}

impl Figure for RasterFigure {
    fn size(&self) -> (u32, u32) {
        let (rows, cols) = grid(self.panels.len(), 4);
        (330 * cols as u32 + 40, 560 * rows as u32 + 100)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let root = root
            .titled(&self.title, font(24.0))
            .map_err(drawing_error)?;
        let (body, legend) = root.split_vertically(root.dim_in_pixel().1 - 40);
        let areas = body.split_evenly(grid(self.panels.len(), 4));
        for (area, panel) in areas.iter().zip(&self.panels) {
            let n = panel.rows.len().max(1) as f64;
            let e = panel.epochs as f64;
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, font(17.0))
                .margin(8)
                .x_label_area_size(38)
                .y_label_area_size(62)
                .build_cartesian_2d(-0.5..e + 0.5, n..0.0)
                .map_err(drawing_error)?;
            let starts = panel.layer_starts.clone();
            let y_format = move |y: &f64| {
                starts
                    .iter()
                    .find(|(s, _)| (*s as f64 - *y).abs() < 1e-9)
                    .map(|(_, name)| name.clone())
                    .unwrap_or_default()
            };
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("epoch")
                .x_label_formatter(&epoch_label)
                .y_desc("neurons by layer")
                .y_labels(0)
                .label_style(font(13.0))
                .axis_desc_style(font(14.0))
                .y_label_formatter(&y_format)
                .draw()
                .map_err(drawing_error)?;
            // Alive is the background; only dead and revived stretches are drawn, merged along
            // epochs, which keeps the SVG small for large layers.
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(-0.5, 0.0), (e + 0.5, n)],
                    ALIVE.filled(),
                )))
                .map_err(drawing_error)?;
            let cells = panel.rows.iter().enumerate().flat_map(|(row, runs)| {
                runs.iter()
                    .filter(|r| r.2 != 0)
                    .map(move |&(from, to, status)| {
                        let colour = if status == 1 { DEAD } else { REVIVED };
                        Rectangle::new(
                            [
                                (from as f64 - 0.5, row as f64),
                                (to as f64 + 0.5, row as f64 + 1.0),
                            ],
                            colour.filled(),
                        )
                    })
            });
            chart.draw_series(cells).map_err(drawing_error)?;
            for (start, name) in &panel.layer_starts {
                if *start > 0 {
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(-0.5, *start as f64), (e + 0.5, *start as f64)],
                            RGBColor(200, 0, 0).stroke_width(2),
                        )))
                        .map_err(drawing_error)?;
                }
                chart
                    .draw_series(std::iter::once(Text::new(
                        name.clone(),
                        (-0.3, *start as f64 + 0.02 * n),
                        font(13.0).color(&RGBColor(200, 0, 0)),
                    )))
                    .map_err(drawing_error)?;
            }
        }
        let (w, _) = legend.dim_in_pixel();
        let mut x = (w as i32 / 2 - 220).max(10);
        for (label, colour) in [
            ("alive", ALIVE),
            ("dead (max_pre ≤ 0)", DEAD),
            ("revived (alive after dying)", REVIVED),
        ] {
            legend
                .draw(&Rectangle::new([(x, 10), (x + 18, 28)], colour.filled()))
                .map_err(drawing_error)?;
            legend
                .draw(&Rectangle::new(
                    [(x, 10), (x + 18, 28)],
                    BLACK.stroke_width(1),
                ))
                .map_err(drawing_error)?;
            legend
                .draw(&Text::new(label, (x + 24, 11), font(15.0)))
                .map_err(drawing_error)?;
            x += 24 + 9 * label.chars().count() as i32 + 30;
        }
        Ok(())
    }
}

fn status_raster(ctx: &FigureContext, dataset: &str) -> Result<FigureFile> {
    // One run per activation: the one with the lowest seed (then lowest lr).
    let mut chosen: BTreeMap<&str, &crate::load::Run> = BTreeMap::new();
    for r in ctx.runs.runs.iter().filter(|r| r.dataset == dataset) {
        let e = chosen.entry(&r.activation).or_insert(r);
        if (r.seed, r.lr.to_bits()) < (e.seed, e.lr.to_bits()) {
            *e = r;
        }
    }
    let mut panels = Vec::new();
    for run in chosen.values() {
        let states = neuron_states(ctx.runs.neurons_of(run.index), ctx.options)?
            .select([
                col("layer"),
                col(nc::LAYER_NAME),
                col("neuron"),
                col("epoch"),
                col("dead"),
                col("first_dead"),
            ])
            .sort(
                ["layer", "first_dead", "neuron", "epoch"],
                SortMultipleOptions::default().with_nulls_last(true),
            )
            .collect()?;
        let layer = states.column("layer")?.u32()?.clone();
        let name = states.column("layer_name")?.str()?.clone();
        let neuron = states.column("neuron")?.u32()?.clone();
        let epoch = states.column("epoch")?.u32()?.clone();
        let dead = states.column("dead")?.bool()?.clone();
        let first_dead = states.column("first_dead")?.u32()?.clone();
        let mut rows: Vec<Vec<(u32, u32, u8)>> = Vec::new();
        let mut layer_starts = Vec::new();
        let mut current: Option<(u32, u32)> = None;
        for i in 0..states.height() {
            let (l, nr, e) = (
                layer.get(i).unwrap_or(0),
                neuron.get(i).unwrap_or(0),
                epoch.get(i).unwrap_or(0),
            );
            if current != Some((l, nr)) {
                if current.map(|c| c.0) != Some(l) {
                    layer_starts.push((rows.len(), name.get(i).unwrap_or_default().to_string()));
                }
                current = Some((l, nr));
                rows.push(Vec::new());
            }
            let status = if dead.get(i).unwrap_or(false) {
                1
            } else if first_dead.get(i).is_some_and(|f| f < e) {
                2
            } else {
                0
            };
            let row = rows.last_mut().expect("pushed above");
            match row.last_mut() {
                Some(last) if last.2 == status && last.1 + 1 == e => last.1 = e,
                _ => row.push((e, e, status)),
            }
        }
        panels.push(RasterPanel {
            title: format!("{} (seed {})", run.activation, run.seed),
            epochs: run.epochs_completed,
            rows,
            layer_starts,
        });
    }
    let title = format!("Neuron status per epoch — {dataset}");
    let stem = ctx.stem("neuron_status", dataset);
    let paths = save(
        &RasterFigure {
            title: title.clone(),
            panels,
        },
        &ctx.out_dir,
        &stem,
    )?;
    Ok(ctx.file(
        stem,
        title,
        "One run per activation (lowest seed): each row a neuron (grouped by layer, ordered by first death), each column an epoch; dark: dead, orange: alive again after having died, light: alive.".into(),
        paths,
    ))
}

// ---------------------------------------------------------------------------------------------
// (h) firing-rate histograms
// ---------------------------------------------------------------------------------------------

const BINS: usize = 20;

struct HistogramFigure {
    title: String,
    /// Column headers (layers) and row headers (activations).
    layers: Vec<String>,
    activations: Vec<(String, RGBColor)>,
    /// [activation][layer] → (share per bin at epoch 0, share per bin at E).
    shares: Vec<Vec<([f64; BINS], [f64; BINS])>>,
}

impl Figure for HistogramFigure {
    fn size(&self) -> (u32, u32) {
        (
            330 * self.layers.len().max(1) as u32 + 40,
            230 * self.activations.len().max(1) as u32 + 110,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let root = root
            .titled(&self.title, font(24.0))
            .map_err(drawing_error)?;
        let (body, legend) = root.split_vertically(root.dim_in_pixel().1 - 36);
        let areas = body.split_evenly((self.activations.len().max(1), self.layers.len().max(1)));
        for (a, (activation, colour)) in self.activations.iter().enumerate() {
            for (l, layer) in self.layers.iter().enumerate() {
                let area = &areas[a * self.layers.len() + l];
                let (first, last) = &self.shares[a][l];
                let top = first
                    .iter()
                    .chain(last)
                    .fold(0.0f64, |m, v| m.max(*v))
                    .max(0.05)
                    * 1.1;
                let mut chart = ChartBuilder::on(area)
                    .caption(format!("{activation} — {layer}"), font(15.0))
                    .margin(6)
                    .x_label_area_size(32)
                    .y_label_area_size(48)
                    .build_cartesian_2d(0.0..1.0, 0.0..top)
                    .map_err(drawing_error)?;
                chart
                    .configure_mesh()
                    .disable_x_mesh()
                    .x_desc("active_frac")
                    .y_desc("share")
                    .x_labels(6)
                    .y_labels(4)
                    .label_style(font(12.0))
                    .axis_desc_style(font(13.0))
                    .light_line_style(WHITE.mix(0.0))
                    .draw()
                    .map_err(drawing_error)?;
                let width = 1.0 / BINS as f64;
                // Last epoch filled in the activation's colour, initialisation as a black outline
                // on top, so that both stay visible where they overlap.
                chart
                    .draw_series(last.iter().enumerate().map(|(b, v)| {
                        Rectangle::new(
                            [(b as f64 * width, 0.0), ((b + 1) as f64 * width, *v)],
                            colour.mix(0.7).filled(),
                        )
                    }))
                    .map_err(drawing_error)?;
                let outline: Vec<(f64, f64)> = first
                    .iter()
                    .enumerate()
                    .flat_map(|(b, v)| [(b as f64 * width, *v), ((b + 1) as f64 * width, *v)])
                    .collect();
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        std::iter::once((0.0, 0.0))
                            .chain(outline)
                            .chain(std::iter::once((1.0, 0.0)))
                            .collect::<Vec<_>>(),
                        BLACK.stroke_width(2),
                    )))
                    .map_err(drawing_error)?;
            }
        }
        let x = 20;
        legend
            .draw(&PathElement::new(
                vec![(x, 26), (x, 10), (x + 18, 10), (x + 18, 26)],
                BLACK.stroke_width(2),
            ))
            .map_err(drawing_error)?;
        legend
            .draw(&Text::new(
                "epoch 0 (initialisation): black outline",
                (x + 24, 9),
                font(15.0),
            ))
            .map_err(drawing_error)?;
        let x = x + 360;
        legend
            .draw(&Rectangle::new(
                [(x, 8), (x + 18, 26)],
                RGBColor(120, 120, 120).mix(0.7).filled(),
            ))
            .map_err(drawing_error)?;
        legend
            .draw(&Text::new(
                "last epoch E: filled, in the activation's colour",
                (x + 24, 9),
                font(15.0),
            ))
            .map_err(drawing_error)?;
        Ok(())
    }
}

/// Runs per query of the firing-rate histograms.
const HISTOGRAM_BATCH_RUNS: usize = 64;

fn firing_rate_histograms(ctx: &FigureContext, dataset: &str) -> Result<FigureFile> {
    // Neurons of all seeds of an activation pooled, at epoch 0 and at each run's last epoch.
    // Each run's two epochs are picked from its own scan, before anything is joined, so only
    // those rows are ever read into memory.
    let picked: Vec<LazyFrame> = ctx
        .runs
        .runs
        .iter()
        .filter(|r| r.dataset == dataset)
        .map(|r| {
            ctx.runs
                .neurons_of(r.index)
                .filter(
                    col("epoch")
                        .eq(lit(0u32))
                        .or(col("epoch").eq(lit(r.epochs_completed))),
                )
                .with_column(lit(r.activation.clone()).alias("activation"))
        })
        .collect();
    if picked.is_empty() {
        anyhow::bail!("no complete run of {dataset}");
    }
    let mut layers: BTreeMap<u32, String> = BTreeMap::new();
    let mut counts: BTreeMap<(String, u32, bool), [f64; BINS]> = BTreeMap::new();
    // Runs are counted a batch at a time: one query over a thousand files at once holds a
    // read buffer for each of them.
    for batch in picked.chunks(HISTOGRAM_BATCH_RUNS) {
        let df = concat(batch, UnionArgs::default())?
            .with_columns([
                col("epoch").gt(lit(0u32)).alias("is_last"),
                // active_frac is in [0, 1]: truncation is the floor, and 1.0 joins the last bin.
                when(col(nc::ACTIVE_FRAC).gt_eq(lit(1.0)))
                    .then(lit(BINS as i64 - 1))
                    .otherwise((col(nc::ACTIVE_FRAC) * lit(BINS as f64)).cast(DataType::Int64))
                    .alias("bin"),
            ])
            .group_by([col("activation"), col("layer"), col("is_last"), col("bin")])
            .agg([
                col(nc::LAYER_NAME).first(),
                len().cast(DataType::Float64).alias("count"),
            ])
            .collect()?;
        let activation = df.column("activation")?.str()?.clone();
        let layer = df.column("layer")?.u32()?.clone();
        let layer_name = df.column("layer_name")?.str()?.clone();
        let is_last = df.column("is_last")?.bool()?.clone();
        let bin = df.column("bin")?.i64()?.clone();
        let count = df.column("count")?.f64()?.clone();
        for i in 0..df.height() {
            let (Some(a), Some(l), Some(last), Some(b), Some(c)) = (
                activation.get(i),
                layer.get(i),
                is_last.get(i),
                bin.get(i),
                count.get(i),
            ) else {
                continue;
            };
            layers.insert(l, layer_name.get(i).unwrap_or_default().to_string());
            counts
                .entry((a.to_string(), l, last))
                .or_insert([0.0; BINS])[b as usize] += c;
        }
    }
    let activations: Vec<String> = counts
        .keys()
        .map(|k| k.0.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let share = |a: &str, l: u32, last: bool| {
        let mut c = counts
            .get(&(a.to_string(), l, last))
            .copied()
            .unwrap_or([0.0; BINS]);
        let total: f64 = c.iter().sum();
        if total > 0.0 {
            c.iter_mut().for_each(|v| *v /= total);
        }
        c
    };
    let shares = activations
        .iter()
        .map(|a| {
            layers
                .keys()
                .map(|&l| (share(a, l, false), share(a, l, true)))
                .collect()
        })
        .collect();
    let title = format!("Firing rate (active_frac) per layer — {dataset}");
    let figure = HistogramFigure {
        title: title.clone(),
        layers: layers
            .iter()
            .map(|(l, n)| format!("layer {l}: {n}"))
            .collect(),
        activations: activations
            .iter()
            .map(|a| (a.clone(), ctx.palette.colour(a)))
            .collect(),
        shares,
    };
    let stem = ctx.stem("firing_rate", dataset);
    let paths = save(&figure, &ctx.out_dir, &stem)?;
    Ok(ctx.file(
        stem,
        title,
        "Histogram of active_frac (share of probe observations with z > 0) over the neurons of all seeds, at initialisation (black outline) and at the last epoch (filled, colour); a dead neuron has active_frac 0.".into(),
        paths,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_figure_is_written_as_png_and_svg() {
        let tmp = tempfile::tempdir().unwrap();
        let x: Vec<f64> = (0..201).map(|i| -4.0 + 0.04 * i as f64).collect();
        let relu = ActivationCurve {
            name: "relu".into(),
            f: x.iter().map(|v| v.max(0.0)).collect(),
            df: x.iter().map(|v| if *v > 0.0 { 1.0 } else { 0.0 }).collect(),
            x: x.clone(),
        };
        let softsign = ActivationCurve {
            name: "relu-softsign".into(),
            f: x.iter()
                .map(|v| if *v > 0.0 { *v } else { v / (1.0 - v) })
                .collect(),
            df: x
                .iter()
                .map(|v| {
                    if *v > 0.0 {
                        1.0
                    } else {
                        1.0 / (1.0 - v).powi(2)
                    }
                })
                .collect(),
            x,
        };
        let paths = plot_activation_functions(&[relu, softsign], tmp.path()).unwrap();
        assert_eq!(paths.len(), 2);
        for p in &paths {
            let size = std::fs::metadata(p).unwrap().len();
            assert!(size > 5_000, "{} is only {size} bytes", p.display());
        }
        let svg = std::fs::read_to_string(&paths[0]).unwrap();
        assert!(svg.contains("relu-softsign"));
        let png = std::fs::read(&paths[1]).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    #[test]
    fn palette_is_fixed_for_known_names_and_stable_for_others() {
        let p = Palette::new(["zeta", "relu", "alpha"]);
        assert_eq!(p.colour("relu"), RGBColor(31, 119, 180));
        assert_eq!(p.colour("alpha"), FALLBACK_COLOURS[0]);
        assert_eq!(p.colour("zeta"), FALLBACK_COLOURS[1]);
    }

    #[test]
    fn bands_are_the_mean_and_t_interval_over_seeds() {
        // One series (relu at one setting), epoch 1 over three seeds: 1, 2, 3. Mean 2, sd 1,
        // half-width t(0.975, 2) · 1/√3 = 4.302653 · 0.577350 = 2.484138.
        let df = df!(
            "activation" => ["relu"; 3],
            "setting" => ["lr 0.01"; 3],
            "epoch" => [1u32; 3],
            "value" => [1.0, 2.0, 3.0],
        )
        .unwrap();
        let bands = band_stats(df.clone().lazy(), "epoch", "value").unwrap();
        let (key, points) = bands.into_iter().next().unwrap();
        assert_eq!(
            (key.activation.as_str(), key.setting.as_str()),
            ("relu", "lr 0.01")
        );
        let (x, mean, low, high) = points[0];
        assert_eq!((x, mean), (1.0, 2.0));
        assert!((low - (2.0 - 2.484138)).abs() < 1e-5 && (high - (2.0 + 2.484138)).abs() < 1e-5);
        // On a log axis the band is over log10: 0, log10 2, log10 3 have mean 0.259384.
        let logged = band_stats(log10_of(df.lazy(), "value").unwrap(), "epoch", "value").unwrap();
        let mean = logged.values().next().unwrap()[0].1;
        assert!((mean - (2f64.log10() + 3f64.log10()) / 3.0).abs() < 1e-12);
    }
}
