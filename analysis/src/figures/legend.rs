//! A legend drawn in its own strip beside the panels, never over the data: one line sample in
//! the series' colour and line style per entry, then its label.

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::*;

/// Narrowest legend strip in pixels.
pub(super) const LEGEND_WIDTH: u32 = 250;

/// Width of a legend strip that shows every label whole: the line sample and its gap (56 px)
/// plus 7 px per character of the longest label (13 px type), and never under [`LEGEND_WIDTH`].
/// A label grows with the settings that vary (`relu-softsign (lr 0.01, init xavier-normal)`).
pub(super) fn legend_width(entries: &[LegendEntry]) -> u32 {
    let longest = entries
        .iter()
        .map(|e| e.label.chars().count())
        .max()
        .unwrap_or(0);
    LEGEND_WIDTH.max(56 + 7 * longest as u32)
}

/// One entry: what a reader matches a line by.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LegendEntry {
    pub(super) label: String,
    pub(super) colour: RGBColor,
    pub(super) dash: Option<(u32, u32)>,
}

/// Draws `entries` top to bottom in `area`, starting below `top` pixels (to line up with the
/// panels under a figure title).
pub(super) fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
    top: i32,
) -> Result<()> {
    const ROW: i32 = 22;
    for (i, e) in entries.iter().enumerate() {
        let y = top + ROW * i as i32;
        let line = vec![(8, y), (40, y)];
        let style = e.colour.stroke_width(3);
        match e.dash {
            None => area.draw(&PathElement::new(line, style)),
            Some((dash, gap)) => area.draw(&DashedPathElement::new(line, dash, gap, style)),
        }
        .map_err(drawing_error)?;
        area.draw(&Text::new(
            e.label.clone(),
            (48, y - 8),
            font(13.0).color(&BLACK),
        ))
        .map_err(drawing_error)?;
    }
    Ok(())
}
