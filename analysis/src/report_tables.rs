//! The report's tables: CSV (full precision, every value a reader may recompute from) and LaTeX
//! (rounded, ready for a paper) of the per-run, per-layer and per-epoch measures, the summary
//! across seeds and the comparisons.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use polars::prelude::*;

use crate::aggregate::{measure_label, Aggregate};
use crate::measures::Measures;
use crate::report::AnalyzeOptions;
use crate::report_view::{key_measures, num, p_value, summary_rows};
use crate::write_atomic;

/// Full-precision number for CSV: Rust's shortest round-trip form; inf/NaN spelled out.
fn csv_num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{v}")
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn frame_csv(df: &DataFrame) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut df = df.clone();
    CsvWriter::new(&mut bytes)
        .include_header(true)
        .finish(&mut df)?;
    Ok(bytes)
}

fn tex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '<' => out.push_str("\\textless{}"),
            '>' => out.push_str("\\textgreater{}"),
            '∞' => out.push_str("$\\infty$"),
            '≥' => out.push_str("$\\geq$"),
            '≤' => out.push_str("$\\leq$"),
            '−' => out.push('-'),
            _ => out.push(c),
        }
    }
    out
}

pub(crate) fn write_tables(
    measures: &Measures,
    agg: &Aggregate,
    opts: &AnalyzeOptions,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut put = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = dir.join(name);
        write_atomic(&path, bytes)?;
        written.push(path);
        Ok(())
    };

    // Every statistic of every cell, long format.
    let mut csv = String::from(
        "dataset,activation,setting,measure,runs,n,undefined,worst_case,never,mean,std,median,iqm,iqm_ci_low,iqm_ci_high,t_ci_low,t_ci_high,bootstrap_ci_low,bootstrap_ci_high\n",
    );
    for g in &agg.summaries {
        let s = &g.summary;
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            csv_field(&g.dataset),
            csv_field(&g.activation),
            csv_field(&g.setting),
            g.measure,
            g.runs,
            s.n,
            g.undefined,
            g.worst_case,
            g.never,
            csv_num(s.mean),
            csv_num(s.std),
            csv_num(s.median),
            csv_num(s.iqm),
            csv_num(g.iqm_ci.0),
            csv_num(g.iqm_ci.1),
            csv_num(s.t_ci.0),
            csv_num(s.t_ci.1),
            csv_num(s.bootstrap_ci.0),
            csv_num(s.bootstrap_ci.1),
        );
    }
    put("summary.csv", csv.as_bytes())?;

    let mut csv = String::from(
        "dataset,setting,measure,kind,activation,other,n_activation,n_other,design,p,p_holm,wilcoxon_w,wilcoxon_p,wilcoxon_exact,paired_t,paired_t_p,hedges_g_z,welch_t,welch_df,welch_p,welch_p_holm,mann_whitney_u,mann_whitney_p,mann_whitney_exact,mann_whitney_p_holm,prob_superiority,cliffs_delta,hedges_g\n",
    );
    for c in &agg.comparisons {
        let k = &c.comparison;
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            csv_field(&c.dataset),
            csv_field(&c.setting),
            c.measure,
            if c.primary { "primary" } else { "exploratory" },
            csv_field(&c.activation),
            csv_field(&c.other),
            c.n_activation,
            c.n_other,
            csv_field(&c.design()),
            csv_num(c.p),
            csv_num(c.p_holm),
            csv_num(c.paired.map_or(f64::NAN, |p| p.wilcoxon.statistic)),
            csv_num(c.paired.map_or(f64::NAN, |p| p.wilcoxon.p)),
            c.paired.is_some_and(|p| p.wilcoxon.exact),
            csv_num(c.paired.map_or(f64::NAN, |p| p.t.t)),
            csv_num(c.paired.map_or(f64::NAN, |p| p.t.p)),
            csv_num(c.paired.map_or(f64::NAN, |p| p.g_z)),
            csv_num(k.welch.t),
            csv_num(k.welch.df),
            csv_num(k.welch.p),
            csv_num(c.welch_p_holm),
            csv_num(k.mann_whitney.u),
            csv_num(k.mann_whitney.p),
            k.mann_whitney.exact,
            csv_num(c.mann_whitney_p_holm),
            csv_num(k.prob_superiority),
            csv_num(k.cliffs_delta),
            csv_num(k.hedges_g),
        );
    }
    put("comparisons.csv", csv.as_bytes())?;

    put("per_run.csv", &frame_csv(&measures.per_run)?)?;
    put("per_run_layer.csv", &frame_csv(&measures.run_layer)?)?;
    put("per_epoch_layer.csv", &frame_csv(&measures.layer_epoch)?)?;

    // LaTeX: the key summary and the comparison table.
    let keys = key_measures(opts);
    let mut tex = String::new();
    let _ = writeln!(
        tex,
        "% Generated by necrosis-analysis. Cells: mean [95% percentile bootstrap interval] over seeds."
    );
    let _ = writeln!(
        tex,
        "\\begin{{tabular}}{{lll{}}}",
        "l".repeat(keys.len() + 1)
    );
    let _ = writeln!(tex, "\\hline");
    let _ = write!(tex, "dataset & activation & setting & runs");
    for (_, header, _) in &keys {
        let _ = write!(tex, " & {}", tex_escape(header));
    }
    let _ = writeln!(tex, " \\\\\n\\hline");
    for row in summary_rows(agg, &keys) {
        let _ = write!(
            tex,
            "{} & {} & {} & {}",
            tex_escape(&row.dataset),
            tex_escape(&row.activation),
            tex_escape(&row.setting),
            row.runs
        );
        for cell in &row.cells {
            let _ = write!(tex, " & {}", tex_escape(cell));
        }
        let _ = writeln!(tex, " \\\\");
    }
    let _ = writeln!(tex, "\\hline\n\\end{{tabular}}");
    put("summary.tex", tex.as_bytes())?;

    let mut tex = String::new();
    let _ = writeln!(
        tex,
        "% Generated by necrosis-analysis. p values Holm-adjusted within families: one primary measure, one dataset and setting; exploratory measures unadjusted (--)."
    );
    let _ = writeln!(tex, "\\begin{{tabular}}{{lllrrrrrr}}\n\\hline");
    let _ = writeln!(
        tex,
        "dataset & measure & comparison & Welch $t$ & $p_\\mathrm{{Holm}}$ & $U$ & $p_\\mathrm{{Holm}}$ & Cliff's $\\delta$ & Hedges' $g$ \\\\\n\\hline"
    );
    for c in &agg.comparisons {
        let k = &c.comparison;
        let _ = writeln!(
            tex,
            "{} & {} & {} vs {} & {} & {} & {} & {} & {} & {} \\\\",
            tex_escape(&c.dataset),
            tex_escape(measure_label(c.measure)),
            tex_escape(&c.activation),
            tex_escape(&c.other),
            tex_escape(&num(k.welch.t)),
            tex_escape(&p_value(c.welch_p_holm)),
            tex_escape(&num(k.mann_whitney.u)),
            tex_escape(&p_value(c.mann_whitney_p_holm)),
            tex_escape(&num(k.cliffs_delta)),
            tex_escape(&num(k.hedges_g)),
        );
    }
    let _ = writeln!(tex, "\\hline\n\\end{{tabular}}");
    put("comparisons.tex", tex.as_bytes())?;
    Ok(written)
}
