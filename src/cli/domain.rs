//! `domain`: a domain's policy, read from and written to Xen.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use cpupolicy::hypercall::{DomainId, XenHandle};
use cpupolicy::policy::SectionName;

use super::policy::{emit, print_policy, read_document, PolicyFormat};
use super::pool::policy_of_document;
use super::Outcome;

#[derive(Args)]
pub struct DomainArgs {
    #[command(subcommand)]
    action: DomainAction,
}

#[derive(Subcommand)]
enum DomainAction {
    /// Print a domain's policy (as `xen-cpuid -p DOMID` does, with --format xen-cpuid).
    Get {
        /// The domain id.
        domid: DomainId,
        /// Output format.
        #[arg(long, value_enum, default_value = "json")]
        format: PolicyFormat,
    },
    /// Set a domain's policy (the domain must not have run yet). Xen clamps it to its max
    /// policy; read it back with `get` to see what it kept.
    Set {
        /// The domain id.
        domid: DomainId,
        /// The policy: a JSON policy or `xen-cpuid -p DOMID` output.
        file: PathBuf,
    },
}

pub fn domain(args: DomainArgs) -> Outcome {
    let handle = XenHandle::open()?;
    match args.action {
        DomainAction::Get { domid, format } => {
            let policy = cpupolicy::xen::domain_policy(&handle, domid)?;
            print_policy(&policy, format, SectionName::Domain(domid.into()))?;
        }
        DomainAction::Set { domid, file } => {
            let policy = policy_of_document(&file, read_document(&file)?)?;
            let dropped = cpupolicy::xen::set_domain_policy(&handle, domid, &policy)?;
            for entry in &dropped {
                errln!("cpupolicy: note: not sent (Xen's format cannot carry it): {entry}");
            }
            emit(&format!("domain {domid}: policy set\n"))?;
        }
    }
    Ok(0)
}
