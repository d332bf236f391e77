//! `observe` (hidden): what a guest's CPUs report, for the test command's QEMU comparison.
//!
//! `observe cpuid` runs inside a guest and prints every CPU's topology leaves, read from
//! `/dev/cpu/N/cpuid`, in the dump format of `cpupolicy::topology::qemu`. `observe compare`
//! runs on the host: it compares such a dump and the guest's `/proc/cpuinfo` APIC IDs with what
//! the topology crate computes for a QEMU `-smp` shape, counting the differences QEMU 7.2 is
//! known to have, and exits 1 on anything unexplained.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use cpupolicy::topology::cpuid::bit;
use cpupolicy::topology::qemu;
use cpupolicy::topology::{CpuidLeaves, Scheme, Topology, Vendor};

use super::topology::VendorArg;
use super::{read_text, CliError, Outcome, EXIT_NEGATIVE};

#[derive(Args)]
pub struct ObserveArgs {
    #[command(subcommand)]
    command: ObserveCommand,
}

#[derive(Clone, Copy, ValueEnum)]
enum AccelArg {
    Tcg,
    Hardware,
}

#[derive(Subcommand)]
enum ObserveCommand {
    /// Print every CPU's topology leaves from /dev/cpu/N/cpuid (needs the cpuid module).
    Cpuid {
        /// Directory holding N/cpuid for each CPU.
        #[arg(long, default_value = "/dev/cpu")]
        dev: PathBuf,
    },
    /// Compare a dump and /proc/cpuinfo with the topology of a QEMU -smp value.
    Compare {
        /// Vendor of the guest's CPU model.
        #[arg(long, value_enum)]
        vendor: VendorArg,
        /// The -smp value the guest was booted with, e.g. 12,sockets=2,cores=3,threads=2.
        #[arg(long)]
        smp: String,
        /// Output of `observe cpuid` in the guest.
        #[arg(long)]
        dump: PathBuf,
        /// The guest's /proc/cpuinfo (its processor and apicid lines suffice).
        #[arg(long)]
        cpuinfo: PathBuf,
        /// How QEMU ran the guest (TCG drops TOPOEXT from every model).
        #[arg(long, value_enum)]
        accel: AccelArg,
        /// List every known QEMU 7.2 difference, not only their count per field.
        #[arg(long)]
        verbose: bool,
    },
}

pub fn observe(args: ObserveArgs) -> Outcome {
    match args.command {
        ObserveCommand::Cpuid { dev } => {
            out!("{}", qemu::format_cpuid_dump(&read_all_cpus(&dev)?));
            Ok(0)
        }
        ObserveCommand::Compare { vendor, smp, dump, cpuinfo, accel, verbose } => {
            let vendor = Vendor::from(vendor);
            let accel = match accel {
                AccelArg::Tcg => qemu::Accelerator::Tcg,
                AccelArg::Hardware => qemu::Accelerator::Hardware,
            };
            compare(vendor, &smp, &dump, &cpuinfo, accel, verbose)
        }
    }
}

/// Every CPU under `dev` (directories named by number holding `cpuid`), in order.
fn read_all_cpus(dev: &Path) -> Result<BTreeMap<u32, CpuidLeaves>, CliError> {
    let mut cpus = BTreeMap::new();
    let entries =
        std::fs::read_dir(dev).map_err(|e| format!("{}: {e} (is the cpuid module loaded?)", dev.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dev.display()))?;
        let Some(cpu) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let path = entry.path().join("cpuid");
        let file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        // The cpuid driver runs CPUID on that CPU with EAX = offset bits 31:0, ECX = bits 63:32.
        let leaves = qemu::observe_leaves(|leaf, subleaf| {
            let mut buf = [0u8; 16];
            let offset = u64::from(leaf) | u64::from(subleaf) << 32;
            match file.read_at(&mut buf, offset) {
                Ok(16) => Ok(std::array::from_fn(|i| {
                    u32::from_le_bytes([buf[4 * i], buf[4 * i + 1], buf[4 * i + 2], buf[4 * i + 3]])
                })),
                Ok(n) => Err(format!("{}: short read of {n} bytes at leaf {leaf:#x}:{subleaf}", path.display())),
                Err(e) => Err(format!("{}: leaf {leaf:#x}:{subleaf}: {e}", path.display())),
            }
        })?;
        cpus.insert(cpu, leaves);
    }
    if cpus.is_empty() {
        return Err(CliError(format!("no CPUs under {}", dev.display())));
    }
    Ok(cpus)
}

fn compare(vendor: Vendor, smp: &str, dump: &Path, cpuinfo: &Path, accel: qemu::Accelerator, verbose: bool) -> Outcome {
    let shape = qemu::shape_from_smp(smp)?;
    let dump = qemu::parse_cpuid_dump(&read_text(dump)?)?;
    let apic_ids = qemu::parse_cpuinfo_apic_ids(&read_text(cpuinfo)?)?;
    // x2APIC as the guest's CPU 0 was offered it (QEMU's EPYC model has none).
    let x2apic = dump.get(&0).and_then(|l| l.get(1, None)).is_some_and(|r| r[bit::X2APIC.0] & bit::X2APIC.1 != 0);
    let topology = Topology::new(shape, vendor, Scheme::Modern, x2apic)?;
    let c = qemu::compare_guest(&topology, &dump, &apic_ids, accel)?;
    outln!("{}", c.summary());
    for (field, count) in c.known_by_field() {
        outln!("  known: {count} × {field}");
    }
    if verbose {
        for d in &c.known_qemu_7_2 {
            outln!("    known: {d}");
        }
    }
    const SHOWN: usize = 40;
    for d in c.mismatches.iter().take(SHOWN) {
        outln!("  UNEXPLAINED: {d}");
    }
    if c.mismatches.len() > SHOWN {
        outln!("  UNEXPLAINED: … and {} more", c.mismatches.len() - SHOWN);
    }
    for m in c.apic_id_mismatches.iter().take(SHOWN) {
        let found = m.found.map_or_else(|| "none".to_owned(), |f| f.to_string());
        outln!("  APIC ID: vCPU {} expected {}, /proc/cpuinfo {found}", m.vcpu, m.expected);
    }
    for p in &c.problems {
        outln!("  PROBLEM: {p}");
    }
    Ok(if c.is_ok() { 0 } else { EXIT_NEGATIVE })
}
