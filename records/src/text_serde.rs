//! Settings stored as their text form: a type with `Display` and `FromStr` (error: any
//! `Display`) serialises as that text, a JSON or TOML string, and deserialises by parsing it, so
//! a bad text is an error that quotes it. Written once for every such setting (`Augment`,
//! `BiasInit`); a bare number where the text is expected is refused.

/// Implements `Serialize` (as the `Display` text) and `Deserialize` (through `FromStr`) for
/// each type given.
macro_rules! serde_as_text {
    ($($ty:ty),+ $(,)?) => {$(
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )+};
}

pub(crate) use serde_as_text;
