//! The IDX parser on arbitrary bytes. The first byte picks the mode (bit 0: gzip, bit 1:
//! images rather than labels); the rest is the file. It must return an error or dimensions
//! whose product is exactly the number of elements, and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use necrosis_fuzz::idx::parse_idx_bytes;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, file)) = data.split_first() else { return };
    let (gzipped, images) = (mode & 1 == 1, mode & 2 == 2);
    if let Ok((dims, elements)) = parse_idx_bytes(file, gzipped, images) {
        assert_eq!(dims.len(), if images { 3 } else { 1 });
        assert!(dims[0] > 0, "zero samples accepted");
        assert_eq!(dims.iter().product::<usize>(), elements.len());
        if !gzipped {
            assert_eq!(file.len(), 4 + 4 * dims.len() + elements.len());
        }
    }
});
