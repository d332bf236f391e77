//! Locating the shared reference data beside the checkout (`../shared`).

#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/<sub>` relative to the workspace, or `None` (with a SKIP message) when absent.
pub fn shared_dir(sub: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared").join(sub);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIP: {} is absent; these tests need ../shared beside the checkout", dir.display());
        None
    }
}

/// Every libvirt dump, as (file name, text), sorted by name.
pub fn libvirt_dumps() -> Option<Vec<(String, String)>> {
    let dir = shared_dir("cpu-dumps/libvirt")?;
    let mut dumps: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("read the dump folder")
        .map(|entry| entry.expect("dump entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "xml"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, text)
        })
        .collect();
    dumps.sort();
    Some(dumps)
}

/// The recorded `xen-cpuid` outputs: (release, `-p` text, featuresets text).
pub fn xen_references() -> Option<Vec<(&'static str, String, String)>> {
    let dir = shared_dir("xen-reference")?;
    let read = |name: String| std::fs::read_to_string(dir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    Some(
        ["4.14", "4.17", "4.20"]
            .into_iter()
            .map(|release| {
                (
                    release,
                    read(format!("xen-{release}-qemu64.policy.txt")),
                    read(format!("xen-{release}-qemu64.featuresets.txt")),
                )
            })
            .collect(),
    )
}
