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
    read_file(File::open(path).ok()?)
}

/// The whole text of `name` in the open directory `dir`: no walk of the directory's path
/// again, which for /proc/PID/fdinfo/N per fd was a good part of a listing's time.
pub fn read_at(dir: &File, name: &std::ffi::CStr) -> Option<String> {
    use std::os::fd::AsRawFd;
    read_file(open_at(dir.as_raw_fd(), name, libc::O_NOFOLLOW).ok()?.into())
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

/// The names in the open directory `dir` with their d_type, without `.` and `..` (getdents on
/// a duplicate of its fd, so `dir` stays usable).
pub fn names(dir: &impl std::os::fd::AsRawFd) -> std::io::Result<Vec<(std::ffi::CString, u8)>> {
    // SAFETY: dup of an open fd.
    let dup = unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `dup` is an open directory fd that the DIR now owns (closedir closes it).
    let d = unsafe { libc::fdopendir(dup) };
    if d.is_null() {
        let e = std::io::Error::last_os_error();
        // SAFETY: fdopendir failed, so `dup` is still ours to close.
        unsafe { libc::close(dup) };
        return Err(e);
    }
    let mut out = Vec::new();
    loop {
        // SAFETY: `d` is a valid DIR until closedir below.
        let e = unsafe { libc::readdir64(d) };
        if e.is_null() {
            break;
        }
        // SAFETY: readdir returned a valid entry whose d_name is NUL-terminated.
        let (name, kind) = unsafe { (std::ffi::CStr::from_ptr((*e).d_name.as_ptr()), (*e).d_type) };
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            out.push((name.to_owned(), kind));
        }
    }
    // SAFETY: `d` came from fdopendir and is closed once.
    unsafe { libc::closedir(d) };
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

fn read_file(mut f: File) -> Option<String> {
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
