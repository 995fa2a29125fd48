//! The resources no cgroup file counts, sampled from /proc over the container's processes:
//! open files, sockets, file locks, locked and private pages, queued signals, ptys. The cost of
//! one sample is bounded: at most `MAX_PROCESSES` processes and `MAX_FDS` descriptors are
//! looked at, and a sample that hit a bound says so in its source.

use std::collections::HashSet;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;

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
}

/// Walks `pids` (host PIDs). `netns_pid` is a process in the container's network namespace,
/// whose /proc/<pid>/net/tcp{,6} tell which sockets are TCP.
pub fn sample(pids: &[i32], netns_pid: Option<i32>) -> Sample {
    let mut s = Sample::default();
    let mut sockets: HashSet<u64> = HashSet::new();
    let mut fds_seen = 0usize;
    let set: HashSet<i32> = pids.iter().copied().collect();
    for &pid in pids.iter().take(MAX_PROCESSES) {
        s.processes += 1;
        if let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) {
            for e in entries.flatten() {
                fds_seen += 1;
                if fds_seen > MAX_FDS {
                    s.truncated = true;
                    break;
                }
                s.files += 1;
                if let Ok(target) = fs::read_link(e.path()) {
                    let t = target.to_string_lossy();
                    if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                        if let Ok(i) = inode.parse() {
                            sockets.insert(i);
                        }
                    }
                }
            }
        }
        if let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) {
            s.locked_kib += status_field(&status, "VmLck:").unwrap_or(0);
            if let Some(q) = status.lines().find_map(|l| l.strip_prefix("SigQ:")) {
                let queued = q.trim().split('/').next().and_then(|n| n.parse().ok()).unwrap_or(0);
                s.max_sigq = s.max_sigq.max(queued);
            }
        }
        // statm's sixth field: data + stack pages, the private writable memory of the process.
        if let Ok(statm) = fs::read_to_string(format!("/proc/{pid}/statm")) {
            s.private_pages += statm.split_whitespace().nth(5).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    if pids.len() > MAX_PROCESSES {
        s.truncated = true;
    }
    let tcp = netns_pid.map(tcp_inodes).unwrap_or_default();
    s.tcp_sockets = sockets.iter().filter(|i| tcp.contains(i)).count() as u64;
    s.other_sockets = sockets.len() as u64 - s.tcp_sockets;
    if !pids.is_empty() {
        s.flocks = count_locks(&proc_locks(), &set);
    }
    s
}

/// /proc/locks, read at most once a second: each read takes the kernel's file-lock rwsem for
/// writing, which waits for an RCU grace period (~10-20 ms), so a container with no processes
/// never reads it and a listing of many containers reads it once; `events`, which samples for
/// as long as the container runs, still sees new locks.
fn proc_locks() -> String {
    static LOCKS: std::sync::Mutex<Option<(std::time::Instant, String)>> = std::sync::Mutex::new(None);
    let mut cached = LOCKS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, text)) = cached.as_ref() {
        if at.elapsed() < std::time::Duration::from_secs(1) {
            return text.clone();
        }
    }
    let text = {
        // Large reads: every read(2) of the seq file takes that rwsem again.
        use std::io::Read;
        let mut out = Vec::new();
        if let Ok(mut f) = fs::File::open("/proc/locks") {
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    *cached = Some((std::time::Instant::now(), text.clone()));
    text
}

fn status_field(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Socket inodes of the TCP table (IPv4 and IPv6) of `pid`'s network namespace.
fn tcp_inodes(pid: i32) -> HashSet<u64> {
    let mut out = HashSet::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/{table}")) else { continue };
        // Columns: sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
        out.extend(text.lines().skip(1).filter_map(|l| l.split_whitespace().nth(9)?.parse::<u64>().ok()));
    }
    out
}

/// /proc/locks lines held by one of `pids` (`->` lines are waiters, not held locks).
fn count_locks(locks: &str, pids: &HashSet<i32>) -> u64 {
    locks
        .lines()
        .filter(|l| !l.contains("->"))
        .filter_map(|l| l.split_whitespace().nth(4)?.parse::<i32>().ok())
        .filter(|p| pids.contains(p))
        .count() as u64
}

/// The container's ptys: entries of its own devpts (seen through the init's root), and the
/// `max=` its devpts was mounted with.
pub fn ptys(init_pid: i32) -> (Option<u64>, Option<u64>) {
    let held = open_in_root(init_pid, c"dev/pts")
        .and_then(|dir| fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd())).ok())
        .map(|d| d.flatten().filter(|e| e.file_name() != "ptmx").count() as u64);
    let mountinfo = fs::read_to_string(format!("/proc/{init_pid}/mountinfo")).unwrap_or_default();
    let max = mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if left.split_whitespace().nth(4)? != "/dev/pts" {
            return None;
        }
        right.split_whitespace().nth(2)?.split(',').find_map(|o| o.strip_prefix("max=")?.parse().ok())
    });
    (held, max)
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
pub fn rlimit(pid: i32, name: &str) -> Option<(Option<u64>, Option<u64>)> {
    let text = fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("limits")).ok()?;
    parse_limit(&text, name)
}

fn parse_limit(text: &str, name: &str) -> Option<(Option<u64>, Option<u64>)> {
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
        let locks = "1: POSIX  ADVISORY  WRITE 42 00:1f:123 0 EOF\n1: -> POSIX  ADVISORY  WRITE 43 00:1f:123 0 EOF\n2: FLOCK  ADVISORY  WRITE 7 00:1f:9 0 EOF\n";
        assert_eq!(count_locks(locks, &[42, 43].into_iter().collect()), 1);
    }

    #[test]
    fn this_process_is_sampled() {
        let me = std::process::id() as i32;
        let s = sample(&[me], Some(me));
        assert_eq!(s.processes, 1);
        assert!(s.files >= 3, "{s:?}");
        assert!(s.private_pages > 0);
    }
}
