//! Architectures chosen at run time: the presets `lenet` and `cifar`, and custom specs such as
//! `conv:32:3,act,pool:2,conv:64:3,act,pool:2,fc:128,act,fc:10`.
//!
//! The resolved list of layers is what manifest.json stores under `"architecture"`, so anyone can
//! rebuild the network from model.safetensors alone.

use anyhow::{bail, Context, Result};
use necrosis_records::config::InvalidConfig;

pub use necrosis_records::architecture::LayerSpec;

/// The names the `arch` setting accepts besides a custom spec.
pub const PRESETS: [&str; 2] = ["lenet", "cifar"];

/// Resolves the `arch` setting (a preset name or a custom spec) for an input `[c, h, w]` and `classes`.
///
/// Presets: `lenet` = conv 32 k3 → act → maxpool 2 → conv 64 k3 → act → maxpool 2 → fc 128 → act
/// → fc classes, with padding 1 when the input is smaller than 16×16 (as for the 8×8 digits);
/// `cifar` = a VGG-style net, conv32-conv32-pool-conv64-conv64-pool-fc512 (3×3, padding 1).
pub fn resolve(arch: &str, input: [usize; 3], classes: usize) -> Result<Vec<LayerSpec>> {
    let spec = match arch {
        "lenet" => {
            let pad = if input[1] < 16 || input[2] < 16 { 1 } else { 0 };
            format!("conv:32:3:1:{pad},act,pool:2,conv:64:3:1:{pad},act,pool:2,fc:128,act,fc:{classes}")
        }
        "cifar" => format!(
            "conv:32:3:1:1,act,conv:32:3:1:1,act,pool:2,conv:64:3:1:1,act,conv:64:3:1:1,act,pool:2,fc:512,act,fc:{classes}"
        ),
        custom => custom.to_string(),
    };
    // Errors name the setting (`arch`), which the command line shows as its flag.
    let invalid = |problem: String| InvalidConfig {
        key: "arch",
        problem: format!("'{arch}': {problem}"),
    };
    let layers = parse(&spec).map_err(|e| {
        invalid(format!(
            "not a preset ({}) or a valid layer spec: {e:#}",
            PRESETS.join(", ")
        ))
    })?;
    match layers.last() {
        Some(LayerSpec::Fc { out, .. }) if *out == classes => Ok(layers),
        Some(LayerSpec::Fc { out, .. }) => Err(invalid(format!(
            "the last layer has {out} outputs but the dataset has {classes} classes"
        ))
        .into()),
        _ => Err(invalid(format!(
            "the last layer must be `fc:{classes}` (one output per class)"
        ))
        .into()),
    }
}

/// Parses a comma-separated layer spec. Tokens: `conv:OUT:K[:STRIDE[:PAD]]`, `act`,
/// `pool:K[:STRIDE]` (= maxpool), `maxpool:K[:STRIDE]`, `avgpool:K[:STRIDE]`, `flatten`, `fc:OUT`.
/// A flatten is inserted before the first `fc` that follows spatial layers.
pub fn parse(spec: &str) -> Result<Vec<LayerSpec>> {
    let mut layers = Vec::new();
    let (mut convs, mut fcs, mut sites) = (0, 0, 0);
    let mut flat = false;
    for token in spec.split(',').map(str::trim) {
        let parts: Vec<&str> = token.split(':').collect();
        let number = |i: usize, what: &str| -> Result<usize> {
            let text = parts
                .get(i)
                .with_context(|| format!("'{token}': missing {what}"))?;
            let value: usize = text
                .parse()
                .with_context(|| format!("'{token}': {what} '{text}' is not a whole number"))?;
            Ok(value)
        };
        let optional = |i: usize, what: &str, default: usize| -> Result<usize> {
            if parts.len() > i {
                number(i, what)
            } else {
                Ok(default)
            }
        };
        let positive = |v: usize, what: &str| -> Result<usize> {
            if v == 0 {
                bail!("'{token}': {what} must be > 0")
            }
            Ok(v)
        };
        let max_parts = match parts[0] {
            "conv" => 5,
            "pool" | "maxpool" | "avgpool" => 3,
            "fc" => 2,
            "act" | "flatten" => 1,
            other => bail!("unknown layer '{other}' in '{token}' (expected conv, act, pool, maxpool, avgpool, flatten, fc)"),
        };
        if parts.len() > max_parts {
            bail!("'{token}': too many fields");
        }
        match parts[0] {
            "conv" => {
                if flat {
                    bail!("'{token}': a convolution cannot follow a dense layer or flatten");
                }
                convs += 1;
                let out = positive(number(1, "output channels")?, "output channels")?;
                let kernel = positive(number(2, "kernel size")?, "kernel size")?;
                let stride = positive(optional(3, "stride", 1)?, "stride")?;
                let padding = optional(4, "padding", 0)?;
                layers.push(LayerSpec::Conv {
                    name: format!("conv{convs}"),
                    out,
                    kernel,
                    stride,
                    padding,
                });
            }
            "act" => {
                layers.push(LayerSpec::Act { site: sites });
                sites += 1;
            }
            "pool" | "maxpool" | "avgpool" => {
                if flat {
                    bail!("'{token}': pooling cannot follow a dense layer or flatten");
                }
                let kernel = positive(number(1, "window size")?, "window size")?;
                let stride = positive(optional(2, "stride", kernel)?, "stride")?;
                layers.push(if parts[0] == "avgpool" {
                    LayerSpec::Avgpool { kernel, stride }
                } else {
                    LayerSpec::Maxpool { kernel, stride }
                });
            }
            "flatten" => {
                flat = true;
                layers.push(LayerSpec::Flatten);
            }
            "fc" => {
                if !flat {
                    flat = true;
                    layers.push(LayerSpec::Flatten);
                }
                fcs += 1;
                let out = positive(number(1, "units")?, "units")?;
                layers.push(LayerSpec::Fc {
                    name: format!("fc{fcs}"),
                    out,
                });
            }
            _ => unreachable!("checked above"),
        }
    }
    if let Some(LayerSpec::Act { .. }) = layers.first() {
        bail!("the first layer cannot be an activation: it would act on the data itself");
    }
    Ok(layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenet_pads_small_inputs_only() {
        let small = resolve("lenet", [1, 8, 8], 10).unwrap();
        let large = resolve("lenet", [1, 28, 28], 10).unwrap();
        assert!(matches!(
            &small[0],
            LayerSpec::Conv {
                padding: 1,
                out: 32,
                kernel: 3,
                ..
            }
        ));
        assert!(matches!(&large[0], LayerSpec::Conv { padding: 0, .. }));
        assert_eq!(
            large
                .iter()
                .filter(|l| matches!(l, LayerSpec::Act { .. }))
                .count(),
            3
        );
        assert_eq!(
            large.last(),
            Some(&LayerSpec::Fc {
                name: "fc2".into(),
                out: 10
            })
        );
        assert!(large.contains(&LayerSpec::Flatten));
    }

    #[test]
    fn custom_specs_parse_with_sites_in_order() {
        let layers = resolve("conv:8:5:2:1,act,avgpool:2,fc:16,act,fc:3", [3, 32, 32], 3).unwrap();
        assert_eq!(
            layers,
            vec![
                LayerSpec::Conv {
                    name: "conv1".into(),
                    out: 8,
                    kernel: 5,
                    stride: 2,
                    padding: 1
                },
                LayerSpec::Act { site: 0 },
                LayerSpec::Avgpool {
                    kernel: 2,
                    stride: 2
                },
                LayerSpec::Flatten,
                LayerSpec::Fc {
                    name: "fc1".into(),
                    out: 16
                },
                LayerSpec::Act { site: 1 },
                LayerSpec::Fc {
                    name: "fc2".into(),
                    out: 3
                },
            ]
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let cases = [
            ("conv:32", "missing kernel size"),
            ("conv:x:3,fc:10", "'x' is not a whole number"),
            ("dense:10", "unknown layer 'dense'"),
            ("fc:5", "has 5 outputs but the dataset has 10 classes"),
            ("conv:4:3,act", "last layer must be `fc:10`"),
            ("fc:8,conv:4:3,fc:10", "cannot follow a dense layer"),
            ("act,fc:10", "first layer cannot be an activation"),
            ("conv:0:3,fc:10", "output channels must be > 0"),
        ];
        for (spec, expected) in cases {
            let err = resolve(spec, [1, 28, 28], 10).unwrap_err();
            let invalid = err
                .downcast_ref::<InvalidConfig>()
                .expect("names the setting");
            assert_eq!(invalid.key, "arch");
            assert!(invalid.problem.contains(expected), "{spec}: {err}");
        }
    }
}
