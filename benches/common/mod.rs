//! What the command-line benches share.

use std::process::{Command, Stdio};
use std::time::Instant;

/// Runs the command line to completion under `/usr/bin/time` (whose own child's peak is the
/// command's alone: a child spawned straight from the bench would be charged the bench's
/// memory): (seconds, peak resident set in MiB, bytes written, exit status 0 or 1).
pub fn measure(args: &[String]) -> (f64, f64, usize, i32) {
    let report = std::env::temp_dir().join(format!("cpupolicy-bench-time-{}", std::process::id()));
    let start = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(env!("CARGO_BIN_EXE_cpupolicy"))
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("run /usr/bin/time (package time)");
    let seconds = start.elapsed().as_secs_f64();
    let code = out.status.code().unwrap_or(-1);
    assert!(matches!(code, 0 | 1), "cpupolicy {args:?} failed: {}", out.status);
    let kib: f64 = std::fs::read_to_string(&report)
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()))
        .expect("time's report");
    (seconds, kib / 1024.0, out.stdout.len(), code)
}
