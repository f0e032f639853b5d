//! Writing and reading record files safely: atomic writes, the temporaries a killed writer
//! leaves, `probe_indices.json`, and reads that survive a parquet reader's panic on damaged data.

use std::fs;
use std::io::Write;
use std::path::Path;

use polars::prelude::{DataFrame, ParquetReader, ParquetWriter, SerReader};

use crate::{Problem, RecordError, Result};

/// The probe set's file name in a run directory.
pub const PROBE_INDICES_FILE: &str = "probe_indices.json";

/// The current time as RFC 3339 (UTC, seconds), as manifests record it.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Writes `bytes` to `path` through a temporary file in the same folder (`.<name>.tmp-<pid>`)
/// and a rename, so that a reader sees the old complete file or the new complete one, never
/// part of one; the temporary is removed if anything fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let Some(name) = path.file_name() else {
        return Err(RecordError::writing(
            path,
            Problem::Invalid("no file name".into()),
        ));
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| RecordError::writing(path, e))
}

/// Removes the temporary files of [`write_atomic`] that a killed writer left in `run_dir` and
/// its checkpoint folder: those of processes that no longer exist. Call it holding the run.
pub fn remove_stale_temporaries(run_dir: &Path) -> Result<()> {
    for dir in [run_dir.to_path_buf(), run_dir.join("checkpoint")] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix('.')
                .and_then(|rest| rest.rsplit_once(".tmp-"))
                .and_then(|(_, pid)| pid.parse::<u32>().ok())
            else {
                continue;
            };
            let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
            if !alive {
                fs::remove_file(entry.path())
                    .map_err(|e| RecordError::writing(&entry.path(), e))?;
            }
        }
    }
    Ok(())
}

/// Runs `read`, a reader of the record file `path`, turning a panic inside it into an error
/// naming that file. polars panics, instead of failing, on some parquet files damaged inside
/// their data pages; wrap only the reading itself, so that a panic anywhere else (a bug) is not
/// taken for a damaged file.
pub fn without_reader_panics<T>(path: &Path, read: impl FnOnce() -> T) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).map_err(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        RecordError::reading(path, Problem::ReaderPanicked(message))
    })
}

/// Reads a whole parquet file.
pub fn read_parquet(path: &Path) -> Result<DataFrame> {
    let file = fs::File::open(path).map_err(|e| RecordError::reading(path, e))?;
    without_reader_panics(path, || ParquetReader::new(file).finish())?
        .map_err(|e| RecordError::reading(path, Problem::NotParquet(e.to_string())))
}

/// Writes `frame` as a parquet file, atomically.
pub fn write_parquet(path: &Path, frame: &mut DataFrame) -> Result<()> {
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes)
        .finish(frame)
        .map_err(|e| RecordError::writing(path, Problem::NotParquet(e.to_string())))?;
    write_atomic(path, &bytes)
}

/// `probe_indices.json`: `{"indices": [...]}`, the probe set's training-split indices.
pub fn write_probe_indices(run_dir: &Path, indices: &[usize]) -> Result<()> {
    let path = run_dir.join(PROBE_INDICES_FILE);
    let json = serde_json::to_vec(&serde_json::json!({ "indices": indices }))
        .map_err(|e| RecordError::writing(&path, Problem::Invalid(e.to_string())))?;
    write_atomic(&path, &json)
}

/// Reads `probe_indices.json` back.
pub fn read_probe_indices(run_dir: &Path) -> Result<Vec<usize>> {
    #[derive(serde::Deserialize)]
    struct ProbeIndices {
        indices: Vec<usize>,
    }
    let path = run_dir.join(PROBE_INDICES_FILE);
    let text = fs::read_to_string(&path).map_err(|e| RecordError::reading(&path, e))?;
    let parsed: ProbeIndices = serde_json::from_str(&text)
        .map_err(|e| RecordError::reading(&path, Problem::NotJson(e)))?;
    Ok(parsed.indices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        // Into a folder that does not exist: an error naming the file, and nothing left.
        let missing = dir.path().join("no/such/x.json");
        let err = write_atomic(&missing, b"x").unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("writing {}", missing.display())),
            "{err}"
        );
    }

    #[test]
    fn a_reader_panic_names_the_file_and_the_panic() {
        let path = Path::new("runs/x/neurons.parquet");
        let err = without_reader_panics(path, || -> u32 { panic!("range end index 4900") })
            .unwrap_err()
            .to_string();
        assert!(err.contains("reading runs/x/neurons.parquet"), "{err}");
        assert!(err.contains("range end index 4900"), "{err}");
        assert_eq!(without_reader_panics(path, || 7).unwrap(), 7);
    }

    #[test]
    fn probe_indices_are_the_documented_json() {
        let dir = tempfile::tempdir().unwrap();
        write_probe_indices(dir.path(), &[4, 0, 9]).unwrap();
        let text = fs::read_to_string(dir.path().join(PROBE_INDICES_FILE)).unwrap();
        assert_eq!(text, r#"{"indices":[4,0,9]}"#);
        assert_eq!(read_probe_indices(dir.path()).unwrap(), vec![4, 0, 9]);
    }
}
