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

use crate::load::RunSet;
use crate::measures::{neuron_states, MeasureOptions, Measures, NETWORK_LAYER};
use crate::write_atomic;

mod activation;
mod band;
mod forest;
mod histogram;
mod legend;
mod raster;
mod representation;
mod strip;
#[cfg(test)]
mod test_support;

pub use activation::plot_activation_functions;
use band::*;
use forest::IntervalFigure;
pub use forest::{effect_panels, improvement_panels, iqm_panels, IntervalPanel, IntervalRow};
use histogram::*;
use legend::*;
use raster::*;
pub use representation::{is_intervention_figure, INTERVENTION_FIGURES};
use strip::*;

/// DejaVu Sans (see `assets/DejaVuSans-LICENSE.txt`), embedded so that text renders on machines
/// without fonts: plotters' ab_glyph backend draws only registered fonts.
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
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

/// Everything the figures of one report share.
pub struct FigureContext<'a> {
    pub runs: &'a RunSet,
    pub measures: &'a Measures,
    /// The statistics across seeds, for the verdict's figures.
    pub aggregate: &'a crate::aggregate::Aggregate,
    pub options: &'a MeasureOptions,
    /// Rank and saturation per condition (issue #14); None: not measured.
    pub representation: Option<&'a crate::representation::Representation>,
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
        self.of_dataset(&self.measures.layer_epoch, dataset)
    }

    /// The rows of `frame` (keyed by `run`) that belong to `dataset`'s runs, with their
    /// `activation` and `setting`.
    fn of_dataset(&self, frame: &DataFrame, dataset: &str) -> LazyFrame {
        frame
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
        self.save_bands(dataset, base, title, caption, panels, y_range)
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
        files.extend(representation::intervention_figures(ctx, d)?);
    }
    files.extend(verdict_figures(ctx)?);
    Ok(files)
}

/// The stems of the figures shown with the verdict (the report puts them at its top).
pub const VERDICT_FIGURES: [&str; 3] = ["verdict_effects", "probability_of_improvement", "iqm"];

/// The verdict's forest figures and rliable's aggregates, over every dataset and setting.
fn verdict_figures(ctx: &FigureContext) -> Result<Vec<FigureFile>> {
    let agg = ctx.aggregate;
    let figures = [
        (
            VERDICT_FIGURES[0],
            "Verdict: effects on the primary measures",
            "Each condition against the baseline in its setting (and each named contrast): the difference of a primary measure (first − second, in the measure's units) with its 95 % bootstrap interval, paired by seed where both ran the same seeds. Line at 0: no difference. Diverged runs count at their worst case (accuracy at chance, target never reached).",
            effect_panels(agg),
        ),
        (
            VERDICT_FIGURES[1],
            "Probability of improvement P(first > second)",
            "rliable's probability of improvement: the chance that a run of the first condition has a larger value than a run of the second, with its 95 % stratified bootstrap interval. Line at ½: neither tends to be larger. For epochs to a target and the dead fraction, larger is worse.",
            improvement_panels(agg),
        ),
        (
            VERDICT_FIGURES[2],
            "Interquartile mean of each condition",
            "rliable's interquartile mean (the mean of the middle half of the runs; with fewer than four runs, the mean) of each primary measure per condition, with its 95 % bootstrap interval. Conditions whose sample holds ∞ (a target never reached) are marked, not drawn.",
            iqm_panels(agg),
        ),
    ];
    let mut files = Vec::new();
    for (stem, title, caption, panels) in figures {
        if panels.is_empty() {
            continue;
        }
        let figure = IntervalFigure {
            title: title.into(),
            panels,
            palette: ctx.palette.clone(),
        };
        let paths = save(&figure, &ctx.out_dir, stem)?;
        files.push(ctx.file(stem.into(), title.into(), caption.into(), paths));
    }
    Ok(files)
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
