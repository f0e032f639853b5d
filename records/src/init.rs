//! How a run initialises its conv and fc layers: the weight scheme and the bias rule, as
//! `manifest.json` stores them under `"config"` (`init`, `bias_init`). Data only; the samplers
//! live in the trainer (`necrosis::init`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::config::InvalidConfig;

/// The distribution every conv and fc weight is drawn from (the formulas are in the trainer's
/// `init` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitScheme {
    /// He (Kaiming) uniform, U(±√(6/fan_in)): the scheme of every run before this setting.
    #[default]
    HeUniform,
    /// He (Kaiming) normal, N(0, 2/fan_in).
    HeNormal,
    /// Glorot (Xavier) uniform, U(±√(6/(fan_in+fan_out))).
    XavierUniform,
    /// Glorot (Xavier) normal, N(0, 2/(fan_in+fan_out)).
    XavierNormal,
    /// LeCun normal, N(0, 1/fan_in).
    LecunNormal,
    /// A random (semi-)orthogonal matrix scaled by ReLU's gain √2.
    Orthogonal,
    /// PyTorch's default for `Conv2d` and `Linear`, U(±1/√fan_in).
    Pytorch,
    /// Randomized asymmetric initialisation (Lu, Shin, Su & Karniadakis); draws its own biases.
    Rai,
}

impl InitScheme {
    /// Every scheme, in the order the valid names are listed in messages.
    pub const ALL: [InitScheme; 8] = [
        InitScheme::HeUniform,
        InitScheme::HeNormal,
        InitScheme::XavierUniform,
        InitScheme::XavierNormal,
        InitScheme::LecunNormal,
        InitScheme::Orthogonal,
        InitScheme::Pytorch,
        InitScheme::Rai,
    ];

    /// The name used on the command line and in manifests, e.g. `"he-uniform"`.
    pub fn name(&self) -> &'static str {
        match self {
            InitScheme::HeUniform => "he-uniform",
            InitScheme::HeNormal => "he-normal",
            InitScheme::XavierUniform => "xavier-uniform",
            InitScheme::XavierNormal => "xavier-normal",
            InitScheme::LecunNormal => "lecun-normal",
            InitScheme::Orthogonal => "orthogonal",
            InitScheme::Pytorch => "pytorch",
            InitScheme::Rai => "rai",
        }
    }

    /// Whether this is the default, he-uniform (manifests may leave the default out).
    pub fn is_default(&self) -> bool {
        *self == InitScheme::default()
    }
}

impl fmt::Display for InitScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for InitScheme {
    type Err = InvalidConfig;

    /// Parses the names printed by [`InitScheme::name`]; exact, lower case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        InitScheme::ALL
            .into_iter()
            .find(|scheme| scheme.name() == text)
            .ok_or_else(|| {
                let valid: Vec<&str> = InitScheme::ALL.iter().map(InitScheme::name).collect();
                InvalidConfig {
                    key: "init",
                    problem: format!(
                        "'{text}' is not a scheme; valid names: {}",
                        valid.join(", ")
                    ),
                }
            })
    }
}

/// What the biases of conv and fc layers start at, for every scheme but rai (which draws its
/// own). Written `zero`, a number such as `0.01`, or `pytorch`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum BiasInit {
    /// All zero, drawing nothing from the generator: the rule of every run before this setting.
    #[default]
    Zero,
    /// Every bias equal to this finite number. `Constant(0.0)` starts where `Zero` does but is
    /// written `0` and kept apart from the default.
    Constant(f32),
    /// PyTorch's default for `Conv2d` and `Linear`, U(±1/√fan_in), drawn after the weights.
    Pytorch,
}

impl BiasInit {
    /// Whether this is the default, zero (manifests may leave the default out).
    pub fn is_default(&self) -> bool {
        matches!(self, BiasInit::Zero)
    }
}

impl fmt::Display for BiasInit {
    /// As it is written on the command line: `zero`, `pytorch`, or the constant in the shortest
    /// form that reads back as the same `f32`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BiasInit::Zero => f.write_str("zero"),
            BiasInit::Pytorch => f.write_str("pytorch"),
            BiasInit::Constant(value) => write!(f, "{value}"),
        }
    }
}

impl FromStr for BiasInit {
    type Err = InvalidConfig;

    /// Parses `zero`, `pytorch` or a finite number.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |problem: &str| InvalidConfig {
            key: "bias_init",
            problem: format!("'{text}' {problem}; expected zero, pytorch or a number such as 0.01"),
        };
        match text {
            "zero" => Ok(BiasInit::Zero),
            "pytorch" => Ok(BiasInit::Pytorch),
            number => match number.parse::<f32>() {
                Ok(value) if value.is_finite() => Ok(BiasInit::Constant(value)),
                Ok(_) => Err(bad("is not a finite number")),
                Err(_) => Err(bad("is not a rule")),
            },
        }
    }
}

// Stored as its text, so that 0.01 is `"0.01"`; a bare number is refused.
crate::text_serde::serde_as_text!(BiasInit);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_scheme_names_round_trip_through_text_and_serde() {
        let expected = [
            "he-uniform",
            "he-normal",
            "xavier-uniform",
            "xavier-normal",
            "lecun-normal",
            "orthogonal",
            "pytorch",
            "rai",
        ];
        for (scheme, name) in InitScheme::ALL.into_iter().zip(expected) {
            assert_eq!(scheme.name(), name);
            assert_eq!(scheme.to_string(), name);
            assert_eq!(name.parse::<InitScheme>().unwrap(), scheme);
            // serde's kebab-case renaming must agree with name().
            assert_eq!(
                serde_json::to_value(scheme).unwrap(),
                serde_json::json!(name)
            );
            let back: InitScheme = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert_eq!(back, scheme);
        }
        assert_eq!(InitScheme::default(), InitScheme::HeUniform);
        assert!(InitScheme::HeUniform.is_default());
        assert!(!InitScheme::Rai.is_default());
    }

    #[test]
    fn init_scheme_unknown_name_lists_valid_names() {
        for bad in ["kaiming", "He-Uniform", "", "he_uniform"] {
            let err = bad.parse::<InitScheme>().unwrap_err();
            assert_eq!(err.key, "init");
            assert!(err.problem.contains(&format!("'{bad}'")), "{err}");
            for scheme in InitScheme::ALL {
                assert!(err.problem.contains(scheme.name()), "{err}");
            }
        }
        assert!(serde_json::from_value::<InitScheme>(serde_json::json!("glorot")).is_err());
    }

    #[test]
    fn bias_init_round_trips_through_text_and_serde() {
        let cases = [
            (BiasInit::Zero, "zero"),
            (BiasInit::Pytorch, "pytorch"),
            (BiasInit::Constant(0.01), "0.01"),
            (BiasInit::Constant(-0.5), "-0.5"),
            (BiasInit::Constant(0.0), "0"),
            (BiasInit::Constant(1e-7), "0.0000001"),
            (BiasInit::Constant(0.1 + 0.2), "0.3"),
        ];
        for (bias, text) in cases {
            assert_eq!(bias.to_string(), text);
            assert_eq!(text.parse::<BiasInit>().unwrap(), bias);
            assert_eq!(serde_json::to_value(bias).unwrap(), serde_json::json!(text));
            let back: BiasInit = serde_json::from_value(serde_json::json!(text)).unwrap();
            assert_eq!(back, bias);
        }
        // Every f32 reads back bit for bit from its shortest text.
        for value in [f32::MIN_POSITIVE, 1.0 / 3.0, f32::MAX, -123.456] {
            let text = BiasInit::Constant(value).to_string();
            match text.parse::<BiasInit>().unwrap() {
                BiasInit::Constant(back) => assert_eq!(back.to_bits(), value.to_bits(), "{text}"),
                other => panic!("{text} parsed as {other:?}"),
            }
        }
        // Other spellings of a number parse to the same constant.
        assert_eq!(
            "1e-2".parse::<BiasInit>().unwrap(),
            BiasInit::Constant(0.01)
        );
        assert_eq!(BiasInit::default(), BiasInit::Zero);
        assert!(BiasInit::Zero.is_default());
        assert!(!BiasInit::Constant(0.0).is_default());
        assert!(!BiasInit::Pytorch.is_default());
    }

    #[test]
    fn bias_init_rejects_non_finite_and_unknown_rules() {
        for bad in ["inf", "-inf", "NaN", "1e39"] {
            let err = bad.parse::<BiasInit>().unwrap_err();
            assert_eq!(err.key, "bias_init");
            assert!(err.problem.contains("finite"), "{err}");
        }
        for bad in ["zeros", "", "0.1.2", "Pytorch", "uniform"] {
            let err = bad.parse::<BiasInit>().unwrap_err();
            assert_eq!(err.key, "bias_init");
            assert!(err.problem.contains(&format!("'{bad}'")), "{err}");
            assert!(err.problem.contains("zero, pytorch"), "{err}");
        }
        assert!(serde_json::from_value::<BiasInit>(serde_json::json!("nan")).is_err());
        // Stored as a string: a bare JSON number is not a BiasInit.
        assert!(serde_json::from_value::<BiasInit>(serde_json::json!(0.01)).is_err());
    }
}
