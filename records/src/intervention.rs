//! The intervention a run applies to its network during training, as its configuration names
//! it: ReDo (Sokar et al., ICML 2023), continual backprop (Dohare et al., Nature 2024) or
//! shrink-and-perturb (Ash & Adams, NeurIPS 2020). The trainer carries them out
//! (`necrosis::interventions`); this crate holds the setting and its text form.
//!
//! # Text form
//!
//! | text                              | meaning                                                        |
//! |-----------------------------------|----------------------------------------------------------------|
//! | `none`                            | no intervention (the default)                                  |
//! | `redo:TAU:EVERY`                  | re-initialise the τ-dormant neurons every EVERY epochs         |
//! | `redo:TAU:Ns`                     | the same every N optimiser steps                               |
//! | `cbp:RATE:MATURITY`               | replace a RATE share of the mature units per step              |
//! | `shrink-perturb:SHRINK:SIGMA:EVERY` | w ← SHRINK·w + SIGMA·(fresh draw of the init scheme), every EVERY epochs (or `Ns` steps) |
//!
//! [`fmt::Display`] writes the canonical text (numbers in Rust's shortest round-trip form), and
//! serde stores that text, so a run's identity names the intervention as the user reads it.

use std::fmt;
use std::str::FromStr;

use crate::config::InvalidConfig;

/// How often a periodic intervention acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// At the end of every N-th epoch (after that epoch's probe pass and records).
    Epochs(u64),
    /// After every N-th optimiser step.
    Steps(u64),
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Epochs(n) => write!(f, "{n}"),
            Period::Steps(n) => write!(f, "{n}s"),
        }
    }
}

/// What a run does to its network between steps. The default, `none`, does nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Intervention {
    #[default]
    None,
    /// Re-initialise every neuron whose τ-dormant score s = mean|h| / layer mean of mean|h| is
    /// at most `tau`: incoming weights re-drawn, bias reset, outgoing weights zeroed, their
    /// optimiser state reset.
    Redo { tau: f64, every: Period },
    /// Continual backprop: each step, replace `rate` × (units of the layer) of the units older
    /// than `maturity` steps with the lowest contribution utility (decay 0.99, bias-corrected).
    Cbp { rate: f64, maturity: u64 },
    /// Shrink and perturb every weight and bias: w ← shrink·w + sigma·ε, ε a fresh draw of the
    /// run's initialisation.
    ShrinkPerturb {
        shrink: f64,
        sigma: f64,
        every: Period,
    },
}

impl Intervention {
    pub fn is_none(&self) -> bool {
        matches!(self, Intervention::None)
    }

    /// The name a reset's record carries: `redo`, `cbp`, `shrink-perturb` (`none` for none).
    pub fn kind(&self) -> &'static str {
        match self {
            Intervention::None => "none",
            Intervention::Redo { .. } => "redo",
            Intervention::Cbp { .. } => "cbp",
            Intervention::ShrinkPerturb { .. } => "shrink-perturb",
        }
    }
}

impl fmt::Display for Intervention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Intervention::None => f.write_str("none"),
            Intervention::Redo { tau, every } => write!(f, "redo:{tau}:{every}"),
            Intervention::Cbp { rate, maturity } => write!(f, "cbp:{rate}:{maturity}"),
            Intervention::ShrinkPerturb {
                shrink,
                sigma,
                every,
            } => write!(f, "shrink-perturb:{shrink}:{sigma}:{every}"),
        }
    }
}

const EXPECTED: &str =
    "expected none, redo:TAU:EVERY, cbp:RATE:MATURITY or shrink-perturb:SHRINK:SIGMA:EVERY (EVERY in epochs, or steps with a trailing s)";

impl FromStr for Intervention {
    type Err = InvalidConfig;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |problem: String| InvalidConfig {
            key: "intervention",
            problem: format!("'{text}': {problem}"),
        };
        let parts: Vec<&str> = text.split(':').collect();
        // A finite number within [low, high], named for the message.
        let number = |name: &str, value: &str, low: f64, high: f64| -> Result<f64, InvalidConfig> {
            let parsed: f64 = value
                .parse()
                .map_err(|_| bad(format!("{name} '{value}' is not a number")))?;
            if !(parsed.is_finite() && (low..=high).contains(&parsed)) {
                return Err(bad(format!(
                    "{name} must lie in [{low}, {high}], got {value}"
                )));
            }
            Ok(parsed)
        };
        let count = |name: &str, value: &str| -> Result<u64, InvalidConfig> {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(format!("{name} '{value}' is not a whole number")));
            }
            value
                .parse()
                .map_err(|_| bad(format!("{name} '{value}' is too large")))
        };
        let period = |value: &str| -> Result<Period, InvalidConfig> {
            let (digits, steps) = match value.strip_suffix('s') {
                Some(digits) => (digits, true),
                None => (value, false),
            };
            let n = count("EVERY", digits)?;
            if n == 0 {
                return Err(bad("EVERY must be at least 1".into()));
            }
            Ok(if steps {
                Period::Steps(n)
            } else {
                Period::Epochs(n)
            })
        };
        match parts.as_slice() {
            ["none"] => Ok(Intervention::None),
            ["redo", tau, every] => Ok(Intervention::Redo {
                tau: number("TAU", tau, 0.0, f64::MAX)?,
                every: period(every)?,
            }),
            ["cbp", rate, maturity] => {
                let rate = number("RATE", rate, 0.0, 1.0)?;
                if rate == 0.0 {
                    return Err(bad(
                        "RATE must be above 0 (write none for no intervention)".into()
                    ));
                }
                Ok(Intervention::Cbp {
                    rate,
                    maturity: count("MATURITY", maturity)?,
                })
            }
            ["shrink-perturb", shrink, sigma, every] => Ok(Intervention::ShrinkPerturb {
                shrink: number("SHRINK", shrink, 0.0, 1.0)?,
                sigma: number("SIGMA", sigma, 0.0, f64::MAX)?,
                every: period(every)?,
            }),
            _ => Err(bad(EXPECTED.into())),
        }
    }
}

crate::text_serde::serde_as_text!(Intervention);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        for text in [
            "none",
            "redo:0.1:1",
            "redo:0:250s",
            "redo:0.025:3",
            "cbp:0.0001:100",
            "shrink-perturb:0.8:0.01:1",
            "shrink-perturb:1:0:20s",
        ] {
            let parsed: Intervention = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
            let json = serde_json::to_string(&parsed).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Intervention>(&json).unwrap(), parsed);
        }
        assert_eq!(
            "redo:0.1:5s".parse::<Intervention>().unwrap(),
            Intervention::Redo {
                tau: 0.1,
                every: Period::Steps(5)
            }
        );
        assert_eq!(
            "cbp:1e-4:100".parse::<Intervention>().unwrap().to_string(),
            "cbp:0.0001:100",
            "a number is stored in one canonical form"
        );
    }

    #[test]
    fn bad_texts_name_the_part_that_is_wrong() {
        let message = |text: &str| text.parse::<Intervention>().unwrap_err().to_string();
        assert!(message("redo").contains("expected none, redo:TAU:EVERY"));
        assert!(message("redo:x:1").contains("TAU 'x' is not a number"));
        assert!(message("redo:-0.1:1").contains("TAU must lie in"));
        assert!(message("redo:nan:1").contains("TAU must lie in"));
        assert!(message("redo:0.1:0").contains("EVERY must be at least 1"));
        assert!(message("redo:0.1:+2").contains("EVERY '+2' is not a whole number"));
        assert!(message("cbp:2:100").contains("RATE must lie in [0, 1]"));
        assert!(message("cbp:0:100").contains("RATE must be above 0"));
        assert!(message("cbp:0.01:-1").contains("MATURITY '-1' is not a whole number"));
        assert!(message("shrink-perturb:1.5:0.1:1").contains("SHRINK must lie in [0, 1]"));
        assert!(message("ReDo:0.1:1").starts_with("intervention 'ReDo:0.1:1': expected"));
    }
}
