//! One boot: the initramfs with the guest's `/init`, the QEMU command line, and reading the
//! script's output back from the serial console.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cache::{base_root, cache_dir, ensure_qemu, xen_image, xen_root, CacheLock};
use super::elf;
use super::initramfs::Initramfs;
use super::qemu;
use super::release::{Hypervisor, XenRelease};

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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
