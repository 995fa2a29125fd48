//! The resources no cgroup file counts, sampled from /proc over the container's processes:
//! open files, sockets, file locks, locked and private pages, queued signals, ptys, in one
//! pass over each process's /proc entries. The cost of one sample is bounded: at most `MAX_PROCESSES` processes and `MAX_FDS` descriptors are
//! looked at, and a sample that hit a bound says so in its source.

use std::collections::HashSet;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::kfile;

pub const MAX_PROCESSES: usize = 4096;
pub const MAX_FDS: usize = 262_144;

/// What one walk over the processes found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sample {
    pub processes: usize,
    pub files: u64,
    pub tcp_sockets: u64,
    pub other_sockets: u64,
    pub flocks: u64,
    pub locked_kib: u64,
    pub private_pages: u64,
    pub max_sigq: u64,
    /// A bound was hit: the counts are lower bounds.
    pub truncated: bool,
    /// /proc/INIT/limits, when the init was among the processes.
    pub init_limits: Option<String>,
}

/// Walks `pids` (host PIDs) once: per process its fd directory (each fd's link, its fdinfo's
/// `lock:` lines, a socket's protocol) and its status file. Nothing global is read: no
/// /proc/locks (whose every read waits for an RCU grace period) and no TCP table (whose every
/// read walks the host's whole TCP hash, milliseconds on a large machine).
pub fn sample(pids: &[i32], init: Option<i32>) -> Sample {
    let mut s = Sample::default();
    let mut sockets: HashSet<u64> = HashSet::new();
    let mut locks: HashSet<String> = HashSet::new();
    let mut fds_seen = 0usize;
    for &pid in pids.iter().take(MAX_PROCESSES) {
        s.processes += 1;
        // One lookup of /proc/PID; everything else is read relative to it.
        let Ok(pid_name) = std::ffi::CString::new(format!("/proc/{pid}")) else { continue };
        let Some(proc_dir) = kfile::open_dir(None, &pid_name) else { continue };
        let dirs = (kfile::open_dir(Some(&proc_dir), c"fd"), kfile::open_dir(Some(&proc_dir), c"fdinfo"));
        if let (Some(fd_dir), Some(fdinfo_dir)) = dirs {
            for (fd, _) in kfile::names(&fd_dir).unwrap_or_default() {
                fds_seen += 1;
                if fds_seen > MAX_FDS {
                    s.truncated = true;
                    break;
                }
                s.files += 1;
                let target = kfile::link_at(&fd_dir, &fd).unwrap_or_default();
                let target = String::from_utf8_lossy(&target);
                if let Some(inode) = target.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    if let Ok(i) = inode.parse() {
                        let link = Path::new(&format!("/proc/{pid}/fd")).join(fd.to_string_lossy().as_ref());
                        if sockets.insert(i) && is_tcp(&link) {
                            s.tcp_sockets += 1;
                        }
                    }
                }
                fd_locks(&fdinfo_dir, &fd, &mut locks);
            }
        }
        if Some(pid) == init {
            s.init_limits = kfile::read_at(&proc_dir, c"limits");
        }
        if let Some(status) = kfile::read_at(&proc_dir, c"status") {
            s.locked_kib += status_field(&status, "VmLck:").unwrap_or(0);
            // VmData + VmStk: statm's "data" field, the private writable memory.
            let private_kib =
                status_field(&status, "VmData:").unwrap_or(0) + status_field(&status, "VmStk:").unwrap_or(0);
            s.private_pages += (private_kib * 1024) / crate::collect::page_size();
            if let Some(q) = status.lines().find_map(|l| l.strip_prefix("SigQ:")) {
                let queued = q.trim().split('/').next().and_then(|n| n.parse().ok()).unwrap_or(0);
                s.max_sigq = s.max_sigq.max(queued);
            }
        }
    }
    if pids.len() > MAX_PROCESSES {
        s.truncated = true;
    }
    s.other_sockets = sockets.len() as u64 - s.tcp_sockets;
    s.flocks = locks.len() as u64;
    s
}

/// Whether the socket behind `/proc/PID/fd/N` is TCP: sockfs names each socket's protocol in
/// the `system.sockprotoname` attribute ("TCP", "TCPv6", "UNIX", "UDP", ...), which getxattr
/// reads through the fd's link without touching the socket.
fn is_tcp(fd_link: &Path) -> bool {
    let Ok(path) = std::ffi::CString::new(fd_link.as_os_str().as_encoded_bytes()) else { return false };
    let mut buf = [0u8; 32];
    // SAFETY: NUL-terminated path and name; the kernel writes at most buf.len() bytes.
    let n =
        unsafe { libc::getxattr(path.as_ptr(), c"system.sockprotoname".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    n > 0 && is_tcp_name(&buf[..n as usize])
}

fn is_tcp_name(name: &[u8]) -> bool {
    let name = name.strip_suffix(b"\0").unwrap_or(name);
    name == b"TCP" || name == b"TCPv6"
}

/// The locks held through one fd (its fdinfo's `lock:` lines), keyed without their sequence
/// number: a lock seen through a dup'ed fd, or an flock shared by forked processes, is
/// one lock, as in /proc/locks.
fn fd_locks(fdinfo_dir: &fs::File, fd: &std::ffi::CStr, out: &mut HashSet<String>) {
    let Some(info) = crate::kfile::read_at(fdinfo_dir, fd) else { return };
    for line in info.lines() {
        let Some(rest) = line.strip_prefix("lock:") else { continue };
        // "lock:\t1: POSIX  ADVISORY  WRITE 42 00:1f:123 0 EOF": drop the "1:".
        let key: Vec<&str> = rest.split_whitespace().skip(1).collect();
        // Waiters ("->") are not held locks.
        if key.first() != Some(&"->") {
            out.insert(key.join(" "));
        }
    }
}

fn status_field(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The container's ptys: entries of its own devpts (seen through the init's root), and the
/// `max=` its devpts was mounted with.
pub fn ptys(init_pid: i32) -> (Option<u64>, Option<u64>) {
    let held = open_in_root(init_pid, c"dev/pts")
        .and_then(|dir| kfile::names(&dir).ok())
        .map(|names| names.iter().filter(|(n, _)| n.to_bytes() != b"ptmx").count() as u64);
    (held, devpts_max(init_pid))
}

/// The `max=` of the container's /dev/pts mount. mountinfo is read in small pieces and only
/// until that line: the kernel formats the lines a read asks for, and formatting every mount
/// of every container was a sixth of a whole listing's time. (The runtime mounts /dev/pts
/// early, so it is among the first lines.)
fn devpts_max(pid: i32) -> Option<u64> {
    use std::io::Read;
    let mut f = fs::File::open(format!("/proc/{pid}/mountinfo")).ok()?;
    let mut text = Vec::new();
    let mut buf = [0u8; 512];
    let mut scanned = 0;
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        text.extend_from_slice(&buf[..n]);
        while let Some(end) = text[scanned..].iter().position(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(&text[scanned..scanned + end]).into_owned();
            scanned += end + 1;
            if let Some(found) = devpts_line(&line) {
                return found;
            }
        }
    }
}

/// For the /dev/pts line of mountinfo, its `max=` (or `Some(None)` without one).
fn devpts_line(line: &str) -> Option<Option<u64>> {
    let (left, right) = line.split_once(" - ")?;
    if left.split_whitespace().nth(4)? != "/dev/pts" {
        return None;
    }
    Some(right.split_whitespace().nth(2)?.split(',').find_map(|o| o.strip_prefix("max=")?.parse().ok()))
}

/// A directory of the container, resolved inside its root (openat2 RESOLVE_IN_ROOT): the
/// container's own symlinks must not lead this host-side read anywhere else on the host.
fn open_in_root(pid: i32, path: &std::ffi::CStr) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let root = fs::File::open(format!("/proc/{pid}/root")).ok()?;
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
    const RESOLVE_IN_ROOT: u64 = 0x10;
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    let mut fd = -1;
    // EAGAIN: a mount or rename raced with the lookup; the kernel asks for a retry.
    for _ in 0..16 {
        // SAFETY: a valid dirfd, a NUL-terminated path and an open_how of the size passed.
        fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) {
            break;
        }
    }
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Soft and hard values of one /proc/<pid>/limits line ("unlimited" is `None`).
pub fn parse_limit(text: &str, name: &str) -> Option<(Option<u64>, Option<u64>)> {
    let rest = text.lines().find_map(|l| l.strip_prefix(name))?;
    let mut f = rest.split_whitespace();
    let v = |s: Option<&str>| s.and_then(|s| s.parse().ok());
    Some((v(f.next()), v(f.next())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_locks_parse() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 4096                 files\n\
                      Max locked memory         65536                unlimited            bytes\n";
        assert_eq!(parse_limit(limits, "Max open files"), Some((Some(1024), Some(4096))));
        assert_eq!(parse_limit(limits, "Max locked memory"), Some((Some(65536), None)));
    }

    #[test]
    fn this_process_is_sampled() {
        let me = std::process::id() as i32;
        let before = sample(&[me], Some(me));
        assert_eq!(before.processes, 1);
        assert!(before.files >= 3, "{before:?}");
        assert!(before.private_pages > 0);
        assert!(before.init_limits.as_deref().is_some_and(|l| l.contains("Max open files")));

        // One TCP listener, one UNIX socket pair, one flock seen through two fds.
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let dir = std::env::temp_dir().join(format!("tally-sampler-{me}"));
        let file = fs::File::create(&dir).unwrap();
        // SAFETY: a valid open fd.
        assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) }, 0);
        let dup = file.try_clone().unwrap();
        let after = sample(&[me], None);
        // The lock seen through both fds is one lock. (Other tests of this binary take locks
        // of their own in parallel threads: only the two fds here give an exact count.)
        let mut locks = HashSet::new();
        let fdinfo = fs::File::open("/proc/self/fdinfo").unwrap();
        let name = |f: &fs::File| std::ffi::CString::new(f.as_raw_fd().to_string()).unwrap();
        fd_locks(&fdinfo, &name(&file), &mut locks);
        fd_locks(&fdinfo, &name(&dup), &mut locks);
        assert_eq!(locks.len(), 1, "{locks:?}");
        fs::remove_file(&dir).unwrap();
        drop((tcp, a, b, file, dup));
        // Other tests of this binary run in parallel threads: counts can only be at least these.
        assert!(after.tcp_sockets > before.tcp_sockets, "{before:?} -> {after:?}");
        assert!(after.other_sockets >= before.other_sockets + 2, "{before:?} -> {after:?}");
        assert!(after.flocks >= 1, "{before:?} -> {after:?}");
    }

    #[test]
    fn the_devpts_line_gives_its_max() {
        let l = "92 88 0:45 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620,ptmxmode=666,max=2";
        assert_eq!(devpts_line(l), Some(Some(2)));
        assert_eq!(devpts_line(&l.replace(",max=2", "")), Some(None));
        assert_eq!(devpts_line("90 88 0:44 / /dev rw - tmpfs tmpfs rw,mode=755"), None);
    }

    #[test]
    fn protocol_names() {
        assert!(is_tcp_name(b"TCP\0"));
        assert!(is_tcp_name(b"TCPv6"));
        assert!(!is_tcp_name(b"UNIX\0"));
        assert!(!is_tcp_name(b"MPTCP"));
    }
}
