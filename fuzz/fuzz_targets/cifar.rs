//! The CIFAR binary parser on arbitrary bytes. The first byte picks the variant (bit 0:
//! CIFAR-100); the rest is the file. It must return an error or whole records with labels in
//! range and pixels in [0, 1], and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use necrosis_fuzz::cifar::parse_cifar_bytes;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, file)) = data.split_first() else { return };
    let cifar100 = mode & 1 == 1;
    if let Ok(split) = parse_cifar_bytes(file, cifar100) {
        let (classes, record) = if cifar100 { (100, 3074) } else { (10, 3073) };
        assert!(!split.labels.is_empty());
        assert_eq!(split.labels.len() * record, file.len());
        assert_eq!(split.images.len(), split.labels.len() * 3072);
        assert!(split.labels.iter().all(|&l| (l as usize) < classes));
        assert!(split.images.iter().all(|&p| (0.0..=1.0).contains(&p)));
    }
});
