#!/usr/bin/env python3
"""Regenerate crates/featureset/src/table.rs from Xen's public cpufeatureset.h.

Usage: import-header.py XEN_GIT_DIR            (writes crates/featureset/src/table.rs,
                                               crates/featureset/src/releases.rs and
                                               crates/featureset/src/ids.rs)

Reads `xen/include/public/arch-x86/cpufeatureset.h` on master and, for each
feature, finds the first release whose header names it (its x.y.0 tag). For
each release it also reads the header of the branch's newest point release
(what distributions ship, security backports included) and records what that
release knows differently from master: bits it does not name, attribute
letters that differ (releases.rs).  Aliases are curated by hand in ALIASES below: they are facts from
Linux (`/proc/cpuinfo` names), QEMU/libvirt (`-cpu` property names) and Xen
4.14's own `xen-cpuid` spellings.  The generated table is what the crate uses;
this script only exists so a reviewer can redo the import and diff the result.
"""
import re, subprocess, sys

RELEASES = ["4.14", "4.15", "4.16", "4.17", "4.18", "4.19", "4.20", "4.21", "4.22"]
HEADER = "xen/include/public/arch-x86/cpufeatureset.h"
FEAT = re.compile(r"^XEN_CPUFEATURE\(([A-Z0-9_]+),\s+([\s\d]+)\*([\s\d]+)\+([\s\d]+)\)\s+/\*([\w!|]*)\s*(.*?)\s*\*/")

# name -> aliases (Linux /proc/cpuinfo, QEMU/libvirt, Xen 4.14 xen-cpuid), only where they differ.
ALIASES = {
    "ds": ["dts"], "htt": ["ht"], "tm1": ["tm"], "sep": ["sysenter"],
    "sse3": ["pni"], "pclmulqdq": ["pclmuldq"], "dscpl": ["ds_cpl", "ds-cpl"],
    "eist": ["est"], "sdbg": ["sdgb"], "sse4-1": ["sse4_1", "sse4.1", "sse41"],
    "sse4-2": ["sse4_2", "sse4.2", "sse42"], "movbe": ["movebe"],
    "tsc-deadline": ["tsc_deadline_timer", "tsc-dl"], "aesni": ["aes"],
    "rdrand": ["rdrnd"], "hypervisor": ["hyper"],
    "nx": ["xd"], "mmxext": ["mmx+"], "ffxsr": ["fxsr_opt", "fxsr-opt", "fxsr+"],
    "page1gb": ["pdpe1gb", "pg1g"], "3dnowext": ["3dnow+"],
    "lahf-lm": ["lahf_lm"], "cmp-legacy": ["cmp_legacy", "cmp"], "cr8-legacy": ["cr8_legacy", "cr8legacy", "cr8d"],
    "abm": ["lzcnt"], "misalignsse": ["msse"], "3dnowprefetch": ["3dnowpf"],
    "nodeid-msr": ["nodeid_msr", "nodeid"], "dbext": ["bpext", "dbx"], "monitorx": ["mwaitx"],
    "tsc-adjust": ["tsc_adjust", "tsc-adj"], "fdp-excp-only": ["fdp_excptn_only", "fdp_exn"],
    "no-fpu-sel": ["zero_fcs_fds", "depfpp"], "pqm": ["cqm"], "pqe": ["rdt_a"],
    "avx512-ifma": ["avx512ifma"], "proc-trace": ["intel_pt", "intel-pt", "pt"], "sha": ["sha_ni", "sha-ni"],
    "avx512-vbmi": ["avx512vbmi", "avx512_vbmi"], "avx512-vbmi2": ["avx512_vbmi2", "avx512vbmi2"],
    "cet-ss": ["shstk"], "avx512-vnni": ["avx512_vnni", "avx512vnni"],
    "avx512-bitalg": ["avx512_bitalg", "avx512bitalg"], "avx512-vpopcntdq": ["avx512_vpopcntdq"],
    "bld": ["bus_lock_detect", "bus-lock-detect"], "sgx-lc": ["sgx_lc", "sgxlc"],
    "hw-pstate": ["hw_pstate"], "itsc": ["invtsc"], "rstr-fp-err-ptrs": ["xsaveerptr"],
    "amd-ppin": ["amd_ppin"], "virt-ssbd": ["virt_ssbd"],
    "avx512-4vnniw": ["avx512_4vnniw"], "avx512-4fmaps": ["avx512_4fmaps"],
    "avx512-vp2intersect": ["avx512_vp2intersect"], "md-clear": ["md_clear"],
    "hybrid": ["hybrid_cpu"], "tsxldtrk": ["tsx-ldtrk"], "arch-lbr": ["arch_lbr"], "cet-ibt": ["ibt"],
    "amx-bf16": ["amx_bf16"], "avx512-fp16": ["avx512_fp16"], "amx-tile": ["amx_tile"], "amx-int8": ["amx_int8"],
    "ibrsb": ["spec-ctrl", "spec_ctrl"], "l1d-flush": ["flush_l1d"],
    "arch-caps": ["arch-capabilities", "arch_capabilities", "arch_caps"], "core-caps": ["core-capability", "core_caps"],
    "avx-vnni": ["avx_vnni"], "avx512-bf16": ["avx512_bf16"], "avx-ifma": ["avx_ifma"], "amx-fp16": ["amx_fp16"],
    "no-nest-bp": ["no-nested-data-bp"], "lfence-dispatch": ["lfence-always-serializing", "lfence+"],
    "nscb": ["null-sel-clr-base"], "auto-ibrs": ["auto_ibrs"], "srso-us-no": ["srso-user-kernel-no"],
    "intel-ppin": ["intel_ppin"], "prefetchi": ["prefetchiti"],
    "avx-vnni-int8": ["avx_vnni_int8"], "avx-ne-convert": ["avx_ne_convert"], "avx-vnni-int16": ["avx_vnni_int16"],
    "rdcl-no": ["rdctl-no"], "eibrs": ["ibrs-all"], "skip-l1dfl": ["skip-l1dfl-vmentry"],
    "if-pschange-mc-no": ["pschange-mc-no"],
    "amd-stibp": ["amd_stibp"], "amd-ssbd": ["amd_ssbd"], "ssb-no": ["amd-no-ssb"], "psfd": ["amd-psfd"],
    "cpb": [], "waitpkg": [], "la57": [],
}

def header_at(tag):
    return subprocess.run(["git", "-C", sys.argv[1], "show", f"{tag}:{HEADER}"],
                          check=True, capture_output=True, text=True).stdout

def tag_of(rel):
    return "HEAD" if rel == "master" else f"RELEASE-{rel}.0"

def newest_point_tag(rel):
    tags = subprocess.run(["git", "-C", sys.argv[1], "tag", "--list", f"RELEASE-{rel}.*"],
                          check=True, capture_output=True, text=True).stdout.split()
    def key(tag):
        return [int(x) for x in tag.split("-")[1].split(".")]
    return max(tags, key=key)

def header(tag):
    return header_at(tag)

def features(text):
    out = []
    for line in text.splitlines():
        m = FEAT.match(line)
        if m:
            name, w, mul, b, attrs, desc = m.groups()
            assert int(mul) == 32
            idx = int(w) * 32 + int(b)
            out.append((name, idx, attrs, desc))
    return out

def rust_ident(name):
    """Xen's identifier as a Rust constant's name (a leading digit gets an underscore)."""
    ident = name.upper()
    return "_" + ident if ident[0].isdigit() else ident

def release_variant(rel):
    return "Master" if rel == "master" else "V" + rel.replace(".", "_")

def main():
    newest = features(header(tag_of("master")))
    seen_in = {}
    for rel in RELEASES + ["master"]:
        for name, _, _, _ in features(header(tag_of(rel))):
            seen_in.setdefault(name, rel)
    names = {n.lower().replace("_", "-") for n, _, _, _ in newest}
    for k in ALIASES:
        assert k in names, k
    out = open("crates/featureset/src/table.rs", "w")
    w = lambda line="": out.write(line + "\n")
    w("// @generated by crates/featureset/tools/import-header.py from Xen's")
    w("// xen/include/public/arch-x86/cpufeatureset.h (master; first releases from the x.y.0 tags).")
    w("// Columns: word, bit, Xen name, attributes, first Xen release naming it, aliases, description.")
    w("use crate::feature::{feature, Feature, XenRelease::*};")
    w()
    w("/// Every feature named by Xen's public `cpufeatureset.h`, in (word, bit) order.")
    w("pub static FEATURES: &[Feature] = &[")
    last_word = -1
    for name, idx, attrs, desc in sorted(newest, key=lambda f: f[1]):
        word, bit = idx // 32, idx % 32
        if word != last_word:
            w(f"    // word {word}")
            last_word = word
        xname = name.lower().replace("_", "-")
        # Lookups ignore case and '-' versus '_': keep only aliases that differ beyond that.
        keys, kept = {xname}, []
        for alias in ALIASES.get(xname, []):
            key = alias.lower().replace("_", "-")
            if key not in keys:
                keys.add(key)
                kept.append(alias)
        aliases = ", ".join(f'"{a}"' for a in kept)
        rel = release_variant(seen_in[name])
        desc = desc.replace("\\", "\\\\").replace('"', '\\"')
        w(f'    feature({word}, {bit}, "{xname}", "{attrs}", {rel}, &[{aliases}], "{desc}"),')
    w("];")
    out.close()

    out = open("crates/featureset/src/ids.rs", "w")
    w = lambda line="": out.write(line + "\n")
    w("// @generated by crates/featureset/tools/import-header.py from the same rows as table.rs.")
    w("//! One constant per feature Xen names, `FeatureId`s by Xen's own identifiers: code names a")
    w("//! feature by constant, so a misspelt or retired name fails to compile. Names starting with a")
    w("//! digit (`3DNOW`) take a leading underscore.")
    w("use crate::FeatureId;")
    for name, idx, attrs, desc in sorted(newest, key=lambda f: f[1]):
        ident = rust_ident(name)
        xname = name.lower().replace("_", "-")
        # Rustdoc reads `[...]` as a link: escape brackets (`VPOPCNT[B,W]`).
        doc = desc.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
        w()
        w(f"/// `{xname}` ({idx // 32}*32+{idx % 32}): {doc}")
        w(f"pub const {ident}: FeatureId = FeatureId::from_index({idx});")
    w()
    w("/// Every constant with the name table.rs gives its bit, to check the two agree.")
    w("#[cfg(test)]")
    w("pub(crate) const ALL: &[(FeatureId, &str)] = &[")
    for name, idx, attrs, desc in sorted(newest, key=lambda f: f[1]):
        w(f'    ({rust_ident(name)}, "{name.lower().replace("_", "-")}"),')
    w("];")
    out.close()

    by_index = {idx: attrs for _, idx, attrs, _ in newest}
    out = open("crates/featureset/src/releases.rs", "w")
    w = lambda line="": out.write(line + "\n")
    w("// @generated by crates/featureset/tools/import-header.py: per release, at the newest point")
    w("// release of its branch, what its cpufeatureset.h says differently from master's.")
    w("use crate::feature::{ReleaseDiff, XenRelease::*};")
    w()
    w("/// What each release knows differently from the feature table (master).")
    w("pub(crate) static RELEASE_DIFFS: &[ReleaseDiff] = &[")
    for rel in RELEASES:
        tag = newest_point_tag(rel)
        known = {idx: attrs for _, idx, attrs, _ in features(header_at(tag))}
        for idx in known:
            assert idx in by_index, f"{tag} names bit {idx}, which master does not"
        absent = sorted(i for i in by_index if i not in known)
        changed = sorted((i, known[i]) for i in known if known[i] != by_index[i])
        absent_text = ", ".join(str(i) for i in absent)
        changed_text = ", ".join(f'({i}, "{a}")' for i, a in changed)
        w(f"    // {tag}")
        w(f"    ReleaseDiff {{ release: {release_variant(rel)}, absent: &[{absent_text}], attributes: &[{changed_text}] }},")
    w("];")
    out.close()

main()
