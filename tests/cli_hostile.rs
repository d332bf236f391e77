//! The command line as a hostile or careless user drives it: inputs that are not files (FIFOs
//! with no writer, directories, devices), non-UTF-8 and truncated files, and every output
//! stream closed. Each must end with a clear message and exit 2 (or the command's own answer),
//! never a panic (101), a hang or a partial write.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cpupolicy")
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hostile");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// Runs with a deadline far above any honest run: a hang is a failure, not a stuck test.
fn run(mut command: Command) -> Output {
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("{command:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn cpupolicy(args: &[&str]) -> Output {
    let mut command = Command::new(bin());
    command.args(args);
    run(command)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A megabyte-long bad token, key or line is quoted as an excerpt: the message stays short.
#[test]
fn long_bad_input_makes_a_short_message() {
    let key = scratch("long-key.json");
    std::fs::write(&key, format!("{{\"format\": \"cpupolicy-policy\", \"{}\": 1}}", "k".repeat(1 << 20))).unwrap();
    let line = scratch("one-line.xml");
    std::fs::write(&line, format!("<cpudata arch='x86'> {} </cpudata>\n", "<cpuid/>".repeat(1 << 17))).unwrap();
    // One argument may be at most 128 KiB.
    let token = format!("1:{}", "z".repeat(100_000));
    for args in [
        vec!["import".to_string(), key.display().to_string()],
        vec!["import".to_string(), line.display().to_string()],
        vec!["decode".to_string(), token],
    ] {
        let out = cpupolicy(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let head = |out: &Output| stderr(out).chars().take(300).collect::<String>();
        assert_eq!(out.status.code(), Some(2), "{}", head(&out));
        assert!(
            out.stderr.len() < 1024,
            "{} bytes: {}",
            out.stderr.len(),
            stderr(&out).chars().take(300).collect::<String>()
        );
        assert!(stderr(&out).contains("bytes)"), "{}", stderr(&out));
    }
}

/// Standard input is read up to the same limit as files: an endless one is refused, not read
/// until memory runs out.
#[test]
fn standard_input_has_the_files_limit() {
    let child = Command::new(bin())
        .args(["import", "-"])
        .stdin(std::fs::File::open("/dev/zero").unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("standard input: is larger than 256 MiB"), "{}", stderr(&out));
}

#[test]
fn inputs_that_are_not_files_are_refused_by_name() {
    let fifo = scratch("no-writer.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let fifo = fifo.display().to_string();
    let latin1 = scratch("latin1.json");
    std::fs::write(&latin1, b"{\"format\": \"cpupolicy-policy\xff\"}").unwrap();
    let latin1 = latin1.display().to_string();
    let cases: [(&[&str], &str); 7] = [
        (&["import", &fifo], "cannot tell the format"),
        (&["level", &fifo], "cannot tell the format"),
        (&["check", "--vm", &fifo, "--host", &fifo], "cannot tell the format"),
        (&["import", "/"], "is a directory"),
        (&["diff", "/dev/zero", "/dev/null"], "is a device"),
        (&["import", &latin1], "is not UTF-8 text (byte 28)"),
        (&["level", "--featuresets", "/"], "is a directory"),
    ];
    for (args, message) in cases {
        let out = cpupolicy(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}: nothing on standard output");
    }
}

/// `<(command)` is a pipe whose writer may be slow: read to its end, not refused.
#[test]
fn process_substitution_is_read() {
    let Ok(bash) = which("bash") else { return };
    let script = format!("{} decode $(sleep 0.3; echo 178bfbfd:80002001) < /dev/null && {} import <(sleep 0.3; echo '{{\"format\": \"cpupolicy-policy\", \"version\": 1, \"cpuid\": [], \"msrs\": []}}')", bin(), bin());
    let mut command = Command::new(bash);
    command.args(["-c", &script]);
    let out = run(command);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"cpupolicy-policy\""));
}

fn which(name: &str) -> Result<PathBuf, ()> {
    ["/bin", "/usr/bin"].iter().map(|d| PathBuf::from(d).join(name)).find(|p| p.exists()).ok_or(())
}

/// Every subcommand that prints, with its standard output closed after the first line, or
/// its standard error closed while it reports an error: no panic (exit 101).
#[test]
fn closed_output_streams_never_panic() {
    let Ok(sh) = which("sh") else { return };
    let bad = scratch("bad.txt");
    std::fs::write(&bad, "garbage\n").unwrap();
    let bad = bad.display().to_string();
    let long = vec!["178bfbfd:ffffffff:2193fbfd"; 200].join(" ");
    let commands = [
        format!("decode {long}"),
        "masks".to_string(),
        "masks --format json".to_string(),
        format!("decode --format json {long}"),
        "topology --vendor intel --packages 4 --cores 16 --threads 2 --leaves".to_string(),
        "level --featuresets 1-2 3-4".to_string(),
    ];
    for args in &commands {
        // Several times: whether the reader has gone before the write is a race.
        for _ in 0..5 {
            // The pipeline's first command reports its own exit status through a file.
            let status = scratch("status");
            let script = format!("( {} {args}; echo $? > {} ) | head -c 1 > /dev/null", bin(), status.display());
            let mut command = Command::new(&sh);
            command.args(["-c", &script]);
            let out = run(command);
            assert!(out.status.success(), "{args}: {}", stderr(&out));
            let code = std::fs::read_to_string(&status).unwrap();
            assert_eq!(code.trim(), "0", "{args}: exit {code} with its reader gone; {}", stderr(&out));
        }
    }
    // Standard error closed while reporting bad input: exit 2, not 101.
    for args in
        [format!("import {bad}"), format!("level {bad}"), "decode zz".to_string(), "level --featuresets zz".to_string()]
    {
        let mut command = Command::new(&sh);
        command.args(["-c", &format!("{} {args} 2>&-", bin())]);
        let out = run(command);
        assert_eq!(out.status.code(), Some(2), "{args}");
    }
}

fn shared(sub: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared").join(sub);
    path.exists().then_some(path)
}

/// Truncated documents of every format, deeply nested and oversized JSON, an input larger than
/// any real one: exit 2 naming the file (or, for a cut that still reads, 0), never a panic.
#[test]
fn truncated_nested_and_huge_inputs_exit_2() {
    let Some(refs) = shared("xen-reference") else { return };
    let dumps = shared("cpu-dumps/libvirt").unwrap();
    let xen_cpuid = std::fs::read(refs.join("xen-4.20-qemu64.policy.txt")).unwrap();
    let libvirt = std::fs::read(dumps.join("x86_64-cpuid-Ice-Lake-Server.xml")).unwrap();
    let bundle = cpupolicy(&["derive", &dumps.join("x86_64-cpuid-Ice-Lake-Server.xml").display().to_string()]).stdout;
    let pool = cpupolicy(&[
        "level",
        "--kind",
        "pv",
        "--format",
        "json",
        &refs.join("xen-4.20-qemu64.policy.txt").display().to_string(),
    ])
    .stdout;
    let mut cases = 0;
    for (kind, whole) in [("xen-cpuid", &xen_cpuid), ("libvirt", &libvirt), ("bundle", &bundle), ("pool", &pool)] {
        assert!(whole.len() > 100, "{kind}");
        for cut in [whole.len() / 3, whole.len() / 2, whole.len() * 2 / 3, whole.len() - 2] {
            let file = scratch(&format!("cut-{kind}-{cut}"));
            std::fs::write(&file, &whole[..cut]).unwrap();
            for command in ["import", "level"] {
                let out = cpupolicy(&[command, &file.display().to_string()]);
                let code = out.status.code();
                assert!(matches!(code, Some(0 | 2)), "{command} of {kind} cut at {cut}: {code:?} {}", stderr(&out));
                if code == Some(2) {
                    assert!(stderr(&out).contains(&file.display().to_string()), "{}", stderr(&out));
                }
                cases += 1;
            }
        }
    }
    // JSON nested far deeper than any document: refused by the JSON reader's limit, not a stack overflow.
    let nested = scratch("nested.json");
    std::fs::write(&nested, format!("{{\"format\": {}1{}}}", "[".repeat(100_000), "]".repeat(100_000))).unwrap();
    let out = cpupolicy(&["import", &nested.display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("recursion limit"), "{}", stderr(&out));
    // Numbers too wide for their field.
    let wide = scratch("wide.json");
    std::fs::write(
        &wide,
        "{\"format\": \"cpupolicy-policy\", \"version\": 99999999999999999999, \"cpuid\": [], \"msrs\": []}",
    )
    .unwrap();
    assert_eq!(cpupolicy(&["import", &wide.display().to_string()]).status.code(), Some(2));
    // Larger than any input is allowed to be (a sparse file: nothing written to disk).
    let huge = scratch("huge.json");
    std::fs::File::create(&huge).unwrap().set_len((256 << 20) + 1).unwrap();
    let out = cpupolicy(&["import", &huge.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("larger than 256 MiB"), "{}", stderr(&out));
    std::fs::remove_file(&huge).unwrap();
    assert!(cases >= 32);
}

/// Every subcommand, with its reader gone after one byte and with standard error closed on bad
/// input: never exit 101.
#[test]
fn every_subcommand_survives_closed_streams() {
    let (Some(refs), Some(dumps)) = (shared("xen-reference"), shared("cpu-dumps/libvirt")) else { return };
    let Ok(sh) = which("sh") else { return };
    let host = refs.join("xen-4.20-qemu64.policy.txt").display().to_string();
    let other = refs.join("xen-4.14-qemu64.policy.txt").display().to_string();
    let dump = dumps.join("x86_64-cpuid-EPYC-7601-32-Core.xml").display().to_string();
    let cfg = scratch("closed.cfg");
    std::fs::write(&cfg, "cpuid = \"host,avx=0\"\n").unwrap();
    let cfg = cfg.display().to_string();
    let commands: Vec<String> = vec![
        "decode 178bfbfd:80002001".into(),
        "masks --xen 4.17".into(),
        "topology --vendor amd --packages 2 --cores 8 --threads 2 --leaves".into(),
        format!("import {host}"),
        format!("import {host} --format xen-cpuid"),
        format!("diff {host} {other}"),
        "host --source native".into(),
        format!("level --explain {host} {other}"),
        format!("level --kind pv --format json --explain {host} {other}"),
        format!("level --kind pv --format xl {host} {other}"),
        format!("level --kind pv --format libvirt-domain {host} {other}"),
        format!("level --kind pv --format libvirt {host} {other}"),
        format!("level --kind pv --format xen-cpuid {host} {other}"),
        format!("check --kind hvm --vm {host} --host {other} --format json"),
        format!("derive {dump}"),
        format!("xl apply --host {dump} {cfg}"),
        format!("placement --host {host} --host {other} --vm {host} --vm v2={other}@xen-4.14-qemu64.policy"),
        format!("placement --format json --host {host} --host {other} --vm {host}"),
        format!("placement --format matrix --host {host} --host {other} --vm {other}"),
        format!("plan --host {host} --vm v={other}@xen-4.20-qemu64.policy --add {other}"),
        format!("plan --format json --host {host} --host {other} --vm {host} --remove xen-4.14-qemu64.policy"),
    ];
    for args in &commands {
        let status = scratch("closed-status");
        let script = format!("( {} {args}; echo $? > {} ) | head -c 1 > /dev/null", bin(), status.display());
        let mut command = Command::new(&sh);
        command.args(["-c", &script]);
        let out = run(command);
        assert!(out.status.success());
        let code = std::fs::read_to_string(&status).unwrap();
        assert!(matches!(code.trim(), "0" | "1"), "{args}: exit {code} with its reader gone; {}", stderr(&out));
        // And with standard error closed, on input it refuses.
        let mut command = Command::new(&sh);
        command.args(["-c", &format!("{} {args} /no/such/file 2>&- > /dev/null", bin())]);
        let out = run(command);
        assert_ne!(out.status.code(), Some(101), "{args} with stderr closed");
    }
}
