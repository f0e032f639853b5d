//! (d) Neuron status rasters: each neuron of one run alive, dead or revived, epoch by epoch.

use std::collections::BTreeMap;

use anyhow::Result;
use necrosis_records::tables::neuron_columns as nc;
use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::*;

use super::*;

pub(super) const ALIVE: RGBColor = RGBColor(222, 232, 245);
pub(super) const DEAD: RGBColor = RGBColor(30, 30, 30);
pub(super) const REVIVED: RGBColor = RGBColor(255, 160, 0);

/// Status of every neuron of one run: rows in layer order (within a layer, by time of first
/// death so that the pattern is readable), each a list of (first epoch, last epoch, status) runs.
pub(super) struct RasterPanel {
    pub(super) title: String,
    pub(super) epochs: u32,
    /// Per row: runs of equal status; status 0 alive, 1 dead, 2 alive after having died.
    pub(super) rows: Vec<Vec<(u32, u32, u8)>>,
    /// Row indices where a new layer starts, with the layer's name.
    pub(super) layer_starts: Vec<(usize, String)>,
}

pub(super) struct RasterFigure {
    pub(super) title: String,
    pub(super) panels: Vec<RasterPanel>,
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

pub(super) fn status_raster(ctx: &FigureContext, dataset: &str) -> Result<FigureFile> {
    let panels = raster_panels(ctx, dataset)?;
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

/// The raster's data: for one run per activation (the lowest seed, then the lowest lr), each
/// neuron's status by epoch as runs of equal status.
pub(super) fn raster_panels(ctx: &FigureContext, dataset: &str) -> Result<Vec<RasterPanel>> {
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
    Ok(panels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::test_support::{two_neuron_run, Fixture};
    use crate::measures::MeasureOptions;

    #[test]
    fn raster_rows_are_each_neurons_status_by_epoch() {
        // One run, one layer of two neurons over epochs 0..2. Neuron 0 is alive throughout;
        // neuron 1 is dead at epoch 1 (max_pre ≤ 0) and alive again at epoch 2. Rows are
        // ordered by first death (never last): neuron 1, then neuron 0.
        let fixture = Fixture::new(MeasureOptions::default(), |root| {
            two_neuron_run(root, |neurons| neurons[3].max_pre = -1.0); // epoch 1, neuron 1
        });
        let panels = raster_panels(&fixture.context(), "digits").unwrap();
        assert_eq!(panels.len(), 1);
        let p = &panels[0];
        assert_eq!((p.title.as_str(), p.epochs), ("relu (seed 0)", 2));
        // (first epoch, last epoch, status): 0 alive, 1 dead, 2 alive after having died.
        assert_eq!(
            p.rows,
            [vec![(0, 0, 0), (1, 1, 1), (2, 2, 2)], vec![(0, 2, 0)]]
        );
        assert_eq!(p.layer_starts, [(0, "fc1".to_string())]);
    }
}
