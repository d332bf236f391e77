//! The `cargo xtask sandbox ...` command line, including `selftest`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::boot::{boot, Boot};
use super::cache::{cache_dir, prepare, xen_headers, xen_userland};
use super::release::{Hypervisor, XenRelease};

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
    fn splits_sections() {
        let s = split_sections(&format!("{SECTION} a\nx\ny\n{SECTION} b\nz\n"));
        assert_eq!(s["a"], "x\ny\n");
        assert_eq!(s["b"], "z\n");
    }
}
