//! Command-line parsing and dispatch. Exit status: 0 success (equal / compatible), 1 a negative
//! answer (different / incompatible), 2 bad input or failure. Nothing here panics on input.

use clap::{Parser, Subcommand};

/// `println!` that never panics: writes through [`policy::emit`], so a reader that went away
/// (`| head`) ends the output quietly and any other write error is an error of the command.
macro_rules! outln {
    ($($arg:tt)*) => {
        crate::cli::policy::emit(&format_args!("{}\n", format_args!($($arg)*)))?
    };
}

/// `print!` that never panics, as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {
        crate::cli::policy::emit(&format_args!($($arg)*))?
    };
}

/// `eprintln!` that never panics: a closed standard error loses the message, nothing more.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!` that never panics, as [`errln!`].
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

mod domain;
mod featureset;
mod featureset_pool;
mod observe;
mod placement;
mod policy;
mod pool;
mod topology;
mod xl;

/// Exit status for a negative answer: different, incompatible.
pub const EXIT_NEGATIVE: i32 = 1;
/// Exit status for bad input or a failure.
pub const EXIT_ERROR: i32 = 2;

/// An error to print and exit with status 2.
#[derive(Debug)]
pub struct CliError(pub String);

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(error: E) -> CliError {
        CliError(error.to_string())
    }
}

/// What a command produced: an exit status (0 or 1).
pub type Outcome = Result<i32, CliError>;

/// The text of the file at `path` ([`cpupolicy::policy::read_input`]'s limits), an error naming
/// the file.
fn read_text(path: &std::path::Path) -> Result<String, CliError> {
    cpupolicy::policy::read_input(path).map_err(|e| CliError(format!("{}: {e}", path.display())))
}

/// [`read_text`], or standard input for `-` (the same limits), an error naming it.
fn read_text_or_stdin(path: &std::path::Path) -> Result<String, CliError> {
    if path == std::path::Path::new("-") {
        cpupolicy::policy::read_stdin().map_err(|e| CliError(format!("standard input: {e}")))
    } else {
        read_text(path)
    }
}

#[derive(Parser)]
#[command(name = "cpupolicy", version, about = "x86 CPU policy for Xen toolstacks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode featuresets (`178bfbfd:80002001:…` or `-`-separated) to feature names, per word.
    Decode(featureset::DecodeArgs),
    /// Print Xen's static featureset masks (known, special, PV/HVM default and max).
    Masks(featureset::MasksArgs),
    /// Print the hypervisor's six system featuresets (raw, host, PV/HVM default and max).
    Featuresets(featureset::FeaturesetsArgs),
    /// APIC IDs, topology IDs and Hyper-V VP index of every vCPU of a shape.
    Topology(topology::TopologyArgs),
    /// Convert a policy between formats: JSON policy or host bundle, xen-cpuid -p text,
    /// libvirt CPU dump in; JSON or xen-cpuid -p text out.
    Import(policy::ImportArgs),
    /// Compare two policies (any format import reads): exit 0 when equal, 1 when different.
    Diff(policy::DiffArgs),
    /// Print this host's CPU policy.
    Host(policy::HostArgs),
    /// Read or set a domain's policy through Xen (dom0 only).
    Domain(domain::DomainArgs),
    /// Level a pool: the default policy new VMs get and the policy every host accepts.
    Level(pool::LevelArgs),
    /// Check whether a VM may migrate to a host: exit 0 compatible, 1 incompatible.
    Check(pool::CheckArgs),
    /// Predict the policies Xen 4.20 builds from a raw policy (e.g. a CPU dump), or compare the
    /// prediction with a real host's.
    Derive(pool::DeriveArgs),
    /// Which VM may run on which host of a fleet: hosts and VMs grouped into classes of
    /// identical policies.
    Placement(placement::PlacementArgs),
    /// What a change to a pool (a host joins, leaves, or is replaced after an update) does to
    /// its policies and VMs: exit 1 when it would strand a VM.
    Plan(placement::PlanArgs),
    /// xl's `cpuid=` setting: what a VM gets on a host from it.
    Xl(xl::XlArgs),
    /// What a guest's CPUs report, compared with a QEMU shape (the test command's QEMU step).
    #[command(hide = true)]
    Observe(observe::ObserveArgs),
}

/// Parses the command line, runs the command, returns the exit status.
pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { EXIT_ERROR } else { 0 };
        }
    };
    let outcome = match cli.command {
        Command::Decode(args) => featureset::decode(args),
        Command::Masks(args) => featureset::masks(args),
        Command::Featuresets(args) => featureset::featuresets(args),
        Command::Topology(args) => topology::topology(args),
        Command::Import(args) => policy::import(args),
        Command::Diff(args) => policy::diff(args),
        Command::Host(args) => policy::host(args),
        Command::Domain(args) => domain::domain(args),
        Command::Level(args) => pool::level(args),
        Command::Check(args) => pool::check(args),
        Command::Observe(args) => observe::observe(args),
        Command::Derive(args) => pool::derive(args),
        Command::Xl(args) => xl::xl(args),
        Command::Placement(args) => placement::placement(args),
        Command::Plan(args) => placement::plan_change(args),
    };
    match outcome {
        Ok(status) => status,
        Err(CliError(message)) => {
            errln!("cpupolicy: {message}");
            EXIT_ERROR
        }
    }
}

/// Output formats shared by several commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TextOrJson {
    /// Human-readable text, in `xen-cpuid`'s layout where there is one.
    Text,
    /// JSON.
    Json,
}

/// Prints a serialisable value as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    policy::emit(&format_args!("{}\n", serde_json::to_string_pretty(value)?))
}
