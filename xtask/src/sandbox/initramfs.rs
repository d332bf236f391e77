//! A small initramfs builder: a tree of guest paths, written as a `newc` cpio archive and
//! compressed with `gzip`.
//!
//! Shared libraries are resolved here too: for every ELF file added, its interpreter and
//! `DT_NEEDED` libraries are looked up (by soname) in an ordered list of roots, and the first
//! hit is copied to `/usr/lib/x86_64-linux-gnu/<soname>` in the guest (`/lib` and `/lib64` are
//! symlinks into `/usr`, as on a merged-/usr system).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::elf;

/// The guest's library directory (what the loader searches by default on Debian).
pub const LIB_DIR: &str = "/usr/lib/x86_64-linux-gnu";

#[derive(Debug, Clone)]
enum Node {
    Dir,
    File { source: Source, mode: u32 },
    Symlink(String),
    CharDev { major: u32, minor: u32, mode: u32 },
}

#[derive(Debug, Clone)]
enum Source {
    Host(PathBuf),
    Bytes(Vec<u8>),
}

/// The contents of an initramfs being built.
#[derive(Debug, Default)]
pub struct Initramfs {
    nodes: BTreeMap<String, Node>,
    /// Roots searched, in order, for the shared libraries ELF files need.
    lib_roots: Vec<PathBuf>,
    /// Sonames already resolved, and where from.
    libs: BTreeMap<String, PathBuf>,
}

/// Maps `/lib/...` and `/lib64/...` into `/usr`, and drops trailing/duplicate slashes.
fn canonical(guest: &str) -> String {
    let parts: Vec<&str> = guest.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    let mut p = format!("/{}", parts.join("/"));
    for d in ["/lib", "/lib64"] {
        if p == d || p.starts_with(&format!("{d}/")) {
            p = format!("/usr{p}");
        }
    }
    p
}

/// Resolves `path` (absolute, inside the unpacked tree `root`) to a regular file on the host,
/// following symlinks (absolute ones relative to `root`) and treating `/lib*` and `/usr/lib*`
/// as the same place, since unpacked packages lack the merged-/usr symlinks.
pub fn find_in_root(root: &Path, path: &str) -> Option<PathBuf> {
    let mut path = path.to_string();
    for _ in 0..40 {
        let mut candidates = vec![path.clone()];
        if let Some(rest) = path.strip_prefix("/usr") {
            if rest.starts_with("/lib") {
                candidates.push(rest.to_string());
            }
        } else if path.starts_with("/lib") {
            candidates.push(format!("/usr{path}"));
        }
        let mut next = None;
        for c in &candidates {
            let host = root.join(c.trim_start_matches('/'));
            match fs::symlink_metadata(&host) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = fs::read_link(&host).ok()?;
                    let target = target.to_string_lossy().into_owned();
                    next = Some(if target.starts_with('/') {
                        target
                    } else {
                        let parent = Path::new(c).parent().unwrap_or(Path::new("/"));
                        format!("{}/{}", parent.display(), target)
                    });
                    break;
                }
                Ok(m) if m.is_file() => return Some(host),
                _ => {}
            }
        }
        path = normalise(&next?);
    }
    None
}

fn normalise(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            x => out.push(x),
        }
    }
    format!("/{}", out.join("/"))
}

impl Initramfs {
    /// An empty tree with the standard directories, `/dev/console` and the merged-/usr links.
    pub fn new(lib_roots: Vec<PathBuf>) -> Self {
        let mut fs = Initramfs { lib_roots, ..Default::default() };
        for d in
            ["/bin", "/sbin", "/dev", "/proc", "/sys", "/tmp", "/run", "/usr/bin", "/usr/sbin", LIB_DIR, "/usr/lib64"]
        {
            fs.mkdir(d);
        }
        fs.nodes.insert("/lib".into(), Node::Symlink("usr/lib".into()));
        fs.nodes.insert("/lib64".into(), Node::Symlink("usr/lib64".into()));
        // The kernel opens /dev/console for init before anything can mount devtmpfs.
        fs.nodes.insert("/dev/console".into(), Node::CharDev { major: 5, minor: 1, mode: 0o600 });
        fs
    }

    /// Creates a directory and its parents.
    pub fn mkdir(&mut self, guest: &str) {
        let p = canonical(guest);
        let mut cur = String::new();
        for part in p.split('/').filter(|s| !s.is_empty()) {
            cur.push('/');
            cur.push_str(part);
            let c = canonical(&cur);
            self.nodes.entry(c).or_insert(Node::Dir);
        }
    }

    fn parent_dirs(&mut self, guest: &str) {
        if let Some(parent) = Path::new(guest).parent() {
            self.mkdir(&parent.to_string_lossy());
        }
    }

    /// Adds a file with the given bytes.
    pub fn add_bytes(&mut self, guest: &str, data: Vec<u8>, mode: u32) {
        let p = canonical(guest);
        self.parent_dirs(&p);
        self.nodes.insert(p, Node::File { source: Source::Bytes(data), mode });
    }

    /// Copies a host file (or directory, recursively) to `guest`; ELF files get the shared
    /// libraries they need.
    pub fn add_host(&mut self, host: &Path, guest: &str) -> Result<(), String> {
        let meta = fs::metadata(host).map_err(|e| format!("{}: {e}", host.display()))?;
        if meta.is_dir() {
            self.mkdir(guest);
            let mut entries: Vec<_> =
                fs::read_dir(host).map_err(|e| format!("{}: {e}", host.display()))?.filter_map(|e| e.ok()).collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let name = e.file_name().to_string_lossy().into_owned();
                self.add_host(&e.path(), &format!("{}/{name}", guest.trim_end_matches('/')))?;
            }
            return Ok(());
        }
        let p = canonical(guest);
        self.parent_dirs(&p);
        self.nodes.insert(
            p,
            Node::File { source: Source::Host(host.to_path_buf()), mode: meta.permissions().mode() & 0o7777 },
        );
        self.add_libraries_for(host)
    }

    /// Resolves and adds the interpreter and libraries `host` (an ELF file or not) needs.
    fn add_libraries_for(&mut self, host: &Path) -> Result<(), String> {
        let data = fs::read(host).map_err(|e| format!("{}: {e}", host.display()))?;
        if !elf::is_elf(&data) {
            return Ok(());
        }
        let info = elf::dynamic_info(&data).map_err(|e| format!("{}: {e}", host.display()))?;
        if let Some(interp) = &info.interpreter {
            let name = Path::new(interp).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let src = self.library(&name, &[], host)?;
            let guest = canonical(interp);
            if !self.nodes.contains_key(&guest) {
                self.parent_dirs(&guest);
                self.nodes.insert(guest, Node::File { source: Source::Host(src), mode: 0o755 });
            }
        }
        let origin = host.parent().unwrap_or(Path::new("/")).to_path_buf();
        let runpath: Vec<String> =
            info.runpath.iter().map(|r| r.replace("$ORIGIN", &origin.to_string_lossy())).collect();
        for soname in &info.needed {
            self.library(soname, &runpath, host)?;
        }
        Ok(())
    }

    /// Finds `soname` (once; later requests reuse the first answer), adds it and its own
    /// dependencies, and returns the host file it came from.
    fn library(&mut self, soname: &str, runpath: &[String], wanted_by: &Path) -> Result<PathBuf, String> {
        if let Some(p) = self.libs.get(soname) {
            return Ok(p.clone());
        }
        let std_dirs =
            ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"];
        let mut found = None;
        'roots: for root in &self.lib_roots {
            let mut root_dirs: Vec<String> = std_dirs.iter().map(|s| s.to_string()).collect();
            // Run paths relative to an unpacked root (e.g. /usr/lib/xen-4.20/lib/...).
            for r in runpath {
                if let Ok(rel) = Path::new(r).strip_prefix(root) {
                    root_dirs.insert(0, format!("/{}", rel.display()));
                } else if !r.contains("$") {
                    root_dirs.insert(0, r.clone());
                }
            }
            for d in &root_dirs {
                if let Some(p) = find_in_root(root, &format!("{d}/{soname}")) {
                    found = Some(p);
                    break 'roots;
                }
            }
        }
        let src = found.ok_or_else(|| {
            format!(
                "shared library {soname} (needed by {}) not found in any of {:?}",
                wanted_by.display(),
                self.lib_roots
            )
        })?;
        self.libs.insert(soname.to_string(), src.clone());
        self.nodes.insert(format!("{LIB_DIR}/{soname}"), Node::File { source: Source::Host(src.clone()), mode: 0o755 });
        self.add_libraries_for(&src)?;
        Ok(src)
    }

    /// Writes the tree as a gzip-compressed `newc` cpio archive to `out`.
    pub fn write_gz(&self, out: &Path) -> Result<(), String> {
        let raw = out.with_extension("cpio");
        self.write_cpio(&raw)?;
        let gz = Command::new("gzip")
            .args(["-1", "-n", "-f"])
            .arg(&raw)
            .status()
            .map_err(|e| format!("cannot run gzip: {e}"))?;
        if !gz.success() {
            return Err(format!("gzip {} failed: {gz}", raw.display()));
        }
        let produced = PathBuf::from(format!("{}.gz", raw.display()));
        fs::rename(&produced, out).map_err(|e| format!("renaming {}: {e}", produced.display()))
    }

    /// Writes the tree as an uncompressed `newc` cpio archive.
    pub fn write_cpio(&self, out: &Path) -> Result<(), String> {
        let f = fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
        let mut w = BufWriter::new(f);
        let io = |e: std::io::Error| format!("writing {}: {e}", out.display());
        for (ino, (path, node)) in (1u32..).zip(self.nodes.iter()) {
            let name = path.trim_start_matches('/');
            let (mode, data, rdev): (u32, Vec<u8>, (u32, u32)) = match node {
                Node::Dir => (0o040755, Vec::new(), (0, 0)),
                Node::Symlink(t) => (0o120777, t.as_bytes().to_vec(), (0, 0)),
                Node::CharDev { major, minor, mode } => (0o020000 | mode, Vec::new(), (*major, *minor)),
                Node::File { source, mode } => {
                    let data = match source {
                        Source::Bytes(b) => b.clone(),
                        Source::Host(p) => fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?,
                    };
                    (0o100000 | mode, data, (0, 0))
                }
            };
            write_entry(&mut w, ino, mode, name, &data, rdev).map_err(io)?;
        }
        write_entry(&mut w, 0, 0, "TRAILER!!!", &[], (0, 0)).map_err(io)?;
        w.flush().map_err(io)
    }
}

fn write_entry<W: Write>(
    w: &mut W,
    ino: u32,
    mode: u32,
    name: &str,
    data: &[u8],
    rdev: (u32, u32),
) -> std::io::Result<()> {
    let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
    let header = format!(
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
        0,
        0,
        0,
        data.len(),
        0,
        0,
        rdev.0,
        rdev.1,
        name.len() + 1,
        0
    );
    w.write_all(header.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    let pad = |n: usize| (4 - n % 4) % 4;
    w.write_all(&[0; 4][..pad(110 + name.len() + 1)])?;
    w.write_all(data)?;
    w.write_all(&[0; 4][..pad(data.len())])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths() {
        assert_eq!(canonical("/lib64/ld-linux-x86-64.so.2"), "/usr/lib64/ld-linux-x86-64.so.2");
        assert_eq!(canonical("lib/modules//x/"), "/usr/lib/modules/x");
        assert_eq!(canonical("/library"), "/library");
        assert_eq!(normalise("/a/b/../c/./d"), "/a/c/d");
    }

    #[test]
    fn cpio_layout() {
        let mut fs = Initramfs::new(vec![]);
        fs.add_bytes("/init", b"#!/bin/sh\n".to_vec(), 0o755);
        let dir = std::env::temp_dir().join(format!("sandbox-cpio-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("a.cpio");
        fs.write_cpio(&out).unwrap();
        let data = std::fs::read(&out).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(data.starts_with(b"070701"));
        assert_eq!(data.len() % 4, 0);
        let text = String::from_utf8_lossy(&data);
        assert!(text.contains("init\0"));
        assert!(text.contains("dev/console\0"));
        assert!(text.contains("TRAILER!!!\0"));
    }
}
