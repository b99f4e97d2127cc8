//! Finding the `.rs` files under the paths given.

use std::fs;
use std::path::{Path, PathBuf};

use crate::report::{ErrorKind, FileError, Options};

/// Directory names never entered while walking.
const ALWAYS_SKIPPED: &[&str] = &["target", "node_modules"];

/// Directory names entered only with [`Options::include_tests`].
const TEST_DIRS: &[&str] = &["tests", "benches", "fuzz"];

/// The files to lint under `paths`, in a stable order, and the paths that could not be read.
pub(crate) fn collect(paths: &[PathBuf], opts: &Options) -> (Vec<PathBuf>, Vec<FileError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => walk(path, opts, &mut files, &mut errors),
            Ok(_) => files.push(path.clone()),
            Err(e) => errors.push(FileError {
                file: path.display().to_string(),
                kind: ErrorKind::Io,
                position: None,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    (files, errors)
}

fn walk(dir: &Path, opts: &Options, files: &mut Vec<PathBuf>, errors: &mut Vec<FileError>) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(FileError {
                file: dir.display().to_string(),
                kind: ErrorKind::Io,
                position: None,
                message: format!("cannot read directory: {e}"),
            });
            return;
        }
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        // Symbolic links are not followed: no cycles, no files outside the tree.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if name.starts_with('.')
                || ALWAYS_SKIPPED.contains(&name.as_str())
                || (!opts.include_tests && TEST_DIRS.contains(&name.as_str()))
            {
                continue;
            }
            walk(&path, opts, files, errors);
        } else if kind.is_file() && name.ends_with(".rs") {
            files.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_in_order_and_skips_tests_unless_asked() {
        let root = std::env::temp_dir().join(format!("tflint-discover-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for dir in ["src/b", "tests", "target", ".git"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        for file in [
            "src/b/z.rs",
            "src/a.rs",
            "src/notes.txt",
            "tests/t.rs",
            "target/x.rs",
            ".git/y.rs",
        ] {
            fs::write(root.join(file), "").unwrap();
        }
        let rel = |files: Vec<PathBuf>| -> Vec<String> {
            files
                .iter()
                .map(|f| {
                    f.strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/")
                })
                .collect()
        };
        let (files, errors) = collect(std::slice::from_ref(&root), &Options::default());
        assert!(errors.is_empty());
        assert_eq!(rel(files), ["src/a.rs", "src/b/z.rs"]);
        let opts = Options::default().with_tests(true);
        let (files, _) = collect(std::slice::from_ref(&root), &opts);
        assert_eq!(rel(files), ["src/a.rs", "src/b/z.rs", "tests/t.rs"]);
        let (_, errors) = collect(&[root.join("missing")], &Options::default());
        assert_eq!(errors[0].kind, ErrorKind::Io);
        fs::remove_dir_all(&root).unwrap();
    }
}
