//! Atomic file writes: every file slimnet writes appears whole or not at all.
//!
//! A write goes to a temporary file beside the target, is synced, and is renamed over the
//! target. Interruption: every write (and the probe of [`check_writable`]) runs under one
//! process-wide gate, from creating its temporary file until the rename or its removal, so no
//! temporary file exists while the gate is free. A tool's Ctrl-C / SIGTERM handler calls
//! [`stop_writes`] before exiting: it waits for a write in progress to finish (its target is
//! then whole) and keeps every later write from starting, so an interrupted process leaves
//! neither a partial target nor a temporary file behind.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::error::{NnError, Result};

/// Held from a temporary file's creation to its rename or removal.
static WRITE_GATE: Mutex<()> = Mutex::new(());

fn gate() -> MutexGuard<'static, ()> {
    // A write that panicked removed nothing; the gate itself guards no data.
    WRITE_GATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits for a write in progress to finish and blocks every later one for the life of the
/// process: call it from an interrupt handler just before `std::process::exit`.
pub fn stop_writes() {
    std::mem::forget(gate());
}

/// Writes `bytes` to `path` through a temporary file in the same directory, synced and then
/// renamed over `path`. On failure the temporary file is removed and `path` is untouched, so
/// a reader never sees a half-written output.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let path = path.as_ref();
    write_atomic_with(path, |f| {
        f.write_all(bytes).map_err(|e| NnError::io(path, e))
    })
}

/// Writes `path` atomically as [`write_atomic`] does, but the contents come from `write`,
/// which streams them into the temporary file (it may seek within it): a large output never
/// needs a whole file image in memory. When `write` fails, or the sync or rename after it,
/// the temporary file is removed, `path` is untouched and `write`'s error is returned.
pub fn write_atomic_with(
    path: impl AsRef<Path>,
    write: impl FnOnce(&mut std::fs::File) -> Result<()>,
) -> Result<()> {
    let path = path.as_ref();
    let file_name = path.file_name().ok_or_else(|| {
        NnError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let _gate = gate();
    let run = || -> Result<()> {
        let mut f = std::fs::File::create(&tmp).map_err(|e| NnError::io(path, e))?;
        write(&mut f)?;
        f.sync_all().map_err(|e| NnError::io(path, e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| NnError::io(path, e))
    };
    run().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Checks, before any work, that `path` can be written by [`write_atomic`] and would not
/// overwrite one of `inputs`: it names a file (not a directory) in an existing, writable
/// directory. The probe creates and removes the temporary file `write_atomic` would use.
pub fn check_writable(path: impl AsRef<Path>, inputs: &[&Path]) -> Result<()> {
    let path = path.as_ref();
    let bad = |reason: &str| NnError::Config(format!("output {}: {reason}", path.display()));
    let file_name = path.file_name().ok_or_else(|| bad("not a file path"))?;
    if path.is_dir() {
        return Err(bad("is a directory; give a file name"));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(bad(&format!(
            "its directory {} does not exist",
            dir.display()
        )));
    }
    if let Ok(out) = std::fs::canonicalize(path) {
        for input in inputs {
            if std::fs::canonicalize(input).is_ok_and(|i| i == out) {
                return Err(bad("is an input of this command; write to another file"));
            }
        }
    }
    let probe = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let _gate = gate();
    std::fs::File::create(&probe).map_err(|e| NnError::io(&dir, e))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("slimnet-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("out.bin");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failure_leaves_the_destination_untouched() {
        let missing = std::env::temp_dir()
            .join("slimnet-no-such-dir-xyz")
            .join("out.bin");
        assert!(write_atomic(&missing, b"x").is_err());
        assert!(!missing.exists());
    }

    #[test]
    fn a_streamed_write_that_fails_leaves_no_debris() {
        let dir = std::env::temp_dir().join(format!("slimnet-atomic-w-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("out.bin");
        write_atomic(&p, b"old").unwrap();
        let e = write_atomic_with(&p, |f| {
            f.write_all(b"half").unwrap();
            Err(NnError::Config("stopped halfway".into()))
        })
        .unwrap_err();
        assert!(e.to_string().contains("stopped halfway"), "{e}");
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"old",
            "the target is untouched"
        );
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file: {names:?}");
        // A streamed write may seek back and patch what it wrote first.
        write_atomic_with(&p, |f| {
            use std::io::{Seek, SeekFrom};
            f.write_all(b"xxxxnew").unwrap();
            f.seek(SeekFrom::Start(0)).unwrap();
            f.write_all(b"the ").unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"the new");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn outputs_are_checked_before_work() {
        // A directory of its own: the tests run in parallel and each counts its entries.
        let dir = std::env::temp_dir().join(format!("slimnet-atomic-c-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("in.model");
        std::fs::write(&input, b"x").unwrap();
        check_writable(dir.join("out.slim"), &[&input]).unwrap();
        assert!(!dir.join("out.slim").exists());
        let leftovers = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 1, "the probe is removed");
        for (p, want) in [
            (dir.join("nope/out.slim"), "does not exist"),
            (dir.clone(), "is a directory"),
            (input.clone(), "is an input"),
        ] {
            let e = check_writable(&p, &[&input]).unwrap_err().to_string();
            assert!(e.contains(want), "{}: {e}", p.display());
        }
        // The same file through another spelling.
        let e = check_writable(dir.join(".").join("in.model"), &[&input])
            .unwrap_err()
            .to_string();
        assert!(e.contains("is an input"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
