//! Archives no holdfast would write: tar entries with any name (`..`, absolute paths,
//! links leading out), under a manifest that agrees with them byte for byte, as a hostile
//! or damaged repository would hold them.

use std::fs;
use std::path::Path;

use super::host_dir;

/// A repository holding one archive whose only artifact is `tar` (plain tar bytes),
/// with a manifest that agrees with it byte for byte: what a hostile repository would
/// look like. Returns the archive id.
pub fn hostile_archive(
    repository: &Path,
    name: &str,
    volume: &str,
    tar: &[u8],
    entries: u64,
) -> String {
    use sha2::Digest;
    let id = format!("{name}-20261125T030000Z");
    let dir = host_dir(repository).join(name).join(&id);
    fs::create_dir_all(dir.join("volumes")).unwrap();
    fs::write(dir.join("volumes/v.tar"), tar).unwrap();
    let manifest = serde_json::json!({
        "formatVersion": 1, "id": id, "kind": "BackupPolicy", "name": name, "policy": name,
        "phase": "Succeeded", "host": "h", "holdfastVersion": "0", "dockerApiVersion": "1.41",
        "startTime": "2026-11-25T03:00:00Z", "completionTime": "2026-11-25T03:00:01Z",
        "format": "tar", "level": null,
        "targets": {"stacks": [], "containers": [], "volumes": [volume]},
        "artifacts": [{"kind": "volume", "path": "volumes/v.tar", "size": tar.len(),
                       "sha256": hex::encode(sha2::Sha256::digest(tar)),
                       "sourceBytes": 1 << 20, "entries": entries, "source": volume}],
        "timings": {}, "downtime": {}, "warnings": [],
    });
    fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    id
}

/// A tar entry header with any name, which tar builders refuse to write.
pub fn header(name: &str, kind: u8, size: u64, link: &str) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

pub fn tar_of(entries: &[(&str, u8, &[u8], &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, data, link) in entries {
        out.extend_from_slice(&header(name, *kind, data.len() as u64, link));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}
