//! Golden outputs: text a person reads (help texts, log lines, tables) kept in
//! `tests/golden/`, so that a change to it shows in review as a diff of that file.
//!
//! `assert_golden("help/plan.txt", &text)` compares `text` with the file and fails with
//! both when they differ. Run the tests with `HOLDFAST_UPDATE_GOLDEN=1` to write the files
//! from what the code prints now, then read the diff before committing it.

use std::path::PathBuf;

fn golden_path(name: &str) -> PathBuf {
    super::crate_root().join("tests/golden").join(name)
}

/// Fails unless `actual` equals the golden file `name` (a path under `tests/golden/`).
pub fn assert_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var_os("HOLDFAST_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("golden files live in a folder"))
            .expect("creating the golden folder");
        std::fs::write(&path, actual).expect("writing the golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "golden file tests/golden/{name} cannot be read ({e}); run with \
             HOLDFAST_UPDATE_GOLDEN=1 to write it from:\n{actual}"
        )
    });
    if expected != actual {
        panic!(
            "output differs from tests/golden/{name} (HOLDFAST_UPDATE_GOLDEN=1 rewrites it)\n\
             --- expected\n{expected}\n--- actual\n{actual}"
        );
    }
}
