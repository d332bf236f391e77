//! Just enough of ELF64 (little-endian) to find what a binary needs at run time: its program
//! interpreter, `DT_NEEDED` libraries and `DT_RUNPATH`/`DT_RPATH`, and a kernel module's
//! `.modinfo` section.

use std::path::Path;

/// What the dynamic loader needs to run a binary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DynamicInfo {
    /// `PT_INTERP`, e.g. `/lib64/ld-linux-x86-64.so.2`; `None` for static binaries and libraries.
    pub interpreter: Option<String>,
    /// `DT_NEEDED` sonames, in order.
    pub needed: Vec<String>,
    /// `DT_RUNPATH` (or else `DT_RPATH`) entries, unexpanded.
    pub runpath: Vec<String>,
}

fn u16_at(d: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(d: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(d: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(o..o + 8)?.try_into().ok()?))
}
fn cstr_at(d: &[u8], o: usize) -> Option<String> {
    let tail = d.get(o..)?;
    let end = tail.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&tail[..end]).into_owned())
}

/// Whether `data` starts like an ELF file.
pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(b"\x7fELF")
}

fn check64(data: &[u8]) -> Result<(), String> {
    if !is_elf(data) {
        return Err("not an ELF file".into());
    }
    if data.get(4) != Some(&2) || data.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    Ok(())
}

struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

fn segments(d: &[u8]) -> Option<Vec<Segment>> {
    let phoff = u64_at(d, 0x20)? as usize;
    let phentsize = u16_at(d, 0x36)? as usize;
    let phnum = u16_at(d, 0x38)? as usize;
    (0..phnum)
        .map(|i| {
            let b = phoff + i * phentsize;
            Some(Segment {
                kind: u32_at(d, b)?,
                offset: u64_at(d, b + 8)?,
                vaddr: u64_at(d, b + 16)?,
                filesz: u64_at(d, b + 32)?,
            })
        })
        .collect()
}

/// Reads the interpreter, needed libraries and run path of an ELF64 binary or library.
pub fn dynamic_info(data: &[u8]) -> Result<DynamicInfo, String> {
    check64(data)?;
    let bad = || "truncated or malformed ELF file".to_string();
    let segs = segments(data).ok_or_else(bad)?;
    let mut info = DynamicInfo::default();
    if let Some(s) = segs.iter().find(|s| s.kind == 3) {
        info.interpreter = Some(cstr_at(data, s.offset as usize).ok_or_else(bad)?);
    }
    let Some(dynamic) = segs.iter().find(|s| s.kind == 2) else {
        return Ok(info);
    };
    let vaddr_to_offset = |v: u64| {
        segs.iter()
            .find(|s| s.kind == 1 && v >= s.vaddr && v < s.vaddr + s.filesz)
            .map(|s| (v - s.vaddr + s.offset) as usize)
    };
    let mut strtab = None;
    let mut needed = Vec::new();
    let mut runpath = None;
    let mut rpath = None;
    let mut o = dynamic.offset as usize;
    let end = o + dynamic.filesz as usize;
    while o + 16 <= end {
        let tag = u64_at(data, o).ok_or_else(bad)?;
        let val = u64_at(data, o + 8).ok_or_else(bad)?;
        match tag {
            0 => break,
            1 => needed.push(val),
            5 => strtab = Some(val),
            15 => rpath = Some(val),
            29 => runpath = Some(val),
            _ => {}
        }
        o += 16;
    }
    let Some(strtab) = strtab else {
        return Ok(info);
    };
    let strtab = vaddr_to_offset(strtab).ok_or_else(bad)?;
    let s = |off: u64| cstr_at(data, strtab + off as usize).ok_or_else(bad);
    for n in needed {
        info.needed.push(s(n)?);
    }
    if let Some(r) = runpath.or(rpath) {
        info.runpath = s(r)?.split(':').filter(|p| !p.is_empty()).map(String::from).collect();
    }
    Ok(info)
}

/// The contents of the section called `name`, if there is one.
pub fn section<'a>(data: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, String> {
    check64(data)?;
    let bad = || "truncated or malformed ELF file".to_string();
    let shoff = u64_at(data, 0x28).ok_or_else(bad)? as usize;
    let shentsize = u16_at(data, 0x3a).ok_or_else(bad)? as usize;
    let shnum = u16_at(data, 0x3c).ok_or_else(bad)? as usize;
    let shstrndx = u16_at(data, 0x3e).ok_or_else(bad)? as usize;
    let header = |i: usize| -> Option<(u32, u64, u64)> {
        let b = shoff + i * shentsize;
        Some((u32_at(data, b)?, u64_at(data, b + 0x18)?, u64_at(data, b + 0x20)?))
    };
    let (_, names_off, _) = header(shstrndx).ok_or_else(bad)?;
    for i in 0..shnum {
        let (name_idx, off, size) = header(i).ok_or_else(bad)?;
        if cstr_at(data, names_off as usize + name_idx as usize).as_deref() == Some(name) {
            let body = data.get(off as usize..(off + size) as usize).ok_or_else(bad)?;
            return Ok(Some(body));
        }
    }
    Ok(None)
}

/// The modules a kernel module depends on (its `.modinfo` `depends=` entry), names normalised to
/// use `_`.
pub fn module_depends(data: &[u8], path: &Path) -> Result<Vec<String>, String> {
    let info = section(data, ".modinfo")
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no .modinfo section", path.display()))?;
    let mut deps = Vec::new();
    for entry in info.split(|&b| b == 0) {
        if let Some(d) = entry.strip_prefix(b"depends=") {
            deps.extend(String::from_utf8_lossy(d).split(',').filter(|s| !s.is_empty()).map(|s| s.replace('-', "_")));
        }
    }
    Ok(deps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_executable() {
        let exe = std::env::current_exe().unwrap();
        let data = std::fs::read(exe).unwrap();
        let info = dynamic_info(&data).unwrap();
        // Test binaries on Linux are dynamically linked against the C library.
        assert!(info.needed.iter().any(|n| n.starts_with("libc.so")), "{info:?}");
        assert!(info.interpreter.is_some());
        assert!(section(&data, ".text").unwrap().is_some());
        assert!(section(&data, ".no-such-section").unwrap().is_none());
    }
}
