//! Where Fashion-MNIST comes from: the lookup order tools follow, and the line they print.
//!
//! Order (DESIGN.md, Data): an explicit directory (`--data DIR`), then the `SLIMNET_DATA`
//! environment variable, then the Debian package path `/usr/share/datasets/fashion-mnist`,
//! then the fixtures slice of the repository (10,000 training + 10,000 test images).
//!
//! Design: a directory the user named (by argument or environment) that does not hold the
//! four files is an error, never a silent fall-through to other data: a typo must not turn a
//! full-data experiment into a fixtures run. Only the two implicit places (Debian, fixtures)
//! are skipped when absent. The search takes its inputs as parameters ([`locate_with`]) so
//! tests exercise every case without touching the process environment.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

use super::Dataset;
use super::idx::{Split, has_fashion_mnist, load_fashion_mnist, load_split, split_files};
use crate::error::{NnError, Result};

/// The environment variable naming a Fashion-MNIST directory.
pub const ENV_VAR: &str = "SLIMNET_DATA";

/// Where Debian's `dataset-fashion-mnist` package installs the full set.
pub const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The fixtures slice, found from the `nn` crate's source directory at compile time.
pub const FIXTURES_DIR_BUILT: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/fashion-mnist");

/// The fixtures slice, relative to the current directory (a binary run from the repo root).
pub const FIXTURES_DIR_RELATIVE: &str = "fixtures/fashion-mnist";

/// Which rule of the lookup order chose the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// A directory given explicitly (`--data DIR`).
    Explicit,
    /// The directory in `SLIMNET_DATA`.
    Env,
    /// The Debian package path.
    Debian,
    /// The repository's fixtures slice (not the full training set).
    Fixtures,
}

/// The data directory chosen and why; its `Display` is the line tools print, e.g.
/// `Fashion-MNIST from /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataSource {
    /// Which rule chose it.
    pub kind: SourceKind,
    /// The directory holding the IDX files.
    pub dir: PathBuf,
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.kind {
            SourceKind::Explicit => "--data".to_string(),
            SourceKind::Env => ENV_VAR.to_string(),
            SourceKind::Debian => "Debian package dataset-fashion-mnist".to_string(),
            SourceKind::Fixtures => {
                "fixtures slice: first 10,000 training images, not the full set".to_string()
            }
        };
        write!(f, "Fashion-MNIST from {} ({why})", self.dir.display())
    }
}

/// The implicit places searched after the explicit and environment directories.
#[derive(Clone, Debug)]
pub struct SearchPaths {
    /// The Debian package directory ([`DEBIAN_DIR`]).
    pub debian: PathBuf,
    /// Fixtures directories, in order ([`FIXTURES_DIR_BUILT`], [`FIXTURES_DIR_RELATIVE`]).
    pub fixtures: Vec<PathBuf>,
}

impl Default for SearchPaths {
    fn default() -> Self {
        Self {
            debian: PathBuf::from(DEBIAN_DIR),
            fixtures: vec![
                PathBuf::from(FIXTURES_DIR_BUILT),
                PathBuf::from(FIXTURES_DIR_RELATIVE),
            ],
        }
    }
}

/// Checks that a directory the user named holds both splits; the error says who named it.
fn require(dir: &Path, who: &str) -> Result<()> {
    let problem = match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("does not exist"),
        Err(_) => Some("cannot be read"),
        Ok(m) if !m.is_dir() => Some("is a file, not a directory"),
        Ok(_) => None,
    };
    if let Some(problem) = problem {
        return Err(NnError::Config(format!(
            "{who} {} {problem} (give the directory that holds the Fashion-MNIST IDX files)",
            dir.display()
        )));
    }
    for split in [Split::Train, Split::Test] {
        if let Err(e) = split_files(dir, split) {
            return Err(NnError::Config(format!(
                "{who} {} does not hold Fashion-MNIST: {e}",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// The lookup order over explicit inputs: `explicit`, then `env` (the value of
/// `SLIMNET_DATA`; empty counts as unset), then `paths.debian`, then each of
/// `paths.fixtures`. An explicit or environment directory without the files is an error.
pub fn locate_with(
    explicit: Option<&Path>,
    env: Option<&OsStr>,
    paths: &SearchPaths,
) -> Result<DataSource> {
    if let Some(dir) = explicit {
        require(dir, "--data")?;
        return Ok(DataSource {
            kind: SourceKind::Explicit,
            dir: dir.to_path_buf(),
        });
    }
    if let Some(dir) = env.filter(|v| !v.is_empty()).map(Path::new) {
        require(dir, ENV_VAR)?;
        return Ok(DataSource {
            kind: SourceKind::Env,
            dir: dir.to_path_buf(),
        });
    }
    if has_fashion_mnist(&paths.debian) {
        return Ok(DataSource {
            kind: SourceKind::Debian,
            dir: paths.debian.clone(),
        });
    }
    if let Some(dir) = paths.fixtures.iter().find(|d| has_fashion_mnist(d)) {
        return Ok(DataSource {
            kind: SourceKind::Fixtures,
            dir: dir.clone(),
        });
    }
    let searched: Vec<String> = std::iter::once(&paths.debian)
        .chain(&paths.fixtures)
        .map(|p| p.display().to_string())
        .collect();
    Err(NnError::Config(format!(
        "no Fashion-MNIST found: pass --data DIR or set {ENV_VAR}, or install the Debian \
         package dataset-fashion-mnist (searched {})",
        searched.join(", ")
    )))
}

/// Finds Fashion-MNIST: `explicit` (`--data DIR`), then `SLIMNET_DATA`, then the Debian
/// path, then the fixtures slice.
pub fn locate(explicit: Option<&Path>) -> Result<DataSource> {
    let env = std::env::var_os(ENV_VAR);
    locate_with(explicit, env.as_deref(), &SearchPaths::default())
}

/// Finds and loads Fashion-MNIST: `(source, train, test)`. Print `source` to say which
/// data a run used.
pub fn load(explicit: Option<&Path>) -> Result<(DataSource, Dataset, Dataset)> {
    let source = locate(explicit)?;
    let (train, test) = load_fashion_mnist(&source.dir)?;
    Ok((source, train, test))
}

/// Finds Fashion-MNIST as [`load`] does and loads only the test split (what evaluation
/// needs: the training split is six times larger).
pub fn load_test(explicit: Option<&Path>) -> Result<(DataSource, Dataset)> {
    let source = locate(explicit)?;
    let test = load_split(&source.dir, Split::Test)?;
    Ok((source, test))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_rule() {
        let s = DataSource {
            kind: SourceKind::Debian,
            dir: PathBuf::from(DEBIAN_DIR),
        };
        assert_eq!(
            s.to_string(),
            "Fashion-MNIST from /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist)"
        );
    }

    #[test]
    fn nothing_found_lists_places() {
        let paths = SearchPaths {
            debian: PathBuf::from("/nonexistent/debian"),
            fixtures: vec![PathBuf::from("/nonexistent/fixtures")],
        };
        let e = locate_with(None, None, &paths).unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent/debian") && e.contains("/nonexistent/fixtures"),
            "{e}"
        );
    }

    #[test]
    fn a_data_path_that_is_missing_or_a_file_says_which() {
        let dir = std::env::temp_dir().join(format!("slimnet-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let missing = require(&dir.join("absent"), "--data")
            .unwrap_err()
            .to_string();
        assert!(missing.contains("absent does not exist"), "{missing}");
        let is_file = require(&file, "--data").unwrap_err().to_string();
        assert!(
            is_file.contains("not-a-dir is a file, not a directory"),
            "{is_file}"
        );
        let empty = require(&dir, "--data").unwrap_err().to_string();
        assert!(empty.contains("does not hold Fashion-MNIST"), "{empty}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
