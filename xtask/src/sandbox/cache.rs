//! The download cache below `<workspace>/target/sandbox`: the Debian package sets a boot needs,
//! unpacked once under a lock, and QEMU on the host.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::qemu;
use super::release::{Hypervisor, XenRelease};
use crate::debian::{self, Follow, PackageSet, Suite};

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
pub(super) fn xen_image(root: &Path, ext: &str) -> Result<PathBuf, String> {
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
pub(super) struct CacheLock(PathBuf);

impl CacheLock {
    pub(super) fn acquire(cache: &Path) -> Result<CacheLock, String> {
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

pub(super) fn base_root(cache: &Path) -> Result<PathBuf, String> {
    debian::ensure_set(cache, &base_set(), &no_finish)
}

pub(super) fn xen_root(cache: &Path, release: XenRelease) -> Result<PathBuf, String> {
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
