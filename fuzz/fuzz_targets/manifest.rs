//! The manifest.json reader on arbitrary text: `necrosis_records::Manifest::parse`, what
//! `resume`, `analyze` and `inspect` all read through. It must return an error or a manifest,
//! never panic; a manifest it accepts must survive a write/read round trip.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(manifest) = necrosis_records::Manifest::parse(text, Path::new("manifest.json")) {
        let json = serde_json::to_string(&manifest).expect("a parsed manifest serialises");
        let again = necrosis_records::Manifest::parse(&json, Path::new("manifest.json"));
        assert!(again.is_ok(), "round trip failed: {:?}", again.err());
    }
});
