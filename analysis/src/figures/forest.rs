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
    pub title: String,
    pub x_label: String,
    /// Where "no effect" is drawn.
    pub reference: Option<f64>,
    /// A fixed axis range (e.g. [0, 1] for a probability).
    pub x_range: Option<(f64, f64)>,
    pub rows: Vec<IntervalRow>,
}

/// Names a comparison for a row: "relu-softsign vs relu", plus its setting and dataset when the
/// rows of the figure hold more than one of either.
fn comparison_label(c: &ComparisonRow, settings: bool, datasets: bool) -> String {
    let mut label = format!("{} vs {}", c.activation, c.other);
    if settings {
        label.push_str(&format!(", {}", c.setting));
    }
    if datasets {
        label.push_str(&format!(" ({})", c.dataset));
    }
    label
}

/// Whether `values` hold more than one distinct value.
fn several<'a>(values: impl Iterator<Item = &'a str>) -> bool {
    let mut seen: Vec<&str> = values.collect();
    seen.sort();
    seen.dedup();
    seen.len() > 1
}

/// Panels of the primary comparisons, one per primary measure in [`PRIMARY_MEASURES`] order.
fn comparison_panels(
    agg: &Aggregate,
    panel: impl Fn(&str) -> (String, String, Option<f64>, Option<(f64, f64)>),
    value: impl Fn(&ComparisonRow) -> Option<(f64, (f64, f64))>,
) -> Vec<IntervalPanel> {
    let primary: Vec<&ComparisonRow> = agg.comparisons.iter().filter(|c| c.primary).collect();
    let settings = several(primary.iter().map(|c| c.setting.as_str()));
    let datasets = several(primary.iter().map(|c| c.dataset.as_str()));
    PRIMARY_MEASURES
        .iter()
        .filter_map(|measure| {
            let rows: Vec<IntervalRow> = primary
                .iter()
                .filter(|c| c.measure == *measure)
                .filter_map(|c| {
                    let (estimate, interval) = value(c)?;
                    Some(IntervalRow {
                        label: comparison_label(c, settings, datasets),
                        activation: c.activation.clone(),
                        estimate,
                        interval,
                    })
                })
                .collect();
            let (title, x_label, reference, x_range) = panel(measure);
            (!rows.is_empty()).then_some(IntervalPanel {
                title,
                x_label,
                reference,
                x_range,
                rows,
            })
        })
        .collect()
}

/// The verdict's effects: each primary comparison's difference (first − second condition, in
/// the measure's units) with its bootstrap interval.
pub fn effect_panels(agg: &Aggregate) -> Vec<IntervalPanel> {
    comparison_panels(
        agg,
        |m| {
            (
                measure_label(m).to_string(),
                "difference (first − second)".into(),
                Some(0.0),
                None,
            )
        },
        |c| c.difference.map(|d| (d.estimate, d.interval)),
    )
}

/// rliable's probability of improvement: P(X > Y) of each primary comparison with its
/// stratified bootstrap interval.
pub fn improvement_panels(agg: &Aggregate) -> Vec<IntervalPanel> {
    comparison_panels(
        agg,
        |m| {
            (
                measure_label(m).to_string(),
                "P(first > second)".into(),
                Some(0.5),
                Some((0.0, 1.0)),
            )
        },
        |c| Some((c.comparison.prob_superiority, c.prob_superiority_ci)),
    )
}

/// rliable's interquartile mean of each condition on each primary measure, with its bootstrap
/// interval.
pub fn iqm_panels(agg: &Aggregate) -> Vec<IntervalPanel> {
    let primary: Vec<_> = agg
        .summaries
        .iter()
        .filter(|s| PRIMARY_MEASURES.contains(&s.measure))
        .collect();
    let settings = several(primary.iter().map(|s| s.setting.as_str()));
    let datasets = several(primary.iter().map(|s| s.dataset.as_str()));
    PRIMARY_MEASURES
        .iter()
        .filter_map(|measure| {
            let rows: Vec<IntervalRow> = primary
                .iter()
                .filter(|s| s.measure == *measure && s.summary.n > 0)
                .map(|s| {
                    let mut label = s.activation.clone();
                    if settings {
                        label.push_str(&format!(", {}", s.setting));
                    }
                    if datasets {
                        label.push_str(&format!(" ({})", s.dataset));
                    }
                    IntervalRow {
                        label,
                        activation: s.activation.clone(),
                        estimate: s.summary.iqm,
                        interval: s.iqm_ci,
                    }
                })
                .collect();
            (!rows.is_empty()).then(|| IntervalPanel {
                title: measure_label(measure).to_string(),
                x_label: "interquartile mean".into(),
                reference: None,
                x_range: None,
                rows,
            })
        })
        .collect()
}

/// A forest figure: panels side by side in a grid, rows labelled on the left.
pub(super) struct IntervalFigure {
    pub(super) title: String,
    pub(super) panels: Vec<IntervalPanel>,
    pub(super) palette: Palette,
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
        let (rows, cols) = grid(self.panels.len(), 2);
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
        let areas = root.split_evenly(grid(self.panels.len(), 2));
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
        chart
            .configure_mesh()
            .x_desc(&panel.x_label)
            .y_labels(n as usize + 2)
            .y_label_formatter(&y_format)
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
    fn effect_rows_are_the_primary_differences_labelled_by_setting() {
        let panels = effect_panels(&two_settings());
        // Only final accuracy is primary and present (dead_frac_final is exploratory).
        assert_eq!(panels.len(), 1);
        let p = &panels[0];
        assert_eq!(p.title, "final test accuracy");
        assert_eq!(p.reference, Some(0.0));
        let labels: Vec<&str> = p.rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["elu vs relu, lr 0.01", "elu vs relu, lr 0.1"]);
        // Paired by seed: at lr 0.1 the differences are 0.1, 0.1, 0.1 (mean 0.1, a resample
        // of equal values is that value); at lr 0.01 −0.05, −0.05, −0.05.
        let row = |label: &str| p.rows.iter().find(|r| r.label == label).unwrap();
        let high = row("elu vs relu, lr 0.1");
        assert!((high.estimate - 0.1).abs() < 1e-12);
        assert!((high.interval.0 - 0.1).abs() < 1e-12 && (high.interval.1 - 0.1).abs() < 1e-12);
        assert!((row("elu vs relu, lr 0.01").estimate + 0.05).abs() < 1e-12);
        assert_eq!(high.activation, "elu");
    }

    #[test]
    fn improvement_rows_are_probabilities_around_one_half() {
        let panels = improvement_panels(&two_settings());
        let p = &panels[0];
        assert_eq!((p.reference, p.x_range), (Some(0.5), Some((0.0, 1.0))));
        // At lr 0.1 every elu value exceeds every relu value: P(X > Y) = 1. At lr 0.01, elu
        // {0.85, 0.86, 0.9} against relu {0.9, 0.91, 0.95}: of the 9 pairs none has elu ahead
        // and one ties (0.9, 0.9), which counts ½: P = ½ / 9.
        let value = |label: &str| p.rows.iter().find(|r| r.label == label).unwrap().estimate;
        assert!((value("elu vs relu, lr 0.1") - 1.0).abs() < 1e-12);
        assert!((value("elu vs relu, lr 0.01") - 0.5 / 9.0).abs() < 1e-12);
    }

    #[test]
    fn iqm_rows_are_one_per_condition() {
        let panels = iqm_panels(&two_settings());
        let p = &panels[0];
        assert_eq!(p.rows.len(), 4);
        // rliable's IQM is scipy.stats.trim_mean(x, 0.25), which cuts floor(0.25 · 3) = 0
        // values from each end of three: the mean, (0.8 + 0.82 + 0.81) / 3 = 0.81.
        let relu = p.rows.iter().find(|r| r.label == "relu, lr 0.1").unwrap();
        let expected = 0.81;
        assert!(
            (relu.estimate - expected).abs() < 1e-12,
            "{}",
            relu.estimate
        );
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
        assert!(svg.contains("elu vs relu, lr 0.01") && svg.contains("elu vs relu, lr 0.1"));
    }
}
