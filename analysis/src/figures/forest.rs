//! Forest figures of the verdict and of rliable's aggregates: one panel per primary measure, one
//! row per comparison (or condition), a point at the estimate and a line over its 95 % interval,
//! with a reference line where "no effect" is (0 for a difference, ½ for P(X > Y)).
//!
//! The rows are built by pure functions from the [`Aggregate`] ([`effect_panels`],
//! [`improvement_panels`], [`iqm_panels`]) and tested as data; [`IntervalFigure`] only draws them.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::Palette;
use super::*;
use crate::aggregate::{measure_label, Aggregate, ComparisonRow, PRIMARY_MEASURES};

/// One row of a forest panel.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalRow {
    pub label: String,
    /// Colours the row (the first condition's activation).
    pub activation: String,
    pub estimate: f64,
    /// The 95 % interval; NaN when none could be computed (n < 2, ∞ in a sample).
    pub interval: (f64, f64),
}

/// One panel: a measure's rows.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalPanel {
    /// The measure's column (one of [`PRIMARY_MEASURES`]).
    pub measure: &'static str,
    pub title: String,
    pub x_label: String,
    /// Where "no effect" is drawn.
    pub reference: Option<f64>,
    /// A fixed axis range (e.g. [0, 1] for a probability).
    pub x_range: Option<(f64, f64)>,
    pub rows: Vec<IntervalRow>,
}

/// The strata of a figure: (dataset, setting) in the order first seen. Each gets a panel of its
/// own per measure, so that a setting whose effects are small is not drawn on the scale of one
/// whose effects are large.
fn strata<'a>(keys: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for key in keys {
        if !seen.contains(&key) {
            seen.push(key);
        }
    }
    seen
}

/// A panel's title: the measure, then its stratum when the figure has several.
fn panel_title(measure: &str, stratum: (&str, &str), strata: &[(&str, &str)]) -> String {
    let (dataset, setting) = stratum;
    let mut title = measure_label(measure).to_string();
    if strata.iter().any(|s| s.1 != setting) {
        title.push_str(&format!(", {setting}"));
    }
    if !dataset.is_empty() && strata.iter().any(|s| !s.0.is_empty() && s.0 != dataset) {
        title.push_str(&format!(" ({dataset})"));
    }
    title
}

/// The stratum a comparison is drawn in: its dataset and setting, or one stratum for all the
/// named contrasts (each spans settings of its own choosing).
fn stratum_of(c: &ComparisonRow) -> (&str, &str) {
    if c.setting.starts_with(CONTRAST_PREFIX) {
        ("", "named contrasts")
    } else {
        (c.dataset.as_str(), c.setting.as_str())
    }
}

/// How the aggregate names a contrast's stratum (`contrast: <spec>`).
const CONTRAST_PREFIX: &str = "contrast: ";

/// A comparison's row label: "relu-softsign vs relu"; for a named contrast its spec, without the
/// `activation=` keys that every side has.
fn row_label(c: &ComparisonRow) -> String {
    match c.setting.strip_prefix(CONTRAST_PREFIX) {
        Some(spec) => spec.replace("activation=", ""),
        None => format!("{} vs {}", c.activation, c.other),
    }
}

/// Panels of the primary comparisons: one per primary measure (in [`PRIMARY_MEASURES`] order)
/// and stratum, one row per comparison.
fn comparison_panels(
    agg: &Aggregate,
    panel: impl Fn() -> (String, Option<f64>, Option<(f64, f64)>),
    value: impl Fn(&ComparisonRow) -> Option<(f64, (f64, f64))>,
) -> Vec<IntervalPanel> {
    let primary: Vec<&ComparisonRow> = agg.comparisons.iter().filter(|c| c.primary).collect();
    let strata = strata(primary.iter().map(|c| stratum_of(c)));
    let mut panels = Vec::new();
    for measure in PRIMARY_MEASURES {
        for &stratum in &strata {
            let rows: Vec<IntervalRow> = primary
                .iter()
                .filter(|c| c.measure == *measure && stratum_of(c) == stratum)
                .filter_map(|c| {
                    let (estimate, interval) = value(c)?;
                    Some(IntervalRow {
                        label: row_label(c),
                        activation: c.activation.clone(),
                        estimate,
                        interval,
                    })
                })
                .collect();
            if rows.is_empty() {
                continue;
            }
            let (x_label, reference, x_range) = panel();
            panels.push(IntervalPanel {
                measure,
                title: panel_title(measure, stratum, &strata),
                x_label,
                reference,
                x_range,
                rows,
            });
        }
    }
    panels
}

/// The verdict's effects: each primary comparison's difference (first − second condition, in
/// the measure's units) with its bootstrap interval.
pub fn effect_panels(agg: &Aggregate) -> Vec<IntervalPanel> {
    comparison_panels(
        agg,
        || ("difference (first − second)".into(), Some(0.0), None),
        |c| c.difference.map(|d| (d.estimate, d.interval)),
    )
}

/// rliable's probability of improvement: P(X > Y) of each primary comparison with its
/// stratified bootstrap interval.
pub fn improvement_panels(agg: &Aggregate) -> Vec<IntervalPanel> {
    comparison_panels(
        agg,
        || ("P(first > second)".into(), Some(0.5), Some((0.0, 1.0))),
        |c| Some((c.comparison.prob_superiority, c.prob_superiority_ci)),
    )
}

/// rliable's interquartile mean of each condition on each primary measure, with its bootstrap
/// interval.
pub fn iqm_panels(agg: &Aggregate) -> Vec<IntervalPanel> {
    let primary: Vec<_> = agg
        .summaries
        .iter()
        .filter(|s| PRIMARY_MEASURES.contains(&s.measure) && s.summary.n > 0)
        .collect();
    let strata = strata(
        primary
            .iter()
            .map(|s| (s.dataset.as_str(), s.setting.as_str())),
    );
    let mut panels = Vec::new();
    for measure in PRIMARY_MEASURES {
        for &stratum in &strata {
            let rows: Vec<IntervalRow> = primary
                .iter()
                .filter(|s| {
                    s.measure == *measure && (s.dataset.as_str(), s.setting.as_str()) == stratum
                })
                .map(|s| IntervalRow {
                    // A condition summarised by some of its runs says so (diverged runs have no
                    // neuron measures).
                    label: if s.undefined > 0 {
                        format!("{} (n = {} of {})", s.activation, s.summary.n, s.runs)
                    } else {
                        s.activation.clone()
                    },
                    activation: s.activation.clone(),
                    estimate: s.summary.iqm,
                    interval: s.iqm_ci,
                })
                .collect();
            if !rows.is_empty() {
                panels.push(IntervalPanel {
                    measure,
                    title: panel_title(measure, stratum, &strata),
                    x_label: "interquartile mean".into(),
                    reference: None,
                    x_range: None,
                    rows,
                });
            }
        }
    }
    panels
}

/// A forest figure: panels side by side in a grid, rows labelled on the left.
pub(super) struct IntervalFigure {
    pub(super) title: String,
    pub(super) panels: Vec<IntervalPanel>,
    pub(super) palette: Palette,
}

impl IntervalFigure {
    /// Panel columns: one per stratum (a measure per row), at most 3; 2 with a single stratum.
    fn columns(&self) -> usize {
        // Panels come measure by measure, so equal measures are neighbours.
        let mut measures: Vec<&str> = self.panels.iter().map(|p| p.measure).collect();
        measures.dedup();
        let measures = measures.len().max(1);
        match self.panels.len() / measures {
            0 | 1 => 2,
            n => n.min(3),
        }
    }
}

/// Pixels per row and for a panel's caption and axis.
const ROW_HEIGHT: u32 = 30;
const PANEL_EXTRA: u32 = 110;

impl IntervalFigure {
    /// Room for the longest row label at the 13-point label font (about 7 px a character).
    fn label_width(&self) -> u32 {
        let chars = self
            .panels
            .iter()
            .flat_map(|p| &p.rows)
            .map(|r| r.label.chars().count())
            .max()
            .unwrap_or(0) as u32;
        (7 * chars + 24).clamp(100, 460)
    }
}

impl Figure for IntervalFigure {
    fn size(&self) -> (u32, u32) {
        let (rows, cols) = grid(self.panels.len(), self.columns());
        let most_rows = self.panels.iter().map(|p| p.rows.len()).max().unwrap_or(1) as u32;
        (
            (self.label_width() + 380) * cols as u32,
            (ROW_HEIGHT * most_rows + PANEL_EXTRA) * rows as u32 + 50,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let root = root
            .titled(&self.title, font(24.0))
            .map_err(drawing_error)?;
        let areas = root.split_evenly(grid(self.panels.len(), self.columns()));
        for (area, panel) in areas.iter().zip(&self.panels) {
            self.draw_panel(area, panel)?;
        }
        Ok(())
    }
}

impl IntervalFigure {
    fn draw_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        panel: &IntervalPanel,
    ) -> Result<()> {
        let n = panel.rows.len() as i32;
        let (lo, hi) = panel.x_range.unwrap_or_else(|| {
            padded_range(
                panel
                    .rows
                    .iter()
                    .flat_map(|r| [r.estimate, r.interval.0, r.interval.1])
                    .chain(panel.reference),
                false,
            )
        });
        // Row i from the top at y = n − 1 − i; integer y values, so every row gets its label.
        let labels: Vec<String> = panel.rows.iter().rev().map(|r| r.label.clone()).collect();
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, font(17.0))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(self.label_width())
            .build_cartesian_2d(lo..hi, -1..n)
            .map_err(drawing_error)?;
        let y_format = |y: &i32| labels.get(*y as usize).cloned().unwrap_or_default();
        // Short ticks: three decimals (scientific below 0.01), and no "-0" for a rounding of a
        // tiny negative tick.
        let x_format = |x: &f64| {
            if x.abs() < 1e-12 {
                return "0".to_string();
            }
            if x.abs() < 0.01 {
                return format!("{x:.1e}");
            }
            let text = format!("{x:.3}");
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        };
        chart
            .configure_mesh()
            .x_desc(&panel.x_label)
            .y_labels(n as usize + 2)
            .y_label_formatter(&y_format)
            .x_label_formatter(&x_format)
            .x_labels(6)
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(drawing_error)?;
        if let Some(r) = panel.reference {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(r, -1), (r, n)],
                    BLACK.mix(0.5).stroke_width(1),
                )))
                .map_err(drawing_error)?;
        }
        for (i, row) in panel.rows.iter().enumerate() {
            let y = n - 1 - i as i32;
            let colour = self.palette.colour(&row.activation);
            let (a, b) = row.interval;
            if a.is_finite() && b.is_finite() {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(a, y), (b, y)],
                        colour.stroke_width(3),
                    )))
                    .map_err(drawing_error)?;
            }
            if row.estimate.is_finite() {
                chart
                    .draw_series(std::iter::once(Circle::new(
                        (row.estimate, y),
                        5,
                        colour.filled(),
                    )))
                    .map_err(drawing_error)?;
            } else {
                // ∞ in a sample (a target never reached) or no estimate: said, not drawn.
                let text = if row.estimate.is_nan() {
                    "n/a"
                } else {
                    "∞ (never reached): see the ranked test"
                };
                chart
                    .draw_series(std::iter::once(Text::new(
                        text.to_string(),
                        (lo + 0.02 * (hi - lo), y),
                        font(12.0).color(&BLACK.mix(0.7)),
                    )))
                    .map_err(drawing_error)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{aggregate, AggregateOptions};
    use crate::measures::Measures;

    /// Three seeds of relu and elu at two learning rates; elu ahead by 0.1 at lr 0.1 and behind
    /// by 0.05 at lr 0.01, seed for seed.
    fn two_settings() -> Aggregate {
        let per_run = df!(
            "dataset" => ["d"; 12],
            "activation" => ["relu", "relu", "relu", "elu", "elu", "elu",
                             "relu", "relu", "relu", "elu", "elu", "elu"],
            "setting" => ["lr 0.1", "lr 0.1", "lr 0.1", "lr 0.1", "lr 0.1", "lr 0.1",
                          "lr 0.01", "lr 0.01", "lr 0.01", "lr 0.01", "lr 0.01", "lr 0.01"],
            "seed" => [0u64, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2],
            "final_acc" => [0.8, 0.82, 0.81, 0.9, 0.92, 0.91, 0.9, 0.91, 0.95, 0.85, 0.86, 0.9],
            "dead_frac_final" => [0.3; 12],
        )
        .unwrap();
        let measures = Measures {
            layer_epoch: DataFrame::empty(),
            neuron_fate: DataFrame::empty(),
            run_layer: DataFrame::empty(),
            per_run,
            diverged: DataFrame::empty(),
            resets: None,
        };
        let opts = AggregateOptions {
            baseline: Some("relu".into()),
            all_pairs: false,
            seed: 3,
            contrasts: Vec::new(),
        };
        aggregate(&measures, &opts).unwrap()
    }

    #[test]
    fn effect_panels_are_one_per_measure_and_setting() {
        let panels = effect_panels(&two_settings());
        // Only final accuracy is primary and present (dead_frac_final is exploratory); one panel
        // per setting, so that each has its own scale.
        let titles: Vec<&str> = panels.iter().map(|p| p.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "final test accuracy, lr 0.01",
                "final test accuracy, lr 0.1"
            ]
        );
        assert!(panels.iter().all(|p| p.reference == Some(0.0)));
        let row = |panel: usize| {
            assert_eq!(panels[panel].rows.len(), 1);
            &panels[panel].rows[0]
        };
        assert_eq!(
            (row(0).label.as_str(), row(0).activation.as_str()),
            ("elu vs relu", "elu")
        );
        // Paired by seed: at lr 0.1 the differences are 0.1, 0.1, 0.1 (mean 0.1, and every
        // resample of equal values is that value); at lr 0.01 −0.05, −0.05, −0.05.
        let high = row(1);
        assert!((high.estimate - 0.1).abs() < 1e-12);
        assert!((high.interval.0 - 0.1).abs() < 1e-12 && (high.interval.1 - 0.1).abs() < 1e-12);
        assert!((row(0).estimate + 0.05).abs() < 1e-12);
    }

    #[test]
    fn improvement_rows_are_probabilities_around_one_half() {
        let panels = improvement_panels(&two_settings());
        assert!(panels
            .iter()
            .all(|p| (p.reference, p.x_range) == (Some(0.5), Some((0.0, 1.0)))));
        // At lr 0.1 every elu value exceeds every relu value: P(X > Y) = 1. At lr 0.01, elu
        // {0.85, 0.86, 0.9} against relu {0.9, 0.91, 0.95}: of the 9 pairs none has elu ahead
        // and one ties (0.9, 0.9), which counts ½: P = ½ / 9.
        assert!((panels[1].rows[0].estimate - 1.0).abs() < 1e-12);
        assert!((panels[0].rows[0].estimate - 0.5 / 9.0).abs() < 1e-12);
    }

    #[test]
    fn iqm_rows_are_one_per_condition() {
        let panels = iqm_panels(&two_settings());
        assert_eq!(panels.len(), 2);
        assert_eq!(panels[1].title, "final test accuracy, lr 0.1");
        let labels: Vec<&str> = panels[1].rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["elu", "relu"]);
        // rliable's IQM is scipy.stats.trim_mean(x, 0.25), which cuts floor(0.25 · 3) = 0
        // values from each end of three: the mean, (0.8 + 0.82 + 0.81) / 3 = 0.81.
        assert!((panels[1].rows[1].estimate - 0.81).abs() < 1e-12);
    }

    #[test]
    fn forest_figure_draws_every_row() {
        let agg = two_settings();
        let figure = IntervalFigure {
            title: "Effects".into(),
            panels: effect_panels(&agg),
            palette: Palette::new(["relu", "elu"]),
        };
        let tmp = tempfile::tempdir().unwrap();
        let paths = save(&figure, tmp.path(), "effects").unwrap();
        let svg = std::fs::read_to_string(&paths[0]).unwrap();
        assert!(svg.contains("final test accuracy, lr 0.01") && svg.contains("elu vs relu"));
    }
}
