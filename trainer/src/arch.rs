//! Architectures chosen at run time: the presets `lenet`, `cifar`, `cifar-bn` and `resnet20`, and
//! custom specs such as `conv:32:3,act,pool:2,conv:64:3,act,pool:2,fc:128,act,fc:10`.
//!
//! The resolved list of layers is what manifest.json stores under `"architecture"`, so anyone can
//! rebuild the network from model.safetensors alone.

use anyhow::{bail, Context, Result};
use necrosis_records::config::InvalidConfig;

pub use necrosis_records::architecture::LayerSpec;

/// The names the `arch` setting accepts besides a custom spec.
pub const PRESETS: [&str; 4] = ["lenet", "cifar", "cifar-bn", "resnet20"];

/// Resolves the `arch` setting (a preset name or a custom spec) for an input `[c, h, w]` and `classes`.
///
/// Presets: `lenet` = conv 32 k3 → act → maxpool 2 → conv 64 k3 → act → maxpool 2 → fc 128 → act
/// → fc classes, with padding 1 when the input is smaller than 16×16 (as for the 8×8 digits);
/// `cifar` = a VGG-style net, conv32-conv32-pool-conv64-conv64-pool-fc512 (3×3, padding 1);
/// `cifar-bn` = the same with batch normalisation between every conv or fc layer and its
/// activation; `resnet20` = the ResNet-20 of He et al. (2016) for 32×32 inputs: conv16-bn-act,
/// three stages of three residual blocks (16, 32, 64 channels; the 2nd and 3rd stages start with
/// stride 2 and a 1×1 projection), global average pooling, fc classes.
pub fn resolve(arch: &str, input: [usize; 3], classes: usize) -> Result<Vec<LayerSpec>> {
    let spec = match arch {
        "lenet" => {
            let pad = if input[1] < 16 || input[2] < 16 { 1 } else { 0 };
            format!("conv:32:3:1:{pad},act,pool:2,conv:64:3:1:{pad},act,pool:2,fc:128,act,fc:{classes}")
        }
        "cifar" => format!(
            "conv:32:3:1:1,act,conv:32:3:1:1,act,pool:2,conv:64:3:1:1,act,conv:64:3:1:1,act,pool:2,fc:512,act,fc:{classes}"
        ),
        "cifar-bn" => format!(
            "conv:32:3:1:1,bn,act,conv:32:3:1:1,bn,act,pool:2,conv:64:3:1:1,bn,act,conv:64:3:1:1,bn,act,pool:2,fc:512,bn,act,fc:{classes}"
        ),
        "resnet20" => format!(
            "conv:16:3:1:1,bn,act,res:16,res:16,res:16,res:32:2,res:32,res:32,res:64:2,res:64,res:64,gap,fc:{classes}"
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
/// `pool:K[:STRIDE]` (= maxpool), `maxpool:K[:STRIDE]`, `avgpool:K[:STRIDE]`, `flatten`, `fc:OUT`,
/// `bn`, `dropout:P`, `gap` (global average pooling) and `res:OUT[:STRIDE]` (a residual block,
/// see [`LayerSpec::Res`]). A flatten is inserted before the first `fc` that follows spatial
/// layers.
pub fn parse(spec: &str) -> Result<Vec<LayerSpec>> {
    let mut layers = Vec::new();
    let (mut convs, mut fcs, mut sites, mut bns, mut blocks) = (0, 0, 0, 0, 0);
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
            "pool" | "maxpool" | "avgpool" | "res" => 3,
            "fc" | "dropout" => 2,
            "act" | "flatten" | "bn" | "gap" => 1,
            other => bail!("unknown layer '{other}' in '{token}' (expected conv, act, pool, maxpool, avgpool, flatten, fc, bn, dropout, gap, res)"),
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
            "bn" => {
                bns += 1;
                layers.push(LayerSpec::Bn {
                    name: format!("bn{bns}"),
                });
            }
            "dropout" => {
                let text = parts
                    .get(1)
                    .with_context(|| format!("'{token}': missing the drop probability"))?;
                let p: f32 = text
                    .parse()
                    .ok()
                    .filter(|p: &f32| (0.0..1.0).contains(p))
                    .with_context(|| {
                        format!("'{token}': the drop probability must be a number in [0, 1)")
                    })?;
                layers.push(LayerSpec::Dropout { p });
            }
            "gap" => {
                if flat {
                    bail!(
                        "'{token}': global average pooling cannot follow a dense layer or flatten"
                    );
                }
                layers.push(LayerSpec::Gap);
            }
            "res" => {
                if flat {
                    bail!("'{token}': a residual block cannot follow a dense layer or flatten");
                }
                blocks += 1;
                let out = positive(number(1, "output channels")?, "output channels")?;
                let stride = positive(optional(2, "stride", 1)?, "stride")?;
                layers.push(LayerSpec::Res {
                    name: format!("res{blocks}"),
                    out,
                    stride,
                    first_site: sites,
                });
                sites += 2;
            }
            _ => unreachable!("checked above"),
        }
    }
    match layers.first() {
        Some(LayerSpec::Act { .. }) => {
            bail!("the first layer cannot be an activation: it would act on the data itself")
        }
        Some(LayerSpec::Bn { .. }) => {
            bail!("the first layer cannot be `bn`: it would normalise the data, which is normalised already")
        }
        _ => {}
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
            (
                "conv:4:3,dropout:1,fc:10",
                "drop probability must be a number in [0, 1)",
            ),
            ("conv:4:3,dropout,fc:10", "missing the drop probability"),
            (
                "fc:8,res:8,fc:10",
                "residual block cannot follow a dense layer",
            ),
            ("fc:8,gap,fc:10", "global average pooling cannot follow"),
            ("bn,fc:10", "first layer cannot be `bn`"),
            ("conv:4:3,res:0,fc:10", "output channels must be > 0"),
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

    #[test]
    fn normalisation_dropout_gap_and_residual_tokens() {
        let layers = parse("conv:16:3:1:1,bn,act,res:16,res:32:2,gap,dropout:0.5,fc:10").unwrap();
        assert_eq!(
            layers,
            vec![
                LayerSpec::Conv {
                    name: "conv1".into(),
                    out: 16,
                    kernel: 3,
                    stride: 1,
                    padding: 1
                },
                LayerSpec::Bn { name: "bn1".into() },
                LayerSpec::Act { site: 0 },
                LayerSpec::Res {
                    name: "res1".into(),
                    out: 16,
                    stride: 1,
                    first_site: 1
                },
                LayerSpec::Res {
                    name: "res2".into(),
                    out: 32,
                    stride: 2,
                    first_site: 3
                },
                LayerSpec::Gap,
                LayerSpec::Dropout { p: 0.5 },
                LayerSpec::Flatten,
                LayerSpec::Fc {
                    name: "fc1".into(),
                    out: 10
                },
            ]
        );
        // The presets resolve for 32×32 colour inputs and end in one output per class.
        for preset in ["cifar", "cifar-bn", "resnet20"] {
            let layers = resolve(preset, [3, 32, 32], 100).unwrap();
            assert!(matches!(
                layers.last(),
                Some(LayerSpec::Fc { out: 100, .. })
            ));
        }
        let resnet = resolve("resnet20", [3, 32, 32], 10).unwrap();
        let blocks = resnet
            .iter()
            .filter(|l| matches!(l, LayerSpec::Res { .. }))
            .count();
        assert_eq!(blocks, 9);
    }
}
