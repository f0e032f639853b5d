//! The checksum that names a dataset's content in a run's identity, so that two runs on the same
//! data share it wherever the data lies, and a run on changed data is a different run.
//!
//! - `digits`: the SHA-256 of the embedded file;
//! - `synthetic`: the generator's name; its settings are part of the configuration already;
//! - every kind read from a folder: the SHA-256 over the folder's regular files below it
//!   (hidden files aside), in path order, of each file's relative path, length and bytes.
//!   A file beside the data that the loader does not read still counts: the checksum may change
//!   when nothing the run reads did, never the other way round.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::{digits, DatasetKind, DatasetSpec};

/// The checksum of the data `spec` names, as 64 hex digits (or `synthetic`).
pub fn checksum(spec: &DatasetSpec) -> Result<String> {
    match spec.kind {
        DatasetKind::Digits => Ok(hex(&Sha256::digest(digits::EMBEDDED))),
        DatasetKind::Synthetic => Ok("synthetic".into()),
        _ => {
            let dir = spec
                .data_dir
                .as_ref()
                .with_context(|| format!("--dataset {} needs a data folder", spec.kind))?;
            folder_checksum(dir)
        }
    }
}

fn folder_checksum(dir: &Path) -> Result<String> {
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    for relative in files {
        let path = dir.join(&relative);
        let mut file =
            fs::File::open(&path).with_context(|| format!("reading {}", path.display()))?;
        let length = file
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(length.to_le_bytes());
        loop {
            let n = file
                .read(&mut buffer)
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
    }
    Ok(hex(&hasher.finalize()))
}

fn collect_files(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", path.display()))?;
        if kind.is_dir() {
            collect_files(root, &path, files)?;
        } else if kind.is_file() {
            files.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_checksum_follows_the_content_not_the_place() {
        let a = tempfile::tempdir().unwrap();
        fs::create_dir(a.path().join("cat")).unwrap();
        fs::write(a.path().join("cat/1.png"), b"one").unwrap();
        fs::write(a.path().join("top.bin"), b"two").unwrap();
        fs::write(a.path().join(".DS_Store"), b"ignored").unwrap();
        // By hand: SHA-256 of "cat/1.png\0" + 3u64 LE + "one" + "top.bin\0" + 3u64 LE + "two".
        let mut expected = Sha256::new();
        for (name, bytes) in [("cat/1.png", b"one"), ("top.bin", b"two")] {
            expected.update(name.as_bytes());
            expected.update([0]);
            expected.update(3u64.to_le_bytes());
            expected.update(bytes);
        }
        let mut spec = DatasetSpec::new(DatasetKind::Folder);
        spec.data_dir = Some(a.path().to_path_buf());
        let first = checksum(&spec).unwrap();
        assert_eq!(first, hex(&expected.finalize()));
        // The same files elsewhere: the same checksum. One byte changed: another.
        let b = tempfile::tempdir().unwrap();
        fs::create_dir(b.path().join("cat")).unwrap();
        fs::write(b.path().join("cat/1.png"), b"one").unwrap();
        fs::write(b.path().join("top.bin"), b"two").unwrap();
        spec.data_dir = Some(b.path().to_path_buf());
        assert_eq!(checksum(&spec).unwrap(), first);
        fs::write(b.path().join("top.bin"), b"twO").unwrap();
        assert_ne!(checksum(&spec).unwrap(), first);
    }
}
