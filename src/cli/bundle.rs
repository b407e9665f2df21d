//! `holdfast bundle create` and `holdfast bundle open`: the disaster-recovery bundle, one
//! age-encrypted file with what a new host needs to get everything back (see
//! [`crate::bundle`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::bundle::{self, Source};
use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct BundleArgs {
    #[command(subcommand)]
    pub(super) command: BundleCommand,
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Write the bundle: the specs, the repositories' credentials resolved, their age
    /// identities, the configuration file and the restore steps, encrypted with age.
    Create(CreateArgs),
    /// Decrypt a bundle and unpack it into a new folder, then say what to do next.
    Open(OpenArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The bundle file to write (replaced whole, readable by its owner only).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,

    /// An age public key (`age1…`) to encrypt to; repeat it for several. Keep the
    /// identity of at least one somewhere other than this host.
    #[arg(long, value_name = "RECIPIENT")]
    recipient: Vec<String>,

    /// A file of age public keys, one a line (`#` comments), as `age -R` reads it.
    #[arg(long, value_name = "FILE")]
    recipients_file: Vec<PathBuf>,

    #[command(flatten)]
    pub(super) repository: crate::settings::RepositoryFlags,

    #[command(flatten)]
    pub(super) specs: crate::settings::SpecsFlag,
}

#[derive(Debug, Args)]
pub struct OpenArgs {
    /// The bundle file.
    #[arg(value_name = "FILE")]
    file: PathBuf,

    /// An age identity file (`age-keygen` output) of one of the bundle's recipients.
    #[arg(long, value_name = "KEY")]
    identity: PathBuf,

    /// The folder to unpack into: new, or empty.
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
}

impl BundleArgs {
    /// The flag groups of the subcommand, for [`super::Command::settings`].
    pub(super) fn groups(&self) -> Vec<&dyn crate::settings::Apply> {
        match &self.command {
            BundleCommand::Create(a) => vec![&a.specs, &a.repository],
            BundleCommand::Open(_) => vec![],
        }
    }
}

pub fn run(settings: &Settings, args: BundleArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        BundleCommand::Create(args) => create(settings, args),
        BundleCommand::Open(args) => open(args),
    }
}

/// What a bundle is made from on this host: the settings' folders and the configuration
/// file this process read.
pub(super) fn source(settings: &Settings) -> Source {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let config = crate::config::locate(&args, std::env::var_os("HOLDFAST_CONFIG"));
    let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
    Source {
        specs: absolute(&settings.specs),
        config: config.filter(|p| p.exists()).map(|p| absolute(&p)),
        host: settings.host(),
        repository: absolute(&settings.repository),
    }
}

fn create(settings: &Settings, args: CreateArgs) -> anyhow::Result<ExitCode> {
    let mut recipients = bundle::parse_recipients("--recipient", &args.recipient)?;
    for file in &args.recipients_file {
        recipients.extend(bundle::read_recipients_file(file)?);
    }
    let source = source(settings);
    let (sealed, contents) = bundle::create(&source, &recipients)?;
    bundle::write_private(&args.out, &sealed)?;
    let keys = |prefix: &str| {
        contents
            .files
            .keys()
            .filter(|k| k.starts_with(prefix))
            .count()
    };
    println!(
        "wrote {} ({} spec files, {} credential files of {} Repository specs{}, the restore steps), encrypted to {} recipient{}",
        args.out.display(),
        keys(&format!("{}/", bundle::SPECS_DIR)),
        keys(&format!("{}/", bundle::KEYS_DIR)),
        contents.repositories.len(),
        if source.config.is_some() {
            ", the configuration file"
        } else {
            ""
        },
        recipients.len(),
        if recipients.len() == 1 { "" } else { "s" },
    );
    println!(
        "keep it off this host; `holdfast bundle open {} --identity KEY --to DIR` unpacks it",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn open(args: OpenArgs) -> anyhow::Result<ExitCode> {
    let written = bundle::open(&args.file, &args.identity, &args.to)?;
    let readme = args.to.join(bundle::README);
    let steps = std::fs::read_to_string(&readme)
        .with_context(|| format!("reading {}", readme.display()))?;
    println!(
        "unpacked {} files into {}\n",
        written.len(),
        args.to.display()
    );
    print!("{steps}");
    Ok(ExitCode::SUCCESS)
}
