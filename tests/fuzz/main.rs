//! Fuzzing the code that reads untrusted input: the tar reader (verify and extract), the
//! spec reader and validator, and the redactors.
//!
//! A seeded mutation harness, with no dependency beyond the crate's own: each target
//! starts from a corpus of real inputs (archives holdfast writes, the spec files of the
//! checkout, recipe-like files under `tests/fixtures/fuzz/<target>/`) and mutates them
//! byte by byte and by the structure of their format. Every input runs on a worker thread
//! with a deadline, so a hang is found as surely as a panic.
//!
//! - `corpus_and_crashers_run_clean` runs in every `cargo test`: the whole corpus, every
//!   crasher ever found (saved as `crash-*` beside the corpus), and a short fixed-seed
//!   campaign per target.
//! - `campaign` is the long run behind `make fuzz`: `FUZZ_EXECS` mutated inputs per
//!   target (default 1,000,000), from `FUZZ_SEED` (default: the clock; printed, so a run
//!   can be repeated), for the targets in `FUZZ_TARGETS` (default `tar,yaml,redact`).
//!   Crashers are saved beside the corpus; fix the bug and commit them.

mod mutate;
mod redact;
mod runner;
mod tar;
mod tarfmt;
mod text;
mod yaml;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use runner::{Target, Verdict, Worker, campaign, committed_inputs};

/// Scratch space for extraction: `FUZZ_TMP`, or the temporary folder. Not memory by
/// default: a bug that writes without bound would fill it.
fn scratch() -> tempfile::TempDir {
    let base = std::env::var_os("FUZZ_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    tempfile::Builder::new()
        .prefix("holdfast-fuzz-")
        .tempdir_in(base)
        .expect("creating the fuzz scratch folder")
}

fn target(name: &str, scratch: &std::path::Path) -> Arc<dyn Target> {
    match name {
        "tar" => Arc::new(tar::TarTarget::new(scratch)),
        "yaml" => Arc::new(yaml::YamlTarget::new()),
        "redact" => {
            let corpus: Vec<Vec<u8>> = committed_inputs("redact")
                .into_iter()
                .map(|(_, bytes)| bytes)
                .collect();
            Arc::new(redact::RedactTarget::new(&corpus))
        }
        other => panic!("unknown fuzz target {other:?}; the targets are tar, yaml, redact"),
    }
}

const TARGETS: [&str; 3] = ["tar", "yaml", "redact"];

#[test]
fn corpus_and_crashers_run_clean() {
    let scratch = scratch();
    for name in TARGETS {
        let target = target(name, scratch.path());
        let mut worker = Worker::new(target.clone());
        let limit = Duration::from_secs(30);
        let mut inputs: Vec<(String, Vec<u8>)> = target
            .seeds()
            .into_iter()
            .enumerate()
            .map(|(i, s)| (format!("{name} seed {i}"), s))
            .collect();
        inputs.extend(committed_inputs(name));
        assert!(!inputs.is_empty(), "{name}: the corpus is empty");
        for (label, input) in &inputs {
            let verdict = worker.run(input, limit);
            assert!(verdict.is_fine(), "{label}: {verdict:?}");
        }
        // A short campaign with a fixed seed: the mutators themselves keep working.
        let execs = match name {
            "tar" => 200,
            "yaml" => 300,
            _ => 1000,
        };
        let result = campaign(target, 13, execs, limit, false);
        assert!(
            result.crashers.is_empty(),
            "{name}: {:?}",
            result.crashers.iter().map(|(v, _)| v).collect::<Vec<_>>()
        );
    }
}

/// Bytes in use on the filesystem of `path`.
fn used_bytes(path: &std::path::Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("a path");
    // SAFETY: `c` is a valid NUL-terminated path and `stat` a writable statvfs for the call.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut stat) };
    assert_eq!(rc, 0, "statvfs {}", path.display());
    (stat.f_blocks - stat.f_bfree) * stat.f_frsize
}

/// An input that writes without bound (a hang the worker cannot be pulled out of) would
/// fill the scratch filesystem: past `GROWTH` more than at the start, the campaign removes
/// its scratch folder and stops the process, which frees what the hung thread held open.
fn watch_scratch(scratch: PathBuf) {
    const GROWTH: u64 = 4 << 30;
    let start = used_bytes(&scratch);
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(200));
            if used_bytes(&scratch) > start + GROWTH {
                let current = runner::CURRENT.lock().unwrap_or_else(|e| e.into_inner());
                let (name, extension, input) = &*current;
                let path = runner::save_crasher(name, extension, input);
                eprintln!(
                    "fuzz: the scratch filesystem grew by more than {} GiB: an input writes \
                     without bound; the input that runs now is saved as {}",
                    GROWTH >> 30,
                    path.display()
                );
                let _ = std::fs::remove_dir_all(&scratch);
                std::process::exit(1);
            }
        }
    });
}

#[test]
#[ignore = "the long campaign: `make fuzz`"]
fn campaign_runs_clean() {
    let execs: u64 = std::env::var("FUZZ_EXECS")
        .ok()
        .map(|v| v.parse().expect("FUZZ_EXECS is a number"))
        .unwrap_or(1_000_000);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .map(|v| v.parse().expect("FUZZ_SEED is a number"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let names = std::env::var("FUZZ_TARGETS").unwrap_or_else(|_| TARGETS.join(","));
    let scratch = scratch();
    watch_scratch(scratch.path().to_path_buf());
    let mut failed = Vec::new();
    println!("fuzz seed {seed}");
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let target = target(name, scratch.path());
        let result = campaign(target, seed, execs, Duration::from_secs(10), true);
        println!(
            "fuzz {name:>6}: {} executions in {:.1} s ({:.0}/s), corpus {}, crashers {}, \
             slowest input {:.3} s ({} bytes)",
            result.execs,
            result.seconds,
            result.execs as f64 / result.seconds,
            result.corpus,
            result.crashers.len(),
            result.slowest.0.as_secs_f64(),
            result.slowest.1.len(),
        );
        if result.slowest.0 > Duration::from_millis(200) {
            let text = String::from_utf8_lossy(&result.slowest.1);
            println!(
                "  the slowest input: {:?}",
                text.chars().take(3000).collect::<String>()
            );
        }
        for (verdict, input) in &result.crashers {
            println!("  {} bytes: {verdict:?}", input.len());
            if !matches!(verdict, Verdict::Fine(_)) {
                failed.push(name.to_string());
            }
        }
    }
    assert!(
        failed.is_empty(),
        "crashers found in {failed:?}; they are saved beside the corpus"
    );
}
