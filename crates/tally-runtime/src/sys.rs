//! Thin wrappers over the few system calls that neither libc's glibc wrappers nor nix expose
//! in the form tally needs. Each returns `std::io::Result` with the raw errno.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// What `clone_process` returned in each of the two processes.
pub enum Forked {
    Parent(i32),
    Child,
}

/// `clone(2)` used like `fork(2)` but with namespace flags, so the child starts inside its new
/// namespaces (a new PID namespace only takes effect for children, never for the caller).
///
/// The caller must be single-threaded: the child continues with a copy of this process and
/// may only rely on state no other thread could have held locked.
pub fn clone_process(ns_flags: libc::c_int) -> io::Result<Forked> {
    let flags = (ns_flags | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: with a null stack pointer the raw clone syscall behaves like fork: the child
    // gets a copy-on-write copy of the address space and resumes here. tally is
    // single-threaded when it forks, so no lock can be held by a thread that does not exist in
    // the child. The remaining arguments (ptid, ctid, tls) are unused without the matching flags.
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    match check(ret)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as i32)),
    }
}

/// clone3's argument, up to `cgroup` (CLONE_ARGS_SIZE_VER2, Linux 5.7).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x200000000;

/// `clone_process`, the child starting in the v2 cgroup whose directory `cgroup` is open
/// (`CLONE_INTO_CGROUP`). The bool says whether it did: a kernel before 5.7, or a seccomp
/// profile around the runtime that refuses clone3 (as container engines' defaults do, with
/// ENOSYS), gets a plain clone, and the caller moves the child itself.
pub fn clone_process_into(ns_flags: libc::c_int, cgroup: Option<RawFd>) -> io::Result<(Forked, bool)> {
    let Some(cgroup) = cgroup else { return clone_process(ns_flags).map(|f| (f, false)) };
    let args = CloneArgs {
        flags: ns_flags as u32 as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup as u64,
        ..Default::default()
    };
    // SAFETY: as for clone in `clone_process`: a zero stack and stack size make clone3 behave
    // like fork (the child resumes here on a copy-on-write copy of this stack), the caller is
    // single-threaded, and `args` is a live, fully initialised struct of the size passed.
    let ret = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    match check(ret) {
        Ok(0) => Ok((Forked::Child, true)),
        Ok(pid) => Ok((Forked::Parent(pid as i32), true)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::E2BIG | libc::EPERM)) => {
            clone_process(ns_flags).map(|f| (f, false))
        }
        Err(e) => Err(e),
    }
}

/// A pidfd for `pid`: signals sent through it can never reach a process that reused the PID.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is passed.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub fn pidfd_send_signal(pidfd: RawFd, sig: i32) -> io::Result<()> {
    // SAFETY: a null siginfo pointer is allowed and means "as kill(2) would send it".
    check(unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd, sig, std::ptr::null::<libc::siginfo_t>(), 0) })?;
    Ok(())
}

/// Marks every fd from `first` upwards close-on-exec, so nothing tally holds reaches the
/// container's program except the fds it was asked to pass.
///
/// close_range(2) can be missing (kernels before 5.11) or refused by a seccomp profile that
/// does not list it; then the fds listed in /proc/self/fd are marked one by one, and if that
/// directory cannot be read either, every number up to the open-file limit.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes fd flags in this process's table; no memory is passed.
    if check(unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) }).is_ok() {
        return Ok(());
    }
    let mark = |fd: RawFd| -> io::Result<()> {
        // SAFETY: F_GETFD/F_SETFD only read and change one fd's flags in this process's table.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 {
            let err = io::Error::last_os_error();
            // EBADF: not open (or the directory's own fd, closed since the listing).
            return if err.raw_os_error() == Some(libc::EBADF) { Ok(()) } else { Err(err) };
        }
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => {
            let fds: Vec<RawFd> = dir
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|&fd: &RawFd| fd >= first as RawFd)
                .collect();
            fds.into_iter().try_for_each(mark)
        }
        Err(_) => (first as RawFd..open_file_limit()).try_for_each(mark),
    }
}

/// The soft RLIMIT_NOFILE: no fd of this process can have a number at or above it.
fn open_file_limit() -> RawFd {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit struct into a live local.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    rl.rlim_cur.min(1 << 20) as RawFd
}

/// Closes every fd from `first` upwards except those in `keep` (close_range, or one close(2)
/// per number up to the open-file limit where close_range is missing or refused).
pub fn close_fds_except(first: u32, keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<u32> = keep.iter().filter(|&&fd| fd >= first as RawFd).map(|&fd| fd as u32).collect();
    keep.sort_unstable();
    let mut lo = first;
    for fd in keep.into_iter().chain([u32::MAX]) {
        if fd > lo {
            let hi = if fd == u32::MAX { u32::MAX } else { fd - 1 };
            // SAFETY: close_range only closes fds in this process's table; no memory is passed.
            if check(unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0) }).is_err() {
                let end = (hi as u64).min(open_file_limit() as u64) as u32;
                for n in lo..=end {
                    // SAFETY: closes one fd number of this process; EBADF for a free one is fine.
                    unsafe { libc::close(n as RawFd) };
                }
            }
        }
        lo = fd.saturating_add(1);
    }
    Ok(())
}

/// The kernel's `struct mount_attr` for mount_setattr(2).
#[repr(C)]
#[derive(Debug, Default)]
pub struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR__ATIME: u64 = 0x70;
pub const MOUNT_ATTR_RELATIME: u64 = 0x0;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x200000;

/// Applies `attr` to the mount at `fd` and, with AT_RECURSIVE, to every mount below it.
pub fn mount_setattr_recursive(fd: RawFd, attr: &MountAttr) -> io::Result<()> {
    let empty = c"";
    let flags = libc::AT_EMPTY_PATH | libc::AT_RECURSIVE;
    // SAFETY: `empty` is a valid C string, `attr` points to a live struct of the size passed,
    // and the kernel only reads from it.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            empty.as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok(())
}

/// A new mount of `fstype` with the given string options that is attached nowhere
/// (fsopen/fsconfig/fsmount): only the returned fd reaches it, so no other process can see,
/// cover or unmount it, and it goes away with the last fd or process using it.
pub fn detached_mount(
    fstype: &std::ffi::CStr,
    options: &[(&std::ffi::CStr, &std::ffi::CStr)],
    attrs: u64,
) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    let owned = |fd: libc::c_long| -> io::Result<OwnedFd> {
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel has just returned this fd and nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    };
    let check = |rc: libc::c_long| if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) };
    // SAFETY: fsopen takes a NUL-terminated name and flags; it returns a new fd or -1.
    let ctx = owned(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })?;
    for (key, value) in options {
        // SAFETY: FSCONFIG_SET_STRING takes a NUL-terminated key and value.
        check(unsafe {
            libc::syscall(libc::SYS_fsconfig, ctx.as_raw_fd(), FSCONFIG_SET_STRING, key.as_ptr(), value.as_ptr(), 0)
        })?;
    }
    // SAFETY: FSCONFIG_CMD_CREATE takes no key, value or aux argument.
    check(unsafe {
        libc::syscall(libc::SYS_fsconfig, ctx.as_raw_fd(), FSCONFIG_CMD_CREATE, std::ptr::null::<u8>(), 0, 0)
    })?;
    // SAFETY: fsmount takes the context fd, flags and attributes by value.
    owned(unsafe { libc::syscall(libc::SYS_fsmount, ctx.as_raw_fd(), FSMOUNT_CLOEXEC, attrs as libc::c_uint) })
}
