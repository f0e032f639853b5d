//! Named contrasts: any two conditions a user pits against each other (say relu with Adam
//! against relu-softsign with SGD), beyond each activation against the baseline. A side is a set
//! of `key=value` pairs over the settings of the per-run table (`dataset`, `activation`, `lr`,
//! `seed` aside, and every setting that varies among the runs: `optimizer`, `batch_size`, ...);
//! a run belongs to a side when it matches every pair. Contrasts are tested like the baseline
//! comparisons (paired by seed when both sides ran the same seeds) and, for each measure, form
//! a family of their own.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{bail, Context, Result};
use polars::prelude::*;

/// One side of a contrast: setting → accepted values.
pub type Side = BTreeMap<String, Vec<String>>;

/// `a vs b`, as the user wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct Contrast {
    pub a: Side,
    pub b: Side,
}

impl fmt::Display for Contrast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = |s: &Side| {
            s.iter()
                .map(|(k, v)| format!("{k}={}", v.join("|")))
                .collect::<Vec<_>>()
                .join(",")
        };
        write!(f, "{} vs {}", side(&self.a), side(&self.b))
    }
}

fn parse_side(text: &str, whole: &str) -> Result<Side> {
    text.split(',')
        .map(|pair| {
            let (key, values) = pair.split_once('=').with_context(|| {
                format!(
                    "contrast '{whole}': expected KEY=VALUE pairs, got '{}'",
                    pair.trim()
                )
            })?;
            Ok((
                key.trim().to_string(),
                values.split('|').map(|v| v.trim().to_string()).collect(),
            ))
        })
        .collect()
}

impl std::str::FromStr for Contrast {
    type Err = anyhow::Error;

    /// `KEY=VALUE[|VALUE],... vs KEY=VALUE,...`, e.g.
    /// `activation=relu,optimizer=adam vs activation=relu-softsign,optimizer=sgd`.
    fn from_str(text: &str) -> Result<Self> {
        let Some((a, b)) = text.split_once(" vs ") else {
            bail!("contrast '{text}': expected 'KEY=VALUE,... vs KEY=VALUE,...'");
        };
        Ok(Contrast {
            a: parse_side(a.trim(), text)?,
            b: parse_side(b.trim(), text)?,
        })
    }
}

/// The rows on each side of `contrast` among the rows of `frames` taken one after another (the
/// complete runs, then the diverged ones), or an error naming a key that is not a column (a
/// setting that does not vary among the runs is not one either). An empty frame has no rows to
/// offer and is not asked for columns.
pub fn sides(frames: &[&DataFrame], contrast: &Contrast) -> Result<(Vec<usize>, Vec<usize>)> {
    let rows = |side: &Side| -> Result<Vec<usize>> {
        let mut chosen = Vec::new();
        let mut offset = 0;
        for frame in frames.iter().filter(|f| f.height() > 0) {
            let mut keep = vec![true; frame.height()];
            for (key, accepted) in side {
                let column = frame.column(key).map_err(|_| {
                    anyhow::anyhow!(
                        "contrast '{contrast}': '{key}' is not a setting that varies among the runs"
                    )
                })?;
                let text = column.cast(&DataType::String)?;
                for (i, value) in text.str()?.iter().enumerate() {
                    keep[i] &= value.is_some_and(|v| accepted.iter().any(|a| a == v));
                }
            }
            chosen.extend((0..keep.len()).filter(|&i| keep[i]).map(|i| i + offset));
            offset += frame.height();
        }
        Ok(chosen)
    };
    let (a, b) = (rows(&contrast.a)?, rows(&contrast.b)?);
    if a.is_empty() || b.is_empty() {
        bail!(
            "contrast '{contrast}': no run matches its {} side",
            if a.is_empty() { "first" } else { "second" }
        );
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_select_the_runs_that_match_every_pair() {
        let per_run = df!(
            "activation" => ["relu", "relu", "relu-softsign", "relu-softsign"],
            "optimizer" => ["adam", "sgd", "adam", "sgd"],
            "lr" => [0.01, 0.01, 0.01, 0.01],
        )
        .unwrap();
        let c: Contrast =
            "activation=relu,optimizer=adam vs activation=relu-softsign,optimizer=sgd|adam,lr=0.01"
                .parse()
                .unwrap();
        assert_eq!(sides(&[&per_run], &c).unwrap(), (vec![0], vec![2, 3]));
        let bad: Contrast = "activation=relu vs batch_size=32".parse().unwrap();
        let err = sides(&[&per_run], &bad).unwrap_err().to_string();
        assert!(
            err.contains("'batch_size' is not a setting that varies"),
            "{err}"
        );
        assert!("activation=relu".parse::<Contrast>().is_err());
    }
}
