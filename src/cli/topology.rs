//! `topology`: APIC IDs (and optionally CPUID leaves) of every vCPU of a shape.

use clap::{Args, ValueEnum};
use cpupolicy::topology::{CpuidAccess, CpuidLeaves, Scheme, Shape, Topology, Vendor};
use serde::Serialize;

use super::{print_json, CliError, Outcome, TextOrJson};

/// `--vendor` of the topology commands.
#[derive(Clone, Copy, ValueEnum)]
pub(super) enum VendorArg {
    Intel,
    Amd,
    Hygon,
}

impl From<VendorArg> for Vendor {
    fn from(vendor: VendorArg) -> Vendor {
        match vendor {
            VendorArg::Intel => Vendor::Intel,
            VendorArg::Amd => Vendor::Amd,
            VendorArg::Hygon => Vendor::Hygon,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum SchemeArg {
    /// Real-hardware style: ceil(log2(count)) APIC ID bits per level.
    Modern,
    /// Xen's scheme up to 4.22: APIC ID = 2 x vCPU, with Xen's leaf adjustments.
    XenLegacy,
}

#[derive(Args)]
pub struct TopologyArgs {
    /// CPU vendor whose CPUID conventions the guest sees.
    #[arg(long, value_enum)]
    vendor: VendorArg,
    /// Packages (sockets).
    #[arg(long)]
    packages: u32,
    /// Dies per package.
    #[arg(long, default_value_t = 1)]
    dies: u32,
    /// Modules per die (Intel only).
    #[arg(long)]
    modules: Option<u32>,
    /// Cores per die (per module when --modules is given).
    #[arg(long)]
    cores: u32,
    /// Threads per core.
    #[arg(long)]
    threads: u32,
    /// APIC ID scheme.
    #[arg(long, value_enum, default_value = "modern")]
    scheme: SchemeArg,
    /// The guest's policy does not offer x2APIC (shapes needing APIC IDs >= 0xFF then fail).
    #[arg(long)]
    no_x2apic: bool,
    /// Also print each vCPU's topology CPUID leaves.
    #[arg(long)]
    leaves: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: TextOrJson,
}

/// One vCPU's topology leaves: (leaf, sub-leaf, [eax, ebx, ecx, edx]).
type VcpuLeaves = Vec<(u32, Option<u32>, [u32; 4])>;

#[derive(Serialize)]
struct LeafJson {
    leaf: String,
    subleaf: Option<String>,
    eax: String,
    ebx: String,
    ecx: String,
    edx: String,
}

pub fn topology(args: TopologyArgs) -> Outcome {
    let vendor = Vendor::from(args.vendor);
    let mut shape = Shape::new(args.packages, args.dies, args.cores, args.threads);
    if let Some(modules) = args.modules {
        shape = shape.with_modules(modules);
    }
    let x2apic = !args.no_x2apic;
    let topology = match args.scheme {
        SchemeArg::Modern => Topology::new(shape, vendor, Scheme::Modern, x2apic)?,
        SchemeArg::XenLegacy => {
            let vcpus = u32::try_from(shape.vcpu_count())
                .map_err(|_| CliError(format!("{} vCPUs is too many", shape.vcpu_count())))?;
            Topology::xen_legacy(vendor, vcpus, x2apic)?
        }
    };
    let table = topology.vcpu_table();
    // The leaves are computed against a minimal base policy naming the vendor; leaves whose
    // other fields come from the hardware (cache sub-leaves) are only as complete as the base.
    let mut base = CpuidLeaves::new();
    let _ = base.set_cpuid(0, None, vendor.leaf0(0x1f));
    let leaves: Vec<VcpuLeaves> = if args.leaves {
        (0..topology.vcpu_count())
            .map(|vcpu| Ok(topology.cpuid_for_vcpu(&base, vcpu)?.iter().filter(|(l, _, _)| *l != 0).collect()))
            .collect::<Result<_, CliError>>()?
    } else {
        Vec::new()
    };
    match args.format {
        TextOrJson::Text => {
            use std::fmt::Write;
            let mut text = format!(
                "{:>5} {:>8} {:>8} {:>5} {:>5} {:>7} {:>9}\n",
                "vcpu", "apic_id", "package", "die", "core", "thread", "vp_index"
            );
            for (i, row) in table.vcpus.iter().enumerate() {
                let _ = writeln!(
                    text,
                    "{:>5} {:>#8x} {:>8} {:>5} {:>5} {:>7} {:>9}",
                    row.vcpu, row.apic_id, row.package, row.die, row.core, row.thread, row.vp_index
                );
                for (leaf, subleaf, [a, b, c, d]) in leaves.get(i).into_iter().flatten() {
                    let sub = subleaf.map_or("ffffffff".to_string(), |s| format!("{s:08x}"));
                    let _ = writeln!(text, "        {leaf:08x}:{sub} -> {a:08x}:{b:08x}:{c:08x}:{d:08x}");
                }
            }
            let _ = writeln!(text, "x2apic required: {}", if table.x2apic_required { "yes" } else { "no" });
            super::policy::emit(&text)?;
        }
        TextOrJson::Json => {
            let mut value = serde_json::to_value(&table)?;
            if args.leaves {
                if let Some(rows) = value.get_mut("vcpus").and_then(|v| v.as_array_mut()) {
                    for (row, vcpu_leaves) in rows.iter_mut().zip(&leaves) {
                        let list: Vec<LeafJson> = vcpu_leaves
                            .iter()
                            .map(|(leaf, subleaf, [a, b, c, d])| LeafJson {
                                leaf: format!("{leaf:#010x}"),
                                subleaf: subleaf.map(|s| format!("{s:#x}")),
                                eax: format!("{a:#010x}"),
                                ebx: format!("{b:#010x}"),
                                ecx: format!("{c:#010x}"),
                                edx: format!("{d:#010x}"),
                            })
                            .collect();
                        row["leaves"] = serde_json::to_value(list)?;
                    }
                }
            }
            print_json(&value)?;
        }
    }
    Ok(0)
}
