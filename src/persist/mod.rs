//! Snapshots on disk. Files are written crash-safely: a temporary file beside the target,
//! fsync it, rename it over the target, fsync the folder. A crash at any point leaves the
//! old or the new file. [`format`] is the document inside.
pub mod format;

use crate::core::Saved;
use crate::error::{Error, Result};
use serde_json::Value;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("{what} {}: {e}", path.display()))
}

/// Writes the snapshot document of `saved` to `path` atomically. Cost: O(size of the data)
/// plus two fsyncs.
pub fn save(path: &Path, saved: &Saved) -> Result<()> {
    write_atomically(path, format::document(saved).to_string().as_bytes())
}

/// Replaces `path` with `bytes` atomically. Cost: O(len) plus two fsyncs.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::io(format!("save: {} does not name a file", path.display())))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => Path::new(".").to_path_buf(),
    };
    let temp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = File::create(&temp).map_err(|e| io_error("save: cannot create", &temp, e))?;
        file.write_all(bytes).map_err(|e| io_error("save: cannot write", &temp, e))?;
        file.sync_all().map_err(|e| io_error("save: cannot fsync", &temp, e))?;
        fs::rename(&temp, path).map_err(|e| io_error("save: cannot rename onto", path, e))?;
        // The rename is durable only once the folder itself is synced.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("save: cannot fsync folder", &dir, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Reads and parses a snapshot file. Cost: O(len).
pub fn read_document(path: &Path) -> Result<Value> {
    let bytes = fs::read(path).map_err(|e| io_error("load: cannot read", path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::json(format!("load: {} is not valid JSON: {e}", path.display())))
}
