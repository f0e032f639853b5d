//! Figures of interventions and representations (issue #14), each drawn only where its records
//! exist: the effective rank per layer, the resets per epoch and the saturation of the network,
//! one line per condition.
//!
//! Conditions here often share an activation (relu with and without an intervention), so a
//! condition gets a colour of its own whenever an activation's colour would be shared: two
//! conditions are never drawn in one colour.

use std::collections::BTreeMap;

use anyhow::Result;
use plotters::prelude::RGBColor;
use polars::prelude::*;

use super::*;
use crate::representation::Representation;

/// File stems (before `_<dataset>`) of the figures shown in the report's section on
/// interventions and representations rather than among the other figures.
pub const INTERVENTION_FIGURES: [&str; 3] = ["rank", "resets", "saturation"];

/// Whether a figure stem belongs to [`INTERVENTION_FIGURES`].
pub fn is_intervention_figure(stem: &str) -> bool {
    INTERVENTION_FIGURES.iter().any(|base| {
        stem.strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('_'))
    })
}

impl FigureContext<'_> {
    /// One solid line per condition of `dataset`, each in a colour no other condition has: the
    /// activation's colour when each activation is one condition, else one from a list of
    /// distinct colours by the conditions' order (and dashed only past its end).
    fn condition_series(
        &self,
        dataset: &str,
        stats: BTreeMap<SeriesKey, BandPoints>,
    ) -> Vec<BandSeries> {
        let mut conditions: Vec<(&str, &str)> = self
            .runs
            .runs
            .iter()
            .filter(|r| r.dataset == dataset)
            .map(|r| (r.activation.as_str(), r.setting.as_str()))
            .collect();
        conditions.sort();
        conditions.dedup();
        let one_per_activation = conditions.windows(2).all(|pair| pair[0].0 != pair[1].0);
        let distinct: Vec<RGBColor> = KNOWN_COLOURS
            .iter()
            .map(|(_, c)| *c)
            .chain(FALLBACK_COLOURS)
            .collect();
        // Conditions that differ in their setting only (an intervention or not) must say so,
        // even when each activation has one setting.
        let with_setting = conditions
            .iter()
            .any(|c| c.1 != conditions.first().map_or("", |f| f.1));
        stats
            .into_iter()
            .map(|(key, points)| {
                let index = conditions
                    .iter()
                    .position(|c| *c == (key.activation.as_str(), key.setting.as_str()))
                    .unwrap_or(conditions.len());
                let (colour, dash) = if one_per_activation {
                    (self.palette.colour(&key.activation), None)
                } else {
                    // Past the distinct colours, the line style keeps conditions apart.
                    let cycle = (index / distinct.len()) % 4;
                    (
                        distinct[index % distinct.len()],
                        dash_of(&["0", "1", "2", "3"], &cycle.to_string()),
                    )
                };
                BandSeries {
                    label: if with_setting {
                        format!("{} ({})", key.activation, key.setting)
                    } else {
                        key.activation.clone()
                    },
                    colour,
                    dash,
                    points,
                }
            })
            .collect()
    }

    /// Saves `panels` against epoch as the figure `<base>_<dataset>` titled `title — dataset`.
    pub(super) fn save_bands(
        &self,
        dataset: &str,
        base: &str,
        title: &str,
        caption: &str,
        panels: Vec<BandPanel>,
        y_range: Option<(f64, f64)>,
    ) -> Result<FigureFile> {
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

/// (activation, setting) → (epoch, mean, low, high) from a per-condition frame of `dataset`.
fn condition_points(
    frame: &DataFrame,
    dataset: &str,
    filter: Expr,
    [mean, low, high]: [&str; 3],
) -> Result<BTreeMap<SeriesKey, BandPoints>> {
    let df = frame
        .clone()
        .lazy()
        .filter(col("dataset").eq(lit(dataset.to_string())).and(filter))
        .filter(col(mean).is_not_null())
        .sort(["activation", "setting", "epoch"], Default::default())
        .collect()?;
    let text = |c: &str| -> Result<Vec<String>> {
        Ok(df
            .column(c)?
            .str()?
            .iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect())
    };
    let number = |c: &str| crate::aggregate::f64_column(&df, c);
    let (activation, setting) = (text("activation")?, text("setting")?);
    let (epoch, m, lo, hi) = (number("epoch")?, number(mean)?, number(low)?, number(high)?);
    let mut out: BTreeMap<SeriesKey, BandPoints> = BTreeMap::new();
    for i in 0..df.height() {
        out.entry(SeriesKey {
            activation: activation[i].clone(),
            setting: setting[i].clone(),
        })
        .or_default()
        .push((epoch[i], m[i], lo[i], hi[i]));
    }
    Ok(out)
}

/// (i) Effective rank as a share of the site's neurons, one panel per layer.
fn rank_figure(
    ctx: &FigureContext,
    rep: &Representation,
    dataset: &str,
) -> Result<Option<FigureFile>> {
    let Some(layers) = &rep.layers else {
        return Ok(None);
    };
    let sites = layers
        .clone()
        .lazy()
        .filter(col("dataset").eq(lit(dataset.to_string())))
        .group_by([col("layer")])
        .agg([col("layer_name").first()])
        .sort(["layer"], Default::default())
        .collect()?;
    if sites.height() == 0 {
        return Ok(None);
    }
    let layer = crate::aggregate::f64_column(&sites, "layer")?;
    let name = sites.column("layer_name")?.str()?.clone();
    let mut panels = Vec::new();
    for (i, l) in layer.iter().enumerate() {
        let points = condition_points(
            layers,
            dataset,
            col("layer").eq(lit(*l as u32)),
            [
                "effective_rank_share_mean",
                "effective_rank_share_min",
                "effective_rank_share_max",
            ],
        )?;
        panels.push(BandPanel {
            title: format!("layer {l}: {}", name.get(i).unwrap_or_default()),
            y_label: "effective rank / neurons".into(),
            series: ctx.condition_series(dataset, points),
            log_y: false,
        });
    }
    Ok(Some(ctx.save_bands(
        dataset,
        "rank",
        "Effective rank per layer",
        "Effective rank (Roy & Vetterli 2007) of each activation site's probe features as a share of its neurons, the largest rank it can have; line: mean over seeds, band: range over seeds.",
        panels,
        Some((0.0, 1.0)),
    )?))
}

/// (ii) Reset rows per epoch, mean over the condition's seeds (those without resets count 0).
fn resets_figure(ctx: &FigureContext, dataset: &str) -> Result<Option<FigureFile>> {
    let Some(resets) = &ctx.measures.resets else {
        return Ok(None);
    };
    let per_epoch = resets
        .clone()
        .lazy()
        .group_by([col("run"), col("epoch")])
        .agg([len().cast(DataType::Float64).alias("resets")])
        .collect()?;
    let run = crate::aggregate::f64_column(&per_epoch, "run")?;
    let epoch = crate::aggregate::f64_column(&per_epoch, "epoch")?;
    let count = crate::aggregate::f64_column(&per_epoch, "resets")?;
    let counted: BTreeMap<(u32, u32), f64> = (0..per_epoch.height())
        .map(|i| ((run[i] as u32, epoch[i] as u32), count[i]))
        .collect();
    // Only conditions that reset something are drawn; the others would be a line at 0.
    let resetting: std::collections::BTreeSet<(&str, &str)> = ctx
        .runs
        .runs
        .iter()
        .filter(|r| counted.keys().any(|(run, _)| *run == r.index))
        .map(|r| (r.activation.as_str(), r.setting.as_str()))
        .collect();
    let (mut activation, mut setting, mut epochs, mut values) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in ctx.runs.runs.iter().filter(|r| {
        r.dataset == dataset && resetting.contains(&(r.activation.as_str(), r.setting.as_str()))
    }) {
        for e in 0..=r.epochs_completed {
            activation.push(r.activation.clone());
            setting.push(r.setting.clone());
            epochs.push(e);
            values.push(counted.get(&(r.index, e)).copied().unwrap_or(0.0));
        }
    }
    if values.is_empty() {
        return Ok(None);
    }
    let df = df!(
        "activation" => activation,
        "setting" => setting,
        "epoch" => epochs,
        "resets" => values,
    )?;
    let mut points = band_stats(df.lazy(), "epoch", "resets")?;
    for series in points.values_mut() {
        for p in series.iter_mut() {
            p.2 = p.2.max(0.0);
        }
    }
    let panels = vec![BandPanel {
        title: "resets per epoch".into(),
        y_label: "reset rows".into(),
        series: ctx.condition_series(dataset, points),
        log_y: false,
    }];
    Ok(Some(ctx.save_bands(
        dataset,
        "resets",
        "Resets per epoch",
        "Rows of interventions.parquet per epoch (a reset neuron, or one whole-network event such as shrink-and-perturb), at the epoch in which the intervention acted; mean over seeds with 95 % t interval. Conditions without resets are not drawn.",
        panels,
        None,
    )?))
}

/// (iii) Saturation of the whole network: derivative, and output where the activation has an
/// asymptote.
fn saturation_figure(
    ctx: &FigureContext,
    rep: &Representation,
    dataset: &str,
) -> Result<Option<FigureFile>> {
    let Some(sat) = &rep.saturation else {
        return Ok(None);
    };
    let network = || col("layer").eq(lit(NETWORK_LAYER));
    let mut panels = Vec::new();
    for (column, title) in [
        ("saturated_deriv_frac", "f′(z) < 1 % of its maximum"),
        ("saturated_output_frac", "|h| ≥ 99 % of the asymptote"),
    ] {
        let points = condition_points(sat, dataset, network(), [column; 3])?;
        if !points.is_empty() {
            panels.push(BandPanel {
                title: title.into(),
                y_label: "share of probe observations".into(),
                series: ctx.condition_series(dataset, points),
                log_y: false,
            });
        }
    }
    if panels.is_empty() {
        return Ok(None);
    }
    Ok(Some(ctx.save_bands(
        dataset,
        "saturation",
        "Saturation of the network",
        "Share of probe observations at which a neuron is saturated, mean over all neurons of the network and over seeds: its derivative below 1 % of the activation's largest, and (right, only for activations with a finite asymptote) its output within 1 % of the asymptote.",
        panels,
        Some((0.0, 1.0)),
    )?))
}

/// The figures of interventions and representations for `dataset` that have data.
pub(super) fn intervention_figures(ctx: &FigureContext, dataset: &str) -> Result<Vec<FigureFile>> {
    let mut files = Vec::new();
    if let Some(rep) = ctx.representation {
        files.extend(rank_figure(ctx, rep, dataset)?);
    }
    files.extend(resets_figure(ctx, dataset)?);
    if let Some(rep) = ctx.representation {
        files.extend(saturation_figure(ctx, rep, dataset)?);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::test_support::Fixture;
    use crate::intervention_fixtures::set_intervention;
    use crate::synthetic::{write_run, EpochRecord, NeuronRecord, RunSpec};

    #[test]
    fn conditions_sharing_an_activation_get_colours_and_labels_of_their_own() {
        let fixture = Fixture::new(MeasureOptions::default(), |root| {
            for (activation, seed, intervention) in [
                ("relu", 0, "none"),
                ("relu", 1, "redo:0.1:1"),
                ("softsign", 2, "none"),
            ] {
                let epochs: Vec<EpochRecord> = (0..3)
                    .map(|e| EpochRecord::new(e, 0.5, (e > 0).then_some(1.0)))
                    .collect();
                let neurons: Vec<NeuronRecord> =
                    (0..3).map(|e| NeuronRecord::alive(e, 0, 0)).collect();
                let spec = RunSpec::new(
                    "s",
                    "digits",
                    activation,
                    seed,
                    0.05,
                    2,
                    vec![("fc1".into(), 1)],
                );
                let dir = write_run(root, &spec, &epochs, &neurons).unwrap();
                set_intervention(&dir, intervention);
            }
        });
        let ctx = fixture.context();
        let stats: BTreeMap<SeriesKey, BandPoints> = ctx
            .runs
            .runs
            .iter()
            .map(|r| {
                (
                    SeriesKey {
                        activation: r.activation.clone(),
                        setting: r.setting.clone(),
                    },
                    vec![(0.0, 1.0, 1.0, 1.0)],
                )
            })
            .collect();
        let series = ctx.condition_series("digits", stats);
        assert_eq!(series.len(), 3);
        for (i, a) in series.iter().enumerate() {
            for b in &series[i + 1..] {
                assert!(
                    (a.colour, a.dash) != (b.colour, b.dash),
                    "{} and {} look alike",
                    a.label,
                    b.label
                );
            }
        }
        let labels: Vec<&str> = series.iter().map(|s| s.label.as_str()).collect();
        assert!(
            labels.contains(&"relu (lr 0.05, intervention redo:0.1:1)"),
            "{labels:?}"
        );
        assert!(
            labels.contains(&"softsign (lr 0.05, intervention none)"),
            "{labels:?}"
        );
    }
}
