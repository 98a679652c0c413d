//! Snapshots on disk. Files are written crash-safely: a temporary file beside the target,
//! fsync it, rename it over the target, fsync the folder. A crash at any point leaves the
//! old or the new file. [`format`] is the document inside.
//!
//! Neither direction trusts the file system: `save` creates its temporary file under an
//! unpredictable name, exclusively and without following a symlink planted there, and
//! replaces only a regular file (or nothing); `load` reads only a regular file, never
//! blocks on a FIFO, and reads at most `max_snapshot_bytes`, parsing as it reads.
pub mod format;

use crate::core::{Restore, Saved};
use crate::error::{Error, Result};
use serde_json::error::Category;
use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

fn io_error(what: &str, path: &Path, e: io::Error) -> Error {
    Error::io(format!("{what} {}: {e}", path.display()))
}

/// Writes the snapshot document of `saved` to `path` atomically, streaming it into the
/// temporary file. `path` must name a regular file or nothing: anything else (a folder, a
/// device, a FIFO, a symlink) answers `IO` and is left alone. Cost: O(size of the data)
/// plus two fsyncs; memory O(channels) beyond `saved`.
pub fn save(path: &Path, saved: Saved) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::io(format!("save: {} does not name a file", path.display())))?;
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => {
            return Err(Error::io(format!(
                "save: {} is not a regular file ({}); it is left alone",
                path.display(),
                describe(&meta.file_type())
            )))
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("save: cannot inspect", path, e)),
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (temp, file) = create_temp(&dir, &name.to_string_lossy())?;
    let result = (|| {
        let mut out = BufWriter::with_capacity(1 << 16, file);
        format::write(&mut out, saved).map_err(|e| io_error("save: cannot write", &temp, e))?;
        let file = out.into_inner().map_err(|e| io_error("save: cannot write", &temp, e.into_error()))?;
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

fn describe(t: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a folder"
    } else if t.is_symlink() {
        "a symlink"
    } else {
        "not a file"
    }
}

/// Creates `.NAME.RANDOM.tmp` in `dir` exclusively (`O_CREAT | O_EXCL`, and `O_NOFOLLOW`
/// on Unix), so nothing planted at a guessed name is followed or overwritten. The 64
/// random bits come from the standard library's per-process random hash keys.
fn create_temp(dir: &Path, name: &str) -> Result<(PathBuf, File)> {
    let mut attempts = 0;
    loop {
        let mut h = RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
        );
        let temp = dir.join(format!(".{name}.{:016x}.tmp", h.finish()));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(libc::O_NOFOLLOW);
        }
        match options.open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => attempts += 1,
            Err(e) => return Err(io_error("save: cannot create", &temp, e)),
        }
    }
}

/// Reads the snapshot at `path` into a fresh [`Restore`]: only a regular file (`IO`
/// otherwise, without blocking on a FIFO), at most `max_bytes` of it (`LIMIT` beyond),
/// parsed as it is read so that memory stays proportional to the file. Cost: O(size of
/// the file).
pub fn load(path: &Path, max_bytes: u64, restore: &mut Restore) -> Result<()> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Opening a FIFO without a writer would block; a regular file ignores the flag.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| io_error("load: cannot read", path, e))?;
    let meta = file.metadata().map_err(|e| io_error("load: cannot inspect", path, e))?;
    if !meta.file_type().is_file() {
        return Err(Error::io(format!(
            "load: {} is not a regular file ({})",
            path.display(),
            describe(&meta.file_type())
        )));
    }
    if meta.len() > max_bytes {
        return Err(Error::limit(format!(
            "load: {} is {} bytes, more than max_snapshot_bytes ({max_bytes})",
            path.display(),
            meta.len()
        )));
    }
    // A file growing while it is read still stops at the limit.
    let reader = BufReader::with_capacity(1 << 16, file.take(max_bytes));
    format::read(reader, restore).map_err(|e| match e.classify() {
        Category::Io => Error::io(format!("load: cannot read {}: {e}", path.display())),
        Category::Syntax | Category::Eof => {
            Error::json(format!("load: {} is not valid JSON: {e}", path.display()))
        }
        Category::Data => Error::json(format!("load: {}: snapshot: {e}", path.display())),
    })
}
