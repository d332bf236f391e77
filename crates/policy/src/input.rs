//! Reading an input file as text, whatever the path names: a regular file, a pipe or FIFO
//! (`<(ssh host cpupolicy host --format json)`), or something that is not a file at all.
//!
//! Every reader of untrusted paths goes through [`read_input`]: it never blocks on a FIFO that
//! has no writer (a plain `open` would wait forever), refuses directories and devices by name,
//! stops at [`MAX_INPUT_BYTES`] (so `/dev/zero`-like inputs cannot exhaust memory), and says
//! where text stops being UTF-8.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

/// The largest input read: far beyond any real policy, bundle or pool document (a policy of a
/// whole 10,000-host pool is a few tens of megabytes).
pub const MAX_INPUT_BYTES: u64 = 256 << 20;

/// Why an input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The operating system refused (no such file, permission, …).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A directory.
    #[error("is a directory, not a file")]
    Directory,
    /// A device or socket.
    #[error("is a {0}, not a file or pipe")]
    NotAFile(&'static str),
    /// Larger than [`MAX_INPUT_BYTES`].
    #[error("is larger than {} MiB", MAX_INPUT_BYTES >> 20)]
    TooLarge,
    /// Not UTF-8.
    #[error("is not UTF-8 text (byte {0})")]
    NotUtf8(usize),
}

/// Reads the file at `path` as UTF-8 text (see the module documentation).
pub fn read_input(path: &Path) -> Result<String, InputError> {
    let kind = std::fs::metadata(path)?.file_type();
    if kind.is_dir() {
        return Err(InputError::Directory);
    }
    if kind.is_char_device() || kind.is_block_device() || kind.is_socket() {
        let what = if kind.is_socket() { "socket" } else { "device" };
        return Err(InputError::NotAFile(what));
    }
    let bytes = if kind.is_fifo() {
        // Opened without waiting for a writer; with none, the first read says end of file.
        let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
        read_nonblocking(file)?
    } else {
        read_capped(File::open(path)?)?
    };
    as_text(bytes)
}

/// Reads standard input as UTF-8 text, stopping at [`MAX_INPUT_BYTES`] as [`read_input`] does
/// (`cpupolicy import - < /dev/zero` is refused, not read until memory runs out).
pub fn read_stdin() -> Result<String, InputError> {
    as_text(read_capped(std::io::stdin().lock())?)
}

/// Reads to the end, or one byte past [`MAX_INPUT_BYTES`] (which [`as_text`] refuses).
fn read_capped(reader: impl Read) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The bytes read as text: at most [`MAX_INPUT_BYTES`], UTF-8.
fn as_text(bytes: Vec<u8>) -> Result<String, InputError> {
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(InputError::TooLarge);
    }
    String::from_utf8(bytes).map_err(|e| InputError::NotUtf8(e.utf8_error().valid_up_to()))
}

/// Reads a non-blocking pipe to its end (or one byte past the limit), waiting briefly while a
/// connected writer has nothing yet.
fn read_nonblocking(mut file: File) -> Result<Vec<u8>, InputError> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => return Ok(bytes),
            Ok(n) => {
                bytes.extend_from_slice(&chunk[..n]);
                if bytes.len() as u64 > MAX_INPUT_BYTES {
                    return Ok(bytes);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(2)),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("cpupolicy-input-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        dir
    }

    #[test]
    fn a_fifo_with_no_writer_is_read_as_empty_not_waited_on() {
        let path = scratch("fifo");
        let made = std::process::Command::new("mkfifo").arg(&path).status().unwrap();
        assert!(made.success());
        assert_eq!(read_input(&path).unwrap(), "");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn directories_devices_and_bad_text_are_named() {
        assert!(matches!(read_input(Path::new("/")), Err(InputError::Directory)));
        assert!(matches!(read_input(Path::new("/dev/zero")), Err(InputError::NotAFile("device"))));
        let path = scratch("latin1");
        std::fs::write(&path, b"ok\xff").unwrap();
        assert_eq!(read_input(&path).unwrap_err().to_string(), "is not UTF-8 text (byte 2)");
        std::fs::remove_file(&path).unwrap();
    }
}
