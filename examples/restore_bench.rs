//! Extracts an artifact the way a restore does, for `bench/restore.sh`.
//!
//! Usage:
//! - `restore_bench extract ARTIFACT TARGET MAX_ENTRIES MAX_BYTES`: extracts ARTIFACT (a
//!   `.tar`, `.tar.gz`, `.tar.zst` file or a folder artifact) into TARGET, then syncs the
//!   filesystem, and prints the counts and both times as JSON.
//! - `restore_bench listing DIR`: prints the sha256, content size and entry count of the
//!   canonical listing of DIR, to compare two extracted trees.

use std::path::Path;
use std::time::Instant;

use holdfast::archive::{ExtractLimits, extract_artifact, folder_listing_sha256, sync_tree};
use holdfast::progress::Silent;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, artifact, target, entries, bytes] if cmd == "extract" => {
            let limits = ExtractLimits {
                max_entries: entries.parse()?,
                max_bytes: bytes.parse()?,
            };
            let started = Instant::now();
            let stats = extract_artifact(Path::new(artifact), Path::new(target), limits, &Silent)?;
            let extracted = started.elapsed().as_secs_f64();
            sync_tree(Path::new(target))?;
            let total = started.elapsed().as_secs_f64();
            println!(
                "{}",
                serde_json::json!({
                    "entries": stats.entries,
                    "bytes": stats.bytes,
                    "extract_seconds": extracted,
                    "sync_seconds": total - extracted,
                })
            );
        }
        [cmd, dir] if cmd == "listing" => {
            let (sha256, size, entries) = folder_listing_sha256(Path::new(dir))?;
            println!("{sha256} {size} {entries}");
        }
        _ => anyhow::bail!(
            "usage: restore_bench extract ARTIFACT TARGET MAX_ENTRIES MAX_BYTES | restore_bench listing DIR"
        ),
    }
    Ok(())
}
