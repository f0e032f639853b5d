//! (a) The activation functions and their derivatives, side by side.

use std::path::Path;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::Palette;
use super::*;

pub(super) struct ActivationFigure<'a> {
    pub(super) curves: &'a [ActivationCurve],
    pub(super) palette: Palette,
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
