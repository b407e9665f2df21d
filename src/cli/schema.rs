use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// The folder to write `<kind>.schema.json` files into.
    #[arg(long, value_name = "DIR", default_value = "schemas")]
    out: PathBuf,

    /// Write nothing; exit 1 if the files in --out differ from what this release generates.
    #[arg(long)]
    check: bool,
}

pub fn run(args: SchemaArgs) -> anyhow::Result<ExitCode> {
    if args.check {
        let stale = crate::schema::stale_files(&args.out);
        for path in &stale {
            eprintln!(
                "{}: out of date; run `holdfast schema --out {}`",
                path.display(),
                args.out.display()
            );
        }
        return Ok(if stale.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let written = crate::schema::write_all(&args.out)
        .map_err(|e| anyhow::anyhow!("writing schemas into {}: {e}", args.out.display()))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
