//! Running QEMU with a wall-clock limit while watching its serial console.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Name of the QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";

/// Console lines that mean the guest is dead and will never finish.
const FATAL: &[&str] =
    &["Kernel panic - not syncing", "'noreboot' set", "Panic on CPU", "Attempted to kill init", "Rebooting in "];

/// How QEMU's run ended.
#[derive(Debug)]
pub struct Run {
    /// Everything written to the serial console (and QEMU's stdout).
    pub console: String,
    /// QEMU's stderr.
    pub stderr: String,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// Time from start until `first_marker` appeared on the console, if it did.
    pub first_marker_at: Option<Duration>,
    /// Why the run was stopped early, if it was: a timeout or a fatal console message.
    pub stopped: Option<String>,
    /// QEMU's exit status, if it exited by itself.
    pub status: Option<std::process::ExitStatus>,
}

/// Finds QEMU in `PATH`.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(QEMU)).find(|p| p.is_file())
}

fn spawn_reader<R: Read + Send + 'static>(mut r: R, buf: Arc<Mutex<Vec<u8>>>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&chunk[..n]),
            }
        }
    })
}

/// Runs QEMU with `args` in `dir` until it exits, `timeout` passes, a fatal message appears, or
/// `done_marker` has appeared and QEMU does not exit within `grace` after it.
pub fn run(
    dir: &Path,
    args: &[String],
    timeout: Duration,
    first_marker: &str,
    done_marker: &str,
    grace: Duration,
) -> Result<Run, String> {
    let qemu = find().ok_or_else(|| format!("{QEMU} not found in PATH"))?;
    let start = Instant::now();
    let mut child = Command::new(&qemu)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", qemu.display()))?;
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    let readers = [
        spawn_reader(child.stdout.take().expect("piped stdout"), out.clone()),
        spawn_reader(child.stderr.take().expect("piped stderr"), err.clone()),
    ];
    let mut first_marker_at = None;
    let mut done_at: Option<Instant> = None;
    let mut fatal_at: Option<(Instant, String)> = None;
    let mut stopped = None;
    let mut scanned = 0usize;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| format!("waiting for QEMU: {e}"))? {
            break Some(s);
        }
        {
            let buf = out.lock().unwrap_or_else(|e| e.into_inner());
            // Only look at new text (with some overlap for markers split across reads).
            let from = scanned.saturating_sub(256);
            let text = String::from_utf8_lossy(&buf[from..]);
            if first_marker_at.is_none() && text.contains(first_marker) {
                first_marker_at = Some(start.elapsed());
            }
            if done_at.is_none() && text.contains(done_marker) {
                done_at = Some(Instant::now());
            }
            if fatal_at.is_none() {
                if let Some(f) = FATAL.iter().find(|f| text.contains(*f)) {
                    fatal_at = Some((Instant::now(), format!("the console shows {f:?}")));
                }
            }
            scanned = buf.len();
        }
        if start.elapsed() > timeout {
            stopped = Some(format!("timed out after {} s", timeout.as_secs()));
        } else if let Some((t, why)) = &fatal_at {
            // Give the guest a moment to print the rest of the oops.
            if t.elapsed() > Duration::from_secs(3) {
                stopped = Some(why.clone());
            }
        } else if done_at.is_some_and(|t| t.elapsed() > grace) {
            stopped = Some(format!("the script finished but QEMU did not exit within {} s of it", grace.as_secs()));
        }
        if stopped.is_some() {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    for r in readers {
        let _ = r.join();
    }
    let console = String::from_utf8_lossy(&out.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    let stderr = String::from_utf8_lossy(&err.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    if first_marker_at.is_none() && console.contains(first_marker) {
        first_marker_at = Some(start.elapsed());
    }
    Ok(Run { console, stderr, elapsed: start.elapsed(), first_marker_at, stopped, status })
}
