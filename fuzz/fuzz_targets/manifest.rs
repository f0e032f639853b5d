//! manifest.json readers on arbitrary text: the trainer's `necrosis::record::Manifest::parse`
//! (what `resume` reads) and the analysis crate's `load::Manifest::read` (what `analyze` and
//! `inspect` read). Both must return an error or a manifest, never panic; a manifest the trainer
//! accepts must survive a write/read round trip.
#![no_main]

use std::io::Write;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(manifest) = necrosis::record::Manifest::parse(text, Path::new("manifest.json")) {
        let json = serde_json::to_string(&manifest).expect("a parsed manifest serialises");
        let again = necrosis::record::Manifest::parse(&json, Path::new("manifest.json"));
        assert!(again.is_ok(), "round trip failed: {:?}", again.err());
    }
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("write");
    let _ = necrosis_analysis::load::Manifest::read(file.path());
});
