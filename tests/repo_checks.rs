//! Repository checks that run as ordinary tests: every crate documents itself and warns on
//! missing docs, and library code has no bare `unwrap()` (an invariant gets an `expect`
//! saying why it holds).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn crates() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn every_crate_has_a_crate_doc_and_warns_on_missing_docs() {
    for krate in crates() {
        let lib = krate.join("src/lib.rs");
        let main = krate.join("src/main.rs");
        let entry = if lib.exists() { lib } else { main };
        let text = std::fs::read_to_string(&entry).unwrap();
        assert!(
            text.starts_with("//!"),
            "{} must open with a crate doc (//!)",
            entry.display()
        );
        if entry.ends_with("lib.rs") {
            assert!(
                text.contains("#![warn(missing_docs)]"),
                "{} lacks #![warn(missing_docs)]",
                entry.display()
            );
        }
    }
}

#[test]
fn library_code_has_no_bare_unwrap() {
    let mut offenders = Vec::new();
    for krate in crates() {
        let mut files = Vec::new();
        rust_files(&krate.join("src"), &mut files);
        for f in files {
            // Unit-test modules in their own file, and everything after `#[cfg(test)]`, are tests.
            if f.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            for (i, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("#[cfg(test)]") {
                    break;
                }
                let code = line.split("//").next().unwrap_or("");
                if code.contains(".unwrap()") {
                    offenders.push(format!(
                        "{}:{}: {}",
                        f.strip_prefix(root()).unwrap().display(),
                        i + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "bare unwrap() in library code:\n{}",
        offenders.join("\n")
    );
}
