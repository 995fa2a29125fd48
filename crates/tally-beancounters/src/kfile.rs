//! Reading the small text files of procfs and cgroupfs in few system calls: one open, a read
//! into a buffer larger than the file, one close. A listing of a thousand containers reads tens
//! of thousands of them, and `fs::read_to_string` spends two more reads on each (a 32-byte
//! probe, because these files report size 0, and the read that returns EOF).
//!
//! When is a short read the end? seq_file, behind nearly all of these files, returns at most
//! its own buffer per read (a page, or more once a record needed more) and stops short of the
//! caller's buffer only at the end or when its next record does not fit what is left of its
//! own. So a read that stops short having returned under half a page is the end unless the next
//! record is longer than half a page: no line of the files read with `read` and `read_at` (one
//! value, a `key value` list, /proc/PID/stat, status, limits, fdinfo, cgroup.procs) comes near
//! that. A table whose lines can be long (mountinfo with an overlay's layers) is read with
//! `read_all`, to EOF.

use std::fs::File;
use std::io::Read;
use std::path::Path;

const BUF: usize = 16 * 1024;

/// Under half a page: a short read of less than this is the end of a file of short lines.
const SHORT: usize = 2048;

/// The whole text of `path` (a file of short lines), or `None` when it cannot be opened or read.
pub fn read(path: &Path) -> Option<String> {
    read_file(File::open(path).ok()?, true)
}

/// The whole text of `path`, read to EOF whatever its lines.
pub fn read_all(path: &Path) -> Option<String> {
    read_file(File::open(path).ok()?, false)
}

/// The whole text of `name` in the open directory `dir`: no walk of the directory's path
/// again, which for /proc/PID/fdinfo/N per fd was a good part of a listing's time.
pub fn read_at(dir: &File, name: &std::ffi::CStr) -> Option<String> {
    use std::os::fd::AsRawFd;
    read_file(open_at(dir.as_raw_fd(), name, libc::O_NOFOLLOW).ok()?.into(), true)
}

/// The directory `name` under `dir` (or an absolute path when `dir` is `None`), opened for
/// `read_at` and `link_at`.
pub fn open_dir(dir: Option<&File>, name: &std::ffi::CStr) -> Option<File> {
    use std::os::fd::AsRawFd;
    let at = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    open_at(at, name, libc::O_DIRECTORY).ok().map(File::from)
}

/// openat(2) for reading, close-on-exec, with extra `flags`; `dir` may be AT_FDCWD.
pub fn open_at(dir: std::os::fd::RawFd, name: &std::ffi::CStr, flags: i32) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: a valid dirfd (or AT_FDCWD) and a NUL-terminated name.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC | flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// The names in the open directory `dir` with their d_type, without `.` and `..`, from its
/// start: getdents64 on the fd itself, which for a /proc/PID/fd listing per container costs
/// two calls where readdir over a duplicate (dup, fstat, two fcntl, close) cost seven.
pub fn names(dir: &impl std::os::fd::AsRawFd) -> std::io::Result<Vec<(std::ffi::CString, u8)>> {
    let fd = dir.as_raw_fd();
    // SAFETY: lseek on an open fd; rewinds a directory another listing may have read.
    if unsafe { libc::lseek(fd, 0, libc::SEEK_SET) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    loop {
        // SAFETY: the kernel writes at most buf.len() bytes of linux_dirent64 records into buf.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if n == 0 {
            break;
        }
        let records = &buf[..n as usize];
        // struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
        let mut off = 0;
        while off + 19 <= records.len() {
            let reclen = u16::from_ne_bytes([records[off + 16], records[off + 17]]) as usize;
            if reclen < 19 || off + reclen > records.len() {
                break;
            }
            let kind = records[off + 18];
            let raw = &records[off + 19..off + reclen];
            let name = &raw[..raw.iter().position(|b| *b == 0).unwrap_or(raw.len())];
            if name != b"." && name != b".." {
                if let Ok(c) = std::ffi::CString::new(name) {
                    out.push((c, kind));
                }
            }
            off += reclen;
        }
    }
    Ok(out)
}

/// The target of the symlink `name` in the open directory `dir` (readlinkat).
pub fn link_at(dir: &File, name: &std::ffi::CStr) -> Option<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 256];
    // SAFETY: a valid dirfd, a NUL-terminated name and a buffer of the length passed.
    let n = unsafe { libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

/// The bytes of a small regular file (a state record): open, read, close, where `fs::read`
/// adds a statx for the size and a read that returns EOF. A read of a regular file stops
/// short of the buffer only at the end of the file, so a short read of under half a page ends
/// it here too; a longer file is read to EOF.
pub fn read_bytes(path: &Path) -> std::io::Result<Vec<u8>> {
    read_raw(File::open(path)?, true)
}

fn read_file(f: File, short_lines: bool) -> Option<String> {
    String::from_utf8(read_raw(f, short_lines).ok()?).ok()
}

fn read_raw(mut f: File, short_lines: bool) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; BUF];
    let mut len = 0;
    loop {
        let room = buf.len() - len;
        let n = match f.read(&mut buf[len..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        len += n;
        if short_lines && n < room && len < SHORT {
            break;
        }
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
    }
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lists_a_directory_whole_and_again_from_its_start() {
        let dir = std::env::temp_dir().join(format!("tally-kfile-names-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut want: Vec<String> = (0..600).map(|i| format!("entry-with-a-long-name-{i:04}")).collect();
        for n in &want {
            std::fs::write(dir.join(n), "").unwrap();
        }
        std::fs::create_dir(dir.join("sub")).unwrap();
        let d = std::fs::File::open(&dir).unwrap();
        for _ in 0..2 {
            let got = names(&d).unwrap();
            assert!(got.iter().any(|(n, t)| n.to_bytes() == b"sub" && *t == libc::DT_DIR));
            let mut files: Vec<String> =
                got.iter().filter(|(_, t)| *t == libc::DT_REG).map(|(n, _)| n.to_string_lossy().into_owned()).collect();
            files.sort();
            want.sort();
            assert_eq!(files, want, "more than one getdents64 buffer's worth, no . or ..");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_small_and_large_files_whole() {
        let dir = std::env::temp_dir().join(format!("tally-kfile-{}", std::process::id()));
        std::fs::write(&dir, "x".repeat(3 * BUF + 5)).unwrap();
        assert_eq!(read(&dir).map(|t| t.len()), Some(3 * BUF + 5));
        std::fs::write(&dir, "1 2 3\n").unwrap();
        assert_eq!(read(&dir).as_deref(), Some("1 2 3\n"));
        assert_eq!(read_bytes(&dir).unwrap(), b"1 2 3\n");
        std::fs::write(&dir, "y".repeat(SHORT + 7)).unwrap();
        assert_eq!(read_bytes(&dir).unwrap().len(), SHORT + 7);
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(read(&dir), None);
        assert_eq!(read_bytes(&dir).unwrap_err().kind(), std::io::ErrorKind::NotFound);
        assert!(read(Path::new("/proc/self/status")).is_some_and(|s| s.contains("VmRSS")));
        // Longer than half a page in several reads, as seq_file gives a long table: all of it.
        let maps = read(Path::new("/proc/self/maps")).unwrap();
        assert!(maps.len() > SHORT, "this test's own maps span reads: {}", maps.len());
        assert!(maps.contains("[stack]") && maps.ends_with('\n'), "to its last lines: {maps}");
        assert!(read_all(Path::new("/proc/self/maps")).is_some_and(|m| m.contains("[stack]")));
    }
}
