//! The report's section "Interventions and representations" (issue #14), as the templates see
//! it: one row per condition with the means over seeds of what an intervention changes, and the
//! section's figures. Absent (`None`) when no run had an intervention, `layers.parquet` or the
//! saturation columns, so that the reports of older studies render as they did.

use serde::Serialize;

use crate::aggregate::Aggregate;
use crate::findings::Findings;
use crate::interventions::NO_INTERVENTION;
use crate::load::RunSet;
use crate::report_view::{num, summary_rows};

/// The table's columns: (per-run measure, header, scale).
const COLUMNS: [(&str, &str, f64); 9] = [
    ("final_acc", "final test accuracy", 1.0),
    ("dead_frac_final", "dead % at E", 100.0),
    ("irreversibly_dead_frac", "irreversibly dead %", 100.0),
    ("natural_revivals", "natural revivals", 1.0),
    ("intervention_revivals", "revivals by intervention", 1.0),
    ("resets", "resets", 1.0),
    ("resets_of_dead", "resets of dead neurons", 1.0),
    (
        "revived_by_intervention_frac",
        "revived by intervention % at E",
        100.0,
    ),
    (
        "effective_rank_share_final",
        "effective rank / neurons at E",
        1.0,
    ),
];

/// One condition's row.
#[derive(Serialize)]
pub(crate) struct InterventionRow {
    dataset: String,
    activation: String,
    setting: String,
    runs: usize,
    cells: Vec<String>,
}

/// A figure of the section (paths relative to the report).
#[derive(Serialize)]
pub(crate) struct SectionFigure {
    pub(crate) title: String,
    pub(crate) caption: String,
    pub(crate) svg: String,
    pub(crate) png: String,
}

/// What the section shows.
#[derive(Serialize)]
pub(crate) struct InterventionSection {
    headers: Vec<String>,
    rows: Vec<InterventionRow>,
    figures: Vec<SectionFigure>,
}

/// Whether the runs carry anything of issue #14: an intervention, resets, layer records or
/// saturation columns.
pub(crate) fn has_section(runs: &RunSet, findings: &Findings) -> bool {
    let rep = &findings.representation;
    findings.measures.resets.is_some()
        || runs.runs.iter().any(|r| r.intervention != NO_INTERVENTION)
        || rep.layers.is_some()
        || rep.saturation.is_some()
}

/// The section, or None when there is nothing to show (see [`has_section`]).
pub(crate) fn intervention_section(
    runs: &RunSet,
    findings: &Findings,
    figures: Vec<SectionFigure>,
) -> Option<InterventionSection> {
    if !has_section(runs, findings) {
        return None;
    }
    Some(InterventionSection {
        headers: COLUMNS.iter().map(|c| c.1.to_string()).collect(),
        rows: rows(&findings.aggregate),
        figures,
    })
}

/// Per condition, the mean over seeds of each column; "n/a" where the measure is undefined
/// (no run of the condition has the records).
fn rows(agg: &Aggregate) -> Vec<InterventionRow> {
    summary_rows(agg, &[])
        .into_iter()
        .map(|r| InterventionRow {
            cells: COLUMNS
                .iter()
                .map(|(measure, _, scale)| {
                    agg.summary(&r.dataset, &r.activation, &r.setting, measure)
                        .filter(|g| g.summary.n > 0)
                        .map_or("n/a".into(), |g| num(g.summary.mean * scale))
                })
                .collect(),
            dataset: r.dataset,
            activation: r.activation,
            setting: r.setting,
            runs: r.runs,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::intervention_fixtures::{
        add_saturation, redo, set_intervention, write_layers, write_resets, LayerRecord,
    };
    use crate::report::AnalyzeOptions;
    use crate::synthetic::{generate_study, StudySpec};

    const SECTION: &str = "Interventions and representations";

    fn study(root: &Path) -> Vec<PathBuf> {
        let spec = StudySpec {
            sweep: "revive".into(),
            dataset: "digits".into(),
            activations: vec!["relu".into(), "relu-softsign".into()],
            seeds: 3,
            epochs: 5,
            sites: vec![("fc1".into(), 6), ("fc2".into(), 4)],
            lr: 0.05,
        };
        generate_study(root, &spec, 11).unwrap()
    }

    #[test]
    fn a_study_with_interventions_renders_the_section_and_its_figures() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("runs");
        for dir in study(&root) {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("digits-relu-lr") {
                set_intervention(&dir, "redo:0.1:1");
                write_resets(
                    &dir,
                    &[redo(1, true, 0), redo(2, false, 3), redo(2, true, 4)],
                );
            }
            let rows: Vec<LayerRecord> = (0..=5)
                .flat_map(|e| {
                    let rank = 3.0 - 0.2 * e as f64;
                    [
                        (e, 0, 6, rank, 3, 3, 0.1 * e as f64),
                        (e, 1, 4, 2.0, 2, 2, 0.05),
                    ]
                })
                .collect();
            write_layers(&dir, &rows);
            add_saturation(&dir, |e, _, n| {
                (Some(0.01 * (e + n) as f64), Some(0.02 * e as f64))
            });
        }
        let out = tmp.path().join("report");
        let opts = AnalyzeOptions {
            contrasts: vec![
                "activation=relu,intervention=redo:0.1:1 vs activation=relu-softsign,intervention=none"
                    .parse()
                    .unwrap(),
            ],
            ..Default::default()
        };
        let summary = crate::analyze(std::slice::from_ref(&root), &opts, &out).unwrap();
        let html = std::fs::read_to_string(out.join("index.html")).unwrap();
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        for text in [&html, &md] {
            assert!(text.contains(SECTION));
            assert!(text.contains("lr 0.05, intervention redo:0.1:1"));
            assert!(text.contains("revivals by intervention"));
        }
        // Three resets in each of the three relu runs: a mean of 3 in the relu row.
        // (The summary table above has a row that starts alike; the section's comes last.)
        let relu_row = md
            .lines()
            .rfind(|l| l.starts_with("| digits | relu | lr 0.05, intervention redo:0.1:1 | 3 |"))
            .unwrap();
        let cells: Vec<&str> = relu_row.split('|').map(str::trim).collect();
        assert_eq!(cells[10], "3.000", "{relu_row}");
        for stem in ["rank_digits", "resets_digits", "saturation_digits"] {
            for ext in ["png", "svg"] {
                let path = out.join("figures").join(format!("{stem}.{ext}"));
                let len = std::fs::metadata(&path).unwrap().len();
                assert!(len > 3_000, "{} has {len} bytes", path.display());
                assert!(summary.figures.contains(&path));
            }
            assert!(md.contains(&format!("figures/{stem}.png")));
        }
        // The section's figures are not shown twice.
        assert_eq!(md.matches("figures/rank_digits.png").count(), 1);
        // The named contrast across interventions was tested.
        let comparisons = std::fs::read_to_string(out.join("tables/comparisons.csv")).unwrap();
        assert!(comparisons.contains("redo:0.1:1"), "{comparisons}");
    }

    #[test]
    fn a_study_without_interventions_renders_no_section() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("runs");
        study(&root);
        let out = tmp.path().join("report");
        let summary = crate::analyze(
            std::slice::from_ref(&root),
            &AnalyzeOptions::default(),
            &out,
        )
        .unwrap();
        let html = std::fs::read_to_string(out.join("index.html")).unwrap();
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(!html.contains(SECTION) && !md.contains(SECTION));
        assert!(summary
            .figures
            .iter()
            .all(|f| !crate::figures::is_intervention_figure(
                &f.file_stem().unwrap().to_string_lossy()
            )));
        let per_run = std::fs::read_to_string(out.join("tables/per_run.csv")).unwrap();
        assert!(!per_run.lines().next().unwrap().contains("resets"));
    }
}
