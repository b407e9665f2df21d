//! Archives a folder the way the executor does, for `bench/archive.sh`.
//!
//! Usage: `archive_bench SRC OUT_DIR FORMAT LEVEL` where FORMAT is tar, tar.gz, tar.zst or
//! folder and LEVEL a number or `-` for the default. Prints the artifact info as JSON.

use std::path::Path;

use holdfast::archive::{Excludes, archive_directory};
use holdfast::progress::Silent;
use holdfast::spec::common::Format;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [src, out, format, level] = args.as_slice() else {
        anyhow::bail!("usage: archive_bench SRC OUT_DIR FORMAT LEVEL");
    };
    let format: Format = serde_json::from_value(serde_json::Value::String(format.clone()))?;
    let level = match level.as_str() {
        "-" => None,
        n => Some(n.parse()?),
    };
    let info = archive_directory(
        Path::new(src),
        &Path::new(out).to_path_buf(),
        "bench",
        format,
        level,
        &Excludes::none(),
        &Silent,
    )?;
    println!("{}", serde_json::to_string(&info)?);
    Ok(())
}
