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
