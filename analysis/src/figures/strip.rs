//! Strip plots of per-run values: (c) irreversibly dead fraction, (g) epochs to target.

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::*;

use super::*;

pub(super) struct StripFigure {
    pub(super) title: String,
    pub(super) y_label: String,
    /// (label, colour, values); +∞ values are drawn in a "never" row above the axis maximum.
    pub(super) groups: Vec<(String, RGBColor, Vec<f64>)>,
    pub(super) box_plot: bool,
    pub(super) y_floor_zero: bool,
}

pub(super) fn quantile_sorted(v: &[f64], q: f64) -> f64 {
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
        // Each condition's column is as wide as its label under the axis (14 px type, about
        // 8 px per character), so that labels naming several settings do not run together.
        let longest = self
            .groups
            .iter()
            .map(|g| g.0.chars().count() as u32)
            .max()
            .unwrap_or(0);
        let column = 170.max(8 * longest + 20);
        ((column * self.groups.len() as u32).max(500) + 120, 520)
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
/// Per-run values of a `per_run` column for each activation (and setting) of `dataset`, in
/// label order; the diverged runs join their condition where the column has a worst case
/// (`crate::worst_case`: never reaching a target is +∞, drawn in the "never" row).
pub(super) fn per_run_groups(
    ctx: &FigureContext,
    dataset: &str,
    column: &str,
) -> Result<Vec<(String, RGBColor, Vec<f64>)>> {
    let select = |frame: &DataFrame| {
        frame
            .clone()
            .lazy()
            .filter(col("dataset").eq(lit(dataset.to_string())))
            .select([
                col("activation"),
                col("setting"),
                col(column).cast(DataType::Float64).alias("value"),
            ])
    };
    let mut frames = vec![select(&ctx.measures.per_run)];
    let diverged = &ctx.measures.diverged;
    if diverged.height() > 0 && diverged.column(column).is_ok() {
        frames.push(select(diverged));
    }
    let df = concat(frames, UnionArgs::default())?
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
pub(super) fn irreversibly_dead(ctx: &FigureContext, dataset: &str) -> Result<FigureFile> {
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
pub(super) fn epochs_to_target(ctx: &FigureContext, dataset: &str) -> Result<FigureFile> {
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
        format!("Epochs until {what}, one point per seed; runs that never reached it, diverged runs among them, are drawn in the \"never\" row."),
        paths,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::test_support::Fixture;
    use crate::load::RunStatus;
    use crate::measures::MeasureOptions;
    use crate::synthetic::{write_run, EpochRecord, NeuronRecord, RunSpec};

    #[test]
    fn strip_groups_hold_each_runs_value_and_diverged_runs_as_never() {
        // relu seeds 0 and 1 complete, seed 2 diverged after epoch 1; target 0.9. Seed 0 reaches
        // it at epoch 2 (0.5, 0.9), seed 1 at epoch 1 (0.95); the diverged run never does.
        let options = MeasureOptions {
            target_acc: Some(0.9),
            ..MeasureOptions::default()
        };
        let fixture = Fixture::new(options, |root| {
            let runs = [
                (0, vec![0.1, 0.5, 0.9], RunStatus::Complete),
                (1, vec![0.1, 0.95, 0.96], RunStatus::Complete),
                (2, vec![0.1, 0.3], RunStatus::Diverged),
            ];
            for (seed, accs, status) in runs {
                let epochs: Vec<EpochRecord> = accs
                    .iter()
                    .enumerate()
                    .map(|(e, &a)| EpochRecord::new(e as u32, a, (e > 0).then_some(1.0)))
                    .collect();
                let neurons: Vec<NeuronRecord> = (0..epochs.len() as u32)
                    .map(|e| NeuronRecord::alive(e, 0, 0))
                    .collect();
                let mut spec = RunSpec::new(
                    "s",
                    "digits",
                    "relu",
                    seed,
                    0.05,
                    2,
                    vec![("fc1".into(), 1)],
                );
                spec.status = status;
                write_run(root, &spec, &epochs, &neurons).unwrap();
            }
        });
        let ctx = fixture.context();
        let groups = per_run_groups(&ctx, "digits", "epochs_to_target").unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].0, "relu");
        let mut values = groups[0].2.clone();
        values.sort_by(f64::total_cmp);
        assert_eq!(values, [1.0, 2.0, f64::INFINITY]);
        // The dead fraction has no worst case: the two complete runs only, no neuron dead.
        let dead = per_run_groups(&ctx, "digits", "irreversibly_dead_frac").unwrap();
        assert_eq!(dead[0].2, [0.0, 0.0]);
    }
}
