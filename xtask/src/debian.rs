//! Fetching and unpacking Debian packages from any suite without touching the host's apt setup.
//!
//! Every suite gets its own `sources.list`, list directory and cache below the sandbox cache
//! directory (`<workspace>/target/sandbox`), and `apt-get` is pointed at them with `-o` options
//! (the host's `/etc/apt/sources.list*` and its package state are never read or written).
//! Signatures are verified as usual, against `/usr/share/keyrings/debian-archive-keyring.gpg`
//! (bookworm's keyring holds the bullseye, bookworm and trixie archive keys).
//!
//! A package *set* (for example "Xen 4.20's userland from trixie") is resolved, downloaded and
//! unpacked with `dpkg-deb -x` into its own root directory once; the finished root is moved into
//! place atomically, so its existence means it is complete, and later runs use it without any
//! network access.

use std::collections::{BTreeSet, VecDeque};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Keyring that verifies the Debian archive's release files.
pub const ARCHIVE_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Environment variable that overrides the Debian mirror (default `http://deb.debian.org/debian`).
pub const MIRROR_ENV: &str = "SANDBOX_DEBIAN_MIRROR";
/// Environment variable that overrides the security mirror
/// (default `http://deb.debian.org/debian-security`).
pub const SECURITY_MIRROR_ENV: &str = "SANDBOX_DEBIAN_SECURITY_MIRROR";

/// A Debian release that packages are fetched from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Suite {
    /// Debian 11.
    Bullseye,
    /// Debian 12.
    Bookworm,
    /// Debian 13.
    Trixie,
}

impl Suite {
    /// The suite's code name, as used in `sources.list`.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Bullseye => "bullseye",
            Suite::Bookworm => "bookworm",
            Suite::Trixie => "trixie",
        }
    }

    /// The `sources.list` lines for this suite: main, point-release updates and security updates.
    ///
    /// bullseye is in LTS and still served by `deb.debian.org` (not yet `archive.debian.org`).
    pub fn sources_list(self) -> String {
        let mirror = std::env::var(MIRROR_ENV).unwrap_or_else(|_| "http://deb.debian.org/debian".to_string());
        let security =
            std::env::var(SECURITY_MIRROR_ENV).unwrap_or_else(|_| "http://deb.debian.org/debian-security".to_string());
        let opts = format!("[arch=amd64 signed-by={ARCHIVE_KEYRING}]");
        let s = self.name();
        format!(
            "deb {opts} {mirror} {s} main\n\
             deb {opts} {mirror} {s}-updates main\n\
             deb {opts} {security} {s}-security main\n"
        )
    }
}

impl std::fmt::Display for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which dependencies of a set's packages are followed when the set is resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Shared-library packages (`lib*` other than `-dev`, and `zlib1g`), transitively.
    Libraries,
    /// Like [`Follow::Libraries`] but leaving out the C library (`libc6`, `libgcc-s1`), which
    /// then comes from elsewhere.
    LibrariesButLibc,
    /// Packages whose name starts with the given prefix, transitively (e.g. `linux-image-` to
    /// go from the `linux-image-amd64` meta-package to the real kernel package).
    Prefix(&'static str),
}

impl Follow {
    fn wants(self, name: &str) -> bool {
        let lib = (name.starts_with("lib") && !name.ends_with("-dev")) || name == "zlib1g";
        match self {
            Follow::Libraries => lib,
            Follow::LibrariesButLibc => lib && name != "libc6" && name != "libgcc-s1",
            Follow::Prefix(p) => name.starts_with(p),
        }
    }
}

/// A set of packages unpacked together into one root directory.
#[derive(Clone, Debug)]
pub struct PackageSet {
    /// Suite the packages come from.
    pub suite: Suite,
    /// Short name of the set; the root is `<cache>/roots/<suite>-<name>`.
    pub name: String,
    /// Packages asked for by name.
    pub packages: Vec<String>,
    /// Which of their dependencies are fetched too, per named package.
    pub follow: Vec<(String, Follow)>,
}

impl PackageSet {
    /// A set of `packages` (dependencies not followed) from `suite`.
    pub fn new(suite: Suite, name: &str, packages: &[&str]) -> Self {
        PackageSet {
            suite,
            name: name.to_string(),
            packages: packages.iter().map(|p| p.to_string()).collect(),
            follow: Vec::new(),
        }
    }

    /// Also fetch `package`'s dependencies selected by `follow`.
    pub fn following(mut self, package: &str, follow: Follow) -> Self {
        self.follow.push((package.to_string(), follow));
        self
    }

    /// Where the set is unpacked.
    pub fn root(&self, cache: &Path) -> PathBuf {
        cache.join("roots").join(format!("{}-{}", self.suite, self.name))
    }
}

/// Name of the file in a finished root that lists the packages unpacked into it.
pub const MANIFEST: &str = ".sandbox-packages";

/// The apt state of one suite, kept below `<cache>/apt/<suite>`.
#[derive(Clone, Debug)]
pub struct Apt {
    suite: Suite,
    dir: PathBuf,
}

impl Apt {
    /// The apt state for `suite` below the cache directory `cache`.
    pub fn new(cache: &Path, suite: Suite) -> Self {
        Apt { suite, dir: cache.join("apt").join(suite.name()) }
    }

    fn options(&self) -> Vec<String> {
        let d = &self.dir;
        let mut o = vec![
            format!("Dir::Etc::sourcelist={}", d.join("sources.list").display()),
            "Dir::Etc::sourceparts=-".to_string(),
            format!("Dir::State::Lists={}", d.join("lists").display()),
            format!("Dir::Cache={}", d.join("cache").display()),
            // Never look at (or lock) the host's dpkg database.
            "Dir::State::status=/dev/null".to_string(),
            "APT::Architecture=amd64".to_string(),
            "APT::Architectures=amd64".to_string(),
            "Acquire::Languages=none".to_string(),
            // Our directories are root's; don't drop to _apt (it could not write there).
            "APT::Sandbox::User=root".to_string(),
            // Only Packages indices are needed, not AppStream metadata.
            "Acquire::Retries=3".to_string(),
        ];
        for t in [
            "DEP-11",
            "DEP-11-icons",
            "DEP-11-icons-small",
            "DEP-11-icons-hidpi",
            "DEP-11-icons-large",
            "DEP-11-icons-large-hidpi",
        ] {
            o.push(format!("Acquire::IndexTargets::deb::{t}::DefaultEnabled=false"));
        }
        o.into_iter().flat_map(|x| ["-o".to_string(), x]).collect()
    }

    fn run(&self, tool: &str, args: &[&str], cwd: Option<&Path>) -> Result<String, String> {
        let mut cmd = Command::new(tool);
        cmd.args(self.options()).args(args).env("LC_ALL", "C");
        if let Some(c) = cwd {
            cmd.current_dir(c);
        }
        let out = cmd.output().map_err(|e| format!("cannot run {tool}: {e} (is apt installed?)"))?;
        if !out.status.success() {
            return Err(format!(
                "{tool} {} for {} failed ({}):\n{}{}",
                args.join(" "),
                self.suite,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }

    fn run_stdout(&self, tool: &str, args: &[&str]) -> Result<String, String> {
        let out = Command::new(tool)
            .args(self.options())
            .args(args)
            .env("LC_ALL", "C")
            .output()
            .map_err(|e| format!("cannot run {tool}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{tool} {} for {} failed ({}): {}",
                args.join(" "),
                self.suite,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn stamp(&self) -> PathBuf {
        self.dir.join("updated.stamp")
    }

    /// Whether `update` has succeeded before (the package lists are there).
    pub fn is_updated(&self) -> bool {
        self.stamp().exists()
    }

    /// Download the suite's package lists (`apt-get update` against our own sources.list).
    ///
    /// apt fails on a bad or missing signature, and so does this.
    pub fn update(&self) -> Result<(), String> {
        if !Path::new(ARCHIVE_KEYRING).exists() {
            return Err(format!("{ARCHIVE_KEYRING} is missing: install debian-archive-keyring"));
        }
        for sub in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(self.dir.join(sub)).map_err(|e| format!("mkdir: {e}"))?;
        }
        fs::write(self.dir.join("sources.list"), self.suite.sources_list())
            .map_err(|e| format!("writing sources.list: {e}"))?;
        let _ = fs::remove_file(self.stamp());
        let out = self.run("apt-get", &["-q", "update"], None)?;
        // apt-get update exits 0 on some fetch failures and only warns; treat those as errors.
        if out.contains("Failed to fetch") || out.lines().any(|l| l.starts_with("Err:")) {
            return Err(format!("apt-get update for {} had errors:\n{out}", self.suite));
        }
        fs::write(self.stamp(), b"").map_err(|e| format!("writing stamp: {e}"))?;
        Ok(())
    }

    /// Runs `update` unless it has succeeded before. Returns whether it ran.
    pub fn ensure_updated(&self) -> Result<bool, String> {
        if self.is_updated() {
            return Ok(false);
        }
        self.update()?;
        Ok(true)
    }

    /// Direct dependencies (Depends and Pre-Depends, first alternative, real packages only) of
    /// each of `packages`.
    fn depends(&self, packages: &[String]) -> Result<Vec<(String, Vec<String>)>, String> {
        let mut args = vec![
            "depends",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
        ];
        args.extend(packages.iter().map(String::as_str));
        let out = self.run_stdout("apt-cache", &args)?;
        let mut result: Vec<(String, Vec<String>)> = Vec::new();
        let mut skip_alternative = false;
        for line in out.lines() {
            if !line.starts_with(' ') {
                result.push((line.trim().trim_end_matches(":any").to_string(), Vec::new()));
                skip_alternative = false;
                continue;
            }
            let t = line.trim_start();
            let (alt, rest) = match t.strip_prefix('|') {
                Some(r) => (true, r),
                None => (false, t),
            };
            let dep = rest.strip_prefix("Depends: ").or_else(|| rest.strip_prefix("PreDepends: "));
            let Some(dep) = dep else { continue };
            let this_skipped = skip_alternative;
            skip_alternative = alt;
            if this_skipped || dep.starts_with('<') {
                continue;
            }
            let name = dep.split(':').next().unwrap_or(dep).to_string();
            if let Some(last) = result.last_mut() {
                last.1.push(name);
            }
        }
        Ok(result)
    }

    /// The set's packages plus the dependencies its `follow` rules select, sorted.
    pub fn resolve(&self, set: &PackageSet) -> Result<Vec<String>, String> {
        let mut all: BTreeSet<String> = set.packages.iter().cloned().collect();
        for (root, follow) in &set.follow {
            all.insert(root.clone());
            let mut seen: BTreeSet<String> = BTreeSet::new();
            let mut queue: VecDeque<String> = VecDeque::from([root.clone()]);
            while !queue.is_empty() {
                let batch: Vec<String> = queue.drain(..).filter(|p| seen.insert(p.clone())).collect();
                if batch.is_empty() {
                    break;
                }
                for (_, deps) in self.depends(&batch)? {
                    for d in deps {
                        if follow.wants(&d) && !seen.contains(&d) {
                            all.insert(d.clone());
                            queue.push_back(d);
                        }
                    }
                }
            }
        }
        Ok(all.into_iter().collect())
    }

    /// `apt-get download` the packages into `dest` (a directory).
    pub fn download(&self, packages: &[String], dest: &Path) -> Result<(), String> {
        fs::create_dir_all(dest).map_err(|e| format!("mkdir {}: {e}", dest.display()))?;
        let mut args = vec!["-q", "download"];
        args.extend(packages.iter().map(String::as_str));
        self.run("apt-get", &args, Some(dest)).map(|_| ())
    }
}

/// Makes sure `set` is unpacked below `cache` and returns its root directory.
///
/// A finished root is reused as it is (no network). Otherwise the suite's lists are fetched if
/// they never were, the set is resolved and downloaded (after a fresh `apt-get update` if the
/// first download fails, e.g. because a package was superseded), and unpacked. `finish` runs on
/// the unpacked tree before it is moved into place (e.g. to decompress the hypervisor).
pub fn ensure_set(
    cache: &Path,
    set: &PackageSet,
    finish: &dyn Fn(&Path) -> Result<(), String>,
) -> Result<PathBuf, String> {
    let root = set.root(cache);
    if root.join(MANIFEST).exists() {
        return Ok(root);
    }
    let apt = Apt::new(cache, set.suite);
    let fresh = apt.ensure_updated()?;
    let tag = format!("{}-{}.tmp{}", set.suite, set.name, std::process::id());
    let debs = cache.join("debs").join(&tag);
    let _ = fs::remove_dir_all(&debs);
    let packages = match apt.resolve(set).and_then(|p| apt.download(&p, &debs).map(|_| p)) {
        Ok(p) => p,
        Err(e) if !fresh => {
            eprintln!("sandbox: {e}\nsandbox: refreshing the {} package lists and retrying", set.suite);
            apt.update()?;
            let _ = fs::remove_dir_all(&debs);
            let p = apt.resolve(set)?;
            apt.download(&p, &debs)?;
            p
        }
        Err(e) => return Err(e),
    };
    let tmp_root = cache.join("roots").join(&tag);
    let _ = fs::remove_dir_all(&tmp_root);
    fs::create_dir_all(&tmp_root).map_err(|e| format!("mkdir {}: {e}", tmp_root.display()))?;
    let mut files: Vec<PathBuf> = fs::read_dir(&debs)
        .map_err(|e| format!("reading {}: {e}", debs.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    files.sort();
    if files.len() != packages.len() {
        return Err(format!(
            "expected {} .deb files for {} {} in {}, found {}",
            packages.len(),
            set.suite,
            set.name,
            debs.display(),
            files.len()
        ));
    }
    let mut manifest = String::new();
    for f in &files {
        let out = Command::new("dpkg-deb")
            .arg("-x")
            .arg(f)
            .arg(&tmp_root)
            .output()
            .map_err(|e| format!("cannot run dpkg-deb: {e}"))?;
        if !out.status.success() {
            return Err(format!("dpkg-deb -x {} failed: {}", f.display(), String::from_utf8_lossy(&out.stderr)));
        }
        manifest.push_str(&f.file_name().unwrap_or_default().to_string_lossy());
        manifest.push('\n');
    }
    finish(&tmp_root)?;
    fs::File::create(tmp_root.join(MANIFEST))
        .and_then(|mut f| f.write_all(manifest.as_bytes()))
        .map_err(|e| format!("writing manifest: {e}"))?;
    // The manifest names every .deb (with its version); the files themselves are not needed.
    let _ = fs::remove_dir_all(&debs);
    if root.exists() {
        // A concurrent run finished first; theirs is as good as ours.
        let _ = fs::remove_dir_all(&tmp_root);
    } else {
        fs::rename(&tmp_root, &root).map_err(|e| format!("moving {} into place: {e}", root.display()))?;
    }
    Ok(root)
}
