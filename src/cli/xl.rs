//! `xl apply`: what a VM gets on a host from an xl configuration's `cpuid=` setting.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use cpupolicy::policy::xl::XlCpuid;
use cpupolicy::policy::{SectionName, SystemPolicy};

use super::policy::{print_policy, PolicyFormat};
use super::pool::{load_host, xl_release_arg, Kind};
use super::{CliError, Outcome};

#[derive(Args)]
pub struct XlArgs {
    #[command(subcommand)]
    command: XlCommand,
}

#[derive(Subcommand)]
enum XlCommand {
    /// Apply an xl config's `cpuid=` (the whole .cfg file, or the value alone) to a host's
    /// default policy as libxl does, then clamp to the host's max policy as Xen does: print the
    /// policy a VM created there would get. Unknown names and malformed values exit 2, naming
    /// the token.
    Apply {
        /// The host: any file `level` reads (host bundle, xen-cpuid -p output, CPU dump).
        #[arg(long, value_name = "HOST")]
        host: PathBuf,
        /// The kind of guest.
        #[arg(long, value_enum, default_value = "hvm")]
        kind: Kind,
        /// The Xen release whose libxl reads the names (e.g. 4.17).
        #[arg(long, value_name = "XEN_VERSION", default_value = "4.22")]
        xen: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "json")]
        format: PolicyFormat,
        /// The xl configuration file, or `-` for standard input.
        config: PathBuf,
    },
}

pub fn xl(args: XlArgs) -> Outcome {
    match args.command {
        XlCommand::Apply { host, kind, xen, format, config } => {
            let release = xl_release_arg(&xen)?;
            let host = load_host(&host, kind)?;
            let text = super::read_text_or_stdin(&config)?;
            let cpuid = XlCpuid::parse(&text, release).map_err(|e| CliError(format!("{}: {e}", config.display())))?;
            let policy = cpuid.apply(&host.default, host.reflected_source(), &host.max);
            let label = match kind {
                Kind::Pv => SystemPolicy::PvDefault,
                _ => SystemPolicy::HvmDefault,
            };
            print_policy(&policy, format, SectionName::System(label))?;
            Ok(0)
        }
    }
}
