//! Sandboxes for running code under a real Xen hypervisor (or plain Linux) inside QEMU/TCG.
//!
//! * [`prepare`] fetches what a boot needs from Debian — the hypervisor and `xen-cpuid` with its
//!   libraries for each [`XenRelease`], bookworm's kernel, static busybox and C library — and
//!   unpacks it below `<workspace>/target/sandbox` (see [`crate::debian`]); it also installs
//!   `qemu-system-x86` on the host with apt-get when QEMU is missing (root only). Everything is
//!   cached: later runs do not touch the network.
//! * [`boot`] builds a busybox initramfs holding the kernel modules, the Xen userland
//!   (`/usr/bin/xen-cpuid`), the caller's files (with their shared libraries) and script, boots it
//!   under `qemu-system-x86_64 -accel tcg` and returns what the script printed.
//! * [`xen_headers`] gives the unpacked `libxen-dev` headers of each release.
//! * [`run_cli`] exposes all of it as `cargo xtask sandbox ...`, including `selftest`, which
//!   compares `xen-cpuid` in each release against recorded reference output.
//!
//! Inside the guest, `/init` mounts proc, sys, devtmpfs and a tmpfs on `/tmp`, loads the
//! modules (`xen-privcmd`, `xen-evtchn`, `xenfs` under Xen; `cpuid` and `msr` always), mounts
//! xenfs on `/proc/xen` under Xen, lowers the kernel's console log level, runs the script with
//! `sh` from `/`, prints its stdout and stderr between markers and powers off.

mod elf;
mod initramfs;
mod qemu;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::debian::{self, Follow, PackageSet, Suite};
use initramfs::Initramfs;

/// A Xen release that can be booted, with the Debian suite that ships it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum XenRelease {
    /// Xen 4.14, from Debian bullseye.
    V4_14,
    /// Xen 4.17, from Debian bookworm.
    V4_17,
    /// Xen 4.20, from Debian trixie.
    V4_20,
}

impl XenRelease {
    /// All releases.
    pub const ALL: [XenRelease; 3] = [XenRelease::V4_14, XenRelease::V4_17, XenRelease::V4_20];

    /// `"4.14"`, `"4.17"` or `"4.20"`.
    pub fn version(self) -> &'static str {
        match self {
            XenRelease::V4_14 => "4.14",
            XenRelease::V4_17 => "4.17",
            XenRelease::V4_20 => "4.20",
        }
    }

    /// Parses `"4.14"`, `"4.17"` or `"4.20"` (a leading `xen-` or `v` is allowed).
    pub fn parse(s: &str) -> Option<XenRelease> {
        let s = s.trim_start_matches("xen-").trim_start_matches('v');
        XenRelease::ALL.into_iter().find(|r| r.version() == s)
    }

    /// The Debian suite that ships this release.
    pub fn suite(self) -> Suite {
        match self {
            XenRelease::V4_14 => Suite::Bullseye,
            XenRelease::V4_17 => Suite::Bookworm,
            XenRelease::V4_20 => Suite::Trixie,
        }
    }

    /// The hypervisor package, e.g. `xen-hypervisor-4.20-amd64`.
    pub fn hypervisor_package(self) -> String {
        format!("xen-hypervisor-{}-amd64", self.version())
    }

    /// The tools package holding `xen-cpuid`, e.g. `xen-utils-4.20`.
    pub fn utils_package(self) -> String {
        format!("xen-utils-{}", self.version())
    }

    /// The package with the version-specific libraries (libxenctrl, libxenguest, ...).
    pub fn misc_package(self) -> String {
        format!("libxenmisc{}", self.version())
    }

    /// Where `xen-cpuid` is in the unpacked userland root.
    pub fn xen_cpuid_path(self) -> String {
        format!("usr/lib/xen-{}/bin/xen-cpuid", self.version())
    }

    /// Whether the userland needs its own suite's C library: trixie's tools need glibc 2.41,
    /// while bullseye's and bookworm's run on bookworm's glibc (which the project's own binaries,
    /// built on bookworm, need anyway).
    fn own_libc(self) -> bool {
        self == XenRelease::V4_20
    }

    fn package_set(self) -> PackageSet {
        let follow = if self.own_libc() { Follow::Libraries } else { Follow::LibrariesButLibc };
        PackageSet::new(self.suite(), &format!("xen-{}", self.version()), &[&self.hypervisor_package()])
            .following(&self.utils_package(), follow)
            .following(&self.misc_package(), follow)
    }
}

impl std::fmt::Display for XenRelease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Xen {}", self.version())
    }
}

/// What runs under the dom0 / guest kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hypervisor {
    /// Linux as dom0 of this Xen release.
    Xen(XenRelease),
    /// Linux on the bare (emulated) machine.
    None,
}

impl Hypervisor {
    /// Parses `"4.14"`/`"xen-4.14"` etc., or `"none"`/`"linux"` for plain Linux.
    pub fn parse(s: &str) -> Option<Hypervisor> {
        match s {
            "none" | "linux" => Some(Hypervisor::None),
            _ => XenRelease::parse(s).map(Hypervisor::Xen),
        }
    }
}

impl std::fmt::Display for Hypervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hypervisor::Xen(r) => r.fmt(f),
            Hypervisor::None => f.write_str("plain Linux"),
        }
    }
}

/// One sandbox boot.
#[derive(Clone, Debug)]
pub struct Boot {
    /// Xen release to boot Linux under as dom0, or none.
    pub hypervisor: Hypervisor,
    /// QEMU `-cpu` value, e.g. `qemu64` or `Skylake-Server,-smap,-smep`.
    pub cpu_model: String,
    /// QEMU `-smp` value, e.g. `2` or `12,sockets=2,cores=3,threads=2`.
    pub smp: String,
    /// Host files (or directories) and where to put them in the guest. ELF files get the shared
    /// libraries they need (resolved from the Xen userland, then the sandbox's C library, then the
    /// host).
    pub files: Vec<(PathBuf, String)>,
    /// Shell script (busybox `sh`) run in the guest from `/`. Its stdout becomes
    /// [`BootOutput::output`]. `xen-cpuid` is on `PATH` under Xen.
    pub script: String,
    /// Wall-clock limit for the QEMU run (not counting preparation).
    pub timeout: Duration,
    /// Under Xen, also the toolstack `xl create` needs: `xl`, `xenstored`, `xenconsoled` and
    /// `xen-init-dom0` of the release (on `PATH`), and the dom0 kernel as `/boot/guest` for PV
    /// guests. The script starts the daemons itself.
    pub xl_toolstack: bool,
}

impl Boot {
    /// A boot of `script` under `hypervisor` on `-cpu qemu64 -smp 2` with a 10-minute limit.
    pub fn new(hypervisor: Hypervisor, script: &str) -> Self {
        Boot {
            hypervisor,
            cpu_model: "qemu64".into(),
            smp: "2".into(),
            files: Vec::new(),
            script: script.into(),
            timeout: Duration::from_secs(600),
            xl_toolstack: false,
        }
    }
}

/// What a finished boot produced.
#[derive(Clone, Debug)]
pub struct BootOutput {
    /// The whole serial console (carriage returns before line feeds dropped).
    pub console: String,
    /// The script's stdout, exactly (carriage returns before line feeds dropped).
    pub output: String,
    /// The script's stderr.
    pub stderr: String,
    /// The script's exit status.
    pub exit_status: i32,
    /// What QEMU printed on stderr (e.g. warnings about CPU features TCG cannot emulate).
    pub qemu_stderr: String,
    /// Time from starting QEMU until `/init` ran.
    pub boot_time: Duration,
    /// Wall-clock time of the whole QEMU run.
    pub elapsed: Duration,
}

/// The Xen command line (the hypervisor's serial console is QEMU's `-serial`/stdio).
pub const XEN_CMDLINE: &str = "dom0_mem=1024M console=com1 com1=115200,8n1 noreboot";
/// Guest memory in MiB.
pub const MEMORY_MIB: u32 = 2048;

/// The cache directory, `<workspace>/target/sandbox`.
pub fn cache_dir(workspace_root: &Path) -> PathBuf {
    workspace_root.join("target").join("sandbox")
}

/// Bookworm's kernel, static busybox and C library.
fn base_set() -> PackageSet {
    PackageSet::new(Suite::Bookworm, "base", &["busybox-static"])
        .following("linux-image-amd64", Follow::Prefix("linux-image-"))
        .following("libc6", Follow::Libraries)
}

fn headers_set(suite: Suite) -> PackageSet {
    PackageSet::new(suite, "libxen-dev", &["libxen-dev"])
}

fn no_finish(_: &Path) -> Result<(), String> {
    Ok(())
}

/// Decompresses `boot/xen-*-amd64.gz` next to itself (QEMU's multiboot loader needs the ELF).
fn gunzip_xen(root: &Path) -> Result<(), String> {
    let gz = xen_image(root, "gz")?;
    let out = Command::new("gzip").arg("-dc").arg(&gz).output().map_err(|e| format!("cannot run gzip: {e}"))?;
    if !out.status.success() {
        return Err(format!("gzip -dc {} failed", gz.display()));
    }
    fs::write(gz.with_extension(""), out.stdout).map_err(|e| format!("writing xen: {e}"))
}

/// `boot/xen-<version>-amd64[.ext]` in a root.
fn xen_image(root: &Path, ext: &str) -> Result<PathBuf, String> {
    let boot = root.join("boot");
    let mut found: Vec<PathBuf> = fs::read_dir(&boot)
        .map_err(|e| format!("{}: {e}", boot.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.starts_with("xen-")
                && n.contains("-amd64")
                && match ext {
                    "" => p.extension().is_none() || n.ends_with("-amd64"),
                    e => n.ends_with(&format!(".{e}")),
                }
        })
        .collect();
    found.sort();
    found.pop().ok_or_else(|| format!("no xen-*-amd64{ext} in {}", boot.display()))
}

/// A lock on the cache directory (a directory created atomically, holding the owner's pid),
/// so concurrent runs do not run apt in the same place at once.
struct CacheLock(PathBuf);

impl CacheLock {
    fn acquire(cache: &Path) -> Result<CacheLock, String> {
        fs::create_dir_all(cache).map_err(|e| format!("mkdir {}: {e}", cache.display()))?;
        let dir = cache.join("lock");
        let start = Instant::now();
        loop {
            match fs::create_dir(&dir) {
                Ok(()) => {
                    let _ = fs::write(dir.join("pid"), std::process::id().to_string());
                    return Ok(CacheLock(dir));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = fs::read_to_string(dir.join("pid")).unwrap_or_default();
                    let alive = owner.trim().parse::<u32>().map(|p| Path::new(&format!("/proc/{p}")).exists());
                    // A lock without a live owner (or without a pid after a while) is stale.
                    if alive == Ok(false) || (alive.is_err() && start.elapsed() > Duration::from_secs(10)) {
                        let _ = fs::remove_dir_all(&dir);
                        continue;
                    }
                    if start.elapsed() > Duration::from_secs(3600) {
                        return Err(format!("{} is still locked by pid {owner} after an hour", dir.display()));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(format!("mkdir {}: {e}", dir.display())),
            }
        }
    }
}

impl Drop for CacheLock {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Makes sure `qemu-system-x86_64` is installed, installing Debian's `qemu-system-x86` with
/// apt-get (after `apt-get update`) when it is not and we are root.
pub fn ensure_qemu() -> Result<PathBuf, String> {
    if let Some(q) = qemu::find() {
        return Ok(q);
    }
    if !is_root() {
        return Err(format!("{} is not installed; run `apt-get install qemu-system-x86` as root", qemu::QEMU));
    }
    eprintln!("sandbox: installing qemu-system-x86");
    let run = |args: &[&str]| -> Result<(), String> {
        let st = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("cannot run apt-get: {e}"))?;
        if st.success() {
            Ok(())
        } else {
            Err(format!("apt-get {} failed: {st}", args.join(" ")))
        }
    };
    let install = ["install", "-y", "-q", "--no-install-recommends", "qemu-system-x86"];
    if run(&install).is_err() {
        run(&["update", "-q"])?;
        run(&install)?;
    }
    qemu::find().ok_or_else(|| format!("{} still missing after installing qemu-system-x86", qemu::QEMU))
}

fn base_root(cache: &Path) -> Result<PathBuf, String> {
    debian::ensure_set(cache, &base_set(), &no_finish)
}

fn xen_root(cache: &Path, release: XenRelease) -> Result<PathBuf, String> {
    debian::ensure_set(cache, &release.package_set(), &gunzip_xen)
}

/// Fetches and unpacks (once; cached under `<workspace>/target/sandbox`) everything needed to
/// boot each of `what`, and makes sure QEMU is installed.
pub fn prepare(workspace_root: &Path, what: &[Hypervisor]) -> Result<(), String> {
    let cache = cache_dir(workspace_root);
    let _lock = CacheLock::acquire(&cache)?;
    ensure_qemu()?;
    base_root(&cache)?;
    for h in what {
        if let Hypervisor::Xen(r) = h {
            xen_root(&cache, *r)?;
        }
    }
    Ok(())
}

/// The unpacked `libxen-dev` headers (`.../usr/include`, holding `xen/`, `xenctrl.h`, ...) of
/// `release`'s suite, fetched on first use.
pub fn xen_headers(workspace_root: &Path, release: XenRelease) -> Result<PathBuf, String> {
    let cache = cache_dir(workspace_root);
    let _lock = CacheLock::acquire(&cache)?;
    let root = debian::ensure_set(&cache, &headers_set(release.suite()), &no_finish)?;
    Ok(root.join("usr").join("include"))
}

/// The unpacked root of `release`'s hypervisor and userland (e.g. for other tools in
/// `usr/lib/xen-<version>/bin`), fetched on first use.
pub fn xen_userland(workspace_root: &Path, release: XenRelease) -> Result<PathBuf, String> {
    let cache = cache_dir(workspace_root);
    let _lock = CacheLock::acquire(&cache)?;
    xen_root(&cache, release)
}

/// The kernel's release directory name under `lib/modules` and the `vmlinuz` path.
fn kernel(base: &Path) -> Result<(String, PathBuf), String> {
    let modules = base.join("lib/modules");
    let mut versions: Vec<String> = fs::read_dir(&modules)
        .map_err(|e| format!("{}: {e}", modules.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    versions.sort();
    let v = versions.pop().ok_or_else(|| format!("no kernel in {}", modules.display()))?;
    let vmlinuz = base.join("boot").join(format!("vmlinuz-{v}"));
    if !vmlinuz.is_file() {
        return Err(format!("{} is missing", vmlinuz.display()));
    }
    Ok((v, vmlinuz))
}

/// Paths (relative to the modules directory) of `wanted` modules and their dependencies,
/// dependencies first.
fn module_load_order(moddir: &Path, wanted: &[&str]) -> Result<Vec<PathBuf>, String> {
    let mut index: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut stack = vec![moddir.join("kernel")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(n) = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".ko")) {
                index.insert(n.replace('-', "_"), p);
            }
        }
    }
    fn visit(
        name: &str,
        index: &BTreeMap<String, PathBuf>,
        moddir: &Path,
        done: &mut BTreeSet<String>,
        order: &mut Vec<PathBuf>,
        depth: usize,
    ) -> Result<(), String> {
        let name = name.replace('-', "_");
        if done.contains(&name) {
            return Ok(());
        }
        if depth > 64 {
            return Err(format!("module dependency loop at {name}"));
        }
        let path = index.get(&name).ok_or_else(|| format!("kernel module {name} not found in {}", moddir.display()))?;
        let data = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for dep in elf::module_depends(&data, path)? {
            visit(&dep, index, moddir, done, order, depth + 1)?;
        }
        done.insert(name);
        order.push(path.strip_prefix(moddir).unwrap_or(path).to_path_buf());
        Ok(())
    }
    let mut done = BTreeSet::new();
    let mut order = Vec::new();
    for w in wanted {
        visit(w, &index, moddir, &mut done, &mut order, 0)?;
    }
    Ok(order)
}

/// Marker lines the guest's `/init` prints around the script's output.
struct Markers {
    init: String,
    begin: String,
    end: String,
    stderr: String,
    stderr_end: String,
}

impl Markers {
    fn new() -> Markers {
        // RandomState is seeded randomly per process and differs for each instance.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        h.write_u128(now.as_nanos());
        h.write_u32(std::process::id());
        let nonce = format!("{:016x}", h.finish());
        let m = |what: &str| format!("@@SANDBOX:{nonce}:{what}@@");
        Markers {
            init: m("INIT"),
            begin: m("BEGIN"),
            end: format!("@@SANDBOX:{nonce}:END rc="),
            stderr: m("STDERR"),
            stderr_end: m("STDERR-END"),
        }
    }
}

fn init_script(m: &Markers, modules: &[String], xen: bool) -> String {
    let mut s = String::from(
        "#!/bin/busybox sh\n\
         # Generated by xtask's sandbox module.\n\
         /bin/busybox mount -t proc proc /proc\n\
         /bin/busybox --install -s /bin\n\
         export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         export HOME=/root LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\n\
         mount -t tmpfs tmpfs /tmp\n\
         mkdir -p /root /dev/pts /dev/shm\n",
    );
    s.push_str(&format!("echo '{}'\n", m.init));
    for module in modules {
        s.push_str(&format!("insmod /lib/modules/{module} || echo 'sandbox: insmod {module} failed'\n"));
    }
    if xen {
        s.push_str(
            "if grep -q xen /sys/hypervisor/type 2>/dev/null; then\n\
             \x20 mkdir -p /proc/xen\n\
             \x20 mount -t xenfs xenfs /proc/xen || echo 'sandbox: mounting xenfs failed'\n\
             else\n\
             \x20 echo 'sandbox: not running under Xen'\n\
             fi\n",
        );
    }
    // From here on only emergencies, alerts (oopses, BUG:) and critical messages reach the
    // console, so routine kernel messages do not get mixed into the script's output.
    s.push_str("echo 3 > /proc/sys/kernel/printk\ncd /\n");
    s.push_str(&format!("echo '{}'\n", m.begin));
    s.push_str("sh /sandbox/script.sh </dev/null 2>/tmp/sandbox.stderr\nrc=$?\n");
    s.push_str(&format!("printf '\\n{}%d@@\\n' \"$rc\"\n", m.end));
    s.push_str(&format!("echo '{}'\ncat /tmp/sandbox.stderr\nprintf '\\n{}\\n'\n", m.stderr, m.stderr_end));
    s.push_str("sync\npoweroff -f\n");
    s
}

fn unique_run_dir(cache: &Path) -> Result<PathBuf, String> {
    let runs = cache.join("runs");
    fs::create_dir_all(&runs).map_err(|e| format!("mkdir {}: {e}", runs.display()))?;
    for i in 0.. {
        let d = runs.join(format!("{}-{}", std::process::id(), i));
        match fs::create_dir(&d) {
            Ok(()) => return Ok(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("mkdir {}: {e}", d.display())),
        }
    }
    unreachable!()
}

/// `args` as one shell-quoted line (for error messages one can paste into a shell).
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_=.,:/+".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Drops the carriage returns serial consoles put before line feeds (Xen's serial driver adds
/// one to the one the guest's tty already added).
fn normalise_newlines(text: &str) -> String {
    text.split('\n').map(|l| l.trim_end_matches('\r')).collect::<Vec<_>>().join("\n")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Text between `begin` (a whole line) and the `\n` that precedes `end`.
fn between<'a>(text: &'a str, begin: &str, end: &str) -> Option<&'a str> {
    let b = text.find(&format!("{begin}\n"))? + begin.len() + 1;
    let e = b + text[b..].find(&format!("\n{end}"))?;
    Some(&text[b..e])
}

/// Boots `boot` (preparing what it needs first) and returns the script's output.
///
/// Fails, with the tail of the console, when QEMU cannot start, the guest does not reach the
/// script, the script does not finish within `boot.timeout`, or the guest crashes. The run's
/// directory (initramfs, console log) is kept on failure and removed on success.
pub fn boot(workspace_root: &Path, boot: &Boot) -> Result<BootOutput, String> {
    let cache = cache_dir(workspace_root);
    let (base, xen) = {
        let _lock = CacheLock::acquire(&cache)?;
        ensure_qemu()?;
        let base = base_root(&cache)?;
        let xen = match boot.hypervisor {
            Hypervisor::Xen(r) => Some((r, xen_root(&cache, r)?)),
            Hypervisor::None => None,
        };
        (base, xen)
    };
    let dir = unique_run_dir(&cache)?;
    let result = boot_in(&dir, &base, xen.as_ref(), boot);
    match &result {
        Ok(_) => {
            let _ = fs::remove_dir_all(&dir);
        }
        Err(_) => eprintln!("sandbox: kept {} for inspection", dir.display()),
    }
    result
}

fn boot_in(dir: &Path, base: &Path, xen: Option<&(XenRelease, PathBuf)>, boot: &Boot) -> Result<BootOutput, String> {
    // QEMU's -initrd list is comma-separated with no escaping: use names relative to `dir`.
    let (kver, vmlinuz) = kernel(base)?;
    let link = |target: &Path, name: &str| {
        std::os::unix::fs::symlink(target, dir.join(name)).map_err(|e| format!("symlink {name}: {e}"))
    };
    link(&vmlinuz, "vmlinuz")?;

    let mut lib_roots = Vec::new();
    if let Some((_, root)) = xen {
        lib_roots.push(root.clone());
    }
    lib_roots.push(base.to_path_buf());
    lib_roots.push(PathBuf::from("/"));
    let mut image = Initramfs::new(lib_roots);
    image.add_host(&base.join("bin/busybox"), "/bin/busybox")?;

    let moddir = base.join("lib/modules").join(&kver);
    let mut wanted = vec!["cpuid", "msr"];
    if xen.is_some() {
        wanted.extend(["xen_privcmd", "xen_evtchn", "xenfs", "xen_gntdev", "xen_gntalloc"]);
    }
    let mut modules = Vec::new();
    for rel in module_load_order(&moddir, &wanted)? {
        let guest = format!("{kver}/{}", rel.display());
        image.add_host(&moddir.join(&rel), &format!("/lib/modules/{guest}"))?;
        modules.push(guest);
    }

    if let Some((release, root)) = xen {
        let cpuid = root.join(release.xen_cpuid_path());
        image.add_host(&cpuid, "/usr/bin/xen-cpuid")?;
        link(&xen_image(root, "")?, "xen")?;
    }
    if let (true, Some((release, root))) = (boot.xl_toolstack, &xen) {
        let bin = root.join(format!("usr/lib/xen-{}/bin", release.version()));
        for tool in ["xl", "xenstored", "xenconsoled", "xen-init-dom0"] {
            image.add_host(&bin.join(tool), &format!("/usr/sbin/{tool}"))?;
        }
        // glibc loads it at run time for pthread_cancel (xl's event threads): no ELF dependency names it.
        let gcc_s = base.join("lib/x86_64-linux-gnu/libgcc_s.so.1");
        image.add_host(&gcc_s, "/lib/x86_64-linux-gnu/libgcc_s.so.1")?;
        image.add_host(&vmlinuz, "/boot/guest")?;
    }
    for (host, guest) in &boot.files {
        image.add_host(host, guest)?;
    }
    let markers = Markers::new();
    image.add_bytes("/init", init_script(&markers, &modules, xen.is_some()).into_bytes(), 0o755);
    image.add_bytes("/sandbox/script.sh", boot.script.clone().into_bytes(), 0o755);
    image.write_gz(&dir.join("initrd.gz"))?;

    let mut args: Vec<String> = [
        "-accel",
        "tcg",
        "-cpu",
        &boot.cpu_model,
        "-m",
        &MEMORY_MIB.to_string(),
        "-smp",
        &boot.smp,
        "-nographic",
        "-no-reboot",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    match xen {
        Some(_) => args.extend(
            ["-kernel", "xen", "-append", XEN_CMDLINE, "-initrd", "vmlinuz console=hvc0 earlyprintk=xen,initrd.gz"]
                .map(String::from),
        ),
        None => args.extend(
            ["-kernel", "vmlinuz", "-initrd", "initrd.gz", "-append", "console=ttyS0 panic=-1"].map(String::from),
        ),
    }
    let run = qemu::run(dir, &args, boot.timeout, &markers.init, &markers.stderr_end, Duration::from_secs(60))?;
    let console = normalise_newlines(&run.console);
    let _ = fs::write(dir.join("console.log"), &console);
    let fail = |what: &str| -> String {
        format!(
            "sandbox boot of {} on -cpu {} -smp {} failed: {what}\n\
             QEMU: qemu-system-x86_64 {}\n{}\
             --- last console lines ---\n{}\n--- end of console ---",
            boot.hypervisor,
            boot.cpu_model,
            boot.smp,
            shell_words(&args),
            if run.stderr.trim().is_empty() { String::new() } else { format!("QEMU stderr: {}\n", run.stderr.trim()) },
            tail(&console, 60)
        )
    };
    let reached_init = run.first_marker_at.is_some();
    // Xen writes its log to the same serial line as dom0's console, and a line of it can land
    // in the middle of a line of the script's output: the output is read without them.
    let script_console = without_xen_log(&console);
    let output = between(&script_console, &markers.begin, &markers.end);
    let rc = script_console
        .find(&markers.end)
        .and_then(|i| script_console[i + markers.end.len()..].split("@@").next())
        .and_then(|s| s.trim().parse::<i32>().ok());
    let (Some(output), Some(rc)) = (output, rc) else {
        let stage = if !reached_init {
            "the guest never reached /init"
        } else if !script_console.contains(&markers.begin) {
            "/init started but did not reach the script"
        } else {
            "the script did not finish"
        };
        let why = match (&run.stopped, run.status) {
            (Some(s), _) => s.clone(),
            (None, Some(st)) => format!("QEMU exited ({st})"),
            (None, None) => "QEMU stopped".into(),
        };
        return Err(fail(&format!("{stage}: {why}")));
    };
    let stderr = between(&script_console, &markers.stderr, &markers.stderr_end).unwrap_or_default().to_string();
    if let Some(s) = &run.stopped {
        // The script finished; only powering off went wrong. Say so but keep the result.
        eprintln!("sandbox: warning: {s}");
    }
    Ok(BootOutput {
        output: output.to_string(),
        stderr,
        exit_status: rc,
        boot_time: run.first_marker_at.unwrap_or_default(),
        elapsed: run.elapsed,
        qemu_stderr: run.stderr,
        console,
    })
}

/// `text` without Xen's log lines: each `(XEN) ` through the end of its line, wherever it
/// starts (Xen's lines can interrupt a line of dom0's output).
fn without_xen_log(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("(XEN) ") {
        out.push_str(&rest[..start]);
        rest = match rest[start..].find('\n') {
            Some(end) => &rest[start + end + 1..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

const USAGE: &str = "\
usage: cargo xtask sandbox <command>
  prepare [all | none | 4.14 | 4.17 | 4.20 ...]   fetch and unpack (cached), install QEMU
  headers <4.14|4.17|4.20>                       print the path of the unpacked libxen-dev headers
  userland <4.14|4.17|4.20>                      print the path of the unpacked hypervisor + tools
  boot [options] (--script FILE | -c SCRIPT)     boot and run a script, print its output
      --xen <4.14|4.17|4.20|none>  (default 4.20)   --cpu MODEL (default qemu64)
      --smp SPEC (default 2)   --timeout SECS (default 600)   --file HOST:GUEST (repeatable)
      --console                    also print the whole console on stderr
  selftest [--reference DIR] [--quick]
      boot every Xen release on qemu64 and compare `xen-cpuid` and `xen-cpuid -p` with the
      recorded reference (default DIR: <workspace>/../shared/xen-reference), boot 4.20 on an
      Intel model and plain Linux with a 2x3x2 topology (--quick: only Xen 4.20 on qemu64)";

/// Runs `cargo xtask sandbox <args>`; see the usage text (`cargo xtask sandbox help`).
pub fn run_cli(workspace_root: &Path, args: &[String]) -> Result<(), String> {
    let Some(cmd) = args.first() else {
        return Err(USAGE.into());
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "prepare" => {
            let mut what: Vec<Hypervisor> = Vec::new();
            for a in rest {
                if a == "all" {
                    what.extend(XenRelease::ALL.map(Hypervisor::Xen));
                } else {
                    what.push(Hypervisor::parse(a).ok_or_else(|| format!("unknown hypervisor {a:?}\n{USAGE}"))?);
                }
            }
            if rest.is_empty() {
                what.extend(XenRelease::ALL.map(Hypervisor::Xen));
            }
            let t = Instant::now();
            prepare(workspace_root, &what)?;
            eprintln!("sandbox: prepared in {:.1} s", t.elapsed().as_secs_f64());
            Ok(())
        }
        "headers" => {
            let r = rest.first().and_then(|a| XenRelease::parse(a)).ok_or_else(|| USAGE.to_string())?;
            println!("{}", xen_headers(workspace_root, r)?.display());
            Ok(())
        }
        "userland" => {
            let r = rest.first().and_then(|a| XenRelease::parse(a)).ok_or_else(|| USAGE.to_string())?;
            println!("{}", xen_userland(workspace_root, r)?.display());
            Ok(())
        }
        "boot" => {
            let mut b = Boot::new(Hypervisor::Xen(XenRelease::V4_20), "");
            let mut script = None;
            let mut show_console = false;
            let mut it = rest.iter();
            while let Some(a) = it.next() {
                let mut val = || it.next().cloned().ok_or_else(|| format!("{a} needs a value\n{USAGE}"));
                match a.as_str() {
                    "--xen" => {
                        let v = val()?;
                        b.hypervisor = Hypervisor::parse(&v).ok_or_else(|| format!("unknown --xen {v:?}"))?;
                    }
                    "--cpu" => b.cpu_model = val()?,
                    "--smp" => b.smp = val()?,
                    "--timeout" => {
                        let v = val()?;
                        b.timeout = Duration::from_secs(v.parse().map_err(|_| format!("bad --timeout {v:?}"))?);
                    }
                    "--file" => {
                        let v = val()?;
                        let (h, g) = v.split_once(':').ok_or_else(|| format!("--file wants HOST:GUEST, got {v:?}"))?;
                        b.files.push((PathBuf::from(h), g.to_string()));
                    }
                    "--script" => {
                        let f = val()?;
                        script = Some(fs::read_to_string(&f).map_err(|e| format!("{f}: {e}"))?);
                    }
                    "-c" => script = Some(val()?),
                    "--console" => show_console = true,
                    _ => return Err(format!("unknown option {a:?}\n{USAGE}")),
                }
            }
            b.script = script.ok_or_else(|| format!("boot needs --script or -c\n{USAGE}"))?;
            let out = boot(workspace_root, &b)?;
            if show_console {
                eprintln!("{}", out.console);
            }
            eprint!("{}", out.qemu_stderr);
            print!("{}", out.output);
            eprint!("{}", out.stderr);
            eprintln!(
                "sandbox: {} booted to /init in {:.1} s, run took {:.1} s, script exit status {}",
                b.hypervisor,
                out.boot_time.as_secs_f64(),
                out.elapsed.as_secs_f64(),
                out.exit_status
            );
            if out.exit_status != 0 {
                return Err(format!("the script exited with status {}", out.exit_status));
            }
            Ok(())
        }
        "selftest" => {
            let mut reference = workspace_root.join("..").join("shared").join("xen-reference");
            let mut quick = false;
            let mut it = rest.iter();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--reference" => {
                        reference = PathBuf::from(it.next().ok_or_else(|| USAGE.to_string())?);
                    }
                    "--quick" => quick = true,
                    _ => return Err(format!("unknown option {a:?}\n{USAGE}")),
                }
            }
            selftest(workspace_root, &reference, quick)
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown sandbox command {cmd:?}\n{USAGE}")),
    }
}

/// Line diff of `want` and `got` via `diff -u` (empty when equal).
fn diff(want: &str, got: &str, label: &str, scratch: &Path) -> Result<String, String> {
    if want == got {
        return Ok(String::new());
    }
    let a = scratch.join(format!("{label}.want"));
    let b = scratch.join(format!("{label}.got"));
    fs::write(&a, want).and_then(|_| fs::write(&b, got)).map_err(|e| e.to_string())?;
    let out = Command::new("diff").arg("-u").arg(&a).arg(&b).output().map_err(|e| format!("cannot run diff: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

const SECTION: &str = "@@@ SECTION";

fn split_sections(output: &str) -> BTreeMap<String, String> {
    output
        .split(&format!("{SECTION} "))
        .skip(1)
        .filter_map(|chunk| chunk.split_once('\n'))
        .filter(|(name, _)| !name.trim().is_empty())
        .map(|(name, body)| (name.trim().to_string(), body.to_string()))
        .collect()
}

/// Boots the sandboxes the project relies on and checks what they print; see [`USAGE`].
fn selftest(workspace_root: &Path, reference: &Path, quick: bool) -> Result<(), String> {
    let scratch = cache_dir(workspace_root).join("selftest");
    fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let releases: Vec<XenRelease> = if quick { vec![XenRelease::V4_20] } else { XenRelease::ALL.to_vec() };
    let t = Instant::now();
    let mut what: Vec<Hypervisor> = releases.iter().map(|r| Hypervisor::Xen(*r)).collect();
    what.push(Hypervisor::None);
    prepare(workspace_root, &what)?;
    eprintln!("selftest: prepare took {:.1} s", t.elapsed().as_secs_f64());
    let mut failures = Vec::new();
    let script = format!(
        "echo '{SECTION} featuresets'; xen-cpuid || exit 1\n\
         echo '{SECTION} policy'; xen-cpuid -p || exit 1\n"
    );
    for r in &releases {
        let b = Boot::new(Hypervisor::Xen(*r), &script);
        let out = boot(workspace_root, &b)?;
        eprintln!(
            "selftest: {r} on qemu64: /init after {:.1} s, total {:.1} s, status {}",
            out.boot_time.as_secs_f64(),
            out.elapsed.as_secs_f64(),
            out.exit_status
        );
        if out.exit_status != 0 {
            failures.push(format!("{r}: xen-cpuid failed: {}", out.stderr));
            continue;
        }
        let sections = split_sections(&out.output);
        for kind in ["featuresets", "policy"] {
            let got = sections.get(kind).cloned().unwrap_or_default();
            let file = reference.join(format!("xen-{}-qemu64.{kind}.txt", r.version()));
            fs::write(scratch.join(format!("xen-{}-qemu64.{kind}.txt", r.version())), &got)
                .map_err(|e| e.to_string())?;
            let want = fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let d = diff(&want, &got, &format!("{}-{kind}", r.version()), &scratch)?;
            if d.is_empty() {
                eprintln!("selftest: {r} {kind}: identical to {}", file.display());
            } else {
                eprintln!("selftest: {r} {kind}: differs from {}:\n{d}", file.display());
                failures.push(format!("{r} {kind} differs from the reference"));
            }
        }
    }
    if !quick {
        let model = "Haswell-noTSX";
        let mut b = Boot::new(Hypervisor::Xen(XenRelease::V4_20), "xen-cpuid -p | head -20");
        b.cpu_model = model.into();
        let out = boot(workspace_root, &b)?;
        eprintln!(
            "selftest: Xen 4.20 on {model}: /init after {:.1} s, total {:.1} s\n{}",
            out.boot_time.as_secs_f64(),
            out.elapsed.as_secs_f64(),
            out.output
        );
        if out.exit_status != 0 || !out.output.contains("756e6547") {
            failures.push(format!("Xen 4.20 on {model}: no GenuineIntel raw policy"));
        }
    }
    // /dev/cpu/N/cpuid: a 16-byte read at offset (subleaf << 32 | leaf) gives EAX EBX ECX EDX.
    let script = "grep -E '^(processor|apicid)' /proc/cpuinfo | paste - -\n\
                  for c in 0 11; do for q in 1:0 11:0 11:1; do l=${q%:*}; s=${q#*:}; \
                  printf 'cpu %2d leaf %08x:%08x -> ' $c $l $s; \
                  dd if=/dev/cpu/$c/cpuid bs=16 count=1 skip=$(( (s << 32) | l )) iflag=skip_bytes 2>/dev/null \
                  | hexdump -v -e '4/4 \"%08x \" \"\\n\"'; done; done\n";
    let mut b = Boot::new(Hypervisor::None, script);
    b.smp = "12,sockets=2,cores=3,threads=2".into();
    let out = boot(workspace_root, &b)?;
    eprintln!(
        "selftest: plain Linux -smp {}: /init after {:.1} s, total {:.1} s\n{}",
        b.smp,
        out.boot_time.as_secs_f64(),
        out.elapsed.as_secs_f64(),
        out.output
    );
    let apicids: Vec<u32> = out
        .output
        .lines()
        .filter_map(|l| l.split("apicid").nth(1))
        .filter_map(|s| s.trim_start_matches([' ', '\t', ':']).split_whitespace().next())
        .filter_map(|s| s.parse().ok())
        .collect();
    let mut sorted = apicids.clone();
    sorted.sort_unstable();
    if sorted != [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13] {
        failures.push(format!("plain Linux 2x3x2: APIC IDs {apicids:?}, expected 0-5 and 8-13"));
    }
    // CPU 11 is APIC ID 13: leaf 0xb's EDX (x2APIC ID) says so.
    if !out.output.contains("cpu 11 leaf 0000000b:00000000 -> ")
        || !out
            .output
            .lines()
            .any(|l| l.starts_with("cpu 11 leaf 0000000b:00000000 -> ") && l.trim_end().ends_with(" 0000000d"))
    {
        failures.push("plain Linux 2x3x2: /dev/cpu/11/cpuid leaf 0xb does not report x2APIC ID 13".into());
    }
    eprintln!("selftest: total {:.1} s", t.elapsed().as_secs_f64());
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("sandbox selftest failed:\n  {}", failures.join("\n  ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hypervisors() {
        assert_eq!(Hypervisor::parse("4.14"), Some(Hypervisor::Xen(XenRelease::V4_14)));
        assert_eq!(Hypervisor::parse("xen-4.20"), Some(Hypervisor::Xen(XenRelease::V4_20)));
        assert_eq!(Hypervisor::parse("none"), Some(Hypervisor::None));
        assert_eq!(Hypervisor::parse("4.15"), None);
        assert_eq!(XenRelease::V4_17.suite(), Suite::Bookworm);
        assert_eq!(XenRelease::V4_20.hypervisor_package(), "xen-hypervisor-4.20-amd64");
    }

    #[test]
    fn xen_log_lines_are_cut_out_even_mid_line() {
        let console = "(XEN) boot\n{\"eax\": \"0x1\"(XEN) uart interrupt taking more than 4ms, switched to polling\n, \"ebx\": 2}\nend";
        assert_eq!(without_xen_log(console), "{\"eax\": \"0x1\", \"ebx\": 2}\nend");
    }

    #[test]
    fn extracts_between_markers() {
        let m = Markers::new();
        let console =
            format!("noise\n{}\nline 1\nline 2\n\n{}3@@\n{}\nerr\n\n{}\n", m.begin, m.end, m.stderr, m.stderr_end);
        assert_eq!(between(&console, &m.begin, &m.end), Some("line 1\nline 2\n"));
        assert_eq!(between(&console, &m.stderr, &m.stderr_end), Some("err\n"));
        let s = split_sections(&format!("{SECTION} a\nx\ny\n{SECTION} b\nz\n"));
        assert_eq!(s["a"], "x\ny\n");
        assert_eq!(s["b"], "z\n");
    }
}
