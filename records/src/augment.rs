//! Training-time data augmentation, as a run's configuration names it: a random crop of the
//! zero-padded image and a random horizontal flip, the CIFAR recipe of torchvision's
//! `RandomCrop(size, padding=P)` followed by `RandomHorizontalFlip()`. The trainer applies it
//! (`necrosis::data::augment`); this crate holds the setting and its text form.
//!
//! # Text form
//!
//! | text          | meaning                                               |
//! |---------------|-------------------------------------------------------|
//! | `none`        | no augmentation (the default)                         |
//! | `flip`        | horizontal flip with probability ½                    |
//! | `crop:P`      | random crop of the image padded by `P ≥ 1` pixels     |
//! | `crop:P+flip` | both: the crop first, then the flip                   |
//!
//! Parsing accepts exactly these forms (lower case, no spaces); [`fmt::Display`] writes them,
//! and serde reads and writes the same text as a JSON string.

use std::fmt;
use std::str::FromStr;

use crate::config::InvalidConfig;

/// What augmentation a training minibatch gets. The default, `none`, changes nothing.
/// The largest crop padding accepted: far beyond any image side this toolkit trains on, and small
/// enough that the crop's offset arithmetic cannot overflow.
pub const MAX_CROP_PADDING: usize = 4096;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Augment {
    /// Pixels of padding on every side before the random crop back to the image's size;
    /// 0 = no crop.
    pub crop_padding: usize,
    /// Whether each image is flipped left-right with probability ½.
    pub flip: bool,
}

impl Augment {
    /// No augmentation: `none`.
    pub const NONE: Augment = Augment {
        crop_padding: 0,
        flip: false,
    };

    /// Whether this augmentation leaves every image as it is.
    pub fn is_none(&self) -> bool {
        self.crop_padding == 0 && !self.flip
    }
}

impl fmt::Display for Augment {
    /// The canonical text: `none`, `flip`, `crop:P` or `crop:P+flip`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.crop_padding, self.flip) {
            (0, false) => f.write_str("none"),
            (0, true) => f.write_str("flip"),
            (p, false) => write!(f, "crop:{p}"),
            (p, true) => write!(f, "crop:{p}+flip"),
        }
    }
}

impl FromStr for Augment {
    type Err = InvalidConfig;

    /// Parses the forms [`fmt::Display`] writes; anything else is an error under the key
    /// `augment` that quotes the text.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |problem: String| InvalidConfig {
            key: "augment",
            problem: format!("'{text}': {problem}"),
        };
        let expected = || bad("expected none, flip, crop:P or crop:P+flip".into());
        match text {
            "none" => return Ok(Augment::NONE),
            "flip" => {
                return Ok(Augment {
                    crop_padding: 0,
                    flip: true,
                })
            }
            _ => {}
        }
        let Some(rest) = text.strip_prefix("crop:") else {
            return Err(expected());
        };
        let (padding, flip) = match rest.strip_suffix("+flip") {
            Some(padding) => (padding, true),
            None => (rest, false),
        };
        // Digits only: `usize::from_str` would also take a leading `+`.
        if padding.is_empty() || !padding.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!(
                "the crop padding '{padding}' is not a whole number (expected crop:P or crop:P+flip)"
            )));
        }
        let crop_padding: usize = padding
            .parse()
            .map_err(|_| bad(format!("the crop padding '{padding}' is too large")))?;
        if crop_padding == 0 {
            return Err(bad(
                "the crop padding must be at least 1 (write none or flip for no crop)".into(),
            ));
        }
        if crop_padding > MAX_CROP_PADDING {
            return Err(bad(format!(
                "the crop padding {crop_padding} is larger than {MAX_CROP_PADDING} pixels"
            )));
        }
        Ok(Augment { crop_padding, flip })
    }
}

crate::text_serde::serde_as_text!(Augment);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        let cases = [
            ("none", 0, false),
            ("flip", 0, true),
            ("crop:4", 4, false),
            ("crop:4+flip", 4, true),
            ("crop:1", 1, false),
            ("crop:12+flip", 12, true),
        ];
        for (text, crop_padding, flip) in cases {
            let augment: Augment = text.parse().unwrap();
            assert_eq!(augment, Augment { crop_padding, flip }, "{text}");
            assert_eq!(augment.to_string(), text);
            assert_eq!(augment.is_none(), text == "none");
            let json = serde_json::to_string(&augment).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Augment>(&json).unwrap(), augment);
        }
        assert_eq!(Augment::default(), Augment::NONE);
        assert!(Augment::default().is_none());
    }

    #[test]
    fn bad_text_is_an_error_naming_the_key_and_the_text() {
        for text in [
            "",
            "None",
            "flip+crop:4",
            "crop",
            "crop:",
            "crop:0",
            "crop:0+flip",
            "crop:-1",
            "crop:+4",
            "crop:4 ",
            "crop:4+",
            "crop:4+flip+flip",
            "crop:x+flip",
            "crop:99999999999999999999999",
            "mixup",
        ] {
            let err = text.parse::<Augment>().unwrap_err();
            assert_eq!(err.key, "augment", "{text}");
            assert!(err.problem.contains(&format!("'{text}'")), "{err}");
        }
        let err = "crop:0".parse::<Augment>().unwrap_err();
        assert!(err.problem.contains("at least 1"), "{err}");
        let err = "crop:4097".parse::<Augment>().unwrap_err();
        assert!(err.problem.contains("larger than 4096"), "{err}");
        assert_eq!("crop:4096".parse::<Augment>().unwrap().crop_padding, 4096);
        let err = "rotate".parse::<Augment>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "augment 'rotate': expected none, flip, crop:P or crop:P+flip"
        );
        // serde reports the same problem.
        let err = serde_json::from_str::<Augment>("\"crop:0\"").unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
        assert!(serde_json::from_str::<Augment>("4").is_err());
    }
}
