//! Reading the small text files of procfs and cgroupfs in few system calls: one open, a read
//! into a buffer larger than the file, the read that returns EOF, one close. A listing of a
//! thousand containers reads tens of thousands of them, and `fs::read_to_string` spends a third
//! read on each, a 32-byte probe, because these files report size 0. (The EOF read cannot be
//! skipped on a short read: seq_file returns at most its own buffer, a page, per read.)

use std::fs::File;
use std::io::Read;
use std::path::Path;

const BUF: usize = 16 * 1024;

/// The whole text of `path`, or `None` when it cannot be opened or read.
pub fn read(path: &Path) -> Option<String> {
    let mut f = File::open(path).ok()?;
    let mut buf = vec![0u8; BUF];
    let mut len = 0;
    loop {
        let n = f.read(&mut buf[len..]).ok()?;
        if n == 0 {
            break;
        }
        len += n;
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_small_and_large_files_whole() {
        let dir = std::env::temp_dir().join(format!("tally-kfile-{}", std::process::id()));
        std::fs::write(&dir, "x".repeat(3 * BUF + 5)).unwrap();
        assert_eq!(read(&dir).map(|t| t.len()), Some(3 * BUF + 5));
        std::fs::write(&dir, "1 2 3\n").unwrap();
        assert_eq!(read(&dir).as_deref(), Some("1 2 3\n"));
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(read(&dir), None);
        assert!(read(Path::new("/proc/self/status")).is_some_and(|s| s.contains("VmRSS")));
    }
}
