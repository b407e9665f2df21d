//! The Debian package: built by the script `make deb` runs (`scripts/deb.sh`), installed
//! with dpkg, checked file by file, then purged.
//!
//! No release build: the script packages this test run's binary with `--no-build`,
//! copied into a target folder of the test's own (where cargo-deb looks for
//! `target/release/holdfast`), so the package is made exactly as `make deb` makes it except
//! for the compiler's profile. That costs the stripping and compression of the debug
//! binary, about 15 seconds on 2 cores with cargo-deb's `--fast`.
//!
//! Installing changes this machine: `/usr/bin/holdfast`, `/etc/holdfast`, the unit. So the
//! test needs root, dpkg and cargo-deb (`scripts/test-env.sh` installs it), refuses to run
//! over a holdfast that is already installed, and purges the package at the end whatever
//! happened. A missing root or dpkg is a failure, not a skip, as `make test` runs as root
//! on Debian.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::Command;

use common::{crate_root, run, stderr, stdout};

/// What the package installs, each checked present after `dpkg -i` and absent after
/// `dpkg --purge`.
const FILES: [&str; 12] = [
    "/usr/bin/holdfast",
    // The same file as /usr/lib/systemd/system/holdfast.service on merged-/usr Debian.
    "/lib/systemd/system/holdfast.service",
    "/usr/share/man/man1/holdfast.1.gz",
    "/usr/share/man/man1/holdfast-run.1.gz",
    "/usr/share/man/man1/holdfast-notify-test.1.gz",
    "/usr/share/bash-completion/completions/holdfast",
    "/usr/share/zsh/vendor-completions/_holdfast",
    "/usr/share/fish/vendor_completions.d/holdfast.fish",
    "/etc/holdfast/holdfast.yaml",
    "/etc/holdfast/specs/example.yaml",
    "/usr/share/doc/holdfast/README.md",
    "/usr/share/holdfast/schemas/backuppolicy.schema.json",
];

/// Purges the package when dropped, so that a failed check leaves nothing installed.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let out = run(Command::new("dpkg").args(["--purge", "holdfast"]));
        if !out.status.success() {
            eprintln!("dpkg --purge holdfast failed:\n{}", stderr(&out));
        }
    }
}

fn sh(script: &str) -> std::process::Output {
    run(Command::new("sh").args(["-c", script]))
}

/// The text of a gzip file, failing unless it decompresses whole.
fn gunzip(path: &str) -> String {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{path} is not valid gzip: {e}"));
    text
}

/// `/usr/bin/holdfast` as a shell on the host runs it: with the installed configuration
/// file and none of the caller's `HOLDFAST_*` settings.
fn installed(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("/usr/bin/holdfast");
    cmd.args(args).current_dir("/");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HOLDFAST_") {
            cmd.env_remove(name);
        }
    }
    run(&mut cmd)
}

#[test]
fn the_package_installs_holdfast_its_unit_pages_completions_and_example_and_purge_removes_them() {
    assert_eq!(
        stdout(&sh("id -u")).trim(),
        "0",
        "installing a package needs root (`make test` runs as root)"
    );
    assert!(
        sh("command -v dpkg").status.success(),
        "dpkg is missing: the package test runs on Debian"
    );
    assert!(
        !sh("dpkg-query -W holdfast").status.success()
            && !Path::new("/usr/bin/holdfast").exists()
            && !Path::new("/etc/holdfast").exists(),
        "holdfast is already installed on this machine (/usr/bin/holdfast or /etc/holdfast \
         exists): the package test would replace and then purge it; remove it first"
    );

    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release");
    std::fs::create_dir(&release).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_holdfast"), release.join("holdfast")).unwrap();
    let deb = dir.path().join("holdfast.deb");
    let out = run(Command::new(crate_root().join("scripts/deb.sh"))
        .args(["--no-build", "--fast", "--output"])
        .arg(&deb)
        .env("CARGO_TARGET_DIR", dir.path()));
    assert!(out.status.success(), "scripts/deb.sh: {}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        deb.to_str().unwrap(),
        "the path printed"
    );

    let control = run(Command::new("dpkg-deb").arg("--field").arg(&deb));
    let control = stdout(&control);
    for field in [
        "Package: holdfast",
        "Section: admin",
        "Priority: optional",
        "Recommends: docker.io | docker-ce",
    ] {
        assert!(control.contains(field), "no `{field}` in\n{control}");
    }
    let depends = control
        .lines()
        .find(|l| l.starts_with("Depends: "))
        .unwrap_or_else(|| panic!("no Depends in\n{control}"));
    assert!(depends.contains("libc6"), "{depends}");
    assert!(depends.contains("openssh-client"), "{depends}");

    let _installed = Installed;
    let out = run(Command::new("dpkg").arg("-i").arg(&deb));
    assert!(
        out.status.success(),
        "dpkg -i: {}{}",
        stdout(&out),
        stderr(&out)
    );

    for file in FILES {
        assert!(Path::new(file).is_file(), "{file} is not installed");
    }
    let version = installed(&["--version"]);
    assert_eq!(
        stdout(&version).trim(),
        format!("holdfast {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        std::fs::read_to_string("/lib/systemd/system/holdfast.service").unwrap(),
        std::fs::read_to_string(crate_root().join("packaging/systemd/holdfast.service")).unwrap()
    );
    // Installed, but neither enabled nor started.
    assert!(!Path::new("/etc/systemd/system/multi-user.target.wants/holdfast.service").exists());

    assert!(gunzip("/usr/share/man/man1/holdfast.1.gz").contains(".TH holdfast 1"));
    let run_page = gunzip("/usr/share/man/man1/holdfast-run.1.gz");
    assert!(run_page.contains(".TH holdfast-run 1"), "{run_page}");
    let rendered = run(Command::new("man")
        .args(["-l", "/usr/share/man/man1/holdfast-run.1.gz"])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100"));
    assert!(rendered.status.success(), "man -l: {}", stderr(&rendered));
    let rendered = stdout(&rendered);
    assert!(rendered.contains("HOLDFAST_SHUTDOWN_TIMEOUT"), "{rendered}");

    for (file, marker) in [
        (
            "/usr/share/bash-completion/completions/holdfast",
            "complete -F _holdfast",
        ),
        (
            "/usr/share/zsh/vendor-completions/_holdfast",
            "#compdef holdfast",
        ),
        (
            "/usr/share/fish/vendor_completions.d/holdfast.fish",
            "complete -c holdfast",
        ),
    ] {
        let script = std::fs::read_to_string(file).unwrap();
        assert!(script.contains(marker), "{file}: no `{marker}`");
    }

    let conffiles =
        run(Command::new("dpkg-query").args(["--showformat=${Conffiles}", "-W", "holdfast"]));
    for file in [
        "/etc/holdfast/holdfast.yaml",
        "/etc/holdfast/specs/example.yaml",
    ] {
        assert!(
            stdout(&conffiles).contains(file),
            "{file} is not a conffile: {}",
            stdout(&conffiles)
        );
    }
    // Without a path: the installed configuration file names the specs folder.
    let validate = installed(&["validate"]);
    assert!(
        validate.status.success(),
        "the example does not validate: {}{}",
        stdout(&validate),
        stderr(&validate)
    );
    assert!(
        stderr(&validate).contains("1 object: valid"),
        "{}",
        stderr(&validate)
    );

    let out = run(Command::new("dpkg").args(["--purge", "holdfast"]));
    assert!(
        out.status.success(),
        "dpkg --purge: {}{}",
        stdout(&out),
        stderr(&out)
    );
    for file in FILES {
        assert!(!Path::new(file).exists(), "{file} is left after purge");
    }
    assert!(
        !Path::new("/etc/holdfast").exists(),
        "/etc/holdfast is left after purge"
    );
    assert!(
        !sh("dpkg-query -W -f='${db:Status-Abbrev}' holdfast | grep -q '^ii'")
            .status
            .success()
    );
}
