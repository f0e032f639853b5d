//! (h) Firing-rate histograms: the share of probe inputs on which each neuron fires, by epoch.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use necrosis_records::tables::neuron_columns as nc;
use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::*;

use super::*;

pub(super) const BINS: usize = 20;

pub(super) struct HistogramFigure {
    pub(super) title: String,
    /// Column headers (layers) and row headers (activations).
    pub(super) layers: Vec<String>,
    pub(super) activations: Vec<(String, RGBColor)>,
    /// [activation][layer] → (share per bin at epoch 0, share per bin at E).
    pub(super) shares: Vec<Vec<([f64; BINS], [f64; BINS])>>,
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
pub(super) const HISTOGRAM_BATCH_RUNS: usize = 64;

pub(super) fn firing_rate_histograms(ctx: &FigureContext, dataset: &str) -> Result<FigureFile> {
    let figure = firing_rate_figure(ctx, dataset)?;
    let title = figure.title.clone();
    let stem = ctx.stem("firing_rate", dataset);
    let paths = save(&figure, &ctx.out_dir, &stem)?;
    Ok(ctx.file(
        stem,
        title,
        "Histogram of active_frac (share of probe observations with z > 0) over the neurons of all seeds, at initialisation (black outline) and at the last epoch (filled, colour); a dead neuron has active_frac 0.".into(),
        paths,
    ))
}

/// The histograms' data: per activation and layer, the share of neurons (all seeds pooled) in
/// each of [`BINS`] bins of active_frac, at epoch 0 and at each run's last epoch.
pub(super) fn firing_rate_figure(ctx: &FigureContext, dataset: &str) -> Result<HistogramFigure> {
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
    Ok(HistogramFigure {
        title: format!("Firing rate (active_frac) per layer — {dataset}"),
        layers: layers
            .iter()
            .map(|(l, n)| format!("layer {l}: {n}"))
            .collect(),
        activations: activations
            .iter()
            .map(|a| (a.clone(), ctx.palette.colour(a)))
            .collect(),
        shares,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::test_support::{two_neuron_run, Fixture};
    use crate::measures::MeasureOptions;

    #[test]
    fn histogram_shares_are_the_neurons_per_bin_at_the_first_and_last_epoch() {
        // Two neurons with active_frac 0.5 and 1.0 at epoch 0, 0.0 and 0.26 at the last epoch
        // (2). With 20 bins of width 0.05: 0.5 falls in bin 10, 1.0 joins the last bin (19),
        // 0.0 is bin 0 and 0.26 bin 5; each bin then holds half of the neurons.
        let fixture = Fixture::new(MeasureOptions::default(), |root| {
            two_neuron_run(root, |neurons| {
                for (i, frac) in [(0, 0.5), (1, 1.0), (4, 0.0), (5, 0.26)] {
                    neurons[i].active_frac = frac;
                }
            });
        });
        let figure = firing_rate_figure(&fixture.context(), "digits").unwrap();
        assert_eq!(figure.layers, ["layer 0: fc1"]);
        assert_eq!(figure.activations.len(), 1);
        let (first, last) = figure.shares[0][0];
        let expect = |bins: [usize; 2]| {
            let mut shares = [0.0; BINS];
            for b in bins {
                shares[b] = 0.5;
            }
            shares
        };
        assert_eq!(first, expect([10, 19]));
        assert_eq!(last, expect([0, 5]));
    }
}
