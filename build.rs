//! `HOLDFAST_SKIP_DOCKER=1` marks the tests that need Docker, promtool or a storage server
//! (Garage, sshd) as ignored (`#[cfg_attr(skip_docker, ignore = "…")]`), so that a run which
//! skips them on purpose reports them as ignored instead of counting them as passed. Without
//! the variable they run, and a missing Docker or server fails them.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=HOLDFAST_SKIP_DOCKER");
    println!("cargo::rustc-check-cfg=cfg(skip_docker)");
    if std::env::var("HOLDFAST_SKIP_DOCKER").as_deref() == Ok("1") {
        println!("cargo::rustc-cfg=skip_docker");
    }
}
